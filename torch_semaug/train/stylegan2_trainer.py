"""Train a :class:`~torch_semaug.generators.StyleGAN2` on your images (``semaug train-generator stylegan2``).

The StyleGAN2 recipe at small scale: non-saturating logistic loss, lazy R1 penalty on real images,
style-mixing regularisation (so coarse and fine W+ layers carry different factors — what LatentMix
relies on), an exponential moving average of G (the model that is saved), Adam with betas (0, 0.99).
Path-length regularisation is left out (it matters for large models and costs a second backward).
Training draws fresh per-pixel noise for every image, as in the paper: with the fixed ``"const"`` noise
used for augmentation, the noise maps are one template shared by all samples, which G can copy — the
samples then collapse to a single shape in different colours.

The run folder, the checkpoint and the resume rule are those of every generator trainer
(:mod:`torch_semaug.train.generator_run`).
"""

from __future__ import annotations

import copy
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from torch_semaug._checks import check_int_at_least, check_positive, check_probability
from torch_semaug.generators.stylegan2 import StyleGAN2, default_channels
from torch_semaug.train.generator_run import (
    CHECKPOINT,
    Progress,
    check_run_arguments,
    finish_run,
    load_images,
    read_init_from,
    save_checkpoint,
    set_rng_state,
    start_run,
    training_batches,
)
from torch_semaug.train.stylegan2_discriminator import Discriminator
from torch_semaug.viz.grid import save_grid

KIND = "stylegan2"
# Arguments that shape the networks: a resumed run must keep them.
ARCHITECTURE = ("resolution", "z_dim", "w_dim", "mapping_layers", "channel_base", "channel_max")


@dataclass
class _Models:
    G: StyleGAN2
    D: Discriminator
    G_ema: StyleGAN2
    opt_g: torch.optim.Optimizer
    opt_d: torch.optim.Optimizer

    def state(self) -> dict[str, Any]:
        return {name: getattr(self, name).state_dict() for name in ("G", "D", "G_ema", "opt_g", "opt_d")}

    def load(self, state: dict[str, Any], argument: str, path: str) -> None:
        try:
            for name in ("G", "D", "G_ema"):
                getattr(self, name).load_state_dict(state[name])
        except (RuntimeError, KeyError) as error:  # names the missing / unexpected / mis-sized keys
            raise ValueError(f"{argument}: {path!r} was trained with another architecture; pass the same --resolution"
                             f"/--z-dim/--w-dim/--mapping-layers/--channel-* as its run ({error})") from None
        self.opt_g.load_state_dict(state["opt_g"])
        self.opt_d.load_state_dict(state["opt_d"])


def train_stylegan2(
    *, data: str, out: str | os.PathLike[str], resolution: int = 32, iterations: int = 5000,
    max_minutes: float | None = None, batch_size: int = 32, lr: float = 0.002, z_dim: int = 128, w_dim: int = 128,
    mapping_layers: int = 4, channel_base: int = 4096, channel_max: int = 128, r1_gamma: float = 10.0,
    r1_every: int = 16, mixing_prob: float = 0.9, ema_kimg: float = 5.0, mirror: bool = False,
    sample_every: int = 250, checkpoint_every: int = 500, init_from: str | None = None, resume: str | None = None,
    data_root: str | None = None, seed: int = 0, device: str = "cpu", threads: int | None = None, workers: int = 0,
    progress: bool = True, command: str | None = None,
) -> dict[str, Any]:
    """Train (or, with ``resume``, continue) a StyleGAN2; returns the metrics written to ``out/metrics.json``.

    Args:
        data: training images: an image folder or a dataset name (``colormnist:uniform``, ``demo-shapes@500``,
            ``torch/cifar10``, ...; its train split).
        out: run folder (``checkpoint.pt``, ``generator.safetensors``, ``samples/``, ``metrics.json``).
        resolution: image size, a power of two from 16 to 1024.
        iterations: total iterations (one D and one G step each), counted over resumes.
        max_minutes: stop (and save) once the run's wall time passes this.
        batch_size: images per iteration.
        lr: Adam learning rate of G (D's is scaled for lazy R1).
        z_dim, w_dim, mapping_layers, channel_base, channel_max: the generator's shape
            (feature maps per resolution ``min(channel_base // res, channel_max)``).
        r1_gamma: R1 weight; small models need a strong one (at 0.05-1 a 64-channel Color-MNIST model
            collapsed to one digit shape within 1,000 iterations).
        r1_every: lazy R1: the penalty every this many iterations.
        mixing_prob: probability of style mixing per batch.
        ema_kimg: half-life of G's moving average, in thousands of images.
        mirror: random horizontal flips of the training images.
        sample_every: write ``samples/NNNNNN.png`` (and a log line without ``progress``) this often.
        checkpoint_every: write ``checkpoint.pt`` this often.
        init_from: fine-tune, counting iterations from 0: start G, D, the EMA and both optimisers from another
            run's ``checkpoint.pt``, or G and the EMA from a StyleGAN2 ``.safetensors`` (D and the optimisers
            then start fresh).
        resume: continue the run saved at this ``checkpoint.pt`` (or its folder); see the resume rule.
        data_root: the data root of a dataset name (default ``$SEMAUG_DATA``, else ``./data``).
        seed: seeds initialisation, data order, noise and mixing.
        device: torch device.
        threads: torch CPU threads (``None``: torch's default).
        workers: DataLoader worker processes (a resumed run repeats an unstopped one exactly with 0).
        progress: tqdm bar (else a log line every ``sample_every`` iterations).
        command: the command line, recorded in ``generator.safetensors``.
    """
    arguments = {k: v for k, v in locals().items() if k not in ("resume", "progress", "command")}
    _check_arguments(arguments)
    state = start_run(KIND, arguments, resume, ARCHITECTURE)
    folder = Path(out)
    dataset = load_images(data, resolution=resolution, data_root=data_root, mirror=mirror)
    models = _build(arguments, int(dataset[0][0].shape[0]), torch.device(device))
    start, seconds = 0, 0.0
    if state is not None:
        models.load(state, "resume", os.fspath(resume))
        start, seconds = int(state["iteration"]), float(state["seconds"])
        set_rng_state(state["rng"])
        print(f"resuming {os.fspath(resume)} at iteration {start} of {iterations}")
    elif init_from is not None:
        _fine_tune_from(models, init_from, device)
    batches = training_batches(dataset, batch_size, seed=seed, start=start, workers=workers)
    done, seconds, losses = _loop(models, batches, arguments, folder, start, seconds, progress)
    save_grid(_samples(models.G_ema, seed, device), folder / "samples" / "final.png", nrow=8)
    metrics = {"kind": KIND, "iterations": done, "seconds": round(seconds, 1), **losses}
    path = finish_run(folder, copy.deepcopy(models.G_ema).cpu(), metrics, command=command, data=data)
    return metrics | {"generator": os.fspath(path)}


def _check_arguments(a: dict[str, Any]) -> None:
    check_run_arguments(a)
    if not isinstance(a["resolution"], int) or a["resolution"] not in [2**i for i in range(4, 11)]:
        raise ValueError(f"resolution: expected a power of two from 16 to 1024, got {a['resolution']!r}")
    for name in ("z_dim", "w_dim", "mapping_layers", "channel_base", "channel_max", "r1_every"):
        check_int_at_least(a[name], 1, name)
    check_positive(a["ema_kimg"], "ema_kimg")
    check_probability(a["mixing_prob"], "mixing_prob")
    if not isinstance(a["r1_gamma"], int | float) or not a["r1_gamma"] >= 0:
        raise ValueError(f"r1_gamma: expected a number >= 0, got {a['r1_gamma']!r}")


def _build(a: dict[str, Any], image_channels: int, device: torch.device) -> _Models:
    channels = default_channels(a["resolution"], a["channel_base"], a["channel_max"])
    G = StyleGAN2(a["resolution"], z_dim=a["z_dim"], w_dim=a["w_dim"], mapping_layers=a["mapping_layers"],
                  channels=channels, image_channels=image_channels).to(device)
    D = Discriminator(a["resolution"], channels, image_channels).to(device)
    G_ema = copy.deepcopy(G).eval().requires_grad_(False)
    # Lazy regularisation: D's Adam sees the R1 step only every r1_every iterations (Karras et al., App. B).
    ratio = a["r1_every"] / (a["r1_every"] + 1)
    opt_g = torch.optim.Adam(G.parameters(), lr=a["lr"], betas=(0.0, 0.99))
    opt_d = torch.optim.Adam(D.parameters(), lr=a["lr"] * ratio, betas=(0.0, 0.99**ratio))
    return _Models(G, D, G_ema, opt_g, opt_d)


def _fine_tune_from(models: _Models, init_from: str, device: str) -> None:
    state = read_init_from(init_from, KIND, "G")
    if state is None:
        _start_from_generator(models, init_from, device)
        return
    models.load(state, "init_from", init_from)
    print(f"fine-tuning from {init_from} (trained {int(state['iteration'])} iterations there)", file=sys.stderr)


def _start_from_generator(models: _Models, path: str, device: str) -> None:
    """G and its EMA from a released generator file; D and both optimisers start fresh (the file has no D)."""
    try:
        generator = StyleGAN2.load(path, device=device)
    except (ValueError, OSError) as error:
        raise ValueError(f"init_from: cannot read {path!r} as a StyleGAN2 ({error})") from None
    ours, theirs = ({k: v for k, v in g.config().items() if k != "latent_spread"} for g in (models.G, generator))
    if ours != theirs:
        raise ValueError(f"init_from: {path!r} has another architecture; pass the same --resolution/--z-dim/--w-dim/"
                         f"--mapping-layers/--channel-* as it was trained with (its config: {theirs})")
    for target in (models.G, models.G_ema):
        target.load_state_dict(generator.state_dict())
    print(f"fine-tuning from {path}: G and its EMA from the file, D and the optimisers fresh", file=sys.stderr)


def _samples(G: StyleGAN2, seed: int, device: str) -> Tensor:
    """64 samples of fixed latents (their own generator: drawing them leaves the training stream alone)."""
    z = torch.randn(64, G.z_dim, generator=torch.Generator().manual_seed(seed)).to(device)
    with torch.no_grad():
        return G(z).clamp(-1, 1) * 0.5 + 0.5


def _mixed_ws(G: StyleGAN2, batch: int, prob: float, device: torch.device) -> Tensor:
    """W+ of random z, with a second z's styles from a random cutoff on with probability ``prob``."""
    ws = G.broadcast(G.mapping(torch.randn(batch, G.z_dim, device=device)))
    if float(torch.rand(())) < prob:
        cutoff = int(torch.randint(1, G.num_ws, ()))
        ws = G.mix(ws, G.mapping(torch.randn(batch, G.z_dim, device=device)), cutoff)
    return ws


def _step(m: _Models, real: Tensor, iteration: int, a: dict[str, Any]) -> dict[str, float]:
    """One D step (plus lazy R1), one G step with style mixing, the EMA update; returns the losses."""
    device, batch = real.device, real.shape[0]
    with torch.no_grad():
        fake = m.G.synthesize(_mixed_ws(m.G, batch, a["mixing_prob"], device), noise_mode="random")
    loss_d = F.softplus(m.D(fake)).mean() + F.softplus(-m.D(real)).mean()
    m.opt_d.zero_grad(set_to_none=True)
    loss_d.backward()
    m.opt_d.step()
    if iteration % a["r1_every"] == 0:
        real_r1 = real.detach().requires_grad_(True)
        (grad,) = torch.autograd.grad(m.D(real_r1).sum(), real_r1, create_graph=True)
        r1 = grad.square().sum((1, 2, 3)).mean()
        m.opt_d.zero_grad(set_to_none=True)
        (a["r1_gamma"] / 2 * r1 * a["r1_every"]).backward()
        m.opt_d.step()
    ws = _mixed_ws(m.G, batch, a["mixing_prob"], device)
    m.G.update_w_avg(ws[:, 0])
    loss_g = F.softplus(-m.D(m.G.synthesize(ws, noise_mode="random"))).mean()
    m.opt_g.zero_grad(set_to_none=True)
    loss_g.backward()
    m.opt_g.step()
    # EMA of G, with the usual ramp-up so early iterations do not average over random weights.
    half_life = min(a["ema_kimg"] * 1000, (iteration + 1) * batch * 0.05 + 1)
    beta = 0.5 ** (batch / half_life)
    with torch.no_grad():
        for p_ema, p in zip(m.G_ema.parameters(), m.G.parameters()):
            p_ema.lerp_(p, 1 - beta)
        for b_ema, b in zip(m.G_ema.buffers(), m.G.buffers()):
            b_ema.copy_(b)
    return {"loss_d": loss_d.item(), "loss_g": loss_g.item()}


def _loop(m: _Models, batches: Any, a: dict[str, Any], folder: Path, start: int, seconds: float,
          progress: bool) -> tuple[int, float, dict[str, float]]:
    """Iterations ``start..iterations`` (or until ``max_minutes``); checkpoints and samples on the way."""
    t0 = time.time() - seconds
    bar = Progress(KIND, start, a["iterations"], enabled=progress, every=a["sample_every"])
    done, losses = start, {}
    for iteration in range(start, a["iterations"]):
        losses = _step(m, next(batches).to(a["device"]) * 2 - 1, iteration, a)
        done = iteration + 1
        bar.step(done, time.time() - t0, **losses)
        if done % a["sample_every"] == 0:
            save_grid(_samples(m.G_ema, a["seed"], a["device"]), folder / "samples" / f"{done:06d}.png", nrow=8)
        if done % a["checkpoint_every"] == 0:
            save_checkpoint(folder / CHECKPOINT, KIND, a, done, time.time() - t0, **m.state())
        if a["max_minutes"] is not None and time.time() - t0 > a["max_minutes"] * 60:
            print(f"stopping at iteration {done}: max_minutes {a['max_minutes']} reached", file=sys.stderr)
            break
    bar.close()
    save_checkpoint(folder / CHECKPOINT, KIND, a, done, time.time() - t0, **m.state())
    return done, time.time() - t0, losses
