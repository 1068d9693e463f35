"""One factory for every dataset name used by ``semaug train``, ``semaug encode`` and ``semaug eval``.

Syntax (:data:`DATASETS`): ``NAME[:VARIANT][@N]``, the split (train or test) chosen separately:

* ``torch/cifar10``, ``torch/mnist``: torchvision's files under the data root (nothing is downloaded);
* ``colormnist[:VARIANT]``: Color-MNIST built from the raw MNIST files under the data root. By default
  the paper's protocol (train: class-biased colours, test: uniform colours); ``:biased`` or ``:uniform``
  forces one colouring for both splits; ``:tiny`` / ``:tiny-uniform``: 64 synthetic digits (no files);
* ``demo-shapes[:VARIANT]``: the demo's coloured shapes, drawn in code (train 2,000, test 1,000 images),
  coloured like Color-MNIST; ``:biased`` / ``:uniform`` as above;
* ``folder:PATH``: an ImageFolder with ``PATH/train`` and ``PATH/test`` (or ``val``/``validation``);
* ``@N`` keeps N samples of the split: the first N (their order is already mixed), a fixed random N for
  folders (whose files are sorted by class). Encode and train with the same name: the cache matches.

The data root is ``$SEMAUG_DATA`` if set, else ``./data`` (:func:`default_data_root`).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, Subset
from torchvision import datasets

CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
#: The dataset names, for help texts and errors.
DATASETS = ("torch/cifar10", "torch/mnist", "colormnist[:biased|uniform|tiny|tiny-uniform]",
            "demo-shapes[:biased|uniform]", "folder:PATH", "any of these + @N (N samples)")
VARIANTS = {"torch/cifar10": ("",), "torch/mnist": ("",),
            "colormnist": ("", "biased", "uniform", "tiny", "tiny-uniform"), "demo-shapes": ("", "biased", "uniform")}
SPLITS = ("train", "test")


def default_data_root() -> str:
    """``$SEMAUG_DATA`` if set, else ``./data``: where every dataset name looks for its files."""
    return os.environ.get("SEMAUG_DATA", "data")


def parse_dataset_name(name: str) -> tuple[str, str, int | None]:
    """``NAME[:VARIANT][@N]`` -> ``(NAME, VARIANT, N)`` (``folder:PATH`` -> ``("folder", PATH, N)``).

    Raises:
        ValueError: naming ``dataset`` for anything else.
    """
    if not isinstance(name, str):
        raise ValueError(f"dataset: expected one of {', '.join(DATASETS)}, got {name!r}")
    base, at, count_text = name.rpartition("@") if "@" in name else (name, "", "")
    count = None
    if at:
        if not (count_text.isdigit() and int(count_text) > 0):
            raise ValueError(f"dataset: expected @N with N a positive integer, got {name!r}")
        count = int(count_text)
    kind, _, variant = base.partition(":")
    if kind == "folder" and variant:
        return kind, variant, count
    if kind not in VARIANTS or variant not in VARIANTS[kind]:
        raise ValueError(f"dataset: expected one of {', '.join(DATASETS)}, got {name!r}")
    return kind, variant, count


def check_dataset_name(name: str) -> None:
    """Raise ``ValueError`` for a name that :func:`create_dataset` does not know."""
    parse_dataset_name(name)


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


def _color_mnist(root: Path, train: bool, variant: str) -> Dataset:
    """Color-MNIST (biased train / uniform test by default), or 64 synthetic digits for ``tiny``."""
    from torch_semaug.data.color_mnist import ColorMNIST

    coloring = {"": None, "biased": "biased", "uniform": "uniform"}.get(variant.removeprefix("tiny").strip("-"))
    if variant.startswith("tiny"):
        coloring = coloring or ("biased" if train else "uniform")
        return ColorMNIST.synthetic(64, coloring=coloring, seed=0 if train else 1)
    extra = {} if coloring is None else {"coloring": coloring}
    return ColorMNIST.from_mnist(str(root), train=train, **extra)


def _demo_shapes(train: bool, variant: str) -> Dataset:
    from torch_semaug.data.shapes import ColorShapes

    coloring = variant or ("biased" if train else "uniform")
    return ColorShapes(2000 if train else 1000, coloring=coloring, seed=0 if train else 1)


def _folder(path: Path, train: bool, transform: Callable | None) -> Dataset:
    names = ("train",) if train else ("val", "validation", "test")
    for name in names:
        if (path / name).is_dir():
            return datasets.ImageFolder(str(path / name), transform=transform)
    raise FileNotFoundError(
        f"dataset: folder {os.fspath(path)!r} has no {' or '.join(f'{n}/' for n in names)} subfolder of "
        "class folders"
    )


def create_dataset(name: str, root: str | os.PathLike[str] | None = None, split: str = "train",
                   transform: Callable | None = None) -> Dataset:
    """The dataset ``name`` (syntax: the module docstring) from ``root``, split ``"train"`` or ``"test"``.

    Samples are ``(image, label)``; ``transform`` is applied to each image (a PIL image for torchvision and
    folder datasets, a ``[0, 1]`` float tensor for Color-MNIST and the demo shapes). CIFAR-10 falls back
    from torchvision's pickled batches to the JPEG ImageFolder copy (kept in the official sample order).

    Args:
        name: ``NAME[:VARIANT][@N]``.
        root: the data root (``None``: :func:`default_data_root`).
        split: ``"train"`` or ``"test"``.
        transform: applied to every image.
    """
    kind, variant, count = parse_dataset_name(name)
    if split not in SPLITS:
        raise ValueError(f"split: expected one of {list(SPLITS)}, got {split!r}")
    train = split == "train"
    root = Path(default_data_root() if root is None else root)
    if kind == "folder":
        dataset = _folder(Path(variant), train, transform)
    elif kind in ("colormnist", "demo-shapes"):
        base = _color_mnist(root, train, variant) if kind == "colormnist" else _demo_shapes(train, variant)
        dataset = TransformedDataset(base, transform)
        dataset.classes = [str(k) for k in range(10)] if kind == "colormnist" else _shape_names()
    else:
        dataset = {"torch/cifar10": _cifar10, "torch/mnist": _mnist}[kind](root, train, transform)
    if count is not None:
        dataset = Subset(dataset, pick(name, len(dataset), count))
    return dataset


def _shape_names() -> list[str]:
    from torch_semaug.data.shapes import SHAPES

    return list(SHAPES)


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
    """Indices of the deterministic ``fraction`` of a dataset used for low-data runs (see :func:`pick`)."""
    return pick(name, length, max(1, round(check_subset(fraction) * length)), seed)


def pick(name: str, length: int, count: int, seed: int = 0) -> list[int]:
    """Indices of ``count`` samples of the dataset ``name`` (of ``length`` samples), the same every run.

    CIFAR-10, MNIST, Color-MNIST and the shapes are in a mixed order, so the papers' "first k %" is a
    prefix. Folder datasets are sorted by class, so there a fixed permutation (``seed``) is taken instead.
    """
    count = min(count, length)
    if name.startswith("folder:"):
        perm = torch.randperm(length, generator=torch.Generator().manual_seed(seed))
        return sorted(perm[:count].tolist())
    return list(range(count))
