"""Building a latent cache chunk by chunk, resumably (the implementation of ``LatentCache.build``)."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from numpy.lib.format import open_memmap
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset, Subset
from tqdm.auto import tqdm

from torch_semaug._checks import check_int_at_least, describe
from torch_semaug.data.latent_cache import (
    FORMAT,
    LATENTS_FILE,
    META_FILE,
    PARTIAL_FILE,
    PROGRESS_FILE,
    Encoder,
    dataset_fingerprint,
    describe_mismatch,
    encoder_fingerprint,
    write_meta,
)
from torch_semaug.generators.base import LatentGenerator
from torch_semaug.transforms.image_space import resize


def to_generator_input(
    images: Tensor, image_range: tuple[float, float], size: tuple[int, int],
    to_generator: Callable[[Tensor], Tensor] | None = None,
) -> Tensor:
    """Dataset images in [0, 1] (or through ``to_generator``) -> a generator's ``image_range`` and ``size``."""
    low, high = image_range
    images = to_generator(images) if to_generator is not None else low + (high - low) * images
    return resize(images, size).clamp(low, high)


def _encode_fn(encoder: Encoder, device: torch.device, to_generator: Callable[[Tensor], Tensor] | None):
    """A function image batch (dataset range) -> latent batch (float32, CPU) for any kind of encoder."""
    if isinstance(encoder, LatentGenerator):
        generator = encoder.to(device).freeze()

        def to_input(images: Tensor) -> Tensor:
            return to_generator_input(images, generator.image_range, generator.image_shape[1:], to_generator)

        call = generator.encode
    elif callable(encoder):
        if isinstance(encoder, nn.Module):
            encoder.to(device).eval()
        to_input = to_generator if to_generator is not None else (lambda images: images)
        call = encoder
    else:
        raise TypeError(
            f"generator_or_encoder: expected a LatentGenerator or a callable image batch -> latents, got "
            f"{describe(encoder)}"
        )

    def encode(images: Tensor) -> Tensor:
        with torch.no_grad():
            latents = call(to_input(images.to(device, torch.float32)))
        if not isinstance(latents, Tensor) or latents.shape[0] != images.shape[0]:
            raise ValueError(
                f"generator_or_encoder: expected a latent batch with {images.shape[0]} rows, got {describe(latents)}"
            )
        if not bool(torch.isfinite(latents).all()):
            raise ValueError("generator_or_encoder: the encoder returned NaN/inf latents")
        return latents.detach().float().cpu()

    return encode


def _images_of(batch: Any) -> Tensor:
    images = batch[0] if isinstance(batch, list | tuple) else batch
    if not isinstance(images, Tensor) or images.ndim != 4:
        raise TypeError(
            "dataset: expected samples (image, label, ...) whose images collate to a (B, C, H, W) tensor "
            f"(add ToImage/ToDtype transforms), got {describe(images)}"
        )
    return images


def _load_progress(path: Path, identity: dict[str, Any]) -> list[int] | None:
    """Chunks already written by an interrupted build for the same data, encoder and chunking."""
    progress_file, partial = path / PROGRESS_FILE, path / PARTIAL_FILE
    if not (progress_file.is_file() and partial.is_file()):
        return None
    progress = json.loads(progress_file.read_text())
    if {k: progress.get(k) for k in identity} != identity:
        print(f"latent cache: discarding an unfinished build in {os.fspath(path)!r} made for other data/settings")
        return None
    return list(progress["done"])


def build_cache(
    cache_cls: type,
    dataset: Dataset,
    encoder: Encoder,
    path: Path,
    *,
    batch_size: int,
    num_workers: int,
    device: torch.device,
    to_generator: Callable[[Tensor], Tensor] | None,
    chunk_batches: int,
    progress: bool,
) -> Any:
    check_int_at_least(batch_size, 1, "batch_size")
    check_int_at_least(num_workers, 0, "num_workers")
    check_int_at_least(chunk_batches, 1, "chunk_batches")
    length = len(dataset)  # type: ignore[arg-type]
    if length == 0:
        raise ValueError("dataset: expected at least one sample, got an empty dataset")
    encode = _encode_fn(encoder, device, to_generator)
    fingerprints = {"dataset": dataset_fingerprint(dataset), "encoder": encoder_fingerprint(encoder)}
    path.mkdir(parents=True, exist_ok=True)
    if (path / META_FILE).is_file():
        existing = cache_cls.open(path)
        if {"dataset": existing.dataset_fingerprint, "encoder": existing.encoder_fingerprint} == fingerprints:
            return existing  # already built for exactly this data and encoder
        raise ValueError(
            f"path: {os.fspath(path)!r} already holds a latent cache for other data or another encoder "
            f"({describe_mismatch(existing.meta['dataset'] | existing.meta['encoder'], fingerprints['dataset'] | fingerprints['encoder'])}); "  # noqa: E501
            "choose a new directory or delete that one"
        )

    chunk = batch_size * chunk_batches
    num_chunks = (length + chunk - 1) // chunk
    first_images = _images_of(torch.utils.data.default_collate([dataset[0]]))
    latent_shape = tuple(encode(first_images).shape[1:])
    shape = (length, *latent_shape)
    identity = {"format": FORMAT, **fingerprints, "shape": list(shape), "chunk": chunk}
    done = _load_progress(path, identity)
    if done is None:
        done = []
        array = open_memmap(path / PARTIAL_FILE, mode="w+", dtype=np.float32, shape=shape)
    else:
        array = open_memmap(path / PARTIAL_FILE, mode="r+")
    todo = [c for c in range(num_chunks) if c not in set(done)]
    indices = [i for c in todo for i in range(c * chunk, min((c + 1) * chunk, length))]
    loader = DataLoader(Subset(dataset, indices), batch_size=batch_size, shuffle=False, num_workers=num_workers)
    bar = tqdm(total=length, initial=length - len(indices), desc="encoding", unit="img", disable=not progress)
    position = 0
    for batch in loader:
        latents = encode(_images_of(batch)).numpy()
        first, last = indices[position], indices[position + len(latents) - 1]
        array[first:last + 1] = latents  # chunks are contiguous ranges and batches never straddle them
        position += len(latents)
        bar.update(len(latents))
        current = first // chunk
        if last == min((current + 1) * chunk, length) - 1:
            array.flush()  # the data reaches the file before the chunk is recorded as done
            done = sorted({*done, current})
            write_meta(path / PROGRESS_FILE, identity | {"done": done})
    bar.close()
    array.flush()
    del array
    os.replace(path / PARTIAL_FILE, path / LATENTS_FILE)
    write_meta(path / META_FILE, {"format": FORMAT, **fingerprints, "shape": list(shape), "dtype": "float32"})
    (path / PROGRESS_FILE).unlink(missing_ok=True)
    return cache_cls.open(path)
