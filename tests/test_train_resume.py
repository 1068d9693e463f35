"""`semaug train --resume PATH` alone: a run killed (SIGKILL) mid-epoch and resumed ends with the weights of
the uninterrupted run; a larger --epochs extends the schedule; no temporary file survives."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.training_fixtures import make_image_folder
from torch_semaug import IdentityGenerator
from torch_semaug.cli import main as cli_main
from torch_semaug.generators import save_generator
from torch_semaug.train.checkpoint import load_checkpoint

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture()
def one_thread():
    """The killed run is a one-thread subprocess; in-process runs must reduce in the same order."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def run_argv(tmp_path: Path, experiment: str, epochs: int = 2, *extra: str) -> list[str]:
    """Every random stream in play: the transform's selection and random start, dropout, RandAugment (python
    and numpy random), random erasing and crops (torch), the shuffle; EMA and a train subset. ``extra``: more
    flags (e.g. ``--semaug-warm-start``)."""
    save_generator(IdentityGenerator((3, 16, 16)), tmp_path / "identity.safetensors")
    return ["train", "--data-dir", str(tmp_path / "imgs"), "--train-subset", "0.75", "--model", "test_efficientnet",
            "--drop", "0.2", "--aa", "rand-m9-n1", "--reprob", "0.25", "--model-ema", "--model-ema-decay", "0.9",
            "--epochs", str(epochs), "-b", "4", "-j", "0", "--lr", "0.01", "--seed", "3", "--no-progress",
            "--log-interval", "1", "--output", str(tmp_path / "runs"), "--experiment", experiment,
            "--semaug", "adversarial_latent_attack", "--semaug-generator", str(tmp_path / "identity.safetensors"),
            "--semaug-eps", "0.03", "--semaug-steps", "1", "--semaug-step-size", "0.01", "--semaug-p", "0.5",
            "--semaug-kwargs", "random_start=true", *extra]


def assert_same_weights(first: Path, second: Path) -> None:
    a, b = load_checkpoint(first), load_checkpoint(second)
    for part in ("model", "model_ema"):
        assert a[part].keys() == b[part].keys()
        for key in a[part]:
            assert torch.equal(a[part][key], b[part][key]), f"{part}.{key} differs"


def kill_during_epoch(argv: list[str], epoch: int, batch: int) -> None:
    """Run ``semaug argv`` in a subprocess and SIGKILL it once it logs batch ``batch`` of ``epoch``."""
    env = os.environ | {"PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen([sys.executable, "-m", "torch_semaug.cli", *argv], env=env, text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    seen = []
    for line in process.stdout:
        seen.append(line)
        if line.startswith(f"Train: {epoch} [{batch:>4d}/"):
            process.send_signal(signal.SIGKILL)
            break
    process.wait(timeout=60)
    process.stdout.close()
    assert process.returncode == -signal.SIGKILL, "".join(seen)[-3000:]


def test_killed_run_resumed_with_only_resume_equals_the_uninterrupted_run(tmp_path, capsys, one_thread):
    make_image_folder(tmp_path / "imgs", per_class=8, size=16)  # 16 images, 12 in the subset: 3 batches
    kill_during_epoch(run_argv(tmp_path, "killed"), epoch=1, batch=1)
    run = tmp_path / "runs" / "killed"
    assert load_checkpoint(run / "last.pth")["epoch"] == 1  # killed inside epoch 1, after the epoch-0 save
    (run / ".last.pth.k1ll3d.tmp").write_bytes(b"half a checkpoint")  # what a kill during a save leaves

    assert cli_main(["train", "--resume", str(run / "last.pth")]) == 0
    out = capsys.readouterr().out
    assert "resuming" in out and "at epoch 1 of 2" in out and "overriding" not in out
    assert "AdversarialLatentAttack(" in out and "removed .last.pth.k1ll3d.tmp" in out
    assert not list(run.glob(".*.tmp"))
    history = json.loads((run / "metrics.json").read_text())
    assert [row["epoch"] for row in history] == [0, 1]
    assert all(row["train_examples"] == 12 for row in history)  # --train-subset restored

    assert cli_main(run_argv(tmp_path, "uninterrupted")) == 0
    assert_same_weights(run / "last.pth", tmp_path / "runs" / "uninterrupted" / "last.pth")
    assert (run / "model_best.pth").is_file() and (run / "curves.png").is_file()


def test_a_larger_epochs_extends_the_schedule(tmp_path, capsys, one_thread):
    make_image_folder(tmp_path / "imgs", per_class=4, size=16)
    assert cli_main(run_argv(tmp_path, "short", epochs=1)) == 0
    last = tmp_path / "runs" / "short" / "last.pth"
    assert cli_main(["train", "--resume", str(last), "--epochs", "2"]) == 0
    assert "overriding the checkpoint: --epochs 2 (checkpoint: 1)" in capsys.readouterr().out
    history = json.loads((tmp_path / "runs" / "short" / "metrics.json").read_text())
    assert [row["lr"] for row in history] == pytest.approx([0.01, 0.005])  # cosine over 2 epochs, not lr 0
    assert cli_main(run_argv(tmp_path, "long", epochs=2)) == 0
    assert_same_weights(last, tmp_path / "runs" / "long" / "last.pth")


def test_resume_refuses_another_model_and_a_finished_schedule(tmp_path, capsys, one_thread):
    from tests.cli_helpers import assert_usage_error

    make_image_folder(tmp_path / "imgs", per_class=4, size=16)
    assert cli_main(run_argv(tmp_path, "done", epochs=1)) == 0
    last = str(tmp_path / "runs" / "done" / "last.pth")
    assert_usage_error(["train", "--resume", last, "--model", "test_resnet"], capsys,
                       "trained with --model test_efficientnet, this run says test_resnet")
    assert cli_main(["train", "--resume", last]) == 0  # nothing left to train: the same summary again
    assert_usage_error(["train", "--resume", str(tmp_path / "nothing.pth")], capsys, "--resume", "no checkpoint")


def test_resume_from_another_directory_with_relative_paths(tmp_path, capsys, monkeypatch, one_thread):
    make_image_folder(tmp_path / "imgs", per_class=2, size=16)
    save_generator(IdentityGenerator((3, 16, 16)), tmp_path / "identity.safetensors")
    monkeypatch.chdir(tmp_path)
    assert cli_main(["train", "--data-dir", "imgs", "--model", "test_efficientnet", "--epochs", "1", "-b", "2", "-j",
                     "0", "--output", "runs", "--no-progress", "--semaug", "adversarial_latent_attack",
                     "--semaug-generator", "identity.safetensors"]) == 0
    (run,) = (tmp_path / "runs").iterdir()  # named UTC time-dataset-model-semaug
    assert re.fullmatch(r"\d{8}-\d{6}-imgs-test_efficientnet-adversarial_latent_attack", run.name)
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    assert cli_main(["train", "--resume", f"../runs/{run.name}/last.pth", "--epochs", "2"]) == 0
    assert len(json.loads((run / "metrics.json").read_text())) == 2
