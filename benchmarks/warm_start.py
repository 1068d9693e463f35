"""Warm starts: does 1/5 of the adversarial steps with per-example memory match the full budget?

Two settings of the papers, three arms per method, each over the same seeds and batches:

* Color-MNIST, Figure 7 at one training-colour std (the AdvMix paper; small CNN, unbiased test set):
  ``advmix`` (the bundled StyleGAN2, 5 restarts x 7 steps) and ``pixel_at`` (eps 0.1);
* CIFAR-10 5 % (the flow paper, as ``benchmarks/cifar_lowdata.py`` trains it): ``ala`` (A-LA through the
  Glow, 3 steps, after flips/crops; the offsets transfer approximately under them, see ``--transfer``).

Arms: ``full``: the budget from scratch; ``fifth``: 1/5 of the steps (at least 1: A-LA's 3 become 1) from
scratch; ``fifth+warm``: the same, each example's attack starting from its last move
(:class:`~torch_semaug.attacks.AttackMemory`; AdvMix: the first restart is centred on the code found last
time, the others still drawn from the prior). Step sizes stay those of the full budget.

Reported: test accuracy (%), the training loss on the augmented batches over the last quarter of the steps
(how hard the attack made them: the direct measure of whether fewer, warm-started steps reach as far), and
training wall time (s), mean ± sample sd over seeds, each arm's time as a fraction of ``full``'s, and
whether ``fifth+warm`` is within one sd of ``full``. The Markdown file is rewritten after every (method, arm,
seed), so a stopped run leaves what it measured. ``--scale smoke`` runs on synthetic data in seconds (the
tests). ``--transfer`` measures how A-LA offsets transfer to a flipped / cropped view instead::

    python -m benchmarks.warm_start --scale smoke
    python -m benchmarks.warm_start --scale cpu --data-root $SEMAUG_DATA --seeds 0,1,2
    python -m benchmarks.warm_start --scale cpu --transfer
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

import torch_semaug as ts
from benchmarks._bench import add_run_arguments, fmt_mean_sd, mean_sd, parse_run_args, stack, table, write_results
from benchmarks.color_mnist import color_mnist
from torch_semaug.commands._types import positive_int
from torch_semaug.generators import load_generator
from torch_semaug.train.quick import Method, accuracy, cifar_resnet, flips_crops, invert, small_cnn, then, train

GENERATOR = Path(ts.__file__).parent / "assets" / "colormnist32_stylegan2.safetensors"
FLOW = "benchmarks/checkpoints/glow-cifar10-cpu.safetensors"
METHODS = ("advmix", "pixel_at", "ala")
ARMS = ("full", "fifth", "fifth+warm")
SETTINGS = {  # the papers' attack budgets at cpu scale too (AdvMix 5 x 7, A-LA 3 steps); data and training shrink
    "smoke": dict(train=64, test=64, steps=4, batch=16, encoder="learned:2", sigma=0.1, restarts=1, adv_steps=5,
                  at_steps=5, ala_steps=3, cifar_train=32, cifar_test=16, epochs=1, cifar_batch=16, blocks=(1, 1),
                  width=4),
    "cpu": dict(train=5000, test=2000, steps=400, batch=64, encoder="learned:300", sigma=0.05, restarts=5,
                adv_steps=7, at_steps=10, ala_steps=3, cifar_train=2500, cifar_test=10000, epochs=8,
                cifar_batch=128, blocks=(1, 1, 1), width=16),
}


@dataclass
class Task:
    """One method's data, classifier, training recipe and attack (built per arm, model and seed)."""

    images: torch.Tensor
    labels: torch.Tensor
    test: tuple[torch.Tensor, torch.Tensor]
    model: Callable[[], nn.Module]
    recipe: dict
    attack: Callable[[str, nn.Module, int], Method]


def arm_steps(full: int, arm: str) -> int:
    return full if arm == "full" else max(1, full // 5)


def color_mnist_task(method: str, args: argparse.Namespace, s: dict) -> Task:
    """Figure 7 at one sigma: AdvMix (the bundled StyleGAN2, W+ codes inverted once) or pixel AT (eps 0.1).
    Step sizes stay those of the full budget (as ATTA's): fewer steps reach less far from scratch."""
    images, labels = stack(color_mnist(args, s["train"], True, "biased", s["sigma"]))
    test = stack(color_mnist(args, s["test"], False, "uniform", 0.0))
    generator = ts.StyleGAN2.load(args.generator) if method == "advmix" else None
    codes = invert(generator, images, s["encoder"], seed=args.seeds[0]) if method == "advmix" else None

    def attack(arm: str, model: nn.Module, seed: int) -> Method:
        memory = ts.AttackMemory(len(images)) if arm.endswith("+warm") else None
        rng = torch.Generator().manual_seed(seed + 1)
        if method == "advmix":
            mix = ts.LatentMix(generator, model=model, mode="adversarial", steps=arm_steps(s["adv_steps"], arm),
                               restarts=s["restarts"], p=0.5, rng=rng, warm_start=memory)
            return lambda x, y, idx: mix(x, y, latents=codes[idx], indices=idx)
        pgd = ts.AdversarialLatentAttack(ts.IdentityGenerator(tuple(images.shape[1:])), model=model, eps=0.1,
                                         step_size=0.1 / 4, steps=arm_steps(s["at_steps"], arm), random_start=True,
                                         p=0.5, rng=rng, warm_start=memory)
        return lambda x, y, idx: pgd(x, y, indices=idx)

    return Task(images, labels, test, lambda: small_cnn(10), dict(steps=s["steps"], batch=s["batch"]), attack)


def cifar_task(args: argparse.Namespace, s: dict) -> Task:
    """CIFAR-10 5 % (the official first 2,500 images) as benchmarks/cifar_lowdata.py trains it: flips/crops
    once, then A-LA through the Glow on the whole batch (flow-lp's p), a CIFAR-style ResNet, SGD."""
    from benchmarks.cifar_lowdata import MILESTONES, load_split

    images, labels = load_split(args, "train", s["cifar_train"])
    test = load_split(args, "test", s["cifar_test"])
    flow = load_generator(args.flow)

    def attack(arm: str, model: nn.Module, seed: int) -> Method:
        memory = ts.AttackMemory(len(images)) if arm.endswith("+warm") else None
        ala = ts.FlowPerturb(flow, model=model, mode="adversarial", steps=arm_steps(s["ala_steps"], arm),
                             rng=torch.Generator().manual_seed(seed + 1), warm_start=memory)
        return then(flips_crops(images.shape[-1]), lambda x, y, idx: ala(x, y, indices=idx))

    steps = math.ceil(s["epochs"] * len(images) / s["cifar_batch"])
    recipe = dict(steps=steps, batch=s["cifar_batch"], optimizer="sgd", lr=0.1, weight_decay=5e-4,
                  milestones=MILESTONES)
    return Task(images, labels, test, lambda: cifar_resnet(10, blocks=s["blocks"], width=s["width"]), recipe, attack)


def passes(method: str, arm: str, s: dict) -> int:
    """Generator + classifier passes per attacked example (without early stop)."""
    if method == "advmix":
        return s["restarts"] * arm_steps(s["adv_steps"], arm)
    return arm_steps(s["ala_steps" if method == "ala" else "at_steps"], arm)


def run(args: argparse.Namespace, s: dict, report: Callable[[dict], None]) -> dict:
    """Every (method, arm, seed): train, time it, test; ``report`` after each."""
    results: dict = {}
    for method in args.methods:
        task = cifar_task(args, s) if method == "ala" else color_mnist_task(method, args, s)
        indices = torch.arange(len(task.images))  # what train() hands each method, batch by batch
        for seed in args.seeds:  # seeds outermost: a stopped run has every arm of the seeds it finished
            for arm in ARMS:
                torch.manual_seed(seed)
                model = task.model()
                model(task.images[:2])  # materialise lazy layers before the attack binds the model
                method_fn = task.attack(arm, model, seed)
                tic, losses = time.perf_counter(), []
                train(model, method_fn, task.images, task.labels, seed=seed, latents=indices, losses=losses,
                      desc=f"{method} {arm} seed {seed}", **task.recipe)
                seconds = time.perf_counter() - tic
                cell = results.setdefault((method, arm), {"acc": [], "s": [], "loss": []})
                cell["acc"].append(accuracy(model, *task.test))
                cell["s"].append(seconds)
                cell["loss"].append(mean_sd(losses[-len(losses) // 4:])[0])  # the last quarter (all if < 4)
                print(f"  {method} {arm} seed {seed}: {cell['acc'][-1]:.2f} % in {seconds:.1f} s", flush=True)
                report(results)
    return results


def render(results: dict, s: dict, methods: list[str]) -> str:
    rows = []
    for method in methods:
        full = results.get((method, "full"))
        for arm in ARMS:
            cell = results.get((method, arm))
            if cell is None:
                rows.append([method, arm, passes(method, arm, s), "–", "–", "–", "–"])
                continue
            ratio = f"{mean_sd(cell['s'])[0] / mean_sd(full['s'])[0]:.2f}" if full else "–"
            rows.append([method, arm, passes(method, arm, s), fmt_mean_sd(cell["acc"]), fmt_mean_sd(cell["loss"]),
                         fmt_mean_sd(cell["s"]), ratio])
    header = ["method", "arm", "passes / example", "test acc. (%)", "train loss, last quarter",
              "train wall time (s)", "time / full"]
    return table(header, rows)


def verdicts(results: dict, methods: list[str]) -> list[str]:
    """Whether ``fifth+warm`` is within one sd (of ``full``) of the full budget, stated plainly."""
    lines = []
    for method in methods:
        full, warm = results.get((method, "full")), results.get((method, "fifth+warm"))
        if not full or not warm:
            continue
        (mf, sf), (mw, _) = mean_sd(full["acc"]), mean_sd(warm["acc"])
        within = abs(mw - mf) <= sf
        lines.append(f"- {method}: fifth+warm {mw:.2f} % vs full {mf:.2f} ± {sf:.2f} % over {len(full['acc'])} "
                     f"seed(s): {'within' if within else 'NOT within'} one sd of full, at "
                     f"{mean_sd(warm['s'])[0] / mean_sd(full['s'])[0]:.2f} of its wall time.")
    return lines


class _FirstCall(torch.nn.Module):
    """The classifier, keeping the images of its first call: the point an attack starts from."""

    def __init__(self, inner: torch.nn.Module) -> None:
        super().__init__()
        self.inner, self.first = inner, None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.first is None:
            self.first = x.detach()
        return self.inner(x)


VIEWS = {  # the un-augmented image, a horizontal flip, and a crop of the 4-px padded image shifted by (2, -3)
    "same": lambda x: x,
    "flip": lambda x: x.flip(-1),
    "crop": lambda x: torch.nn.functional.pad(x, (4, 4, 4, 4))[..., 6:6 + x.shape[-2], 1:1 + x.shape[-1]],
}


def transfer(args: argparse.Namespace) -> list[str]:
    """A-LA offsets found on the un-augmented image, reused on a flipped / cropped view of it.

    Per view: the classifier's loss where a 1-step attack starts (cold: A-LA's random start; warm: the stored
    offset, projected) and after the full 3 steps, and the cosine between the stored offset and the offset a
    fresh attack finds on that view."""
    n, steps = (32, 3) if args.scale == "smoke" else (256, 300)
    from benchmarks.cifar_lowdata import load_split  # CIFAR-10 (smoke without --data-root: synthetic stand-ins)

    images, labels = load_split(args, "train", n if args.scale == "smoke" else 5000)
    model = train(small_cnn(10), "flips_crops", images, labels, steps=steps, batch=64, seed=args.seeds[0],
                  num_classes=10, desc="classifier")
    images, labels, idx = images[:n], labels[:n], torch.arange(n)
    flow = load_generator(args.flow)

    def attack(x: torch.Tensor, memory: ts.AttackMemory | None, attack_steps: int, train_mode: bool) -> tuple:
        recorder = _FirstCall(model)
        t = ts.FlowPerturb(flow, model=recorder, mode="adversarial", steps=attack_steps, warm_start=memory,
                           rng=torch.Generator().manual_seed(args.seeds[0])).train(train_mode)
        out = t(x, labels, indices=idx)[0]
        with torch.no_grad():
            loss = lambda v: torch.nn.functional.cross_entropy(model(v), labels).item()  # noqa: E731
            return loss(recorder.first), loss(out)

    stored = ts.AttackMemory(n)
    attack(images, stored, 3, True)
    rows = []
    for view, fn in VIEWS.items():
        x = fn(images)
        cold_start, cold_end = attack(x, None, 3, False)
        warm_start, warm_end = attack(x, stored, 3, False)
        fresh = ts.AttackMemory(n)
        attack(x, fresh, 3, True)
        both = stored.known & fresh.known  # a row forgotten (non-finite decode) has no offset to compare
        cosine = torch.nn.functional.cosine_similarity(stored.moves[both], fresh.moves[both], dim=1).mean().item()
        rows.append([view, cold_start, warm_start, cold_end, warm_end, cosine])
    header = ["view", "loss at start, cold", "loss at start, warm", "loss after 3 steps, cold",
              "loss after 3 steps, warm", "cos(stored offset, fresh offset)"]
    return [f"## Transfer under flips/crops (A-LA through `{Path(args.flow).name}`, {n} images, classifier trained "
            f"{steps} steps with flips/crops)", "", table(header, rows)]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scale", choices=tuple(SETTINGS), default="smoke")
    parser.add_argument("--data-root", default=None, help="folder with MNIST/raw (smoke: synthetic strokes)")
    parser.add_argument("--generator", default=str(GENERATOR), help="Color-MNIST StyleGAN2 (default: the bundled)")
    parser.add_argument("--methods", default=",".join(METHODS), help=f"comma-separated subset of {METHODS}")
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated seeds of the classifiers")
    parser.add_argument("--transfer", action="store_true", help="only measure how A-LA offsets transfer to a "
                        "flipped / cropped view")
    parser.add_argument("--flow", default=FLOW, help="the CIFAR-10 Glow (A-LA, --transfer)")
    parser.add_argument("--steps", type=positive_int, default=None,
                        help="Adam steps of the Color-MNIST classifiers (default: the scale's)")
    add_run_arguments(parser)
    args = parse_run_args(parser, argv)
    args.seeds = [int(v) for v in args.seeds.split(",")]
    args.methods = args.methods.split(",")
    if not set(args.methods) <= set(METHODS):
        raise ValueError(f"methods: expected a comma-separated subset of {','.join(METHODS)}, got {args.methods}")
    args.out.mkdir(parents=True, exist_ok=True)
    s, start = SETTINGS[args.scale], time.time()
    if args.steps is not None:
        s = dict(s, steps=args.steps)
    if args.transfer:
        name = f"warm_start_transfer{'' if args.scale == 'cpu' else '_' + args.scale}.md"
        write_results(args.out / name, "Warm starts under flips and crops", start, transfer(args), [])
        return
    path = args.out / f"warm_start{'' if args.scale == 'cpu' else '_' + args.scale}.md"
    intro = (f"Scale `{args.scale}`: Color-MNIST Figure 7 at sigma {s['sigma']} (advmix, pixel_at: unbiased test "
             f"accuracy), {s['train']} training / {s['test']} test digits, {s['steps']} Adam steps of {s['batch']}, "
             f"half of each batch attacked; AdvMix {s['restarts']} restarts (eps 0.03, W+ by `{s['encoder']}`), "
             f"pixel AT eps 0.1 with random start. CIFAR-10 (ala: test accuracy): the first {s['cifar_train']} "
             f"training images, {s['cifar_test']} test images, {s['epochs']} epochs of SGD at batch "
             f"{s['cifar_batch']}, flips/crops then A-LA on every image. Seeds {args.seeds}; cells mean ± sample sd.")

    def report(results: dict) -> None:
        write_results(path, "Warm starts: 1/5 of the attack steps from each example's last move", start,
                      [intro, "", render(results, s, args.methods)], verdicts(results, args.methods))

    report(run(args, s, report))


if __name__ == "__main__":
    main()
