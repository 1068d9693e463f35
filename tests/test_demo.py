"""The demo's dataset, the train-generator hook for it, and `semaug demo --quick` end to end."""

from __future__ import annotations

import pytest
import torch

from tests.cli_helpers import assert_usage_error
from torch_semaug.cli import main
from torch_semaug.data.datasets import create_dataset
from torch_semaug.data.shapes import SHAPE_COLORS, SHAPES, ColorShapes
from torch_semaug.demo.pipeline import ASSET


def test_biased_colours_follow_the_class_and_uniform_ones_do_not():
    biased = ColorShapes(200, coloring="biased", sigma=0.05, seed=0)
    uniform = ColorShapes(200, coloring="uniform", seed=1)
    error = (biased.colors - SHAPE_COLORS[biased.labels]).abs().mean()
    assert error < 0.06
    assert (uniform.colors - SHAPE_COLORS[uniform.labels]).abs().mean() > 0.2
    images, labels = biased.tensors()
    assert images.shape == (200, 3, 16, 16) and images.min() >= 0 and images.max() <= 1
    assert torch.equal(labels, torch.arange(200) % len(SHAPES))
    # every image holds a visible shape, and the masks of different classes differ
    assert (biased.masks.flatten(1).amax(1) > 0.9).all()
    assert (biased.masks[0] - biased.masks[1]).abs().sum() > 5
    assert torch.equal(ColorShapes(20, seed=3).tensors()[0], ColorShapes(20, seed=3).tensors()[0])
    image, label = biased[7]
    assert torch.equal(image, images[7]) and label == 7 % len(SHAPES)


@pytest.mark.parametrize("kwargs, name", [(dict(n=0), "n"), (dict(coloring="red"), "coloring"),
                                          (dict(size=4), "size"), (dict(sigma=-1.0), "sigma")])
def test_bad_arguments_name_the_argument(kwargs, name):
    with pytest.raises(ValueError, match=name):
        ColorShapes(**kwargs)


def test_demo_shapes_spec():
    assert len(create_dataset("demo-shapes@30", split="train")) == 30
    assert create_dataset("demo-shapes", split="test").base.coloring == "uniform"
    with pytest.raises(ValueError, match="demo-shapes"):
        create_dataset("demo-shapes:valid")


def test_train_generator_reads_demo_shapes():
    from torch_semaug.train.generator_run import load_images

    data = load_images("demo-shapes@12", resolution=16)
    assert len(data) == 12
    image = data[0][0]
    assert image.shape == (3, 16, 16) and image.min() >= 0 and image.max() <= 1 and image.min() < 0.05


def test_the_shipped_generator_is_small_and_loads():
    from torch_semaug.generators.io import read_metadata
    from torch_semaug.generators.stylegan2 import StyleGAN2

    assert ASSET.is_file() and ASSET.stat().st_size < 5 * 2**20
    g = StyleGAN2.load(ASSET)
    assert g.resolution == 16 and "demo-shapes:train" in read_metadata(ASSET).get("command", "")


def test_demo_quick_end_to_end(tmp_path, capsys):
    assert main(["demo", "--quick", "--out", str(tmp_path / "demo"), "--seed", "1"]) == 0
    text = (tmp_path / "demo" / "results.md").read_text()
    for method in ("nominal", "RandMix", "AdvMix"):
        assert f"| {method} |" in text
    from PIL import Image

    with Image.open(tmp_path / "demo" / "samples.png") as image:
        assert image.width > 6 * 16 * 4 and image.height > 10 * 16 * 4  # 6 columns, 10 rows at 4x
    assert "samples.png" in capsys.readouterr().out


def test_demo_missing_generator_is_a_clear_error(tmp_path, capsys):
    assert_usage_error(["demo", "--quick", "--out", tmp_path, "--generator", tmp_path / "none.safetensors"], capsys,
                       "--generator: no StyleGAN2 checkpoint")


def test_generator_training_variant_has_the_same_shapes_in_uniform_colours():
    biased, uniform = (create_dataset(name, split="train").base for name in ("demo-shapes", "demo-shapes:uniform"))
    assert torch.equal(biased.masks, uniform.masks) and uniform.coloring == "uniform"
    assert not torch.allclose(biased.colors, uniform.colors)


def test_demo_leaves_the_thread_setting_as_it_found_it(tmp_path):
    before = torch.get_num_threads()
    main(["demo", "--quick", "--out", str(tmp_path), "--threads", "1"])
    assert torch.get_num_threads() == before
