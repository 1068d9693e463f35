"""normflows / FrEIA adapters: exact multi-scale round trips, prior draws, bad input."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from tests.flow_factories import freia_graph, normflows_multiscale, perturb, smooth_images
from torch_semaug.generators import LatentGenerator
from torch_semaug.generators.adapters import from_freia, from_normflows

nf = pytest.importorskip("normflows")
Ff = pytest.importorskip("FrEIA.framework")
Fm = pytest.importorskip("FrEIA.modules")


def _check_round_trip(gen: LatentGenerator, x: torch.Tensor, atol: float = 1e-4) -> torch.Tensor:
    z = gen.encode(x)
    assert z.shape == (x.shape[0], gen.latent_dim) and gen.latent_shape == (gen.latent_dim,)
    assert (gen.decode(z) - x).abs().max() < atol
    assert torch.equal(gen.encode(x), z)
    return z


def test_normflows_multiscale_round_trip_and_levels():
    model = normflows_multiscale(transform=nf.transforms.Shift())
    gen = from_normflows(model, (3, 16, 16))
    assert not model.training and not any(p.requires_grad for p in model.parameters())
    assert gen.level_shapes == [(24, 4, 4), (6, 8, 8)]
    x = smooth_images(4, seed=1)
    x_before = x.clone()
    z = _check_round_trip(gen, x)
    assert torch.equal(x, x_before)  # normflows' in-place Shift does not touch the caller's tensor
    # the flat latent is exactly the library's per-level latents, in model.q0 order
    levels, _ = model.inverse_and_log_det(x.clone())
    assert torch.equal(z, torch.cat([t.flatten(1) for t in levels], 1))


def test_normflows_decode_differentiable_and_prior_reproducible():
    gen = from_normflows(normflows_multiscale(), (3, 16, 16))
    torch.manual_seed(123)
    state = torch.get_rng_state()
    a = gen.sample_latent(3, torch.Generator().manual_seed(5))
    assert torch.equal(torch.get_rng_state(), state)  # the global stream is left alone
    assert torch.equal(a, gen.sample_latent(3, torch.Generator().manual_seed(5)))
    assert not torch.equal(a, gen.sample_latent(3, torch.Generator().manual_seed(6)))
    z = a.clone().requires_grad_(True)
    gen.decode(z).square().sum().backward()
    assert z.grad is not None and torch.isfinite(z.grad).all()


def test_normflows_plain_flow_with_flat_input():
    torch.manual_seed(0)
    flows = []
    for i in range(4):
        net = nf.nets.MLP([8, 16, 16], init_zeros=False)
        flows += [nf.flows.AffineCouplingBlock(net), nf.flows.Permute(16, mode="swap" if i % 2 else "shuffle")]
    model = nf.NormalizingFlow(nf.distributions.DiagGaussian(16), flows)
    gen = from_normflows(model, (1, 4, 4), input_shape=(16,))
    z = _check_round_trip(gen, smooth_images(5, (1, 4, 4)))
    assert z.shape == (5, 16)
    assert gen.sample_latent(2, torch.Generator().manual_seed(0)).shape == (2, 16)


def test_freia_graph_multiscale_round_trip():
    inn = freia_graph()
    gen = from_freia(inn, (3, 16, 16))
    assert gen.level_shapes == [(24, 4, 4), (6, 8, 8)]
    x = smooth_images(4, seed=2)
    z = _check_round_trip(gen, x)
    outs, _ = inn(x)
    assert torch.equal(z, torch.cat([outs[0].flatten(1), outs[1].flatten(1)], 1))
    s = gen.sample_latent(2, torch.Generator().manual_seed(0))
    assert torch.equal(s, gen.sample_latent(2, torch.Generator().manual_seed(0)))


def test_freia_sequence_round_trip():
    torch.manual_seed(0)
    inn = Ff.SequenceINN(1, 8, 8)
    inn.append(Fm.HaarDownsampling)
    for _ in range(2):
        inn.append(Fm.AllInOneBlock, subnet_constructor=lambda i, o: nn.Conv2d(i, o, 3, padding=1))
    perturb(inn)
    gen = from_freia(inn, (1, 8, 8))
    _check_round_trip(gen, smooth_images(3, (1, 8, 8)))
