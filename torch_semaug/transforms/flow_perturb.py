"""FlowPerturb: Randomized-LA and Adversarial-LA in the latent space of an exact flow (Yueksel et al., ICCV 2021)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from torch_semaug._checks import check_choice, check_finite, check_int_at_least, check_positive
from torch_semaug.attacks.adaptive import AdaptiveEps
from torch_semaug.attacks.pgd import NORMS, TARGETS, latent_pgd, project
from torch_semaug.generators.base import LatentGenerator
from torch_semaug.transforms.base import ImageMap, MoveContext, SemanticTransform
from torch_semaug.transforms.registry import register_transform


@register_transform("flow_perturb")
class FlowPerturb(SemanticTransform):
    """Perturb each image's flow latent at random (R-LA) or against the classifier (A-LA), then decode.

    The latent is the flow's exact encoding of the image (a :class:`~torch_semaug.generators.Glow`, or a
    normflows / FrEIA flow through :func:`~torch_semaug.generators.from_normflows` /
    :func:`~torch_semaug.generators.from_freia`), so ``eps -> 0`` gives the image back.

    - ``mode="random"`` (R-LA): ``z + eps * N(0, I)``; with ``norm="l2"`` the perturbation is rescaled into
      the l2 ball of radius ``eps``, with ``norm="linf"`` clipped to ``[-eps, eps]``, with ``None`` it is
      left as drawn.
    - ``mode="adversarial"`` (A-LA): ``steps`` projected gradient-ascent steps of size ``step_size`` on the
      classifier's cross-entropy of the true labels, over the ``norm`` ball of radius ``eps`` centred on
      the image's own latent (l2: normalised gradient; l-inf: sign).

    Paper settings: A-LA on CIFAR-10 ``norm="l2", eps=1.0, step_size=0.5, steps=3``; R-LA
    ``norm="linf", eps=0.25``. Decoded images are clamped to the flow's range and mapped back to the
    classifier's space (``mean``/``std``).

    Args:
        flow: the frozen flow (any :class:`~torch_semaug.generators.LatentGenerator` with ``encode``).
        mode: ``"random"`` (R-LA) or ``"adversarial"`` (A-LA).
        eps: noise scale (random) or radius of the ball (adversarial), in latent units.
        norm: ``"linf"``, ``"l2"``, or ``None`` (random mode only: no truncation).
        step_size: ascent step; default ``eps / 2`` (the paper's 0.5 for eps 1.0).
        steps: gradient steps per restart (adversarial).
        restarts: restarts, the worst case per example is kept (adversarial).
        random_start: start each restart at a uniform point of the ball (adversarial).
        early_stop: stop an example once it is misclassified (adversarial).
        targets: attack the true ``"labels"`` or the classifier's ``"predictions"`` (adversarial).
        model: the classifier under attack (or :meth:`bind` it later).
        p: probability that an example is perturbed.
        adaptive_eps: per-example eps (NaTra), adversarial mode; replaces ``eps`` and scales ``step_size``
            by ``eps_i / eps``.
        label_smoothing: adaptive label smoothing factor ``c`` (soft labels with mass ``c * eps_i``).
        on_nonfinite: a flow's inverse is unbounded, so a latent pushed far enough decodes to inf/NaN (rare:
            CIFAR-10 images with black crop borders under R-LA). ``"keep"``: that example keeps its input
            image, a ``RuntimeWarning`` is issued and ``nonfinite_count`` counts it; ``"raise"``: error.
        mean, std, to_generator, from_generator, keep_model_mode, rng, num_classes: see
            :class:`~torch_semaug.transforms.base.SemanticTransform`.

    Example:
        >>> rla = FlowPerturb(glow, mode="random", eps=0.25, norm="linf")
        >>> ala = FlowPerturb(glow, mode="adversarial", eps=1.0, norm="l2", step_size=0.5, steps=3,
        ...                   model=net, mean=CIFAR_MEAN, std=CIFAR_STD)
        >>> x, y = ala(x, y)
    """

    modes = ("random", "adversarial")
    random_modes = ("random",)

    def __init__(
        self,
        flow: LatentGenerator,                           # frozen flow whose latent is perturbed
        *,
        mode: str = "random",                            # "random" (R-LA) or "adversarial" (A-LA)
        eps: float,                                      # noise scale / ball radius in latent units
        norm: str | None = "linf",                       # "linf", "l2", or None (random mode: untruncated)
        step_size: float | None = None,                  # ascent step; None: eps / 2
        steps: int = 3,                                  # gradient steps per restart
        restarts: int = 1,                               # restarts; the worst case is kept
        random_start: bool = False,                      # start at a random point of the ball
        early_stop: bool = False,                        # drop an example once it is misclassified
        targets: str = "labels",                         # "labels" or the model's "predictions"
        model: nn.Module | None = None,                  # classifier under attack (or .bind() later)
        p: float = 1.0,                                  # probability an example is perturbed
        mean: float | Sequence[float] | None = None,     # classifier normalisation (None: [0, 1] images)
        std: float | Sequence[float] | None = None,
        to_generator: ImageMap | None = None,            # custom classifier -> flow range map
        from_generator: ImageMap | None = None,          # and its inverse
        keep_model_mode: bool = False,                   # keep train mode during inner steps
        rng: torch.Generator | None = None,              # drives selection, noise and random starts
        adaptive_eps: AdaptiveEps | None = None,         # per-example eps grown until fooled (adversarial)
        label_smoothing: float = 0.0,                    # soft labels with mass label_smoothing * eps_i
        num_classes: int | None = None,                  # soft-label width (default: logits width)
        on_nonfinite: str = "keep",                      # "keep" the input where decode overflows, or "raise"
    ) -> None:
        super().__init__(
            flow, model=model, mode=mode, p=p, mean=mean, std=std, to_generator=to_generator,
            from_generator=from_generator, keep_model_mode=keep_model_mode, rng=rng, adaptive_eps=adaptive_eps,
            label_smoothing=label_smoothing, num_classes=num_classes,
        )
        check_positive(eps, "eps")
        if norm is None and mode == "adversarial":
            raise ValueError(f"norm: mode='adversarial' needs a ball, expected one of {list(NORMS)}, got None")
        if norm is not None:
            check_choice(norm, NORMS, "norm")
        if step_size is not None:
            check_positive(step_size, "step_size")
        check_int_at_least(steps, 1, "steps")
        check_int_at_least(restarts, 1, "restarts")
        check_choice(targets, TARGETS, "targets")
        check_choice(on_nonfinite, ("keep", "raise"), "on_nonfinite")
        self.on_nonfinite = on_nonfinite
        self.eps = float(eps)
        self.norm = norm
        self.step_size = float(step_size) if step_size is not None else self.eps / 2
        self.steps = steps
        self.restarts = restarts
        self.random_start = bool(random_start)
        self.early_stop = bool(early_stop)
        self.targets = targets

    @property
    def flow(self) -> LatentGenerator:
        """The wrapped flow (the base class's ``generator``)."""
        return self.generator

    def _move(self, latents: Tensor, labels: Tensor | None, ctx: MoveContext) -> Tensor:
        if self.mode == "random":
            return self._random(latents, ctx.rng)
        generator_name = type(self.generator).__name__

        def decode(z: Tensor) -> Tensor:
            # NaN from the flow (clamping cannot fix it) must not reach the classifier; with "keep" the
            # example's own loss and gradient go NaN (the others are unaffected) and the final decode
            # hands it back unchanged
            images = ctx.decode(z)
            if self.on_nonfinite == "raise":
                check_finite(images, "generator output", hint=f" from {generator_name}.decode() during the attack")
                return images
            return torch.where(torch.isfinite(images), images, torch.zeros_like(images))

        result = latent_pgd(
            decode, ctx.classifier, latents, labels,
            eps=ctx.eps(self.eps), step_size=ctx.step_size(self.step_size, self.eps), steps=self.steps,
            norm=self.norm, restarts=self.restarts, random_start=self.random_start, early_stop=self.early_stop,
            bounds=self.generator.latent_bounds, targets=self.targets,
            evaluate=True if ctx.needs_fooled else None, rng=ctx.rng,
        )
        ctx.report(result.fooled)
        return result.latents

    def _random(self, latents: Tensor, rng: torch.Generator | None) -> Tensor:
        device = rng.device if rng is not None else latents.device
        noise = torch.randn(latents.shape, generator=rng, device=device, dtype=latents.dtype).to(latents.device)
        moved = latents + self.eps * noise
        bounds = self.generator.latent_bounds
        if self.norm is None:
            return moved.clamp(*bounds) if bounds is not None else moved
        eps = torch.full((latents.shape[0], *([1] * (latents.ndim - 1))), self.eps, dtype=latents.dtype,
                         device=latents.device)
        return project(moved, latents, eps, self.norm, bounds)

    def _repr_fields(self) -> dict[str, Any]:
        fields: dict[str, Any] = dict(eps=self.eps, norm=self.norm)
        if self.mode == "adversarial":
            fields |= dict(step_size=self.step_size, steps=self.steps)
            if self.restarts > 1:
                fields["restarts"] = self.restarts
            if self.random_start:
                fields["random_start"] = True
            if self.early_stop:
                fields["early_stop"] = True
            if self.targets != "labels":
                fields["targets"] = self.targets
        return fields
