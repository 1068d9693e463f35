"""Accuracy of a trained classifier on clean images and under each semantic attack (``semaug eval``).

Attacks default to the papers' evaluation settings (AdvMix: eps 0.03, step 0.005, Nr = 10 restarts, K = 20
steps; flow Adversarial-LA on CIFAR-10: l2, eps 1.0, alpha 0.5, k = 3; pixel PGD-20 at 8/255 for the identity
baseline); ``--attack-kwargs`` overrides any of them.
The report (:mod:`torch_semaug.train.eval_report`): a Markdown file with a summary table, a per-class table
and a section for every attack, with a grid of the examples it turned from correct to wrong (enlarged,
captioned with the true and the predicted label); the same numbers in a JSON and a CSV file beside it.
"""

from __future__ import annotations

import os
import re
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Subset
from torchvision.transforms import v2
from tqdm.auto import tqdm

from torch_semaug._checks import check_int_at_least
from torch_semaug.data.datasets import create_dataset, pick
from torch_semaug.data.latent_cache import LatentCache
from torch_semaug.data.latent_dataset import LatentDataset
from torch_semaug.train.checkpoint import load_checkpoint
from torch_semaug.train.data import encoding_transform
from torch_semaug.train.eval_report import AttackOutcome, summary, write_report
from torch_semaug.train.semaug_setup import accepted_kwargs, build_transform, check_transform_name
from torch_semaug.transforms import SemanticTransform

# The papers' evaluation settings; keys a transform does not take are left out for it.
EVAL_DEFAULTS: dict[str, dict[str, Any]] = {
    "latent_mix": {"mode": "adversarial", "eps": 0.03, "step_size": 0.005, "steps": 20, "restarts": 10},
    "flow_perturb": {"mode": "adversarial", "norm": "l2", "eps": 1.0, "step_size": 0.5, "steps": 3},
    "direction_edit": {"mode": "adversarial"},
    "adversarial_latent_attack": {"eps": 8 / 255, "step_size": 2 / 255, "steps": 20},
}


@dataclass
class Attack:
    """One requested attack: its transform and what it found."""

    name: str  # label in the report (the transform name, numbered if it is requested twice)
    transform: SemanticTransform
    use_latents: bool
    correct: list[Tensor] = field(default_factory=list)  # per batch: attacked image classified correctly
    seconds: float = 0.0
    examples: list[tuple[Tensor, Tensor, int, int]] = field(default_factory=list)  # see AttackOutcome

    def outcome(self) -> AttackOutcome:
        correct = torch.cat(self.correct) if self.correct else torch.zeros(0, dtype=torch.bool)
        return AttackOutcome(self.name, repr(self.transform), self.use_latents, correct, self.seconds, self.examples)


@contextmanager
def _blame(argument: str) -> Iterator[None]:
    """Name ``argument`` (what the caller passed) in the errors of the library calls inside, whatever
    those call their own argument (``path:``, ``resume:``)."""
    try:
        yield
    except (OSError, ValueError) as error:
        raise ValueError(f"{argument}: {re.sub(r'^[A-Za-z_][A-Za-z0-9_]*: ', '', str(error))}") from None


def load_classifier(path: str | os.PathLike[str], device: torch.device) -> tuple[nn.Module, dict[str, Any]]:
    """The timm model of a ``semaug train`` checkpoint, in eval mode, and the checkpoint's metadata."""
    import timm

    state = load_checkpoint(path)
    args = state["args"]
    model = timm.create_model(args["model"], num_classes=state["num_classes"], in_chans=state["in_chans"])
    model.load_state_dict(state["model"])
    return model.to(device).eval(), state


def defaults_for(name: str, cls: type) -> dict[str, Any]:
    names, var_kw = accepted_kwargs(cls)
    return {k: v for k, v in EVAL_DEFAULTS.get(name, {}).items() if var_kw or k in names}


def build_attack(name: str, generator_path: str, kwargs: dict[str, Any], state: dict[str, Any],
                 cache: LatentCache | None, device: torch.device, seed: int) -> Attack:
    """The transform ``name`` with the eval defaults, the user's kwargs on top, bound to nothing yet.

    It reads the cached latents when ``cache`` belongs to its generator, else it encodes each batch; a
    generator that cannot encode (a StyleGAN2 without an encoder) needs a matching cache.
    """
    from torch_semaug.train.semaug_setup import check_can_encode, load_checked_generator

    cls = check_transform_name(name, "attack")
    with _blame("attack"):
        generator = load_checked_generator(name, cls, generator_path, argument="attack", device=device)
    reason = "no --latents was given"
    if cache is not None:
        try:
            cache.check_generator(generator, "latents")
            reason = ""
        except ValueError as error:
            reason = f"the --latents cache belongs to another generator ({error})"
    if reason:
        try:
            check_can_encode(generator, "attack")
        except ValueError:
            raise ValueError(
                f"latents: the generator of attack {name} ({generator_path!r}, {type(generator).__name__}) cannot "
                f"encode images and {reason}; encode the evaluated split once with `semaug encode --generator "
                f"{generator_path} --data DATASET --split SPLIT --out DIR` and pass --latents DIR"
            ) from None
        if cache is not None:
            print(f"attack {name}: the --latents cache belongs to another generator; encoding each batch instead",
                  file=sys.stderr)
    rng = torch.Generator(device=device).manual_seed(seed)
    transform = build_transform(name, generator, defaults_for(name, cls) | kwargs, mean=state["mean"],
                                std=state["std"], rng=rng, argument="attack_kwargs")
    return Attack(name, transform, not reason)


def evaluate(model: nn.Module, loader: DataLoader, attacks: list[Attack], *, device: torch.device,
             max_grid: int, progress: bool = True) -> tuple[Tensor, Tensor]:
    """Clean correctness and labels of every example; fills each attack's ``correct`` and grid examples."""
    clean, labels = [], []
    for attack in attacks:
        attack.transform.bind(model)
    for batch in tqdm(loader, desc="eval", disable=not progress):
        x, y = batch[0].to(device), batch[1].to(device)
        with torch.no_grad():
            clean_ok = model(x).argmax(1) == y
        clean.append(clean_ok.cpu())
        labels.append(y.cpu())
        for attack in attacks:
            start = time.perf_counter()
            latents = batch[2].to(device) if attack.use_latents else None
            variants, _ = attack.transform(x, y, latents=latents)
            with torch.no_grad():
                predicted = model(variants).argmax(1)
            attack.seconds += time.perf_counter() - start
            attack.correct.append((predicted == y).cpu())
            flipped = (clean_ok & (predicted != y)).nonzero().squeeze(1).tolist()
            for i in flipped[: max(0, max_grid - len(attack.examples))]:
                attack.examples.append((x[i].cpu(), variants[i].detach().cpu(), int(y[i]), int(predicted[i])))
    return torch.cat(clean), torch.cat(labels)


def run_evaluation(checkpoint: str, attack_specs: list[tuple[str, str, dict[str, Any]]], *, output: str,
                   dataset: str | None = None, data_root: str | None = None, split: str = "test",
                   latents: str | None = None, batch_size: int = 128, val_subset: int | None = None,
                   workers: int = 2, device: str = "cpu", seed: int = 0, max_grid: int = 8,
                   progress: bool = True) -> dict[str, Any]:
    """Evaluate ``checkpoint`` clean and under each ``(name, generator_path, kwargs)``; write the report.

    Every attack is built (and every file checked) before the first image is evaluated.

    Args:
        checkpoint: a ``semaug train`` checkpoint (``last.pth``).
        attack_specs: ``(transform name, generator checkpoint, constructor overrides)`` per attack.
        output: the Markdown report (``.md``); ``.json``, ``.csv`` and the grids are written beside it.
        dataset, data_root: default: the checkpoint's.
        split: ``"train"`` or ``"test"``.
        latents: latent cache of the evaluated split, used by every attack whose generator it belongs to.
        batch_size: images per batch.
        val_subset: evaluate N images of the split, the same ones every run (the rule of a dataset name's
            ``@N``: the first N of a dataset in mixed order, a fixed seeded sample of a folder).
        workers: DataLoader workers.
        device: torch device.
        seed: seed of the attacks' random draws.
        max_grid: examples shown per attack in its grid.
        progress: tqdm bar.

    Returns:
        The report's numbers (as in the JSON file) and the paths written.
    """
    _check_arguments(output, batch_size, val_subset, workers, seed, max_grid)
    torch_device = torch.device(device)
    with _blame("checkpoint"):
        model, state = load_classifier(checkpoint, torch_device)
    args = state["args"]
    dataset = dataset or args["dataset"]
    root = data_root or args["data_root"]
    view = encoding_transform(args.get("img_size"))
    data = create_dataset(dataset, root, split, transform=v2.Compose([*view.transforms,
                                                                     v2.Normalize(state["mean"], state["std"])]))
    cache = None
    if latents is not None:
        with _blame("latents"):
            cache = LatentCache.open(latents)
            cache.check_dataset(create_dataset(dataset, root, split, transform=view), "latents")
        data = LatentDataset(data, cache, verify=False)
    attacks = [build_attack(name, path, kwargs, state, cache, torch_device, seed)
               for name, path, kwargs in attack_specs]
    names = [a.name for a in attacks]
    for i, attack in enumerate(attacks):
        if names.count(attack.name) > 1:
            attack.name = f"{attack.name}-{names[:i + 1].count(attack.name)}"
    if val_subset is not None:
        data = Subset(data, pick(dataset, len(data), val_subset))  # type: ignore[arg-type]
    loader = DataLoader(data, batch_size=batch_size, shuffle=False, num_workers=workers)
    clean, labels = evaluate(model, loader, attacks, device=torch_device, max_grid=max_grid, progress=progress)
    outcomes = [a.outcome() for a in attacks]
    report = summary(checkpoint=checkpoint, dataset=dataset, split=split, val_subset=val_subset, seed=seed,
                     classes=state["classes"], labels=labels, clean=clean, attacks=outcomes)
    return report | write_report(output, report, outcomes, state["classes"], state["mean"], state["std"])


def _check_arguments(output: str, batch_size: int, val_subset: int | None, workers: int, seed: int,
                     max_grid: int) -> None:
    if not str(output).endswith(".md"):
        raise ValueError(f"output: expected a Markdown file name ending in .md (the .json and .csv go beside it), "
                         f"got {output!r}")
    check_int_at_least(batch_size, 1, "batch_size")
    if val_subset is not None:
        check_int_at_least(val_subset, 1, "val_subset")
    check_int_at_least(workers, 0, "workers")
    check_int_at_least(seed, 0, "seed")
    check_int_at_least(max_grid, 0, "max_grid")
