"""Adapters that turn flows built with normflows or FrEIA into :class:`LatentGenerator` s.

Both libraries emit one latent per scale for multi-scale models; the adapters flatten them to ``(B, D)`` in
a fixed order and restore them by reshapes, so ``decode(encode(x))`` is as exact as the wrapped flow.
The adapter freezes the flow it wraps (``eval()``, ``requires_grad_(False)``, in place). Save and load the
flow with its own library and wrap it again; adapters are not saved by :func:`save_generator`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from torch_semaug._checks import check_int_at_least, check_range, check_rng, check_shape, describe
from torch_semaug.generators.base import LatentGenerator
from torch_semaug.generators.latents import flatten_latents, straight_through_clamp, unflatten_latents


def _check_initialised(flow: nn.Module, library: str) -> None:
    """Refuse flows whose ActNorm layers would initialise themselves on the adapter's first batch."""
    for name, module in flow.named_modules():
        done = getattr(module, "data_dep_init_done", None)  # normflows ActNorm
        pending = getattr(module, "init_on_next_batch", False)  # FrEIA ActNorm
        if (isinstance(done, Tensor) and not bool(done > 0)) or pending is True:
            raise ValueError(
                f"flow: the {library} ActNorm layer {name!r} is not initialised yet and would initialise itself "
                "from the first images it sees (also at encode time); pass one batch of training images "
                "through the flow (or train it) before wrapping it"
            )


class WrappedFlow(LatentGenerator):
    """Common plumbing of the adapters: shape checks, flattening, range, reproducible prior draws.

    Subclasses implement ``_to_latents(x) -> list`` (data -> latents) and ``_from_latents(list) -> x``
    and ``_draw_prior(n) -> list`` (global random stream).
    """

    def __init__(
        self,
        flow: nn.Module,
        image_shape: Sequence[int],
        input_shape: Sequence[int],
        level_shapes: Sequence[tuple[int, ...]],
        image_range: tuple[float, float],
    ) -> None:
        super().__init__()
        if not isinstance(flow, nn.Module):
            raise TypeError(f"flow: expected an nn.Module, got {describe(flow)}")
        self.image_shape = check_shape(image_shape, "image_shape", length=3)  # type: ignore[assignment]
        self.input_shape = check_shape(input_shape, "input_shape")
        if torch.Size(self.input_shape).numel() != torch.Size(self.image_shape).numel():
            raise ValueError(
                f"image_shape: {tuple(image_shape)} has {torch.Size(self.image_shape).numel()} values but the "
                f"flow takes inputs of shape {self.input_shape}"
            )
        self.image_range = check_range(image_range, "image_range")
        self.level_shapes = [tuple(int(s) for s in shape) for shape in level_shapes]
        self.latent_shape = (sum(int(torch.Size(s).numel()) for s in self.level_shapes),)
        if self.latent_shape[0] != torch.Size(self.input_shape).numel():  # a flow keeps the dimension
            raise ValueError(
                f"image_shape: the flow's latents {self.level_shapes} hold {self.latent_shape[0]} values, but images "
                f"of shape {self.image_shape} hold {torch.Size(self.image_shape).numel()}; pass the shape the flow "
                "was built for"
            )
        self.flow = flow
        self.freeze()

    def encode(self, images: Tensor) -> Tensor:
        """Images ``(B, *image_shape)`` in ``image_range`` -> flat latents ``(B, D)`` (deterministic)."""
        self.check_images(images)
        # clone: some library layers (normflows Shift) modify their input in place
        levels = self._to_latents(images.reshape(images.shape[0], *self.input_shape).clone())
        got = [tuple(z.shape[1:]) for z in levels]
        if got != self.level_shapes:
            raise ValueError(f"flow: produced latents of shapes {got}, expected {self.level_shapes}")
        return flatten_latents(levels)

    def decode(self, latents: Tensor) -> Tensor:
        """Flat latents ``(B, D)`` -> images ``(B, *image_shape)`` in ``image_range`` (straight-through clamp)."""
        levels = unflatten_latents(self.check_latent(latents, finite=False), self.level_shapes)
        images = self._from_latents(levels).reshape(latents.shape[0], *self.image_shape)
        return straight_through_clamp(images, *self.image_range)

    def sample_latent(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """``n`` flat latents from the flow's base distribution, reproducible under ``generator``.

        The library samples from the global random stream; with a ``generator`` it runs in a forked
        stream seeded from it, so the caller's global stream is left untouched.
        """
        check_int_at_least(n, 0, "n")
        if check_rng(generator, "generator") is None:
            return flatten_latents(self._draw_prior(n)).to(self.device)
        seed = int(torch.randint(0, 2**62, (1,), generator=generator, device=generator.device))
        devices = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed)
            return flatten_latents(self._draw_prior(n)).to(self.device)

    def _to_latents(self, x: Tensor) -> list[Tensor]:
        raise NotImplementedError

    def _from_latents(self, levels: list[Tensor]) -> Tensor:
        raise NotImplementedError

    def _draw_prior(self, n: int) -> list[Tensor]:
        raise NotImplementedError


class NormflowsGenerator(WrappedFlow):
    """A normflows ``NormalizingFlow`` or ``MultiscaleFlow`` as a generator (see :func:`from_normflows`)."""

    def __init__(
        self,
        flow: nn.Module,
        image_shape: Sequence[int],
        input_shape: Sequence[int] | None = None,
        image_range: tuple[float, float] = (0.0, 1.0),
    ) -> None:
        import normflows

        multiscale = isinstance(flow, normflows.MultiscaleFlow)
        if not multiscale and isinstance(flow, normflows.NormalizingFlow):
            if isinstance(flow, normflows.ConditionalNormalizingFlow):
                raise TypeError(f"flow: conditional normflows models are not supported, got {type(flow).__name__}")
        elif not multiscale:
            raise TypeError(
                f"flow: expected a normflows NormalizingFlow or MultiscaleFlow, got {describe(flow)}"
            )
        _check_initialised(flow, "normflows")
        bases = list(flow.q0) if multiscale else [flow.q0]
        shapes = []
        for base in bases:
            shape = getattr(base, "shape", None)
            if shape is None:
                raise ValueError(f"flow: its base distribution {type(base).__name__} does not declare .shape")
            shapes.append((shape,) if isinstance(shape, int) else tuple(shape))
        super().__init__(flow, image_shape, input_shape or tuple(image_shape), shapes, image_range)
        self.multiscale = multiscale

    def _to_latents(self, x: Tensor) -> list[Tensor]:
        if self.multiscale:
            return list(self.flow.inverse_and_log_det(x)[0])
        return [self.flow.inverse(x)]

    def _from_latents(self, levels: list[Tensor]) -> Tensor:
        if self.multiscale:
            return self.flow.forward_and_log_det(levels)[0]
        return self.flow.forward(levels[0])

    def _draw_prior(self, n: int) -> list[Tensor]:
        if not self.multiscale:
            return [self.flow.q0(n)[0]]
        if self.flow.class_cond:  # classes drawn uniformly by normflows
            return [base(n, None)[0] for base in self.flow.q0]
        return [base(n)[0] for base in self.flow.q0]


class FreiaGenerator(WrappedFlow):
    """A FrEIA ``SequenceINN`` or ``GraphINN`` as a generator (see :func:`from_freia`)."""

    def __init__(
        self,
        inn: nn.Module,
        image_shape: Sequence[int],
        image_range: tuple[float, float] = (0.0, 1.0),
    ) -> None:
        from FrEIA.framework import GraphINN, SequenceINN

        if isinstance(inn, SequenceINN):
            if any(c is not None for c in inn.conditions):
                raise ValueError("inn: conditional SequenceINNs are not supported")
            input_shape, level_shapes = inn.shapes[0], [inn.shapes[-1]]
        elif isinstance(inn, GraphINN):
            if inn.condition_nodes:
                raise ValueError("inn: conditional GraphINNs (with ConditionNodes) are not supported")
            if len(inn.in_nodes) != 1:
                raise ValueError(f"inn: expected one InputNode, got {len(inn.in_nodes)}")
            input_shape, level_shapes = inn.in_nodes[0].output_dims[0], list(inn.global_out_shapes)
        else:
            raise TypeError(f"inn: expected a FrEIA SequenceINN or GraphINN, got {describe(inn)}")
        _check_initialised(inn, "FrEIA")
        super().__init__(inn, image_shape, input_shape, level_shapes, image_range)

    def _to_latents(self, x: Tensor) -> list[Tensor]:
        out, _ = self.flow(x, jac=False)
        return [out] if isinstance(out, Tensor) else list(out)

    def _from_latents(self, levels: list[Tensor]) -> Tensor:
        out, _ = self.flow(levels[0] if len(levels) == 1 else tuple(levels), rev=True, jac=False)
        return out if isinstance(out, Tensor) else out[0]

    def _draw_prior(self, n: int) -> list[Tensor]:
        # FrEIA flows are trained against a standard normal by convention; they carry no base distribution.
        return [torch.randn((n, *shape), device=self.device, dtype=self.dtype) for shape in self.level_shapes]


def from_normflows(
    model: nn.Module,
    image_shape: Sequence[int],
    *,
    input_shape: Sequence[int] | None = None,
    image_range: tuple[float, float] = (0.0, 1.0),
) -> NormflowsGenerator:
    """Wrap a trained normflows ``NormalizingFlow`` / ``MultiscaleFlow`` as a :class:`LatentGenerator`.

    normflows' generative direction is ``forward`` (latent -> data) and ``inverse`` (data -> latent);
    ``decode`` and ``encode`` call them. Multi-scale latents (one per entry of ``model.q0``) are
    flattened in the order of ``model.q0``.

    Args:
        model: the flow; frozen in place. Its ActNorm layers must already be initialised.
        image_shape: ``(C, H, W)`` of the images the flow models.
        input_shape: shape of one example as the flow takes it, if not ``image_shape`` (e.g. ``(784,)``).
        image_range: the value range the flow was trained on (include any preprocessing in the flow,
            e.g. normflows' ``Shift`` or ``Logit`` transform).

    Example:
        >>> gen = from_normflows(glow_msf, (3, 32, 32))
        >>> z = gen.encode(images)                 # (B, 3072)
    """
    return NormflowsGenerator(model, image_shape, input_shape, image_range)


def from_freia(
    inn: nn.Module,
    image_shape: Sequence[int],
    *,
    image_range: tuple[float, float] = (0.0, 1.0),
) -> FreiaGenerator:
    """Wrap a trained FrEIA ``SequenceINN`` / ``GraphINN`` as a :class:`LatentGenerator`.

    FrEIA's forward direction maps data to latents (``inn(x)``) and ``rev=True`` maps back; the
    latents of several ``OutputNode`` s are flattened in the graph's output order. The prior is
    the standard normal FrEIA flows are trained against.

    Args:
        inn: the network; frozen in place. It must be unconditional with one ``InputNode``.
        image_shape: ``(C, H, W)`` of the images; the network's input may be the same or flat.
        image_range: the value range the network was trained on.
    """
    return FreiaGenerator(inn, image_shape, image_range)
