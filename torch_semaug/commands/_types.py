"""``argparse`` value types shared by every ``semaug`` subcommand.

Each raises ``argparse.ArgumentTypeError`` with "expected ..., got ...", which the parser prints as one
``error: argument --flag: expected ..., got ...`` line with exit code 2.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable


def _number(kind: type, test: Callable[[float], bool], expected: str) -> Callable[[str], float]:
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
        if not math.isfinite(value) or not test(value):
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
        return value

    parse.__name__ = expected.replace(" ", "_")
    return parse


positive_int = _number(int, lambda v: v > 0, "a positive integer")
non_negative_int = _number(int, lambda v: v >= 0, "an integer >= 0")
positive_float = _number(float, lambda v: v > 0, "a positive number")
non_negative_float = _number(float, lambda v: v >= 0, "a number >= 0")
probability = _number(float, lambda v: 0 <= v <= 1, "a probability in [0, 1]")
fraction = _number(float, lambda v: 0 < v <= 1, "a fraction in (0, 1]")


def device(text: str) -> str:
    """A torch device string (``cpu``, ``cuda``, ``cuda:1``, ``mps``); the device need not be present."""
    import torch

    try:
        parsed = torch.device(text)
    except RuntimeError:
        raise argparse.ArgumentTypeError(f"expected a torch device such as cpu, cuda or cuda:1, got {text!r}") from None
    if parsed.type not in ("cpu", "cuda", "mps", "xpu"):
        raise argparse.ArgumentTypeError(f"expected a device of type cpu, cuda, mps or xpu, got {text!r}")
    return text


def existing_file(text: str) -> str:
    """The path of a file that exists (a checkpoint, a config)."""
    import os

    if not os.path.isfile(text):
        what = "a directory" if os.path.isdir(text) else "nothing"
        raise argparse.ArgumentTypeError(f"expected an existing file, got {text!r} ({what} there)")
    return text


def reason(error: Exception) -> str:
    """A loader's error message without its ``path:`` prefix, for a command that names its own flag instead."""
    return str(error).removeprefix("path: ")
