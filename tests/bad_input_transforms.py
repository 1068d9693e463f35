"""The transforms' bad-input cases for the one table-driven test in ``tests/test_bad_input.py``.

Each case is ``pytest.param(call, error_type, match, id=...)``: ``call()`` builds or calls a transform the
wrong way and must raise exactly ``error_type`` with a message matching ``match`` (it names the argument,
what was expected and what arrived). Models are tiny and built once; no case modifies a shared one.
"""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch
from torch import nn

import torch_semaug as ts
from tests.conftest import make_tiny_stylegan2
from tests.contract_cases import make_classifier
from tests.flow_factories import tiny_glow

_stylegan = functools.cache(make_tiny_stylegan2)
_glow = functools.cache(tiny_glow)


@functools.cache
def _identity() -> ts.IdentityGenerator:
    return ts.IdentityGenerator((3, 16, 16))


@functools.cache
def _directions() -> ts.Directions:
    return ts.find_directions(_stylegan(), n_components=3, num_samples=200, progress=False)


def _images(n: int = 4) -> torch.Tensor:
    return torch.rand(n, 3, 16, 16, generator=torch.Generator().manual_seed(0))


def _labels(n: int = 4) -> torch.Tensor:
    return torch.arange(n) % 5


class _NaNLogits(nn.Module):
    """A diverged classifier: logits that depend on the input but are NaN."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1)[:, :5] * float("nan")


class _DetachedLogits(nn.Module):
    """A classifier that cuts the graph (``.detach()`` / ``no_grad`` inside forward)."""

    def __init__(self) -> None:
        super().__init__()
        self.inner = make_classifier().eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x).detach()


class _FlatLogits(nn.Module):
    """Returns ``(B,)`` scores instead of ``(B, num_classes)`` logits."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1).sum(1)


def _pgd(**kwargs) -> ts.AdversarialLatentAttack:
    """Pixel PGD (identity generator) with a small budget; ``kwargs`` override it."""
    options = dict(model=make_classifier().eval(), eps=0.03, step_size=0.01, steps=1) | kwargs
    return ts.AdversarialLatentAttack(_identity(), **options)


def _attack_call(model: nn.Module | None = None, labels: torch.Tensor | None = None, **call) -> object:
    """Call pixel PGD on a standard batch; ``model``, ``labels`` and call kwargs replace the defaults."""
    t = _pgd(model=model if model is not None else make_classifier().eval())
    return t(call.pop("images", _images()), _labels() if labels is None else labels, **call)


def _mix_call(**call) -> object:
    """RandMix on the tiny StyleGAN2 with cached latents; call kwargs replace the defaults."""
    latents = _stylegan().sample_latent(4, torch.Generator().manual_seed(0))
    kwargs = dict(latents=latents) | call
    images = kwargs.pop("images", _images())
    return ts.LatentMix(_stylegan())(images, **kwargs)


def _param(call, error: type[Exception], match: str, case_id: str):
    return pytest.param(call, error, match, id=f"transform-{case_id}")


CONSTRUCTION_CASES = [
    # arguments the mode does not use
    _param(lambda: ts.LatentMix(_stylegan(), eps=0.1), ValueError, r"eps: not used by mode='random' of LatentMix",
           "latent-mix-eps-in-random-mode"),
    _param(lambda: ts.LatentMix(_stylegan(), model=make_classifier()), ValueError,
           r"model: not used by mode='random'", "latent-mix-model-in-random-mode"),
    _param(lambda: ts.FlowPerturb(_glow(), steps=3), ValueError, r"steps: not used by mode='random' of FlowPerturb",
           "flow-perturb-steps-in-random-mode"),
    _param(lambda: ts.DirectionEdit(_stylegan(), directions=_directions(), restarts=2), ValueError,
           r"restarts: not used by mode='random' of DirectionEdit", "direction-edit-restarts-in-random-mode"),
    _param(lambda: ts.LatentMix(_stylegan(), on_failure="nominal"), ValueError,
           r"on_failure: not used by mode='random'",
           "latent-mix-on-failure-in-random-mode"),
    _param(lambda: ts.LatentMix(_stylegan(), label_smoothing=0.1), ValueError,
           r"label_smoothing: .*mode='random' has no eps",
           "latent-mix-label-smoothing-in-random-mode"),
    _param(lambda: ts.FlowPerturb(_glow(), adaptive_eps=ts.AdaptiveEps(4, 0.1, 0.1, 1.0)), ValueError,
           r"adaptive_eps: only adversarial modes", "flow-perturb-adaptive-eps-in-random-mode"),
    _param(lambda: ts.LatentMix(_stylegan(), warm_start=ts.AttackMemory(4)), ValueError,
           r"warm_start: only adversarial modes \['adversarial'\] attack, got mode='random'",
           "latent-mix-warm-start-in-random-mode"),
    _param(lambda: _pgd(warm_start=True), TypeError, r"warm_start: expected a torch_semaug.attacks.AttackMemory or "
           "None, got bool", "warm-start-true"),
    _param(lambda: ts.AttackMemory(2.5), ValueError, r"num_examples: expected an integer >= 1", "memory-size-float"),
    _param(lambda: ts.AttackMemory(4, dtype=torch.int64), ValueError, r"dtype: expected a floating dtype",
           "memory-int-dtype"),
    # the budget
    _param(lambda: ts.FlowPerturb(_glow(), eps=float("inf")), ValueError, r"eps: expected a finite number > 0, got inf",
           "flow-perturb-eps-inf"),
    _param(lambda: ts.LatentMix(_stylegan(), mode="adversarial", eps=float("inf")), ValueError,
           r"eps: expected a finite number > 0, got inf", "latent-mix-eps-inf"),
    _param(lambda: _pgd(eps=float("inf")), ValueError, r"eps: expected a finite number > 0, got inf",
           "adversarial-latent-attack-eps-inf"),
    _param(lambda: ts.DirectionEdit(_stylegan(), directions=_directions(), mode="adversarial", eps=float("inf")),
           ValueError, r"eps: expected a finite number > 0, got inf", "direction-edit-eps-inf"),
    _param(lambda: _pgd(eps=float("nan")), ValueError, r"eps: expected a finite number > 0, got nan", "eps-nan"),
    _param(lambda: _pgd(eps=0), ValueError, r"eps: expected a finite number > 0, got 0", "eps-zero"),
    _param(lambda: _pgd(step_size=-0.1), ValueError, r"step_size: expected a finite number > 0", "step-size-negative"),
    _param(lambda: _pgd(steps=0), ValueError, r"steps: expected an integer >= 1, got 0", "steps-zero"),
    _param(lambda: _pgd(restarts=1.5), ValueError, r"restarts: expected an integer >= 1, got 1.5", "restarts-float"),
    _param(lambda: _pgd(early_stop="yes"), TypeError, r"early_stop: expected True or False, got str", "early-stop-str"),
    _param(lambda: _pgd(random_start=1), TypeError, r"random_start: expected True or False, got int",
           "random-start-int"),
    _param(lambda: _pgd(norm="l1"), ValueError, r"norm: expected one of \['linf', 'l2'\], got 'l1'", "norm-l1"),
    _param(lambda: _pgd(targets="truth"), ValueError, r"targets: expected one of \['labels', 'predictions'\]",
           "targets-unknown"),
    _param(lambda: ts.FlowPerturb(_glow(), mode="adversarial", norm="none"), ValueError,
           r"norm: mode='adversarial' needs a ball", "flow-perturb-untruncated-adversarial"),
    _param(lambda: ts.DirectionEdit(_stylegan(), directions=_directions(), mode="adversarial", norm="l2"), ValueError,
           r"norm: expected one of \['linf'\], got 'l2'", "direction-edit-norm-l2"),
    _param(lambda: ts.LatentMix(_stylegan(), mode="adversarial", on_failure="skip"), ValueError,
           r"on_failure: expected one of \['nominal', 'highest_loss'\]", "latent-mix-on-failure-unknown"),
    _param(lambda: ts.FlowPerturb(_glow(), on_nonfinite="ignore"), ValueError, r"on_nonfinite: expected one of",
           "flow-perturb-on-nonfinite-unknown"),
    _param(lambda: ts.LatentMix(_stylegan(), mode="adv"), ValueError,
           r"mode: expected one of \['random', 'adversarial'\], got 'adv'", "latent-mix-mode-unknown"),
    _param(lambda: _pgd(mode="random"), ValueError, r"mode: expected one of \['adversarial'\], got 'random'",
           "adversarial-latent-attack-random-mode"),
    _param(lambda: _pgd(relative_eps=True), ValueError, r"relative_eps: .*IdentityGenerator has none",
           "relative-eps-without-a-spread"),
    _param(lambda: ts.LatentMix(_stylegan(), truncation_psi=-1.0), ValueError, r"truncation_psi: expected a number > 0",
           "latent-mix-truncation-negative"),
    # what moves
    _param(lambda: ts.LatentMix(_stylegan(), layers=(0, 7)), ValueError,
           r"layers: expected \(start, stop\) .*num_ws = 6",
           "layers-past-num-ws"),
    _param(lambda: ts.LatentMix(_stylegan(), layers=(3, 3)), ValueError, r"layers: expected \(start, stop\)",
           "layers-empty"),
    _param(lambda: ts.LatentMix(_stylegan(), layers=(1.0, 4)), ValueError, r"layers: .*got \(1.0, 4\)", "layers-float"),
    _param(lambda: _pgd(layers=(0, 2)), ValueError, r"layers: a W\+ layer range needs a StyleGAN2-like generator",
           "layers-on-a-non-w-plus-generator"),
    _param(lambda: ts.LatentMix(_stylegan(), layers=(3, 6), mask=torch.ones(96, dtype=torch.bool)), ValueError,
           r"mask: give layers .* or mask .*, not both", "layers-and-mask"),
    _param(lambda: _pgd(mask=torch.ones(10, dtype=torch.bool)), ValueError, r"mask: expected 768 entries",
           "mask-wrong-size"),
    _param(lambda: _pgd(mask=torch.ones(768)), TypeError, r"mask: expected a bool tensor", "mask-float"),
    _param(lambda: _pgd(mask=torch.zeros(768, dtype=torch.bool)), ValueError, r"mask: selects no latent entry",
           "mask-empty"),
    # the image space
    _param(lambda: _pgd(mean=(0.5, 0.5), std=(0.2, 0.2)), ValueError, r"mean: expected 1 or 3 values .* got 2",
           "mean-wrong-length"),
    _param(lambda: _pgd(mean=0.5, std=np.array([0.2, 0.2, 0.2, 0.2])), ValueError, r"std: expected 1 or 3 values",
           "std-numpy-wrong-length"),
    _param(lambda: _pgd(mean=torch.zeros(3, 1), std=0.2), ValueError,
           r"mean: expected a number or one number per channel",
           "mean-2d-tensor"),
    _param(lambda: _pgd(mean=(0.5, float("nan"), 0.5), std=0.2), ValueError, r"mean: expected a finite number",
           "mean-nan"),
    _param(lambda: _pgd(mean=0.5, std=0.0), ValueError, r"std: expected values > 0", "std-zero"),
    _param(lambda: _pgd(mean=0.5), ValueError, r"std: mean and std go together", "mean-without-std"),
    _param(lambda: _pgd(to_generator=lambda x: x), ValueError, r"from_generator: to_generator and from_generator go",
           "to-generator-without-inverse"),
    _param(lambda: _pgd(p=1.5), ValueError, r"p: expected a probability in \[0, 1\]", "p-above-one"),
    _param(lambda: _pgd(model=lambda x: x), TypeError, r"model: expected the classifier as a torch.nn.Module",
           "model-plain-function"),
    _param(lambda: _pgd(rng=0), TypeError, r"rng: expected a torch.Generator .* or None, got int", "rng-int"),
    _param(lambda: ts.LatentMix(_identity()), TypeError, r"generator: expected a StyleGAN2-like W\+ generator",
           "latent-mix-on-identity"),
    _param(lambda: ts.DirectionEdit(_stylegan(), directions=torch.eye(16)), TypeError,
           r"directions: expected a Directions object", "direction-edit-directions-tensor"),
    _param(lambda: ts.DirectionEdit(_stylegan(), directions=_directions(), components=[0, 3]), ValueError,
           r"components: expected distinct indices in \[0, 3\)", "direction-edit-component-out-of-range"),
    _param(lambda: ts.DirectionEdit(_stylegan(), directions=_directions(), strength=(2.0, -2.0)), ValueError,
           r"strength: expected an interval \(low, high\)", "direction-edit-strength-reversed"),
]

CALL_CASES = [
    _param(lambda: _attack_call(labels=torch.full((4, 3), 1 / 3)), ValueError,
           r"labels: expected soft labels of width num_classes = 5 .*got width 3", "soft-labels-wrong-width"),
    _param(lambda: _attack_call(labels=torch.full((4, 5), float("nan"))), ValueError,
           r"labels: expected soft labels .* finite .*20 NaN", "soft-labels-nan"),
    _param(lambda: _attack_call(model=_NaNLogits()), ValueError,
           r"model: expected finite values, got 20 NaN/inf entries in its logits", "model-nan-logits"),
    _param(lambda: _attack_call(model=_DetachedLogits()), ValueError,
           r"model: returned logits that do not depend on its input", "model-detached-logits"),
    _param(lambda: _attack_call(model=_FlatLogits()), ValueError, r"model: expected logits of shape \(4, num_classes\)",
           "model-1d-output"),
    _param(lambda: _pgd(model=None)(_images(), _labels()), ValueError, r"model: .* attacks a classifier; pass model=",
           "adversarial-without-model"),
    _param(lambda: _pgd()(_images()), ValueError, r"labels: AdversarialLatentAttack\(mode='adversarial'\) needs",
           "adversarial-without-labels"),
    _param(lambda: _pgd()(_images()[0]), ValueError, r"images: .* must run per batch", "adversarial-per-sample"),
    _param(lambda: _attack_call(labels=torch.arange(3)), ValueError, r"labels: expected 4 labels", "labels-count"),
    _param(lambda: _attack_call(indices=torch.arange(3)), ValueError, r"indices: expected one dataset index per image",
           "indices-count"),
    _param(lambda: _pgd(warm_start=ts.AttackMemory(10))(_images(), _labels()), ValueError,
           r"indices: warm_start keeps state per dataset example; call t\(x, y, indices=idx\)",
           "warm-start-no-indices"),
    _param(lambda: _pgd(warm_start=ts.AttackMemory(3))(_images(), _labels(), indices=torch.arange(4)), ValueError,
           r"indices: expected dataset indices in \[0, 3\) \(AttackMemory\(num_examples=3\)\), got range \[0, 3\]",
           "warm-start-index-out-of-range"),
    _param(lambda: _attack_call(images=torch.rand(4, 3, 0, 0)), ValueError, r"images: expected .* with H, W > 0",
           "images-0x0"),
    _param(lambda: _attack_call(images=torch.rand(4, 16)), ValueError, r"images: expected a batch \(B, C, H, W\)",
           "images-2d"),
    _param(lambda: _attack_call(images=(_images() * 255).to(torch.uint8)), TypeError,
           r"images: expected a floating-point tensor, got dtype torch.uint8", "images-uint8"),
    _param(lambda: _attack_call(images=_images() * float("nan")), ValueError, r"images: expected finite values",
           "images-nan"),
    _param(lambda: _attack_call(images=_images() * 3), ValueError, r"images: after conversion got values in \[",
           "images-out-of-range"),
    _param(lambda: _mix_call(images=_images() * 3 - 1), ValueError, r"images: after conversion got values in \[",
           "images-out-of-range-with-latents"),
    _param(lambda: _mix_call(latents=torch.zeros(4, 6, 16, dtype=torch.uint8)), TypeError,
           r"latents: expected a floating-point tensor, got dtype torch.uint8", "latents-uint8"),
    _param(lambda: _mix_call(latents=torch.zeros(3, 6, 16)), ValueError,
           r"latents: expected one latent per image \(4\)",
           "latents-batch"),
    _param(lambda: _mix_call(latents=torch.zeros(4, 5, 16)), ValueError, r"latents: expected shape \(B, 6, 16\)",
           "latents-shape"),
    _param(lambda: _mix_call(latents=[[0.0]]), TypeError, r"latents: expected a torch.Tensor, got list",
           "latents-list"),
]

TRANSFORM_CASES = CONSTRUCTION_CASES + CALL_CASES
