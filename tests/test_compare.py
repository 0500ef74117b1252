"""`mupx compare`: the speedup arithmetic on synthetic curves, and two real tiny transfers (adamw, sgd)."""

import json
import math
import shutil

import numpy as np
import pytest

from mupx.compare import seconds_per_step, smooth, speedup, tokens_to_reach

from .test_report import cli, tiny_sweep


def f(t):
    return 2.0 + 6.0 * (t / 128.0) ** -0.3  # a loss curve falling like a power law in tokens


TOKENS = np.arange(1, 401) * 128.0  # 400 steps of 128 tokens


@pytest.mark.parametrize("smoothed", [False, True])
def test_speedup_of_a_curve_that_runs_1_4x_faster(smoothed):
    ref, x = f(TOKENS), f(1.4 * TOKENS)
    rt, rl, xt, xl = TOKENS, ref, TOKENS, x
    if smoothed:
        rng = np.random.default_rng(0)
        tau = 0.05 * TOKENS[-1]
        rt, rl = smooth(TOKENS, ref + rng.normal(0, 0.02, len(TOKENS)), tau)
        xt, xl = smooth(TOKENS, x + rng.normal(0, 0.02, len(TOKENS)), tau)
    s = speedup(rt, rl, xt, xl)
    assert s["value"] == pytest.approx(1.4, rel=0.02)
    assert not s["reference_reaches_x"] and s["lower_bound"] == pytest.approx(1.0)  # matched budgets
    back = speedup(xt, xl, rt, rl)  # the other way round: X is the reference
    assert back["value"] == pytest.approx(1 / s["value"], rel=1e-9) and back["reference_reaches_x"]


def test_speedup_when_the_reference_trained_longer():
    longer = np.arange(1, 801) * 128.0
    s = speedup(longer, f(longer), TOKENS, f(1.4 * TOKENS))
    # the reference reaches X's final loss at 1.4x X's tokens: the compute-equivalent multiplier
    assert s["reference_reaches_x"] and s["lower_bound"] is None
    assert s["reference_tokens"] == pytest.approx(1.4 * TOKENS[-1], rel=0.01)
    assert s["value"] == pytest.approx(1.4, rel=0.01)


def test_tokens_to_reach_interpolates_in_log_tokens():
    t = np.array([100.0, 1000.0])
    assert tokens_to_reach(t, [3.0, 2.0], 2.5) == pytest.approx(math.sqrt(100 * 1000))
    assert tokens_to_reach(t, [3.0, 2.0], 3.5) == 100.0
    assert tokens_to_reach(t, [3.0, 2.0], 1.0) is None


def test_smooth_has_no_lag_on_a_line():
    t = np.arange(1, 101) * 10.0
    st, sl = smooth(t, 5.0 - 0.01 * t, tau=100.0)
    assert np.allclose(sl, 5.0 - 0.01 * st)  # each smoothed point lies on the line at its own token


def test_seconds_per_step_is_robust_to_a_pause():
    rows = [{"step": s, "time": 0.1 * s + (5.0 if s > 10 else 0.0)} for s in range(1, 21)]
    assert seconds_per_step(rows) == pytest.approx(0.1)


@pytest.fixture(scope="module")
def transfers(tmp_path_factory):
    return tiny_sweep(tmp_path_factory, "adamw"), tiny_sweep(tmp_path_factory, "sgd")


def test_compare_adamw_and_sgd(transfers, tmp_path, capsys):
    adamw, sgd = transfers
    out = tmp_path / "cmp"
    # a sweep folder holding one transfer, and a transfer.json
    code, stdout, err = cli(
        capsys, "compare", sgd / "transfer-w128-d2" / "transfer.json", adamw, "--out", out
    )
    assert code == 0, err
    doc = json.loads((out / "compare.json").read_text())
    assert doc["reference"] == "adamw"  # the adamw run, though listed second
    runs = {r["name"]: r for r in doc["runs"]}
    assert set(runs) == {"adamw", "sgd"}
    assert runs["adamw"]["speedup"] == pytest.approx(1.0)
    s = runs["sgd"]
    assert s["speedup"] > 0 and math.isfinite(s["speedup"]) and s["step_time_ratio"] > 0
    assert (s["speedup"] < 1) == (s["final_loss"] > runs["adamw"]["final_loss"])
    assert doc["target"] == {"model": "gpt2", "width": 128, "depth": 2, "tokens": 10 * 4 * 32}
    import matplotlib.image as mpimg

    assert mpimg.imread(out / "compare.png").shape[0] > 100
    assert "speedup over adamw" in stdout and "sgd" in stdout


def test_incomparable_runs_are_refused_unless_forced(transfers, tmp_path, capsys):
    adamw, sgd = transfers
    other = tmp_path / "wide-sgd" / "transfer-w128-d2"
    shutil.copytree(sgd / "transfer-w128-d2", other)
    run_id = json.loads((other / "transfer.json").read_text())["runs"][0]["run_id"]
    result = other / "runs" / run_id / "result.json"
    result.write_text(json.dumps({**json.loads(result.read_text()), "width": 256}))
    out = tmp_path / "cmp"
    code, _, err = cli(capsys, "compare", adamw, sgd, other, "--out", out)
    assert code == 2 and err.count("\n") == 1 and "differ in target width" in err
    assert not out.exists()
    code, _, err = cli(capsys, "compare", adamw, sgd, other, "--out", out, "--force", "--reference", "sgd")
    assert code == 0, err
    doc = json.loads((out / "compare.json").read_text())
    assert doc["reference"] == "sgd" and doc["forced"]
    assert [r["name"] for r in doc["runs"]] == ["adamw", "sgd", "wide-sgd"]  # same optimizer: sweep names


@pytest.mark.parametrize("case", ["one input", "no transfer", "unknown reference", "corrupt"])
def test_bad_compare_input_is_one_line_exit_2(case, transfers, tmp_path, capsys):
    adamw, sgd = transfers
    args = {"one input": [adamw], "no transfer": [adamw, tmp_path / "empty"], "unknown reference": [adamw, sgd, "--reference", "muon"],
            "corrupt": [adamw, tmp_path / "transfer.json"]}[case]  # fmt: skip
    (tmp_path / "transfer.json").write_text("{")
    (tmp_path / "empty").mkdir()
    out = tmp_path / "cmp"
    code, _, err = cli(capsys, "compare", *args, "--out", out)
    assert code == 2 and err.count("\n") == 1 and err.startswith("mupx: error:"), err
    assert not out.exists()
