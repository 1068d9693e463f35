"""A latent cache never lies: each kind of damaged file is rebuilt from the last good chunk or refused clearly."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch
from torch.utils.data import TensorDataset

from tests.latent_helpers import FlakyEncoder
from torch_semaug.data import LatentCache

N, BATCH, CHUNK_BATCHES = 20, 2, 2  # 5 chunks of 4 rows


def _data() -> TensorDataset:
    g = torch.Generator().manual_seed(0)
    return TensorDataset(torch.rand(N, 3, 8, 8, generator=g), torch.randint(0, 3, (N,), generator=g))


def _build(path, encoder):
    return LatentCache.build(_data(), encoder, path, batch_size=BATCH, chunk_batches=CHUNK_BATCHES, progress=False)


def _interrupted(path, chunks_done: int) -> None:
    """An unfinished build with ``chunks_done`` chunks written (call 1 probes the latent shape)."""
    with pytest.raises(KeyboardInterrupt):
        _build(path, FlakyEncoder(fail_at=2 + CHUNK_BATCHES * chunks_done))
    assert json.loads((path / "progress.0.json").read_text())["done"] == list(range(chunks_done))


@pytest.fixture
def clean(tmp_path):
    return _build(tmp_path / "clean", FlakyEncoder()).array


def test_truncated_partial_file_is_rebuilt_from_the_last_good_chunk(tmp_path, clean, capsys):
    path = tmp_path / "c"
    _interrupted(path, chunks_done=3)
    partial = path / "latents.npy.partial"
    header = os.path.getsize(partial) - N * 6 * 4
    os.truncate(partial, header + 6 * 4 * 9)  # rows 0-8 survive: chunks 0 and 1 whole, chunk 2 cut
    resumed = FlakyEncoder()
    cache = _build(path, resumed)
    assert resumed.calls == 1 + CHUNK_BATCHES * 3  # shape probe + chunks 2, 3, 4: chunk 2 is encoded again
    assert "truncated (9 of 20 rows on disk); encoding chunks [2] again" in capsys.readouterr().out
    assert np.array_equal(cache.array, clean) and np.abs(cache.array[8:12]).sum() > 0  # no zero rows kept


def test_corrupted_progress_record_does_not_block_a_rerun(tmp_path, clean, capsys):
    path = tmp_path / "c"
    _interrupted(path, chunks_done=2)
    (path / "progress.0.json").write_text('{"done": [0, 1')  # a half-written record
    cache = _build(path, FlakyEncoder())
    assert "ignoring the damaged progress record" in capsys.readouterr().out
    assert np.array_equal(cache.array, clean)


def test_progress_record_naming_chunks_that_do_not_exist_is_ignored(tmp_path, clean, capsys):
    path = tmp_path / "c"
    _interrupted(path, chunks_done=1)
    record = json.loads((path / "progress.0.json").read_text())
    (path / "progress.0.json").write_text(json.dumps(record | {"done": [0, 7]}))
    rerun = FlakyEncoder()
    cache = _build(path, rerun)
    assert rerun.calls == 1 + CHUNK_BATCHES * 5 and np.array_equal(cache.array, clean)


def test_partial_file_of_another_shape_starts_again(tmp_path, clean, capsys):
    path = tmp_path / "c"
    _interrupted(path, chunks_done=2)
    np.save(path / "latents.npy.partial", np.zeros((N, 5), dtype=np.float32), allow_pickle=False)
    os.replace(path / "latents.npy.partial.npy", path / "latents.npy.partial")
    cache = _build(path, FlakyEncoder())
    assert "does not hold a (20, 6) float32 array; starting again" in capsys.readouterr().out
    assert np.array_equal(cache.array, clean)


def test_kill_between_the_final_rename_and_meta_json_resumes(tmp_path, clean):
    path = tmp_path / "c"
    _interrupted(path, chunks_done=4)
    os.replace(path / "latents.npy.partial", path / "latents.npy")  # the final name, but no meta.json yet
    rerun = FlakyEncoder()
    cache = _build(path, rerun)
    assert rerun.calls == 1 + CHUNK_BATCHES and np.array_equal(cache.array, clean)  # only chunk 4 encoded


def _finished(tmp_path):
    path = tmp_path / "c"
    _build(path, FlakyEncoder())
    return path


def test_truncated_meta_json_is_refused_naming_the_file(tmp_path):
    path = _finished(tmp_path)
    text = (path / "meta.json").read_text()
    (path / "meta.json").write_text(text[: len(text) // 2])
    with pytest.raises(ValueError, match=r"meta.json' is damaged \(not valid JSON.*delete the directory and run"):
        LatentCache.open(path)


def test_meta_json_missing_fields_is_refused(tmp_path):
    path = _finished(tmp_path)
    meta = json.loads((path / "meta.json").read_text())
    (path / "meta.json").write_text(json.dumps({k: v for k, v in meta.items() if k != "shape"}))
    with pytest.raises(ValueError, match=r"meta.json' is damaged \(missing or invalid fields\)"):
        LatentCache.open(path)


def test_latents_with_fewer_rows_than_meta_says_are_refused(tmp_path):
    path = _finished(tmp_path)
    np.save(path / "latents.npy", np.ones((N - 5, 6), dtype=np.float32))
    with pytest.raises(ValueError, match=r"holds an array of shape \(15, 6\), but meta.json says \(20, 6\)"):
        LatentCache.open(path)


def test_latents_cut_short_under_an_intact_header_are_refused(tmp_path):
    path = _finished(tmp_path)
    size = os.path.getsize(path / "latents.npy")
    os.truncate(path / "latents.npy", size - 6 * 4 * 5)
    with pytest.raises(ValueError, match=rf"latents.npy' has {size - 120} bytes, expected {size} .*truncated"):
        LatentCache.open(path)


def test_object_dtype_latents_are_refused(tmp_path):
    path = _finished(tmp_path)
    np.save(path / "latents.npy", np.array([[object()] * 6] * N, dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match="latents.npy' holds object values, expected float32"):
        LatentCache.open(path)


def test_garbage_latents_file_is_refused(tmp_path):
    path = _finished(tmp_path)
    (path / "latents.npy").write_bytes(b"not numpy at all")
    with pytest.raises(ValueError, match="latents.npy' is not a readable .npy file"):
        LatentCache.open(path)
