"""torchrun / DDP on CPU (gloo): every optimizer keeps the ranks bit-identical and trains on the same
global batch as one process, so a 2-rank run's losses match a 1-rank run with 2 accumulation steps."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mupx.optim import REGISTRY
from mupx.runconfig import load_run_config
from mupx.train import run

from .conftest import TINY
from .test_cli import cli, sets

STEPS = 6
# Short preconditioner / Hessian periods so the run crosses a refresh under DDP too.
PERIODS = {"shampoo": ["optimizer.precondition_every=2"], "soap": ["optimizer.precondition_every=2"],
           "sophia": ["optimizer.hessian_every=2"]}  # fmt: skip
# Stated tolerance: the 2-rank gradient is the same mean as the 1-rank one, summed in another order
# (gloo all-reduce vs one backward), so losses agree to float32 round-off (measured: ≤ 1e-6 for adamw).
LOSS_TOLERANCE = 1e-4


SHARED = TINY + [f"train.steps={STEPS}", "train.eval_every=3"]


def overrides(name: str) -> list[str]:
    return SHARED + [f"optimizer={name}", *PERIODS.get(name, [])]


def losses(run_dir) -> list[float]:
    return [json.loads(line)["loss"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def torchrun(args: list[str]) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2", *args]
    return subprocess.run(command, capture_output=True, text=True, env=dict(os.environ), timeout=600)


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory):
    """Every optimizer trained on 2 ranks: `mupx train` under one torchrun (tests/ddp_driver.py runs them one
    after another in the same two ranks and process group)."""
    root = tmp_path_factory.mktemp("ddp")
    names = sorted(REGISTRY)
    flags = sets(SHARED)
    own = [a for name in names for o in PERIODS.get(name, []) for a in (f"--set-{name}", o)]
    proc = torchrun(
        [str(Path(__file__).parent / "ddp_driver.py"), str(root / "two"), ",".join(names), *flags, *own]
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return root, proc


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_two_ranks_stay_identical_and_match_one_rank(two_ranks, tmp_path, name):
    root, proc = two_ranks
    two = root / "two" / name
    result = json.loads((two / "result.json").read_text())
    assert result["status"] == "completed" and result["world_size"] == 2
    assert result["ranks_in_sync"] is True  # sha256 of every parameter, gathered from both ranks
    assert proc.stdout.count(f"-> {two}\n") == 1  # only rank 0 reports

    one = run(load_run_config(overrides(name) + ["train.accum=2"]), tmp_path / "one")
    assert one["world_size"] == 1 and one["tokens"] == result["tokens"]
    a, b = losses(two), losses(tmp_path / "one")
    assert len(a) == len(b) == STEPS
    assert max(abs(x - y) for x, y in zip(a, b, strict=True)) <= LOSS_TOLERANCE, (a, b)
    assert abs(result["val_loss"] - one["val_loss"]) <= LOSS_TOLERANCE


def test_nproc_starts_torchrun_and_a_resume_continues_on_two_ranks(tmp_path, capsys):
    """``mupx train --nproc 2`` launches torchrun; a checkpoint written by 2 ranks resumes on 2 ranks to the
    same losses as the uninterrupted run, and refuses to resume on 1."""
    flags = sets(overrides("adamw"))
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "mupx.cli", "train", "--nproc", "2", "--out", str(out), "--quiet", *flags]
    first = subprocess.run(
        cmd + ["-s", "train.checkpoint_every=2"], capture_output=True, text=True, timeout=300
    )
    assert first.returncode == 0, first.stderr[-3000:]
    straight = losses(out)
    (out / "result.json").unlink()  # pretend the run stopped after its step-4 checkpoint
    code, _, err = cli(
        capsys, "train", "--resume", "--out", str(out), "--quiet", *flags, "-s", "train.checkpoint_every=2"
    )
    assert code == 2 and "written by 2 ranks" in err
    again = subprocess.run(
        cmd + ["--resume", "-s", "train.checkpoint_every=2"], capture_output=True, text=True, timeout=300
    )
    assert again.returncode == 0, again.stderr[-3000:]
    assert losses(out) == straight


@pytest.mark.parametrize(
    "args,message",
    [
        (["--nproc", "64"], "--nproc 64 is out of range (allowed: 1 to the"),
        (["--nproc", "0"], "--nproc 0 is out of range"),
        (
            ["--nproc", "2", "-s", "train.batch=3"],
            "train.batch 3 is not divisible by --nproc 2 x train.accum 1",
        ),
        (
            ["--nproc", "2", "-s", "train.eval_batch=5"],
            "train.eval_batch 5 is not divisible by --nproc 2 x train.accum 1",
        ),
    ],
)
def test_bad_nproc_is_one_line_exit_2(tmp_path, args, message, capsys):
    """In process: the flags are refused before torchrun starts (tests/test_bad_input.py shows, as subprocesses,
    that such errors print no traceback)."""
    code, _, err = cli(capsys, "train", "--out", str(tmp_path / "r"), *sets(TINY), *args)
    assert code == 2 and err.strip().count("\n") == 0 and message in err, err
    assert not (tmp_path / "r").exists()
