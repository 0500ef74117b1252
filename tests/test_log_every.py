"""The run loop reads the loss and grad norm from the device every ``train.log_every`` steps (one host sync
per read, mupx/train.py): the run folder is the one per-step reads write, and divergence is still caught."""

import json

from mupx.runconfig import load_run_config
from mupx.train import run

from .conftest import TINY

TIMING = ("time", "tokens_per_s", "mfu", "wall_time_s")  # wall-clock values differ between any two runs


def rows(run_dir):
    return [
        {k: v for k, v in json.loads(line).items() if k not in TIMING}
        for line in (run_dir / "metrics.jsonl").read_text().splitlines()
    ]


def result(run_dir):
    return {k: v for k, v in json.loads((run_dir / "result.json").read_text()).items() if k not in TIMING}


def test_reads_every_log_every_steps_write_what_per_step_reads_write(tmp_path):
    """7 does not divide the evaluation (10), checkpoint (6) or total (23) steps: each is a read of its own."""
    overrides = TINY + ["train.steps=23", "train.eval_every=10", "train.checkpoint_every=6"]
    for every in (1, 7):
        run(load_run_config(overrides + [f"train.log_every={every}"]), tmp_path / str(every))
    assert [r["step"] for r in rows(tmp_path / "7")] == list(range(1, 24))  # every step keeps its row
    assert rows(tmp_path / "7") == rows(tmp_path / "1")
    assert result(tmp_path / "7") == result(tmp_path / "1")
    assert sorted(p.name for p in (tmp_path / "7" / "checkpoints").iterdir()) == sorted(
        p.name for p in (tmp_path / "1" / "checkpoints").iterdir()
    )


def test_a_divergence_ends_the_run_at_the_next_read(tmp_path):
    overrides = TINY + ["train.steps=40", "optimizer.lr=30", "train.warmup=0"]
    for every in (1, 8):
        run(load_run_config(overrides + [f"train.log_every={every}"]), tmp_path / str(every))
    per_step, batched = result(tmp_path / "1"), result(tmp_path / "8")
    assert batched["status"] == per_step["status"] == "diverged"
    assert batched["reason"] == per_step["reason"]  # names the diverging step
    assert rows(tmp_path / "8") == rows(tmp_path / "1")  # rows end at the diverging step
    diverged_at = per_step["steps"]
    assert diverged_at <= batched["steps"] < diverged_at + 8 and batched["steps"] % 8 == 0


def test_an_error_after_an_unread_divergence_is_the_divergence(tmp_path):
    """Sophia samples its Hessian-phase labels from the model's softmax, which fails on the non-finite logits
    of the steps trained past the divergence before the read that sees it: the run is diverged (as with
    per-step reads), not failed."""
    overrides = TINY + ["optimizer=sophia", "optimizer.hessian_every=1", "optimizer.lr=1e3",
                        "train.grad_clip=0", "train.steps=40", "train.warmup=0"]  # fmt: skip
    for every in (1, 20):
        run(load_run_config(overrides + [f"train.log_every={every}"]), tmp_path / str(every))
    per_step, batched = result(tmp_path / "1"), result(tmp_path / "20")
    assert per_step["status"] == batched["status"] == "diverged"
    assert batched["reason"] == per_step["reason"]
    assert rows(tmp_path / "20") == rows(tmp_path / "1")
    assert batched["steps"] < 20  # the error ended the run before its first read
