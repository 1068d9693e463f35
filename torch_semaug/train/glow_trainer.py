"""``semaug train-generator glow``: maximum-likelihood training of a :class:`~torch_semaug.generators.Glow`.

Data (``--data`` / ``--eval-data``):
    ``mnist:ROOT``        MNIST training split from ``torchvision.datasets.MNIST(ROOT, download=False)``
    ``mnist-test:ROOT``   its test split
    ``PATH``              an image folder in ``torchvision.datasets.ImageFolder`` layout
                          (``PATH/<class>/<image>``), e.g. ``cifar10-jpeg/train``

Scale presets (``--scale``; any explicit flag overrides the preset):
    smoke   levels 2, steps 2, width 16, batch 8, 20 iterations: seconds, for tests
    cpu     levels 3, steps 8, width 64, batch 32, lr 1e-3, warm-up 200, 35-minute budget (2 CPU cores)
    paper   levels 3, steps 32, width 512, batch 64, lr 1e-3, warm-up 5000, Adamax (Glow's CIFAR-10 settings
            with affine coupling), for a GPU

Each iteration dequantises the batch uniformly, ``x = (k + u) / 2**n_bits``, and minimises bits/dim. A
non-finite loss or gradient stops the run with a message and keeps the last good checkpoint untouched.
``--out`` receives ``checkpoint.pt`` (resumable with ``--resume``), ``glow.safetensors`` (the frozen
generator), ``samples.png`` and ``metrics.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from torch_semaug._io import write_atomic, write_text_atomic
from torch_semaug.generators.glow import Glow

PRESETS: dict[str, dict[str, Any]] = {
    "smoke": dict(levels=2, steps=2, width=16, batch_size=8, iters=20, lr=1e-3, warmup=5, minutes=None),
    "cpu": dict(levels=3, steps=8, width=64, batch_size=32, iters=100_000, lr=1e-3, warmup=200, minutes=35.0),
    "paper": dict(levels=3, steps=32, width=512, batch_size=64, iters=200_000, lr=1e-3, warmup=5000,
                  minutes=None, optimizer="adamax"),
}


class DivergedError(RuntimeError):
    """Raised when the loss or a gradient stops being finite; no checkpoint is written after it."""


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", required=True, help="training images: mnist:ROOT, mnist-test:ROOT or an image folder")
    parser.add_argument("--eval-data", help="held-out images for the final test bits/dim (same syntax)")
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument("--scale", choices=sorted(PRESETS), default="cpu", help="preset (see module docstring)")
    parser.add_argument("--image-size", type=int, help="resize images to this square size (default: as stored)")
    parser.add_argument("--levels", type=int, help="multi-scale levels (capped so the size divides 2**levels)")
    parser.add_argument("--steps", type=int, help="flow steps per level")
    parser.add_argument("--width", type=int, help="hidden channels of the coupling networks")
    parser.add_argument("--batch-size", type=int, help="images per iteration")
    parser.add_argument("--iters", type=int, help="total optimisation steps")
    parser.add_argument("--minutes", type=float, help="stop (and save) after this wall time, in minutes")
    parser.add_argument("--lr", type=float, help="peak learning rate")
    parser.add_argument("--warmup", type=int, help="linear learning-rate warm-up, in iterations")
    parser.add_argument("--optimizer", choices=["adam", "adamax"], help="default adam (adamax for --scale paper)")
    parser.add_argument("--clip", type=float, default=50.0, help="gradient-norm clipping threshold")
    parser.add_argument("--n-bits", type=int, default=8, help="bits per colour channel of the data")
    parser.add_argument("--ckpt-every", type=int, default=500, help="iterations between checkpoints")
    parser.add_argument("--eval-limit", type=int, help="use only the first N held-out images")
    parser.add_argument("--workers", type=int, default=0, help="DataLoader worker processes")
    parser.add_argument("--seed", type=int, default=0, help="seed of initialisation, data order and noise")
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cuda")
    parser.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt")


def _settings(args: argparse.Namespace) -> dict[str, Any]:
    settings = dict(optimizer="adam") | PRESETS[args.scale]
    for key in ("levels", "steps", "width", "batch_size", "iters", "minutes", "lr", "warmup", "optimizer"):
        if getattr(args, key, None) is not None:
            settings[key] = getattr(args, key)
    return settings


def load_images(spec: str, image_size: int | None) -> Dataset:
    """The dataset named by ``spec`` (see the module docstring), as ``(image in [0, 1], label)`` pairs."""
    from torchvision import datasets
    from torchvision.transforms import v2

    steps: list[Any] = [v2.ToImage()]
    if image_size is not None:
        steps.append(v2.Resize((image_size, image_size), antialias=True))
    steps.append(v2.ToDtype(torch.float32, scale=True))
    transform = v2.Compose(steps)
    kind, _, root = spec.partition(":")
    if kind in ("mnist", "mnist-test") and root:
        try:
            return datasets.MNIST(root, train=kind == "mnist", download=False, transform=transform)
        except RuntimeError as error:
            raise SystemExit(f"--data: no MNIST under {root!r} ({error}); expected ROOT/MNIST/raw/*-ubyte") from None
    if not os.path.isdir(spec):
        raise SystemExit(f"--data: expected mnist:ROOT, mnist-test:ROOT or an image folder, got {spec!r}")
    return datasets.ImageFolder(spec, transform=transform)


def dequantize(images: Tensor, n_bits: int, generator: torch.Generator | None) -> Tensor:
    """``(k + u) / 2**n_bits`` with ``k`` the image's bin and ``u ~ U[0, 1)``."""
    bins = 2**n_bits
    k = torch.floor(images * (bins - 1) + 0.5)
    noise = torch.rand(images.shape, generator=generator, device=images.device)
    return (k + noise) / bins


@torch.no_grad()
def evaluate_bpd(glow: Glow, data: Dataset, batch_size: int, device: str, limit: int | None = None) -> float:
    """Mean bits/dim over ``data`` (one fixed dequantisation draw, seed 0)."""
    if limit is not None:
        data = torch.utils.data.Subset(data, range(min(limit, len(data))))
    loader = DataLoader(data, batch_size=batch_size, shuffle=False)
    noise = torch.Generator().manual_seed(0)
    total, count = 0.0, 0
    was = glow.training
    glow.eval()
    for images, _ in tqdm(loader, desc="eval bits/dim", leave=False):
        x = dequantize(images, glow.n_bits, noise).to(device)
        total += float(glow.bits_per_dim(x).sum())
        count += x.shape[0]
    glow.train(was)
    return total / max(count, 1)


def _save_checkpoint(path: Path, glow: Glow, optimizer: torch.optim.Optimizer, state: dict[str, Any]) -> None:
    payload = {
        "model": glow.state_dict(),
        "optimizer": optimizer.state_dict(),
        "config": json.dumps(glow.config()),
        "state": json.dumps(state),
        "rng": torch.get_rng_state(),
    }
    write_atomic(path, lambda tmp: torch.save(payload, tmp))


def _save_samples(glow: Glow, path: Path, device: str) -> None:
    from torchvision.utils import save_image

    with torch.no_grad():
        z = glow.sample_latent(64, torch.Generator().manual_seed(0), temperature=0.7).to(device)
        images = glow.decode(z).clamp(0, 1).cpu()
    write_atomic(path, lambda tmp: save_image(images, tmp, nrow=8, format="PNG"))


def _lr_at(step: int, lr: float, warmup: int) -> float:
    return lr * min(1.0, (step + 1) / max(warmup, 1))


def train(args: argparse.Namespace) -> dict[str, Any]:
    """Run (or resume) a training run; returns the metrics it also writes to ``OUT/metrics.json``."""
    settings = _settings(args)
    out = Path(args.out)
    ckpt_path = out / "checkpoint.pt"
    if ckpt_path.exists() and not args.resume:
        raise SystemExit(f"--out: {ckpt_path} exists; pass --resume to continue it or choose another --out")
    torch.manual_seed(args.seed)
    data = load_images(args.data, args.image_size)
    channels, height, width = data[0][0].shape
    levels = settings["levels"]
    while levels > 1 and (height % 2**levels or width % 2**levels):
        levels -= 1
    config = dict(image_shape=(channels, height, width), levels=levels, steps=settings["steps"],
                  width=settings["width"], n_bits=args.n_bits)
    state: dict[str, Any] = {"step": 0, "seconds": 0.0, "bpd": None, "epoch": 0}
    payload = None
    if args.resume and ckpt_path.exists():
        payload = torch.load(ckpt_path, map_location="cpu", weights_only=True)
        config = json.loads(payload["config"])
        config["image_shape"] = tuple(config["image_shape"])
        state = json.loads(payload["state"])
    glow = Glow(**config).to(args.device)
    opt_cls = torch.optim.Adamax if settings["optimizer"] == "adamax" else torch.optim.Adam
    optimizer = opt_cls(glow.parameters(), lr=settings["lr"])
    if payload is not None:
        glow.load_state_dict(payload["model"])
        optimizer.load_state_dict(payload["optimizer"])
        torch.set_rng_state(payload["rng"])
    glow.train()
    loader = DataLoader(data, batch_size=settings["batch_size"], shuffle=True, drop_last=True,
                        num_workers=args.workers, generator=torch.Generator().manual_seed(args.seed + state["epoch"]))
    noise = torch.Generator().manual_seed(args.seed + 1 + state["step"])
    if state["step"] == 0:
        init_batch = next(iter(DataLoader(data, batch_size=min(len(data), 256), shuffle=True)))[0]
        glow.initialize(dequantize(init_batch, args.n_bits, noise).to(args.device))
    budget = None if settings["minutes"] is None else settings["minutes"] * 60
    start, seconds0 = time.time(), state["seconds"]
    bar = tqdm(total=settings["iters"], initial=state["step"], desc="glow", dynamic_ncols=True,
               mininterval=5.0, file=sys.stderr)
    ema = None
    stop = state["step"] >= settings["iters"]
    while not stop:
        for images, _ in loader:
            step = state["step"]
            for group in optimizer.param_groups:
                group["lr"] = _lr_at(step, settings["lr"], settings["warmup"])
            x = dequantize(images, args.n_bits, noise).to(args.device)
            loss = glow.bits_per_dim(x).mean()
            if not torch.isfinite(loss):
                raise DivergedError(f"loss is {loss.item()} at iteration {step}")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            grad_norm = torch.nn.utils.clip_grad_norm_(glow.parameters(), args.clip)
            if not torch.isfinite(grad_norm):
                raise DivergedError(f"gradient norm is {float(grad_norm)} at iteration {step}")
            optimizer.step()
            value = loss.item()
            ema = value if ema is None else 0.98 * ema + 0.02 * value
            state.update(step=step + 1, bpd=ema, seconds=seconds0 + time.time() - start)
            bar.update(1)
            bar.set_postfix(bpd=f"{ema:.3f}", refresh=False)
            out_of_time = budget is not None and state["seconds"] >= budget
            stop = state["step"] >= settings["iters"] or out_of_time
            if stop or state["step"] % args.ckpt_every == 0:
                _check_weights(glow, state["step"])
                _save_checkpoint(ckpt_path, glow, optimizer, state)
            if stop:
                break
        else:
            state["epoch"] += 1
    bar.close()
    glow.eval()
    _save_samples(glow, out / "samples.png", args.device)
    glow.save(out / "glow.safetensors", data=args.data, settings=json.dumps(settings), train_state=json.dumps(state))
    metrics = {"iterations": state["step"], "train_bpd_ema": state["bpd"], "train_seconds": round(state["seconds"], 1),
               "config": glow.config(), "settings": settings}
    if args.eval_data:
        held_out = load_images(args.eval_data, args.image_size)
        metrics["test_bpd"] = evaluate_bpd(glow, held_out, 100, args.device, args.eval_limit)
        metrics["test_images"] = min(len(held_out), args.eval_limit or len(held_out))
    write_text_atomic(out / "metrics.json", json.dumps(metrics, indent=2) + "\n")
    return metrics


def _check_weights(glow: Glow, step: int) -> None:
    for name, tensor in glow.state_dict().items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise DivergedError(f"parameter {name} is not finite at iteration {step}")


def run(args: argparse.Namespace) -> int:
    try:
        metrics = train(args)
    except DivergedError as error:
        ckpt = Path(args.out) / "checkpoint.pt"
        last = f"the last good checkpoint is {ckpt}" if ckpt.exists() else "no checkpoint was written"
        print(
            f"semaug train-generator glow: training diverged ({error}); stopped without saving; {last}. "
            "Lower --lr, raise --warmup or lower --clip, then rerun (with --resume to continue).",
            file=sys.stderr,
        )
        return 1
    line = f"trained {metrics['iterations']} iterations in {metrics['train_seconds']:.0f} s, train bits/dim " \
           f"{metrics['train_bpd_ema']:.3f}"
    if "test_bpd" in metrics:
        line += f", test bits/dim {metrics['test_bpd']:.3f} on {metrics['test_images']} images"
    print(line)
    print(f"wrote {Path(args.out) / 'glow.safetensors'}")
    return 0 if math.isfinite(metrics["train_bpd_ema"]) else 1
