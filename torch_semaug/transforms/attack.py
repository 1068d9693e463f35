"""The one adversarial call every transform makes: :func:`latent_pgd` with the transform's budget.

A transform states only what differs, as an :class:`AttackProblem` (where the attack starts, which
entries move, restart centres, a decode wrapper, how the result maps back to the generator's latent).
:func:`run_attack` adds the budget, adaptive eps, the random stream and the report to adaptive eps and
label smoothing, so no transform can forget them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from torch_semaug.attacks.pgd import latent_pgd
from torch_semaug.transforms.context import MoveContext
from torch_semaug.transforms.image_space import ImageMap


@dataclass
class AttackProblem:
    """What one transform's attack differs in.

    Attributes:
        start: ``(b, ...)`` the latents the attack moves (the ball's centre unless ``restart_center``).
        mask: bool mask of ``start``'s per-example shape: the entries that move (``None``: all).
        decode: ``start``-shaped latent -> classifier-space images (``None``: the context's decode).
        restart_center: ``(restart, start) -> centres`` for restarts away from ``start`` (AdvMix).
        bounds: ``(low, high)`` every iterate is clipped to.
        radius: ``(b,)`` radius replacing the budget's eps (a box narrower than the eps ball).
        finish: maps the attacked ``start``-shaped latents to the generator's latents (``None``: as is).
        memory: what a warm start remembers of the masked entries of the result: ``"offset"`` (from
            ``start``; the next attack starts at ``start + offset``), ``"point"`` (the entries themselves:
            DirectionEdit's coefficients) or ``"center"`` (AdvMix: the centre of the ball the result came
            from, a prior draw, and the code found in it; the next attack's first restart is centred on that
            draw again and starts at that code, so a remembered code never drifts more than eps from a prior
            draw however many epochs it is carried).
    """

    start: Tensor
    mask: Tensor | None = None
    decode: ImageMap | None = None
    restart_center: Callable[[int, Tensor], Tensor] | None = None
    bounds: tuple[float, float] | None = None
    radius: Tensor | None = None
    finish: Callable[[Tensor], Tensor] | None = None
    memory: str = "offset"

    def _entries(self) -> Tensor | None:
        return None if self.mask is None else self.mask.to(self.start.device).reshape(-1)

    def _take(self, latents: Tensor) -> Tensor:
        entries, flat = self._entries(), latents.flatten(1)
        return flat if entries is None else flat[:, entries]

    def width(self) -> int:
        """Values per memory row."""
        moved = self._take(self.start[:1]).shape[1]
        return 2 * moved if self.memory == "center" else moved

    def to_rows(self, latents: Tensor, centers: Tensor) -> Tensor:
        """The ``(b, width)`` memory rows of attacked ``start``-shaped ``latents`` found in balls around
        ``centers``."""
        if self.memory == "center":
            return torch.cat([self._take(centers), self._take(latents)], 1)
        return self._take(latents - self.start if self.memory == "offset" else latents)

    def from_rows(self, rows: Tensor) -> Tensor:
        """``start`` with the masked entries set from memory rows (offsets added, points or centres put)."""
        entries, out = self._entries(), self.start.flatten(1).clone()
        selected = slice(None) if entries is None else entries
        out[:, selected] = out[:, selected] + rows if self.memory == "offset" else rows
        return out.view_as(self.start)


def run_attack(transform: Any, latents: Tensor, labels: Tensor, ctx: MoveContext) -> Tensor:
    """Attack ``latents`` with ``transform``'s budget and problem; record ``fooled`` and the nominal rule.

    One generator and one classifier forward+backward per step; an example that is fooled leaves the
    active batch when ``early_stop`` is on (see :func:`latent_pgd`).
    """
    radius = ctx.radius(transform.eps)
    # the step keeps its ratio to the radius when the radius is per-example (adaptive eps)
    step = transform.step_size * radius / transform.eps
    problem = transform._problem(latents, radius, ctx)
    nominal = transform.on_failure == "nominal"
    memory = transform.warm_start if ctx.indices is not None else None
    warm, restart_center = None, problem.restart_center
    if memory is not None:
        memory.ensure_width(problem.width(), type(transform).__name__)
        rows, known = memory.recall(ctx.indices, problem.start)
        if problem.memory == "center":
            centers, rows = rows.chunk(2, dim=1)
            restart_center = _warm_center(problem, problem.from_rows(centers), known)
        warm = (problem.from_rows(rows), known)
    result = latent_pgd(
        problem.decode or ctx.decode, ctx.classifier, problem.start, labels,
        eps=radius if problem.radius is None else problem.radius, step_size=step, steps=transform.steps,
        norm=transform.norm, restarts=transform.restarts, random_start=transform.random_start, mask=problem.mask,
        restart_center=restart_center, early_stop=transform.early_stop, bounds=problem.bounds,
        targets=transform.targets, evaluate=True if ctx.adaptive_eps is not None or nominal else None, rng=ctx.rng,
        warm_start=warm,
    )
    if memory is not None and transform.training:
        memory.store(ctx.indices, problem.to_rows(result.latents, result.centers))
    ctx.fooled = result.fooled.detach()
    if nominal:
        ctx.keep_input = ~ctx.fooled  # AdvMix, Algorithm 2: the nominal input when nothing fools
    return result.latents if problem.finish is None else problem.finish(result.latents)


def _warm_center(problem: AttackProblem, centers: Tensor, known: Tensor) -> Callable[[int, Tensor], Tensor]:
    """The first restart of a known example is centred on its remembered prior draw; every other restart (and
    the first of an unknown example) on the problem's own centre, drawn as before (the stream does not shift)."""
    drawn = problem.restart_center

    def center(restart: int, latents: Tensor) -> Tensor:
        own = drawn(restart, latents) if drawn is not None else latents
        if restart > 0:
            return own
        return torch.where(known.reshape(-1, *([1] * (own.ndim - 1))), centers.to(own), own)

    return center
