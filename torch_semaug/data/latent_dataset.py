"""LatentDataset: a map-style dataset that serves each sample together with its cached latent."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from torch_semaug._checks import describe
from torch_semaug.data.latent_cache import LatentCache
from torch_semaug.generators.base import LatentGenerator


class LatentDataset(Dataset):
    """Wrap ``base`` so that it yields ``(image, label, latent)`` (and the index with ``return_index``).

    Batch transforms then receive the cached latents (``t(x, y, latents=z)``) and never re-invert an
    image. Default collate stacks the latents; with ``num_workers > 0`` each worker maps the cache file
    itself. The cache is checked against ``base`` (length and a hash of a few samples) and, when given,
    against ``generator`` at construction, so a cache built for other data or another generator is refused
    before training. Only the generator counts, not the encoder that produced the latents: a generator
    loaded without its encoder accepts a cache built through one.

    Args:
        base: the map-style dataset the cache was built from, yielding ``(image, label)``.
        latents: a :class:`LatentCache`, the path of one, or a ``(N, *latent_shape)`` tensor.
        return_index: also yield the sample's index (for per-example state such as adaptive eps).
        generator: the generator whose latent space the cache must hold (checked if given).
        verify: check the cache's dataset fingerprint against ``base`` (turn off only for a ``base``
            with random transforms whose deterministic view you have checked yourself).

    Example:
        >>> ds = LatentDataset(CIFAR10(root, transform=ToTensor()), "latents/cifar10-train")
        >>> for x, y, z in DataLoader(ds, batch_size=128, num_workers=4):
        ...     x, y = transform(x, y, latents=z)
    """

    def __init__(
        self,
        base: Dataset,                                     # the dataset the cache was built from
        latents: LatentCache | str | os.PathLike[str] | Tensor,  # cache, its directory, or a tensor
        *,
        return_index: bool = False,                        # also yield the sample index
        generator: LatentGenerator | None = None,          # check the cache holds this generator's latents
        verify: bool = True,                               # check the cache against base's samples
    ) -> None:
        if not hasattr(base, "__getitem__") or not hasattr(base, "__len__"):
            raise TypeError(f"base: expected a map-style dataset (with __getitem__ and __len__), got {describe(base)}")
        if isinstance(latents, str | os.PathLike):
            latents = LatentCache.open(latents)
        if isinstance(latents, LatentCache):
            if verify:
                latents.check_dataset(base, "latents")
            if generator is not None:
                latents.check_generator(generator, "latents")
        elif isinstance(latents, Tensor):
            if latents.ndim < 2 or latents.shape[0] != len(base):  # type: ignore[arg-type]
                raise ValueError(
                    f"latents: expected a tensor with one row per sample ({len(base)}), got {describe(latents)}"  # type: ignore[arg-type]
                )
        else:
            raise TypeError(f"latents: expected a LatentCache, a cache directory or a tensor, got {describe(latents)}")
        self.base = base
        self.latents = latents
        self.return_index = bool(return_index)

    def __len__(self) -> int:
        return len(self.base)  # type: ignore[arg-type]

    def _row(self, sample: Any, latent: Tensor, index: int) -> tuple[Any, ...]:
        if not isinstance(sample, tuple | list) or len(sample) < 2:
            raise TypeError(f"base: expected samples (image, label), got {describe(sample)} at index {index}")
        row = (sample[0], sample[1], latent)
        return (*row, index) if self.return_index else row

    def __getitem__(self, index: int) -> tuple[Any, ...]:
        return self._row(self.base[index], self.latents[index], index)

    def __getitems__(self, indices: Sequence[int]) -> list[tuple[Any, ...]]:
        """A batch of samples; the latents are read in one vectorised memory-map access (DataLoader uses this)."""
        getitems = getattr(self.base, "__getitems__", None)
        samples = getitems(list(indices)) if getitems is not None else [self.base[i] for i in indices]
        if isinstance(self.latents, LatentCache):
            order = np.asarray(indices, dtype=np.int64)
            latents = self.latents[order]
        else:
            latents = self.latents[torch.as_tensor(list(indices), dtype=torch.long)]
        return [self._row(s, z, i) for s, z, i in zip(samples, latents, indices)]

    def __repr__(self) -> str:
        return f"LatentDataset(base={type(self.base).__name__}, n={len(self)}, return_index={self.return_index})"
