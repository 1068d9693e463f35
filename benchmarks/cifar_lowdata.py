"""CIFAR-10 low-data benchmark of the flow paper (Yüksel et al., ICCV 2021), Tables 1, 5 and 6.

Table 1: test accuracy of a classifier trained on the first 5 % of CIFAR-10's training set (official order;
all of it too at ``paper`` scale) with: standard (no augmentation), flips/crops, and on top of flips/crops
(applied once): Cutout, Mixup, image-space PGD (``pixel_at``, l-inf 8/255), Randomized-LA (``rla``, l-inf eps
0.25) and Adversarial-LA (``ala``, l2 eps 1.0, step 0.5, 3 steps, random start) through the project's Glow
(``--flow``). flow-lp's attack variants are extra rows: ``ala+bn`` (BatchNorm in train mode during the attack)
and ``ala+pred`` (the model's predictions as targets), and ``rla+l2`` is R-LA as flow-lp's README runs it on
CIFAR-10 (l2, eps 20) instead of the library's default (l-inf, eps 0.25). ``--p`` is the fraction of each batch
perturbed (flow-lp: the whole batch). Table 5: the image-space size (l2, l-inf) of R-LA's and A-LA's
perturbations. Table 6: accuracy of each model under R-LA and A-LA attacks of test images.

The classifier is a CIFAR-style ResNet (3x3 stem, no max-pool) trained as flow-lp does: SGD 0.1, Nesterov,
weight decay 5e-4, batch 128, learning rate x0.2 at 30/60/80 % of training. ``--scale smoke`` (tests:
synthetic images, tiny ResNet), ``cpu`` (a narrow 3-stage ResNet, few epochs), ``paper`` (ResNet-18, 200
epochs). Every (method, seed) is written to the results as it finishes; ``--resume`` skips those done::

    python -m benchmarks.cifar_lowdata --scale cpu --data-root DATA \\
        --flow benchmarks/checkpoints/glow-cifar10-cpu.safetensors
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import torch

from benchmarks._bench import (
    SCALES,
    add_run_arguments,
    fmt_mean_sd,
    ordering_rows,
    parse_run_args,
    stack,
    table,
    write_results,
)
from torch_semaug._io import write_text_atomic
from torch_semaug.commands._types import positive_int
from torch_semaug.generators.glow import Glow
from torch_semaug.train import quick
from torch_semaug.transforms.flow_perturb import FlowPerturb

METHODS = ("standard", "flips_crops", "cutout", "mixup:1.0", "pixel_at", "rla", "ala", "ala+bn", "ala+pred")
FLOW_METHODS = ("rla", "ala")
PAPER_5PCT = {"standard": "49.8", "flips_crops": "64.1", "cutout": "66.8", "mixup:1.0": "73.4", "rla": "70.1",
              "ala": "80.4"}
PAPER_ORDER = ["ala", "rla", "flips_crops", "standard"]     # Table 1's ordering at 5 %
PAPER_SIZES = {"rla": (4.18, 0.41), "ala": (4.61, 0.44)}    # Table 5: mean l2, l-inf of the perturbation
SETTINGS = {
    "smoke": dict(fractions=[0.05], epochs=1, batch=8, test=32, blocks=(1, 1), width=4, lr=0.1,
                  attack_test=16, size_images=8),
    # one shared core, 90 minutes for 4 rows x 3 seeds: the Glow costs A-LA ~3.5 cpu-s per batch of 128
    # (R-LA ~0.85, the ResNet alone ~0.2), so 8 epochs (160 steps), not 200
    "cpu": dict(fractions=[0.05], epochs=8, batch=128, test=10000, blocks=(1, 1, 1), width=16, lr=0.1,
                attack_test=250, size_images=250),
    "paper": dict(fractions=[0.05, 1.0], epochs=200, batch=128, test=10000, blocks=(2, 2, 2, 2), width=64, lr=0.1,
                  attack_test=10000, size_images=10000),
}
MILESTONES = (0.3, 0.6, 0.8)  # flow-lp: epochs 60, 120, 160 of 200, x0.2


def load_split(args: argparse.Namespace, split: str, n: int | None):
    """CIFAR-10 images in [0, 1] (first ``n``, official order), or synthetic stand-ins at smoke scale."""
    if args.scale == "smoke" and args.data_root is None:
        g = torch.Generator().manual_seed(0 if split == "train" else 1)
        count = n or 64
        labels = torch.arange(count) % 10
        base = torch.rand(10, 3, 1, 1, generator=g)  # one mean colour per class plus noise
        return (base[labels] + 0.2 * torch.rand(count, 3, 32, 32, generator=g)).clamp(0, 1), labels
    from torchvision.transforms import v2

    from torch_semaug.data.datasets import create_dataset

    to_tensor = v2.Compose([v2.ToImage(), v2.ToDtype(torch.float32, scale=True)])
    return stack(create_dataset("torch/cifar10", args.data_root, split, transform=to_tensor), n)


def build_method(name: str, model, *, seed: int, flow, p: float) -> quick.Method:
    """The training augmentation of Table 1's row ``name``: flips/crops exactly once for every row but
    ``standard``, then the row's own method."""
    if name == "standard":
        return quick.make_method("standard", model, num_classes=10, image_shape=(3, 32, 32), seed=seed)
    flips = quick.flips_crops(32)
    if name == "flips_crops":
        return flips
    method = quick.make_method(name, model, num_classes=10, image_shape=(3, 32, 32), seed=seed, flow=flow, p=p,
                               at_eps=8 / 255, at_steps=3)
    return quick.then(flips, method)


@torch.no_grad()
def _sizes(clean: torch.Tensor, moved: torch.Tensor) -> tuple[float, float]:
    delta = (moved - clean).flatten(1)
    return delta.norm(dim=1).mean().item(), delta.abs().amax(dim=1).mean().item()


def perturbation_sizes(name: str, model, flow, images, labels, seed: int) -> tuple[float, float]:
    """Mean image-space l2 and l-inf of R-LA's / A-LA's perturbation (every image perturbed) on ``images``."""
    perturb = quick.flow_perturb(name, flow, model, p=1.0, rng=torch.Generator().manual_seed(seed))
    sizes = [_sizes(x, perturb(x, y)[0]) for x, y in zip(images.split(250), labels.split(250))]
    weights = [len(x) for x in images.split(250)]
    return tuple(sum(w * s[i] for w, s in zip(weights, sizes)) / sum(weights) for i in range(2))


def run_one(name: str, seed: int, fraction: float, data, flow, args, s) -> dict:
    """Train one model of row ``name`` with ``seed``; its accuracies and (flow rows) perturbation sizes."""
    (x, y), (test_x, test_y) = data
    t0 = time.time()
    torch.manual_seed(seed)
    model = quick.cifar_resnet(10, blocks=s["blocks"], width=s["width"])
    model(x[:2])
    method = build_method(name, model, seed=seed, flow=flow, p=args.p)
    steps = math.ceil(s["epochs"] * len(x) / s["batch"])
    quick.train(model, method, x, y, steps=steps, batch=s["batch"], seed=seed, optimizer="sgd", lr=s["lr"],
                weight_decay=5e-4, milestones=MILESTONES, desc=f"{name} seed {seed}")
    record = dict(fraction=fraction, method=name, seed=seed, p=args.p, images=len(x), steps=steps,
                  train=quick.accuracy(model, x, y), clean=quick.accuracy(model, test_x, test_y), attacks={})
    if flow is not None:
        n = s["attack_test"]
        for attack, mode in (("R-LA", "random"), ("A-LA", "adversarial")):  # the papers' defaults
            perturb = FlowPerturb(flow, mode=mode, rng=torch.Generator().manual_seed(seed)).bind(model)
            record["attacks"][attack] = quick.accuracy(model, test_x[:n], test_y[:n], attack=perturb)
        if name.split("+")[0] in FLOW_METHODS:
            k = s["size_images"]
            record["sizes"] = perturbation_sizes(name, model, flow, test_x[:k], test_y[:k], seed)
    record["seconds"] = time.time() - t0
    return record


def report(records: list[dict], args, s, start: float, path: Path) -> None:
    """Rewrite the results file (and its JSON of per-seed records) from the records so far."""
    write_text_atomic(path.with_suffix(".json"), json.dumps(records, indent=1))
    sections = [f"Scale `{args.scale}`: CIFAR-style ResNet blocks {list(s['blocks'])}, width {s['width']}; SGD "
                f"{s['lr']} Nesterov, wd 5e-4, batch {s['batch']}, {s['epochs']} epochs, lr x0.2 at "
                f"{', '.join(f'{m:.0%}' for m in MILESTONES)}; p = {args.p} of each batch perturbed; test: the "
                f"first {s['test']} test images; seeds {args.seeds}; flow `{args.flow}`. Cells: mean ± sample "
                "sd over seeds (n = seeds finished).", ""]
    for fraction in s["fractions"]:
        names = dict.fromkeys(r["method"] for r in records if r["fraction"] == fraction)
        rows = {m: [r for r in records if r["fraction"] == fraction and r["method"] == m] for m in names}
        by_method = {m: [r["clean"] for r in rs] for m, rs in rows.items()}
        t1 = [[m, args.p, fmt_mean_sd(by_method[m]), fmt_mean_sd([r["train"] for r in rs]),
               PAPER_5PCT.get(m, "–") if fraction == 0.05 else "–"] for m, rs in rows.items()]
        sections += [f"## Table 1: test accuracy (%), {fraction:.0%} of the training set", "",
                     table(["method", "p", "ours (test)", "ours (train, clean)", "paper (ResNet-18)"], t1), "",
                     "Orderings of the paper (difference of means, and in pooled sds):", "",
                     table(["claim", "difference", "in sds", "verdict"], ordering_rows(by_method, PAPER_ORDER)), ""]
        sized = {m: rs for m, rs in rows.items() if any("sizes" in r for r in rs)}
        if sized:
            t5 = [[m, fmt_mean_sd([r["sizes"][0] for r in rs]), fmt_mean_sd([r["sizes"][1] for r in rs]),
                   *PAPER_SIZES.get(m.split("+")[0], ("–", "–"))] for m, rs in sized.items()]
            sections += [f"## Table 5: perturbation size (images in [0, 1], first {s['size_images']} test images, "
                         "every image perturbed, the row's own model)", "",
                         table(["method", "l2", "l-inf", "paper l2", "paper l-inf"], t5), ""]
        attacked = {m: rs for m, rs in rows.items() if rs[0]["attacks"]}
        if attacked:
            t6 = [[m, fmt_mean_sd([r["clean"] for r in rs]),
                   *(fmt_mean_sd([r["attacks"][a] for r in rs]) for a in ("R-LA", "A-LA"))]
                  for m, rs in attacked.items()]
            sections += [f"## Table 6: accuracy (%) under latent attacks (first {s['attack_test']} test images)", "",
                         table(["method", "clean (all test images)", "R-LA", "A-LA"], t6), ""]
    per_seed = [[f"{r['fraction']:.0%}", r["images"], r["steps"], r["method"], r["seed"], r["clean"], r["train"],
                 f"{r['seconds']:.0f}"] for r in records]
    sections += ["## Per seed", "", table(["data", "training images", "steps", "method", "seed", "test", "train",
                                           "seconds"], per_seed), ""]
    write_results(path, "CIFAR-10 low data (flow paper)", start, sections, [
        "Data: torchvision's CIFAR-10 if present, else the JPEG copy (not pixel-identical).",
        "Paper: Yüksel et al. 2021, Table 1 (ResNet-18, 200 epochs), Table 5 (perturbation sizes)."])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", choices=SCALES, default="smoke")
    parser.add_argument("--data-root", default=None)
    parser.add_argument("--flow", default=None, help="Glow .safetensors (R-LA / A-LA rows skipped without)")
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated seeds")
    parser.add_argument("--p", type=float, default=1.0, help="fraction of each batch perturbed (flow-lp: 1)")
    parser.add_argument("--epochs", type=positive_int, default=None, help="override the scale's epochs (the "
                        "step-decay milestones stay at the same fractions)")
    parser.add_argument("--resume", action="store_true", help="keep the records of the results' JSON, skip them")
    add_run_arguments(parser)
    args = parse_run_args(parser, argv)
    args.seeds = [int(v) for v in args.seeds.split(",")]
    args.out.mkdir(parents=True, exist_ok=True)
    start, s = time.time(), SETTINGS[args.scale]
    if args.epochs is not None:
        s = dict(s, epochs=args.epochs)
    flow = Glow.load(args.flow) if args.flow else None
    methods = [m for m in args.methods.split(",") if flow is not None or m.split("+")[0] not in FLOW_METHODS]
    path = args.out / f"cifar_lowdata_{args.scale}.md"
    records = json.loads(path.with_suffix(".json").read_text()) if args.resume and path.with_suffix(".json").exists() \
        else []
    done = {(r["fraction"], r["method"], r["seed"]) for r in records}
    test = load_split(args, "test", s["test"])
    full = 64 if args.scale == "smoke" else 50000  # CIFAR-10's training set; only the prefix used is read
    train_x, train_y = load_split(args, "train", round(max(s["fractions"]) * full))
    for fraction in s["fractions"]:
        count = max(1, round(fraction * full))  # the official order: the first k % is a prefix
        data = ((train_x[:count], train_y[:count]), test)
        for seed in args.seeds:
            for name in methods:
                if (fraction, name, seed) in done:
                    continue
                print(f"[{time.time() - start:6.0f} s] {fraction:.0%} {name} seed {seed} ...", flush=True)
                records.append(run_one(name, seed, fraction, data, flow, args, s))
                r = records[-1]
                print(f"[{time.time() - start:6.0f} s] {fraction:.0%} {name} seed {seed}: test {r['clean']:.2f} % "
                      f"train {r['train']:.2f} % attacks {r['attacks']} sizes {r.get('sizes')} "
                      f"({r['seconds']:.0f} s)", flush=True)
                report(records, args, s, start, path)


if __name__ == "__main__":
    main()
