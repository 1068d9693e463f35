"""Checking the files of a latent cache against each other, so that a damaged cache is never taken for whole.

``meta.json`` and the progress records are JSON written atomically; ``latents.npy`` (and its
``.partial`` twin while building) is a ``.npy`` file whose header and size are checked here without
reading its data. numpy's ``r+`` memory map silently zero-extends a short file, so every size is checked
before a map is opened.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import numpy as np
from numpy.lib import format as npy_format

DTYPE = np.dtype(np.float32)
PROGRESS_PATTERN = re.compile(r"progress\.(\d+)\.json")


class DamagedCacheError(ValueError):
    """A file of a latent cache is unreadable or disagrees with the others."""


def read_json(path: Path, what_to_do: str) -> dict[str, Any]:
    """The JSON object in ``path``; ``DamagedCacheError`` naming the file and ``what_to_do`` otherwise."""
    try:
        value = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise DamagedCacheError(
            f"path: {os.fspath(path)!r} is damaged (not valid JSON: {error}); {what_to_do}"
        ) from None
    if not isinstance(value, dict):
        raise DamagedCacheError(f"path: {os.fspath(path)!r} is damaged (expected a JSON object); {what_to_do}")
    return value


def npy_layout(path: Path) -> tuple[tuple[int, ...], np.dtype, int]:
    """Shape, dtype and data offset of the ``.npy`` file at ``path``, read from its header only."""
    try:
        with open(path, "rb") as handle:
            version = npy_format.read_magic(handle)
            read_header = npy_format.read_array_header_1_0 if version == (1, 0) else npy_format.read_array_header_2_0
            shape, fortran, dtype = read_header(handle)
            offset = handle.tell()
    except (ValueError, EOFError, SyntaxError) as error:
        raise DamagedCacheError(f"path: {os.fspath(path)!r} is not a readable .npy file ({error})") from None
    if fortran:
        raise DamagedCacheError(f"path: {os.fspath(path)!r} is stored in Fortran order; expected C order")
    return tuple(shape), dtype, offset


def check_npy(path: Path, shape: tuple[int, ...], what_to_do: str) -> int:
    """Raise ``DamagedCacheError`` unless ``path`` holds a whole float32 array of ``shape``.

    Returns:
        The data offset (bytes of header).
    """
    try:
        found_shape, dtype, offset = npy_layout(path)
    except DamagedCacheError as error:
        raise DamagedCacheError(f"{error}; {what_to_do}") from None
    if dtype != DTYPE:
        raise DamagedCacheError(f"path: {os.fspath(path)!r} holds {dtype} values, expected float32; {what_to_do}")
    if found_shape != tuple(shape):
        raise DamagedCacheError(
            f"path: {os.fspath(path)!r} holds an array of shape {found_shape}, but meta.json says {tuple(shape)}; "
            f"{what_to_do}"
        )
    expected = offset + int(np.prod(shape)) * DTYPE.itemsize
    size = path.stat().st_size
    if size != expected:
        raise DamagedCacheError(
            f"path: {os.fspath(path)!r} has {size} bytes, expected {expected} for shape {tuple(shape)} (the file "
            f"was truncated or overwritten); {what_to_do}"
        )
    return offset


def complete_rows(path: Path, shape: tuple[int, ...]) -> int | None:
    """How many leading rows of the partial file at ``path`` are present on disk (``None``: unusable file).

    A file with another dtype or shape, or an unreadable header, is unusable; a short file (a truncated
    copy, a full disk) keeps the rows that lie wholly inside it.
    """
    try:
        found_shape, dtype, offset = npy_layout(path)
    except DamagedCacheError:
        return None
    if dtype != DTYPE or found_shape != tuple(shape):
        return None
    row_bytes = int(np.prod(shape[1:])) * DTYPE.itemsize
    size = path.stat().st_size
    if size > offset + shape[0] * row_bytes:
        return None
    return max(0, size - offset) // max(row_bytes, 1)


def extend_to(path: Path, shape: tuple[int, ...]) -> None:
    """Grow the (checked, short) ``.npy`` file at ``path`` to the full size of ``shape``."""
    _, _, offset = npy_layout(path)
    with open(path, "r+b") as handle:
        handle.truncate(offset + int(np.prod(shape)) * DTYPE.itemsize)


def progress_records(path: Path) -> list[Path]:
    """The per-rank progress records in the cache directory ``path``."""
    return sorted(p for p in path.glob("progress.*.json") if PROGRESS_PATTERN.fullmatch(p.name))


def progress_file(path: Path, rank: int) -> Path:
    return path / f"progress.{rank}.json"


def load_done(path: Path, identity: dict[str, Any], num_chunks: int, warn) -> set[int]:
    """Chunks that the progress records of an earlier build of the same data and settings mark as written.

    A damaged record is ignored (its chunks are encoded again) rather than blocking every rerun; a record
    for other data or settings means the partial file is someone else's, so nothing is kept.
    """
    done: set[int] = set()
    for record in progress_records(path):
        try:
            progress = read_json(record, "")
            chunks = progress.get("done")
            if not isinstance(chunks, list) or not all(isinstance(c, int) and 0 <= c < num_chunks for c in chunks):
                raise DamagedCacheError(f"path: {os.fspath(record)!r} has no valid list of done chunks")
        except DamagedCacheError:
            warn(f"latent cache: ignoring the damaged progress record {os.fspath(record)!r}; its chunks are "
                 "encoded again")
            continue
        if {k: progress.get(k) for k in identity} != identity:
            warn(f"latent cache: discarding an unfinished build in {os.fspath(path)!r} made for other "
                 "data/settings")
            return set()
        done.update(chunks)
    return done
