"""Direction discovery: PCA recovers planted axes, regression transfers activation axes, files round-trip."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from tests.wplus_toy import ToyWPlusGenerator
from torch_semaug import StyleGAN2
from torch_semaug.cli import main
from torch_semaug.directions import Directions, find_directions, regress_to_latent
from torch_semaug.generators import save_generator


@pytest.fixture(scope="module")
def linear_toy() -> ToyWPlusGenerator:
    """Affine mapping and first block: principal directions known in closed form."""
    return ToyWPlusGenerator(linear=True)


def tiny_stylegan() -> StyleGAN2:
    with torch.random.fork_rng():
        torch.manual_seed(0)
        return StyleGAN2(16, z_dim=16, w_dim=16, mapping_layers=2, channel_base=256, channel_max=16).freeze()


def test_pca_in_w_recovers_the_mapping_principal_axes(linear_toy):
    dirs = find_directions(linear_toy, "pca", n_components=3, num_samples=4000, progress=False)
    # w = z @ M + b with z ~ N(0, I): the covariance of w is M^T M, its eigenvectors are the true axes.
    matrix = linear_toy.mapping_net.weight.T
    values, vectors = torch.linalg.eigh(matrix.T @ matrix)
    true_axes, true_std = vectors.flip(1)[:, :3].T, values.flip(0)[:3].sqrt()
    assert torch.allclose(dirs.basis @ dirs.basis.T, torch.eye(3), atol=1e-5)
    assert (dirs.basis * true_axes).sum(1).abs().min() > 0.97
    assert torch.allclose(dirs.std, true_std, rtol=0.06)
    assert dirs.std[0] > dirs.std[1] > dirs.std[2]
    ratios = dirs.provenance["explained_variance_ratio"]
    assert ratios == sorted(ratios, reverse=True) and sum(ratios) < 1


def test_pca_is_seeded_and_records_provenance(linear_toy):
    a = find_directions(linear_toy, n_components=2, num_samples=300, seed=3, progress=False)
    b = find_directions(linear_toy, n_components=2, num_samples=300, seed=3, progress=False)
    c = find_directions(linear_toy, n_components=2, num_samples=300, seed=4, progress=False)
    assert torch.equal(a.basis, b.basis) and not torch.equal(a.basis, c.basis)
    assert a.provenance["generator_kind"] == "wplus_toy"
    assert a.provenance["num_samples"] == 300 and a.provenance["seed"] == 3 and a.provenance["space"] == "w"
    other = ToyWPlusGenerator(linear=True, seed=1)
    d = find_directions(other, n_components=2, num_samples=300, seed=3, progress=False)
    assert d.provenance["generator_config_hash"] != a.provenance["generator_config_hash"]


def test_activation_pca_is_carried_back_to_w_by_regression(linear_toy):
    layer = linear_toy.synthesis.b4
    dirs = find_directions(
        linear_toy, "pca", n_components=2, num_samples=1000, space="activations", layer="synthesis.b4",
        progress=False,
    )
    assert dirs.provenance["layer"] == "synthesis.b4"
    assert torch.allclose(dirs.basis.norm(dim=1), torch.ones(2), atol=1e-5)
    # The layer is affine in its W+ layer here, so moving w by std_i * V_i must move the activations
    # along their own top principal axis by exactly one coordinate std (independent check by SVD).
    g = torch.Generator().manual_seed(0)
    w = linear_toy.mapping(torch.randn(2000, linear_toy.z_dim, generator=g))
    acts = layer(linear_toy.synthesis.const.expand(2000, -1, -1, -1), w).flatten(1).double()
    centered = acts - acts.mean(0)
    _, s, vh = torch.linalg.svd(centered, full_matrices=False)
    top_std = s[0] / (acts.shape[0] - 1) ** 0.5
    w0 = w[:5]
    moved = layer(linear_toy.synthesis.const.expand(5, -1, -1, -1), w0 + dirs.std[0] * dirs.basis[0])
    base = layer(linear_toy.synthesis.const.expand(5, -1, -1, -1), w0)
    shift = (moved - base).flatten(1).double()
    cosine = (shift @ vh[0]).abs() / shift.norm(dim=1)
    assert cosine.min() > 0.95
    assert torch.allclose((shift @ vh[0]).abs(), top_std.expand(5), rtol=0.1)


def test_regression_solves_the_normal_equations():
    g = torch.Generator().manual_seed(0)
    codes = torch.randn(500, 6, generator=g)
    coords = torch.randn(500, 2, generator=g) + codes[:, :2] * 3
    basis, std = regress_to_latent(codes, coords)
    # Residual of w - mean ~ (c - mean) V must be orthogonal to every centred coordinate.
    solution = basis.double() * (std.double() / (coords.double() - coords.double().mean(0)).std(0))[:, None]
    c = coords.double() - coords.double().mean(0)
    residual = (codes.double() - codes.double().mean(0)) - c @ solution
    assert (c.T @ residual).abs().max() < 1e-8
    assert torch.allclose(basis.norm(dim=1), torch.ones(2, dtype=basis.dtype))


def test_save_load_round_trip(tmp_path, linear_toy):
    dirs = find_directions(linear_toy, n_components=3, num_samples=200, progress=False)
    path = tmp_path / "sub" / "dirs.safetensors"
    dirs.save(path)
    loaded = Directions.load(path)
    assert torch.equal(loaded.basis, dirs.basis) and torch.equal(loaded.std, dirs.std)
    assert torch.equal(loaded.mean, dirs.mean)
    assert loaded.method == "pca" and loaded.provenance == dirs.provenance
    assert path.stat().st_size < 10_000
    assert [p.name for p in path.parent.iterdir()] == ["dirs.safetensors"]  # no temp file left behind


def test_edit_moves_only_the_chosen_layers(linear_toy):
    dirs = find_directions(linear_toy, n_components=3, num_samples=200, progress=False)
    w = linear_toy.sample_latent(4, torch.Generator().manual_seed(1))
    coefficients = torch.tensor([[1.0], [-2.0], [0.5], [0.0]])
    edited = dirs.edit(w, coefficients, torch.tensor([2]), layers=(1, 3))
    assert torch.equal(edited[:, [0, 3]], w[:, [0, 3]])
    expected = coefficients * dirs.std[2] * dirs.basis[2]
    assert torch.allclose(edited[:, 1] - w[:, 1], expected, atol=1e-6)
    assert torch.allclose(edited[:, 2] - w[:, 2], expected, atol=1e-6)


def test_bad_input(tmp_path, linear_toy):
    with pytest.raises(TypeError, match="generator"):
        find_directions(torch.nn.Linear(2, 2))
    with pytest.raises(ValueError, match="method"):
        find_directions(linear_toy, method="ica")
    with pytest.raises(ValueError, match="layer"):
        find_directions(linear_toy, space="activations")
    with pytest.raises(ValueError, match="layer.*synthesis"):
        find_directions(linear_toy, space="activations", layer="nope", num_samples=50)
    with pytest.raises(ValueError, match="n_components"):
        find_directions(linear_toy, n_components=9, num_samples=50)
    with pytest.raises(FileNotFoundError, match="path"):
        Directions.load(tmp_path / "missing.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"not a file")
    with pytest.raises(ValueError, match="path"):
        Directions.load(tmp_path / "junk.safetensors")
    with pytest.raises(ValueError, match="std"):
        Directions(torch.eye(2), torch.zeros(2), torch.ones(3), "pca")


def test_cli_writes_directions_and_slider_grid(tmp_path, capsys):
    generator = tiny_stylegan()
    save_generator(generator, tmp_path / "g.safetensors")
    out = tmp_path / "dirs"
    code = main([
        "directions", "--generator", str(tmp_path / "g.safetensors"), "--method", "pca", "--out", str(out),
        "--n-components", "3", "--num-samples", "300", "--strengths", "-2", "0", "2",
    ])
    assert code == 0
    dirs = Directions.load(out / "pca_w.safetensors")
    assert dirs.n_components == 3 and dirs.provenance["generator_kind"] == "stylegan2"
    image = Image.open(out / "pca_w_sliders.png")
    # 3 rows x 3 columns of 16 px tiles with 2 px padding.
    assert image.size == (3 * 18 + 2, 3 * 18 + 2)
    assert "pca_w_sliders.png" in capsys.readouterr().out


def test_slider_grid_columns_follow_the_strengths():
    from torch_semaug.viz import slider_grid

    generator = tiny_stylegan()
    dirs = find_directions(generator, n_components=2, num_samples=200, progress=False)
    grid = slider_grid(generator, dirs, strengths=(-2.0, 0.0, 2.0), padding=0)
    assert grid.shape == (3, 32, 48)
    tiles = grid.reshape(3, 2, 16, 3, 16).permute(1, 3, 0, 2, 4)
    # The zero-strength column is the unedited image in every row; the others differ from it.
    assert torch.allclose(tiles[0, 1], tiles[1, 1])
    assert (tiles[0, 0] - tiles[0, 1]).abs().max() > 1e-3
    big = slider_grid(generator, dirs, strengths=(-2.0, 0.0, 2.0), padding=0, upscale=2)
    assert big.shape == (3, 64, 96) and torch.equal(big[:, ::2, ::2], grid)


@pytest.mark.slow
def test_umap_directions_are_seeded_and_regressed():
    generator = ToyWPlusGenerator()
    a = find_directions(generator, "umap", n_components=2, num_samples=400, seed=0, progress=False)
    b = find_directions(generator, "umap", n_components=2, num_samples=400, seed=0, progress=False)
    assert torch.equal(a.basis, b.basis)
    assert a.method == "umap" and a.provenance["umap_neighbors"] == 15
    assert torch.allclose(a.basis.norm(dim=1), torch.ones(2), atol=1e-5)
    assert a.std[0] >= a.std[1] > 0
