"""The :class:`Directions` container: a latent basis with its scale, saved as one small safetensors file."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import Tensor

from torch_semaug._checks import check_finite, check_tensor, describe
from torch_semaug._io import write_atomic

FORMAT = "torch_semaug.directions/1"
METHODS = ("pca", "umap")
SPACES = ("w", "activations")


def check_layers(layers: object, num_ws: int) -> tuple[int, int]:
    """``layers`` as ``(start, end)`` after checking ``0 <= start < end <= num_ws`` (an empty or clipped range
    would edit nothing, or silently less than asked)."""
    valid = (
        isinstance(layers, tuple | list) and len(layers) == 2
        and all(isinstance(v, int) and not isinstance(v, bool) for v in layers)
        and 0 <= layers[0] < layers[1] <= num_ws
    )
    if not valid:
        raise ValueError(
            f"layers: expected (start, end) W+ layer indices with 0 <= start < end <= num_ws = {num_ws} (end "
            f"exclusive), got {layers!r}"
        )
    return int(layers[0]), int(layers[1])


@dataclass
class Directions:
    """Latent directions found without labels, ordered by importance (explained variance for PCA).

    Moving a latent ``w`` by ``r_i`` units of component ``i`` means ``w + r_i * std[i] * basis[i]``:
    ``basis`` rows have unit norm (orthonormal for PCA in W space), ``std`` is the spread of the sampled
    latents along each row, so strengths are comparable across components and methods.

    Attributes:
        basis: ``(n_components, w_dim)`` unit-norm directions in W space.
        mean: ``(w_dim,)`` mean of the sampled W codes.
        std: ``(n_components,)`` standard deviation of the sampled codes along each direction.
        method: ``"pca"`` or ``"umap"``.
        provenance: JSON-serialisable facts about how they were found (generator kind, config hash,
            space, layer, num_samples, seed, ...).
    """

    basis: Tensor
    mean: Tensor
    std: Tensor
    method: str
    provenance: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("basis", "mean", "std"):
            check_tensor(getattr(self, name), name)
            check_finite(getattr(self, name), name)
        if self.basis.ndim != 2 or self.basis.shape[0] < 1:
            raise ValueError(f"basis: expected shape (n_components, w_dim), got {describe(self.basis)}")
        if tuple(self.mean.shape) != (self.dim,):
            raise ValueError(f"mean: expected shape ({self.dim},) to match basis, got {describe(self.mean)}")
        if tuple(self.std.shape) != (self.n_components,):
            raise ValueError(f"std: expected shape ({self.n_components},) to match basis, got {describe(self.std)}")
        if self.method not in METHODS:
            raise ValueError(f"method: expected one of {list(METHODS)}, got {self.method!r}")

    @property
    def n_components(self) -> int:
        """Number of directions."""
        return int(self.basis.shape[0])

    @property
    def dim(self) -> int:
        """Dimension of the latent space the directions live in (``w_dim``)."""
        return int(self.basis.shape[1])

    def offsets(self, coefficients: Tensor, components: Tensor | None = None) -> Tensor:
        """Latent displacements ``(B, dim)`` for ``coefficients`` ``(B, k)`` in units of each component's std.

        Args:
            coefficients: strengths, one column per chosen component.
            components: ``(k,)`` indices of the chosen components; ``None`` means all of them.
        """
        basis, std = self.basis, self.std
        if components is not None:
            basis, std = basis[components], std[components]
        basis, std = basis.to(coefficients), std.to(coefficients)
        return (coefficients * std) @ basis

    def edit(
        self,
        latents: Tensor,
        coefficients: Tensor,
        components: Tensor | None = None,
        layers: tuple[int, int] | None = None,
    ) -> Tensor:
        """``w + V r`` on the W+ layers ``layers`` (``(start, end)``, end exclusive; ``None``: all).

        Args:
            latents: ``(B, num_ws, dim)`` W+ codes (or ``(B, dim)`` W codes, then ``layers`` must be ``None``).
            coefficients: ``(B, k)`` strengths in units of each chosen component's std.
            components: ``(k,)`` indices of the chosen components; ``None`` means all of them.
            layers: the W+ layers that move.
        """
        offset = self.offsets(coefficients, components).to(latents.dtype)
        if latents.ndim == 2:
            if layers is not None:
                raise ValueError(f"layers: W codes (B, dim) have no layers; pass layers=None, got {layers!r}")
            return latents + offset
        start, end = (0, latents.shape[1]) if layers is None else check_layers(layers, latents.shape[1])
        mask = torch.zeros(latents.shape[1], 1, dtype=latents.dtype, device=latents.device)
        mask[start:end] = 1
        return latents + mask * offset[:, None, :]

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> Directions:
        """A copy on ``device`` / in ``dtype``."""
        move = lambda t: t.to(device=device, dtype=dtype)
        return Directions(move(self.basis), move(self.mean), move(self.std), self.method, dict(self.provenance))

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write to ``path`` (``.safetensors``) atomically, with method and provenance as JSON metadata."""
        tensors = {name: getattr(self, name).detach().float().cpu().contiguous() for name in ("basis", "mean", "std")}
        metadata = {"format": FORMAT, "method": self.method, "provenance": json.dumps(self.provenance)}
        write_atomic(path, lambda tmp: save_file(tensors, str(tmp), metadata=metadata))

    @classmethod
    def load(cls, path: str | os.PathLike[str], device: torch.device | str = "cpu") -> Directions:
        """Read a file written by :meth:`save`; a clear error for a missing or foreign file."""
        path = os.fspath(path)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"path: no directions file at {path!r}")
        try:
            with safe_open(path, framework="pt", device=str(device)) as handle:
                metadata = handle.metadata() or {}
                if metadata.get("format") != FORMAT:
                    raise ValueError(
                        f"path: {path!r} is not a torch_semaug directions file (expected metadata format "
                        f"{FORMAT!r}, got {metadata.get('format')!r})"
                    )
                tensors = {key: handle.get_tensor(key) for key in ("basis", "mean", "std")}
        except (SafetensorError, OSError) as error:
            raise ValueError(f"path: {path!r} is not a readable safetensors file ({error})") from None
        return cls(method=metadata["method"], provenance=json.loads(metadata["provenance"]), **tensors)

    def __repr__(self) -> str:
        space = self.provenance.get("space", "?")
        return f"Directions(method={self.method!r}, n_components={self.n_components}, dim={self.dim}, space={space!r})"
