"""What a transform's ``_move`` receives: the decode/classifier callables and the per-example eps plumbing."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from torch_semaug.attacks.adaptive import AdaptiveEps

ImageMap = Callable[[Tensor], Tensor]


@dataclass
class MoveContext:
    """What a transform's ``_move`` gets besides the latents and labels of the selected examples.

    Attributes:
        decode: latent -> images in the classifier's space and the batch's size and dtype
            (differentiable), i.e. exactly what the classifier will be trained on.
        classifier: the guarded, unwrapped classifier, or ``None`` in random modes.
        indices: dataset indices of the selected examples, when the caller passed ``indices=``.
        rng: the transform's ``torch.Generator`` (or ``None`` for the global stream).
        adaptive_eps: the transform's per-example eps state, or ``None``.
        batch: number of selected examples; device: their device.
        eps_used: ``(b,)`` eps each example is attacked with, recorded by :meth:`eps`.
        fooled: ``(b,)`` whether the returned latents fool the classifier, recorded by :meth:`report`.

    An adversarial ``_move`` with an eps calls ``eps = ctx.eps(self.eps)``,
    ``step = ctx.step_size(self.step_size, self.eps)``, runs the attack with
    ``evaluate=True if ctx.needs_fooled else <default>`` and ends with ``ctx.report(result.fooled)``;
    that is all adaptive eps and adaptive label smoothing need from it.
    """

    decode: ImageMap
    classifier: nn.Module | None
    indices: Tensor | None
    rng: torch.Generator | None
    adaptive_eps: AdaptiveEps | None = None
    batch: int = 0
    device: torch.device | None = None
    eps_used: Tensor | None = None
    fooled: Tensor | None = None

    @property
    def needs_fooled(self) -> bool:
        """Whether the attack must evaluate its final iterate (adaptive eps grows on the outcome)."""
        return self.adaptive_eps is not None

    def eps(self, eps: float) -> float | Tensor:
        """The radius to attack with: ``eps`` itself, or each example's adaptive eps ``(b,)``."""
        if self.adaptive_eps is None:
            self.eps_used = torch.full((self.batch,), float(eps), device=self.device)
            return eps
        self.eps_used = self.adaptive_eps.eps_for(self.indices).to(self.device)
        return self.eps_used

    def step_size(self, step_size: float, eps: float) -> float | Tensor:
        """The step to attack with: with adaptive eps, ``step_size * eps_i / eps`` (same step-to-radius ratio)."""
        if self.adaptive_eps is None:
            return step_size
        if self.eps_used is None:
            raise RuntimeError("ctx.step_size() needs the per-example eps: call ctx.eps() first")
        return step_size * self.eps_used / eps

    def report(self, fooled: Tensor) -> None:
        """Record whether the returned latents fool the classifier (``(b,)`` bool, from the attack)."""
        self.fooled = fooled.detach()


class WidthRecorder(nn.Module):
    """Passes logits through and remembers their width: the number of classes for label smoothing."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.width: int | None = None

    def forward(self, images: Tensor) -> Tensor:
        logits = self.inner(images)
        self.width = int(logits.shape[-1])
        return logits
