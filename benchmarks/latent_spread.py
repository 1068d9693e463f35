"""What a latent eps means for a StyleGAN2: its W spread, and how often a search in the eps ball changes colour.

For each eps, a gradient search (:class:`~torch_semaug.AdversarialLatentAttack`, l-inf, on the generator's
fine layers ``G.fine_layers``, the layers AdvMix moves) tries to change the *dominant stroke colour* of
generated digits: the argmax over R, G, B of the mean colour of the stroke pixels (brightness-weighted).
It reports the fraction of samples whose dominant colour changed, for absolute eps and for eps relative to
``G.latent_spread`` (``relative_eps=True``). A measurement, not a test::

    python -m benchmarks.latent_spread --samples 200
"""

from __future__ import annotations

import argparse

import torch
from torch import Tensor, nn

import torch_semaug as ts

ASSET = "torch_semaug/assets/colormnist32_stylegan2.safetensors"


class StrokeColour(nn.Module):
    """Logits = the brightness-weighted mean colour of the strokes: argmax is the dominant channel."""

    def forward(self, images: Tensor) -> Tensor:
        weight = images.amax(1, keepdim=True)  # strokes are bright, the background black
        return 10 * (images * weight).sum((2, 3)) / weight.sum((2, 3)).clamp_min(1e-6)


def changed_fraction(generator: ts.StyleGAN2, latents: Tensor, eps: float, relative: bool, steps: int) -> float:
    """Fraction of samples whose dominant stroke colour a search in the eps ball changes."""
    images = (generator.decode(latents) + 1) / 2
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
            images = (generator.decode(generator.sample_latent(min(batch, samples - start), rng)) + 1) / 2
            counts += torch.bincount(StrokeColour()(images).argmax(1), minlength=3).float()
    return counts / samples


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--generator", default=ASSET)
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--steps", type=int, default=10)
    args = parser.parse_args(argv)
    generator = ts.load_generator(args.generator)
    latents = generator.sample_latent(args.samples, torch.Generator().manual_seed(0))
    spread = generator.latent_spread
    print(f"{args.generator}: latent_spread {spread:.3f}, fine layers {generator.fine_layers} of {generator.num_ws}")
    print("| eps | in units of the spread | dominant stroke colour changed |\n|---|---|---|")
    for eps in (0.03, 0.1, 0.3):
        changed = changed_fraction(generator, latents, eps, False, args.steps)
        print(f"| {eps} (absolute) | {eps / spread:.3f} | {changed:.0%} |")
    for rel in (0.05, 0.2, 0.5):
        print(f"| {rel * spread:.3f} (relative_eps=True, eps={rel}) | {rel} | "
              f"{changed_fraction(generator, latents, rel, True, args.steps):.0%} |")


if __name__ == "__main__":
    main()
