"""semaug train-generator glow: a few iterations on a tiny synthetic folder, resume, NaN guard."""

from __future__ import annotations

import json

import pytest
import torch
from PIL import Image

from tests.cli_helpers import assert_usage_error
from torch_semaug.cli import main
from torch_semaug.generators import Glow


@pytest.fixture
def folder(tmp_path):
    g = torch.Generator().manual_seed(0)
    for cls in ("a", "b"):
        (tmp_path / "data" / cls).mkdir(parents=True)
        for i in range(6):
            pixels = (torch.rand(8, 8, 3, generator=g) * 255).to(torch.uint8).numpy()
            Image.fromarray(pixels).save(tmp_path / "data" / cls / f"{i}.png")
    return tmp_path / "data"


def _train(folder, out, *extra: str) -> int:
    return main(["train-generator", "glow", "--data", str(folder), "--out", str(out), "--scale", "smoke",
                 "--batch-size", "4", "--width", "8", *extra])


def test_trains_writes_outputs_and_resumes(folder, tmp_path, capsys, monkeypatch):
    out = tmp_path / "run"
    assert _train(folder, out, "--iterations", "2", "--eval-data", str(folder)) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["iterations"] == 2 and 0 < metrics["test_bpd"] < 20
    assert (out / "samples" / "final.png").stat().st_size > 0
    glow = Glow.load(out / "generator.safetensors")
    assert glow.image_shape == (3, 8, 8) and glow.levels == 2
    x = torch.rand(2, 3, 8, 8)
    assert (glow.decode(glow.encode(x)) - x).abs().max() < 1e-4
    assert_usage_error(["train-generator", "glow", "--data", str(folder), "--out", str(out)], capsys, "--out:",
                       "--resume")
    before = torch.load(out / "checkpoint.pt", weights_only=True)
    calls = []
    real = Glow.bits_per_dim
    monkeypatch.setattr(Glow, "bits_per_dim", lambda self, x: calls.append(1) or real(self, x))
    assert main(["train-generator", "glow", "--resume", str(out), "--iterations", "3"]) == 0
    assert len(calls) == 1 + 1  # continued at iteration 3 instead of starting over (+1: test bits/dim)
    state = torch.load(out / "checkpoint.pt", weights_only=True)
    assert state["iteration"] == 3 and state["arguments"]["width"] == 8
    assert state["optimizer"]["state"][0]["step"] == before["optimizer"]["state"][0]["step"] + 1
    assert "test bits/dim" in capsys.readouterr().out


def test_init_from_trains_further_and_the_new_run_resumes(folder, tmp_path, capsys):
    base = tmp_path / "base"
    assert _train(folder, base, "--iterations", "2") == 0
    released = Glow.load(base / "generator.safetensors").state_dict()
    for source, origin in ((base / "generator.safetensors", "the optimiser fresh"),
                           (base / "checkpoint.pt", "trained 2 iterations there")):
        further = tmp_path / f"further-{source.suffix[1:]}"
        assert _train(folder, further, "--iterations", "1", "--init-from", str(source)) == 0
        assert origin in capsys.readouterr().err
        state = torch.load(further / "checkpoint.pt", weights_only=True)
        assert state["iteration"] == 1  # a new run, counted from 0
        moved = max((state["model"][k].float() - released[k].float()).abs().max().item() for k in released)
        assert 0 < moved < 0.05  # one small step from the source's weights, not a fresh initialisation
        assert all(bool(state["model"][k]) for k in released if k.endswith("initialized"))
        steps = state["optimizer"]["state"][0]["step"]
        assert steps == (3 if source.suffix == ".pt" else 1)  # the checkpoint's Adam state continues
    # resuming the new run continues its own weights; where it started from is not applied again
    assert main(["train-generator", "glow", "--resume", str(further), "--iterations", "2"]) == 0
    state = torch.load(further / "checkpoint.pt", weights_only=True)
    assert state["iteration"] == 2 and state["optimizer"]["state"][0]["step"] == 4
    assert "training further" not in capsys.readouterr().err


def test_nan_guard_stops_without_writing_a_broken_checkpoint(folder, tmp_path, monkeypatch, capsys):
    calls = {"n": 0}
    real = Glow.bits_per_dim

    def flaky(self, images):
        calls["n"] += 1
        out = real(self, images)
        return out * float("nan") if calls["n"] >= 3 else out

    monkeypatch.setattr(Glow, "bits_per_dim", flaky)
    out = tmp_path / "run"
    assert _train(folder, out, "--iterations", "5", "--checkpoint-every", "1") == 1
    err = capsys.readouterr().err
    assert "diverged" in err and "iteration 2" in err and "--lr" in err
    state = torch.load(out / "checkpoint.pt", weights_only=True)
    assert state["iteration"] == 2
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())
    assert not (out / "generator.safetensors").exists()
