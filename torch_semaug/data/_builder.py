"""Building a latent cache chunk by chunk, resumably, in one or several processes (``LatentCache.build``).

The dataset is cut into chunks of ``batch_size * chunk_batches`` consecutive samples. Rank 0 checks what an
earlier build left (the partial ``.npy`` file and the progress records), keeps the chunks that are on disk
and recorded, and creates the file if needed; then every rank encodes its share of the missing chunks
into the one memory-mapped file and records each chunk in its own ``progress.<rank>.json`` once the rows
are flushed. When all ranks are done, rank 0 checks that every chunk is recorded, renames the file and
writes ``meta.json``. Chunks are encoded in the same batches whatever the number of processes, so the
cache is the same as a one-process build.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import torch
from numpy.lib.format import open_memmap
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset, Subset
from tqdm.auto import tqdm

from torch_semaug._checks import check_int_at_least, describe
from torch_semaug._io import remove_stale_temporaries
from torch_semaug.data._cache_files import (
    check_npy,
    complete_rows,
    extend_to,
    load_done,
    progress_file,
    progress_records,
)
from torch_semaug.data.latent_cache import (
    FORMAT,
    LATENTS_FILE,
    META_FILE,
    PARTIAL_FILE,
    Encoder,
    dataset_fingerprint,
    describe_mismatch,
    encoder_provenance,
    generator_fingerprint,
    owning_generator,
    write_meta,
)
from torch_semaug.generators.base import LatentGenerator
from torch_semaug.transforms.image_space import ImageSpace, resize

#: How long a rank waits for the others at a barrier: shards of a large inversion finish hours apart.
BARRIER_TIMEOUT = timedelta(days=2)


def to_generator_input(
    images: Tensor, image_range: tuple[float, float], size: tuple[int, int],
    to_generator: Callable[[Tensor], Tensor] | None = None,
) -> Tensor:
    """Dataset images in [0, 1] (or through ``to_generator``) -> a generator's ``image_range`` and ``size``."""
    if to_generator is not None:
        images = resize(to_generator(images), size)
    else:
        images = ImageSpace().to_generator(images, image_range, size)
    return images.clamp(*image_range)


def _encode_fn(encoder: Encoder, device: torch.device, to_generator: Callable[[Tensor], Tensor] | None):
    """Functions image batch (dataset range) -> encoder input, and -> latent batch (float32, CPU)."""
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

    return to_input, encode


def _images_of(batch: Any) -> Tensor:
    images = batch[0] if isinstance(batch, list | tuple) else batch
    if not isinstance(images, Tensor) or images.ndim != 4:
        raise TypeError(
            "dataset: expected samples (image, label, ...) whose images collate to a (B, C, H, W) tensor "
            f"(add ToImage/ToDtype transforms), got {describe(images)}"
        )
    return images


# -- processes -------------------------------------------------------------------------------------------


def _rank_and_world() -> tuple[int, int]:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _on_rank0(fn: Callable[[], Any], world: int) -> Any:
    """``fn()`` on rank 0, its result (or its exception) handed to every rank; also a barrier."""
    if world == 1:
        return fn()
    import torch.distributed as dist

    result: list[Any] = [None]
    if dist.get_rank() == 0:
        try:
            result = [("ok", fn())]
        except Exception as error:  # every rank must leave the collective, then raise the same error
            result = [("error", error)]
    dist.broadcast_object_list(result, src=0)
    status, value = result[0]
    if status == "error":
        raise value
    return value


def _barrier(world: int) -> None:
    if world > 1:
        import torch.distributed as dist

        dist.barrier()


# -- the steps of a build --------------------------------------------------------------------------------


def _check_existing(cache_cls: type, path: Path, fingerprints: dict[str, Any]) -> Any:
    """The finished cache at ``path`` if it was built from the same data, generator and encoder."""
    existing = cache_cls.open(path)
    found = {k: existing.meta[k] for k in fingerprints}
    if found == fingerprints:
        return existing
    differences = "; ".join(
        f"{key}: {describe_mismatch(found[key] or {}, fingerprints[key] or {})}"
        for key in fingerprints if found[key] != fingerprints[key]
    )
    raise ValueError(
        f"path: {os.fspath(path)!r} already holds a latent cache built from other data, another generator or "
        f"another encoder ({differences}); choose a new directory or delete that one"
    )


def _prepare(path: Path, identity: dict[str, Any], shape: tuple[int, ...], chunk: int, num_chunks: int,
             warn: Callable[[str], None]) -> list[int]:
    """Rank 0: keep the chunks an earlier build wrote and recorded, create the partial file if needed."""
    partial, latents = path / PARTIAL_FILE, path / LATENTS_FILE
    for name in (META_FILE, PARTIAL_FILE, *(p.name for p in progress_records(path))):
        remove_stale_temporaries(path / name)
    if not partial.exists() and latents.exists() and progress_records(path):
        os.replace(latents, partial)  # killed between the final rename and meta.json: resume, do not redo
    done = load_done(path, identity, num_chunks, warn) if partial.is_file() else set()
    if done:
        rows = complete_rows(partial, shape)
        if rows is None:
            warn(f"latent cache: {os.fspath(partial)!r} does not hold a {shape} float32 array; starting again")
            done = set()
        else:
            good = {c for c in done if min((c + 1) * chunk, shape[0]) <= rows}
            if good != done:
                warn(f"latent cache: {os.fspath(partial)!r} is truncated ({rows} of {shape[0]} rows on disk); "
                     f"encoding chunks {sorted(done - good)} again")
            done = good
    if done:
        extend_to(partial, shape)  # the rows past the truncation are re-encoded, never read as zeros
        warn(f"latent cache: resuming: {len(done)} of {num_chunks} chunks already written in {os.fspath(path)!r}")
    else:
        created = open_memmap(partial, mode="w+", dtype=np.float32, shape=shape)  # sparse, of the full size
        del created
    write_meta(progress_file(path, 0), identity | {"done": sorted(done)})
    for record in progress_records(path):
        if record != progress_file(path, 0):
            record.unlink()  # merged into rank 0's record above
    return sorted(done)


def _encode_chunks(dataset: Dataset, encode: Callable[[Tensor], Tensor], path: Path, identity: dict[str, Any],
                   shape: tuple[int, ...], chunks: list[int], done: list[int], *, chunk: int, batch_size: int,
                   num_workers: int, rank: int, progress: bool) -> None:
    """Encode ``chunks`` into the partial file; record each one in this rank's progress file once flushed."""
    length = shape[0]
    check_npy(path / PARTIAL_FILE, shape, "run the build again")  # r+ would silently zero-extend a short file
    array = open_memmap(path / PARTIAL_FILE, mode="r+")
    recorded = set(done)
    indices = [i for c in chunks for i in range(c * chunk, min((c + 1) * chunk, length))]
    loader = DataLoader(Subset(dataset, indices), batch_size=batch_size, shuffle=False, num_workers=num_workers)
    bar = tqdm(total=len(indices), desc=f"encoding (rank {rank})" if rank else "encoding", unit="img",
               disable=not progress)
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
            recorded.add(current)
            write_meta(progress_file(path, rank), identity | {"done": sorted(recorded)})
    bar.close()
    array.flush()
    del array


def _reconstruction_psnr(path: Path, dataset: Dataset, generator: LatentGenerator, to_input, count: int,
                         batch_size: int, device: torch.device) -> dict[str, float] | None:
    """Mean PSNR (dB, in the generator's range) of ``decode(cached latent)`` against the first ``count`` images."""
    from torch_semaug.generators.encoders import psnr

    count = min(count, len(dataset))  # type: ignore[arg-type]
    if count == 0:
        return None
    array = np.load(path / PARTIAL_FILE, mmap_mode="r")
    low, high = generator.image_range
    values = []
    for start in range(0, count, batch_size):
        rows = range(start, min(start + batch_size, count))
        images = to_input(torch.stack([dataset[i][0] for i in rows]).to(device, torch.float32))
        latents = torch.from_numpy(np.array(array[rows.start:rows.stop])).to(device)
        with torch.no_grad():
            decoded = generator.decode(latents).clamp(low, high)
        values.append(psnr(decoded, images, data_range=high - low).cpu())
    return {"db": float(torch.cat(values).mean()), "images": count}


def _finish(path: Path, meta: dict[str, Any], identity: dict[str, Any], num_chunks: int, psnr_fn) -> None:
    """Rank 0, after every rank: check that every chunk is recorded, then publish the cache."""
    shape = tuple(meta["shape"])
    done = load_done(path, identity, num_chunks, print)
    missing = sorted(set(range(num_chunks)) - done)
    if missing:
        raise ValueError(
            f"path: chunks {missing[:10]} of {os.fspath(path)!r} were not recorded as written (a process stopped "
            "early); run the same command again to resume"
        )
    check_npy(path / PARTIAL_FILE, shape, "run the same command again to rebuild the missing rows")
    meta = meta | {"reconstruction_psnr": psnr_fn()}
    os.replace(path / PARTIAL_FILE, path / LATENTS_FILE)
    write_meta(path / META_FILE, meta)
    for record in progress_records(path):
        record.unlink()


def build_cache(cache_cls: type, dataset: Dataset, encoder: Encoder, path: Path, *, batch_size: int,
                num_workers: int, device: torch.device, to_generator: Callable[[Tensor], Tensor] | None,
                chunk_batches: int, psnr_samples: int, progress: bool) -> Any:
    check_int_at_least(batch_size, 1, "batch_size")
    check_int_at_least(num_workers, 0, "num_workers")
    check_int_at_least(chunk_batches, 1, "chunk_batches")
    check_int_at_least(psnr_samples, 0, "psnr_samples")
    length = len(dataset)  # type: ignore[arg-type]
    if length == 0:
        raise ValueError("dataset: expected at least one sample, got an empty dataset")
    to_input, encode = _encode_fn(encoder, device, to_generator)
    generator = owning_generator(encoder)
    fingerprints = {
        "dataset": dataset_fingerprint(dataset),
        "generator": None if generator is None else generator_fingerprint(generator),
        "encoder": encoder_provenance(encoder),
    }
    rank, world = _rank_and_world()
    path.mkdir(parents=True, exist_ok=True)
    if (path / META_FILE).is_file():
        return _check_existing(cache_cls, path, fingerprints)

    chunk = batch_size * chunk_batches
    num_chunks = (length + chunk - 1) // chunk
    if isinstance(encoder, LatentGenerator):
        latent_shape = tuple(encoder.latent_shape)
    else:
        latent_shape = tuple(encode(_images_of(torch.utils.data.default_collate([dataset[0]]))).shape[1:])
    shape = (length, *latent_shape)
    identity = {"format": FORMAT, **fingerprints, "shape": list(shape), "chunk": chunk, "dtype": "float32"}
    done = _on_rank0(lambda: _prepare(path, identity, shape, chunk, num_chunks, print), world)
    todo = [c for c in range(num_chunks) if c not in set(done)]
    _encode_chunks(dataset, encode, path, identity, shape, todo[rank::world], done, chunk=chunk,
                   batch_size=batch_size, num_workers=num_workers, rank=rank, progress=progress)
    _barrier(world)

    def psnr() -> dict[str, float] | None:
        if not isinstance(encoder, LatentGenerator) or psnr_samples == 0:
            return None
        return _reconstruction_psnr(path, dataset, encoder, to_input, psnr_samples, batch_size, device)

    meta = {"format": FORMAT, **fingerprints, "shape": list(shape), "dtype": "float32"}
    _on_rank0(lambda: _finish(path, meta, identity, num_chunks, psnr), world)
    return cache_cls.open(path)
