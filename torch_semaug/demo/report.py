"""The demo's outputs: ``results.md`` (accuracy table) and ``samples.png`` (original | variants | differences)."""

from __future__ import annotations

import platform
from pathlib import Path

import torch
from torch import Tensor

from torch_semaug.demo.pipeline import METHODS, DemoConfig, DemoResult
from torch_semaug.transforms.latent_mix import LatentMix
from torch_semaug.viz.grid import save_grid

COLUMNS = ("original", "recon.", "RandMix", "AdvMix", "diff Rand", "diff Adv")


def sample_columns(result: DemoResult, seed: int, steps: int = 20, restarts: int = 10,
                   layers: tuple[int, int] | None = None) -> list[Tensor]:
    """The columns of ``samples.png``, each ``(B, 3, R, R)`` in [0, 1].

    AdvMix attacks the *nominal* classifier (the one that learnt colour), with the paper's evaluation
    budget (``steps`` x ``restarts``), as in the AdvMix paper's Figure 9. Differences are to the
    reconstruction (the image the variants were decoded from), summed over channels and rescaled per
    image to [0, 1].
    """
    g = result.generator
    images, labels, latents = result.samples
    with torch.no_grad():
        recon = (g.decode(latents).clamp(-1, 1) + 1) / 2
    rand = LatentMix(g, layers=layers, rng=torch.Generator().manual_seed(seed))(images, labels, latents=latents)[0]
    adv = LatentMix(g, model=result.models["nominal"], mode="adversarial", layers=layers, steps=steps,
                    restarts=restarts, rng=torch.Generator().manual_seed(seed))(images, labels, latents=latents)[0]
    diffs = []
    for variant in (rand, adv):
        d = (variant - recon).abs().sum(1, keepdim=True)
        diffs.append((d / d.flatten(1).amax(1).clamp_min(1e-6).view(-1, 1, 1, 1)).expand(-1, 3, -1, -1))
    return [images, recon, rand, adv, *diffs]


def save_samples(columns: list[Tensor], path: Path, scale: int = 4) -> None:
    """One row per example, one column per entry of :data:`COLUMNS`, with a text header."""
    tiles = torch.stack(columns, 1).flatten(0, 1)
    save_grid(tiles, path, nrow=len(columns), upscale=scale, header=COLUMNS[: len(columns)])


def results_markdown(result: DemoResult, config: DemoConfig, seed: int, command: str, wall: float,
                     cpu: float, threads: int, quick: bool) -> str:
    nominal = result.accuracies["nominal"][1]
    rows = [f"| {m} | {result.accuracies[m][0]:.1f} | {result.accuracies[m][1]:.1f} | "
            f"{result.accuracies[m][1] - nominal:+.1f} |" for m in METHODS]
    stages = ", ".join(f"{k} {v:.0f} s" for k, v in result.seconds.items())
    verdict = all(result.accuracies[m][1] > nominal for m in ("RandMix", "AdvMix"))
    return "\n".join([
        "# semaug demo: colour-biased shapes" + (" (--quick: tiny sizes, numbers meaningless)" if quick else ""),
        "",
        f"- command: `{command}` (seed {seed})",
        f"- data: {config.train_images} training shapes, each class in its own colour (std 0.05); "
        f"{config.heldout_images} held-out shapes coloured the same way; {config.test_images} test shapes in "
        "uniformly random colours (the unbiased test set)",
        f"- generator: `{config.generator.name}` (StyleGAN2, {result.generator.resolution} px, "
        f"{result.generator.num_ws} W+ layers, LatentMix swaps layers={config.layers})",
        f"- W+ latents of the training images: optimisation inversion, {config.invert_steps} steps "
        f"(mean reconstruction PSNR {result.psnr:.1f} dB)",
        f"- classifier: small CNN, {config.classifier_steps} Adam steps of {config.batch} images, the same init "
        f"and batches for every method; {config.p:.0%} of each batch augmented; AdvMix "
        f"{config.adv_restarts} restarts x {config.adv_steps} steps, eps 0.03",
        f"- machine: {platform.machine()}, {threads} torch threads; wall {wall:.0f} s ({stages}); "
        f"process CPU time {cpu:.0f} s",
        "",
        "| method | biased held-out accuracy (%) | unbiased test accuracy (%) | vs nominal (points) |",
        "|---|---:|---:|---:|",
        *rows,
        "",
        "RandMix and AdvMix " + ("both beat" if verdict else "do not both beat") +
        " nominal training on the unbiased test set in this run.",
        "",
    ])
