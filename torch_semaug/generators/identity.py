"""The identity generator: latent == image, which turns every latent attack into pixel-space PGD."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from torch_semaug._checks import check_choice, check_int_at_least, check_range, check_rng, check_shape
from torch_semaug.generators.base import LatentGenerator
from torch_semaug.generators.io import register_generator


@register_generator("identity")
class IdentityGenerator(LatentGenerator):
    """A generator whose latent is the image itself.

    With it, :class:`~torch_semaug.AdversarialLatentAttack` is exactly the classic pixel-space PGD
    adversarial-training baseline of the papers (Madry et al.): step, project onto the eps-ball, clip to
    the valid range. ``latent_bounds`` equals ``image_range``, so every iterate stays a valid image.

    Args:
        image_shape: ``(C, H, W)`` of the images.
        image_range: value range of the images, e.g. ``(0.0, 1.0)``.
        prior: what :meth:`sample_latent` draws: ``"uniform"`` images over ``image_range``.
    """

    def __init__(
        self,
        image_shape: tuple[int, int, int],                # (C, H, W) of the images
        image_range: tuple[float, float] = (0.0, 1.0),    # value range of images and latents alike
        prior: str = "uniform",                           # distribution sample_latent draws from
    ) -> None:
        super().__init__()
        self.image_shape = check_shape(image_shape, "image_shape", length=3)  # type: ignore[assignment]
        # finite: sample_latent draws uniformly over the range
        self.image_range = check_range(image_range, "image_range")
        check_choice(prior, ["uniform"], "prior")
        self.latent_shape = self.image_shape
        self.latent_bounds = self.image_range
        self.prior = prior
        # Parameter-free: an empty buffer lets .to(device) and .device work as for any generator.
        self.register_buffer("_device_anchor", torch.empty(0), persistent=False)

    def config(self) -> dict[str, Any]:
        return {"image_shape": list(self.image_shape), "image_range": list(self.image_range), "prior": self.prior}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> IdentityGenerator:
        return cls(tuple(config["image_shape"]), tuple(config["image_range"]), config["prior"])

    def decode(self, latents: Tensor) -> Tensor:
        return self.check_latent(latents)

    def encode(self, images: Tensor) -> Tensor:
        return self.check_images(images)

    def sample_latent(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        check_int_at_least(n, 0, "n")
        check_rng(generator, "generator")
        low, high = self.image_range
        noise = torch.rand((n, *self.latent_shape), generator=generator, device=self.device)
        return low + (high - low) * noise
