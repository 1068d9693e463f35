"""``semaug demo``: RandMix and AdvMix against a colour bias, offline, in minutes on a CPU.

Writes ``OUT/results.md`` (accuracy on the unbiased test set of a classifier trained nominally, with
RandMix and with AdvMix) and ``OUT/samples.png`` (original | reconstruction | RandMix | AdvMix |
differences). See docs/demo.md.
"""

from __future__ import annotations

import argparse
import resource
import shlex
import sys
import time
from pathlib import Path

import torch


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, default=Path("demo"), help="output folder (default ./demo)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the classifiers, batches and augmentations")
    parser.add_argument("--quick", action="store_true", help="tiny sizes: runs in seconds (numbers meaningless)")
    parser.add_argument("--generator", type=Path, default=None,
                        help="StyleGAN2 checkpoint (default: the shipped demo_shapes16_stylegan2.safetensors)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads (default 1: the models are tiny, and on a busy machine two "
                             "threads of such small ops stall each other; 0: torch's default)")


def run(args: argparse.Namespace) -> int:
    if args.threads < 0:
        raise ValueError(f"--threads: expected a number >= 0, got {args.threads}")
    previous = torch.get_num_threads()
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        return _run(args)
    finally:
        torch.set_num_threads(previous)  # callers in the same process (tests, notebooks) keep their setting


def _run(args: argparse.Namespace) -> int:
    from torch_semaug._io import write_text_atomic
    from torch_semaug.demo.pipeline import ASSET, DemoConfig, run_demo
    from torch_semaug.demo.report import results_markdown, sample_columns, save_samples

    start = time.time()
    generator = args.generator or ASSET
    config = DemoConfig.quick(generator) if args.quick else DemoConfig(generator=generator)
    result = run_demo(config, seed=args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    samples = args.out / "samples.png"
    save_samples(sample_columns(result, args.seed, *config.figure_adv, layers=config.layers), samples)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    command = "semaug " + " ".join(shlex.quote(a) for a in sys.argv[1:]) if sys.argv[1:2] == ["demo"] else \
        "semaug demo" + (" --quick" if args.quick else "")
    text = results_markdown(result, config, args.seed, command, time.time() - start, usage.ru_utime + usage.ru_stime,
                            torch.get_num_threads(), args.quick)
    results = args.out / "results.md"
    write_text_atomic(results, text)
    print(text)
    print(f"wrote {results} and {samples}")
    return 0
