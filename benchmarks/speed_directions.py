"""Time of direction discovery (PCA and UMAP) for a given number of sampled W codes.

    python -m benchmarks.speed_directions --num-samples 10000 --out benchmarks/results/speed_directions.md

Uses the trained generator given by ``--generator`` (a ``.safetensors`` checkpoint), else a randomly
initialised StyleGAN2 at 32 px (discovery cost does not depend on training). UMAP is timed after a
warm-up fit on a few hundred codes, so its numba compilation (a one-off per process) is reported
separately.
"""

from __future__ import annotations

import argparse
import datetime
import platform
import sys
import time
from pathlib import Path

import torch

import torch_semaug as ts
from torch_semaug._io import write_text_atomic


def load(path: str | None, device: str) -> torch.nn.Module:
    if path:
        return ts.generators.load_generator(path, device=device)
    torch.manual_seed(0)
    return ts.StyleGAN2(32).to(device).freeze()


def main(argv: list[str] | None = None) -> list[tuple[str, str, float]]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--generator", default=None, help="generator checkpoint (default: random StyleGAN2 32 px)")
    parser.add_argument("--num-samples", type=int, default=10_000)
    parser.add_argument("--n-components", type=int, default=10)
    parser.add_argument("--layer", default="synthesis.b8", help="module for the activation-space rows")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", type=Path, help="write the Markdown table here (atomically)")
    args = parser.parse_args(argv)
    generator = load(args.generator, args.device)
    n, k = args.num_samples, args.n_components
    rows: list[tuple[str, str, float]] = []

    start = time.perf_counter()
    ts.find_directions(generator, "umap", n_components=2, num_samples=300, progress=False)
    rows.append(("umap warm-up (import + numba compile + 300-code fit)", "w", time.perf_counter() - start))
    for method in ("pca", "umap"):
        for space, layer in (("w", None), ("activations", args.layer)):
            start = time.perf_counter()
            ts.find_directions(generator, method, n_components=k, num_samples=n, space=space, layer=layer,
                               progress=False)
            rows.append((method, space if layer is None else f"activations of {layer}", time.perf_counter() - start))

    command = "python -m benchmarks.speed_directions " + " ".join(argv if argv is not None else sys.argv[1:])
    lines = [
        "# Speed: direction discovery",
        "",
        f"- command: `{command}`",
        f"- date: {datetime.date.today().isoformat()}; {platform.machine()}, {torch.get_num_threads()} threads, "
        f"device {args.device}; torch {torch.__version__}",
        f"- generator: {type(generator).__name__}, w_dim {generator.w_dim}, {generator.image_shape[1]} px; "
        f"{n} sampled codes, {k} directions (sampling + fit, seconds)",
        "",
        "| method | features | seconds |",
        "|---|---|---:|",
        *(f"| {m} | {s} | {t:.1f} |" for m, s, t in rows),
    ]
    table = "\n".join(lines) + "\n"
    print(table)
    if args.out:
        write_text_atomic(args.out, table)
    return rows


if __name__ == "__main__":
    main()
