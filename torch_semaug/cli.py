"""The ``semaug`` command. Each subcommand lives in its own module, imported only when it runs.

A subcommand module defines ``configure(parser: argparse.ArgumentParser) -> None`` and
``run(args: argparse.Namespace) -> int``; add it to ``SUBCOMMANDS`` below.

A user's mistake never shows a traceback: argparse's own errors, and every ``ValueError``/``TypeError``/
``OSError`` a command raises, become one line ``error: --flag: ...`` on stderr and exit code 2. Library
errors name the argument by its Python name (``batch_size: ...``); that prefix is shown as the flag the
user typed (``--batch-size: ...``). ``SEMAUG_DEBUG=1`` re-raises instead, for a full traceback.
"""

from __future__ import annotations

import argparse
import importlib
import os
import re
import sys
from collections.abc import Sequence
from typing import NoReturn

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
    "convert": ("convert a generator checkpoint (rosinality .pt, NVIDIA .pkl) to torch_semaug safetensors",
                "torch_semaug.commands.convert"),
}

USAGE_ERROR = 2


class UsageError(Exception):
    """A mistake in the command line; ``semaug`` prints ``error: <message>`` and exits with code 2."""


class SemaugParser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors are one ``error:`` line and whose ``--help`` shows every default."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("formatter_class", argparse.ArgumentDefaultsHelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        self.exit(USAGE_ERROR, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def flag_names(parser: argparse.ArgumentParser) -> dict[str, str]:
    """``dest`` -> the flag a user types (the longest option string; a positional's metavar), over ``parser``
    and its subparsers."""
    names: dict[str, str] = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                names.update(flag_names(child))
        elif action.option_strings:
            names.setdefault(action.dest, max(action.option_strings, key=len))
        elif isinstance(action.metavar, str):
            names.setdefault(action.dest, action.metavar)
    return names


def user_message(error: BaseException, flags: dict[str, str]) -> str:
    """The error's message with a leading ``python_name:`` shown as the flag, e.g. ``--batch-size:``."""
    message = str(error) or type(error).__name__
    if isinstance(error, OSError) and error.filename is not None and error.strerror:
        message = f"{error.strerror}: {error.filename!r}"
    match = re.match(r"([A-Za-z_][A-Za-z0-9_]*):", message)
    if match and match.group(1) in flags:
        message = flags[match.group(1)] + message[match.end(1):]
    return " ".join(message.split("\n"))


def build_parser() -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    from torch_semaug import __version__

    parser = SemaugParser(prog="semaug", description="Semantic data augmentation through frozen generative models.")
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
        return 0 if args.command is None else USAGE_ERROR
    try:
        return int(module.run(args) or 0)
    except (UsageError, ValueError, TypeError, OSError) as error:
        if os.environ.get("SEMAUG_DEBUG"):
            raise
        print(f"semaug {name}: error: {user_message(error, flag_names(parsers[name]))}", file=sys.stderr)
        return USAGE_ERROR


if __name__ == "__main__":
    sys.exit(main())
