"""Atomic training checkpoints that load with ``torch.load(weights_only=True)`` (nothing is unpickled)."""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path
from typing import Any

import torch

from torch_semaug._io import write_atomic, write_text_atomic

FORMAT = "torch_semaug.classifier_checkpoint/1"


def _plain(value: Any) -> Any:
    """``value`` reduced to what ``weights_only`` loading accepts (tensors, numbers, str, lists, dicts)."""
    if isinstance(value, dict):
        return {k if isinstance(k, int | str) else str(k): _plain(v) for k, v in value.items()}  # int: optimizer state
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, torch.Tensor | int | float | str | bool) or value is None:
        return value
    return repr(value)


def save_checkpoint(path: str | os.PathLike[str], **state: Any) -> None:
    """Write ``state`` (model/optimizer/scheduler state dicts, epoch, args, metrics) to ``path`` atomically."""
    payload = _plain({"format": FORMAT, **state})
    write_atomic(path, lambda tmp: torch.save(payload, tmp))


def load_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Load a checkpoint written by :func:`save_checkpoint`; clear errors for a missing or foreign file."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"resume: no checkpoint at {os.fspath(path)!r}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # a damaged file or a pickle that weights_only refuses
        raise ValueError(f"resume: cannot read {os.fspath(path)!r} as a torch_semaug checkpoint ({error})") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise ValueError(f"resume: {os.fspath(path)!r} is not a torch_semaug classifier checkpoint")
    return state


def write_metrics(folder: Path, history: list[dict[str, Any]]) -> None:
    """Per-epoch metrics as ``metrics.csv`` and ``metrics.json`` (rewritten atomically every epoch)."""
    write_text_atomic(folder / "metrics.json", json.dumps(history, indent=2))
    keys: list[str] = []
    for row in history:
        keys += [k for k in row if k not in keys]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=keys)
    writer.writeheader()
    writer.writerows(history)
    write_text_atomic(folder / "metrics.csv", buffer.getvalue())


def write_curves(folder: Path, history: list[dict[str, Any]]) -> Path | None:
    """``curves.png``: loss, top-1 accuracy and learning rate per epoch; ``None`` without matplotlib (the
    ``log`` extra)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("curves.png not drawn: matplotlib is not installed (pip install 'torch-semaug[log]')")
        return None
    epochs = [row["epoch"] for row in history]
    panels = (("loss", ("train_loss", "val_loss", "ema_val_loss")), ("top-1 %", ("train_top1", "val_top1",
                                                                                "ema_val_top1")), ("lr", ("lr",)))
    figure, axes = plt.subplots(1, 3, figsize=(12, 3.4))
    for axis, (title, keys) in zip(axes, panels):
        for key in keys:
            if any(key in row for row in history):
                axis.plot(epochs, [row.get(key, float("nan")) for row in history], marker="o", label=key)
        axis.set_title(title)
        axis.set_xlabel("epoch")
        axis.legend()
    figure.tight_layout()
    path = folder / "curves.png"
    write_atomic(path, lambda tmp: figure.savefig(tmp, format="png", dpi=100))
    plt.close(figure)
    return path
