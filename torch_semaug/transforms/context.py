"""What a transform's move receives: decode/classifier callables, the eps plumbing and the random stream."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor, nn

from torch_semaug.attacks.adaptive import AdaptiveEps
from torch_semaug.transforms.image_space import ImageMap


@dataclass
class MoveContext:
    """What a transform's ``_move`` gets besides the latents and labels of the selected examples.

    Attributes:
        decode: latent -> images in the classifier's space and the batch's size and dtype
            (differentiable), i.e. exactly what the classifier will be trained on.
        classifier: the guarded classifier (width recorded), or ``None`` in random modes.
        indices: dataset indices of the selected examples, when the caller passed ``indices=``.
        rng: the random stream of this process (see :func:`process_stream`), or ``None``.
        adaptive_eps: the transform's per-example eps state, or ``None``.
        batch: number of selected examples; device: their device.
        scale: latent units per unit of eps (the generator's latent spread with ``relative_eps``, else 1).
        eps_used: ``(b,)`` each example's eps (in the user's units), for label smoothing.
        fooled: ``(b,)`` whether the returned latents fool the classifier (set by the base's attack).
        keep_input: ``(b,)`` examples that return their input image (AdvMix's nominal rule), or ``None``.
    """

    decode: ImageMap
    classifier: nn.Module | None
    indices: Tensor | None
    rng: torch.Generator | None
    adaptive_eps: AdaptiveEps | None = None
    batch: int = 0
    device: torch.device | None = None
    scale: float = 1.0
    eps_used: Tensor | None = None
    fooled: Tensor | None = None
    keep_input: Tensor | None = None

    def radius(self, eps: float) -> Tensor:
        """``(b,)`` attack radius in latent units: ``eps``, or NaTra's ``min(eps_i + rho, eps_max)``."""
        if self.adaptive_eps is None:
            self.eps_used = torch.full((self.batch,), float(eps), device=self.device)
            return self.eps_used * self.scale
        self.eps_used = self.adaptive_eps.eps_for(self.indices).to(self.device)
        return self.adaptive_eps.attack_eps(self.indices).to(self.device) * self.scale


class WidthRecorder(nn.Module):
    """Passes logits through and remembers their width: the number of classes for label smoothing.

    What the classifier returns (shape, gradient, finiteness, the soft labels' width) is checked by
    :func:`~torch_semaug.attacks.latent_pgd` on its first call.
    """

    def __init__(self, inner: Callable[[Tensor], Tensor]) -> None:
        super().__init__()
        self.inner = inner
        self.width: int | None = None

    def forward(self, images: Tensor) -> Tensor:
        logits = self.inner(images)
        self.width = int(logits.shape[-1])
        return logits


def process_stream(rng: torch.Generator | None, cache: dict) -> torch.Generator | None:
    """The stream this process draws from: ``rng`` itself in the main process of rank 0; elsewhere a
    generator seeded from ``rng``, the DataLoader worker's seed and the distributed rank.

    A DataLoader worker's seed changes every epoch and is reproducible when the run is seeded
    (``torch.manual_seed`` or ``DataLoader(generator=...)``), so workers and ranks draw different variants
    while a seeded run repeats exactly. ``cache`` keeps the derived generator of this process until ``rng``
    is re-seeded (a trainer that seeds ``rng`` every epoch thereby re-seeds every rank's stream too).
    """
    if rng is None:
        return None
    worker = torch.utils.data.get_worker_info()
    rank = dist.get_rank() if dist.is_available() and dist.is_initialized() else 0
    if worker is None and rank == 0:
        return rng
    key = (os.getpid(), None if worker is None else worker.seed, rank, rng.initial_seed())
    if cache.get("key") != key:
        base = int(torch.randint(2**62, (1,), generator=rng, device=rng.device))
        entropy = [base, rank] + ([] if worker is None else [worker.seed % 2**63])
        seed = int(np.random.SeedSequence(entropy).generate_state(1, np.uint64)[0]) % 2**63
        cache["key"], cache["stream"] = key, torch.Generator(rng.device).manual_seed(seed)
    return cache["stream"]
