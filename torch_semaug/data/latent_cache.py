"""The latent cache: every image of a dataset encoded once, stored as a memory-mapped ``.npy`` file.

Layout of a cache directory::

    latents.npy     (N, *latent_shape) float32, read with np.load(mmap_mode="r")
    meta.json       fingerprint, shape, dtype; present only once the cache is complete

While building, ``latents.npy.partial`` and ``progress.json`` (the chunks already written, plus the
fingerprint they were written for) live beside them. A killed build resumes from the last recorded
chunk; the final names appear only when every chunk is written, so a reader never sees half a cache.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import Dataset

from torch_semaug._io import write_text_atomic
from torch_semaug.generators.base import LatentGenerator

FORMAT = "torch_semaug.latent_cache/1"
LATENTS_FILE = "latents.npy"
META_FILE = "meta.json"
PARTIAL_FILE = "latents.npy.partial"
PROGRESS_FILE = "progress.json"
NUM_HASHED_SAMPLES = 8

Encoder = LatentGenerator | nn.Module | Callable[[Tensor], Tensor]


# -- fingerprints ---------------------------------------------------------------------------------------


def _update_hash(digest: Any, value: Any) -> None:
    """Feed a sample (tensors, arrays, PIL images, numbers, nested tuples) into ``digest``."""
    if isinstance(value, Tensor):
        array = value.detach().cpu().contiguous().numpy()
        digest.update(f"{array.dtype}{array.shape}".encode())
        digest.update(array.tobytes())
    elif isinstance(value, np.ndarray):
        digest.update(f"{value.dtype}{value.shape}".encode())
        digest.update(np.ascontiguousarray(value).tobytes())
    elif isinstance(value, list | tuple):
        for item in value:
            _update_hash(digest, item)
    elif hasattr(value, "tobytes") and hasattr(value, "size"):  # PIL image
        digest.update(f"{getattr(value, 'mode', '')}{value.size}".encode())
        digest.update(value.tobytes())
    else:
        digest.update(repr(value).encode())


def hashed_indices(length: int, count: int = NUM_HASHED_SAMPLES) -> list[int]:
    """The dataset indices the fingerprint hashes: evenly spread, first and last included."""
    if length == 0:
        return []
    return sorted({round(i * (length - 1) / max(count - 1, 1)) for i in range(count)})


def dataset_fingerprint(dataset: Dataset) -> dict[str, Any]:
    """Length of ``dataset`` and a sha256 of a few of its samples (image and label).

    Samples are hashed as the dataset returns them, so a dataset with random transforms has no stable
    fingerprint: build and check caches on the deterministic (evaluation) view of the data.
    """
    length = len(dataset)  # type: ignore[arg-type]
    digest = hashlib.sha256()
    for index in hashed_indices(length):
        digest.update(str(index).encode())
        _update_hash(digest, dataset[index])
    return {"length": length, "sample_sha256": digest.hexdigest()}


def encoder_fingerprint(encoder: Encoder, _seen: frozenset[int] = frozenset()) -> dict[str, Any]:
    """Identity of a generator or encoder: its class, its config (if any) and a sha256 of its state_dict.

    An encoder attached to a generator (``generator.attach_encoder``) lives outside its state_dict, so it is
    fingerprinted too, as are a plain encoder object's settings and the modules it holds (its generator,
    its perceptual network): a cache built through one encoder is not mistaken for another's.
    """
    _seen = _seen | {id(encoder)}
    cls = type(encoder)
    info: dict[str, Any] = {"class": f"{cls.__module__}.{cls.__qualname__}"}
    config = getattr(encoder, "config", None)
    if callable(config):
        info["config"] = json.loads(json.dumps(config(), default=repr))
    elif isinstance(encoder, nn.Module):
        info["config"] = encoder.extra_repr()
    if isinstance(encoder, LatentGenerator):
        info["latent_shape"] = list(encoder.latent_shape)
        info["image_shape"] = list(encoder.image_shape)
    digest = hashlib.sha256()
    if isinstance(encoder, nn.Module):
        for key, tensor in sorted(encoder.state_dict().items()):
            digest.update(key.encode())
            _update_hash(digest, tensor)
    attributes = sorted(getattr(encoder, "__dict__", {}).items())  # submodules of a Module are not in here
    if not isinstance(encoder, nn.Module):
        settings = {k: v for k, v in attributes if isinstance(v, int | float | str | bool | dict)}
        info["settings"] = json.loads(json.dumps(settings, default=repr))
    info["state_sha256"] = digest.hexdigest()
    for name, value in attributes:
        if value is None or id(value) in _seen:
            continue
        # a Module's plain attributes are helpers (its generator, a lazily built perceptual net), not identity
        if name == "encoder" or (not isinstance(encoder, nn.Module) and isinstance(value, nn.Module)):
            info[f"holds.{name}"] = encoder_fingerprint(value, _seen)
    return info


def describe_mismatch(expected: dict[str, Any], found: dict[str, Any]) -> str:
    """The keys on which two fingerprints differ, as ``key: cache has X, got Y``."""
    keys = sorted(set(expected) | set(found))
    return "; ".join(
        f"{k}: cache has {expected.get(k)!r}, got {found.get(k)!r}" for k in keys if expected.get(k) != found.get(k)
    )


# -- the cache ----------------------------------------------------------------------------------------


class LatentCache:
    """Read access to a finished cache; opens the memory map lazily, once per process.

    Pickling (e.g. into DataLoader workers) drops the open map; each worker reopens it on first access,
    so no file handle is shared across processes.

    Attributes:
        path: the cache directory.
        meta: the contents of ``meta.json`` (fingerprints, shape, dtype).
    """

    def __init__(self, path: str | os.PathLike[str], meta: dict[str, Any]) -> None:
        self.path = Path(path)
        self.meta = meta
        self._array: np.ndarray | None = None

    # -- opening and building --

    @classmethod
    def open(cls, path: str | os.PathLike[str]) -> LatentCache:
        """Open the finished cache in directory ``path``; a clear error if it is missing or unfinished."""
        path = Path(path)
        meta_file = path / META_FILE
        if not meta_file.is_file():
            hint = (
                "; a build was started there but not finished: run the same build again to resume it"
                if (path / PROGRESS_FILE).is_file() else "; build one with `semaug encode` or LatentCache.build()"
            )
            raise FileNotFoundError(f"path: no finished latent cache in {os.fspath(path)!r}{hint}")
        meta = json.loads(meta_file.read_text())
        if meta.get("format") != FORMAT:
            raise ValueError(f"path: {os.fspath(path)!r} holds format {meta.get('format')!r}, expected {FORMAT!r}")
        if not (path / LATENTS_FILE).is_file():
            raise FileNotFoundError(f"path: {os.fspath(path / LATENTS_FILE)!r} is missing")
        return cls(path, meta)

    @classmethod
    def build(
        cls,
        dataset: Dataset,
        generator_or_encoder: Encoder,
        path: str | os.PathLike[str],
        *,
        batch_size: int = 64,
        num_workers: int = 0,
        device: str | torch.device = "cpu",
        to_generator: Callable[[Tensor], Tensor] | None = None,
        chunk_batches: int = 4,
        progress: bool = True,
    ) -> LatentCache:
        """Encode every image of ``dataset`` once into a cache at ``path`` (resumes an interrupted build).

        Args:
            dataset: map-style dataset yielding ``(image, label, ...)`` with deterministic transforms.
            generator_or_encoder: a :class:`LatentGenerator` (its ``encode`` is used) or any module or
                callable mapping an image batch to latents.
            path: the cache directory (created).
            batch_size: images per encoder call.
            num_workers: DataLoader workers reading ``dataset``.
            device: where the encoder runs.
            to_generator: map the dataset's images to the encoder's input range; default for a
                generator: ``[0, 1]`` images mapped linearly onto ``image_range``; else unchanged.
            chunk_batches: batches per recorded chunk (the unit a resumed build skips).
            progress: show a tqdm bar.

        Returns:
            The finished cache, opened.
        """
        from torch_semaug.data._builder import build_cache

        return build_cache(
            cls, dataset, generator_or_encoder, Path(path), batch_size=batch_size, num_workers=num_workers,
            device=torch.device(device), to_generator=to_generator, chunk_batches=chunk_batches, progress=progress,
        )

    # -- reading --

    @property
    def array(self) -> np.ndarray:
        """The ``(N, *latent_shape)`` read-only memory map (opened on first use in this process)."""
        if self._array is None:
            self._array = np.load(self.path / LATENTS_FILE, mmap_mode="r")
        return self._array

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.meta["shape"])

    @property
    def latent_shape(self) -> tuple[int, ...]:
        return self.shape[1:]

    @property
    def dataset_fingerprint(self) -> dict[str, Any]:
        return self.meta["dataset"]

    @property
    def encoder_fingerprint(self) -> dict[str, Any]:
        return self.meta["encoder"]

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, index: int | Sequence[int] | np.ndarray) -> Tensor:
        """One latent ``(*latent_shape)`` for an int, a batch for a sequence of indices (copied out)."""
        if isinstance(index, int | np.integer):
            return torch.from_numpy(np.array(self.array[index], dtype=np.float32))
        order = np.asarray(index, dtype=np.int64)
        ascending = np.argsort(order, kind="stable")
        rows = np.empty((len(order), *self.latent_shape), dtype=np.float32)
        rows[ascending] = self.array[order[ascending]]  # sorted reads walk the file forwards
        return torch.from_numpy(rows)

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_array"] = None  # every process maps the file itself
        return state

    def check_dataset(self, dataset: Dataset, name: str = "dataset") -> None:
        """Raise ``ValueError`` unless ``dataset`` is the one this cache was built from."""
        length = len(dataset)  # type: ignore[arg-type]
        if length != len(self):
            raise ValueError(
                f"{name}: the latent cache {os.fspath(self.path)!r} holds {len(self)} latents, but the dataset "
                f"has {length} samples; encode this dataset with `semaug encode` (or LatentCache.build)"
            )
        found = dataset_fingerprint(dataset)
        if found != self.dataset_fingerprint:
            raise ValueError(
                f"{name}: the latent cache {os.fspath(self.path)!r} was built for another dataset (sample hash "
                f"differs: {describe_mismatch(self.dataset_fingerprint, found)}); encode this dataset with "
                "deterministic transforms (no random crops/flips) using `semaug encode`"
            )

    def check_encoder(self, generator_or_encoder: Encoder, name: str = "generator") -> None:
        """Raise ``ValueError`` unless ``generator_or_encoder`` is the one this cache was built with."""
        found = encoder_fingerprint(generator_or_encoder)
        if found != self.encoder_fingerprint:
            raise ValueError(
                f"{name}: the latent cache {os.fspath(self.path)!r} was built with another generator/encoder "
                f"({describe_mismatch(self.encoder_fingerprint, found)}); re-encode with this generator"
            )

    def __repr__(self) -> str:
        return f"LatentCache({os.fspath(self.path)!r}, shape={self.shape}, encoder={self.encoder_fingerprint['class']})"


def write_meta(path: Path, meta: dict[str, Any]) -> None:
    write_text_atomic(path, json.dumps(meta, indent=2, sort_keys=True))
