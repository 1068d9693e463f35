"""The DirectionEdit speed case and the discovery timing benchmark run end to end at smoke size."""

from __future__ import annotations

import pytest


def test_speed_case_direction_edit(tmp_path) -> None:
    from benchmarks import speed

    rows = speed.main(["--scale", "smoke", "--cases", "direction_edit", "--out", str(tmp_path / "s.md")])
    assert [r.transform for r in rows] == ["direction_edit", "direction_edit"]
    assert all(r.seconds > 0 and r.floor_seconds > 0 for r in rows)
    assert "| direction_edit |" in (tmp_path / "s.md").read_text()


@pytest.mark.slow
def test_discovery_timing(tmp_path) -> None:
    from benchmarks import speed_directions as bench

    rows = bench.main(["--num-samples", "300", "--n-components", "3", "--out", str(tmp_path / "d.md")])
    assert {m for m, _, _ in rows} >= {"pca", "umap"} and all(t > 0 for _, _, t in rows)
    assert "| pca | w |" in (tmp_path / "d.md").read_text()
