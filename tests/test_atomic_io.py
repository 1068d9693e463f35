"""Files written atomically keep the user's umask, also when the writer replaces the temporary file
(safetensors' save_file creates a new 0600 file)."""

from __future__ import annotations

import os
import stat

import pytest
import torch
from safetensors.torch import save_file

from torch_semaug import IdentityGenerator
from torch_semaug._io import write_atomic
from torch_semaug.generators import save_generator
from torch_semaug.train.checkpoint import save_checkpoint


@pytest.fixture(params=[0o022, 0o027, 0o002])
def umask(request):
    previous = os.umask(request.param)
    yield request.param
    os.umask(previous)


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_safetensors_and_torch_files_get_the_umask_permissions(tmp_path, umask):
    expected = 0o666 & ~umask
    save_generator(IdentityGenerator((3, 8, 8)), tmp_path / "g.safetensors")
    write_atomic(tmp_path / "raw.safetensors", lambda tmp: save_file({"a": torch.zeros(2)}, str(tmp)))
    save_checkpoint(tmp_path / "last.pth", model={"w": torch.zeros(1)})
    for name in ("g.safetensors", "raw.safetensors", "last.pth"):
        assert mode(tmp_path / name) == expected, f"{name}: {oct(mode(tmp_path / name))} != {oct(expected)}"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["g.safetensors", "last.pth", "raw.safetensors"]


def test_a_failed_write_leaves_no_temporary(tmp_path, umask):
    def fail(tmp):
        save_file({"a": torch.zeros(2)}, str(tmp))
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        write_atomic(tmp_path / "x.safetensors", fail)
    assert list(tmp_path.iterdir()) == []
