"""The command line, the benchmark smoke scale and the examples run end to end."""

from __future__ import annotations

import runpy
import subprocess
import sys
from pathlib import Path

import pytest

import torch_semaug
from torch_semaug import cli

ROOT = Path(__file__).resolve().parents[1]


def test_version_and_info(capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["--version"])
    assert exit_info.value.code == 0
    assert torch_semaug.__version__ in capsys.readouterr().out
    assert cli.main(["info"]) == 0
    out = capsys.readouterr().out
    assert "torch:" in out and "cpu threads:" in out


def test_console_script_is_installed() -> None:
    result = subprocess.run([sys.executable, "-m", "torch_semaug.cli", "--version"], capture_output=True,
                            text=True, check=True)
    assert result.stdout.strip() == f"torch-semaug {torch_semaug.__version__}"


def test_unknown_subcommand_fails() -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["no-such-command"])
    assert exit_info.value.code == 2


def test_speed_benchmark_smoke(tmp_path) -> None:
    from benchmarks import speed

    out = tmp_path / "speed.md"
    rows = speed.main(["--scale", "smoke", "--cases", "adversarial_latent_attack", "--out", str(out)])
    assert {r.transform for r in rows} == {"adversarial_latent_attack"}
    assert all(r.seconds > 0 and r.floor_seconds > 0 for r in rows)
    assert "| adversarial_latent_attack |" in out.read_text()


def test_quickstart_example_runs(capsys) -> None:
    runpy.run_path(str(ROOT / "examples" / "quickstart.py"), run_name="__main__")
    assert "under attack" in capsys.readouterr().out
