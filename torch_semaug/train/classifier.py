"""Image-classification training on timm's factories, run with accelerate, with an optional semantic transform.

Python: ``train_classifier(dataset="folder:imgs", model="resnet18", epochs=10, semaug=...)`` (the options are
:class:`~torch_semaug.train.args.TrainConfig`'s). Command line: ``semaug train ...`` / ``python -m
torch_semaug.train ...``, also under ``accelerate launch`` or ``torchrun``.

Everything a user can get wrong is checked before the first step. The end of every epoch rewrites
``metrics.csv``/``metrics.json`` and ``last.pth`` atomically (``model_best.pth`` when the best improves).
Resume is exact: every random stream (torch, numpy, python, the transform's generator, the shuffle) is seeded
at the start of each epoch from (seed, rank, epoch), and ``last.pth`` holds everything else that evolves
(weights, optimizer, scheduler, EMA, GradScaler, each rank's transform state such as adaptive eps), so a run
killed anywhere in epoch ``e`` and resumed from ``last.pth`` repeats epoch ``e`` exactly as it would have run.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import time
import warnings
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from torch_semaug._io import remove_stale_temporaries, write_text_atomic
from torch_semaug.data.datasets import default_data_root, parse_dataset_name
from torch_semaug.train.args import TrainConfig
from torch_semaug.train.checkpoint import (
    load_checkpoint,
    save_checkpoint,
    write_curves,
    write_metrics,
)
from torch_semaug.train.classifier_setup import (
    attach_warm_start,
    build_model,
    build_semaug,
    compile_model,
    make_accelerator,
    make_optimizer,
    make_scheduler,
    normalisation,
    random_erasing,
)
from torch_semaug.train.data import build_datasets, build_loaders, probe
from torch_semaug.train.loop import EpochSetup, make_loss, train_one_epoch, validate

# What a run writes in its folder (atomically; a SIGKILL during a write leaves a hidden temporary beside it).
OUTPUTS = ("last.pth", "model_best.pth", "args.yaml", "metrics.json", "metrics.csv", "summary.json", "curves.png")
# Options a resumed run cannot change: the weights would not fit, or the data would not be the same.
FIXED_ON_RESUME = ("model", "dataset", "num_classes", "in_chans", "img_size")


def rank_seed(seed: int, rank: int, epoch: int, stream: str = "") -> int:
    """A seed for one random stream: different on every rank and every epoch, the same after a resume."""
    return int.from_bytes(hashlib.sha256(f"{seed}/{rank}/{epoch}{stream}".encode()).digest()[:7], "little")


def seed_epoch(seed: int, rank: int, epoch: int, transform_rng: torch.Generator, shuffle: torch.Generator) -> None:
    """Seed every random stream of epoch ``epoch`` on this rank; the shuffle is the same on every rank."""
    value = rank_seed(seed, rank, epoch)
    torch.manual_seed(value)
    np.random.seed(value % 2**32)
    random.seed(value)
    transform_rng.manual_seed(value)
    shuffle.manual_seed(rank_seed(seed, 0, epoch, "/shuffle"))


def weights_digest(model: torch.nn.Module) -> str:
    digest = hashlib.sha256()
    for key, tensor in sorted(model.state_dict().items()):
        digest.update(key.encode())
        digest.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def absolute_dataset(name: str) -> str:
    """``folder:PATH[@N]`` with an absolute PATH (a resumed run may start elsewhere); other names unchanged."""
    kind, variant, count = parse_dataset_name(name)
    if kind != "folder":
        return name
    return f"folder:{os.path.abspath(variant)}" + (f"@{count}" if count is not None else "")


def resolve_data(config: TrainConfig) -> TrainConfig:
    """timm's meaning of ``--data-dir``: with no ``--dataset`` it is an ImageFolder; the default root otherwise.
    Paths become absolute, so that ``--resume`` works from any directory."""
    dataset = config.dataset or (f"folder:{config.data_root}" if config.data_root else "torch/cifar10")
    paths = {key: os.path.abspath(getattr(config, key)) for key in ("semaug_generator", "semaug_latents")
             if getattr(config, key) is not None}
    return config.replace(dataset=absolute_dataset(dataset),
                          data_root=os.path.abspath(config.data_root or default_data_root()), **paths)


def resume_config(path: str, **overrides: Any) -> TrainConfig:
    """The options stored in the checkpoint at ``path``, with ``overrides``, set to resume it."""
    stored = load_checkpoint(path)["args"]
    known = set(TrainConfig.__dataclass_fields__)
    return TrainConfig(**{k: v for k, v in stored.items() if k in known} | overrides | {"resume": str(path)})


def check_resume(config: TrainConfig, state: dict[str, Any]) -> None:
    for key in FIXED_ON_RESUME:
        before, now = state["args"].get(key), getattr(config, key)
        if key == "dataset" and before is not None:
            before = absolute_dataset(before)
        if before != now:
            raise ValueError(f"resume: the checkpoint was trained with --{key.replace('_', '-')} {before}, "
                             f"this run says {now}; a resumed run keeps it (start a new run to change it)")


def run_folder(config: TrainConfig, accelerator: Any) -> Path:
    """The run's folder (same on every rank); an existing run is only reused through ``resume``."""
    from accelerate.utils import broadcast_object_list

    if config.resume:
        return Path(config.resume).resolve().parent
    name = config.experiment
    if name is None:
        stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
        kind, variant, _ = parse_dataset_name(config.dataset)
        label = os.path.basename(variant) if kind == "folder" else config.dataset.split("@")[0]
        parts = [stamp, label.replace("/", "-").replace(":", "-").strip("-"), config.model, config.semaug]
        name = broadcast_object_list(["-".join(p for p in parts if p)[:120]])[0]
    folder = Path(config.output) / name
    if (folder / "last.pth").exists():
        raise ValueError(f"experiment: {folder} already holds a run; continue it with --resume {folder / 'last.pth'} "
                         "or choose another --experiment")
    return folder


@dataclass
class Run:
    """Everything built for a run, shared by the epoch loop, the checkpoints and the summary."""

    config: TrainConfig
    accelerator: Any
    model: torch.nn.Module  # as prepared (DDP-wrapped with several processes)
    optimizer: Any
    scheduler: Any
    epochs: int
    updates_per_epoch: int
    train_loader: Any
    val_loader: Any
    shuffle: torch.Generator
    rng: torch.Generator
    setup: EpochSetup
    folder: Path
    info: dict[str, Any]  # num_classes, in_chans, mean, std, classes (what `semaug eval` reads)
    history: list[dict[str, Any]]
    best: dict[str, Any]

    @property
    def inner(self) -> torch.nn.Module:
        return self.accelerator.unwrap_model(self.model, keep_torch_compile=False)


def build_run(config: TrainConfig, state: dict[str, Any] | None) -> Run:
    """Data, model, transform, optimizer, scheduler and loaders, prepared by accelerate; restored from ``state``."""
    from accelerate.utils import set_seed
    from timm.data import Mixup

    accelerator = make_accelerator(config)
    set_seed(config.seed)  # the same initial weights on every rank
    classes, in_chans, img_size = probe(config.dataset, config.data_root, config.train_split, config.img_size)
    model, num_classes, in_chans = build_model(config, classes, in_chans)
    mean, std = normalisation(config, model, in_chans)
    rng = torch.Generator(device=accelerator.device)
    semaug, cache = build_semaug(config, mean, std, rng)
    data = build_datasets(config, config.dataset, config.data_root, mean, std, img_size, cache,
                          index=semaug is not None)
    attach_warm_start(config, semaug, data.train)
    mixup_fn = None
    if config.mixup > 0 or config.cutmix > 0:
        mixup_fn = Mixup(mixup_alpha=config.mixup, cutmix_alpha=config.cutmix, prob=config.mixup_prob,
                         label_smoothing=config.smoothing, num_classes=num_classes)
    train_loader, val_loader, shuffle = build_loaders(config, data, drop_last=mixup_fn is not None)
    optimizer = make_optimizer(config, model)
    model = compile_model(model, config.torchcompile)
    model, optimizer, train_loader, val_loader = accelerator.prepare(model, optimizer, train_loader, val_loader)
    updates = (len(train_loader) + config.grad_accum_steps - 1) // config.grad_accum_steps
    scheduler, epochs = make_scheduler(config, optimizer, updates)
    ema = None
    if config.model_ema:
        from timm.utils import ModelEmaV3

        ema = ModelEmaV3(accelerator.unwrap_model(model, keep_torch_compile=False), decay=config.model_ema_decay)
    if semaug is not None:
        semaug.generator.to(accelerator.device)  # frozen; never passed to accelerator.prepare
        semaug.bind(model)  # the guard unwraps DDP for the inner steps
    setup = EpochSetup(make_loss(0.0 if mixup_fn is not None else config.smoothing), data.layout, semaug, mixup_fn,
                       ema, random_erasing(config, accelerator.device), config.clip_grad, config.channels_last,
                       config.progress, config.log_interval)
    info = {"num_classes": num_classes, "in_chans": in_chans, "mean": list(mean), "std": list(std), "classes": classes,
            "train_images": len(data.train), "val_images": len(data.val), "cache": cache}
    run = Run(config, accelerator, model, optimizer, scheduler, epochs, updates, train_loader, val_loader, shuffle,
              rng, setup, run_folder(config, accelerator), info, [], {"val_top1": -1.0, "epoch": -1})
    if state is not None:
        restore(run, state)
    return run


def restore(run: Run, state: dict[str, Any]) -> None:
    """Load the evolving state of ``state`` into ``run``; a longer schedule is rebuilt, not restored."""
    run.inner.load_state_dict(state["model"])
    run.optimizer.load_state_dict(state["optimizer"])
    start = state["epoch"]
    if state["args"]["epochs"] == run.config.epochs:
        run.scheduler.load_state_dict(state["scheduler"])
    elif start > 0:  # timm's rule for a rebuilt scheduler: step it to where the run stands
        run.scheduler.step(start)
        run.scheduler.step_update(start * run.updates_per_epoch)
    if run.setup.ema is not None and state.get("model_ema"):
        run.setup.ema.load_state_dict(state["model_ema"])
    if run.accelerator.scaler is not None and state.get("scaler"):
        run.accelerator.scaler.load_state_dict(state["scaler"])
    semaug, per_rank = run.setup.semaug, state.get("semaug_per_rank") or []
    if semaug is not None and per_rank:
        rank = run.accelerator.process_index
        if len(per_rank) != run.accelerator.num_processes and run.accelerator.is_main_process:
            warnings.warn(f"resume: the checkpoint holds the transform state of {len(per_rank)} process(es), this "
                          f"run has {run.accelerator.num_processes}; every process starts from process 0's",
                          stacklevel=2)
        semaug.load_state_dict(per_rank[rank] if len(per_rank) == run.accelerator.num_processes else per_rank[0])
    run.history, run.best = list(state["history"]), dict(state["best"])


def save(run: Run, next_epoch: int) -> None:
    """Write ``last.pth`` (main process; every rank's transform state is gathered into it)."""
    from accelerate.utils import gather_object

    semaug = run.setup.semaug
    if semaug is not None and semaug.warm_start is not None:
        semaug.warm_start.sync()  # every rank then starts the next epoch with every rank's moves
    per_rank = gather_object([semaug.state_dict() if semaug is not None else {}])
    if not run.accelerator.is_main_process:
        return
    ema = run.setup.ema
    save_checkpoint(
        run.folder / "last.pth", model=run.inner.state_dict(), optimizer=run.optimizer.state_dict(),
        scheduler=run.scheduler.state_dict(), model_ema=ema.state_dict() if ema is not None else {},
        scaler=run.accelerator.scaler.state_dict() if run.accelerator.scaler is not None else {},
        semaug_per_rank=per_rank if semaug is not None else [], epoch=next_epoch, history=run.history,
        best=run.best, args=run.config.to_dict(), **checkpoint_info(run),
    )


def checkpoint_info(run: Run) -> dict[str, Any]:
    return {k: run.info[k] for k in ("num_classes", "in_chans", "mean", "std", "classes")}


def save_best(run: Run, metrics: dict[str, Any]) -> None:
    """timm's rule: the best epoch by validation top-1, of the EMA weights when ``model_ema`` is on."""
    key = "ema_val_top1" if run.setup.ema is not None else "val_top1"
    if metrics[key] <= run.best["val_top1"]:
        return
    run.best = {"val_top1": metrics[key], "epoch": metrics["epoch"], "metric": key}
    if run.accelerator.is_main_process:
        weights = run.setup.ema.module if run.setup.ema is not None else run.inner
        save_checkpoint(run.folder / "model_best.pth", model=weights.state_dict(), epoch=metrics["epoch"] + 1,
                        best=run.best, args=run.config.to_dict(), **checkpoint_info(run))


def run_epoch(run: Run, epoch: int) -> dict[str, Any]:
    accelerator = run.accelerator
    seed_epoch(run.config.seed, accelerator.process_index, epoch, run.rng, run.shuffle)
    tic = time.perf_counter()
    metrics: dict[str, Any] = {"epoch": epoch, "lr": run.optimizer.param_groups[0]["lr"]}
    metrics |= train_one_epoch(accelerator, run.model, run.train_loader, run.optimizer, run.scheduler, run.setup,
                               epoch=epoch, updates_per_epoch=run.updates_per_epoch)
    metrics |= validate(accelerator, run.model, run.val_loader, progress=run.config.progress)
    if run.setup.ema is not None:
        ema = validate(accelerator, run.setup.ema.module, run.val_loader, progress=run.config.progress)
        metrics |= {f"ema_{k}": v for k, v in ema.items() if k != "val_examples"}
    metrics["epoch_seconds"] = time.perf_counter() - tic
    run.scheduler.step(epoch + 1, metrics["val_top1"])
    return metrics


def overrides(config: TrainConfig, stored: dict[str, Any]) -> list[str]:
    """``--epochs 3 (checkpoint: 2)`` for every option of a resumed run that differs from the checkpoint's."""
    now = config.to_dict()
    return [f"--{key.replace('_', '-')} {now[key]} (checkpoint: {value})" for key, value in stored.items()
            if key in now and key not in ("resume", "experiment", "output") and now[key] != value]


def announce(run: Run, state: dict[str, Any] | None) -> None:
    """Create the run folder and say what runs (main process)."""
    config, info = run.config, run.info
    if not run.accelerator.is_main_process:
        return
    run.folder.mkdir(parents=True, exist_ok=True)
    for name in OUTPUTS:
        for path in remove_stale_temporaries(run.folder / name):
            print(f"removed {path.name}, left by a killed write")
    write_text_atomic(run.folder / "args.yaml", yaml.safe_dump(config.to_dict(), sort_keys=True))
    parameters = sum(p.numel() for p in run.inner.parameters())
    print(f"run folder: {run.folder}\nmodel: {config.model} ({parameters:,} parameters), {info['num_classes']} "
          f"classes, {info['train_images']} train / {info['val_images']} val images, "
          f"{run.accelerator.num_processes} process(es) on {run.accelerator.device}")
    if state is not None:
        print(f"resuming {config.resume} at epoch {state['epoch']} of {run.epochs}")
        changed = overrides(config, state["args"])
        if changed:
            print(f"overriding the checkpoint: {', '.join(changed)}")
    if run.setup.semaug is not None:
        cache = info["cache"]
        print(f"semaug: {run.setup.semaug!r}" + (f" with cached latents {cache.path}" if cache is not None else ""))


def finish(run: Run, start_epoch: int, started: float) -> dict[str, Any]:
    from accelerate.utils import gather_object

    accelerator = run.accelerator
    accelerator.wait_for_everyone()
    digests = gather_object([weights_digest(run.inner)])
    steps = gather_object([len(run.train_loader) * (run.epochs - start_epoch)])
    summary = {"run": str(run.folder), "epochs": run.epochs, "best": run.best,
               "final": run.history[-1] if run.history else {}, "wall_seconds": time.perf_counter() - started,
               "processes": accelerator.num_processes, "rank_weight_sha256": digests, "rank_train_steps": steps}
    if accelerator.is_main_process:
        write_text_atomic(run.folder / "summary.json", json.dumps(summary, indent=2))
        plot = write_curves(run.folder, run.history)
        final = summary["final"]
        print(f"done: {run.epochs} epochs, final val top-1 {final.get('val_top1', float('nan')):.2f} %, best "
              f"{run.best['val_top1']:.2f} % (epoch {run.best['epoch']}); metrics in {run.folder / 'metrics.csv'}"
              + (f", curves in {plot}" if plot else ""))
    accelerator.end_training()
    return summary


def train_classifier(config: TrainConfig | None = None, /, **options: Any) -> dict[str, Any]:
    """Train a timm classifier; ``options`` are :class:`TrainConfig`'s fields (they update ``config``).

    Returns the run's summary (also written to ``summary.json``). Raises ``ValueError`` naming the option
    for a bad value, before the first step. A ``KeyboardInterrupt`` is re-raised after printing how to
    resume; ``last.pth`` then holds the last completed epoch. To continue a run with the options it was
    started with: ``train_classifier(resume_config("runs/x/last.pth", epochs=60))``.
    """
    config = resolve_data((config or TrainConfig()).replace(**options))
    state = load_checkpoint(config.resume) if config.resume else None
    if state is not None:
        check_resume(config, state)
    run = build_run(config, state)
    start_epoch = state["epoch"] if state is not None else 0
    if start_epoch > run.epochs:
        raise ValueError(f"epochs: the checkpoint has already trained {start_epoch} epochs, got --epochs "
                         f"{config.epochs}; pass a larger --epochs to train further")
    announce(run, state)
    if config.log_with is not None:
        run.accelerator.project_configuration.set_directories(str(run.folder))
        run.accelerator.project_configuration.logging_dir = str(run.folder)  # set_directories keeps an old one
        run.accelerator.init_trackers("logs", config=tracker_config(config))
    if state is None:
        save(run, 0)  # a kill during the first epoch can resume, and the folder is marked as a run
    started, epoch = time.perf_counter(), start_epoch
    try:
        for epoch in range(start_epoch, run.epochs):
            metrics = run_epoch(run, epoch)
            run.history.append(metrics)
            save_best(run, metrics)
            save(run, epoch + 1)
            run.accelerator.log({k: v for k, v in metrics.items() if k != "epoch"}, step=epoch)
            if run.accelerator.is_main_process:
                write_metrics(run.folder, run.history)
                print(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in metrics.items()))
    except KeyboardInterrupt:
        if run.accelerator.is_main_process:
            where = f"the end of epoch {epoch - 1}" if epoch > 0 else "the initial weights"
            print(f"\ninterrupted during epoch {epoch}; resume with --resume {run.folder / 'last.pth'} (it holds "
                  f"{where})")
        raise
    return finish(run, start_epoch, started)


def tracker_config(config: TrainConfig) -> dict[str, Any]:
    """The options as the scalar hyper-parameters trackers accept."""
    return {k: v if isinstance(v, int | float | str | bool) else str(v) for k, v in config.to_dict().items()}
