"""Encoders into W+: optimisation inversion, the learned encoder, perceptual features."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from tests.cli_helpers import assert_usage_error
from tests.conftest import make_tiny_stylegan2
from torch_semaug import LatentMix
from torch_semaug.generators.encoders import LearnedEncoder, OptimizationEncoder, psnr
from torch_semaug.generators.perceptual import PerceptualDistance
from torch_semaug.generators.stylegan2 import StyleGAN2


@pytest.fixture(scope="module")
def gen() -> StyleGAN2:
    g = make_tiny_stylegan2()
    torch.manual_seed(0)
    with torch.no_grad():
        g.w_avg.copy_(g.mapping(torch.randn(256, 16)).mean(0))
    return g


@pytest.fixture(scope="module")
def targets(gen):
    with torch.no_grad():
        return gen.decode(gen.sample_latent(4, torch.Generator().manual_seed(1)))


def test_perceptual_distance_sources():
    user = nn.Conv2d(3, 4, 3)
    dist = PerceptualDistance(user)
    assert dist.source == "user" and not any(p.requires_grad for p in user.parameters())
    a, b = torch.rand(2, 3, 16, 16) * 2 - 1, torch.rand(2, 3, 16, 16) * 2 - 1
    assert torch.allclose(dist(a, a), torch.zeros(2), atol=1e-6) and (dist(a, b) > 0).all()
    assert PerceptualDistance(image_channels=1).source in ("random-conv", "vgg16-imagenet")
    with pytest.raises(TypeError, match="features"):
        PerceptualDistance(features=3)


def test_optimization_encoder_improves_and_is_batch_independent(gen, targets):
    start = psnr(gen.decode(gen.broadcast(gen.w_avg[None].expand(4, -1))), targets)
    enc = OptimizationEncoder(gen, steps=12, lr=0.15, batch_size=4, mixing_weight=0.0)
    w = enc.encode(targets)
    assert w.shape == (4, 6, 16)
    gain = psnr(gen.decode(w), targets) - start
    assert gain.min() > 1.0, gain
    split = OptimizationEncoder(gen, steps=12, lr=0.15, batch_size=2, mixing_weight=0.0).encode(targets)
    assert torch.allclose(w, split, atol=1e-3)
    with pytest.raises(ValueError, match="images"):
        enc.encode(torch.zeros(2, 3, 8, 8))


def test_learned_encoder_trains_saves_and_attaches(tmp_path, gen, targets):
    enc = LearnedEncoder(gen, width=8)
    before = psnr(gen.decode(enc.encode(targets)), targets).mean()
    losses = enc.fit(steps=15, batch_size=4, lr=0.003, real_images=[targets], progress=False)
    assert sum(losses[-5:]) < sum(losses[:5])
    w = enc.encode(targets)
    assert w.shape == (4, 6, 16)
    after = psnr(gen.decode(w), targets).mean()
    assert after > before
    refined = enc.encode(targets, refine_steps=10)
    assert psnr(gen.decode(refined), targets).mean() > after - 0.1
    path = tmp_path / "enc.safetensors"
    enc.save(path)
    loaded = LearnedEncoder.load(path, generator=gen)
    assert torch.equal(loaded.encode(targets), w)
    gen.attach_encoder(loaded)
    try:
        out = LatentMix(gen)(targets * 0.5 + 0.5)
        assert out.shape == targets.shape
    finally:
        gen.attach_encoder(None)
    (tmp_path / "bad.safetensors").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="not a readable safetensors"):
        LearnedEncoder.load(tmp_path / "bad.safetensors")
    other = make_tiny_stylegan2(32)
    with pytest.raises(ValueError, match="encoder expects"):
        loaded.set_generator(other)


def test_semaug_encode_with_an_encoder_spec(tmp_path, capsys, gen):
    from tests.training_fixtures import make_image_folder
    from torch_semaug.cli import main as cli_main
    from torch_semaug.data.latent_cache import LatentCache

    make_image_folder(tmp_path / "imgs", per_class=2, size=16)
    gen.save(tmp_path / "g.safetensors")
    argv = ["encode", "--generator", str(tmp_path / "g.safetensors"), "--data", f"folder:{tmp_path / 'imgs'}",
            "--out", str(tmp_path / "lat"), "-j", "0", "-b", "4", "--device", "cpu", "--encoder", "optimize:3"]
    assert cli_main(argv) == 0
    assert " dB" in capsys.readouterr().out
    assert LatentCache.open(tmp_path / "lat").shape == (4, 6, 16)
    enc = LearnedEncoder(gen, width=4)
    enc.save(tmp_path / "enc.safetensors")
    argv[6], argv[-1] = str(tmp_path / "lat2"), f"{tmp_path / 'enc.safetensors'}:2"
    assert cli_main(argv) == 0
    assert LatentCache.open(tmp_path / "lat2").shape == (4, 6, 16)


def test_semaug_encode_fits_a_learned_encoder_once(tmp_path, capsys, gen):
    from tests.training_fixtures import make_image_folder
    from torch_semaug.cli import main as cli_main
    from torch_semaug.data.datasets import create_dataset
    from torch_semaug.data.latent_cache import LatentCache
    from torch_semaug.train.data import encoding_transform

    make_image_folder(tmp_path / "imgs", per_class=2, size=20)  # resized to the generator's 16 px to fit
    gen.save(tmp_path / "g.safetensors")
    out = tmp_path / "lat"
    argv = ["encode", "--generator", str(tmp_path / "g.safetensors"), "--data", f"folder:{tmp_path / 'imgs'}",
            "--img-size", "16", "--out", str(out), "-j", "0", "-b", "4", "--device", "cpu", "--encoder", "learned:2"]
    assert cli_main(argv) == 0
    assert "fitted a learned encoder for 2 steps" in capsys.readouterr().out
    fitted = LearnedEncoder.load(out / "encoder.safetensors", generator=gen)
    first = LatentCache.open(out)
    assert first.shape == (4, 6, 16)
    dataset = create_dataset(f"folder:{tmp_path / 'imgs'}", None, "train", transform=encoding_transform(16))
    images = torch.stack([image for image, _ in dataset])
    torch.testing.assert_close(first[list(range(4))], fitted.encode(images * 2 - 1))  # the saved encoder made it
    assert cli_main(argv) == 0  # a rerun loads the saved encoder and finds the finished cache
    assert "fitted earlier" in capsys.readouterr().out
    argv[argv.index("--out") + 1] = str(tmp_path / "other")
    assert_usage_error([*argv[:-1], "learned:x"], capsys, "--encoder: expected learned:STEPS")
