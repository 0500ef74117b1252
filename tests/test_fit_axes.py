"""One fit across width, depth, tokens and batch, on synthetic sweeps with a known optimum
lr* = c · D^-0.32 · B^0.5 (D the horizon in tokens, B the global batch; no width dependence, as μP
claims): per series, loss = base + seed offset + curv · (log2 lr − log2 lr*)² + Gaussian noise, fitted
through fit_sweep. The plane's exponents cover the truth at their stated 95%, and mupx transfer's
prediction moves the recommendation along tokens and batch by each rule. Pure numpy, no training."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mupx.errors import MupxError
from mupx.fit import estimate, fit_sweep
from mupx.sweep.grid import SweepSpec
from mupx.transfer import Rules, adam_settings, axis_lines, plan_transfer

from .test_fit import strict_json

TOKENS, BATCHES, SEQ = (2**20, 2**21, 2**22), (16, 64), 64
C, A_TOKENS, B_BATCH = -7.0, -0.32, 0.5


def log2_opt(tokens: int, batch: int) -> float:
    return C + A_TOKENS * math.log2(tokens / TOKENS[0]) + B_BATCH * math.log2(batch / BATCHES[0])


def records(
    rng, widths=(64, 256), tokens=TOKENS, batches=BATCHES, seeds=(0, 1), curv=0.1, noise=0.02, step=0.5
):
    """Run records as a sweep over widths x horizons x batches writes them: 13 half-octave lrs around each
    series' optimum (the grid's centre off the optimum by up to a step), one offset per seed."""
    runs = []
    for w in widths:
        for d in tokens:
            for b in batches:
                x_opt = log2_opt(d, b)
                centre = round(x_opt / step) * step + rng.uniform(-step, step)
                xs = np.arange(centre - 3, centre + 3 + 1e-9, step)
                for seed, offset in zip(seeds, rng.normal(0, 0.03, len(seeds)), strict=True):
                    losses = 3.0 + offset + curv * (xs - x_opt) ** 2 + rng.normal(0, noise, len(xs))
                    runs += [{"run_id": f"w{w}-t{d}-b{b}-x{x}-s{seed}", "param": "mup", "width": w, "depth": 4,
                              "steps": d // (b * SEQ), "tokens": d, "batch": b, "lr": 2.0**x, "seed": seed, "hp": {},
                              "status": "completed", "loss": float(v)} for x, v in zip(xs, losses, strict=True)]  # fmt: skip
    return runs


def test_the_exponents_95_percent_intervals_cover_the_truth():
    rng = np.random.default_rng(0)
    draws, hits = 200, {"tokens": 0, "batch": 0, "width": 0}
    for _ in range(draws):
        plane = fit_sweep(records(rng))["mup"]["recommended"]["plane"]
        for axis, truth in (("tokens", A_TOKENS), ("batch", B_BATCH), ("width", 0.0)):
            lo, hi = plane[axis]["slope_interval"]
            hits[axis] += lo <= truth <= hi
    coverage = {axis: n / draws for axis, n in hits.items()}
    print(f"coverage of the 95% intervals over {draws} draws: {coverage}")
    assert all(0.90 <= c <= 0.99 for c in coverage.values()), coverage


def test_the_plane_its_verdicts_and_the_reference():
    fits = fit_sweep(records(np.random.default_rng(1)))
    fit = fits["mup"]
    rec = fit["recommended"]
    assert fit["verdict"] == {"width": "transfers", "depth": None, "tokens": "measured", "batch": "measured"}
    assert set(rec["plane"]) == {"width", "tokens", "batch"}  # one depth: no depth column
    assert rec["plane"]["tokens"]["slope"] == pytest.approx(A_TOKENS, abs=0.08)
    assert rec["plane"]["batch"]["slope"] == pytest.approx(B_BATCH, abs=0.08)
    assert (
        rec["plane"]["tokens"]["verdict"] == "measured"
        and "lr* ∝ tokens^-0.3" in rec["plane"]["tokens"]["reason"]
    )
    assert rec["plane"]["width"]["verdict"] == "transfers"
    assert rec["reference"] == {"tokens": TOKENS[-1], "batch": BATCHES[-1]}
    # the recommendation is the plane at the reference horizon and batch, its interval covering the truth there
    assert rec["log2_lr"] == pytest.approx(log2_opt(TOKENS[-1], BATCHES[-1]), abs=0.15)
    assert rec["interval"][0] < log2_opt(TOKENS[-1], BATCHES[-1]) < rec["interval"][1]
    # per slice: one drift entry along tokens per (width, batch), along batch per (width, tokens)
    assert (
        len(fit["drift"]["tokens"]) == 4
        and len(fit["drift"]["batch"]) == 6
        and len(fit["drift"]["width"]) == 6
    )
    assert {d["verdict"] for d in fit["drift"]["tokens"]} == {"measured"}
    # the plane at 4x the longest horizon: extrapolated with an interval that widens with the distance
    far = estimate(fit, {"tokens": 4 * TOKENS[-1]})
    assert far["log2_lr"] == pytest.approx(log2_opt(4 * TOKENS[-1], BATCHES[-1]), abs=0.3)
    assert far["interval"][1] - far["interval"][0] > rec["interval"][1] - rec["interval"][0]
    strict_json(fits)


def sweep_doc(rng, batches=BATCHES, tokens=TOKENS) -> dict:
    spec = SweepSpec(name="s", model="gpt2", optimizer="adamw", params=("mup",), widths=(64, 256), depths=(4,),
                     lrs=(1e-3,), seeds=(0, 1), base_width=64, base_depth=4, tokens=tokens, batches=batches, seq_len=SEQ,
                     warmup_steps=4)  # fmt: skip
    return {"spec": spec.to_json(), "runs": records(rng, batches=batches, tokens=tokens)}


def test_transfer_moves_the_lr_by_each_rule():
    doc = sweep_doc(np.random.default_rng(2))
    target = {"tokens": 4 * TOKENS[-1], "batch": 4 * BATCHES[-1]}
    pred = plan_transfer(doc, "mup", 1024, None, **target)  # default: measured along both
    truth = log2_opt(**target)
    assert pred["rules"] == {"tokens": "measured", "batch": "measured"}
    assert (
        pred["log2_lr"] == pytest.approx(truth, abs=0.3) and pred["interval"][0] < truth < pred["interval"][1]
    )
    assert pred["uncorrected_lr"] == pytest.approx(2 ** log2_opt(TOKENS[-1], BATCHES[-1]), rel=0.15)
    tokens = pred["axes"]["tokens"]
    assert tokens["beyond"] == 4 and tokens["shift_octaves"] == pytest.approx(2 * A_TOKENS, abs=0.2)
    assert (
        pred["axes"]["width"]["beyond"] == 4 and pred["axes"]["width"]["shift_octaves"] == 0
    )  # μP: unchanged
    lines = axis_lines(pred)
    assert any(
        line.startswith("tokens: 4.0x beyond the longest proxy (4.19M -> 16.8M), measured, slope -0.3")
        for line in lines
    )
    assert any(
        line.startswith("width: 4.0x beyond the widest proxy (256 -> 1.02k), μP: base lr unchanged")
        for line in lines
    )

    fixed = plan_transfer(doc, "mup", 1024, None, **target, rules=Rules.parse("power:-0.32", "sqrt", None))
    rec = fit_sweep(doc["runs"])["mup"]["recommended"]
    assert fixed["log2_lr"] == pytest.approx(rec["log2_lr"] - 0.32 * 2 + 0.5 * 2)
    assert fixed["interval"][1] - fixed["interval"][0] == pytest.approx(
        rec["interval"][1] - rec["interval"][0]
    )
    none = plan_transfer(doc, "mup", 1024, None, **target, rules=Rules.parse("none", "none", None))
    assert none["lr"] == pytest.approx(rec["lr"]) and none["lr"] == none["uncorrected_lr"]


def test_an_exponent_too_uncertain_to_extrapolate_with_is_named():
    doc = sweep_doc(np.random.default_rng(2))
    pred = plan_transfer(doc, "mup", 1024, None, tokens=4 * TOKENS[-1], batch=4 * BATCHES[-1])
    assert not [line for line in axis_lines(pred) if "too uncertain" in line]  # measured well: no warning
    batch = pred["axes"]["batch"]  # as bench-horizon's two-batch sweep measured it (benchmarks/horizon.json)
    batch.update(slope=0.25, slope_interval=[-1.96, 2.47], shift_octaves=0.5, beyond=4.0, reference=BATCHES[-1],
                 target=4 * BATCHES[-1])  # fmt: skip
    warning = next(line for line in axis_lines(pred) if "too uncertain" in line)
    assert warning == ("warning: batch: the measured exponent moves the lr -3.92 to +4.94 octaves at the target (95%): "
                       "too uncertain to extrapolate with; --batch-rule none keeps the proxy lr, or sweep more --batches or seeds")  # fmt: skip
    batch["slope_interval"] = None
    assert any(
        line.startswith("warning: batch: the measured exponent has no interval") for line in axis_lines(pred)
    )


def test_an_axis_the_sweep_did_not_vary():
    doc = sweep_doc(np.random.default_rng(3), batches=(16,))
    pred = plan_transfer(doc, "mup", 256, None, batch=64)  # default: none, with a warning naming the √B rule
    assert pred["rules"]["batch"] == "none" and pred["axes"]["batch"]["default_none"]
    warning = next(line for line in axis_lines(pred) if line.startswith("warning: batch"))
    assert (
        "did not vary it: lr not corrected (--batch-rule none)" in warning and "--batch-rule sqrt" in warning
    )
    assert "+1.00 octaves" in warning
    with pytest.raises(MupxError, match="--batch-rule measured: the sweep did not vary the batch"):
        plan_transfer(doc, "mup", 256, None, batch=64, rules=Rules.parse(None, "measured", None))
    same = plan_transfer(doc, "mup", 256, None, batch=16, rules=Rules.parse(None, "measured", None))
    assert same["lr"] == pytest.approx(
        same["uncorrected_lr"]
    )  # at the proxies' batch there is nothing to move
    for bad, flag in (("power:x", "--horizon-rule"), ("sqrt", "--horizon-rule"), ("linear", "--batch-rule")):
        with pytest.raises(MupxError, match=flag):
            Rules.parse(bad, None, None) if flag == "--horizon-rule" else Rules.parse(None, bad, None)


def test_adam_settings_move_with_the_batch():
    moved = adam_settings("adamw", {"betas": [0.9, 0.95], "eps": 1e-8}, ("beta2", "eps"), 64, 16)
    assert moved["betas"]["to"] == [0.9, pytest.approx(0.95**4)]  # the EMA's half-life constant in tokens
    assert moved["eps"]["to"] == pytest.approx(0.5e-8)  # ε ∝ 1/√B
    hybrid = adam_settings("muon", {"adam_betas": [0.9, 0.95], "adam_eps": 1e-8}, ("beta2",), 32, 16)
    assert set(hybrid) == {"adam_betas"} and hybrid["adam_betas"]["to"][1] == pytest.approx(0.95**2)
    assert adam_settings("sgd", {}, (), 64, 16) == {}
    with pytest.raises(MupxError, match="sgd has no Adam-like"):
        adam_settings("sgd", {}, ("eps",), 64, 16)
    with pytest.raises(MupxError, match="unknown --adam-rules 'beta1'"):
        Rules.parse(None, None, "beta1")
