"""`semaug train` / torch_semaug.train: flags, checks before training, latents, metrics, Ctrl-C and resume."""

from __future__ import annotations

import json
import sys
import types

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from tests.training_fixtures import RandomNudge, TinyLinearGenerator, make_image_folder, registered
from torch_semaug import IdentityGenerator
from torch_semaug.cli import main as cli_main
from torch_semaug.commands import train as train_command
from torch_semaug.data import LatentCache
from torch_semaug.data.datasets import create_dataset, subset_indices
from torch_semaug.generators import save_generator
from torch_semaug.train import classifier
from torch_semaug.train.checkpoint import load_checkpoint
from torch_semaug.train.classifier import train_classifier
from torch_semaug.train.data import encoding_transform

SIZE = 16


@pytest.fixture()
def setup(tmp_path):
    make_image_folder(tmp_path / "imgs", per_class=6, size=SIZE)
    save_generator(IdentityGenerator((3, SIZE, SIZE)), tmp_path / "identity.safetensors")
    return tmp_path


def base_argv(tmp_path, *extra):
    return ["train", "--dataset", f"folder:{tmp_path / 'imgs'}", "--model", "test_efficientnet", "--epochs", "2",
            "-b", "4", "-j", "0", "--lr", "0.01", "--output", str(tmp_path / "runs"), "--experiment", "run",
            "--no-progress", "--seed", "0", *extra]


def run_cli(argv, capsys):
    """Exit status and stderr of `semaug ...`."""
    try:
        status = cli_main(argv)
    except SystemExit as exit_:
        status = exit_.code
    return status, capsys.readouterr().err


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--semaug", "no_such"], "valid names: adversarial_latent_attack"),
        (["--train-subset", "0"], "--train-subset: expected a fraction in (0, 1], got '0'"),
        (["--train-subset", "1.5"], "--train-subset: expected a fraction in (0, 1], got '1.5'"),
        (["--semaug-eps", "0.1"], "--semaug-eps given without --semaug"),
        (["--semaug", "adversarial_latent_attack"], "needs a generator checkpoint"),
        (["--dataset", "torch/imagenet"], "dataset: expected one of"),
    ],
)
def test_bad_flags_are_reported_before_training(setup, capsys, extra, message):
    status, err = run_cli(base_argv(setup, *extra), capsys)
    assert status == 2 and message in err
    assert not (setup / "runs").exists()


def test_wrong_generator_kind_bad_kwargs_and_foreign_cache_are_refused(setup, capsys, monkeypatch):
    gen = ["--semaug-generator", str(setup / "identity.safetensors")]
    with registered():
        monkeypatch.setattr(RandomNudge, "generator_kinds", ("stylegan2",))
        status, err = run_cli(base_argv(setup, "--semaug", "test_random_nudge", *gen), capsys)
        assert status == 2 and "needs a generator of kind stylegan2, got a 'identity' checkpoint" in err
        monkeypatch.setattr(RandomNudge, "generator_kinds", None)
        status, err = run_cli(base_argv(setup, "--semaug", "test_random_nudge", *gen, "--semaug-kwargs", "bogus=1"),
                              capsys)
        assert status == 2 and "takes no argument(s) ['bogus']" in err and "'eps'" in err
        make_image_folder(setup / "other", per_class=6, size=SIZE, seed=5)
        other = create_dataset(f"folder:{setup / 'other'}", ".", "train", transform=encoding_transform())
        LatentCache.build(other, IdentityGenerator((3, SIZE, SIZE)), setup / "lat", progress=False)
        status, err = run_cli(base_argv(setup, "--semaug", "test_random_nudge", *gen, "--semaug-latents",
                                        str(setup / "lat")), capsys)
        assert status == 2 and "built for another dataset" in err
    assert not (setup / "runs").exists()


def test_trains_with_cached_latents_and_writes_metrics(setup, capsys):
    dataset = create_dataset(f"folder:{setup / 'imgs'}", ".", "train", transform=encoding_transform())
    generator = TinyLinearGenerator((3, SIZE, SIZE))
    with registered():
        save_generator(generator, setup / "tiny.safetensors")
        LatentCache.build(dataset, generator, setup / "lat", progress=False)
        argv = base_argv(setup, "--semaug", "test_random_nudge", "--semaug-generator", str(setup / "tiny.safetensors"),
                         "--semaug-latents", str(setup / "lat"), "--semaug-p", "0.5", "--semaug-kwargs", "eps=0.3")
        assert cli_main(argv) == 0
    out = capsys.readouterr().out
    assert "RandomNudge" in out and "with cached latents" in out
    run = setup / "runs" / "run"
    history = json.loads((run / "metrics.json").read_text())
    assert [row["epoch"] for row in history] == [0, 1]
    assert all(row["train_examples"] == 12 and row["val_examples"] == 12 for row in history)
    assert (run / "metrics.csv").read_text().splitlines()[0].startswith("epoch,lr,train_loss")
    summary = json.loads((run / "summary.json").read_text())
    assert summary["final"]["epoch"] == 1 and len(summary["rank_weight_sha256"]) == 1
    state = load_checkpoint(run / "last.pth")
    assert state["epoch"] == 2 and state["args"]["semaug"] == "test_random_nudge"


def test_ctrl_c_leaves_a_resumable_checkpoint(setup, capsys, monkeypatch):
    real_epoch = classifier.train_one_epoch

    def interrupted_at_epoch_1(*args, **kwargs):
        if kwargs["epoch"] == 1:
            raise KeyboardInterrupt
        return real_epoch(*args, **kwargs)

    monkeypatch.setattr(classifier, "train_one_epoch", interrupted_at_epoch_1)
    argv = base_argv(setup, "--semaug", "adversarial_latent_attack", "--semaug-generator",
                     str(setup / "identity.safetensors"), "--semaug-eps", "0.03", "--semaug-steps", "1",
                     "--semaug-step-size", "0.01")
    assert cli_main(argv) == 130
    last = setup / "runs" / "run" / "last.pth"
    state = load_checkpoint(last)  # the end of the last complete epoch
    assert state["epoch"] == 1 and len(state["history"]) == 1
    assert "resume with --resume" in capsys.readouterr().out
    status, err = run_cli(argv, capsys)  # the same command again must not overwrite the run
    assert status == 2 and "already holds a run" in err

    status, err = run_cli([*argv, "--resume", str(last), "--model", "test_resnet"], capsys)
    assert status == 2 and "trained with --model test_efficientnet, this run says test_resnet" in err

    monkeypatch.setattr(classifier, "train_one_epoch", real_epoch)
    assert cli_main([*argv, "--resume", str(last)]) == 0
    history = json.loads((setup / "runs" / "run" / "metrics.json").read_text())
    assert [row["epoch"] for row in history] == [0, 1]
    assert load_checkpoint(last)["epoch"] == 2


def test_yaml_config_sets_defaults_and_explicit_flags_win(setup, capsys):
    """-c YAML < flags, also for a flag typed with its default value (--seed 42)."""
    config = setup / "cfg.yaml"
    config.write_text("epochs: 10\nbatch-size: 6\nweight_decay: 0.0\nseed: 7\nno-progress: true\n")
    argv = base_argv(setup, "-c", str(config))
    for flag in ("--epochs", "-b", "--seed"):
        del argv[argv.index(flag):argv.index(flag) + 2]
    argv.remove("--no-progress")
    assert cli_main([*argv, "--epochs", "1", "--seed", "42", "--weight-decay", "0.001"]) == 0
    args = yaml.safe_load((setup / "runs" / "run" / "args.yaml").read_text())
    assert (args["epochs"], args["batch_size"], args["weight_decay"], args["seed"]) == (1, 6, 0.001, 42)
    assert args["progress"] is False
    assert len(json.loads((setup / "runs" / "run" / "metrics.json").read_text())) == 1  # 1 epoch, not 10
    config.write_text("bogus_key: 1\n")
    status, err = run_cli([*argv, "--experiment", "run2"], capsys)
    assert status == 2 and "unknown keys ['bogus_key']" in err


def test_train_classifier_is_a_python_function(setup, capsys):
    summary = train_classifier(dataset=f"folder:{setup / 'imgs'}", model="test_efficientnet", epochs=1, batch_size=4,
                               workers=0, lr=0.01, output=str(setup / "runs"), experiment="py", progress=False,
                               model_ema=True, channels_last=True, grad_accum_steps=2)
    assert summary["epochs"] == 1 and summary["final"]["train_examples"] == 12
    assert "ema_val_top1" in summary["final"] and summary["best"]["metric"] == "ema_val_top1"
    best = load_checkpoint(setup / "runs" / "py" / "model_best.pth")
    assert set(best["model"]) == set(load_checkpoint(setup / "runs" / "py" / "last.pth")["model"])  # no _orig_mod.
    assert "Train: 0 [   0/3" in capsys.readouterr().out  # timm-style lines when stdout is not a terminal
    again = train_classifier(dataset=f"folder:{setup / 'imgs'}", model="test_efficientnet", epochs=1, batch_size=4,
                             workers=0, output=str(setup / "runs"), experiment="py-amp", progress=False, amp=True)
    assert again["final"]["train_examples"] == 12  # a second run in the process may change the mixed precision
    with pytest.raises(ValueError, match=r"^batch_size: expected an integer >= 1, got 0$"):
        train_classifier(dataset=f"folder:{setup / 'imgs'}", batch_size=0)
    with pytest.raises(TypeError, match="bogus"):
        train_classifier(bogus=1)


@pytest.mark.slow  # dynamo traces the model: about 15 s on a CPU
def test_torchcompile_trains_and_saves_plain_weights(setup):
    train_classifier(dataset=f"folder:{setup / 'imgs'}", model="test_efficientnet", epochs=1, batch_size=4, workers=0,
                     output=str(setup / "runs"), experiment="compiled", progress=False, torchcompile="eager")
    weights = load_checkpoint(setup / "runs" / "compiled" / "last.pth")["model"]
    assert weights and not any(key.startswith("_orig_mod.") for key in weights)


@pytest.mark.parametrize("entry", ["semaug", "python -m"])
def test_help_shows_every_default_and_timm_differences(capsys, monkeypatch, entry):
    monkeypatch.setenv("COLUMNS", "400")  # one line per flag
    with pytest.raises(SystemExit) as exit_:
        cli_main(["train", "--help"]) if entry == "semaug" else train_command.main(["--help"])
    assert exit_.value.code == 0
    out = " ".join(capsys.readouterr().out.split())
    for flag in ("--model", "--num-classes", "--img-size", "--batch-size", "--opt", "--sched", "--warmup-epochs",
                 "--smoothing", "--mixup", "--cutmix", "--amp", "--resume", "--workers", "--semaug-kwargs",
                 "--model-ema", "--aa", "--reprob", "--channels-last", "--torchcompile", "--grad-accum-steps",
                 "--train-split", "--val-split", "--data-dir", "--log-with"):
        assert flag in out
    assert "epochs to train (default: 30; timm's: 300)" in out and "batch size per process (default: 128)" in out
    assert "UTC time-dataset-model[-semaug]" in out and "(default: 0.9998)" in out


def test_cifar_jpeg_copy_is_read_in_official_order_and_subsets_are_prefixes(tmp_path):
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    labels = np.array([3, 3, 0, 9, 0, 3] + list(range(10)), dtype=np.uint8)
    counts = {}
    for i, label in enumerate(labels.tolist()):
        k = counts.get(label, 0)
        counts[label] = k + 1
        folder = tmp_path / "cifar10-jpeg" / "train" / names[label]
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full((4, 4, 3), i, dtype=np.uint8)).save(folder / f"{k:04d}.jpg", quality=100)
    for name in names:
        (tmp_path / "cifar10-jpeg" / "test" / name).mkdir(parents=True, exist_ok=True)
    np.savez(tmp_path / "cifar10-jpeg" / "official_order_labels.npz", train_labels=labels,
             test_labels=np.zeros(0, np.uint8), label_names=np.array(names))
    dataset = create_dataset("torch/cifar10", tmp_path, "train", transform=encoding_transform())
    assert [dataset[i][1] for i in range(len(labels))] == labels.tolist()
    brightness = [round(float(dataset[i][0].mean()) * 255) for i in range(len(labels))]
    assert brightness == list(range(len(labels)))  # image i is the i-th official image
    assert subset_indices("torch/cifar10", 16, 0.25) == [0, 1, 2, 3]
    folder_subset = subset_indices("folder:x", 16, 0.25)
    assert folder_subset == subset_indices("folder:x", 16, 0.25) and folder_subset != [0, 1, 2, 3]
    with pytest.raises(FileNotFoundError, match="no CIFAR-10"):
        create_dataset("torch/cifar10", tmp_path / "nothing", "train")


def test_colormnist_hook(monkeypatch):
    class FakeColorMNIST:
        @classmethod
        def from_mnist(cls, root, train=True):
            return [(torch.rand(3, 32, 32), 7)] * 3

    module = types.ModuleType("torch_semaug.data.color_mnist")
    module.ColorMNIST = FakeColorMNIST
    monkeypatch.setitem(sys.modules, "torch_semaug.data.color_mnist", module)
    dataset = create_dataset("colormnist", "unused", "test", transform=encoding_transform(16))
    image, label = dataset[0]
    assert image.shape == (3, 16, 16) and label == 7 and len(dataset.classes) == 10


def test_tensorboard_curves_and_best_model(setup, capsys):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    assert cli_main(base_argv(setup, "--log-with", "tensorboard")) == 0
    run = setup / "runs" / "run"
    events = EventAccumulator(str(next((run / "logs").glob("events.out.tfevents.*"))))
    events.Reload()
    history = json.loads((run / "metrics.json").read_text())
    assert [e.value for e in events.Scalars("val_top1")] == pytest.approx([row["val_top1"] for row in history])
    assert {"train_loss", "lr"} <= set(events.Tags()["scalars"])
    assert (run / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    best = load_checkpoint(run / "model_best.pth")
    assert best["best"]["val_top1"] == max(row["val_top1"] for row in history)
    assert best["epoch"] == best["best"]["epoch"] + 1 and best["classes"] == ["class0", "class1"]


@pytest.mark.parametrize("dataset, flips", [("colormnist@2000", False), ("colormnist:uniform", False),
                                            ("torch/mnist@10", False), ("torch/cifar10@10", True)])
def test_digits_are_never_mirrored_whatever_the_variant_or_subset(dataset, flips):
    from torch_semaug.train.args import TrainConfig
    from torch_semaug.train.data import train_transform

    steps = train_transform(TrainConfig(), dataset, (0.5,), (0.5,), 16, augment=True).transforms
    assert any(type(step).__name__ == "RandomHorizontalFlip" for step in steps) is flips
