"""The shared base of every semantic transform: encode, move the latent, decode, in the classifier's space."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any, ClassVar

import torch
from torch import Tensor, nn
from torchvision import tv_tensors
from torchvision.transforms import v2

from torch_semaug._checks import (
    check_choice,
    check_finite,
    check_float,
    check_int_at_least,
    check_labels,
    check_probability,
    check_rng,
    check_tensor,
    describe,
)
from torch_semaug.attacks.adaptive import AdaptiveEps, smooth_labels
from torch_semaug.attacks.guard import check_model, classifier_guard
from torch_semaug.attacks.memory import AttackMemory
from torch_semaug.attacks.pgd import NORMS
from torch_semaug.generators.base import LatentGenerator, as_generator
from torch_semaug.transforms.attack import AttackProblem, run_attack
from torch_semaug.transforms.context import MoveContext, WidthRecorder, process_stream
from torch_semaug.transforms.image_space import ImageMap, ImageSpace, resize
from torch_semaug.transforms.modes import MODE_ARGUMENTS, check_budget, move_mask, resolve


class SemanticTransform(v2.Transform):
    """Base class: a frozen generator, an optional live classifier, and the image-space plumbing.

    Every transform has the constructor shape ``T(generator, *, model=None, mode=..., <budget>, <what
    moves>, p=..., mean=..., std=..., ...)``. Subclasses declare ``mode_defaults`` (``{mode: {argument:
    default}}``, the modes' defaults from the papers: the one table, mirrored in the README) and
    ``random_modes`` (those that call no classifier), and implement :meth:`_random` (random modes) and, if
    their attack differs from PGD on the whole latent, :meth:`_problem`. The attack itself, adaptive eps
    and label smoothing live here (:func:`~torch_semaug.transforms.attack.run_attack`). Mode-dependent
    arguments default to ``None``, "the mode's default"; one given to a mode that does not use it is an
    error. The generator and the classifier are plain attributes, not submodules, so neither appears in
    ``repr``, ``state_dict`` or ``.to()``; the generator follows the batch to its device when called.

    Args:
        generator: the frozen :class:`~torch_semaug.generators.LatentGenerator`.
        model: the classifier that adversarial modes attack (or bind it later with :meth:`bind`).
        mode: one of the subclass's ``mode_defaults`` (default: the first).
        p: probability that an example is transformed; the others are returned untouched.
        mean: per-channel mean of the classifier's normalisation (``None``: images in ``[0, 1]``); a
            number, a sequence, a numpy array or a tensor of 1 or ``C`` values.
        std: per-channel std of the classifier's normalisation.
        to_generator: map classifier-space images to the generator's range (overrides mean/std).
        from_generator: the inverse map (required with ``to_generator``).
        keep_model_mode: run the classifier in its current mode during inner steps instead of eval.
        rng: a ``torch.Generator`` driving every random draw (``None``: the global stream). Each
            DataLoader worker and distributed rank draws its own stream derived from it.
        adaptive_eps: per-example eps state (adversarial modes; calls then need ``indices=``); it is a
            submodule, so it is saved in this transform's ``state_dict`` and updated only in ``train()`` mode.
        label_smoothing: ``c`` of NaTra's adaptive label smoothing: attacked examples get
            ``(1 - a) onehot + a u`` with ``a = c * eps_i`` and ``u ~ Dirichlet(1)``, and the whole batch is
            returned as ``(B, num_classes)`` soft labels; ``0`` returns labels unchanged.
        num_classes: width of the soft labels; default: the classifier's logits width (or the soft
            labels' width when soft labels come in).
        warm_start: per-example attack memory (adversarial modes; calls then need ``indices=``): each
            example's attack starts from its last move, projected into the current ball (see
            :mod:`torch_semaug.attacks.memory`); a submodule, saved in ``state_dict``, written only in
            ``train()`` mode.
        **arguments: the mode-dependent arguments (budget, ``layers``/``mask``, subclass options).
    """

    mode_defaults: ClassVar[dict[str, dict[str, Any]]] = {"random": {}}
    random_modes: ClassVar[tuple[str, ...]] = ("random",)
    #: where each mode's defaults come from (the README table's "paper" column)
    mode_papers: ClassVar[dict[str, str]] = {"random": ""}
    norms: ClassVar[tuple[str, ...]] = NORMS
    #: generator kinds (``semaug`` checkpoints) the transform works with; ``None``: any
    generator_kinds: ClassVar[tuple[str, ...] | None] = None
    on_nonfinite: str = "raise"  # "keep": an example whose variant is not finite keeps its input (FlowPerturb)

    def __init__(
        self,
        generator: LatentGenerator,
        *,
        model: nn.Module | None = None,
        mode: str | None = None,
        p: float = 1.0,
        mean: float | Sequence[float] | None = None,
        std: float | Sequence[float] | None = None,
        to_generator: ImageMap | None = None,
        from_generator: ImageMap | None = None,
        keep_model_mode: bool = False,
        rng: torch.Generator | None = None,
        adaptive_eps: AdaptiveEps | None = None,
        label_smoothing: float = 0.0,
        num_classes: int | None = None,
        warm_start: AttackMemory | None = None,
        **arguments: Any,
    ) -> None:
        super().__init__()
        generator = as_generator(generator)
        mode = next(iter(self.mode_defaults)) if mode is None else mode
        check_choice(mode, tuple(self.mode_defaults), "mode")
        check_probability(p, "p")
        check_rng(rng)
        self._check_adaptive(mode, adaptive_eps, label_smoothing, num_classes)
        resolved = resolve(type(self), mode, arguments, generator, model)
        check_budget(resolved, self.norms)
        for name in (*MODE_ARGUMENTS, *resolved):
            setattr(self, name, resolved.get(name))
        self.layers, self.mask = move_mask(resolved.get("layers"), resolved.get("mask"), generator)
        self.__dict__["_eps_scale"] = self._eps_scale_of(generator)
        self.adaptive_eps = adaptive_eps
        self.label_smoothing = float(label_smoothing)
        self.num_classes = num_classes
        self.mode = mode
        self.warm_start = None
        self.set_warm_start(warm_start)
        self.p = float(p)
        self.image_space = ImageSpace(mean, std, to_generator, from_generator)
        self.image_space.check_channels(generator.image_shape[0], type(generator).__name__)
        self.keep_model_mode = bool(keep_model_mode)
        self.rng = rng
        # Plain attributes: neither module is part of this transform's state_dict, repr or .to().
        self.__dict__["generator"] = generator.freeze()
        self.__dict__["model"] = None
        if model is not None:
            self.bind(model)

    def _eps_scale_of(self, generator: LatentGenerator) -> float:
        """Latent units per unit of eps: the generator's latent spread with ``relative_eps=True``."""
        if not self.relative_eps:
            return 1.0
        spread = getattr(generator, "latent_spread", None)
        if spread is None:
            raise ValueError(
                f"relative_eps: eps relative to the latent spread needs a generator that has one (StyleGAN2); "
                f"{type(generator).__name__} has none, give eps in latent units (relative_eps=False)"
            )
        return float(spread)

    def _check_adaptive(
        self, mode: str, adaptive_eps: object, label_smoothing: object, num_classes: object
    ) -> None:
        if adaptive_eps is not None and not isinstance(adaptive_eps, AdaptiveEps):
            raise TypeError(f"adaptive_eps: expected a torch_semaug.attacks.AdaptiveEps, got {describe(adaptive_eps)}")
        adversarial = [m for m in self.mode_defaults if m not in self.random_modes]
        if adaptive_eps is not None and mode in self.random_modes:
            raise ValueError(
                f"adaptive_eps: only adversarial modes {adversarial} attack with an eps, got mode={mode!r}"
            )
        if not isinstance(label_smoothing, int | float) or isinstance(label_smoothing, bool) or label_smoothing < 0:
            raise ValueError(f"label_smoothing: expected a number >= 0, got {label_smoothing!r}")
        if label_smoothing > 0 and mode in self.random_modes:
            raise ValueError(
                f"label_smoothing: the smoothing mass is label_smoothing * eps of an adversarial mode; "
                f"mode={mode!r} has no eps"
            )
        if adaptive_eps is not None and label_smoothing * adaptive_eps.eps_max > 1:
            raise ValueError(
                f"label_smoothing: label_smoothing * eps_max must be <= 1 (a smoothing mass), got "
                f"{label_smoothing} * {adaptive_eps.eps_max}"
            )
        if num_classes is not None:
            check_int_at_least(num_classes, 2, "num_classes")

    # -- public API -----------------------------------------------------------------------------------

    def set_warm_start(self, memory: AttackMemory | None) -> SemanticTransform:
        """Attach (or with ``None`` detach) the per-example attack memory; returns ``self``."""
        if memory is not None and not isinstance(memory, AttackMemory):
            raise TypeError(f"warm_start: expected a torch_semaug.attacks.AttackMemory or None, got {describe(memory)}")
        if memory is not None and self.mode in self.random_modes:
            adversarial = [m for m in self.mode_defaults if m not in self.random_modes]
            raise ValueError(f"warm_start: only adversarial modes {adversarial} attack, got mode={self.mode!r}")
        self.warm_start = memory
        return self

    def bind(self, model: nn.Module | None) -> SemanticTransform:
        """Attach the live classifier that adversarial modes attack (random modes never call it); returns
        ``self``. A classifier that is not an ``nn.Module`` is refused here, not at the first attack."""
        self.__dict__["model"] = None if model is None else check_model(model)
        return self

    @property
    def needs_model(self) -> bool:
        """Whether the current mode calls the classifier."""
        return self.mode not in self.random_modes

    def forward(
        self,
        images: Tensor,
        labels: Tensor | int | None = None,
        latents: Tensor | None = None,
        indices: Tensor | None = None,
    ) -> Tensor | tuple[Tensor, Any]:
        """Transform a batch ``(B, C, H, W)`` after the DataLoader, or one image ``(C, H, W)`` per sample.

        Args:
            images: float images in the classifier's space (see ``mean``/``std``).
            labels: ``(B,)`` class indices or ``(B, K)`` soft labels; returned unchanged.
            latents: ``(B, *generator.latent_shape)`` cached latents of the images (else encoded).
            indices: ``(B,)`` dataset indices (for per-example state such as adaptive eps).

        Returns:
            ``images`` if no labels were given, else ``(images, labels)``.
        """
        check_tensor(images, "images")
        if images.ndim not in (3, 4) or 0 in images.shape[-2:]:
            raise ValueError(
                f"images: expected a batch (B, C, H, W) or one image (C, H, W) with H, W > 0, got {describe(images)}"
            )
        if images.ndim == 3:
            return self._forward_sample(images, labels, latents)
        if labels is not None:
            labels = check_labels(labels, images.shape[0])
        params = self.make_params([images]) | dict(labels=labels, latents=latents, indices=indices)
        out, labels = self._apply(images, params)
        return out if labels is None else (out, labels)

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        """Draw which examples of the batch are transformed (each with probability ``p``)."""
        images = flat_inputs[0]
        batch = images.shape[0]
        if self.p >= 1.0:
            selected = torch.ones(batch, dtype=torch.bool, device=images.device)
        else:
            rng = self._stream()
            device = rng.device if rng is not None else images.device
            selected = (torch.rand(batch, generator=rng, device=device) < self.p).to(images.device)
        return {"selected": selected}

    def transform(self, inpt: Tensor, params: dict[str, Any]) -> Tensor:
        """Apply the latent move to the selected examples of ``inpt``; the others are returned as they are."""
        return self._apply(inpt, params)[0]

    def _stream(self) -> torch.Generator | None:
        """This process's random stream (own per DataLoader worker and distributed rank)."""
        return process_stream(self.rng, self.__dict__.setdefault("_streams", {}))

    def _selected_indices(
        self, params: dict[str, Any], index: Tensor, batch: int, device: torch.device
    ) -> Tensor | None:
        indices = params.get("indices")
        if indices is None:
            state = "adaptive_eps" if self.adaptive_eps is not None else "warm_start"
            if (self.adaptive_eps is not None or self.warm_start is not None) and self.needs_model:
                raise ValueError(
                    f"indices: {state} keeps state per dataset example; call t(x, y, indices=idx) with the "
                    "batch's dataset indices (torch_semaug.data.LatentDataset yields them)"
                )
            return None
        indices = check_tensor(indices, "indices")
        if indices.shape != (batch,):
            raise ValueError(f"indices: expected one dataset index per image ({batch},), got {describe(indices)}")
        return indices.to(device)[index]

    def _apply(self, inpt: Tensor, params: dict[str, Any]) -> tuple[Tensor, Tensor | None]:
        """The moved images and the labels to return (soft labels when label smoothing is on)."""
        index = params["selected"].nonzero().squeeze(1)
        labels = params.get("labels")
        indices = self._selected_indices(params, index, inpt.shape[0], inpt.device)
        if index.numel() == 0:
            return inpt, self._smooth(labels, index, None, None)
        images = inpt.as_subclass(Tensor)
        check_float(images, "images")
        check_finite(images, "images")
        generator = self._generator_on(images.device)
        latents = self._latents_for(images, index, params.get("latents"), generator)
        size, dtype = images.shape[-2:], images.dtype

        def decode(z: Tensor) -> Tensor:
            return self.image_space.to_classifier(generator.decode(z), generator.image_range, size, dtype)

        ctx = MoveContext(decode, None, indices, self._stream(), self.adaptive_eps if self.needs_model else None,
                          index.numel(), images.device, self._eps_scale)
        if self.needs_model:
            if self.model is None:
                raise ValueError(
                    f"model: {type(self).__name__}(mode={self.mode!r}) attacks a classifier; pass model=... "
                    "to the constructor or call .bind(model) first"
                )
            if labels is None:
                raise ValueError(f"labels: {type(self).__name__}(mode={self.mode!r}) needs the batch's labels")
            with classifier_guard(self.model, keep_mode=self.keep_model_mode) as classifier:
                ctx.classifier = WidthRecorder(classifier)
                moved = self._move(latents, labels[index], ctx)
            if self.adaptive_eps is not None and self.training:
                self.adaptive_eps.update(indices, ctx.fooled)
        else:
            moved = self._move(latents, labels[index] if labels is not None else None, ctx)
        width = ctx.classifier.width if ctx.classifier is not None else None
        labels = self._smooth(labels, index, ctx.eps_used, width)
        with torch.no_grad():
            variants = decode(moved.detach())
        variants = self._finite_or_input(variants, images[index], generator)
        if ctx.keep_input is not None:
            variants = torch.where(ctx.keep_input.view(-1, 1, 1, 1), images[index], variants)
        out = images.clone()
        out[index] = variants
        return (tv_tensors.wrap(out, like=inpt) if isinstance(inpt, tv_tensors.TVTensor) else out), labels

    def _finite_or_input(self, variants: Tensor, originals: Tensor, generator: LatentGenerator) -> Tensor:
        """``variants``, except that with ``on_nonfinite="keep"`` a non-finite one is replaced by its input
        (and counted in ``nonfinite_count``); with ``"raise"`` any non-finite value is an error."""
        bad = ~torch.isfinite(variants).flatten(1).all(1)
        if not bool(bad.any()):
            return variants
        if self.on_nonfinite == "raise":
            check_finite(variants, "generator output", hint=f" from {type(generator).__name__}.decode()")
        count = int(bad.sum())
        self.__dict__["nonfinite_count"] = self.nonfinite_count + count
        warnings.warn(f"{type(self).__name__}: {count} of {len(bad)} decoded variants were not finite (the "
                      f"{type(generator).__name__} inverse overflowed); they keep their input image "
                      "(on_nonfinite='keep'; the running total is in .nonfinite_count)", RuntimeWarning, stacklevel=3)
        return torch.where(bad.view(-1, *[1] * (variants.ndim - 1)), originals, variants)

    @property
    def nonfinite_count(self) -> int:
        """Examples whose variant was not finite and that kept their input (``on_nonfinite="keep"``)."""
        return self.__dict__.get("nonfinite_count", 0)

    def _smooth(
        self, labels: Tensor | None, index: Tensor, eps_used: Tensor | None, width: int | None
    ) -> Tensor | None:
        """NaTra's adaptive label smoothing of the moved examples; the others get their one-hot."""
        if self.label_smoothing == 0 or labels is None:
            return labels
        if width is not None:
            self.__dict__["_logits_width"] = width  # remembered for batches where no example is attacked
        width = self.__dict__.get("_logits_width")
        num_classes = self.num_classes or (labels.shape[1] if labels.ndim == 2 else width)
        if num_classes is None:
            raise ValueError(
                "num_classes: label smoothing needs the number of classes; pass num_classes=... (no example "
                "has reached the classifier yet to read it from the logits)"
            )
        amount = None if eps_used is None else self.label_smoothing * eps_used
        return smooth_labels(labels, index, amount, num_classes, self._stream())

    # -- the subclass hooks ---------------------------------------------------------------------------

    def _move(self, latents: Tensor, labels: Tensor | None, ctx: MoveContext) -> Tensor:
        """The moved latents of the selected examples: :meth:`_random`, or the one attack of every transform."""
        if not self.needs_model:
            return self._random(latents, ctx)
        return run_attack(self, latents, labels, ctx)

    def _random(self, latents: Tensor, ctx: MoveContext) -> Tensor:
        """A random mode's move (subclasses with random modes implement it)."""
        raise NotImplementedError(f"{type(self).__name__} has no random mode")

    def _problem(self, latents: Tensor, radius: Tensor, ctx: MoveContext) -> AttackProblem:
        """What this transform's attack differs in; default: PGD on the selected latent entries."""
        return AttackProblem(latents, mask=self._mask_on(latents), bounds=self.generator.latent_bounds)

    def _mask_on(self, like: Tensor) -> Tensor | None:
        """The bool mask of the moving latent entries on ``like``'s device (``None``: all entries)."""
        return None if self.mask is None else self.mask.to(like.device)

    # -- plumbing -------------------------------------------------------------------------------------

    def _forward_sample(self, image: Tensor, label: Any, latent: Tensor | None) -> Tensor | tuple[Tensor, Any]:
        if self.needs_model:
            raise ValueError(
                f"images: {type(self).__name__}(mode={self.mode!r}) calls the live classifier and must run "
                "per batch after the DataLoader (x, y = t(x, y)); per-sample calls support random modes only"
            )
        batch_latent = None if latent is None else check_tensor(latent, "latents").unsqueeze(0)
        params = self.make_params([image.unsqueeze(0)]) | dict(labels=None, latents=batch_latent, indices=None)
        out = self.transform(image.unsqueeze(0), params)[0]
        out = tv_tensors.wrap(out, like=image) if isinstance(image, tv_tensors.TVTensor) else out
        return out if label is None else (out, label)

    def _generator_on(self, device: torch.device) -> LatentGenerator:
        if self.generator.device != device:
            self.generator.to(device)
        return self.generator

    def _latents_for(
        self, images: Tensor, index: Tensor, latents: Tensor | None, generator: LatentGenerator
    ) -> Tensor:
        """The latents of the selected images: ``latents[index]`` when given, else their encoding; either
        way the images must map into the generator's range."""
        selected = images[index].to(generator.dtype)
        in_range = self.image_space.to_generator(selected, generator.image_range, selected.shape[-2:])
        low, high = generator.image_range
        if float(in_range.min()) < low - 1e-3 or float(in_range.max()) > high + 1e-3:
            raise ValueError(
                f"images: after conversion got values in [{float(in_range.min()):.4g}, {float(in_range.max()):.4g}]; "
                f"expected classifier-space images that map into the generator's range [{low}, {high}]: set "
                "mean=/std= to the classifier's normalisation (None means images in [0, 1])"
            )
        if latents is not None:
            latents = check_tensor(latents, "latents")
            check_float(latents, "latents")
            if latents.shape[0] != images.shape[0]:
                raise ValueError(
                    f"latents: expected one latent per image ({images.shape[0]}), got {latents.shape[0]}"
                )
            return generator.check_latent(latents[index].to(images.device, generator.dtype), "latents")
        if images.shape[1] != generator.image_shape[0]:
            raise ValueError(
                f"images: {type(generator).__name__} makes {generator.image_shape[0]}-channel images, got "
                f"{images.shape[1]} channels"
            )
        with torch.no_grad():
            encoded = generator.encode(resize(in_range, generator.image_shape[1:]).clamp(low, high))
        check_finite(encoded, "latents", hint=f" from {type(generator).__name__}.encode()")
        return encoded

    def extra_repr(self) -> str:
        fields: dict[str, Any] = {"mode": self.mode, "p": self.p}
        for name in self.mode_defaults[self.mode]:
            value = getattr(self, name, None)
            if name == "mask" and value is not None and self.layers is None:
                fields["mask"] = f"{int(value.sum())}/{value.numel()} entries"
            elif value is not None and name != "mask":
                fields[name] = value
        fields |= self._repr_fields()
        if self.image_space.mean is not None:
            fields |= {"mean": self.image_space.mean, "std": self.image_space.std}
        if self.label_smoothing:
            fields["label_smoothing"] = self.label_smoothing
        text = f"generator={type(self.generator).__name__}, " + ", ".join(f"{k}={v!r}" for k, v in fields.items())
        if self.adaptive_eps is not None:
            text += f", adaptive_eps=AdaptiveEps({self.adaptive_eps.extra_repr()})"
        if self.warm_start is not None:
            text += f", warm_start=AttackMemory({self.warm_start.extra_repr()})"
        return text

    def __repr__(self) -> str:
        # One line, also with an AdaptiveEps submodule (nn.Module would print children on their own lines).
        return f"{type(self).__name__}({self.extra_repr()})"

    def _repr_fields(self) -> dict[str, Any]:
        """Further fields a subclass shows in its one-line repr."""
        return {}
