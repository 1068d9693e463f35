"""Dataset names shared by ``semaug train``, ``semaug encode`` and ``semaug eval``.

``torch/cifar10`` and ``torch/mnist`` (timm-style names for torchvision's datasets), ``colormnist`` and
``folder:PATH`` (an ImageFolder with ``train/`` and ``val/`` or ``test/``). Nothing is downloaded.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, Subset
from torchvision import datasets

CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
DATASETS = ("torch/cifar10", "torch/mnist", "colormnist", "folder:PATH")
SPLITS = ("train", "test")
COLOR_MNIST_MODULE = "torch_semaug.data.color_mnist"


def default_data_root() -> str:
    """``$SEMAUG_DATA`` or ``./data``."""
    return os.environ.get("SEMAUG_DATA", "data")


def check_dataset_name(name: str) -> None:
    """Raise ``ValueError`` for a name that :func:`create_dataset` does not know."""
    if name in DATASETS[:3] or (name.startswith("folder:") and len(name) > len("folder:")):
        return
    raise ValueError(f"dataset: expected one of {list(DATASETS)}, got {name!r}")


def _cifar10_jpeg(root: Path, split: str, transform: Callable | None) -> datasets.ImageFolder:
    """The JPEG ImageFolder copy of CIFAR-10, with samples put in the official order when it is known."""
    folder = datasets.ImageFolder(str(root / "cifar10-jpeg" / split), transform=transform)
    if folder.classes != CIFAR10_CLASSES:
        raise ValueError(f"data_root: {root / 'cifar10-jpeg' / split} has classes {folder.classes}, "
                         f"expected CIFAR-10's {CIFAR10_CLASSES}")
    order_file = root / "cifar10-jpeg" / "official_order_labels.npz"
    if order_file.is_file():
        labels = np.load(order_file)[f"{split}_labels"]
        seen = [0] * len(CIFAR10_CLASSES)
        by_path = {os.path.relpath(path, folder.root): (path, target) for path, target in folder.samples}
        ordered = []
        for label in labels.tolist():
            key = os.path.join(CIFAR10_CLASSES[label], f"{seen[label]:04d}.jpg")
            seen[label] += 1
            ordered.append(by_path[key])
        folder.samples = folder.imgs = ordered
        folder.targets = [target for _, target in ordered]
    return folder


def _cifar10(root: Path, train: bool, transform: Callable | None) -> Dataset:
    if (root / "cifar-10-batches-py").is_dir():
        return datasets.CIFAR10(str(root), train=train, transform=transform, download=False)
    split = "train" if train else "test"
    if (root / "cifar10-jpeg" / split).is_dir():
        return _cifar10_jpeg(root, split, transform)
    raise FileNotFoundError(
        f"data_root: no CIFAR-10 under {os.fspath(root)!r}: expected torchvision's cifar-10-batches-py/ or the "
        "JPEG copy cifar10-jpeg/{train,test}/<class>/ (set --data-root or $SEMAUG_DATA)"
    )


def _mnist(root: Path, train: bool, transform: Callable | None) -> Dataset:
    if not (root / "MNIST" / "raw").is_dir():
        raise FileNotFoundError(
            f"data_root: no MNIST under {os.fspath(root)!r}: expected MNIST/raw/ with the idx files "
            "(set --data-root or $SEMAUG_DATA)"
        )
    return datasets.MNIST(str(root), train=train, transform=transform, download=False)


class TransformedDataset(Dataset):
    """Apply ``transform`` to the image of each ``(image, label)`` sample of ``base``."""

    def __init__(self, base: Dataset, transform: Callable | None) -> None:
        self.base, self.transform = base, transform
        self.classes = getattr(base, "classes", None)
        self.targets = getattr(base, "targets", getattr(base, "labels", None))

    def __len__(self) -> int:
        return len(self.base)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> tuple[Any, Any]:
        image, label = self.base[index][:2]
        return (self.transform(image) if self.transform is not None else image), label


def _color_mnist(root: Path, train: bool, transform: Callable | None) -> Dataset:
    """Color-MNIST built from the raw MNIST files (biased colours for train, uniform for test)."""
    try:
        module = importlib.import_module(COLOR_MNIST_MODULE)
    except ModuleNotFoundError as error:
        if error.name != COLOR_MNIST_MODULE:
            raise
        raise ValueError(
            "dataset: 'colormnist' needs torch_semaug.data.color_mnist, which is not part of this install"
        ) from None
    dataset = TransformedDataset(module.ColorMNIST.from_mnist(str(root), train=train), transform)
    dataset.classes = [str(digit) for digit in range(10)]
    return dataset


def _folder(path: Path, train: bool, transform: Callable | None) -> Dataset:
    names = ("train",) if train else ("val", "validation", "test")
    for name in names:
        if (path / name).is_dir():
            return datasets.ImageFolder(str(path / name), transform=transform)
    raise FileNotFoundError(
        f"dataset: folder {os.fspath(path)!r} has no {' or '.join(f'{n}/' for n in names)} subfolder of "
        "class folders"
    )


def create_dataset(name: str, root: str | os.PathLike[str], split: str = "train",
                   transform: Callable | None = None) -> Dataset:
    """The dataset ``name`` (see :data:`DATASETS`) from ``root``, split ``"train"`` or ``"test"``.

    Samples are ``(image, label)``; ``transform`` is applied to the PIL image. CIFAR-10 falls back from
    torchvision's pickled batches to the JPEG ImageFolder copy (kept in the official sample order).
    """
    check_dataset_name(name)
    if split not in SPLITS:
        raise ValueError(f"split: expected one of {list(SPLITS)}, got {split!r}")
    train = split == "train"
    if name.startswith("folder:"):
        return _folder(Path(name[len("folder:"):]), train, transform)
    loaders = {"torch/cifar10": _cifar10, "torch/mnist": _mnist, "colormnist": _color_mnist}
    return loaders[name](Path(root), train, transform)


def dataset_classes(dataset: Dataset) -> list[str]:
    """Class names of ``dataset`` (through ``Subset`` wrappers); numbered names when it has none."""
    while isinstance(dataset, Subset):
        dataset = dataset.dataset
    classes = getattr(dataset, "classes", None)
    if classes:
        return [str(c) for c in classes]
    targets = getattr(dataset, "targets", None)
    if targets is None:
        raise ValueError(f"dataset: cannot tell the classes of {type(dataset).__name__}; pass --num-classes")
    return [str(i) for i in range(int(torch.as_tensor(targets).max()) + 1)]


def check_subset(fraction: float) -> float:
    """Raise ``ValueError`` unless ``0 < fraction <= 1``."""
    if isinstance(fraction, bool) or not isinstance(fraction, int | float) or not 0.0 < fraction <= 1.0:
        raise ValueError(f"train_subset: expected a fraction in (0, 1], got {fraction!r}")
    return float(fraction)


def subset_indices(name: str, length: int, fraction: float, seed: int = 0) -> list[int]:
    """Indices of the deterministic ``fraction`` of a dataset used for low-data runs.

    CIFAR-10 and MNIST are in their official order, so the papers' "first k %" is a prefix. Folder
    datasets are sorted by class, so there a fixed permutation (``seed``) is taken instead.
    """
    count = max(1, round(check_subset(fraction) * length))
    if name.startswith("folder:"):
        perm = torch.randperm(length, generator=torch.Generator().manual_seed(seed))
        return sorted(perm[:count].tolist())
    return list(range(count))


def describe_dataset(dataset: Dataset) -> dict[str, Any]:
    """Length and class count, for logs."""
    return {"samples": len(dataset), "classes": len(dataset_classes(dataset))}  # type: ignore[arg-type]
