"""Accuracy of a trained classifier on clean images and under each semantic attack (``semaug eval``).

Attacks default to the papers' evaluation settings (AdvMix: eps 0.03, step 0.005, Nr = 10 restarts, K = 20
steps; flow Adversarial-LA on CIFAR-10: l2, eps 1.0, alpha 0.5, k = 3; pixel PGD-20 at 8/255 for the identity
baseline); ``--attack-kwargs`` overrides any of them.
The report is Markdown: a summary table, a per-class table and, per attack, a PNG grid of examples the
attack turned from correct to wrong (original | variant | rescaled difference).
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Subset
from torchvision.transforms import v2
from torchvision.utils import make_grid, save_image
from tqdm.auto import tqdm

from torch_semaug._io import write_atomic, write_text_atomic
from torch_semaug.data.datasets import create_dataset
from torch_semaug.data.latent_cache import LatentCache
from torch_semaug.data.latent_dataset import LatentDataset
from torch_semaug.train.checkpoint import load_checkpoint
from torch_semaug.train.data import encoding_transform
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
    correct: Tensor = field(default_factory=lambda: torch.zeros(0, dtype=torch.bool))
    seconds: float = 0.0
    examples: list[Tensor] = field(default_factory=list)  # (original, variant) pairs, classifier space


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
    """The transform ``name`` with the eval defaults, the user's kwargs on top, bound to nothing yet."""
    from torch_semaug.train.semaug_setup import check_can_encode, load_checked_generator

    cls = check_transform_name(name, "attack")
    generator = load_checked_generator(name, cls, generator_path, argument="attack", device=device)
    use_latents = False
    if cache is not None:
        try:
            cache.check_generator(generator)
            use_latents = True
        except ValueError:
            use_latents = False
    if not use_latents:
        check_can_encode(generator, "latents")
    rng = torch.Generator(device=device).manual_seed(seed)
    transform = build_transform(name, generator, defaults_for(name, cls) | kwargs, mean=state["mean"],
                                std=state["std"], rng=rng, argument="attack_kwargs")
    return Attack(name, transform, use_latents)


def to_unit(images: Tensor, mean: Sequence[float], std: Sequence[float]) -> Tensor:
    """Classifier-space images back to ``[0, 1]`` for display."""
    view = (1, -1, 1, 1)
    return (images * torch.tensor(std).view(view) + torch.tensor(mean).view(view)).clamp(0, 1)


def write_grid(path: Path, pairs: list[Tensor], mean: Sequence[float], std: Sequence[float]) -> None:
    """Rows of original | variant | difference (rescaled so the largest change is full scale)."""
    tiles = []
    for original, variant in pairs:
        a, b = to_unit(original[None], mean, std)[0], to_unit(variant[None], mean, std)[0]
        diff = (b - a).abs()
        tiles += [a, b, diff / diff.max().clamp_min(1e-8)]
    grid = make_grid(torch.stack(tiles), nrow=3, padding=2, pad_value=1.0)
    if grid.shape[0] == 1:
        grid = grid.expand(3, -1, -1)
    write_atomic(path, lambda tmp: save_image(grid, tmp, format="png"))


def evaluate(model: nn.Module, loader: DataLoader, attacks: list[Attack], *, device: torch.device,
             max_grid: int, progress: bool = True) -> tuple[Tensor, Tensor]:
    """Clean correctness and labels of every example; fills each attack's ``correct`` and grid examples."""
    clean, labels = [], []
    results: dict[str, list[Tensor]] = {a.name: [] for a in attacks}
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
                ok = model(variants).argmax(1) == y
            attack.seconds += time.perf_counter() - start
            results[attack.name].append(ok.cpu())
            flipped = (clean_ok & ~ok).nonzero().squeeze(1).tolist()
            for i in flipped[: max(0, max_grid - len(attack.examples))]:
                attack.examples.append(torch.stack([x[i].cpu(), variants[i].detach().cpu()]))
    for attack in attacks:
        attack.correct = torch.cat(results[attack.name]) if results[attack.name] else torch.zeros(0, dtype=torch.bool)
    return torch.cat(clean), torch.cat(labels)


def _pct(mask: Tensor) -> str:
    return f"{100.0 * float(mask.float().mean()):.2f}" if mask.numel() else "n/a"


def markdown_report(checkpoint: str, dataset: str, split: str, clean: Tensor, labels: Tensor,
                    attacks: list[Attack], classes: list[str], grids: dict[str, str]) -> str:
    lines = [
        f"# Evaluation of `{checkpoint}`", "",
        f"{dataset} ({split}), {len(labels)} images. Accuracy (%) on the attacked images; *worst case* counts an "
        "image as correct only if both the clean and the attacked version are classified correctly.", "",
        "| attack | transform | accuracy | worst case | seconds |", "|---|---|---|---|---|",
        f"| clean | - | {_pct(clean)} | {_pct(clean)} | - |",
    ]
    for a in attacks:
        latents = " (cached latents)" if a.use_latents else ""
        lines.append(f"| {a.name} | `{a.transform!r}`{latents} | {_pct(a.correct)} | {_pct(a.correct & clean)} "
                     f"| {a.seconds:.1f} |")
    lines += ["", "## Per class", "", "| class | n | clean | " + " | ".join(a.name for a in attacks) + " |",
              "|---|---|---|" + "---|" * len(attacks)]
    for k, name in enumerate(classes):
        mask = labels == k
        if not bool(mask.any()):
            continue
        cells = [_pct(a.correct[mask]) for a in attacks]
        lines.append(f"| {name} | {int(mask.sum())} | {_pct(clean[mask])} | " + " | ".join(cells) + " |")
    for name, grid in grids.items():
        lines += ["", f"## {name}: correct -> misclassified (original | variant | difference)", "",
                  f"![{name}]({grid})"]
    return "\n".join(lines) + "\n"


def run_evaluation(checkpoint: str, attack_specs: list[tuple[str, str, dict[str, Any]]], *, output: str,
                   dataset: str | None = None, data_root: str | None = None, split: str = "test",
                   latents: str | None = None, batch_size: int = 128, limit: int | None = None,
                   workers: int = 2, device: str = "cpu", seed: int = 0, max_grid: int = 8,
                   progress: bool = True) -> dict[str, Any]:
    """Evaluate ``checkpoint`` clean and under each ``(name, generator_path, kwargs)``; write the report.

    Every attack is built (and every file checked) before the first image is evaluated.
    """
    torch_device = torch.device(device)
    model, state = load_classifier(checkpoint, torch_device)
    args = state["args"]
    dataset = dataset or args["dataset"]
    root = data_root or args["data_root"]
    view = encoding_transform(args.get("img_size"))
    data = create_dataset(dataset, root, split, transform=v2.Compose([*view.transforms,
                                                                     v2.Normalize(state["mean"], state["std"])]))
    cache = None
    if latents is not None:
        cache = LatentCache.open(latents)
        cache.check_dataset(create_dataset(dataset, root, split, transform=view), "latents")
        data = LatentDataset(data, cache, verify=False)
    attacks = [build_attack(name, path, kwargs, state, cache, torch_device, seed)
               for name, path, kwargs in attack_specs]
    names = [a.name for a in attacks]
    for i, attack in enumerate(attacks):
        if names.count(attack.name) > 1:
            attack.name = f"{attack.name}-{names[:i + 1].count(attack.name)}"
    if limit is not None:
        data = Subset(data, range(min(limit, len(data))))  # type: ignore[arg-type]
    loader = DataLoader(data, batch_size=batch_size, shuffle=False, num_workers=workers)
    clean, labels = evaluate(model, loader, attacks, device=torch_device, max_grid=max_grid, progress=progress)
    out = Path(output)
    grids = {}
    for attack in attacks:
        if attack.examples:
            grid = out.with_name(f"{out.stem}_{attack.name}.png")
            write_grid(grid, attack.examples, state["mean"], state["std"])
            grids[attack.name] = grid.name
    report = markdown_report(checkpoint, dataset, split, clean, labels, attacks, state["classes"], grids)
    write_text_atomic(out, report)
    return {"clean": 100.0 * float(clean.float().mean()),
            **{a.name: 100.0 * float(a.correct.float().mean()) for a in attacks}, "report": str(out),
            "grids": [str(out.with_name(g)) for g in grids.values()]}
