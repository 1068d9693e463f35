"""Unsupervised direction discovery in a StyleGAN-style W space (GANSpace PCA, NaTra UMAP + regression).

Two ways to get a basis, on two kinds of features:

- ``space="w"``: features are sampled W codes ``w = mapping(z)``; ``space="activations"``: the flattened
  output of one synthesis module (``layer=``, a name from ``generator.named_modules()``) for those codes.
- ``method="pca"``: principal axes of the features. In W space they are the directions themselves
  (GANSpace); for activations they live in feature space and are carried back to W by regression.
- ``method="umap"``: a seeded UMAP embedding of the features, carried back to W by regression.

The regression is NaTra's eq. 11: least squares ``W - mean(W) ~ (C - mean(C)) V`` from the feature
coordinates ``C (N, k)`` to the sampled codes, so row ``V_i`` is the change of ``w`` per unit of
coordinate ``i``. Every basis row is then normalised to unit length and its scale kept in ``std``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import sys
import warnings
from typing import Any

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from torch_semaug._checks import check_bool, check_choice, check_int_at_least, describe
from torch_semaug.directions.directions import METHODS, SPACES, Directions
from torch_semaug.generators.stylegan2 import as_stylegan


def generator_provenance(generator: nn.Module) -> dict[str, Any]:
    """Kind, a hash of the config (when the generator has one) and the W+ shape: enough to spot a mismatch."""
    config = generator.config() if callable(getattr(generator, "config", None)) else None
    digest = None
    if config is not None:
        digest = hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()[:16]
    return {
        "generator_kind": getattr(generator, "generator_kind", type(generator).__name__),
        "generator_config_hash": digest,
        "num_ws": int(generator.num_ws),
        "w_dim": int(generator.w_dim),
    }


class _StopForward(Exception):
    """Raised by the activation hook: nothing after the hooked layer needs computing."""


def _module(generator: nn.Module, layer: str) -> nn.Module:
    modules = dict(generator.named_modules())
    if layer not in modules or layer == "":
        names = [n for n in modules if n.startswith("synthesis")][:12] or list(modules)[1:13]
        raise ValueError(f"layer: expected a module name of the generator such as {names}, got {layer!r}")
    return modules[layer]


def _first_tensor(output: Any, layer: str) -> Tensor:
    if isinstance(output, Tensor):
        return output
    if isinstance(output, tuple | list) and output and isinstance(output[0], Tensor):
        return output[0]  # StyleGAN blocks return (features, rgb); the features come first
    raise TypeError(f"layer: module {layer!r} returned {describe(output)}, expected a tensor or a tuple of them")


@torch.no_grad()
def sample_features(
    generator: nn.Module,
    num_samples: int,
    space: str,
    layer: str | None,
    seed: int,
    batch_size: int,
    truncation_psi: float = 1.0,
    progress: bool = True,
) -> tuple[Tensor, Tensor]:
    """Sample ``num_samples`` W codes (seeded, device-independent) and the features PCA/UMAP see.

    Returns:
        ``(w, features)``: ``(N, w_dim)`` float32 codes and ``(N, D)`` float32 features (``w`` itself for
        ``space="w"``, the flattened activations of ``layer`` otherwise), on the generator's device.
    """
    device = generator.device
    rng = torch.Generator().manual_seed(seed)
    hook_output: list[Tensor] = []
    handle = None

    def hook(_module: nn.Module, _inputs: Any, output: Any) -> None:
        hook_output.append(_first_tensor(output, layer).flatten(1).float())
        raise _StopForward  # the rest of the synthesis network is not needed

    if space == "activations":
        handle = _module(generator, layer).register_forward_hook(hook)
    ws, feats = [], []
    try:
        bar = tqdm(total=num_samples, desc=f"sampling {space}", unit="code", disable=not progress, file=sys.stderr)
        for start in range(0, num_samples, batch_size):
            n = min(batch_size, num_samples - start)
            z = torch.randn(n, generator.z_dim, generator=rng).to(device)
            w = generator.mapping(z, truncation_psi=truncation_psi).float()
            ws.append(w)
            if space == "activations":
                with contextlib.suppress(_StopForward):
                    generator.decode(w.unsqueeze(1).expand(-1, generator.num_ws, -1).contiguous())
                if len(hook_output) != 1:
                    raise ValueError(f"layer: module {layer!r} did not run during decode()")
                feats.append(hook_output.pop())
            bar.update(n)
        bar.close()
    finally:
        if handle is not None:
            handle.remove()
    w_all = torch.cat(ws)
    return w_all, (w_all if space == "w" else torch.cat(feats))


def _pca(features: Tensor, k: int, seed: int) -> tuple[Tensor, Tensor, Tensor]:
    """Top-``k`` principal axes ``(k, D)``, coordinates ``(N, k)`` and explained-variance ratios ``(k,)``."""
    # Exact float64 SVD where it is cheap (W codes); a randomised float32 one for wide activations, where
    # the exact SVD of 10k x 4k features takes minutes and twice the memory.
    wide = features.shape[1] > 1024
    centered = features.float() if wide else features.double()
    centered = centered - centered.mean(0)
    if not wide:
        _, s, vh = torch.linalg.svd(centered, full_matrices=False)
        axes, s_top = vh[:k], s[:k]
    else:
        # Randomised SVD for wide activations; seeded because pca_lowrank draws from the global stream.
        with torch.random.fork_rng(devices=[features.device] if features.is_cuda else []):
            torch.manual_seed(seed)
            _, s_top, v = torch.pca_lowrank(centered, q=min(k + 10, *centered.shape), center=False, niter=6)
        axes, s_top = v[:, :k].T, s_top[:k]
    # A deterministic sign: the largest-magnitude entry of each axis is positive.
    signs = torch.sign(axes.gather(1, axes.abs().argmax(1, keepdim=True)))
    axes = axes * signs
    total = centered.pow(2).sum(dtype=torch.float64)
    return axes.double(), (centered @ axes.T).double(), (s_top.double().pow(2) / total)


def _umap(features: Tensor, k: int, seed: int, input_dim: int | None, n_neighbors: int, progress: bool) -> Tensor:
    """A seeded ``k``-dimensional UMAP embedding ``(N, k)`` of ``features``."""
    try:
        import umap  # imported here: umap-learn (numba) takes seconds to import
    except ImportError as error:
        raise ImportError("method='umap' needs umap-learn: pip install umap-learn") from error
    if input_dim is not None and features.shape[1] > input_dim:
        _, features, _ = _pca(features, input_dim, seed)  # UMAP's neighbour search is slow in wide spaces
    if progress:
        tqdm.write(f"fitting UMAP ({k} components) on {features.shape[0]} x {features.shape[1]} features ...",
                   file=sys.stderr)
    reducer = umap.UMAP(n_components=k, n_neighbors=n_neighbors, random_state=seed, verbose=False)
    with warnings.catch_warnings():
        # umap-learn warns that a random_state forces one thread: that is the price of reproducibility.
        warnings.filterwarnings("ignore", message=".*overridden to 1 by setting random_state.*")
        embedding = reducer.fit_transform(features.double().cpu().numpy())
    return torch.as_tensor(embedding, dtype=torch.float64, device=features.device)


def regress_to_latent(codes: Tensor, coordinates: Tensor) -> tuple[Tensor, Tensor]:
    """NaTra eq. 11: least-squares directions ``V (k, w_dim)`` with ``w - mean ~ (c - mean) V``.

    Returns:
        ``(basis, std)``: unit-norm rows ``V_i / |V_i|`` and ``std(c_i) * |V_i|``, the latent spread along
        each row that one standard deviation of coordinate ``i`` corresponds to.
    """
    c = coordinates.double() - coordinates.double().mean(0)
    w = codes.double() - codes.double().mean(0)
    solution = torch.linalg.lstsq(c.cpu(), w.cpu(), driver="gelsd").solution.to(codes.device)
    norms = solution.norm(dim=1)
    if bool((norms < 1e-12).any()):
        raise ValueError(
            "regression: some feature coordinates do not depend on W at all; use fewer n_components "
            "or another layer"
        )
    return solution / norms[:, None], c.std(0) * norms


def find_directions(
    generator: nn.Module,
    method: str = "pca",
    n_components: int = 10,
    num_samples: int = 10_000,
    space: str = "w",
    layer: str | None = None,
    seed: int = 0,
    batch_size: int = 256,
    *,
    truncation_psi: float = 1.0,
    umap_neighbors: int = 15,
    umap_input_dim: int | None = 64,
    progress: bool = True,
) -> Directions:
    """Find ``n_components`` latent directions of a StyleGAN-style generator without labels.

    Args:
        generator: a generator with ``mapping``, ``z_dim``, ``w_dim``, ``num_ws`` and ``decode`` (W+).
        method: ``"pca"`` (GANSpace) or ``"umap"`` (NaTra: UMAP, then regression back to W).
        n_components: number of directions.
        num_samples: W codes sampled from the prior (seeded; the same on any device).
        space: ``"w"`` (features are the codes) or ``"activations"`` (the output of ``layer``).
        layer: with ``space="activations"``, a module name from ``generator.named_modules()``
            (e.g. ``"synthesis.b8"``); its first output tensor, flattened, is the feature vector.
        seed: seeds the codes, randomised PCA and UMAP.
        batch_size: codes mapped (and decoded) per forward.
        truncation_psi: truncation of the sampled codes (1.0: none).
        umap_neighbors: UMAP's ``n_neighbors``.
        umap_input_dim: features wider than this are reduced to it by PCA before UMAP (``None``: never).
        progress: show a progress bar and a message while UMAP fits.

    Returns:
        :class:`Directions`; PCA in W space gives orthonormal rows ordered by explained variance, the
        regressed bases (activations, UMAP) unit-norm rows ordered by PCA variance or, for UMAP, by
        their latent spread ``std``.
    """
    as_stylegan(generator)
    check_choice(method, METHODS, "method")
    check_choice(space, SPACES, "space")
    check_int_at_least(n_components, 1, "n_components")
    check_int_at_least(batch_size, 1, "batch_size")
    check_int_at_least(num_samples, n_components + 2, "num_samples")
    _check_sampling(seed, truncation_psi, umap_neighbors, umap_input_dim, progress)
    if layer is not None and not isinstance(layer, str):
        raise TypeError(f"layer: expected a module name (str) such as 'synthesis.b8', got {describe(layer)}")
    if space == "activations" and layer is None:
        raise ValueError("layer: space='activations' needs layer=<module name>, e.g. 'synthesis.b8'")
    if space == "w" and layer is not None:
        raise ValueError(f"layer: only used with space='activations', got layer={layer!r} with space='w'")
    if space == "activations":
        _module(generator, layer)
    if method == "pca" and space == "w" and n_components > generator.w_dim:
        raise ValueError(f"n_components: PCA in W has at most w_dim = {generator.w_dim} axes, got {n_components}")

    codes, features = sample_features(generator, num_samples, space, layer, seed, batch_size, truncation_psi, progress)
    provenance: dict[str, Any] = generator_provenance(generator) | {
        "space": space, "layer": layer, "num_samples": num_samples, "seed": seed, "truncation_psi": truncation_psi,
    }
    if not bool(features.std(0).max() > 0):
        raise ValueError(
            f"generator: every sampled {'code' if space == 'w' else 'activation'} is the same, so there is no "
            "direction to find; is the generator trained (or its layer constant)?"
        )
    if method == "pca":
        axes, coordinates, ratios = _pca(features, n_components, seed)
        provenance["explained_variance_ratio"] = [round(float(r), 6) for r in ratios]
        if space == "w":
            basis, std = axes, coordinates.std(0)
        else:
            basis, std = regress_to_latent(codes, coordinates)
    else:
        coordinates = _umap(features, n_components, seed, umap_input_dim, umap_neighbors, progress)
        basis, std = regress_to_latent(codes, coordinates)
        order = std.argsort(descending=True)
        basis, std = basis[order], std[order]
        provenance |= {"umap_neighbors": umap_neighbors, "umap_input_dim": umap_input_dim}
    if not bool((std > 0).all()):
        raise ValueError(
            f"n_components: only {int((std > 0).sum())} of the {n_components} directions have any spread in the "
            "sampled codes (the generator's W varies along fewer axes); ask for fewer components"
        )
    return Directions(basis.float(), codes.double().mean(0).float(), std.float(), method, provenance)


def _check_sampling(
    seed: object, truncation_psi: object, umap_neighbors: object, umap_input_dim: object, progress: object
) -> None:
    """Check the sampling and UMAP settings of :func:`find_directions`."""
    check_int_at_least(seed, 0, "seed")
    if (not isinstance(truncation_psi, int | float) or isinstance(truncation_psi, bool)
            or not math.isfinite(truncation_psi) or truncation_psi == 0):
        # psi = 0 maps every code to w_avg: no spread, so every direction would be a no-op
        raise ValueError(
            f"truncation_psi: expected a finite, non-zero number (1.0: no truncation; 0 would collapse every "
            f"code onto w_avg), got {truncation_psi!r}"
        )
    check_int_at_least(umap_neighbors, 2, "umap_neighbors")
    if umap_input_dim is not None:
        check_int_at_least(umap_input_dim, 1, "umap_input_dim")
    check_bool(progress, "progress")
