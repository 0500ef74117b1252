"""Horizons that share one run: a wsd run keeps a checkpoint at a shorter horizon's decay start, and that
horizon branches off it, ending bit-identical to an independent run (CPU); a sweep over horizons runs the
trunks first, then the branches, resumes, records the tokens it saved; transfer moves the lr to a longer
target horizon. Real tiny runs (tests/conftest.py TINY)."""

from __future__ import annotations

import json

import pytest
import yaml

from mupx import checkpoint
from mupx.errors import MupxError
from mupx.runconfig import load_run_config
from mupx.sweep.store import load_sweep_json
from mupx.train import run

from .conftest import TINY
from .test_resume import losses
from .test_sweep import SWEEP_TINY
from .test_target_run import mupx

WSD = [*TINY, "train.schedule=wsd", "train.warmup_steps=2", "train.eval_every=5", "optimizer.lr=0.01",
       "train.checkpoint_every=3", "train.keep_checkpoints=1"]  # fmt: skip


@pytest.fixture(scope="module")
def trunk(tmp_path_factory):
    """A 24-step wsd run keeping a checkpoint at step 8, the decay start of a 10-step horizon (its decay is
    the last 20%: 2 steps), through a rotation that keeps one checkpoint."""
    out = tmp_path_factory.mktemp("horizon") / "trunk"
    assert (
        run(load_run_config([*WSD, "train.steps=24", "train.branch_points=[8]"]), out)["status"]
        == "completed"
    )
    return out


def test_a_branch_ends_bit_identical_to_an_independent_run(trunk, tmp_path):
    ckpt = checkpoint.branch_path(trunk, 8)
    assert ckpt.exists() and [p.name for p in checkpoint.all_checkpoints(trunk)] == ["step-0000024.pt"]
    branch = run(load_run_config([*WSD, "train.steps=10", f"train.branch_from={ckpt}"]), tmp_path / "branch")
    alone = run(load_run_config([*WSD, "train.steps=10"]), tmp_path / "alone")
    assert branch["run_id"] == alone["run_id"]  # the same sweep point: branch_from is not in the run id
    for key in ("status", "final_train_loss", "val_loss", "first_loss", "steps", "tokens"):
        assert branch[key] == alone[key], key
    assert losses(tmp_path / "branch") == losses(tmp_path / "alone")  # every step's loss and val loss
    rows = [json.loads(line) for line in (tmp_path / "branch" / "metrics.jsonl").read_text().splitlines()]
    assert [r["lr_factor"] for r in rows[-2:]] == pytest.approx(
        [0.55, 0.1]
    )  # its own decay, not the trunk's stable lr
    assert branch["branch"] == {"from": str(ckpt), "step": 8} and alone["branch"] is None
    assert branch["tokens_trained"] == 2 * 4 * 32 and alone["tokens_trained"] == alone["tokens"]
    groups = json.loads((tmp_path / "branch" / "groups.json").read_text())
    assert groups["step"] == 8  # the plan was checked against the optimizer at the branch point


def test_a_killed_branch_resumes_from_its_own_checkpoint(trunk, tmp_path):
    ckpt = checkpoint.branch_path(trunk, 8)
    branch = [*WSD, "train.steps=10", f"train.branch_from={ckpt}", "train.save_final=false"]
    whole = run(load_run_config(branch), tmp_path / "b")
    assert [p.name for p in checkpoint.all_checkpoints(tmp_path / "b")] == ["step-0000009.pt"]
    (tmp_path / "b" / "result.json").unlink()  # as if killed after its step-9 checkpoint
    resumed = run(load_run_config(branch), tmp_path / "b", resume=True)
    assert (resumed["final_train_loss"], resumed["val_loss"]) == (
        whole["final_train_loss"],
        whole["val_loss"],
    )
    assert resumed["branch"] == whole["branch"] == {"from": str(ckpt), "step": 8}


@pytest.mark.parametrize("change,message", [
    (["optimizer.lr=0.02"], "differs from this one in more than train.steps (its -> this: optimizer.lr (0.01 -> 0.02))"),
    (["train.warmup_steps=null"], "(its -> this: train.warmup_steps (2 -> None))"),
    (["train.steps=8"], "is at step 8, not before this run's last step (8)"),
])  # fmt: skip
def test_a_branch_refuses_another_run_or_schedule(trunk, tmp_path, change, message):
    ckpt = checkpoint.branch_path(trunk, 8)
    with pytest.raises(MupxError, match=message.replace("(", r"\(").replace(")", r"\)")):
        run(load_run_config([*WSD, "train.steps=10", *change, f"train.branch_from={ckpt}"]), tmp_path / "b")
    assert not (tmp_path / "b").exists()  # nothing written


def test_a_cosine_run_cannot_branch_off_another_horizon(tmp_path):
    """Cosine decays from the end of the warmup: two horizons part at once, so a branch is refused."""
    cosine = [*WSD, "train.schedule=cosine"]
    run(load_run_config([*cosine, "train.steps=12", "train.branch_points=[4]"]), tmp_path / "trunk")
    with pytest.raises(
        MupxError,
        match=r"the lr schedules differ at step 2 \(factor 0.978 there, 0.9657 here\), before its step 4",
    ):
        run(load_run_config([*cosine, "train.steps=10", f"train.branch_from={checkpoint.branch_path(tmp_path / 'trunk', 4)}"]),
            tmp_path / "b")  # fmt: skip


@pytest.fixture(scope="module")
def horizon_sweep(tmp_path_factory):
    folder = tmp_path_factory.mktemp("horizon-sweep") / "h"
    args = ["sweep", "--out", folder, "--widths", "32", "--lrs", "2^-8,2^-6", "--steps", "8,16", "--jobs", 2,
            *(a for o in [*SWEEP_TINY, "train.eval_every=4"] for a in ("-s", o))]  # fmt: skip
    code, out, err = mupx(*args)
    assert code == 0, err + out
    return folder, args, out


def test_a_horizon_sweep_branches_its_shorter_horizons(horizon_sweep):
    folder, _, out = horizon_sweep
    doc = load_sweep_json(folder)
    assert doc["spec"]["steps"] == [8, 16] and doc["spec"]["warmup_steps"] == 1  # 10% of the shortest
    runs = {(r["steps"], r["lr"]): r for r in doc["runs"]}
    assert len(runs) == 4 and all(r["status"] == "completed" for r in runs.values())
    for (steps, lr), r in runs.items():
        assert r["tokens"] == steps * 4 * 32 and r["batch"] == 4
        saved = yaml.safe_load((folder / "runs" / r["run_id"] / "config.yaml").read_text())
        assert saved["train"]["schedule"] == "wsd" and saved["train"]["warmup_steps"] == 1
        if steps == 8:  # a branch off the 16-step run at its decay start (8 - 2 = 6)
            trunk = runs[(16, lr)]
            assert r["branch"]["step"] == 6 and trunk["run_id"] in r["branch"]["from"]
            assert saved["train"]["branch_from"] == r["branch"]["from"] and r["tokens_trained"] == 2 * 4 * 32
        else:
            assert r["branch"] is None and saved["train"]["branch_points"] == [6]
    assert not list(folder.glob("runs/*/checkpoints/branch-*.pt"))  # deleted once their branch finished
    cost = doc["cost"]
    print(f"branched horizons 8,16 steps: {cost['tokens_trained']} tokens trained against {cost['tokens_independent']} "
          f"for independent runs ({cost['ratio']:.2f}x)")  # fmt: skip
    assert (cost["tokens_trained"], cost["tokens_independent"], cost["branched_runs"]) == (
        2 * 18 * 128,
        2 * 24 * 128,
        2,
    )
    assert (
        "branched horizons: 4.61k tokens trained for runs that train 6.14k independently (0.75x"
        in " ".join(out.split())
    )
    fit = doc["fits"]["mup"]
    assert [p["tokens"] for p in fit["points"]] == [1024, 2048] and fit["verdict"]["tokens"] in (
        "measured",
        "inconclusive",
    )


def test_a_rerun_runs_nothing_and_a_lost_branch_reruns_independently_to_the_same_result(horizon_sweep):
    folder, args, _ = horizon_sweep
    doc = load_sweep_json(folder)
    short = next(r for r in doc["runs"] if r["steps"] == 8)
    result = folder / "runs" / short["run_id"] / "result.json"
    before = json.loads(result.read_text())
    mtimes = {p: p.stat().st_mtime_ns for p in folder.glob("runs/*/result.json") if p != result}
    result.unlink()  # a lost result: its trunk's branch checkpoint is gone, so it trains from scratch
    code, out, err = mupx(*args)
    assert code == 0, err + out
    after = json.loads(result.read_text())
    assert after["branch"] is None and after["tokens_trained"] == after["tokens"]
    assert (after["final_train_loss"], after["val_loss"]) == (before["final_train_loss"], before["val_loss"])
    assert {p: p.stat().st_mtime_ns for p in mtimes} == mtimes  # nothing else ran


def test_transfer_to_a_longer_horizon(horizon_sweep):
    folder, _, _ = horizon_sweep
    code, out, err = mupx("transfer", "--from", folder, "--width", 64, "--steps", 64, "--horizon-rule", "power:-0.32",
                          "--verify", 1, "--compare-uncorrected", "--jobs", 2, "--force")  # fmt: skip
    assert code == 0, err + out
    text = " ".join(out.split())
    assert "tokens: 4.0x beyond the longest proxy (2.05k -> 8.19k), power:-0.32: -0.64 octaves" in text
    assert "-0.64 octaves from the uncorrected proxy lr" in text
    doc = json.loads((folder / "transfer-w64-d2" / "transfer.json").read_text())
    pred = doc["predicted"]
    assert doc["target"] == {"width": 64, "depth": 2, "steps": 64, "tokens": 8192, "batch": 4, "seq_len": 32}
    assert (
        pred["rules"] == {"tokens": "power:-0.32", "batch": "none"} and pred["axes"]["tokens"]["beyond"] == 4
    )
    assert pred["lr"] == pytest.approx(pred["uncorrected_lr"] * 4**-0.32)
    assert [r["role"] for r in doc["runs"]] == ["transfer", "uncorrected", "verify-0.5"]
    assert doc["uncorrected"]["lr"] == pred["uncorrected_lr"] and doc["uncorrected"]["regret"] is not None
    assert doc["regret"]["relative"] == pytest.approx(doc["regret"]["value"] / doc["regret"]["best_loss"])
    assert "uncorrected proxy lr" in text and "% of the loss" in text
    saved = yaml.safe_load(
        (folder / "transfer-w64-d2" / "runs" / doc["runs"][0]["run_id"] / "config.yaml").read_text()
    )
    assert (
        saved["train"]["schedule"] == "wsd" and saved["train"]["warmup_steps"] == 1
    )  # the proxies' schedule
