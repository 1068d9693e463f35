"""One training epoch and one validation pass, accelerate-aware.

The semantic transform runs on the device right after the loader, at the point where timm applies
``mixup_fn``: it attacks the unwrapped classifier for its inner steps (its guard unwraps DDP) and the
wrapped model then trains on its output.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from accelerate import Accelerator
from torch import Tensor, nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from torch_semaug.transforms import SemanticTransform

LossFn = Callable[[Tensor, Tensor], Tensor]


def make_loss(smoothing: float) -> LossFn:
    """Cross-entropy for hard labels (with timm's label smoothing) and soft-target CE for soft labels."""
    from timm.loss import LabelSmoothingCrossEntropy, SoftTargetCrossEntropy

    hard: nn.Module = LabelSmoothingCrossEntropy(smoothing) if smoothing > 0 else nn.CrossEntropyLoss()
    soft = SoftTargetCrossEntropy()

    def loss(logits: Tensor, labels: Tensor) -> Tensor:
        return soft(logits, labels) if labels.ndim == 2 else hard(logits, labels)

    return loss


def apply_semaug(semaug: SemanticTransform | None, batch: list[Tensor], layout: str) -> tuple[Tensor, Tensor]:
    """``x, y`` of a batch after the semantic transform, fed the cached latents / indices the layout has."""
    x, y = batch[0], batch[1]
    if semaug is None:
        return x, y
    extras: dict[str, Tensor] = {}
    if "z" in layout:
        extras["latents"] = batch[layout.index("z")]
    if "i" in layout:
        extras["indices"] = batch[layout.index("i")]
    return semaug(x, y, **extras)


@dataclass
class EpochSetup:
    """What stays the same from one epoch to the next."""

    loss_fn: LossFn
    layout: str
    semaug: SemanticTransform | None = None
    mixup_fn: Callable | None = None
    ema: Any = None  # timm.utils.ModelEmaV3
    erase: Callable[[Tensor], Tensor] | None = None  # timm's RandomErasing on the batch, as timm's prefetcher
    clip_grad: float | None = None
    channels_last: bool = False
    progress: bool = True  # a tqdm bar on a terminal
    log_interval: int = 50  # batches between timm-style log lines when stdout is not a terminal (or no bar)


class BatchLog:
    """timm's ``Train: epoch [batch/total (pct%)]  Loss: last (mean)  Time: ...  LR: ...`` lines, or a tqdm bar
    on a terminal. Main process only."""

    def __init__(self, accelerator: Accelerator, total: int, epoch: int, setup: EpochSetup) -> None:
        self.main, self.total, self.epoch, self.interval = accelerator.is_main_process, total, epoch, setup.log_interval
        self.bar = None
        if self.main and setup.progress and sys.stdout.isatty():
            self.bar = tqdm(total=total, desc=f"train {epoch}", leave=False)
        self.loss_sum, self.count, self.start = 0.0, 0, time.perf_counter()

    def update(self, step: int, loss: float, batch_size: int, lr: float) -> None:
        if not self.main:
            return
        self.loss_sum, self.count = self.loss_sum + loss, self.count + 1
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix(loss=f"{loss:.3f}", lr=f"{lr:.3g}", refresh=False)
        elif step % self.interval == 0 or step == self.total - 1:
            seconds = (time.perf_counter() - self.start) / self.count
            print(f"Train: {self.epoch} [{step:>4d}/{self.total} ({100.0 * step / max(self.total - 1, 1):>3.0f}%)]  "
                  f"Loss: {loss:#.4g} ({self.loss_sum / self.count:#.4g})  Time: {seconds:.3f}s, "
                  f"{batch_size / seconds:>7.2f}/s  LR: {lr:.3e}", flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def train_step(accelerator: Accelerator, model: nn.Module, optimizer: torch.optim.Optimizer, setup: EpochSetup,
               x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    """Forward/backward of one batch inside ``accelerator.accumulate`` (the optimizer steps when gradients
    sync); returns the loss and the logits."""
    if setup.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    with accelerator.accumulate(model):
        with accelerator.autocast():
            logits = model(x)
            loss = setup.loss_fn(logits, y)
        accelerator.backward(loss)
        if setup.clip_grad is not None and accelerator.sync_gradients:
            accelerator.clip_grad_norm_(model.parameters(), setup.clip_grad)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return loss, logits


def train_one_epoch(accelerator: Accelerator, model: nn.Module, loader: DataLoader, optimizer: torch.optim.Optimizer,
                    scheduler: Any, setup: EpochSetup, *, epoch: int, updates_per_epoch: int) -> dict[str, float]:
    """Train ``model`` for one epoch; loss/accuracy count every example once over all processes."""
    model.train()
    num_updates = epoch * updates_per_epoch
    totals = torch.zeros(3, dtype=torch.float64)  # loss sum, correct, examples with hard labels
    count, semaug_seconds = 0, 0.0
    log = BatchLog(accelerator, len(loader), epoch, setup)
    for step, batch in enumerate(loader):
        start = time.perf_counter()
        x, y = apply_semaug(setup.semaug, batch, setup.layout)
        semaug_seconds += time.perf_counter() - start
        if setup.erase is not None:  # after the transform: erased pixels are outside the generator's range
            x = setup.erase(x)
        labels = y
        if setup.mixup_fn is not None:
            if y.ndim != 1:
                raise ValueError("mixup: the semantic transform returned soft labels; turn off --mixup/--cutmix "
                                 "or the transform's label smoothing")
            x, y = setup.mixup_fn(x, y)
        loss, logits = train_step(accelerator, model, optimizer, setup, x, y)
        if accelerator.sync_gradients:
            num_updates += 1
            scheduler.step_update(num_updates=num_updates)
            if setup.ema is not None:
                setup.ema.update(accelerator.unwrap_model(model, keep_torch_compile=False), step=num_updates)
        # One row per example, so that gather_for_metrics can drop the copies padding the last batch.
        hard = labels.ndim == 1 and y.ndim == 1
        correct = (logits.detach().argmax(1) == labels).double() if hard else torch.zeros(x.shape[0])
        rows = torch.stack([loss.detach().double().expand(x.shape[0]).cpu(), correct.cpu(),
                            torch.full((x.shape[0],), float(hard), dtype=torch.float64)], 1)
        rows = accelerator.gather_for_metrics(rows.to(accelerator.device)).cpu()
        totals += rows.sum(0)
        count += rows.shape[0]
        log.update(step, loss.detach().item(), x.shape[0] * accelerator.num_processes, optimizer.param_groups[0]["lr"])
    log.close()
    metrics = {"train_loss": float(totals[0]) / max(count, 1), "train_examples": count}
    if float(totals[2]) > 0:
        metrics["train_top1"] = 100.0 * float(totals[1] / totals[2])
    if setup.semaug is not None:
        metrics["semaug_seconds"] = semaug_seconds
    return metrics


@torch.no_grad()
def validate(accelerator: Accelerator, model: nn.Module, loader: DataLoader, *, progress: bool,
             desc: str = "eval") -> dict[str, float]:
    """Loss, top-1 and top-5 accuracy over the whole split, gathered from every process without duplicates."""
    model.eval()
    loss_sum, correct1, correct5, total = 0.0, 0, 0, 0
    show = progress and accelerator.is_main_process and sys.stdout.isatty()
    for batch in tqdm(loader, desc=desc, leave=False, disable=not show):
        x, y = batch[0], batch[1]
        with accelerator.autocast():
            logits = model(x)
        logits, y = accelerator.gather_for_metrics((logits.float(), y))
        k = min(5, logits.shape[1])
        top = logits.topk(k, dim=1).indices
        loss_sum += float(F.cross_entropy(logits, y, reduction="sum"))
        correct1 += int((top[:, 0] == y).sum())
        correct5 += int((top == y[:, None]).any(1).sum())
        total += int(y.numel())
    return {"val_loss": loss_sum / max(total, 1), "val_top1": 100.0 * correct1 / max(total, 1),
            "val_top5": 100.0 * correct5 / max(total, 1), "val_examples": total}
