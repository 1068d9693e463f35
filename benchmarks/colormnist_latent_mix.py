"""Color-MNIST with the project's StyleGAN2: encoder reconstruction PSNR and the LatentMix figure.

1. trains the learned encoder (NaTra BIES) on generated pairs + real biased Color-MNIST training digits,
2. reports reconstruction PSNR on held-out *test* digits (unbiased colours): encoder forward pass alone,
   with a few refinement steps, and optimisation inversion (AdvMix Alg. 1) from w_avg,
3. trains a small CNN on the *biased* training set (it learns colour), and
4. draws the grid of the AdvMix paper's Figure 9: original | its reconstruction | RandMix variants | AdvMix
   variant | rescaled |differences| to the reconstruction.

    python -m benchmarks.colormnist_latent_mix --generator torch_semaug/assets/colormnist32_stylegan2.safetensors \\
        --data-root $SEMAUG_DATA --out docs/images
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
from torch import nn

import torch_semaug as ts
from torch_semaug._io import write_text_atomic
from torch_semaug.data.color_mnist import ColorMNIST
from torch_semaug.generators.encoders import LearnedEncoder, OptimizationEncoder, psnr
from torch_semaug.train import quick
from torch_semaug.viz import save_grid


def stack(dataset: ColorMNIST, n: int, offset: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    items = [dataset[i] for i in range(offset, offset + n)]
    return torch.stack([x for x, _ in items]), torch.tensor([y for _, y in items])


def train_classifier(train: ColorMNIST, steps: int, seed: int) -> nn.Module:
    images, labels = stack(train, min(len(train), steps * 64))
    return quick.train(quick.small_cnn(10, width=16), "nominal", images, labels, steps=steps, batch=64, seed=seed,
                       num_classes=10)


def figure(generator, model, real, images, labels, latents, out: Path, variants: int, seed: int) -> None:
    """Columns: real digit | its reconstruction | RandMix x variants | AdvMix | rescaled differences."""
    rows = [images]
    rand = ts.LatentMix(generator, rng=torch.Generator().manual_seed(seed))
    for _ in range(variants):
        rows.append(rand(images, labels, latents=latents)[0])
    adv = ts.LatentMix(generator, model=model, mode="adversarial", steps=20, restarts=10,
                       rng=torch.Generator().manual_seed(seed))
    rows.append(adv(images, labels, latents=latents)[0])
    diffs = []
    for variant in rows[1:]:
        d = (variant - images).abs().sum(1, keepdim=True)
        diffs.append((d / d.flatten(1).amax(1).clamp_min(1e-6).view(-1, 1, 1, 1)).expand(-1, 3, -1, -1))
    columns = torch.stack([real, *rows, *diffs], dim=1)       # (B, 1 + variants + 1 + diffs, 3, H, W)
    save_grid(columns.flatten(0, 1), out, nrow=columns.shape[1], upscale=3)


def mixing_grid(generator, out: Path, n: int, seed: int) -> None:
    """Style mixing of generated digits: row i keeps content i's coarse layers, column j gives the fine ones."""
    gen = torch.Generator().manual_seed(seed)
    content = generator.sample_latent(n, gen)
    style = generator.sample_latent(n, gen)
    with torch.no_grad():
        blank = torch.ones(1, *generator.image_shape)
        top = torch.cat([blank, generator.decode(style) * 0.5 + 0.5])
        rows = [top]
        for i in range(n):
            mixed = generator.mix(content[i : i + 1].expand(n, -1, -1), style, generator.fine_split)
            rows.append(torch.cat([generator.decode(content[i : i + 1]) * 0.5 + 0.5,
                                   generator.decode(mixed) * 0.5 + 0.5]))
    save_grid(torch.cat(rows), out, nrow=n + 1, upscale=3)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--generator", required=True)
    parser.add_argument("--data-root", default=None)
    parser.add_argument("--out", type=Path, default=Path("docs/images"))
    parser.add_argument("--encoder", type=Path, default=None, help="load/save the learned encoder here")
    parser.add_argument("--encoder-steps", type=int, default=1500)
    parser.add_argument("--eval-images", type=int, default=256)
    parser.add_argument("--refine-steps", type=int, default=50)
    parser.add_argument("--invert-steps", type=int, default=200, help="steps of the optimisation inversion")
    parser.add_argument("--classifier-steps", type=int, default=300)
    parser.add_argument("--rows", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    start = time.time()
    generator = ts.StyleGAN2.load(args.generator)
    train = ColorMNIST.from_mnist(args.data_root, train=True)           # biased colours
    test = ColorMNIST.from_mnist(args.data_root, train=False)           # uniform colours, held out
    if args.encoder is not None and args.encoder.exists():
        encoder = LearnedEncoder.load(args.encoder, generator=generator)
    else:
        encoder = LearnedEncoder(generator)
        real, _ = stack(train, 4096)
        loader = torch.utils.data.DataLoader(real * 2 - 1, batch_size=32, shuffle=True,
                                             generator=torch.Generator().manual_seed(args.seed))
        encoder.fit(steps=args.encoder_steps, batch_size=32, real_images=loader, seed=args.seed)
        if args.encoder is not None:
            encoder.save(args.encoder)
    held, held_labels = stack(test, args.eval_images)
    x = held * 2 - 1
    t0 = time.time()
    w_fwd = encoder.encode(x)
    fwd_s = time.time() - t0
    t0 = time.time()
    w_ref = encoder.encode(x, refine_steps=args.refine_steps)
    ref_s = time.time() - t0
    t0 = time.time()
    w_opt = OptimizationEncoder(generator, steps=args.invert_steps, batch_size=args.eval_images).encode(x)
    opt_s = time.time() - t0
    table = ["| encoder | PSNR (dB), mean over held-out test digits | images/s |", "|---|---:|---:|"]
    n = len(x)
    for name, w, secs in (("learned, 1 forward pass", w_fwd, fwd_s),
                          (f"learned + {args.refine_steps} refinement steps", w_ref, ref_s),
                          (f"optimisation from w_avg, {args.invert_steps} steps", w_opt, opt_s)):
        with torch.no_grad():
            value = psnr(generator.decode(w), x).mean()
        table.append(f"| {name} | {value:.2f} | {n / secs:.1f} |")
    command = "python -m benchmarks.colormnist_latent_mix " + " ".join(argv if argv is not None else sys.argv[1:])
    report = "\n".join([f"- command: `{command}`", f"- {n} Color-MNIST test digits (uniform colours), "
                        f"perceptual features: {encoder._perceptual().source}; wall {time.time() - start:.0f} s",
                        "", *table]) + "\n"
    print(report)
    args.out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(args.out / "colormnist_encoder_psnr.md", report)
    model = train_classifier(train, args.classifier_steps, args.seed)
    with torch.no_grad():
        biased_acc = (model(stack(train, 1000, 50000)[0]).argmax(1) == stack(train, 1000, 50000)[1]).float().mean()
        test_x, test_y = stack(test, 1000, len(test) - 1000)
        test_acc = (model(test_x).argmax(1) == test_y).float().mean()
    line = (f"small CNN trained on biased Color-MNIST: accuracy {biased_acc:.3f} (biased), "
            f"{test_acc:.3f} (unbiased test)")
    print(line)
    write_text_atomic(args.out / "colormnist_encoder_psnr.md", report + f"\n{line}\n")
    rows = args.rows
    recon = (generator.decode(w_ref[:rows]) * 0.5 + 0.5).clamp(0, 1)
    figure(generator, model, held[:rows], recon, held_labels[:rows], w_ref[:rows],
           args.out / "latent_mix_colormnist.png", 4, args.seed)
    mixing_grid(generator, args.out / "style_mixing_colormnist.png", 6, args.seed)
    print(f"wrote {args.out / 'latent_mix_colormnist.png'} and {args.out / 'style_mixing_colormnist.png'}")


if __name__ == "__main__":
    main()
