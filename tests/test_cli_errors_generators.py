"""`semaug train-generator` and `semaug eval`: every user mistake is one `error:` line naming the flag, exit 2,
no traceback, nothing trained or written."""

from __future__ import annotations

import pytest

from tests.cli_helpers import assert_usage_error
from tests.training_fixtures import make_image_folder
from torch_semaug.cli import main
from torch_semaug.generators import IdentityGenerator, save_generator

TINY_STYLEGAN2 = ["--resolution", "16", "-b", "4", "--z-dim", "8", "--w-dim", "8", "--mapping-layers", "2",
                  "--channel-base", "64", "--channel-max", "8", "--threads", "1", "--device", "cpu", "--no-progress"]
TINY_GLOW = ["--scale", "smoke", "-b", "4", "--width", "8", "--threads", "1", "--device", "cpu", "--no-progress"]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Two finished one-iteration runs, a foreign file and a trained classifier to evaluate."""
    root = tmp_path_factory.mktemp("cli_errors")
    assert main(["train-generator", "stylegan2", "--data", "demo-shapes@8", "--out", str(root / "sg2"),
                 "--iterations", "1", *TINY_STYLEGAN2]) == 0
    assert main(["train-generator", "glow", "--data", "demo-shapes@8", "--out", str(root / "glow"),
                 "--iterations", "1", *TINY_GLOW]) == 0
    (root / "garbage.pt").write_bytes(b"not a checkpoint")
    make_image_folder(root / "imgs", per_class=4, size=16)
    save_generator(IdentityGenerator((3, 16, 16)), root / "identity.safetensors")
    assert main(["train", "--dataset", f"folder:{root / 'imgs'}", "--model", "test_resnet", "--epochs", "1", "-b",
                 "4", "-j", "0", "--seed", "0", "--output", str(root / "runs"), "--experiment", "clf",
                 "--no-progress"]) == 0
    return root


def _sg2(*extra: str) -> list[str]:
    return ["train-generator", "stylegan2", "--data", "demo-shapes@8", "--out", "{tmp}/new", *TINY_STYLEGAN2, *extra]


def _glow(*extra: str) -> list[str]:
    return ["train-generator", "glow", "--data", "demo-shapes@8", "--out", "{tmp}/new", *TINY_GLOW, *extra]


def _eval(*extra: str) -> list[str]:
    return ["eval", "--checkpoint", "{files}/runs/clf/last.pth", "-j", "0", "--no-progress", "--output",
            "{tmp}/eval.md", *extra]


IDENTITY = "adversarial_latent_attack={files}/identity.safetensors"

CASES = [
    # train-generator: what to train, where
    ("no-kind", ["train-generator"], ["KIND"]),
    ("unknown-kind", ["train-generator", "vae", "--data", "x"], ["invalid choice: 'vae'"]),
    ("no-data-no-out", ["train-generator", "stylegan2"], ["--data and --out required", "--resume"]),
    ("missing-folder", _sg2("--data", "{tmp}/nowhere"), ["--data:", "neither an image folder nor a dataset name"]),
    ("bad-dataset-variant", _sg2("--data", "colormnist:nope"), ["--data:"]),
    ("glow-missing-folder", _glow("--data", "{tmp}/nowhere"), ["--data:", "neither an image folder"]),
    ("unknown-flag", _sg2("--iters", "5"), ["unrecognized arguments: --iters"]),
    # train-generator: numbers
    ("resolution-17", _sg2("--resolution", "17"), ["--resolution:", "power of two from 16 to 1024, got 17"]),
    ("resolution-0", _sg2("--resolution", "0"), ["--resolution", "a positive integer, got '0'"]),
    ("batch-0", _sg2("-b", "0"), ["--batch-size", "a positive integer"]),
    ("batch-text", _sg2("--batch-size", "many"), ["--batch-size", "got 'many'"]),
    ("batch-over-data", _sg2("-b", "100"), ["--batch-size:", "at most the 8 training images, got 100"]),
    ("lr-negative", _sg2("--lr", "-1"), ["--lr", "a positive number, got '-1'"]),
    ("lr-nan", _sg2("--lr", "nan"), ["--lr", "a positive number"]),
    ("iterations-negative", _sg2("--iterations", "-5"), ["--iterations", "a positive integer, got '-5'"]),
    ("iterations-zero", _glow("--iterations", "0"), ["--iterations", "a positive integer"]),
    ("max-minutes-zero", _sg2("--max-minutes", "0"), ["--max-minutes", "a positive number"]),
    ("checkpoint-every-zero", _sg2("--checkpoint-every", "0"), ["--checkpoint-every", "a positive integer"]),
    ("sample-every-zero", _glow("--sample-every", "0"), ["--sample-every", "a positive integer"]),
    ("threads-zero", _sg2("--threads", "0"), ["--threads", "a positive integer"]),
    ("workers-negative", _sg2("-j", "-1"), ["--workers", "an integer >= 0"]),
    ("seed-negative", _glow("--seed", "-1"), ["--seed", "an integer >= 0"]),
    ("device-tpu", _sg2("--device", "tpu"), ["--device", "got 'tpu'"]),
    ("mixing-prob", _sg2("--mixing-prob", "1.5"), ["--mixing-prob", "a probability in [0, 1]"]),
    ("r1-gamma-negative", _sg2("--r1-gamma", "-1"), ["--r1-gamma:", "a number >= 0, got -1.0"]),
    ("ema-kimg-zero", _sg2("--ema-kimg", "0"), ["--ema-kimg", "a positive number"]),
    ("z-dim-zero", _sg2("--z-dim", "0"), ["--z-dim", "a positive integer"]),
    ("levels-zero", _glow("--levels", "0"), ["--levels", "a positive integer, got '0'"]),
    ("n-bits-zero", _glow("--n-bits", "0"), ["--n-bits", "a positive integer, got '0'"]),
    ("n-bits-nine", _glow("--n-bits", "9"), ["--n-bits:", "an integer from 1 to 8, got 9"]),
    ("glow-scale", _glow("--scale", "huge"), ["--scale", "invalid choice: 'huge'"]),
    ("glow-optimizer", _glow("--optimizer", "sgd"), ["--optimizer", "invalid choice: 'sgd'"]),
    ("glow-clip-zero", _glow("--clip", "0"), ["--clip", "a positive number"]),
    ("glow-warmup-negative", _glow("--warmup", "-1"), ["--warmup", "an integer >= 0"]),
    ("glow-eval-limit-zero", _glow("--eval-limit", "0"), ["--eval-limit", "a positive integer"]),
    # train-generator: the resume rule
    ("init-from-missing", _sg2("--init-from", "{tmp}/none.pt"), ["--init-from:", "does not exist"]),
    ("init-from-garbage", _sg2("--init-from", "{files}/garbage.pt"), ["--init-from:", "cannot read"]),
    ("glow-init-from-missing", _glow("--init-from", "{tmp}/none.pt"), ["--init-from:", "does not exist"]),
    ("glow-init-from-garbage", _glow("--init-from", "{files}/garbage.pt"), ["--init-from:", "cannot read"]),
    ("glow-init-from-stylegan2", _glow("--init-from", "{files}/sg2/checkpoint.pt"),
     ["--init-from:", "not a checkpoint of `semaug train-generator glow`"]),
    ("glow-init-from-stylegan2-file", _glow("--init-from", "{files}/sg2/generator.safetensors"),
     ["--init-from:", "cannot read", "as a Glow"]),
    ("glow-init-from-other-width", _glow("--init-from", "{files}/glow/generator.safetensors", "--width", "16"),
     ["--init-from:", "another architecture", "--width"]),
    ("glow-init-from-checkpoint-other-width", _glow("--init-from", "{files}/glow/checkpoint.pt", "--width", "16"),
     ["--init-from:", "another architecture"]),
    ("out-holds-a-run", _sg2("--out", "{files}/sg2"), ["--out:", "already holds a run", "--resume"]),
    ("resume-missing", ["train-generator", "stylegan2", "--resume", "{tmp}/none/checkpoint.pt"],
     ["--resume:", "no checkpoint at"]),
    ("resume-garbage", ["train-generator", "glow", "--resume", "{files}/garbage.pt"], ["--resume:", "cannot read"]),
    ("resume-other-kind", ["train-generator", "glow", "--resume", "{files}/sg2/checkpoint.pt"],
     ["--resume:", "is a stylegan2 checkpoint, not glow"]),
    ("resume-new-architecture", ["train-generator", "stylegan2", "--resume", "{files}/sg2", "--resolution", "32"],
     ["--resolution:", "trained with 16, this run says 32", "start a new run"]),
    ("resume-and-init-from", ["train-generator", "stylegan2", "--resume", "{files}/sg2", "--init-from",
                              "{files}/sg2/checkpoint.pt"], ["--init-from:", "drop --init-from"]),
    ("resume-into-another-run", ["train-generator", "glow", "--resume", "{files}/glow", "--out", "{files}/sg2"],
     ["--out:", "belongs to another run"]),
    # eval: the command line
    ("eval-no-checkpoint", ["eval"], ["--checkpoint"]),
    ("eval-attack-no-generator", _eval("--attack", "latent_mix"), ["--attack:", "NAME=GENERATOR_CHECKPOINT"]),
    ("eval-attack-kwargs-no-colon", _eval("--attack", IDENTITY, "--attack-kwargs", "steps=3"),
     ["--attack-kwargs:", "NAME:KEY=VALUE"]),
    ("eval-attack-kwargs-other-attack", _eval("--attack", IDENTITY, "--attack-kwargs", "latent_mix:steps=3"),
     ["--attack-kwargs:", "for a NAME given with --attack"]),
    ("eval-attack-kwargs-bad-yaml", _eval("--attack", IDENTITY, "--attack-kwargs",
                                          "adversarial_latent_attack:norm=[l2"), ["--attack-kwargs:"]),
    ("eval-attack-kwargs-unknown-key", _eval("--attack", IDENTITY, "--attack-kwargs",
                                             "adversarial_latent_attack:bogus=1"), ["--attack-kwargs:", "bogus"]),
    ("eval-unknown-attack", _eval("--attack", "nope={files}/identity.safetensors"), ["--attack:", "valid names"]),
    ("eval-missing-generator", _eval("--attack", "adversarial_latent_attack={tmp}/none.safetensors"),
     ["--attack:", "none.safetensors"]),
    ("eval-val-subset-zero", _eval("--val-subset", "0"), ["--val-subset", "a positive integer, got '0'"]),
    ("eval-val-subset-negative", _eval("--val-subset", "-3"), ["--val-subset", "got '-3'"]),
    ("eval-limit-is-gone", _eval("--limit", "4"), ["unrecognized arguments: --limit"]),
    ("eval-max-grid-negative", _eval("--max-grid", "-1"), ["--max-grid", "an integer >= 0, got '-1'"]),
    ("eval-batch-zero", _eval("-b", "0"), ["--batch-size", "a positive integer"]),
    ("eval-workers-negative", _eval("-j", "-2"), ["--workers", "an integer >= 0"]),
    ("eval-device", _eval("--device", "tpu"), ["--device", "got 'tpu'"]),
    ("eval-seed-negative", _eval("--seed", "-1"), ["--seed", "an integer >= 0"]),
    ("eval-split", _eval("--split", "val"), ["--split", "invalid choice: 'val'"]),
    ("eval-output-not-markdown", _eval("--output", "{tmp}/eval.txt"), ["--output:", "ending in .md"]),
    ("eval-checkpoint-missing", _eval("--checkpoint", "{tmp}/none.pth"), ["--checkpoint:", "no checkpoint at"]),
    ("eval-checkpoint-foreign", _eval("--checkpoint", "{files}/sg2/checkpoint.pt"),
     ["--checkpoint:", "not a torch_semaug classifier checkpoint"]),
    ("eval-latents-missing", _eval("--latents", "{tmp}/no_cache"), ["--latents:", "no_cache"]),
    ("eval-dataset-unknown", _eval("--dataset", "imagenet"), ["--dataset:", "imagenet"]),
]


@pytest.mark.parametrize(("argv", "fragments"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_invocation_is_one_error_line(argv, fragments, files, tmp_path, capsys):
    filled = [a.format(tmp=tmp_path, files=files) for a in argv]
    before = {p: p.stat().st_mtime_ns for p in files.rglob("*") if p.is_file()}
    assert_usage_error(filled, capsys, *fragments)
    assert not (tmp_path / "new" / "generator.safetensors").exists() and not (tmp_path / "eval.md").exists()
    assert {p: p.stat().st_mtime_ns for p in files.rglob("*") if p.is_file()} == before  # nothing overwritten


def test_the_table_is_large_enough():
    assert len(CASES) >= 30 and len({c[0] for c in CASES}) == len(CASES)
