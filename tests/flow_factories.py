"""Tiny, seeded flows shared by the flow tests and the contract cases (16 px, a few thousand weights)."""

from __future__ import annotations

import torch
from torch import nn

from torch_semaug.generators import Glow


def smooth_images(n: int, shape: tuple[int, int, int] = (3, 16, 16), seed: int = 0, noise: float = 0.0) -> torch.Tensor:
    """Image-like content in [0, 1] (upsampled 4x4 noise plus ``noise`` pixel noise), quantised to 8 bits."""
    g = torch.Generator().manual_seed(seed)
    low = torch.rand(n, shape[0], 4, 4, generator=g)
    x = nn.functional.interpolate(low, size=shape[1:], mode="bilinear", align_corners=False)
    if noise:
        x = x + noise * torch.randn(x.shape, generator=g)
    return (x.clamp(0, 1) * 255).round() / 255


def tiny_glow(shape: tuple[int, int, int] = (3, 16, 16), levels: int = 2, steps: int = 1, width: int = 8,
              seed: int = 0) -> Glow:
    """A random-init Glow with its actnorm layers initialised on smooth images."""
    torch.manual_seed(seed)
    glow = Glow(shape, levels=levels, steps=steps, width=width)
    glow.initialize(smooth_images(16, shape, seed=99))
    return glow.freeze()


def normflows_multiscale(levels: int = 2, steps: int = 1, shape=(3, 16, 16), transform=None) -> nn.Module:
    """The multi-scale Glow of normflows' own example, tiny, ActNorm initialised."""
    import normflows as nf

    torch.manual_seed(0)
    c, h, w = shape
    q0, merges, flows = [], [], []
    for i in range(levels):
        flows.append([nf.flows.GlowBlock(c * 2 ** (levels + 1 - i), 8, split_mode="channel", scale=True)
                      for _ in range(steps)] + [nf.flows.Squeeze()])
        if i > 0:
            merges.append(nf.flows.Merge())
            latent = (c * 2 ** (levels - i), h // 2 ** (levels - i), w // 2 ** (levels - i))
        else:
            latent = (c * 2 ** (levels + 1), h // 2**levels, w // 2**levels)
        q0.append(nf.distributions.GlowBase(latent))
    model = nf.MultiscaleFlow(q0, flows, merges, transform=transform, class_cond=False)
    with torch.no_grad():  # normflows ActNorm initialises on the first batch it sees
        model.log_prob(smooth_images(16, shape, seed=9), None)
    return model


def perturb(inn: nn.Module) -> None:
    """Non-trivial weights (AllInOneBlock starts near the identity); its fixed permutations stay exact."""
    with torch.no_grad():
        for p in inn.parameters():
            if p.requires_grad:
                p.add_(0.05 * torch.randn_like(p))


def freia_graph(shape=(3, 16, 16)) -> nn.Module:
    """Two scales: half of the channels leave after the first downsampling."""
    import FrEIA.framework as Ff
    import FrEIA.modules as Fm

    torch.manual_seed(0)

    def subnet(c_in: int, c_out: int) -> nn.Module:
        return nn.Sequential(nn.Conv2d(c_in, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, c_out, 3, padding=1))

    nodes = [Ff.InputNode(*shape, name="in")]
    nodes.append(Ff.Node(nodes[-1], Fm.HaarDownsampling, {}))
    nodes.append(Ff.Node(nodes[-1], Fm.AllInOneBlock, {"subnet_constructor": subnet}))
    split = Ff.Node(nodes[-1], Fm.Split, {"section_sizes": [6, 6], "dim": 0})
    nodes.append(split)
    nodes.append(Ff.Node(split.out0, Fm.HaarDownsampling, {}))
    nodes.append(Ff.Node(nodes[-1], Fm.AllInOneBlock, {"subnet_constructor": subnet}))
    nodes += [Ff.OutputNode(nodes[-1], name="z_top"), Ff.OutputNode(split.out1, name="z_split")]
    inn = Ff.GraphINN(nodes)
    perturb(inn)
    return inn
