"""The package's one image-grid writer: tiles in rows, optionally enlarged, with column titles and captions."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from torch_semaug._io import write_atomic

LINE_HEIGHT = 12  # pixels per text line of PIL's default font, with a margin


def save_grid(images: Tensor, path: str | os.PathLike[str], *, nrow: int | None = None, upscale: int = 1,
              padding: int = 2, header: Sequence[str] = (), captions: Sequence[str] | None = None) -> Path:
    """Write ``images`` to ``path`` as one PNG, atomically.

    Args:
        images: ``(N, C, H, W)`` tiles in ``[0, 1]`` (C = 1 or 3), laid out row by row on white; or one
            finished ``(C, H, W)`` image, written as it is.
        path: destination ``.png``.
        nrow: tiles per row (default: a square layout).
        upscale: integer factor every tile is enlarged by (nearest neighbour), so small images stay readable.
        padding: white pixels between tiles and around the grid.
        header: titles drawn above the columns.
        captions: one text line drawn under each tile (e.g. its true and predicted labels).
    """
    images = images.detach().float().cpu().clamp(0, 1)
    if images.ndim == 3:
        return write_atomic(path, lambda tmp: _to_pil(images).save(tmp, format="PNG"))
    if images.ndim != 4 or images.shape[1] not in (1, 3) or images.shape[0] == 0:
        raise ValueError(f"images: expected (N, 1 or 3, H, W) tiles with N >= 1, got {tuple(images.shape)}")
    if captions is not None and len(captions) != len(images):
        raise ValueError(f"captions: expected one per tile ({len(images)}), got {len(captions)}")
    if upscale != 1:
        images = F.interpolate(images, scale_factor=upscale, mode="nearest")
    canvas = _layout(images.expand(-1, 3, -1, -1), nrow or math.ceil(math.sqrt(len(images))), padding,
                     list(header), captions)
    return write_atomic(path, lambda tmp: canvas.save(tmp, format="PNG"))


def _to_pil(image: Tensor):
    from PIL import Image

    if image.shape[0] == 1:
        image = image.expand(3, -1, -1)
    return Image.fromarray((image.permute(1, 2, 0) * 255).round().to(torch.uint8).numpy())


def _layout(tiles: Tensor, nrow: int, padding: int, header: list[str], captions: Sequence[str] | None):
    from PIL import Image, ImageDraw

    height, width = tiles.shape[-2:]
    rows = math.ceil(len(tiles) / nrow)
    top = LINE_HEIGHT + 2 if header else 0
    caption = LINE_HEIGHT if captions is not None else 0
    cell_w, cell_h = width + padding, height + padding + caption
    canvas = Image.new("RGB", (nrow * cell_w + padding, top + rows * cell_h + padding), "white")
    draw = ImageDraw.Draw(canvas)
    for i, name in enumerate(header):
        draw.text((i * cell_w + padding + 1, 1), name, fill="black")
    for i, tile in enumerate(tiles):
        x, y = (i % nrow) * cell_w + padding, top + (i // nrow) * cell_h + padding
        canvas.paste(_to_pil(tile), (x, y))
        if captions is not None:
            draw.text((x + 1, y + height), captions[i], fill="black")
    return canvas
