"""Helpers shared by the generators: exact flattening of multi-scale latents, a straight-through clamp.

Flattening turns a list of per-level tensors into one ``(B, D)`` tensor and back. Multi-scale flows (Glow,
normflows ``MultiscaleFlow``, FrEIA graphs with split nodes) emit one latent per level; norm balls and
projections need one vector per example, so generators flatten the list in a fixed order and restore it
by pure reshapes, which lose nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

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


class _StraightThroughClamp(torch.autograd.Function):
    """Clamp in the forward pass, identity in the backward pass.

    One op and exact in value; ``x + (x.clamp(low, high) - x).detach()`` costs three and, for large
    ``|x|``, rounds away from the bound.
    """

    @staticmethod
    def forward(ctx: Any, x: Tensor, low: float, high: float) -> Tensor:
        return x.clamp(low, high)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None, None]:
        return grad, None, None


def straight_through_clamp(x: Tensor, low: float, high: float) -> Tensor:
    """``x`` clamped to ``[low, high]`` in value, with the identity's gradient.

    Decoders and the transforms' mapping into the classifier's space keep images in their range without
    cutting the gradient at the edges, so an attack can still move a saturated pixel (or a generator
    output at the boundary) back inside, as in textbook PGD.
    """
    return _StraightThroughClamp.apply(x, low, high)
