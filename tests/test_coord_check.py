"""The coordinate check is a gate: μP passes over width and depth, SP fails, bad input exits 2."""

import json
import math
import os
import subprocess
import sys

import pytest

from mupx.cli import main
from mupx.diagnostics.coord_check import fit_slope, gate, make_spec, run_coord_check


def coord_check(*args: str, out) -> subprocess.CompletedProcess:
    """Run ``mupx coord-check`` as a user would: a subprocess, offline, with the session's token cache."""
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", COLUMNS="200")
    cmd = [sys.executable, "-m", "mupx.cli", "coord-check", *args, "--out", str(out)]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)


def load(out) -> dict:
    return json.loads((out / "coord_check.json").read_text())


def test_adamw_mup_passes_over_widths(tmp_path):
    p = coord_check("--optimizer", "adamw", "--param", "mup", out=tmp_path)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "PASS" in p.stdout
    result = load(tmp_path)
    assert (
        result["verdict"] == "pass" and result["values"] == [64, 128, 256, 512] and len(result["seeds"]) == 2
    )
    assert result["command"].startswith("mupx coord-check --optimizer adamw")
    assert (
        "model.width=512" in result["overrides"]["512"]
        and "param.base_width=64" in result["overrides"]["512"]
    )
    gated = {(s["module"], s["metric"]) for s in result["slopes"] if s["gated"]}
    assert {
        ("embedding", "rms"),
        ("block.1", "delta_rms"),
        ("attn_logits.0", "rms"),
        ("logits_dW", "rms"),
    } <= gated
    assert ("blocks.0.attn.q.weight", "rho_dw") in gated and ("logits", "rms") not in gated
    assert all(abs(s["slope"]) <= result["tolerance"] for s in result["slopes"] if s["gated"])
    assert (tmp_path / "coord_check.png").read_bytes()[:4] == b"\x89PNG"


def test_adamw_mup_passes_over_depths(tmp_path):
    p = coord_check(
        "--optimizer", "adamw", "--param", "mup", "--depths", "2,4,8,16", "-s", "model.width=64", out=tmp_path
    )
    assert p.returncode == 0, p.stdout + p.stderr
    result = load(tmp_path)
    assert result["axis"] == "depth" and result["depth_alpha"] == 1.0
    assert ("block.last", "delta_rms") in {(s["module"], s["metric"]) for s in result["slopes"] if s["gated"]}


def test_adamw_sp_fails(tmp_path):
    p = coord_check("--optimizer", "adamw", "--param", "sp", "--widths", "32,64,128,256", out=tmp_path)
    assert p.returncode == 1, p.stdout + p.stderr
    assert "FAIL" in p.stdout
    result = load(tmp_path)
    assert result["verdict"] == "fail" and result["worst"]["slope"] > 1  # SP + Adam: updates grow with width


def test_sgd_over_depth_needs_the_embedding_to_dominate_the_residual_stream(tmp_path):
    """SGD's update is proportional to the gradient, which each pre-LN block divides by the residual
    stream's RMS. With embed_mult 1 (embedding RMS 0.02) the stream at init is set by the branches at
    depth 2 but by the embedding at depth 16, so the first block's gradient scale changes with depth and
    by t >= 3 its updates grow with L (measured worst slope 0.88); Adam-type updates do not see the scale.
    With embed_mult 10 the embedding dominates at every depth and the check passes (worst 0.10)."""
    results = {}
    for mult in (1, 10):
        spec = make_spec(
            None, "2,4,8,16", overrides=("optimizer=sgd", "param=mup", f"param.embed_mult={mult}")
        )
        results[mult] = run_coord_check(spec, tmp_path / str(mult))
    first = results[1]["sizes"]["activations"]["block.first"]["rms"]
    assert first[0][0] > 1.8 * first[-1][0]  # stream RMS at init after block 1: depth 2 vs depth 16
    assert results[1]["verdict"] == "fail" and results[1]["worst"]["module"].startswith("blocks.first.")
    assert results[1]["worst"]["t"] >= 3
    assert results[10]["verdict"] == "pass" and abs(results[10]["worst"]["slope"]) < 0.3


def test_bad_input_is_one_line_and_exit_2(tmp_path):
    p = coord_check("--widths", "64,128", out=tmp_path)
    assert p.returncode == 2 and p.stdout == ""
    assert p.stderr.count("\n") == 1 and "at least 3 widths" in p.stderr


@pytest.mark.parametrize(
    "args,message",
    [
        (["--widths", "64,128,256", "--depths", "2,4,8"], "either --widths or --depths"),
        (["--widths", "64,256,128"], "strictly increasing"),
        (["--widths", "0,64,128"], "positive"),
        (["--widths", "64,x,128"], "comma-separated integers"),
        (["--widths", "64,100,128"], "multiple of model.head_dim"),
        (["--steps", "0"], "--steps"),
        (["--seeds", "0"], "--seeds"),
        (["--tolerance", "0"], "--tolerance"),
        (["--optimizer", "nope"], "unknown optimizer"),
    ],
)
def test_bad_input_messages(args, message, capsys, tmp_path):
    with pytest.raises(SystemExit) as e:
        main(["coord-check", *args, "--out", str(tmp_path)])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not any(tmp_path.iterdir())  # nothing trained, nothing written


def test_slope_fit_and_gate():
    xs = [64, 128, 256, 512]
    assert math.isclose(fit_slope(xs, [x**0.5 for x in xs]), 0.5)
    assert fit_slope(xs, [0.0] * 4) == 0.0  # identically zero (a zero-initialised readout at t = 0)
    assert fit_slope(xs, [1.0, 0.0, 1.0, 1.0]) is None and fit_slope(xs, [1.0, math.nan, 1.0, 1.0]) is None
    flat = [[1.0, 1.0], [1.0, 1.0], [1.0, 1.0], [1.0, 1.0]]
    grows = [[1.0, float(x)] for x in xs]
    sizes = {"activations": {"block.0": {"rms": flat, "delta_rms": grows}, "logits": {"rms": grows}}}
    slopes = {(s["module"], s["metric"], s["t"]): s for s in gate(sizes, tuple(xs), "width", set(), 0.25)}
    assert slopes["block.0", "rms", 1]["ok"] and not slopes["block.0", "delta_rms", 1]["ok"]
    assert slopes["logits", "rms", 1]["gated"] is False  # the init exception: not gated


def test_a_diverging_run_fails_the_gate(tmp_path):
    spec = make_spec("16,32,64", None, steps=3, seeds=1, lr=1e8, overrides=("optimizer=sgd",))
    result = run_coord_check(spec, tmp_path)
    assert result["verdict"] == "fail" and len(result["diverged"]) == 3
    json.loads(
        (tmp_path / "coord_check.json").read_text(), parse_constant=lambda c: pytest.fail(c)
    )  # strict JSON
