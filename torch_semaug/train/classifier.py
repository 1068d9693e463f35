"""Image-classification training on timm's factories, run with accelerate, with an optional semantic transform.

``semaug train ...`` / ``python -m torch_semaug.train ...`` / ``accelerate launch -m torch_semaug.train ...``.
Everything a user can get wrong (dataset, subset, ``--semaug`` name, generator kind, latent cache) is checked
before the first step. Each epoch rewrites ``metrics.csv``/``metrics.json`` and ``last.pth`` atomically;
Ctrl-C writes ``last.pth`` too, and ``--resume .../last.pth`` continues from it.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import time
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
import yaml

from torch_semaug._io import write_text_atomic
from torch_semaug.data.datasets import check_dataset_name, check_subset
from torch_semaug.train.args import configure, parse_args
from torch_semaug.train.checkpoint import load_checkpoint, save_checkpoint, write_metrics
from torch_semaug.train.data import build_datasets, build_loaders, probe
from torch_semaug.train.loop import make_loss, train_one_epoch, validate
from torch_semaug.train.semaug_setup import setup_semaug


def check_args(args: argparse.Namespace) -> None:
    """Cheap checks of the flags themselves, before anything is loaded."""
    check_dataset_name(args.dataset)
    check_subset(args.train_subset)
    for name in ("batch_size", "epochs"):
        if getattr(args, name) < 1:
            raise ValueError(f"{name}: expected an integer >= 1, got {getattr(args, name)!r}")
    if args.workers < 0:
        raise ValueError(f"workers: expected an integer >= 0, got {args.workers!r}")
    if (args.mean is None) != (args.std is None):
        raise ValueError("mean/std: pass both or neither")


def rank_seed(seed: int, rank: int, epoch: int) -> int:
    """A seed for the transform's stream: different on every rank and every epoch, same after a resume."""
    return int.from_bytes(hashlib.sha256(f"{seed}/{rank}/{epoch}".encode()).digest()[:7], "little")


def weights_digest(model: torch.nn.Module) -> str:
    digest = hashlib.sha256()
    for key, tensor in sorted(model.state_dict().items()):
        digest.update(key.encode())
        digest.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def normalisation(args: argparse.Namespace, model: torch.nn.Module, in_chans: int) -> tuple[tuple, tuple]:
    """``--mean/--std``, else timm's data config of the model, reduced to one value for 1-channel data."""
    from timm.data import resolve_model_data_config

    if args.mean is not None:
        mean, std = tuple(args.mean), tuple(args.std)
    else:
        config = resolve_model_data_config(model)
        mean, std = tuple(config["mean"]), tuple(config["std"])
        if in_chans != len(mean):
            mean, std = (sum(mean) / len(mean),) * in_chans, (sum(std) / len(std),) * in_chans
    if len(mean) != in_chans or len(std) != in_chans:
        raise ValueError(f"mean/std: expected {in_chans} values (one per channel), got {len(mean)} and {len(std)}")
    return mean, std


def run_folder(args: argparse.Namespace, accelerator: Any) -> Path:
    """The run's folder (same on every rank); an existing run is only reused through ``--resume``."""
    from accelerate.utils import broadcast_object_list

    if args.resume:
        return Path(args.resume).resolve().parent
    name = args.experiment
    if name is None:
        stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
        parts = [stamp, args.dataset.replace("/", "-").replace(":", "-").strip("-"), args.model, args.semaug]
        name = broadcast_object_list(["-".join(p for p in parts if p)[:120]])[0]
    folder = Path(args.output) / name
    if (folder / "last.pth").exists():
        raise ValueError(f"experiment: {folder} already holds a run; continue it with --resume {folder / 'last.pth'} "
                         "or choose another --experiment")
    return folder


def run_training(args: argparse.Namespace) -> int:
    """Train as configured by ``args``; returns the exit status (130 after Ctrl-C)."""
    import timm
    from accelerate import Accelerator
    from accelerate.utils import gather_object, set_seed
    from timm.data import Mixup
    from timm.optim import create_optimizer_v2
    from timm.scheduler import create_scheduler_v2

    check_args(args)
    resume_state = load_checkpoint(args.resume) if args.resume else None
    if resume_state is not None:
        for key in ("model", "dataset", "num_classes", "in_chans"):
            before, now = resume_state["args"].get(key), getattr(args, key)
            if now is not None and before != now:
                raise ValueError(f"resume: the checkpoint was trained with --{key.replace('_', '-')} {before}, "
                                 f"this command says {now}")
    mixed = ("fp16" if args.amp_dtype == "float16" else "bf16") if args.amp else "no"
    accelerator = Accelerator(cpu=args.device == "cpu", mixed_precision=mixed)
    rank, main = accelerator.process_index, accelerator.is_main_process
    set_seed(args.seed)  # the same initial weights on every rank

    probed = probe(args)
    classes, in_chans, _ = probed
    num_classes = args.num_classes or len(classes)
    in_chans = args.in_chans or in_chans
    model = timm.create_model(args.model, num_classes=num_classes, in_chans=in_chans, drop_rate=args.drop)
    mean, std = normalisation(args, model, in_chans)
    rng = torch.Generator(device=accelerator.device)
    semaug, cache = setup_semaug(args, mean, std, rng)
    data = build_datasets(args, mean, std, cache, probed, index=semaug is not None)
    mixup_fn = None
    if args.mixup > 0 or args.cutmix > 0:
        mixup_fn = Mixup(mixup_alpha=args.mixup, cutmix_alpha=args.cutmix, prob=args.mixup_prob,
                         label_smoothing=args.smoothing, num_classes=num_classes)
    train_loader, val_loader = build_loaders(args, data, drop_last=mixup_fn is not None)
    optimizer = create_optimizer_v2(model, opt=args.opt, lr=args.lr, weight_decay=args.weight_decay,
                                    momentum=args.momentum)
    scheduler, num_epochs = create_scheduler_v2(
        optimizer, sched=args.sched, num_epochs=args.epochs, warmup_epochs=args.warmup_epochs,
        warmup_lr=args.warmup_lr, min_lr=args.min_lr, decay_epochs=args.decay_epochs or max(1, args.epochs // 3),
        decay_rate=args.decay_rate, updates_per_epoch=len(train_loader),
    )
    loss_fn = make_loss(0.0 if mixup_fn is not None else args.smoothing)
    folder = run_folder(args, accelerator)
    set_seed(args.seed + rank)  # dropout, mixup and the like differ per rank from here on

    model, optimizer, train_loader, val_loader = accelerator.prepare(model, optimizer, train_loader, val_loader)
    inner = accelerator.unwrap_model(model)
    start_epoch, history, best = 0, [], {"val_top1": -1.0, "epoch": -1}
    if resume_state is not None:
        inner.load_state_dict(resume_state["model"])
        optimizer.load_state_dict(resume_state["optimizer"])
        scheduler.load_state_dict(resume_state["scheduler"])
        if semaug is not None and resume_state.get("semaug"):
            semaug.load_state_dict(resume_state["semaug"])
        start_epoch, history, best = resume_state["epoch"], resume_state["history"], resume_state["best"]
    if semaug is not None:
        semaug.generator.to(accelerator.device)  # frozen; never passed to accelerator.prepare
        semaug.bind(model)  # the guard unwraps DDP for the inner steps
    if main:
        folder.mkdir(parents=True, exist_ok=True)
        write_text_atomic(folder / "args.yaml", yaml.safe_dump(vars(args), sort_keys=True))
        print(f"run folder: {folder}\nmodel: {args.model} ({sum(p.numel() for p in inner.parameters()):,} "
              f"parameters), {num_classes} classes, {len(data.train)} train / {len(data.val)} val images, "
              f"{accelerator.num_processes} process(es) on {accelerator.device}")
        if semaug is not None:
            print(f"semaug: {semaug!r}" + (f" with cached latents {cache.path}" if cache is not None else ""))

    def checkpoint(next_epoch: int, interrupted: bool = False) -> None:
        if main:
            save_checkpoint(
                folder / "last.pth", model=inner.state_dict(), optimizer=optimizer.state_dict(),
                scheduler=scheduler.state_dict(), semaug=semaug.state_dict() if semaug is not None else {},
                epoch=next_epoch, history=history, best=best, args=vars(args), interrupted=interrupted,
                num_classes=num_classes, in_chans=in_chans, mean=list(mean), std=list(std), classes=classes,
            )

    started = time.perf_counter()
    epoch = start_epoch
    try:
        for epoch in range(start_epoch, num_epochs):
            rng.manual_seed(rank_seed(args.seed, rank, epoch))
            tic = time.perf_counter()
            metrics: dict[str, Any] = {"epoch": epoch, "lr": optimizer.param_groups[0]["lr"]}
            metrics |= train_one_epoch(
                accelerator, model, train_loader, optimizer, scheduler, loss_fn, epoch=epoch, semaug=semaug,
                mixup_fn=mixup_fn, layout=data.layout, clip_grad=args.clip_grad, progress=not args.no_progress,
                log_interval=args.log_interval,
            )
            metrics |= validate(accelerator, model, val_loader, progress=not args.no_progress)
            metrics["epoch_seconds"] = time.perf_counter() - tic
            scheduler.step(epoch + 1, metrics["val_top1"])
            history.append(metrics)
            if metrics["val_top1"] > best["val_top1"]:
                best = {"val_top1": metrics["val_top1"], "epoch": epoch}
            checkpoint(epoch + 1)
            if main:
                write_metrics(folder, history)
                print(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in metrics.items()))
    except KeyboardInterrupt:
        checkpoint(epoch, interrupted=True)  # the interrupted epoch is run again on resume
        if main:
            print(f"\ninterrupted during epoch {epoch}; resume with --resume {folder / 'last.pth'}")
        return 130
    accelerator.wait_for_everyone()
    digests = gather_object([weights_digest(inner)])
    steps = gather_object([len(train_loader) * (num_epochs - start_epoch)])
    if main:
        summary = {"run": str(folder), "epochs": num_epochs, "best": best, "final": history[-1] if history else {},
                   "wall_seconds": time.perf_counter() - started, "processes": accelerator.num_processes,
                   "rank_weight_sha256": digests, "rank_train_steps": steps}
        write_text_atomic(folder / "summary.json", json.dumps(summary, indent=2))
        final = summary["final"]
        print(f"done: {num_epochs} epochs, final val top-1 {final.get('val_top1', float('nan')):.2f} %, best "
              f"{best['val_top1']:.2f} % (epoch {best['epoch']}); metrics in {folder / 'metrics.csv'}")
    accelerator.end_training()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m torch_semaug.train``."""
    parser = argparse.ArgumentParser(prog="python -m torch_semaug.train", description=__doc__.splitlines()[0])
    configure(parser)
    args = parse_args(parser, argv)
    try:
        return run_training(args)
    except (ValueError, FileNotFoundError) as error:
        if os.environ.get("SEMAUG_TRACEBACK"):
            raise
        parser.exit(2, f"error: {error}\n")
