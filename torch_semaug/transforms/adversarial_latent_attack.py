"""AdversarialLatentAttack: projected gradient ascent in any generator's latent space."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from torch_semaug.attacks.adaptive import AdaptiveEps
from torch_semaug.attacks.memory import AttackMemory
from torch_semaug.generators.base import LatentGenerator
from torch_semaug.transforms.base import SemanticTransform
from torch_semaug.transforms.image_space import ImageMap
from torch_semaug.transforms.registry import register_transform


@register_transform("adversarial_latent_attack")
class AdversarialLatentAttack(SemanticTransform):
    """PGD on the latent code of each image against the live classifier.

    With :class:`~torch_semaug.generators.IdentityGenerator` this is textbook pixel-space PGD (Madry
    et al.; the defaults: l-inf eps 8/255, step 2/255, 7 steps, random start); with a flow it is the
    Adversarial-LA of Yüksel et al.; ``layers`` (W+) or ``mask`` (any latent) restricts it to part of the
    latent (e.g. the fine W+ layers of a StyleGAN2).

    Args:
        generator: the frozen generator whose latent space is attacked.
        model: the classifier (or bind it later with :meth:`bind`).
        mode: ``"adversarial"`` (the only mode).
        eps: radius of the ball around each image's latent.
        step_size: ascent step size.
        steps: gradient steps per restart.
        restarts: independent restarts; the worst case per example is kept.
        random_start: start from a uniform point of the ball instead of the latent itself.
        early_stop: stop an example once it is misclassified (fewer classifier calls).
        norm: ``"linf"`` (sign step, clip) or ``"l2"`` (normalised step, rescale).
        targets: attack the true ``"labels"`` or the classifier's ``"predictions"``.
        relative_eps: ``eps`` and ``step_size`` in units of the generator's ``latent_spread``.
        layers: ``(start, stop)`` W+ layers that move (StyleGAN2-like generators); ``None``: all.
        mask: a bool mask over the flattened latent: the entries that move; ``None``: all.
        p, mean, std, to_generator, from_generator, keep_model_mode, rng, adaptive_eps, label_smoothing,
            num_classes, warm_start: see :class:`~torch_semaug.transforms.base.SemanticTransform`.
    """

    mode_defaults = {
        "adversarial": dict(eps=8 / 255, step_size=2 / 255, steps=7, restarts=1, random_start=True, early_stop=False,
                            norm="linf", targets="labels", relative_eps=False, layers=None, mask=None),
    }
    random_modes = ()
    mode_papers = {"adversarial": "PGD, Madry et al. 2018 (CIFAR-10)"}

    def __init__(
        self,
        generator: LatentGenerator,                      # frozen generator whose latent is attacked
        *,
        model: nn.Module | None = None,                  # classifier under attack (or .bind() later)
        mode: str = "adversarial",                       # the only mode
        eps: float | None = None,                        # None everywhere below: the mode's default
        step_size: float | None = None,
        steps: int | None = None,
        restarts: int | None = None,
        random_start: bool | None = None,
        early_stop: bool | None = None,
        norm: str | None = None,
        targets: str | None = None,
        relative_eps: bool | None = None,
        layers: tuple[int, int] | None = None,           # W+ layers that move; None: all
        mask: Tensor | None = None,                      # or a bool mask over the flattened latent
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
        warm_start: AttackMemory | None = None,          # each example starts from its last move
    ) -> None:
        super().__init__(
            generator, model=model, mode=mode, eps=eps, step_size=step_size, steps=steps, restarts=restarts,
            random_start=random_start, early_stop=early_stop, norm=norm, targets=targets, relative_eps=relative_eps,
            layers=layers, mask=mask, p=p, mean=mean, std=std, to_generator=to_generator,
            from_generator=from_generator, keep_model_mode=keep_model_mode, rng=rng, adaptive_eps=adaptive_eps,
            label_smoothing=label_smoothing, num_classes=num_classes, warm_start=warm_start,
        )
