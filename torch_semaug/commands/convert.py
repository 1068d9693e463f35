"""``semaug convert IN OUT``: any generator checkpoint ``load_generator`` reads -> a torch_semaug safetensors file.

Typical use: an NVIDIA ``stylegan2-ada-pytorch`` snapshot (``network-snapshot-*.pkl``) or a rosinality
``stylegan2-pytorch`` ``.pt``, converted once, so that later runs read plain tensors.
"""

from __future__ import annotations

import argparse
import os


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("source", metavar="IN",
                        help="generator checkpoint: NVIDIA stylegan2-ada .pkl, rosinality .pt or .safetensors "
                             "(recognised by content)")
    parser.add_argument("destination", metavar="OUT", help="torch_semaug generator file to write (.safetensors)")
    parser.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")


def run(args: argparse.Namespace) -> int:
    from torch_semaug.commands._types import reason
    from torch_semaug.generators.io import checkpoint_format, load_generator, save_generator

    if os.path.exists(args.destination) and not args.overwrite:
        raise ValueError(f"destination: {args.destination!r} exists; pass --overwrite to replace it")
    try:
        source_format = checkpoint_format(args.source)
        generator = load_generator(args.source)
    except (ValueError, OSError) as error:  # the loader names its argument "path"; here it is IN
        raise ValueError(f"source: {reason(error)}") from None
    save_generator(generator, args.destination, converted_from=f"{source_format}: {os.path.basename(args.source)}")
    shape = "x".join(map(str, generator.image_shape))
    print(f"wrote {args.destination}: {type(generator).__name__} {shape}, latent {tuple(generator.latent_shape)} "
          f"(from {source_format} {args.source})")
    return 0
