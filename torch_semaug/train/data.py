"""Datasets, transforms and loaders of the classifier training entry point."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.utils.data import DataLoader, Dataset, Subset
from torchvision.transforms import v2

from torch_semaug.data.datasets import create_dataset, dataset_classes, parse_dataset_name, subset_indices
from torch_semaug.data.latent_cache import LatentCache
from torch_semaug.data.latent_dataset import LatentDataset
from torch_semaug.train.args import TrainConfig

# Digits must not be mirrored (whatever the variant or @N subset); every other dataset gets the usual random
# horizontal flip.
NO_FLIP = ("torch/mnist", "colormnist")


def encoding_transform(img_size: int | None = None) -> v2.Compose:
    """The deterministic view a latent cache is built from and checked against: ``[0, 1]`` float images."""
    steps: list[v2.Transform] = [v2.ToImage(), v2.ToDtype(torch.float32, scale=True)]
    if img_size is not None:
        steps.append(v2.Resize((img_size, img_size), antialias=True))
    return v2.Compose(steps)


def auto_augment(policy: str, img_size: int, mean: tuple[float, ...]) -> v2.Transform:
    """timm's ``--aa`` policy (``rand-m9-mstd0.5``, ``augmix-m5-w4-d2``, ``v0``, ...) as timm builds it, on PIL
    images, converted back to ``[0, 1]`` floats."""
    from timm.data import create_transform

    mean3 = (tuple(mean) * 3)[:3]
    try:
        policy_steps = create_transform(img_size, is_training=True, auto_augment=policy, color_jitter=None,
                                        mean=mean3, separate=True)[1]
    except (AssertionError, KeyError, ValueError, IndexError) as error:
        raise ValueError(f"aa: timm cannot build the auto-augment policy {policy!r} ({error or 'unknown policy'}); "
                         "expected e.g. rand-m9-mstd0.5-inc1, augmix-m5-w4-d2, v0 or original") from None
    return v2.Compose([v2.ToPILImage(), *policy_steps.transforms, v2.ToImage(), v2.ToDtype(torch.float32, scale=True)])


def train_transform(config: TrainConfig, dataset: str, mean: tuple[float, ...], std: tuple[float, ...],
                    img_size: int, augment: bool) -> v2.Compose:
    """Random crop (+ flip), timm's auto-augment, normalise; ``augment=False`` keeps images aligned with
    cached latents. (timm's random erasing runs on the batch, after the semantic transform.)"""
    steps = list(encoding_transform(config.img_size).transforms)
    if augment:
        steps.append(v2.RandomCrop(img_size, padding=max(1, img_size // 8), padding_mode="reflect"))
        if parse_dataset_name(dataset)[0] not in NO_FLIP:
            steps.append(v2.RandomHorizontalFlip())
        if config.aa:
            steps.append(auto_augment(config.aa, img_size, mean))
    steps.append(v2.Normalize(list(mean), list(std)))
    return v2.Compose(steps)


def eval_transform(img_size: int | None, mean: tuple[float, ...], std: tuple[float, ...]) -> v2.Compose:
    return v2.Compose([*encoding_transform(img_size).transforms, v2.Normalize(list(mean), list(std))])


@dataclass
class DataSetup:
    """What the training loop needs from the data side."""

    train: Dataset
    val: Dataset
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


def open_split(dataset: str, root: str, split: str, argument: str, transform: v2.Transform) -> Dataset:
    """``create_dataset`` with a bad split name reported as the flag that gave it."""
    try:
        return create_dataset(dataset, root, split, transform=transform)
    except ValueError as error:
        if str(error).startswith("split:"):
            raise ValueError(f"{argument}:{str(error)[len('split:'):]}") from None
        raise


def probe(dataset: str, root: str, split: str, img_size: int | None) -> tuple[list[str], int, int]:
    """Class names, channels and size of the training images (read before the model is built)."""
    data = open_split(dataset, root, split, "train_split", encoding_transform(img_size))
    if len(data) == 0:  # type: ignore[arg-type]
        raise ValueError(f"dataset: the {split!r} split of {dataset!r} under {root!r} holds no images")
    image = data[0][0]
    return dataset_classes(data), int(image.shape[0]), int(image.shape[-1])


def build_datasets(config: TrainConfig, dataset: str, root: str, mean: tuple[float, ...], std: tuple[float, ...],
                   img_size: int, cache: LatentCache | None, index: bool = False) -> DataSetup:
    """Train and validation datasets; with a cache the training set yields ``(x, y, latent, index)``,
    with ``index`` (and no cache) ``(x, y, index)``.

    The cache is checked against the deterministic view of the full training split (before the subset
    is taken), so one cache serves every ``train_subset``.
    """
    if cache is not None and config.aa:
        raise ValueError("aa: auto-augment changes the images, but cached latents (--semaug-latents) describe the "
                         "un-augmented ones; drop --aa or the cache")
    augment = cache is None and not config.no_aug
    train = open_split(dataset, root, config.train_split, "train_split",
                       train_transform(config, dataset, mean, std, img_size, augment))
    if cache is not None:
        view = open_split(dataset, root, config.train_split, "train_split", encoding_transform(config.img_size))
        cache.check_dataset(view, "semaug_latents")
        train = LatentDataset(train, cache, return_index=True, verify=False)
    elif index:
        train = WithIndex(train)
    if config.train_subset < 1.0:
        train = Subset(train, subset_indices(dataset, len(train), config.train_subset, seed=0))
    val = open_split(dataset, root, config.val_split, "val_split", eval_transform(config.img_size, mean, std))
    layout = "xyzi" if cache is not None else ("xyi" if index else "xy")
    return DataSetup(train, val, layout)


def build_loaders(config: TrainConfig, data: DataSetup, drop_last: bool) -> tuple[DataLoader, DataLoader,
                                                                                 torch.Generator]:
    """The two loaders and the generator that shuffles the training set (reseeded every epoch)."""
    shuffle = torch.Generator().manual_seed(config.seed)
    common = dict(num_workers=config.workers, pin_memory=torch.cuda.is_available())
    # Training workers start afresh every epoch, seeded from the shuffle generator: a resumed epoch repeats.
    train = DataLoader(data.train, batch_size=config.batch_size, shuffle=True, drop_last=drop_last,
                       generator=shuffle, persistent_workers=False, **common)
    val = DataLoader(data.val, batch_size=config.validation_batch_size or config.batch_size, shuffle=False,
                     persistent_workers=config.workers > 0, **common)
    return train, val, shuffle
