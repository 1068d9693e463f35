"""Both generator trainers: a run SIGKILLed while writing a checkpoint, resumed with `--resume` alone, ends with
the weights of a run that was never stopped, and no temporary file survives."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
import torch
from safetensors.torch import load_file

from torch_semaug.cli import main

STYLEGAN2 = ["stylegan2", "--data", "colormnist:tiny@16", "--resolution", "16", "-b", "4", "--z-dim", "8", "--w-dim",
             "8", "--mapping-layers", "2", "--channel-base", "64", "--channel-max", "8", "--r1-every", "2",
             "--mixing-prob", "0.5", "--mirror"]
GLOW = ["glow", "--data", "demo-shapes@16", "--scale", "smoke", "-b", "4", "--width", "8", "--warmup", "2"]
COMMON = ["--iterations", "6", "--checkpoint-every", "2", "--sample-every", "3", "--threads", "1", "--device", "cpu",
          "--no-progress"]

# Runs `semaug ARGS...` and SIGKILLs itself in the middle of the second checkpoint write (iteration 4): the
# temporary file is complete but not yet renamed, as when a job is killed during a save.
KILLED_RUN = textwrap.dedent("""
    import os, signal, sys, torch
    from torch_semaug.cli import main
    real_save, calls = torch.save, []
    def save(obj, f, *args, **kwargs):
        real_save(obj, f, *args, **kwargs)
        if isinstance(obj, dict) and "rng" in obj:
            calls.append(obj["iteration"])
            if len(calls) == 2:
                os.kill(os.getpid(), signal.SIGKILL)
    torch.save = save
    sys.exit(main(sys.argv[1:]))
""")


def _weights(folder) -> dict[str, torch.Tensor]:
    return load_file(str(folder / "generator.safetensors"))


@pytest.mark.parametrize("kind_args", [STYLEGAN2, GLOW], ids=["stylegan2", "glow"])
def test_killed_and_resumed_run_equals_the_uninterrupted_one(kind_args, tmp_path, capsys):
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    assert main(["train-generator", *kind_args, "--out", str(whole), *COMMON]) == 0
    env = dict(os.environ, OMP_NUM_THREADS="1")
    process = subprocess.run([sys.executable, "-c", KILLED_RUN, "train-generator", *kind_args, "--out", str(killed),
                              *COMMON], cwd=os.getcwd(), env=env, capture_output=True, text=True, timeout=120)
    assert process.returncode == -9, process.stderr
    assert torch.load(killed / "checkpoint.pt", weights_only=True)["iteration"] == 2
    assert [p.name for p in killed.glob(".checkpoint.pt.*.tmp")]  # what the kill left behind
    assert main(["train-generator", kind_args[0], "--resume", str(killed / "checkpoint.pt")]) == 0
    assert "left by a killed write" in capsys.readouterr().out
    assert not list(killed.rglob("*.tmp"))
    assert torch.load(killed / "checkpoint.pt", weights_only=True)["iteration"] == 6
    expected, found = _weights(whole), _weights(killed)
    assert expected.keys() == found.keys()
    for name in expected:
        assert torch.equal(expected[name], found[name]), name
