"""A tiny W+ generator for tests: the StyleGAN2 interface (mapping, w_avg, W+ synthesis blocks) in 16 px.

Not a GAN: random weights, but every part the direction code touches behaves like StyleGAN2's; ``encode``
is a fixed random projection standing in for an attached encoder. Each
synthesis block reads its own W+ layer, so edits restricted to a layer range change only those blocks.
With ``linear=True`` the mapping is ``w = z @ M + b`` and the first block is affine in its W+ layer,
which gives tests analytic principal directions to compare against.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from torch_semaug.generators.base import LatentGenerator
from torch_semaug.generators.io import register_generator


class _Block(nn.Module):
    """Style-modulated 3x3 conv reading one W+ layer, then (optionally) a 2x upsample."""

    def __init__(self, w_dim: int, c_in: int, c_out: int, upsample: bool, slope: float) -> None:
        super().__init__()
        self.affine = nn.Linear(w_dim, c_in)
        self.conv = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.upsample = upsample
        self.slope = slope

    def forward(self, x: Tensor, w: Tensor) -> Tensor:
        x = self.conv(x * (1 + self.affine(w))[:, :, None, None])
        x = F.leaky_relu(x, self.slope)
        return F.interpolate(x, scale_factor=2, mode="nearest") if self.upsample else x


class _Synthesis(nn.Module):
    def __init__(self, w_dim: int, channels: int, slope: float) -> None:
        super().__init__()
        self.const = nn.Parameter(torch.randn(channels, 4, 4))
        self.b4 = _Block(w_dim, channels, channels, True, slope)
        self.b8 = _Block(w_dim, channels, channels, True, 0.2)
        self.b16 = _Block(w_dim, channels, channels, False, 0.2)
        self.to_rgb = nn.Linear(w_dim, 3)
        self.rgb = nn.Conv2d(channels, 3, 1)

    def forward(self, ws: Tensor) -> Tensor:
        x = self.const.expand(ws.shape[0], -1, -1, -1)
        x = self.b4(x, ws[:, 0])
        x = self.b8(x, ws[:, 1])
        x = self.b16(x, ws[:, 2])
        return torch.tanh(self.rgb(x) + self.to_rgb(ws[:, 3])[:, :, None, None])


@register_generator("wplus_toy")
class ToyWPlusGenerator(LatentGenerator):
    """16 px, 3 channels, ``num_ws = 4`` W+ layers of ``w_dim``; images in ``(-1, 1)``.

    Args:
        z_dim: prior dimension.
        w_dim: intermediate latent dimension.
        channels: feature channels of the synthesis blocks.
        linear: affine mapping and an affine first block (analytic principal directions).
        seed: seeds the random weights.
    """

    def __init__(self, z_dim: int = 8, w_dim: int = 8, channels: int = 8, linear: bool = False, seed: int = 0) -> None:
        super().__init__()
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            self._build(z_dim, w_dim, channels, linear, seed)
        self.freeze()

    def _build(self, z_dim: int, w_dim: int, channels: int, linear: bool, seed: int) -> None:
        self.z_dim, self.w_dim, self.num_ws, self.channels = z_dim, w_dim, 4, channels
        self.linear, self.seed = linear, seed
        self.image_shape = (3, 16, 16)
        self.image_range = (-1.0, 1.0)
        self.latent_shape = (self.num_ws, w_dim)
        if linear:
            # Distinct singular values so the principal axes are well defined.
            scales = torch.linspace(3.0, 0.5, min(z_dim, w_dim))
            q1, _ = torch.linalg.qr(torch.randn(z_dim, z_dim))
            q2, _ = torch.linalg.qr(torch.randn(w_dim, w_dim))
            matrix = q1[:, : scales.numel()] @ torch.diag(scales) @ q2[: scales.numel()]
            self.mapping_net = nn.Linear(z_dim, w_dim)
            with torch.no_grad():
                self.mapping_net.weight.copy_(matrix.T)
        else:
            self.mapping_net = nn.Sequential(nn.Linear(z_dim, w_dim), nn.LeakyReLU(0.2), nn.Linear(w_dim, w_dim))
        self.synthesis = _Synthesis(w_dim, channels, 1.0 if linear else 0.2)
        with torch.no_grad():
            self.register_buffer("w_avg", self.mapping_net(torch.randn(4096, z_dim)).mean(0))
        # A stand-in encoder (fixed random projection of a 2x2 thumbnail), so calls without cached
        # latents work as with a real attached encoder.
        self.register_buffer("encoder_weight", torch.randn(12, w_dim) * 0.5)

    def config(self) -> dict[str, Any]:
        return dict(z_dim=self.z_dim, w_dim=self.w_dim, channels=self.channels, linear=self.linear, seed=self.seed)

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> ToyWPlusGenerator:
        return cls(**config)

    def mapping(self, z: Tensor, truncation_psi: float = 1.0) -> Tensor:
        w = self.mapping_net(z)
        return self.w_avg + truncation_psi * (w - self.w_avg)

    def sample_latent(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        device = generator.device if generator is not None else self.device
        z = torch.randn(n, self.z_dim, generator=generator, device=device).to(self.device)
        return self.mapping(z).unsqueeze(1).expand(-1, self.num_ws, -1).contiguous()

    def decode(self, latents: Tensor) -> Tensor:
        return self.synthesis(latents)

    def encode(self, images: Tensor) -> Tensor:
        thumb = F.adaptive_avg_pool2d(images, 2).flatten(1)
        w = self.w_avg + thumb @ self.encoder_weight
        return w.unsqueeze(1).expand(-1, self.num_ws, -1).contiguous()

    def mix(self, w_content: Tensor, w_style: Tensor, split: int) -> Tensor:
        return torch.cat([w_content[:, :split], w_style[:, split:]], dim=1)
