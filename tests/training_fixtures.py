"""Test-only building blocks for the data / training tests: a tiny generator with an encoder, a random-mode
transform, and a synthetic ImageFolder written to disk."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor, nn

from torch_semaug.generators import LatentGenerator
from torch_semaug.generators import io as generator_io
from torch_semaug.transforms import MoveContext, SemanticTransform
from torch_semaug.transforms import registry as transform_registry


class TinyLinearGenerator(LatentGenerator):
    """A linear encoder/decoder pair with a sigmoid output: a non-identity latent with weights to hash."""

    def __init__(self, image_shape: tuple[int, int, int] = (3, 8, 8), latent_dim: int = 6, seed: int = 0) -> None:
        super().__init__()
        self.image_shape = tuple(image_shape)
        self.image_range = (0.0, 1.0)
        self.latent_shape = (latent_dim,)
        self.seed = seed
        torch.manual_seed(seed)
        pixels = int(np.prod(image_shape))
        self.enc = nn.Linear(pixels, latent_dim)
        self.dec = nn.Linear(latent_dim, pixels)
        self.freeze()

    def config(self) -> dict[str, Any]:
        return {"image_shape": list(self.image_shape), "latent_dim": self.latent_shape[0], "seed": self.seed}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> TinyLinearGenerator:
        return cls(tuple(config["image_shape"]), config["latent_dim"], config["seed"])

    def encode(self, images: Tensor) -> Tensor:
        return self.enc(images.flatten(1))

    def decode(self, latents: Tensor) -> Tensor:
        return torch.sigmoid(self.dec(latents)).view(-1, *self.image_shape)

    def sample_latent(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        return torch.randn(n, *self.latent_shape, generator=generator, device=self.device)


class RandomNudge(SemanticTransform):
    """A random-mode transform: add Gaussian noise of scale ``eps`` to the latent."""

    modes = ("random",)
    random_modes = ("random",)

    def __init__(self, generator: LatentGenerator, model: nn.Module | None = None, *, eps: float = 0.1,
                 mode: str = "random", p: float = 1.0, mean: Any = None, std: Any = None,
                 rng: torch.Generator | None = None) -> None:
        super().__init__(generator, model=model, mode=mode, p=p, mean=mean, std=std, rng=rng)
        self.eps = eps

    def _move(self, latents: Tensor, labels: Tensor | None, ctx: MoveContext) -> Tensor:
        noise = torch.randn(latents.shape, generator=ctx.rng, device=ctx.rng.device if ctx.rng else latents.device)
        return latents + self.eps * noise.to(latents.device)


@contextmanager
def registered(transform_name: str = "test_random_nudge", generator_kind: str = "test_tiny_linear") -> Iterator[None]:
    """Register the test transform and generator kind for the duration of a test, then remove them."""
    transform_registry.register_transform(transform_name)(RandomNudge)
    generator_io.register_generator(generator_kind)(TinyLinearGenerator)
    try:
        yield
    finally:
        transform_registry._TRANSFORMS._classes.pop(transform_name, None)
        generator_io._KINDS._classes.pop(generator_kind, None)


def make_image_folder(root: Path, per_class: int = 6, classes: int = 2, size: int = 8, seed: int = 0,
                      splits: tuple[str, ...] = ("train", "test")) -> Path:
    """Write ``root/<split>/<class>/<i>.png``; class c images are bright in channel c (learnable)."""
    rng = np.random.default_rng(seed)
    for split in splits:
        for c in range(classes):
            folder = root / split / f"class{c}"
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(per_class):
                pixels = rng.integers(0, 90, size=(size, size, 3), dtype=np.uint8)
                pixels[..., c % 3] += 150
                Image.fromarray(pixels).save(folder / f"{i:03d}.png")
    return root
