"""Checkpoint and resume: a run killed at a random step continues bit-identically, for every optimizer."""

import json
import os
import random
import signal
import subprocess
import sys
import time

import pytest
import torch

from mupx import checkpoint
from mupx.errors import MupxError
from mupx.optim import REGISTRY
from mupx.runconfig import load_run_config
from mupx.train import run

from .conftest import TINY

STEPS = 12
# Short preconditioner / Hessian periods so the kill and the resume cross a refresh.
PERIODS = {"shampoo": ["optimizer.precondition_every=4"], "soap": ["optimizer.precondition_every=4"],
           "sophia": ["optimizer.hessian_every=4"]}  # fmt: skip


def overrides(name):
    return TINY + [f"optimizer={name}", f"train.steps={STEPS}", "train.checkpoint_every=2", "train.eval_every=6",
                   *PERIODS.get(name, [])]  # fmt: skip


def losses(run_dir):
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [(r["step"], r["loss"], r.get("val_loss")) for r in rows]


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_sigkill_at_a_random_step_then_resume_is_bit_identical(tmp_path, name):
    reference = tmp_path / "reference"
    run(load_run_config(overrides(name)), reference)

    killed = tmp_path / "killed"
    sets = [a for o in overrides(name) for a in ("-s", o)]
    proc = subprocess.Popen([sys.executable, "-m", "mupx.cli", "train", "--out", str(killed), "--quiet", *sets],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=dict(os.environ))  # fmt: skip
    kill_at = random.Random(name).randint(3, 9)
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        rows = (
            (killed / "metrics.jsonl").read_text().count("\n") if (killed / "metrics.jsonl").exists() else 0
        )
        if rows >= kill_at:
            break
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (killed / "result.json").exists()
    assert checkpoint.all_checkpoints(killed), "no checkpoint before the kill"

    result = run(load_run_config(overrides(name)), killed, resume=True)
    assert result["status"] == "completed"
    assert losses(killed) == losses(reference)
    assert (
        result["final_train_loss"] == json.loads((reference / "result.json").read_text())["final_train_loss"]
    )


def test_sigterm_checkpoints_and_marks_the_run_interrupted(tmp_path):
    out = tmp_path / "run"
    sets = [
        a for o in overrides("adamw") + ["train.steps=400", "train.checkpoint_every=0"] for a in ("-s", o)
    ]
    proc = subprocess.Popen([sys.executable, "-m", "mupx.cli", "train", "--out", str(out), "--quiet", *sets],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=dict(os.environ))  # fmt: skip
    while not (out / "metrics.jsonl").exists() or (out / "metrics.jsonl").read_text().count("\n") < 3:
        time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    result = json.loads((out / "result.json").read_text())
    assert result["status"] == "interrupted" and "SIGTERM" in result["reason"]
    assert checkpoint.all_checkpoints(out)[-1].name == f"step-{result['steps']:07d}.pt"


def test_corrupt_newest_checkpoint_falls_back_to_the_previous(tmp_path):
    out = tmp_path / "run"
    run(load_run_config(overrides("adamw") + ["train.steps=6", "train.keep_checkpoints=3"]), out)
    ckpts = checkpoint.all_checkpoints(out)
    assert [p.name for p in ckpts] == [
        "step-0000002.pt",
        "step-0000004.pt",
        "step-0000006.pt",
    ]  # 6: the final weights
    ckpts[-1].write_bytes(ckpts[-1].read_bytes()[:100])  # truncated, as by a full disk
    state = checkpoint.load_latest(out, torch.device("cpu"))
    assert state["step"] == 4 and state["_skipped"]
    state = torch.load(ckpts[0], weights_only=True)  # plain tensors and values only
    assert state["run_id"]


def test_resume_refuses_a_different_config_and_a_finished_run(tmp_path):
    out = tmp_path / "run"
    run(load_run_config(overrides("adamw") + ["train.steps=4"]), out)
    with pytest.raises(MupxError, match="already holds a finished run"):
        run(load_run_config(overrides("adamw") + ["train.steps=4"]), out, resume=True)
    (out / "result.json").unlink()
    with pytest.raises(MupxError, match="different config"):
        run(load_run_config(overrides("adamw") + ["train.steps=4", "optimizer.lr=0.5"]), out, resume=True)
