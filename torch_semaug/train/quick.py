"""Quick classifier training on in-memory tensors: what ``semaug demo`` and the paper benchmarks share.

- :func:`small_cnn` and :func:`cifar_resnet`: the two classifiers they train;
- :func:`make_method`: a batch-level augmentation by name (``"flips_crops"``, ``"rla"``, ``"advmix"``, ...);
- :func:`train`: Adam or SGD (Nesterov, weight decay, step decay) on random batches of in-memory tensors;
- :func:`accuracy`: top-1 accuracy, clean or after a transform;
- :func:`invert`: W+ codes of images, fitting a learned encoder once per generator (``learned:N``).

Every method is a callable ``(x, y, latents) -> (x, y)`` applied to a batch after sampling, like timm's
``mixup_fn``; soft labels (mixup, CutMix) go straight into ``F.cross_entropy``.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm import tqdm

from torch_semaug.generators.identity import IdentityGenerator
from torch_semaug.generators.stylegan2 import StyleGAN2
from torch_semaug.transforms.adversarial_latent_attack import AdversarialLatentAttack
from torch_semaug.transforms.flow_perturb import FlowPerturb
from torch_semaug.transforms.latent_mix import LatentMix

Method = Callable[[Tensor, Tensor, Tensor | None], tuple[Tensor, Tensor]]
ADVERSARIAL = ("pixel_at", "advmix", "ala")  # the methods that take the "+bn" / "+pred" attack variants
# suffix -> (the methods it applies to, its keyword arguments); "+l2" is R-LA as flow-lp's README runs it on
# CIFAR-10 (pert.ord=2 pert.epsilon=20.0): Gaussian noise of sd 20 projected onto the l2 ball of radius 20
VARIANTS = {"bn": (ADVERSARIAL, dict(keep_model_mode=True)), "pred": (ADVERSARIAL, dict(targets="predictions")),
            "l2": (("rla",), dict(norm="l2", eps=20.0))}


def small_cnn(num_classes: int, width: int = 32, batch_norm: bool = False) -> nn.Module:
    """Two conv blocks (``width``, ``2 * width`` channels, each halving the resolution) and a linear layer."""
    def block(cin: int, cout: int) -> list[nn.Module]:
        return [nn.Conv2d(cin, cout, 3, padding=1), *([nn.BatchNorm2d(cout)] if batch_norm else []), nn.ReLU(),
                nn.MaxPool2d(2)]

    return nn.Sequential(*block(3, width), *block(width, 2 * width), nn.Flatten(), nn.LazyLinear(num_classes))


class _BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(),
                                  nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout))
        self.shortcut = (nn.Identity() if stride == 1 and cin == cout else
                         nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout)))

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(self.body(x) + self.shortcut(x))


def cifar_resnet(num_classes: int = 10, blocks: Sequence[int] = (2, 2, 2, 2), width: int = 64) -> nn.Module:
    """A CIFAR-style ResNet (He et al. 2016 as flow-lp trains it): a 3x3 stem without max-pool, then one stage
    of ``blocks[i]`` basic blocks per entry, ``width * 2**i`` channels, stride 2 from the second stage on.
    ``(2, 2, 2, 2), 64`` is ResNet-18 for 32x32 images."""
    layers: list[nn.Module] = [nn.Conv2d(3, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU()]
    cin = width
    for i, count in enumerate(blocks):
        cout = width * 2 ** i
        for j in range(count):
            layers.append(_BasicBlock(cin, cout, 2 if i > 0 and j == 0 else 1))
            cin = cout
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(cin, num_classes))


def make_method(name: str, model: nn.Module, *, num_classes: int, image_shape: tuple[int, int, int], seed: int,
                generator: nn.Module | None = None, flow: nn.Module | None = None, p: float = 0.5,
                at_eps: float = 0.1, at_steps: int = 5, adv_steps: int = 7, adv_restarts: int = 5,
                adv_eps: float = 0.03, adv_relative: bool = False, layers: Sequence[int] | None = None) -> Method:
    """The batch-level augmentation called ``name``: ``nominal``/``standard`` (none), ``flips_crops``,
    ``cutout``, ``mixup[:ALPHA]``, ``cutmix``, ``pixel_at``, ``randmix``, ``advmix``, ``rla``, ``ala``. The
    adversarial ones take flow-lp's attack variants as suffixes: ``+bn`` (BatchNorm in train mode during the
    attack) and ``+pred`` (the model's predictions as targets), e.g. ``ala+bn+pred``; ``rla+l2`` is R-LA at
    flow-lp's CIFAR-10 setting (l2, eps 20) instead of the library's default (l-inf, eps 0.25). AdvMix runs
    ``adv_restarts`` x ``adv_steps`` at l-inf ``adv_eps`` with the paper's step ``adv_eps / 6`` (0.005 at 0.03),
    both in units of the generator's W spread when ``adv_relative``."""
    base, extra = _variants(name)
    rng = torch.Generator().manual_seed(seed + 1)
    if base in ("nominal", "standard"):
        return lambda x, y, z: (x, y)
    if base == "flips_crops":
        return flips_crops(image_shape[-1])
    if base == "cutout":
        from torchvision.transforms import v2

        side = image_shape[-1] // 2  # DeVries & Taylor: a 16x16 hole on 32x32 CIFAR-10
        return _per_sample(v2.RandomErasing(p=1.0, scale=((side / image_shape[-1]) ** 2,) * 2, ratio=(1.0, 1.0)))
    if base in ("mixup", "cutmix") or base.startswith("mixup:"):
        from torchvision.transforms import v2

        mix = (v2.CutMix(num_classes=num_classes) if base == "cutmix" else
               v2.MixUp(alpha=float(base.partition(":")[2] or 0.2), num_classes=num_classes))
        return lambda x, y, z: mix(x, y)
    if base == "pixel_at":
        attack = AdversarialLatentAttack(IdentityGenerator(image_shape), model=model, eps=at_eps, step_size=at_eps / 4,
                                         steps=at_steps, random_start=True, p=p, rng=rng, **extra)
        return lambda x, y, z: attack(x, y)
    if base in ("randmix", "advmix"):
        if generator is None:
            raise ValueError(f"method {name!r}: needs a StyleGAN2 generator (--generator)")
        # the paper's fine layers (generator.fine_layers) unless given, and the caller's AdvMix budget
        mix = (LatentMix(generator, layers=layers, p=p, rng=rng) if base == "randmix" else
               LatentMix(generator, model=model, mode="adversarial", layers=layers, p=p, steps=adv_steps,
                         restarts=adv_restarts, eps=adv_eps, step_size=adv_eps / 6, relative_eps=adv_relative,
                         rng=rng, **extra))
        return lambda x, y, z: mix(x, y, latents=z)
    if base in ("rla", "ala"):
        if flow is None:
            raise ValueError(f"method {name!r}: needs a flow (--flow)")
        perturb = flow_perturb(name, flow, model, p=p, rng=rng)
        return lambda x, y, z: perturb(x, y)
    raise ValueError(f"method: unknown method {name!r}")


def _variants(name: str) -> tuple[str, dict]:
    """``name``'s base method and the keyword arguments of its ``+SUFFIX`` variants."""
    base, *suffixes = name.split("+")
    extra: dict = {}
    for suffix in suffixes:
        if suffix not in VARIANTS or base not in VARIANTS[suffix][0]:
            applies = {k: list(bases) for k, (bases, _) in VARIANTS.items()}
            raise ValueError(f"method: {name!r}: expected suffixes that apply to its method ({applies})")
        extra.update(VARIANTS[suffix][1])
    return base, extra


def flow_perturb(name: str, flow: nn.Module, model: nn.Module, *, p: float, rng: torch.Generator) -> FlowPerturb:
    """The :class:`FlowPerturb` of method ``rla[+l2]`` / ``ala[+bn][+pred]``; without a suffix the library's
    defaults: R-LA l-inf eps 0.25; A-LA l2 eps 1.0, step 0.5, 3 steps, random start."""
    base, extra = _variants(name)
    if base == "rla":
        return FlowPerturb(flow, mode="random", p=p, rng=rng, **extra)
    return FlowPerturb(flow, model=model, mode="adversarial", p=p, rng=rng, **extra)


def flips_crops(size: int, padding: int = 4) -> Method:
    """Random crop of the zero-padded image (shifts of at most ``padding`` px) and a random horizontal flip."""
    from torchvision.transforms import v2

    return _per_sample(v2.Compose([v2.RandomCrop(size, padding=padding), v2.RandomHorizontalFlip()]))


def _per_sample(transform: Callable[[Tensor], Tensor]) -> Method:
    """torchvision's v2 transforms draw one set of parameters per call: call them image by image."""
    return lambda x, y, z: (torch.stack([transform(image) for image in x]), y)


def then(first: Method, second: Method) -> Method:
    """``second`` applied to the output of ``first`` (e.g. a method on top of flips/crops)."""
    return lambda x, y, z: second(*first(x, y, z), z)


def train(model: nn.Module, method: str | Method, images: Tensor, labels: Tensor, *, steps: int, batch: int,
          seed: int, num_classes: int | None = None, latents: Tensor | None = None, optimizer: str = "adam",
          lr: float = 1e-3, weight_decay: float = 0.0, milestones: Sequence[float] = (), gamma: float = 0.2,
          desc: str = "", losses: list[float] | None = None, **method_kwargs) -> nn.Module:
    """``steps`` optimiser steps on random batches of ``images`` with ``method`` (a callable, or a name for
    :func:`make_method`, built on ``model`` with ``num_classes`` and ``method_kwargs``) applied to each batch;
    returns the model in eval mode.

    ``optimizer="adam"``, or ``"sgd"``: momentum 0.9, Nesterov (flow-lp's recipe). The learning rate is
    multiplied by ``gamma`` after each fraction of the steps in ``milestones`` (flow-lp: epochs 60, 120, 160
    of 200 -> ``(0.3, 0.6, 0.8)``). The same ``seed`` gives the same batches to every method. ``losses``, if
    given, receives each step's training loss (on the augmented batch: how hard the method made it).
    """
    if optimizer not in ("adam", "sgd"):
        raise ValueError(f"optimizer: expected 'adam' or 'sgd', got {optimizer!r}")
    torch.manual_seed(seed)
    model(images[:2])  # materialise lazy layers before the optimiser (and an adversarial method) sees them
    if isinstance(method, str):
        if num_classes is None:
            raise ValueError(f"num_classes: method {method!r} is built here and needs the number of classes")
        method = make_method(method, model, num_classes=num_classes, image_shape=tuple(images.shape[1:]),
                             seed=seed, **method_kwargs)
    opt = (torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay) if optimizer == "adam" else
           torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, nesterov=True, weight_decay=weight_decay))
    schedule = torch.optim.lr_scheduler.MultiStepLR(opt, [round(m * steps) for m in milestones], gamma)
    rng = torch.Generator().manual_seed(seed)
    model.train()
    bar = tqdm(range(steps), desc=desc, leave=False, dynamic_ncols=True)
    for _ in bar:
        idx = torch.randint(0, len(images), (batch,), generator=rng)
        x, y = method(images[idx], labels[idx], None if latents is None else latents[idx])
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        schedule.step()
        value = loss.item()
        if losses is not None:
            losses.append(value)
        bar.set_postfix(loss=f"{value:.3f}", refresh=False)
    bar.close()
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


def invert(generator: StyleGAN2, images: Tensor, encoder: str = "optimize:50", seed: int = 0) -> Tensor:
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
