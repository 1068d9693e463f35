"""``semaug train-generator {stylegan2,glow}``: train a generator on your own images.

Each kind's trainer is a module with ``configure(parser)`` and ``run(args)``, listed in ``TRAINERS``.
"""

from __future__ import annotations

import argparse
import importlib

# kind -> (one-line help, module implementing configure(parser) / run(args))
TRAINERS: dict[str, tuple[str, str]] = {
    "stylegan2": ("StyleGAN2 (non-saturating loss, R1, style mixing, EMA)", "torch_semaug.train.stylegan2_trainer"),
    "glow": ("Glow (maximum likelihood with uniform dequantisation)", "torch_semaug.train.glow_trainer"),
}


def configure(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="kind", metavar="KIND", required=True)
    for kind, (help_, module) in TRAINERS.items():
        kind_parser = sub.add_parser(kind, help=help_, description=help_)
        kind_parser.set_defaults(_trainer_module=module)
        try:
            importlib.import_module(module).configure(kind_parser)
        except ModuleNotFoundError as error:
            if error.name != module:
                raise
            kind_parser.set_defaults(_trainer_missing=True)


def run(args: argparse.Namespace) -> int:
    if getattr(args, "_trainer_missing", False):
        raise SystemExit(f"semaug train-generator {args.kind}: this trainer is not part of this install")
    return int(importlib.import_module(args._trainer_module).run(args) or 0)
