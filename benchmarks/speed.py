"""Speed of each transform as a ratio to its floor, measured in the same run.

The floor of an adversarial transform is what its inner loop cannot avoid: per step, one generator and one
classifier forward+backward on the batch (for the identity generator, the classifier alone). Transform and
floor are timed interleaved, repeat by repeat, and the medians are compared, so that load from other
processes hits both alike.

    python -m benchmarks.speed --scale cpu --out benchmarks/results/speed.md

Scales: ``smoke`` (a tiny CNN, seconds; run by the tests), ``cpu`` (timm resnet18 at batch 128, 32 px, 2 CPU
cores), ``paper`` (the same on a GPU, more repeats); ``--model``, ``--batch``, ``--steps`` and ``--repeats``
override a scale's sizes (e.g. the StyleGAN2 cases at batch 32 where batch 128 takes too long). Add a case
by writing a function that takes a :class:`Setup` and returns :class:`Row` s, and listing it in ``CASES``.
"""

from __future__ import annotations

import argparse
import copy
import datetime
import platform
import resource
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

import torch_semaug as ts
from torch_semaug._io import write_text_atomic


@dataclass
class Setup:
    """What every case gets: the classifier, a batch, its labels, and how to time things."""

    scale: str
    device: torch.device
    model_name: str
    model: nn.Module
    images: torch.Tensor
    labels: torch.Tensor
    steps: int
    repeats: int
    train_step_seconds: float  # one SGD step of the classifier on the batch: what a user's epoch costs anyway


@dataclass
class Row:
    """One line of the results table."""

    transform: str
    config: str
    seconds: float
    floor_seconds: float
    floor: str
    peak_memory: str

    @property
    def ratio(self) -> float:
        return self.seconds / self.floor_seconds


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_pair(run: Callable[[], object], floor: Callable[[], object], setup: Setup) -> tuple[float, float, str]:
    """Median seconds of ``run`` and ``floor`` timed alternately, and the peak memory of ``run``."""
    run(), floor()  # warm-up: allocator, kernels, lazy initialisation
    run_times, floor_times = [], []
    if setup.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(setup.device)
    for _ in range(setup.repeats):
        for fn, times in ((run, run_times), (floor, floor_times)):
            _sync(setup.device)
            start = time.perf_counter()
            fn()
            _sync(setup.device)
            times.append(time.perf_counter() - start)
    if setup.device.type == "cuda":
        peak = f"{torch.cuda.max_memory_allocated(setup.device) / 2**20:.0f} MiB (CUDA peak)"
    else:
        peak = f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10:.0f} MiB (process max RSS)"
    return statistics.median(run_times), statistics.median(floor_times), peak


def classifier_step(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> None:
    """One classifier forward+backward w.r.t. the input, parameters frozen: an attack step's floor."""
    x = images.detach().requires_grad_(True)
    torch.autograd.grad(F.cross_entropy(model(x), labels, reduction="sum"), x)


def case_adversarial_latent_attack(setup: Setup) -> list[Row]:
    """AdversarialLatentAttack over the identity generator (pixel PGD) vs steps x classifier fwd+bwd."""
    model, images, labels, steps = setup.model, setup.images, setup.labels, setup.steps
    generator = ts.IdentityGenerator(tuple(images.shape[1:])).to(setup.device)

    def floor() -> None:
        with ts.classifier_guard(model) as inner:
            for _ in range(steps):
                classifier_step(inner, images, labels)

    rows = []
    for early_stop in (False, True):
        attack = ts.AdversarialLatentAttack(
            generator, model=model, eps=8 / 255, step_size=2 / 255, steps=steps, early_stop=early_stop
        )
        seconds, floor_seconds, peak = time_pair(lambda a=attack: a(images, labels), floor, setup)
        rows.append(Row("adversarial_latent_attack", f"identity, linf, {steps} steps, early_stop={early_stop}",
                        seconds, floor_seconds, f"{steps} x classifier fwd+bwd", peak))
    return rows


# scale: Glow (levels, steps, width) at the batch's resolution; cpu is `semaug train-generator glow --scale cpu`
GLOW_SIZES = {"smoke": (2, 1, 8), "cpu": (3, 8, 64), "paper": (3, 32, 512)}


def make_glow(setup: Setup) -> ts.Glow:
    """A Glow of the scale's size with its actnorm layers initialised on the batch (weights do not matter)."""
    levels, steps, width = GLOW_SIZES[setup.scale]
    torch.manual_seed(0)
    glow = ts.Glow(tuple(setup.images.shape[1:]), levels=levels, steps=steps, width=width).to(setup.device)
    glow.initialize(setup.images)
    return glow.freeze()


def case_flow_perturb(setup: Setup) -> list[Row]:
    """FlowPerturb A-LA vs steps x (Glow decode + classifier fwd+bwd) + one encode; R-LA vs encode + decode."""
    model, images, labels, steps = setup.model, setup.images, setup.labels, setup.steps
    glow = make_glow(setup)
    flow_steps = min(steps, 3)  # the paper's k = 3

    def adversarial_floor() -> None:
        with torch.no_grad():
            z = glow.encode(images)
        with ts.classifier_guard(model) as inner:
            for _ in range(flow_steps):
                z_var = z.detach().requires_grad_(True)
                loss = F.cross_entropy(inner(glow.decode(z_var)), labels, reduction="sum")
                torch.autograd.grad(loss, z_var)

    def random_floor() -> None:
        with torch.no_grad():
            glow.decode(glow.encode(images))

    ala = ts.FlowPerturb(glow, mode="adversarial", eps=1.0, norm="l2", step_size=0.5, steps=flow_steps, model=model)
    rla = ts.FlowPerturb(glow, mode="random", eps=0.25, norm="linf")
    levels, glow_steps, width = GLOW_SIZES[setup.scale]
    glow_name = f"Glow L{levels} K{glow_steps} w{width}"
    rows = []
    seconds, floor_seconds, peak = time_pair(lambda: ala(images, labels), adversarial_floor, setup)
    rows.append(Row("flow_perturb", f"adversarial (A-LA), {glow_name}, l2 eps 1.0, {flow_steps} steps", seconds,
                    floor_seconds, f"{flow_steps} x (Glow decode + classifier fwd+bwd) + encode", peak))
    seconds, floor_seconds, peak = time_pair(lambda: rla(images, labels), random_floor, setup)
    rows.append(Row("flow_perturb", f"random (R-LA), {glow_name}, linf eps 0.25", seconds, floor_seconds,
                    "Glow encode + decode", peak))
    return rows


def _speed_stylegan(setup: Setup) -> ts.StyleGAN2:
    """A StyleGAN2 at the batch's resolution: tiny for smoke, the 32 px default (1.3 M parameters) otherwise."""
    torch.manual_seed(0)
    size = setup.images.shape[-1]
    if setup.scale == "smoke":
        generator = ts.StyleGAN2(size, z_dim=16, w_dim=16, mapping_layers=2, channel_base=256, channel_max=16)
    else:
        generator = ts.StyleGAN2(size)
    return generator.to(setup.device).freeze()


def case_direction_edit(setup: Setup) -> list[Row]:
    """Adversarial DirectionEdit vs steps x (generator + classifier fwd+bwd), on cached W+ latents."""
    model, labels, steps = setup.model, setup.labels, setup.steps
    generator = _speed_stylegan(setup)
    size = generator.image_shape[1:]
    images = F.interpolate(setup.images, size=size, mode="bilinear", antialias=True).clamp(0, 1)
    latents = generator.sample_latent(images.shape[0], torch.Generator(setup.device).manual_seed(0))
    directions = ts.find_directions(generator, n_components=10, num_samples=1000, progress=False)

    def floor() -> None:
        with ts.classifier_guard(model) as inner:
            for _ in range(steps):
                z = latents.detach().requires_grad_(True)
                x = (generator.decode(z) + 1) / 2
                torch.autograd.grad(F.cross_entropy(inner(x), labels, reduction="sum"), z)

    rows = []
    for layers in (None, (0, 4)):
        edit = ts.DirectionEdit(generator, directions=directions, model=model, mode="adversarial", eps=1.0, steps=steps,
                                layers=layers)
        seconds, floor_seconds, peak = time_pair(lambda e=edit: e(images, labels, latents=latents), floor, setup)
        rows.append(Row("direction_edit", f"{type(generator).__name__} {size[0]} px, 10 directions, layers={layers}, "
                        f"{steps} steps", seconds, floor_seconds, f"{steps} x (generator + classifier fwd+bwd)",
                        peak))
    return rows


def case_latent_mix(setup: Setup) -> list[Row]:
    """RandMix vs one decode of the batch; AdvMix vs restarts x steps x (G + classifier fwd+bwd)."""
    model, images, labels, steps = setup.model, setup.images, setup.labels, setup.steps
    generator = _speed_stylegan(setup)
    latents = generator.sample_latent(images.shape[0], torch.Generator().manual_seed(0)).to(setup.device)
    rows = []
    randmix = ts.LatentMix(generator)

    def decode_floor() -> None:
        with torch.no_grad():
            generator.decode(latents)

    seconds, floor_seconds, peak = time_pair(lambda: randmix(images, labels, latents=latents), decode_floor, setup)
    rows.append(Row("latent_mix", f"random (RandMix), layers {randmix.layers}", seconds, floor_seconds,
                    "1 x G decode", peak))
    restarts = 2 if setup.scale == "smoke" else 5

    def adv_floor() -> None:
        with ts.classifier_guard(model) as inner:
            for _ in range(restarts * steps):
                z = latents.detach().requires_grad_(True)
                loss = F.cross_entropy(inner(generator.decode(z) * 0.5 + 0.5), labels, reduction="sum")
                torch.autograd.grad(loss, z)

    for early_stop in (False, True):
        advmix = ts.LatentMix(generator, model=model, mode="adversarial", steps=steps, restarts=restarts,
                              early_stop=early_stop)
        seconds, floor_seconds, peak = time_pair(lambda a=advmix: a(images, labels, latents=latents), adv_floor,
                                                 setup)
        rows.append(Row("latent_mix", f"adversarial (AdvMix), {restarts} restarts x {steps} steps, "
                        f"early_stop={early_stop}", seconds, floor_seconds,
                        f"{restarts * steps} x (G + classifier fwd+bwd)", peak))
    return rows


def case_encoders(setup: Setup) -> list[Row]:
    """Encoders into W+: images per second, as a ratio to one decode of the batch."""
    from torch_semaug.generators.encoders import LearnedEncoder, OptimizationEncoder

    generator = _speed_stylegan(setup)
    images = setup.images * 2 - 1
    latents = generator.sample_latent(images.shape[0], torch.Generator().manual_seed(0)).to(setup.device)

    def decode_floor() -> None:
        with torch.no_grad():
            generator.decode(latents)

    learned = LearnedEncoder(generator).to(setup.device)
    opt_steps = 5 if setup.scale == "smoke" else 50
    optim = OptimizationEncoder(generator, steps=opt_steps, batch_size=images.shape[0])
    rows = []
    for name, fn in (("learned (1 forward pass)", lambda: learned.encode(images)),
                     (f"optimisation, {opt_steps} steps", lambda: optim.encode(images))):
        seconds, floor_seconds, peak = time_pair(fn, decode_floor, setup)
        rows.append(Row("encoder", f"{name}: {images.shape[0] / seconds:.1f} images/s", seconds, floor_seconds,
                        "1 x G decode", peak))
    return rows


CASES: dict[str, Callable[[Setup], list[Row]]] = {
    "adversarial_latent_attack": case_adversarial_latent_attack,
    "flow_perturb": case_flow_perturb,
    "direction_edit": case_direction_edit,
    "latent_mix": case_latent_mix,
    "encoders": case_encoders,
}

SCALES = {
    # scale: (model, batch, image size, steps, repeats)
    "smoke": ("tiny", 8, 16, 2, 2),
    "cpu": ("resnet18", 128, 32, 7, 5),
    "paper": ("resnet18", 128, 32, 10, 20),
}


def build_model(name: str, channels: int, num_classes: int) -> nn.Module:
    if name == "tiny":
        return nn.Sequential(nn.Conv2d(channels, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                             nn.Flatten(), nn.Linear(8, num_classes))
    import timm

    return timm.create_model(name, num_classes=num_classes, in_chans=channels)


def time_train_step(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, repeats: int) -> float:
    """Median seconds of one classifier training step (forward, backward, SGD update) on a copy of ``model``."""
    model = copy.deepcopy(model).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(model(images), labels).backward()
        optimizer.step()

    step()  # warm-up
    times = []
    for _ in range(repeats):
        _sync(images.device)
        start = time.perf_counter()
        step()
        _sync(images.device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def make_setup(scale: str, device: str, seed: int = 0, *, model_name: str | None = None, batch: int | None = None,
               steps: int | None = None, repeats: int | None = None) -> Setup:
    """The scale's classifier, batch, steps and repeats; any of them overridden when given."""
    default_model, default_batch, size, default_steps, default_repeats = SCALES[scale]
    model_name, batch = model_name or default_model, batch or default_batch
    steps, repeats = steps or default_steps, repeats or default_repeats
    torch.manual_seed(seed)
    dev = torch.device(device)
    model = build_model(model_name, 3, 10).to(dev).train()
    images = torch.rand(batch, 3, size, size, device=dev)
    with torch.no_grad(), ts.classifier_guard(model) as inner:
        labels = inner(images).argmax(1)  # every example starts correctly classified: early stop has work
    return Setup(scale, dev, model_name, model, images, labels, steps, repeats,
                 time_train_step(model, images, labels, repeats))


def markdown(rows: list[Row], setup: Setup, command: str, wall: float) -> str:
    batch, size = setup.images.shape[0], setup.images.shape[-1]
    lines = [
        "# Speed: each transform as a ratio to its floor",
        "",
        f"- command: `{command}`",
        f"- date: {datetime.date.today().isoformat()}; machine: {platform.processor() or platform.machine()}, "
        f"{torch.get_num_threads()} threads, device {setup.device}; torch {torch.__version__}",
        f"- classifier: {setup.model_name}, batch {batch}, {size}x{size} px; median of {setup.repeats} interleaved "
        f"repeats; wall time {wall:.0f} s",
        f"- one classifier training step (forward, backward, SGD) on the same batch: "
        f"{setup.train_step_seconds * 1e3:.1f} ms; 'x train step' is a transform's time per batch in those units",
        "",
        "| transform | configuration | time / batch (ms) | floor (ms) | floor is | ratio | x train step "
        "| peak memory |",
        "|---|---|---:|---:|---|---:|---:|---|",
    ]
    for row in rows:
        lines.append(f"| {row.transform} | {row.config} | {row.seconds * 1e3:.1f} | {row.floor_seconds * 1e3:.1f} "
                     f"| {row.floor} | {row.ratio:.3f} | {row.seconds / setup.train_step_seconds:.1f} "
                     f"| {row.peak_memory} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> list[Row]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", choices=list(SCALES), default="smoke")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--cases", nargs="*", choices=list(CASES), default=list(CASES))
    parser.add_argument("--out", type=Path, help="write the Markdown table here (atomically)")
    parser.add_argument("--model", default=None, help="override the scale's classifier ('tiny' or a timm name)")
    parser.add_argument("--batch", type=int, default=None, help="override the scale's batch size")
    parser.add_argument("--steps", type=int, default=None, help="override the scale's attack steps")
    parser.add_argument("--repeats", type=int, default=None, help="override the scale's timing repeats")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    setup = make_setup(args.scale, args.device, model_name=args.model, batch=args.batch, steps=args.steps,
                       repeats=args.repeats)
    command = "python -m benchmarks.speed " + " ".join(argv if argv is not None else sys.argv[1:])
    rows: list[Row] = []
    for name in args.cases:
        case_rows = CASES[name](setup)
        rows += case_rows
        for row in case_rows:  # report as cases finish: a long run stopped early keeps what it measured
            print(f"{row.transform} | {row.config} | ratio {row.ratio:.3f} | "
                  f"{row.seconds / setup.train_step_seconds:.1f} x train step", flush=True)
        if args.out:
            write_text_atomic(args.out, markdown(rows, setup, command, time.perf_counter() - start))
    print(markdown(rows, setup, command, time.perf_counter() - start))
    return rows


if __name__ == "__main__":
    main()
