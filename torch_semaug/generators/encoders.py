"""Putting real images into StyleGAN2's W+: optimisation inversion and a learned encoder.

* :class:`OptimizationEncoder` — AdvMix Algorithm 1: start every image at ``w_avg``, optimise its W+ code
  with Adam on pixel + perceptual + mixing loss under a warm-up / cosine step-size schedule. Whole
  batches (hundreds of images) are optimised at once; Adam is element-wise, so each example's
  optimisation is independent of the others in its batch.
* :class:`LearnedEncoder` — NaTra's BIES: a small conv net trained on generated pairs ``(w, G(w))`` with
  ``||w - E(G(w))||`` plus reconstruction and perceptual loss (on real images when given); afterwards
  one forward pass per image, optionally refined by a few optimisation steps.

Either one attaches to the generator (``generator.attach_encoder(encoder)``) so that transforms can
encode images themselves, or fills a latent cache through :meth:`encode`. Images are in the generator's
range ``(-1, 1)``; latents are W+ ``(B, num_ws, w_dim)``.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Iterator

import torch
import torch.nn.functional as F
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch import Tensor, nn
from tqdm import tqdm

from torch_semaug._checks import (
    assert_shape,
    check_bool,
    check_finite,
    check_float,
    check_int_at_least,
    check_loss_weights,
    check_positive,
    check_probability,
    describe,
)
from torch_semaug._io import write_atomic
from torch_semaug.generators.io import load_state_checked
from torch_semaug.generators.perceptual import PerceptualDistance
from torch_semaug.generators.stylegan2 import StyleGAN2, as_stylegan
from torch_semaug.generators.stylegan2_layers import EqualConv2d, EqualLinear, lrelu_gain

ENCODER_FORMAT = "torch_semaug.encoder/1"


def psnr(a: Tensor, b: Tensor, data_range: float = 2.0) -> Tensor:
    """Per-example PSNR in dB between image batches (``data_range`` 2 for images in [-1, 1])."""
    if a.shape != b.shape:
        raise ValueError(f"b: expected images of the shape of a {tuple(a.shape)}, got {tuple(b.shape)}")
    mse = (a.float() - b.float()).square().flatten(1).mean(1).clamp_min(1e-12)
    return 10 * torch.log10(data_range**2 / mse)


def _step_size(step: int, steps: int, lr: float, rampup: float, rampdown: float) -> float:
    """Linear warm-up over the first ``rampup`` fraction, cosine decay over the last ``rampdown`` fraction."""
    t = step / max(steps, 1)
    down = 0.5 - 0.5 * math.cos(math.pi * min(1.0, (1.0 - t) / rampdown)) if rampdown > 0 else 1.0
    up = min(1.0, t / rampup) if rampup > 0 else 1.0
    return lr * down * max(up, 1e-2)


def refine_latents(
    generator: StyleGAN2,
    images: Tensor,
    init: Tensor,
    *,
    steps: int,
    lr: float = 0.05,
    rampup: float = 0.05,
    rampdown: float = 0.25,
    pixel_weight: float = 1.0,
    perceptual_weight: float = 1.0,
    mixing_weight: float = 0.1,
    split: int | None = None,
    perceptual: PerceptualDistance | None = None,
    rng: torch.Generator | None = None,
    progress: bool = False,
) -> Tensor:
    """Adam on W+ codes ``init`` so that ``G(w)`` reconstructs ``images`` (AdvMix Algorithm 1).

    The loss per example is ``pixel_weight * MSE(G(w), x) + perceptual_weight * P(G(w), x) +
    mixing_weight * P(G(mix(w, map(z), split)), x)``: the mixing term (a fresh random ``z`` each step)
    keeps the image's content in the coarse layers, so style mixing of the result keeps the content.
    """
    check_int_at_least(steps, 0, "steps")
    generator.check_images(images)
    w = generator.check_latent(init, "init").detach().clone().requires_grad_(True)
    if steps == 0:
        return w.detach()
    split = generator.fine_split if split is None else split
    optimizer = torch.optim.Adam([w], lr=lr, betas=(0.9, 0.999))
    for step in tqdm(range(steps), disable=not progress, desc="invert", leave=False):
        for group in optimizer.param_groups:
            group["lr"] = _step_size(step, steps, lr, rampup, rampdown)
        with torch.enable_grad():
            recon = generator.synthesize(w)
            loss = pixel_weight * (recon - images).square().flatten(1).mean(1)
            if perceptual is not None and perceptual_weight > 0:
                loss = loss + perceptual_weight * perceptual(recon, images)
            if perceptual is not None and mixing_weight > 0:
                style = generator.mapping(generator.sample_z(w.shape[0], rng)).detach()
                mixed = generator.synthesize(generator.mix(w, style, split))
                loss = loss + mixing_weight * perceptual(mixed, images)
            optimizer.zero_grad(set_to_none=True)
            loss.sum().backward()
        optimizer.step()
    return w.detach()


class OptimizationEncoder:
    """Batched optimisation inversion (AdvMix Algorithm 1), starting from ``w_avg``.

    Args:
        generator: the frozen StyleGAN2.
        steps: Adam steps per batch.
        lr: peak step size.
        batch_size: images optimised together (memory bound; hundreds fit on CPU at 32 px).
        pixel_weight, perceptual_weight, mixing_weight: loss weights (see :func:`refine_latents`).
        features: perceptual feature network (see :mod:`~torch_semaug.generators.perceptual`).
        seed: drives the random codes of the mixing loss, so encoding is reproducible.
        progress: show a tqdm bar.
    """

    def __init__(
        self,
        generator: StyleGAN2,               # frozen StyleGAN2 to invert
        *,
        steps: int = 200,                   # Adam steps per batch
        lr: float = 0.05,                   # peak step size of the schedule
        batch_size: int = 256,              # images optimised together
        pixel_weight: float = 1.0,          # weight of the pixel MSE
        perceptual_weight: float = 1.0,     # weight of the perceptual distance
        mixing_weight: float = 0.1,         # weight of the style-mixing perceptual term
        features: nn.Module | None = None,  # perceptual network; None: VGG-16 if cached, else fallback
        seed: int = 0,                      # seed of the mixing codes
        progress: bool = False,             # tqdm bar over steps
    ) -> None:
        self.generator = as_stylegan(generator).freeze()
        check_int_at_least(steps, 0, "steps")
        check_int_at_least(batch_size, 1, "batch_size")
        check_positive(lr, "lr")
        check_int_at_least(seed, 0, "seed")
        check_bool(progress, "progress")
        self.steps, self.lr, self.batch_size = steps, float(lr), batch_size
        self.weights = check_loss_weights(pixel_weight=pixel_weight, perceptual_weight=perceptual_weight,
                                      mixing_weight=mixing_weight)
        self.perceptual = PerceptualDistance(features, generator.image_channels).to(generator.device)
        self.seed, self.progress = seed, progress

    def encode(self, images: Tensor) -> Tensor:
        """Images ``(B, C, R, R)`` in [-1, 1] -> W+ ``(B, num_ws, w_dim)``."""
        g = self.generator
        images = g.check_images(images).to(g.device, g.dtype)
        self.perceptual.to(g.device)
        rng = torch.Generator(device=g.device).manual_seed(self.seed)
        out = []
        for chunk in images.split(self.batch_size):
            init = g.broadcast(g.w_avg[None].expand(chunk.shape[0], -1))
            out.append(refine_latents(g, chunk, init, steps=self.steps, lr=self.lr, perceptual=self.perceptual,
                                      rng=rng, progress=self.progress, **self.weights))
        return torch.cat(out) if out else images.new_zeros(0, *g.latent_shape)


class LearnedEncoder(nn.Module):
    """A conv net images -> W+ (NaTra's BIES), predicting offsets from ``w_avg``.

    Args:
        generator: the StyleGAN2 whose W+ it predicts (kept as a plain attribute, not saved).
        width: channels of the first conv stage (doubled at each halving, capped at ``8 * width``).
        refine_steps: optimisation steps applied after the forward pass in :meth:`encode` (0: none).
        refine_lr: peak step size of that refinement.
    """

    def __init__(
        self,
        generator: StyleGAN2 | None = None,   # the generator (None when loading; set with set_generator)
        *,
        resolution: int | None = None,        # image size (default: the generator's)
        image_channels: int | None = None,    # image channels (default: the generator's)
        num_ws: int | None = None,            # W+ layers (default: the generator's)
        w_dim: int | None = None,             # style width (default: the generator's)
        width: int = 32,                      # channels of the first stage
        refine_steps: int = 0,                # optimisation steps after the forward pass
        refine_lr: float = 0.02,              # their peak step size
    ) -> None:
        super().__init__()
        if generator is not None:
            generator = as_stylegan(generator)
            resolution, image_channels = generator.resolution, generator.image_channels
            num_ws, w_dim = generator.num_ws, generator.w_dim
        if None in (resolution, image_channels, num_ws, w_dim):
            raise ValueError("generator: pass a generator or all of resolution, image_channels, num_ws, w_dim")
        check_int_at_least(width, 1, "width")
        check_int_at_least(refine_steps, 0, "refine_steps")
        check_positive(refine_lr, "refine_lr")
        self.arch = dict(resolution=int(resolution), image_channels=int(image_channels), num_ws=int(num_ws),
                         w_dim=int(w_dim), width=int(width))
        self.refine_steps, self.refine_lr = refine_steps, refine_lr
        layers: list[nn.Module] = [EqualConv2d(image_channels, width, 3)]
        channels, res = width, resolution
        while res > 4:
            nxt = min(channels * 2, 8 * width)
            layers.append(EqualConv2d(channels, nxt, 3))
            channels, res = nxt, res // 2
        self.convs = nn.ModuleList(layers)
        self.fc = EqualLinear(channels * 16, 4 * w_dim, activate=True)
        self.head = EqualLinear(4 * w_dim, num_ws * w_dim)
        with torch.no_grad():
            self.head.weight.mul_(0.1)
        self.register_buffer("w_avg", torch.zeros(w_dim))
        self.__dict__["generator"] = None
        self.__dict__["perceptual"] = None
        if generator is not None:
            self.set_generator(generator)

    def set_generator(self, generator: StyleGAN2) -> LearnedEncoder:
        """Use ``generator`` for training and refinement (its shapes must match); copies its ``w_avg``."""
        generator = as_stylegan(generator)
        expected = (self.arch["resolution"], self.arch["image_channels"], self.arch["num_ws"], self.arch["w_dim"])
        found = (generator.resolution, generator.image_channels, generator.num_ws, generator.w_dim)
        if expected != found:
            raise ValueError(f"generator: encoder expects (resolution, channels, num_ws, w_dim) = {expected}, "
                             f"got {found}")
        self.__dict__["generator"] = generator.freeze()
        with torch.no_grad():
            self.w_avg.copy_(generator.w_avg.to(self.w_avg.device))
        return self

    def forward(self, images: Tensor) -> Tensor:
        x = images
        for i, conv in enumerate(self.convs):
            x = lrelu_gain(conv(x if i == 0 else F.avg_pool2d(x, 2)))
        x = self.head(self.fc(x.flatten(1)))
        return self.w_avg + x.view(-1, self.arch["num_ws"], self.arch["w_dim"])

    def encode(self, images: Tensor, refine_steps: int | None = None) -> Tensor:
        """Images in [-1, 1] -> W+: one forward pass, then ``refine_steps`` optimisation steps."""
        steps = self.refine_steps if refine_steps is None else refine_steps
        check_int_at_least(steps, 0, "refine_steps")
        self._check_images(images)
        with torch.no_grad():
            w = self(images.to(self.w_avg.device, self.w_avg.dtype))
        if steps > 0:
            if self.generator is None:
                raise ValueError("refine_steps: refinement needs the generator; call set_generator(g) first")
            w = refine_latents(self.generator, images.to(w.device), w, steps=steps, lr=self.refine_lr,
                               perceptual=self._perceptual(), rng=torch.Generator(device=w.device).manual_seed(0))
        return w

    def _check_images(self, images: object, name: str = "images") -> None:
        """Images of the encoder's shape ``(B, C, R, R)``, float and finite."""
        res, channels = self.arch["resolution"], self.arch["image_channels"]
        assert_shape(images, (None, channels, res, res), name)
        check_float(images, name)
        check_finite(images, name)

    def _perceptual(self, features: nn.Module | None = None) -> PerceptualDistance:
        if self.perceptual is None or features is not None:
            self.__dict__["perceptual"] = PerceptualDistance(features, self.arch["image_channels"])
        return self.perceptual.to(self.w_avg.device)

    def fit(
        self,
        *,
        steps: int = 2000,                          # optimisation steps
        batch_size: int = 32,                       # generated (and real) images per step
        lr: float = 0.002,                          # Adam step size
        real_images: Iterable[Tensor] | None = None,  # batches of real images in [-1, 1] (cycled), or None
        latent_weight: float = 1.0,                 # ||w - E(G(w))||^2 on generated pairs
        pixel_weight: float = 1.0,                  # reconstruction MSE through G
        perceptual_weight: float = 0.5,             # perceptual distance through G
        mixing_prob: float = 0.5,                   # draw style-mixed W+ targets (covers W+, not only W)
        features: nn.Module | None = None,          # perceptual network
        seed: int = 0,
        progress: bool = True,
    ) -> list[float]:
        """Train on generated ``(w, G(w))`` pairs (plus real images when given); returns the loss curve."""
        g = self.generator
        if g is None:
            raise ValueError("generator: call set_generator(g) before fit()")
        check_int_at_least(steps, 0, "steps")
        check_int_at_least(batch_size, 1, "batch_size")
        check_positive(lr, "lr")
        check_probability(mixing_prob, "mixing_prob")
        check_loss_weights(latent_weight=latent_weight, pixel_weight=pixel_weight, perceptual_weight=perceptual_weight)
        perceptual = self._perceptual(features)
        device = g.device
        self.to(device).train()
        gen = torch.Generator(device=device).manual_seed(seed)
        optimizer = torch.optim.Adam(self.parameters(), lr=lr, betas=(0.9, 0.99))
        real_iter = _cycle(real_images) if real_images is not None else None
        losses = []
        for _ in tqdm(range(steps), disable=not progress, desc="encoder"):
            with torch.no_grad():
                w = g.broadcast(g.mapping(g.sample_z(batch_size, gen)))
                if torch.rand((), generator=gen, device=device) < mixing_prob:
                    cut = int(torch.randint(1, g.num_ws, (), generator=gen, device=device))
                    w = g.mix(w, g.mapping(g.sample_z(batch_size, gen)), cut)
                fake = g.synthesize(w)
            pred = self(fake)
            loss = latent_weight * (pred - w).square().mean()
            targets = [fake]
            if real_iter is not None:
                real = next(real_iter)
                self._check_images(real, "real_images")
                targets.append(real.to(device, fake.dtype))
            for target in targets:
                recon = g.synthesize(pred if target is fake else self(target))
                loss = loss + pixel_weight * (recon - target).square().mean()
                if perceptual_weight > 0:
                    loss = loss + perceptual_weight * perceptual(recon, target).mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            losses.append(float(loss.detach()))
        self.eval()
        return losses

    # -- checkpoints -------------------------------------------------------------------------------------

    def config(self) -> dict[str, object]:
        return dict(self.arch, refine_steps=self.refine_steps, refine_lr=self.refine_lr)

    def save(self, path: str | os.PathLike[str]) -> None:
        """Weights + config in one safetensors file, written atomically."""
        tensors = {k: v.detach().contiguous().cpu().clone() for k, v in self.state_dict().items()}
        metadata = {"format": ENCODER_FORMAT, "config": json.dumps(self.config())}
        write_atomic(path, lambda tmp: save_file(tensors, str(tmp), metadata=metadata))

    @classmethod
    def load(cls, path: str | os.PathLike[str], generator: StyleGAN2 | None = None) -> LearnedEncoder:
        """Load a file written by :meth:`save`; ``generator`` (optional) is checked and attached for refinement."""
        name = os.fspath(path)
        if not os.path.isfile(name):
            raise FileNotFoundError(f"path: no encoder checkpoint at {name!r}")
        try:
            with safe_open(name, framework="pt") as handle:
                metadata = handle.metadata() or {}
            state = load_file(name)
        except (SafetensorError, OSError, ValueError) as error:
            raise ValueError(f"path: {name!r} is not a readable safetensors file ({error})") from None
        if metadata.get("format") != ENCODER_FORMAT:
            raise ValueError(f"path: {name!r} is not a torch_semaug encoder (format {metadata.get('format')!r})")
        config = json.loads(metadata["config"])
        arch = {k: config[k] for k in ("resolution", "image_channels", "num_ws", "w_dim")}
        encoder = cls(None, **arch, width=config["width"], refine_steps=config["refine_steps"],
                      refine_lr=config["refine_lr"])
        load_state_checked(encoder, state, name)
        if generator is not None:
            w_avg = encoder.w_avg.clone()
            encoder.set_generator(generator)
            encoder.w_avg.copy_(w_avg)
        return encoder.eval().requires_grad_(False)


def _cycle(batches: Iterable[Tensor]) -> Iterator[Tensor]:
    while True:
        empty = True
        for batch in batches:
            empty = False
            yield batch[0] if isinstance(batch, list | tuple) else batch
        if empty:
            raise ValueError("real_images: got an empty iterable")


def encoder_from_spec(
    spec: str, generator: StyleGAN2, *, batch_size: int = 256, real_images: Iterable[Tensor] | None = None,
    seed: int = 0,
) -> LearnedEncoder | OptimizationEncoder:
    """An encoder from a command-line string: a :class:`LearnedEncoder` ``.safetensors`` path (optionally
    ``PATH:REFINE_STEPS``), ``optimize[:STEPS]`` for optimisation inversion (default 200 steps), or
    ``learned:STEPS`` for a new :class:`LearnedEncoder` fitted for STEPS steps on generated pairs and
    ``real_images`` (batches in the generator's range, cycled)."""
    if not isinstance(spec, str):
        raise TypeError(f"encoder: expected a spec string (PATH[:REFINE_STEPS], optimize[:STEPS] or learned:STEPS), "
                        f"got {describe(spec)}")
    if spec == "optimize" or spec.startswith("optimize:"):
        steps = spec.partition(":")[2] or "200"
        if not steps.isdigit():
            raise ValueError(f"encoder: expected optimize:STEPS with STEPS an integer >= 0, got {spec!r}")
        steps = int(steps)
        return OptimizationEncoder(generator, steps=steps, batch_size=batch_size)
    if spec.startswith("learned:"):
        steps = spec.partition(":")[2]
        if not steps.isdigit() or int(steps) < 1:
            raise ValueError(f"encoder: expected learned:STEPS with STEPS a positive integer, got {spec!r}")
        if real_images is None:
            raise ValueError("real_images: learned:STEPS fits the encoder on real images as well; pass batches")
        encoder = LearnedEncoder(generator)
        encoder.fit(steps=int(steps), batch_size=32, real_images=real_images, seed=seed)
        return encoder
    path, _, refine = spec.rpartition(":") if spec.rsplit(":", 1)[-1].isdigit() else (spec, "", "")
    encoder = LearnedEncoder.load(path, generator=generator).to(generator.device)
    if refine:
        encoder.refine_steps = int(refine)
    return encoder
