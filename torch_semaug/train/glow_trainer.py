"""Maximum-likelihood training of a :class:`~torch_semaug.generators.Glow` (``semaug train-generator glow``).

Each iteration dequantises the batch uniformly, ``x = (k + u) / 2**n_bits``, and minimises bits/dim. A
non-finite loss, gradient or weight raises :class:`DivergedError` and keeps the last good checkpoint
untouched. The run folder, the checkpoint and the resume rule are those of every generator trainer
(:mod:`torch_semaug.train.generator_run`).

Scale presets (:data:`PRESETS`; ``train_glow(data=..., out=..., **PRESETS["smoke"])``; on the command line
``--scale``, which explicit flags override):
    smoke   levels 2, steps 2, width 16, batch 8, 20 iterations: seconds, for tests
    cpu     levels 3, steps 8, width 64, batch 32, lr 1e-3, warm-up 200, 35-minute budget (2 CPU cores)
    paper   levels 3, steps 32, width 512, batch 64, lr 1e-3, warm-up 5000, Adamax (Glow's CIFAR-10 settings
            with affine coupling), for a GPU
"""

from __future__ import annotations

import math
import os
import sys
import time
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from torch_semaug._checks import check_choice, check_int_at_least, check_positive
from torch_semaug.generators.glow import Glow
from torch_semaug.train.generator_run import (
    CHECKPOINT,
    Progress,
    check_run_arguments,
    finish_run,
    load_images,
    read_init_from,
    save_checkpoint,
    set_rng_state,
    start_run,
    training_batches,
)
from torch_semaug.viz.grid import save_grid

KIND = "glow"
ARCHITECTURE = ("resolution", "levels", "steps", "width", "n_bits")
OPTIMIZERS = {"adam": torch.optim.Adam, "adamax": torch.optim.Adamax}
PRESETS: dict[str, dict[str, Any]] = {
    "smoke": dict(levels=2, steps=2, width=16, batch_size=8, iterations=20, lr=1e-3, warmup=5, max_minutes=None),
    "cpu": dict(levels=3, steps=8, width=64, batch_size=32, iterations=100_000, lr=1e-3, warmup=200, max_minutes=35.0),
    "paper": dict(levels=3, steps=32, width=512, batch_size=64, iterations=200_000, lr=1e-3, warmup=5000,
                  max_minutes=None, optimizer="adamax"),
}


class DivergedError(RuntimeError):
    """Raised when the loss, a gradient or a weight stops being finite; no checkpoint is written after it."""


def train_glow(
    *, data: str, out: str | os.PathLike[str], resolution: int | None = None, levels: int = 3, steps: int = 8,
    width: int = 64, n_bits: int = 8, iterations: int = 100_000, max_minutes: float | None = None,
    batch_size: int = 32, lr: float = 1e-3, warmup: int = 200, optimizer: str = "adam", clip: float = 50.0,
    eval_data: str | None = None, eval_limit: int | None = None, sample_every: int = 500,
    checkpoint_every: int = 500, init_from: str | None = None, resume: str | None = None,
    data_root: str | None = None, seed: int = 0, device: str = "cpu", threads: int | None = None, workers: int = 0,
    progress: bool = True, command: str | None = None,
) -> dict[str, Any]:
    """Train (or, with ``resume``, continue) a Glow; returns the metrics written to ``out/metrics.json``.

    Args:
        data: training images: an image folder or a dataset name (``torch/mnist``, ``colormnist:uniform@1000``,
            ...; its train split).
        out: run folder (``checkpoint.pt``, ``generator.safetensors``, ``samples/``, ``metrics.json``).
        resolution: resize and centre-crop images to this square size (``None``: as stored).
        levels: multi-scale levels (lowered until the image size is divisible by ``2**levels``).
        steps: flow steps per level.
        width: hidden channels of the coupling networks.
        n_bits: bits per colour channel of the data (1-8).
        iterations: total optimisation steps, counted over resumes.
        max_minutes: stop (and save) once the run's wall time passes this.
        batch_size: images per iteration.
        lr: peak learning rate, reached after ``warmup`` iterations of linear warm-up.
        warmup: warm-up length in iterations.
        optimizer: ``"adam"`` or ``"adamax"``.
        clip: gradient-norm clipping threshold.
        eval_data: held-out images for the final test bits/dim: an image folder or a dataset name (its test
            split).
        eval_limit: use only the first N held-out images.
        sample_every: write ``samples/NNNNNN.png`` (and a log line without ``progress``) this often.
        checkpoint_every: write ``checkpoint.pt`` this often.
        init_from: train further, counting iterations (and the warm-up) from 0: start the weights and the
            optimiser from another run's ``checkpoint.pt``, or the weights from a Glow ``.safetensors`` (the
            optimiser then starts fresh); the architecture flags must match it.
        resume: continue the run saved at this ``checkpoint.pt`` (or its folder).
        data_root: the data root of a dataset name (default ``$SEMAUG_DATA``, else ``./data``).
        seed: seeds initialisation, data order and dequantisation noise.
        device: torch device.
        threads: torch CPU threads (``None``: torch's default).
        workers: DataLoader worker processes.
        progress: tqdm bar (else a log line every ``sample_every`` iterations).
        command: the command line, recorded in ``generator.safetensors``.

    Raises:
        DivergedError: the loss or the weights stopped being finite (the last good checkpoint is kept).
    """
    arguments = {k: v for k, v in locals().items() if k not in ("resume", "progress", "command")}
    _check_arguments(arguments)
    state = start_run(KIND, arguments, resume, ARCHITECTURE)
    folder = Path(out)
    dataset = load_images(data, resolution=resolution, data_root=data_root)
    held_out = load_images(eval_data, split="test", resolution=resolution, data_root=data_root) if eval_data else None
    glow = _build(dataset, arguments)
    opt = OPTIMIZERS[optimizer](glow.parameters(), lr=lr)
    start, seconds, bpd = 0, 0.0, float("nan")
    if state is not None:
        glow.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        start, seconds, bpd = int(state["iteration"]), float(state["seconds"]), float(state["bpd_ema"])
        set_rng_state(state["rng"])
        print(f"resuming {os.fspath(resume)} at iteration {start} of {iterations}")
    elif init_from is not None:
        _start_from(glow, opt, init_from)
    else:
        init = next(iter(DataLoader(dataset, batch_size=min(len(dataset), 256), shuffle=True,  # type: ignore[arg-type]
                                    generator=torch.Generator().manual_seed(seed))))[0]
        glow.initialize(dequantize(init, n_bits).to(device))
    batches = training_batches(dataset, batch_size, seed=seed, start=start, workers=workers)
    done, seconds, bpd = _loop(glow, opt, batches, arguments, folder, (start, seconds, bpd), progress)
    glow.eval()
    save_grid(_samples(glow, device), folder / "samples" / "final.png", nrow=8)
    metrics: dict[str, Any] = {"kind": KIND, "iterations": done, "seconds": round(seconds, 1), "train_bpd_ema": bpd,
                               "config": glow.config()}
    if held_out is not None:
        metrics["test_bpd"] = evaluate_bpd(glow, held_out, 100, device, eval_limit)
        metrics["test_images"] = min(len(held_out), eval_limit or len(held_out))  # type: ignore[arg-type]
    path = finish_run(folder, glow.cpu(), metrics, command=command, data=data)
    return metrics | {"generator": os.fspath(path)}


def _check_arguments(a: dict[str, Any]) -> None:
    check_run_arguments(a)
    for name in ("levels", "steps", "width"):
        check_int_at_least(a[name], 1, name)
    if a["resolution"] is not None:
        check_int_at_least(a["resolution"], 2, "resolution")
    if not isinstance(a["n_bits"], int) or not 1 <= a["n_bits"] <= 8:
        raise ValueError(f"n_bits: expected an integer from 1 to 8, got {a['n_bits']!r}")
    check_int_at_least(a["warmup"], 0, "warmup")
    check_choice(a["optimizer"], list(OPTIMIZERS), "optimizer")
    check_positive(a["clip"], "clip")
    if a["eval_limit"] is not None:
        check_int_at_least(a["eval_limit"], 1, "eval_limit")


def _build(dataset: Dataset, a: dict[str, Any]) -> Glow:
    channels, height, width = dataset[0][0].shape
    levels = a["levels"]
    while levels > 1 and (height % 2**levels or width % 2**levels):
        levels -= 1
    glow = Glow((channels, height, width), levels=levels, steps=a["steps"], width=a["width"], n_bits=a["n_bits"])
    return glow.to(a["device"]).train()


def _start_from(glow: Glow, opt: torch.optim.Optimizer, init_from: str) -> None:
    """Weights (and, from a checkpoint, the optimiser) of another run; ActNorm's init is in the weights."""
    state = read_init_from(init_from, KIND, "model")
    if state is None:
        try:
            source = Glow.load(init_from)
        except (ValueError, OSError) as error:
            raise ValueError(f"init_from: cannot read {init_from!r} as a Glow ({error})") from None
        weights, theirs = source.state_dict(), source.config()
    else:
        weights, theirs = state["model"], None
    mismatch = ValueError(f"init_from: {init_from!r} has another architecture; pass the --levels/--steps/--width/"
                          f"--resolution/--n-bits it was trained with (this run: {glow.config()})")
    if theirs is not None and theirs != glow.config():
        raise mismatch
    try:
        glow.load_state_dict(weights)
    except RuntimeError:  # a checkpoint with missing keys or other shapes
        raise mismatch from None
    if state is not None:
        opt.load_state_dict(state["optimizer"])
    origin = f"trained {int(state['iteration'])} iterations there" if state else "the optimiser fresh"
    print(f"training further from {init_from} ({origin})", file=sys.stderr)


def dequantize(images: Tensor, n_bits: int, generator: torch.Generator | None = None) -> Tensor:
    """``(k + u) / 2**n_bits`` with ``k`` the image's bin and ``u ~ U[0, 1)`` (torch's global stream by default)."""
    bins = 2**n_bits
    k = torch.floor(images * (bins - 1) + 0.5)
    noise = torch.rand(images.shape, generator=generator, device=images.device)
    return (k + noise) / bins


@torch.no_grad()
def evaluate_bpd(glow: Glow, data: Dataset, batch_size: int, device: str, limit: int | None = None) -> float:
    """Mean bits/dim over ``data`` (one fixed dequantisation draw, seed 0)."""
    if limit is not None:
        data = torch.utils.data.Subset(data, range(min(limit, len(data))))  # type: ignore[arg-type]
    noise = torch.Generator().manual_seed(0)
    total, count = 0.0, 0
    was = glow.training
    glow.eval()
    for images, _ in DataLoader(data, batch_size=batch_size, shuffle=False):
        x = dequantize(images, glow.n_bits, noise).to(device)
        total += float(glow.bits_per_dim(x).sum())
        count += x.shape[0]
    glow.train(was)
    return total / max(count, 1)


def _samples(glow: Glow, device: str) -> Tensor:
    """64 samples at temperature 0.7 from fixed latents (their own generator: the training stream is untouched)."""
    was = glow.training
    glow.eval()
    with torch.no_grad():
        z = glow.sample_latent(64, torch.Generator().manual_seed(0), temperature=0.7).to(device)
        images = glow.decode(z).clamp(0, 1)
    glow.train(was)
    return images


def _loop(glow: Glow, opt: torch.optim.Optimizer, batches: Any, a: dict[str, Any], folder: Path,
          resumed: tuple[int, float, float], progress: bool) -> tuple[int, float, float]:
    """Iterations up to ``iterations`` (or ``max_minutes``); checkpoints and samples on the way."""
    done, seconds, bpd = resumed
    t0 = time.time() - seconds
    bar = Progress(KIND, done, a["iterations"], enabled=progress, every=a["sample_every"])
    while done < a["iterations"]:
        for group in opt.param_groups:
            group["lr"] = a["lr"] * min(1.0, (done + 1) / max(a["warmup"], 1))
        x = dequantize(next(batches), a["n_bits"]).to(a["device"])
        loss = glow.bits_per_dim(x).mean()
        if not torch.isfinite(loss):
            raise DivergedError(f"loss is {loss.item()} at iteration {done}")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(glow.parameters(), a["clip"])
        if not torch.isfinite(grad_norm):
            raise DivergedError(f"gradient norm is {float(grad_norm)} at iteration {done}")
        opt.step()
        bpd = loss.item() if math.isnan(bpd) else 0.98 * bpd + 0.02 * loss.item()
        done += 1
        bar.step(done, time.time() - t0, bpd=bpd)
        out_of_time = a["max_minutes"] is not None and time.time() - t0 > a["max_minutes"] * 60
        if done % a["sample_every"] == 0:
            save_grid(_samples(glow, a["device"]), folder / "samples" / f"{done:06d}.png", nrow=8)
        if done % a["checkpoint_every"] == 0 or done == a["iterations"] or out_of_time:
            _check_weights(glow, done)
            save_checkpoint(folder / CHECKPOINT, KIND, a, done, time.time() - t0, model=glow.state_dict(),
                            optimizer=opt.state_dict(), bpd_ema=bpd)
        if out_of_time:
            print(f"stopping at iteration {done}: max_minutes {a['max_minutes']} reached", file=sys.stderr)
            break
    bar.close()
    if done == resumed[0]:  # nothing left to do: the checkpoint is already the run's end
        return done, seconds, bpd
    return done, time.time() - t0, bpd


def _check_weights(glow: Glow, step: int) -> None:
    for name, tensor in glow.state_dict().items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise DivergedError(f"parameter {name} is not finite at iteration {step}")
