"""Per-example attack memory: each example's next attack starts from its last adversarial move (warm starts).

An adversarial transform given ``warm_start=AttackMemory(len(dataset))`` stores, after each attack in
``train()`` mode, one row per attacked example, indexed by its dataset index (``indices=``): the move the
attack found, in the transform's own terms (AdvMix: the fine W+ entries of the code found; DirectionEdit: the
coefficients; FlowPerturb / AdversarialLatentAttack: the latent offset ``delta`` on the moving entries). The
next attack on that example starts from that row, projected into its current ball (the radius may have
changed: adaptive eps). Perturbations found in one epoch still hurt in the next (ATTA, Zheng et al. 2020), so
fewer steps from a warm start can replace many from scratch.

The rows live on the host (a CPU tensor, whatever device the attack runs on) and in the transform's
``state_dict``, so a training checkpoint carries them; :meth:`AttackMemory.sync` merges what several
distributed ranks stored.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn

from torch_semaug._checks import check_int_at_least, check_tensor, describe


class AttackMemory(nn.Module):
    """The last adversarial move of every training example, indexed by dataset index.

    The row width is set by the transform on first use (:meth:`ensure_width`) or by a loaded ``state_dict``;
    rows of examples never attacked are unknown (:attr:`known` is ``False``) and their attack starts as it
    would without memory.

    Args:
        num_examples: size of the dataset (indices run over ``0 .. num_examples - 1``).
        dtype: storage dtype of the rows (``torch.float16`` halves the host memory; moves are small).
    """

    def __init__(self, num_examples: int, dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        check_int_at_least(num_examples, 1, "num_examples")
        if dtype not in (torch.float32, torch.float16, torch.bfloat16, torch.float64):
            raise ValueError(f"dtype: expected a floating dtype (float32, float16, bfloat16, float64), got {dtype!r}")
        self.register_buffer("moves", torch.zeros(num_examples, 0, dtype=dtype))
        self.register_buffer("known", torch.zeros(num_examples, dtype=torch.bool))
        # rows this process wrote since the last sync; not saved (a checkpoint is written after a sync)
        self.register_buffer("_written", torch.zeros(num_examples, dtype=torch.bool), persistent=False)

    @property
    def num_examples(self) -> int:
        return int(self.known.shape[0])

    @property
    def width(self) -> int:
        """Values per example (0 until the first attack or load)."""
        return int(self.moves.shape[1])

    def bytes_per_example(self) -> int:
        """Host bytes one example costs: its row and its ``known`` flag."""
        return self.width * self.moves.element_size() + 1

    def ensure_width(self, width: int, owner: str) -> None:
        """Allocate rows of ``width`` values (first use); refuse a memory already holding another width."""
        if self.width == width:
            return
        if self.width != 0:
            raise ValueError(
                f"warm_start: this AttackMemory holds moves of {self.width} values per example, {owner} moves "
                f"{width}; give each transform its own AttackMemory"
            )
        self.moves = torch.zeros(self.num_examples, width, dtype=self.moves.dtype, device=self.moves.device)

    def check_indices(self, indices: object) -> Tensor:
        """``indices`` as a CPU long tensor of valid dataset indices."""
        indices = check_tensor(indices, "indices")
        if indices.ndim != 1 or indices.is_floating_point() or indices.dtype == torch.bool:
            raise ValueError(f"indices: expected a 1-D integer tensor of dataset indices, got {describe(indices)}")
        if indices.numel() and (int(indices.min()) < 0 or int(indices.max()) >= self.num_examples):
            raise ValueError(
                f"indices: expected dataset indices in [0, {self.num_examples}) (AttackMemory(num_examples="
                f"{self.num_examples})), got range [{int(indices.min())}, {int(indices.max())}]"
            )
        return indices.to(self.known.device, torch.long)

    def recall(self, indices: Tensor, like: Tensor) -> tuple[Tensor, Tensor]:
        """The stored rows ``(b, width)`` of ``indices`` (zeros where unknown) and which are known ``(b,)``,
        on ``like``'s device and dtype."""
        idx = self.check_indices(indices)
        return self.moves[idx].to(like.device, like.dtype), self.known[idx].to(like.device)

    @torch.no_grad()
    def store(self, indices: Tensor, rows: Tensor) -> None:
        """Remember ``rows`` ``(b, width)`` as the last moves of ``indices`` (a repeated index: the last row).

        A row that is not finite (a flow's inverse overflowed during the attack) is forgotten instead: that
        example's next attack starts from scratch."""
        idx = self.check_indices(indices)
        if rows.shape != (idx.numel(), self.width):
            raise ValueError(f"rows: expected shape ({idx.numel()}, {self.width}), got {describe(rows)}")
        rows = rows.detach().to(self.moves.device, self.moves.dtype)
        finite = torch.isfinite(rows).all(1)
        self.moves[idx] = torch.where(finite[:, None], rows, torch.zeros_like(rows))
        self.known[idx] = finite
        self._written[idx] = True

    @torch.no_grad()
    def sync(self) -> None:
        """Merge what the distributed ranks stored since the last sync; no-op in one process.

        Every rank sends the (index, row) pairs it wrote (``all_gather_object``); every rank then writes all
        of them, in rank order, so all ranks hold the same memory. Each rank attacks only its own indices, so
        a pair is overwritten only where a sampler padded the epoch with repeated indices. Call it on every
        rank at the same point (the trainer does, before each checkpoint).
        """
        if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
            self._written.zero_()
            return
        mine = self._written.nonzero().squeeze(1)
        pairs: list[Any] = [None] * dist.get_world_size()
        dist.all_gather_object(pairs, (mine.cpu(), self.moves[mine].cpu()))
        for idx, rows in pairs:
            if idx.numel():
                idx = idx.to(self.known.device)
                self.moves[idx] = rows.to(self.moves.device, self.moves.dtype)
                self.known[idx] = True
        self._written.zero_()

    @torch.no_grad()
    def reset(self) -> None:
        """Forget every move."""
        self.known.zero_()
        self.moves.zero_()
        self._written.zero_()

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any) -> None:
        if prefix + "moves" not in state_dict and prefix + "known" not in state_dict:
            return  # the state of a run without warm starts (resumed with them): the memory starts empty
        # the width is set by the first attack; a fresh memory takes the width of the state it loads
        moves = state_dict.get(prefix + "moves")
        if isinstance(moves, Tensor) and moves.ndim == 2 and self.width == 0 and moves.shape[0] == self.num_examples:
            self.moves = torch.zeros(moves.shape, dtype=self.moves.dtype, device=self.moves.device)
        super()._load_from_state_dict(state_dict, prefix, *args)

    def extra_repr(self) -> str:
        return f"num_examples={self.num_examples}, width={self.width}, dtype={self.moves.dtype}"
