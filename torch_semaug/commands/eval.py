"""``semaug eval``: clean accuracy and accuracy under semantic attacks of a ``semaug train`` checkpoint."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import torch

from torch_semaug.commands._types import device, non_negative_int, positive_int


def configure(parser: argparse.ArgumentParser) -> None:
    from torch_semaug.data.datasets import DATASETS, SPLITS

    parser.add_argument("--checkpoint", required=True, metavar="PATH", help="a semaug train checkpoint (last.pth)")
    parser.add_argument("--attack", action="append", default=[], metavar="NAME=GENERATOR",
                        help="a transform name and its generator checkpoint, e.g. "
                             "flow_perturb=glow.safetensors (repeat for several attacks)")
    parser.add_argument("--attack-kwargs", nargs="*", default=[], metavar="NAME:KEY=VALUE",
                        help="override an attack's argument, e.g. latent_mix:restarts=5 (values parsed as YAML)")
    parser.add_argument("--latents", default=None, metavar="DIR",
                        help="latent cache of the evaluated split (`semaug encode`), used by every attack whose "
                             "generator it belongs to; needed by a generator that cannot encode (StyleGAN2)")
    parser.add_argument("--dataset", default=None, help=f"{', '.join(DATASETS)} (default: the checkpoint's)")
    parser.add_argument("--data-root", default=None, help="default: the checkpoint's")
    parser.add_argument("--split", default="test", choices=SPLITS)
    parser.add_argument("--val-subset", type=positive_int, default=None, metavar="N",
                        help="evaluate N images of the split, the same ones every run (as NAME@N: the first N of "
                             "CIFAR-10/MNIST/Color-MNIST, whose order is mixed; a fixed seeded sample of a folder)")
    parser.add_argument("-b", "--batch-size", type=positive_int, default=128)
    parser.add_argument("-j", "--workers", type=non_negative_int, default=2)
    parser.add_argument("--device", type=device, default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--seed", type=non_negative_int, default=0, help="seed of the attacks' random draws")
    parser.add_argument("--max-grid", type=non_negative_int, default=8,
                        help="examples shown per attack (turned from correct to wrong)")
    parser.add_argument("--output", default="eval.md",
                        help="Markdown report; the same numbers go to .json and .csv beside it, grids to "
                             "<stem>_<attack>.png")
    parser.add_argument("--no-progress", action="store_true")


def parse_attacks(attacks: list[str], overrides: list[str]) -> list[tuple[str, str, dict[str, Any]]]:
    """``["a=g.safetensors"]`` and ``["a:k=v"]`` -> ``[("a", "g.safetensors", {"k": v})]``."""
    from torch_semaug.train.args import parse_kwargs

    specs = []
    for item in attacks:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise ValueError(f"attack: expected NAME=GENERATOR_CHECKPOINT, got {item!r}")
        specs.append((name, path, {}))
    for item in overrides:
        name, sep, pair = item.partition(":")
        matching = [spec for spec in specs if spec[0] == name]
        if not sep or not matching:
            raise ValueError(f"attack_kwargs: expected NAME:KEY=VALUE for a NAME given with --attack "
                             f"({[s[0] for s in specs]}), got {item!r}")
        for spec in matching:
            spec[2].update(parse_kwargs([pair], "attack_kwargs"))
    return specs


def run(args: argparse.Namespace) -> int:
    from torch_semaug.train.evaluate import run_evaluation

    result = run_evaluation(
        args.checkpoint, parse_attacks(args.attack, args.attack_kwargs), output=args.output,
        dataset=args.dataset, data_root=args.data_root, split=args.split, latents=args.latents,
        batch_size=args.batch_size, val_subset=args.val_subset, workers=args.workers, device=args.device,
        seed=args.seed, max_grid=args.max_grid, progress=not args.no_progress,
    )
    print(Path(result["report"]).read_text())
    print("\n".join([f"report: {result['report']}", f"numbers: {result['json']}, {result['csv']}",
                     *(f"grid: {g}" for g in result["grids"])]))
    return 0
