"""The contract every generator keeps (docs/architecture.md, "The generator contract").

Each test runs once per entry of ``contract_cases.GENERATOR_CASES``.
"""

from __future__ import annotations

import pytest
import torch

from tests.contract_cases import GENERATOR_CASES, GeneratorCase
from torch_semaug.generators import EncoderMissingError, load_generator, save_generator

CASES = pytest.mark.parametrize("case", GENERATOR_CASES, ids=[c.id for c in GENERATOR_CASES])


def _images(case: GeneratorCase, generator, n: int) -> torch.Tensor:
    if case.images is not None:
        return case.images(n)
    with torch.no_grad():
        return generator.decode(generator.sample_latent(n, torch.Generator().manual_seed(5)))


@CASES
def test_frozen_after_freeze(case: GeneratorCase) -> None:
    generator = case.make().freeze()
    assert not generator.training
    assert not any(p.requires_grad for p in generator.parameters())


@CASES
def test_sample_latent_is_reproducible_and_decodes_in_range(case: GeneratorCase, device, dtype) -> None:
    generator = case.make().freeze().to(device)
    z1 = generator.sample_latent(3, torch.Generator().manual_seed(1))
    z2 = generator.sample_latent(3, torch.Generator().manual_seed(1))
    z3 = generator.sample_latent(3, torch.Generator().manual_seed(2))
    assert z1.shape == (3, *generator.latent_shape) and z1.device == device and z1.dtype == dtype
    assert torch.equal(z1, z2) and not torch.equal(z1, z3)
    with torch.no_grad():
        images = generator.decode(z1)
    assert images.shape == (3, *generator.image_shape) and images.device == device and images.dtype == dtype
    assert torch.isfinite(images).all()
    low, high = generator.image_range
    assert images.min() >= low - 1e-4 and images.max() <= high + 1e-4


@CASES
def test_decode_is_differentiable_in_the_latent(case: GeneratorCase) -> None:
    generator = case.make().freeze()
    z = generator.sample_latent(2, torch.Generator().manual_seed(0)).requires_grad_(True)
    (grad,) = torch.autograd.grad(generator.decode(z).square().sum(), z)
    assert grad.shape == z.shape and grad.abs().sum() > 0


@CASES
def test_batched_decode_matches_per_example(case: GeneratorCase) -> None:
    generator = case.make().freeze()
    z = generator.sample_latent(3, torch.Generator().manual_seed(4))
    with torch.no_grad():
        batched = generator.decode(z)
        single = torch.cat([generator.decode(z[i : i + 1]) for i in range(3)])
    assert torch.allclose(batched, single, atol=1e-5)


@CASES
def test_encode_round_trip_or_clear_error(case: GeneratorCase) -> None:
    generator = case.make().freeze()
    images = _images(case, generator, 3)
    if not case.exact_encode:
        try:
            generator.encode(images)
        except EncoderMissingError as error:
            assert "encoder" in str(error)
        return
    with torch.no_grad():
        latents = generator.encode(images)
        assert latents.shape == (3, *generator.latent_shape)
        restored = generator.decode(latents)
    assert (restored - images).abs().max() <= case.round_trip_tol


@CASES
def test_check_latent_names_the_argument(case: GeneratorCase) -> None:
    generator = case.make()
    with pytest.raises(ValueError, match="latents: expected shape"):
        generator.check_latent(torch.zeros(2, generator.latent_dim + 1))
    bad = generator.sample_latent(1)
    bad.view(-1)[0] = float("inf")
    with pytest.raises(ValueError, match="latents: expected finite"):
        generator.check_latent(bad)


@CASES
def test_save_load_round_trip(case: GeneratorCase, tmp_path) -> None:
    generator = case.make().freeze()
    if not hasattr(generator, "generator_kind"):
        pytest.skip(f"{type(generator).__name__} has no checkpoint format of its own")
    path = tmp_path / "g.safetensors"
    save_generator(generator, path)
    loaded = load_generator(path)
    z = generator.sample_latent(2, torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.allclose(loaded.decode(z), generator.decode(z), atol=1e-6)
    assert not any(p.requires_grad for p in loaded.parameters())
