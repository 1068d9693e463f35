"""Per-epoch cost of LatentDataset against its base dataset (target: within 5 %).

One epoch = one full pass of a DataLoader (default collate) over the dataset, no model. The base is the
CIFAR-10 JPEG copy (``--data-root``, decode + ToTensor, the realistic case) or, with ``--synthetic``, an
in-memory TensorDataset (the worst case: the base costs almost nothing). The cache holds one float32
latent of the image's size per sample (a Glow-sized latent: 3x32x32) and is built before timing.
Epochs of the two datasets alternate; the overhead is the median over the back-to-back pairs of the
ratio of their times, and the ratio of the fastest epochs (least disturbed by other load on a shared
machine). With 0 workers the process's CPU time
is measured, with workers the wall time.

    python -m benchmarks.dataset_overhead --scale cpu --data-root $SEMAUG_DATA
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Subset, TensorDataset, default_collate

from torch_semaug import IdentityGenerator
from torch_semaug.data import LatentCache, LatentDataset
from torch_semaug.data.datasets import create_dataset, default_data_root
from torch_semaug.train.data import encoding_transform

SCALES = {"smoke": dict(n=256, repeats=2), "cpu": dict(n=5000, repeats=9), "paper": dict(n=50000, repeats=5)}


def epoch_seconds(dataset: Dataset, batch_size: int, workers: int) -> float:
    """Seconds of one epoch: CPU time of this process with ``workers=0`` (robust to other load on a shared
    machine, and all the work happens here), wall time with workers."""
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=True, num_workers=workers,
                        generator=torch.Generator().manual_seed(0))
    clock = time.process_time if workers == 0 else time.perf_counter
    start = clock()
    for batch in loader:
        del batch
    return clock() - start


def measure(base: Dataset, wrapped: Dataset, batch_size: int, workers: int, repeats: int) -> dict[str, float]:
    """Median epoch times, the median of the per-pair ratios (each pair run back to back, so slow drifts of
    the machine's load cancel) and the ratio of the fastest epochs."""
    epoch_seconds(base, batch_size, workers)  # warm the page cache and the memory map
    epoch_seconds(wrapped, batch_size, workers)
    base_times, wrapped_times = [], []
    for _ in range(repeats):
        base_times.append(epoch_seconds(base, batch_size, workers))
        wrapped_times.append(epoch_seconds(wrapped, batch_size, workers))
    ratios = [w / b for b, w in zip(base_times, wrapped_times)]
    return {"base": statistics.median(base_times), "wrapped": statistics.median(wrapped_times),
            "paired": statistics.median(ratios), "fastest": min(wrapped_times) / min(base_times)}


def batch_cpu_ms(base: Dataset, wrapped: LatentDataset, batch_size: int, batches: int = 60) -> tuple[float, ...]:
    """CPU milliseconds per batch (fetch + default collate) of base and wrapped on the same random indices,
    taking turns at going first, and of the latent read alone: the wrapper's cost without DataLoader or
    epoch noise."""
    rng = np.random.default_rng(0)
    times = np.zeros(3)
    fetches = (lambda rows: default_collate([base[i] for i in rows]),
               lambda rows: default_collate(wrapped.__getitems__(rows)),
               lambda rows: wrapped.latents[rows])
    for batch in range(batches):
        indices = rng.permutation(len(base))[:batch_size].tolist()
        order = (0, 1, 2) if batch % 2 == 0 else (1, 0, 2)  # whoever goes second finds the files cached
        for k in order:
            fetch = fetches[k]
            start = time.process_time()
            fetch(indices)
            times[k] += time.process_time() - start
    return tuple(1000 * times / batches)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", choices=SCALES, default="smoke")
    parser.add_argument("--data-root", default=default_data_root())
    parser.add_argument("--synthetic", action="store_true", help="in-memory TensorDataset base (worst case)")
    parser.add_argument("-b", "--batch-size", type=int, default=128)
    parser.add_argument("-j", "--workers", type=int, nargs="+", default=[0, 2])
    parser.add_argument("--out", default=None, help="append the Markdown table to this file")
    args = parser.parse_args(argv)
    scale = SCALES[args.scale]
    if args.synthetic:
        base: Dataset = TensorDataset(torch.rand(scale["n"], 3, 32, 32), torch.randint(0, 10, (scale["n"],)))
        name = f"TensorDataset ({scale['n']} x 3x32x32, in memory)"
    else:
        full = create_dataset("torch/cifar10", args.data_root, "train", transform=encoding_transform())
        base = Subset(full, range(min(scale["n"], len(full))))
        name = f"CIFAR-10 JPEG ImageFolder, first {len(base)} images"
    with tempfile.TemporaryDirectory() as tmp:
        cache = LatentCache.build(base, IdentityGenerator((3, 32, 32)), Path(tmp) / "cache", batch_size=256,
                                  progress=False)
        start = time.perf_counter()
        wrapped = LatentDataset(base, cache)
        check_s = time.perf_counter() - start
        rows = []
        for workers in args.workers:
            m = measure(base, wrapped, args.batch_size, workers, scale["repeats"])
            rows.append(f"| {name} | {workers} | {m['base']:.3f} | {m['wrapped']:.3f} | "
                        f"{100 * (m['paired'] - 1):+.1f} % | {100 * (m['fastest'] - 1):+.1f} % |")
        base_ms, wrapped_ms, read_ms = batch_cpu_ms(base, wrapped, args.batch_size)
    table = "\n".join([
        f"LatentDataset overhead per epoch (median of {scale['repeats']}, batch {args.batch_size}, "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads); fingerprint check at construction: "
        f"{check_s * 1000:.0f} ms once",
        "",
        "| base dataset | workers | base s/epoch | LatentDataset s/epoch | overhead (median of pairs) "
        "| overhead (fastest) |",
        "|---|---|---|---|---|---|",
        *rows,
        "",
        f"Per batch, CPU time without DataLoader (60 batches): base {base_ms:.2f} ms, LatentDataset "
        f"{wrapped_ms:.2f} ms ({100 * (wrapped_ms / base_ms - 1):+.1f} %), of which the latent read {read_ms:.2f} ms.",
    ])
    print(table)
    if args.out:
        with open(args.out, "a") as handle:
            handle.write(f"\n`{' '.join(['python', *sys.argv])}`\n\n{table}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
