"""Generator checkpoints: one safetensors file whose metadata carries the JSON config.

A single file keeps saving atomic (temp file, then rename) and loading safe: safetensors holds tensors
only, so nothing is unpickled. ``semaug`` commands take such files wherever they need a generator.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from torch_semaug._io import write_atomic
from torch_semaug._registry import Registry
from torch_semaug.generators.base import LatentGenerator

FORMAT = "torch_semaug.generator/1"


class Configurable(Protocol):
    """What a generator class provides to be saved and loaded by this module."""

    generator_kind: str

    def config(self) -> dict[str, Any]: ...

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> LatentGenerator: ...


_C = TypeVar("_C", bound=type)
_KINDS: Registry[type] = Registry("generator kind", "generator_kind")


def register_generator(kind: str) -> Callable[[_C], _C]:
    """Class decorator: the class (with ``config()``/``from_config``) is saved and loaded under ``kind``."""
    return _KINDS.register(kind)


def generator_kinds() -> list[str]:
    """Kinds that :func:`load_generator` can build."""
    return _KINDS.names()


def save_generator(generator: LatentGenerator, path: str | os.PathLike[str], **extra: str) -> None:
    """Write ``generator`` (weights, buffers and config) to ``path`` atomically.

    Args:
        generator: an instance of a class registered with :func:`register_generator`.
        path: destination ``.safetensors`` file.
        extra: further string metadata (e.g. the command that trained it).
    """
    kind = getattr(generator, "generator_kind", None)
    if kind not in generator_kinds():
        raise TypeError(
            f"generator: expected a generator of a registered kind {generator_kinds()}, got {type(generator).__name__}"
        )
    tensors = {k: v.detach().contiguous().cpu().clone() for k, v in generator.state_dict().items()}
    metadata = {"format": FORMAT, "kind": kind, "config": json.dumps(generator.config()), **extra}
    write_atomic(path, lambda tmp: save_file(tensors, str(tmp), metadata=metadata))


def read_metadata(path: str | os.PathLike[str]) -> dict[str, str]:
    """The metadata of a generator checkpoint; a clear error for a missing or damaged file."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"path: no generator checkpoint at {os.fspath(path)!r}")
    try:
        with safe_open(os.fspath(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
    except (SafetensorError, OSError, ValueError) as error:
        raise ValueError(f"path: {os.fspath(path)!r} is not a readable safetensors file ({error})") from None
    if metadata.get("format") != FORMAT:
        raise ValueError(
            f"path: {os.fspath(path)!r} is not a torch_semaug generator checkpoint "
            f"(expected metadata format {FORMAT!r}, got {metadata.get('format')!r})"
        )
    return metadata


def load_generator(
    path: str | os.PathLike[str], kind: str | None = None, device: str | torch.device = "cpu"
) -> LatentGenerator:
    """Load a generator saved by :func:`save_generator`, frozen, on ``device``.

    Args:
        path: the ``.safetensors`` checkpoint.
        kind: if given, the kind the caller needs (e.g. ``"stylegan2"``); another kind is an error.
        device: where to put the generator.
    """
    from safetensors.torch import load_file

    metadata = read_metadata(path)
    found = metadata.get("kind")
    if kind is not None and found != kind:
        raise ValueError(f"path: expected a {kind!r} generator checkpoint, got a {found!r} one at {os.fspath(path)!r}")
    generator = _KINDS.get(found, "path").from_config(json.loads(metadata["config"]))
    try:
        state = load_file(os.fspath(path))
    except (SafetensorError, OSError) as error:
        raise ValueError(f"path: {os.fspath(path)!r} is damaged ({error})") from None
    load_state_checked(generator, state, os.fspath(path))
    return generator.to(device).freeze()


def load_state_checked(module: torch.nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """``load_state_dict(strict=True)`` with an error that lists missing, unexpected and mis-sized keys."""
    own = module.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    mismatched = sorted(
        f"{k}: expected {tuple(own[k].shape)}, got {tuple(state[k].shape)}"
        for k in set(own) & set(state)
        if own[k].shape != state[k].shape
    )
    if missing or unexpected or mismatched:
        parts = [
            f"missing keys {missing[:10]}" + (" ..." if len(missing) > 10 else "") if missing else "",
            f"unexpected keys {unexpected[:10]}" + (" ..." if len(unexpected) > 10 else "") if unexpected else "",
            f"wrong sizes {mismatched[:10]}" if mismatched else "",
        ]
        raise ValueError(
            f"checkpoint {source!r} does not match {type(module).__name__}: " + "; ".join(p for p in parts if p)
        )
    module.load_state_dict(state, strict=True)
