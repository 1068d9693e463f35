"""NaTra's slider view: each latent direction applied at a row of strengths, one row per direction."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.utils import make_grid

from torch_semaug.directions.directions import Directions


@torch.no_grad()
def slider_grid(
    generator: nn.Module,
    directions: Directions,
    *,
    components: Sequence[int] | None = None,
    strengths: Sequence[float] = (-2.0, -1.0, 0.0, 1.0, 2.0),
    latent: Tensor | None = None,
    layers: tuple[int, int] | None = None,
    seed: int = 0,
    padding: int = 2,
    upscale: int = 1,
) -> Tensor:
    """A ``(3, H, W)`` image in ``[0, 1]``: rows = directions, columns = strengths (in units of std).

    Args:
        generator: StyleGAN-style generator (``mapping``, ``z_dim``, ``num_ws``, ``decode``).
        directions: the directions to show.
        components: which ones (default: all, in order).
        strengths: one column per value, in units of each component's std.
        latent: ``(num_ws, w_dim)`` W+ code to edit; default: one drawn with ``seed``.
        layers: W+ layer range ``(start, end)`` (end exclusive) the edit touches; ``None``: all.
        seed: seeds the drawn code.
        padding: pixels between tiles.
        upscale: integer factor each tile is enlarged by (nearest neighbour), for small generators.
    """
    device = generator.device
    if latent is None:
        z = torch.randn(1, generator.z_dim, generator=torch.Generator().manual_seed(seed)).to(device)
        latent = generator.mapping(z).unsqueeze(1).expand(-1, generator.num_ws, -1)[0]
    components = list(range(directions.n_components)) if components is None else list(components)
    rows, cols = len(components), len(strengths)
    index = torch.tensor(components, device=device)
    # Coefficients (rows * cols, k): each tile moves along one component only.
    coefficients = torch.zeros(rows, cols, rows, device=device)
    values = torch.as_tensor(list(strengths), dtype=torch.float32, device=device)
    coefficients[torch.arange(rows), :, torch.arange(rows)] = values
    coefficients = coefficients.reshape(rows * cols, rows)
    latents = latent.to(device).float().unsqueeze(0).expand(rows * cols, -1, -1)
    edited = directions.to(device).edit(latents, coefficients, index, layers)
    images = torch.cat([generator.decode(chunk) for chunk in edited.split(64)])
    low, high = generator.image_range
    images = ((images.float() - low) / (high - low)).clamp(0, 1)
    if upscale != 1:
        images = F.interpolate(images, scale_factor=upscale, mode="nearest")
    return make_grid(images.cpu(), nrow=cols, padding=padding, pad_value=1.0)
