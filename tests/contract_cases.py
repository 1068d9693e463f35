"""The cases every transform and generator runs through the contract suites.

To put a new transform under the contract, append a :class:`TransformCase` to ``TRANSFORM_CASES``; for a
generator, a :class:`GeneratorCase` to ``GENERATOR_CASES``. The suites live in ``test_transform_contract.py``
and ``test_generator_contract.py``; they build everything from the factories here, so cases stay small,
seeded and fast (16-32 px).
"""

from __future__ import annotations

import functools
import importlib.util
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

import torch_semaug as ts
from tests.conftest import make_tiny_stylegan2
from torch_semaug.generators import LatentGenerator
from torch_semaug.transforms import SemanticTransform

NUM_CLASSES = 5


class SmallClassifier(nn.Module):
    """A classifier with BatchNorm and Dropout, so the guard's invariants have something to break."""

    def __init__(self, channels: int = 3, num_classes: int = NUM_CLASSES) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(channels, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.AdaptiveAvgPool2d(4)
        )
        self.head = nn.Sequential(nn.Flatten(), nn.Dropout(0.3), nn.Linear(8 * 16, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def make_classifier(channels: int = 3, seed: int = 0) -> SmallClassifier:
    torch.manual_seed(seed)
    return SmallClassifier(channels)


@dataclass
class TransformCase:
    """How to build one transform configuration for the contract suite.

    Attributes:
        id: pytest id.
        make: ``make(p, rng, model) -> transform``; ``model`` is the classifier to bind (or ``None``).
        image_shape: ``(C, H, W)`` of the classifier-space batches the suite feeds in.
        adversarial: the mode calls the classifier (needs labels; per-sample calls must fail).
        latents: ``latents(images) -> latents`` for cases fed cached latents; ``None`` encodes.
        normalize: ``(mean, std)`` the transform was built with: the suite feeds ``(u - mean) / std`` for
            images ``u`` in ``[0, 1]``; ``None`` feeds ``u`` itself.
    """

    id: str
    make: Callable[[float, torch.Generator | None, nn.Module | None], SemanticTransform]
    image_shape: tuple[int, int, int]
    adversarial: bool
    latents: Callable[[torch.Tensor], torch.Tensor] | None = None
    normalize: tuple[tuple[float, ...], tuple[float, ...]] | None = None

    def images(self, batch: int, seed: int = 0, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """A seeded batch in the classifier's space."""
        images = torch.rand((batch, *self.image_shape), generator=torch.Generator().manual_seed(seed))
        if self.normalize is not None:
            mean, std = (torch.tensor(v).view(1, -1, 1, 1) for v in self.normalize)
            images = (images - mean) / std
        return images.to(dtype)


@dataclass
class GeneratorCase:
    """How to build one generator for the generator contract suite.

    Attributes:
        id: pytest id.
        make: ``make() -> generator`` (seeded, tiny).
        exact_encode: ``decode(encode(x))`` reproduces ``x`` within ``round_trip_tol``.
        images: ``images(n) -> (n, *image_shape)`` real-looking inputs in the generator's range for the
            round trip; ``None`` uses ``decode(sample_latent(n))``.
        round_trip_tol: absolute tolerance of the round trip.
    """

    id: str
    make: Callable[[], LatentGenerator]
    exact_encode: bool = False
    images: Callable[[int], torch.Tensor] | None = None
    round_trip_tol: float = 1e-4


def _first_channels(n: int) -> torch.Tensor:
    """A mask over the flattened (3, 16, 16) latent of the identity generator: the first ``n`` channels."""
    mask = torch.zeros(3, 16, 16, dtype=torch.bool)
    mask[:n] = True
    return mask.flatten()


def _identity_attack(**kwargs) -> Callable[..., SemanticTransform]:
    def make(p: float, rng: torch.Generator | None, model: nn.Module | None) -> SemanticTransform:
        generator = ts.IdentityGenerator((3, 16, 16))
        return ts.AdversarialLatentAttack(generator, model=model, p=p, rng=rng, **kwargs)

    return make


TRANSFORM_CASES: list[TransformCase] = [
    TransformCase(
        "adversarial_latent_attack-linf",
        _identity_attack(eps=8 / 255, step_size=2 / 255, steps=3),
        (3, 16, 16),
        adversarial=True,
    ),
    TransformCase(
        "adversarial_latent_attack-l2-restarts-early-stop",
        _identity_attack(eps=0.5, step_size=0.2, steps=2, norm="l2", restarts=2, random_start=True,
                         early_stop=True),
        (3, 16, 16),
        adversarial=True,
    ),
    TransformCase(
        "adversarial_latent_attack-normalised-slice",
        lambda p, rng, model: ts.AdversarialLatentAttack(
            ts.IdentityGenerator((3, 16, 16), image_range=(-1.0, 1.0)), model=model, eps=0.05, step_size=0.02,
            steps=2, mask=_first_channels(2), p=p, rng=rng, mean=(0.5, 0.4, 0.3), std=(0.2, 0.25, 0.3),
        ),
        (3, 16, 16),
        adversarial=True,
        normalize=((0.5, 0.4, 0.3), (0.2, 0.25, 0.3)),
    ),
    TransformCase(
        "adversarial_latent_attack-cached-latents",
        _identity_attack(eps=8 / 255, step_size=2 / 255, steps=2),
        (3, 16, 16),
        adversarial=True,
        latents=lambda images: images.clone(),
    ),
]




def _identity_generator() -> LatentGenerator:
    return ts.IdentityGenerator((3, 16, 16), image_range=(-1.0, 1.0))


GENERATOR_CASES: list[GeneratorCase] = [
    GeneratorCase("identity", _identity_generator, exact_encode=True),
]


# -- flows: Glow, the normflows / FrEIA adapters, FlowPerturb (R-LA / A-LA) ----------------------------------

def _flow_perturb(**kwargs) -> Callable[..., SemanticTransform]:
    def make(p: float, rng: torch.Generator | None, model: nn.Module | None) -> SemanticTransform:
        from tests.flow_factories import tiny_glow

        return ts.FlowPerturb(tiny_glow(), p=p, rng=rng, **kwargs).bind(model)

    return make


def _glow_latents(images: torch.Tensor) -> torch.Tensor:
    from tests.flow_factories import tiny_glow

    with torch.no_grad():
        return tiny_glow().encode(images.float().clamp(0, 1)).to(images.dtype)


TRANSFORM_CASES += [
    TransformCase("flow_perturb-random-linf", _flow_perturb(eps=0.25, norm="linf"), (3, 16, 16), adversarial=False),
    TransformCase("flow_perturb-random-untruncated", _flow_perturb(eps=0.1, norm="none"), (3, 16, 16),
                  adversarial=False),
    TransformCase(
        "flow_perturb-random-l2-normalised",
        _flow_perturb(eps=1.0, norm="l2", mean=(0.5, 0.4, 0.3), std=(0.2, 0.25, 0.3)),
        (3, 16, 16),
        adversarial=False,
        normalize=((0.5, 0.4, 0.3), (0.2, 0.25, 0.3)),
    ),
    TransformCase("flow_perturb-adversarial-l2", _flow_perturb(mode="adversarial", eps=1.0, norm="l2",
                                                               step_size=0.5, steps=2), (3, 16, 16), adversarial=True),
    TransformCase(
        "flow_perturb-adversarial-linf-cached-latents",
        _flow_perturb(mode="adversarial", eps=0.1, norm="linf", steps=2, restarts=2, random_start=True),
        (3, 16, 16),
        adversarial=True,
        latents=_glow_latents,
    ),
]


def _glow_case() -> LatentGenerator:
    from tests.flow_factories import tiny_glow

    return tiny_glow()


def _flow_images(n: int) -> torch.Tensor:
    from tests.flow_factories import smooth_images

    return smooth_images(n, seed=1)


def _normflows_case() -> LatentGenerator:
    from tests.flow_factories import normflows_multiscale

    return ts.from_normflows(normflows_multiscale(), (3, 16, 16))


def _freia_case() -> LatentGenerator:
    from tests.flow_factories import freia_graph

    return ts.from_freia(freia_graph(), (3, 16, 16))


GENERATOR_CASES.append(GeneratorCase("glow", _glow_case, exact_encode=True, images=_flow_images))
if importlib.util.find_spec("normflows") is not None:  # the optional `flows` extra
    GENERATOR_CASES.append(GeneratorCase("normflows-multiscale", _normflows_case, exact_encode=True,
                                         images=_flow_images))
if importlib.util.find_spec("FrEIA") is not None:
    GENERATOR_CASES.append(GeneratorCase("freia-graph", _freia_case, exact_encode=True, images=_flow_images))


# -- StyleGAN2 and LatentMix (RandMix / AdvMix) -------------------------------------------------------------


def _stylegan2() -> LatentGenerator:
    return make_tiny_stylegan2()


def _stylegan_latents(images: torch.Tensor) -> torch.Tensor:
    return _stylegan2().sample_latent(images.shape[0], torch.Generator().manual_seed(11)).to(images.dtype)


def _latent_mix(encoder: bool = False, **kwargs) -> Callable[..., SemanticTransform]:
    def make(p: float, rng: torch.Generator | None, model: nn.Module | None) -> SemanticTransform:
        generator = _stylegan2()
        if encoder:  # an (untrained) learned encoder, so calls without latents= encode the images
            from torch_semaug.generators.encoders import LearnedEncoder

            torch.manual_seed(1)
            generator.attach_encoder(LearnedEncoder(generator, width=4))
        return ts.LatentMix(generator, p=p, rng=rng, **kwargs).bind(model)

    return make


TRANSFORM_CASES += [
    TransformCase("latent_mix-random-cached", _latent_mix(), (3, 16, 16), adversarial=False,
                  latents=_stylegan_latents),
    TransformCase("latent_mix-random-encoder-resized", _latent_mix(encoder=True, layers=(2, 6)), (3, 24, 24),
                  adversarial=False),
    TransformCase("latent_mix-adversarial", _latent_mix(encoder=True, mode="adversarial", steps=2, restarts=2,
                                                         on_failure="highest_loss"),
                  (3, 16, 16), adversarial=True, latents=_stylegan_latents),
    TransformCase(
        "latent_mix-adversarial-normalised-encoder",
        _latent_mix(encoder=True, mode="adversarial", steps=1, restarts=1, early_stop=False, on_failure="highest_loss",
                    mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25)),
        (3, 16, 16), adversarial=True, normalize=((0.5, 0.5, 0.5), (0.25, 0.25, 0.25)),
    ),
]

GENERATOR_CASES.append(GeneratorCase("stylegan2", _stylegan2))


# -- DirectionEdit (on the tiny StyleGAN2 above) --------------------------------------------------------------


@functools.cache
def _stylegan_directions() -> ts.Directions:
    """PCA directions of the tiny StyleGAN2, found once per test session."""
    return ts.find_directions(_stylegan2(), n_components=4, num_samples=300, progress=False)


def _direction_edit(**kwargs) -> Callable[..., SemanticTransform]:
    def make(p: float, rng: torch.Generator | None, model: nn.Module | None) -> SemanticTransform:
        generator = _stylegan2()
        from torch_semaug.generators.encoders import LearnedEncoder

        torch.manual_seed(1)  # an untrained encoder: calls without latents= encode the images
        generator.attach_encoder(LearnedEncoder(generator, width=4))
        return ts.DirectionEdit(generator, directions=_stylegan_directions(), p=p, rng=rng, **kwargs).bind(model)

    return make


TRANSFORM_CASES += [
    TransformCase(
        "direction_edit-random-layers", _direction_edit(components=[0, 2], layers=(1, 4)), (3, 16, 16),
        adversarial=False, latents=_stylegan_latents,
    ),
    TransformCase(
        "direction_edit-adversarial", _direction_edit(mode="adversarial", eps=1.0, steps=2), (3, 16, 16),
        adversarial=True, latents=_stylegan_latents,
    ),
    TransformCase(
        "direction_edit-adversarial-restarts-early-stop-resized",
        _direction_edit(mode="adversarial", strength=(-1.0, 3.0), steps=2, restarts=2, random_start=True,
                        early_stop=True, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25)),
        (3, 24, 24), adversarial=True, latents=_stylegan_latents, normalize=((0.5, 0.5, 0.5), (0.25, 0.25, 0.25)),
    ),
]
