"""Adaptive perturbation tuning and adaptive label smoothing (NaTra 3.4.3), through the transform base."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from torch_semaug import AdversarialLatentAttack, IdentityGenerator
from torch_semaug.attacks import AdaptiveEps, dirichlet_ones


class ConstantClassifier(nn.Module):
    """Always predicts class 0, whatever the image: no attack can fool it on class 0, class-1+ are wrong."""

    def __init__(self, num_classes: int = 4) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(num_classes))
        with torch.no_grad():
            self.bias[0] = 5.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bias.expand(x.shape[0], -1) + 0 * x.flatten(1).sum(1, keepdim=True)


class LinearClassifier(nn.Module):
    def __init__(self, num_classes: int = 3) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(3 * 4 * 4, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def attack(model: nn.Module, **kwargs) -> AdversarialLatentAttack:
    return AdversarialLatentAttack(
        IdentityGenerator((3, 4, 4)), model=model, eps=0.05, step_size=0.02, steps=2, random_start=False,
        rng=torch.Generator().manual_seed(0), **kwargs,
    )


def test_adaptive_eps_grows_only_for_examples_still_classified_correctly():
    state = AdaptiveEps(10, start=0.1, rho=0.05, eps_max=0.2)
    t = attack(ConstantClassifier(), adaptive_eps=state)
    images = torch.rand(6, 3, 4, 4)
    labels = torch.tensor([0, 1, 0, 2, 0, 3])  # class 0: correct (never fooled); others: already wrong
    indices = torch.tensor([7, 1, 2, 3, 9, 5])
    t(images, labels, indices=indices)
    expected = torch.full((10,), 0.1)
    expected[[7, 2, 9]] = 0.15
    assert torch.allclose(state.eps, expected)
    for _ in range(3):  # capped at eps_max
        t(images, labels, indices=indices)
    expected[[7, 2, 9]] = 0.2
    assert torch.allclose(state.eps, expected)


def test_adaptive_eps_attacks_at_eps_i_plus_rho():
    state = AdaptiveEps(4, start=0.01, rho=0.01, eps_max=0.5)
    with torch.no_grad():
        state.eps.copy_(torch.tensor([0.01, 0.2, 0.05, 0.495]))
    t = attack(LinearClassifier(), adaptive_eps=state)
    t.eval()  # no update: the state stays as set
    images = torch.rand(4, 3, 4, 4) * 0.5 + 0.25
    out, _ = t(images, torch.tensor([0, 1, 2, 0]), indices=torch.tensor([0, 1, 2, 3]))
    moved = (out - images).flatten(1).abs().max(1).values
    radius = (state.eps + 0.01).clamp(max=0.5)  # eps_i + rho, capped at eps_max
    assert torch.all(moved <= radius + 1e-6)
    assert moved[3] > 0.05  # the step size scales with the radius, so large radii are used
    assert torch.equal(state.eps, torch.tensor([0.01, 0.2, 0.05, 0.495]))


class MeanThreshold(nn.Module):
    """Class 1 once the image's mean exceeds 0.5: an l-inf attack of radius r on a constant image v fools
    (label 0) exactly when v + r > 0.5, so each example's margin to the boundary is 0.5 - v."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(100.0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        score = self.scale * (x.flatten(1).mean(1) - 0.5)
        return torch.stack([torch.zeros_like(score), score], 1)


def test_adaptive_eps_follows_natra_3_4_3():
    start, rho, eps_max = 0.05, 0.05, 0.2
    margins = torch.tensor([0.02, 0.08, 0.12, 0.3])

    def reference(eps: torch.Tensor) -> torch.Tensor:
        # NaTra 3.4.3: attack at eps_i + rho (capped); fooled -> eps_i kept, else eps_i + rho (capped)
        fooled = (eps + rho).clamp(max=eps_max) > margins
        return torch.where(fooled, eps, (eps + rho).clamp(max=eps_max))

    state = AdaptiveEps(4, start=start, rho=rho, eps_max=eps_max)
    t = AdversarialLatentAttack(IdentityGenerator((3, 4, 4)), model=MeanThreshold(), eps=0.1, step_size=0.1, steps=2,
                                random_start=False, adaptive_eps=state)
    images = (0.5 - margins).view(4, 1, 1, 1).expand(4, 3, 4, 4).clone()
    expected = torch.full((4,), start)
    for _ in range(4):
        t(images, torch.zeros(4, dtype=torch.long), indices=torch.arange(4))
        expected = reference(expected)
        assert torch.allclose(state.eps, expected)
    assert torch.allclose(expected, torch.tensor([0.05, 0.05, 0.1, 0.2]))


def test_state_dict_round_trip_resumes_eps():
    state = AdaptiveEps(8, start=0.1, rho=0.05, eps_max=1.0)
    t = attack(ConstantClassifier(), adaptive_eps=state)
    t(torch.rand(3, 3, 4, 4), torch.tensor([0, 0, 1]), indices=torch.tensor([0, 4, 5]))
    saved = t.state_dict()
    assert list(saved) == ["adaptive_eps.eps"]
    resumed = attack(ConstantClassifier(), adaptive_eps=AdaptiveEps(8, start=0.1, rho=0.05, eps_max=1.0))
    resumed.load_state_dict(saved)
    assert torch.equal(resumed.adaptive_eps.eps, state.eps)
    resumed(torch.rand(1, 3, 4, 4), torch.tensor([0]), indices=torch.tensor([0]))
    assert resumed.adaptive_eps.eps[0] == pytest.approx(0.2)


def test_soft_labels_sum_to_one_with_the_smoothing_mass():
    state = AdaptiveEps(6, start=0.1, rho=0.1, eps_max=0.5)
    with torch.no_grad():
        state.eps.copy_(torch.tensor([0.1, 0.2, 0.3, 0.4, 0.5, 0.5]))
    t = attack(LinearClassifier(num_classes=5), adaptive_eps=state, label_smoothing=2.0).eval()
    labels = torch.tensor([0, 1, 2, 3, 4, 0])
    _, soft = t(torch.rand(6, 3, 4, 4), labels, indices=torch.arange(6))
    assert soft.shape == (6, 5) and soft.dtype == torch.float32
    assert torch.allclose(soft.sum(1), torch.ones(6))
    mass = 2.0 * state.eps  # a = c * eps_i
    onehot = torch.nn.functional.one_hot(labels, 5).float()
    spread = soft - (1 - mass[:, None]) * onehot  # = a * u with u on the simplex
    assert torch.all(spread >= -1e-6)
    assert torch.allclose(spread.sum(1), mass, atol=1e-6)
    assert (spread / mass[:, None]).std(0).max() > 0  # u is random, not uniform


def test_unselected_examples_keep_their_one_hot():
    t = attack(LinearClassifier(num_classes=3), label_smoothing=1.0, p=0.5)
    labels = torch.tensor([0, 1, 2, 1, 0, 2, 1, 0])
    images = torch.rand(8, 3, 4, 4)
    out, soft = t(images, labels)
    untouched = (out == images).flatten(1).all(1)
    assert untouched.any() and (~untouched).any()
    onehot = torch.nn.functional.one_hot(labels, 3).float()
    assert torch.equal(soft[untouched], onehot[untouched])
    assert torch.allclose(soft[~untouched].sum(1), torch.ones(int((~untouched).sum())))
    assert torch.allclose(soft[~untouched].max(1).values.lt(1).float(), torch.ones(int((~untouched).sum())))


def test_num_classes_argument_and_soft_label_input():
    t = attack(LinearClassifier(num_classes=3), label_smoothing=1.0, num_classes=3)
    y = torch.tensor([[0.5, 0.5, 0.0], [0.0, 0.0, 1.0]])
    _, soft = t(torch.rand(2, 3, 4, 4), y)
    assert torch.allclose(soft.sum(1), torch.ones(2))
    spread = soft - 0.95 * y
    assert torch.allclose(spread.sum(1), torch.full((2,), 0.05), atol=1e-6)


def test_dirichlet_ones_is_seeded_and_on_the_simplex():
    a = dirichlet_ones(2000, 4, torch.Generator().manual_seed(1), torch.device("cpu"))
    b = dirichlet_ones(2000, 4, torch.Generator().manual_seed(1), torch.device("cpu"))
    assert torch.equal(a, b) and torch.all(a >= 0)
    assert torch.allclose(a.sum(1), torch.ones(2000))
    assert torch.allclose(a.mean(0), torch.full((4,), 0.25), atol=0.02)  # flat Dirichlet: mean 1/K


def test_bad_input():
    state = AdaptiveEps(4, start=0.1, rho=0.1, eps_max=0.3)
    t = attack(ConstantClassifier(), adaptive_eps=state)
    with pytest.raises(ValueError, match="indices.*adaptive_eps"):
        t(torch.rand(2, 3, 4, 4), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="indices"):
        t(torch.rand(2, 3, 4, 4), torch.tensor([0, 1]), indices=torch.tensor([0, 4]))
    with pytest.raises(ValueError, match="start"):
        AdaptiveEps(4, start=1.0, rho=0.1, eps_max=0.3)
    with pytest.raises(ValueError, match="num_examples"):
        AdaptiveEps(0, start=0.1, rho=0.1, eps_max=0.3)
    with pytest.raises(ValueError, match="label_smoothing"):
        attack(ConstantClassifier(), adaptive_eps=AdaptiveEps(4, 0.1, 0.1, 0.5), label_smoothing=3.0)
    with pytest.raises(ValueError, match="label_smoothing"):
        attack(ConstantClassifier(), label_smoothing=-1.0)
    with pytest.raises(TypeError, match="adaptive_eps"):
        attack(ConstantClassifier(), adaptive_eps=0.1)
    with pytest.raises(ValueError, match="fooled"):
        state.update(torch.tensor([0, 1]), torch.tensor([1, 0]))


def test_repr_is_one_line_with_the_adaptive_state():
    t = attack(ConstantClassifier(), adaptive_eps=AdaptiveEps(4, 0.1, 0.1, 0.3), label_smoothing=0.5)
    text = repr(t)
    assert "\n" not in text and "AdaptiveEps(num_examples=4" in text and "label_smoothing=0.5" in text


def _adversarial_with_adaptive(name: str, model: nn.Module, **kwargs):
    """LatentMix and FlowPerturb in adversarial mode on tiny generators, with adaptive eps / smoothing."""
    import torch_semaug as ts
    from tests.contract_cases import _stylegan2
    from tests.flow_factories import tiny_glow

    if name == "latent_mix":
        return ts.LatentMix(_stylegan2(), model=model, mode="adversarial", steps=1, restarts=1, early_stop=False,
                            on_failure="highest_loss", **kwargs)
    return ts.FlowPerturb(tiny_glow(), model=model, mode="adversarial", eps=0.5, norm="l2", step_size=0.25,
                          steps=1, **kwargs)


@pytest.mark.parametrize("name", ["latent_mix", "flow_perturb"])
def test_every_adversarial_transform_takes_adaptive_eps_and_label_smoothing(name):
    from tests.contract_cases import make_classifier

    model = make_classifier().eval()
    state = AdaptiveEps(8, start=0.01, rho=0.01, eps_max=0.05)
    t = _adversarial_with_adaptive(name, model, adaptive_eps=state, label_smoothing=2.0)
    images = torch.rand(6, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    labels = torch.tensor([0, 1, 2, 3, 4, 0])
    indices = torch.tensor([6, 0, 3, 5, 1, 7])
    latents = None if name == "flow_perturb" else t.generator.sample_latent(6, torch.Generator().manual_seed(0))
    out, soft = t(images, labels, latents=latents, indices=indices)
    with torch.no_grad():
        fooled = model(out).argmax(1) != labels
    # eps grows exactly for the examples the attack did not fool; other dataset entries stay at start
    expected = torch.full((8,), 0.01)
    expected[indices[~fooled]] = 0.02  # the attack ran at eps_i + rho = 0.02 and did not fool
    assert torch.allclose(state.eps, expected)
    # soft labels: rows sum to 1, at least 1 - c * eps_i on the true class (the Dirichlet part may add to it)
    assert soft.shape == (6, 5) and torch.allclose(soft.sum(1), torch.ones(6))
    assert (soft[torch.arange(6), labels] >= 1 - 2.0 * 0.01 - 1e-6).all()
    assert (soft[torch.arange(6), labels] < 1).all()
