"""Two CPU processes (torchrun + gloo, as `accelerate launch` starts them) train the same model."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.training_fixtures import make_image_folder
from torch_semaug import IdentityGenerator
from torch_semaug.generators import save_generator
from torch_semaug.train.classifier import rank_seed

ROOT = Path(__file__).resolve().parents[1]


def test_two_processes_train_and_agree_on_final_weights(tmp_path):
    make_image_folder(tmp_path / "imgs", per_class=7, size=16)  # 14 images: uneven shards across 2 ranks
    save_generator(IdentityGenerator((3, 16, 16)), tmp_path / "identity.safetensors")
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
        "-m", "torch_semaug.train", "--dataset", f"folder:{tmp_path / 'imgs'}", "--model", "test_efficientnet",
        "--epochs", "2", "-b", "4", "-j", "0", "--lr", "0.01", "--device", "cpu", "--no-progress",
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
    assert summary["final"]["val_examples"] == 14  # gather_for_metrics drops the padding duplicates
    history = json.loads((tmp_path / "runs" / "ddp" / "metrics.json").read_text())
    assert [row["epoch"] for row in history] == [0, 1]
    assert "2 process(es)" in result.stdout


def test_each_rank_and_epoch_gets_its_own_transform_stream():
    seeds = {rank_seed(7, rank, epoch) for rank in range(4) for epoch in range(3)}
    assert len(seeds) == 12
    assert rank_seed(7, 1, 2) == rank_seed(7, 1, 2)  # reproducible after a resume
