"""LatentCache (build, resume, fingerprints), LatentDataset and `semaug encode`."""

from __future__ import annotations

import json
import pickle

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from tests.latent_helpers import FlakyEncoder
from tests.training_fixtures import TinyLinearGenerator, make_image_folder, registered
from torch_semaug import IdentityGenerator
from torch_semaug.cli import main as cli_main
from torch_semaug.data import LatentCache, LatentDataset
from torch_semaug.data.latent_cache import META_FILE
from torch_semaug.generators import save_generator


def _data(n: int = 21, seed: int = 0) -> TensorDataset:
    g = torch.Generator().manual_seed(seed)
    return TensorDataset(torch.rand(n, 3, 8, 8, generator=g), torch.randint(0, 3, (n,), generator=g))


def test_build_stores_every_latent_and_opens(tmp_path):
    data, gen = _data(), TinyLinearGenerator()
    cache = LatentCache.build(data, gen, tmp_path / "c", batch_size=4, chunk_batches=2, progress=False)
    assert cache.shape == (21, 6)
    with torch.no_grad():
        expected = gen.encode(data.tensors[0])
    torch.testing.assert_close(cache[list(range(21))], expected)
    torch.testing.assert_close(LatentCache.open(tmp_path / "c")[5], expected[5])
    assert not list((tmp_path / "c").glob("progress*"))


def test_interrupted_build_resumes_without_redoing_chunks(tmp_path):
    data = _data(n=20)
    path = tmp_path / "c"
    with pytest.raises(KeyboardInterrupt):  # call 1 probes the shape; chunks are 2 batches of 2
        LatentCache.build(data, FlakyEncoder(fail_at=5), path, batch_size=2, chunk_batches=2, progress=False)
    progress = json.loads((path / "progress.0.json").read_text())
    assert progress["done"] == [0]
    assert not (path / META_FILE).exists()
    with pytest.raises(FileNotFoundError, match="resume"):
        LatentCache.open(path)
    resumed = FlakyEncoder(fail_at=None)
    cache = LatentCache.build(data, resumed, path, batch_size=2, chunk_batches=2, progress=False)
    assert resumed.calls == 1 + 8  # shape probe + the 8 batches of chunks 1..4 only
    with torch.no_grad():
        torch.testing.assert_close(cache[list(range(20))], resumed.inner.encode(data.tensors[0]))


def test_dataset_yields_latents_with_workers_and_default_collate(tmp_path):
    data, gen = _data(), TinyLinearGenerator()
    LatentCache.build(data, gen, tmp_path / "c", batch_size=8, progress=False)
    dataset = LatentDataset(data, tmp_path / "c", return_index=True, generator=gen)
    seen = []
    for x, y, z, idx in DataLoader(dataset, batch_size=5, shuffle=True, num_workers=2):
        torch.testing.assert_close(x, data.tensors[0][idx])
        assert torch.equal(y, data.tensors[1][idx])
        with torch.no_grad():
            torch.testing.assert_close(z, gen.encode(x))
        seen += idx.tolist()
    assert sorted(seen) == list(range(21))
    x, y, z = LatentDataset(data, tmp_path / "c")[3]
    assert z.shape == (6,)


def test_cache_for_other_data_or_generator_is_refused(tmp_path):
    data, gen = _data(), TinyLinearGenerator()
    LatentCache.build(data, gen, tmp_path / "c", batch_size=8, progress=False)
    with pytest.raises(ValueError, match="another dataset"):
        LatentDataset(_data(seed=1), tmp_path / "c")
    with pytest.raises(ValueError, match="holds 21 latents, but the dataset has 20"):
        LatentDataset(_data(n=20), tmp_path / "c")
    with pytest.raises(ValueError, match="another generator"):
        LatentDataset(data, tmp_path / "c", generator=TinyLinearGenerator(seed=1))
    with pytest.raises(ValueError, match="already holds a latent cache"):
        LatentCache.build(_data(seed=2), gen, tmp_path / "c", progress=False)
    with pytest.raises(ValueError, match="one row per sample"):
        LatentDataset(data, torch.zeros(3, 6))
    with pytest.raises(TypeError, match="latents: expected a LatentCache"):
        LatentDataset(data, [1, 2])


def test_encoder_is_provenance_not_identity(tmp_path):
    from torch_semaug import StyleGAN2
    from torch_semaug.data import encoder_provenance, generator_fingerprint
    from torch_semaug.generators.encoders import OptimizationEncoder

    torch.manual_seed(0)
    g = StyleGAN2(16, z_dim=16, w_dim=16, mapping_layers=2, channel_base=256, channel_max=16).freeze()
    bare, identity = encoder_provenance(g), generator_fingerprint(g)
    g.attach_encoder(OptimizationEncoder(g, steps=5))
    five_steps = encoder_provenance(g)
    g.attach_encoder(OptimizationEncoder(g, steps=50))
    fifty_steps = encoder_provenance(g)
    assert len({json.dumps(f, sort_keys=True) for f in (bare, five_steps, fifty_steps)}) == 3
    assert five_steps["settings"]["steps"] == 5 and bare["method"] == "the generator's own encode"
    g.attach_encoder(OptimizationEncoder(g, steps=50))
    assert encoder_provenance(g) == fifty_steps  # same settings, same record
    assert generator_fingerprint(g) == identity  # the encoder never changes what the latents mean

    data = TensorDataset(torch.rand(6, 3, 16, 16), torch.zeros(6, dtype=torch.long))
    cache = LatentCache.build(data, g.attach_encoder(OptimizationEncoder(g, steps=2)), tmp_path / "c", progress=False)
    info = cache.info()
    assert info["encoder"]["settings"]["steps"] == 2 and info["generator"].endswith("StyleGAN2")
    assert 0 < info["reconstruction_psnr"]["db"] < 100 and info["reconstruction_psnr"]["images"] == 6
    bare_g = StyleGAN2.from_config(g.config())
    bare_g.load_state_dict(g.state_dict())
    assert LatentDataset(data, cache, generator=bare_g.freeze())[0][2].shape == g.latent_shape  # no encoder: fine
    other = StyleGAN2(16, z_dim=16, w_dim=16, mapping_layers=2, channel_base=256, channel_max=16).freeze()
    with pytest.raises(ValueError, match="another generator"):
        LatentDataset(data, cache, generator=other)


def test_cache_pickles_without_its_memory_map(tmp_path):
    cache = LatentCache.build(_data(), IdentityGenerator((3, 8, 8)), tmp_path / "c", progress=False)
    first = cache[0]
    clone = pickle.loads(pickle.dumps(cache))
    assert clone._array is None
    torch.testing.assert_close(clone[0], first)


def test_encode_command_builds_cache_and_reports_psnr(tmp_path, capsys):
    make_image_folder(tmp_path / "imgs", per_class=3)
    with registered():
        save_generator(IdentityGenerator((3, 8, 8)), tmp_path / "id.safetensors")
        argv = ["encode", "--generator", str(tmp_path / "id.safetensors"), "--data", f"folder:{tmp_path / 'imgs'}",
                "--out", str(tmp_path / "lat"), "-j", "0", "-b", "4", "--device", "cpu"]
        assert cli_main(argv) == 0
        out = capsys.readouterr().out
        assert "shape=(6, 3, 8, 8)" in out and "inf (exact)" in out
        save_generator(TinyLinearGenerator(), tmp_path / "lin.safetensors")
        argv[2], argv[6] = str(tmp_path / "lin.safetensors"), str(tmp_path / "lat2")
        assert cli_main(argv) == 0
        assert " dB" in capsys.readouterr().out
    assert LatentCache.open(tmp_path / "lat2").shape == (6, 6)


class _TransformedImages(torch.utils.data.Dataset):
    def __init__(self, images, transform):
        self.images, self.transform = images, transform

    def __len__(self):
        return len(self.images)

    def __getitem__(self, index):
        return self.transform(self.images[index]), index


def test_random_mode_runs_per_sample_in_compose_and_workers():
    from torchvision.transforms import v2

    from torch_semaug.transforms import AdversarialLatentAttack

    images = torch.rand(8, 3, 8, 8)
    with registered():
        from torch_semaug import create

        nudge = create("test_random_nudge", generator=TinyLinearGenerator(), eps=2.0)
        pipeline = v2.Compose([v2.RandomHorizontalFlip(p=0.0), nudge])
        dataset = _TransformedImages(images, pipeline)
        first = torch.cat([x for x, _ in DataLoader(dataset, batch_size=4, num_workers=2)])
        second = torch.cat([x for x, _ in DataLoader(dataset, batch_size=4, num_workers=2)])
    assert first.shape == images.shape and first.dtype == images.dtype
    assert not torch.allclose(first, images, atol=1e-2)  # every image was replaced by a decoded variant
    assert not torch.allclose(first, second)  # fresh randomness every epoch
    attack = AdversarialLatentAttack(IdentityGenerator((3, 8, 8)), eps=0.1, step_size=0.1, steps=1)
    with pytest.raises(ValueError, match="after the DataLoader"):
        v2.Compose([attack])(images[0])


def test_encode_limit_is_a_first_look_at_the_first_images(tmp_path, capsys):
    save_generator(IdentityGenerator((3, 16, 16)), tmp_path / "id.safetensors")
    argv = ["encode", "--generator", str(tmp_path / "id.safetensors"), "--data", "demo-shapes", "--limit", "5",
            "--out", str(tmp_path / "first"), "-j", "0", "--device", "cpu"]
    assert cli_main(argv) == 0
    assert "encoding 5 images of demo-shapes" in capsys.readouterr().out
    cache = LatentCache.open(tmp_path / "first")
    from torch_semaug.data.datasets import create_dataset

    shapes = create_dataset("demo-shapes", split="train")
    assert cache.shape == (5, 3, 16, 16) and torch.equal(cache[4], shapes[4][0])
    with pytest.raises(ValueError, match="holds 5 latents, but the dataset has 2000"):
        cache.check_dataset(shapes)  # a first look, not a cache to train on
