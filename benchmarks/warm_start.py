"""Warm starts (issue 16): does 1/5 of the adversarial steps with per-example memory match the full budget?

Color-MNIST, Figure 7 at one training-colour std (the AdvMix paper's setting, small CNN, unbiased test set),
three arms per method, each over the same seeds and batches:

* ``full``: the budget from scratch (AdvMix: ``restarts x steps``; pixel AT: ``steps``);
* ``fifth``: 1/5 of the steps (at least 1) from scratch;
* ``fifth+warm``: 1/5 of the steps, each example's attack starting from its last move
  (:class:`~torch_semaug.attacks.AttackMemory`; AdvMix: the first restart is centred on the code found last
  time, the others still drawn from the prior).

Reported: unbiased test accuracy (%) and training wall time (s), mean ± sample sd over seeds, and each arm's
time as a fraction of ``full``'s. The Markdown file is rewritten after every (arm, seed), so a stopped run
leaves what it measured. ``--scale smoke`` runs on synthetic strokes in seconds (the tests)::

    python -m benchmarks.warm_start --scale smoke
    python -m benchmarks.warm_start --scale cpu --data-root $SEMAUG_DATA --seeds 0,1,2
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

import torch_semaug as ts
from benchmarks._bench import add_run_arguments, fmt_mean_sd, mean_sd, parse_run_args, stack, table, write_results
from benchmarks.color_mnist import color_mnist
from torch_semaug.train.quick import Method, accuracy, invert, small_cnn, train

GENERATOR = Path(ts.__file__).parent / "assets" / "colormnist32_stylegan2.safetensors"
METHODS = ("advmix", "pixel_at")
ARMS = ("full", "fifth", "fifth+warm")
SETTINGS = {  # AdvMix: the paper's 5 restarts x 7 steps at cpu scale too; only the data and steps shrink
    "smoke": dict(train=64, test=64, steps=4, batch=16, encoder="learned:2", sigma=0.1, restarts=1, adv_steps=5,
                  at_steps=5),
    "cpu": dict(train=5000, test=2000, steps=400, batch=64, encoder="learned:300", sigma=0.05, restarts=5,
                adv_steps=7, at_steps=10),
}


def arm_steps(full: int, arm: str) -> int:
    return full if arm == "full" else max(1, full // 5)


def make_attack(method: str, arm: str, s: dict, model: torch.nn.Module, seed: int, images: torch.Tensor,
                codes: torch.Tensor | None, generator: ts.StyleGAN2) -> Method:
    """The batch augmentation of ``method`` in ``arm``; ``train`` hands it the batch's dataset indices. Step
    sizes stay those of the full budget (as ATTA's): fewer steps reach less far from scratch."""
    memory = ts.AttackMemory(len(images)) if arm.endswith("+warm") else None
    rng = torch.Generator().manual_seed(seed + 1)
    if method == "advmix":
        attack = ts.LatentMix(generator, model=model, mode="adversarial", steps=arm_steps(s["adv_steps"], arm),
                              restarts=s["restarts"], p=0.5, rng=rng, warm_start=memory)
        return lambda x, y, idx: attack(x, y, latents=codes[idx], indices=idx)
    attack = ts.AdversarialLatentAttack(ts.IdentityGenerator(tuple(images.shape[1:])), model=model, eps=0.1,
                                        step_size=0.1 / 4, steps=arm_steps(s["at_steps"], arm), random_start=True,
                                        p=0.5, rng=rng, warm_start=memory)
    return lambda x, y, idx: attack(x, y, indices=idx)


def passes(method: str, arm: str, s: dict) -> int:
    """Generator + classifier passes per attacked example (without early stop)."""
    if method == "advmix":
        return s["restarts"] * arm_steps(s["adv_steps"], arm)
    return arm_steps(s["at_steps"], arm)


def run(args: argparse.Namespace, s: dict, report) -> dict:
    generator = ts.StyleGAN2.load(args.generator)
    images, labels = stack(color_mnist(args, s["train"], True, "biased", s["sigma"]))
    test = stack(color_mnist(args, s["test"], False, "uniform", 0.0))
    codes = invert(generator, images, s["encoder"], seed=args.seeds[0]) if "advmix" in args.methods else None
    indices = torch.arange(len(images))  # what train() hands each method, batch by batch: dataset indices
    results: dict = {}
    for method in args.methods:
        for arm in ARMS:
            for seed in args.seeds:
                model = small_cnn(10)
                model(images[:2])  # materialise the lazy layer before the attack binds it
                attack = make_attack(method, arm, s, model, seed, images, codes, generator)
                tic = time.perf_counter()
                train(model, attack, images, labels, steps=s["steps"], batch=s["batch"], seed=seed,
                      latents=indices, desc=f"{method} {arm} seed {seed}")
                seconds = time.perf_counter() - tic
                acc = accuracy(model, *test)
                cell = results.setdefault((method, arm), {"acc": [], "s": []})
                cell["acc"].append(acc)
                cell["s"].append(seconds)
                print(f"  {method} {arm} seed {seed}: {acc:.2f} % in {seconds:.1f} s", flush=True)
                report(results)
    return results


def render(results: dict, s: dict, methods: list[str]) -> str:
    rows = []
    for method in methods:
        full = results.get((method, "full"))
        for arm in ARMS:
            cell = results.get((method, arm))
            if cell is None:
                rows.append([method, arm, passes(method, arm, s), "–", "–", "–"])
                continue
            ratio = f"{mean_sd(cell['s'])[0] / mean_sd(full['s'])[0]:.2f}" if full else "–"
            rows.append([method, arm, passes(method, arm, s), fmt_mean_sd(cell["acc"]), fmt_mean_sd(cell["s"]),
                         ratio])
    header = ["method", "arm", "passes / example", "unbiased test acc. (%)", "train wall time (s)", "time / full"]
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
    """Item 2: A-LA offsets found on the un-augmented image, reused on a flipped / cropped view of it.

    Per view: the classifier's loss where a 1-step attack starts (cold: A-LA's random start; warm: the stored
    offset, projected) and after the full 3 steps, and the cosine between the stored offset and the offset a
    fresh attack finds on that view."""
    from torch_semaug.generators import load_generator

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
                        "flipped / cropped view (issue 16 item 2)")
    parser.add_argument("--flow", default="benchmarks/checkpoints/glow-cifar10-cpu.safetensors",
                        help="--transfer: the CIFAR-10 Glow")
    add_run_arguments(parser)
    args = parse_run_args(parser, argv)
    args.seeds = [int(v) for v in args.seeds.split(",")]
    args.methods = args.methods.split(",")
    if not set(args.methods) <= set(METHODS):
        raise ValueError(f"methods: expected a comma-separated subset of {','.join(METHODS)}, got {args.methods}")
    args.out.mkdir(parents=True, exist_ok=True)
    s, start = SETTINGS[args.scale], time.time()
    if args.transfer:
        name = f"warm_start_transfer{'' if args.scale == 'cpu' else '_' + args.scale}.md"
        write_results(args.out / name, "Warm starts under flips and crops", start, transfer(args), [])
        return
    path = args.out / f"warm_start{'' if args.scale == 'cpu' else '_' + args.scale}.md"
    intro = (f"Scale `{args.scale}`: Color-MNIST Figure 7 at sigma {s['sigma']}, {s['train']} training / {s['test']} "
             f"test digits, {s['steps']} Adam steps of {s['batch']}, half of each batch attacked; AdvMix "
             f"{s['restarts']} restarts (eps 0.03, W+ by `{s['encoder']}`), pixel AT eps 0.1 with random start; "
             f"seeds {args.seeds}; cells mean ± sample sd.")

    def report(results: dict) -> None:
        write_results(path, "Warm starts: 1/5 of the attack steps from each example's last move", start,
                      [intro, "", render(results, s, args.methods)], verdicts(results, args.methods))

    report(run(args, s, report))


if __name__ == "__main__":
    main()
