"""StyleGAN2 as a :class:`~torch_semaug.generators.LatentGenerator` whose latent is W+."""

from __future__ import annotations

import math
import os
from typing import Any

import torch
from torch import Tensor, nn

from torch_semaug._checks import check_choice, check_int_at_least, check_positive, check_rng, check_tensor, describe
from torch_semaug.generators.base import LatentGenerator
from torch_semaug.generators.io import load_generator, register_generator, save_generator
from torch_semaug.generators.stylegan2_layers import NOISE_MODES, MappingNetwork, SynthesisNetwork


def default_channels(resolution: int, channel_base: int, channel_max: int) -> dict[int, int]:
    """Feature maps per resolution: ``min(channel_base // res, channel_max)`` (the official rule)."""
    return {2**i: min(channel_base // 2**i, channel_max) for i in range(2, int(math.log2(resolution)) + 1)}


@register_generator("stylegan2")
class StyleGAN2(LatentGenerator):
    """Pure-PyTorch StyleGAN2 generator (skip toRGB architecture, modulated/demodulated convolutions).

    The latent is W+: ``latent_shape = (num_ws, w_dim)``, one style per synthesis layer. Images are in
    ``image_range = (-1, 1)``; :meth:`decode` clamps to it, :meth:`synthesize` does not (for training).
    Synthesis blocks are the submodules ``synthesis.b4, synthesis.b8, ...`` (forward hooks welcome).

    W+ index ``i`` drives the conv layers at resolution ``layer_resolution(i)``. The "fine" layers
    :attr:`fine_layers` (colour, texture; the layers :class:`~torch_semaug.transforms.LatentMix` replaces by
    default) are those at resolution ``>= min(resolution, 128)``: the 32x32 layers of a 32 px generator and
    the 128-1024 px layers of a 1024 px one, as in the AdvMix paper; the others are "coarse" (shape).
    :attr:`latent_spread` measures how far W spreads, to give a latent eps relative to it.

    Args:
        resolution: output size, a power of two from 16 to 1024.
        z_dim: width of the prior z.
        w_dim: width of w (and of every W+ entry).
        mapping_layers: fully connected layers of the mapping network.
        channels: feature maps per resolution ``{4: c4, 8: c8, ...}``; default from channel_base/max.
        channel_base: default channels are ``min(channel_base // res, channel_max)``.
        channel_max: see ``channel_base``.
        image_channels: 1 (grey) or 3 (RGB).
        mapping_lr_mul: learning-rate multiplier of the mapping network.
        noise_mode: ``"const"`` (fixed per-pixel noise: deterministic decode), ``"random"`` or ``"none"``.
        w_avg_beta: decay of the running mean of w tracked during training (:meth:`update_w_avg`).
        conv_clamp: if not None, clamp every synthesis layer's and toRGB's output to ``[-conv_clamp,
            conv_clamp]`` (NVIDIA's fp16-trained configurations use 256; imported snapshots keep theirs).
        latent_spread: the known :attr:`latent_spread` of these weights (from a saved config); ``None``
            measures it when first needed.
    """

    image_range = (-1.0, 1.0)

    def __init__(
        self,
        resolution: int = 32,                     # output size, power of two in 16..1024
        *,
        z_dim: int = 128,                         # width of the prior z
        w_dim: int = 128,                         # width of w
        mapping_layers: int = 4,                  # FC layers of the mapping network (8 in the paper)
        channels: dict[int, int] | None = None,   # feature maps per resolution; None: from base/max
        channel_base: int = 4096,                 # default channels min(base // res, max)
        channel_max: int = 128,
        image_channels: int = 3,                  # 1 (grey) or 3 (RGB)
        mapping_lr_mul: float = 0.01,             # mapping network learning-rate multiplier
        noise_mode: str = "const",                # "const" (deterministic), "random" or "none"
        w_avg_beta: float = 0.995,                # running-mean decay of w during training
        conv_clamp: float | None = None,          # clamp layer outputs to +-conv_clamp (NVIDIA fp16 configs)
        latent_spread: float | None = None,       # spread of W for these weights; None: measured when needed
    ) -> None:
        super().__init__()
        if not isinstance(resolution, int) or resolution < 16 or resolution > 1024 or resolution & (resolution - 1):
            raise ValueError(f"resolution: expected a power of two from 16 to 1024, got {resolution!r}")
        for name, value in (("z_dim", z_dim), ("w_dim", w_dim), ("mapping_layers", mapping_layers)):
            check_int_at_least(value, 1, name)
        check_choice(image_channels, (1, 3), "image_channels")
        check_choice(noise_mode, NOISE_MODES, "noise_mode")
        check_positive(mapping_lr_mul, "mapping_lr_mul")
        if not (isinstance(w_avg_beta, (int, float)) and 0 <= w_avg_beta < 1):
            raise ValueError(f"w_avg_beta: expected a running-mean decay in [0, 1), got {w_avg_beta!r}")
        if conv_clamp is not None:
            check_positive(conv_clamp, "conv_clamp")
        if channels is None:
            channels = default_channels(resolution, channel_base, channel_max)
        channels = {int(k): int(v) for k, v in channels.items()}
        needed = [2**i for i in range(2, int(math.log2(resolution)) + 1)]
        if sorted(channels) != needed or any(v < 1 for v in channels.values()):
            raise ValueError(f"channels: expected positive feature-map counts for resolutions {needed}, got {channels}")
        self.resolution = resolution
        self.z_dim, self.w_dim = z_dim, w_dim
        self.mapping_layers = mapping_layers
        self.channels = channels
        self.image_channels = image_channels
        self.mapping_lr_mul = float(mapping_lr_mul)
        self.noise_mode = noise_mode
        self.w_avg_beta = float(w_avg_beta)
        self.conv_clamp = None if conv_clamp is None else float(conv_clamp)
        self.mapping_network = MappingNetwork(z_dim, w_dim, mapping_layers, self.mapping_lr_mul)
        self.synthesis = SynthesisNetwork(resolution, channels, w_dim, image_channels, self.conv_clamp)
        self.num_ws = self.synthesis.num_ws
        self.register_buffer("w_avg", torch.zeros(w_dim))
        self.image_shape = (image_channels, resolution, resolution)
        self.latent_shape = (self.num_ws, w_dim)
        self.__dict__["encoder"] = None  # plain attribute: not part of state_dict
        if latent_spread is not None:
            check_positive(latent_spread, "latent_spread")
        # (value, mapping-weight versions it was measured on); versions None: given, adopted on first use
        self.__dict__["_spread"] = (float(latent_spread), None) if latent_spread is not None else None

    # -- W+ layout ---------------------------------------------------------------------------------------

    def layer_resolution(self, index: int) -> int:
        """Resolution of the conv layer(s) driven by W+ entry ``index`` (toRGB shares the next block's)."""
        if not 0 <= index < self.num_ws:
            raise ValueError(f"index: expected 0..{self.num_ws - 1}, got {index!r}")
        return min(2 ** ((index + 1) // 2 + 2), self.resolution)

    @property
    def fine_split(self) -> int:
        """First W+ index of the fine layers: the first layer at resolution ``>= min(resolution, 128)``."""
        threshold = min(self.resolution, 128)
        return next(i for i in range(self.num_ws) if self.layer_resolution(i) >= threshold)

    @property
    def fine_layers(self) -> tuple[int, int]:
        """``(start, stop)`` of the fine W+ layers: ``(fine_split, num_ws)`` (see the class docstring)."""
        return (self.fine_split, self.num_ws)

    @property
    def latent_spread(self) -> float:
        """RMS over coordinates of the per-coordinate std of ``mapping(z)``, ``z ~ N(0, I)``.

        A latent eps given relative to it (``relative_eps=True``) means the same fraction of W's spread on
        every generator. Measured once on 4096 draws with a fixed seed (to 4 significant digits), kept in
        :meth:`config` (so every saved file carries it), and measured again only after the mapping weights
        change (training).
        """
        versions = tuple((p.data_ptr(), p._version) for p in self.mapping_network.parameters())
        cached = self._spread
        if cached is not None and cached[1] is None:
            self.__dict__["_spread"] = cached = (cached[0], versions)
        if cached is None or cached[1] != versions:
            z = torch.randn(4096, self.z_dim, generator=torch.Generator().manual_seed(0))
            with torch.no_grad():
                w = self.mapping(z.to(self.device, self.dtype)).double()
            # 4 significant digits: the same value (and config hash) whatever device measured it
            spread = float(f"{float(w.std(0).pow(2).mean().sqrt()):.4g}")
            self.__dict__["_spread"] = cached = (spread, versions)
        return cached[0]

    # -- latent space ------------------------------------------------------------------------------------

    def mapping(self, z: Tensor, truncation_psi: float = 1.0) -> Tensor:
        """``z (B, z_dim) -> w (B, w_dim)``; ``truncation_psi < 1`` pulls w towards :attr:`w_avg`."""
        z = self._check_dtype(check_tensor(z, "z"), "z")
        if z.ndim != 2 or z.shape[1] != self.z_dim:
            raise ValueError(f"z: expected shape (B, {self.z_dim}), got {tuple(z.shape)}")
        if isinstance(truncation_psi, bool) or not isinstance(truncation_psi, (int, float)):
            raise TypeError(f"truncation_psi: expected a number (1.0: no truncation), got {describe(truncation_psi)}")
        w = self.mapping_network(z)
        if truncation_psi != 1.0:
            w = self.w_avg.to(w.dtype) + truncation_psi * (w - self.w_avg.to(w.dtype))
        return w

    def sample_z(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """``n`` draws of z ~ N(0, I), reproducible under ``generator`` (which may live on another device)."""
        check_int_at_least(n, 0, "n")
        check_rng(generator, "generator")
        device = generator.device if generator is not None else self.device
        return torch.randn(n, self.z_dim, generator=generator, device=device).to(self.device, self.dtype)

    def sample_latent(self, n: int, generator: torch.Generator | None = None, truncation_psi: float = 1.0) -> Tensor:
        """``map(z)`` broadcast to W+: ``(n, num_ws, w_dim)``."""
        w = self.mapping(self.sample_z(n, generator), truncation_psi)
        return w[:, None].expand(-1, self.num_ws, -1).clone()

    def broadcast(self, w: Tensor) -> Tensor:
        """``(B, w_dim) -> (B, num_ws, w_dim)``."""
        return w[:, None].expand(-1, self.num_ws, -1)

    @torch.no_grad()
    def update_w_avg(self, w: Tensor) -> None:
        """Track the running mean of w (called by the trainer on each generator step)."""
        self.w_avg.lerp_(w.detach().mean(0).to(self.w_avg.dtype), 1.0 - self.w_avg_beta)

    def mix(self, w_content: Tensor, w_style: Tensor, split: int) -> Tensor:
        """W+ whose layers ``[:split]`` come from ``w_content`` and ``[split:]`` from ``w_style``.

        Either input may be ``(B, w_dim)`` (broadcast to every layer) or W+ ``(B, num_ws, w_dim)``.
        """
        if not isinstance(split, int) or isinstance(split, bool) or not 1 <= split <= self.num_ws - 1:
            raise ValueError(f"split: expected an integer in 1..{self.num_ws - 1} (num_ws - 1), got {split!r}")
        content = self._as_w_plus(w_content, "w_content")
        style = self._as_w_plus(w_style, "w_style")
        if content.shape[0] != style.shape[0]:
            raise ValueError(f"w_style: expected batch {content.shape[0]} like w_content, got {style.shape[0]}")
        return torch.cat([content[:, :split], style[:, split:]], dim=1)

    def _as_w_plus(self, w: object, name: str) -> Tensor:
        w = check_tensor(w, name)
        if w.ndim == 2 and w.shape[1] == self.w_dim:
            return self.broadcast(w)
        return self.check_latent(w, name)

    # -- images ------------------------------------------------------------------------------------------

    def synthesize(self, w_plus: Tensor, noise_mode: str | None = None) -> Tensor:
        """Raw synthesis output (not clamped): what the trainer and the discriminator see."""
        mode = self.noise_mode if noise_mode is None else noise_mode
        check_choice(mode, NOISE_MODES, "noise_mode")
        return self.synthesis(w_plus, mode)

    def decode(self, latents: Tensor) -> Tensor:
        """W+ ``(B, num_ws, w_dim)`` -> images ``(B, C, R, R)`` clamped to ``(-1, 1)``; differentiable."""
        latents = self._check_dtype(self.check_latent(latents), "latents")
        return self.synthesize(latents).clamp(-1.0, 1.0)

    def _check_dtype(self, tensor: Tensor, name: str) -> Tensor:
        """A clear error instead of a matmul dtype mismatch deep inside the network."""
        autocast = torch.is_autocast_enabled(tensor.device.type)
        if tensor.is_floating_point() and tensor.dtype != self.dtype and not autocast:
            raise TypeError(f"{name}: expected dtype {self.dtype} (the generator's; convert with "
                            f"{name}.to(generator.dtype) or move the generator with .to(dtype)), got {tensor.dtype}")
        return tensor

    def forward(self, z: Tensor, truncation_psi: float = 1.0) -> Tensor:
        """``z -> image`` (not clamped), for training and quick sampling."""
        return self.synthesize(self.broadcast(self.mapping(z, truncation_psi)))

    # -- encoder -----------------------------------------------------------------------------------------

    def attach_encoder(self, encoder: Any) -> StyleGAN2:
        """Use ``encoder`` (anything with ``encode(images) -> W+``) for :meth:`encode`; ``None`` detaches."""
        if encoder is not None and not callable(getattr(encoder, "encode", None)):
            raise TypeError(f"encoder: expected an object with an encode(images) method, got {describe(encoder)}")
        self.__dict__["encoder"] = encoder
        return self

    def encode(self, images: Tensor) -> Tensor:
        """Images in ``(-1, 1)`` -> W+ through the attached encoder (else ``EncoderMissingError``)."""
        if self.encoder is None:
            return super().encode(images)
        images = self.check_images(images)
        return self.check_latent(self.encoder.encode(images), "encoder output")

    # -- checkpoints -------------------------------------------------------------------------------------

    def config(self) -> dict[str, Any]:
        return dict(
            resolution=self.resolution, z_dim=self.z_dim, w_dim=self.w_dim, mapping_layers=self.mapping_layers,
            channels={str(k): v for k, v in self.channels.items()}, image_channels=self.image_channels,
            mapping_lr_mul=self.mapping_lr_mul, noise_mode=self.noise_mode, w_avg_beta=self.w_avg_beta,
            conv_clamp=self.conv_clamp, latent_spread=self.latent_spread,
        )

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> StyleGAN2:
        config = dict(config)
        config["channels"] = {int(k): int(v) for k, v in config["channels"].items()}
        return cls(**config)

    def save(self, path: str | os.PathLike[str], **extra: str) -> None:
        """Write weights + config to one safetensors file, atomically (see :func:`save_generator`)."""
        save_generator(self, path, **extra)

    @classmethod
    def load(cls, path: str | os.PathLike[str], device: str | torch.device = "cpu") -> StyleGAN2:
        """Load a checkpoint written by :meth:`save`, frozen."""
        generator = load_generator(path, kind="stylegan2", device=device)
        assert isinstance(generator, cls)
        return generator

    @classmethod
    def from_rosinality(cls, source: Any, **kwargs: Any) -> StyleGAN2:
        """Import a rosinality ``stylegan2-pytorch`` checkpoint (see :mod:`.rosinality`)."""
        from torch_semaug.generators.rosinality import load_rosinality

        return load_rosinality(source, **kwargs)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, num_ws={self.num_ws}, noise_mode={self.noise_mode!r}"


def as_stylegan(generator: object, name: str = "generator") -> StyleGAN2:
    """Raise ``TypeError`` unless ``generator`` is a W+ generator (``num_ws``, ``w_dim``, ``z_dim``, ``mapping``,
    ``mix``, ``decode``)."""
    needed = ("num_ws", "w_dim", "z_dim", "mapping", "mix", "decode")
    if not isinstance(generator, nn.Module) or not all(hasattr(generator, a) for a in needed):
        raise TypeError(
            f"{name}: expected a StyleGAN2-like W+ generator (torch_semaug.generators.StyleGAN2, with "
            f"num_ws/w_dim/mapping/mix), got {describe(generator)}"
        )
    return generator  # type: ignore[return-value]
