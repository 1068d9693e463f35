"""Shared pieces of the paper benchmarks: datasets as tensors, tables, seeds' mean ± sd, the paper's
orderings checked, and the results file. The methods, the training loop, accuracy and inversion are the
library's (:mod:`torch_semaug.train.quick`, shared with ``semaug demo``)."""

from __future__ import annotations

import argparse
import math
import os
import platform
import shlex
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import torch
from torch import Tensor

from torch_semaug._io import write_text_atomic

SCALES = ("smoke", "cpu", "paper")


def stack(dataset, n: int | None = None) -> tuple[Tensor, Tensor]:
    """The first ``n`` items of a map-style ``(image, label)`` dataset as two tensors."""
    n = len(dataset) if n is None else min(n, len(dataset))
    items = [dataset[i] for i in range(n)]
    return torch.stack([x for x, _ in items]), torch.stack([torch.as_tensor(y) for _, y in items])


def table(header: list[str], rows: list[list[object]]) -> str:
    def cell(v: object) -> str:
        return f"{v:.2f}" if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows])


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags every paper benchmark takes: where results go, the seed, and torch's CPU threads."""
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None)


def parse_run_args(parser: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    """Parse ``argv`` and apply ``--threads`` (flags added by :func:`add_run_arguments`)."""
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    return args


def parse_numbers(text: str, *, name: str, kind: type[int] | type[float], count: int | None = None,
                  form: str | None = None) -> list:
    """Comma-separated numbers of flag ``name``; a ValueError naming the flag when they do not parse or are
    not ``count`` of them (``form`` shows the expected shape, e.g. ``RESTARTS,STEPS``)."""
    try:
        values = [kind(v) for v in text.split(",")]
    except ValueError:
        values = None
    if values is None or (count is not None and len(values) != count):
        what = f"{count} " if count is not None else "comma-separated "
        shape = f" {form}" if form else ""
        raise ValueError(f"{name}: expected {what}{kind.__name__}s{shape}, got {text!r}")
    return values


def mean_sd(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    mean = sum(values) / len(values)
    var = sum((v - mean) ** 2 for v in values) / (len(values) - 1) if len(values) > 1 else 0.0
    return mean, math.sqrt(var)


def fmt_mean_sd(values: list[float]) -> str:
    """``mean ± sd (n)`` of per-seed values, or "–" when there are none yet."""
    if not values:
        return "–"
    mean, sd = mean_sd(values)
    return f"{mean:.2f} ± {sd:.2f} (n={len(values)})"


def ordering_rows(results: dict[str, list[float]], order: list[str]) -> list[list[object]]:
    """Each claim ``order[i] > order[i+1]`` of a paper, checked on per-seed ``results``: the difference of
    the means, that difference in pooled standard deviations (``sqrt((sd_a² + sd_b²) / 2)``), and the
    verdict: "held" beyond one pooled sd, "held within noise" when positive but smaller, else "not held"."""
    rows: list[list[object]] = []
    for better, worse in zip(order, order[1:]):
        a, b = results.get(better, []), results.get(worse, [])
        if not a or not b:
            rows.append([f"{better} > {worse}", "–", "–", "not run yet"])
            continue
        (ma, sa), (mb, sb) = mean_sd(a), mean_sd(b)
        pooled = math.sqrt((sa ** 2 + sb ** 2) / 2)
        diff = ma - mb
        in_sd = diff / pooled if pooled > 0 else math.copysign(math.inf, diff) if diff else 0.0
        verdict = "held" if in_sd > 1 else "held within noise" if diff > 0 else "not held"
        rows.append([f"{better} > {worse}", f"{diff:+.2f}", f"{in_sd:+.2f}" if math.isfinite(in_sd) else "n/a",
                     verdict if len(a) > 1 and len(b) > 1 else verdict + " (one seed)"])
    return rows


def machine() -> str:
    """Where a run ran: CPU model, cores, torch threads, torch version."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (f"{cpu}, {os.cpu_count()} cores, {torch.get_num_threads()} torch thread(s), "
            f"torch {torch.__version__}")


def write_results(path: Path, title: str, start: float, sections: list[str], notes: list[str]) -> None:
    """The results file: exact command, date, machine, wall time, then the tables and notes."""
    command = f"python -m benchmarks.{Path(sys.argv[0]).stem} " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    header = [f"# {title}", "", f"- command: `{command}`",
              f"- date: {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC; machine: {machine()}",
              f"- wall time: {time.time() - start:.0f} s", ""]
    write_text_atomic(path, "\n".join(header + sections + ["", *notes, ""]))
    print(f"wrote {path}")
