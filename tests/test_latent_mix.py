"""LatentMix: RandMix / AdvMix on a tiny StyleGAN2."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from torch_semaug import IdentityGenerator, LatentMix, create
from torch_semaug.generators.stylegan2 import StyleGAN2

TINY = dict(z_dim=16, w_dim=16, mapping_layers=2, channel_base=256, channel_max=16)


@pytest.fixture(scope="module")
def gen() -> StyleGAN2:
    torch.manual_seed(0)
    g = StyleGAN2(16, **TINY).freeze()
    with torch.no_grad():  # make every W+ layer matter for the output
        for block in (g.synthesis.b8, g.synthesis.b16):
            block.torgb.conv.weight.mul_(3)
    return g


@pytest.fixture
def batch(gen):
    latents = gen.sample_latent(6, torch.Generator().manual_seed(1))
    with torch.no_grad():
        images = gen.decode(latents) * 0.5 + 0.5
    return images, torch.arange(6) % 3, latents


class Recorder:
    """Wraps generator.decode to remember the latents of its last call (the transform's final decode)."""

    def __init__(self, gen, monkeypatch):
        self.last = None
        original = gen.decode

        def decode(z):
            self.last = z.detach().clone()
            return original(z)

        monkeypatch.setattr(gen, "decode", decode)


def _classifier():
    torch.manual_seed(3)
    return nn.Sequential(nn.Flatten(), nn.Linear(3 * 16 * 16, 3))


def test_randmix_keeps_coarse_layers_and_replaces_fine(gen, batch, monkeypatch):
    images, labels, latents = batch
    rec = Recorder(gen, monkeypatch)
    t = LatentMix(gen, split=3, rng=torch.Generator().manual_seed(5))
    out, out_labels = t(images, labels, latents=latents)
    assert out.shape == images.shape and out.dtype == images.dtype and torch.equal(out_labels, labels)
    assert torch.equal(rec.last[:, :3], latents[:, :3])
    fine = rec.last[:, 3:]
    assert torch.equal(fine, fine[:, :1].expand_as(fine))  # one map(z) per example
    assert not torch.allclose(fine, latents[:, 3:])
    assert (out - images).abs().amax() > 1e-3
    again, _ = LatentMix(gen, split=3, rng=torch.Generator().manual_seed(5))(images, labels, latents=latents)
    assert torch.equal(out, again)


def test_default_split_and_validation(gen):
    assert LatentMix(gen).split == gen.fine_split == 3
    for bad in (0, 6, 1.5):
        with pytest.raises(ValueError, match=r"split: expected an integer in 1\.\.5"):
            LatentMix(gen, split=bad)
    with pytest.raises(TypeError, match="StyleGAN2-like W\\+ generator"):
        LatentMix(IdentityGenerator((3, 16, 16)))
    with pytest.raises(ValueError, match="mode"):
        LatentMix(gen, mode="adv")


def test_repr_state_and_registry(gen):
    t = create("latent_mix", generator=gen, mode="adversarial", split=2)
    assert isinstance(t, LatentMix)
    text = repr(t)
    assert "\n" not in text and "split=2" in text and "eps=0.03" in text
    assert len(t.state_dict()) == 0


def test_p_zero_is_identity_and_per_sample_call(gen, batch):
    images, labels, latents = batch
    out, _ = LatentMix(gen, p=0.0)(images, labels, latents=latents)
    assert torch.equal(out, images)
    single = LatentMix(gen)(images[0], latents=latents[0])
    assert single.shape == images[0].shape


def test_uses_the_attached_encoder(gen, batch):
    images, labels, latents = batch

    class Lookup:
        calls = 0

        def encode(self, x):
            Lookup.calls += 1
            return latents[: x.shape[0]].clone()

    t = LatentMix(gen)
    with pytest.raises(Exception, match="attach an encoder"):
        t(images, labels)
    gen.attach_encoder(Lookup())
    try:
        out, _ = t(images, labels)
    finally:
        gen.attach_encoder(None)
    assert Lookup.calls == 1 and out.shape == images.shape


def test_advmix_keeps_coarse_layers_stays_in_ball_and_raises_loss(gen, batch, monkeypatch):
    images, labels, latents = batch
    model = _classifier()
    rec = Recorder(gen, monkeypatch)
    rand = LatentMix(gen, split=3, rng=torch.Generator().manual_seed(0))
    adv = LatentMix(gen, model, split=3, mode="adversarial", eps=0.5, step_size=0.1, steps=3, restarts=2,
                    early_stop=False, rng=torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match="model"):
        LatentMix(gen, mode="adversarial")(images, labels, latents=latents)
    x_rand, _ = rand(images, labels, latents=latents)
    x_adv, _ = adv(images, labels, latents=latents)
    moved = rec.last
    assert torch.equal(moved[:, :3], latents[:, :3])
    # every fine entry is within eps of a map(z) code, which is the same across fine layers
    fine = moved[:, 3:]
    spread = fine.amax(1) - fine.amin(1)
    assert spread.max() <= 2 * 0.5 + 1e-5
    with torch.no_grad():
        loss_rand = F.cross_entropy(model(x_rand), labels)
        loss_adv = F.cross_entropy(model(x_adv), labels)
    assert loss_adv > loss_rand
    assert not any(p.grad is not None for p in model.parameters())
