"""LatentMix: RandMix / AdvMix on a tiny StyleGAN2."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from tests.conftest import TINY_STYLEGAN2, make_tiny_stylegan2
from torch_semaug import IdentityGenerator, LatentMix, StyleGAN2, create


@pytest.fixture(scope="module")
def gen() -> StyleGAN2:
    g = make_tiny_stylegan2()
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
    t = LatentMix(gen, layers=(3, 6), rng=torch.Generator().manual_seed(5))
    out, out_labels = t(images, labels, latents=latents)
    assert out.shape == images.shape and out.dtype == images.dtype and torch.equal(out_labels, labels)
    assert torch.equal(rec.last[:, :3], latents[:, :3])
    fine = rec.last[:, 3:]
    assert torch.equal(fine, fine[:, :1].expand_as(fine))  # one map(z) per example
    assert not torch.allclose(fine, latents[:, 3:])
    assert (out - images).abs().amax() > 1e-3
    again, _ = LatentMix(gen, layers=(3, 6), rng=torch.Generator().manual_seed(5))(images, labels, latents=latents)
    assert torch.equal(out, again)


def test_a_mask_moves_exactly_its_entries(gen, batch, monkeypatch):
    images, labels, latents = batch
    rec = Recorder(gen, monkeypatch)
    mask = torch.zeros(gen.num_ws, gen.w_dim, dtype=torch.bool)
    mask[4, :5] = True
    LatentMix(gen, mask=mask.flatten(), rng=torch.Generator().manual_seed(5))(images, labels, latents=latents)
    changed = (rec.last != latents).any(0)
    assert changed[mask].all() and not changed[~mask].any()


def test_default_fine_layers_follow_the_paper_at_32_and_1024_px():
    # AdvMix mixes the 32x32 layers of its 32 px Color-MNIST StyleGAN and the 128-1024 px layers of its
    # 1024 px CelebA one; rule: layers at resolution >= min(resolution, 128).
    g32 = make_tiny_stylegan2(32)
    start, stop = g32.fine_layers
    assert [g32.layer_resolution(i) for i in range(start, stop)] == [32] * (stop - start)
    assert g32.layer_resolution(start - 1) == 16 and stop == g32.num_ws
    g1024 = StyleGAN2(1024, **{**TINY_STYLEGAN2, "channel_base": 2048, "channel_max": 1})
    start, stop = g1024.fine_layers
    assert {g1024.layer_resolution(i) for i in range(start, stop)} == {128, 256, 512, 1024}
    assert g1024.layer_resolution(start - 1) == 64 and stop == g1024.num_ws == 18
    assert LatentMix(g32).layers == g32.fine_layers == (5, 8)


def test_validation(gen):
    for bad in ((0, 7), (3, 3), (1.5, 4), 3):
        with pytest.raises(ValueError, match=r"layers: expected \(start, stop\)"):
            LatentMix(gen, layers=bad)
    with pytest.raises(TypeError, match="StyleGAN2-like W\\+ generator"):
        LatentMix(IdentityGenerator((3, 16, 16)))
    with pytest.raises(ValueError, match="mode"):
        LatentMix(gen, mode="adv")
    with pytest.raises(ValueError, match="mask: give layers .* or mask .*, not both"):
        LatentMix(gen, layers=(3, 6), mask=torch.ones(gen.latent_dim, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"eps, steps: not used by mode='random'"):
        LatentMix(gen, eps=0.1, steps=3)


def test_repr_state_and_registry(gen):
    t = create("latent_mix", generator=gen, mode="adversarial", layers=(2, 6))
    assert isinstance(t, LatentMix)
    text = repr(t)
    assert "\n" not in text and "layers=(2, 6)" in text and "eps=0.03" in text and "on_failure='nominal'" in text
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
    rand = LatentMix(gen, layers=(3, 6), rng=torch.Generator().manual_seed(0))
    adv = LatentMix(gen, model=model, layers=(3, 6), mode="adversarial", eps=0.5, step_size=0.1, steps=3,
                    restarts=2, early_stop=False, on_failure="highest_loss", rng=torch.Generator().manual_seed(0))
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


class Confident(nn.Module):
    """Logits ``bias + 0 * x``: class 0 always wins by ``margin``, so no image can be misclassified."""

    def __init__(self, margin: float, scale: float = 0.01) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.linear = nn.Linear(3 * 16 * 16, 3)
        with torch.no_grad():
            self.linear.weight.mul_(scale)
            self.linear.bias.copy_(torch.tensor([margin, 0.0, 0.0]))

    def forward(self, x):
        return self.linear(x.flatten(1))


def test_advmix_failure_rule_is_algorithm_2(gen, batch):
    # Algorithm 2 of Gowal et al.: x_adv = x; for each restart r and step k: x' = G(content, style_r + delta);
    # if argmax f(x') != y: x_adv = x' (stop). So when nothing fools the classifier, x_adv is the input x itself,
    # and every returned example that differs from its input is misclassified.
    images, _, latents = batch
    labels = torch.zeros(6, dtype=torch.long)
    common = dict(mode="adversarial", steps=2, restarts=2, rng=torch.Generator().manual_seed(0))
    unfoolable = Confident(margin=100.0)
    out, _ = LatentMix(gen, model=unfoolable, **common)(images, labels, latents=latents)
    assert torch.equal(out, images)
    out, _ = LatentMix(gen, model=unfoolable, on_failure="highest_loss", **common)(images, labels, latents=latents)
    assert ((out - images).flatten(1).abs().amax(1) > 1e-4).all()
    borderline = Confident(margin=0.2, scale=1.0)  # fooled by some variants, not by others
    out, _ = LatentMix(gen, model=borderline, **common)(images, labels, latents=latents)
    changed = (out != images).flatten(1).any(1)
    with torch.no_grad():
        fooled = borderline(out).argmax(1) != labels
    assert fooled[changed].all() and changed.any() and (~changed).any()
