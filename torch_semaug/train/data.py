"""Datasets, transforms and loaders of the classifier training entry point."""

from __future__ import annotations

import argparse
from dataclasses import dataclass

import torch
from torch.utils.data import DataLoader, Dataset, Subset
from torchvision.transforms import v2

from torch_semaug.data.datasets import create_dataset, dataset_classes, subset_indices
from torch_semaug.data.latent_cache import LatentCache
from torch_semaug.data.latent_dataset import LatentDataset

# Digits must not be mirrored; every other dataset gets the usual random horizontal flip.
NO_FLIP = ("torch/mnist", "colormnist")


def encoding_transform(img_size: int | None = None) -> v2.Compose:
    """The deterministic view a latent cache is built from and checked against: ``[0, 1]`` float images."""
    steps: list[v2.Transform] = [v2.ToImage(), v2.ToDtype(torch.float32, scale=True)]
    if img_size is not None:
        steps.append(v2.Resize((img_size, img_size), antialias=True))
    return v2.Compose(steps)


def train_transform(args: argparse.Namespace, mean: tuple[float, ...], std: tuple[float, ...],
                    augment: bool) -> v2.Compose:
    """Random crop (+ flip) then normalise; ``augment=False`` keeps images aligned with cached latents."""
    steps = list(encoding_transform(args.img_size).transforms)
    if augment:
        size = args.img_size or None
        if size is not None:
            steps.append(v2.RandomCrop(size, padding=max(1, size // 8), padding_mode="reflect"))
        if args.dataset not in NO_FLIP:
            steps.append(v2.RandomHorizontalFlip())
    steps.append(v2.Normalize(list(mean), list(std)))
    return v2.Compose(steps)


def eval_transform(args: argparse.Namespace, mean: tuple[float, ...], std: tuple[float, ...]) -> v2.Compose:
    return v2.Compose([*encoding_transform(args.img_size).transforms, v2.Normalize(list(mean), list(std))])


@dataclass
class DataSetup:
    """What the training loop needs from the data side."""

    train: Dataset
    val: Dataset
    classes: list[str]
    in_chans: int
    img_size: int
    layout: str  # what a training batch holds: "xy", "xyi" (+ dataset index) or "xyzi" (+ cached latent)


class WithIndex(Dataset):
    """Yield ``(image, label, index)``: per-example transform state (adaptive eps) needs the index."""

    def __init__(self, base: Dataset) -> None:
        self.base = base

    def __len__(self) -> int:
        return len(self.base)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> tuple:
        image, label = self.base[index][:2]
        return image, label, index


def probe(args: argparse.Namespace) -> tuple[list[str], int, int]:
    """Class names, channels and size of the training images (read before the model is built)."""
    dataset = create_dataset(args.dataset, args.data_root, "train", transform=encoding_transform(args.img_size))
    image = dataset[0][0]
    return dataset_classes(dataset), int(image.shape[0]), int(image.shape[-1])


def build_datasets(args: argparse.Namespace, mean: tuple[float, ...], std: tuple[float, ...],
                   cache: LatentCache | None, probed: tuple[list[str], int, int], index: bool = False) -> DataSetup:
    """Train and validation datasets; with a cache the training set yields ``(x, y, latent, index)``,
    with ``index`` (and no cache) ``(x, y, index)``.

    The cache is checked against the deterministic view of the full training split (before the subset
    is taken), so one cache serves every ``--train-subset``.
    """
    classes, in_chans, img_size = probed  # what probe(args) found
    augment = cache is None and not args.no_aug
    train = create_dataset(args.dataset, args.data_root, "train", transform=train_transform(args, mean, std, augment))
    if cache is not None:
        view = create_dataset(args.dataset, args.data_root, "train", transform=encoding_transform(args.img_size))
        cache.check_dataset(view, "semaug_latents")
        train = LatentDataset(train, cache, return_index=True, verify=False)
    elif index:
        train = WithIndex(train)
    if args.train_subset < 1.0:
        train = Subset(train, subset_indices(args.dataset, len(train), args.train_subset, seed=0))
    val = create_dataset(args.dataset, args.data_root, "test", transform=eval_transform(args, mean, std))
    layout = "xyzi" if cache is not None else ("xyi" if index else "xy")
    return DataSetup(train, val, classes, in_chans, img_size, layout)


def build_loaders(args: argparse.Namespace, data: DataSetup, drop_last: bool) -> tuple[DataLoader, DataLoader]:
    generator = torch.Generator().manual_seed(args.seed)
    common = dict(num_workers=args.workers, persistent_workers=args.workers > 0, pin_memory=torch.cuda.is_available())
    train = DataLoader(data.train, batch_size=args.batch_size, shuffle=True, drop_last=drop_last,
                       generator=generator, **common)
    val = DataLoader(data.val, batch_size=args.validation_batch_size or args.batch_size, shuffle=False, **common)
    return train, val
