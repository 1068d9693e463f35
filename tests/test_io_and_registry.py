"""Atomic writes and the transform registry."""

from __future__ import annotations

import inspect
import os
import stat

import pytest

import torch_semaug as ts
from torch_semaug._io import write_text_atomic


def test_atomic_write_has_ordinary_permissions_and_leaves_nothing_on_failure(tmp_path) -> None:
    path = write_text_atomic(tmp_path / "a.md", "hello")
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask
    with pytest.raises(RuntimeError):
        from torch_semaug._io import write_atomic

        def fail(tmp):
            tmp.write_text("half")
            raise RuntimeError("interrupted")

        write_atomic(tmp_path / "b.md", fail)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.md"]


@pytest.mark.parametrize("name", ts.list_transforms())
def test_every_transform_takes_the_generator_first_positionally(name) -> None:
    # create() passes the generator positionally, whatever the transform calls it.
    first = next(iter(inspect.signature(ts.transforms.get_transform_class(name)).parameters.values()))
    assert first.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD


def test_create_flow_perturb_by_keyword() -> None:
    glow = ts.Glow((1, 8, 8), levels=1, steps=1, width=4)
    t = ts.create("flow_perturb", generator=glow, mode="random", eps=0.1)
    assert isinstance(t, ts.FlowPerturb) and t.generator is glow


def test_unknown_name_lists_the_valid_ones() -> None:
    with pytest.raises(ValueError, match="latent_mix"):
        ts.create("no_such_transform", generator=ts.IdentityGenerator((3, 8, 8)))
