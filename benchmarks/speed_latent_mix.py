"""LatentMix and encoder speed at a chosen size (the cases of ``speed.py``, with the batch and classifier
set on the command line, for machines where ``speed.py --scale cpu`` takes too long).

    OMP_NUM_THREADS=1 python benchmarks/speed_latent_mix.py --batch 32 --model tiny --steps 7 --repeats 3
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import speed  # noqa: E402

import torch_semaug as ts  # noqa: E402
from torch_semaug._io import write_text_atomic  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--model", default="tiny", help="'tiny' or a timm model name")
    parser.add_argument("--steps", type=int, default=7, help="AdvMix steps per restart (restarts: 5)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    start = time.perf_counter()
    torch.manual_seed(0)
    device = torch.device(args.device)
    model = speed.build_model(args.model, 3, 10).to(device).train()
    images = torch.rand(args.batch, 3, 32, 32, device=device)
    with torch.no_grad(), ts.classifier_guard(model) as inner:
        labels = inner(images).argmax(1)
    # scale "cpu" makes the cases use the 32 px default StyleGAN2 (1.3 M parameters) and 5 restarts
    setup = speed.Setup("cpu", device, model, images, labels, args.steps, args.repeats)
    rows = speed.case_latent_mix(setup) + speed.case_encoders(setup)
    command = "python benchmarks/speed_latent_mix.py " + " ".join(argv if argv is not None else sys.argv[1:])
    lines = [f"- command: `{command}` ({torch.get_num_threads()} threads, {device}); classifier {args.model}, "
             f"batch {args.batch}, 32 px; StyleGAN2 32 px default (1.3 M parameters); median of {args.repeats} "
             f"interleaved repeats; wall {time.perf_counter() - start:.0f} s", "",
             "| transform | configuration | time / batch (ms) | floor (ms) | floor is | ratio |",
             "|---|---|---:|---:|---|---:|"]
    lines += [f"| {r.transform} | {r.config} | {r.seconds * 1e3:.1f} | {r.floor_seconds * 1e3:.1f} | {r.floor} | "
              f"{r.ratio:.3f} |" for r in rows]
    table = "\n".join(lines) + "\n"
    print(table)
    if args.out:
        write_text_atomic(args.out, table)


if __name__ == "__main__":
    main()
