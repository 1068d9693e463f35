"""The invertible layers of Glow (Kingma & Dhariwal, 2018), written for exact float32 inversion.

Every layer has ``forward(x) -> (y, logdet)`` used for likelihood training and encoding, and
``inverse(y) -> x`` without log-determinant bookkeeping, which is what decoding and latent attacks run.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def squeeze2d(x: Tensor) -> Tensor:
    """``(B, C, H, W) -> (B, 4C, H/2, W/2)``: each 2x2 spatial block becomes 4 channels."""
    b, c, h, w = x.shape
    x = x.reshape(b, c, h // 2, 2, w // 2, 2)
    return x.permute(0, 1, 3, 5, 2, 4).reshape(b, c * 4, h // 2, w // 2)


def unsqueeze2d(x: Tensor) -> Tensor:
    """Inverse of :func:`squeeze2d`."""
    b, c, h, w = x.shape
    x = x.reshape(b, c // 4, 2, 2, h, w)
    return x.permute(0, 1, 4, 2, 5, 3).reshape(b, c // 4, h * 2, w * 2)


class ActNorm(nn.Module):
    """Per-channel affine ``y = (x + loc) * exp(logs)``, initialised from the first training batch.

    The data-dependent initialisation (zero mean, unit variance per channel on that batch) runs on the
    first forward in training mode; ``initialized`` is a saved buffer, so a loaded model never re-runs it.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.loc = nn.Parameter(torch.zeros(1, channels, 1, 1))
        self.logs = nn.Parameter(torch.zeros(1, channels, 1, 1))
        self.register_buffer("initialized", torch.tensor(0, dtype=torch.uint8))

    @torch.no_grad()
    def _initialize(self, x: Tensor) -> None:
        mean = x.mean(dim=(0, 2, 3), keepdim=True)
        std = x.std(dim=(0, 2, 3), keepdim=True, unbiased=False)
        self.loc.copy_(-mean)
        self.logs.copy_(-torch.log(std + 1e-6))
        self.initialized.fill_(1)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        if self.training and not bool(self.initialized):
            self._initialize(x)
        logdet = self.logs.sum() * (x.shape[2] * x.shape[3])
        return (x + self.loc) * torch.exp(self.logs), logdet.expand(x.shape[0])

    def inverse(self, y: Tensor) -> Tensor:
        return y * torch.exp(-self.logs) - self.loc


class InvConv1x1(nn.Module):
    """Invertible 1x1 convolution with ``W = P L (U + diag(sign * exp(log_s)))`` (LU form).

    ``P`` and ``sign`` are fixed buffers from the QR/LU decomposition of a random rotation at
    construction; the log-determinant is ``H * W * sum(log_s)``. The inverse weight is computed in
    float64 from the exact float32 matrix the forward uses, so encode/decode round trips stay at float32
    rounding level. Once the layer is frozen both matrices are cached (every attack step decodes), and
    recomputed whenever a parameter changes in place, moves or is replaced.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        weight = torch.linalg.qr(torch.randn(channels, channels, dtype=torch.float64))[0]
        p, lower, upper = torch.linalg.lu(weight)
        diag = torch.diagonal(upper)
        self.register_buffer("p", p.float())
        self.register_buffer("sign_s", torch.sign(diag).float())
        self.register_buffer("lower_mask", torch.tril(torch.ones(channels, channels), -1))
        self.lower = nn.Parameter(lower.float())
        self.upper = nn.Parameter(torch.triu(upper, 1).float())
        self.log_s = nn.Parameter(torch.log(diag.abs()).float())
        self._cache: tuple[tuple, Tensor, Tensor] | None = None

    def _state_key(self) -> tuple | None:
        """Identifies the current weights; ``None`` while they train (the matrices need their graph)."""
        tensors = (self.lower, self.upper, self.log_s, self.p, self.sign_s)
        if any(t.requires_grad for t in tensors):
            return None
        return tuple((t.data_ptr(), t._version, t.device, t.dtype) for t in tensors)

    def weights(self) -> tuple[Tensor, Tensor]:
        """``(W, W^-1)``, cached while the layer is frozen."""
        key = self._state_key()
        if key is not None and self._cache is not None and self._cache[0] == key:
            return self._cache[1], self._cache[2]
        w = self.weight()
        w_inv = torch.linalg.inv(w.double()).to(w.dtype)
        self._cache = (key, w.detach(), w_inv.detach()) if key is not None else None
        return w, w_inv

    def weight(self) -> Tensor:
        eye = torch.eye(self.lower.shape[0], dtype=self.lower.dtype, device=self.lower.device)
        lower = self.lower * self.lower_mask + eye
        upper = self.upper * self.lower_mask.T + torch.diag(self.sign_s * torch.exp(self.log_s))
        return self.p @ lower @ upper

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        w = self.weight() if self._state_key() is None else self.weights()[0]
        logdet = self.log_s.sum() * (x.shape[2] * x.shape[3])
        return F.conv2d(x, w[:, :, None, None]), logdet.expand(x.shape[0])

    def inverse(self, y: Tensor) -> Tensor:
        return F.conv2d(y, self.weights()[1][:, :, None, None])


class ZeroConv2d(nn.Conv2d):
    """3x3 convolution initialised at zero, with a learned output scale ``exp(3 * logs)`` (as in Glow).

    Starting at zero makes every coupling and prior start as the identity / standard normal.
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(in_channels, out_channels, 3, padding=1)
        self.weight.data.zero_()
        self.bias.data.zero_()
        self.logs = nn.Parameter(torch.zeros(1, out_channels, 1, 1))

    def forward(self, x: Tensor) -> Tensor:
        return super().forward(x) * torch.exp(self.logs * 3)


class AffineCoupling(nn.Module):
    """``y_b = (x_b + shift(x_a)) * scale(x_a)``, ``y_a = x_a``, ``scale = m + (1 - m) * sigmoid(raw + 2)``.

    The sigmoid keeps the forward pass contracting (the reference Glow's stable choice; the +2 starts
    near 0.88). The floor ``m = min_scale`` keeps the *inverse* stable too: decoding divides by the
    scale, and with ``m = 0`` a latent off the data manifold can drive ``raw`` very negative, which
    divides by ~0, feeds larger inputs to the next coupling and ends in inf (seen with R-LA at the
    paper's eps on a briefly trained CIFAR-10 Glow). With ``m > 0`` each coupling amplifies by at most
    ``1 / m``. The same formula runs in both directions, so the flow stays exactly invertible.
    """

    def __init__(self, channels: int, width: int, min_scale: float = 0.5) -> None:
        super().__init__()
        self.split = channels // 2
        self.min_scale = min_scale
        self.net = nn.Sequential(
            nn.Conv2d(self.split, width, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(width, width, 1),
            nn.ReLU(),
            ZeroConv2d(width, 2 * (channels - self.split)),
        )

    def _shift_scale(self, xa: Tensor) -> tuple[Tensor, Tensor]:
        h = self.net(xa)
        shift, raw = h[:, 0::2], h[:, 1::2]
        return shift, self.min_scale + (1.0 - self.min_scale) * torch.sigmoid(raw + 2.0)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        xa, xb = x[:, : self.split], x[:, self.split :]
        shift, scale = self._shift_scale(xa)
        yb = (xb + shift) * scale
        return torch.cat([xa, yb], dim=1), torch.log(scale).flatten(1).sum(1)

    def inverse(self, y: Tensor) -> Tensor:
        ya, yb = y[:, : self.split], y[:, self.split :]
        shift, scale = self._shift_scale(ya)
        return torch.cat([ya, yb / scale - shift], dim=1)


class FlowStep(nn.Module):
    """One step of flow: actnorm, invertible 1x1 convolution, affine coupling."""

    def __init__(self, channels: int, width: int, min_scale: float = 0.5) -> None:
        super().__init__()
        self.actnorm = ActNorm(channels)
        self.invconv = InvConv1x1(channels)
        self.coupling = AffineCoupling(channels, width, min_scale)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        x, ld1 = self.actnorm(x)
        x, ld2 = self.invconv(x)
        x, ld3 = self.coupling(x)
        return x, ld1 + ld2 + ld3

    def inverse(self, y: Tensor) -> Tensor:
        return self.actnorm.inverse(self.invconv.inverse(self.coupling.inverse(y)))


class GaussianPrior(nn.Module):
    """Learned Gaussian prior ``N(mean, exp(logs)^2)`` of a split latent, conditioned on the kept half.

    The generator's latent is the *standardised* value ``(z - mean) * exp(-logs)``, which is N(0, I) under
    the model, so one eps means the same at every scale. With ``cond_channels == 0`` (the top level) the
    prior is a learned per-position constant.
    """

    def __init__(self, cond_channels: int, channels: int, spatial: tuple[int, int]) -> None:
        super().__init__()
        if cond_channels:
            self.net: nn.Module | None = ZeroConv2d(cond_channels, 2 * channels)
            self.register_parameter("top", None)
        else:
            self.net = None
            self.top = nn.Parameter(torch.zeros(1, 2 * channels, *spatial))

    def _stats(self, cond: Tensor | None, batch: int) -> tuple[Tensor, Tensor]:
        h = self.net(cond) if self.net is not None else self.top.expand(batch, -1, -1, -1)
        return h[:, 0::2], h[:, 1::2]

    def standardize(self, z: Tensor, cond: Tensor | None) -> tuple[Tensor, Tensor]:
        """``z -> (eps, log|d eps / d z|)``."""
        mean, logs = self._stats(cond, z.shape[0])
        return (z - mean) * torch.exp(-logs), -logs.flatten(1).sum(1)

    def unstandardize(self, eps: Tensor, cond: Tensor | None) -> Tensor:
        mean, logs = self._stats(cond, eps.shape[0])
        return eps * torch.exp(logs) + mean


def standard_normal_logp(eps: Tensor) -> Tensor:
    """Sum over all but the batch dimension of the standard normal log density."""
    return (-0.5 * (eps**2 + math.log(2 * math.pi))).flatten(1).sum(1)
