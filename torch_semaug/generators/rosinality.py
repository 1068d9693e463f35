"""Import checkpoints of rosinality's ``stylegan2-pytorch`` (https://github.com/rosinality/stylegan2-pytorch).

That format — a ``.pt`` file holding ``g_ema`` (the generator's state dict) and usually ``latent_avg`` — is
the one most public PyTorch StyleGAN2 checkpoints use (its ``convert_weight.py`` turns the official
TensorFlow pickles into it). Its parameters follow the same equalised-learning-rate convention as
:mod:`~torch_semaug.generators.stylegan2_layers`, so importing is renaming and reshaping:

================================  ==============================================
rosinality key                    torch_semaug key
================================  ==============================================
``style.{i+1}.weight/bias``       ``mapping_network.fc{i}.weight/bias``
``input.input``                   ``synthesis.const``
``conv1.*``, ``noises.noise_0``   ``synthesis.b4.conv1.*``
``to_rgb1.*``                     ``synthesis.b4.torgb.*``
``convs.{2j}``, ``convs.{2j+1}``  ``synthesis.b{8*2^j}.conv0``, ``.conv1``
``noises.noise_{2j+1}/{2j+2}``    their ``noise_const``
``to_rgbs.{j}``                   ``synthesis.b{8*2^j}.torgb``
``latent_avg``                    ``w_avg``
================================  ==============================================

Inside a layer: ``conv.weight (1, out, in, k, k)`` -> ``conv.weight (out, in, k, k)``,
``conv.modulation`` -> ``conv.affine``, ``noise.weight`` -> ``noise_strength``, ``activate.bias`` ->
``bias``, ToRGB ``bias (1, C, 1, 1)`` -> ``(C,)``. The fixed blur kernels (``*.blur.kernel``,
``*.upsample.kernel``) are checked to be the standard [1, 3, 3, 1] filter and dropped.
"""

from __future__ import annotations

import argparse
import os
import re
from typing import Any

import torch
from torch import Tensor

from torch_semaug._checks import describe
from torch_semaug.generators.io import load_state_checked
from torch_semaug.generators.stylegan2 import StyleGAN2
from torch_semaug.generators.stylegan2_layers import blur_kernel

_LAYER_PARTS = {
    "conv.weight": "conv.weight",
    "conv.modulation.weight": "conv.affine.weight",
    "conv.modulation.bias": "conv.affine.bias",
    "noise.weight": "noise_strength",
    "activate.bias": "bias",
    "bias": "bias",
}


def _read(source: Any) -> tuple[dict[str, Tensor], Tensor | None, str]:
    if isinstance(source, str | os.PathLike):
        name = os.fspath(source)
        if not os.path.isfile(name):
            raise FileNotFoundError(f"path_or_state_dict: no file at {name!r}")
        try:
            # train.py checkpoints also pickle its argparse Namespace ('args'): the one extra global allowed.
            # (an open file, not the name: torch.load would treat a '.safetensors' name as safetensors)
            with torch.serialization.safe_globals([argparse.Namespace]), open(name, "rb") as handle:
                source = torch.load(handle, map_location="cpu", weights_only=True)
        except Exception as error:  # noqa: BLE001 - any unpickling refusal or damage is reported the same way
            raise ValueError(
                f"path_or_state_dict: could not load {name!r} with torch.load(weights_only=True) ({error})"
            ) from None
    else:
        name = "<state dict>"
    if not isinstance(source, dict):
        raise TypeError(f"path_or_state_dict: expected a checkpoint dict or a path, got {describe(source)}")
    latent_avg = source.get("latent_avg")
    state = source.get("g_ema", source)
    if not isinstance(state, dict) or "style.1.weight" not in state or "conv1.conv.weight" not in state:
        raise ValueError(
            f"checkpoint {name!r} is not a rosinality stylegan2-pytorch generator: expected a 'g_ema' state dict "
            f"with keys like 'style.1.weight' and 'conv1.conv.weight', got keys {sorted(state)[:8]}"
        )
    return state, latent_avg, name


def _infer_config(state: dict[str, Tensor], name: str) -> dict[str, Any]:
    n_mlp = sum(1 for k in state if re.fullmatch(r"style\.\d+\.weight", k))
    n_rgbs = sum(1 for k in state if re.fullmatch(r"to_rgbs\.\d+\.conv\.weight", k))
    resolution = 4 * 2**n_rgbs
    channels = {4: int(state["conv1.conv.weight"].shape[1])}
    for j in range(n_rgbs):
        key = f"convs.{2 * j}.conv.weight"
        if key not in state:
            raise ValueError(f"checkpoint {name!r} does not match StyleGAN2: missing keys [{key!r}]")
        channels[8 * 2**j] = int(state[key].shape[1])
    style_dim = int(state["style.1.weight"].shape[1])
    return dict(resolution=resolution, z_dim=style_dim, w_dim=style_dim, mapping_layers=n_mlp, channels=channels,
                image_channels=int(state["to_rgb1.conv.weight"].shape[1]))


def convert_state_dict(state: dict[str, Tensor], resolution: int, name: str = "<state dict>") -> dict[str, Tensor]:
    """Rename and reshape a rosinality ``g_ema`` state dict into :class:`StyleGAN2` keys (w_avg not included)."""
    out: dict[str, Tensor] = {}
    unknown: list[str] = []
    standard_blur = blur_kernel(gain=4.0)
    blocks = [2**i for i in range(3, resolution.bit_length())]
    for key, value in state.items():
        if key.endswith(".kernel"):
            if value.shape != standard_blur.shape or not torch.allclose(value.float(), standard_blur, atol=1e-6):
                raise ValueError(f"checkpoint {name!r}: {key} is not the standard [1, 3, 3, 1] blur filter; "
                                 "other filters are not supported")
            continue
        match = re.fullmatch(r"style\.(\d+)\.(weight|bias)", key)
        if match:
            out[f"mapping_network.fc{int(match[1]) - 1}.{match[2]}"] = value
            continue
        if key == "input.input":
            out["synthesis.const"] = value
            continue
        match = re.fullmatch(r"noises\.noise_(\d+)", key)
        if match:
            index = int(match[1])
            block = 4 if index == 0 else blocks[(index - 1) // 2] if (index - 1) // 2 < len(blocks) else None
            if block is None:
                unknown.append(key)
                continue
            layer = "conv1" if index == 0 or index % 2 == 0 else "conv0"
            out[f"synthesis.b{block}.{layer}.noise_const"] = value
            continue
        match = re.fullmatch(r"(conv1|to_rgb1|convs\.(\d+)|to_rgbs\.(\d+))\.(.+)", key)
        if match is None or match[4] not in _LAYER_PARTS:
            unknown.append(key)
            continue
        module, conv_index, rgb_index, part = match[1], match[2], match[3], match[4]
        if module == "conv1":
            prefix = "synthesis.b4.conv1"
        elif module == "to_rgb1":
            prefix = "synthesis.b4.torgb"
        elif conv_index is not None:
            j = int(conv_index)
            if j // 2 >= len(blocks):
                unknown.append(key)
                continue
            prefix = f"synthesis.b{blocks[j // 2]}.conv{j % 2}"
        else:
            j = int(rgb_index)
            if j >= len(blocks):
                unknown.append(key)
                continue
            prefix = f"synthesis.b{blocks[j]}.torgb"
        if part == "conv.weight":
            value = value[0] if value.ndim == 5 else value
        elif part == "bias" and value.ndim == 4:
            value = value.flatten()
        out[f"{prefix}.{_LAYER_PARTS[part]}"] = value
    if unknown:
        raise ValueError(f"checkpoint {name!r} does not match StyleGAN2: unexpected keys {sorted(unknown)[:10]}")
    return out


def load_rosinality(path_or_state_dict: Any, *, mapping_lr_mul: float = 0.01, noise_mode: str = "const",
                    device: str | torch.device = "cpu") -> StyleGAN2:
    """Build a frozen :class:`StyleGAN2` from a rosinality checkpoint (path or loaded dict).

    Args:
        path_or_state_dict: a ``.pt`` path (loaded with ``weights_only=True``; a ``train.py`` checkpoint as it
            is, its ``argparse.Namespace`` allowed), a dict with ``g_ema`` (and optionally ``latent_avg``), or a
            bare ``g_ema`` state dict.
        mapping_lr_mul: the ``lr_mlp`` the checkpoint was trained with (0.01 unless changed); it enters
            the mapping network's forward pass.
        noise_mode: noise of the imported generator (``"const"`` uses the checkpoint's fixed noises).
        device: where to put the generator.

    Raises:
        ValueError: naming the missing, unexpected or mis-sized keys of a checkpoint that does not match.
    """
    state, latent_avg, name = _read(path_or_state_dict)
    config = _infer_config(state, name)
    generator = StyleGAN2(**config, mapping_lr_mul=mapping_lr_mul, noise_mode=noise_mode)
    converted = convert_state_dict(state, config["resolution"], name)
    if latent_avg is not None:
        converted["w_avg"] = torch.as_tensor(latent_avg).reshape(-1)
    else:
        # Without latent_avg, estimate it as the official code does: the mean of map(z) over many z.
        converted["w_avg"] = torch.zeros(config["w_dim"])
    converted = {k: v.float() for k, v in converted.items()}
    load_state_checked(generator, converted, name)
    if latent_avg is None:
        estimate_w_avg(generator)
    return generator.to(device).freeze()


@torch.no_grad()
def estimate_w_avg(generator: StyleGAN2, samples: int = 4096) -> None:
    """Set ``w_avg`` to the mean of ``mapping(z)`` over ``samples`` seeded draws (for files that lack it)."""
    z = torch.randn(samples, generator.z_dim, generator=torch.Generator().manual_seed(0))
    generator.w_avg.copy_(generator.mapping(z.to(generator.w_avg.device)).mean(0))
