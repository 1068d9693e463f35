"""What :func:`train_stylegan2` and :func:`train_glow` share: the ``data`` syntax, the order of the data, the
run folder, the checkpoint and the resume rule.

A run folder (``out``) receives:

- ``checkpoint.pt``: weights, optimisers, the iteration, the run's arguments and the RNG states, written
  atomically every ``checkpoint_every`` iterations and at the end; loaded with ``weights_only=True``;
- ``generator.safetensors``: the frozen generator (``load_generator`` reads it), with the command line;
- ``samples/NNNNNN.png`` every ``sample_every`` iterations and ``samples/final.png``;
- ``metrics.json``: iterations, wall time and the kind's final losses.

The resume rule: ``resume=PATH`` continues the run saved at ``PATH`` (a ``checkpoint.pt`` or the folder
holding it) from its iteration; a missing ``PATH`` is an error, never a fresh start. An ``out`` that
already holds a ``checkpoint.pt`` is refused without ``resume``. A resumed run draws the same data order,
noise and mixing decisions as one that was never stopped, so on CPU it ends with the same weights.
``init_from=PATH`` instead starts a new run, counted from iteration 0, from another run's weights
(:func:`read_init_from`); resuming that run later continues its own checkpoint.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from torch_semaug._checks import check_int_at_least, check_positive
from torch_semaug._io import remove_stale_temporaries, write_atomic, write_text_atomic
from torch_semaug.generators.io import save_generator

CHECKPOINT = "checkpoint.pt"
GENERATOR = "generator.safetensors"
METRICS = "metrics.json"
DATA_SYNTAX = ("an image folder (class subfolders or flat) or a dataset name of `semaug train` (torch/cifar10, "
               "torch/mnist, colormnist[:VARIANT], demo-shapes[:VARIANT], folder:PATH, each with an optional @N)")


def load_images(data: str, *, split: str = "train", resolution: int | None = None, data_root: str | None = None,
                mirror: bool = False) -> Dataset:
    """``(image in [0, 1], label)`` pairs of the images ``data`` names (see :data:`DATA_SYNTAX`).

    Args:
        data: an image folder (``ImageFolder`` layout, or image files directly inside: label 0), or a name for
            :func:`~torch_semaug.data.datasets.create_dataset`.
        split: the split of a dataset name (``"train"`` or ``"test"``); ignored for an image folder.
        resolution: resize (shorter side) and centre-crop to this square size; ``None`` keeps the stored size.
        data_root: the data root of a dataset name (default ``$SEMAUG_DATA``, else ``./data``).
        mirror: random horizontal flips (drawn from torch's global generator).
    """
    from torchvision.transforms import v2

    steps: list[Any] = [v2.ToImage(), v2.ToDtype(torch.float32, scale=True)]
    if resolution is not None:
        check_int_at_least(resolution, 1, "resolution")
        steps += [v2.Resize(resolution, antialias=True), v2.CenterCrop(resolution)]
    if mirror:
        steps.append(v2.RandomHorizontalFlip())
    return _Mapped(_base_images(data, split, data_root), v2.Compose(steps))


def _base_images(data: str, split: str, data_root: str | None) -> Dataset:
    from torch_semaug.data.datasets import create_dataset, parse_dataset_name

    if not isinstance(data, str) or not data:
        raise ValueError(f"data: expected {DATA_SYNTAX}, got {data!r}")
    try:
        parse_dataset_name(data)
    except ValueError:
        if not os.path.isdir(data):
            raise FileNotFoundError(f"data: {data!r} is neither an image folder nor a dataset name; expected "
                                    f"{DATA_SYNTAX}") from None
        from torchvision.datasets import ImageFolder

        return ImageFolder(data) if any(p.is_dir() for p in Path(data).iterdir()) else _FlatFolder(data)
    return create_dataset(data, data_root, split)


class _FlatFolder(Dataset):
    """Every image file directly inside a folder (label 0)."""

    def __init__(self, root: str) -> None:
        from torchvision.datasets.folder import IMG_EXTENSIONS, default_loader

        self.files = sorted(p for p in Path(root).iterdir() if p.suffix.lower() in IMG_EXTENSIONS)
        if not self.files:
            raise FileNotFoundError(f"data: no images in {root!r}; expected {DATA_SYNTAX}")
        self.loader = default_loader

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> tuple[object, int]:
        return self.loader(str(self.files[index])), 0


class _Mapped(Dataset):
    def __init__(self, base: Dataset, transform: Any) -> None:
        self.base, self.transform = base, transform

    def __len__(self) -> int:
        return len(self.base)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        image, label = self.base[index]
        return self.transform(image).as_subclass(Tensor), int(label)


def check_run_arguments(a: dict[str, Any]) -> None:
    """The checks of the arguments every generator trainer takes, made before it touches a file."""
    for name, minimum in (("iterations", 1), ("batch_size", 1), ("sample_every", 1), ("checkpoint_every", 1),
                          ("workers", 0), ("seed", 0)):
        check_int_at_least(a[name], minimum, name)
    check_positive(a["lr"], "lr")
    if a["max_minutes"] is not None:
        check_positive(a["max_minutes"], "max_minutes")
    if a["threads"] is not None:
        check_int_at_least(a["threads"], 1, "threads")


def start_run(kind: str, arguments: dict[str, Any], resume: str | os.PathLike[str] | None,
              architecture: Sequence[str]) -> dict[str, Any] | None:
    """What every trainer does first: threads, the resume rule on ``out``, the architecture check, the seed.

    Returns the checkpoint to continue from, or ``None`` for a fresh run.
    """
    if arguments.get("init_from") is not None and resume is not None:
        raise ValueError("init_from: a resumed run continues its own weights; drop --init-from")
    if arguments["threads"] is not None:
        torch.set_num_threads(arguments["threads"])
    state = open_run(Path(arguments["out"]), resume, kind)
    if state is not None:
        check_unchanged(state, arguments, architecture)
    torch.manual_seed(arguments["seed"])
    return state


class Progress:
    """A tqdm bar, or (``enabled=False``, e.g. in a log file) one line every ``every`` iterations."""

    def __init__(self, kind: str, start: int, total: int, *, enabled: bool, every: int) -> None:
        self.kind, self.total, self.every = kind, total, every
        self.bar = tqdm(total=total, initial=start, desc=kind, dynamic_ncols=True, file=sys.stderr) if enabled else None

    def step(self, iteration: int, seconds: float, **values: float) -> None:
        """Report that ``iteration`` iterations are done, with the current loss ``values``."""
        text = {name: f"{value:.4f}" for name, value in values.items()}
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix(text, refresh=False)
        elif iteration % self.every == 0:
            print(f"{self.kind} iteration {iteration}/{self.total} " + " ".join(f"{k} {v}" for k, v in text.items())
                  + f" {seconds:.0f}s", flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def training_batches(dataset: Dataset, batch_size: int, *, seed: int, start: int = 0,
                     workers: int = 0) -> Iterator[Tensor]:
    """Image batches forever, in an order fixed by ``seed`` and the iteration alone.

    Epoch ``e`` is a permutation drawn from ``seed + e`` (incomplete last batch dropped); starting at
    iteration ``start`` skips straight to that batch, so a resumed run sees what an unstopped one would.
    """
    per_epoch = len(dataset) // batch_size  # type: ignore[arg-type]
    if per_epoch == 0:
        raise ValueError(f"batch_size: expected at most the {len(dataset)} training images, "  # type: ignore[arg-type]
                         f"got {batch_size}")
    epoch, skip = divmod(start, per_epoch)
    while True:
        order = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(seed + epoch))  # type: ignore[arg-type]
        order = order[skip * batch_size: per_epoch * batch_size].tolist()
        # The loader's own generator: building it must not draw from the global stream the run restores.
        loader = DataLoader(dataset, batch_size=batch_size, sampler=order, num_workers=workers,
                            generator=torch.Generator().manual_seed(seed + epoch))
        for images, _ in loader:
            yield images
        epoch, skip = epoch + 1, 0


def rng_state() -> dict[str, Any]:
    """torch's global random state (CPU and every CUDA device in use)."""
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() and torch.cuda.is_initialized() else []
    return {"cpu": torch.get_rng_state(), "cuda": cuda}


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["cpu"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(path: Path, kind: str, arguments: dict[str, Any], iteration: int, seconds: float,
                    **state: Any) -> None:
    """Write ``checkpoint.pt`` atomically: the kind's ``state`` plus what every run needs to continue."""
    payload = dict(state, kind=kind, arguments=arguments, iteration=iteration, seconds=seconds, rng=rng_state())
    write_atomic(path, lambda tmp: torch.save(payload, tmp))


def checkpoint_path(resume: str | os.PathLike[str]) -> Path:
    """The ``checkpoint.pt`` that ``resume`` names (the file or its folder); an error if there is none."""
    path = Path(resume)
    if path.is_dir():
        path = path / CHECKPOINT
    if not path.is_file():
        raise FileNotFoundError(f"resume: no checkpoint at {os.fspath(resume)!r}; expected the checkpoint.pt "
                                "of a train-generator run (or its folder)")
    return path


def read_checkpoint(resume: str | os.PathLike[str], kind: str) -> dict[str, Any]:
    """The checkpoint ``resume`` names, checked to be a ``kind`` training checkpoint."""
    path = checkpoint_path(resume)
    state = _load(path, "resume")
    if not isinstance(state, dict) or "arguments" not in state or "rng" not in state:
        raise ValueError(f"resume: {os.fspath(path)!r} is not a resumable checkpoint of `semaug train-generator` "
                         "(older ones lack the run's arguments and RNG state; they can start a new run with "
                         "--init-from)")
    if state.get("kind") != kind:
        raise ValueError(f"resume: {os.fspath(path)!r} is a {state.get('kind')} checkpoint, not {kind}")
    return state


def _load(path: str | os.PathLike[str], argument: str) -> Any:
    """``torch.load(weights_only=True)`` of the file ``argument`` names, on the CPU; one clear error if it fails."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # a truncated or foreign file: say which, whatever torch's reason
        raise ValueError(f"{argument}: cannot read {os.fspath(path)!r} as a checkpoint ({error})") from None


def read_init_from(init_from: str, kind: str, weights_key: str) -> dict[str, Any] | None:
    """The training checkpoint a fine-tune starts from, or ``None`` when ``init_from`` is a generator file.

    ``init_from`` must exist; a ``.safetensors`` is left to the trainer to load as its kind of generator, any
    other file must be a ``torch.load``-able (``weights_only``) checkpoint holding ``weights_key``.
    """
    if not os.path.isfile(init_from):
        raise FileNotFoundError(f"init_from: expected the checkpoint.pt of a `semaug train-generator {kind}` run "
                                f"or a {kind} .safetensors, but {init_from!r} does not exist")
    if init_from.endswith(".safetensors"):
        return None
    state = _load(init_from, "init_from")
    if not isinstance(state, dict) or weights_key not in state or state.get("kind", kind) != kind:
        raise ValueError(f"init_from: {init_from!r} is not a checkpoint of `semaug train-generator {kind}`")
    return state


def checkpoint_arguments(resume: str | os.PathLike[str], kind: str) -> dict[str, Any]:
    """The keyword arguments the run saved at ``resume`` was started with (what ``--resume`` restores)."""
    return dict(read_checkpoint(resume, kind)["arguments"])


def open_run(out: Path, resume: str | os.PathLike[str] | None, kind: str) -> dict[str, Any] | None:
    """Apply the resume rule to ``out``; the checkpoint to continue from, or ``None`` for a fresh run."""
    own = out / CHECKPOINT
    state = None
    if resume is None:
        if own.exists():
            raise ValueError(f"out: {os.fspath(out)} already holds a run; continue it with --resume {os.fspath(own)} "
                             "or choose another --out")
    else:
        state = read_checkpoint(resume, kind)
        if own.exists() and not own.samefile(checkpoint_path(resume)):
            raise ValueError(f"out: {os.fspath(own)!r} belongs to another run than the one resumed "
                             f"({os.fspath(resume)!r}); choose another out folder")
    out.mkdir(parents=True, exist_ok=True)
    samples = sorted({p.name.split(".")[1] for p in (out / "samples").glob(".*.tmp")})  # .NAME.png.XXXX.tmp
    for path in [out / CHECKPOINT, out / GENERATOR, out / METRICS, *(out / "samples" / f"{n}.png" for n in samples)]:
        for leftover in remove_stale_temporaries(path):
            print(f"removed {leftover.name}, left by a killed write")
    return state


def check_unchanged(state: dict[str, Any], arguments: dict[str, Any], names: Sequence[str]) -> None:
    """Refuse to resume with architecture arguments other than those the checkpoint was trained with."""
    saved = state["arguments"]
    for name in names:
        if name in saved and saved[name] != arguments[name]:
            raise ValueError(f"{name}: the checkpoint was trained with {saved[name]!r}, this run says "
                             f"{arguments[name]!r}; a resumed run keeps it (start a new run to change it)")


def finish_run(out: Path, generator: torch.nn.Module, metrics: dict[str, Any], *, command: str | None,
               data: str) -> Path:
    """Write ``generator.safetensors`` (with the command line) and ``metrics.json``; returns the generator path."""
    extra = {"data": data, "iterations": str(metrics["iterations"]), "wall_seconds": f"{metrics['seconds']:.0f}"}
    if command is not None:
        extra["command"] = command
    save_generator(generator, out / GENERATOR, **extra)  # type: ignore[arg-type]
    write_text_atomic(out / METRICS, json.dumps(metrics, indent=2) + "\n")
    return out / GENERATOR
