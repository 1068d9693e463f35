"""Generator checkpoints: one safetensors file whose metadata carries the JSON config; imports of other formats.

A single file keeps saving atomic (temp file, then rename) and loading safe: safetensors holds tensors
only, so nothing is unpickled. :func:`load_generator` also imports, recognised by their content (not their
name), rosinality ``stylegan2-pytorch`` ``.pt`` files (``torch.load(weights_only=True)``) and NVIDIA
``stylegan2-ada-pytorch`` ``.pkl`` snapshots (a restricted unpickler that runs nothing in the file).
``semaug`` commands take any of them wherever they need a generator.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import TypeVar

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from torch_semaug._io import write_atomic
from torch_semaug._registry import Registry
from torch_semaug.generators.base import LatentGenerator

FORMAT = "torch_semaug.generator/1"
# What load_generator reads, by content: our own files and the two StyleGAN2 formats it imports.
SAFETENSORS, ROSINALITY, NVIDIA = "safetensors", "rosinality-stylegan2-pt", "nvidia-stylegan2-ada-pkl"
# torch.save's legacy (non-zip) format starts with this number, pickled with protocol 2.
_TORCH_LEGACY_MAGIC = b"\x80\x02\x8a\x0a" + (0x1950A86A20F9469CFC6C).to_bytes(10, "little")


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


def checkpoint_format(path: str | os.PathLike[str]) -> str:
    """:data:`SAFETENSORS`, :data:`ROSINALITY` or :data:`NVIDIA`, from the file's first bytes.

    A zip or legacy ``torch.save`` file is taken for a rosinality checkpoint and a plain pickle for an NVIDIA
    snapshot; their loaders then check the contents.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"path: no generator checkpoint at {os.fspath(path)!r}")
    with open(path, "rb") as handle:
        head = handle.read(16)
    if head.startswith(b"PK\x03\x04") or head.startswith(_TORCH_LEGACY_MAGIC):
        return ROSINALITY
    if len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5:  # pickle protocol 2-5
        return NVIDIA
    if len(head) > 8 and head[8:9] == b"{":
        return SAFETENSORS
    raise ValueError(
        f"path: {os.fspath(path)!r} is not a generator checkpoint: expected a torch_semaug .safetensors file, a "
        f"rosinality .pt (torch.save) or an NVIDIA stylegan2-ada .pkl, got a file starting with {head[:8]!r}"
    )


def read_metadata(path: str | os.PathLike[str]) -> dict[str, str]:
    """The metadata of a generator checkpoint; a clear error for a missing or damaged file.

    For a file that :func:`load_generator` imports (rosinality, NVIDIA) it is ``{"format": ..., "kind":
    "stylegan2"}``, read from the first bytes only.
    """
    found = checkpoint_format(path)
    if found != SAFETENSORS:
        return {"format": found, "kind": "stylegan2"}
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
    """Load a generator checkpoint of any supported format, recognised by content, frozen, on ``device``.

    Args:
        path: a ``.safetensors`` file written by :func:`save_generator`, a rosinality ``stylegan2-pytorch``
            ``.pt`` (``g_ema`` state dict or a ``train.py`` checkpoint) or an NVIDIA ``stylegan2-ada-pytorch``
            snapshot ``.pkl`` (its ``G_ema``); the last two become a :class:`StyleGAN2`.
        kind: if given, the kind the caller needs (e.g. ``"stylegan2"``); another kind is an error.
        device: where to put the generator.
    """
    from safetensors.torch import load_file

    metadata = read_metadata(path)
    found = metadata.get("kind")
    if kind is not None and found != kind:
        raise ValueError(f"path: expected a {kind!r} generator checkpoint, got a {found!r} one at {os.fspath(path)!r}")
    if metadata["format"] == NVIDIA:
        from torch_semaug.generators.nvidia import load_nvidia

        return load_nvidia(path, device=device)
    if metadata["format"] == ROSINALITY:
        from torch_semaug.generators.rosinality import load_rosinality

        return load_rosinality(path, device=device)
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
