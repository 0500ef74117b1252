"""From a sweep to the target run, as a researcher types it: the sweep's recommendation as a base lr at its
base shape (a bound when every optimum is on the grid's edge), the next command, a sweep where nothing
completed, transfer with the sweep's flags and executors (verdict first, refused unless --force, the logs,
the baseline's outcome in words, final weights), train --from-sweep, resume from the saved config, and the
coordinate check's range warning and proxy note. Tiny runs (tests/conftest.py TINY), in real folders."""

import contextlib
import io
import json
import subprocess
import sys

import pytest
import torch
import yaml

from mupx import checkpoint
from mupx.cli import main
from mupx.runconfig import load_run_config
from mupx.train import run

from .conftest import TINY
from .test_cli import sets
from .test_resume import losses
from .test_sweep import SWEEP_TINY

SETS = sets(SWEEP_TINY)


def mupx(*args) -> tuple[int, str, str]:
    """``mupx ARGS`` in this process: (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            main([str(a) for a in args])
        code = 0
    except SystemExit as e:
        code = e.code
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def low(tmp_path_factory):
    """A sweep (given --out) at width 32 over three small lrs, so every optimum sits on the grid's top edge,
    μP and SP (one set of runs: they coincide at the base width), 4 steps."""
    folder = tmp_path_factory.mktemp("target") / "sweeps" / "low"
    code, out, err = mupx("sweep", "--out", folder, "--widths", 32, "--lrs", "1e-4,2e-4,4e-4", "--param", "both",
                          "--steps", 4, "--jobs", 2, *SETS)  # fmt: skip
    assert code == 0, err + out
    return folder, out


def test_the_sweep_recommends_a_bound_at_its_base_shape_and_the_next_command(low):
    folder, out = low
    text = " ".join(out.split())
    rec = json.loads((folder / "sweep.json").read_text())["fits"]["mup"]["recommended"]
    assert rec["bound"] == {"lower": 4e-4, "upper": None} and rec["interval"] is None
    assert (
        "mup recommended base lr ≥ 0.0004 (a bound: every optimum is on the lr grid's edge) at base width 32, depth 2"
        in text
    )
    assert "95% interval" not in text.split("recommended")[1]  # never a zero-width interval
    assert "next: rerun with a wider --lrs, or --lrs auto" in text
    assert not list(folder.glob("runs/*/checkpoints"))  # sweeps keep no final weights


def test_a_sweep_where_no_run_completed_exits_1_with_the_reason(tmp_path):
    code, _, err = mupx(
        "sweep", "--out", tmp_path / "s", "--widths", 32, "--lrs", 1000, "--steps", 3, "--jobs", 1, *SETS
    )
    assert code == 1 and err.count("\n") == 1
    assert err.startswith(
        "mupx: error: no run of the sweep completed (1 diverged); e.g. width 32 lr 1e+03: loss"
    )
    assert "lower the learning rates" in err


def test_transfer_refuses_a_bound_then_runs_with_force_and_reports_in_words(low):
    folder, _ = low
    code, out, err = mupx("transfer", "--from", folder, "--width", 64, "--baseline", "sp", "--jobs", 2)
    assert code == 2 and out.startswith("sweep verdict (mup): not measured")  # the verdict comes first
    assert "recommendation is only a bound" in err and "--force runs it anyway" in err
    assert not (folder / "transfer-w64-d2").exists()

    code, out, err = mupx("transfer", "--from", folder, "--width", 64, "--baseline", "sp", "--jobs", 2, "--force",
                          "--batch", 8, "--seeds", 2, "-s", "train.eval_every=2", "train.smooth=2")  # fmt: skip
    assert code == 0, err + out
    lines = [" ".join(line.split()) for line in out.splitlines()]
    assert lines[0].startswith("sweep verdict (mup)")
    assert lines[1].startswith("transferring base lr ≥ 0.0004") and "at base width 32, depth 2" in lines[1]
    assert any(
        line.startswith("warning: batch: the target is at 8 and every proxy at 4") for line in lines
    ), out
    doc = json.loads((folder / "transfer-w64-d2" / "transfer.json").read_text())
    for r in doc["runs"]:  # each run's log, named before it ran
        log = folder / "transfer-w64-d2" / "logs" / f"{r['run_id']}.log"
        assert any(line.endswith(f"log: {log}") for line in lines) and log.exists()
        saved = yaml.safe_load(
            (folder / "transfer-w64-d2" / "runs" / r["run_id"] / "config.yaml").read_text()
        )
        assert (
            saved["train"]["batch"] == 8
            and saved["train"]["eval_every"] == 2
            and saved["train"]["smooth"] == 2
        )
    assert any("transfer-w64-d2" in line and "4/4" in line for line in lines)  # the progress bar
    # two seeds per role: each role's loss is the mean of its seeds
    assert [(r["role"], r["n_seeds"]) for r in doc["roles"]] == [("transfer", 2), ("baseline", 2)]
    seeds = [r["loss"] for r in doc["runs"] if r["role"] == "transfer"]
    assert sorted(r["seed"] for r in doc["runs"] if r["role"] == "transfer") == [0, 1]
    assert doc["loss"] == doc["roles"][0]["loss"] == sum(seeds) / 2
    assert any(line.startswith("transfer mup lr") and "(mean of 2 seeds)" in line for line in lines), out
    gain = doc["baseline"]["gain"]
    plain = "the sp baseline won" if gain < 0 else "mup beat the sp baseline"
    assert any(line.startswith(plain) for line in lines), out
    main_run = folder / "transfer-w64-d2" / "runs" / doc["runs"][0]["run_id"]
    final = checkpoint.all_checkpoints(main_run)[-1]
    assert final.name == "step-0000004.pt" and lines[-1].endswith(f"final weights: {final}")
    assert torch.load(final, weights_only=True)["model"]


def test_transfer_takes_the_sweeps_executors(low, tmp_path):
    folder, _ = low
    p = subprocess.run(
        [sys.executable, "-m", "mupx.cli", "transfer", "--from", str(folder), "--width", "128", "--force",
         "--executor", "slurm", "--dry-run", "--partition", "debugq", "--gpus-per-run", "0", "--wandb-mode", "offline"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert p.returncode == 0, p.stderr
    assert "#SBATCH --partition=debugq" in p.stdout and "#SBATCH --job-name=mupx-transfer-w128-d2" in p.stdout
    assert (
        " train --out " in p.stdout
        and "--device cpu" in p.stdout
        and "tracking.wandb.mode=offline" in p.stdout
    )


def test_train_from_sweep_takes_its_base_shape_and_lr(low, tmp_path):
    folder, _ = low
    code, out, err = mupx("train", "--from-sweep", folder / "sweep.json", "--width", 64, "--steps", 2,
                          "--out", tmp_path / "run", "--quiet", *SETS)  # fmt: skip
    assert code == 0, err + out
    assert (
        "base lr ≥ 0.0004 (a bound: every optimum is on the lr grid's edge) at base width 32, depth 2"
        in " ".join(out.split())
    )
    saved = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert saved["param"]["base_width"] == 32 and saved["param"]["base_depth"] == 2
    assert saved["optimizer"]["lr"] == 4e-4 and saved["model"]["width"] == 64


def test_resume_reloads_the_saved_config_and_a_finished_run_keeps_its_weights(tmp_path):
    out = tmp_path / "run"
    overrides = [*TINY, "train.steps=4", "train.checkpoint_every=2", "train.eval_every=2"]
    run(load_run_config(overrides), out)
    assert [p.name for p in checkpoint.all_checkpoints(out)] == ["step-0000002.pt", "step-0000004.pt"]
    metrics = losses(out)
    (out / "result.json").unlink()  # as if killed after the step-2 checkpoint
    checkpoint.all_checkpoints(out)[-1].unlink()
    code, stdout, err = mupx("train", "--resume", "--out", out, "--quiet")  # no flags: the saved config
    assert code == 0, err
    assert "resumed" in stdout and losses(out) == metrics

    skip = tmp_path / "skip"
    code, _, err = mupx(
        "train", "--out", skip, "--steps", 2, "--quiet", *sets(TINY), "train.save_final=false"
    )
    assert code == 0, err
    assert checkpoint.all_checkpoints(skip) == []


@pytest.mark.parametrize("optimizer,width", [("shampoo", 2048), ("soap", 4096)])
def test_shampoo_and_soap_plan_wide_targets(optimizer, width):
    code, out, err = mupx("rules", "--optimizer", optimizer, "--width", width, "--json")
    assert code == 0, err
    up = next(r for r in json.loads(out)["rows"] if r["name"] == "blocks.0.mlp.up.weight")
    assert up["update"] == optimizer and up["blocks_mult"] == (4 * width // 1024) * (width // 1024)


def test_coord_check_warns_on_a_narrow_range_and_names_its_own_proxy(tmp_path):
    code, out, err = mupx(
        "coord-check", "--widths", "32,48,64", "--steps", 1, "--seeds", 1, "--out", tmp_path / "cc"
    )
    text = " ".join(out.split())
    assert code in (0, 1), err
    assert (
        "the check trains its own small proxy, not your config: model.head_dim 16 (your config: 32)" in text
    )
    assert "data.vocab_size 512 (your config: 4096)" in text
    warning = "warning: the widths 32,48,64 span 2x, less than 8x"
    assert text.count(warning) == 2  # before the runs, and beside the verdict
    result = json.loads((tmp_path / "cc" / "coord_check.json").read_text())
    assert result["warnings"][0].startswith("the widths 32,48,64 span 2x")
