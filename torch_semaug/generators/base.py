"""The contract every generative model in torch_semaug fulfils (described in ``docs/architecture.md``,
"The generator contract"; held by ``tests/test_generator_contract.py``)."""

from __future__ import annotations

from typing import TypeVar

import torch
from torch import Tensor, nn

from torch_semaug._checks import assert_shape, check_finite, check_float, check_tensor, describe

_G = TypeVar("_G", bound="LatentGenerator")


class EncoderMissingError(RuntimeError):
    """Raised by ``encode`` on a generator that has no way to map images to latents."""


class LatentGenerator(nn.Module):
    """A frozen generative model with an addressable latent space.

    Subclasses set the three shape attributes in ``__init__`` and implement :meth:`decode` and
    :meth:`sample_latent`; those with an exact inverse (flows) or an attached encoder implement
    :meth:`encode`. Every method works on batches and keeps the latent's device.

    Attributes:
        image_shape: ``(C, H, W)`` of the images :meth:`decode` returns.
        image_range: ``(low, high)`` of those images: ``(-1, 1)`` for StyleGAN2, ``(0, 1)`` for flows.
        latent_shape: shape of one example's latent, without the batch dimension.
        latent_bounds: ``(low, high)`` that every latent entry must stay within, or ``None`` if the
            latent is unbounded. Attacks clip every iterate to it.
    """

    image_shape: tuple[int, int, int]
    image_range: tuple[float, float]
    latent_shape: tuple[int, ...]
    latent_bounds: tuple[float, float] | None = None

    def decode(self, latents: Tensor) -> Tensor:
        """Map latents ``(B, *latent_shape)`` to images ``(B, *image_shape)`` in ``image_range``.

        Differentiable with respect to ``latents``.
        """
        raise NotImplementedError(f"{type(self).__name__} does not implement decode()")

    def encode(self, images: Tensor) -> Tensor:
        """Map images ``(B, *image_shape)`` in ``image_range`` to latents ``(B, *latent_shape)``."""
        raise EncoderMissingError(
            f"{type(self).__name__} cannot encode images: attach an encoder (see "
            "torch_semaug.generators.encoders) or pass precomputed latents with latents=..."
        )

    def sample_latent(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """Draw ``n`` latents from the prior, reproducibly under ``generator``."""
        raise NotImplementedError(f"{type(self).__name__} does not implement sample_latent()")

    @property
    def device(self) -> torch.device:
        """Device of the first parameter or buffer (CPU for a parameter-free generator)."""
        for tensor in self.parameters():
            return tensor.device
        for tensor in self.buffers():
            return tensor.device
        return torch.device("cpu")

    @property
    def dtype(self) -> torch.dtype:
        """Floating dtype of the first parameter or buffer (float32 for a parameter-free generator)."""
        for tensor in list(self.parameters()) + list(self.buffers()):
            if tensor.is_floating_point():
                return tensor.dtype
        return torch.float32

    @property
    def latent_dim(self) -> int:
        """Number of entries in one example's latent."""
        return int(torch.Size(self.latent_shape).numel())

    def freeze(self: _G) -> _G:
        """Put the generator in eval mode and turn off gradients of all its parameters."""
        self.eval()
        self.requires_grad_(False)
        return self

    def check_latent(self, latents: object, name: str = "latents", finite: bool = True) -> Tensor:
        """Raise a clear error unless ``latents`` is a float batch of ``latent_shape`` (finite, if ``finite``).

        Flows pass ``finite=False``: a non-finite latent decodes to a non-finite image, which transforms
        detect and handle per example.
        """
        latents = check_tensor(latents, name)
        if tuple(latents.shape[1:]) != tuple(self.latent_shape) or latents.ndim != len(self.latent_shape) + 1:
            raise ValueError(
                f"{name}: expected shape (B, {', '.join(map(str, self.latent_shape))}) for "
                f"{type(self).__name__}, got {tuple(latents.shape)}"
            )
        check_float(latents, name)
        if finite:
            check_finite(latents, name)
        return latents

    def check_images(self, images: object, name: str = "images", tolerance: float = 1e-3) -> Tensor:
        """Raise a clear error unless ``images`` is a finite batch of ``image_shape`` in ``image_range``."""
        images = check_tensor(images, name)
        assert_shape(images, (None, *self.image_shape), name)
        check_float(images, name)
        check_finite(images, name)
        low, high = self.image_range
        if images.numel() and (images.min() < low - tolerance or images.max() > high + tolerance):
            raise ValueError(
                f"{name}: expected values in the generator's range [{low}, {high}], got "
                f"[{float(images.min()):.4g}, {float(images.max()):.4g}]"
            )
        return images

    def extra_repr(self) -> str:
        return (
            f"image_shape={self.image_shape}, image_range={self.image_range}, "
            f"latent_shape={self.latent_shape}"
        )


def as_generator(value: object, name: str = "generator") -> LatentGenerator:
    """Raise ``TypeError`` unless ``value`` is a :class:`LatentGenerator`."""
    if not isinstance(value, LatentGenerator):
        raise TypeError(
            f"{name}: expected a torch_semaug LatentGenerator (StyleGAN2, Glow, IdentityGenerator, or an "
            f"adapter from torch_semaug.generators), got {describe(value)}"
        )
    return value
