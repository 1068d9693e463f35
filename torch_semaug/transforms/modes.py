"""Each transform's modes and their defaults, and the resolution of a constructor call against them.

A transform class declares ``mode_defaults``: ``{mode: {argument: default}}``. The keys of a mode are
exactly the mode-dependent arguments that mode uses; an argument given to a mode that does not list it is
an error naming it and the mode. A default may be a :class:`Derived` value computed from the others (e.g.
``step_size = eps / 2``). The README's "modes and defaults" table is :func:`defaults_markdown`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch

from torch_semaug._checks import check_bool, check_choice, check_int_at_least, describe
from torch_semaug.attacks.pgd import TARGETS

#: The arguments whose use depends on the mode (``None`` in a signature means "the mode's default").
MODE_ARGUMENTS = (
    "eps", "step_size", "steps", "restarts", "random_start", "early_stop", "norm", "targets", "relative_eps",
    "on_failure", "layers", "mask",
)
ON_FAILURE = ("nominal", "highest_loss")


@dataclass(frozen=True)
class Derived:
    """A default computed from the resolved arguments and the generator, shown as ``text``."""

    text: str
    compute: Callable[[dict[str, Any], Any], Any]

    def __repr__(self) -> str:
        return self.text


def resolve(cls: type, mode: str, given: Mapping[str, Any], generator: Any, model: object) -> dict[str, Any]:
    """The arguments of ``mode``: its defaults with the given (not ``None``) ones on top.

    Raises:
        ValueError: naming every given argument ``mode`` does not use (``model`` included for modes
            that call no classifier).
    """
    defaults = cls.mode_defaults[mode]
    given = {name: value for name, value in given.items() if value is not None}
    unused = [name for name in given if name not in defaults]
    if model is not None and mode in cls.random_modes:
        unused.append("model")
    if unused:
        uses = ", ".join(defaults) or "none of them"
        raise ValueError(
            f"{', '.join(unused)}: not used by mode={mode!r} of {cls.__name__} (it uses {uses}); "
            "remove them or choose another mode"
        )
    if "mask" in given and "layers" not in given:
        given["layers"] = None  # an explicit mask replaces the default layer range
    resolved = {name: given.get(name, default) for name, default in defaults.items()}
    for name, value in resolved.items():
        if isinstance(value, Derived):
            resolved[name] = value.compute(resolved, generator)
    return resolved


def check_budget(args: Mapping[str, Any], norms: tuple[str, ...]) -> None:
    """Check the shared budget arguments present in ``args``."""
    for name in ("eps", "step_size"):
        value = args.get(name)
        if value is not None and (
            not isinstance(value, int | float) or isinstance(value, bool) or not 0 < value < math.inf
        ):
            raise ValueError(f"{name}: expected a finite number > 0, got {value!r}")
    for name in ("steps", "restarts"):
        if name in args:
            check_int_at_least(args[name], 1, name)
    for name in ("random_start", "early_stop", "relative_eps"):
        if name in args:
            check_bool(args[name], name)
    if "norm" in args:
        check_choice(args["norm"], norms, "norm")
    if "targets" in args:
        check_choice(args["targets"], TARGETS, "targets")
    if "on_failure" in args:
        check_choice(args["on_failure"], ON_FAILURE, "on_failure")


def move_mask(layers: object, mask: object, generator: Any) -> tuple[tuple[int, int] | None, torch.Tensor | None]:
    """The checked ``layers`` and the bool mask of ``latent_shape`` they (or ``mask``) select; ``None``: all."""
    shape = tuple(generator.latent_shape)
    if layers is not None and mask is not None:
        raise ValueError("mask: give layers (a W+ layer range) or mask (a bool mask over the latent), not both")
    if layers is not None:
        num_ws = getattr(generator, "num_ws", None)
        if num_ws is None:
            raise ValueError(
                f"layers: a W+ layer range needs a StyleGAN2-like generator (num_ws), got "
                f"{type(generator).__name__}; use mask= (a bool tensor over the latent) instead"
            )
        if not (isinstance(layers, tuple | list) and len(layers) == 2
                and all(isinstance(v, int) and not isinstance(v, bool) for v in layers)
                and 0 <= layers[0] < layers[1] <= num_ws):
            raise ValueError(
                f"layers: expected (start, stop) W+ layer indices with 0 <= start < stop <= num_ws = {num_ws} "
                f"(stop exclusive), got {layers!r}"
            )
        out = torch.zeros(shape, dtype=torch.bool)
        out[layers[0]:layers[1]] = True
        return (int(layers[0]), int(layers[1])), out
    if mask is None:
        return None, None
    if not isinstance(mask, torch.Tensor) or mask.dtype != torch.bool:
        raise TypeError(f"mask: expected a bool tensor over the latent, got {describe(mask)}")
    numel = int(torch.Size(shape).numel())
    if mask.numel() != numel:
        raise ValueError(
            f"mask: expected {numel} entries (the flattened latent {shape} of {type(generator).__name__}), "
            f"got {describe(mask)}"
        )
    if not bool(mask.any()):
        raise ValueError("mask: selects no latent entry; set at least one entry to True")
    return None, mask.detach().to("cpu").reshape(shape).clone()


def _show(value: object) -> str:
    if isinstance(value, float) and value < 1 and (value * 255).is_integer():
        return f"{int(value * 255)}/255"  # pixel budgets read as k/255
    return repr(value)


def defaults_markdown(classes: list[type]) -> str:
    """The README's "modes and defaults" table, one row per class and mode."""
    rows = ["| transform | mode | paper | defaults (exactly the arguments the mode uses) |", "|---|---|---|---|"]
    for cls in classes:
        for mode, defaults in cls.mode_defaults.items():
            text = ", ".join(f"`{name}={_show(value)}`" for name, value in defaults.items())
            rows.append(f"| `{cls.__name__}` | `{mode!r}` | {cls.mode_papers[mode]} | {text} |")
    return "\n".join(rows)
