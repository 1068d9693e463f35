"""LatentMix: RandMix and AdvMix (Gowal et al., CVPR 2020) — swap the fine StyleGAN styles of an image."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from torch_semaug._checks import check_choice, check_int_at_least, check_positive
from torch_semaug.attacks.adaptive import AdaptiveEps
from torch_semaug.attacks.pgd import TARGETS, latent_pgd
from torch_semaug.generators.stylegan2 import as_stylegan
from torch_semaug.transforms.base import ImageMap, MoveContext, SemanticTransform
from torch_semaug.transforms.registry import register_transform


@register_transform("latent_mix")
class LatentMix(SemanticTransform):
    """Keep the coarse W+ layers of each image (its content), replace the fine ones (its style).

    * ``mode="random"`` — **RandMix** (eq. 17): the fine layers ``[split:]`` become ``map(z)`` of a random
      ``z``; costs one mapping and one decode of the batch.
    * ``mode="adversarial"`` — **AdvMix** (Algorithm 2): ``restarts`` fine-layer codes drawn as ``map(z)``,
      each the centre of an l-inf ball of radius ``eps`` in which ``steps`` signed-gradient steps of size
      ``step_size`` maximise the classifier's cross-entropy; the worst case over restarts is kept, and
      (``early_stop``) an example leaves the batch once misclassified. Runs on :func:`latent_pgd`.

    In both modes the coarse layers ``[:split]`` of every output are exactly the input's. Latents come
    from ``latents=`` (a cache of W+ codes) or from the encoder attached to the generator
    (:meth:`StyleGAN2.attach_encoder`).

    Args:
        generator: a W+ generator (:class:`~torch_semaug.generators.StyleGAN2`).
        model: the classifier attacked in adversarial mode (or :meth:`bind` it later).
        split: first fine W+ layer, in ``1..num_ws-1``; default ``generator.fine_split`` (the first layer
            at resolution >= 16: the 4x4 and 8x8 styles, i.e. shape, stay; colour and texture change).
        mode: ``"random"`` (RandMix) or ``"adversarial"`` (AdvMix).
        p: probability that an example is transformed.
        eps: l-inf radius around each restart's fine-layer code (paper: 0.03).
        step_size: signed-gradient step (paper: 0.005).
        steps: gradient steps per restart (paper: 7 for training, 20 for evaluation).
        restarts: random fine-layer codes tried (paper: 5 for training, 10 for evaluation).
        early_stop: stop an example once misclassified (it then costs nothing more).
        truncation_psi: truncation of the random ``map(z)`` codes (1: none).
        targets: attack the true ``"labels"`` or the model's ``"predictions"``.
        adaptive_eps, label_smoothing, num_classes: NaTra's per-example eps and adaptive label smoothing
            (adversarial mode), see :class:`~torch_semaug.transforms.base.SemanticTransform`.
        mean, std, to_generator, from_generator, keep_model_mode, rng: see
            :class:`~torch_semaug.transforms.base.SemanticTransform`.
    """

    modes = ("random", "adversarial")
    random_modes = ("random",)

    def __init__(
        self,
        generator: nn.Module,                            # frozen W+ generator (StyleGAN2)
        model: nn.Module | None = None,                  # classifier attacked in adversarial mode
        *,
        split: int | None = None,                        # first fine W+ layer; None: generator.fine_split
        mode: str = "random",                            # "random" (RandMix) or "adversarial" (AdvMix)
        p: float = 1.0,                                  # probability an example is transformed
        eps: float = 0.03,                               # l-inf radius around each restart (AdvMix)
        step_size: float = 0.005,                        # signed-gradient step size (AdvMix)
        steps: int = 7,                                  # gradient steps per restart (AdvMix)
        restarts: int = 5,                               # random fine-layer codes tried (AdvMix)
        early_stop: bool = True,                         # drop an example once misclassified (AdvMix)
        truncation_psi: float = 1.0,                     # truncation of the random map(z) codes
        targets: str = "labels",                         # "labels" or the model's "predictions"
        mean: float | Sequence[float] | None = None,     # classifier normalisation (None: [0, 1] images)
        std: float | Sequence[float] | None = None,
        to_generator: ImageMap | None = None,            # custom classifier -> generator range map
        from_generator: ImageMap | None = None,          # and its inverse
        keep_model_mode: bool = False,                   # keep train mode during inner steps
        rng: torch.Generator | None = None,              # drives selection and every random code
        adaptive_eps: AdaptiveEps | None = None,         # per-example eps grown until fooled (NaTra)
        label_smoothing: float = 0.0,                    # soft labels with mass label_smoothing * eps_i
        num_classes: int | None = None,                  # soft-label width (default: logits width)
    ) -> None:
        generator = as_stylegan(generator)
        super().__init__(
            generator, model=model, mode=mode, p=p, mean=mean, std=std, to_generator=to_generator,
            from_generator=from_generator, keep_model_mode=keep_model_mode, rng=rng,
            adaptive_eps=adaptive_eps, label_smoothing=label_smoothing, num_classes=num_classes,
        )
        num_ws = generator.num_ws
        split = getattr(generator, "fine_split", num_ws // 2) if split is None else split
        if not isinstance(split, int) or isinstance(split, bool) or not 1 <= split <= num_ws - 1:
            raise ValueError(
                f"split: expected an integer in 1..{num_ws - 1} (the generator has num_ws={num_ws} W+ layers; "
                f"layers [:split] are kept, [split:] replaced), got {split!r}"
            )
        check_positive(eps, "eps")
        check_positive(step_size, "step_size")
        check_int_at_least(steps, 1, "steps")
        check_int_at_least(restarts, 1, "restarts")
        check_positive(truncation_psi, "truncation_psi")
        check_choice(targets, TARGETS, "targets")
        self.split = split
        self.eps = float(eps)
        self.step_size = float(step_size)
        self.steps = steps
        self.restarts = restarts
        self.early_stop = bool(early_stop)
        self.truncation_psi = float(truncation_psi)
        self.targets = targets

    def random_styles(self, latents: Tensor, rng: torch.Generator | None) -> Tensor:
        """``latents`` with layers ``[split:]`` replaced by ``map(z)`` of fresh random ``z``."""
        g = self.generator
        device = rng.device if rng is not None else latents.device
        z = torch.randn(latents.shape[0], g.z_dim, generator=rng, device=device).to(latents.device, g.dtype)
        with torch.no_grad():
            w = g.mapping(z, self.truncation_psi).to(latents.dtype)
        return g.mix(latents, w, self.split)

    def _move(self, latents: Tensor, labels: Tensor | None, ctx: MoveContext) -> Tensor:
        if self.mode == "random":
            return self.random_styles(latents, ctx.rng)
        result = latent_pgd(
            ctx.decode, ctx.classifier, latents, labels,
            eps=ctx.eps(self.eps), step_size=ctx.step_size(self.step_size, self.eps), steps=self.steps,
            norm="linf", restarts=self.restarts,
            mask=slice(self.split, None), restart_center=lambda _, z: self.random_styles(z, ctx.rng),
            early_stop=self.early_stop, bounds=self.generator.latent_bounds, targets=self.targets, rng=ctx.rng,
            evaluate=True if ctx.needs_fooled else None,
        )
        ctx.report(result.fooled)
        return result.latents

    def _repr_fields(self) -> dict[str, Any]:
        fields: dict[str, Any] = {"split": self.split}
        if self.mode == "adversarial":
            fields |= dict(eps=self.eps, step_size=self.step_size, steps=self.steps, restarts=self.restarts,
                           early_stop=self.early_stop)
        if self.truncation_psi != 1.0:
            fields["truncation_psi"] = self.truncation_psi
        return fields
