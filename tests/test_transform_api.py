"""One transform API: the four constructors share a shape, the modes' defaults are one table (mirrored in
the README), a radius relative to the latent spread, and one random stream per worker and rank."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader, Dataset

import torch_semaug as ts
from tests.conftest import make_tiny_stylegan2
from torch_semaug.transforms.modes import MODE_ARGUMENTS, defaults_markdown

ROOT = Path(__file__).resolve().parents[1]
TRANSFORMS = [ts.LatentMix, ts.FlowPerturb, ts.DirectionEdit, ts.AdversarialLatentAttack]
BUDGET = ("eps", "step_size", "steps", "restarts", "random_start", "early_stop", "norm", "targets")
TAIL = ("p", "mean", "std", "to_generator", "from_generator", "keep_model_mode", "rng", "adaptive_eps",
        "label_smoothing", "num_classes", "warm_start")


@pytest.mark.parametrize("cls", TRANSFORMS, ids=lambda c: c.__name__)
def test_the_four_constructors_have_one_shape(cls):
    params = list(inspect.signature(cls).parameters.values())
    names = [p.name for p in params]
    # T(generator, *, model=None, mode=..., <budget>, <what moves>, ..., p=..., mean=..., std=..., ...)
    assert names[0] == "generator" and params[0].kind is params[0].POSITIONAL_OR_KEYWORD
    assert all(p.kind is p.KEYWORD_ONLY for p in params[1:])
    assert names[1:3] == ["model", "mode"] and params[1].default is None
    assert tuple(names[3:3 + len(BUDGET)]) == BUDGET
    assert tuple(names[-len(TAIL):]) == TAIL
    moves = [n for n in names if n in ("layers", "mask")]
    assert moves in (["layers", "mask"], ["mask"])
    # every mode-dependent argument defaults to None ("the mode's default") and the table lists no other
    table_names = {name for defaults in cls.mode_defaults.values() for name in defaults}
    assert table_names <= set(names)
    assert all(inspect.signature(cls).parameters[n].default is None for n in table_names)
    assert set(MODE_ARGUMENTS) & set(names) >= set(BUDGET)


def test_the_readme_table_is_the_code_table():
    readme = (ROOT / "README.md").read_text()
    assert defaults_markdown(TRANSFORMS) in readme


def test_an_argument_the_mode_does_not_use_is_an_error_naming_it_and_the_mode(tiny_stylegan2):
    flow, model = ts.IdentityGenerator((3, 16, 16)), torch.nn.Linear(1, 1)
    with pytest.raises(ValueError, match=r"^step_size, steps, model: not used by mode='random' of FlowPerturb"):
        ts.FlowPerturb(flow, mode="random", model=model, steps=3, step_size=0.5)
    with pytest.raises(ValueError, match=r"^on_failure: not used by mode='random' of LatentMix"):
        ts.LatentMix(tiny_stylegan2, on_failure="nominal")
    with pytest.raises(ValueError, match=r"^random_start: not used by mode='random' of FlowPerturb"):
        ts.FlowPerturb(flow, random_start=True)
    with pytest.raises(ValueError, match="semaug flags|steps: not used"):
        ts.create("latent_mix", generator=tiny_stylegan2, steps=3)


def test_latent_spread_is_measured_once_saved_and_remeasured_after_training(tmp_path):
    g = make_tiny_stylegan2()
    with torch.no_grad():
        w = g.mapping(torch.randn(20000, g.z_dim, generator=torch.Generator().manual_seed(7)))
    reference = float(w.std(0).pow(2).mean().sqrt())  # RMS over coordinates of the per-coordinate std
    assert g.latent_spread == pytest.approx(reference, rel=0.05)
    assert g.config()["latent_spread"] == g.latent_spread
    g.save(tmp_path / "g.safetensors")
    loaded = ts.load_generator(tmp_path / "g.safetensors")
    assert loaded.latent_spread == g.latent_spread
    with torch.no_grad():
        next(loaded.mapping_network.parameters()).mul_(2.0)  # a training step changes the mapping
    assert loaded.latent_spread != pytest.approx(g.latent_spread, rel=1e-3)


def test_relative_eps_is_in_units_of_the_latent_spread():
    g = make_tiny_stylegan2()
    latents = g.sample_latent(4, torch.Generator().manual_seed(0))
    images = (g.decode(latents) + 1) / 2
    labels = torch.arange(4) % 3
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 16 * 16, 3))
    seen = []
    original = g.decode
    g.decode = lambda z: (seen.append(z.detach().clone()), original(z))[1]
    attack = ts.AdversarialLatentAttack(g, model=model, eps=0.1, step_size=0.05, steps=3, random_start=False,
                                        relative_eps=True, layers=(3, 6))
    attack(images, labels, latents=latents)
    moved = (seen[-1] - latents).abs()
    assert moved[:, :3].max() == 0
    assert moved.max() <= 0.1 * g.latent_spread + 1e-5 and moved.max() > 0.05 * g.latent_spread
    with pytest.raises(ValueError, match="relative_eps: eps relative to the latent spread needs"):
        ts.AdversarialLatentAttack(ts.IdentityGenerator((3, 16, 16)), relative_eps=True)


class _Constant(Dataset):
    """Eight copies of one image, each passed through ``transform``: differences are the transform's."""

    def __init__(self, transform) -> None:
        self.transform = transform

    def __len__(self) -> int:
        return 8

    def __getitem__(self, index: int) -> torch.Tensor:
        return self.transform(torch.full((3, 8, 8), 0.5))


def _variants(seed: int) -> list[torch.Tensor]:
    perturb = ts.FlowPerturb(ts.IdentityGenerator((3, 8, 8)), eps=0.1, rng=torch.Generator().manual_seed(seed))
    loader = DataLoader(_Constant(perturb), batch_size=4, num_workers=2,
                        generator=torch.Generator().manual_seed(1))
    return list(loader)  # batch 0 from worker 0, batch 1 from worker 1


def test_a_seeded_rng_gives_each_dataloader_worker_its_own_reproducible_stream():
    first, again = _variants(0), _variants(0)
    assert not torch.equal(first[0], first[1])  # worker 0 and worker 1 differ
    assert all(torch.equal(a, b) for a, b in zip(first, again))  # and a rerun repeats them
    assert not torch.equal(first[0][0], first[0][1])  # the stream advances within a worker


def test_each_distributed_rank_draws_its_own_stream(monkeypatch):
    from torch_semaug.transforms.context import process_stream

    def draw(rank: int) -> torch.Tensor:
        monkeypatch.setattr(torch.distributed, "is_initialized", lambda: rank > 0)
        monkeypatch.setattr(torch.distributed, "get_rank", lambda: rank)
        return torch.rand(4, generator=process_stream(torch.Generator().manual_seed(0), {}))

    assert not torch.equal(draw(0), draw(1)) and not torch.equal(draw(1), draw(2))
    assert torch.equal(draw(1), draw(1))  # reproducible per rank
