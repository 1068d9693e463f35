"""Exact flattening of multi-scale latents: a list of per-level tensors <-> one ``(B, D)`` tensor.

Multi-scale flows (Glow, normflows ``MultiscaleFlow``, FrEIA graphs with split nodes) emit one latent per
level. Norm balls and projections need one vector per example, so generators flatten the list in a fixed
order and restore it by pure reshapes, which lose nothing.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor


def flatten_latents(latents: Sequence[Tensor]) -> Tensor:
    """Concatenate per-level latents ``[(B, *shape_i)]`` into ``(B, sum_i prod(shape_i))``."""
    return torch.cat([z.reshape(z.shape[0], -1) for z in latents], dim=1)


def unflatten_latents(flat: Tensor, shapes: Sequence[tuple[int, ...]]) -> list[Tensor]:
    """Split ``(B, D)`` back into per-level latents of ``shapes`` (each without the batch dimension).

    Raises:
        ValueError: if ``D`` differs from the total size of ``shapes``.
    """
    sizes = [int(torch.Size(s).numel()) for s in shapes]
    if flat.ndim != 2 or flat.shape[1] != sum(sizes):
        raise ValueError(
            f"latents: expected shape (B, {sum(sizes)}) (levels {[tuple(s) for s in shapes]}), got {tuple(flat.shape)}"
        )
    parts = torch.split(flat, sizes, dim=1)
    return [p.reshape(flat.shape[0], *s) for p, s in zip(parts, shapes)]


def straight_through_clamp(x: Tensor, low: float, high: float) -> Tensor:
    """``x`` clamped to ``[low, high]`` in value, with the identity's gradient.

    Decoders keep images in their range without cutting the gradient at the edges, so an attack can
    still move a saturated pixel back inside (as the transform base's output clamp does).
    """
    return x + (x.clamp(low, high) - x).detach()
