"""Shared pieces of the paper benchmarks: the training methods, a training loop on in-memory tensors,
accuracy (clean and under a transform), latents of a dataset, and the results file.

Every method is a callable ``(x, y, latents) -> (x, y)`` applied to a batch after sampling, like timm's
``mixup_fn``; soft labels (mixup, CutMix) go straight into ``F.cross_entropy``.
"""

from __future__ import annotations

import argparse
import platform
import shlex
import sys
import time
import weakref
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm import tqdm

import torch_semaug as ts
from torch_semaug._io import write_text_atomic

Method = Callable[[Tensor, Tensor, Tensor | None], tuple[Tensor, Tensor]]
SCALES = ("smoke", "cpu", "paper")


def make_method(name: str, model: nn.Module, *, num_classes: int, image_shape: tuple[int, int, int], seed: int,
                generator: nn.Module | None = None, flow: nn.Module | None = None, p: float = 0.5,
                at_eps: float = 0.1, at_steps: int = 5, adv_steps: int = 7, adv_restarts: int = 5) -> Method:
    """The batch-level augmentation called ``name`` (see each benchmark for the names it uses)."""
    from torchvision.transforms import v2

    rng = torch.Generator().manual_seed(seed + 1)
    if name in ("nominal", "standard"):
        return lambda x, y, z: (x, y)
    if name == "flips_crops":
        return _per_sample(v2.Compose([v2.RandomCrop(image_shape[-1], padding=4), v2.RandomHorizontalFlip()]))
    if name == "cutout":
        side = image_shape[-1] // 2  # DeVries & Taylor: a 16x16 hole on 32x32 CIFAR-10
        return _per_sample(v2.RandomErasing(p=1.0, scale=((side / image_shape[-1]) ** 2,) * 2, ratio=(1.0, 1.0)))
    if name.startswith("mixup"):
        mix = v2.MixUp(alpha=float(name.partition(":")[2] or 0.2), num_classes=num_classes)
        return lambda x, y, z: mix(x, y)
    if name == "cutmix":
        cut = v2.CutMix(num_classes=num_classes)
        return lambda x, y, z: cut(x, y)
    if name == "pixel_at":
        attack = ts.AdversarialLatentAttack(ts.IdentityGenerator(image_shape), model=model, eps=at_eps,
                                            step_size=at_eps / 4, steps=at_steps, random_start=True, p=p, rng=rng)
        return lambda x, y, z: attack(x, y)
    if name in ("randmix", "advmix"):
        if generator is None:
            raise ValueError(f"method {name!r}: needs a StyleGAN2 generator (--generator)")
        # the paper's fine layers (generator.fine_layers) and budgets; AdvMix's training budget from the scale
        mix = (ts.LatentMix(generator, p=p, rng=rng) if name == "randmix" else
               ts.LatentMix(generator, model=model, mode="adversarial", p=p, steps=adv_steps, restarts=adv_restarts,
                            rng=rng))
        return lambda x, y, z: mix(x, y, latents=z)
    if name in ("rla", "ala"):
        if flow is None:
            raise ValueError(f"method {name!r}: needs a flow (--flow)")
        # the papers' defaults: R-LA l-inf eps 0.25; A-LA l2 eps 1.0, step 0.5, 3 steps, random start
        perturb = (ts.FlowPerturb(flow, mode="random", p=p, rng=rng) if name == "rla" else
                   ts.FlowPerturb(flow, model=model, mode="adversarial", p=p, rng=rng))
        return lambda x, y, z: perturb(x, y)
    raise ValueError(f"method: unknown method {name!r}")


def _per_sample(transform: Callable[[Tensor], Tensor]) -> Method:
    """torchvision's v2 transforms draw one set of parameters per call: call them image by image."""
    return lambda x, y, z: (torch.stack([transform(image) for image in x]), y)


def train(model: nn.Module, method: str | Method, images: Tensor, labels: Tensor, *, steps: int, batch: int,
          seed: int, num_classes: int, latents: Tensor | None = None, lr: float = 1e-3, desc: str = "",
          **method_kwargs) -> nn.Module:
    """Adam on random batches of in-memory tensors with one augmentation method (a name for
    :func:`make_method`, or a ready callable); returns the model in eval mode."""
    torch.manual_seed(seed)
    model(images[:2])  # materialise lazy layers
    if isinstance(method, str):
        method = make_method(method, model, num_classes=num_classes, image_shape=tuple(images.shape[1:]),
                             seed=seed, **method_kwargs)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    rng = torch.Generator().manual_seed(seed)
    model.train()
    for _ in tqdm(range(steps), desc=desc, leave=False, dynamic_ncols=True):
        idx = torch.randint(0, len(images), (batch,), generator=rng)
        x, y = method(images[idx], labels[idx], None if latents is None else latents[idx])
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return model.eval()


def accuracy(model: nn.Module, images: Tensor, labels: Tensor, attack: Callable | None = None,
             latents: Tensor | None = None, batch: int = 500) -> float:
    """Top-1 accuracy (%) on ``images``, optionally after ``attack(x, y, latents=z)`` per batch."""
    correct = 0
    for start in range(0, len(images), batch):
        x, y = images[start:start + batch], labels[start:start + batch]
        if attack is not None:
            kwargs = {} if latents is None else {"latents": latents[start:start + batch]}
            x = attack(x, y, **kwargs)[0]
        with torch.no_grad():
            correct += (model(x).argmax(1) == y).sum().item()
    return 100.0 * correct / max(len(images), 1)


_FITTED_ENCODERS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # generator -> its fitted encoder


def invert(generator: ts.StyleGAN2, images: Tensor, encoder: str = "optimize:50", seed: int = 0) -> Tensor:
    """W+ codes of ``images`` in [0, 1]: ``semaug encode``'s encoder spec (a learned encoder file
    ``PATH[:REFINE]`` or ``optimize:N``), or ``learned:N`` — fit a learned encoder (NaTra's BIES) for N steps
    on this generator's samples and the images it first inverts, then one forward pass per image. The fitted
    encoder is kept for later calls with the same generator (e.g. Figure 7's other sigmas)."""
    from torch_semaug.generators.encoders import encoder_from_spec

    x = images * 2 - 1
    if encoder.startswith("learned:"):
        fitted = _FITTED_ENCODERS.get(generator)
        if fitted is None:
            real = torch.utils.data.DataLoader(x, batch_size=32, shuffle=True,
                                               generator=torch.Generator().manual_seed(seed))
            fitted = _FITTED_ENCODERS[generator] = encoder_from_spec(encoder, generator, real_images=real, seed=seed)
        return torch.cat([fitted.encode(chunk) for chunk in x.split(500)]).detach()
    return encoder_from_spec(encoder, generator).encode(x).detach()


def stack(dataset, n: int | None = None) -> tuple[Tensor, Tensor]:
    """The first ``n`` items of a map-style ``(image, label)`` dataset as two tensors."""
    n = len(dataset) if n is None else min(n, len(dataset))
    items = [dataset[i] for i in range(n)]
    return torch.stack([x for x, _ in items]), torch.stack([torch.as_tensor(y) for _, y in items])


def table(header: list[str], rows: list[list[object]]) -> str:
    def cell(v: object) -> str:
        return f"{v:.2f}" if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows])


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags every paper benchmark takes: where results go, the seed, and torch's CPU threads."""
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None)


def parse_run_args(parser: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    """Parse ``argv`` and apply ``--threads`` (flags added by :func:`add_run_arguments`)."""
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    return args


def write_results(path: Path, title: str, start: float, sections: list[str], notes: list[str]) -> None:
    """The results file: exact command, date, machine, wall time, then the tables and notes."""
    command = "python " + " ".join(shlex.quote(a) for a in sys.argv)
    header = [f"# {title}", "", f"- command: `{command}`",
              f"- date: {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC; machine: {platform.machine()}, "
              f"{torch.get_num_threads()} torch threads, torch {torch.__version__}",
              f"- wall time: {time.time() - start:.0f} s", ""]
    write_text_atomic(path, "\n".join(header + sections + ["", *notes, ""]))
    print(f"wrote {path}")
