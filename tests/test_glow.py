"""Glow: exact round trips, likelihood, prior sampling, multi-scale flattening, save/load, bad input."""

from __future__ import annotations

import math

import pytest
import torch

from tests.flow_factories import smooth_images, tiny_glow
from torch_semaug.generators import Glow, flatten_latents, load_generator, unflatten_latents
from torch_semaug.generators.glow_layers import InvConv1x1, squeeze2d, unsqueeze2d


def _images(n: int, shape: tuple[int, int, int], seed: int = 0) -> torch.Tensor:
    """Smooth, image-like content with some pixel noise, quantised to 8 bits (not white noise)."""
    return smooth_images(n, shape, seed, noise=0.05)


def _glow(shape=(3, 16, 16), levels=2, steps=2, width=16, seed=0) -> Glow:
    return tiny_glow(shape, levels=levels, steps=steps, width=width, seed=seed)


def _train_briefly(glow: Glow, images: torch.Tensor, iters: int = 15) -> Glow:
    glow.train().requires_grad_(True)
    opt = torch.optim.Adam(glow.parameters(), lr=3e-3)
    for _ in range(iters):
        x = images + torch.rand_like(images) / 256
        loss = glow.bits_per_dim(x).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return glow.freeze()


@pytest.mark.parametrize("shape,levels", [((3, 16, 16), 2), ((1, 16, 16), 3), ((3, 32, 32), 3)])
def test_round_trip_random_init_with_actnorm_initialised(shape, levels):
    glow = _glow(shape, levels=levels)
    assert all(bool(m.initialized) for m in glow.modules() if hasattr(m, "initialized"))
    x = _images(4, shape, seed=1)
    z = glow.encode(x)
    assert z.shape == (4, math.prod(shape)) and glow.latent_shape == (math.prod(shape),)
    assert (glow.decode(z) - x).abs().max() < 1e-4
    # deterministic: no dequantisation noise at encode time
    assert torch.equal(glow.encode(x), z)


def test_round_trip_after_brief_training_and_likelihood_improves():
    glow = _glow((3, 16, 16))
    x = _images(16, (3, 16, 16), seed=2)
    before = float(glow.bits_per_dim(x + 0.5 / 256).mean())
    _train_briefly(glow, x)
    after = float(glow.bits_per_dim(x + 0.5 / 256).mean())
    assert after < before - 0.2
    z = glow.encode(x)
    assert (glow.decode(z) - x).abs().max() < 1e-4


def test_log_prob_matches_change_of_variables_on_a_one_step_flow():
    # With one level the log-det can be checked against autograd's Jacobian of the whole encoder.
    torch.manual_seed(0)
    glow = Glow((1, 2, 2), levels=1, steps=1, width=4)
    glow.initialize(torch.rand(8, 1, 2, 2))
    with torch.no_grad():  # non-trivial coupling, so the check exercises its log-det
        for p in glow.parameters():
            p.add_(0.1 * torch.randn_like(p))
    glow.freeze()
    x = torch.rand(1, 1, 2, 2)
    jac = torch.autograd.functional.jacobian(lambda v: glow.encode(v.reshape(1, 1, 2, 2)), x.flatten())
    expected = torch.distributions.Normal(0, 1).log_prob(glow.encode(x)).sum() + torch.slogdet(jac[0])[1]
    assert torch.allclose(glow.log_prob(x), expected.reshape(1), atol=1e-4)


def test_sample_latent_reproducible_and_temperature(tiny_glow):
    glow = tiny_glow
    a = glow.sample_latent(5, torch.Generator().manual_seed(3))
    b = glow.sample_latent(5, torch.Generator().manual_seed(3), temperature=0.5)
    assert a.shape == (5, glow.latent_dim)
    assert torch.allclose(b, a * 0.5)
    assert not torch.equal(a, glow.sample_latent(5, torch.Generator().manual_seed(4)))
    assert torch.isfinite(glow.decode(b)).all()


def test_multiscale_flatten_unflatten_and_squeeze_are_exact():
    glow = _glow((3, 16, 16), levels=2)
    z = glow.sample_latent(3, torch.Generator().manual_seed(0))
    levels = glow.unflatten(z)
    assert [tuple(t.shape[1:]) for t in levels] == [(6, 8, 8), (24, 4, 4)]
    assert torch.equal(glow.flatten(levels), z)
    assert torch.equal(flatten_latents(unflatten_latents(z, glow.level_shapes)), z)
    x = torch.randn(2, 3, 8, 8)
    assert torch.equal(unsqueeze2d(squeeze2d(x)), x)
    with pytest.raises(ValueError, match="latents: expected shape"):
        glow.decode(z[:, :-1])


def test_invconv_inverse_and_logdet():
    conv = InvConv1x1(6)
    x = torch.randn(2, 6, 3, 3)
    y, logdet = conv(x)
    assert torch.allclose(conv.inverse(y), x, atol=1e-5)
    assert torch.allclose(logdet, torch.slogdet(conv.weight())[1].expand(2) * 9, atol=1e-4)


def test_decode_is_differentiable_wrt_latent():
    glow = _glow()
    z = glow.sample_latent(2, torch.Generator().manual_seed(0)).requires_grad_(True)
    glow.decode(z).sum().backward()
    assert z.grad is not None and torch.isfinite(z.grad).all() and z.grad.abs().sum() > 0


def test_save_load_roundtrip(tmp_path):
    glow = _train_briefly(_glow((1, 16, 16), levels=2), _images(8, (1, 16, 16)), iters=3)
    path = tmp_path / "g.safetensors"
    glow.save(path)
    loaded = Glow.load(path)
    assert isinstance(load_generator(path), Glow)
    assert loaded.config() == glow.config() and not loaded.training
    assert not any(p.requires_grad for p in loaded.parameters())
    x = _images(2, (1, 16, 16), seed=5)
    assert torch.equal(loaded.encode(x), glow.encode(x))


def test_frozen_weight_cache_follows_weight_changes():
    a, b = _glow(seed=0), _glow(seed=1)
    z = a.sample_latent(2, torch.Generator().manual_seed(0))
    first = a.decode(z)  # fills the cached 1x1-convolution inverses
    assert torch.equal(a.decode(z), first)
    a.load_state_dict(b.state_dict())  # in-place copies: the cache must notice
    assert torch.equal(a.decode(z), b.decode(z)) and not torch.equal(a.decode(z), first)
    a.requires_grad_(True)  # training again: no cache, gradients reach the weights
    a.decode(z).sum().backward()
    assert a.blocks[0].steps[0].invconv.lower.grad is not None


@pytest.mark.parametrize("min_scale", [0.0, 0.5])
def test_coupling_scale_floor_keeps_decoding_finite(min_scale):
    torch.manual_seed(0)
    glow = Glow((3, 16, 16), levels=2, steps=2, width=8, min_scale=min_scale)
    glow.initialize(_images(8, (3, 16, 16)))
    with torch.no_grad():  # couplings whose raw scale saturates: sigmoid(-98) ~ 1e-43
        for module in glow.modules():
            if hasattr(module, "min_scale") and hasattr(module, "net"):
                module.net[-1].bias[1::2] = -100.0
    glow.freeze()
    out = glow.decode(glow.sample_latent(2, torch.Generator().manual_seed(0)))
    assert bool(torch.isfinite(out).all()) == (min_scale > 0)
    if min_scale > 0:
        x = _images(2, (3, 16, 16), seed=3)
        assert (glow.decode(glow.encode(x)) - x).abs().max() < 1e-4
    with pytest.raises(ValueError, match="min_scale"):
        Glow((3, 16, 16), levels=2, min_scale=1.0)
