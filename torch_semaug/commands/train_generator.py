"""``semaug train-generator {stylegan2,glow}``: train a generator on your own images.

Both kinds share their flag names, their outputs and the resume rule (see
:mod:`torch_semaug.train.generator_run`): ``--resume PATH`` alone continues a run with the arguments saved in
its checkpoint; flags given with it override those (and are printed as overrides). Each kind's options map
one to one onto the keyword arguments of ``train_stylegan2`` / ``train_glow``.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import shlex
import sys
from typing import Any

from torch_semaug.cli import SemaugParser, UsageError, flag_names
from torch_semaug.commands._types import device, non_negative_int, positive_float, positive_int, probability

EXPLICIT = "_explicit"  # namespace attribute: the dests the user typed


class _FromScale:
    """The default of a flag that ``--scale`` sets (shown as such by ``--help``)."""

    def __str__(self) -> str:
        return "set by --scale"


FROM_SCALE = _FromScale()

# kind -> (one-line help, module, training function)
TRAINERS: dict[str, tuple[str, str, str]] = {
    "stylegan2": ("StyleGAN2 (non-saturating loss, R1, style mixing, EMA)", "torch_semaug.train.stylegan2_trainer",
                  "train_stylegan2"),
    "glow": ("Glow (maximum likelihood with uniform dequantisation)", "torch_semaug.train.glow_trainer", "train_glow"),
}


def _recording(base: type[argparse.Action]) -> type[argparse.Action]:
    class Recording(base):  # type: ignore[misc, valid-type]
        """Remembers that its flag was typed, so that ``--resume`` knows what overrides the checkpoint."""

        def __call__(self, parser, namespace, values, option_string=None):  # type: ignore[no-untyped-def]
            super().__call__(parser, namespace, values, option_string)
            vars(namespace).setdefault(EXPLICIT, set()).add(self.dest)

    return Recording


def configure(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="kind", metavar="KIND", required=True, parser_class=SemaugParser)
    for kind, (help_, module_name, function) in TRAINERS.items():
        kind_parser = sub.add_parser(kind, help=help_, description=help_,
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
        kind_parser.register("action", None, _recording(argparse._StoreAction))
        kind_parser.register("action", "store", _recording(argparse._StoreAction))
        kind_parser.register("action", "store_true", _recording(argparse._StoreTrueAction))
        module = importlib.import_module(module_name)
        defaults = {name: p.default for name, p in inspect.signature(getattr(module, function)).parameters.items()}
        _add_run_args(kind_parser, defaults)
        (_add_stylegan2_args if kind == "stylegan2" else _add_glow_args)(kind_parser, defaults, module)
        kind_parser.set_defaults(_parser=kind_parser)


def _add_run_args(parser: argparse.ArgumentParser, d: dict[str, Any]) -> None:
    import torch

    from torch_semaug.train.generator_run import DATA_SYNTAX

    run = parser.add_argument_group("run (the same for every kind)")
    run.add_argument("--data", default=None, help=f"training images: {DATA_SYNTAX} (required unless --resume)")
    run.add_argument("--data-root", default=None, help="data root of a dataset name (default: $SEMAUG_DATA, "
                     "else ./data)")
    run.add_argument("--out", default=None, metavar="DIR", help="run folder: checkpoint.pt, generator.safetensors, "
                     "samples/, metrics.json (required unless --resume)")
    run.add_argument("--resume", default=None, metavar="PATH", help="continue the run saved at PATH (its "
                     "checkpoint.pt or folder) with its arguments; flags given with it override them")
    run.add_argument("--init-from", default=None, metavar="CHECKPOINT",
                     help="start a new run (iterations and warm-up from 0) from another run's checkpoint.pt "
                          "(weights and optimisers) or a generator .safetensors of this kind (its weights; "
                          "StyleGAN2: G and EMA, D fresh)")
    run.add_argument("--iterations", type=positive_int, default=d["iterations"], help="total iterations")
    run.add_argument("--max-minutes", type=positive_float, default=d["max_minutes"],
                     help="stop (and save) after this wall time")
    run.add_argument("-b", "--batch-size", type=positive_int, default=d["batch_size"], help="images per iteration")
    run.add_argument("--lr", type=positive_float, default=d["lr"], help="learning rate")
    run.add_argument("--sample-every", type=positive_int, default=d["sample_every"],
                     help="write samples/NNNNNN.png (and, with --no-progress, a log line) every N iterations")
    run.add_argument("--checkpoint-every", type=positive_int, default=d["checkpoint_every"],
                     help="write checkpoint.pt every N iterations")
    run.add_argument("--seed", type=non_negative_int, default=d["seed"])
    run.add_argument("--device", type=device, default="cuda" if torch.cuda.is_available() else "cpu")
    run.add_argument("--threads", type=positive_int, default=d["threads"], help="torch CPU threads (default: torch's)")
    run.add_argument("-j", "--workers", type=non_negative_int, default=d["workers"], help="DataLoader workers")
    run.add_argument("--no-progress", action="store_true", help="log lines instead of a tqdm bar")


def _add_stylegan2_args(parser: argparse.ArgumentParser, d: dict[str, Any], module: Any) -> None:
    group = parser.add_argument_group("StyleGAN2")
    group.add_argument("--resolution", type=positive_int, default=d["resolution"],
                       help="image size, a power of two from 16 to 1024")
    for name in ("z_dim", "w_dim", "mapping_layers", "channel_base", "channel_max"):
        group.add_argument(f"--{name.replace('_', '-')}", type=positive_int, default=d[name])
    group.add_argument("--r1-gamma", type=float, default=d["r1_gamma"],
                       help="R1 weight; small models need a strong one (at 0.05-1 the 64-channel Color-MNIST model "
                            "collapsed to a single digit shape within 1,000 iterations)")
    group.add_argument("--r1-every", type=positive_int, default=d["r1_every"], help="lazy R1: every N iterations")
    group.add_argument("--mixing-prob", type=probability, default=d["mixing_prob"],
                       help="probability of style mixing per batch")
    group.add_argument("--ema-kimg", type=positive_float, default=d["ema_kimg"],
                       help="half-life of the G EMA in thousands of images")
    group.add_argument("--mirror", action="store_true", help="random horizontal flips of the training images")


def _add_glow_args(parser: argparse.ArgumentParser, d: dict[str, Any], module: Any) -> None:
    group = parser.add_argument_group("Glow")
    group.add_argument("--scale", choices=sorted(module.PRESETS), default="cpu",
                       help="preset of the flags marked 'preset' (explicit flags override it); smoke: seconds, "
                            "cpu: 35 minutes on 2 cores, paper: Glow's CIFAR-10 settings for a GPU")
    group.add_argument("--resolution", type=positive_int, default=None,
                       help="resize and centre-crop to this square size (default: as stored)")
    group.add_argument("--levels", type=positive_int, help="multi-scale levels, lowered until the size divides "
                       "2**levels")
    group.add_argument("--steps", type=positive_int, help="flow steps per level")
    group.add_argument("--width", type=positive_int, help="hidden channels of the coupling networks")
    group.add_argument("--warmup", type=non_negative_int, help="linear learning-rate warm-up in iterations")
    group.add_argument("--optimizer", choices=sorted(module.OPTIMIZERS), help="adam unless --scale paper")
    group.add_argument("--clip", type=positive_float, default=d["clip"], help="gradient-norm clipping threshold")
    group.add_argument("--n-bits", type=positive_int, default=d["n_bits"], help="bits per colour channel (1-8)")
    group.add_argument("--eval-data", default=None,
                       help="held-out images for the final test bits/dim: an image folder or a dataset name (its "
                            "test split)")
    group.add_argument("--eval-limit", type=positive_int, default=None, help="use only the first N held-out images")
    # The preset decides these unless typed.
    parser.set_defaults(**dict.fromkeys(("levels", "steps", "width", "warmup", "optimizer", "iterations", "max_minutes",
                                         "batch_size", "lr"), FROM_SCALE))


def run(args: argparse.Namespace) -> int:
    _, module_name, function = TRAINERS[args.kind]
    module = importlib.import_module(module_name)
    train = getattr(module, function)
    kwargs = training_arguments(args, module, train)
    try:
        metrics = train(**kwargs, progress=not args.no_progress, command=command_line(args))
    except getattr(module, "DivergedError", ()) as error:
        print(f"semaug train-generator {args.kind}: training diverged ({error}); stopped without saving; the last "
              "good checkpoint is kept. Lower --lr, raise --warmup or lower --clip, then continue with --resume.",
              file=sys.stderr)
        return 1
    line = f"trained {metrics['iterations']} iterations in {metrics['seconds']:.0f} s"
    if "train_bpd_ema" in metrics:
        line += f", train bits/dim {metrics['train_bpd_ema']:.3f}"
    if "test_bpd" in metrics:
        line += f", test bits/dim {metrics['test_bpd']:.3f} on {metrics['test_images']} images"
    print(f"{line}\nwrote {metrics['generator']}")
    return 0


def training_arguments(args: argparse.Namespace, module: Any, train: Any) -> dict[str, Any]:
    """The keyword arguments of ``train``: the flags (with the kind's preset), or with ``--resume`` the
    checkpoint's arguments with the typed flags on top."""
    from torch_semaug.train.generator_run import checkpoint_arguments

    names = [n for n in inspect.signature(train).parameters if n not in ("progress", "command")]
    typed = {n: getattr(args, n) for n in getattr(args, EXPLICIT, set()) if n in names}
    preset = module.PRESETS[args.scale] if "scale" in vars(args) else {}
    if args.resume is None:
        missing = [f"--{n}" for n in ("data", "out") if getattr(args, n) is None]
        if missing:
            raise UsageError(f"{' and '.join(missing)} required (or --resume PATH to continue a run)")
        kwargs = {n: getattr(args, n) for n in names} | {k: v for k, v in preset.items() if k not in typed}
        return {k: v for k, v in kwargs.items() if v is not FROM_SCALE}
    kwargs = checkpoint_arguments(args.resume, args.kind)
    kwargs.pop("init_from", None)  # where the run started; a resumed run continues its own weights
    if "scale" in getattr(args, EXPLICIT, set()):
        kwargs |= {k: v for k, v in preset.items() if k not in typed}
    flags = flag_names(args._parser)
    changed = [f"{flags[n]} {v} (checkpoint: {kwargs[n]})" for n, v in typed.items() if n in kwargs and kwargs[n] != v]
    if changed:
        print(f"overriding the checkpoint: {', '.join(changed)}")
    return kwargs | typed | {"resume": args.resume}


def command_line(args: argparse.Namespace) -> str:
    """The command as typed (flags in the parser's order), recorded in ``generator.safetensors``."""
    typed = getattr(args, EXPLICIT, set())
    words = ["semaug", "train-generator", args.kind]
    for action in args._parser._actions:
        if action.dest in typed and action.option_strings:
            flag = max(action.option_strings, key=len)
            value = getattr(args, action.dest)
            words += [flag] if isinstance(value, bool) else [flag, shlex.quote(str(value))]
    return " ".join(words)
