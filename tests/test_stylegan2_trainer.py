"""semaug train-generator stylegan2 on tiny synthetic data: runs, resumes, writes a loadable generator."""

from __future__ import annotations

import pytest
import torch

from tests.cli_helpers import assert_usage_error
from torch_semaug.cli import main
from torch_semaug.data.color_mnist import CLASS_COLORS, ColorMNIST
from torch_semaug.data.datasets import create_dataset
from torch_semaug.generators import load_generator
from torch_semaug.generators.stylegan2 import StyleGAN2

ARGS = ["--resolution", "16", "-b", "4", "--z-dim", "8", "--w-dim", "8", "--mapping-layers", "2",
        "--channel-base", "64", "--channel-max", "8", "--r1-every", "2", "--sample-every", "2",
        "--checkpoint-every", "2", "--no-progress", "--threads", "1", "--device", "cpu"]


def test_train_resume_and_load(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train-generator", "stylegan2", "--data", "colormnist:tiny", "--out", str(out),
                 "--iterations", "2", *ARGS]) == 0
    state = torch.load(out / "checkpoint.pt", weights_only=True)
    assert state["iteration"] == 2 and state["arguments"]["batch_size"] == 4
    assert (out / "samples" / "000002.png").is_file() and (out / "samples" / "final.png").is_file()
    first = StyleGAN2.load(out / "generator.safetensors")
    assert first.resolution == 16 and first.image_shape == (3, 16, 16)
    # the same command again would overwrite the run: refused, with the way to continue it
    assert_usage_error(["train-generator", "stylegan2", "--data", "colormnist:tiny", "--out", str(out),
                        "--iterations", "3", *ARGS], capsys, "--out:", f"--resume {out / 'checkpoint.pt'}")
    # --resume alone restores the run's arguments; a typed flag overrides one and says so
    assert main(["train-generator", "stylegan2", "--resume", str(out / "checkpoint.pt"), "--iterations", "3"]) == 0
    printed = capsys.readouterr().out
    assert "overriding the checkpoint: --iterations 3 (checkpoint: 2)" in printed and "iteration 2 of 3" in printed
    state = torch.load(out / "checkpoint.pt", weights_only=True)
    assert state["iteration"] == 3 and state["arguments"]["batch_size"] == 4
    second = load_generator(out / "generator.safetensors", kind="stylegan2")
    assert any(not torch.equal(a, b) for a, b in zip(first.state_dict().values(), second.state_dict().values()))
    assert second.w_avg.abs().sum() > 0  # tracked during training
    w = second.sample_latent(2, torch.Generator().manual_seed(0))
    assert torch.isfinite(second.decode(w)).all()


@pytest.fixture(scope="module")
def base_run(tmp_path_factory):
    """A 2-iteration run whose checkpoint.pt and generator.safetensors the fine-tuning tests start from."""
    base = tmp_path_factory.mktemp("base") / "run"
    assert main(["train-generator", "stylegan2", "--data", "colormnist:tiny", "--out", str(base),
                 "--iterations", "2", *ARGS]) == 0
    return base


def test_init_from_fine_tunes_another_runs_checkpoint(tmp_path, capsys, base_run):
    base = base_run
    tuned = tmp_path / "tuned"
    assert main(["train-generator", "stylegan2", "--data", "colormnist:tiny-uniform", "--out", str(tuned),
                 "--iterations", "1", "--init-from", str(base / "checkpoint.pt"), *ARGS]) == 0
    assert torch.load(tuned / "checkpoint.pt", weights_only=True)["iteration"] == 1  # counted from 0
    before = torch.load(base / "checkpoint.pt", weights_only=True)["G"]
    after = torch.load(tuned / "checkpoint.pt", weights_only=True)["G"]
    step = max((after[k] - before[k]).abs().max().item() for k in before)
    assert 0 < step < 0.1  # one Adam step away from the base run's weights, not a fresh start
    # the fine-tune resumes like any run: its own weights, the --init-from it started with is not applied again
    capsys.readouterr()
    assert main(["train-generator", "stylegan2", "--resume", str(tuned), "--iterations", "2"]) == 0
    assert torch.load(tuned / "checkpoint.pt", weights_only=True)["iteration"] == 2
    assert "fine-tuning from" not in capsys.readouterr().err
    assert_usage_error(["train-generator", "stylegan2", "--data", "colormnist:tiny", "--out", str(tmp_path / "other"),
              "--iterations", "1", "--init-from", str(base / "checkpoint.pt"), *ARGS, "--channel-max", "16"],
                       capsys, "--init-from:", "another architecture")
    assert_usage_error(["train-generator", "stylegan2", "--data", "colormnist:tiny", "--out", str(tmp_path / "x"),
                        "--init-from", str(tmp_path / "nope.pt"), *ARGS], capsys, "--init-from")


def test_init_from_a_generator_file_starts_g_and_ema_from_it(tmp_path, capsys, base_run):
    """A released generator has no D: G and the EMA start from its weights, D from scratch."""
    base = base_run
    tuned = tmp_path / "tuned"
    assert main(["train-generator", "stylegan2", "--data", "colormnist:tiny-uniform", "--out", str(tuned),
                 "--iterations", "1", "--init-from", str(base / "generator.safetensors"), *ARGS]) == 0
    assert "D and the optimisers fresh" in capsys.readouterr().err
    released = StyleGAN2.load(base / "generator.safetensors").state_dict()
    state = torch.load(tuned / "checkpoint.pt", weights_only=True)
    step = max((state["G"][k] - released[k]).abs().max().item() for k in released)
    assert 0 < step < 0.1  # one Adam step from the released weights
    assert max((state["G_ema"][k] - released[k]).abs().max().item() for k in released) < 0.1  # the EMA too
    assert_usage_error(["train-generator", "stylegan2", "--data", "colormnist:tiny", "--out", str(tmp_path / "o"),
                        "--iterations", "1", "--init-from", str(base / "generator.safetensors"), *ARGS,
                        "--channel-max", "16"], capsys, "--init-from:", "another architecture")
    (tmp_path / "bad.safetensors").write_bytes(b"not a file")
    assert_usage_error(["train-generator", "stylegan2", "--data", "colormnist:tiny", "--out", str(tmp_path / "b"),
                        "--iterations", "1", "--init-from", str(tmp_path / "bad.safetensors"), *ARGS], capsys,
                       "--init-from:", "cannot read")


def test_image_folder_data(tmp_path, capsys):
    from torchvision.utils import save_image

    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(4):
        save_image(torch.rand(1, 20, 20), folder / f"{i}.png")
    out = tmp_path / "run"
    assert main(["train-generator", "stylegan2", "--data", str(folder), "--out", str(out), "--iterations", "1",
                 *ARGS]) == 0
    assert StyleGAN2.load(out / "generator.safetensors").image_channels == 3  # PNGs load as RGB
    assert_usage_error(["train-generator", "stylegan2", "--data", str(tmp_path / "missing"), "--out", str(out) + "2",
                        *ARGS], capsys, "--data")


def test_color_mnist_protocol():
    biased = ColorMNIST.synthetic(40, coloring="biased", sigma=0.0)
    image, label = biased[3]
    assert image.shape == (3, 32, 32) and image.min() >= 0 and image.max() <= 1
    stroke = image.amax(0) > 0.99 * image.amax()
    colour = image[:, stroke].mean(1) / image[:, stroke].amax()
    assert torch.allclose(colour, CLASS_COLORS[label] / CLASS_COLORS[label].max(), atol=1e-4)
    uniform = ColorMNIST.synthetic(40, coloring="uniform")
    assert uniform.colors.std(0).min() > 0.15  # spread over the colour cube, not per class
    again = ColorMNIST.synthetic(40, coloring="uniform")
    assert torch.equal(again[5][0], uniform[5][0])
    assert len(create_dataset("colormnist:tiny@10")) == 10
    with pytest.raises(ValueError, match="colormnist"):
        create_dataset("colormnist:nope")
    with pytest.raises(FileNotFoundError, match="MNIST"):
        ColorMNIST.from_mnist("/nonexistent")


def test_recorded_command_is_the_command_line(tmp_path):
    from torch_semaug.generators.io import read_metadata

    out = tmp_path / "run"
    argv = ["train-generator", "stylegan2", "--data", "demo-shapes@8", "--out", str(out), "--iterations", "1",
            *ARGS]
    assert main(argv) == 0
    command = read_metadata(out / "generator.safetensors")["command"]
    assert command.startswith(f"semaug train-generator stylegan2 --data demo-shapes@8 --out {out} ")
    assert "-b" not in command.split() and "--batch-size 4" in command and "--mirror" not in command


def test_library_call_takes_keyword_arguments(tmp_path):
    from torch_semaug.train.stylegan2_trainer import train_stylegan2

    metrics = train_stylegan2(data="demo-shapes@8", out=tmp_path / "run", resolution=16, iterations=1,
                              batch_size=4, z_dim=8, w_dim=8, mapping_layers=2, channel_base=64, channel_max=8,
                              threads=1, progress=False)
    assert metrics["iterations"] == 1 and StyleGAN2.load(metrics["generator"]).resolution == 16
    with pytest.raises(ValueError, match="iterations: expected an integer >= 1, got -5"):
        train_stylegan2(data="demo-shapes@8", out=tmp_path / "other", iterations=-5)
    assert not (tmp_path / "other").exists()


def test_training_draws_fresh_noise_for_every_image(tmp_path, monkeypatch):
    # const noise is one template shared by all samples: trained on it, G collapses to a single shape
    modes = []
    synthesize = StyleGAN2.synthesize

    def recording(self, w_plus, noise_mode=None):
        if torch.is_grad_enabled() or noise_mode is not None:
            modes.append(noise_mode)
        return synthesize(self, w_plus, noise_mode)

    monkeypatch.setattr(StyleGAN2, "synthesize", recording)
    assert main(["train-generator", "stylegan2", "--data", "colormnist:tiny", "--out", str(tmp_path / "run"),
                 "--iterations", "1", *ARGS]) == 0
    assert modes and set(modes) == {"random"}
