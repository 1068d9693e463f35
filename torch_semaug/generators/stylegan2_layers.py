"""Building blocks of the pure-PyTorch StyleGAN2 (Karras et al., 2020): no custom CUDA/C++ operators.

Every weight is stored with the "equalised learning rate" convention of the paper: parameters are drawn
from N(0, 1) (divided by the layer's learning-rate multiplier) and scaled by ``1 / sqrt(fan_in)`` at run
time. That is also the convention of rosinality's ``stylegan2-pytorch``, so its checkpoints map onto these
modules by renaming keys (see :mod:`torch_semaug.generators.rosinality`).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

SQRT2 = math.sqrt(2.0)
BLUR_TAPS = (1.0, 3.0, 3.0, 1.0)
NOISE_MODES = ("const", "random", "none")


def blur_kernel(taps: tuple[float, ...] = BLUR_TAPS, gain: float = 1.0) -> Tensor:
    """Separable 2-D FIR kernel from 1-D taps, normalised to sum to ``gain``."""
    row = torch.tensor(taps, dtype=torch.float32)
    kernel = row[:, None] * row[None, :]
    return kernel / kernel.sum() * gain


def upfirdn2d(x: Tensor, kernel: Tensor, up: int = 1, pad: tuple[int, int] = (0, 0)) -> Tensor:
    """Zero-insertion upsampling by ``up``, zero padding ``pad`` (before, after) on both axes, then FIR filter.

    The filter is a true convolution (kernel flipped), applied per channel.
    """
    batch, channels, height, width = x.shape
    if up > 1:
        x = x.reshape(batch, channels, height, 1, width, 1)
        x = F.pad(x, (0, up - 1, 0, 0, 0, up - 1))
        x = x.reshape(batch, channels, height * up, width * up)
    x = F.pad(x, (pad[0], pad[1], pad[0], pad[1]))
    weight = kernel.flip(0, 1).to(x.dtype)[None, None].expand(channels, 1, *kernel.shape)
    return F.conv2d(x, weight, groups=channels)


def lrelu_gain(x: Tensor) -> Tensor:
    """Leaky ReLU (slope 0.2) times sqrt(2), which keeps the activations' second moment."""
    return F.leaky_relu(x, 0.2) * SQRT2


class EqualLinear(nn.Module):
    """Fully connected layer with run-time weight scaling and a learning-rate multiplier."""

    def __init__(
        self,
        in_features: int,             # input width
        out_features: int,            # output width
        *,
        bias_init: float = 0.0,       # initial bias (1 for style affines: styles start near identity)
        lr_mul: float = 1.0,          # learning-rate multiplier (0.01 in the mapping network)
        activate: bool = False,       # leaky ReLU with gain sqrt(2) after the bias
    ) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_features, in_features) / lr_mul)
        self.bias = nn.Parameter(torch.full((out_features,), float(bias_init)))
        self.scale = lr_mul / math.sqrt(in_features)
        self.lr_mul = lr_mul
        self.activate = activate

    def forward(self, x: Tensor) -> Tensor:
        out = F.linear(x, self.weight * self.scale, self.bias * self.lr_mul)
        return lrelu_gain(out) if self.activate else out


class EqualConv2d(nn.Module):
    """Plain convolution with run-time weight scaling (used by the discriminator)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, *, bias: bool = True) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        self.scale = 1.0 / math.sqrt(in_channels * kernel_size**2)
        self.padding = kernel_size // 2

    def forward(self, x: Tensor) -> Tensor:
        return F.conv2d(x, self.weight * self.scale, self.bias, padding=self.padding)


class ModulatedConv2d(nn.Module):
    """Convolution whose input channels are scaled by a per-example style, optionally demodulated.

    Computed as ``conv(x * s, W) * d`` with ``d = rsqrt(sum((W s)^2) + 1e-8)``, which equals convolving
    with the per-example weight ``W s d`` but keeps one shared weight, so a batch is one ordinary
    convolution. With ``upsample`` the convolution is transposed (stride 2) and followed by a [1,3,3,1]
    blur, giving exactly twice the input size.
    """

    def __init__(
        self,
        in_channels: int,             # input feature maps
        out_channels: int,            # output feature maps
        kernel_size: int,             # 3 for synthesis layers, 1 for toRGB
        w_dim: int,                   # width of the style vector w
        *,
        demodulate: bool = True,      # normalise each output map (off for toRGB)
        upsample: bool = False,       # double the resolution (first layer of each block)
    ) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.affine = EqualLinear(w_dim, in_channels, bias_init=1.0)
        self.scale = 1.0 / math.sqrt(in_channels * kernel_size**2)
        self.demodulate = demodulate
        self.upsample = upsample
        self.padding = kernel_size // 2
        if upsample:
            self.register_buffer("blur", blur_kernel(gain=4.0), persistent=False)

    def forward(self, x: Tensor, w: Tensor) -> Tensor:
        style = self.affine(w)                                       # (B, in)
        weight = self.weight * self.scale
        x = x * style[:, :, None, None]
        if self.upsample:
            x = F.conv_transpose2d(x, weight.transpose(0, 1), stride=2)
        else:
            x = F.conv2d(x, weight, padding=self.padding)
        if self.demodulate:
            # sum over (in, kh, kw) of (W * s)^2 = (s^2) @ sum_k W^2
            power = style.square() @ weight.square().sum((2, 3)).t()    # (B, out)
            x = x * torch.rsqrt(power + 1e-8)[:, :, None, None]
        if self.upsample:
            x = upfirdn2d(x, self.blur, pad=(1, 1))
        return x


class SynthesisLayer(nn.Module):
    """Modulated 3x3 convolution, per-pixel noise, bias and leaky ReLU: one W+ style input.

    ``conv_clamp`` (if not None) clamps the activations to ``[-conv_clamp, conv_clamp]``, as NVIDIA's
    fp16-trained configurations do (256), so their snapshots decode the same here.
    """

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, resolution: int, *, upsample: bool,
                 conv_clamp: float | None = None) -> None:
        super().__init__()
        self.conv_clamp = conv_clamp
        self.conv = ModulatedConv2d(in_channels, out_channels, 3, w_dim, upsample=upsample)
        self.noise_strength = nn.Parameter(torch.zeros(1))
        self.register_buffer("noise_const", torch.randn(1, 1, resolution, resolution))
        self.bias = nn.Parameter(torch.zeros(out_channels))
        self.resolution = resolution

    def forward(self, x: Tensor, w: Tensor, noise_mode: str) -> Tensor:
        x = self.conv(x, w)
        if noise_mode == "const":
            x = x + self.noise_strength * self.noise_const.to(x.dtype)
        elif noise_mode == "random":
            noise = torch.randn(x.shape[0], 1, self.resolution, self.resolution, device=x.device, dtype=x.dtype)
            x = x + self.noise_strength * noise
        x = lrelu_gain(x + self.bias[None, :, None, None])
        return x if self.conv_clamp is None else x.clamp(-self.conv_clamp, self.conv_clamp)


class ToRGB(nn.Module):
    """Modulated 1x1 convolution to image channels (no demodulation) plus bias, clamped like SynthesisLayer."""

    def __init__(self, in_channels: int, image_channels: int, w_dim: int, *, conv_clamp: float | None = None) -> None:
        super().__init__()
        self.conv = ModulatedConv2d(in_channels, image_channels, 1, w_dim, demodulate=False)
        self.bias = nn.Parameter(torch.zeros(image_channels))
        self.conv_clamp = conv_clamp

    def forward(self, x: Tensor, w: Tensor) -> Tensor:
        x = self.conv(x, w) + self.bias[None, :, None, None]
        return x if self.conv_clamp is None else x.clamp(-self.conv_clamp, self.conv_clamp)


class SynthesisBlock(nn.Module):
    """All layers at one resolution: (upsampling conv,) conv, toRGB added to the upsampled skip image.

    The 4x4 block has one conv on the learned constant; every other block doubles the resolution. A block
    reads ``num_ws`` consecutive W+ entries, its toRGB sharing the index of the next block's first conv
    (the layout of the official model, so mixing at a W+ index means the same as there).
    """

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, resolution: int, image_channels: int,
                 conv_clamp: float | None = None):
        super().__init__()
        self.resolution = resolution
        self.conv0 = (
            SynthesisLayer(in_channels, out_channels, w_dim, resolution, upsample=True, conv_clamp=conv_clamp)
            if resolution > 4 else None
        )
        self.conv1 = SynthesisLayer(out_channels if resolution > 4 else in_channels, out_channels, w_dim,
                                    resolution, upsample=False, conv_clamp=conv_clamp)
        self.torgb = ToRGB(out_channels, image_channels, w_dim, conv_clamp=conv_clamp)
        self.num_convs = 2 if resolution > 4 else 1
        if resolution > 4:
            self.register_buffer("skip_kernel", blur_kernel(gain=4.0), persistent=False)

    def forward(self, x: Tensor, image: Tensor | None, ws: Tensor, noise_mode: str) -> tuple[Tensor, Tensor]:
        """``ws`` is ``(B, num_convs + 1, w_dim)``: one per conv, then the toRGB style."""
        if self.conv0 is not None:
            x = self.conv0(x, ws[:, 0], noise_mode)
        x = self.conv1(x, ws[:, self.num_convs - 1], noise_mode)
        rgb = self.torgb(x, ws[:, self.num_convs])
        if image is not None:
            rgb = rgb + upfirdn2d(image, self.skip_kernel, up=2, pad=(2, 1))
        return x, rgb


class MappingNetwork(nn.Module):
    """z -> w: pixel norm, then ``num_layers`` fully connected layers with a small learning rate."""

    def __init__(self, z_dim: int, w_dim: int, num_layers: int, lr_mul: float) -> None:
        super().__init__()
        self.num_layers = num_layers
        for i in range(num_layers):
            self.add_module(f"fc{i}", EqualLinear(z_dim if i == 0 else w_dim, w_dim, lr_mul=lr_mul, activate=True))

    def forward(self, z: Tensor) -> Tensor:
        x = z * torch.rsqrt(z.square().mean(1, keepdim=True) + 1e-8)
        for i in range(self.num_layers):
            x = getattr(self, f"fc{i}")(x)
        return x


class SynthesisNetwork(nn.Module):
    """W+ ``(B, num_ws, w_dim)`` -> image: a learned 4x4 constant and one block per resolution.

    Blocks are submodules ``b4, b8, ..., b{resolution}`` so forward hooks can read their activations.
    """

    def __init__(self, resolution: int, channels: dict[int, int], w_dim: int, image_channels: int,
                 conv_clamp: float | None = None) -> None:
        super().__init__()
        self.resolutions = [2**i for i in range(2, int(math.log2(resolution)) + 1)]
        self.const = nn.Parameter(torch.randn(1, channels[4], 4, 4))
        self.num_ws = 2 * len(self.resolutions)
        previous = channels[4]
        for res in self.resolutions:
            self.add_module(f"b{res}", SynthesisBlock(previous, channels[res], w_dim, res, image_channels, conv_clamp))
            previous = channels[res]

    def forward(self, ws: Tensor, noise_mode: str = "const") -> Tensor:
        x = self.const.expand(ws.shape[0], -1, -1, -1)
        image = None
        index = 0
        for res in self.resolutions:
            block: SynthesisBlock = getattr(self, f"b{res}")
            x, image = block(x, image, ws[:, index: index + block.num_convs + 1], noise_mode)
            index += block.num_convs
        return image
