"""CIFAR-10 low-data benchmark of the flow paper (Yüksel et al., ICCV 2021), Tables 1 and 6.

Table 1: test accuracy of a classifier trained on the first 5 % of CIFAR-10's training set (official
order) or on all of it, with: standard (no augmentation), + flips/crops, Cutout, Mixup, image-space PGD
(:class:`~torch_semaug.IdentityGenerator` + :class:`~torch_semaug.AdversarialLatentAttack`, l-inf 8/255),
Randomized-LA (l-inf eps 0.25) and Adversarial-LA (l2 eps 1.0, step 0.5, 3 steps) through the project's
Glow (``--flow``, trained by ``semaug train-generator glow``). Every method except "standard" also uses
flips/crops. Table 6: accuracy of each trained model under R-LA and A-LA attacks of the test set.

``--scale smoke`` (tests: synthetic images, tiny flow), ``cpu`` (small CNN, few steps, test subset),
``paper`` (ResNet-18 from timm, the full test set). Data: ``--data-root`` (the JPEG copy in
../shared/data/cifar10-jpeg is used when torchvision's pickles are absent; say so in results). Example::

    python benchmarks/cifar_lowdata.py --scale cpu --data-root ../shared/data --flow glow.safetensors
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch_semaug as ts  # noqa: E402
from benchmarks._bench import (  # noqa: E402
    SCALES,
    accuracy,
    add_run_arguments,
    make_method,
    parse_run_args,
    stack,
    table,
    train,
    write_results,
)

METHODS = ("standard", "flips_crops", "cutout", "mixup:1.0", "pixel_at", "rla", "ala")
PAPER_5PCT = {"standard": "49.8", "flips_crops": "64.1", "cutout": "66.8", "mixup:1.0": "73.4", "pixel_at": "–",
              "rla": "70.1", "ala": "80.4"}
SETTINGS = {
    "smoke": dict(fractions=[0.05], steps=2, batch=8, test=32, model="cnn"),
    "cpu": dict(fractions=[0.05], steps=1500, batch=64, test=2000, model="cnn"),
    "paper": dict(fractions=[0.05, 1.0], steps=40000, batch=128, test=10000, model="resnet18"),
}


def make_model(kind: str) -> nn.Module:
    if kind == "resnet18":
        import timm

        return timm.create_model("resnet18", num_classes=10)
    return nn.Sequential(nn.Conv2d(3, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(32, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(64, 128, 3, padding=1), nn.BatchNorm2d(128), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(128, 10))


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


def compose_with_flips(name: str, model, seed: int, flow) -> object:
    """The method ``name`` applied after flips/crops (the paper's baselines all build on them)."""
    flips = make_method("flips_crops", model, num_classes=10, image_shape=(3, 32, 32), seed=seed)
    method = make_method(name, model, num_classes=10, image_shape=(3, 32, 32), seed=seed, flow=flow, p=0.5,
                         at_eps=8 / 255, at_steps=3)
    return lambda x, y, z: method(*flips(x, y, z), z)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", choices=SCALES, default="smoke")
    parser.add_argument("--data-root", default=None)
    parser.add_argument("--flow", default=None, help="Glow .safetensors (R-LA / A-LA skipped without)")
    parser.add_argument("--methods", default=",".join(METHODS))
    add_run_arguments(parser)
    args = parse_run_args(parser, argv)
    args.out.mkdir(parents=True, exist_ok=True)
    start, s = time.time(), SETTINGS[args.scale]
    flow = ts.Glow.load(args.flow) if args.flow else None
    methods = [m for m in args.methods.split(",") if flow is not None or m not in ("rla", "ala")]
    test_x, test_y = load_split(args, "test", s["test"])
    train_x, train_y = load_split(args, "train", None if args.scale != "smoke" else 64)
    attacks = {}
    if flow is not None:
        attacks = {"R-LA": dict(mode="random"), "A-LA": dict(mode="adversarial")}  # the papers' defaults
    t1_rows, t6_rows = [], []
    for fraction in s["fractions"]:
        count = max(1, round(fraction * len(train_x)))  # the official order: the first k % is a prefix
        x, y = train_x[:count], train_y[:count]
        for name in methods:
            print(f"{fraction:.0%} of the training set, {name}", flush=True)
            model = make_model(s["model"])
            model(x[:2])  # materialise before the method binds it
            method = "standard" if name == "standard" else compose_with_flips(name, model, args.seed, flow)
            train(model, method, x, y, steps=s["steps"], batch=s["batch"], seed=args.seed, num_classes=10, desc=name)
            clean = accuracy(model, test_x, test_y)
            paper = PAPER_5PCT.get(name, "") if fraction == 0.05 else ""
            t1_rows.append([f"{fraction:.0%}", name, clean, paper])
            row = [f"{fraction:.0%}", name, clean]
            for attack in attacks.values():
                perturb = ts.FlowPerturb(flow, rng=torch.Generator().manual_seed(args.seed), **attack).bind(model)
                row.append(accuracy(model, test_x, test_y, attack=perturb))
            t6_rows.append(row)
    sections = [f"Scale `{args.scale}`: model {s['model']}, {s['steps']} Adam steps of {s['batch']}, test on the "
                f"first {s['test']} test images; flow `{args.flow}`.", "",
                "## Table 1: test accuracy (%)", "",
                table(["train data", "method", "ours", "paper (5 %, ResNet-18)"], t1_rows), ""]
    if attacks:
        sections += ["## Table 6: accuracy (%) under latent attacks", "",
                     table(["train data", "method", "clean", *attacks], t6_rows), ""]
    write_results(args.out / f"cifar_lowdata{'' if args.scale == 'cpu' else '_' + args.scale}.md",
                  "CIFAR-10 low data (flow paper)", start, sections,
                  ["Data: torchvision's CIFAR-10 if present, else the JPEG copy (not pixel-identical)."])


if __name__ == "__main__":
    main()
