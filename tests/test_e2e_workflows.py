"""The README's workflows end to end through the `semaug` command, at tiny scale:
`semaug encode` (train and test split) -> `semaug train --semaug NAME --semaug-latents CACHE` ->
`semaug eval --latents TEST_CACHE --attack NAME=G`, for each transform and each kind of encoder.

The StyleGAN2 caches are built through an encoder (`optimize:N`, `learned:N`), while `train` and `eval`
load the generator without one: the cache is accepted because it holds that generator's latents.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.cli_helpers import run_semaug
from tests.conftest import make_tiny_stylegan2
from tests.flow_factories import tiny_glow
from torch_semaug import IdentityGenerator
from torch_semaug.cli import main as cli_main
from torch_semaug.data import LatentCache
from torch_semaug.generators import save_generator

DATA = "demo-shapes@16"  # 16 coloured shapes of 16 px per split, drawn in code


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("e2e")
    save_generator(make_tiny_stylegan2(), root / "stylegan2.safetensors")
    save_generator(tiny_glow(), root / "glow.safetensors")
    save_generator(IdentityGenerator((3, 16, 16)), root / "identity.safetensors")
    assert cli_main(["directions", "--generator", str(root / "stylegan2.safetensors"), "--out", str(root / "dirs"),
                     "--n-components", "3", "--num-samples", "64"]) == 0
    return root


def _semaug(*argv) -> None:
    assert cli_main([str(a) for a in argv]) == 0, argv


# (transform, generator, encoder, train flags, eval attack overrides)
WORKFLOWS = [
    ("latent_mix", "stylegan2", "optimize:2",
     ["--semaug-mode", "adversarial", "--semaug-steps", "1", "--semaug-restarts", "1"],
     ["latent_mix:steps=1", "latent_mix:restarts=1"]),
    ("latent_mix", "stylegan2", "learned:2", ["--semaug-mode", "random"],
     ["latent_mix:steps=1", "latent_mix:restarts=1"]),
    ("direction_edit", "stylegan2", "learned:2", ["--semaug-mode", "random", "--semaug-kwargs", "directions={dirs}"],
     ["direction_edit:directions={dirs}", "direction_edit:steps=1"]),
    ("direction_edit", "stylegan2", "optimize:2",
     ["--semaug-mode", "adversarial", "--semaug-steps", "1", "--semaug-kwargs", "directions={dirs}"],
     ["direction_edit:directions={dirs}", "direction_edit:steps=1"]),
    ("flow_perturb", "glow", None, ["--semaug-mode", "random", "--semaug-eps", "0.1"], ["flow_perturb:steps=1"]),
    ("adversarial_latent_attack", "identity", None, ["--semaug-eps", "0.03", "--semaug-steps", "1"],
     ["adversarial_latent_attack:steps=1"]),
]


@pytest.mark.parametrize("name, kind, encoder, train_flags, attack_kwargs", WORKFLOWS,
                         ids=[f"{w[0]}-{w[2] or w[1]}" for w in WORKFLOWS])
def test_encode_train_eval(workspace, tmp_path, capsys, name, kind, encoder, train_flags, attack_kwargs):
    generator = workspace / f"{kind}.safetensors"
    dirs = workspace / "dirs" / "pca_w.safetensors"
    with_encoder = ["--encoder", encoder] if encoder else []
    for split in ("train", "test"):
        _semaug("encode", "--generator", generator, *with_encoder, "--data", DATA, "--split", split,
                "--out", tmp_path / split, "-b", "8", "-j", "0", "--device", "cpu", "--psnr-samples", "4")
    printed = capsys.readouterr().out
    info = LatentCache.open(tmp_path / "train").info()
    assert f"encoder={info['encoder']['class']}" in printed  # the provenance, shown by semaug encode
    assert "reconstruction PSNR over the first 4 images" in printed and info["reconstruction_psnr"]["images"] == 4
    if encoder:
        assert info["encoder"]["class"].endswith({"optimize": "OptimizationEncoder", "learned": "LearnedEncoder"}[
            encoder.partition(":")[0]])
    else:
        assert info["encoder"]["method"] == "the generator's own encode"

    _semaug("train", "--dataset", DATA, "--model", "test_resnet", "--epochs", "1", "-b", "8", "-j", "0",
            "--lr", "0.01", "--seed", "0", "--output", tmp_path / "runs", "--experiment", "run", "--no-progress",
            "--semaug", name, "--semaug-generator", generator, "--semaug-latents", tmp_path / "train",
            *[flag.format(dirs=dirs) for flag in train_flags])
    checkpoint = tmp_path / "runs" / "run" / "last.pth"
    assert checkpoint.is_file()

    capsys.readouterr()
    _semaug("eval", "--checkpoint", checkpoint, "--latents", tmp_path / "test", "--attack", f"{name}={generator}",
            "--attack-kwargs", *[item.format(dirs=dirs) for item in attack_kwargs], "-b", "8", "-j", "0",
            "--device", "cpu", "--output", tmp_path / "eval.md", "--no-progress")
    report = (tmp_path / "eval.md").read_text()
    assert name in report and "clean" in report
    if kind == "stylegan2":  # the generator alone cannot encode: the cache is what the attack ran on
        result = run_semaug(["eval", "--checkpoint", checkpoint, "--attack", f"{name}={generator}", "-j", "0",
                             "--output", tmp_path / "no_cache.md", "--no-progress"], capsys)
        assert result.code == 2 and "cannot encode images" in result.err and "--latents" in result.err
