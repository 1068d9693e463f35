"""Shared fixtures: the device and dtype tests run on, and tiny seeded generators and a classifier.

Every model here is small (16 px, a few thousand weights), seeded, and built on CPU, so a test that takes
one stays fast and offline. The factories are plain functions as well, for modules that build models at
import time (``tests/contract_cases.py``): ``from tests.conftest import make_tiny_stylegan2``.

Module-scoped fixtures are shared by the tests of one file: a test that changes a model's weights builds
its own with the factory instead.
"""

from __future__ import annotations

import functools
from typing import Any

import pytest
import torch
from torch import nn

from tests.flow_factories import tiny_glow as make_tiny_glow
from torch_semaug.generators import Glow, IdentityGenerator, StyleGAN2

#: The tiny StyleGAN2: 16 px, 6 W+ layers of 16 dimensions, 16 feature maps at every resolution.
TINY_STYLEGAN2: dict[str, Any] = dict(z_dim=16, w_dim=16, mapping_layers=2, channel_base=256, channel_max=16)


def make_tiny_stylegan2(resolution: int = 16, seed: int = 0, **overrides: Any) -> StyleGAN2:
    """A frozen, randomly initialised tiny StyleGAN2; ``overrides`` replace entries of ``TINY_STYLEGAN2``.

    The global RNG is left as it was: the seed only decides the weights.
    """
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return StyleGAN2(resolution, **{**TINY_STYLEGAN2, **overrides}).freeze()


#: Read-only tiny models built once per session, for modules that build many cases at import time (the
#: bad-input tables): never modify them.
shared_tiny_stylegan2 = functools.cache(make_tiny_stylegan2)
shared_tiny_glow = functools.cache(make_tiny_glow)


@pytest.fixture
def device() -> torch.device:
    """The device tests run on: the CPU (tests are offline and accelerator-free)."""
    return torch.device("cpu")


@pytest.fixture
def dtype() -> torch.dtype:
    """The floating dtype tests run in."""
    return torch.float32


@pytest.fixture(scope="module")
def tiny_stylegan2() -> StyleGAN2:
    """The tiny StyleGAN2 of ``make_tiny_stylegan2()`` (seed 0), shared by one test module."""
    return make_tiny_stylegan2()


@pytest.fixture(scope="module")
def tiny_glow() -> Glow:
    """A tiny Glow on ``(3, 16, 16)`` (2 levels, 1 step, width 8) with initialised actnorm layers."""
    return make_tiny_glow()


@pytest.fixture
def identity_generator() -> IdentityGenerator:
    """The identity generator on ``(3, 16, 16)`` images in ``[0, 1]``: latent attacks become pixel PGD."""
    return IdentityGenerator((3, 16, 16))


@pytest.fixture
def tiny_classifier() -> nn.Module:
    """A seeded 5-class classifier of ``(3, 16, 16)`` images with BatchNorm and Dropout, in eval mode."""
    from tests.contract_cases import make_classifier

    return make_classifier().eval()
