"""FlowPerturb: Randomized-LA and Adversarial-LA in the latent space of an exact flow (Yueksel et al., ICCV 2021)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from torch_semaug._checks import check_choice, check_finite
from torch_semaug.attacks.adaptive import AdaptiveEps
from torch_semaug.attacks.memory import AttackMemory
from torch_semaug.attacks.pgd import project
from torch_semaug.generators.base import LatentGenerator
from torch_semaug.transforms.attack import AttackProblem
from torch_semaug.transforms.base import SemanticTransform
from torch_semaug.transforms.context import MoveContext
from torch_semaug.transforms.image_space import ImageMap
from torch_semaug.transforms.modes import Derived
from torch_semaug.transforms.registry import register_transform


@register_transform("flow_perturb")
class FlowPerturb(SemanticTransform):
    """Perturb each image's flow latent at random (R-LA) or against the classifier (A-LA), then decode.

    The latent is the flow's exact encoding of the image (a :class:`~torch_semaug.generators.Glow`, or a
    normflows / FrEIA flow through :func:`~torch_semaug.generators.from_normflows` /
    :func:`~torch_semaug.generators.from_freia`), so ``eps -> 0`` gives the image back.

    - ``mode="random"`` (R-LA): ``z + eps * N(0, I)``; with ``norm="l2"`` the perturbation is rescaled into
      the l2 ball of radius ``eps``, with ``norm="linf"`` clipped to ``[-eps, eps]``, with ``"none"`` it is
      left as drawn. Paper: ``norm="linf", eps=0.25``.
    - ``mode="adversarial"`` (A-LA): ``steps`` projected gradient-ascent steps of size ``step_size`` on the
      classifier's cross-entropy, over the ``norm`` ball of radius ``eps`` centred on the image's own
      latent (l2: normalised gradient; l-inf: sign), from a random start. Paper (CIFAR-10): ``norm="l2",
      eps=1.0, step_size=0.5, steps=3``.

    Decoded images are clamped to the flow's range and mapped back to the classifier's space
    (``mean``/``std``). Defaults per mode: ``FlowPerturb.mode_defaults``.

    Args:
        generator: the frozen flow (any :class:`~torch_semaug.generators.LatentGenerator` with ``encode``).
        model: the classifier under attack in adversarial mode (or :meth:`bind` it later).
        mode: ``"random"`` (R-LA) or ``"adversarial"`` (A-LA).
        eps: noise scale (random) or radius of the ball (adversarial), in latent units.
        step_size: ascent step; default ``eps / 2`` (the paper's 0.5 for eps 1.0).
        steps: gradient steps per restart.
        restarts: restarts, the worst case per example is kept.
        random_start: start each restart at a uniform point of the ball.
        early_stop: stop an example once it is misclassified.
        norm: ``"linf"``, ``"l2"``, or ``"none"`` (random mode only: no truncation).
        targets: attack the true ``"labels"`` or the classifier's ``"predictions"``.
        mask: a bool mask over the flattened latent: the entries that move (``None``: all).
        on_nonfinite: a flow's inverse is unbounded, so a latent pushed far enough decodes to inf/NaN (rare:
            CIFAR-10 images with black crop borders under R-LA). ``"keep"``: that example keeps its input
            image, a ``RuntimeWarning`` is issued and ``nonfinite_count`` counts it; ``"raise"``: error.
        p, mean, std, to_generator, from_generator, keep_model_mode, rng, adaptive_eps, label_smoothing,
            num_classes, warm_start: see :class:`~torch_semaug.transforms.base.SemanticTransform`.

    Example:
        >>> rla = FlowPerturb(glow, mode="random")                          # eps 0.25, l-inf
        >>> ala = FlowPerturb(glow, model=net, mode="adversarial", mean=CIFAR_MEAN, std=CIFAR_STD)
        >>> x, y = ala(x, y)                                                # l2, eps 1.0, 3 steps of 0.5
    """

    mode_defaults = {
        "random": dict(eps=0.25, norm="linf", mask=None, on_nonfinite="keep"),
        "adversarial": dict(eps=1.0, step_size=Derived("eps / 2", lambda args, g: args["eps"] / 2), steps=3,
                            restarts=1, random_start=True, early_stop=False, norm="l2", targets="labels",
                            mask=None, on_nonfinite="keep"),
    }
    random_modes = ("random",)
    mode_papers = {"random": "R-LA, Yüksel et al. 2021", "adversarial": "A-LA, Yüksel et al. 2021 (CIFAR-10)"}
    norms = ("linf", "l2", "none")
    generator_kinds = ("glow",)

    def __init__(
        self,
        generator: LatentGenerator,                      # frozen flow whose latent is perturbed
        *,
        model: nn.Module | None = None,                  # classifier under attack (adversarial mode)
        mode: str = "random",                            # "random" (R-LA) or "adversarial" (A-LA)
        eps: float | None = None,                        # None everywhere below: the mode's default
        step_size: float | None = None,
        steps: int | None = None,
        restarts: int | None = None,
        random_start: bool | None = None,
        early_stop: bool | None = None,
        norm: str | None = None,                         # "linf", "l2", or "none" (random: untruncated)
        targets: str | None = None,
        mask: Tensor | None = None,                      # bool mask over the flattened latent; None: all
        on_nonfinite: str | None = None,                 # "keep" the input where decode overflows, or "raise"
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
        warm_start: AttackMemory | None = None,          # each example starts from its last move
    ) -> None:
        super().__init__(
            generator, model=model, mode=mode, eps=eps, step_size=step_size, steps=steps, restarts=restarts,
            random_start=random_start, early_stop=early_stop, norm=norm, targets=targets, mask=mask,
            on_nonfinite=on_nonfinite, p=p, mean=mean, std=std, to_generator=to_generator,
            from_generator=from_generator, keep_model_mode=keep_model_mode, rng=rng, adaptive_eps=adaptive_eps,
            label_smoothing=label_smoothing, num_classes=num_classes, warm_start=warm_start,
        )
        check_choice(self.on_nonfinite, ("keep", "raise"), "on_nonfinite")
        if self.norm == "none" and mode == "adversarial":
            raise ValueError("norm: mode='adversarial' needs a ball, expected 'linf' or 'l2', got 'none'")

    def _problem(self, latents: Tensor, radius: Tensor, ctx: MoveContext) -> AttackProblem:
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

        return AttackProblem(latents, mask=self._mask_on(latents), decode=decode, bounds=self.generator.latent_bounds)

    def _random(self, latents: Tensor, ctx: MoveContext) -> Tensor:
        rng = ctx.rng
        device = rng.device if rng is not None else latents.device
        noise = torch.randn(latents.shape, generator=rng, device=device, dtype=latents.dtype).to(latents.device)
        mask = self._mask_on(latents)
        moved = latents + self.eps * (noise if mask is None else noise * mask)
        bounds = self.generator.latent_bounds
        if self.norm == "none":
            return moved.clamp(*bounds) if bounds is not None else moved
        eps = torch.full((latents.shape[0], *([1] * (latents.ndim - 1))), self.eps, dtype=latents.dtype,
                         device=latents.device)
        return project(moved, latents, eps, self.norm, bounds)
