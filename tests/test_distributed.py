"""Two CPU processes started the way users start them (`accelerate launch --multi_gpu --num_processes 2`, and
torchrun) train the same model, count every example once and log from the main process only."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.training_fixtures import make_image_folder
from torch_semaug import IdentityGenerator
from torch_semaug.generators import save_generator
from torch_semaug.train.classifier import rank_seed

ROOT = Path(__file__).resolve().parents[1]


LAUNCHERS = {
    # The README's command: with no GPU, accelerate's --multi_gpu launcher starts CPU processes (gloo).
    "accelerate": ["-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
                   "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", "0"],
    "torchrun": ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"],
}


@pytest.mark.parametrize("launcher", ["accelerate", pytest.param("torchrun", marks=pytest.mark.slow)])
def test_two_processes_train_and_agree_on_final_weights(tmp_path, launcher):
    make_image_folder(tmp_path / "imgs", per_class=7, size=16)  # 14 images: uneven shards across 2 ranks
    save_generator(IdentityGenerator((3, 16, 16)), tmp_path / "identity.safetensors")
    command = [
        sys.executable, *LAUNCHERS[launcher],
        "-m", "torch_semaug.train", "--dataset", f"folder:{tmp_path / 'imgs'}", "--model", "test_efficientnet",
        "--epochs", "2", "-b", "4", "-j", "0", "--lr", "0.01", "--no-progress", "--log-interval", "1",
        "--output", str(tmp_path / "runs"), "--experiment", "ddp",
        "--semaug", "adversarial_latent_attack", "--semaug-generator", str(tmp_path / "identity.safetensors"),
        "--semaug-eps", "0.03", "--semaug-steps", "1", "--semaug-step-size", "0.01",
    ]
    env = os.environ | {"PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    summary = json.loads((tmp_path / "runs" / "ddp" / "summary.json").read_text())
    assert summary["processes"] == 2
    assert summary["rank_train_steps"] == [4, 4]  # each rank: 2 of the 4 batches per epoch, 2 epochs
    first, second = summary["rank_weight_sha256"]
    assert first == second  # DDP kept both replicas identical
    history = json.loads((tmp_path / "runs" / "ddp" / "metrics.json").read_text())
    assert [row["epoch"] for row in history] == [0, 1]
    for row in history:  # gather_for_metrics drops the copies that pad the last batch
        assert row["train_examples"] == 14 and row["val_examples"] == 14
    assert "2 process(es)" in result.stdout
    assert result.stdout.count("Train: 1 [   0/2") == 1  # logs from the main process only


def test_each_rank_and_epoch_gets_its_own_transform_stream():
    seeds = {rank_seed(7, rank, epoch) for rank in range(4) for epoch in range(3)}
    assert len(seeds) == 12
    assert rank_seed(7, 1, 2) == rank_seed(7, 1, 2)  # reproducible after a resume


@pytest.mark.slow  # three 2-process launches: about a minute on 2 cores
def test_two_processes_killed_and_resumed_equal_the_uninterrupted_run(tmp_path):
    import psutil

    make_image_folder(tmp_path / "imgs", per_class=6, size=16)
    save_generator(IdentityGenerator((3, 16, 16)), tmp_path / "identity.safetensors")
    launch = [sys.executable, *LAUNCHERS["accelerate"], "-m", "torch_semaug.train"]
    argv = ["--data-dir", str(tmp_path / "imgs"), "--model", "test_efficientnet", "--epochs", "2", "-b", "2", "-j",
            "0", "--lr", "0.01", "--drop", "0.2", "--log-interval", "1", "--output", str(tmp_path / "runs"),
            "--semaug", "adversarial_latent_attack", "--semaug-generator", str(tmp_path / "identity.safetensors"),
            "--semaug-p", "0.5"]
    env = os.environ | {"PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    whole = subprocess.run([*launch, *argv, "--experiment", "whole"], env=env, capture_output=True, text=True,
                           timeout=300)
    assert whole.returncode == 0, whole.stderr[-3000:]
    process = subprocess.Popen([*launch, *argv, "--experiment", "killed"], env=env, text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    for line in process.stdout:
        if line.startswith("Train: 1 [   0/"):  # rank 0 is inside epoch 1
            for child in psutil.Process(process.pid).children(recursive=True):
                child.kill()
            process.kill()
            break
    process.wait(timeout=60)
    process.stdout.close()
    last = tmp_path / "runs" / "killed" / "last.pth"
    resumed = subprocess.run([*launch, "--resume", str(last)], env=env, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming" in resumed.stdout and "at epoch 1 of 2" in resumed.stdout
    digests = [json.loads((tmp_path / "runs" / name / "summary.json").read_text())["rank_weight_sha256"]
               for name in ("whole", "killed")]
    assert digests[0] == digests[1]
