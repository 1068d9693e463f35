"""The latent cache: every image of a dataset encoded once, stored as a memory-mapped ``.npy`` file.

Layout of a cache directory::

    latents.npy     (N, *latent_shape) float32, read with np.load(mmap_mode="r")
    meta.json       fingerprints (dataset, generator), encoder provenance, shape, dtype, reconstruction PSNR;
                    present only once the cache is complete

While building, ``latents.npy.partial`` and one progress record per process, ``progress.<rank>.json``
(the chunks that process has written, plus the fingerprints they were written for), live beside them.
A killed build resumes from the recorded chunks; the final names appear only when every chunk is
written, so a reader never sees half a cache. Opening checks every file against ``meta.json``.
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
from torch_semaug.data._cache_files import DamagedCacheError, check_npy, progress_records, read_json
from torch_semaug.generators.base import LatentGenerator

FORMAT = "torch_semaug.latent_cache/2"
LATENTS_FILE = "latents.npy"
META_FILE = "meta.json"
PARTIAL_FILE = "latents.npy.partial"
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


def _state_sha256(module: nn.Module) -> str:
    digest = hashlib.sha256()
    for key, tensor in sorted(module.state_dict().items()):
        digest.update(key.encode())
        _update_hash(digest, tensor)
    return digest.hexdigest()


def _class_name(value: object) -> str:
    cls = type(value)
    return f"{cls.__module__}.{cls.__qualname__}"


def generator_fingerprint(generator: LatentGenerator) -> dict[str, Any]:
    """What a cached latent means: the generator's class, config, latent and image layout and weights.

    The encoder that produced the latents is not part of it (see :func:`encoder_provenance`): any
    encoder into the same generator's latent space gives latents the generator decodes the same way.
    """
    info: dict[str, Any] = {
        "class": _class_name(generator),
        "latent_shape": list(generator.latent_shape),
        "image_shape": list(generator.image_shape),
        "image_range": [float(v) for v in generator.image_range],
    }
    config = getattr(generator, "config", None)
    if callable(config):
        config = json.loads(json.dumps(config(), default=repr))
        config.pop("latent_spread", None)  # a statistic of the weights, added to the config lazily
        info["config"] = config
    info["state_sha256"] = _state_sha256(generator)
    return info


def encoder_provenance(encoder: Encoder) -> dict[str, Any]:
    """How latents were produced, for the record: the encoder attached to a generator (or the generator's
    own ``encode``), or a plain encoder's class, settings and weights."""
    if isinstance(encoder, LatentGenerator):
        attached = encoder.__dict__.get("encoder")  # attach_encoder keeps it outside the state_dict
        if attached is None:
            return {"class": _class_name(encoder), "method": "the generator's own encode"}
        encoder = attached
    return _describe(encoder, frozenset())


def _describe(encoder: object, seen: frozenset[int]) -> dict[str, Any]:
    seen = seen | {id(encoder)}
    info: dict[str, Any] = {"class": _class_name(encoder)}
    config = getattr(encoder, "config", None)
    if callable(config):
        info["config"] = json.loads(json.dumps(config(), default=repr))
    elif isinstance(encoder, nn.Module):
        info["config"] = encoder.extra_repr()
    attributes = sorted(getattr(encoder, "__dict__", {}).items())  # submodules of a Module are not in here
    if isinstance(encoder, nn.Module):
        info["state_sha256"] = _state_sha256(encoder)
    else:
        settings = {k: v for k, v in attributes if isinstance(v, int | float | str | bool | dict)}
        info["settings"] = json.loads(json.dumps(settings, default=repr))
    for name, value in attributes:
        if value is None or id(value) in seen or isinstance(value, LatentGenerator):
            continue  # the generator is the fingerprint, not provenance
        # a Module's plain attributes are helpers (a lazily built perceptual net), not what it computes
        if name == "encoder" or (not isinstance(encoder, nn.Module) and isinstance(value, nn.Module)):
            info[f"holds.{name}"] = _describe(value, seen)
    return info


def owning_generator(encoder: Encoder) -> LatentGenerator | None:
    """The generator whose latent space ``encoder`` maps into: itself, or its ``generator`` attribute."""
    if isinstance(encoder, LatentGenerator):
        return encoder
    generator = getattr(encoder, "generator", None)
    return generator if isinstance(generator, LatentGenerator) else None


def describe_mismatch(expected: dict[str, Any], found: dict[str, Any]) -> str:
    """The keys on which two fingerprints differ, as ``key: cache has X, got Y``."""
    keys = sorted(set(expected) | set(found))
    return "; ".join(
        f"{k}: cache has {expected.get(k)!r}, got {found.get(k)!r}" for k in keys if expected.get(k) != found.get(k)
    )


# -- the cache ----------------------------------------------------------------------------------------

REBUILD = "delete the directory and run `semaug encode` (or LatentCache.build) again"


def _check_meta(path: Path, meta: dict[str, Any]) -> tuple[int, ...]:
    """The shape ``meta.json`` records, after checking every field a reader relies on."""
    if meta.get("format") != FORMAT:
        raise ValueError(
            f"path: {os.fspath(path)!r} holds format {meta.get('format')!r}, expected {FORMAT!r}; {REBUILD}"
        )
    shape = meta.get("shape")
    fields_ok = (
        isinstance(shape, list) and len(shape) >= 2 and all(isinstance(n, int) and n >= 1 for n in shape)
        and meta.get("dtype") == "float32" and isinstance(meta.get("dataset"), dict)
        and isinstance(meta.get("encoder"), dict) and isinstance(meta.get("generator"), dict | None)
    )
    if not fields_ok:
        raise DamagedCacheError(f"path: {os.fspath(path)!r} is damaged (missing or invalid fields); {REBUILD}")
    return tuple(shape)


class LatentCache:
    """Read access to a finished cache; opens the memory map lazily, once per process.

    Pickling (e.g. into DataLoader workers) drops the open map; each worker reopens it on first access,
    so no file handle is shared across processes.

    Attributes:
        path: the cache directory.
        meta: the contents of ``meta.json`` (fingerprints, encoder provenance, shape, dtype, PSNR).
    """

    def __init__(self, path: str | os.PathLike[str], meta: dict[str, Any]) -> None:
        self.path = Path(path)
        self.meta = meta
        self._array: np.ndarray | None = None

    # -- opening and building --

    @classmethod
    def open(cls, path: str | os.PathLike[str]) -> LatentCache:
        """Open the finished cache in directory ``path``, after checking ``latents.npy`` against ``meta.json``.

        Raises:
            FileNotFoundError: no finished cache there (the message says whether a build can be resumed).
            ValueError: a damaged or foreign file (the message names it and says what to do).
        """
        path = Path(path)
        meta_file = path / META_FILE
        if not meta_file.is_file():
            hint = (
                "; a build was started there but not finished: run the same build again to resume it"
                if progress_records(path) else "; build one with `semaug encode` or LatentCache.build()"
            )
            raise FileNotFoundError(f"path: no finished latent cache in {os.fspath(path)!r}{hint}")
        meta = read_json(meta_file, REBUILD)
        shape = _check_meta(meta_file, meta)
        if not (path / LATENTS_FILE).is_file():
            raise FileNotFoundError(f"path: {os.fspath(path / LATENTS_FILE)!r} is missing; {REBUILD}")
        check_npy(path / LATENTS_FILE, shape, REBUILD)
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
        psnr_samples: int = 256,
        progress: bool = True,
    ) -> LatentCache:
        """Encode every image of ``dataset`` once into a cache at ``path`` (resumes an interrupted build).

        Under a distributed launch (``torch.distributed`` initialised, e.g. by ``semaug encode`` under
        ``torchrun``/``accelerate launch``) every process encodes its own share of the chunks into the one
        cache; call it on every rank with the same arguments. The result equals a one-process build.

        Args:
            dataset: map-style dataset yielding ``(image, label, ...)`` with deterministic transforms.
            generator_or_encoder: a :class:`LatentGenerator` (its ``encode`` is used, through an attached
                encoder for a GAN) or any module or callable mapping an image batch to latents.
            path: the cache directory (created).
            batch_size: images per encoder call.
            num_workers: DataLoader workers reading ``dataset``.
            device: where the encoder runs.
            to_generator: map the dataset's images to the encoder's input range; default for a
                generator: ``[0, 1]`` images mapped linearly onto ``image_range``; else unchanged.
            chunk_batches: batches per recorded chunk (the unit a resumed build skips).
            psnr_samples: images whose reconstruction ``decode(latent)`` is compared with the image; the
                mean PSNR is recorded in ``meta.json`` (needs a generator; 0: skip).
            progress: show a tqdm bar.

        Returns:
            The finished cache, opened.
        """
        from torch_semaug.data._builder import build_cache

        return build_cache(
            cls, dataset, generator_or_encoder, Path(path), batch_size=batch_size, num_workers=num_workers,
            device=torch.device(device), to_generator=to_generator, chunk_batches=chunk_batches,
            psnr_samples=psnr_samples, progress=progress,
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

    def info(self) -> dict[str, Any]:
        """What the cache holds and how it was made: shape, dataset, generator, encoder, reconstruction PSNR."""
        generator = self.meta["generator"]
        return {
            "path": os.fspath(self.path), "shape": self.shape, "dataset": self.meta["dataset"],
            "generator": None if generator is None else generator["class"], "encoder": self.meta["encoder"],
            "reconstruction_psnr": self.meta.get("reconstruction_psnr"),
        }

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
        if found != self.meta["dataset"]:
            raise ValueError(
                f"{name}: the latent cache {os.fspath(self.path)!r} was built for another dataset (sample hash "
                f"differs: {describe_mismatch(self.meta['dataset'], found)}); encode this dataset with "
                "deterministic transforms (no random crops/flips) using `semaug encode`"
            )

    def check_generator(self, generator: LatentGenerator, name: str = "generator") -> None:
        """Raise ``ValueError`` unless the cached latents belong to ``generator``'s latent space.

        Only the generator counts (weights, config, latent layout); the encoder that produced the
        latents is provenance, so a generator loaded without its encoder accepts the cache.
        """
        recorded = self.meta["generator"]
        if recorded is None:
            raise ValueError(
                f"{name}: the latent cache {os.fspath(self.path)!r} was built by a bare encoder and records no "
                "generator; rebuild it with LatentCache.build(dataset, generator_with_encoder, ...)"
            )
        found = generator_fingerprint(generator)
        if found != recorded:
            raise ValueError(
                f"{name}: the latent cache {os.fspath(self.path)!r} was built for another generator "
                f"({describe_mismatch(recorded, found)}); encode the dataset with this generator"
            )

    def __repr__(self) -> str:
        generator = self.meta["generator"]
        return (f"LatentCache({os.fspath(self.path)!r}, shape={self.shape}, generator="
                f"{None if generator is None else generator['class']}, encoder={self.meta['encoder']['class']})")


def write_meta(path: Path, meta: dict[str, Any]) -> None:
    write_text_atomic(path, json.dumps(meta, indent=2, sort_keys=True))
