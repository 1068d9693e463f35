"""Add a semantic transform to a plain PyTorch / torchvision training loop.

Classifier-in-the-loop (adversarial) modes run per batch *after* the DataLoader, exactly where timm applies
``mixup_fn``: DataLoader workers cannot hold the live model. Random modes may also sit inside the
dataset's ``v2.Compose`` (see the comment at the bottom). With ``--latents`` the dataset serves cached
latents (``semaug encode``) so nothing is re-inverted during training. Budget flags left out take the
mode's defaults (the papers'; the README's "modes and defaults" table).

    python examples/dataloader_loop.py                              # pixel PGD (identity generator), FakeData
    python examples/dataloader_loop.py --data-root data --transform flow_perturb \\
        --generator glow.safetensors --mode adversarial                # A-LA: l2, eps 1.0, 3 steps of 0.5
    python examples/dataloader_loop.py --data-root data --transform flow_perturb \\
        --generator glow.safetensors --mode random --eps 0.25          # R-LA (no classifier, no steps)
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader
from torchvision import datasets
from torchvision.transforms import v2

import torch_semaug
from torch_semaug.data import LatentDataset
from torch_semaug.data.datasets import create_dataset
from torch_semaug.generators import load_generator
from torch_semaug.train.args import parse_kwargs
from torch_semaug.transforms import get_transform_class

MEAN, STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)


def small_cnn(num_classes: int = 10) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
        nn.Flatten(), nn.Linear(64, num_classes),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-root", default=None, help="CIFAR-10 root; default: torchvision FakeData (offline)")
    parser.add_argument("--transform", default="adversarial_latent_attack", choices=torch_semaug.list_transforms())
    parser.add_argument("--generator", default=None, help="generator checkpoint; default: the identity (pixel PGD)")
    parser.add_argument("--latents", default=None, help="latent cache of the training set (semaug encode)")
    parser.add_argument("--mode", default=None, help="transform mode; default: the transform's first mode")
    parser.add_argument("--eps", type=float, default=None, help="default: the mode's")
    parser.add_argument("--step-size", type=float, default=None, help="default: the mode's")
    parser.add_argument("--steps", type=int, default=None, help="default: the mode's")
    parser.add_argument("--kwargs", nargs="*", default=[], help="more transform arguments, KEY=VALUE")
    parser.add_argument("--batches", type=int, default=20, help="batches to train on")
    args = parser.parse_args()

    to_tensor = v2.Compose([v2.ToImage(), v2.ToDtype(torch.float32, scale=True)])
    pipeline = v2.Compose([to_tensor, v2.Normalize(MEAN, STD)])
    if args.data_root is None:
        dataset = datasets.FakeData(size=640, image_size=(3, 32, 32), num_classes=10, transform=pipeline)
    else:
        dataset = create_dataset("torch/cifar10", args.data_root, "train", transform=pipeline)
    if args.latents is not None:
        # The cache was built from the un-normalised view; check it there, then serve the training view.
        view = create_dataset("torch/cifar10", args.data_root, "train", transform=to_tensor)
        dataset = LatentDataset(dataset, args.latents, verify=False)
        dataset.latents.check_dataset(view)
    loader = DataLoader(dataset, batch_size=64, shuffle=True, num_workers=2)

    generator = (load_generator(args.generator) if args.generator is not None
                 else torch_semaug.IdentityGenerator((3, 32, 32)))
    model = small_cnn()
    # Every transform has the shape T(generator, *, model=..., mode=..., <budget>, ...); arguments its mode
    # does not use are an error, so only the flags given are passed. bind() attaches the classifier that
    # adversarial modes attack (random modes never call it).
    given = dict(mode=args.mode, eps=args.eps, step_size=args.step_size, steps=args.steps)
    semaug = get_transform_class(args.transform)(
        generator, mean=MEAN, std=STD, **{k: v for k, v in given.items() if v is not None},
        **parse_kwargs(args.kwargs, "kwargs"),
    ).bind(model)
    print(semaug)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    model.train()
    for step, batch in enumerate(loader):
        x, y = batch[0], batch[1]
        latents = batch[2] if args.latents is not None else None
        x, y = semaug(x, y, latents=latents)  # after the loader, on the batch's device, like mixup_fn
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step % 5 == 0:
            print(f"step {step}: loss on semantically perturbed batch {loss.item():.3f}")
        if step + 1 >= args.batches:
            break
    # Random modes can instead run per sample inside the dataset pipeline, e.g.
    #   v2.Compose([to_tensor, get_transform_class("flow_perturb")(glow, mode="random"),  # eps 0.25, l-inf
    #               v2.Normalize(MEAN, STD)])


if __name__ == "__main__":
    main()
