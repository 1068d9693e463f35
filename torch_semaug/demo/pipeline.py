"""The demo's steps: data, W+ latents of the training images, three classifiers, their accuracy.

A colour-biased shapes training set (:mod:`torch_semaug.data.shapes`), the small StyleGAN2 shipped in
``torch_semaug/assets`` (trained on exactly that set by ``semaug train-generator stylegan2``), W+ codes
of the training images by optimisation inversion (AdvMix Algorithm 1, done once), then the same small
CNN trained three times with the same seed and the same number of steps: nominally, with RandMix and
with AdvMix (:class:`~torch_semaug.transforms.LatentMix` random / adversarial), each evaluated on a
held-out biased set and on the unbiased (uniformly coloured) test set.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor, nn

from torch_semaug.data.shapes import SHAPES, ColorShapes
from torch_semaug.generators.encoders import psnr, refine_latents
from torch_semaug.generators.stylegan2 import StyleGAN2
from torch_semaug.train.quick import accuracy, small_cnn, train

ASSET = Path(__file__).resolve().parents[1] / "assets" / "demo_shapes16_stylegan2.safetensors"
METHODS = ("nominal", "RandMix", "AdvMix")
METHOD_NAMES = {"nominal": "nominal", "RandMix": "randmix", "AdvMix": "advmix"}  # the library's names


@dataclass
class DemoConfig:
    """Sizes of one demo run (``quick`` shrinks everything to seconds, for the tests)."""

    train_images: int = 600       # first N images of the generator's training set (demo-shapes:train)
    test_images: int = 1000       # unbiased test set (uniform colours)
    heldout_images: int = 500     # biased held-out set (in-distribution accuracy)
    invert_steps: int = 20        # optimisation steps of the W+ inversion (after a nearest-sample start)
    classifier_steps: int = 400   # Adam steps per classifier
    batch: int = 64
    p: float = 0.5                # fraction of each batch that is augmented
    adv_steps: int = 2            # AdvMix gradient steps per restart
    adv_restarts: int = 2         # AdvMix restarts
    layers: tuple[int, int] = (2, 6)  # W+ layers LatentMix replaces: all but the 4x4 and first 8x8 styles (16 px)
    figure_adv: tuple[int, int] = (20, 10)   # AdvMix steps, restarts in samples.png (the paper's evaluation)
    generator: Path = field(default_factory=lambda: ASSET)

    @classmethod
    def quick(cls, generator: Path | None = None) -> DemoConfig:
        return cls(train_images=40, test_images=50, heldout_images=25, invert_steps=2, classifier_steps=4,
                   batch=16, adv_steps=1, adv_restarts=1, figure_adv=(1, 1), generator=generator or ASSET)


def load_generator(path: Path) -> StyleGAN2:
    if not Path(path).is_file():
        raise FileNotFoundError(f"generator: no StyleGAN2 checkpoint at {str(path)!r} (the demo ships one in "
                                f"torch_semaug/assets; pass --generator PATH to use another)")
    return StyleGAN2.load(path)


def invert(generator: StyleGAN2, images: Tensor, steps: int, seed: int, candidates: int = 4096) -> tuple[Tensor, float]:
    """W+ codes of ``images`` in [0, 1], and the mean reconstruction PSNR (dB).

    Each image starts from the nearest (pixel distance) of ``candidates`` random samples ``map(z)`` of the
    generator rather than from ``w_avg``: the shapes are few and distinct, so the nearest sample already has
    the right shape in its coarse layers, as a sample of a style-mixing-trained StyleGAN does. Then
    ``steps`` Adam steps of pixel loss (:func:`~torch_semaug.generators.encoders.refine_latents`, AdvMix
    Algorithm 1 without the perceptual terms, whose random-conv features cost about five times as much).
    """
    x = images * 2 - 1
    rng = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        w = generator.mapping(generator.sample_z(candidates, rng))
        samples = torch.cat([generator.decode(generator.broadcast(c)) for c in w.split(512)])
        nearest = torch.cat([torch.cdist(chunk.flatten(1), samples.flatten(1)).argmin(1) for chunk in x.split(500)])
    init = generator.broadcast(w[nearest])
    latents = torch.cat([refine_latents(generator, chunk, start, steps=steps, perceptual_weight=0.0,
                                        mixing_weight=0.0, progress=True)
                         for chunk, start in zip(x.split(500), init.split(500))])
    with torch.no_grad():
        value = psnr(generator.decode(latents).clamp(-1, 1), x).mean().item()
    return latents, value


def train_classifier(method: str, images: Tensor, labels: Tensor, latents: Tensor, generator: StyleGAN2,
                     config: DemoConfig, seed: int) -> nn.Module:
    """Train a small CNN with ``method``: every run sees the same init, batches and step count."""
    torch.manual_seed(seed)
    model = small_cnn(len(SHAPES), width=16)
    model(images[:1])  # materialise the lazy layer here: its init follows the convolutions' in the seeded stream
    train(model, METHOD_NAMES[method], images, labels, steps=config.classifier_steps, batch=config.batch, seed=seed,
          num_classes=len(SHAPES), latents=latents, lr=2e-3, generator=generator, p=config.p,
          adv_steps=config.adv_steps, adv_restarts=config.adv_restarts, layers=config.layers, desc=f"train {method}")
    return model.requires_grad_(False)


@dataclass
class DemoResult:
    accuracies: dict[str, tuple[float, float]]   # method -> (biased held-out %, unbiased test %)
    psnr: float                                  # mean inversion PSNR of the training images (dB)
    models: dict[str, nn.Module]
    generator: StyleGAN2
    samples: tuple[Tensor, Tensor, Tensor]       # images, labels, latents shown in samples.png
    seconds: dict[str, float]                    # wall seconds per stage


def run_demo(config: DemoConfig, seed: int = 0) -> DemoResult:
    """All the demo's steps; returns what the report needs."""
    seconds: dict[str, float] = {}
    t0 = time.time()
    generator = load_generator(config.generator)
    train = ColorShapes(2000, coloring="biased", seed=0, size=generator.resolution)  # demo-shapes:train
    heldout = ColorShapes(config.heldout_images, coloring="biased", seed=2, size=generator.resolution)
    test = ColorShapes(config.test_images, coloring="uniform", seed=1, size=generator.resolution)
    images, labels = (t[: config.train_images] for t in train.tensors())
    seconds["data"] = time.time() - t0
    t0 = time.time()
    latents, value = invert(generator, images, config.invert_steps, seed)
    seconds["inversion"] = time.time() - t0
    models, accuracies = {}, {}
    for method in METHODS:
        t0 = time.time()
        models[method] = train_classifier(method, images, labels, latents, generator, config, seed)
        accuracies[method] = (accuracy(models[method], *heldout.tensors()), accuracy(models[method], *test.tensors()))
        seconds[method] = time.time() - t0
        held, unbiased = accuracies[method]
        print(f"{method:8s} biased held-out {held:5.1f} %   unbiased test {unbiased:5.1f} %", flush=True)
    shown = torch.arange(min(len(images), 2 * len(SHAPES)))
    return DemoResult(accuracies, value, models, generator, (images[shown], labels[shown], latents[shown]), seconds)
