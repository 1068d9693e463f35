"""One dataset factory: `create_dataset(NAME[:VARIANT][@N], root, split)` and one default data root."""

from __future__ import annotations

import pytest
import torch

from tests.training_fixtures import make_image_folder
from torch_semaug.data.datasets import create_dataset, default_data_root, parse_dataset_name


@pytest.mark.parametrize("name, parsed", [
    ("torch/cifar10", ("torch/cifar10", "", None)),
    ("colormnist", ("colormnist", "", None)),
    ("colormnist:uniform@500", ("colormnist", "uniform", 500)),
    ("demo-shapes:biased", ("demo-shapes", "biased", None)),
    ("folder:/data/my:imgs@7", ("folder", "/data/my:imgs", 7)),
])
def test_names_parse(name, parsed):
    assert parse_dataset_name(name) == parsed


@pytest.mark.parametrize("name, fragment", [
    ("imagenet", "expected one of"), ("colormnist:green", "expected one of"), ("demo-shapes:train", "expected one of"),
    ("folder:", "expected one of"), ("demo-shapes@0", "expected @N"), ("demo-shapes@-2", "expected @N"),
    ("demo-shapes@x", "expected @N"), ("torch/mnist:uniform", "expected one of"),
])
def test_unknown_names_are_refused_naming_the_dataset(name, fragment):
    with pytest.raises(ValueError, match=f"dataset: {fragment}"):
        create_dataset(name, "unused", "train")


def test_split_must_be_train_or_test():
    with pytest.raises(ValueError, match="split: expected one of"):
        create_dataset("demo-shapes", None, "val")


def test_demo_shapes_colourings_and_subsets():
    train, test = create_dataset("demo-shapes", None, "train"), create_dataset("demo-shapes", None, "test")
    assert len(train) == 2000 and len(test) == 1000 and train.classes == test.classes and len(train.classes) == 5
    assert train.base.coloring == "biased" and test.base.coloring == "uniform"  # the paper's protocol
    assert create_dataset("demo-shapes:uniform", None, "train").base.coloring == "uniform"
    first = create_dataset("demo-shapes@30", None, "train")
    assert len(first) == 30 and torch.equal(first[29][0], train[29][0])  # @N: the first N of the split


def test_color_mnist_tiny_variants():
    tiny = create_dataset("colormnist:tiny@10", None, "train")
    image, label = tiny[3]
    assert len(tiny) == 10 and image.shape == (3, 32, 32) and label == 3
    uniform = create_dataset("colormnist:tiny-uniform", None, "test")
    assert len(uniform) == 64 and uniform.base.coloring == "uniform"


def test_folder_subset_is_a_fixed_random_draw_over_classes(tmp_path):
    make_image_folder(tmp_path / "imgs", per_class=6, size=8)
    subset = create_dataset(f"folder:{tmp_path / 'imgs'}@4", None, "test")
    again = create_dataset(f"folder:{tmp_path / 'imgs'}@4", None, "test")
    assert len(subset) == 4 and subset.indices == again.indices  # the same images every run
    assert subset.indices != [0, 1, 2, 3]  # files are sorted by class: a prefix would be one class
    assert len(create_dataset(f"folder:{tmp_path / 'imgs'}@99", None, "train")) == 12  # capped at the split


def test_one_default_data_root(monkeypatch, tmp_path):
    monkeypatch.delenv("SEMAUG_DATA", raising=False)
    assert default_data_root() == "data"
    monkeypatch.setenv("SEMAUG_DATA", str(tmp_path))
    assert default_data_root() == str(tmp_path)
    for name in ("colormnist", "torch/mnist"):  # every name looks there when no root is given
        with pytest.raises(FileNotFoundError, match=str(tmp_path)):
            create_dataset(name, None, "train")
