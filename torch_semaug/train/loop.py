"""One training epoch and one validation pass, accelerate-aware.

The semantic transform runs on the device right after the loader, at the point where timm applies
``mixup_fn``: it attacks the unwrapped classifier for its inner steps (its guard unwraps DDP) and the
wrapped model then trains on its output.
"""

from __future__ import annotations

import time
from collections.abc import Callable
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


def train_one_epoch(
    accelerator: Accelerator,
    model: nn.Module,
    loader: DataLoader,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    loss_fn: LossFn,
    *,
    epoch: int,
    semaug: SemanticTransform | None,
    mixup_fn: Callable | None,
    layout: str,
    clip_grad: float | None,
    progress: bool,
    log_interval: int,
) -> dict[str, float]:
    """Train ``model`` for one epoch; returns loss/accuracy summed over every process."""
    model.train()
    num_updates = epoch * len(loader)
    totals = torch.zeros(3, device=accelerator.device)  # loss sum, correct, examples with hard labels
    count = torch.zeros(1, device=accelerator.device)  # examples
    semaug_seconds = 0.0
    bar = tqdm(loader, desc=f"train {epoch}", leave=False, disable=not (progress and accelerator.is_main_process))
    for step, batch in enumerate(bar):
        start = time.perf_counter()
        x, y = apply_semaug(semaug, batch, layout)
        semaug_seconds += time.perf_counter() - start
        hard = y.ndim == 1
        if mixup_fn is not None:
            if not hard:
                raise ValueError("mixup: the semantic transform returned soft labels; turn off --mixup/--cutmix "
                                 "or the transform's label smoothing")
            x, y = mixup_fn(x, y)
        with accelerator.autocast():
            logits = model(x)
            loss = loss_fn(logits, y)
        optimizer.zero_grad(set_to_none=True)
        accelerator.backward(loss)
        if clip_grad is not None:
            accelerator.clip_grad_norm_(model.parameters(), clip_grad)
        optimizer.step()
        num_updates += 1
        scheduler.step_update(num_updates=num_updates)
        batch_size = x.shape[0]
        totals[0] += loss.detach().float() * batch_size
        count += batch_size
        if y.ndim == 1:
            totals[1] += (logits.detach().argmax(1) == y).sum()
            totals[2] += batch_size
        if step % max(1, log_interval) == 0:
            bar.set_postfix(loss=f"{loss.item():.3f}", lr=f"{optimizer.param_groups[0]['lr']:.3g}")
    totals = accelerator.reduce(totals, "sum")
    count = accelerator.reduce(count, "sum")
    metrics = {"train_loss": float(totals[0] / count.clamp_min(1)), "train_examples": int(count)}
    if float(totals[2]) > 0:
        metrics["train_top1"] = 100.0 * float(totals[1] / totals[2])
    if semaug is not None:
        metrics["semaug_seconds"] = semaug_seconds
    return metrics


@torch.no_grad()
def validate(accelerator: Accelerator, model: nn.Module, loader: DataLoader, *, progress: bool,
             desc: str = "eval") -> dict[str, float]:
    """Loss, top-1 and top-5 accuracy over the whole split, gathered from every process without duplicates."""
    model.eval()
    loss_sum, correct1, correct5, total = 0.0, 0, 0, 0
    bar = tqdm(loader, desc=desc, leave=False, disable=not (progress and accelerator.is_main_process))
    for batch in bar:
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
