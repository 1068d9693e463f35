"""`semaug train` turns every bad input into one `error: --flag: ...` line and exit code 2, before anything is
written; no value in this table is silently accepted."""

from __future__ import annotations

import pytest

from tests.cli_helpers import assert_usage_error
from tests.training_fixtures import make_image_folder
from torch_semaug import IdentityGenerator
from torch_semaug.generators import save_generator

ATTACK = ["--semaug", "adversarial_latent_attack", "--semaug-generator", "{root}/identity.safetensors"]
FILES = {
    "bad.yaml": "epochs: [1\n", "list.yaml": "- 1\n- 2\n", "unknown.yaml": "epochs: 1\nbogus: 2\n",
    "ten.yaml": "lr: ten\n", "flag.yaml": "no-aug: maybe\n", "notes.txt": "not a checkpoint\n",
}

CASES = [
    # model and classes
    (["--model", "no_such_model"], "--model: expected a timm model name, got 'no_such_model'"),
    (["--model", "resnet1"], "--model: expected a timm model name", "did you mean"),
    (["--num-classes", "1"], "--num-classes: expected an integer >= 2, got 1"),
    (["--num-classes", "0"], "--num-classes: expected a positive integer, got '0'"),
    (["--in-chans", "1"], "--in-chans: the images have 3 channel(s), got 1"),
    (["--img-size", "0"], "--img-size: expected a positive integer, got '0'"),
    (["--img-size", "-8"], "--img-size: expected a positive integer, got '-8'"),
    (["--drop", "1.0"], "--drop: expected a rate in [0, 1), got 1.0"),
    # optimisation
    (["-b", "0"], "--batch-size: expected a positive integer, got '0'"),
    (["--epochs", "0"], "--epochs: expected a positive integer, got '0'"),
    (["--lr", "-1"], "--lr: expected a positive number, got '-1'"),
    (["--lr", "nan"], "--lr: expected a positive number, got 'nan'"),
    (["--opt", "nosuch"], "--opt: expected a timm optimizer name", "'nosuch'"),
    (["--sched", "nosuch"], "--sched: expected a timm scheduler name", "'nosuch'"),
    (["--smoothing", "1"], "--smoothing: expected a number in [0, 1), got 1.0"),
    (["--mixup-prob", "2"], "--mixup-prob: expected a probability in [0, 1], got '2'"),
    (["--grad-accum-steps", "0"], "--grad-accum-steps: expected a positive integer, got '0'"),
    (["--model-ema-decay", "1.5"], "--model-ema-decay: expected a number in (0, 1), got 1.5"),
    (["--torchcompile", "nosuch"], "--torchcompile: expected a torch.compile backend", "'nosuch'"),
    # data
    (["--dataset", "torch/imagenet"], "--dataset: expected one of"),
    (["--dataset", "torch/cifar10", "--data-root", "{root}/empty"], "no CIFAR-10 under"),
    (["--dataset", "folder:{root}/empty"], "has no train/ subfolder"),
    (["--train-subset", "0"], "--train-subset: expected a fraction in (0, 1], got '0'"),
    (["--train-split", "valid"], "--train-split: expected one of ['train', 'test'], got 'valid'"),
    (["--val-split", "dev"], "--val-split: expected one of ['train', 'test'], got 'dev'"),
    (["--aa", "bogus"], "--aa: timm cannot build the auto-augment policy 'bogus'"),
    (["--reprob", "1.5"], "--reprob: expected a probability in [0, 1], got '1.5'"),
    (["--mean", "0.5", "0.5", "0.5"], "--mean: pass both --mean and --std or neither"),
    (["--mean", "0.5", "0.5", "0.5", "--std", "0.2", "0.2"], "--mean: expected 3 values (one per channel)"),
    (["--std", "0", "0", "0", "--mean", "0", "0", "0"], "--std: expected a positive number, got '0'"),
    (["-j", "-1"], "--workers: expected an integer >= 0, got '-1'"),
    # YAML config
    (["-c", "{root}/bad.yaml"], "--config: ", "bad.yaml' is not valid YAML"),
    (["-c", "{root}/missing.yaml"], "--config: cannot read", "missing.yaml"),
    (["-c", "{root}/list.yaml"], "--config: expected a YAML mapping"),
    (["-c", "{root}/unknown.yaml"], "--config: unknown keys ['bogus']"),
    (["-c", "{root}/ten.yaml"], "--lr: expected a positive number, got 'ten'"),
    (["-c", "{root}/flag.yaml"], "--no-aug: expected true or false, got 'maybe'"),
    # semantic transform
    (["--semaug", "no_such"], "--semaug: unknown transform 'no_such'", "valid names"),
    (["--semaug-eps", "0.1"], "--semaug-eps given without --semaug"),
    (["--semaug", "adversarial_latent_attack"], "needs a generator checkpoint"),
    ([*ATTACK, "--semaug-mode", "sideways"], "--semaug-mode: expected one of", "'sideways'"),
    ([*ATTACK, "--semaug-kwargs", "norm=l3"], "--semaug-kwargs: norm:", "'l3'"),
    ([*ATTACK, "--semaug-latents", "{root}/empty"], "no finished latent cache", "empty"),
    (["--semaug", "adversarial_latent_attack", "--semaug-generator", "{root}/missing.safetensors"],
     "missing.safetensors"),
    ([*ATTACK, "--semaug-eps", "0.1", "--semaug-steps", "1", "--semaug-step-size", "0.01",
      "--semaug-kwargs", "norm=[l2"], "--semaug-kwargs: cannot read the value of norm='[l2'"),
    (["--semaug-kwargs", "norm"], "--semaug-kwargs: expected KEY=VALUE"),
    (["--semaug-kwargs", "1x=2"], "--semaug-kwargs: expected KEY=VALUE with a Python identifier as KEY"),
    (["--semaug-p", "1.5"], "--semaug-p: expected a probability in [0, 1], got '1.5'"),
    (["--semaug-steps", "0"], "--semaug-steps: expected a positive integer, got '0'"),
    # run
    (["--device", "tpu"], "--device: invalid choice: 'tpu'"),
    (["--amp-dtype", "float8"], "--amp-dtype: invalid choice: 'float8'"),
    (["--log-with", "nosuch"], "--log-with: invalid choice: 'nosuch'"),
    (["--log-interval", "0"], "--log-interval: expected a positive integer, got '0'"),
    (["--resume", "{root}/missing.pth"], "--resume: no checkpoint at", "missing.pth"),
    (["--resume", "{root}/notes.txt"], "--resume: cannot read", "notes.txt"),
]


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    root = tmp_path_factory.mktemp("train_errors")
    make_image_folder(root / "imgs", per_class=2, size=16)
    (root / "empty").mkdir()
    save_generator(IdentityGenerator((3, 16, 16)), root / "identity.safetensors")
    for name, text in FILES.items():
        (root / name).write_text(text)
    return root


def case_id(case: tuple) -> str:
    return " ".join(case[0])[:60]


@pytest.mark.parametrize("case", CASES, ids=[case_id(case) for case in CASES])
def test_bad_input_is_one_error_line(root, capsys, case):
    extra, *fragments = case
    argv = ["train", "--dataset", f"folder:{root}/imgs", "--model", "test_efficientnet", "-b", "2", "-j", "0",
            "--epochs", "1", "--output", str(root / "runs"), "--experiment", "e", "--no-progress"]
    assert_usage_error([*argv, *(a.format(root=root) for a in extra)], capsys, *fragments)
    assert not (root / "runs").exists()  # nothing written

