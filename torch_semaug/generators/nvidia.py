"""Import NVIDIA ``stylegan2-ada-pytorch`` snapshots (``network-snapshot-*.pkl``) without running their code.

Such a snapshot is a plain pickle of ``dict(G=..., D=..., G_ema=..., augment_pipe=..., training_set_kwargs=...)``.
Every network in it is pickled through NVIDIA's ``torch_utils.persistence``: a call to
``_reconstruct_persistent_obj(meta)`` whose ``meta`` holds the source code of the module that defined the class
(which NVIDIA's unpickler ``exec``\\ s), the class name and the object's ``__dict__`` (parameters, buffers,
submodules, ``_init_args``/``_init_kwargs``). Tensors go through ``torch.storage._load_from_bytes``, itself an
unrestricted ``torch.load``. Opening such a file with :func:`pickle.load` runs whatever it contains.

:func:`read_snapshot` uses a restricted unpickler instead. It resolves only the globals a snapshot needs and
refuses every other one by name:

* ``torch_utils.persistence._reconstruct_persistent_obj`` -> an inert :class:`PersistentRecord` (class name,
  init args/kwargs, state); the embedded source is dropped unread, never compiled or run;
* ``torch.storage._load_from_bytes`` -> ``torch.load(..., weights_only=True)``;
* the tensor rebuilders of ``torch._utils`` (tensors come back as plain tensors, without hooks);
* ``collections.OrderedDict``, ``builtins.set``/``frozenset``, ``_codecs.encode`` (bytes in protocol-2 pickles),
  numpy scalars, dtypes and arrays, ``dnnlib.util.EasyDict`` (read as a dict).

``dnnlib`` and ``torch_utils`` are never imported. :func:`load_nvidia` maps ``G_ema`` onto :class:`StyleGAN2`.
Both use the same equalised-learning-rate convention (raw weights, gains applied at run time), so the import is
renaming and reshaping:

=====================================  =============================================
NVIDIA key                             torch_semaug key
=====================================  =============================================
``mapping.fc{i}.weight/bias``          ``mapping_network.fc{i}.weight/bias``
``mapping.w_avg``                      ``w_avg``
``synthesis.b4.const (C, 4, 4)``       ``synthesis.const (1, C, 4, 4)``
``synthesis.b{r}.conv{k}.weight``      ``synthesis.b{r}.conv{k}.conv.weight``
``....conv{k}.affine.*``               ``....conv{k}.conv.affine.*``
``....noise_const (r, r)``             ``....noise_const (1, 1, r, r)``
``....noise_strength ()``              ``....noise_strength (1,)``
``synthesis.b{r}.torgb.weight``        ``synthesis.b{r}.torgb.conv.weight``
``*.resample_filter``                  checked to be the [1, 3, 3, 1] filter, dropped
=====================================  =============================================

The configuration comes from the snapshot's ``init_kwargs`` (NVIDIA's defaults where absent), ``conv_clamp``
included; where the layers stored an option (``conv_clamp``, ``architecture``, ``use_noise``, mapping depth and
learning-rate multiplier), that value wins, so the StyleGAN2 pickles of NVIDIA's ``stylegan3`` repository (whose
defaults differ: ``conv_clamp=256``) import as well. Supported: architectures ``skip`` (the default) and
``orig`` (its single toRGB is the last block's; the other toRGBs become zero), ``use_noise=False``. Refused
with a clear error: StyleGAN3 generators, conditional generators (``c_dim > 0``), ``resnet`` synthesis, and
options StyleGAN2 here does not model. Decoding is float32: it matches NVIDIA's synthesis run in float32
(``force_fp32=True``); their fp16 blocks (``num_fp16_res``, on a GPU) compute in half precision instead.
"""

from __future__ import annotations

import _codecs
import collections
import functools
import io
import os
import pickle
import re
import types
import warnings
from typing import Any

import numpy as np
import torch
from torch import Tensor

from torch_semaug._checks import describe
from torch_semaug.generators.io import load_state_checked
from torch_semaug.generators.stylegan2 import StyleGAN2
from torch_semaug.generators.stylegan2_layers import blur_kernel

# Positional order of NVIDIA's Generator.__init__, for a snapshot whose init_args are not empty.
_GENERATOR_ARGS = ("z_dim", "c_dim", "w_dim", "img_resolution", "img_channels", "mapping_kwargs", "synthesis_kwargs")
# NVIDIA's defaults for the options we read; any option not listed here (or ignored below) is refused.
_MAPPING_DEFAULTS = dict(num_layers=8, embed_features=None, layer_features=None, activation="lrelu",
                         lr_multiplier=0.01, w_avg_beta=0.995)
_SYNTHESIS_DEFAULTS = dict(channel_base=32768, channel_max=512, architecture="skip", resample_filter=[1, 3, 3, 1],
                           conv_clamp=None, kernel_size=3, use_noise=True, activation="lrelu")
# Options that change speed or memory layout only, not what the network computes in float32.
_IGNORED = {"num_fp16_res", "fp16_channels_last", "fused_modconv_default", "channels_last"}


class PersistentRecord:
    """What :func:`read_snapshot` keeps of one ``torch_utils.persistence`` object: never its source.

    Attributes:
        class_name: the class name recorded in the pickle (e.g. ``"Generator"``).
        version: ``torch_utils.persistence``'s format version.
        init_args, init_kwargs: the arguments the object was constructed with.
        state: the rest of its ``__dict__`` (``_parameters``, ``_buffers``, ``_modules``, plain attributes).
    """

    def __init__(self, class_name: str, version: object, state: dict[str, Any]) -> None:
        state = _plain(state)
        self.class_name = class_name
        self.version = version
        self.init_args = tuple(state.pop("_init_args", ()) or ())
        self.init_kwargs = dict(state.pop("_init_kwargs", {}) or {})
        self.state = state

    def children(self) -> dict[str, PersistentRecord]:
        """Submodules by attribute name."""
        return {k: v for k, v in (self.state.get("_modules") or {}).items() if isinstance(v, PersistentRecord)}

    def tensors(self, prefix: str = "") -> dict[str, Tensor]:
        """Parameters and persistent buffers under ``state_dict``-style keys (``"synthesis.b4.const"``)."""
        skip = set(self.state.get("_non_persistent_buffers_set") or ())
        out = {prefix + k: v for k, v in (self.state.get("_parameters") or {}).items() if isinstance(v, Tensor)}
        out.update({prefix + k: v for k, v in (self.state.get("_buffers") or {}).items()
                    if isinstance(v, Tensor) and k not in skip})
        for name, child in self.children().items():
            out.update(child.tensors(f"{prefix}{name}."))
        return out

    def __repr__(self) -> str:
        return f"PersistentRecord({self.class_name!r}, init_kwargs={self.init_kwargs!r})"


class _EasyDict(dict):
    """Stands in for ``dnnlib.util.EasyDict`` while unpickling; turned into a plain dict afterwards."""


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_plain(v) for v in value)
    if isinstance(value, np.generic):
        return value.item()
    return value


def _persistent_record(meta: object) -> PersistentRecord:
    if not (isinstance(meta, dict) and meta.get("type") == "class" and isinstance(meta.get("class_name"), str)
            and isinstance(meta.get("state"), dict)):
        raise ValueError(f"a torch_utils.persistence object with unexpected metadata {describe(meta)}")
    return PersistentRecord(meta["class_name"], meta.get("version"), meta["state"])


def _load_storage(data: object) -> Any:
    if not isinstance(data, bytes):
        raise ValueError(f"a tensor storage given as {describe(data)}, expected bytes")
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="TypedStorage is deprecated")
        storage = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    if not isinstance(storage, torch.TypedStorage | torch.UntypedStorage):
        raise ValueError(f"a tensor storage that loads as {describe(storage)}")
    return storage


def _rebuild_tensor(storage: object, offset: int, size: tuple[int, ...], stride: tuple[int, ...], *_: object):
    # requires_grad, backward hooks and the conj/neg metadata of the pickled tensor are dropped: weights only.
    if not isinstance(storage, torch.TypedStorage | torch.UntypedStorage):
        raise ValueError(f"a tensor built on {describe(storage)}, expected a storage")
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="TypedStorage is deprecated")
        return torch._utils._rebuild_tensor(storage, offset, tuple(size), tuple(stride))


def _rebuild_parameter(data: object, *_: object) -> Tensor:
    if not isinstance(data, Tensor):
        raise ValueError(f"a parameter holding {describe(data)}, expected a tensor")
    return data


def _allowed_globals() -> dict[tuple[str, str], Any]:
    reconstruct = np.zeros(0).__reduce__()[0]   # numpy's array rebuilder, wherever this numpy keeps it
    scalar = np.float64(0).__reduce__()[0]
    allowed: dict[tuple[str, str], Any] = {
        ("torch_utils.persistence", "_reconstruct_persistent_obj"): _persistent_record,
        ("torch.storage", "_load_from_bytes"): _load_storage,
        ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
        ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
        ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
        ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
        ("collections", "OrderedDict"): collections.OrderedDict,
        ("builtins", "set"): set,
        ("builtins", "frozenset"): frozenset,
        ("__builtin__", "set"): set,  # protocol-2 pickles spell builtins the Python 2 way
        ("__builtin__", "frozenset"): frozenset,
        ("_codecs", "encode"): _codecs.encode,
        ("numpy", "dtype"): np.dtype,
        ("numpy", "ndarray"): np.ndarray,
        ("dnnlib.util", "EasyDict"): _EasyDict,
    }
    for module in ("numpy.core.multiarray", "numpy._core.multiarray"):  # numpy 1 and numpy 2 spellings
        allowed[(module, "_reconstruct")] = reconstruct
        allowed[(module, "scalar")] = scalar
    return allowed


class _SnapshotUnpickler(pickle.Unpickler):
    """Resolves only the globals of :func:`_allowed_globals`; refuses any other one before it is called."""

    allowed = _allowed_globals()

    def find_class(self, module: str, name: str) -> Any:
        found = self.allowed.get((module, name))
        if found is not None:
            return self._private(found)
        hint = ""
        if module.startswith("dnnlib.tflib"):
            hint = " (a TensorFlow-era StyleGAN pickle: convert it to a stylegan2-ada-pytorch or rosinality checkpoint)"
        raise pickle.UnpicklingError(
            f"refused global {module}.{name}{hint}: a stylegan2-ada-pytorch snapshot needs only tensors, numpy "
            "scalars, plain containers and torch_utils.persistence objects; nothing in the file was run"
        )

    def _private(self, found: Any) -> Any:
        """This load's own handle on an allowed global whose attributes a pickle could set (BUILD with slot
        state calls setattr on whatever it is given): a fresh partial of our functions, a fresh subclass of our
        EasyDict stand-in. The C types and functions among the allowed globals refuse setattr themselves."""
        if isinstance(found, types.FunctionType):
            return functools.partial(found)
        if found is _EasyDict:
            if "easydict" not in self.__dict__:
                self.__dict__["easydict"] = type("EasyDict", (_EasyDict,), {})
            return self.__dict__["easydict"]
        return found

    def persistent_load(self, pid: Any) -> Any:
        raise pickle.UnpicklingError(f"refused persistent id {describe(pid)}: not a stylegan2-ada-pytorch snapshot")


def read_snapshot(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read an NVIDIA snapshot safely: networks as :class:`PersistentRecord`, other values as plain data.

    Raises:
        ValueError: naming the refused global (or other damage); nothing in the file is executed.
    """
    name = os.fspath(path)
    if not os.path.isfile(name):
        raise FileNotFoundError(f"path: no NVIDIA snapshot at {name!r}")
    try:
        with open(name, "rb") as handle:
            data = _SnapshotUnpickler(handle).load()
    except Exception as error:  # noqa: BLE001 - a refusal or any damage is reported the same way, as one line
        raise ValueError(f"path: cannot read {name!r} as a stylegan2-ada-pytorch snapshot: {error}") from None
    data = _plain(data)
    if not isinstance(data, dict):
        raise ValueError(f"path: {name!r} holds {describe(data)}, expected a snapshot dict with 'G_ema'")
    return data


def _options(given: object, defaults: dict[str, Any], where: str, name: str) -> dict[str, Any]:
    given = dict(given or {})
    unknown = sorted(set(given) - set(defaults) - _IGNORED)
    if unknown:
        raise ValueError(f"path: {name!r}: {where} options {unknown} are not supported by torch_semaug's StyleGAN2")
    return {**defaults, **{k: v for k, v in given.items() if k in defaults}}


def snapshot_config(generator: PersistentRecord, name: str = "<snapshot>") -> dict[str, Any]:
    """:class:`StyleGAN2` keyword arguments for NVIDIA's ``G_ema`` (plus ``architecture`` and ``use_noise``).

    Raises:
        ValueError: for what StyleGAN2 here cannot represent, naming it.
    """
    synthesis = generator.children().get("synthesis")
    if generator.class_name != "Generator" or synthesis is None:
        raise ValueError(f"path: {name!r}: G_ema is a {generator.class_name!r}, expected a stylegan2-ada-pytorch "
                         "Generator")
    if "input" in synthesis.children() or any(c.class_name == "SynthesisInput" for c in synthesis.children().values()):
        raise ValueError(f"path: {name!r} holds a StyleGAN3 (alias-free) generator; only StyleGAN2 is supported")
    kwargs = dict(zip(_GENERATOR_ARGS, generator.init_args)) | generator.init_kwargs
    # The stylegan3 repository's copy of this network takes the synthesis options as **kwargs of the Generator.
    flattened = {k: kwargs.pop(k) for k in list(kwargs) if k not in _GENERATOR_ARGS}
    missing = [k for k in _GENERATOR_ARGS[:5] if k not in kwargs]
    if missing:
        raise ValueError(f"path: {name!r}: G_ema's init_kwargs lack {missing}")
    if kwargs["c_dim"]:
        raise ValueError(f"path: {name!r} holds a conditional generator (c_dim={kwargs['c_dim']}); only "
                         "unconditional ones (c_dim=0) are supported")
    mapping = _options(kwargs.get("mapping_kwargs"), _MAPPING_DEFAULTS, "mapping", name)
    synth = _options({**(kwargs.get("synthesis_kwargs") or {}), **flattened}, _SYNTHESIS_DEFAULTS, "synthesis", name)
    _read_stored(generator, mapping, synth, name)
    _check_supported(kwargs, mapping, synth, name)
    return dict(
        resolution=kwargs["img_resolution"], z_dim=kwargs["z_dim"], w_dim=kwargs["w_dim"],
        mapping_layers=mapping["num_layers"], channel_base=synth["channel_base"], channel_max=synth["channel_max"],
        image_channels=kwargs["img_channels"], mapping_lr_mul=float(mapping["lr_multiplier"]),
        conv_clamp=synth["conv_clamp"], w_avg_beta=0.995 if mapping["w_avg_beta"] is None else mapping["w_avg_beta"],
        architecture=synth["architecture"], use_noise=bool(synth["use_noise"]),
    )


def _read_stored(generator: PersistentRecord, mapping: dict[str, Any], synth: dict[str, Any], name: str) -> None:
    """Replace option values by those the layers stored, where they did: those are what the layers computed with,
    whichever repository's defaults (ada: conv_clamp None; stylegan3: 256) filled in what init_kwargs omit."""
    def everything(record: PersistentRecord) -> list[PersistentRecord]:
        return [record] + [r for child in record.children().values() for r in everything(child)]

    records = everything(generator)
    of = {kind: [r for r in records if r.class_name == kind] for kind in
          ("MappingNetwork", "FullyConnectedLayer", "SynthesisBlock", "SynthesisLayer", "ToRGBLayer")}
    mapping_fcs = [r for m in of["MappingNetwork"] for k, r in m.children().items() if k.startswith("fc")]
    stored = [(mapping, "num_layers", of["MappingNetwork"], "num_layers"),
              (mapping, "w_avg_beta", of["MappingNetwork"], "w_avg_beta"),
              (mapping, "lr_multiplier", mapping_fcs, "bias_gain"),
              (mapping, "activation", mapping_fcs, "activation"),
              (synth, "architecture", of["SynthesisBlock"], "architecture"),
              (synth, "conv_clamp", of["SynthesisLayer"] + of["ToRGBLayer"], "conv_clamp"),
              (synth, "use_noise", of["SynthesisLayer"], "use_noise"),
              (synth, "activation", of["SynthesisLayer"], "activation")]
    for options, key, holders, attribute in stored:
        values = {repr(r.state[attribute]): r.state[attribute] for r in holders if attribute in r.state}
        if len(values) > 1:
            raise ValueError(f"path: {name!r}: layers with different {attribute} {sorted(values)} are not supported")
        if values:
            options[key] = next(iter(values.values()))


def _check_supported(kwargs: dict[str, Any], mapping: dict[str, Any], synth: dict[str, Any], name: str) -> None:
    supported = [
        ("synthesis architecture", synth["architecture"], ("skip", "orig")),
        ("synthesis activation", synth["activation"], ("lrelu",)),
        ("synthesis kernel_size", synth["kernel_size"], (3,)),
        ("resample_filter", list(synth["resample_filter"]), ([1, 3, 3, 1],)),
        ("mapping activation", mapping["activation"], ("lrelu",)),
        ("mapping layer_features", mapping["layer_features"], (None, kwargs["w_dim"])),
        ("img_channels", kwargs["img_channels"], (1, 3)),
        ("img_resolution", kwargs["img_resolution"], tuple(2**i for i in range(4, 11))),
    ]
    for what, value, choices in supported:
        if value not in choices:
            raise ValueError(f"path: {name!r}: {what}={value!r} is not supported by torch_semaug's StyleGAN2 "
                             f"(supported: {', '.join(map(repr, choices))})")


_LAYER_PARTS = {"weight": "conv.weight", "affine.weight": "conv.affine.weight", "affine.bias": "conv.affine.bias",
                "bias": "bias", "noise_const": "noise_const", "noise_strength": "noise_strength"}


def convert_snapshot_state(tensors: dict[str, Tensor], name: str = "<snapshot>") -> dict[str, Tensor]:
    """Rename and reshape NVIDIA ``G_ema`` tensors (see the table above) into :class:`StyleGAN2` keys."""
    out: dict[str, Tensor] = {}
    unknown: list[str] = []
    standard = blur_kernel()
    for key, value in tensors.items():
        value = value.float()
        layer = re.fullmatch(r"synthesis\.b(\d+)\.(conv0|conv1|torgb)\.(.+)", key)
        mapping = re.fullmatch(r"mapping\.fc(\d+)\.(weight|bias)", key)
        if key.endswith("resample_filter"):
            if value.shape != standard.shape or not torch.allclose(value, standard, atol=1e-6):
                raise ValueError(f"path: {name!r}: {key} is not the [1, 3, 3, 1] filter; other filters are not "
                                 "supported")
        elif mapping:
            out[f"mapping_network.fc{mapping[1]}.{mapping[2]}"] = value
        elif key == "mapping.w_avg":
            out["w_avg"] = value
        elif key == "synthesis.b4.const":
            out["synthesis.const"] = value[None]
        elif layer and layer[3] in _LAYER_PARTS and not (layer[2] == "torgb" and "noise" in layer[3]):
            if layer[3] == "noise_const":
                value = value.reshape(1, 1, *value.shape[-2:])
            elif layer[3] == "noise_strength":
                value = value.reshape(1)
            out[f"synthesis.b{layer[1]}.{layer[2]}.{_LAYER_PARTS[layer[3]]}"] = value
        else:
            unknown.append(key)
    if unknown:
        raise ValueError(f"path: {name!r}: G_ema does not match StyleGAN2: unexpected tensors {sorted(unknown)[:10]}")
    return out


def _fill_absent(state: dict[str, Tensor], own: dict[str, Tensor], resolution: int, architecture: str,
                 use_noise: bool) -> None:
    """Zeros for what an ``orig`` or noise-free NVIDIA generator lacks: its output is then unchanged here."""
    for key, value in own.items():
        block = re.fullmatch(r"synthesis\.b(\d+)\.torgb\..+", key)
        unused_torgb = architecture == "orig" and block is not None and int(block[1]) < resolution
        if key not in state and (unused_torgb or (not use_noise and key.endswith(("noise_const", "noise_strength")))):
            state[key] = torch.zeros_like(value)


def load_nvidia(path: str | os.PathLike[str], *, noise_mode: str = "const",
                device: str | torch.device = "cpu") -> StyleGAN2:
    """Build a frozen :class:`StyleGAN2` from the ``G_ema`` of an NVIDIA stylegan2-ada-pytorch snapshot.

    Args:
        path: a ``network-snapshot-*.pkl`` (or any pickle of that format holding ``G_ema``), read with
            :func:`read_snapshot`: no code in it runs.
        noise_mode: noise of the imported generator (``"const"`` uses the snapshot's fixed noise buffers).
        device: where to put the generator.

    Raises:
        ValueError: for a refused global, a generator StyleGAN2 cannot represent, or mismatched tensors.
    """
    from torch_semaug.generators.rosinality import estimate_w_avg

    name = os.fspath(path)
    record = read_snapshot(name).get("G_ema")
    if not isinstance(record, PersistentRecord):
        raise ValueError(f"path: {name!r} has no G_ema network (got {describe(record)}); expected a "
                         "stylegan2-ada-pytorch snapshot")
    config = snapshot_config(record, name)
    architecture, use_noise = config.pop("architecture"), config.pop("use_noise")
    generator = StyleGAN2(**config, noise_mode=noise_mode)
    state = convert_snapshot_state(record.tensors(), name)
    has_w_avg = "w_avg" in state
    state.setdefault("w_avg", torch.zeros(generator.w_dim))
    _fill_absent(state, generator.state_dict(), generator.resolution, architecture, use_noise)
    load_state_checked(generator, state, name)
    if not has_w_avg:
        estimate_w_avg(generator)
    return generator.to(device).freeze()
