"""How images travel between the classifier's space and a generator's range, and back."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import kornia
import numpy as np
import torch
from torch import Tensor

from torch_semaug._checks import describe
from torch_semaug.generators.latents import straight_through_clamp

ImageMap = Callable[[Tensor], Tensor]


def _is_finite_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _channel_stats(value: object, name: str) -> tuple[float, ...] | None:
    """``mean``/``std`` as a tuple of floats: a number, a sequence, a numpy array or a tensor of numbers."""
    if value is None:
        return None
    if isinstance(value, Tensor | np.ndarray):
        if value.ndim > 1:
            raise ValueError(f"{name}: expected a number or one number per channel (1-D), got {describe(value)}")
        value = value.tolist()
    values = (value,) if isinstance(value, int | float) else tuple(value) if isinstance(value, Sequence) else None
    if not values or not all(_is_finite_number(v) for v in values):
        raise ValueError(f"{name}: expected a finite number or one finite number per channel, got {value!r}")
    return tuple(float(v) for v in values)


def _channel_view(values: Sequence[float], like: Tensor) -> Tensor:
    return torch.as_tensor(values, dtype=like.dtype, device=like.device).view(1, -1, 1, 1)


def resize(images: Tensor, size: Sequence[int]) -> Tensor:
    """Bilinear, antialiased resize to ``size`` (a no-op when the size already matches)."""
    if tuple(images.shape[-2:]) == tuple(size):
        return images
    return kornia.geometry.transform.resize(images, tuple(size), interpolation="bilinear", antialias=True)


class ImageSpace:
    """The classifier's image space: ``[0, 1]`` images, optionally normalised by ``mean``/``std``.

    Args:
        mean: per-channel mean of the classifier's normalisation (``None``: images in ``[0, 1]``).
        std: per-channel std of the classifier's normalisation.
        to_generator: custom map from classifier-space images to the generator's range (overrides
            ``mean``/``std``).
        from_generator: its inverse (required with ``to_generator``).
    """

    def __init__(
        self,
        mean: float | Sequence[float] | None = None,
        std: float | Sequence[float] | None = None,
        to_generator: ImageMap | None = None,
        from_generator: ImageMap | None = None,
    ) -> None:
        self.mean = _channel_stats(mean, "mean")
        self.std = _channel_stats(std, "std")
        if (self.mean is None) != (self.std is None):
            raise ValueError(f"std: mean and std go together, pass both or neither; got mean={mean!r}, std={std!r}")
        if self.std is not None and any(s <= 0 for s in self.std):
            raise ValueError(f"std: expected values > 0, got {std!r}")
        if (to_generator is None) != (from_generator is None):
            raise ValueError("from_generator: to_generator and from_generator go together, pass both maps or neither")
        self.to_generator_fn = to_generator
        self.from_generator_fn = from_generator

    def check_channels(self, channels: int, generator_name: str) -> None:
        """Raise unless ``mean``/``std`` have 1 or ``channels`` values (one per channel of the images)."""
        for name, values in (("mean", self.mean), ("std", self.std)):
            if values is not None and len(values) not in (1, channels):
                raise ValueError(
                    f"{name}: expected 1 or {channels} values (one per channel of the {generator_name}'s "
                    f"{channels}-channel images), got {len(values)}: {values}"
                )

    def to_generator(self, images: Tensor, image_range: tuple[float, float], size: Sequence[int]) -> Tensor:
        """Classifier-space images -> the generator's range and resolution (not clamped)."""
        if self.to_generator_fn is not None:
            images = self.to_generator_fn(images)
        else:
            if self.mean is not None:
                images = images * _channel_view(self.std, images) + _channel_view(self.mean, images)
            low, high = image_range
            images = low + (high - low) * images
        return resize(images, size)

    def to_classifier(
        self, gen_images: Tensor, image_range: tuple[float, float], size: Sequence[int], dtype: torch.dtype
    ) -> Tensor:
        """Generator output -> clamped to its range (straight-through), resized, in the classifier's space."""
        low, high = image_range
        gen_images = resize(straight_through_clamp(gen_images, low, high), size)
        if self.from_generator_fn is not None:
            return self.from_generator_fn(gen_images).to(dtype)
        # (g - low) / (high - low), then (x - mean) / std, folded into one affine map (none if identity).
        mean = self.mean or (0.0,)
        std = self.std or (1.0,)
        scale = [1.0 / ((high - low) * s) for s in std]
        shift = [-(low / (high - low) + m) / s for m, s in zip(mean, std)]
        if any(v != 1.0 for v in scale) or any(v != 0.0 for v in shift):
            gen_images = torch.addcmul(_channel_view(shift, gen_images), gen_images, _channel_view(scale, gen_images))
        return gen_images.to(dtype)
