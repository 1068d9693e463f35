"""A small residual StyleGAN2-style discriminator, used only to train :class:`~torch_semaug.generators.StyleGAN2`."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from torch_semaug.generators.stylegan2_layers import SQRT2, EqualConv2d, EqualLinear, lrelu_gain


class DiscriminatorBlock(nn.Module):
    """Two 3x3 convs and a 2x average-pool downsample, with a 1x1 residual path (scaled by 1/sqrt(2))."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv0 = EqualConv2d(in_channels, in_channels, 3)
        self.conv1 = EqualConv2d(in_channels, out_channels, 3)
        self.skip = EqualConv2d(in_channels, out_channels, 1, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        skip = self.skip(F.avg_pool2d(x, 2))
        x = lrelu_gain(self.conv0(x))
        x = lrelu_gain(self.conv1(F.avg_pool2d(x, 2)))
        return (x + skip) / SQRT2


class Discriminator(nn.Module):
    """fromRGB, residual blocks down to 4x4, minibatch standard deviation, conv, two linear layers.

    Args:
        resolution: input size (power of two >= 8).
        channels: feature maps per resolution ``{4: c4, 8: c8, ...}`` (usually the generator's).
        image_channels: channels of the input images.
        mbstd_group: group size of the minibatch-std feature (the batch is split into such groups).
    """

    def __init__(self, resolution: int, channels: dict[int, int], image_channels: int = 3, mbstd_group: int = 4):
        super().__init__()
        resolutions = [2**i for i in range(int(math.log2(resolution)), 2, -1)]
        self.from_rgb = EqualConv2d(image_channels, channels[resolution], 1)
        self.blocks = nn.Sequential(*[DiscriminatorBlock(channels[r], channels[r // 2]) for r in resolutions])
        self.mbstd_group = mbstd_group
        self.conv = EqualConv2d(channels[4] + 1, channels[4], 3)
        self.fc = EqualLinear(channels[4] * 16, channels[4], activate=True)
        self.out = EqualLinear(channels[4], 1)

    def minibatch_std(self, x: Tensor) -> Tensor:
        batch, channels, height, width = x.shape
        group = math.gcd(batch, self.mbstd_group)
        y = x.reshape(group, -1, channels, height, width)
        y = (y.var(0, unbiased=False) + 1e-8).sqrt().mean((1, 2, 3))    # (batch // group,)
        y = y.repeat(group).reshape(batch, 1, 1, 1).expand(-1, 1, height, width)
        return torch.cat([x, y], dim=1)

    def forward(self, images: Tensor) -> Tensor:
        x = self.blocks(lrelu_gain(self.from_rgb(images)))
        x = lrelu_gain(self.conv(self.minibatch_std(x)))
        return self.out(self.fc(x.flatten(1))).squeeze(1)
