"""What ``semaug eval`` writes: ``OUTPUT.md`` for a person, ``OUTPUT.json`` and ``OUTPUT.csv`` for a program,
and per attack ``OUTPUT_<attack>.png``, the examples it turned from correct to wrong.

Accuracies are percentages. *Worst case* counts an image as correct only if both its clean and its attacked
version are classified correctly. The CSV has one row per (attack, class), ``all`` for the whole split, with
``clean`` as the first attack.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from torch_semaug._io import write_text_atomic
from torch_semaug.viz.grid import save_grid

TILE_PIXELS = 96  # tiles are enlarged (nearest neighbour) to about this size so that small images stay readable


@dataclass
class AttackOutcome:
    """One attack's results over the evaluated images."""

    name: str  # label in the report (the transform name, numbered if it is requested twice)
    transform: str  # the transform's repr
    cached_latents: bool
    correct: Tensor  # (N,) bool: attacked image classified correctly
    seconds: float
    # (original, variant, label, predicted label) of examples turned from correct to wrong, classifier space
    examples: list[tuple[Tensor, Tensor, int, int]] = field(default_factory=list)


def _pct(mask: Tensor) -> float | None:
    return round(100.0 * float(mask.float().mean()), 4) if mask.numel() else None


def summary(*, checkpoint: str, dataset: str, split: str, val_subset: int | None, seed: int, classes: list[str],
            labels: Tensor, clean: Tensor, attacks: list[AttackOutcome]) -> dict[str, Any]:
    """Every number of the report, JSON-ready."""
    rows = [{"attack": "clean", "transform": None, "cached_latents": False, "seconds": None,
             "correct": clean, "worst": clean}]
    rows += [{"attack": a.name, "transform": a.transform, "cached_latents": a.cached_latents,
              "seconds": round(a.seconds, 2), "correct": a.correct, "worst": a.correct & clean} for a in attacks]
    results = []
    for row in rows:
        correct, worst = row.pop("correct"), row.pop("worst")
        per_class = {name: {"images": int((labels == k).sum()), "accuracy": _pct(correct[labels == k]),
                            "worst_case": _pct(worst[labels == k])}
                     for k, name in enumerate(classes) if bool((labels == k).any())}
        results.append(row | {"accuracy": _pct(correct), "worst_case": _pct(worst),
                              "flipped": int((clean & ~correct).sum()), "per_class": per_class})
    return {"checkpoint": checkpoint, "dataset": dataset, "split": split, "images": len(labels),
            "val_subset": val_subset, "seed": seed, "results": results}


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def markdown(report: dict[str, Any], grids: dict[str, str], outcomes: list[AttackOutcome]) -> str:
    """The Markdown report: summary, per class, and a section for every attack."""
    subset = f", a fixed subset of {report['val_subset']} images" if report["val_subset"] else ""
    results = report["results"]
    lines = [
        f"# Evaluation of `{report['checkpoint']}`", "",
        f"{report['dataset']} ({report['split']}{subset}): {report['images']} images. Accuracy (%) on the attacked "
        "images; *worst case* counts an image as correct only if both the clean and the attacked version are "
        "classified correctly; *flipped*: correct clean, wrong attacked.", "",
        "| attack | transform | accuracy | worst case | flipped | seconds |", "|---|---|---|---|---|---|",
    ]
    for r in results:
        transform = "-" if r["transform"] is None else f"`{r['transform']}`" + (
            " (cached latents)" if r["cached_latents"] else "")
        seconds = "-" if r["seconds"] is None else f"{r['seconds']:.1f}"
        lines.append(f"| {r['attack']} | {transform} | {_fmt(r['accuracy'])} | {_fmt(r['worst_case'])} | "
                     f"{r['flipped']} | {seconds} |")
    lines += ["", "## Per class (accuracy %)", "", "| class | images | " + " | ".join(r["attack"] for r in results)
              + " |", "|---|---|" + "---|" * len(results)]
    for name, cell in results[0]["per_class"].items():
        accs = " | ".join(_fmt(r["per_class"][name]["accuracy"]) for r in results)
        lines.append(f"| {name} | {cell['images']} | {accs} |")
    for r, outcome in zip(results[1:], outcomes):
        lines += ["", f"## {r['attack']}", "", f"`{r['transform']}`: accuracy {_fmt(r['accuracy'])} % "
                  f"(clean {_fmt(results[0]['accuracy'])} %), {r['flipped']} of {report['images']} images turned "
                  f"from correct to wrong in {r['seconds']:.1f} s.", ""]
        if r["flipped"] == 0:
            lines.append("No image was turned from correct to wrong by this attack.")
            continue
        shown = len(outcome.examples)
        lines += [f"{shown} of them (original, attacked, difference rescaled to full range; `true` is the label, "
                  f"`pred` the prediction on the attacked image):" if shown else
                  "No grid: --max-grid is 0.", ""]
        if r["attack"] in grids:
            lines.append(f"![{r['attack']}]({grids[r['attack']]})")
    return "\n".join(lines) + "\n"


def csv_text(report: dict[str, Any]) -> str:
    """One row per (attack, class); class ``all`` is the whole evaluated split."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["attack", "class", "images", "accuracy", "worst_case", "flipped", "seconds", "transform"])
    for r in report["results"]:
        writer.writerow([r["attack"], "all", report["images"], r["accuracy"], r["worst_case"], r["flipped"],
                         r["seconds"], r["transform"]])
        for name, cell in r["per_class"].items():
            writer.writerow([r["attack"], name, cell["images"], cell["accuracy"], cell["worst_case"], "", "", ""])
    return buffer.getvalue()


def to_unit(images: Tensor, mean: Sequence[float], std: Sequence[float]) -> Tensor:
    """Classifier-space images back to ``[0, 1]`` for display."""
    view = (1, -1, 1, 1)
    return (images * torch.tensor(std).view(view) + torch.tensor(mean).view(view)).clamp(0, 1)


def write_examples(path: Path, outcome: AttackOutcome, classes: list[str], mean: Sequence[float],
                   std: Sequence[float]) -> Path:
    """Rows of original | attacked | difference, enlarged, captioned with the true and predicted labels."""
    tiles, captions = [], []
    for original, variant, label, predicted in outcome.examples:
        a, b = to_unit(torch.stack([original, variant]), mean, std)
        diff = (b - a).abs()
        tiles += [a, b, diff / diff.max().clamp_min(1e-8)]
        captions += [f"true {classes[label]}", f"pred {classes[predicted]}", ""]
    upscale = max(1, TILE_PIXELS // max(tiles[0].shape[-2:]))
    return save_grid(torch.stack(tiles), path, nrow=3, upscale=upscale, captions=captions,
                     header=("original", "attacked", "difference"))


def write_report(output: str | Path, report: dict[str, Any], outcomes: list[AttackOutcome], classes: list[str],
                 mean: Sequence[float], std: Sequence[float]) -> dict[str, Any]:
    """Write the Markdown, JSON, CSV and grids; returns their paths."""
    out = Path(output)
    grids = {}
    for outcome in outcomes:
        if outcome.examples:
            grid = write_examples(out.with_name(f"{out.stem}_{outcome.name}.png"), outcome, classes, mean, std)
            grids[outcome.name] = grid.name
    json_path, csv_path = out.with_suffix(".json"), out.with_suffix(".csv")
    write_text_atomic(json_path, json.dumps(report, indent=2) + "\n")
    write_text_atomic(csv_path, csv_text(report))
    write_text_atomic(out, markdown(report, grids, outcomes))
    return {"report": str(out), "json": str(json_path), "csv": str(csv_path),
            "grids": [str(out.with_name(g)) for g in grids.values()]}
