"""Every option of :func:`torch_semaug.train.classifier.train_classifier`, with its default and its check.

:class:`TrainConfig` is the one list of options: ``semaug train`` builds its flags from it (timm's names), a
checkpoint stores it so that ``--resume`` alone continues a run, and a Python caller passes the same names
as keyword arguments. Where a default differs from timm's ``train.py`` on purpose, :data:`TIMM_DEFAULTS`
says what timm uses (``--help`` shows it).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import yaml

DEVICE_TYPES = ("cpu", "cuda", "mps", "xpu")
TRACKERS = ("tensorboard", "wandb", "mlflow", "comet_ml", "aim", "clearml", "dvclive")

# Defaults of timm's train.py where ours differ on purpose (small CIFAR-scale runs on one GPU or a CPU).
TIMM_DEFAULTS = {
    "model": "resnet50", "epochs": 300, "lr": "None (0.1 x batch/256)", "weight_decay": 2e-5, "smoothing": 0.1,
    "warmup_epochs": 5, "amp_dtype": "float16", "workers": 4, "output": "./output/train", "val_split": "validation",
    "decay_epochs": 90, "dataset": "'' (an ImageFolder at --data-dir)",
}


@dataclass(kw_only=True)
class TrainConfig:
    """Options of a classifier training run; each is checked on construction (``ValueError`` naming it)."""

    # data
    dataset: str | None = None  # None: an ImageFolder at data_root when it is given, else "torch/cifar10"
    data_root: str | None = None  # None: $SEMAUG_DATA, else ./data
    train_split: str = "train"
    val_split: str = "test"
    train_subset: float = 1.0
    img_size: int | None = None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    no_aug: bool = False
    aa: str | None = None
    reprob: float = 0.0
    workers: int = 2
    # model and optimisation
    model: str = "resnet18"
    num_classes: int | None = None
    in_chans: int | None = None
    drop: float = 0.0
    batch_size: int = 128
    validation_batch_size: int | None = None
    epochs: int = 30
    opt: str = "sgd"
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 5e-4
    clip_grad: float | None = None
    sched: str = "cosine"
    warmup_epochs: int = 0
    warmup_lr: float = 1e-5
    min_lr: float = 0.0
    decay_epochs: float | None = None
    decay_rate: float = 0.1
    smoothing: float = 0.0
    mixup: float = 0.0
    cutmix: float = 0.0
    mixup_prob: float = 1.0
    grad_accum_steps: int = 1
    channels_last: bool = False
    torchcompile: str | None = None
    model_ema: bool = False
    model_ema_decay: float = 0.9998
    # semantic augmentation
    semaug: str | None = None
    semaug_generator: str | None = None
    semaug_latents: str | None = None
    semaug_p: float | None = None
    semaug_eps: float | None = None
    semaug_steps: int | None = None
    semaug_step_size: float | None = None
    semaug_mode: str | None = None
    semaug_restarts: int | None = None
    semaug_kwargs: dict[str, Any] = field(default_factory=dict)
    semaug_warm_start: bool = False
    # run
    amp: bool = False
    amp_dtype: str = "bfloat16"
    seed: int = 42
    output: str = "runs"
    experiment: str | None = None
    resume: str | None = None
    device: str | None = None
    log_interval: int = 50
    progress: bool = True
    log_with: str | None = None

    def __post_init__(self) -> None:
        self.semaug_kwargs = parse_kwargs(self.semaug_kwargs)
        for name in ("mean", "std"):
            value = getattr(self, name)
            if value is not None:
                if isinstance(value, str | bytes) or not isinstance(value, Sequence) or not value:
                    raise ValueError(f"{name}: expected a list of numbers (one per channel), got {value!r}")
                setattr(self, name, tuple(_number(name, v, lambda v: True, "a number") for v in value))
        if (self.mean is None) != (self.std is None):
            raise ValueError(f"mean: pass both --mean and --std or neither, got mean={self.mean} std={self.std}")
        if self.std is not None and any(v <= 0 for v in self.std):
            raise ValueError(f"std: expected positive numbers, got {list(self.std)}")
        for name, (low, optional) in _INTS.items():
            _integer(name, getattr(self, name), low, optional)
        for name, (test, expected, optional) in _FLOATS.items():
            value = getattr(self, name)
            if not (optional and value is None):
                setattr(self, name, _number(name, value, test, expected))
        for name in _BOOLS:
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name}: expected true or false, got {getattr(self, name)!r}")
        for name, choices in (("amp_dtype", ("float16", "bfloat16")), ("log_with", (None, *TRACKERS))):
            if getattr(self, name) not in choices:
                raise ValueError(f"{name}: expected one of {[c for c in choices if c]}, got {getattr(self, name)!r}")
        self._check_strings()

    def _check_strings(self) -> None:
        for item in dataclasses.fields(self):
            value = getattr(self, item.name)
            if item.type.startswith("str") and value is not None and (not isinstance(value, str) or not value):
                raise ValueError(f"{item.name}: expected a non-empty string, got {value!r}")
        if self.device is not None and self.device not in DEVICE_TYPES:
            raise ValueError(f"device: expected one of {list(DEVICE_TYPES)} (choose a GPU with CUDA_VISIBLE_DEVICES, "
                             f"several with accelerate launch), got {self.device!r}")

    def replace(self, **changes: Any) -> TrainConfig:
        """A copy with ``changes`` applied (and checked)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """Plain values (lists for tuples) for YAML, JSON and checkpoints."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}


# name -> (lowest value, may be None)
_INTS = {
    "batch_size": (1, False), "epochs": (1, False), "workers": (0, False), "grad_accum_steps": (1, False),
    "log_interval": (1, False), "seed": (0, False), "warmup_epochs": (0, False), "img_size": (1, True),
    "num_classes": (2, True), "in_chans": (1, True), "validation_batch_size": (1, True), "semaug_steps": (1, True),
    "semaug_restarts": (1, True),
}
_FLOATS = {
    "train_subset": (lambda v: 0 < v <= 1, "a fraction in (0, 1]", False),
    "reprob": (lambda v: 0 <= v <= 1, "a probability in [0, 1]", False),
    "drop": (lambda v: 0 <= v < 1, "a rate in [0, 1)", False),
    "lr": (lambda v: v > 0, "a positive number", False),
    "momentum": (lambda v: v >= 0, "a number >= 0", False),
    "weight_decay": (lambda v: v >= 0, "a number >= 0", False),
    "clip_grad": (lambda v: v > 0, "a positive number", True),
    "warmup_lr": (lambda v: v >= 0, "a number >= 0", False),
    "min_lr": (lambda v: v >= 0, "a number >= 0", False),
    "decay_epochs": (lambda v: v > 0, "a positive number", True),
    "decay_rate": (lambda v: v > 0, "a positive number", False),
    "smoothing": (lambda v: 0 <= v < 1, "a number in [0, 1)", False),
    "mixup": (lambda v: v >= 0, "a number >= 0", False),
    "cutmix": (lambda v: v >= 0, "a number >= 0", False),
    "mixup_prob": (lambda v: 0 <= v <= 1, "a probability in [0, 1]", False),
    "model_ema_decay": (lambda v: 0 < v < 1, "a number in (0, 1)", False),
    "semaug_p": (lambda v: 0 <= v <= 1, "a probability in [0, 1]", True),
    "semaug_eps": (lambda v: v >= 0, "a number >= 0", True),
    "semaug_step_size": (lambda v: v > 0, "a positive number", True),
}
_BOOLS = ("no_aug", "channels_last", "model_ema", "amp", "progress", "semaug_warm_start")


def _integer(name: str, value: Any, low: int, optional: bool) -> None:
    if optional and value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"{name}: expected an integer >= {low}, got {value!r}")


def _number(name: str, value: Any, test: Any, expected: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or not test(value):
        raise ValueError(f"{name}: expected {expected}, got {value!r}")
    return float(value)


def parse_kwargs(items: Sequence[str] | Mapping[str, Any] | None, name: str = "semaug_kwargs") -> dict[str, Any]:
    """``["a=1", "b=l2"]`` -> ``{"a": 1, "b": "l2"}``; values are parsed as YAML scalars or lists. A mapping is
    taken as it is (keys must be Python identifiers)."""
    if items is None:
        return {}
    if isinstance(items, Mapping):
        pairs = [(str(key), value, False) for key, value in items.items()]
    elif isinstance(items, str) or not isinstance(items, Sequence):
        raise ValueError(f"{name}: expected KEY=VALUE strings or a mapping, got {items!r}")
    else:
        pairs = []
        for item in items:
            key, sep, value = str(item).partition("=")
            if not sep:
                raise ValueError(f"{name}: expected KEY=VALUE with a Python identifier as KEY, got {item!r}")
            pairs.append((key, value, True))
    out: dict[str, Any] = {}
    for key, value, text in pairs:
        if not key.isidentifier():
            raise ValueError(f"{name}: expected KEY=VALUE with a Python identifier as KEY, got key {key!r}")
        if text:
            try:
                value = yaml.safe_load(value) if value else None
            except yaml.YAMLError as error:
                problem = " ".join(str(getattr(error, "problem", None) or "not valid YAML").split())
                raise ValueError(f"{name}: cannot read the value of {key}={value!r} ({problem}); quote a string "
                                 "or write a YAML list as [a, b]") from None
        out[key] = value
    return out
