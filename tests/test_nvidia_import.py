"""NVIDIA stylegan2-ada-pytorch snapshots: the persistence format written here, without NVIDIA's code.

:func:`write_snapshot` exports a StyleGAN2 of ours into NVIDIA's module layout (the inverse of the importer's
mapping, written independently) and pickles it as their training loop does: every network a
``torch_utils.persistence._reconstruct_persistent_obj(meta)`` call whose meta carries the module source, the
class name and the ``__dict__`` (parameters through ``torch._utils``, storages through
``torch.storage._load_from_bytes``, ``dnnlib.util.EasyDict`` kwargs, numpy scalars). The ``torch_utils`` and
``dnnlib`` modules exist only while pickling: throwaway stand-ins, removed afterwards.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import sys
import types
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from tests.cli_helpers import assert_usage_error, run_semaug
from tests.conftest import TINY_STYLEGAN2, make_tiny_stylegan2
from torch_semaug import load_generator
from torch_semaug.generators.nvidia import PersistentRecord, read_snapshot
from torch_semaug.generators.stylegan2 import StyleGAN2

FILTER = torch.tensor([1.0, 3, 3, 1])[:, None] * torch.tensor([1.0, 3, 3, 1])[None] / 64


@contextlib.contextmanager
def _nvidia_stand_ins():
    """Register fake ``torch_utils.persistence`` and ``dnnlib.util`` modules for as long as pickling takes."""
    persistence = types.ModuleType("torch_utils.persistence")
    util = types.ModuleType("dnnlib.util")

    def _reconstruct_persistent_obj(meta):  # what the pickle names; never called by the importer
        raise AssertionError("the importer must not call NVIDIA's reconstructor")

    class EasyDict(dict):
        pass

    _reconstruct_persistent_obj.__module__ = persistence.__name__
    _reconstruct_persistent_obj.__qualname__ = "_reconstruct_persistent_obj"
    EasyDict.__module__, EasyDict.__qualname__ = util.__name__, "EasyDict"
    persistence._reconstruct_persistent_obj = _reconstruct_persistent_obj
    util.EasyDict = EasyDict
    fakes = {"torch_utils": types.ModuleType("torch_utils"), "torch_utils.persistence": persistence,
             "dnnlib": types.ModuleType("dnnlib"), "dnnlib.util": util}
    assert not set(fakes) & set(sys.modules)
    sys.modules.update(fakes)
    try:
        yield _reconstruct_persistent_obj, EasyDict
    finally:
        for name in fakes:
            sys.modules.pop(name)


class _Persistent:
    """Pickles as NVIDIA's persistent classes do: ``(_reconstruct_persistent_obj, (meta,))``."""

    def __init__(self, reconstruct, meta: dict[str, Any]) -> None:
        self.reconstruct, self.meta = reconstruct, meta

    def __reduce__(self):
        return self.reconstruct, (self.meta,)


class _Writer:
    """Builds the persistent records of one snapshot (an nn.Module's ``__dict__`` as NVIDIA pickles it)."""

    def __init__(self, reconstruct, easydict: type, source: str) -> None:
        self.reconstruct, self.easydict, self.source = reconstruct, easydict, source

    def record(self, class_name: str, kwargs: dict[str, Any], params=(), buffers=(), modules=(), **attrs):
        state = dict(training=False, _parameters=OrderedDict((k, nn.Parameter(v.clone(), requires_grad=False))
                                                            for k, v in dict(params).items()),
                     _buffers=OrderedDict((k, v.clone()) for k, v in dict(buffers).items()),
                     _non_persistent_buffers_set=set(), _backward_hooks=OrderedDict(), _forward_hooks=OrderedDict(),
                     _forward_pre_hooks=OrderedDict(), _modules=OrderedDict(modules), _init_args=(),
                     _init_kwargs=self.easydict(kwargs), **attrs)
        meta = dict(type="class", version=6, module_src=self.source, class_name=class_name, state=state)
        return _Persistent(self.reconstruct, meta)

    def fc(self, weight, bias, lr: float = 1.0, activation: str = "linear"):
        fan_in = weight.shape[1]
        return self.record("FullyConnectedLayer", dict(in_features=fan_in, out_features=weight.shape[0],
                                                       lr_multiplier=lr), dict(weight=weight, bias=bias),
                           activation=activation, weight_gain=np.float64(lr / np.sqrt(fan_in)), bias_gain=lr)

    def layer(self, s: dict[str, torch.Tensor], prefix: str, res: int, noise: bool, clamp: float | None):
        noise_part = dict(noise_const=s[f"{prefix}.noise_const"].reshape(res, res)) if noise else {}
        params = dict(weight=s[f"{prefix}.conv.weight"], bias=s[f"{prefix}.bias"])
        if noise:
            params["noise_strength"] = s[f"{prefix}.noise_strength"].reshape(())
        affine = self.fc(s[f"{prefix}.conv.affine.weight"], s[f"{prefix}.conv.affine.bias"])
        return self.record("SynthesisLayer", dict(resolution=res), params, dict(resample_filter=FILTER, **noise_part),
                           dict(affine=affine), act_gain=np.float64(np.sqrt(2)), use_noise=noise, conv_clamp=clamp,
                           activation="lrelu")

    def torgb(self, s: dict[str, torch.Tensor], prefix: str, clamp: float | None):
        weight = s[f"{prefix}.conv.weight"]
        affine = self.fc(s[f"{prefix}.conv.affine.weight"], s[f"{prefix}.conv.affine.bias"])
        return self.record("ToRGBLayer", {}, dict(weight=weight, bias=s[f"{prefix}.bias"]), modules=dict(affine=affine),
                           weight_gain=np.float64(1 / np.sqrt(weight.shape[1])), conv_clamp=clamp)


def export_generator(w: _Writer, g: StyleGAN2, kwargs: dict[str, Any], synth: dict[str, Any], stylegan3: bool):
    """Our StyleGAN2 -> NVIDIA's Generator record (mapping, synthesis blocks, layers, toRGBs); ``synth`` is what
    the synthesis network was built with."""
    s = {k: v.detach() for k, v in g.state_dict().items()}
    noise, orig = synth.get("use_noise", True), synth.get("architecture") == "orig"
    fcs = {f"fc{i}": w.fc(s[f"mapping_network.fc{i}.weight"], s[f"mapping_network.fc{i}.bias"], g.mapping_lr_mul,
                          "lrelu") for i in range(g.mapping_layers)}
    mapping = w.record("MappingNetwork", dict(num_layers=g.mapping_layers), buffers=dict(w_avg=s["w_avg"]),
                       modules=fcs, num_layers=g.mapping_layers, w_avg_beta=0.995)
    blocks = {}
    for res in g.synthesis.resolutions:
        prefix = f"synthesis.b{res}"
        layers = {c: w.layer(s, f"{prefix}.{c}", res, noise, g.conv_clamp) for c in ("conv0", "conv1")
                  if f"{prefix}.{c}.bias" in s}
        if not orig or res == g.resolution:
            layers["torgb"] = w.torgb(s, f"{prefix}.torgb", g.conv_clamp)
        params = dict(const=s["synthesis.const"][0]) if res == 4 else {}
        blocks[f"b{res}"] = w.record("SynthesisBlock", dict(resolution=res), params, dict(resample_filter=FILTER),
                                     layers, architecture=synth.get("architecture", "skip"))
    if stylegan3:
        blocks["input"] = w.record("SynthesisInput", dict(w_dim=g.w_dim))
    synthesis = w.record("SynthesisNetwork", dict(w_dim=g.w_dim), modules=blocks)
    kwargs = {k: w.easydict(v) if isinstance(v, dict) else v for k, v in kwargs.items()}
    return w.record("Generator", kwargs, modules=dict(synthesis=synthesis, mapping=mapping), num_ws=g.num_ws)


def write_snapshot(path: str | os.PathLike[str], g: StyleGAN2, source: str = "import torch\n",
                   stylegan3: bool = False, protocol: int = pickle.DEFAULT_PROTOCOL, stylegan3_repo: bool = False,
                   **overrides: Any) -> Path:
    """Pickle ``g`` as a stylegan2-ada-pytorch snapshot; ``overrides`` change the Generator's init kwargs
    (``synthesis_kwargs`` entries are merged). ``stylegan3_repo``: the layout of the stylegan3 repository's
    StyleGAN2 (synthesis options flattened into the Generator's kwargs, conv_clamp left to its default)."""
    synthesis = dict(channel_base=TINY_STYLEGAN2["channel_base"], channel_max=TINY_STYLEGAN2["channel_max"],
                     conv_clamp=g.conv_clamp, num_fp16_res=4, **overrides.pop("synthesis_kwargs", {}))
    kwargs = dict(z_dim=g.z_dim, c_dim=0, w_dim=g.w_dim, img_resolution=g.resolution, img_channels=g.image_channels,
                  mapping_kwargs=dict(num_layers=g.mapping_layers), synthesis_kwargs=synthesis) | overrides
    if stylegan3_repo:
        kwargs |= {k: v for k, v in kwargs.pop("synthesis_kwargs").items() if k != "conv_clamp"}
    with _nvidia_stand_ins() as (reconstruct, easydict):
        w = _Writer(reconstruct, easydict, source)
        snapshot = dict(training_set_kwargs=dict(class_name="training.dataset.ImageFolderDataset", path="x.zip"))
        snapshot["G"] = export_generator(w, g, kwargs, synthesis, stylegan3)
        snapshot["D"] = w.record("Discriminator", dict(c_dim=0), dict(weight=torch.randn(4, 3)))
        snapshot["G_ema"] = export_generator(w, g, kwargs, synthesis, stylegan3)
        snapshot["augment_pipe"] = w.record("AugmentPipe", dict(xflip=1), buffers=dict(p=torch.zeros([])),
                                            xflip=np.float64(1.0))
        with open(path, "wb") as handle:
            pickle.dump(snapshot, handle, protocol=protocol)
    return Path(path)


def _perturbed(resolution: int = 16, **overrides: Any) -> StyleGAN2:
    """A tiny StyleGAN2 whose noise strengths, biases and w_avg are not zero (so their mapping is checked)."""
    g = make_tiny_stylegan2(resolution, seed=3, **overrides)
    with torch.no_grad(), torch.random.fork_rng():
        torch.manual_seed(4)
        for name, value in g.named_parameters():
            if name.endswith(("noise_strength", "bias")):
                value.add_(0.3 * torch.randn_like(value))
        g.w_avg.normal_()
    return g


def _assert_same_generator(loaded: StyleGAN2, g: StyleGAN2) -> None:
    z = torch.randn(3, g.z_dim, generator=torch.Generator().manual_seed(0))
    w_plus = g.sample_latent(3, torch.Generator().manual_seed(1)) + 0.5
    assert loaded.latent_shape == g.latent_shape and loaded.channels == g.channels
    assert torch.allclose(loaded.mapping(z), g.mapping(z), atol=1e-6)
    assert torch.allclose(loaded.mapping(z, 0.7), g.mapping(z, 0.7), atol=1e-6)
    assert torch.allclose(loaded.synthesize(w_plus), g.synthesize(w_plus), atol=1e-5)
    assert torch.allclose(loaded.decode(w_plus), g.decode(w_plus), atol=1e-5)


@pytest.mark.parametrize("resolution,layers,clamp,protocol,stylegan3_repo", [
    (16, 2, None, 4, False), (32, 3, 256.0, 5, False), (16, 2, 0.3, 4, False), (16, 2, None, 2, False),
    (16, 2, 256.0, 4, True),
], ids=["16px-no-clamp", "32px-clamp256", "16px-clamp-hit", "python2-era-protocol", "stylegan3-repo-layout"])
def test_snapshot_imports_to_the_same_generator(tmp_path, resolution, layers, clamp, protocol, stylegan3_repo):
    g = _perturbed(resolution, mapping_layers=layers, conv_clamp=clamp)
    path = write_snapshot(tmp_path / "network-snapshot-000000.pkl", g, protocol=protocol,
                          stylegan3_repo=stylegan3_repo)
    loaded = load_generator(path)
    assert isinstance(loaded, StyleGAN2) and loaded.conv_clamp == clamp and loaded.mapping_layers == layers
    assert not loaded.training and not any(p.requires_grad for p in loaded.parameters())
    assert torch.equal(loaded.w_avg, g.w_avg)
    _assert_same_generator(loaded, g)
    assert not {"dnnlib", "torch_utils", "dnnlib.util", "torch_utils.persistence"} & set(sys.modules)


def test_conv_clamp_bounds_every_layer_output(tmp_path):
    g = load_generator(write_snapshot(tmp_path / "fp16-config.pkl", _perturbed(conv_clamp=0.3)))
    peaks = []
    layers = [m for name, m in g.synthesis.named_modules() if name.endswith(("conv0", "conv1", "torgb"))]
    hooks = [m.register_forward_hook(lambda m, i, out: peaks.append(out.abs().max().item())) for m in layers]
    g.synthesize(g.sample_latent(4, torch.Generator().manual_seed(0)))
    for hook in hooks:
        hook.remove()
    assert len(peaks) == len(layers) == 3 * 3 - 1 and max(peaks) <= 0.3 + 1e-6 and min(peaks) == pytest.approx(0.3)


def test_orig_architecture_and_no_noise_are_supported(tmp_path):
    g = _perturbed()
    with torch.no_grad():  # what an 'orig' generator without noise computes: only the last toRGB, no noise
        for res in g.synthesis.resolutions[:-1]:
            for p in getattr(g.synthesis, f"b{res}").torgb.parameters():
                p.zero_()
        for name, p in g.named_parameters():
            if name.endswith("noise_strength"):
                p.zero_()
    path = write_snapshot(tmp_path / "orig.pkl", g, synthesis_kwargs=dict(architecture="orig", use_noise=False))
    _assert_same_generator(load_generator(path), g)


def test_snapshot_is_read_as_inert_records(tmp_path):
    path = write_snapshot(tmp_path / "s.pkl", _perturbed())
    data = read_snapshot(path)
    assert sorted(data) == ["D", "G", "G_ema", "augment_pipe", "training_set_kwargs"]
    g_ema = data["G_ema"]
    assert isinstance(g_ema, PersistentRecord) and g_ema.class_name == "Generator"
    synthesis_kwargs = g_ema.init_kwargs["synthesis_kwargs"]
    assert type(synthesis_kwargs) is dict and synthesis_kwargs["num_fp16_res"] == 4  # an EasyDict read as a dict
    assert "module_src" not in vars(g_ema) and "import torch" not in repr(vars(g_ema))
    assert data["augment_pipe"].state["xflip"] == 1.0 and type(data["augment_pipe"].state["xflip"]) is float
    assert "synthesis.b16.conv1.noise_const" in g_ema.tensors()


@pytest.mark.parametrize("options,message", [
    (dict(stylegan3=True), "StyleGAN3"),
    (dict(c_dim=10), "conditional generator (c_dim=10)"),
    (dict(synthesis_kwargs=dict(architecture="resnet")), "architecture='resnet' is not supported"),
    (dict(synthesis_kwargs=dict(resample_filter=[1, 2, 1])), "resample_filter=[1, 2, 1]"),
    (dict(synthesis_kwargs=dict(magnitude_ema_beta=0.99)), "['magnitude_ema_beta'] are not supported"),
    (dict(img_channels=4), "img_channels=4"),
], ids=["stylegan3", "conditional", "resnet", "filter", "unknown-option", "rgba"])
def test_unrepresentable_generators_are_refused_by_name(tmp_path, options, message):
    path = write_snapshot(tmp_path / "s.pkl", _perturbed(), **options)
    with pytest.raises(ValueError, match="s.pkl") as error:
        load_generator(path)
    assert message in str(error.value)


def test_embedded_source_never_runs(tmp_path):
    marker = tmp_path / "source-ran"
    source = f"open({str(marker)!r}, 'w').write('ran')\nimport os\nos.system('touch {marker}')\n"
    g = _perturbed()
    path = write_snapshot(tmp_path / "hostile-source.pkl", g, source=source)
    _assert_same_generator(load_generator(path), g)
    assert not marker.exists()


class _Call:
    """Pickles as ``function(*args)``: what a hostile pickle would ask the unpickler to run."""

    def __init__(self, function, *args) -> None:
        self.function, self.args = function, args

    def __reduce__(self):
        return self.function, self.args


def _hostile_cases(marker: Path) -> dict[str, tuple[Any, str]]:
    import io

    evil_storage = io.BytesIO()
    torch.save(_Call(os.system, f"touch {marker}"), evil_storage, _use_new_zipfile_serialization=False)
    return {
        "os.system": (_Call(os.system, f"touch {marker}"), f"refused global {os.system.__module__}.system"),
        "builtins.eval": (_Call(eval, f"open({str(marker)!r}, 'w')"), "refused global builtins.eval"),
        "builtins.exec-in-state": ({"G_ema": {"x": _Call(exec, "1")}}, "refused global builtins.exec"),
        "storage-payload": (_Call(torch.storage._load_from_bytes, evil_storage.getvalue()), "weights_only"),
    }


@pytest.mark.parametrize("case", ["os.system", "builtins.eval", "builtins.exec-in-state", "storage-payload"])
def test_hostile_pickles_fail_without_running_anything(tmp_path, capsys, case):
    marker = tmp_path / "payload-ran"
    payload, message = _hostile_cases(marker)[case]
    path = tmp_path / "network-snapshot-000000.pkl"
    path.write_bytes(pickle.dumps({"G_ema": payload}, protocol=4))
    with pytest.raises(ValueError, match="cannot read") as error:
        load_generator(path)
    assert message in str(error.value)
    assert not marker.exists()
    assert_usage_error(["convert", path, tmp_path / "out.safetensors"], capsys, message)
    assert not marker.exists() and not (tmp_path / "out.safetensors").exists()


def test_convert_writes_safetensors_that_load_the_same(tmp_path, capsys):
    g = _perturbed(conv_clamp=256.0)
    source = write_snapshot(tmp_path / "network-snapshot-000100.pkl", g)
    out = tmp_path / "g.safetensors"
    result = run_semaug(["convert", source, out], capsys)
    assert result.code == 0 and "StyleGAN2 3x16x16" in result.out, result
    converted = load_generator(out, kind="stylegan2")
    _assert_same_generator(converted, g)
    assert converted.config() == load_generator(source).config()
    assert_usage_error(["convert", source, out], capsys, "OUT: ", "exists; pass --overwrite")
    assert run_semaug(["convert", source, out, "--overwrite"], capsys).code == 0
    assert_usage_error(["convert", tmp_path / "missing.pkl", tmp_path / "x.safetensors"], capsys, "IN: ", "missing.pkl")


@pytest.mark.parametrize("module, name", [("dnnlib.util", "EasyDict"), ("torch._utils", "_rebuild_tensor_v2"),
                                          ("torch_utils.persistence", "_reconstruct_persistent_obj")])
def test_a_pickle_cannot_change_the_importers_globals(tmp_path, module, name):
    # GLOBAL m n; then BUILD with (None, {"__call__": "x", "tainted": 1}): slot state, i.e. setattr on the global
    state = pickle.dumps((None, {"tainted": 1, "__doc__": "x"}), protocol=2)[2:-1]  # the tuple, no PROTO/STOP
    payload = b"\x80\x02c" + f"{module}\n{name}\n".encode() + state + b"b."
    path = tmp_path / "network-snapshot-000000.pkl"
    path.write_bytes(payload)
    with contextlib.suppress(ValueError):
        read_snapshot(path)
    from torch_semaug.generators import nvidia

    target = nvidia._SnapshotUnpickler.allowed[(module, name)]
    assert not hasattr(target, "tainted") and target.__doc__ != "x"
