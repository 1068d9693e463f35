"""What the classifier guard's buffer snapshot costs beside the attack steps it protects.

    OMP_NUM_THREADS=1 python -m benchmarks.guard_cost

A torchvision ResNet-18 (10 classes, eval mode) on a batch of 32 images of 32 px, one CPU thread. Prints
the time of the guard's buffer snapshot + restore, of a whole guard enter + exit, and of one attack step
(classifier forward + backward to the input), each the best of three timed loops.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
import torchvision

from torch_semaug.attacks import classifier_guard
from torch_semaug.attacks.guard import _BufferSnapshot


def best_of_three(fn: Callable[[], object], repeats: int) -> float:
    """Seconds per call of ``fn``: the best of three loops of ``repeats`` calls, after one warm-up call."""
    fn()
    times = []
    for _ in range(3):
        start = time.perf_counter()
        for _ in range(repeats):
            fn()
        times.append((time.perf_counter() - start) / repeats)
    return min(times)


def main() -> None:
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=10).eval()
    x, y = torch.rand(32, 3, 32, 32), torch.randint(0, 10, (32,))

    def guard() -> None:
        with classifier_guard(model):
            pass

    def attack_step() -> None:
        with classifier_guard(model) as inner:
            z = x.clone().requires_grad_(True)
            torch.autograd.grad(F.cross_entropy(inner(z), y), z)

    snapshot = best_of_three(lambda: _BufferSnapshot(model).restore(), 200)
    whole = best_of_three(guard, 200)
    step = best_of_three(attack_step, 5)
    entries = sum(b.numel() for b in model.buffers())
    print(f"resnet18: {len(list(model.buffers()))} buffers, {entries} entries")
    print(f"buffer snapshot + restore: {snapshot * 1e3:.3f} ms ({snapshot / step:.2%} of one attack step)")
    print(f"guard enter + exit:        {whole * 1e3:.3f} ms ({whole / step:.2%} of one attack step)")
    print(f"one attack step (batch 32): {step * 1e3:.1f} ms")


if __name__ == "__main__":
    main()
