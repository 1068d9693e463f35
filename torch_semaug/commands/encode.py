"""``semaug encode``: encode a dataset once into a latent cache (resumable, shardable), report reconstruction PSNR.

Under ``torchrun``/``accelerate launch`` every process encodes its share of the dataset into the one cache
(see :meth:`~torch_semaug.data.LatentCache.build`); the result equals a one-process build.
"""

from __future__ import annotations

import argparse
import os
from functools import partial
from pathlib import Path

import torch

from torch_semaug.commands._types import device as device_type
from torch_semaug.commands._types import existing_file, non_negative_int, positive_int, reason


def configure(parser: argparse.ArgumentParser) -> None:
    from torch_semaug.data.datasets import DATASETS, SPLITS, default_data_root

    parser.add_argument("--generator", required=True, type=existing_file, metavar="PATH",
                        help="generator checkpoint")
    parser.add_argument("--generator-kind", default=None, help="require this generator kind (e.g. stylegan2)")
    parser.add_argument("--encoder", default=None, type=encoder_spec, metavar="SPEC",
                        help="StyleGAN2 only: a learned encoder .safetensors (PATH[:REFINE_STEPS]), optimize[:STEPS] "
                        "(optimisation inversion), or learned:STEPS (fit a learned encoder on G's samples and this "
                        "dataset first; saved as OUT/encoder.safetensors and reused when the command is rerun)")
    parser.add_argument("--data", dest="dataset", required=True, metavar="NAME", help=f"dataset: {', '.join(DATASETS)}")
    parser.add_argument("--data-root", default=default_data_root(), help="dataset root")
    parser.add_argument("--split", default="train", choices=SPLITS, help="which split to encode")
    parser.add_argument("--img-size", type=positive_int, default=None, help="resize images to this size first "
                        "(use the --img-size you train with)")
    parser.add_argument("--limit", type=positive_int, default=None, metavar="N", help="encode only the first N "
                        "images, for a first look at speed and PSNR (train needs the whole split: for a smaller "
                        "training set use a NAME@N dataset in both encode and train)")
    parser.add_argument("--out", required=True, metavar="DIR", help="cache directory (resumes an unfinished one)")
    parser.add_argument("-b", "--batch-size", type=positive_int, default=64, help="images per encoder call")
    parser.add_argument("-j", "--workers", type=non_negative_int, default=2, help="DataLoader workers")
    parser.add_argument("--device", type=device_type, default="cuda" if torch.cuda.is_available() else "cpu",
                        help="torch device; under a distributed launch cuda means each process's local GPU")
    parser.add_argument("--psnr-samples", type=non_negative_int, default=256,
                        help="images whose reconstruction PSNR is measured and recorded (0: none)")


def encoder_spec(text: str) -> str:
    """An argparse type for ``--encoder``: ``optimize[:STEPS]``, ``learned:STEPS`` or ``PATH[:REFINE_STEPS]``."""
    name, _, steps = text.partition(":")
    if name in ("optimize", "learned"):
        if (steps or name == "learned") and not (steps.isdigit() and int(steps) > 0):
            form = "learned:STEPS" if name == "learned" else "optimize[:STEPS]"
            raise argparse.ArgumentTypeError(f"expected {form} with STEPS a positive integer, got {text!r}")
        return text
    path = text.rpartition(":")[0] if text.rsplit(":", 1)[-1].isdigit() else text
    if not os.path.isfile(path):
        raise argparse.ArgumentTypeError(f"expected optimize[:STEPS], learned:STEPS or an encoder file "
                                         f"PATH[:REFINE_STEPS] (no file {path!r}), got {text!r}")
    return text


def load_generator_flag(path: str, kind: str | None, device: str | torch.device):
    """The generator of a ``--generator PATH`` flag; errors name ``--generator`` or ``--generator-kind``."""
    from torch_semaug.generators import load_generator
    from torch_semaug.generators.io import generator_kinds

    if kind is not None and kind not in generator_kinds():
        raise ValueError(f"generator_kind: expected one of {generator_kinds()}, got {kind!r}")
    try:
        generator = load_generator(path, device=device)
    except (ValueError, OSError) as error:
        raise ValueError(
            f"generator: expected a readable generator checkpoint, got {path!r} ({reason(error)})"
        ) from None
    found = getattr(generator, "generator_kind", None)
    if kind is not None and found != kind:
        raise ValueError(f"generator_kind: expected a {kind!r} checkpoint, got a {found!r} one at {path!r}")
    return generator


def learned_encoder(spec: str, generator, dataset, out: Path, workers: int, rank: int, world: int):
    """``learned:STEPS``: NaTra's BIES encoder fitted (by rank 0) on generated pairs and the dataset's images,
    saved in ``out`` (atomically) so that every rank, and a rerun of the command, loads the same one."""
    from torch_semaug.generators.encoders import LearnedEncoder

    path = out / "encoder.safetensors"
    if rank == 0:
        if path.is_file():
            print(f"using the learned encoder fitted earlier: {path}")
        else:
            _fit_learned_encoder(spec, generator, dataset, path, workers)
    if world > 1:
        torch.distributed.barrier()
    return LearnedEncoder.load(path, generator=generator).to(generator.device)


def _fit_learned_encoder(spec: str, generator, dataset, path: Path, workers: int) -> None:
    from torch.utils.data import DataLoader

    from torch_semaug.data._builder import to_generator_input
    from torch_semaug.generators.encoders import encoder_from_spec

    # a DataLoader is re-iterable: each pass of fit's cycle is a new shuffled epoch
    to_input = partial(to_generator_input, image_range=generator.image_range, size=generator.image_shape[1:])
    real = DataLoader(dataset, batch_size=32, shuffle=True, num_workers=workers,
                      generator=torch.Generator().manual_seed(0), collate_fn=partial(_first_collated, to_input))
    encoder = encoder_from_spec(spec, generator, real_images=real)
    encoder.save(path)
    print(f"fitted a learned encoder for {spec.partition(':')[2]} steps: {path}")


def _first_collated(transform, samples):
    """Collate ``(image, label)`` samples and return ``transform(images)`` (a picklable collate_fn)."""
    from torch.utils.data import default_collate

    return transform(default_collate(samples)[0])


def _init_distributed() -> tuple[int, int, bool]:
    """Rank and world size of a ``torchrun``/``accelerate launch`` start (gloo: barriers only), and whether
    this call started the process group."""
    import torch.distributed as dist

    from torch_semaug.data._builder import BARRIER_TIMEOUT

    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return 0, 1, False
    started = not dist.is_initialized()
    if started:
        dist.init_process_group("gloo", timeout=BARRIER_TIMEOUT)
    return dist.get_rank(), dist.get_world_size(), started


def run(args: argparse.Namespace) -> int:
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"out: expected a directory (created if missing), got the file {args.out!r}")
    rank, world, started = _init_distributed()
    try:
        return _encode(args, out, rank, world)
    finally:
        if started:
            torch.distributed.destroy_process_group()


def _encode(args: argparse.Namespace, out: Path, rank: int, world: int) -> int:
    from torch.utils.data import Subset

    from torch_semaug.data.datasets import create_dataset
    from torch_semaug.data.latent_cache import LatentCache
    from torch_semaug.generators.stylegan2 import StyleGAN2
    from torch_semaug.train.data import encoding_transform

    device = args.device
    if world > 1 and device == "cuda":
        device = f"cuda:{os.environ.get('LOCAL_RANK', rank)}"
    say = print if rank == 0 else (lambda *_: None)
    generator = load_generator_flag(args.generator, args.generator_kind, device)
    if args.encoder is not None and not isinstance(generator, StyleGAN2):
        raise ValueError(f"encoder: expected no --encoder for a {type(generator).__name__}, which encodes images "
                         f"itself (--encoder is for StyleGAN2), got {args.encoder!r}")
    dataset = create_dataset(args.dataset, args.data_root, args.split, transform=encoding_transform(args.img_size))
    if args.limit is not None:
        dataset = Subset(dataset, range(min(args.limit, len(dataset))))
    out.mkdir(parents=True, exist_ok=True)
    if args.encoder is not None and args.encoder.startswith("learned:"):
        generator.attach_encoder(learned_encoder(args.encoder, generator, dataset, out, args.workers, rank, world))
    elif args.encoder is not None:
        from torch_semaug.generators.encoders import encoder_from_spec

        try:
            generator.attach_encoder(encoder_from_spec(args.encoder, generator, batch_size=args.batch_size))
        except ValueError as error:
            raise ValueError(f"encoder: cannot use {args.encoder!r}: {reason(error)}") from None
    say(f"encoding {len(dataset)} images of {args.dataset} ({args.split}) with {type(generator).__name__} into "
        f"{args.out}" + (f" ({world} processes)" if world > 1 else ""))
    try:
        cache = LatentCache.build(dataset, generator, out, batch_size=args.batch_size, num_workers=args.workers,
                                  device=device, psnr_samples=args.psnr_samples, progress=rank == 0)
    except (ValueError, OSError) as error:
        if not str(error).startswith("path: "):
            raise
        raise ValueError(f"out: {reason(error)}") from None  # the cache directory is --out
    info = cache.info()
    say(f"latent cache: {cache.path} shape={cache.shape} generator={info['generator']} "
        f"encoder={info['encoder']['class']}")
    psnr = info["reconstruction_psnr"]
    if psnr is not None:
        shown = "inf (exact)" if psnr["db"] > 100 else f"{psnr['db']:.2f} dB"
        say(f"reconstruction PSNR over the first {psnr['images']} images: {shown}")
    return 0
