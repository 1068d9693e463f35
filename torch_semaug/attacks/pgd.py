"""Batched projected gradient ascent on (part of) a latent code.

The one optimiser behind every adversarial mode: pixel PGD (with the identity generator), flow latent
attacks (ball around the image's own latent), AdvMix (ball around restarts drawn from the prior) and
adversarial direction coefficients. It knows a generator and a classifier only through two callables.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from torch_semaug._checks import (
    check_bool,
    check_choice,
    check_finite,
    check_float,
    check_int_at_least,
    check_labels,
    check_positive,
    check_range,
    check_rng,
    check_tensor,
    describe,
)
from torch_semaug.attacks.guard import check_grad_enabled_mode

NORMS = ("linf", "l2")
TARGETS = ("labels", "predictions")


@dataclass
class AttackResult:
    """What :func:`latent_pgd` returns.

    Attributes:
        latents: ``(B, *latent_shape)`` worst case per example over restarts.
        fooled: ``(B,)`` bool, misclassified at the returned latent as far as the attack observed it
            (examples that were never evaluated at their returned latent count as not fooled).
        classifier_calls: classifier forward passes made.
        examples_processed: examples summed over those forward passes (what early stop saves).
        centers: ``(B, *latent_shape)`` the centre of the ball the returned latent lies in (its restart's
            ``restart_center``; the input latents without restart centres).
    """

    latents: Tensor
    fooled: Tensor
    classifier_calls: int
    examples_processed: int
    centers: Tensor


def latent_mask(mask: Tensor | slice | None, latent_shape: torch.Size, device: torch.device) -> Tensor | None:
    """A boolean mask of ``latent_shape`` from a slice over the first latent dimension or a bool mask."""
    if mask is None:
        return None
    if isinstance(mask, slice):
        out = torch.zeros(latent_shape, dtype=torch.bool, device=device)
        out[mask] = True
    elif isinstance(mask, Tensor) and mask.dtype == torch.bool:
        try:
            out = torch.broadcast_to(mask.to(device), latent_shape)
        except RuntimeError:
            raise ValueError(
                f"mask: expected a bool mask broadcastable to the latent shape {tuple(latent_shape)}, "
                f"got shape {tuple(mask.shape)}"
            ) from None
    else:
        raise TypeError(f"mask: expected a slice, a bool tensor or None, got {describe(mask)}")
    if not bool(out.any()):
        raise ValueError(f"mask: selects no latent entry of shape {tuple(latent_shape)}")
    return out


def _per_example(value: float | Tensor, name: str, batch: int, like: Tensor) -> Tensor:
    """``value`` as a ``(B, 1, ..., 1)`` tensor that broadcasts against ``like``."""
    check_positive(value, name)
    out = torch.as_tensor(value, dtype=like.dtype, device=like.device)
    if out.ndim == 0:
        out = out.expand(batch)
    if out.shape != (batch,):
        raise ValueError(f"{name}: expected a number or a tensor of shape ({batch},), got {describe(value)}")
    if not bool(torch.isfinite(out).all()):  # an infinite radius or step turns every iterate into inf/NaN
        got = describe(value) if isinstance(value, Tensor) else value
        raise ValueError(f"{name}: expected finite values > 0, got {got}")
    return out.reshape(batch, *([1] * (like.ndim - 1)))


def _check_call(decode: object, classifier: object, latents: object, restart_center: object) -> Tensor:
    """Check what :func:`latent_pgd` calls and starts from; return the latents."""
    check_grad_enabled_mode("latent_pgd")
    for name, fn in (("decode", decode), ("classifier", classifier)):
        if not callable(fn):
            raise TypeError(f"{name}: expected a callable, got {describe(fn)}")
    if restart_center is not None and not callable(restart_center):
        raise TypeError(f"restart_center: expected a callable (restart, latents) -> centres or None, got "
                        f"{describe(restart_center)}")
    latents = check_tensor(latents, "latents")
    if latents.ndim < 2:
        raise ValueError(f"latents: expected a batch (B, *latent_shape), got {describe(latents)}")
    if latents.is_inference():
        raise ValueError("latents: got an inference tensor (made under torch.inference_mode()); pass "
                         "latents.clone() made outside inference_mode")
    check_float(latents, "latents")
    check_finite(latents, "latents")
    return latents


def _check_warm_start(warm_start: object, latents: Tensor) -> tuple[Tensor | None, Tensor | None]:
    if warm_start is None:
        return None, None
    if not (isinstance(warm_start, tuple) and len(warm_start) == 2):
        raise TypeError(f"warm_start: expected a pair (points, known) or None, got {describe(warm_start)}")
    points, known = warm_start
    if not isinstance(points, Tensor) or points.shape != latents.shape:
        raise ValueError(f"warm_start: expected points of the latents' shape {tuple(latents.shape)}, got "
                         f"{describe(points)}")
    if not isinstance(known, Tensor) or known.dtype != torch.bool or known.shape != latents.shape[:1]:
        raise ValueError(f"warm_start: expected known as a bool tensor of shape ({latents.shape[0]},), got "
                         f"{describe(known)}")
    return points.detach().to(latents.device, latents.dtype), known.to(latents.device)


def _restart_center(restart_center: Callable[[int, Tensor], Tensor], restart: int, latents: Tensor) -> Tensor:
    center = restart_center(restart, latents)
    if not isinstance(center, Tensor) or center.shape != latents.shape:
        raise ValueError(
            f"restart_center: expected a tensor of the latents' shape {tuple(latents.shape)} (one centre per "
            f"example), got {describe(center)}"
        )
    return center.detach().to(latents.dtype)


def _flat_norm(x: Tensor) -> Tensor:
    return x.flatten(1).norm(dim=1).reshape(x.shape[0], *([1] * (x.ndim - 1)))


def _uniform(shape: torch.Size, rng: torch.Generator | None, like: Tensor) -> Tensor:
    device = rng.device if rng is not None else like.device
    return torch.rand(shape, generator=rng, device=device, dtype=like.dtype).to(like.device)


def _normal(shape: torch.Size, rng: torch.Generator | None, like: Tensor) -> Tensor:
    device = rng.device if rng is not None else like.device
    return torch.randn(shape, generator=rng, device=device, dtype=like.dtype).to(like.device)


def random_delta(
    like: Tensor, eps: Tensor, norm: str, mask: Tensor | None, rng: torch.Generator | None
) -> Tensor:
    """A perturbation drawn uniformly from the ``norm`` ball of radius ``eps`` (over masked entries)."""
    if norm == "linf":
        delta = (2 * _uniform(like.shape, rng, like) - 1) * eps
    else:
        direction = _normal(like.shape, rng, like)
        if mask is not None:
            direction = direction * mask
        dims = int(mask.sum()) if mask is not None else like[0].numel()
        radius = _uniform(torch.Size([like.shape[0]]), rng, like) ** (1.0 / dims)
        radius = radius.reshape(eps.shape)
        delta = direction / _flat_norm(direction).clamp_min(1e-12) * radius * eps
    return delta * mask if mask is not None else delta


def project(
    latents: Tensor, center: Tensor, eps: Tensor, norm: str, bounds: tuple[float, float] | None
) -> Tensor:
    """Project ``latents`` onto the ``norm`` ball of radius ``eps`` around ``center``, then into ``bounds``."""
    delta = latents - center
    if norm == "linf":
        delta = torch.maximum(torch.minimum(delta, eps), -eps)
    else:
        delta = delta * (eps / _flat_norm(delta).clamp_min(1e-12)).clamp(max=1.0)
    out = center + delta
    return out.clamp(*bounds) if bounds is not None else out


def ascent_step(latents: Tensor, grad: Tensor, step_size: Tensor, norm: str, mask: Tensor | None) -> Tensor:
    """One signed (l-inf) or normalised (l2) gradient-ascent step on the masked entries."""
    if mask is not None:
        grad = grad * mask
    if norm == "linf":
        return latents + step_size * grad.sign()
    return latents + step_size * grad / _flat_norm(grad).clamp_min(1e-12)


def _check_images(images: object, batch: int, needs_grad: bool) -> None:
    """What ``decode`` returned: a batch of tensors that (for a gradient step) depends on the latent."""
    if not isinstance(images, Tensor) or images.ndim < 1 or images.shape[0] != batch:
        raise ValueError(f"decode: expected a batch of {batch} images as a tensor, got {describe(images)}")
    if needs_grad and not images.requires_grad:
        raise ValueError(
            "decode: returned images that do not depend on the latent (no gradient); does it detach its "
            "output or run under torch.no_grad()?"
        )


def _check_logits(logits: Tensor, batch: int, labels: Tensor, hard_labels: Tensor, needs_grad: bool) -> None:
    if not isinstance(logits, Tensor) or logits.ndim != 2 or logits.shape[0] != batch:
        raise ValueError(
            f"model: expected logits of shape ({batch}, num_classes), got {describe(logits)}"
        )
    if needs_grad and not logits.requires_grad:
        raise ValueError(
            "model: returned logits that do not depend on its input (no gradient); does its forward detach "
            "the output, call .item()/.numpy() or run under torch.no_grad()?"
        )
    check_finite(logits, "model", " in its logits; the attack cannot rank examples by a NaN loss")
    if labels.ndim == 2 and labels.shape[1] != logits.shape[1]:
        raise ValueError(
            f"labels: expected soft labels of width num_classes = {logits.shape[1]} (the model's output width), "
            f"got width {labels.shape[1]}"
        )
    if hard_labels.numel() and int(hard_labels.max()) >= logits.shape[1]:
        raise ValueError(
            f"labels: expected class indices < num_classes = {logits.shape[1]} (the model's output width), "
            f"got maximum {int(hard_labels.max())}"
        )


def latent_pgd(
    decode: Callable[[Tensor], Tensor],
    classifier: Callable[[Tensor], Tensor],
    latents: Tensor,
    labels: Tensor,
    *,
    eps: float | Tensor,
    step_size: float | Tensor,
    steps: int,
    norm: str = "linf",
    restarts: int = 1,
    random_start: bool = False,
    mask: Tensor | slice | None = None,
    restart_center: Callable[[int, Tensor], Tensor] | None = None,
    early_stop: bool = False,
    bounds: tuple[float, float] | None = None,
    targets: str = "labels",
    evaluate: bool | None = None,
    rng: torch.Generator | None = None,
    warm_start: tuple[Tensor, Tensor] | None = None,
) -> AttackResult:
    """Maximise the classifier's cross-entropy over a ball in latent space, for a whole batch at once.

    Each step costs one ``decode`` + ``classifier`` forward and backward on the examples still active.
    Gradients are taken with ``torch.autograd.grad`` w.r.t. the latent only; run the classifier inside
    :func:`~torch_semaug.attacks.classifier_guard` so its parameters stay untouched.

    Args:
        decode: latent ``(b, *latent_shape)`` -> images the classifier takes (differentiable).
        classifier: images -> logits ``(b, num_classes)``.
        latents: ``(B, *latent_shape)`` the examples' own latents; the ball's centre unless
            ``restart_center`` gives another.
        labels: ``(B,)`` class indices or ``(B, num_classes)`` soft labels.
        eps: radius of the ball, a number or a ``(B,)`` tensor (per-example eps).
        step_size: ascent step, a number or a ``(B,)`` tensor.
        steps: gradient steps per restart.
        norm: ``"linf"`` (sign step, clip) or ``"l2"`` (normalised step, rescale into the ball).
        restarts: independent restarts; the worst case per example is kept (misclassified first, then
            highest loss).
        random_start: start each restart at a uniform point of the ball instead of its centre.
        mask: which latent entries move: a slice over the first latent dimension (e.g. W+ layers) or a
            bool tensor broadcastable to ``latent_shape``; ``None`` moves all of them.
        restart_center: ``(restart index, latents) -> centres`` for restarts centred away from the
            examples' latents (AdvMix draws them from the prior); only masked entries are taken from it.
        early_stop: stop an example (in this and later restarts) as soon as it is misclassified; it
            leaves the active batch, so later steps cost less.
        bounds: ``(low, high)`` every iterate is clipped to (the generator's ``latent_bounds``).
        targets: attack the true ``"labels"`` or the classifier's own ``"predictions"`` on the
            unperturbed latents.
        evaluate: evaluate the final iterate of each restart (one extra forward) to know whether it
            fools the classifier; default: only when ``restarts > 1`` needs it to pick the worst case.
        rng: drives the random start.
        warm_start: ``(points, known)``: the first restart of each example with ``known[i]`` starts at
            ``points[i]`` (latent-shaped; only masked entries are taken) projected into its ball, instead of
            its centre or a random point (the random draws are made anyway, so the stream does not shift).
    """
    latents = _check_call(decode, classifier, latents, restart_center)
    check_int_at_least(steps, 1, "steps")
    check_int_at_least(restarts, 1, "restarts")
    check_choice(norm, NORMS, "norm")
    check_choice(targets, TARGETS, "targets")
    for name, flag in (("random_start", random_start), ("early_stop", early_stop)):
        check_bool(flag, name)
    if evaluate is not None:
        check_bool(evaluate, "evaluate")
    check_rng(rng)
    if bounds is not None:
        bounds = check_range(bounds, "bounds", allow_infinite=True)
    batch = latents.shape[0]
    labels = check_labels(labels, batch)
    eps_t = _per_example(eps, "eps", batch, latents)
    step_t = _per_example(step_size, "step_size", batch, latents)
    mask_t = latent_mask(mask, latents.shape[1:], latents.device)
    warm_points, warm_known = _check_warm_start(warm_start, latents)
    evaluate = restarts > 1 if evaluate is None else evaluate
    latents = latents.detach()
    calls = processed = 0

    def forward(z: Tensor, y: Tensor, y_hard: Tensor) -> Tensor:
        nonlocal calls, processed
        calls += 1
        processed += z.shape[0]
        if calls > 1:
            return classifier(decode(z))
        images = decode(z)  # the first call checks what decode and the classifier return, once
        _check_images(images, z.shape[0], z.requires_grad)
        logits = classifier(images)
        _check_logits(logits, z.shape[0], y, y_hard, z.requires_grad)
        return logits

    hard = labels.argmax(1) if labels.ndim == 2 else labels
    if targets == "predictions":
        with torch.no_grad():
            logits = forward(latents, labels, hard)
        labels = hard = logits.argmax(1)

    best, best_center = latents.clone(), latents.clone()
    best_fooled = torch.zeros(batch, dtype=torch.bool, device=latents.device)
    best_loss = torch.full((batch,), -torch.inf, device=latents.device)
    for restart in range(restarts):
        active = (~best_fooled).nonzero().squeeze(1) if early_stop else torch.arange(batch, device=best.device)
        if active.numel() == 0:
            break
        center = latents if restart_center is None else _restart_center(restart_center, restart, latents)
        if mask_t is not None and restart_center is not None:
            center = torch.where(mask_t, center, latents)
        center, eps_a, step_a, y, y_hard = (
            center[active], eps_t[active], step_t[active], labels[active], hard[active]
        )
        z = center
        if random_start:
            z = center + random_delta(center, eps_a, norm, mask_t, rng)
        if warm_points is not None and restart == 0:
            points = warm_points[active] if mask_t is None else torch.where(mask_t, warm_points[active], center)
            known = warm_known[active].reshape(-1, *([1] * (z.ndim - 1)))
            z = torch.where(known, project(points, center, eps_a, norm, bounds), z)
        if bounds is not None:
            z = z.clamp(*bounds)
        for step in range(steps + 1):
            final = step == steps
            if final and not evaluate:
                best[active], best_center[active] = z, center
                break
            with torch.enable_grad():
                z_var = z.detach().requires_grad_(not final)
                logits = forward(z_var, y, y_hard)
                loss = F.cross_entropy(logits.float(), y, reduction="none")
                grad = None if final else torch.autograd.grad(loss.sum(), z_var)[0]
            fooled = logits.detach().argmax(1) != y_hard
            if final:
                loss = loss.detach()
                better = (fooled & ~best_fooled[active]) | (
                    (fooled == best_fooled[active]) & (loss > best_loss[active])
                )
                idx = active[better]
                best[idx], best_fooled[idx], best_loss[idx] = z[better], fooled[better], loss[better]
                best_center[idx] = center[better]
                break
            if early_stop and bool(fooled.any()):
                idx = active[fooled]
                best[idx], best_fooled[idx], best_center[idx] = z[fooled], True, center[fooled]
                keep = ~fooled
                active, z, grad, center = active[keep], z[keep], grad[keep], center[keep]
                eps_a, step_a, y, y_hard = eps_a[keep], step_a[keep], y[keep], y_hard[keep]
                if active.numel() == 0:
                    break
            z = project(ascent_step(z.detach(), grad, step_a, norm, mask_t), center, eps_a, norm, bounds)
    return AttackResult(best, best_fooled, calls, processed, best_center)
