"""``semaug directions``: find latent directions of a generator and draw their slider grid.

Writes ``<out>/<method>_<space>.safetensors`` (load with ``Directions.load``) and
``<out>/<method>_<space>_sliders.png`` (rows = directions, columns = strengths in units of std).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from torch_semaug.commands._types import device, existing_file, non_negative_int, positive_int


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--generator", required=True, type=existing_file,
                        help="generator checkpoint with a W space (StyleGAN2)")
    parser.add_argument("--method", choices=("pca", "umap"), default="pca", help="PCA (GANSpace) or UMAP (NaTra)")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--n-components", type=positive_int, default=10, help="number of directions")
    parser.add_argument("--num-samples", type=positive_int, default=10_000,
                        help="W codes sampled from the prior (at least n-components + 2)")
    parser.add_argument("--space", choices=("w", "activations"), default="w", help="features to decompose")
    parser.add_argument("--layer", default=None, help="module name for --space activations, e.g. synthesis.b8")
    parser.add_argument("--seed", type=non_negative_int, default=0, help="seeds the codes, PCA and UMAP")
    parser.add_argument("--batch-size", type=positive_int, default=256, help="codes per forward")
    parser.add_argument("--device", type=device, default="cpu", help="torch device, e.g. cuda")
    parser.add_argument("--strengths", type=float, nargs="+", default=[-2.0, -1.0, 0.0, 1.0, 2.0],
                        help="grid columns, in units of each direction's std")
    parser.add_argument("--layers", type=int, nargs=2, default=None, metavar=("START", "END"),
                        help="W+ layers the grid's edits touch (END exclusive); default all")
    parser.add_argument("--grid-seed", type=non_negative_int, default=0, help="seeds the code the grid edits")
    parser.add_argument("--upscale", type=positive_int, default=1, help="enlarge each grid tile by this factor")


def run(args: argparse.Namespace) -> int:
    import math

    from torch_semaug.commands.encode import load_generator_flag
    from torch_semaug.directions import find_directions
    from torch_semaug.directions.directions import check_layers
    from torch_semaug.viz import save_grid, slider_grid

    if not all(math.isfinite(s) for s in args.strengths):
        raise ValueError(f"strengths: expected finite numbers, got {args.strengths}")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"out: expected a directory (created if missing), got the file {args.out!r}")
    generator = load_generator_flag(args.generator, None, args.device)
    num_ws = getattr(generator, "num_ws", None)
    if args.layers is not None and num_ws is not None:
        check_layers(tuple(args.layers), num_ws)  # before the search, which can take minutes
    directions = find_directions(
        generator, method=args.method, n_components=args.n_components, num_samples=args.num_samples,
        space=args.space, layer=args.layer, seed=args.seed, batch_size=args.batch_size,
    )
    stem = f"{args.method}_{args.space}"
    directions.save(out / f"{stem}.safetensors")
    grid = slider_grid(generator, directions, strengths=args.strengths, seed=args.grid_seed,
                       layers=tuple(args.layers) if args.layers else None, upscale=args.upscale)
    save_grid(grid, out / f"{stem}_sliders.png")
    print(f"wrote {out / f'{stem}.safetensors'} ({directions.n_components} directions, std "
          f"{', '.join(f'{s:.3g}' for s in directions.std.tolist())})")
    print(f"wrote {out / f'{stem}_sliders.png'} (rows: directions, columns: strengths {args.strengths})")
    return 0
