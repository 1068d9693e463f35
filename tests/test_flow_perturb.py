"""FlowPerturb: R-LA noise and truncation, A-LA ball and loss, exactness at small eps, bad input."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import torch_semaug as ts
from tests.contract_cases import make_classifier
from tests.flow_factories import smooth_images, tiny_glow
from torch_semaug.generators import Glow
from torch_semaug.transforms import MoveContext


def _mid_images(n: int, seed: int = 0) -> torch.Tensor:
    return 0.25 + 0.5 * smooth_images(n, seed=seed)  # away from 0 and 1: no clamping of small moves


def _move(transform: ts.FlowPerturb, latents: torch.Tensor, seed: int) -> torch.Tensor:
    ctx = MoveContext(decode=transform.generator.decode, classifier=None, indices=None,
                      rng=torch.Generator().manual_seed(seed))
    return transform._move(latents, None, ctx)


def test_random_noise_and_truncation():
    glow = tiny_glow()
    z = glow.encode(_mid_images(4))
    eps = 0.25
    delta = _move(ts.FlowPerturb(glow, eps=eps, norm="linf"), z, 0) - z
    assert delta.abs().max() <= eps + 1e-6
    assert (delta.abs() > eps - 1e-6).float().mean() > 0.2  # N(0, 1) * eps exceeds eps ~32% of the time
    delta = _move(ts.FlowPerturb(glow, eps=1.0, norm="l2"), z, 0) - z
    assert torch.allclose(delta.norm(dim=1), torch.ones(4), atol=1e-4)  # sqrt(D) >> 1: always rescaled
    delta = _move(ts.FlowPerturb(glow, eps=0.5, norm="none"), z, 0) - z
    assert abs(float((delta / 0.5).std()) - 1.0) < 0.05 and abs(float(delta.mean())) < 0.05
    again = _move(ts.FlowPerturb(glow, eps=0.5, norm="none"), z, 0) - z
    assert torch.equal(delta, again)


def test_random_mode_is_exact_at_tiny_eps_and_moves_at_paper_eps():
    glow = tiny_glow()
    x = _mid_images(3)
    out = ts.FlowPerturb(glow, eps=1e-7, norm="linf")(x)
    assert (out - x).abs().max() < 1e-4
    out = ts.FlowPerturb(glow, eps=0.25, norm="linf", rng=torch.Generator().manual_seed(0))(x)
    assert (out - x).abs().amax(dim=(1, 2, 3)).min() > 1e-3


def test_adversarial_stays_in_the_ball_and_raises_the_loss():
    glow = tiny_glow()
    model = make_classifier().eval()
    x = _mid_images(6, seed=2)
    labels = torch.arange(6) % 5
    ala = ts.FlowPerturb(glow, mode="adversarial", eps=0.5, norm="l2", steps=3, model=model)
    assert ala.step_size == 0.25 and "step_size=0.25" in repr(ala)
    out, out_labels = ala(x, labels)
    assert torch.equal(out_labels, labels)
    moved = glow.encode(out.clamp(0, 1)) - glow.encode(x)
    assert moved.norm(dim=1).max() <= 0.5 + 1e-3
    with torch.no_grad():
        clean = F.cross_entropy(model(x), labels)
        attacked = F.cross_entropy(model(out), labels)
        rla = ts.FlowPerturb(glow, eps=0.5, norm="l2", rng=torch.Generator().manual_seed(0))(x)
        random = F.cross_entropy(model(rla), labels)
    assert attacked > clean and attacked > random


def test_create_and_the_papers_defaults():
    glow = tiny_glow()
    t = ts.create("flow_perturb", generator=glow, mode="adversarial")
    assert t.generator is glow
    # A-LA, CIFAR-10 (Yueksel et al.): l2, eps 1.0, alpha 0.5, k 3, random start; R-LA: l-inf, eps 0.25
    assert (t.norm, t.eps, t.step_size, t.steps, t.random_start) == ("l2", 1.0, 0.5, 3, True)
    rla = ts.FlowPerturb(glow)
    assert (rla.mode, rla.norm, rla.eps, rla.steps) == ("random", "linf", 0.25, None)
    assert repr(t).count("\n") == 0 and "Glow" in repr(t)


def test_arguments_the_mode_does_not_use_are_refused():
    glow, model = tiny_glow(), make_classifier()
    with pytest.raises(ValueError, match=r"step_size, steps, model: not used by mode='random'"):
        ts.FlowPerturb(glow, mode="random", model=model, steps=3, step_size=0.5)
    with pytest.raises(ValueError, match=r"eps: expected a finite number > 0, got inf"):
        ts.FlowPerturb(glow, eps=float("inf"))


def test_bad_input():
    glow = tiny_glow()
    x = _mid_images(2)
    with pytest.raises(ValueError, match=r"eps"):
        ts.FlowPerturb(glow, eps=0.0)
    with pytest.raises(ValueError, match="norm"):
        ts.FlowPerturb(glow, mode="adversarial", eps=1.0, norm="none")
    with pytest.raises(ValueError, match="norm"):
        ts.FlowPerturb(glow, eps=1.0, norm="l1")
    with pytest.raises(ValueError, match=r"\[0.0, 1.0\].*mean=/std="):
        ts.FlowPerturb(glow, eps=0.1)(x * 4 - 2)
    with pytest.raises(ValueError, match="3-channel"):
        ts.FlowPerturb(glow, eps=0.1)(x[:, :1])
    with pytest.raises(ValueError, match="latents: expected shape"):
        ts.FlowPerturb(glow, eps=0.1)(x, torch.zeros(2, dtype=torch.long), latents=torch.zeros(2, 10))
    broken = tiny_glow()
    broken.blocks[0].steps[0].actnorm.logs.data[0, 0] = float("nan")
    with pytest.raises(ValueError, match="from Glow.encode"):
        ts.FlowPerturb(broken, eps=0.1)(x)


class _NaNWhenAttacked(Glow):
    """A flow whose decode breaks on the latents an attack differentiates through."""

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        out = super().decode(latents)
        return out * float("nan") if latents.requires_grad else out


def _broken_flow_and_watched_classifier(flow_class: type[Glow]) -> tuple[Glow, torch.nn.Module, list[bool]]:
    """A tiny flow of ``flow_class`` and a classifier that records whether each input it saw was finite."""
    glow = flow_class((3, 16, 16), levels=2, steps=1, width=8)
    glow.initialize(smooth_images(8))
    glow.freeze()
    model = make_classifier()
    seen: list[bool] = []
    model.register_forward_hook(lambda _m, inputs, _o: seen.append(bool(torch.isfinite(inputs[0]).all())))
    return glow, model, seen


def test_nan_from_the_flow_never_reaches_the_classifier():
    glow, model, seen = _broken_flow_and_watched_classifier(_NaNWhenAttacked)
    ala = ts.FlowPerturb(glow, mode="adversarial", eps=1.0, norm="l2", model=model, on_nonfinite="raise")
    with pytest.raises(ValueError, match="generator output.*during the attack"):
        ala(_mid_images(2), torch.tensor([0, 1]))
    assert all(seen)
    with pytest.raises(ValueError, match="on_nonfinite"):
        ts.FlowPerturb(glow, eps=1.0, on_nonfinite="ignore")


class _OverflowsOnFirstExample(Glow):
    """A flow whose inverse overflows to NaN for the first example of every batch (a latent pushed too far)."""

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        out = super().decode(latents)
        return torch.cat([torch.full_like(out[:1], float("nan")), out[1:]])


@pytest.mark.parametrize("mode", ["random", "adversarial"])
def test_an_example_whose_decode_overflows_keeps_its_input(mode):
    glow, model, seen = _broken_flow_and_watched_classifier(_OverflowsOnFirstExample)
    x, y = _mid_images(3), torch.tensor([0, 1, 2])
    perturb = ts.FlowPerturb(glow, mode=mode, eps=0.5, norm="l2", rng=torch.Generator().manual_seed(0)).bind(model)
    with pytest.warns(RuntimeWarning, match="1 of 3 decoded variants were not finite"):
        out, _ = perturb(x, y)
    assert torch.equal(out[0], x[0])                        # kept its input
    assert not torch.equal(out[1:], x[1:]) and torch.isfinite(out).all()
    assert perturb.nonfinite_count == 1 and all(seen)
    with pytest.warns(RuntimeWarning):
        perturb(x, y)
    assert perturb.nonfinite_count == 2


def test_adversarial_adaptive_eps_and_label_smoothing():
    from torch_semaug.attacks.adaptive import AdaptiveEps

    glow = tiny_glow()
    adaptive = AdaptiveEps(6, start=0.1, rho=0.2, eps_max=1.0)
    ala = ts.FlowPerturb(glow, mode="adversarial", eps=1.0, norm="l2", steps=2, model=make_classifier(),
                         adaptive_eps=adaptive, label_smoothing=0.5)
    labels = torch.arange(6) % 5
    out, soft = ala(_mid_images(6), labels, indices=torch.arange(6))
    assert out.shape == (6, 3, 16, 16) and soft.shape == (6, 5)
    assert torch.allclose(soft.sum(1), torch.ones(6))
    assert (adaptive.eps > 0.1 + 1e-6).any()  # examples that survived grew their eps
    with pytest.raises(ValueError, match="adaptive_eps"):
        ts.FlowPerturb(glow, eps=0.1, adaptive_eps=AdaptiveEps(6, start=0.1, rho=0.2, eps_max=1.0))
