"""Color-MNIST (Gowal et al., CVPR 2020, section 5.1): MNIST digits painted in a per-class colour.

Each digit class ``k`` has a mean colour ``mu_k``. The *biased* training set paints every stroke of a
digit with one colour drawn from ``N(mu_k, sigma^2 I)`` (clipped to [0, 1]), so colour predicts the
label; the *unbiased* test set paints each digit with a uniformly random colour, so a classifier that
learnt colour fails there. Images are 32x32 RGB in [0, 1] (the 28x28 digit padded by 2 pixels), on black.

Built in code from the raw MNIST idx files (``torchvision.datasets.MNIST(root, download=False)``);
nothing is downloaded. ``ColorMNIST.synthetic`` builds a tiny stand-in from drawn strokes for tests.
"""

from __future__ import annotations

import colorsys
import os

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import Dataset

from torch_semaug._checks import check_choice, check_int_at_least
from torch_semaug.data.datasets import default_data_root

COLORINGS = ("biased", "uniform")
#: Mean colour of each class: ten hues evenly spaced on the colour wheel at full saturation and value.
CLASS_COLORS = torch.tensor([colorsys.hsv_to_rgb(k / 10, 1.0, 1.0) for k in range(10)], dtype=torch.float32)


class ColorMNIST(Dataset):
    """Coloured MNIST digits, 32x32 RGB float tensors in [0, 1], with their digit labels.

    Colours are drawn once at construction from ``seed``, so the dataset is the same on every run.

    Args:
        digits: ``(N, 28, 28)`` uint8 grey digits.
        labels: ``(N,)`` int64 classes 0..9.
        coloring: ``"biased"`` (class mean colour + N(0, sigma^2) noise) or ``"uniform"`` (random colour).
        sigma: std of the colour noise of the biased set.
        seed: seed of the colour draws.
        size: output size; the 28x28 digit is zero-padded to it (must be >= 28).
    """

    def __init__(
        self,
        digits: Tensor,              # (N, 28, 28) uint8 grey digits
        labels: Tensor,              # (N,) classes 0..9
        *,
        coloring: str = "biased",    # "biased" (per-class mean colour) or "uniform" (random colours)
        sigma: float = 0.1,          # std of the colour noise around the class mean (biased only)
        seed: int = 0,               # seed of the colour draws
        size: int = 32,              # output size (zero padding around the 28x28 digit)
    ) -> None:
        check_choice(coloring, COLORINGS, "coloring")
        check_int_at_least(size, digits.shape[-1], "size")
        if digits.ndim != 3 or labels.shape != (digits.shape[0],):
            raise ValueError(f"digits/labels: expected (N, H, W) and (N,), got {tuple(digits.shape)}, "
                             f"{tuple(labels.shape)}")
        if sigma < 0:
            raise ValueError(f"sigma: expected a number >= 0, got {sigma!r}")
        self.digits = digits
        self.labels = labels.long()
        self.coloring, self.sigma, self.size = coloring, float(sigma), size
        rng = torch.Generator().manual_seed(seed)
        if coloring == "biased":
            noise = torch.randn(len(labels), 3, generator=rng) * sigma
            self.colors = (CLASS_COLORS[self.labels] + noise).clamp(0.0, 1.0)
        else:
            self.colors = torch.rand(len(labels), 3, generator=rng)

    @classmethod
    def from_mnist(cls, root: str | None = None, *, train: bool = True, coloring: str | None = None,
                   sigma: float = 0.1, seed: int = 0, size: int = 32) -> ColorMNIST:
        """Color-MNIST from the raw MNIST files under ``root`` (default :func:`default_data_root`).

        ``coloring`` defaults to the paper's protocol: ``"biased"`` for train, ``"uniform"`` for test.
        """
        from torchvision.datasets import MNIST

        root = default_data_root() if root is None else root
        try:
            mnist = MNIST(root, train=train, download=False)
        except RuntimeError as error:
            raise FileNotFoundError(
                f"data_root: no MNIST raw files under {os.path.join(root, 'MNIST', 'raw')!r} ({error}); point "
                "--data-root (or $SEMAUG_DATA, or root=) at the folder holding MNIST/raw"
            ) from None
        coloring = ("biased" if train else "uniform") if coloring is None else coloring
        return cls(mnist.data, mnist.targets, coloring=coloring, sigma=sigma, seed=seed, size=size)

    @classmethod
    def synthetic(cls, n: int = 64, *, coloring: str = "biased", sigma: float = 0.1, seed: int = 0,
                  size: int = 32) -> ColorMNIST:
        """A tiny offline stand-in for tests: class ``k`` is a bar at angle ``18 k`` degrees (+ jitter)."""
        check_int_at_least(n, 1, "n")
        rng = torch.Generator().manual_seed(seed)
        labels = torch.arange(n) % 10
        coords = torch.linspace(-1, 1, 28)
        yy, xx = torch.meshgrid(coords, coords, indexing="ij")
        angle = labels.float() * torch.pi / 10 + 0.05 * torch.randn(n, generator=rng)
        distance = (xx[None] * torch.sin(angle)[:, None, None] - yy[None] * torch.cos(angle)[:, None, None]).abs()
        strokes = ((distance < 0.15) & (xx[None].square() + yy[None].square() < 0.7)).to(torch.uint8) * 255
        return cls(strokes, labels, coloring=coloring, sigma=sigma, seed=seed, size=size)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        grey = self.digits[index].float() / 255.0
        pad = self.size - grey.shape[-1]
        grey = F.pad(grey, (pad // 2, pad - pad // 2, pad // 2, pad - pad // 2))
        return grey[None] * self.colors[index][:, None, None], int(self.labels[index])

    def __repr__(self) -> str:
        return f"ColorMNIST(n={len(self)}, coloring={self.coloring!r}, sigma={self.sigma}, size={self.size})"
