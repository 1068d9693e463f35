"""Command-line flags of ``semaug train`` / ``python -m torch_semaug.train``: timm's names, plus ``--semaug-*``.

Like timm's ``train.py``, ``-c/--config`` names a YAML file whose keys (flag names with ``_`` or ``-``)
become the defaults; flags given on the command line override them.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

import torch
import yaml

from torch_semaug.data.datasets import DATASETS, default_data_root


def add_data_args(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("data")
    group.add_argument("--dataset", default="torch/cifar10", help=f"one of {', '.join(DATASETS)}")
    group.add_argument("--data-root", "--data-dir", dest="data_root", default=default_data_root(),
                       help="dataset root (default: $SEMAUG_DATA, else ./data)")
    group.add_argument("--train-subset", type=float, default=1.0, metavar="FRACTION",
                       help="train on this deterministic fraction in (0, 1] (CIFAR-10/MNIST: the official first k)")
    group.add_argument("--img-size", type=int, default=None, help="resize images to this size (default: native)")
    group.add_argument("--mean", type=float, nargs="+", default=None, help="normalisation mean (default: timm's)")
    group.add_argument("--std", type=float, nargs="+", default=None, help="normalisation std (default: timm's)")
    group.add_argument("--no-aug", action="store_true", help="no random crop/flip")
    group.add_argument("-j", "--workers", type=int, default=2, help="DataLoader workers per process")


def add_model_args(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("model and optimisation (timm)")
    group.add_argument("--model", default="resnet18", help="timm model name")
    group.add_argument("--num-classes", type=int, default=None, help="default: the dataset's")
    group.add_argument("--in-chans", type=int, default=None, help="default: the dataset's")
    group.add_argument("--drop", type=float, default=0.0, help="dropout rate")
    group.add_argument("-b", "--batch-size", type=int, default=128, help="batch size per process")
    group.add_argument("-vb", "--validation-batch-size", type=int, default=None)
    group.add_argument("--epochs", type=int, default=30)
    group.add_argument("--opt", default="sgd", help="timm optimizer name")
    group.add_argument("--lr", type=float, default=0.05)
    group.add_argument("--momentum", type=float, default=0.9)
    group.add_argument("--weight-decay", type=float, default=5e-4)
    group.add_argument("--clip-grad", type=float, default=None, help="clip the gradient norm to this")
    group.add_argument("--sched", default="cosine", help="timm scheduler name")
    group.add_argument("--warmup-epochs", type=int, default=0)
    group.add_argument("--warmup-lr", type=float, default=1e-5)
    group.add_argument("--min-lr", type=float, default=0.0)
    group.add_argument("--decay-epochs", type=float, default=None)
    group.add_argument("--decay-rate", type=float, default=0.1)
    group.add_argument("--smoothing", type=float, default=0.0, help="label smoothing")
    group.add_argument("--mixup", type=float, default=0.0, help="mixup alpha (0: off)")
    group.add_argument("--cutmix", type=float, default=0.0, help="cutmix alpha (0: off)")
    group.add_argument("--mixup-prob", type=float, default=1.0)


def add_semaug_args(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("semantic augmentation (applied after the loader, where timm applies mixup)")
    group.add_argument("--semaug", default=None, metavar="NAME",
                       help="transform name (see torch_semaug.list_transforms())")
    group.add_argument("--semaug-generator", default=None, metavar="PATH", help="generator checkpoint (.safetensors)")
    group.add_argument("--semaug-latents", default=None, metavar="DIR", help="latent cache of the training split")
    group.add_argument("--semaug-p", type=float, default=None, help="probability per example")
    group.add_argument("--semaug-eps", type=float, default=None)
    group.add_argument("--semaug-steps", type=int, default=None)
    group.add_argument("--semaug-step-size", type=float, default=None)
    group.add_argument("--semaug-mode", default=None, help="e.g. random or adversarial")
    group.add_argument("--semaug-restarts", type=int, default=None)
    group.add_argument("--semaug-kwargs", nargs="*", default=[], metavar="KEY=VALUE",
                       help="further constructor arguments, values parsed as YAML (e.g. norm=l2 early_stop=true)")


def add_run_args(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("run")
    group.add_argument("--amp", action="store_true", help="mixed precision (accelerate)")
    group.add_argument("--amp-dtype", default="bfloat16", choices=("float16", "bfloat16"))
    group.add_argument("--seed", type=int, default=42)
    group.add_argument("--output", default="runs", help="parent folder of the run folder")
    group.add_argument("--experiment", default=None, help="run folder name (default: dataset-model[-semaug])")
    group.add_argument("--resume", default=None, metavar="PATH", help="checkpoint to resume (e.g. .../last.pth)")
    group.add_argument("--device", default=None, help="cpu or cuda (default: what accelerate picks)")
    group.add_argument("--log-interval", type=int, default=50, help="batches between progress-bar updates")
    group.add_argument("--no-progress", action="store_true", help="no tqdm bars")


def configure(parser: argparse.ArgumentParser) -> None:
    """Add every training flag to ``parser`` (used by ``semaug train`` and ``python -m torch_semaug.train``)."""
    parser.add_argument("-c", "--config", default=None, metavar="FILE", help="YAML file of default flag values")
    add_data_args(parser)
    add_model_args(parser)
    add_semaug_args(parser)
    add_run_args(parser)


def load_config_defaults(parser: argparse.ArgumentParser, path: str) -> None:
    """Use the YAML mapping in ``path`` as ``parser``'s defaults; unknown keys are an error."""
    with open(path) as handle:
        config = yaml.safe_load(handle) or {}
    if not isinstance(config, dict):
        raise ValueError(f"config: expected a YAML mapping of flag names to values in {path!r}, got {config!r}")
    known = {action.dest for action in parser._actions}
    config = {str(k).replace("-", "_"): v for k, v in config.items()}
    unknown = sorted(set(config) - known)
    if unknown:
        raise ValueError(f"config: unknown keys {unknown} in {path!r}; expected flag names such as 'batch_size'")
    parser.set_defaults(**config)


def parse_args(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> argparse.Namespace:
    """timm's two-stage parse: read ``-c`` first, make its values the defaults, then parse everything."""
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("-c", "--config", default=None)
    known, _ = pre.parse_known_args(argv)
    if known.config:
        load_config_defaults(parser, known.config)
    return parser.parse_args(argv)


def apply_config(parser: argparse.ArgumentParser, args: argparse.Namespace) -> argparse.Namespace:
    """For an already parsed ``args``: values still at the parser's default are taken from ``-c`` YAML."""
    if not args.config:
        return args
    defaults = {action.dest: action.default for action in parser._actions}
    load_config_defaults(parser, args.config)
    for dest, default in defaults.items():
        if hasattr(args, dest) and getattr(args, dest) == default:
            setattr(args, dest, parser.get_default(dest))
    return args


def parse_kwargs(items: Sequence[str], name: str = "semaug_kwargs") -> dict[str, Any]:
    """``["a=1", "b=l2"]`` -> ``{"a": 1, "b": "l2"}``; values are parsed as YAML scalars or lists."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.isidentifier():
            raise ValueError(f"{name}: expected KEY=VALUE with a Python identifier as KEY, got {item!r}")
        out[key] = yaml.safe_load(value) if value else None
    return out


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"
