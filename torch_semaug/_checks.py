"""Argument checks shared by every module.

Each check raises a ``ValueError`` or ``TypeError`` that names the argument, what was expected and what
arrived, so that a user can fix the call without reading the source.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Sequence

import torch
from torch import Tensor


def describe(value: object) -> str:
    """A short description of ``value`` for error messages (shape and dtype for tensors)."""
    if isinstance(value, Tensor):
        return f"a {value.dtype} tensor of shape {tuple(value.shape)} on {value.device}"
    text = repr(value)
    return f"{type(value).__name__} {text if len(text) <= 80 else text[:77] + '...'}"


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


def check_loss_weights(**weights: object) -> dict[str, float]:
    """Loss weights as floats; each must be a finite number >= 0 (0 switches its term off)."""
    for name, value in weights.items():
        if not isinstance(value, int | float) or isinstance(value, bool) or not 0 <= value < math.inf:
            raise ValueError(f"{name}: expected a finite number >= 0 (0 switches the term off), got {value!r}")
    return {name: float(value) for name, value in weights.items()}  # type: ignore[arg-type]


def check_probability(value: float, name: str) -> None:
    """Raise ``ValueError`` unless ``0 <= value <= 1``."""
    if not isinstance(value, int | float) or isinstance(value, bool) or not 0.0 <= value <= 1.0:
        raise ValueError(f"{name}: expected a probability in [0, 1], got {value!r}")


def check_bool(value: object, name: str) -> bool:
    """Raise ``TypeError`` unless ``value`` is ``True`` or ``False`` (not a truthy string or number)."""
    if not isinstance(value, bool):
        raise TypeError(f"{name}: expected True or False, got {describe(value)}")
    return value


def check_rng(value: object, name: str = "rng") -> torch.Generator | None:
    """Raise ``TypeError`` unless ``value`` is a ``torch.Generator`` or ``None``."""
    if value is not None and not isinstance(value, torch.Generator):
        raise TypeError(
            f"{name}: expected a torch.Generator (e.g. torch.Generator().manual_seed(0)) or None, got {describe(value)}"
        )
    return value


def check_shape(value: object, name: str, length: int | None = None) -> tuple[int, ...]:
    """``value`` as a tuple of positive ints, e.g. an image shape ``(C, H, W)`` when ``length=3``.

    Raises:
        TypeError: unless ``value`` is a sequence of integers (not a string; ``16.7`` is no size).
        ValueError: if a size is < 1 or the sequence has the wrong length.
    """
    wanted = f"a tuple of {length} positive integers" if length else "a tuple of positive integers"
    if isinstance(value, str | bytes) or not isinstance(value, Sequence | torch.Size):
        raise TypeError(f"{name}: expected {wanted}, got {describe(value)}")
    try:
        sizes = tuple(operator.index(s) for s in value)
    except TypeError:
        raise TypeError(f"{name}: expected {wanted}, got {value!r}") from None
    if (length is not None and len(sizes) != length) or not sizes or any(s < 1 for s in sizes):
        raise ValueError(f"{name}: expected {wanted}, got {tuple(value)!r}")
    return sizes


def check_range(value: object, name: str, allow_infinite: bool = False) -> tuple[float, float]:
    """``value`` as ``(low, high)`` floats with ``low < high`` (finite unless ``allow_infinite``).

    Raises:
        TypeError: unless ``value`` is a pair of real numbers.
        ValueError: if ``low >= high``, a bound is NaN, or (by default) infinite.
    """
    kind = "numbers" if allow_infinite else "finite numbers"
    if isinstance(value, str | bytes) or not isinstance(value, Sequence) or len(value) != 2:
        raise TypeError(f"{name}: expected (low, high), a pair of {kind} with low < high, got {describe(value)}")
    if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in value):
        raise TypeError(f"{name}: expected (low, high), a pair of {kind} with low < high, got {value!r}")
    low, high = float(value[0]), float(value[1])
    if not low < high or (not allow_infinite and not (math.isfinite(low) and math.isfinite(high))):
        raise ValueError(f"{name}: expected (low, high), a pair of {kind} with low < high, got {tuple(value)!r}")
    return low, high


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
        if labels.numel() and not bool((torch.isfinite(labels) & (labels >= 0)).all()):
            raise ValueError(
                f"{name}: expected soft labels (class probabilities) that are finite and >= 0, got values in "
                f"[{float(labels.min()):.4g}, {float(labels.max()):.4g}] with "
                f"{int((~torch.isfinite(labels)).sum())} NaN/inf"
            )
        return labels
    raise ValueError(
        f"{name}: expected class indices of shape ({batch_size},) with an integer dtype, or soft labels "
        f"of shape ({batch_size}, num_classes), got {describe(labels)}"
    )
