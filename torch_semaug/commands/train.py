"""``semaug train`` / ``python -m torch_semaug.train``: timm's training flags plus ``--semaug*``.

Where a value comes from, lowest first: :class:`~torch_semaug.train.args.TrainConfig`'s defaults, the
options stored in the ``--resume`` checkpoint, the ``-c`` YAML file, the flags on the command line. Flags
are parsed with no defaults (``argparse.SUPPRESS``), so "given on the command line" never depends on the
value typed.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from collections.abc import Sequence
from typing import Any

import yaml

from torch_semaug.commands._types import (
    fraction,
    non_negative_float,
    non_negative_int,
    positive_float,
    positive_int,
    probability,
)
from torch_semaug.train.args import DEVICE_TYPES, TIMM_DEFAULTS, TRACKERS, TrainConfig

DEFAULTS = {f.name: (f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default)
            for f in dataclasses.fields(TrainConfig)}
DESCRIPTION = ("Train a timm classifier with a semantic transform (the flags of `semaug train`). Defaults that differ "
               "from timm's train.py show timm's too: ours suit CIFAR-scale runs on one GPU or a CPU.")
FOLDER_PATTERN = "UTC time-dataset-model[-semaug], e.g. 20260102-150405-torch-cifar10-resnet18-latent_mix"


def add(group: argparse._ArgumentGroup, *names: str, help: str, dest: str | None = None, **kwargs: Any) -> None:
    """A flag of ``TrainConfig`` field ``dest`` whose help shows our default and timm's where they differ."""
    dest = dest or max(names, key=len).lstrip("-").replace("-", "_")
    shown = help[:-1] if help.endswith(")") and "(default:" in help else f"{help} (default: {DEFAULTS[dest]}"
    if dest in TIMM_DEFAULTS:
        shown += f"; timm's: {TIMM_DEFAULTS[dest]}"
    shown += ")"
    group.add_argument(*names, dest=dest, default=argparse.SUPPRESS, help=shown.replace("%", "%%"), **kwargs)


def add_data_args(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("data")
    add(group, "--dataset", metavar="NAME", help="torch/cifar10, torch/mnist, colormnist or folder:PATH (default: an "
        "ImageFolder at --data-dir when it is given, else torch/cifar10)")
    add(group, "--data-dir", "--data-root", dest="data_root", metavar="DIR",
        help="dataset root, timm's meaning: with no --dataset an ImageFolder with train/ and val/ or test/ "
             "(default: $SEMAUG_DATA, else ./data)")
    add(group, "--train-split", metavar="NAME", help="training split")
    add(group, "--val-split", metavar="NAME", help="validation split")
    add(group, "--train-subset", type=fraction, metavar="FRACTION",
        help="train on this deterministic fraction (CIFAR-10/MNIST: the official first k)")
    add(group, "--img-size", type=positive_int, help="resize images to this size (default: native)")
    add(group, "--mean", type=float, nargs="+", help="normalisation mean (default: timm's for the model)")
    add(group, "--std", type=positive_float, nargs="+", help="normalisation std (default: timm's for the model)")
    add(group, "--no-aug", action="store_true", help="no random crop/flip/auto-augment/erasing")
    add(group, "--aa", metavar="POLICY", help="timm auto-augment policy, e.g. rand-m9-mstd0.5-inc1, augmix-m5-w4-d2")
    add(group, "--reprob", type=probability, help="timm random-erasing probability (pixel mode)")
    add(group, "-j", "--workers", type=non_negative_int, help="DataLoader workers per process")


def add_model_args(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("model and optimisation (timm)")
    add(group, "--model", help="timm model name")
    add(group, "--num-classes", type=positive_int, help="classes (default: the dataset's)")
    add(group, "--in-chans", type=positive_int, help="input channels (default: the dataset's)")
    add(group, "--drop", type=non_negative_float, help="dropout rate")
    add(group, "-b", "--batch-size", type=positive_int, help="batch size per process")
    add(group, "-vb", "--validation-batch-size", type=positive_int, help="validation batch size (default: -b)")
    add(group, "--epochs", type=positive_int, help="epochs to train")
    add(group, "--opt", help="timm optimizer name")
    add(group, "--lr", type=positive_float, help="learning rate")
    add(group, "--momentum", type=non_negative_float, help="optimizer momentum")
    add(group, "--weight-decay", type=non_negative_float, help="weight decay")
    add(group, "--clip-grad", type=positive_float, help="clip the gradient norm to this (default: no clipping)")
    add(group, "--sched", help="timm scheduler name")
    add(group, "--warmup-epochs", type=non_negative_int, help="epochs of linear warm-up")
    add(group, "--warmup-lr", type=non_negative_float, help="learning rate at the start of the warm-up")
    add(group, "--min-lr", type=non_negative_float, help="lower bound of the learning rate")
    add(group, "--decay-epochs", type=positive_float, help="step scheduler period (default: epochs / 3)")
    add(group, "--decay-rate", type=positive_float, help="step scheduler factor")
    add(group, "--smoothing", type=non_negative_float, help="label smoothing")
    add(group, "--mixup", type=non_negative_float, help="mixup alpha (0: off)")
    add(group, "--cutmix", type=non_negative_float, help="cutmix alpha (0: off)")
    add(group, "--mixup-prob", type=probability, help="probability of mixup or cutmix per batch")
    add(group, "--grad-accum-steps", type=positive_int, help="batches whose gradients are summed per optimizer step")
    add(group, "--channels-last", action="store_true", help="channels-last memory layout")
    add(group, "--torchcompile", nargs="?", const="inductor", metavar="BACKEND",
        help="torch.compile the model with this backend (inductor when the flag has no value; default: off)")
    add(group, "--model-ema", action="store_true", help="keep an EMA of the weights (timm ModelEmaV3); it is "
        "validated every epoch and picks model_best.pth")
    add(group, "--model-ema-decay", type=positive_float, help="EMA decay")


def add_semaug_args(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("semantic augmentation (applied after the loader, where timm applies mixup)")
    add(group, "--semaug", metavar="NAME", help="transform name, one of torch_semaug.list_transforms() "
        "(default: none)")
    add(group, "--semaug-generator", metavar="PATH", help="generator checkpoint (default: none)")
    add(group, "--semaug-latents", metavar="DIR", help="latent cache of the training split (default: none)")
    for flag, kind, text in (("p", probability, "probability per example"), ("eps", non_negative_float, "budget"),
                             ("steps", positive_int, "attack steps"), ("step-size", positive_float, "step size"),
                             ("mode", str, "mode, e.g. random or adversarial"), ("restarts", positive_int, "restarts")):
        add(group, f"--semaug-{flag}", type=kind, help=f"the transform's {text} (default: the transform's)")
    add(group, "--semaug-kwargs", nargs="*", metavar="KEY=VALUE",
        help="further constructor arguments, values parsed as YAML, e.g. norm=l2 early_stop=true (default: none)")
    add(group, "--semaug-warm-start", action="store_true", help="adversarial modes: each example's attack starts "
        "from its move of the previous epoch (per-example memory on the host, saved in last.pth)")


def add_run_args(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("run")
    add(group, "--amp", action="store_true", help="mixed precision (accelerate)")
    add(group, "--amp-dtype", choices=("float16", "bfloat16"), help="mixed-precision type")
    add(group, "--seed", type=non_negative_int, help="random seed")
    add(group, "--output", metavar="DIR", help="parent folder of the run folder")
    add(group, "--experiment", metavar="NAME", help=f"run folder name under --output (default: {FOLDER_PATTERN})")
    add(group, "--resume", metavar="PATH", help="continue the run of this last.pth with its options; flags given "
        "here override them (default: a new run)")
    add(group, "--device", choices=DEVICE_TYPES, help="device (default: what accelerate picks: the GPU if any)")
    add(group, "--log-interval", type=positive_int, help="batches between log lines (when stdout is not a terminal)")
    add(group, "--no-progress", dest="progress", action="store_false", help="no tqdm bar on a terminal, log lines "
        "instead (default: a bar on a terminal, log lines otherwise)")
    add(group, "--log-with", choices=TRACKERS, help="accelerate tracker, e.g. tensorboard (pip install "
        "'torch-semaug[log]'; logs in the run folder; default: none)")


def configure(parser: argparse.ArgumentParser) -> None:
    """Add every training flag to ``parser`` (used by ``semaug train`` and ``python -m torch_semaug.train``)."""
    parser.add_argument("-c", "--config", default=argparse.SUPPRESS, metavar="FILE",
                        help="YAML file of flag values (batch_size: 64 or batch-size: 64); flags given here win")
    add_data_args(parser)
    add_model_args(parser)
    add_semaug_args(parser)
    add_run_args(parser)
    parser.description = DESCRIPTION
    parser.set_defaults(_flags=parser)


def read_config(path: str, parser: argparse.ArgumentParser) -> dict[str, Any]:
    """The YAML mapping in ``path`` as option values; keys are flag names (``-`` or ``_``); unknown keys are an
    error."""
    try:
        with open(path) as handle:
            raw = yaml.safe_load(handle)
    except OSError as error:
        raise ValueError(f"config: cannot read {path!r} ({error.strerror})") from None
    except yaml.YAMLError as error:
        problem = " ".join(str(getattr(error, "problem", None) or error).split())
        raise ValueError(f"config: {path!r} is not valid YAML ({problem})") from None
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ValueError(f"config: expected a YAML mapping of flag names to values in {path!r}, got {raw!r}")
    actions = {option.lstrip("-").replace("-", "_"): action for action in parser._actions
               for option in action.option_strings if action.dest in DEFAULTS}
    values, unknown = {}, []
    for key, value in raw.items():
        action = actions.get(str(key).replace("-", "_"))
        if action is None:
            unknown.append(str(key))
        else:
            values[action.dest] = (not value) if isinstance(action, argparse._StoreFalseAction) else value
    if unknown:
        raise ValueError(f"config: unknown keys {sorted(unknown)} in {path!r}; expected flag names such as "
                         "'batch_size'")
    return values


def build_config(args: argparse.Namespace) -> TrainConfig:
    """Defaults < the ``--resume`` checkpoint's options < ``-c`` YAML < flags given on the command line."""
    from torch_semaug.train.classifier import resume_config

    given = {k: v for k, v in vars(args).items() if k in DEFAULTS}
    from_file = read_config(args.config, args._flags) if getattr(args, "config", None) else {}
    if given.get("resume"):
        return resume_config(given["resume"], **(from_file | given))
    return TrainConfig(**from_file | given)


def run(args: argparse.Namespace) -> int:
    from torch_semaug.train.classifier import train_classifier

    config = build_config(args)
    try:
        train_classifier(config)
    except KeyboardInterrupt:
        return 130
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m torch_semaug.train``: the same flags, errors and exit codes as ``semaug train``."""
    from torch_semaug.cli import USAGE_ERROR, SemaugParser, flag_names, user_message

    parser = SemaugParser(prog="python -m torch_semaug.train", description=DESCRIPTION)
    configure(parser)
    args = parser.parse_args(argv)
    try:
        return run(args)
    except (ValueError, TypeError, OSError) as error:
        if os.environ.get("SEMAUG_DEBUG"):
            raise
        print(f"{parser.prog}: error: {user_message(error, flag_names(parser))}", file=sys.stderr)
        return USAGE_ERROR
