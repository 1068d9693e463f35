"""The ``semaug`` command. Each subcommand lives in its own module, imported only when it runs.

A subcommand module defines ``configure(parser: argparse.ArgumentParser) -> None`` and
``run(args: argparse.Namespace) -> int``; add it to ``SUBCOMMANDS`` below.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

# name -> (one-line help, module that implements it)
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("RandMix / AdvMix vs a colour bias on built-in shapes, offline, minutes on a CPU",
             "torch_semaug.commands.demo"),
    "directions": ("find latent directions (PCA or UMAP), draw a slider grid", "torch_semaug.commands.directions"),
    "info": ("print versions, devices and threads", "torch_semaug.commands.info"),
    "encode": ("encode a dataset once into a latent cache", "torch_semaug.commands.encode"),
    "train": ("train a timm classifier with a semantic transform", "torch_semaug.commands.train"),
    "eval": ("accuracy of a trained classifier under semantic attacks", "torch_semaug.commands.eval"),
    "train-generator": ("train a generator (stylegan2 or glow) on images", "torch_semaug.commands.train_generator"),
}


def build_parser() -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    from torch_semaug import __version__

    parser = argparse.ArgumentParser(
        prog="semaug", description="Semantic data augmentation through frozen generative models."
    )
    parser.add_argument("--version", action="version", version=f"torch-semaug {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    parsers = {name: sub.add_parser(name, help=help_, description=help_) for name, (help_, _) in
               SUBCOMMANDS.items()}
    return parser, parsers


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``semaug`` console script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser, parsers = build_parser()
    # Configure only the chosen subcommand, so that `semaug --help` imports nothing heavy.
    name = next((a for a in argv if not a.startswith("-")), None)
    module = None
    if name in SUBCOMMANDS:
        module = importlib.import_module(SUBCOMMANDS[name][1])
        module.configure(parsers[name])
    args = parser.parse_args(argv)
    if module is None:
        parser.print_help()
        return 0 if args.command is None else 2
    return int(module.run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
