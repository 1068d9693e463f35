"""DirectionEdit: move W+ codes along unsupervised latent directions (NaTra's natural transformations)."""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from torch_semaug._checks import describe
from torch_semaug.attacks.adaptive import AdaptiveEps
from torch_semaug.attacks.memory import AttackMemory
from torch_semaug.directions.directions import Directions
from torch_semaug.directions.find import generator_provenance
from torch_semaug.generators.base import LatentGenerator
from torch_semaug.generators.stylegan2 import as_stylegan
from torch_semaug.transforms.attack import AttackProblem
from torch_semaug.transforms.base import SemanticTransform
from torch_semaug.transforms.context import MoveContext
from torch_semaug.transforms.image_space import ImageMap
from torch_semaug.transforms.modes import Derived
from torch_semaug.transforms.registry import register_transform


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


@register_transform("direction_edit")
class DirectionEdit(SemanticTransform):
    """``w' = w + sum_i r_i std_i V_i`` on a range of W+ layers, with ``r`` random or adversarial.

    ``V_i`` are the chosen rows of ``directions`` (from :func:`~torch_semaug.directions.find_directions`)
    and ``r_i`` is in units of each direction's std, so ``strength=(-2, 2)`` spans the same range as the
    slider grid. ``layers=(start, stop)`` restricts the edit to W+ layers ``start .. stop - 1`` (stop
    exclusive, like a Python slice): NaTra's ``D(u_i, a-b)``, whose ``b`` is inclusive, is
    ``layers=(a, b + 1)``; ``mask`` (a bool mask over the flattened W+ latent) restricts it entry-wise.

    Modes:
        ``"random"``: ``r`` uniform in ``strength``, independently per example and component.
        ``"adversarial"``: projected signed-gradient ascent of the classifier's cross-entropy on ``r``
        within the box ``|r_i| <= eps`` (the l-inf ball around the image itself) intersected with
        ``strength``, starting at the box's centre (``r = 0`` when ``strength`` contains ``[-eps, eps]``;
        ``targets="predictions"`` reads the predictions there); ``steps`` steps of ``step_size``,
        ``restarts`` restarts, worst case kept. With ``adaptive_eps`` the radius is each example's own
        ``eps_i + rho`` (in std units as well). Defaults per mode: ``DirectionEdit.mode_defaults``.

    Args:
        generator: a frozen StyleGAN-style generator (W+ latents, ``mapping``, ``w_dim``, ``num_ws``).
        directions: a :class:`~torch_semaug.directions.Directions` or the path of a saved one.
        model: the classifier attacked in adversarial mode (or bind it later with :meth:`bind`).
        mode: ``"random"`` or ``"adversarial"``.
        eps: adversarial l-inf radius around ``r = 0`` (default: ``max(|low|, |high|)``, all of ``strength``).
        step_size: adversarial step (default ``2.5 * eps / steps``).
        steps: adversarial gradient steps per restart.
        restarts: adversarial restarts; the worst case per example is kept.
        random_start: start each restart at a random point of the feasible box instead of its centre.
        early_stop: stop an example once it is misclassified.
        norm: ``"linf"`` (the box; the only norm).
        targets: attack the true ``"labels"`` or the classifier's ``"predictions"``.
        layers: ``(start, stop)`` W+ layers edited, stop exclusive (``None``: all layers).
        mask: a bool mask over the flattened latent: the entries edited (instead of ``layers``).
        components: indices of the directions used (``None``: all of them).
        strength: ``(low, high)`` interval of every coefficient, in units of std.
        p, mean, std, to_generator, from_generator, keep_model_mode, rng, adaptive_eps, label_smoothing,
            num_classes, warm_start: see :class:`~torch_semaug.transforms.base.SemanticTransform`.
    """

    mode_defaults = {
        "random": dict(layers=None, mask=None, components=None, strength=(-2.0, 2.0)),
        "adversarial": dict(
            strength=(-2.0, 2.0),
            eps=Derived("max(abs(low), abs(high)) of strength", lambda a, g: max(map(abs, a["strength"]))),
            steps=5, step_size=Derived("2.5 * eps / steps", lambda a, g: 2.5 * a["eps"] / a["steps"]), restarts=1,
            random_start=False, early_stop=False, norm="linf", targets="labels", layers=None, mask=None,
            components=None,
        ),
    }
    random_modes = ("random",)
    mode_papers = {"random": "NaTra (directions; strength: the slider range)",
                   "adversarial": "NaTra (directions); budget: library defaults, Madry's step rule"}
    norms = ("linf",)
    generator_kinds = ("stylegan2",)

    def __init__(
        self,
        generator: LatentGenerator,                          # frozen StyleGAN-style generator (W+)
        *,
        model: nn.Module | None = None,                      # classifier for adversarial mode
        mode: str = "random",                                # "random" or "adversarial"
        eps: float | None = None,                            # None everywhere below: the mode's default
        step_size: float | None = None,
        steps: int | None = None,
        restarts: int | None = None,
        random_start: bool | None = None,
        early_stop: bool | None = None,
        norm: str | None = None,
        targets: str | None = None,
        layers: tuple[int, int] | None = None,               # W+ layers edited, stop exclusive; None: all
        mask: Tensor | None = None,                          # or a bool mask over the flattened latent
        directions: Directions | str | os.PathLike[str],    # directions, or the path of a saved file
        components: Sequence[int] | None = None,             # which directions; None: all
        strength: tuple[float, float] | None = None,         # coefficient interval, in units of std
        p: float = 1.0,                                      # probability an example is edited
        mean: float | Sequence[float] | None = None,         # classifier normalisation (None: [0, 1] images)
        std: float | Sequence[float] | None = None,
        to_generator: ImageMap | None = None,                # custom classifier -> generator range map
        from_generator: ImageMap | None = None,              # and its inverse
        keep_model_mode: bool = False,                       # keep train mode during inner steps
        rng: torch.Generator | None = None,                  # drives selection, coefficients, starts
        adaptive_eps: AdaptiveEps | None = None,             # per-example eps grown until fooled (NaTra)
        label_smoothing: float = 0.0,                        # soft labels with mass label_smoothing * eps_i
        num_classes: int | None = None,                      # soft-label width (default: logits width)
        warm_start: AttackMemory | None = None,              # each example starts from its last move
    ) -> None:
        as_stylegan(generator)
        if strength is not None and not (isinstance(strength, tuple | list) and len(strength) == 2
                                         and all(map(_is_number, strength)) and strength[0] < strength[1]):
            raise ValueError(f"strength: expected an interval (low, high) of numbers with low < high, got {strength!r}")
        super().__init__(
            generator, model=model, mode=mode, eps=eps, step_size=step_size, steps=steps, restarts=restarts,
            random_start=random_start, early_stop=early_stop, norm=norm, targets=targets, layers=layers, mask=mask,
            components=components, strength=strength, p=p, mean=mean, std=std, to_generator=to_generator,
            from_generator=from_generator, keep_model_mode=keep_model_mode, rng=rng, adaptive_eps=adaptive_eps,
            label_smoothing=label_smoothing, num_classes=num_classes, warm_start=warm_start,
        )
        self.directions = self._check_directions(directions, generator)
        self.components = self._check_components(self.components, self.directions.n_components)
        self.strength = low, high = (float(self.strength[0]), float(self.strength[1]))
        smallest = (adaptive_eps.start + adaptive_eps.rho) if adaptive_eps is not None else self.eps
        if mode == "adversarial" and not (smallest > low and smallest > -high):
            raise ValueError(
                f"eps: the ball |r| <= {smallest} around r = 0 must overlap strength={self.strength} in more "
                "than a point; raise eps (or adaptive_eps.start) or widen strength"
            )
        self.__dict__["_on_device"] = None  # directions cached on the batch's device and dtype

    # -- checks ---------------------------------------------------------------------------------------

    @staticmethod
    def _check_directions(directions: object, generator: nn.Module) -> Directions:
        if isinstance(directions, str | os.PathLike):
            directions = Directions.load(directions)
        if not isinstance(directions, Directions):
            raise TypeError(f"directions: expected a Directions object or the path of one, got {describe(directions)}")
        if directions.dim != generator.w_dim:
            found = directions.provenance.get("generator_kind", "another generator")
            raise ValueError(
                f"directions: found in a {directions.dim}-dimensional W space ({found}), but this "
                f"{type(generator).__name__} has w_dim={generator.w_dim}; run find_directions on this generator"
            )
        own = generator_provenance(generator)["generator_config_hash"]
        theirs = directions.provenance.get("generator_config_hash")
        if own is not None and theirs is not None and own != theirs:
            warnings.warn(
                f"directions: found on a generator with another config (hash {theirs} vs {own}); they may not "
                "mean the same edits here", stacklevel=3,
            )
        return directions

    @staticmethod
    def _check_components(components: Sequence[int] | None, available: int) -> tuple[int, ...]:
        if components is None:
            return tuple(range(available))
        values = tuple(components) if isinstance(components, Sequence) and not isinstance(components, str) else None
        if not values or not all(isinstance(c, int) and not isinstance(c, bool) for c in values):
            raise ValueError(f"components: expected a non-empty list of direction indices, got {components!r}")
        bad = [c for c in values if not 0 <= c < available]
        if bad or len(set(values)) != len(values):
            raise ValueError(
                f"components: expected distinct indices in [0, {available}) (the directions hold {available}), "
                f"got {list(values)}"
            )
        return values

    # -- the edit -------------------------------------------------------------------------------------

    def _directions_on(self, like: Tensor) -> tuple[Directions, Tensor]:
        cached = self._on_device
        if cached is None or cached[0].basis.device != like.device or cached[0].basis.dtype != like.dtype:
            cached = (self.directions.to(like.device, like.dtype), torch.tensor(self.components, device=like.device))
            self.__dict__["_on_device"] = cached
        return cached

    def apply(self, latents: Tensor, coefficients: Tensor) -> Tensor:
        """``w + V r`` on this transform's components and layers.

        Args:
            latents: ``(B, num_ws, w_dim)`` W+ codes.
            coefficients: ``(B, len(components))`` strengths in units of std.
        """
        directions, components = self._directions_on(latents)
        if coefficients.shape != (latents.shape[0], len(self.components)):
            raise ValueError(
                f"coefficients: expected shape ({latents.shape[0]}, {len(self.components)}), got "
                f"{describe(coefficients)}"
            )
        return directions.edit(latents, coefficients.to(latents), components, self.layers)

    def _edit(self, latents: Tensor, coefficients: Tensor) -> Tensor:
        """:meth:`apply`, restricted to the moving entries (``layers`` / ``mask``)."""
        edited = self.apply(latents, coefficients)
        mask = self._mask_on(latents)
        return edited if mask is None else torch.where(mask, edited, latents)

    def _random(self, latents: Tensor, ctx: MoveContext) -> Tensor:
        low, high = self.strength
        device = ctx.rng.device if ctx.rng is not None else latents.device
        unit = torch.rand(latents.shape[0], len(self.components), generator=ctx.rng, device=device,
                          dtype=latents.dtype).to(latents.device)
        return self._edit(latents, low + (high - low) * unit)

    def _problem(self, latents: Tensor, radius: Tensor, ctx: MoveContext) -> AttackProblem:
        batch, k = latents.shape[0], len(self.components)
        low, high = self.strength
        eps = radius.to(latents.dtype)
        # The feasible box of every coefficient: the eps ball around 0 cut by strength. PGD runs in a ball
        # around the box's centre with its half-width as radius, so no extra clipping is needed.
        box_low, box_high = (-eps).clamp(min=low), eps.clamp(max=high)
        center, half_width = (box_low + box_high) / 2, (box_high - box_low) / 2
        # The attacked "latent" is [w, r]; only the r entries move (mask), so the active-set bookkeeping
        # of latent_pgd (restarts, early stop) keeps each example's w with its r.
        start = torch.cat([latents.flatten(1), center[:, None].expand(batch, k)], dim=1)
        mask = torch.zeros(start.shape[1], dtype=torch.bool, device=latents.device)
        mask[-k:] = True

        def split(z: Tensor) -> Tensor:
            return self._edit(z[:, :-k].view(-1, *latents.shape[1:]), z[:, -k:])

        return AttackProblem(start, mask=mask, decode=lambda z: ctx.decode(split(z)), radius=half_width,
                             finish=split, memory="point")

    def _repr_fields(self) -> dict[str, Any]:
        space = self.directions.provenance.get("space", "?")
        return {"directions": f"{self.directions.method}/{space}", "components": list(self.components)}
