"""Bad input anywhere in the library gets a clear error: one table, one test.

Each case is ``pytest.param(call, error_type, match, id=...)``: calling ``call()`` must raise exactly
``error_type`` (a ValueError or TypeError for a wrong argument) with a message matching ``match`` — which
names the argument, what was expected and what arrived. The transforms' cases live in
``tests/bad_input_transforms.py`` (``TRANSFORM_CASES``); latent_pgd, the classifier guard, the generators,
encoders, find_directions and AdaptiveEps are here. Add a case by appending a line.
"""

from __future__ import annotations

import functools
import importlib.util
import re
from collections.abc import Callable

import pytest
import torch
from torch import nn

import torch_semaug as ts
from tests.bad_input_transforms import TRANSFORM_CASES
from tests.conftest import make_tiny_stylegan2, shared_tiny_glow, shared_tiny_stylegan2
from tests.contract_cases import make_classifier
from torch_semaug.attacks import AdaptiveEps, classifier_guard, latent_pgd
from torch_semaug.attacks.guard import check_model
from torch_semaug.generators import unflatten_latents
from torch_semaug.generators.encoders import (
    LearnedEncoder,
    OptimizationEncoder,
    encoder_from_spec,
    psnr,
    refine_latents,
)
from torch_semaug.generators.perceptual import PerceptualDistance

HAS_NORMFLOWS = importlib.util.find_spec("normflows") is not None
HAS_FREIA = importlib.util.find_spec("FrEIA") is not None

# -- shared tiny models (built once, never modified by a case) ---------------------------------------------

_stylegan, _glow = shared_tiny_stylegan2, shared_tiny_glow
IDENTITY = ts.IdentityGenerator((3, 16, 16))


@functools.cache
def _batch() -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    """A 5-class classifier in eval mode, 4 images in [0, 1], their labels."""
    x = torch.rand(4, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    return make_classifier().eval(), x, torch.arange(4)


@functools.cache
def _learned_encoder() -> LearnedEncoder:
    with torch.random.fork_rng():
        torch.manual_seed(0)
        return LearnedEncoder(_stylegan(), width=4)


@functools.cache
def _normflows() -> ts.generators.LatentGenerator:
    from tests.flow_factories import normflows_multiscale

    return ts.from_normflows(normflows_multiscale(), (3, 16, 16))


@functools.cache
def _freia() -> ts.generators.LatentGenerator:
    from tests.flow_factories import freia_graph

    return ts.from_freia(freia_graph(), (3, 16, 16))


def _uninitialised_normflows() -> object:
    """Wrap a normflows flow whose ActNorm layers would initialise themselves on the first batch."""
    import normflows as nf

    fresh = nf.MultiscaleFlow([nf.distributions.GlowBase((12, 4, 4))],
                              [[nf.flows.GlowBlock(12, 8), nf.flows.Squeeze()]], [], class_cond=False)
    return ts.from_normflows(fresh, (3, 8, 8))


def _pgd(**overrides: object) -> Callable[[], object]:
    """``latent_pgd`` on the identity generator (pixel PGD) with some arguments replaced."""

    def call() -> object:
        model, x, y = _batch()
        args = dict(decode=IDENTITY.decode, classifier=model, latents=x, labels=y, eps=0.1, step_size=0.05,
                    steps=1) | overrides
        return latent_pgd(args.pop("decode"), args.pop("classifier"), args.pop("latents"), args.pop("labels"),
                          **args)

    return call


def _in_inference_mode(call: Callable[[], object]) -> Callable[[], object]:
    def wrapped() -> object:
        with torch.inference_mode():
            return call()

    return wrapped


def _inference_latents() -> object:
    with torch.inference_mode():
        latents = torch.rand(4, 3, 16, 16)
    return _pgd(latents=latents)()


def _guard(model: object) -> Callable[[], None]:
    def call() -> None:
        with classifier_guard(model):  # type: ignore[arg-type]
            pass

    return call


def _find(**kwargs: object) -> Callable[[], object]:
    args = dict(n_components=2, num_samples=50, progress=False) | kwargs
    return lambda: ts.find_directions(args.pop("generator", _stylegan()), **args)


def _classifier(transform: Callable[[torch.Tensor], torch.Tensor]) -> Callable[[torch.Tensor], torch.Tensor]:
    """The batch's classifier with ``transform`` applied to its logits."""
    return lambda images: transform(_batch()[0](images))


def _param(call: Callable[[], object], error: type[Exception], match: str, id: str):  # noqa: A002
    return pytest.param(call, error, match, id=id)


def _needs(available: bool, library: str, *args):
    return pytest.param(*_param(*args).values, id=args[-1],
                        marks=pytest.mark.skipif(not available, reason=f"{library} not installed"))


NAN, INF = float("nan"), float("inf")
X = torch.rand(4, 3, 16, 16, generator=torch.Generator().manual_seed(1))
Y = torch.arange(4)

LATENT_PGD_CASES = [
    _param(_pgd(latents=[X]), TypeError, r"latents: expected a torch.Tensor, got list", "pgd-latents-list"),
    _param(_pgd(decode=None), TypeError, "decode: expected a callable, got NoneType", "pgd-decode-none"),
    _param(_pgd(classifier=None), TypeError, "classifier: expected a callable", "pgd-classifier-none"),
    _param(_pgd(restart_center=lambda i, z: z[:2]), ValueError,
           r"restart_center: expected a tensor of the latents' shape \(4, 3, 16, 16\).*shape \(2, 3, 16, 16\)",
           "pgd-restart-center-wrong-batch"),
    _param(_pgd(restart_center=lambda i, z: None), ValueError, "restart_center: expected a tensor.*got NoneType",
           "pgd-restart-center-none"),
    _param(_pgd(restart_center=3), TypeError, "restart_center: expected a callable", "pgd-restart-center-int"),
    _param(_pgd(bounds=(1, 0)), ValueError, r"bounds: expected \(low, high\).*low < high, got \(1, 0\)",
           "pgd-bounds-reversed"),
    _param(_pgd(bounds=(0, 1, 2)), TypeError, r"bounds: expected \(low, high\)", "pgd-bounds-three"),
    _param(_pgd(bounds=(0, NAN)), ValueError, r"bounds: .*got \(0, nan\)", "pgd-bounds-nan"),
    _param(_pgd(bounds="01"), TypeError, "bounds: .*got str", "pgd-bounds-str"),
    _param(_pgd(eps=INF), ValueError, "eps: expected finite values > 0, got inf", "pgd-eps-inf"),
    _param(_pgd(eps=NAN), ValueError, "eps: expected a number > 0, got nan", "pgd-eps-nan"),
    _param(_pgd(eps=0), ValueError, "eps: expected a number > 0, got 0", "pgd-eps-zero"),
    _param(_pgd(eps=-1.0), ValueError, "eps: expected a number > 0, got -1.0", "pgd-eps-negative"),
    _param(_pgd(eps=torch.ones(3)), ValueError, r"eps: expected a number or a tensor of shape \(4,\)",
           "pgd-eps-wrong-length"),
    _param(_pgd(step_size=INF), ValueError, "step_size: expected finite values > 0", "pgd-step-size-inf"),
    _param(_pgd(steps=1.5), ValueError, "steps: expected an integer >= 1, got 1.5", "pgd-steps-float"),
    _param(_pgd(steps=0), ValueError, "steps: expected an integer >= 1, got 0", "pgd-steps-zero"),
    _param(_pgd(restarts=0), ValueError, "restarts: expected an integer >= 1", "pgd-restarts-zero"),
    _param(_pgd(norm="l1"), ValueError, r"norm: expected one of \['linf', 'l2'\], got 'l1'", "pgd-norm"),
    _param(_pgd(targets="logits"), ValueError, "targets: expected one of", "pgd-targets"),
    _param(_pgd(random_start="yes"), TypeError, "random_start: expected True or False, got str", "pgd-random-start"),
    _param(_pgd(early_stop=2), TypeError, "early_stop: expected True or False, got int 2", "pgd-early-stop-int"),
    _param(_pgd(evaluate="no"), TypeError, "evaluate: expected True or False", "pgd-evaluate-str"),
    _param(_pgd(rng=3), TypeError, "rng: expected a torch.Generator", "pgd-rng-int"),
    _param(_pgd(latents=(X * 255).to(torch.uint8)), TypeError, "latents: expected a floating-point tensor",
           "pgd-latents-uint8"),
    _param(_pgd(latents=X * NAN), ValueError, "latents: expected finite values", "pgd-latents-nan"),
    _param(_pgd(latents=torch.tensor(1.0)), ValueError, r"latents: expected a batch \(B, \*latent_shape\)",
           "pgd-latents-0d"),
    _param(_inference_latents, ValueError, "latents: got an inference tensor", "pgd-latents-inference-tensor"),
    _param(_in_inference_mode(_pgd()), RuntimeError, "latent_pgd takes gradients .* inference_mode",
           "pgd-inside-inference-mode"),
    _param(_pgd(decode=lambda z: z[:2]), ValueError, "decode: expected a batch of 4 images", "pgd-decode-wrong-batch"),
    _param(_pgd(decode=lambda z: [z]), ValueError, "decode: expected a batch of 4 images as a tensor, got list",
           "pgd-decode-returns-list"),
    _param(_pgd(decode=lambda z: z.detach()), ValueError, "decode: returned images that do not depend on the latent",
           "pgd-decode-detached"),
    _param(_pgd(classifier=_classifier(lambda logits: logits.detach())), ValueError,
           "model: returned logits that do not depend on its input", "pgd-model-detached"),
    _param(_pgd(classifier=_classifier(lambda logits: logits * NAN)), ValueError,
           "model: expected finite values.*logits", "pgd-model-nan-logits"),
    _param(_pgd(classifier=_classifier(lambda logits: logits.unsqueeze(1))), ValueError,
           r"model: expected logits of shape \(4, num_classes\)", "pgd-model-3d-logits"),
    _param(_pgd(labels=torch.full((4, 5), NAN)), ValueError, "labels: expected soft labels .* finite and >= 0",
           "pgd-soft-labels-nan"),
    _param(_pgd(labels=torch.full((4, 5), -0.2)), ValueError, "labels: expected soft labels .* >= 0",
           "pgd-soft-labels-negative"),
    _param(_pgd(labels=torch.full((4, 3), 1 / 3)), ValueError,
           "labels: expected soft labels of width num_classes = 5 .* got width 3", "pgd-soft-labels-width"),
    _param(_pgd(labels=Y.float()), ValueError, r"labels: expected class indices of shape \(4,\)", "pgd-labels-float"),
    _param(_pgd(labels=[0, 1, 2, 3]), TypeError, "labels: expected a torch.Tensor, got list", "pgd-labels-list"),
    _param(_pgd(labels=Y + 10), ValueError, "labels: expected class indices < num_classes = 5", "pgd-labels-too-big"),
    _param(_pgd(labels=Y - 10), ValueError, "labels: expected class indices >= 0", "pgd-labels-negative"),
    _param(_pgd(labels=Y[:3]), ValueError, "labels: expected 4 labels", "pgd-labels-count"),
    _param(_pgd(mask=torch.ones(3, 16, 16)), TypeError, "mask: expected a slice, a bool tensor or None",
           "pgd-mask-float"),
    _param(_pgd(mask="fine"), TypeError, "mask: expected a slice, a bool tensor or None, got str", "pgd-mask-str"),
    _param(_pgd(mask=torch.ones(5, dtype=torch.bool)), ValueError, "mask: expected a bool mask broadcastable",
           "pgd-mask-shape"),
    _param(_pgd(mask=torch.zeros(3, 16, 16, dtype=torch.bool)), ValueError, "mask: selects no latent entry",
           "pgd-mask-empty"),
]

GUARD_CASES = [
    _param(_guard(lambda x: x), TypeError, "model: expected the classifier as a torch.nn.Module, got function",
           "guard-plain-function"),
    _param(lambda: check_model("resnet18"), TypeError, "model: expected the classifier .* got str",
           "guard-check-model-str"),
    _param(_in_inference_mode(_guard(make_classifier())), RuntimeError,
           r"guard takes gradients .*inference_mode\(\) forbids", "guard-inside-inference-mode"),
]

IDENTITY_CASES = [
    _param(lambda: ts.IdentityGenerator("abc"), TypeError,
           "image_shape: expected a tuple of 3 positive integers, got str", "identity-shape-str"),
    _param(lambda: ts.IdentityGenerator(None), TypeError, "image_shape: expected a tuple of 3 .* got NoneType",
           "identity-shape-none"),
    _param(lambda: ts.IdentityGenerator((3, 16, 16.7)), TypeError, r"image_shape: .*got \(3, 16, 16.7\)",
           "identity-shape-float"),
    _param(lambda: ts.IdentityGenerator((3, 0, 16)), ValueError, r"image_shape: .*got \(3, 0, 16\)",
           "identity-shape-zero"),
    _param(lambda: ts.IdentityGenerator((1, 3, 16, 16)), ValueError, "image_shape: expected a tuple of 3",
           "identity-shape-4d"),
    _param(lambda: ts.IdentityGenerator((3, 16, 16), image_range=(0,)), TypeError,
           r"image_range: expected \(low, high\).*got tuple \(0,\)", "identity-range-one-value"),
    _param(lambda: ts.IdentityGenerator((3, 16, 16), image_range=(0, INF)), ValueError,
           r"image_range: expected \(low, high\), a pair of finite numbers.*got \(0, inf\)", "identity-range-inf"),
    _param(lambda: ts.IdentityGenerator((3, 16, 16), image_range=(1, 0)), ValueError, "image_range: .*low < high",
           "identity-range-reversed"),
    _param(lambda: ts.IdentityGenerator((3, 16, 16), prior="normal"), ValueError, "prior: expected one of",
           "identity-prior"),
    _param(lambda: IDENTITY.decode(torch.zeros(2, 3, 8, 8)), ValueError,
           r"latents: expected shape \(B, 3, 16, 16\) for IdentityGenerator, got \(2, 3, 8, 8\)",
           "identity-decode-shape"),
    _param(lambda: IDENTITY.decode(torch.zeros(2, 3, 16, 16, dtype=torch.uint8)), TypeError,
           "latents: expected a floating-point tensor", "identity-decode-uint8"),
    _param(lambda: IDENTITY.encode(torch.full((2, 3, 16, 16), 5.0)), ValueError,
           r"images: expected values in the generator's range \[0.0, 1.0\]", "identity-encode-range"),
    _param(lambda: IDENTITY.sample_latent(-1), ValueError, "n: expected an integer >= 0, got -1",
           "identity-sample-negative"),
    _param(lambda: IDENTITY.sample_latent(2, generator=3), TypeError, "generator: expected a torch.Generator",
           "identity-sample-rng-int"),
]

STYLEGAN2_CASES = [
    _param(lambda: _stylegan().decode(torch.zeros(2, 5, 16)), ValueError,
           r"latents: expected shape \(B, 6, 16\) for StyleGAN2, got \(2, 5, 16\)", "stylegan2-decode-shape"),
    _param(lambda: _stylegan().decode(torch.full((2, 6, 16), NAN)), ValueError, "latents: expected finite values",
           "stylegan2-decode-nan"),
    _param(lambda: ts.StyleGAN2(24), ValueError, "resolution: expected a power of two from 16 to 1024, got 24",
           "stylegan2-resolution"),
    _param(lambda: ts.StyleGAN2(16, image_channels=2), ValueError, "image_channels: expected one of",
           "stylegan2-image-channels"),
    _param(lambda: ts.StyleGAN2(16, channels={4: 8, 8: 8}, z_dim=8, w_dim=8), ValueError,
           r"channels: expected positive feature-map counts for resolutions \[4, 8, 16\]", "stylegan2-channels"),
    _param(lambda: ts.StyleGAN2(16, noise_mode="x"), ValueError, "noise_mode: expected one of", "stylegan2-noise"),
    _param(lambda: _stylegan().mix(torch.zeros(2, 6, 16), torch.zeros(2, 16), 9), ValueError,
           "split: expected an integer in 1..5", "stylegan2-mix-split"),
    _param(lambda: _stylegan().mapping(torch.zeros(2, 8)), ValueError, r"z: expected shape \(B, 16\)",
           "stylegan2-mapping-z"),
    _param(lambda: _stylegan().sample_latent(-1), ValueError, "n: expected an integer >= 0",
           "stylegan2-sample-negative"),
    _param(lambda: make_tiny_stylegan2().attach_encoder(3), TypeError, "encoder: expected an object with an encode",
           "stylegan2-attach-int"),
    _param(lambda: _stylegan().decode(torch.zeros(1, 6, 16, dtype=torch.float64)), TypeError,
           r"latents: expected dtype torch.float32 \(the generator's", "stylegan2-decode-float64"),
    _param(lambda: _stylegan().mapping(torch.zeros(1, 16, dtype=torch.float64)), TypeError,
           "z: expected dtype torch.float32", "stylegan2-mapping-float64"),
    _param(lambda: _stylegan().sample_latent(2, generator="a"), TypeError, "generator: expected a torch.Generator",
           "stylegan2-sample-generator-str"),
    _param(lambda: _stylegan().mapping(torch.zeros(1, 16), truncation_psi="a"), TypeError,
           "truncation_psi: expected a number", "stylegan2-truncation-str"),
    _param(lambda: ts.StyleGAN2(16, mapping_lr_mul=0), ValueError, "mapping_lr_mul: expected a number > 0",
           "stylegan2-mapping-lr-mul-0"),
    _param(lambda: ts.StyleGAN2(16, w_avg_beta=2), ValueError, r"w_avg_beta: expected a running-mean decay in \[0, 1\)",
           "stylegan2-w-avg-beta-2"),
]

GLOW_CASES = [
    _param(lambda: ts.Glow("abc"), TypeError, "image_shape: expected a tuple of 3 positive integers", "glow-shape-str"),
    _param(lambda: ts.Glow((2, 16, 16)), ValueError, "image_shape: expected 1 or 3 channels, got 2", "glow-channels"),
    _param(lambda: ts.Glow((3, 16, 16), levels=5), ValueError, "image_shape: height and width must be divisible",
           "glow-too-many-levels"),
    _param(lambda: ts.Glow((3, 16, 16), min_scale=1), ValueError, r"min_scale: expected a number in \[0, 1\)",
           "glow-min-scale"),
    _param(lambda: _glow().decode(torch.zeros(2, 3, 16, 16)), ValueError,
           r"latents: expected shape \(B, 768\) for Glow", "glow-decode-shape"),
    _param(lambda: _glow().encode(torch.full((2, 3, 16, 16), 2.0)), ValueError,
           r"images: expected values in the generator's range \[0.0, 1.0\]", "glow-encode-range"),
    _param(lambda: _glow().encode(torch.rand(1, 1, 16, 16)), ValueError,
           r"images: expected shape \(\*, 3, 16, 16\), got \(1, 1, 16, 16\)", "glow-encode-channels"),
    _param(lambda: _glow().log_prob(torch.zeros(2, 3, 8, 8)), ValueError, r"images: expected shape \(\*, 3, 16, 16\)",
           "glow-log-prob-shape"),
    _param(lambda: _glow().sample_latent(2, temperature=0), ValueError, "temperature: expected a number > 0",
           "glow-temperature"),
    _param(lambda: _glow().sample_latent(2, generator="x"), TypeError, "generator: expected a torch.Generator",
           "glow-sample-rng-str"),
    _param(lambda: unflatten_latents(torch.zeros(2, 5), [(2, 2)]), ValueError, r"latents: expected shape \(B, 4\)",
           "unflatten-latents-size"),
]

ADAPTER_CASES = [
    _needs(HAS_NORMFLOWS, "normflows", lambda: ts.from_normflows(nn.Linear(2, 2), (3, 16, 16)), TypeError,
           "flow: expected a normflows NormalizingFlow or MultiscaleFlow", "normflows-not-a-flow"),
    _needs(HAS_NORMFLOWS, "normflows", lambda: ts.from_normflows(_normflows().flow, (3, 8, 8)), ValueError,
           r"image_shape: the flow's latents .* hold 768 values, but images of shape \(3, 8, 8\) hold 192",
           "normflows-shape-mismatch"),
    _needs(HAS_NORMFLOWS, "normflows", lambda: ts.from_normflows(_normflows().flow, (3, 16, 16), image_range=(0,)),
           TypeError, r"image_range: expected \(low, high\)", "normflows-range"),
    _needs(HAS_NORMFLOWS, "normflows", lambda: _normflows().sample_latent(2, generator=1), TypeError,
           "generator: expected a torch.Generator", "normflows-sample-rng-int"),
    _needs(HAS_NORMFLOWS, "normflows", _uninitialised_normflows, ValueError,
           "flow: the normflows ActNorm layer .* is not initialised yet", "normflows-actnorm-uninitialised"),
    _needs(HAS_FREIA, "FrEIA", lambda: ts.from_freia(nn.Linear(2, 2), (3, 16, 16)), TypeError,
           "inn: expected a FrEIA SequenceINN or GraphINN", "freia-not-an-inn"),
    _needs(HAS_FREIA, "FrEIA", lambda: ts.from_freia(_freia().flow, (3, 8, 8)), ValueError,
           r"image_shape: \(3, 8, 8\) has 192 values but the flow takes inputs of shape \(3, 16, 16\)",
           "freia-shape-mismatch"),
    _needs(HAS_FREIA, "FrEIA", lambda: _freia().decode(torch.zeros(1, 5)), ValueError,
           r"latents: expected shape \(B, 768\) for FreiaGenerator", "freia-decode-shape"),
    _needs(HAS_FREIA, "FrEIA", lambda: _freia().encode(torch.full((1, 3, 16, 16), -3.0)), ValueError,
           r"images: expected values in the generator's range \[0.0, 1.0\]", "freia-encode-range"),
]

ENCODER_CASES = [
    _param(lambda: encoder_from_spec("optimize:abc", _stylegan()), ValueError,
           "encoder: expected optimize:STEPS with STEPS an integer >= 0, got 'optimize:abc'", "spec-optimize-steps"),
    _param(lambda: encoder_from_spec(3, _stylegan()), TypeError, "encoder: expected a spec string", "spec-int"),
    _param(lambda: encoder_from_spec("learned:0", _stylegan()), ValueError,
           "encoder: expected learned:STEPS with STEPS a positive integer", "spec-learned-zero"),
    _param(lambda: encoder_from_spec("learned:3", _stylegan()), ValueError, "real_images: learned:STEPS fits",
           "spec-learned-without-images"),
    _param(lambda: OptimizationEncoder(_glow()), TypeError, "generator: expected a StyleGAN2-like W\\+ generator",
           "optimization-encoder-glow"),
    _param(lambda: OptimizationEncoder(_stylegan(), pixel_weight=-1), ValueError,
           "pixel_weight: expected a finite number >= 0", "optimization-encoder-weight"),
    _param(lambda: OptimizationEncoder(_stylegan(), lr=0), ValueError, "lr: expected a number > 0",
           "optimization-encoder-lr"),
    _param(lambda: LearnedEncoder(_stylegan(), width=0), ValueError, "width: expected an integer >= 1",
           "learned-encoder-width"),
    _param(lambda: LearnedEncoder(_stylegan(), refine_steps=-1), ValueError, "refine_steps: expected an integer >= 0",
           "learned-encoder-refine-steps"),
    _param(lambda: _learned_encoder().encode(torch.zeros(2, 3, 8, 8)), ValueError,
           r"images: expected shape \(\*, 3, 16, 16\), got \(2, 3, 8, 8\)", "learned-encoder-encode-shape"),
    _param(lambda: _learned_encoder().fit(steps=1, batch_size=0, progress=False), ValueError,
           "batch_size: expected an integer >= 1", "learned-encoder-fit-batch"),
    _param(lambda: PerceptualDistance(features=3), TypeError, "features: expected an nn.Module", "perceptual-features"),
    _param(lambda: psnr(torch.zeros(2, 3, 16, 16), torch.zeros(3, 3, 16, 16)), ValueError,
           r"b: expected images of the shape of a \(2, 3, 16, 16\)", "psnr-shapes"),
    _param(lambda: refine_latents(_stylegan(), torch.zeros(2, 3, 16, 16), torch.zeros(2, 5, 16), steps=1), ValueError,
           r"init: expected shape \(B, 6, 16\)", "refine-latents-init"),
]

FIND_DIRECTIONS_CASES = [
    _param(_find(truncation_psi=0), ValueError, "truncation_psi: expected a finite, non-zero number .*got 0",
           "find-directions-psi-zero"),
    _param(_find(truncation_psi=NAN), ValueError, "truncation_psi: .*got nan", "find-directions-psi-nan"),
    _param(_find(generator=IDENTITY), TypeError, "generator: expected a StyleGAN2-like W\\+ generator",
           "find-directions-identity"),
    _param(_find(method="ica"), ValueError, r"method: expected one of \['pca', 'umap'\]", "find-directions-method"),
    _param(_find(n_components=17), ValueError, "n_components: PCA in W has at most w_dim = 16 axes",
           "find-directions-too-many"),
    _param(_find(num_samples=3), ValueError, "num_samples: expected an integer >= 4", "find-directions-samples"),
    _param(_find(space="z"), ValueError, "space: expected one of", "find-directions-space"),
    _param(_find(space="activations"), ValueError, "layer: space='activations' needs layer=",
           "find-directions-layer-missing"),
    _param(_find(space="activations", layer="nope"), ValueError, "layer: expected a module name of the generator",
           "find-directions-layer-unknown"),
    _param(_find(layer="synthesis.b8"), ValueError, "layer: only used with space='activations'",
           "find-directions-layer-in-w"),
    _param(_find(seed=1.5), ValueError, "seed: expected an integer >= 0, got 1.5", "find-directions-seed"),
    _param(_find(method="umap", umap_neighbors=1), ValueError, "umap_neighbors: expected an integer >= 2",
           "find-directions-umap-neighbors"),
    _param(_find(progress="no"), TypeError, "progress: expected True or False", "find-directions-progress"),
    _param(lambda: ts.Directions([[1.0]], torch.zeros(1), torch.ones(1), "pca", {}), TypeError,
           "basis: expected a torch.Tensor", "directions-basis-list"),
]

ADAPTIVE_EPS_CASES = [
    _param(lambda: AdaptiveEps(0, 0.1, 0.1, 1.0), ValueError, "num_examples: expected an integer >= 1",
           "adaptive-eps-no-examples"),
    _param(lambda: AdaptiveEps(10, -1, 0.1, 1.0), ValueError, "start: expected a number > 0", "adaptive-eps-start"),
    _param(lambda: AdaptiveEps(10, 0.1, 0, 1.0), ValueError, "rho: expected a number > 0", "adaptive-eps-rho"),
    _param(lambda: AdaptiveEps(10, 2.0, 0.1, 1.0), ValueError, "start: expected a value <= eps_max = 1.0",
           "adaptive-eps-start-above-max"),
    _param(lambda: AdaptiveEps(10, 0.1, 0.1, 1.0).eps_for(torch.zeros(2)), ValueError,
           "indices: expected a 1-D integer tensor", "adaptive-eps-float-indices"),
    _param(lambda: AdaptiveEps(10, 0.1, 0.1, 1.0).eps_for(torch.tensor([3, 10])), ValueError,
           r"indices: expected dataset indices in \[0, 10\)", "adaptive-eps-index-range"),
]

OWN_CASES = (LATENT_PGD_CASES + GUARD_CASES + IDENTITY_CASES + STYLEGAN2_CASES + GLOW_CASES + ADAPTER_CASES
             + ENCODER_CASES + FIND_DIRECTIONS_CASES + ADAPTIVE_EPS_CASES)
CASES = OWN_CASES + list(TRANSFORM_CASES)

# A wrong argument's message starts with the argument's name (the CLI shows it as the flag).
NAMES_THE_ARGUMENT = re.compile(r"^[A-Za-z_][\w.]*: ")


@pytest.mark.parametrize("call, error, match", CASES)
def test_bad_input_gets_a_clear_error(call: Callable[[], object], error: type[Exception], match: str) -> None:
    with pytest.raises(Exception) as info:  # noqa: B017, PT011 - the exact type is asserted below
        call()
    assert type(info.value) is error, f"expected {error.__name__}, got {type(info.value).__name__}: {info.value}"
    message = str(info.value)
    assert re.search(match, message), f"{message!r} does not match {match!r}"
    if error in (ValueError, TypeError):
        assert NAMES_THE_ARGUMENT.match(message), f"the message does not start with the argument: {message!r}"


def test_the_table_is_large_and_its_ids_unique() -> None:
    ids = [case.id for case in CASES]
    assert len(ids) == len(set(ids)), sorted(i for i in ids if ids.count(i) > 1)
    assert len(OWN_CASES) >= 40 and len(CASES) >= 80, (len(OWN_CASES), len(CASES))
