"""Color-MNIST benchmark of the AdvMix paper (Gowal et al., CVPR 2020, section 5.1).

* Figure 7: accuracy on the unbiased (uniformly coloured) test set against the std ``sigma`` of the
  training colours, for nominal training, mixup (alpha 0.2), pixel-space adversarial training (eps 0.1,
  :class:`~torch_semaug.IdentityGenerator` + :class:`~torch_semaug.AdversarialLatentAttack`), RandMix and AdvMix.
* Table 1: RandMix / AdvMix with StyleGAN2s trained on differently biased data (``--table1 NAME=PATH``).
* Table 2: colours limited to red / green / blue, a linear classifier trained on *red* digits, tested on
  digits in all three colours, with StyleGAN2s trained on unbiased / 99 % red / 99.9 % red digits
  (``--table2 NAME=PATH``; ``export-rgb`` writes such training folders for ``semaug train-generator``).

Generators come from ``semaug train-generator stylegan2`` (``--generator``, ``--table1``, ``--table2``).
``--scale smoke`` runs on synthetic strokes in seconds (the tests); ``cpu`` uses MNIST subsets; ``paper``
the full sets and the paper's AdvMix budget. Example::

    python -m benchmarks.color_mnist --scale cpu --data-root $SEMAUG_DATA --only table2 \\
        --table2 unbiased=g_rgb.safetensors --table2 red99=g_red99.safetensors --table2 red999=g_red999.safetensors
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

import torch_semaug as ts
from benchmarks._bench import (
    SCALES,
    add_run_arguments,
    fmt_mean_sd,
    mean_sd,
    ordering_rows,
    parse_numbers,
    parse_run_args,
    stack,
    table,
    write_results,
)
from benchmarks.latent_spread import COLOUR_SAMPLES, changed_fraction, colour_shares
from torch_semaug.data.color_mnist import ColorMNIST
from torch_semaug.train.quick import Method, accuracy, invert, small_cnn, train

PARTS = ("fig7", "table1", "table2")
FIG7_METHODS = ("nominal", "mixup:0.2", "pixel_at", "randmix", "advmix", "natra")
TABLE1_METHODS = ("randmix", "advmix")
TABLE2_METHODS = ("nominal", "randmix", "advmix", "advmix-rel")
GENERATOR_METHODS = ("randmix", "advmix", "advmix-rel", "natra")  # the rows that need a StyleGAN2
REL_EPS = 0.2  # AdvMix's eps relative to the generator's W spread (0.03 absolute is 0.038 of the shipped G's)
#: ``advmix-rel``: AdvMix with eps and step in units of ``latent_spread`` (the paper's 0.03 is absolute)
METHOD_KWARGS = {"advmix-rel": ("advmix", dict(adv_eps=REL_EPS, adv_relative=True))}
#: NaTra on Color-MNIST (no paper has it): adversarial coefficients on 10 PCA directions of W on the fine
#: layers, each example's radius grown by rho until fooled (NaTra 3.4.3), labels smoothed by c * eps_i. A
#: digit is attacked only ~1.3 times in 200 steps of 64 (p = 0.5), so the radius starts at 1 std and grows
#: fast: from 0.25 by 0.05 it stayed near 0.3 std and NaTra scored 37.8 % instead of ~75 % at sigma 0.05
NATRA = dict(components=10, steps=5, start=1.0, rho=0.25, eps_max=2.0, smoothing=0.1)
RGB = torch.eye(3)
CLAIM_HEADER = ["setting", "claim", "difference", "in pooled sds", "verdict"]
PAPER_TABLE2 = {"unbiased": ("88.55", "85.07"), "red99": ("83.18", "85.02"), "red999": ("53.56", "85.00")}
SETTINGS = {  # scale -> sizes (cpu: MNIST subsets and a reduced AdvMix budget; paper: the paper's)
    "smoke": dict(train=64, test=64, steps=3, batch=16, encoder="learned:2", sigmas=[0.1], adv_steps=1,
                  adv_restarts=1, at_steps=1),
    "cpu": dict(train=5000, test=2000, steps=400, batch=64, encoder="learned:300", sigmas=[0.02, 0.05, 0.1],
                adv_steps=2, adv_restarts=2, at_steps=5),
    "paper": dict(train=60000, test=10000, steps=10000, batch=128, encoder="optimize:200",
                  sigmas=[0.0, 0.02, 0.05, 0.1, 0.2, 0.3], adv_steps=7, adv_restarts=5, at_steps=7),
}
Report = Callable[[], None]  # rewrites the results file with what has finished so far


def cnn10() -> nn.Module:
    return small_cnn(10)


def linear() -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.LazyLinear(10))


def color_mnist(args: argparse.Namespace, n: int, train_split: bool, coloring: str, sigma: float) -> ColorMNIST:
    if args.scale == "smoke" and args.data_root is None:
        return ColorMNIST.synthetic(n, coloring=coloring, sigma=sigma, seed=0 if train_split else 1)
    data = ColorMNIST.from_mnist(args.data_root, train=train_split, coloring=coloring, sigma=sigma)
    data.digits, data.labels, data.colors = data.digits[:n], data.labels[:n], data.colors[:n]
    return data


def rgb_colors(dataset: ColorMNIST, red_fraction: float | None, seed: int) -> ColorMNIST:
    """Paint each digit pure red with probability ``red_fraction``, else pure green or blue (None: each of
    the three colours equally likely)."""
    rng = torch.Generator().manual_seed(seed)
    if red_fraction is None:
        pick = torch.randint(0, 3, (len(dataset),), generator=rng)
    else:
        pick = torch.where(torch.rand(len(dataset), generator=rng) < red_fraction, 0,
                           torch.randint(1, 3, (len(dataset),), generator=rng))
    dataset.colors = RGB[pick]
    return dataset


def natra_method(generator: ts.StyleGAN2, directions: ts.Directions, model: nn.Module, codes: torch.Tensor,
                 seed: int, natra: dict) -> Method:
    """NaTra's training augmentation (settings as :data:`NATRA`) as a ``(x, y, indices)`` method over ``codes``."""
    edit = ts.DirectionEdit(
        generator, directions=directions, model=model, mode="adversarial", layers=generator.fine_layers,
        steps=natra["steps"], p=0.5, rng=torch.Generator().manual_seed(seed + 1), label_smoothing=natra["smoothing"],
        adaptive_eps=ts.AdaptiveEps(len(codes), start=natra["start"], rho=natra["rho"], eps_max=natra["eps_max"]),
    )
    return lambda x, y, idx: edit(x, y, latents=codes[idx], indices=idx)


def run_methods(args, s, methods, make_model, data, generator, out: dict[str, list[float]], report: Report) -> None:
    """Append the test accuracy (%) of each method and seed of ``--seeds`` to ``out[method]``, calling
    ``report`` after each; the W+ codes of the training images are computed once."""
    images, labels, test = data
    latents = invert(generator, images, s["encoder"], seed=args.seeds[0]) if generator is not None and \
        set(methods) & set(GENERATOR_METHODS) else None
    directions = ts.find_directions(generator, "pca", n_components=s["natra"]["components"], num_samples=5000,
                                    seed=0, progress=False) if "natra" in methods else None  # once, for every seed
    for method in methods:
        name, kwargs = METHOD_KWARGS.get(method, (method, {}))
        for seed in args.seeds:
            t0 = time.time()
            torch.manual_seed(seed)  # the same initial weights for every method at a seed
            model = make_model()
            model(images[:2])  # materialise lazy layers before an attack binds the model
            common = dict(steps=s["steps"], batch=s["batch"], seed=seed, desc=f"{method} seed {seed}")
            if method == "natra":
                train(model, natra_method(generator, directions, model, latents, seed, s["natra"]), images, labels,
                      latents=torch.arange(len(images)), **common)
            else:
                train(model, name, images, labels, num_classes=10, latents=latents, generator=generator, at_eps=0.1,
                      at_steps=s["at_steps"], adv_steps=s["adv_steps"], adv_restarts=s["adv_restarts"], **common,
                      **kwargs)
            out.setdefault(method, []).append(accuracy(model, *test))
            print(f"  {method} seed {seed}: {out[method][-1]:.2f} % ({time.time() - t0:.0f} s)", flush=True)
            report()


def rows(args: argparse.Namespace, part_methods: tuple[str, ...]) -> list[str]:
    """The rows of a part that ``--methods`` selects (all of them without the flag)."""
    return [m for m in part_methods if args.methods is None or m in args.methods]


def claims(results: dict[str, list[float]], order: list[str], label: str) -> list[list[object]]:
    """The paper's ordering ``order`` checked on ``results``, each claim prefixed with ``label``."""
    return [[label, *row] for row in ordering_rows(results, order)]


def figure7(args, s, curves: dict[float, dict[str, list[float]]], report: Report) -> None:
    """Fill ``curves[sigma][method]`` with per-seed accuracies (the plot is redrawn after each sigma)."""
    generator = ts.StyleGAN2.load(args.generator) if args.generator else None
    methods = [m for m in rows(args, FIG7_METHODS) if generator is not None or m not in GENERATOR_METHODS]
    test = stack(color_mnist(args, s["test"], False, "uniform", 0.0))
    for sigma in s["sigmas"]:
        print(f"Figure 7, sigma {sigma}", flush=True)
        images, labels = stack(color_mnist(args, s["train"], True, "biased", sigma))
        run_methods(args, s, methods, cnn10, (images, labels, test), generator, curves.setdefault(sigma, {}), report)
        plot_figure7({sig: {m: mean_sd(v)[0] for m, v in c.items()} for sig, c in curves.items()}, args.png)


def render_figure7(curves: dict[float, dict[str, list[float]]]) -> str:
    sigmas = list(curves)
    methods = list(dict.fromkeys(m for c in curves.values() for m in c))
    rows = [[m] + [fmt_mean_sd(curves[sig].get(m, [])) for sig in sigmas] for m in methods]
    text = table(["method"] + [f"sigma {sig}" for sig in sigmas], rows)
    checks = [row for sig in sigmas for row in claims(curves[sig], ["advmix", "randmix"], f"sigma {sig}")
              if "advmix" in curves[sig]]
    if checks:
        text += "\n\nThe paper's AdvMix >= RandMix:\n\n" + table(CLAIM_HEADER, checks)
    return text


def plot_figure7(curves: dict[float, dict[str, float]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from torch_semaug._io import write_atomic

    sigmas = sorted(curves)
    fig, ax = plt.subplots(figsize=(5, 3.5))
    for method in next(iter(curves.values())):
        ax.plot(sigmas, [curves[s][method] for s in sigmas], marker="o", label=method)
    ax.set_xlabel("std of the training colours (sigma)")
    ax.set_ylabel("unbiased test accuracy (%)")
    ax.set_title("Color-MNIST (AdvMix paper, Fig. 7)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    write_atomic(path, lambda tmp: fig.savefig(tmp, format="png", dpi=120))
    plt.close(fig)


def table1(args, s, results: dict[str, dict[str, list[float]]], report: Report) -> None:
    test = stack(color_mnist(args, s["test"], False, "uniform", 0.0))
    images, labels = stack(color_mnist(args, s["train"], True, "biased", 0.1))
    for name, path in (spec.split("=", 1) for spec in args.table1):
        print(f"Table 1, generator {name}", flush=True)
        run_methods(args, s, rows(args, TABLE1_METHODS), cnn10, (images, labels, test), ts.StyleGAN2.load(path),
                    results.setdefault(name, {}), report)


def render_table1(results: dict[str, dict[str, list[float]]]) -> str:
    rows = [[name, fmt_mean_sd(acc.get("randmix", [])), fmt_mean_sd(acc.get("advmix", []))]
            for name, acc in results.items()]
    checks = [row for name, acc in results.items() if "advmix" in acc
              for row in claims(acc, ["advmix", "randmix"], name)]
    text = table(["StyleGAN2 trained on", "RandMix (%)", "AdvMix (%)"], rows)
    return text + ("\n\nAdvMix > RandMix per generator:\n\n" + table(CLAIM_HEADER, checks) if checks else "")


def table2(args, s, results: dict[str, dict[str, list[float]]], flips: dict[str, tuple[float, float, float]],
           report: Report) -> None:
    """Nominal, then per generator: how often its eps balls flip the dominant colour, and RandMix, AdvMix at
    the paper's absolute eps and AdvMix at :data:`REL_EPS` of the generator's spread."""
    test = stack(rgb_colors(color_mnist(args, s["test"], False, "uniform", 0.0), None, seed=1))
    images, labels = stack(rgb_colors(color_mnist(args, s["train"], True, "biased", 0.0), 1.0, seed=0))
    data = (images, labels, test)
    methods = rows(args, TABLE2_METHODS)
    if "nominal" in methods:
        run_methods(args, s, ("nominal",), linear, data, None, results.setdefault("nominal (no generator)", {}),
                    report)
    for name, path in (spec.split("=", 1) for spec in args.table2):
        print(f"Table 2, generator {name}", flush=True)
        generator = ts.StyleGAN2.load(path)
        codes = generator.sample_latent(200, torch.Generator().manual_seed(0))
        flips[name] = (1 - float(colour_shares(generator, COLOUR_SAMPLES)[0]),
                       changed_fraction(generator, codes, 0.03, False, s["adv_steps"]),
                       changed_fraction(generator, codes, REL_EPS, True, s["adv_steps"]))
        run_methods(args, s, [m for m in methods if m != "nominal"], linear, data, generator,
                    results.setdefault(name, {}), report)


def render_table2(results: dict[str, dict[str, list[float]]], flips: dict[str, tuple[float, float, float]],
                  steps: int) -> str:
    rows = [[name, *(fmt_mean_sd(acc.get(m, [])) for m in ("nominal", "randmix", "advmix", "advmix-rel")),
             *PAPER_TABLE2.get(name, ("", ""))] for name, acc in results.items()]
    header = ["StyleGAN2 trained on", "nominal (%)", "RandMix (%)", "AdvMix, eps 0.03 (%)",
              f"AdvMix, eps {REL_EPS} x spread (%)", "paper RandMix", "paper AdvMix"]
    flip_rows = [[name, f"{n:.2%}", f"{a:.0%}", f"{r:.0%}"] for name, (n, a, r) in flips.items()]
    checks = [row for name, acc in results.items() if "randmix" in acc
              for order in (["advmix", "randmix"], ["advmix-rel", "randmix"]) for row in claims(acc, order, name)]
    return "\n\n".join([
        table(header, rows),
        f"What each generator can draw: the share of {COLOUR_SAMPLES} random samples (RandMix's reach) whose "
        f"dominant stroke colour is not red, and how often a {steps}-step search in AdvMix's ball flips the "
        "dominant colour of 200 generated digits (`benchmarks/latent_spread.py`: the fine layers, l-inf):",
        table(["generator", "samples not red", "flipped, eps 0.03 (absolute)", f"flipped, eps {REL_EPS} x spread"],
              flip_rows),
        "The paper's AdvMix > RandMix (85.00 vs 53.56 at 99.9 % red):",
        table(CLAIM_HEADER, checks)])


def export_rgb(args) -> None:
    """Write MNIST training digits coloured red with probability ``--red`` (else green/blue) as PNGs."""
    from torchvision.utils import save_image

    data = rgb_colors(ColorMNIST.from_mnist(args.data_root, train=True), args.red, seed=args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    for i in range(len(data) if args.limit is None else args.limit):
        save_image(data[i][0], args.out / f"{i:05d}.png")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", choices=SCALES, default="smoke")
    parser.add_argument("--data-root", default=None, help="folder with MNIST/raw (default $SEMAUG_DATA, else "
                        "./data; smoke without it uses synthetic strokes)")
    parser.add_argument("--generator", default=None, help="StyleGAN2 for Figure 7 (RandMix/AdvMix skipped without)")
    parser.add_argument("--table1", action="append", default=[], metavar="NAME=PATH")
    parser.add_argument("--table2", action="append", default=[], metavar="NAME=PATH",
                        help="NAME unbiased, red99 or red999 puts the paper's numbers beside ours")
    parser.add_argument("--only", default=",".join(PARTS), help="comma-separated parts to run (a subset "
                        "writes color_mnist_<parts>.md, so separate runs do not overwrite each other)")
    parser.add_argument("--encoder", default=None, help="W+ encoder: learned:N (fit one per generator for N "
                        "steps), a learned .safetensors[:REFINE], or optimize:N")
    parser.add_argument("--train", type=int, default=None, help="override the scale's number of training digits")
    parser.add_argument("--test", type=int, default=None, help="override the scale's number of test digits")
    parser.add_argument("--steps", type=int, default=None, help="override the scale's Adam steps")
    parser.add_argument("--sigmas", default=None, help="override Figure 7's sigmas, e.g. 0.05,0.1")
    parser.add_argument("--adv", default=None, metavar="RESTARTS,STEPS", help="override the AdvMix training budget")
    parser.add_argument("--methods", default=None, help="the rows to run, comma-separated (default: every row of "
                        f"each part; Figure 7 {','.join(FIG7_METHODS)}; Table 2 {','.join(TABLE2_METHODS)})")
    parser.add_argument("--natra", default=None, metavar="START,RHO,EPS_MAX", help="override NaTra's adaptive "
                        f"eps (default {NATRA['start']},{NATRA['rho']},{NATRA['eps_max']}, in std of each direction)")
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated seeds of the classifiers")
    add_run_arguments(parser)
    parser.add_argument("--export-rgb", action="store_true", help="only write an RGB training folder to --out")
    parser.add_argument("--red", type=float, default=None, help="export-rgb: fraction of red digits "
                        "(default: red, green, blue equally likely)")
    parser.add_argument("--limit", type=int, default=None, help="export-rgb: number of digits")
    args = parse_run_args(parser, argv)
    if args.export_rgb:
        return export_rgb(args)
    args.seeds = parse_numbers(args.seeds, name="seeds", kind=int)
    args.out.mkdir(parents=True, exist_ok=True)
    start, s = time.time(), dict(SETTINGS[args.scale])
    for key in ("encoder", "train", "test", "steps"):
        if getattr(args, key):
            s[key] = getattr(args, key)
    if args.sigmas:
        s["sigmas"] = parse_numbers(args.sigmas, name="sigmas", kind=float)
    if args.adv:
        s["adv_restarts"], s["adv_steps"] = parse_numbers(args.adv, name="adv", kind=int, count=2,
                                                          form="RESTARTS,STEPS")
    s["natra"] = dict(NATRA)
    if args.natra:
        s["natra"].update(zip(("start", "rho", "eps_max"), parse_numbers(
            args.natra, name="natra", kind=float, count=3, form="START,RHO,EPS_MAX"), strict=True))
    parts = set(args.only.split(","))
    if parts - set(PARTS):
        raise ValueError(f"only: expected a comma-separated subset of {','.join(PARTS)}, got {args.only!r}")
    if args.methods is not None:
        args.methods = args.methods.split(",")
        known = tuple(dict.fromkeys(FIG7_METHODS + TABLE2_METHODS))
        if set(args.methods) - set(known):
            raise ValueError(f"methods: expected a comma-separated subset of {','.join(known)}, got "
                             f"{','.join(args.methods)!r}")
    suffix = "" if args.scale == "cpu" else f"_{args.scale}"
    name = "color_mnist" + ("" if parts == set(PARTS) else "_" + "_".join(p for p in PARTS if p in parts))
    args.png = args.out / f"color_mnist_fig7{suffix}.png"
    intro = (f"Scale `{args.scale}`: {s['train']} training / {s['test']} test digits, {s['steps']} Adam steps of "
             f"{s['batch']}, W+ by `{s['encoder']}`, AdvMix {s['adv_restarts']} restarts x {s['adv_steps']} steps "
             f"(eps 0.03, step 0.005; `advmix-rel`: eps {REL_EPS}, step {REL_EPS / 6:.4f}, both x the generator's "
             f"W spread), pixel AT eps 0.1 x {s['at_steps']} steps, NaTra {s['natra']}, half of each batch augmented; "
             f"seeds {args.seeds}, cells mean ± sample sd over the seeds finished.")
    fig7, tab1, tab2, flips = {}, {}, {}, {}

    def report() -> None:
        sections = [intro, ""]
        if fig7:
            sections += ["## Figure 7: unbiased test accuracy (%) vs training colour std", "", render_figure7(fig7),
                         "", f"![Figure 7]({args.png.name})", "",
                         "Paper (Fig. 7, read from the plot): RandMix and AdvMix stay far above nominal, mixup "
                         "and AT at small sigma. NaTra (`natra`) is not in the paper.", ""]
        if tab1:
            sections += ["## Table 1: generator trained on differently biased digits", "", render_table1(tab1), ""]
        if tab2:
            sections += ["## Table 2: red-only training digits, linear classifier, R/G/B test digits", "",
                         render_table2(tab2, flips, s["adv_steps"]), ""]
        write_results(args.out / f"{name}{suffix}.md", "Color-MNIST (AdvMix paper)", start, sections, [])

    if "fig7" in parts:
        figure7(args, s, fig7, report)
    if "table1" in parts and args.table1:
        table1(args, s, tab1, report)
    if "table2" in parts and args.table2:
        table2(args, s, tab2, flips, report)
    report()


if __name__ == "__main__":
    main()
