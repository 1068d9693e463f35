"""Glow: a multi-scale normalizing flow with an exact, deterministic encoder.

The point of a flow for semantic augmentation (Yueksel et al., ICCV 2021) is exactness: ``decode(encode(x))``
gives ``x`` back, so a latent perturbation of size zero is no perturbation at all. This implementation keeps
every split latent, adds no dequantisation noise at encode time (only the trainer does), and inverts its
``x - 0.5`` preprocessing exactly.
"""

from __future__ import annotations

import math
import os
from typing import Any

import torch
from torch import Tensor, nn

from torch_semaug._checks import (
    assert_shape,
    check_float,
    check_int_at_least,
    check_positive,
    check_rng,
    check_shape,
)
from torch_semaug.generators.base import LatentGenerator
from torch_semaug.generators.glow_layers import (
    FlowStep,
    GaussianPrior,
    squeeze2d,
    standard_normal_logp,
    unsqueeze2d,
)
from torch_semaug.generators.io import load_generator, register_generator, save_generator
from torch_semaug.generators.latents import flatten_latents, straight_through_clamp, unflatten_latents


class GlowLevel(nn.Module):
    """Squeeze, ``steps`` flow steps, then split half of the channels off (except at the top level)."""

    def __init__(
        self, channels: int, spatial: tuple[int, int], steps: int, width: int, split: bool, min_scale: float
    ) -> None:
        super().__init__()
        self.steps = nn.ModuleList(FlowStep(channels, width, min_scale) for _ in range(steps))
        self.split = split
        kept = channels // 2 if split else 0
        self.prior = GaussianPrior(kept, channels - kept, spatial)
        self.kept = kept

    def forward(self, x: Tensor) -> tuple[Tensor | None, Tensor, Tensor]:
        """Squeezed ``x`` -> (input of the next level, None at the top; standardised latent; log-det)."""
        logdet = torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)
        for step in self.steps:
            x, ld = step(x)
            logdet = logdet + ld
        h, z = (x[:, : self.kept], x[:, self.kept :]) if self.split else (None, x)
        eps, ld = self.prior.standardize(z, h)
        return h, eps, logdet + ld

    def inverse(self, h: Tensor | None, eps: Tensor) -> Tensor:
        z = self.prior.unstandardize(eps, h)
        x = torch.cat([h, z], dim=1) if self.split else z
        for step in reversed(self.steps):
            x = step.inverse(x)
        return x


@register_generator("glow")
class Glow(LatentGenerator):
    """Multi-scale Glow (Kingma & Dhariwal, 2018) for 1- or 3-channel images in ``[0, 1]``.

    Architecture: ``levels`` times (squeeze, ``steps`` x [actnorm, invertible 1x1 conv in LU form, affine
    coupling with scale ``m + (1 - m) sigmoid(s + 2)``], split with a learned conditional Gaussian prior), a learned
    prior on the top level. The latent is the concatenation of every level's *standardised* latent
    ``(z - mean) / std`` under its prior, flat ``(B, D)`` with ``D = C * H * W``: under the model it is
    N(0, I), so eps balls are isotropic across scales.

    Args:
        image_shape: ``(C, H, W)`` with ``C`` 1 or 3 and ``H``, ``W`` divisible by ``2 ** levels``.
        levels: number of scales (squeeze + steps + split).
        steps: flow steps per level.
        width: hidden channels of each coupling network.
        n_bits: bits per colour channel of the data (8 for ordinary images), used by bits/dim.
        min_scale: floor ``m`` of the coupling scales ``m + (1 - m) * sigmoid(raw + 2)``, in ``[0, 1)``;
            it bounds how much decoding can amplify a perturbed latent (see ``AffineCoupling``).

    Example:
        >>> glow = Glow((3, 32, 32), levels=3, steps=8, width=128)
        >>> z = glow.encode(images)                # (B, 3072), deterministic
        >>> torch.allclose(glow.decode(z), images, atol=1e-4)
        True
    """

    image_range = (0.0, 1.0)

    def __init__(
        self,
        image_shape: tuple[int, int, int] = (3, 32, 32),  # (C, H, W) of the images
        levels: int = 3,                                  # scales; H and W divisible by 2**levels
        steps: int = 8,                                   # flow steps per level
        width: int = 128,                                 # hidden channels of the coupling networks
        n_bits: int = 8,                                  # bits per colour channel of the data
        min_scale: float = 0.5,                           # floor of the coupling scales (stable inverse)
    ) -> None:
        super().__init__()
        c, h, w = check_shape(image_shape, "image_shape", length=3)
        check_int_at_least(levels, 1, "levels")
        check_int_at_least(steps, 1, "steps")
        check_int_at_least(width, 1, "width")
        check_int_at_least(n_bits, 1, "n_bits")
        if not isinstance(min_scale, int | float) or not 0.0 <= min_scale < 1.0:
            raise ValueError(f"min_scale: expected a number in [0, 1), got {min_scale!r}")
        if c not in (1, 3):
            raise ValueError(f"image_shape: expected 1 or 3 channels, got {c}")
        if h % 2**levels or w % 2**levels:
            raise ValueError(
                f"image_shape: height and width must be divisible by 2**levels = {2**levels} "
                f"(levels={levels}), got {h}x{w}; use fewer levels or resize the images"
            )
        self.image_shape = (c, h, w)
        self.levels, self.steps, self.width, self.n_bits = levels, steps, width, n_bits
        self.min_scale = float(min_scale)
        self.blocks = nn.ModuleList()
        shapes = []
        for level in range(levels):
            c, h, w = c * 4, h // 2, w // 2
            split = level < levels - 1
            self.blocks.append(GlowLevel(c, (h, w), steps, width, split, self.min_scale))
            shapes.append((c - c // 2 if split else c, h, w))
            if split:
                c = c // 2
        self.level_shapes: list[tuple[int, int, int]] = shapes
        self.latent_shape = (sum(int(torch.Size(s).numel()) for s in shapes),)

    # -- the generator contract --------------------------------------------------------------------

    def encode(self, images: Tensor) -> Tensor:
        """Images ``(B, C, H, W)`` in ``[0, 1]`` -> standardised latents ``(B, D)``, deterministically."""
        self.check_images(images)
        return self._forward(images)[0]

    def decode(self, latents: Tensor) -> Tensor:
        """Latents ``(B, D)`` -> images in ``[0, 1]``, the exact inverse of :meth:`encode`.

        No log-determinant is computed on this path (it is what every attack step runs). Values outside
        ``[0, 1]`` (far from the data) are clamped with a straight-through gradient.
        """
        levels = self.unflatten(self.check_latent(latents, finite=False))
        x: Tensor | None = None
        for block, eps in zip(reversed(self.blocks), reversed(levels)):
            x = unsqueeze2d(block.inverse(x, eps))
        return straight_through_clamp(x + 0.5, 0.0, 1.0)

    def sample_latent(
        self, n: int, generator: torch.Generator | None = None, temperature: float = 1.0
    ) -> Tensor:
        """``n`` latents from the learned prior at ``temperature`` (the std of the standardised latent)."""
        check_int_at_least(n, 0, "n")
        check_rng(generator, "generator")
        check_positive(temperature, "temperature")
        device = generator.device if generator is not None else self.device
        eps = torch.randn((n, *self.latent_shape), generator=generator, device=device, dtype=self.dtype)
        return eps.to(self.device) * temperature

    # -- likelihood -----------------------------------------------------------------------------------

    def log_prob(self, images: Tensor) -> Tensor:
        """Continuous log density ``(B,)`` of images in ``[0, 1]`` (nats; differentiable)."""
        self._check_batch(images)
        latents, logdet = self._forward(images)
        return standard_normal_logp(latents) + logdet

    def bits_per_dim(self, images: Tensor) -> Tensor:
        """``(B,)`` bits per dimension of the discrete images, ``-log2 p(x) / D`` with ``2 ** n_bits`` bins.

        Pass dequantised images (``(k + u) / 2**n_bits`` with ``u ~ U[0, 1)``) for the usual unbiased
        upper bound on the discrete negative log-likelihood.
        """
        dims = math.prod(self.image_shape)
        nll = -self.log_prob(images) + dims * math.log(2**self.n_bits)
        return nll / (dims * math.log(2))

    @torch.no_grad()
    def initialize(self, images: Tensor) -> None:
        """Data-dependent initialisation of every actnorm layer from one batch (the trainer calls it)."""
        self._check_batch(images)
        training = self.training
        self.train()
        self._forward(images)
        self.train(training)

    def _check_batch(self, images: object) -> None:
        """Shape and dtype only: dequantised training images may exceed ``[0, 1]`` by one bin."""
        assert_shape(images, (None, *self.image_shape), "images")
        check_float(images, "images")

    def _forward(self, images: Tensor) -> tuple[Tensor, Tensor]:
        x = images - 0.5
        logdet = torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)
        latents = []
        for block in self.blocks:
            x, eps, ld = block(squeeze2d(x))
            latents.append(eps)
            logdet = logdet + ld
        return flatten_latents(latents), logdet

    # -- multi-scale latents --------------------------------------------------------------------------

    def unflatten(self, latents: Tensor) -> list[Tensor]:
        """Flat ``(B, D)`` -> one standardised latent per level, shapes :attr:`level_shapes`."""
        return unflatten_latents(latents, self.level_shapes)

    def flatten(self, levels: list[Tensor]) -> Tensor:
        """Inverse of :meth:`unflatten`."""
        return flatten_latents(levels)

    # -- persistence ----------------------------------------------------------------------------------

    def config(self) -> dict[str, Any]:
        return dict(
            image_shape=list(self.image_shape), levels=self.levels, steps=self.steps, width=self.width,
            n_bits=self.n_bits, min_scale=self.min_scale,
        )

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Glow:
        config = dict(config)
        config["image_shape"] = tuple(config["image_shape"])
        return cls(**config)

    def save(self, path: str | os.PathLike[str], **extra: str) -> None:
        """Write weights and config to a ``.safetensors`` file atomically (see :func:`save_generator`)."""
        save_generator(self, path, **extra)

    @classmethod
    def load(cls, path: str | os.PathLike[str], device: str | torch.device = "cpu") -> Glow:
        """Load a frozen Glow saved by :meth:`save`."""
        return load_generator(path, kind="glow", device=device)  # type: ignore[return-value]

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, levels={self.levels}, steps={self.steps}, width={self.width}"
