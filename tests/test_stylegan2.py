"""StyleGAN2 generator: the W+ contract, checkpoints, and the rosinality import against a reference forward."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from tests.conftest import TINY_STYLEGAN2, make_tiny_stylegan2
from torch_semaug.generators import EncoderMissingError, load_generator
from torch_semaug.generators.stylegan2 import StyleGAN2


@pytest.fixture(scope="module")
def g16(tiny_stylegan2) -> StyleGAN2:
    """The conftest tiny StyleGAN2 (16 px, 6 W+ layers of 16 dimensions)."""
    return tiny_stylegan2


def test_shapes_and_layout(g16):
    assert g16.num_ws == 6 and g16.latent_shape == (6, 16) and g16.image_shape == (3, 16, 16)
    assert [g16.layer_resolution(i) for i in range(6)] == [4, 8, 8, 16, 16, 16]
    assert g16.fine_split == 3
    w = g16.sample_latent(3, torch.Generator().manual_seed(1))
    assert w.shape == (3, 6, 16)
    assert torch.equal(w[:, 0], w[:, 5])  # map(z) broadcast to W+
    images = g16.decode(w)
    assert images.shape == (3, 3, 16, 16) and images.min() >= -1 and images.max() <= 1
    assert make_tiny_stylegan2(32).num_ws == 8
    grey = make_tiny_stylegan2(image_channels=1)
    assert grey.decode(grey.sample_latent(2)).shape == (2, 1, 16, 16)


def test_sample_latent_reproducible_and_truncation(g16):
    a = g16.sample_latent(4, torch.Generator().manual_seed(7))
    b = g16.sample_latent(4, torch.Generator().manual_seed(7))
    c = g16.sample_latent(4, torch.Generator().manual_seed(8))
    assert torch.equal(a, b) and not torch.equal(a, c)
    z = torch.randn(4, 16)
    g16.w_avg.fill_(0.5)
    try:
        w, w0 = g16.mapping(z), g16.mapping(z, truncation_psi=0.0)
        assert torch.allclose(w0, torch.full_like(w0, 0.5))
        assert torch.allclose(g16.mapping(z, truncation_psi=0.5), 0.5 * w + 0.25, atol=1e-6)
    finally:
        g16.w_avg.zero_()


def test_decode_deterministic_and_differentiable(g16):
    with torch.no_grad():
        for block in (g16.synthesis.b8, g16.synthesis.b16):
            block.conv0.noise_strength.fill_(0.3)
    w = g16.sample_latent(2, torch.Generator().manual_seed(2)).requires_grad_(True)
    images = g16.decode(w)
    assert torch.equal(images, g16.decode(w))  # const noise
    (grad,) = torch.autograd.grad(images.sum(), w)
    assert grad.abs().sum() > 0
    g16.noise_mode = "random"
    try:
        assert not torch.equal(g16.synthesize(w), g16.synthesize(w))
    finally:
        g16.noise_mode = "const"


def test_mix_takes_coarse_from_content_and_fine_from_style(g16):
    content = g16.sample_latent(2, torch.Generator().manual_seed(3))
    style_w = g16.mapping(torch.randn(2, 16))
    mixed = g16.mix(content, style_w, 3)
    assert torch.equal(mixed[:, :3], content[:, :3])
    assert torch.equal(mixed[:, 3:], style_w[:, None].expand(-1, 3, -1))
    for bad in (0, 6, 2.0):
        with pytest.raises(ValueError, match="split"):
            g16.mix(content, style_w, bad)
    with pytest.raises(ValueError, match=r"w_style.*expected shape"):
        g16.mix(content, torch.zeros(2, 5, 16), 2)


def test_blocks_are_hookable(g16):
    seen = {}
    handle = g16.synthesis.b8.register_forward_hook(lambda m, i, o: seen.update(b8=o[0].shape))
    g16.decode(g16.sample_latent(2))
    handle.remove()
    assert seen["b8"] == (2, 16, 8, 8)


def test_encode_needs_an_encoder(g16):
    images = g16.decode(g16.sample_latent(2))
    with pytest.raises(EncoderMissingError, match="attach an encoder"):
        g16.encode(images)

    class Fixed:
        def encode(self, x):
            return torch.zeros(x.shape[0], 6, 16)

    g16.attach_encoder(Fixed())
    try:
        assert g16.encode(images).shape == (2, 6, 16)
        assert "encoder" not in str(list(g16.state_dict()))
    finally:
        g16.attach_encoder(None)
    with pytest.raises(TypeError, match="encoder"):
        g16.attach_encoder(object())


def test_save_load_roundtrip(tmp_path, g16):
    with torch.no_grad():
        g16.w_avg.normal_()
    path = tmp_path / "g.safetensors"
    g16.save(path)
    loaded = StyleGAN2.load(path)
    assert loaded.config() == g16.config()
    assert torch.equal(loaded.w_avg, g16.w_avg)
    w = g16.sample_latent(2, torch.Generator().manual_seed(4))
    assert torch.equal(loaded.decode(w), g16.decode(w))
    assert isinstance(load_generator(path), StyleGAN2)
    assert not any(p.requires_grad for p in loaded.parameters())
    g16.w_avg.zero_()


def test_w_avg_tracks_mapping():
    g = StyleGAN2(16, w_avg_beta=0.0, **TINY_STYLEGAN2)
    w = torch.randn(5, 16)
    g.update_w_avg(w)
    assert torch.allclose(g.w_avg, w.mean(0))


# -- rosinality import -------------------------------------------------------------------------------------

def _rosinality_state(resolution=16, style_dim=8, n_mlp=2, channels=None, seed=0):
    """A random state dict laid out exactly like rosinality's Generator (g_ema)."""
    gen = torch.Generator().manual_seed(seed)
    rnd = lambda *shape: torch.randn(*shape, generator=gen)  # noqa: E731
    channels = channels or {4: 8, 8: 6, 16: 4}
    state = {}
    for i in range(1, n_mlp + 1):
        state[f"style.{i}.weight"] = rnd(style_dim, style_dim) * 100  # stored / lr_mul
        state[f"style.{i}.bias"] = rnd(style_dim) * 0.1

    def styled(prefix, cin, cout, k):
        state[f"{prefix}.conv.weight"] = rnd(1, cout, cin, k, k)
        state[f"{prefix}.conv.modulation.weight"] = rnd(cin, style_dim)
        state[f"{prefix}.conv.modulation.bias"] = 1 + 0.1 * rnd(cin)

    state["input.input"] = rnd(1, channels[4], 4, 4)
    styled("conv1", channels[4], channels[4], 3)
    state["conv1.noise.weight"] = 0.2 * rnd(1)
    state["conv1.activate.bias"] = 0.1 * rnd(channels[4])
    styled("to_rgb1", channels[4], 3, 1)
    state["to_rgb1.bias"] = 0.1 * rnd(1, 3, 1, 1)
    blur = torch.tensor([1.0, 3, 3, 1])
    blur = blur[:, None] * blur[None] / 64 * 4
    log = int(math.log2(resolution))
    cin = channels[4]
    for j, res in enumerate(2**i for i in range(3, log + 1)):
        for half in (0, 1):
            name = f"convs.{2 * j + half}"
            styled(name, cin if half == 0 else channels[res], channels[res], 3)
            state[f"{name}.noise.weight"] = 0.2 * rnd(1)
            state[f"{name}.activate.bias"] = 0.1 * rnd(channels[res])
        state[f"convs.{2 * j}.conv.blur.kernel"] = blur.clone()
        styled(f"to_rgbs.{j}", channels[res], 3, 1)
        state[f"to_rgbs.{j}.bias"] = 0.1 * rnd(1, 3, 1, 1)
        state[f"to_rgbs.{j}.upsample.kernel"] = blur.clone()
        cin = channels[res]
    for idx in range((log - 2) * 2 + 1):
        res = 2 ** ((idx + 5) // 2)
        state[f"noises.noise_{idx}"] = rnd(1, 1, res, res)
    return state


def _reference_forward(state, latent, n_mlp=2):
    """rosinality's Generator.forward(input_is_latent=True) written from its math, per-example weights."""
    def upfirdn(x, kernel, up, pad0, pad1):
        b, c, h, w = x.shape
        if up > 1:
            z = x.new_zeros(b, c, h * up, w * up)
            z[:, :, ::up, ::up] = x
            x = z
        x = F.pad(x, (pad0, pad1, pad0, pad1))
        return F.conv2d(x, kernel.flip(0, 1)[None, None].repeat(c, 1, 1, 1), groups=c)

    def eq_linear(prefix, x, lr_mul=1.0, act=False):
        weight, bias = state[f"{prefix}.weight"], state[f"{prefix}.bias"]
        out = F.linear(x, weight * lr_mul / math.sqrt(weight.shape[1]), bias * lr_mul)
        return F.leaky_relu(out, 0.2) * math.sqrt(2) if act else out

    def modconv(prefix, x, style, demod=True, up=False):
        weight = state[f"{prefix}.conv.weight"]                      # (1, out, in, k, k)
        _, cout, cin, k, _ = weight.shape
        s = eq_linear(f"{prefix}.conv.modulation", style).view(-1, 1, cin, 1, 1)
        wgt = weight / math.sqrt(cin * k * k) * s                     # (B, out, in, k, k)
        if demod:
            wgt = wgt * torch.rsqrt(wgt.pow(2).sum([2, 3, 4]) + 1e-8).view(-1, cout, 1, 1, 1)
        b, _, h, w = x.shape
        xg = x.reshape(1, b * cin, h, w)
        if up:
            wt = wgt.transpose(1, 2).reshape(b * cin, cout, k, k)
            out = F.conv_transpose2d(xg, wt, stride=2, groups=b)
            out = out.view(b, cout, *out.shape[-2:])
            return upfirdn(out, state[f"{prefix}.conv.blur.kernel"], 1, 1, 1)
        out = F.conv2d(xg, wgt.reshape(b * cout, cin, k, k), padding=k // 2, groups=b)
        return out.view(b, cout, h, w)

    def styled_conv(prefix, x, style, noise, up=False):
        out = modconv(prefix, x, style, up=up) + state[f"{prefix}.noise.weight"] * noise
        return F.leaky_relu(out + state[f"{prefix}.activate.bias"].view(1, -1, 1, 1), 0.2) * math.sqrt(2)

    def to_rgb(prefix, x, style, skip=None):
        out = modconv(prefix, x, style, demod=False) + state[f"{prefix}.bias"]
        if skip is not None:
            out = out + upfirdn(skip, state[f"{prefix}.upsample.kernel"], 2, 2, 1)
        return out

    noises = [state[f"noises.noise_{i}"] for i in range(sum(k.startswith("noises.") for k in state))]
    out = state["input.input"].repeat(latent.shape[0], 1, 1, 1)
    out = styled_conv("conv1", out, latent[:, 0], noises[0])
    skip = to_rgb("to_rgb1", out, latent[:, 1])
    i = 1
    for j in range(sum(k.endswith("upsample.kernel") for k in state)):
        out = styled_conv(f"convs.{2 * j}", out, latent[:, i], noises[2 * j + 1], up=True)
        out = styled_conv(f"convs.{2 * j + 1}", out, latent[:, i + 1], noises[2 * j + 2])
        skip = to_rgb(f"to_rgbs.{j}", out, latent[:, i + 2], skip)
        i += 2
    return skip


def _reference_mapping(state, z, n_mlp=2):
    x = z * torch.rsqrt(z.pow(2).mean(1, keepdim=True) + 1e-8)
    for i in range(1, n_mlp + 1):
        weight, bias = state[f"style.{i}.weight"], state[f"style.{i}.bias"]
        x = F.leaky_relu(F.linear(x, weight * 0.01 / math.sqrt(weight.shape[1]), bias * 0.01), 0.2) * math.sqrt(2)
    return x


def test_rosinality_import_reproduces_reference(tmp_path):
    state = _rosinality_state()
    latent_avg = torch.randn(8)
    path = tmp_path / "g_ema.pt"
    torch.save({"g_ema": state, "latent_avg": latent_avg}, path)
    g = StyleGAN2.from_rosinality(path)
    assert g.resolution == 16 and g.num_ws == 6 and g.channels == {4: 8, 8: 6, 16: 4}
    assert torch.equal(g.w_avg, latent_avg)
    z = torch.randn(3, 8, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(g.mapping(z), _reference_mapping(state, z), atol=1e-5)
    w_plus = torch.randn(3, 6, 8, generator=torch.Generator().manual_seed(1))
    expected = _reference_forward(state, w_plus)
    assert torch.allclose(g.synthesize(w_plus), expected, atol=1e-4), (g.synthesize(w_plus) - expected).abs().max()


def test_rosinality_bad_checkpoints_name_the_keys():
    state = _rosinality_state()
    state["convs.1.conv.weight"] = torch.zeros(1, 6, 5, 3, 3)
    with pytest.raises(ValueError, match=r"wrong sizes.*synthesis\.b8\.conv1\.conv\.weight"):
        StyleGAN2.from_rosinality({"g_ema": state})
    state = _rosinality_state()
    del state["to_rgbs.0.bias"]
    with pytest.raises(ValueError, match=r"missing keys.*synthesis\.b8\.torgb\.bias"):
        StyleGAN2.from_rosinality({"g_ema": state})
    state = _rosinality_state()
    state["extra.thing"] = torch.zeros(1)
    with pytest.raises(ValueError, match=r"unexpected keys \['extra\.thing'\]"):
        StyleGAN2.from_rosinality(state)
    with pytest.raises(ValueError, match="not a rosinality"):
        StyleGAN2.from_rosinality({"model": {}})
