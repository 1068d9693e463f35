"""``semaug train-generator stylegan2``: train a :class:`~torch_semaug.generators.StyleGAN2` on your images.

The StyleGAN2 recipe at small scale: non-saturating logistic loss, lazy R1 penalty on real images,
style-mixing regularisation (so coarse and fine W+ layers carry different factors — what LatentMix
relies on), an exponential moving average of G (the model that is saved), Adam with betas (0, 0.99).
Path-length regularisation is left out (it matters for large models and costs a second backward).
Training draws fresh per-pixel noise for every image, as in the paper: with the fixed ``"const"`` noise
used for augmentation, the noise maps are one template shared by all samples, which G can copy — the
samples then collapse to a single shape in different colours.

Everything needed to continue is in ``OUT/checkpoint.pt`` (written atomically every ``--checkpoint-every``
iterations and at the end, loaded with ``weights_only=True``); rerunning the same command resumes.
"""

from __future__ import annotations

import argparse
import copy
import math
import os
import random
import shlex
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from torch_semaug._io import write_atomic
from torch_semaug.data.color_mnist import default_data_root, parse_color_mnist
from torch_semaug.data.shapes import parse_demo_shapes
from torch_semaug.generators.io import save_generator
from torch_semaug.generators.stylegan2 import StyleGAN2, default_channels
from torch_semaug.train.stylegan2_discriminator import Discriminator


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", required=True,
                        help="image folder (ImageFolder layout or flat), colormnist:VARIANT[:N] "
                             "(train, train-uniform, test, tiny, tiny-uniform) or demo-shapes:train[:N]")
    parser.add_argument("--data-root", default=None, help="folder holding MNIST/raw for colormnist (default "
                        "$SEMAUG_DATA or ../shared/data)")
    parser.add_argument("--out", required=True, help="output folder (checkpoint.pt, samples/, G.safetensors)")
    parser.add_argument("--resolution", type=int, default=32, help="image size, power of two (16..1024)")
    parser.add_argument("--iterations", type=int, default=5000, help="total training iterations (G+D steps)")
    parser.add_argument("--max-minutes", type=float, default=None, help="stop (and save) after this wall time")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--lr", type=float, default=0.002, help="Adam learning rate of G and D")
    parser.add_argument("--z-dim", type=int, default=128)
    parser.add_argument("--w-dim", type=int, default=128)
    parser.add_argument("--mapping-layers", type=int, default=4)
    parser.add_argument("--channel-base", type=int, default=4096)
    parser.add_argument("--channel-max", type=int, default=128)
    parser.add_argument("--r1-gamma", type=float, default=10.0,
                        help="R1 weight (gamma); small models need a strong one: at 0.05-1 the 64-channel "
                             "Color-MNIST model collapsed to a single digit shape within 1,000 iterations")
    parser.add_argument("--r1-every", type=int, default=16, help="lazy R1: penalty every N iterations")
    parser.add_argument("--mixing-prob", type=float, default=0.9, help="probability of style mixing per batch")
    parser.add_argument("--ema-kimg", type=float, default=5.0, help="half-life of the G EMA in thousands of images")
    parser.add_argument("--mirror", action="store_true", help="random horizontal flips of the training images")
    parser.add_argument("--sample-every", type=int, default=250, help="write a sample grid every N iterations")
    parser.add_argument("--checkpoint-every", type=int, default=500, help="write checkpoint.pt every N iterations")
    parser.add_argument("--init-from", default=None, metavar="CHECKPOINT",
                        help="fine-tune: start from another run's checkpoint.pt (G, D, EMA, optimisers) at "
                             "iteration 0; ignored when OUT/checkpoint.pt exists (that run resumes)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--no-progress", action="store_true", help="no tqdm bar (log lines only)")


def build_dataset(spec: str, resolution: int, root: str | None, mirror: bool) -> Dataset:
    """Images in [-1, 1] at ``resolution`` from an image folder or a ``colormnist:`` spec."""
    from torchvision.transforms import v2

    steps: list = [v2.Resize(resolution, antialias=True), v2.CenterCrop(resolution)]
    if mirror:
        steps.append(v2.RandomHorizontalFlip())
    steps.append(v2.Normalize([0.5], [0.5]))
    if spec.startswith("colormnist:"):
        base: Dataset = parse_color_mnist(spec, root or default_data_root())
        to_tensor: list = []
    elif spec.startswith("demo-shapes:"):
        base = parse_demo_shapes(spec)
        to_tensor = []
    else:
        from torchvision.datasets import ImageFolder

        if not os.path.isdir(spec):
            raise FileNotFoundError(f"data: no image folder at {spec!r} (or use colormnist:VARIANT or "
                                    "demo-shapes:train)")
        base = ImageFolder(spec) if any(p.is_dir() for p in Path(spec).iterdir()) else _FlatFolder(spec)
        to_tensor = [v2.ToImage(), v2.ToDtype(torch.float32, scale=True)]
    return _Mapped(base, v2.Compose(to_tensor + steps))


class _FlatFolder(Dataset):
    """Every image file directly inside a folder (label 0)."""

    def __init__(self, root: str) -> None:
        from torchvision.datasets.folder import IMG_EXTENSIONS, default_loader

        self.files = sorted(p for p in Path(root).iterdir() if p.suffix.lower() in IMG_EXTENSIONS)
        if not self.files:
            raise FileNotFoundError(f"data: no images in {root!r}")
        self.loader = default_loader

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> tuple[object, int]:
        return self.loader(str(self.files[index])), 0


class _Mapped(Dataset):
    def __init__(self, base: Dataset, transform: object) -> None:
        self.base, self.transform = base, transform

    def __len__(self) -> int:
        return len(self.base)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> Tensor:
        return self.transform(self.base[index][0])


def _batches(dataset: Dataset, batch: int, seed: int) -> Iterator[Tensor]:
    epoch = 0
    while True:
        loader = DataLoader(dataset, batch_size=batch, shuffle=True, drop_last=True,
                            generator=torch.Generator().manual_seed(seed + epoch))
        yield from loader
        epoch += 1


def _mixed_ws(G: StyleGAN2, batch: int, prob: float, device: torch.device) -> Tensor:
    """W+ of random z, with a second z's styles from a random cutoff on with probability ``prob``."""
    ws = G.broadcast(G.mapping(torch.randn(batch, G.z_dim, device=device)))
    if random.random() < prob:
        cutoff = random.randint(1, G.num_ws - 1)
        ws = G.mix(ws, G.mapping(torch.randn(batch, G.z_dim, device=device)), cutoff)
    return ws


def _save_grid(G: StyleGAN2, z: Tensor, path: Path) -> None:
    from torchvision.utils import save_image

    with torch.no_grad():
        images = G(z).clamp(-1, 1) * 0.5 + 0.5
    write_atomic(path, lambda tmp: save_image(images, tmp, nrow=int(math.sqrt(len(z))), format="png"))


def run(args: argparse.Namespace) -> int:
    if args.threads:
        torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    device = torch.device(args.device)
    random.seed(args.seed)
    torch.manual_seed(args.seed)
    dataset = build_dataset(args.data, args.resolution, args.data_root, args.mirror)
    image_channels = int(dataset[0].shape[0])
    channels = default_channels(args.resolution, args.channel_base, args.channel_max)
    G = StyleGAN2(args.resolution, z_dim=args.z_dim, w_dim=args.w_dim, mapping_layers=args.mapping_layers,
                  channels=channels, image_channels=image_channels).to(device)
    D = Discriminator(args.resolution, channels, image_channels).to(device)
    G_ema = copy.deepcopy(G).eval().requires_grad_(False)
    # Lazy regularisation: D's Adam sees the R1 step only every r1_every iterations (Karras et al., App. B).
    ratio = args.r1_every / (args.r1_every + 1)
    opt_g = torch.optim.Adam(G.parameters(), lr=args.lr, betas=(0.0, 0.99))
    opt_d = torch.optim.Adam(D.parameters(), lr=args.lr * ratio, betas=(0.0, 0.99**ratio))
    fixed_z = torch.randn(64, args.z_dim, generator=torch.Generator().manual_seed(args.seed)).to(device)
    start, elapsed = 0, 0.0
    ckpt_path = out / "checkpoint.pt"
    source = ckpt_path if ckpt_path.exists() else Path(args.init_from) if args.init_from else None
    if source is not None:
        if not source.is_file():
            raise FileNotFoundError(f"init_from: expected a checkpoint.pt of `semaug train-generator stylegan2`, "
                                    f"but {os.fspath(source)!r} does not exist")
        state = torch.load(source, map_location=device, weights_only=True)
        try:
            G.load_state_dict(state["G"])
            D.load_state_dict(state["D"])
            G_ema.load_state_dict(state["G_ema"])
        except RuntimeError as error:  # names the missing / unexpected / mis-sized keys
            raise ValueError(f"init_from: {os.fspath(source)!r} was trained with another architecture; pass "
                             f"the same --resolution/--z-dim/--w-dim/--channel-* flags as its run ({error})") from None
        opt_g.load_state_dict(state["opt_g"])
        opt_d.load_state_dict(state["opt_d"])
        if source == ckpt_path:
            start, elapsed = int(state["iteration"]), float(state["elapsed"])
            print(f"resumed from {ckpt_path} at iteration {start}", file=sys.stderr)
        else:
            print(f"fine-tuning from {source} (trained {int(state['iteration'])} iterations there)", file=sys.stderr)
    batches = _batches(dataset, args.batch, args.seed + start)
    t0 = time.time() - elapsed

    def save_checkpoint(iteration: int) -> None:
        state = dict(G=G.state_dict(), D=D.state_dict(), G_ema=G_ema.state_dict(), opt_g=opt_g.state_dict(),
                     opt_d=opt_d.state_dict(), iteration=iteration, elapsed=time.time() - t0,
                     config=G.config())
        write_atomic(ckpt_path, lambda tmp: torch.save(state, tmp))

    bar = tqdm(range(start, args.iterations), initial=start, total=args.iterations, disable=args.no_progress,
               desc="stylegan2", dynamic_ncols=True)
    done = start
    for iteration in bar:
        real = next(batches).to(device)
        # Discriminator: logistic loss on real vs generated.
        with torch.no_grad():
            fake = G.synthesize(_mixed_ws(G, args.batch, args.mixing_prob, device), noise_mode="random")
        loss_d = F.softplus(D(fake)).mean() + F.softplus(-D(real)).mean()
        opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        opt_d.step()
        if iteration % args.r1_every == 0:
            real_r1 = real.detach().requires_grad_(True)
            (grad,) = torch.autograd.grad(D(real_r1).sum(), real_r1, create_graph=True)
            r1 = grad.square().sum((1, 2, 3)).mean()
            opt_d.zero_grad(set_to_none=True)
            (args.r1_gamma / 2 * r1 * args.r1_every).backward()
            opt_d.step()
        # Generator: non-saturating loss, with style mixing.
        ws = _mixed_ws(G, args.batch, args.mixing_prob, device)
        G.update_w_avg(ws[:, 0])
        loss_g = F.softplus(-D(G.synthesize(ws, noise_mode="random"))).mean()
        opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        opt_g.step()
        # EMA of G, with the usual ramp-up so early iterations do not average over random weights.
        images_seen = (iteration + 1) * args.batch
        half_life = min(args.ema_kimg * 1000, images_seen * 0.05 + 1)
        beta = 0.5 ** (args.batch / half_life)
        with torch.no_grad():
            for p_ema, p in zip(G_ema.parameters(), G.parameters()):
                p_ema.lerp_(p, 1 - beta)
            for b_ema, b in zip(G_ema.buffers(), G.buffers()):
                b_ema.copy_(b)
        bar.set_postfix(d=f"{loss_d.item():.3f}", g=f"{loss_g.item():.3f}")
        done = iteration + 1
        if done % args.sample_every == 0:
            _save_grid(G_ema, fixed_z, out / "samples" / f"{done:06d}.png")
            if args.no_progress:
                print(f"iter {done} loss_d {loss_d.item():.4f} loss_g {loss_g.item():.4f} "
                      f"{time.time() - t0:.0f}s", flush=True)
        if done % args.checkpoint_every == 0:
            save_checkpoint(done)
        if args.max_minutes is not None and time.time() - t0 > args.max_minutes * 60:
            print(f"stopping at iteration {done}: --max-minutes {args.max_minutes} reached", file=sys.stderr)
            break
    bar.close()
    save_checkpoint(done)
    _save_grid(G_ema, fixed_z, out / "samples" / "final.png")
    argv = sys.argv[1:]
    if argv[:2] == ["train-generator", "stylegan2"]:  # `semaug train-generator stylegan2 ...` / python -m
        argv = argv[2:]
    command = "semaug train-generator stylegan2 " + " ".join(shlex.quote(a) for a in argv)
    save_generator(G_ema.cpu(), out / "G.safetensors", command=command, iterations=str(done),
                   wall_seconds=f"{time.time() - t0:.0f}")
    print(f"wrote {out / 'G.safetensors'} after {done} iterations ({time.time() - t0:.0f} s)")
    return 0
