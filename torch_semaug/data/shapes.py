"""Colour-biased shapes: the demo's offline dataset, drawn in code (a Color-MNIST in miniature).

One shape per class (disk, square, triangle, plus, ring), drawn with PIL at 4x the output size with a
random position and size, then downsampled (antialiased) to ``size`` pixels. Like Color-MNIST (Gowal et
al., CVPR 2020, section 5.1) the *biased* set paints every shape of class ``k`` in a colour drawn from
``N(mu_k, sigma^2 I)`` (clipped to [0, 1]), so colour alone predicts the label; the *uniform* set paints
each shape in a uniformly random colour, so a classifier that learnt colour fails there.
"""

from __future__ import annotations

import colorsys

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from torch_semaug._checks import check_choice, check_int_at_least

SHAPES = ("disk", "square", "triangle", "plus", "ring")
COLORINGS = ("biased", "uniform")
#: Mean colour of each class: hues evenly spaced on the colour wheel at full saturation and value.
SHAPE_COLORS = torch.tensor([colorsys.hsv_to_rgb(k / len(SHAPES), 1.0, 1.0) for k in range(len(SHAPES))],
                            dtype=torch.float32)


def _draw(shape: str, size: int, cx: float, cy: float, r: float) -> np.ndarray:
    """A grey ``(size, size)`` mask of one shape, drawn at 4x and box-downsampled (antialiasing)."""
    from PIL import Image, ImageDraw

    s = 4
    image = Image.new("L", (size * s, size * s), 0)
    draw = ImageDraw.Draw(image)
    x, y, rr = cx * s, cy * s, r * s
    box = (x - rr, y - rr, x + rr, y + rr)
    if shape == "disk":
        draw.ellipse(box, fill=255)
    elif shape == "square":
        draw.rectangle((x - 0.8 * rr, y - 0.8 * rr, x + 0.8 * rr, y + 0.8 * rr), fill=255)
    elif shape == "triangle":
        draw.polygon([(x, y - rr), (x - rr, y + 0.8 * rr), (x + rr, y + 0.8 * rr)], fill=255)
    elif shape == "plus":
        w = 0.35 * rr
        draw.rectangle((x - rr, y - w, x + rr, y + w), fill=255)
        draw.rectangle((x - w, y - rr, x + w, y + rr), fill=255)
    else:  # ring
        draw.ellipse(box, fill=255)
        inner = 0.55 * rr
        draw.ellipse((x - inner, y - inner, x + inner, y + inner), fill=0)
    return np.asarray(image.resize((size, size), Image.BOX), dtype=np.float32) / 255.0


class ColorShapes(Dataset):
    """Coloured shapes on black, ``(3, size, size)`` float tensors in [0, 1], with their class labels.

    Everything (shapes, positions, colours) is drawn once at construction from ``seed``.

    Args:
        n: number of images (classes cycle 0, 1, ..., so they are balanced).
        coloring: ``"biased"`` (class mean colour + N(0, sigma^2) noise) or ``"uniform"`` (random colours).
        sigma: std of the colour noise of the biased set.
        seed: seed of every random draw.
        size: image size in pixels (>= 8).
    """

    def __init__(
        self,
        n: int = 2000,               # number of images
        *,
        coloring: str = "biased",    # "biased" (per-class mean colour) or "uniform" (random colours)
        sigma: float = 0.05,         # std of the colour noise around the class mean (biased only)
        seed: int = 0,               # seed of shapes, positions and colours
        size: int = 16,              # image size
    ) -> None:
        check_int_at_least(n, 1, "n")
        check_choice(coloring, COLORINGS, "coloring")
        check_int_at_least(size, 8, "size")
        if sigma < 0:
            raise ValueError(f"sigma: expected a number >= 0, got {sigma!r}")
        rng = np.random.default_rng(seed)
        self.labels = torch.arange(n) % len(SHAPES)
        radius = rng.uniform(0.28, 0.40, n) * size
        centre = size / 2 + rng.uniform(-0.12, 0.12, (n, 2)) * size
        self.masks = torch.from_numpy(np.stack([
            _draw(SHAPES[k], size, cx, cy, r) for k, (cx, cy), r in zip(self.labels.tolist(), centre, radius)
        ]))
        colors = torch.from_numpy(rng.random((n, 3), dtype=np.float32))
        if coloring == "biased":
            noise = torch.from_numpy(rng.standard_normal((n, 3)).astype(np.float32)) * sigma
            colors = (SHAPE_COLORS[self.labels] + noise).clamp(0.0, 1.0)
        self.colors = colors
        self.coloring, self.sigma, self.size = coloring, float(sigma), size

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        return self.masks[index][None] * self.colors[index][:, None, None], int(self.labels[index])

    def tensors(self) -> tuple[Tensor, Tensor]:
        """All images ``(N, 3, size, size)`` in [0, 1] and labels ``(N,)`` at once."""
        return self.masks[:, None] * self.colors[:, :, None, None], self.labels.clone()

    def __repr__(self) -> str:
        return f"ColorShapes(n={len(self)}, coloring={self.coloring!r}, sigma={self.sigma}, size={self.size})"
