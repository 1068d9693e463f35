"""Adaptive perturbation tuning (NaTra 3.4.3): one eps per training example, grown until it fools.

Each example starts at ``eps_i = start``. Every attack on it runs at ``eps_i + rho`` (capped at
``eps_max``): if that fools the classifier, ``eps_i`` is kept; otherwise ``eps_i`` grows by ``rho``, up to
``eps_max``. So every example ends up with (about) the largest eps at which the classifier still resists,
and is attacked just beyond it. The state is a buffer indexed by dataset index: it lives in the owning transform's
``state_dict`` and a resumed run continues from it.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn

from torch_semaug._checks import check_int_at_least, check_positive, check_tensor, describe


class AdaptiveEps(nn.Module):
    """Per-example eps state, indexed by the dataset index of each example.

    Pass it to an adversarial transform (``adaptive_eps=AdaptiveEps(len(dataset), ...)``) and call the
    transform with ``indices=`` (the :class:`~torch_semaug.data.LatentDataset` yields them). The
    transform then attacks each example at :meth:`attack_eps` (``min(eps_i + rho, eps_max)``) instead of
    ``eps``, with ``step_size`` scaled by the same ratio; label smoothing uses ``eps_i``. Updates happen
    only while the transform is in training mode (``t.train()``).

    Args:
        num_examples: size of the dataset (indices run over ``0 .. num_examples - 1``).
        start: initial eps of every example.
        rho: increment applied after an attack the example survived.
        eps_max: cap.
    """

    def __init__(self, num_examples: int, start: float, rho: float, eps_max: float) -> None:
        super().__init__()
        check_int_at_least(num_examples, 1, "num_examples")
        check_positive(start, "start")
        check_positive(rho, "rho")
        check_positive(eps_max, "eps_max")
        if start > eps_max:
            raise ValueError(f"start: expected a value <= eps_max = {eps_max}, got {start}")
        self.start, self.rho, self.eps_max = float(start), float(rho), float(eps_max)
        self.register_buffer("eps", torch.full((num_examples,), self.start))

    @property
    def num_examples(self) -> int:
        return int(self.eps.shape[0])

    def _check_indices(self, indices: object) -> Tensor:
        indices = check_tensor(indices, "indices")
        if indices.ndim != 1 or indices.is_floating_point() or indices.dtype == torch.bool:
            raise ValueError(f"indices: expected a 1-D integer tensor of dataset indices, got {describe(indices)}")
        if indices.numel() and (int(indices.min()) < 0 or int(indices.max()) >= self.num_examples):
            raise ValueError(
                f"indices: expected dataset indices in [0, {self.num_examples}) (AdaptiveEps(num_examples="
                f"{self.num_examples})), got range [{int(indices.min())}, {int(indices.max())}]"
            )
        return indices.to(self.eps.device)

    def eps_for(self, indices: Tensor) -> Tensor:
        """The current eps ``(B,)`` of the examples ``indices``, on the indices' device."""
        return self.eps[self._check_indices(indices)].to(indices.device)

    def attack_eps(self, indices: Tensor) -> Tensor:
        """The radius ``(B,)`` each example is attacked at: ``min(eps_i + rho, eps_max)``."""
        return (self.eps_for(indices) + self.rho).clamp(max=self.eps_max)

    @torch.no_grad()
    def update(self, indices: Tensor, fooled: Tensor) -> None:
        """Grow eps by ``rho`` (capped) for the examples whose attack (at ``eps_i + rho``) did not fool."""
        idx = self._check_indices(indices)
        fooled = check_tensor(fooled, "fooled").to(self.eps.device)
        if fooled.dtype != torch.bool or fooled.shape != idx.shape:
            raise ValueError(f"fooled: expected a bool tensor of shape {tuple(idx.shape)}, got {describe(fooled)}")
        grow = idx[~fooled]
        self.eps[grow] = (self.eps[grow] + self.rho).clamp(max=self.eps_max)

    @torch.no_grad()
    def sync(self) -> None:
        """Merge the state of all distributed ranks (element-wise max; eps only grows); no-op otherwise.

        Each rank updates only the examples it saw: call this before saving a checkpoint.
        """
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(self.eps, op=dist.ReduceOp.MAX)

    @torch.no_grad()
    def reset(self) -> None:
        """Set every example back to ``start``."""
        self.eps.fill_(self.start)

    def extra_repr(self) -> str:
        return f"num_examples={self.num_examples}, start={self.start}, rho={self.rho}, eps_max={self.eps_max}"


def dirichlet_ones(rows: int, classes: int, rng: torch.Generator | None, device: torch.device) -> Tensor:
    """``rows`` draws ``(rows, classes)`` from the flat Dirichlet(1): normalised Exponential(1) samples.

    Built from ``torch.rand`` so that a ``torch.Generator`` drives it (``torch.distributions`` takes none).
    """
    draw_device = rng.device if rng is not None else device
    uniform = torch.rand(rows, classes, generator=rng, device=draw_device, dtype=torch.float64)
    exponential = -torch.log1p(-uniform)  # 1 - U is in (0, 1]: finite
    exponential = exponential.clamp_min(1e-30)
    return (exponential / exponential.sum(1, keepdim=True)).float().to(device)


def smooth_labels(
    labels: Tensor, index: Tensor, amount: Tensor | None, num_classes: int, rng: torch.Generator | None
) -> Tensor:
    """NaTra's adaptive label smoothing: ``(B, num_classes)`` soft labels for the whole batch.

    Rows ``index`` become ``(1 - a) y + a u`` with ``u ~ Dirichlet(1)`` (``y``: the one-hot, or the soft
    label given); the other rows keep their one-hot (or soft label). Every row sums to 1.

    Args:
        labels: ``(B,)`` class indices or ``(B, num_classes)`` soft labels.
        index: ``(b,)`` rows to smooth.
        amount: ``(b,)`` smoothing masses ``a`` in ``[0, 1]`` (``None`` when ``index`` is empty).
        num_classes: width of the soft labels.
        rng: drives the Dirichlet draws.
    """
    if labels.ndim == 2:
        if labels.shape[1] != num_classes:
            raise ValueError(f"labels: expected soft labels of width num_classes={num_classes}, got {describe(labels)}")
        soft = labels.clone()
    else:
        if labels.numel() and int(labels.max()) >= num_classes:
            raise ValueError(f"labels: expected class indices < num_classes={num_classes}, got {int(labels.max())}")
        soft = F.one_hot(labels, num_classes).float()
    if index.numel() == 0:
        return soft
    amount = amount.to(soft)
    if bool((amount > 1).any()) or bool((amount < 0).any()):
        raise ValueError(f"label_smoothing: label_smoothing * eps must lie in [0, 1], got {describe(amount)}")
    noise = dirichlet_ones(index.numel(), num_classes, rng, soft.device).to(soft)
    soft[index] = (1 - amount[:, None]) * soft[index] + amount[:, None] * noise
    return soft
