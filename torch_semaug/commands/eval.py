"""``semaug eval``: clean accuracy and accuracy under semantic attacks of a ``semaug train`` checkpoint."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import torch


def configure(parser: argparse.ArgumentParser) -> None:
    from torch_semaug.data.datasets import SPLITS

    parser.add_argument("--checkpoint", required=True, metavar="PATH", help="a semaug train checkpoint (last.pth)")
    parser.add_argument("--attack", action="append", default=[], metavar="NAME=GENERATOR",
                        help="a transform name and its generator checkpoint, e.g. "
                             "flow_perturb=glow.safetensors (repeat for several attacks)")
    parser.add_argument("--attack-kwargs", nargs="*", default=[], metavar="NAME:KEY=VALUE",
                        help="override an attack's argument, e.g. latent_mix:restarts=5 (values parsed as YAML)")
    parser.add_argument("--latents", default=None, metavar="DIR",
                        help="latent cache of the evaluated split (used by attacks whose generator built it)")
    parser.add_argument("--dataset", default=None, help="default: the checkpoint's training dataset")
    parser.add_argument("--data-root", default=None, help="default: the checkpoint's")
    parser.add_argument("--split", default="test", choices=SPLITS)
    parser.add_argument("--limit", type=int, default=None, help="evaluate only the first N images")
    parser.add_argument("-b", "--batch-size", type=int, default=128)
    parser.add_argument("-j", "--workers", type=int, default=2)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--seed", type=int, default=0, help="seed of the attacks' random restarts")
    parser.add_argument("--max-grid", type=int, default=8, help="misclassified examples shown per attack")
    parser.add_argument("--output", default="eval.md", help="Markdown report (grids are written beside it)")
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

    try:
        result = run_evaluation(
            args.checkpoint, parse_attacks(args.attack, args.attack_kwargs), output=args.output,
            dataset=args.dataset, data_root=args.data_root, split=args.split, latents=args.latents,
            batch_size=args.batch_size, limit=args.limit, workers=args.workers, device=args.device, seed=args.seed,
            max_grid=args.max_grid, progress=not args.no_progress,
        )
    except (ValueError, FileNotFoundError) as error:
        raise SystemExit(f"semaug eval: error: {error}") from None
    print(Path(result["report"]).read_text())
    print(f"report: {result['report']}" + "".join(f"\ngrid: {g}" for g in result["grids"]))
    return 0
