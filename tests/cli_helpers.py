"""Run the ``semaug`` command in-process and check how it treats a user's mistake."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from torch_semaug.cli import USAGE_ERROR, main


@dataclass
class CliResult:
    code: int
    out: str
    err: str


def run_semaug(argv: list[str], capsys: pytest.CaptureFixture[str]) -> CliResult:
    """``semaug *argv`` in this process; argparse's ``SystemExit`` becomes the exit code."""
    try:
        code = main([str(a) for a in argv])
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else 1
    captured = capsys.readouterr()
    return CliResult(code, captured.out, captured.err)


def assert_usage_error(argv: list[str], capsys: pytest.CaptureFixture[str], *fragments: str) -> CliResult:
    """``semaug *argv`` must exit 2 with one ``error:`` line (progress lines may precede it) containing every
    fragment, and no traceback."""
    result = run_semaug(argv, capsys)
    lines = [line for line in result.err.splitlines() if "error:" in line]
    assert result.code == USAGE_ERROR, f"exit {result.code} for {argv}; stderr: {result.err!r}"
    assert "Traceback" not in result.err, result.err
    assert len(lines) == 1, f"expected one error line for {argv}, got {result.err!r}"
    for fragment in fragments:
        assert fragment in lines[0], f"{fragment!r} not in {lines[0]!r}"
    return result
