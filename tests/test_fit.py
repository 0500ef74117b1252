"""mupx.fit on synthetic sweeps with a known optimum: loss = base + seed offset + curv·(log2 lr − x*)² +
noise, with seeded numpy noise. Real numbers, no mocks."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from mupx.errors import MupxError
from mupx.fit import estimate, fit_series, fit_sweep, t975

HALF = np.arange(-12.0, -1.9, 0.5)  # a half-octave lr grid, 2^-12 … 2^-2


def runs_for(rng, param="mup", widths=(64, 128, 256, 512), depths=(4,), xs=HALF, seeds=(0, 1, 2),
             xopt=lambda w, d: -7.0, hp=None, base=3.0, curv=0.1, noise=0.02, seed_sd=0.03, diverge_above=None):  # fmt: skip
    """Run records as the sweep writes them. ``diverge_above``: lrs above this log2 value diverge."""
    runs = []
    for w in widths:
        for d in depths:
            offset = {s: rng.normal(0, seed_sd) for s in seeds}
            for x in xs:
                for s in seeds:
                    loss = base + offset[s] + curv * (x - xopt(w, d)) ** 2 + rng.normal(0, noise)
                    diverged = diverge_above is not None and x > diverge_above
                    runs.append({
                        "run_id": f"{param}-w{w}-d{d}-x{x}-s{s}-{hp}", "param": param, "width": w, "depth": d,
                        "lr": 2.0**x, "seed": s, "hp": dict(hp or {}), "status": "diverged" if diverged else "completed",
                        "loss": None if diverged else loss, "final_train_loss": None if diverged else loss + 0.01,
                        "val_loss": None if diverged else loss,
                    })  # fmt: skip
    return runs


def sp_opt(w, d):
    return -7.0 - math.log2(w / 64) + 1.5  # one octave down per doubling of width


def strict_json(obj) -> None:
    """JSON without NaN, and only plain Python values (numpy scalars would slip into sweep.json)."""
    json.dumps(obj, allow_nan=False)

    def walk(o):
        assert type(o) in (dict, list, str, int, float, bool, type(None)), (type(o), o)
        for v in o.values() if isinstance(o, dict) else o if isinstance(o, list) else ():
            walk(v)

    walk(obj)


def test_t975_table_and_expansion():
    assert t975(0.5) is None and t975(None) is None
    assert t975(1) == 12.706 and t975(10) == 2.228 and t975(30) == 2.042 and t975(2.7) == 4.303
    for df, ref in ((31, 2.0395), (40, 2.0211), (60, 2.0003), (120, 1.9799), (1e6, 1.95997)):
        assert t975(df) == pytest.approx(ref, abs=2e-4)


def test_mup_transfers_and_sp_drifts():
    rng = np.random.default_rng(0)
    runs = runs_for(rng, "mup") + runs_for(rng, "sp", xopt=sp_opt)
    fits = fit_sweep(runs, tolerance_octaves=0.5)
    assert set(fits) == {"mup", "sp"}
    for param in ("mup", "sp"):
        for p in fits[param]["points"]:
            truth = -7.0 if param == "mup" else sp_opt(p["width"], 4)
            assert p["method"] == "quadratic" and not p["at_edge"]
            assert abs(p["log2_lr_star"] - truth) < 0.2 and p["interval"][1] - p["interval"][0] < 0.8
            assert p["n_seeds"] == 3 and p["n_lrs"] == len(HALF) and p["n_diverged"] == 0
            assert len(p["fit_lrs"]) == 5  # ±1 octave on a half-octave grid
            assert p["df"] == 15 - 5 and p["curvature"] == pytest.approx(0.2, abs=0.1)
            assert len(p["curve"]) == len(HALF) and all(c["n_seeds"] == 3 for c in p["curve"])
            assert all(abs(s["log2_lr_star"] - truth) < 0.5 for s in p["seed_log2_lr_stars"])
        covered = [
            p["interval"][0] <= (-7.0 if param == "mup" else sp_opt(p["width"], 4)) <= p["interval"][1]
            for p in fits[param]["points"]
        ]
        assert sum(covered) >= 3  # 95% intervals: all 4 are covered only 81% of the time
    mup, sp = fits["mup"]["drift"]["width"], fits["sp"]["drift"]["width"]
    assert len(mup) == 1 and mup[0]["depth"] == 4 and mup[0]["range"] == [64, 512]
    assert abs(mup[0]["slope"]) < 0.1 and abs(mup[0]["octaves"]) < 0.3
    assert mup[0]["verdict"] == "transfers" and mup[0]["decisive"] and mup[0]["weighted"]
    assert sp[0]["slope"] == pytest.approx(-1.0, abs=0.05)
    assert sp[0]["octaves"] == pytest.approx(-3.0, abs=0.15)
    assert sp[0]["verdict"] == "drifts" and sp[0]["decisive"] and "beyond" in sp[0]["reason"]
    assert fits["mup"]["drift"]["depth"] == []  # one depth: no depth drift
    assert fits["mup"]["verdict"] == {"width": "transfers", "depth": None}
    assert fits["sp"]["verdict"] == {"width": "drifts", "depth": None}
    rec = fits["mup"]["recommended"]
    assert (
        rec["log2_lr"] == pytest.approx(-7.0, abs=0.1)
        and rec["interval"][0] < rec["log2_lr"] < rec["interval"][1]
    )
    assert rec["lr"] == pytest.approx(2.0 ** rec["log2_lr"]) and rec["hp"] == {} and rec["at_edge"] == []
    assert estimate(fits["mup"], {"width": 4096, "depth": 4})["log2_lr"] == pytest.approx(-7.0, abs=0.3)
    assert estimate(fits["sp"], {"width": 4096, "depth": 4})["log2_lr"] == pytest.approx(
        sp_opt(4096, 4), abs=0.3
    )
    strict_json(fits)


def test_intervals_shrink_with_more_seeds():
    rng = np.random.default_rng(1)

    def median_width(seeds):
        widths = []
        for _ in range(20):
            p = fit_series(runs_for(rng, widths=(64,), seeds=seeds, noise=0.02))
            widths.append(math.inf if p["interval"] is None else p["interval"][1] - p["interval"][0])
        return float(np.median(widths))

    w2, w4, w8 = median_width((0, 1)), median_width((0, 1, 2, 3)), median_width(tuple(range(8)))
    assert w4 < 0.9 * w2 and w8 < 0.9 * w4


def test_interval_coverage():
    """200 draws, optimum off the grid points: the 95% interval covers the truth 85–99% of the time."""
    rng = np.random.default_rng(2)
    hits = 0
    for _ in range(200):
        p = fit_series(runs_for(rng, widths=(64,), xs=HALF + 0.3, seeds=(0, 1, 2), noise=0.03))
        # no interval = the curvature is not significant = Fieller's unbounded set, which covers
        hits += p["interval"] is None or p["interval"][0] <= -7.0 <= p["interval"][1]
    assert 0.85 <= hits / 200 <= 0.99


def test_one_seed_uses_residual_variance_or_gives_no_interval():
    rng = np.random.default_rng(3)
    p = fit_series(
        runs_for(rng, widths=(64,), seeds=(0,), noise=0.005)
    )  # 5 lrs in the window, 3 coefficients
    assert p["df"] == 2 and p["interval"][0] < p["log2_lr_star"] < p["interval"][1]
    assert abs(p["log2_lr_star"] + 7) < 0.2
    octave = np.arange(-12.0, -1.9, 1.0)
    fits = fit_sweep(runs_for(rng, xs=octave, seeds=(0,)))  # 3 lrs in the window: nothing left for noise
    for q in fits["mup"]["points"]:
        assert (
            q["method"] == "quadratic"
            and q["df"] == 0
            and q["interval"] is None
            and "no interval" in q["note"]
        )
    d = fits["mup"]["drift"]["width"][0]
    assert not d["weighted"] and d["slope_interval"] is not None  # ordinary LS over 4 widths, df 2
    assert d["verdict"] == "transfers"
    assert fits["mup"]["recommended"]["weighted"] is False
    strict_json(fits)


def test_optimum_at_grid_edge_is_inconclusive():
    rng = np.random.default_rng(4)
    xs = np.arange(-10.0, -5.9, 0.5)  # the grid stops at 2^-6
    runs = runs_for(rng, xs=xs, xopt=lambda w, d: -7.0 if w < 512 else -5.0)
    fits = fit_sweep(runs)
    edge = [p for p in fits["mup"]["points"] if p["at_edge"]]
    assert [p["width"] for p in edge] == [512]
    assert edge[0]["edge"] == "high" and edge[0]["method"] == "grid" and edge[0]["interval"] is None
    assert edge[0]["lr_star"] == edge[0]["best_lr"] == 2.0**-6
    d = fits["mup"]["drift"]["width"][0]
    assert d["verdict"] == "inconclusive" and d["at_edge"] == [512] and "width 512" in d["reason"]
    assert fits["mup"]["verdict"]["width"] == "inconclusive"
    rec = fits["mup"]["recommended"]
    assert rec["at_edge"] == [{"width": 512, "depth": 4}] and rec["n_points"] == 3  # the bound is left out
    assert rec["log2_lr"] == pytest.approx(-7.0, abs=0.1)
    strict_json(fits)


def test_diverged_runs_are_excluded():
    rng = np.random.default_rng(5)
    runs = runs_for(rng, widths=(64,), diverge_above=-5.0)  # 2^-4.5 … 2^-2 diverge
    runs[0]["status"], runs[0]["loss"] = "failed", None  # a failed run: missing, not diverged
    p = fit_series(runs)
    assert p["n_diverged"] == 6 * 3 and p["n_missing"] == 1
    assert [c["status"] for c in p["curve"]][-6:] == ["diverged"] * 6
    assert p["curve"][0]["n_seeds"] == 2 and p["method"] == "quadratic"
    assert abs(p["log2_lr_star"] + 7) < 0.2 and p["interval"][0] < p["log2_lr_star"] < p["interval"][1]
    # one seed diverging at an lr leaves the others' mean; a NaN "completed" loss counts as diverged
    runs = runs_for(rng, widths=(64,))
    at = [r for r in runs if r["lr"] == 2.0**-9]
    at[0]["status"], at[0]["loss"] = "diverged", None
    at[1]["loss"] = float("nan")
    c = next(c for c in fit_series(runs)["curve"] if c["lr"] == 2.0**-9)
    assert (
        c["n_seeds"] == 1 and c["n_diverged"] == 2 and c["status"] == "ok" and c["mean_loss"] == at[2]["loss"]
    )
    # the argmin next to the divergence boundary is an edge
    p = fit_series(runs_for(rng, widths=(64,), diverge_above=-8.0))
    assert p["at_edge"] and p["edge"] == "high" and "did not diverge" in p["note"]


def test_all_diverged_series():
    rng = np.random.default_rng(6)
    runs = runs_for(rng, widths=(64, 128, 256)) + runs_for(rng, widths=(512,), diverge_above=-99.0)
    fits = fit_sweep(runs)
    p512 = fits["mup"]["points"][-1]
    assert p512["width"] == 512 and p512["lr_star"] is None and p512["log2_lr_star"] is None
    assert p512["at_edge"] and p512["edge"] == "low" and p512["best_loss"] is None and p512["curve"]
    d = fits["mup"]["drift"]["width"][0]
    assert d["verdict"] == "inconclusive" and d["no_optimum"] == [512] and "width 512" in d["reason"]
    assert d["n_points"] == 3 and d["slope"] is not None  # the other widths still give a slope
    assert fits["mup"]["recommended"]["log2_lr"] == pytest.approx(-7.0, abs=0.1)
    strict_json(fits)
    everything = fit_sweep(runs_for(rng, widths=(64, 128), diverge_above=-99.0))
    assert (
        everything["mup"]["recommended"] is None and everything["mup"]["verdict"]["width"] == "inconclusive"
    )
    with pytest.raises(MupxError, match="no optimum"):
        estimate(everything["mup"], {"width": 1024, "depth": 4})
    strict_json(everything)


def test_pending_runs_and_empty_sweep():
    rng = np.random.default_rng(7)
    runs = runs_for(rng, widths=(64, 128))
    for r in runs:
        if r["width"] == 128:
            r.update(status="pending", loss=None, val_loss=None, final_train_loss=None)
    fits = fit_sweep(runs)
    p = fits["mup"]["points"][1]
    assert p["lr_star"] is None and not p["at_edge"] and p["note"] == "no completed runs yet"
    assert fits["mup"]["drift"]["width"][0]["verdict"] == "inconclusive"
    assert fit_sweep([]) == {}
    strict_json(fits)


def test_downward_quadratic_is_at_edge():
    ys = [0.5, 0.9, 0.4, 0.9, 0.5]  # argmin inside, but the window curves down
    runs = [
        {"lr": 2.0 ** (-9 + 0.5 * i), "seed": 0, "status": "completed", "loss": y} for i, y in enumerate(ys)
    ]
    p = fit_series(runs)
    assert p["at_edge"] and p["edge"] is None and p["method"] == "grid" and p["curvature"] < 0
    assert p["lr_star"] == 2.0**-8 and "opens downward" in p["note"]


def test_hp_combos_recommend_the_better_one():
    rng = np.random.default_rng(8)
    wd = "optimizer.weight_decay"
    runs = runs_for(rng, hp={wd: 0.0}, base=3.2) + runs_for(
        rng, hp={wd: 0.1}, base=3.0, xopt=lambda w, d: -6.5
    )
    fits = fit_sweep(runs)
    assert len(fits["mup"]["points"]) == 8 and len(fits["mup"]["drift"]["width"]) == 2
    rec = fits["mup"]["recommended"]
    assert rec["hp"] == {wd: 0.1} and rec["log2_lr"] == pytest.approx(-6.5, abs=0.1) and rec["n_points"] == 4
    assert [h["hp"] for h in rec["hp_losses"]] == [{wd: 0.1}, {wd: 0.0}]
    assert rec["hp_losses"][0]["width"] == 512
    assert fits["mup"]["verdict"]["width"] == "transfers"
    strict_json(fits)


def test_depth_drift():
    rng = np.random.default_rng(9)
    runs = runs_for(rng, widths=(64, 256), depths=(2, 4, 8), xopt=lambda w, d: -6.0 - 0.5 * math.log2(d))
    fits = fit_sweep(runs, tolerance_octaves=0.5)
    depth = fits["mup"]["drift"]["depth"]
    assert [d["width"] for d in depth] == [64, 256]
    for d in depth:
        assert d["slope"] == pytest.approx(-0.5, abs=0.1) and d["range"] == [2, 8]
        assert d["octaves"] == pytest.approx(-1.0, abs=0.2) and d["verdict"] == "drifts"
    assert [d["depth"] for d in fits["mup"]["drift"]["width"]] == [2, 4, 8]
    assert all(d["verdict"] == "transfers" for d in fits["mup"]["drift"]["width"])
    assert fits["mup"]["verdict"] == {"width": "transfers", "depth": "drifts"}
    pred = fits["mup"]["recommended"]["predict"]
    assert pred["slope_depth"] == pytest.approx(-0.5, abs=0.1) and abs(pred["slope_width"]) < 0.1
    assert estimate(fits["mup"], {"width": 1024, "depth": 32})["log2_lr"] == pytest.approx(
        -6.0 - 2.5, abs=0.4
    )
    strict_json(fits)


def test_objective_and_bad_arguments():
    rng = np.random.default_rng(10)
    runs = runs_for(rng, widths=(64, 128))
    by_train = fit_sweep(runs, objective="final_train_loss")["mup"]["points"][0]
    assert by_train["best_loss"] == pytest.approx(fit_sweep(runs)["mup"]["points"][0]["best_loss"] + 0.01)
    with pytest.raises(MupxError, match="objective 'nope'"):
        fit_sweep(runs, objective="nope")
    with pytest.raises(MupxError, match="tolerance"):
        fit_sweep(runs, tolerance_octaves=0)
