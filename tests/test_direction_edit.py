"""DirectionEdit: random and adversarial coefficients along latent directions, on a layer range."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from torch_semaug import AdaptiveEps, DirectionEdit, StyleGAN2, create
from torch_semaug.directions import Directions, find_directions


@pytest.fixture(scope="module")
def stylegan(tiny_stylegan2) -> StyleGAN2:
    """The tiny StyleGAN2 of tests/conftest.py: 16 px, 6 W+ layers of 16 dimensions."""
    return tiny_stylegan2


@pytest.fixture(scope="module")
def dirs(stylegan) -> Directions:
    return find_directions(stylegan, n_components=4, num_samples=500, progress=False)


class SmallNet(nn.Module):
    def __init__(self, num_classes: int = 3) -> None:
        super().__init__()
        with torch.random.fork_rng():
            torch.manual_seed(0)
            self.net = nn.Sequential(
                nn.Conv2d(3, 4, 3, stride=2), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 7 * 7, num_classes)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def batch(stylegan, n: int = 6, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Latents, images in [0, 1] and labels (the net's own predictions, so that it starts correct)."""
    latents = stylegan.sample_latent(n, torch.Generator().manual_seed(seed))
    with torch.no_grad():
        images = (stylegan.decode(latents) + 1) / 2
        labels = SmallNet()(images).argmax(1)
    return latents, images, labels


def coefficients(dirs: Directions, before: torch.Tensor, after: torch.Tensor, layer: int) -> torch.Tensor:
    """Recover r from a W+ edit of layer ``layer`` (the PCA basis is orthonormal)."""
    return ((after[:, layer] - before[:, layer]) @ dirs.basis.T) / dirs.std


def test_random_mode_draws_coefficients_in_strength_on_the_chosen_layers(stylegan, dirs):
    t = DirectionEdit(stylegan, directions=dirs, components=[0, 2], layers=(1, 3), strength=(-1.5, 0.5),
                      rng=torch.Generator().manual_seed(0))
    latents, images, _ = batch(stylegan)
    moved = t._move(latents, None, _ctx(t))
    assert torch.equal(moved[:, [0, 3, 4, 5]], latents[:, [0, 3, 4, 5]])
    r = coefficients(dirs, latents, moved, 1)
    assert torch.allclose(r[:, [1, 3]], torch.zeros(6, 2), atol=1e-4)  # unchosen components do not move
    assert r[:, [0, 2]].min() >= -1.5 - 1e-4 and r[:, [0, 2]].max() <= 0.5 + 1e-4
    assert torch.allclose(coefficients(dirs, latents, moved, 2), r, atol=1e-4)  # same edit on both layers
    out = t(images, latents=latents)
    assert out.shape == images.shape and not torch.allclose(out, images)


def _ctx(t: DirectionEdit):
    from torch_semaug.transforms.base import MoveContext

    return MoveContext(lambda z: z, None, None, t.rng, None, 0, torch.device("cpu"))


def test_random_mode_is_reproducible_and_runs_per_sample(stylegan, dirs):
    latents, images, _ = batch(stylegan, 2)
    a = DirectionEdit(stylegan, directions=dirs, rng=torch.Generator().manual_seed(3))(images, latents=latents)
    b = DirectionEdit(stylegan, directions=dirs, rng=torch.Generator().manual_seed(3))(images, latents=latents)
    assert torch.equal(a, b)
    one = DirectionEdit(stylegan, directions=dirs)(images[0], latents=latents[0])
    assert one.shape == images[0].shape


def test_adversarial_mode_raises_the_loss_within_the_ball(stylegan, dirs):
    latents, images, labels = batch(stylegan, 8)
    model = SmallNet()
    t = DirectionEdit(stylegan, directions=dirs, model=model, mode="adversarial", eps=1.0, steps=4, layers=(0, 4))
    out, same = t(images, labels, latents=latents)
    assert torch.equal(same, labels)
    with torch.no_grad():
        clean = F.cross_entropy(model(images), labels)
        attacked = F.cross_entropy(model(out), labels)
        rand = DirectionEdit(stylegan, directions=dirs, strength=(-1.0, 1.0), rng=torch.Generator().manual_seed(0))
        random_loss = F.cross_entropy(model(rand(images, latents=latents)), labels)
    assert attacked > clean and attacked > random_loss
    # Recover r of the returned images: PGD ran on r only, so decoding the edit reproduces them.
    moved = t._move(latents, labels, _adv_ctx(t, model, images))
    r = coefficients(dirs, latents, moved, 0)
    assert r.abs().max() <= 1.0 + 1e-4


def _adv_ctx(t, model, images):
    from torch_semaug.transforms.base import MoveContext

    return MoveContext(lambda z: (t.generator.decode(z) + 1) / 2, model, None, None, None, images.shape[0],
                       images.device)


def test_adversarial_box_is_the_eps_ball_cut_by_strength(stylegan, dirs):
    latents, images, labels = batch(stylegan, 6)
    model = SmallNet()
    t = DirectionEdit(stylegan, directions=dirs, model=model, mode="adversarial", strength=(0.5, 3.0), eps=1.0, steps=3)
    moved = t._move(latents, labels, _adv_ctx(t, model, images))
    r = coefficients(dirs, latents, moved, 0)
    assert r.min() >= 0.5 - 1e-4 and r.max() <= 1.0 + 1e-4


def test_adversarial_with_adaptive_eps_and_label_smoothing(stylegan, dirs):
    latents, images, labels = batch(stylegan, 6)
    state = AdaptiveEps(20, start=0.5, rho=0.25, eps_max=2.0)
    t = DirectionEdit(stylegan, directions=dirs, model=SmallNet(), mode="adversarial", steps=2, adaptive_eps=state,
                      label_smoothing=0.1, rng=torch.Generator().manual_seed(0))
    indices = torch.tensor([3, 4, 5, 10, 11, 19])
    _, soft = t(images, labels, latents=latents, indices=indices)
    assert soft.shape == (6, 3) and torch.allclose(soft.sum(1), torch.ones(6))
    grown = state.eps[indices] > 0.5
    assert grown.any()
    assert torch.equal(state.eps[torch.tensor([0, 1, 2])], torch.full((3,), 0.5))
    assert list(t.state_dict()) == ["adaptive_eps.eps"]


def test_directions_load_from_a_path_and_registry(tmp_path, stylegan, dirs):
    dirs.save(tmp_path / "d.safetensors")
    t = create("direction_edit", generator=stylegan, directions=tmp_path / "d.safetensors", components=[1])
    assert torch.equal(t.directions.basis, dirs.basis)
    text = repr(t)
    assert "\n" not in text and "components=[1]" in text and "strength=(-2.0, 2.0)" in text


def test_bad_input(stylegan, dirs):
    other = Directions(torch.eye(3)[:2], torch.zeros(3), torch.ones(2), "pca", {"generator_kind": "stylegan2"})
    with pytest.raises(ValueError, match="directions.*w_dim=16"):
        DirectionEdit(stylegan, directions=other)
    with pytest.raises(TypeError, match="directions"):
        DirectionEdit(stylegan, directions=torch.eye(8))
    with pytest.raises(ValueError, match="components"):
        DirectionEdit(stylegan, directions=dirs, components=[0, 4])
    with pytest.raises(ValueError, match="components"):
        DirectionEdit(stylegan, directions=dirs, components=[])
    with pytest.raises(ValueError, match="layers"):
        DirectionEdit(stylegan, directions=dirs, layers=(2, 2))
    with pytest.raises(ValueError, match="layers"):
        DirectionEdit(stylegan, directions=dirs, layers=(3, 1))
    with pytest.raises(ValueError, match="layers"):
        DirectionEdit(stylegan, directions=dirs, layers=(0, 7))
    for strength in [(2.0, -2.0), (1.0,), 3.0, ("a", 1)]:
        with pytest.raises(ValueError, match="strength"):
            DirectionEdit(stylegan, directions=dirs, strength=strength)
    with pytest.raises(ValueError, match="eps"):
        DirectionEdit(stylegan, directions=dirs, mode="adversarial", strength=(1.0, 2.0), eps=0.5)
    with pytest.raises(ValueError, match="mode"):
        DirectionEdit(stylegan, directions=dirs, mode="worst")
    with pytest.raises(TypeError, match="generator"):
        from torch_semaug import IdentityGenerator

        DirectionEdit(IdentityGenerator((3, 4, 4)), directions=dirs)
    latents, images, labels = batch(stylegan, 2)
    t = DirectionEdit(stylegan, directions=dirs, model=SmallNet(), mode="adversarial",
                      adaptive_eps=AdaptiveEps(4, start=0.5, rho=0.1, eps_max=1.0))
    with pytest.raises(ValueError, match="indices"):
        t(images, labels, latents=latents)
    with pytest.raises(ValueError, match="adaptive_eps"):
        DirectionEdit(stylegan, directions=dirs, adaptive_eps=AdaptiveEps(4, start=0.5, rho=0.1, eps_max=1.0))
    with pytest.raises(ValueError, match="norm: expected one of \\['linf'\\]"):
        DirectionEdit(stylegan, directions=dirs, mode="adversarial", norm="l2")
    with pytest.raises(ValueError, match="steps: not used by mode='random'"):
        DirectionEdit(stylegan, directions=dirs, steps=3)


def test_a_mask_restricts_the_edit_entrywise(stylegan, dirs):
    latents, images, _ = batch(stylegan)
    mask = torch.zeros(stylegan.num_ws, stylegan.w_dim, dtype=torch.bool)
    mask[2, ::2] = True
    t = DirectionEdit(stylegan, directions=dirs, mask=mask.flatten(), rng=torch.Generator().manual_seed(0))
    moved = t._move(latents, None, _ctx(t))
    changed = (moved != latents).any(0)
    assert changed[mask].all() and not changed[~mask].any()
