"""What a latent eps means for a StyleGAN2: its W spread, and how often a search in the eps ball changes colour.

For each eps, a gradient search (:class:`~torch_semaug.AdversarialLatentAttack`, l-inf, on the generator's
fine layers ``G.fine_layers``, the layers AdvMix moves) tries to change the *dominant stroke colour* of
generated digits: the argmax over R, G, B of the mean colour of the stroke pixels (brightness-weighted).
It reports the fraction of samples whose dominant colour changed, for absolute eps and for eps relative to
``G.latent_spread`` (``relative_eps=True``). A measurement, not a test::

    python -m benchmarks.latent_spread --samples 200

``--splits`` asks instead which W+ layers carry colour and which the digit: for each split ``s`` it mixes
layers ``[:s]`` of one sample with layers ``[s:]`` of another (what :class:`~torch_semaug.LatentMix` does at
its ``layers=(s, num_ws)``) and reports how often the mix takes the second sample's dominant colour and, with
``--data-root`` (a small CNN trained on grey MNIST judges the digit), how often it keeps the first's digit::

    python -m benchmarks.latent_spread --splits --generator G.safetensors --data-root $SEMAUG_DATA --out DIR
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import torch
from torch import Tensor, nn

import torch_semaug as ts
from benchmarks._bench import stack, table, write_results
from torch_semaug.data.color_mnist import ColorMNIST
from torch_semaug.train.quick import small_cnn, train
from torch_semaug.viz import save_grid

ASSET = "torch_semaug/assets/colormnist32_stylegan2.safetensors"
COLOUR_SAMPLES = 2000  # random draws per generator whose dominant stroke colour is counted
JUDGE = dict(digits=10000, steps=600)  # the digit judge's training digits and Adam steps of 64


def decode01(generator: ts.StyleGAN2, latents: Tensor) -> Tensor:
    """The generator's images in ``[0, 1]`` (it decodes to ``[-1, 1]``)."""
    return (generator.decode(latents) + 1) / 2


class StrokeColour(nn.Module):
    """Logits = the brightness-weighted mean colour of the strokes: argmax is the dominant channel."""

    def forward(self, images: Tensor) -> Tensor:
        weight = images.amax(1, keepdim=True)  # strokes are bright, the background black
        return 10 * (images * weight).sum((2, 3)) / weight.sum((2, 3)).clamp_min(1e-6)


def changed_fraction(generator: ts.StyleGAN2, latents: Tensor, eps: float, relative: bool, steps: int) -> float:
    """Fraction of samples whose dominant stroke colour a search in the eps ball changes."""
    images = decode01(generator, latents)
    model = StrokeColour()
    with torch.no_grad():
        colour = model(images).argmax(1)
    attack = ts.AdversarialLatentAttack(generator, model=model, eps=eps, step_size=2.5 * eps / steps, steps=steps,
                                        random_start=False, relative_eps=relative, layers=generator.fine_layers)
    out, _ = attack(images, colour, latents=latents)
    with torch.no_grad():
        return float((model(out).argmax(1) != colour).float().mean())


def colour_shares(generator: ts.StyleGAN2, samples: int, *, seed: int = 0, batch: int = 250) -> Tensor:
    """Share of ``samples`` random draws of the generator whose dominant stroke colour is R, G and B."""
    rng, counts = torch.Generator().manual_seed(seed), torch.zeros(3)
    with torch.no_grad():
        for start in range(0, samples, batch):
            images = decode01(generator, generator.sample_latent(min(batch, samples - start), rng))
            counts += torch.bincount(StrokeColour()(images).argmax(1), minlength=3).float()
    return counts / samples


class Grey(nn.Module):
    """Colour removed: each pixel's brightest channel in all three (a digit judge that ignores colour)."""

    def forward(self, images: Tensor) -> Tensor:
        return images.amax(1, keepdim=True).expand(-1, 3, -1, -1)


def digit_judge(data_root: str | None, *, digits: int = JUDGE["digits"], steps: int = JUDGE["steps"],
                seed: int = 0) -> nn.Module:
    """A small CNN trained on grey MNIST training digits (``steps`` Adam steps of 64), colour-blind."""
    images, labels = stack(ColorMNIST.from_mnist(data_root, train=True, coloring="uniform", sigma=0.0), digits)
    cnn = train(small_cnn(10), "nominal", Grey()(images), labels, steps=steps, batch=64, seed=seed,
                num_classes=10, desc="digit judge")
    return nn.Sequential(Grey(), cnn).eval()


def mixing_transfer(generator: ts.StyleGAN2, *, judge: nn.Module | None = None, samples: int = 400,
                    seed: int = 0) -> list[tuple[int, float, float]]:
    """Per split ``s`` in ``1..num_ws - 1``: ``(s, colour, digit)`` for mixes of a base's W+ layers ``[:s]``
    with a donor's ``[s:]``: the share taking the donor's dominant colour among pairs whose colours differ,
    and the share keeping the base's digit (per ``judge``) among pairs whose digits differ; NaN where no
    pair differs or no judge is given."""
    rng = torch.Generator().manual_seed(seed)
    base, donor = generator.sample_latent(samples, rng), generator.sample_latent(samples, rng)

    def labels(latents: Tensor) -> tuple[Tensor, Tensor | None]:
        images = decode01(generator, latents)
        return StrokeColour()(images).argmax(1), None if judge is None else judge(images).argmax(1)

    def share(hits: Tensor, among: Tensor) -> float:
        return float(hits[among].float().mean()) if bool(among.any()) else math.nan

    rows = []
    with torch.no_grad():
        (base_colour, base_digit), (donor_colour, donor_digit) = labels(base), labels(donor)
        for split in range(1, generator.num_ws):
            colour, digit = labels(generator.mix(base, donor, split))
            rows.append((split, share(colour == donor_colour, base_colour != donor_colour),
                         math.nan if judge is None else share(digit == base_digit, base_digit != donor_digit)))
    return rows


def render_splits(generator: ts.StyleGAN2, rows: list[tuple[int, float, float]]) -> str:
    def pct(value: float) -> str:
        return "–" if math.isnan(value) else f"{value:.0%}"

    return table(["split: layers kept from the base", "from the donor (resolution)", "takes the donor's colour",
                  "keeps the base's digit"],
                 [[f"0-{s - 1}", f"{s}-{generator.num_ws - 1} ({generator.layer_resolution(s)} px)"
                   + (" = fine layers" if s == generator.fine_split else ""), pct(c), pct(d)] for s, c, d in rows])


def mixing_grid(generator: ts.StyleGAN2, path: Path, *, pairs: int = 8, seed: int = 0) -> None:
    """A labelled PNG: a row of bases, a row of donors, then one row per split of their mixes."""
    rng = torch.Generator().manual_seed(seed)
    base, donor = generator.sample_latent(pairs, rng), generator.sample_latent(pairs, rng)
    rows = [base, donor, *(generator.mix(base, donor, s) for s in range(1, generator.num_ws))]
    captions = [c for c in ["base", "donor", *(f"keep 0-{s - 1}" for s in range(1, generator.num_ws))]
                for _ in range(pairs)]
    with torch.no_grad():
        images = torch.cat([decode01(generator, w) for w in rows])
    save_grid(images, path, nrow=pairs, upscale=3, captions=captions)


def splits(args: argparse.Namespace) -> None:
    start, judge = time.time(), None if args.data_root is None else digit_judge(args.data_root)
    sections = []
    for path in args.generator:
        generator = ts.StyleGAN2.load(path)
        shares = colour_shares(generator, COLOUR_SAMPLES)
        png = Path(args.out) / f"stylegan2_layers_{Path(path).stem}.png"
        mixing_grid(generator, png)
        sections += [f"## `{path}`", "", f"W spread {generator.latent_spread:.3f}; dominant colour of "
                     f"{COLOUR_SAMPLES} samples: red {shares[0]:.1%}, green {shares[1]:.1%}, blue {shares[2]:.1%}. "
                     f"Mixes: [{png.name}]({png.name}).",
                     "", render_splits(generator, mixing_transfer(generator, judge=judge, samples=args.samples)), ""]
        print("\n".join(sections[-3:]), flush=True)
    notes = [f"{args.samples} pairs of random samples per generator; the digit judge: "
             + (f"a small CNN, {JUDGE['steps']} Adam steps of 64 on {JUDGE['digits']:,} grey MNIST training digits."
                if judge else "none (no --data-root).")]
    write_results(Path(args.out) / "stylegan2_layers.md", "Which StyleGAN2 layers carry colour and digit", start,
                  sections, notes)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--generator", action="append", default=None, help=f"StyleGAN2 file (default {ASSET}); "
                        "--splits takes several")
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--splits", action="store_true", help="which layers carry colour and digit (see above)")
    parser.add_argument("--data-root", default=None, help="--splits: MNIST folder for the digit judge")
    parser.add_argument("--out", default="benchmarks/results", help="--splits: folder of stylegan2_layers.md")
    args = parser.parse_args(argv)
    args.generator = args.generator or [ASSET]
    if args.splits:
        splits(args)
        return
    generator = ts.load_generator(args.generator[0])
    latents = generator.sample_latent(args.samples, torch.Generator().manual_seed(0))
    spread = generator.latent_spread
    print(f"{args.generator[0]}: latent_spread {spread:.3f}, fine layers {generator.fine_layers} of {generator.num_ws}")
    print("| eps | in units of the spread | dominant stroke colour changed |\n|---|---|---|")
    for eps in (0.03, 0.1, 0.3):
        changed = changed_fraction(generator, latents, eps, False, args.steps)
        print(f"| {eps} (absolute) | {eps / spread:.3f} | {changed:.0%} |")
    for rel in (0.05, 0.2, 0.5):
        print(f"| {rel * spread:.3f} (relative_eps=True, eps={rel}) | {rel} | "
              f"{changed_fraction(generator, latents, rel, True, args.steps):.0%} |")


if __name__ == "__main__":
    main()
