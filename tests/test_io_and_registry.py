"""Atomic writes, the transform registry, and loading generator checkpoints of every format by content."""

from __future__ import annotations

import argparse
import inspect
import math
import os
import pathlib
import re
import stat

import pytest
import torch

import torch_semaug as ts
from tests.conftest import make_tiny_stylegan2
from torch_semaug._io import write_text_atomic
from torch_semaug.generators import load_generator
from torch_semaug.generators.stylegan2_layers import blur_kernel


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


def _to_rosinality(g: ts.StyleGAN2) -> dict[str, torch.Tensor]:
    """Our StyleGAN2 in rosinality's ``g_ema`` layout (the inverse of the importer's renaming)."""
    parts = {"conv.weight": "conv.weight", "conv.affine.weight": "conv.modulation.weight",
             "conv.affine.bias": "conv.modulation.bias", "noise_strength": "noise.weight"}
    blur = blur_kernel(gain=4.0)
    out = {"input.input": g.synthesis.const.detach()}
    for key, value in g.state_dict().items():
        found = re.fullmatch(r"mapping_network\.fc(\d+)\.(.+)", key)
        if found:
            out[f"style.{int(found[1]) + 1}.{found[2]}"] = value
        found = re.fullmatch(r"synthesis\.b(\d+)\.(conv0|conv1|torgb)\.(.+)", key)
        if not found:
            continue
        j, layer, part = int(math.log2(int(found[1]))) - 3, found[2], found[3]
        name = {"conv1": "conv1", "torgb": "to_rgb1"}[layer] if j < 0 else (
            f"to_rgbs.{j}" if layer == "torgb" else f"convs.{2 * j + int(layer[-1])}")
        if part == "noise_const":
            out[f"noises.noise_{0 if j < 0 else 2 * j + 1 + int(layer[-1])}"] = value
        elif part == "bias":
            out[f"{name}.bias" if layer == "torgb" else f"{name}.activate.bias"] = (
                value.reshape(1, -1, 1, 1) if layer == "torgb" else value)
        else:
            out[f"{name}.{parts[part]}"] = value[None] if part == "conv.weight" else value
        if j >= 0 and layer == "conv0" and part == "bias":
            out[f"convs.{2 * j}.conv.blur.kernel"] = blur
            out[f"to_rgbs.{j}.upsample.kernel"] = blur
    return out


def _same_images(a: ts.StyleGAN2, b: ts.StyleGAN2) -> bool:
    w_plus = b.sample_latent(2, torch.Generator().manual_seed(0)) + 0.3
    z = torch.randn(2, b.z_dim, generator=torch.Generator().manual_seed(1))
    return torch.allclose(a.decode(w_plus), b.decode(w_plus), atol=1e-5) and torch.allclose(a.mapping(z), b.mapping(z))


def test_rosinality_train_checkpoint_loads_as_it_is(tmp_path):
    # what rosinality's train.py saves: both generators, D, optimiser states and its argparse Namespace
    g = make_tiny_stylegan2(seed=5)
    state = _to_rosinality(g)
    checkpoint = {"g": state, "d": {"convs.0.0.weight": torch.randn(4, 3, 1, 1)}, "g_ema": state,
                  "g_optim": {"state": {}, "param_groups": [{"lr": 0.002, "betas": (0.0, 0.99)}]}, "d_optim": {},
                  "args": argparse.Namespace(size=16, latent=16, n_mlp=2, path="lmdb/", channel_multiplier=2),
                  "ada_aug_p": 0.0}
    torch.save(checkpoint, tmp_path / "050000.pt")
    loaded = ts.load_generator(tmp_path / "050000.pt")
    assert isinstance(loaded, ts.StyleGAN2) and _same_images(loaded, g)
    checkpoint["args"].path = pathlib.PurePosixPath("lmdb")  # any other global is still refused
    torch.save(checkpoint, tmp_path / "other-global.pt")
    with pytest.raises(ValueError, match="PurePosixPath"):
        ts.load_generator(tmp_path / "other-global.pt")


def test_load_generator_recognises_the_format_by_content_not_name(tmp_path):
    g = make_tiny_stylegan2(seed=6)
    g.save(tmp_path / "ours.pkl")
    torch.save({"g_ema": _to_rosinality(g), "latent_avg": g.w_avg}, tmp_path / "rosinality.safetensors")
    torch.save({"g_ema": _to_rosinality(g)}, tmp_path / "legacy.bin", _use_new_zipfile_serialization=False)
    for name in ("ours.pkl", "rosinality.safetensors", "legacy.bin"):
        assert _same_images(ts.load_generator(tmp_path / name), g), name
    assert torch.equal(ts.load_generator(tmp_path / "rosinality.safetensors").w_avg, g.w_avg)
    with pytest.raises(ValueError, match="expected a 'glow' generator checkpoint, got a 'stylegan2'"):
        load_generator(tmp_path / "rosinality.safetensors", kind="glow")
    for junk in (b"", b"hello world, not a model", b"\x80\x06future pickle"):
        (tmp_path / "junk.safetensors").write_bytes(junk)
        with pytest.raises(ValueError, match="is not a generator checkpoint: expected a torch_semaug .safetensors"):
            ts.load_generator(tmp_path / "junk.safetensors")
    with pytest.raises(FileNotFoundError, match="no generator checkpoint"):
        ts.load_generator(tmp_path / "missing.pt")
