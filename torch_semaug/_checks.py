"""Argument checks shared by every module.

Each check raises a ``ValueError`` or ``TypeError`` that names the argument, what was expected and what
arrived, so that a user can fix the call without reading the source.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor


def describe(value: object) -> str:
    """A short description of ``value`` for error messages (shape and dtype for tensors)."""
    if isinstance(value, Tensor):
        return f"a {value.dtype} tensor of shape {tuple(value.shape)} on {value.device}"
    return f"{type(value).__name__} {value!r}"


def check_tensor(value: object, name: str) -> Tensor:
    """Raise ``TypeError`` unless ``value`` is a tensor."""
    if not isinstance(value, Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor, got {describe(value)}")
    return value


def assert_shape(tensor: Tensor, shape: Sequence[int | None], name: str) -> None:
    """Check ``tensor.shape`` against ``shape``; ``None`` entries match any size.

    Raises:
        ValueError: naming ``name``, the expected and the received shape.
    """
    check_tensor(tensor, name)
    expected = "(" + ", ".join("*" if s is None else str(s) for s in shape) + ")"
    if tensor.ndim != len(shape) or any(s is not None and s != t for s, t in zip(shape, tensor.shape)):
        raise ValueError(f"{name}: expected shape {expected}, got {tuple(tensor.shape)}")


def check_finite(tensor: Tensor, name: str, hint: str = "") -> None:
    """Raise ``ValueError`` if ``tensor`` holds NaN or inf."""
    if not bool(torch.isfinite(tensor).all()):
        bad = int((~torch.isfinite(tensor)).sum())
        raise ValueError(f"{name}: expected finite values, got {bad} NaN/inf entries{hint}")


def check_float(tensor: Tensor, name: str) -> None:
    """Raise ``TypeError`` unless ``tensor`` has a floating-point dtype."""
    if not tensor.is_floating_point():
        raise TypeError(
            f"{name}: expected a floating-point tensor, got dtype {tensor.dtype}; "
            "convert images with torchvision.transforms.v2.ToDtype(torch.float32, scale=True)"
        )


def check_positive(value: float | Tensor, name: str) -> None:
    """Raise ``ValueError`` unless ``value`` (a number or a tensor of numbers) is > 0."""
    if isinstance(value, Tensor):
        if value.numel() == 0 or not bool((value > 0).all()):
            raise ValueError(f"{name}: expected values > 0, got {describe(value)}")
        return
    if not isinstance(value, int | float) or isinstance(value, bool) or not value > 0:
        raise ValueError(f"{name}: expected a number > 0, got {value!r}")


def check_int_at_least(value: int, minimum: int, name: str) -> None:
    """Raise ``ValueError`` unless ``value`` is an int >= ``minimum``."""
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"{name}: expected an integer >= {minimum}, got {value!r}")


def check_probability(value: float, name: str) -> None:
    """Raise ``ValueError`` unless ``0 <= value <= 1``."""
    if not isinstance(value, int | float) or isinstance(value, bool) or not 0.0 <= value <= 1.0:
        raise ValueError(f"{name}: expected a probability in [0, 1], got {value!r}")


def check_choice(value: object, choices: Sequence[object], name: str) -> None:
    """Raise ``ValueError`` unless ``value`` is one of ``choices``."""
    if value not in choices:
        raise ValueError(f"{name}: expected one of {list(choices)}, got {value!r}")


def check_labels(labels: object, batch_size: int, name: str = "labels") -> Tensor:
    """Check hard labels ``(B,)`` of an integer dtype or soft labels ``(B, K)`` that are floats."""
    labels = check_tensor(labels, name)
    if labels.ndim == 1 and not labels.is_floating_point() and labels.dtype != torch.bool:
        if labels.shape[0] != batch_size:
            raise ValueError(f"{name}: expected {batch_size} labels (one per image), got {labels.shape[0]}")
        if labels.numel() and int(labels.min()) < 0:
            raise ValueError(f"{name}: expected class indices >= 0, got minimum {int(labels.min())}")
        return labels
    if labels.ndim == 2 and labels.is_floating_point():
        if labels.shape[0] != batch_size:
            raise ValueError(f"{name}: expected {batch_size} rows of soft labels, got {labels.shape[0]}")
        return labels
    raise ValueError(
        f"{name}: expected class indices of shape ({batch_size},) with an integer dtype, or soft labels "
        f"of shape ({batch_size}, num_classes), got {describe(labels)}"
    )
