"""Smoke scale of the paper benchmarks, end to end on tiny synthetic data and tiny untrained generators."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

import torch_semaug as ts
from tests.conftest import make_tiny_stylegan2

ONE_THREAD = ["--threads", "1"]  # tiny ops: on a busy 2-core machine two threads stall each other


@pytest.fixture(autouse=True)
def _restore_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def stylegan32(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("g") / "g.safetensors"
    make_tiny_stylegan2(32).save(path)
    return str(path)


def test_color_mnist_smoke(tmp_path, stylegan32):
    from benchmarks import color_mnist

    color_mnist.main(["--scale", "smoke", "--generator", stylegan32, "--table2", f"red99={stylegan32}",
                      "--only", "fig7,table2", "--natra", "1.0,0.25,2.0", "--out", str(tmp_path), *ONE_THREAD])
    text = (tmp_path / "color_mnist_fig7_table2_smoke.md").read_text()
    for method in color_mnist.FIG7_METHODS:
        assert f"| {method} |" in text
    assert "| red99 |" in text and "83.18" in text  # the paper's numbers stand beside ours
    assert "(n=3)" in text and "| red99 | advmix > randmix |" in text  # 3 seeds, the ordering checked
    assert "| red99 | advmix-rel > randmix |" in text  # AdvMix with eps relative to the W spread too
    assert "flips the" in text and "dominant colour" in text and "eps 0.2 x spread" in text
    assert "samples not red" in text
    assert "'start': 1.0, 'rho': 0.25, 'eps_max': 2.0" in text  # NaTra's adaptive eps as given
    assert (tmp_path / "color_mnist_fig7_smoke.png").stat().st_size > 1000
    with pytest.raises(ValueError, match="only: expected a comma-separated subset of fig7,table1,table2"):
        color_mnist.main(["--only", "fig8", "--out", str(tmp_path)])
    with pytest.raises(ValueError, match="methods: expected a comma-separated subset of nominal,.*got 'advmx'"):
        color_mnist.main(["--methods", "advmx", "--out", str(tmp_path)])


def test_color_mnist_table1_smoke(tmp_path, stylegan32):
    from benchmarks import color_mnist

    color_mnist.main(["--scale", "smoke", "--only", "table1", "--table1", f"class-biased={stylegan32}",
                      "--out", str(tmp_path), *ONE_THREAD])
    text = (tmp_path / "color_mnist_table1_smoke.md").read_text()
    assert "## Table 1" in text and "| class-biased | " in text and "(n=3)" in text
    assert "| class-biased | advmix > randmix |" in text  # the ordering checked over the seeds


@pytest.mark.parametrize("flag, bad, message", [
    ("--natra", "1.0,0.25", "natra: expected 3 floats START,RHO,EPS_MAX, got '1.0,0.25'"),
    ("--natra", "1.0,0.25,2.0,3.0", "natra: expected 3 floats START,RHO,EPS_MAX"),
    ("--natra", "1.0,x,2.0", "natra: expected 3 floats START,RHO,EPS_MAX"),
    ("--adv", "5", "adv: expected 2 ints RESTARTS,STEPS, got '5'"),
    ("--adv", "5,7.5", "adv: expected 2 ints RESTARTS,STEPS"),
    ("--sigmas", "0.05,x", "sigmas: expected comma-separated floats, got '0.05,x'"),
    ("--seeds", "0;1", "seeds: expected comma-separated ints, got '0;1'"),
])
def test_color_mnist_bad_numbers_name_the_flag(tmp_path, flag, bad, message):
    from benchmarks import color_mnist

    with pytest.raises(ValueError, match=message):
        color_mnist.main([flag, bad, "--out", str(tmp_path)])


def test_color_mnist_methods_pick_table2_rows(tmp_path, stylegan32, monkeypatch):
    """``--methods`` selects Table 2's rows too, so its columns can run as separate jobs."""
    from benchmarks import color_mnist

    ran = []
    monkeypatch.setattr(color_mnist, "train", lambda model, method, *a, **k: ran.append(method))
    monkeypatch.setattr(color_mnist, "accuracy", lambda model, images, labels: 50.0)
    color_mnist.main(["--scale", "smoke", "--table2", f"red999={stylegan32}", "--only", "table2", "--methods",
                      "advmix-rel", "--seeds", "0,1", "--out", str(tmp_path), *ONE_THREAD])
    assert ran == ["advmix", "advmix"]  # advmix-rel is AdvMix with relative eps; no nominal, no RandMix
    text = (tmp_path / "color_mnist_table2_smoke.md").read_text()
    assert "| red999 | – | – | – | 50.00 ± 0.00 (n=2) | 53.56 | 85.00 |" in text
    assert "nominal (no generator)" not in text


def test_color_mnist_stopped_run_keeps_finished_seeds(tmp_path, stylegan32, monkeypatch):
    """Results are written after every (method, seed): a run killed in its fourth one keeps three."""
    from benchmarks import color_mnist

    calls = []

    def accuracy(model, images, labels):
        calls.append(1)
        if len(calls) == 4:
            raise KeyboardInterrupt
        return 50.0

    monkeypatch.setattr(color_mnist, "accuracy", accuracy)
    with pytest.raises(KeyboardInterrupt):
        color_mnist.main(["--scale", "smoke", "--generator", stylegan32, "--only", "fig7", "--out", str(tmp_path),
                          *ONE_THREAD])
    text = (tmp_path / "color_mnist_fig7_smoke.md").read_text()
    assert "| nominal | 50.00 ± 0.00 (n=3) |" in text and "| mixup" not in text


def test_colour_shares_count_the_dominant_stroke_colour():
    """The share of samples per dominant colour: a generator drawing green strokes on black is all green."""
    from benchmarks.latent_spread import colour_shares

    class Green:
        def sample_latent(self, n, rng):
            return torch.rand(n, 4, generator=rng)

        def decode(self, latents):
            images = -torch.ones(len(latents), 3, 8, 8)  # black in [-1, 1]
            images[:, 1, 2:6, 3:5] = 1.0  # a green stroke
            images[:, 0, 2:6, 3:5] = 0.2  # with a little red in it
            return images

    assert colour_shares(Green(), 10, batch=4).tolist() == [0.0, 1.0, 0.0]


class Layered:
    """A toy W+ generator: layer 1 picks the stroke's column (the 'digit'), layer 2 its colour (red/green)."""

    num_ws = 4

    def sample_latent(self, n, rng):
        return torch.randn(n, self.num_ws, 2, generator=rng)

    def mix(self, base, donor, split):
        return torch.cat([base[:, :split], donor[:, split:]], 1)

    def decode(self, latents):
        images = -torch.ones(len(latents), 3, 8, 8)
        column = torch.where(latents[:, 1, 0] > 0, 5, 2)
        colour = (latents[:, 2, 0] > 0).long()
        for i in range(len(latents)):
            images[i, colour[i], 1:7, column[i]] = 1.0
        return images


def test_mixing_transfer_finds_the_layers_of_colour_and_digit():
    """Splits 1 and 2 hand the donor's colour (layer 2) over, split 3 does not; the digit (layer 1) is the
    donor's at split 1 and the base's from split 2 on."""
    from benchmarks.latent_spread import mixing_transfer

    def judge(images):
        strokes = images.amax(1)
        return torch.stack([strokes[:, :, 2].sum(1), strokes[:, :, 5].sum(1)], 1)

    rows = mixing_transfer(Layered(), judge=judge, samples=64)
    assert [(s, c, d) for s, c, d in rows] == [(1, 1.0, 0.0), (2, 1.0, 1.0), (3, 0.0, 1.0)]
    assert all(math.isnan(d) for _, _, d in mixing_transfer(Layered(), samples=16))


def test_latent_spread_splits_writes_a_table_and_a_labelled_grid(tmp_path, stylegan32):
    from benchmarks import latent_spread

    latent_spread.main(["--splits", "--generator", stylegan32, "--samples", "8", "--out", str(tmp_path)])
    text = (tmp_path / "stylegan2_layers.md").read_text()
    assert "= fine layers" in text and "| 0-0 | 1-7 (8 px) |" in text and "digit judge: none" in text
    assert (tmp_path / "stylegan2_layers_g.png").stat().st_size > 0


def test_rgb_colours():
    from benchmarks.color_mnist import RGB, rgb_colors
    from torch_semaug.data.color_mnist import ColorMNIST

    red = rgb_colors(ColorMNIST.synthetic(60), 1.0, seed=0)
    assert torch.equal(red.colors, RGB[0].expand(60, 3))
    mixed = rgb_colors(ColorMNIST.synthetic(300), None, seed=0)
    counts = (mixed.colors.argmax(1)[:, None] == torch.arange(3)).sum(0)
    assert (counts > 60).all() and ((mixed.colors == 0) | (mixed.colors == 1)).all()


def test_cifar_lowdata_smoke(tmp_path):
    from benchmarks import cifar_lowdata

    flow = tmp_path / "glow.safetensors"
    ts.Glow((3, 32, 32), levels=2, steps=1, width=8).save(flow)
    argv = ["--scale", "smoke", "--flow", str(flow), "--out", str(tmp_path), "--seeds", "0,1", *ONE_THREAD]
    cifar_lowdata.main([*argv, "--methods", "standard,flips_crops,rla,ala"])
    text = (tmp_path / "cifar_lowdata_smoke.md").read_text()
    assert "| ala | 1.00 |" in text and "(n=2)" in text and "80.4" in text and "| R-LA | A-LA |" in text
    assert "| rla |" in text and "| 4.18 | 0.41 |" in text  # Table 5: our sizes beside the paper's
    assert "| ala > rla |" in text and "| flips_crops > standard |" in text  # the orderings, with a verdict
    records = json.loads((tmp_path / "cifar_lowdata_smoke.json").read_text())
    assert sorted((r["method"], r["seed"]) for r in records) == sorted(
        (m, s) for m in ("standard", "flips_crops", "rla", "ala") for s in (0, 1))
    assert {r["images"] for r in records} == {3}  # 5 % of the 64 synthetic training images
    # --resume keeps what is done and adds only the new rows
    cifar_lowdata.main([*argv, "--methods", "standard,ala+pred", "--resume"])
    records = json.loads((tmp_path / "cifar_lowdata_smoke.json").read_text())
    assert len(records) == 10 and {r["method"] for r in records[8:]} == {"ala+pred"}
    # --epochs overrides the scale's training length: 3 epochs of the 3 images at batch 8 are 2 steps, not 1
    out = tmp_path / "epochs3"
    cifar_lowdata.main([*argv[:4], "--out", str(out), "--seeds", "0", "--methods", "standard", "--epochs", "3",
                        *ONE_THREAD])
    assert json.loads((out / "cifar_lowdata_smoke.json").read_text())[0]["steps"] == 2
    assert "3 epochs" in (out / "cifar_lowdata_smoke.md").read_text()


def _counting(monkeypatch) -> list[int]:
    """Count the flips/crops transforms built and applied (the double-wrapping bug built two per row)."""
    from torch_semaug.train import quick

    calls = [0]
    original = quick.flips_crops

    def counted(size: int, padding: int = 4):
        flips = original(size, padding)

        def apply(x, y, z):
            calls[0] += 1
            return flips(x, y, z)
        return apply

    monkeypatch.setattr(quick, "flips_crops", counted)
    return calls


@pytest.mark.parametrize("name", ["standard", "flips_crops", "cutout", "mixup:1.0", "pixel_at", "rla", "rla+l2",
                                  "ala", "ala+bn", "ala+pred"])
def test_cifar_flips_crops_applied_once(name, monkeypatch):
    from benchmarks import cifar_lowdata

    calls = _counting(monkeypatch)
    flow = ts.Glow((3, 32, 32), levels=2, steps=1, width=8)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 32 * 32, 10))
    method = cifar_lowdata.build_method(name, model, seed=0, flow=flow, p=1.0)
    x, y = method(torch.rand(4, 3, 32, 32), torch.arange(4), None)
    assert x.shape == (4, 3, 32, 32)
    assert calls[0] == (0 if name == "standard" else 1)


@pytest.mark.parametrize("name", ["flips_crops", "cutout", "pixel_at"])
def test_cifar_shift_at_most_the_crop_padding(name):
    """A marked pixel moves vertically by at most 4 px (RandomCrop(pad=4); flips are horizontal)."""
    from benchmarks import cifar_lowdata

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 32 * 32, 10))
    method = cifar_lowdata.build_method(name, model, seed=0, flow=None, p=1.0)
    marked = torch.zeros(256, 3, 32, 32)
    marked[:, :, 16, 16] = 1.0
    out, _ = method(marked, torch.zeros(256, dtype=torch.long), None)
    rows = out.amax(dim=(1, 3)).argmax(dim=1)  # the row holding the mark
    seen = out.amax(dim=(1, 2, 3)) > 0.5       # cutout may erase it
    shifts = (rows[seen] - 16).abs()
    assert shifts.max().item() == 4  # the crop happens, and only once


def _fake_celeba(root: Path, n: int = 12) -> None:
    """A tiny dataset in CelebA's folder format (what torchvision.datasets.CelebA reads)."""
    from PIL import Image

    folder = root / "celeba"
    (folder / "img_align_celeba").mkdir(parents=True)
    names = ["Smiling", "Male", "Young"]
    files = [f"{i + 1:06d}.jpg" for i in range(n)]
    g = torch.Generator().manual_seed(0)
    attrs = torch.randint(0, 2, (n, len(names)), generator=g) * 2 - 1
    for i, name in enumerate(files):
        value = 200 if attrs[i, 0] > 0 else 40  # Smiling images are brighter: learnable
        Image.new("RGB", (178, 218), (value, 100, 100)).save(folder / "img_align_celeba" / name)
    split = [0] * (n - 4) + [2] * 4
    (folder / "list_eval_partition.txt").write_text("".join(f"{f} {s}\n" for f, s in zip(files, split)))
    (folder / "identity_CelebA.txt").write_text("".join(f"{f} {i}\n" for i, f in enumerate(files)))
    (folder / "list_attr_celeba.txt").write_text(f"{n}\n" + " ".join(names) + "\n" + "".join(
        f"{f} " + " ".join(str(int(v)) for v in attrs[i]) + "\n" for i, f in enumerate(files)))
    (folder / "list_bbox_celeba.txt").write_text(f"{n}\nimage_id x_1 y_1 width height\n" + "".join(
        f"{f} 10 10 100 100\n" for f in files))
    (folder / "list_landmarks_align_celeba.txt").write_text(f"{n}\n" + " ".join(f"p{k}" for k in range(10)) + "\n"
                                                             + "".join(f"{f} " + " 1" * 10 + "\n" for f in files))


def test_celeba_smoke(tmp_path, stylegan32):
    from benchmarks import celeba

    _fake_celeba(tmp_path / "data")
    celeba.main(["--scale", "smoke", "--data-root", str(tmp_path / "data"), "--generator", stylegan32, "--no-md5",
                 "--attributes", "Smiling", "--out", str(tmp_path), *ONE_THREAD])
    text = (tmp_path / "celeba_smoke.md").read_text()
    for method in celeba.METHODS:
        assert f"| Smiling | {method} |" in text
    with pytest.raises(ValueError, match="attributes"):
        celeba.main(["--data-root", str(tmp_path / "data"), "--generator", stylegan32, "--no-md5",
                     "--attributes", "Laughing", "--out", str(tmp_path)])


def test_cifar_resnet_is_cifar_style():
    from torch_semaug.train.quick import cifar_resnet

    resnet18 = cifar_resnet()
    assert sum(p.numel() for p in resnet18.parameters()) == 11_173_962  # ResNet-18 for 32x32 inputs
    stem = resnet18[0]
    assert stem.kernel_size == (3, 3) and stem.stride == (1, 1)
    assert not any(isinstance(m, torch.nn.MaxPool2d) for m in resnet18.modules())
    assert cifar_resnet(10, blocks=(1, 1, 1), width=16)(torch.rand(2, 3, 32, 32)).shape == (2, 10)


@pytest.mark.parametrize(("name", "message"), [
    ("cutout+bn", "apply to"), ("ala+fast", "apply to"), ("ala+l2", "apply to"), ("rla+pred", "apply to"),
    ("ala", "needs a flow"), ("nope", "unknown method")])
def test_make_method_bad_names(name, message):
    from torch_semaug.train.quick import make_method

    with pytest.raises(ValueError, match=message):
        make_method(name, torch.nn.Linear(2, 2), num_classes=10, image_shape=(3, 32, 32), seed=0)


def test_flow_methods_settings():
    """R-LA: the default l-inf 0.25, or with +l2 flow-lp's CIFAR-10 command (l2, 20); A-LA's suffixes apply."""
    from torch_semaug.train.quick import flow_perturb

    flow = ts.Glow((3, 8, 8), levels=2, steps=1, width=8)
    rla, rla_l2 = (flow_perturb(name, flow, None, p=1.0, rng=torch.Generator().manual_seed(0))
                   for name in ("rla", "rla+l2"))
    assert (rla.norm, rla.eps, rla_l2.norm, rla_l2.eps) == ("linf", 0.25, "l2", 20.0)
    ala = flow_perturb("ala+pred", flow, torch.nn.Linear(2, 2), p=1.0, rng=torch.Generator().manual_seed(0))
    assert (ala.norm, ala.eps, ala.steps, ala.targets) == ("l2", 1.0, 3, "predictions")


def test_ordering_rows_verdicts():
    from benchmarks._bench import ordering_rows

    rows = ordering_rows({"a": [80.0, 81.0, 82.0], "b": [70.0, 71.0, 72.0], "c": [70.5, 71.5, 69.0], "d": []},
                         ["a", "b", "c", "d"])
    assert rows[0][0] == "a > b" and rows[0][1] == "+10.00" and rows[0][3] == "held"
    assert rows[1][3] == "held within noise"  # +0.67 points, inside one pooled sd
    assert rows[2][3] == "not run yet"
    assert ordering_rows({"a": [1.0], "b": [2.0]}, ["a", "b"])[0][3] == "not held (one seed)"
