"""Per-example attack memory (warm starts): every adversarial transform's next attack on an example starts
from its last move, projected into the current ball; written only in train(); saved, resumed and merged."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from torch import nn

import torch_semaug as ts
from tests.conftest import shared_tiny_glow, shared_tiny_stylegan2
from tests.contract_cases import make_classifier
from tests.flow_factories import smooth_images
from torch_semaug.attacks import AttackMemory
from torch_semaug.directions import find_directions
from torch_semaug.generators import save_generator

N = 6  # examples per batch
INDICES = torch.tensor([4, 0, 9, 2, 7, 5])


class Recorder(nn.Module):
    """The classifier, recording the images of every forward call (the first one of an attack is its start)."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner, self.calls = inner, []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls.append(x.detach().clone())
        return self.inner(x)


def _images_and_latents(kind: str) -> tuple[torch.Tensor, torch.Tensor | None]:
    if kind == "glow":
        return 0.25 + 0.5 * smooth_images(N, seed=1), None
    if kind == "stylegan":
        g = shared_tiny_stylegan2()
        latents = g.sample_latent(N, torch.Generator().manual_seed(1))
        with torch.no_grad():
            return ((g.decode(latents) + 1) / 2).clamp(0, 1), latents
    return torch.rand(N, 3, 16, 16, generator=torch.Generator().manual_seed(1)), None


_DIRECTIONS: dict = {}


def _directions():
    if "d" not in _DIRECTIONS:
        _DIRECTIONS["d"] = find_directions(shared_tiny_stylegan2(), n_components=3, num_samples=200, progress=False)
    return _DIRECTIONS["d"]


# name -> (generator kind, make(model, memory, **budget)); every attack is deterministic given its rng
MAKERS: dict[str, tuple[str, Callable[..., ts.SemanticTransform]]] = {
    "adversarial_latent_attack": ("identity", lambda model, memory, **kw: ts.AdversarialLatentAttack(
        ts.IdentityGenerator((3, 16, 16)), model=model, warm_start=memory, rng=torch.Generator().manual_seed(0),
        **{"eps": 0.1, "step_size": 0.03, "steps": 3, **kw})),
    "flow_perturb": ("glow", lambda model, memory, **kw: ts.FlowPerturb(
        shared_tiny_glow(), model=model, mode="adversarial", warm_start=memory,
        rng=torch.Generator().manual_seed(0), **{"eps": 1.0, "steps": 3, **kw})),
    "latent_mix": ("stylegan", lambda model, memory, **kw: ts.LatentMix(
        shared_tiny_stylegan2(), model=model, mode="adversarial", warm_start=memory, on_failure="highest_loss",
        early_stop=False, rng=torch.Generator().manual_seed(0), **{"eps": 0.2, "steps": 3, "restarts": 2, **kw})),
    "direction_edit": ("stylegan", lambda model, memory, **kw: ts.DirectionEdit(
        shared_tiny_stylegan2(), directions=_directions(), model=model, mode="adversarial", warm_start=memory,
        rng=torch.Generator().manual_seed(0), **{"eps": 1.5, "steps": 3, **kw})),
}


def _attack(name: str, memory: AttackMemory | None, indices: torch.Tensor = INDICES, train: bool = True,
            **budget) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """The output of one attack on the fixed batch and the images of every classifier call it made."""
    kind, make = MAKERS[name]
    images, latents = _images_and_latents(kind)
    model = Recorder(make_classifier().eval())
    t = make(model, memory, **budget).train(train)
    labels = torch.arange(N) % 5
    out, _ = t(images, labels, latents=latents, indices=indices)
    return out, model.calls


@pytest.mark.parametrize("name", list(MAKERS))
def test_second_attack_starts_from_the_stored_move(name):
    memory = AttackMemory(12)
    first, _ = _attack(name, memory)
    assert memory.known.sum() == N and bool(memory.known[INDICES].all())
    # the second attack's first classifier call sees exactly the first attack's result (one restart)
    _, calls = _attack(name, memory, steps=1, restarts=1)
    assert torch.allclose(calls[0], first, atol=1e-5)
    # without memory the attack starts elsewhere
    _, cold = _attack(name, None, steps=1, restarts=1)
    assert not torch.allclose(cold[0], first, atol=1e-3)


@pytest.mark.parametrize("name", list(MAKERS))
def test_unknown_examples_start_as_without_memory(name):
    memory = AttackMemory(12)
    _attack(name, memory, indices=INDICES)
    fresh = torch.tensor([1, 3, 6, 8, 10, 11])  # never attacked
    _, warm = _attack(name, memory, indices=fresh, steps=1, restarts=1)
    _, cold = _attack(name, None, indices=fresh, steps=1, restarts=1)
    assert torch.equal(warm[0], cold[0])


@pytest.mark.parametrize("name", list(MAKERS))
def test_only_train_mode_writes(name):
    memory = AttackMemory(12)
    _attack(name, memory, train=False)
    assert not bool(memory.known.any()) and memory.moves.abs().sum() == 0
    _attack(name, memory, train=True)
    stored = memory.moves.clone()
    _attack(name, memory, train=False, steps=1, restarts=1)  # reads, does not write
    assert torch.equal(memory.moves, stored)


def test_offset_is_projected_into_a_smaller_linf_ball():
    memory = AttackMemory(12)
    first, _ = _attack("adversarial_latent_attack", memory)
    images, _ = _images_and_latents("identity")
    delta = first - images
    assert float(delta.abs().max()) > 0.05
    assert torch.allclose(memory.moves[INDICES], delta.flatten(1), atol=1e-6)  # the offset, per dataset index
    _, calls = _attack("adversarial_latent_attack", memory, eps=0.02, step_size=0.01, steps=1)
    expected = (images + delta.clamp(-0.02, 0.02)).clamp(0, 1)
    assert torch.allclose(calls[0], expected, atol=1e-6)


def test_flow_offset_is_projected_into_a_smaller_l2_ball():
    memory = AttackMemory(12)
    _attack("flow_perturb", memory)
    stored = memory.moves[INDICES].clone()
    eps, norms = 0.3, stored.norm(dim=1, keepdim=True)
    assert float(norms.min()) > eps  # so the projection shrinks every offset
    _, projected = _attack("flow_perturb", memory, eps=eps, steps=1)
    memory.moves[INDICES] = stored * eps / norms  # the offsets rescaled onto the sphere by hand
    _, rescaled = _attack("flow_perturb", memory, eps=eps, steps=1)
    assert torch.allclose(projected[0], rescaled[0], atol=1e-5)
    _, cold = _attack("flow_perturb", None, eps=eps, steps=1)
    assert not torch.allclose(projected[0], cold[0], atol=1e-3)


def test_direction_coefficients_are_clipped_to_a_smaller_box():
    memory = AttackMemory(12)
    _attack("direction_edit", memory)
    stored = memory.moves[INDICES]
    assert stored.shape == (N, 3) and float(stored.abs().max()) > 0.5
    memory.moves[INDICES] = stored.clamp(-0.5, 0.5)  # what eps=0.5 makes of them
    _, clipped = _attack("direction_edit", memory, eps=0.5, steps=1)
    memory.moves[INDICES] = stored
    _, projected = _attack("direction_edit", memory, eps=0.5, steps=1)
    assert torch.allclose(projected[0], clipped[0], atol=1e-5)


def test_state_dict_round_trip_and_bytes_per_example():
    memory = AttackMemory(12)
    kind, make = MAKERS["flow_perturb"]
    t = make(make_classifier().eval(), memory)
    _attack("flow_perturb", memory)
    state = t.state_dict()
    assert set(state) >= {"warm_start.moves", "warm_start.known"} and "warm_start._written" not in state
    fresh = AttackMemory(12)
    make(make_classifier().eval(), fresh).load_state_dict(state)
    assert torch.equal(fresh.moves, memory.moves) and torch.equal(fresh.known, memory.known)
    assert fresh.moves.device.type == "cpu"
    assert memory.width == torch.Size(shared_tiny_glow().latent_shape).numel()  # the whole flow latent moves
    assert fresh.bytes_per_example() == 4 * memory.width + 1
    half = AttackMemory(12, dtype=torch.float16)
    half.load_state_dict(fresh.state_dict())
    assert half.bytes_per_example() == 2 * memory.width + 1


def test_bad_input():
    with pytest.raises(TypeError, match="warm_start: expected a torch_semaug.attacks.AttackMemory"):
        MAKERS["flow_perturb"][1](None, "yes")
    with pytest.raises(ValueError, match="warm_start: only adversarial modes"):
        ts.FlowPerturb(shared_tiny_glow(), mode="random", warm_start=AttackMemory(3))
    with pytest.raises(ValueError, match="num_examples: "):
        AttackMemory(0)
    memory = AttackMemory(12)
    _attack("flow_perturb", memory)
    with pytest.raises(ValueError, match="give each transform its own AttackMemory"):
        _attack("direction_edit", memory)
    with pytest.raises(ValueError, match=r"indices: expected dataset indices in \[0, 12\)"):
        _attack("flow_perturb", memory, indices=INDICES + 10)
    with pytest.raises(ValueError, match="indices: warm_start keeps state per dataset example"):
        _attack("flow_perturb", memory, indices=None)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


MERGE_SCRIPT = """
import sys, torch, torch.distributed as dist
from torch_semaug.attacks import AttackMemory
dist.init_process_group("gloo")
rank = dist.get_rank()
memory = AttackMemory(8)
memory.ensure_width(3, "test")
mine = torch.tensor([0, 2, 4, 6]) + rank  # the sampler's split: rank 0 even, rank 1 odd indices
memory.store(mine, torch.full((4, 3), float(rank + 1)) + mine[:, None])
memory.sync()
torch.save({"moves": memory.moves, "known": memory.known}, sys.argv[1] + f"/rank{rank}.pt")
dist.destroy_process_group()
"""


def test_two_processes_merge_their_rows(tmp_path: Path):
    script = tmp_path / "merge.py"
    script.write_text(MERGE_SCRIPT)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port",
           str(_free_port()), str(script), str(tmp_path)]
    subprocess.run(cmd, check=True, env=env, timeout=120, capture_output=True)
    states = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2)]
    expected = torch.arange(8, dtype=torch.float32)[:, None] + 1 + (torch.arange(8) % 2)[:, None]
    for state in states:
        assert bool(state["known"].all())
        assert torch.equal(state["moves"], expected.expand(8, 3))


def test_killed_warm_start_run_resumes_exactly(tmp_path, capsys):
    """`semaug train --semaug ... --semaug-warm-start` SIGKILLed in epoch 1 and resumed with --resume alone ends
    with the uninterrupted run's weights and memory (which holds a move for every example it attacked)."""
    from tests.test_train_resume import assert_same_weights, kill_during_epoch, run_argv
    from tests.training_fixtures import make_image_folder
    from torch_semaug.cli import main as cli_main
    from torch_semaug.train.checkpoint import load_checkpoint

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the killed run is a one-thread subprocess
    try:
        make_image_folder(tmp_path / "imgs", per_class=8, size=16)
        kill_during_epoch(run_argv(tmp_path, "killed", 2, "--semaug-warm-start"), epoch=1, batch=1)
        run = tmp_path / "runs" / "killed"
        assert cli_main(["train", "--resume", str(run / "last.pth")]) == 0
        assert "warm_start=AttackMemory(num_examples=16" in capsys.readouterr().out  # the whole split's indices
        assert cli_main(run_argv(tmp_path, "uninterrupted", 2, "--semaug-warm-start")) == 0
    finally:
        torch.set_num_threads(threads)
    assert_same_weights(run / "last.pth", tmp_path / "runs" / "uninterrupted" / "last.pth")
    resumed, straight = (load_checkpoint(path)["semaug_per_rank"][0] for path in
                         (run / "last.pth", tmp_path / "runs" / "uninterrupted" / "last.pth"))
    assert torch.equal(resumed["warm_start.moves"], straight["warm_start.moves"])
    assert torch.equal(resumed["warm_start.known"], straight["warm_start.known"])
    assert 0 < int(straight["warm_start.known"].sum()) <= 12  # p=0.5 of the 12 examples of the subset
    assert straight["warm_start.moves"].shape == (16, 3 * 16 * 16)


def test_a_run_without_warm_starts_resumes_with_them(tmp_path, capsys):
    from tests.test_train_resume import run_argv
    from tests.training_fixtures import make_image_folder
    from torch_semaug.cli import main as cli_main
    from torch_semaug.train.checkpoint import load_checkpoint

    make_image_folder(tmp_path / "imgs", per_class=4, size=16)
    assert cli_main(run_argv(tmp_path, "plain", 1)) == 0
    last = tmp_path / "runs" / "plain" / "last.pth"
    assert "warm_start.known" not in load_checkpoint(last)["semaug_per_rank"][0]
    assert cli_main(["train", "--resume", str(last), "--epochs", "2", "--semaug-warm-start"]) == 0
    assert "--semaug-warm-start True (checkpoint: False)" in capsys.readouterr().out
    assert int(load_checkpoint(last)["semaug_per_rank"][0]["warm_start.known"].sum()) > 0


def test_train_flag_errors(tmp_path, capsys):
    from tests.cli_helpers import assert_usage_error
    from tests.test_train_resume import run_argv
    from tests.training_fixtures import make_image_folder

    make_image_folder(tmp_path / "imgs", per_class=2, size=16)
    argv = run_argv(tmp_path, "x", 1)
    plain = argv[:argv.index("--semaug")]
    assert_usage_error([*plain, "--semaug-warm-start"], capsys, "--semaug-warm-start: given without --semaug NAME")
    save_generator(shared_tiny_glow(), tmp_path / "glow.safetensors")
    assert_usage_error([*plain, "--semaug", "flow_perturb", "--semaug-generator", str(tmp_path / "glow.safetensors"),
                        "--semaug-warm-start"], capsys, "--semaug-warm-start: warm starts remember attacks",
                       "choose --semaug-mode adversarial")


@pytest.mark.slow  # one 2-process launch: about 30 s on 2 shared cores
def test_two_training_processes_hold_every_rank_moves(tmp_path):
    """`accelerate launch` with 2 CPU processes: each rank attacks its shard, the memory is merged before every
    checkpoint, so both ranks' saved memories are equal and cover every example."""
    from tests.test_distributed import LAUNCHERS, ROOT
    from tests.training_fixtures import make_image_folder
    from torch_semaug.train.checkpoint import load_checkpoint

    make_image_folder(tmp_path / "imgs", per_class=7, size=16)  # 14 images
    save_generator(ts.IdentityGenerator((3, 16, 16)), tmp_path / "identity.safetensors")
    command = [
        sys.executable, *LAUNCHERS["accelerate"], "-m", "torch_semaug.train",
        "--dataset", f"folder:{tmp_path / 'imgs'}", "--model", "test_efficientnet", "--epochs", "1", "-b", "4",
        "-j", "0", "--no-progress",
        "--output", str(tmp_path / "runs"), "--experiment", "ddp", "--semaug", "adversarial_latent_attack",
        "--semaug-generator", str(tmp_path / "identity.safetensors"), "--semaug-eps", "0.03", "--semaug-steps", "1",
        "--semaug-step-size", "0.01", "--semaug-warm-start",
    ]
    env = os.environ | {"PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    first, second = load_checkpoint(tmp_path / "runs" / "ddp" / "last.pth")["semaug_per_rank"]
    assert bool(first["warm_start.known"].all())  # 14 examples, 7 per rank, all merged
    assert torch.equal(first["warm_start.moves"], second["warm_start.moves"])
    assert float(first["warm_start.moves"].abs().max()) > 0


def test_benchmark_smoke_writes_every_arm(tmp_path):
    from benchmarks import warm_start

    warm_start.main(["--scale", "smoke", "--seeds", "0,1", "--out", str(tmp_path)])
    text = (tmp_path / "warm_start_smoke.md").read_text()
    for method, full in (("advmix", 5), ("pixel_at", 5), ("ala", 3)):
        for arm, passes in (("full", full), ("fifth", 1), ("fifth+warm", 1)):
            row = next(line for line in text.splitlines() if line.startswith(f"| {method} | {arm} |"))
            assert f"| {passes} |" in row and row.count("(n=2)") == 3  # accuracy, loss, time
        assert f"- {method}: fifth+warm" in text and "one sd of full" in text


def test_a_non_finite_move_is_forgotten():
    """A flow whose inverse overflowed leaves a NaN latent: that example must start from scratch next time."""
    memory = AttackMemory(4)
    memory.ensure_width(2, "test")
    memory.store(torch.tensor([0, 1]), torch.tensor([[1.0, 2.0], [3.0, 4.0]]))
    memory.store(torch.tensor([1, 2]), torch.tensor([[float("nan"), 0.0], [5.0, float("inf")]]))
    assert memory.known.tolist() == [True, False, False, False]
    assert torch.equal(memory.moves, torch.tensor([[1.0, 2.0], [0, 0], [0, 0], [0, 0]]))


def test_advmix_codes_stay_within_eps_of_their_prior_draw_across_epochs():
    # AdvMix remembers the prior draw and the code found around it: carried over many "epochs", the code
    # stays in the eps ball of the first draw (a centre-only memory would let it wander eps further each time)
    memory, eps = AttackMemory(12), 0.2
    _attack("latent_mix", memory, restarts=1, eps=eps, step_size=0.1)
    first_draw = memory.moves[INDICES].chunk(2, dim=1)[0].clone()
    for _ in range(3):
        _attack("latent_mix", memory, restarts=1, eps=eps, steps=4, step_size=0.1)  # could leave the ball
        draw, code = memory.moves[INDICES].chunk(2, dim=1)
        assert torch.equal(draw, first_draw)
        assert (code - draw).abs().max() <= eps + 1e-6
    width = 3 * shared_tiny_stylegan2().w_dim  # fine layers 3..5 of the 16 px generator
    assert memory.width == 2 * width and memory.bytes_per_example() == 4 * 2 * width + 1
