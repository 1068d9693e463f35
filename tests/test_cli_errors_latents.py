"""`semaug encode` and `semaug directions`: every bad invocation is one `error:` line naming the flag, exit 2."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.cli_helpers import assert_usage_error
from tests.conftest import make_tiny_stylegan2
from tests.training_fixtures import make_image_folder
from torch_semaug import IdentityGenerator
from torch_semaug.data import LatentCache
from torch_semaug.directions import Directions
from torch_semaug.generators import save_generator


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("cli_errors")
    save_generator(make_tiny_stylegan2(), root / "g.safetensors")
    save_generator(IdentityGenerator((3, 16, 16)), root / "id.safetensors")
    data = (root / "g.safetensors").read_bytes()
    (root / "truncated.safetensors").write_bytes(data[: len(data) // 3])
    (root / "text.safetensors").write_text("not a checkpoint")
    (root / "a_file").write_text("x")
    make_image_folder(root / "imgs", per_class=2, size=16)
    (root / "empty").mkdir()
    other = make_image_folder(root / "other", per_class=3, size=16)
    from torch_semaug.data.datasets import create_dataset
    from torch_semaug.train.data import encoding_transform

    LatentCache.build(create_dataset(f"folder:{other}", split="train", transform=encoding_transform()),
                      IdentityGenerator((3, 16, 16)), root / "taken", progress=False)
    return {p.name: p for p in root.iterdir()}


def _encode(files, *extra, generator="id.safetensors", data=None, out=None):
    argv = ["encode", "--generator", str(files[generator]) if generator in files else generator,
            "--data", data or f"folder:{files['imgs']}", "--out", out or str(files["empty"].parent / "out"),
            "-j", "0", "--device", "cpu", *extra]
    return argv


ENCODE_CASES = [  # (id, argv builder, fragments of the one error line)
    ("generator-missing", lambda f: ["encode", "--data", "demo-shapes", "--out", "x"], ["--generator"]),
    ("generator-no-file", lambda f: _encode(f, generator="/nonexistent/g.safetensors"),
     ["--generator", "expected an existing file"]),
    ("generator-directory", lambda f: _encode(f, generator=str(f["empty"])), ["--generator", "a directory there"]),
    ("generator-truncated", lambda f: _encode(f, generator="truncated.safetensors"),
     ["--generator: expected a readable generator checkpoint"]),
    ("generator-not-safetensors", lambda f: _encode(f, generator="text.safetensors"),
     ["--generator: expected a readable generator checkpoint"]),
    ("generator-kind-unknown", lambda f: _encode(f, "--generator-kind", "bogus"),
     ["--generator-kind: expected one of", "'bogus'"]),
    ("generator-kind-wrong", lambda f: _encode(f, "--generator-kind", "stylegan2"),
     ["--generator-kind: expected a 'stylegan2' checkpoint, got a 'identity' one"]),
    ("data-unknown", lambda f: _encode(f, data="imagenet"), ["--data: expected one of", "'imagenet'"]),
    ("data-bad-variant", lambda f: _encode(f, data="colormnist:green"), ["--data: expected one of"]),
    ("data-bad-count", lambda f: _encode(f, data="demo-shapes@0"), ["--data: expected @N", "positive integer"]),
    ("data-no-folder", lambda f: _encode(f, data="folder:/nonexistent/imgs"), ["--data: folder", "train/"]),
    ("data-root-empty", lambda f: _encode(f, "--data-root", str(f["empty"]), data="torch/cifar10"),
     ["--data-root: no CIFAR-10"]),
    ("batch-size-zero", lambda f: _encode(f, "-b", "0"), ["--batch-size", "expected a positive integer, got '0'"]),
    ("batch-size-text", lambda f: _encode(f, "-b", "many"), ["--batch-size", "got 'many'"]),
    ("workers-negative", lambda f: _encode(f, "-j", "-1"), ["--workers", "expected an integer >= 0"]),
    ("img-size-negative", lambda f: _encode(f, "--img-size", "-5"), ["--img-size", "got '-5'"]),
    ("img-size-zero", lambda f: _encode(f, "--img-size", "0"), ["--img-size", "positive integer"]),
    ("encoder-learned-negative", lambda f: _encode(f, "--encoder", "learned:-3", generator="g.safetensors"),
     ["--encoder", "got 'learned:-3'"]),
    ("encoder-learned-no-steps", lambda f: _encode(f, "--encoder", "learned", generator="g.safetensors"),
     ["--encoder", "learned:STEPS"]),
    ("encoder-optimize-text", lambda f: _encode(f, "--encoder", "optimize:abc", generator="g.safetensors"),
     ["--encoder", "got 'optimize:abc'"]),
    ("encoder-optimize-zero", lambda f: _encode(f, "--encoder", "optimize:0", generator="g.safetensors"),
     ["--encoder", "got 'optimize:0'"]),
    ("encoder-no-file", lambda f: _encode(f, "--encoder", "/nonexistent/e.safetensors:5", generator="g.safetensors"),
     ["--encoder", "no file '/nonexistent/e.safetensors'"]),
    ("encoder-not-an-encoder", lambda f: _encode(f, "--encoder", str(f["g.safetensors"]), generator="g.safetensors"),
     ["--encoder: cannot use", "not a torch_semaug encoder"]),
    ("encoder-with-identity", lambda f: _encode(f, "--encoder", "optimize:5"),
     ["--encoder: expected no --encoder for a IdentityGenerator"]),
    ("out-is-a-file", lambda f: _encode(f, out=str(f["a_file"])), ["--out: expected a directory", "the file"]),
    ("out-holds-other-data", lambda f: _encode(f, out=str(f["taken"])), ["--out:", "already holds a latent cache"]),
    ("psnr-samples-negative", lambda f: _encode(f, "--psnr-samples", "-1"), ["--psnr-samples", "got '-1'"]),
    ("limit-zero", lambda f: _encode(f, "--limit", "0"), ["--limit", "positive integer"]),
    ("split-unknown", lambda f: _encode(f, "--split", "val"), ["--split", "invalid choice"]),
    ("device-unknown", lambda f: _encode(f, "--device", "gpu7"), ["--device", "got 'gpu7'"]),
]


def _directions(files, *extra, generator="g.safetensors", out=None):
    return ["directions", "--generator", str(files[generator]) if generator in files else generator,
            "--out", out or str(files["empty"].parent / "dirs"), "--num-samples", "64", *extra]


DIRECTIONS_CASES = [
    ("n-components-zero", lambda f: _directions(f, "--n-components", "0"), ["--n-components", "positive integer"]),
    ("num-samples-too-few", lambda f: _directions(f, "--num-samples", "3"), ["--num-samples", "12", "got 3"]),
    ("layers-reversed", lambda f: _directions(f, "--layers", "5", "2"),
     ["--layers: expected (start, end)", "0 <= start < end <= num_ws = 6", "(5, 2)"]),
    ("layers-past-the-end", lambda f: _directions(f, "--layers", "0", "99"), ["--layers", "num_ws = 6", "(0, 99)"]),
    ("layers-empty", lambda f: _directions(f, "--layers", "3", "3"), ["--layers", "(3, 3)"]),
    ("upscale-zero", lambda f: _directions(f, "--upscale", "0"), ["--upscale", "positive integer"]),
    ("generator-no-file", lambda f: _directions(f, generator="/nonexistent.safetensors"), ["--generator"]),
    ("generator-truncated", lambda f: _directions(f, generator="truncated.safetensors"),
     ["--generator: expected a readable generator checkpoint"]),
    ("generator-without-w", lambda f: _directions(f, generator="id.safetensors"), ["--generator"]),
    ("method-unknown", lambda f: _directions(f, "--method", "tsne"), ["--method", "invalid choice"]),
    ("activations-without-layer", lambda f: _directions(f, "--space", "activations"), ["--layer"]),
    ("batch-size-zero", lambda f: _directions(f, "--batch-size", "0"), ["--batch-size", "positive integer"]),
    ("strengths-nan", lambda f: _directions(f, "--strengths", "nan", "1"), ["--strengths: expected finite numbers"]),
    ("out-is-a-file", lambda f: _directions(f, out=str(f["a_file"])), ["--out: expected a directory"]),
]


@pytest.mark.parametrize("build, fragments", [c[1:] for c in ENCODE_CASES], ids=[c[0] for c in ENCODE_CASES])
def test_encode_bad_input(files, capsys, build, fragments):
    assert_usage_error(build(files), capsys, *fragments)


@pytest.mark.parametrize("build, fragments", [c[1:] for c in DIRECTIONS_CASES], ids=[c[0] for c in DIRECTIONS_CASES])
def test_directions_bad_input(files, capsys, build, fragments):
    assert_usage_error(build(files), capsys, *fragments)
    assert not (files["empty"].parent / "dirs" / "pca_w.safetensors").exists()  # refused before any output


@pytest.mark.parametrize("layers", [(5, 2), (0, 99), (-1, 3), (2, 2), (1.0, 3)])
def test_directions_edit_refuses_layer_ranges_that_edit_nothing_or_everything(layers):
    directions = Directions(torch.eye(4)[:2], torch.zeros(4), torch.ones(2), "pca")
    with pytest.raises(ValueError, match=r"layers: expected \(start, end\).*num_ws = 6"):
        directions.edit(torch.zeros(3, 6, 4), torch.ones(3, 2), layers=layers)
    with pytest.raises(ValueError, match="W codes"):
        directions.edit(torch.zeros(3, 4), torch.ones(3, 2), layers=(0, 1))
    edited = directions.edit(torch.zeros(3, 6, 4), torch.ones(3, 2), layers=(1, 3))
    assert edited[:, 1:3].abs().sum() > 0 and edited[:, [0, 3, 4, 5]].abs().sum() == 0
