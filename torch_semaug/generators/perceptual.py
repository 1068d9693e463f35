"""Perceptual distance for GAN inversion: features of a frozen network, compared layer by layer.

Which network is used (attribute ``source``, also logged once at INFO level on ``torch_semaug``):

1. ``"user"`` — a network you pass (``features=``): any module mapping images in [-1, 1] to a tensor or a
   list of feature maps (e.g. a VGG or ResNet trunk you trust for your domain);
2. ``"vgg16-imagenet"`` — torchvision's VGG-16 (relu1_2, relu2_2, relu3_3, relu4_3), used only when its
   ImageNet weights are already in the torch hub cache (``torch.hub.get_dir()/checkpoints``): nothing is
   ever downloaded;
3. ``"random-conv"`` — the fallback: a fixed, seeded random convolutional network (four stages, each
   halving the resolution). Random conv features still measure local structure at several scales
   (Ulyanov et al.'s deep image prior line of work), which is enough for small domains such as
   Color-MNIST, but weaker than VGG on natural images — pass ``features=`` there.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from torch_semaug._checks import check_int_at_least, check_tensor, describe

log = logging.getLogger("torch_semaug")
VGG16_FILE = "vgg16-397923af.pth"
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


def _vgg16_weights() -> Path | None:
    path = Path(torch.hub.get_dir()) / "checkpoints" / VGG16_FILE
    return path if path.is_file() else None


class _VGGTrunk(nn.Module):
    def __init__(self, weights: Path) -> None:
        super().__init__()
        from torchvision.models import vgg16

        net = vgg16()
        net.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
        self.stages = nn.ModuleList([net.features[a:b] for a, b in ((0, 4), (4, 9), (9, 16), (16, 23))])
        self.register_buffer("mean", torch.tensor(_IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(_IMAGENET_STD).view(1, 3, 1, 1))

    def forward(self, images: Tensor) -> list[Tensor]:
        x = images.expand(-1, 3, -1, -1) * 0.5 + 0.5
        if x.shape[-1] < 64:  # VGG's receptive fields need some room
            x = F.interpolate(x, size=64, mode="bilinear", align_corners=False)
        x = (x - self.mean) / self.std
        out = []
        for stage in self.stages:
            x = stage(x)
            out.append(x)
        return out


class _RandomConvTrunk(nn.Module):
    def __init__(self, in_channels: int = 3, width: int = 32, seed: int = 0) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        self.convs = nn.ModuleList()
        channels = in_channels
        for i in range(4):
            conv = nn.Conv2d(channels, width * 2**min(i, 2), 3, padding=1)
            with torch.no_grad():
                conv.weight.copy_(torch.randn(conv.weight.shape, generator=gen) / (channels * 9) ** 0.5)
                conv.bias.zero_()
            self.convs.append(conv)
            channels = conv.out_channels

    def forward(self, images: Tensor) -> list[Tensor]:
        out = []
        x = images
        for i, conv in enumerate(self.convs):
            x = F.leaky_relu(conv(x if i == 0 else F.avg_pool2d(x, 2)), 0.2)
            out.append(x)
        return out


class PerceptualDistance(nn.Module):
    """Per-example distance: mean over layers of the mean squared difference of unit-normalised features.

    Args:
        features: a network mapping images in [-1, 1] to a tensor or a list of feature maps; ``None``
            picks VGG-16 if its weights are cached locally, else the random-conv fallback.
        image_channels: channels of the images (for the fallback network).
    """

    def __init__(self, features: nn.Module | None = None, image_channels: int = 3) -> None:
        super().__init__()
        check_int_at_least(image_channels, 1, "image_channels")
        if features is not None:
            if not callable(features):
                raise TypeError(f"features: expected an nn.Module returning feature maps, got {describe(features)}")
            self.net, self.source = features, "user"
        elif image_channels in (1, 3) and (weights := _vgg16_weights()) is not None:
            self.net, self.source = _VGGTrunk(weights), "vgg16-imagenet"
        else:
            self.net, self.source = _RandomConvTrunk(image_channels), "random-conv"
        self.net.eval().requires_grad_(False)
        log.info("perceptual features: %s%s", self.source, "" if self.source != "random-conv" else
                 f" (no VGG-16 weights in {os.path.join(torch.hub.get_dir(), 'checkpoints')}; pass features=)")

    def forward(self, a: Tensor, b: Tensor) -> Tensor:
        """``(B,)`` distances between images ``a`` and ``b`` in [-1, 1]."""
        check_tensor(a, "a")
        check_tensor(b, "b")
        if a.shape != b.shape:
            raise ValueError(f"b: expected images of the shape of a {tuple(a.shape)}, got {tuple(b.shape)}")
        fa, fb = self.net(a), self.net(b)
        fa = [fa] if isinstance(fa, Tensor) else list(fa)
        fb = [fb] if isinstance(fb, Tensor) else list(fb)
        total = a.new_zeros(a.shape[0])
        for x, y in zip(fa, fb):
            x = x / (x.square().sum(1, keepdim=True) + 1e-10).sqrt()
            y = y / (y.square().sum(1, keepdim=True) + 1e-10).sqrt()
            total = total + (x - y).square().sum(1).flatten(1).mean(1)
        return total / len(fa)
