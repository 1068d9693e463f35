"""``semaug train``: timm image-classification training with an optional semantic transform (accelerate)."""

from __future__ import annotations

import argparse


def configure(parser: argparse.ArgumentParser) -> None:
    from torch_semaug.train.args import configure as add_training_args

    add_training_args(parser)
    parser.set_defaults(_parser=parser)


def run(args: argparse.Namespace) -> int:
    from torch_semaug.train.args import apply_config
    from torch_semaug.train.classifier import run_training

    parser = args._parser
    del args._parser
    try:
        return run_training(apply_config(parser, args))
    except (ValueError, FileNotFoundError) as error:
        parser.exit(2, f"error: {error}\n")
