"""AdversarialLatentAttack: projected gradient ascent in any generator's latent space."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from torch_semaug._checks import check_choice, check_int_at_least, check_positive
from torch_semaug.attacks.adaptive import AdaptiveEps
from torch_semaug.attacks.pgd import NORMS, TARGETS, latent_pgd
from torch_semaug.generators.base import LatentGenerator
from torch_semaug.transforms.base import ImageMap, MoveContext, SemanticTransform
from torch_semaug.transforms.registry import register_transform


@register_transform("adversarial_latent_attack")
class AdversarialLatentAttack(SemanticTransform):
    """PGD on the latent code of each image against the live classifier.

    With :class:`~torch_semaug.generators.IdentityGenerator` this is textbook pixel-space PGD (Madry
    et al.); with a flow it is the Adversarial-LA of Yüksel et al.; ``latent_slice`` restricts it to
    part of the latent (e.g. the fine W+ layers of a StyleGAN2).

    Args:
        generator: the frozen generator whose latent space is attacked.
        model: the classifier (or bind it later with :meth:`bind`).
        eps: radius of the ball around each image's latent.
        step_size: ascent step size.
        steps: gradient steps per restart.
        restarts: independent restarts; the worst case per example is kept.
        norm: ``"linf"`` (sign step, clip) or ``"l2"`` (normalised step, rescale).
        latent_slice: the latent entries that move: a slice over the first latent dimension or a bool
            mask broadcastable to the latent shape; ``None`` moves all.
        random_start: start from a uniform point of the ball instead of the latent itself.
        early_stop: stop an example once it is misclassified (fewer classifier calls).
        targets: attack the true ``"labels"`` or the classifier's ``"predictions"``.
        p: probability that an example is attacked.
        adaptive_eps: per-example eps (NaTra); replaces ``eps`` and scales ``step_size`` by ``eps_i / eps``.
        label_smoothing: adaptive label smoothing factor ``c`` (soft labels with mass ``c * eps_i``).
        num_classes: width of the soft labels (default: the classifier's output width).
        mean, std, to_generator, from_generator, keep_model_mode, rng: see
            :class:`~torch_semaug.transforms.base.SemanticTransform`.
    """

    modes = ("adversarial",)
    random_modes = ()

    def __init__(
        self,
        generator: LatentGenerator,                      # frozen generator whose latent is attacked
        model: nn.Module | None = None,                  # classifier under attack (or .bind() later)
        *,
        eps: float,                                      # radius of the ball around each latent
        step_size: float,                                # ascent step size
        steps: int,                                      # gradient steps per restart
        restarts: int = 1,                               # restarts; the worst case is kept
        norm: str = "linf",                              # "linf" (sign step) or "l2" (normalised step)
        latent_slice: slice | Tensor | None = None,      # latent entries that move; None: all
        random_start: bool = False,                      # start at a random point of the ball
        early_stop: bool = False,                        # drop an example once it is misclassified
        targets: str = "labels",                         # "labels" or the model's "predictions"
        p: float = 1.0,                                  # probability an example is attacked
        mean: float | Sequence[float] | None = None,     # classifier normalisation (None: [0, 1] images)
        std: float | Sequence[float] | None = None,
        to_generator: ImageMap | None = None,            # custom classifier -> generator range map
        from_generator: ImageMap | None = None,          # and its inverse
        keep_model_mode: bool = False,                   # keep train mode during inner steps
        rng: torch.Generator | None = None,              # drives selection and random starts
        adaptive_eps: AdaptiveEps | None = None,         # per-example eps grown until fooled (NaTra)
        label_smoothing: float = 0.0,                    # soft labels with mass label_smoothing * eps_i
        num_classes: int | None = None,                  # soft-label width (default: logits width)
    ) -> None:
        super().__init__(
            generator, model=model, mode="adversarial", p=p, mean=mean, std=std,
            to_generator=to_generator, from_generator=from_generator,
            keep_model_mode=keep_model_mode, rng=rng, adaptive_eps=adaptive_eps,
            label_smoothing=label_smoothing, num_classes=num_classes,
        )
        check_positive(eps, "eps")
        check_positive(step_size, "step_size")
        check_int_at_least(steps, 1, "steps")
        check_int_at_least(restarts, 1, "restarts")
        check_choice(norm, NORMS, "norm")
        check_choice(targets, TARGETS, "targets")
        self.eps = float(eps)
        self.step_size = float(step_size)
        self.steps = steps
        self.restarts = restarts
        self.norm = norm
        self.latent_slice = latent_slice
        self.random_start = bool(random_start)
        self.early_stop = bool(early_stop)
        self.targets = targets

    def _move(self, latents: Tensor, labels: Tensor | None, ctx: MoveContext) -> Tensor:
        result = latent_pgd(
            ctx.decode, ctx.classifier, latents, labels,
            eps=ctx.eps(self.eps), step_size=ctx.step_size(self.step_size, self.eps), steps=self.steps,
            norm=self.norm, restarts=self.restarts, random_start=self.random_start, mask=self.latent_slice,
            early_stop=self.early_stop, bounds=self.generator.latent_bounds, targets=self.targets,
            evaluate=True if ctx.needs_fooled else None, rng=ctx.rng,
        )
        ctx.report(result.fooled)
        return result.latents

    def _repr_fields(self) -> dict[str, Any]:
        fields: dict[str, Any] = dict(
            eps=self.eps, step_size=self.step_size, steps=self.steps, restarts=self.restarts, norm=self.norm
        )
        if self.latent_slice is not None:
            fields["latent_slice"] = self.latent_slice
        if self.early_stop:
            fields["early_stop"] = True
        if self.random_start:
            fields["random_start"] = True
        return fields
