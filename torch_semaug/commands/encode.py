"""``semaug encode``: encode a dataset once into a latent cache (resumable), report reconstruction PSNR."""

from __future__ import annotations

import argparse
from functools import partial
from pathlib import Path

import torch


def configure(parser: argparse.ArgumentParser) -> None:
    from torch_semaug.data.datasets import DATASETS, SPLITS, default_data_root

    parser.add_argument("--generator", required=True, metavar="PATH", help="generator checkpoint (.safetensors)")
    parser.add_argument("--generator-kind", default=None, help="require this generator kind (e.g. stylegan2)")
    parser.add_argument("--encoder", default=None, metavar="SPEC", help="StyleGAN2 only: a learned encoder "
                        ".safetensors (PATH[:REFINE_STEPS]), optimize[:STEPS] (optimisation inversion), or "
                        "learned:STEPS (fit a learned encoder on G's samples and this dataset first; saved as "
                        "OUT/encoder.safetensors and reused when the command is rerun)")
    parser.add_argument("--data", required=True, metavar="NAME", help=f"dataset: one of {', '.join(DATASETS)}")
    parser.add_argument("--data-root", default=default_data_root(), help="dataset root (default: $SEMAUG_DATA)")
    parser.add_argument("--split", default="train", choices=SPLITS, help="which split to encode")
    parser.add_argument("--img-size", type=int, default=None, help="resize images to this size first "
                        "(use the --img-size you train with)")
    parser.add_argument("--out", required=True, metavar="DIR", help="cache directory (resumes an unfinished one)")
    parser.add_argument("-b", "--batch-size", type=int, default=64, help="images per encoder call")
    parser.add_argument("-j", "--workers", type=int, default=2, help="DataLoader workers")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--psnr-samples", type=int, default=256, help="images used for the reconstruction PSNR")


def fit_learned_encoder(spec: str, generator, dataset, out: Path, workers: int):
    """``learned:STEPS``: NaTra's BIES encoder fitted on generated pairs and the dataset's images, saved in
    ``out`` (atomically) so that a rerun of the command loads it instead of fitting again."""
    from torch.utils.data import DataLoader

    from torch_semaug.data._builder import to_generator_input
    from torch_semaug.generators.encoders import LearnedEncoder, encoder_from_spec

    path = out / "encoder.safetensors"
    if path.is_file():
        print(f"using the learned encoder fitted earlier: {path}")
        return LearnedEncoder.load(path, generator=generator)
    # a DataLoader is re-iterable: each pass of fit's cycle is a new shuffled epoch
    to_input = partial(to_generator_input, image_range=generator.image_range, size=generator.image_shape[1:])
    real = DataLoader(dataset, batch_size=32, shuffle=True, num_workers=workers,
                      generator=torch.Generator().manual_seed(0), collate_fn=partial(_first_collated, to_input))
    encoder = encoder_from_spec(spec, generator, real_images=real)
    out.mkdir(parents=True, exist_ok=True)
    encoder.save(path)
    print(f"fitted a learned encoder for {spec.partition(':')[2]} steps: {path}")
    return encoder


def _first_collated(transform, samples):
    """Collate ``(image, label)`` samples and return ``transform(images)`` (a picklable collate_fn)."""
    from torch.utils.data import default_collate

    return transform(default_collate(samples)[0])


def run(args: argparse.Namespace) -> int:
    from torch_semaug.data.datasets import create_dataset
    from torch_semaug.data.latent_cache import LatentCache
    from torch_semaug.generators import load_generator
    from torch_semaug.train.data import encoding_transform

    generator = load_generator(args.generator, kind=args.generator_kind, device=args.device)
    dataset = create_dataset(args.data, args.data_root, args.split, transform=encoding_transform(args.img_size))
    if args.encoder is not None and args.encoder.startswith("learned:"):
        generator.attach_encoder(fit_learned_encoder(args.encoder, generator, dataset, Path(args.out),
                                                     args.workers))
    elif args.encoder is not None:
        from torch_semaug.generators.encoders import encoder_from_spec

        generator.attach_encoder(encoder_from_spec(args.encoder, generator, batch_size=args.batch_size))
    print(f"encoding {len(dataset)} images of {args.data} ({args.split}) with {type(generator).__name__} "
          f"into {args.out}")
    cache = LatentCache.build(dataset, generator, args.out, batch_size=args.batch_size, num_workers=args.workers,
                              device=args.device, psnr_samples=args.psnr_samples)
    info = cache.info()
    print(f"latent cache: {cache.path} shape={cache.shape} generator={info['generator']} "
          f"encoder={info['encoder']['class']}")
    psnr = info["reconstruction_psnr"]
    if psnr is not None:
        shown = "inf (exact)" if psnr["db"] > 100 else f"{psnr['db']:.2f} dB"
        print(f"reconstruction PSNR over the first {psnr['images']} images: {shown}")
    return 0
