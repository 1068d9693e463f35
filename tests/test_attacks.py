"""The latent PGD engine: equal to textbook PGD, early stop, restarts, masks, bounds, errors."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import torch_semaug as ts
from tests.contract_cases import NUM_CLASSES, make_classifier
from torch_semaug.attacks import classifier_guard, latent_pgd, unwrap_model
from torch_semaug.attacks.guard import check_model


def reference_pgd(model, x, y, eps, alpha, steps, norm):
    """Madry et al.'s PGD as textbooks write it (no random start), pixel range [0, 1]."""
    x_adv = x.clone()
    for _ in range(steps):
        x_adv.requires_grad_(True)
        loss = F.cross_entropy(model(x_adv), y, reduction="sum")
        (grad,) = torch.autograd.grad(loss, x_adv)
        with torch.no_grad():
            if norm == "linf":
                x_adv = x_adv + alpha * grad.sign()
                x_adv = torch.min(torch.max(x_adv, x - eps), x + eps)
            else:
                g_norm = grad.flatten(1).norm(dim=1).view(-1, 1, 1, 1).clamp_min(1e-12)
                x_adv = x_adv + alpha * grad / g_norm
                delta = x_adv - x
                d_norm = delta.flatten(1).norm(dim=1).view(-1, 1, 1, 1).clamp_min(1e-12)
                x_adv = x + delta * (eps / d_norm).clamp(max=1.0)
            x_adv = x_adv.clamp(0.0, 1.0)
    return x_adv.detach()


@pytest.fixture
def batch(tiny_classifier):
    x = torch.rand(6, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    y = torch.arange(6) % NUM_CLASSES
    return tiny_classifier, x, y


@pytest.mark.parametrize("norm,eps,alpha", [("linf", 8 / 255, 2 / 255), ("l2", 0.5, 0.2)])
def test_identity_generator_equals_textbook_pgd_step_for_step(batch, identity_generator, norm, eps, alpha) -> None:
    model, x, y = batch
    generator = identity_generator
    for steps in range(1, 5):
        expected = reference_pgd(model, x, y, eps, alpha, steps, norm)
        result = latent_pgd(generator.decode, model, x, y, eps=eps, step_size=alpha, steps=steps, norm=norm,
                            bounds=generator.latent_bounds)
        assert torch.allclose(result.latents, expected, atol=1e-6), f"differs after {steps} steps"
        attack = ts.AdversarialLatentAttack(generator, model=model, eps=eps, step_size=alpha, steps=steps, norm=norm,
                                            random_start=False)
        assert torch.allclose(attack(x, y)[0], expected, atol=1e-6)


class CountingModel(nn.Module):
    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.calls = 0
        self.examples = 0
        self.history: list[tuple[torch.Tensor, torch.Tensor]] = []  # (logits, inputs) of each call

    def forward(self, x):
        self.calls += 1
        self.examples += x.shape[0]
        out = self.inner(x)
        self.history.append((out.detach(), x.detach()))
        return out


def test_early_stop_skips_work_without_changing_who_is_fooled() -> None:
    torch.manual_seed(1)
    model = make_classifier().eval()
    x, y = torch.rand(32, 3, 16, 16), torch.randint(0, NUM_CLASSES, (32,))
    generator = ts.IdentityGenerator((3, 16, 16))
    kwargs = dict(eps=0.1, step_size=0.02, steps=8, bounds=(0.0, 1.0), evaluate=True)

    full_model = CountingModel(model)
    full = latent_pgd(generator.decode, full_model, x, y, **kwargs)
    # Examples independent (eval mode), so an example is fooled by the early-stopping attack iff some
    # iterate of the full attack fooled it.
    ever_fooled = torch.zeros(32, dtype=torch.bool)
    for logits, _ in full_model.history:
        ever_fooled |= logits.argmax(1) != y
    assert 0 < int(ever_fooled.sum()) < 32, "the test needs a mix of fooled and robust examples"

    stop_model = CountingModel(model)
    stopped = latent_pgd(generator.decode, stop_model, x, y, early_stop=True, **kwargs)
    assert torch.equal(stopped.fooled, ever_fooled)
    with torch.no_grad():
        assert torch.equal(model(stopped.latents).argmax(1) != y, ever_fooled)
    assert stop_model.examples < full_model.examples
    assert stopped.examples_processed == stop_model.examples and full.examples_processed == full_model.examples
    # Examples never fooled follow the same trajectory in both runs.
    robust = ~ever_fooled
    assert torch.allclose(stopped.latents[robust], full.latents[robust], atol=1e-6)


def test_restarts_keep_the_worst_case_per_example(batch, identity_generator) -> None:
    model, x, y = batch
    generator = identity_generator
    kwargs = dict(eps=0.05, step_size=0.02, steps=2, bounds=(0.0, 1.0), random_start=True)
    losses = []
    for seed in range(3):
        single = latent_pgd(generator.decode, model, x, y, rng=torch.Generator().manual_seed(seed), **kwargs)
        with torch.no_grad():
            losses.append(F.cross_entropy(model(single.latents), y, reduction="none"))
    # Three restarts drawn from one stream visit different starts; the kept one has the largest loss among
    # the restarts actually run, so it is at least the loss of the first (same seed, same first draw).
    multi = latent_pgd(generator.decode, model, x, y, restarts=3, rng=torch.Generator().manual_seed(0), **kwargs)
    with torch.no_grad():
        multi_loss = F.cross_entropy(model(multi.latents), y, reduction="none")
    assert (multi_loss >= losses[0] - 1e-5).all()
    assert not torch.allclose(losses[0], losses[1])


def test_restart_center_and_mask_move_only_masked_entries(batch) -> None:
    model, x, y = batch
    mask = torch.zeros(3, 16, 16, dtype=torch.bool)
    mask[1] = True
    centers = torch.rand(6, 3, 16, 16)
    result = latent_pgd(lambda z: z, model, x, y, eps=0.05, step_size=0.02, steps=2, mask=mask,
                        restart_center=lambda r, z: centers, bounds=(0.0, 1.0))
    assert torch.equal(result.latents[:, [0, 2]], x[:, [0, 2]])
    assert (result.latents[:, 1] - centers[:, 1]).abs().max() <= 0.05 + 1e-6
    sliced = latent_pgd(lambda z: z, model, x, y, eps=0.05, step_size=0.02, steps=2, mask=slice(2, None))
    assert torch.equal(sliced.latents[:, :2], x[:, :2]) and not torch.equal(sliced.latents[:, 2], x[:, 2])


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_iterates_stay_in_ball_and_bounds_with_per_example_eps(batch, norm) -> None:
    model, x, y = batch
    eps = torch.linspace(0.01, 0.3, 6)
    result = latent_pgd(lambda z: z, model, x, y, eps=eps, step_size=0.1, steps=4, norm=norm,
                        random_start=True, bounds=(0.0, 1.0), rng=torch.Generator().manual_seed(0))
    delta = (result.latents - x).flatten(1)
    size = delta.abs().amax(1) if norm == "linf" else delta.norm(dim=1)
    assert (size <= eps + 1e-5).all() and (size > 0).all()
    assert result.latents.min() >= 0 and result.latents.max() <= 1


def test_targets_predictions_attacks_the_models_own_labels(batch) -> None:
    model, x, _ = batch
    with torch.no_grad():
        predicted = model(x).argmax(1)
    wrong = (predicted + 1) % NUM_CLASSES
    kwargs = dict(eps=0.05, step_size=0.02, steps=2, bounds=(0.0, 1.0))
    by_prediction = latent_pgd(lambda z: z, model, x, wrong, targets="predictions", **kwargs)
    reference = latent_pgd(lambda z: z, model, x, predicted, **kwargs)
    assert torch.allclose(by_prediction.latents, reference.latents)


def test_soft_labels_are_accepted(batch) -> None:
    model, x, y = batch
    soft = F.one_hot(y, NUM_CLASSES).float()
    hard_result = latent_pgd(lambda z: z, model, x, y, eps=0.05, step_size=0.02, steps=2)
    soft_result = latent_pgd(lambda z: z, model, x, soft, eps=0.05, step_size=0.02, steps=2)
    assert torch.allclose(hard_result.latents, soft_result.latents, atol=1e-6)


def test_guard_restores_everything_after_an_exception() -> None:
    model = make_classifier().train()
    x = torch.rand(4, 3, 16, 16)
    model(x).sum().backward()
    grads = [p.grad.clone() for p in model.parameters()]
    buffers = [b.clone() for b in model.buffers()]
    with pytest.raises(RuntimeError, match="boom"), classifier_guard(model, keep_mode=True) as inner:
        inner(x)  # updates BatchNorm running statistics in train mode
        assert not any(p.requires_grad for p in inner.parameters())
        raise RuntimeError("boom")
    assert model.training and all(p.requires_grad for p in model.parameters())
    assert all(torch.equal(a, b) for a, b in zip(model.buffers(), buffers, strict=True))
    assert all(torch.equal(p.grad, g) for p, g in zip(model.parameters(), grads, strict=True))


def test_guard_unwraps_data_parallel_and_respects_autocast() -> None:
    model = make_classifier()
    wrapped = nn.DataParallel(model)
    assert unwrap_model(wrapped) is model
    generator = ts.IdentityGenerator((3, 16, 16))
    attack = ts.AdversarialLatentAttack(generator, model=wrapped, eps=0.05, step_size=0.02, steps=2)
    x, y = torch.rand(3, 3, 16, 16), torch.tensor([0, 1, 2])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out, _ = attack(x, y)
        assert torch.is_autocast_enabled("cpu")
    assert out.dtype == torch.float32 and (out - x).abs().max() <= 0.05 + 1e-6
    assert model.training


class SelfCounting(nn.Module):
    """A classifier whose forward updates its own buffers, in eval mode too (a call counter, a cache)."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.register_buffer("calls", torch.zeros((), dtype=torch.long))
        self.register_buffer("last_input_mean", torch.zeros(()))

    def forward(self, x):
        self.calls += 1
        self.last_input_mean = x.detach().mean()  # reassigns the buffer (a new tensor object)
        return self.inner(x)


def test_guard_restores_buffers_a_model_changes_in_eval_mode() -> None:
    model = SelfCounting(make_classifier()).eval()
    counter, cached = model.calls, model.last_input_mean
    before = [b.clone() for b in model.buffers()]
    generator = ts.IdentityGenerator((3, 16, 16))
    attack = ts.AdversarialLatentAttack(generator, model=model, eps=0.05, step_size=0.02, steps=2)
    attack(torch.rand(3, 3, 16, 16), torch.tensor([0, 1, 2]))
    assert model.calls is counter and model.last_input_mean is cached
    assert all(torch.equal(a, b) for a, b in zip(model.buffers(), before, strict=True))
    model(torch.rand(1, 3, 16, 16))  # outside the guard the model keeps counting
    assert int(model.calls) == 1


def test_guard_refuses_a_plain_function() -> None:
    classifier = make_classifier()
    expected = r"model: expected the classifier as a torch.nn.Module, got function"
    with pytest.raises(TypeError, match=expected), classifier_guard(lambda x: classifier(x)):
        pass
    assert check_model(classifier) is classifier
    with pytest.raises(TypeError, match="classifier: expected the classifier as a torch.nn.Module, got str"):
        check_model("resnet18", "classifier")


def test_attacks_inside_inference_mode_fail_clearly(batch, identity_generator) -> None:
    model, x, y = batch
    generator = identity_generator
    attack = ts.AdversarialLatentAttack(generator, model=model, eps=0.05, step_size=0.02, steps=1)
    with torch.inference_mode():
        with pytest.raises(RuntimeError, match=r"inference_mode\(\) forbids.*torch.no_grad\(\) is fine"):
            attack(x, y)
        with pytest.raises(RuntimeError, match=r"latent_pgd takes gradients .* inference_mode"):
            latent_pgd(generator.decode, model, x, y, eps=0.05, step_size=0.02, steps=1)
    assert all(p.requires_grad for p in model.parameters())
    with torch.no_grad():  # no_grad is fine: the attack takes its gradients all the same
        out, _ = attack(x, y)
    assert not torch.equal(out, x) and (out - x).abs().max() <= 0.05 + 1e-6
