"""LatentMix: RandMix and AdvMix (Gowal et al., CVPR 2020) — swap the fine StyleGAN styles of an image."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from torch_semaug._checks import check_positive
from torch_semaug.attacks.adaptive import AdaptiveEps
from torch_semaug.attacks.memory import AttackMemory
from torch_semaug.generators.stylegan2 import as_stylegan
from torch_semaug.transforms.attack import AttackProblem
from torch_semaug.transforms.base import SemanticTransform
from torch_semaug.transforms.context import MoveContext
from torch_semaug.transforms.image_space import ImageMap
from torch_semaug.transforms.modes import Derived
from torch_semaug.transforms.registry import register_transform

FINE_LAYERS = Derived("generator.fine_layers", lambda args, g: g.fine_layers)


@register_transform("latent_mix")
class LatentMix(SemanticTransform):
    """Keep the coarse W+ layers of each image (its content), replace the fine ones (its style).

    * ``mode="random"`` — **RandMix** (eq. 17): the moving layers become ``map(z)`` of a random ``z``;
      costs one mapping and one decode of the batch.
    * ``mode="adversarial"`` — **AdvMix** (Algorithm 2): ``restarts`` codes drawn as ``map(z)``, each the
      centre of an l-inf ball of radius ``eps`` in which ``steps`` signed-gradient steps of size
      ``step_size`` maximise the classifier's cross-entropy; an example stops at its first misclassified
      variant (``early_stop``). When no restart fools the classifier, ``on_failure="nominal"`` returns
      the input image itself (the paper), ``"highest_loss"`` the variant of highest loss.

    The moving layers default to the generator's fine layers (:attr:`StyleGAN2.fine_layers`: the 32x32
    layers of a 32 px generator, 128-1024 of a 1024 px one); every other layer of the output is exactly
    the input's. Latents come from ``latents=`` (a cache of W+ codes) or from the encoder attached to the
    generator (:meth:`StyleGAN2.attach_encoder`). Defaults per mode: ``LatentMix.mode_defaults``.

    Args:
        generator: a W+ generator (:class:`~torch_semaug.generators.StyleGAN2`).
        model: the classifier attacked in adversarial mode (or :meth:`bind` it later).
        mode: ``"random"`` (RandMix) or ``"adversarial"`` (AdvMix).
        eps: l-inf radius around each restart's code (paper: 0.03 in W units; see ``relative_eps``).
        step_size: signed-gradient step (paper: 0.005).
        steps: gradient steps per restart (paper: 7 for training, 20 for evaluation).
        restarts: random codes tried (paper: 5 for training, 10 for evaluation).
        random_start: start each restart at a random point of its ball instead of its centre.
        early_stop: stop an example at its first misclassified variant.
        norm: ``"linf"`` (the paper) or ``"l2"``.
        targets: attack the true ``"labels"`` or the model's ``"predictions"``.
        relative_eps: ``eps`` and ``step_size`` in units of :attr:`StyleGAN2.latent_spread`.
        on_failure: ``"nominal"`` or ``"highest_loss"`` (see above).
        layers: ``(start, stop)`` the W+ layers replaced (stop exclusive); default the fine layers.
        mask: a bool mask over the flattened W+ latent instead of ``layers``.
        truncation_psi: truncation of the random ``map(z)`` codes (1: none).
        p, mean, std, to_generator, from_generator, keep_model_mode, rng, adaptive_eps, label_smoothing,
            num_classes, warm_start: see :class:`~torch_semaug.transforms.base.SemanticTransform`.
    """

    mode_defaults = {
        "random": dict(layers=FINE_LAYERS, mask=None, truncation_psi=1.0),
        "adversarial": dict(eps=0.03, step_size=0.005, steps=7, restarts=5, random_start=False, early_stop=True,
                            norm="linf", targets="labels", relative_eps=False, on_failure="nominal",
                            layers=FINE_LAYERS, mask=None, truncation_psi=1.0),
    }
    random_modes = ("random",)
    mode_papers = {"random": "RandMix, Gowal et al. 2020, eq. 17",
                   "adversarial": "AdvMix, Gowal et al. 2020, Alg. 2 (training budget)"}
    generator_kinds = ("stylegan2",)

    def __init__(
        self,
        generator: nn.Module,                            # frozen W+ generator (StyleGAN2)
        *,
        model: nn.Module | None = None,                  # classifier attacked in adversarial mode
        mode: str = "random",                            # "random" (RandMix) or "adversarial" (AdvMix)
        eps: float | None = None,                        # None everywhere below: the mode's default
        step_size: float | None = None,
        steps: int | None = None,
        restarts: int | None = None,
        random_start: bool | None = None,
        early_stop: bool | None = None,
        norm: str | None = None,
        targets: str | None = None,
        relative_eps: bool | None = None,
        on_failure: str | None = None,
        layers: tuple[int, int] | None = None,           # W+ layers replaced; None: generator.fine_layers
        mask: Tensor | None = None,                      # or a bool mask over the flattened latent
        truncation_psi: float | None = None,             # truncation of the random map(z) codes
        p: float = 1.0,                                  # probability an example is transformed
        mean: float | Sequence[float] | None = None,     # classifier normalisation (None: [0, 1] images)
        std: float | Sequence[float] | None = None,
        to_generator: ImageMap | None = None,            # custom classifier -> generator range map
        from_generator: ImageMap | None = None,          # and its inverse
        keep_model_mode: bool = False,                   # keep train mode during inner steps
        rng: torch.Generator | None = None,              # drives selection and every random code
        adaptive_eps: AdaptiveEps | None = None,         # per-example eps grown until fooled (NaTra)
        label_smoothing: float = 0.0,                    # soft labels with mass label_smoothing * eps_i
        num_classes: int | None = None,                  # soft-label width (default: logits width)
        warm_start: AttackMemory | None = None,          # each example starts from its last move
    ) -> None:
        super().__init__(
            as_stylegan(generator), model=model, mode=mode, eps=eps, step_size=step_size, steps=steps,
            restarts=restarts, random_start=random_start, early_stop=early_stop, norm=norm, targets=targets,
            relative_eps=relative_eps, on_failure=on_failure, layers=layers, mask=mask,
            truncation_psi=truncation_psi, p=p, mean=mean, std=std, to_generator=to_generator,
            from_generator=from_generator, keep_model_mode=keep_model_mode, rng=rng, adaptive_eps=adaptive_eps,
            label_smoothing=label_smoothing, num_classes=num_classes, warm_start=warm_start,
        )
        check_positive(self.truncation_psi, "truncation_psi")

    def random_styles(self, latents: Tensor, rng: torch.Generator | None) -> Tensor:
        """``latents`` with the moving entries replaced by ``map(z)`` of fresh random ``z``."""
        g = self.generator
        device = rng.device if rng is not None else latents.device
        z = torch.randn(latents.shape[0], g.z_dim, generator=rng, device=device).to(latents.device, g.dtype)
        with torch.no_grad():
            w = g.mapping(z, self.truncation_psi).to(latents.dtype)
        return torch.where(self._mask_on(latents), w[:, None, :], latents)

    def _random(self, latents: Tensor, ctx: MoveContext) -> Tensor:
        return self.random_styles(latents, ctx.rng)

    def _problem(self, latents: Tensor, radius: Tensor, ctx: MoveContext) -> AttackProblem:
        return AttackProblem(
            latents, mask=self._mask_on(latents), restart_center=lambda _, z: self.random_styles(z, ctx.rng),
            bounds=self.generator.latent_bounds, memory="center",
        )
