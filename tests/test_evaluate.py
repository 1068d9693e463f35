"""`semaug eval`: clean accuracy, accuracy under attack, per-class table, misclassified grid, Markdown."""

from __future__ import annotations

import csv
import json

import pytest
import torch
from PIL import Image

from tests.cli_helpers import assert_usage_error
from tests.training_fixtures import make_image_folder
from torch_semaug import IdentityGenerator
from torch_semaug.cli import main as cli_main
from torch_semaug.commands.eval import parse_attacks
from torch_semaug.data import LatentCache
from torch_semaug.data.datasets import create_dataset
from torch_semaug.generators import save_generator
from torch_semaug.train.data import encoding_transform
from torch_semaug.train.evaluate import defaults_for, run_evaluation
from torch_semaug.transforms import AdversarialLatentAttack

SIZE = 16


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval")
    make_image_folder(root / "imgs", per_class=6, size=SIZE)
    save_generator(IdentityGenerator((3, SIZE, SIZE)), root / "identity.safetensors")
    argv = ["train", "--dataset", f"folder:{root / 'imgs'}", "--model", "test_resnet", "--epochs", "3", "-b",
            "4", "-j", "0", "--lr", "0.01", "--seed", "0", "--output", str(root / "runs"), "--experiment", "clf",
            "--no-progress"]
    assert cli_main(argv) == 0
    return root


def test_attack_lowers_accuracy_and_report_has_tables_grid_json_and_csv(trained):
    specs = parse_attacks(
        [f"adversarial_latent_attack={trained / 'identity.safetensors'}"] * 2,
        ["adversarial_latent_attack:eps=0.5", "adversarial_latent_attack:step_size=0.2",
         "adversarial_latent_attack:steps=4"],
    )
    specs[1][2].update(eps=1e-6, step_size=1e-6)  # the second attack barely moves the image: it flips nothing
    result = run_evaluation(str(trained / "runs" / "clf" / "last.pth"), specs, output=str(trained / "report.md"),
                            batch_size=5, workers=0, progress=False)
    clean, strong, null = result["results"]
    assert clean["attack"] == "clean" and clean["accuracy"] > 0
    assert strong["accuracy"] < clean["accuracy"] and strong["flipped"] > 0  # a 0.5 l-inf ball fools a tiny model
    assert null["attack"] == "adversarial_latent_attack-2" and null["flipped"] == 0
    report = (trained / "report.md").read_text()
    assert "eps=0.5, step_size=0.2, steps=4" in report
    assert "| class0 | 6 |" in report and "| class1 | 6 |" in report
    assert "## adversarial_latent_attack-2" in report and "No image was turned from correct to wrong" in report
    grid_file = trained / "report_adversarial_latent_attack-1.png"
    assert "report_adversarial_latent_attack-1.png" in report and grid_file.is_file()
    assert not (trained / "report_adversarial_latent_attack-2.png").exists()
    width, height = Image.open(grid_file).size
    assert width >= 3 * 96  # three tiles enlarged to about 96 px, labels drawn under them
    saved = json.loads((trained / "report.json").read_text())
    assert saved["results"][1]["accuracy"] == strong["accuracy"] and saved["images"] == 12
    rows = list(csv.DictReader((trained / "report.csv").open()))
    assert {(r["attack"], r["class"]) for r in rows} >= {("clean", "all"), ("adversarial_latent_attack-1", "class0")}
    assert float(next(r for r in rows if r["attack"] == "clean" and r["class"] == "all")["accuracy"]) == \
        clean["accuracy"]


def test_val_subset_is_the_same_images_every_run(trained, capsys):
    argv = ["eval", "--checkpoint", trained / "runs" / "clf" / "last.pth", "--val-subset", "5", "-j", "0",
            "--output", trained / "subset.md", "--no-progress"]
    assert cli_main([str(a) for a in argv]) == 0
    first = (trained / "subset.json").read_text()
    assert json.loads(first)["images"] == 5 and json.loads(first)["val_subset"] == 5
    assert cli_main([str(a) for a in argv]) == 0
    assert (trained / "subset.json").read_text() == first
    assert "a fixed subset of 5 images" in capsys.readouterr().out


def test_cached_latents_are_used_and_paper_defaults_apply(trained, capsys):
    view = create_dataset(f"folder:{trained / 'imgs'}", ".", "test", transform=encoding_transform())
    LatentCache.build(view, IdentityGenerator((3, SIZE, SIZE)), trained / "lat_test", progress=False)
    argv = ["eval", "--checkpoint", str(trained / "runs" / "clf" / "last.pth"), "--latents", str(trained / "lat_test"),
            "--attack", f"adversarial_latent_attack={trained / 'identity.safetensors'}", "--val-subset", "4", "-j", "0",
            "--output", str(trained / "eval2.md"), "--no-progress"]
    assert cli_main(argv) == 0
    out = capsys.readouterr().out
    assert "(cached latents)" in out and "steps=20" in out and "4 images" in out


def test_eval_defaults_follow_the_papers_and_skip_unknown_arguments():
    assert defaults_for("adversarial_latent_attack", AdversarialLatentAttack) == {
        "eps": 8 / 255, "step_size": 2 / 255, "steps": 20}

    class AdvMixLike:
        def __init__(self, generator, *, mode="random", restarts=1, p=1.0):
            pass

    class FlowLike:  # FlowPerturb names its generator argument `flow`
        def __init__(self, flow, *, mode="random", eps, norm="linf", step_size=None, steps=3):
            pass

    assert defaults_for("latent_mix", AdvMixLike) == {"mode": "adversarial", "restarts": 10}
    assert defaults_for("flow_perturb", FlowLike) == {"mode": "adversarial", "norm": "l2", "eps": 1.0,
                                                      "step_size": 0.5, "steps": 3}


def test_bad_attacks_are_reported_before_evaluating(trained):
    checkpoint = str(trained / "runs" / "clf" / "last.pth")
    with pytest.raises(ValueError, match="NAME=GENERATOR_CHECKPOINT"):
        parse_attacks(["adversarial_latent_attack"], [])
    with pytest.raises(ValueError, match="for a NAME given with --attack"):
        parse_attacks([f"adversarial_latent_attack={trained / 'identity.safetensors'}"], ["latent_mix:steps=3"])
    with pytest.raises(ValueError, match="valid names"):
        run_evaluation(checkpoint, [("nope", str(trained / "identity.safetensors"), {})], output="unused.md")
    with pytest.raises(ValueError, match="checkpoint: no checkpoint"):
        run_evaluation(str(trained / "missing.pth"), [], output="unused.md")
    assert not (trained / "unused.md").exists()
    torch.save({"weights": torch.zeros(1)}, trained / "foreign.pth")
    with pytest.raises(ValueError, match="not a torch_semaug classifier checkpoint"):
        run_evaluation(str(trained / "foreign.pth"), [], output="unused.md")


def test_stylegan2_attack_reads_a_cache_built_with_an_encoder_and_needs_one(trained, capsys):
    from torch_semaug.generators import StyleGAN2

    torch.manual_seed(0)
    generator = trained / "g16.safetensors"
    save_generator(StyleGAN2(16, z_dim=8, w_dim=8, mapping_layers=2, channel_base=64, channel_max=8), generator)
    cache = trained / "lat_g16"
    assert cli_main(["encode", "--generator", str(generator), "--encoder", "optimize:2", "--data",
                     f"folder:{trained / 'imgs'}", "--split", "test", "--out", str(cache), "-j", "0",
                     "--psnr-samples", "0"]) == 0
    argv = ["eval", "--checkpoint", trained / "runs" / "clf" / "last.pth", "--attack", f"latent_mix={generator}",
            "--attack-kwargs", "latent_mix:steps=1", "latent_mix:restarts=1", "-j", "0", "--output",
            trained / "g16.md", "--no-progress"]
    # the generator file has no encoder: without the cache the attack cannot run, and says what to do
    assert_usage_error(argv, capsys, "--latents:", "cannot encode images and no --latents was given",
                       "semaug encode")
    view = create_dataset(f"folder:{trained / 'imgs'}", ".", "test", transform=encoding_transform())
    LatentCache.build(view, IdentityGenerator((3, SIZE, SIZE)), trained / "lat_identity", progress=False)
    assert_usage_error([*argv, "--latents", trained / "lat_identity"], capsys, "--latents:",
                       "cache belongs to another generator")
    capsys.readouterr()
    assert cli_main([str(a) for a in [*argv, "--latents", cache]]) == 0
    assert "(cached latents)" in capsys.readouterr().out
    assert json.loads((trained / "g16.json").read_text())["results"][1]["cached_latents"] is True
