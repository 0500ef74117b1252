"""The benchmark scripts' own logic: generated sections and the transfer summary's regret (tests/test_report.py
summarises its real tiny sweep with bench_transfer and renders the tables)."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import bench_transfer  # noqa: E402
from common import replace_section  # noqa: E402


def test_replace_section_rewrites_only_its_own_markers(tmp_path):
    path = tmp_path / "README.md"
    path.write_text("# Title\n\nbefore\n<!-- x:start -->\nold\n<!-- x:end -->\nafter\n")
    replace_section(path, "x", "new 1\nnew 2")
    assert path.read_text() == "# Title\n\nbefore\n<!-- x:start -->\nnew 1\nnew 2\n<!-- x:end -->\nafter\n"
    replace_section(path, "y", "appended")
    assert path.read_text().endswith("after\n\n<!-- y:start -->\nappended\n<!-- y:end -->\n")
    assert "new 1\nnew 2" in path.read_text()


def _curve(points):
    return [{"log2_lr": x, "lr": 2.0**x, "mean_loss": v} for x, v in points]


def test_regret_reads_the_largest_widths_curve_at_the_smallest_widths_optimum():
    base = {"lr_star": 2.0**-7.5, "best_loss": 3.0, "curve": []}
    top = {
        "lr_star": 2.0**-9,
        "best_loss": 3.0,
        "curve": _curve([(-10, 3.2), (-9, 3.0), (-8, 3.1), (-7, 3.5)]),
    }
    r = bench_transfer.regret([base, top], "width")
    assert r["loss"] == pytest.approx(3.3) and r["regret"] == pytest.approx(0.3)  # halfway between -8 and -7
    top["curve"][-1]["mean_loss"] = None  # the lr above the transferred one diverged
    assert bench_transfer.regret([base, top], "width")["note"] == "diverged"
    top["curve"][-1]["mean_loss"] = 3.5
    base["lr_star"] = 2.0**-3  # beyond the grid: the loss at its top end bounds the regret from below
    out = bench_transfer.regret([base, top], "width")
    assert out["regret"] is None and out["note"] == "outside the grid"
    assert out["lower_bound"] == pytest.approx(0.5)


def test_bench_horizon_renders_the_committed_results_with_the_numbers_of_its_json():
    import json

    import bench_horizon

    raw = json.loads((Path(bench_horizon.__file__).parent / "horizon.json").read_text())
    table, line = bench_horizon.tables(raw), bench_horizon.headline(raw)
    exponent = bench_horizon.slope_text(raw["batch"]["plane"], "batch")
    regret = raw["batch_transfer"]["uncorrected"]["relative"]
    assert exponent in table and exponent in line and f"{100 * regret:.2f}%" in line
    assert (
        f"lr* ∝ batch^{raw['batch']['plane']['batch']['slope']:+.2f}" in table
    )  # the reading is written from the JSON


def test_bench_transfer_cpu_protocol_is_the_documented_one():
    """Widths 32->256 with the base init std moved by 1/sqrt(fan_in) from GPT-2's (0.02 at 768), each auto grid
    centred per optimizer; a user's --widths 16,128 gets its own base's init."""
    size = bench_transfer.SIZES["cpu"]
    assert size["widths"] == [32, 256] and bench_transfer.base_init_std(16) == 0.14
    args = bench_transfer.sweep_args("soap", "width", size, Path("runs/x"), None)
    assert args[args.index("--widths") + 1] == "32,256" and args[args.index("--lrs") + 1] == "auto:2^-4"
    assert "param.init_std=0.1" in args and set(bench_transfer.CPU_CENTRES) == set(bench_transfer.OPTIMIZERS)
    narrow = bench_transfer.sweep_args("adamw", "width", {**size, "widths": [16, 128]}, Path("runs/x"), None)
    assert "param.init_std=0.14" in narrow
    sgd = bench_transfer.sweep_args("sgd", "width", size, Path("runs/x"), None)  # its own settings, 5 seeds
    assert {"param.output_mult=8", "train.grad_clip_norm=mup"} <= set(sgd) and sgd[
        sgd.index("--seeds") + 1
    ] == "5"
    assert args[args.index("--seeds") + 1] == "3" and "param.output_mult=8" not in args
    deep = bench_transfer.sweep_args("adamw", "depth", size, Path("runs/x"), None)  # at width 128, 300 steps
    assert [deep[deep.index(f) + 1] for f in ("--widths", "--depths", "--steps", "--seeds", "--lrs")] == [
        "128",
        "2,16",
        "300",
        "5",
        "auto:2^-8",
    ] and "param.init_std=0.05" in deep
    sophia = bench_transfer.sweep_args("sophia", "width", size, Path("runs/x"), None)  # 300 steps, 5 seeds
    assert [sophia[sophia.index(f) + 1] for f in ("--steps", "--seeds", "--lrs")] == [
        "300",
        "5",
        "auto:2^-8.5",
    ]
    muon = bench_transfer.sweep_args("muon", "depth", size, Path("runs/x"), None)  # the protocol's own size
    assert [muon[muon.index(f) + 1] for f in ("--widths", "--steps")] == ["32", "150"]
    gpu = bench_transfer.sweep_args("sgd", "width", bench_transfer.SIZES["gpu"], Path("runs/x"), None)
    assert (
        gpu[gpu.index("--seeds") + 1] == "2" and "param.output_mult=8" not in gpu
    )  # the GPU protocol has none


def test_bench_transfer_names_the_rows_measured_with_settings_of_their_own():
    """A row's seeds come from its records and its settings from its sweep command, so the tables say how
    each row was measured even when the constants change later."""

    def row(seeds, sweep):
        return {"records": [{"seed": k} for k in range(seeds)], "sweep": sweep}

    raw = {"size": {"seeds": 3, "depth_width": 32, "steps": 150}, "results": {
        "adamw": {"width": row(3, "mupx sweep --widths 32,256 --steps 150 -s param.init_std=0.1"),
                  "depth": row(5, "mupx sweep --widths 128 --steps 300 -s param.init_std=0.05")},
        "sgd": {"width": row(5, "mupx sweep -s param.init_std=0.1 -s param.output_mult=8 -s train.grad_clip_norm=mup")},
        "muon": {"width": {"records": []}}}}  # fmt: skip
    assert bench_transfer.departures_text(raw) == (
        "adamw over depth: 5 seeds, width 128 (init std 0.05), steps 300; sgd over width: 5 seeds, `param.output_mult=8`, `train.grad_clip_norm=mup`"
    )


def test_best_loss_carries_the_standard_error_of_its_seed_mean():
    records = [{"param": "mup", "width": 256, "lr": lr, "seed": k, "status": "completed", "loss": loss}
               for lr, losses in ((0.01, (2.0, 2.2, 2.1)), (0.02, (2.3, 2.4, 2.35))) for k, loss in enumerate(losses)]  # fmt: skip
    records.append({"param": "sp", "width": 256, "lr": 0.01, "seed": 0, "status": "completed", "loss": 1.0})
    s = {"best_loss": [2.5, 2.1], "values": [32, 256]}
    assert bench_transfer.best_loss_text(s, records, "mup", "width") == "2.100 ± 0.058"  # 0.1 / sqrt(3)
    assert bench_transfer.best_loss_text(s, None, "mup", "width") == "2.100"  # results that kept no records


def test_protocol_tables_show_a_depth_experiments_depths_and_its_drift_over_depth():
    """A depth sweep's table names each optimum's depth and its drift is read over depths, not widths."""
    import bench_protocol

    runs = [{"param": "mup", "width": 32, "depth": depth, "lr": 2.0**x, "seed": seed, "hp": None,
             "status": "completed", "loss": 2.0 + 0.1 * (x + 6) ** 2 + 0.002 * seed * (-1) ** int(2 * x)}
            for depth in (4, 32) for x in (-8, -7.5, -7, -6.5, -6, -5.5, -5, -4.5, -4) for seed in range(3)]  # fmt: skip
    name = bench_protocol.EXPERIMENTS[0][0]
    text = bench_protocol.tables(
        {name: {"command": "c", "code": "x", "date": "d", "machine": "m", "runs": runs}}
    )
    rows = [line for line in text.splitlines() if line.startswith("| mup | 32 |")]
    assert [row.split(" | ")[2] for row in rows] == ["4", "32"]
    assert "mup drift over depths 4→32: +0.00" in text and "**transfers**" in text


def test_protocol_drift_lines_name_the_swept_value_and_a_missing_interval():
    """An experiment over two values of a swept hyperparameter gives two drift lines: each names its value, and a
    drift without an interval says so (two anonymous 'mup drift' lines could not be told apart)."""
    import bench_protocol

    def loss(x, width, mult, seed):
        centre = -6 if mult == 1 else -6 - 0.5 * (width == 256)
        return 2.0 + 0.1 * (x - centre) ** 2 + 0.002 * seed * (-1) ** int(2 * x)

    grid = (-8, -7.5, -7, -6.5, -6, -5.5, -5, -4.5, -4)
    runs = [{"param": "mup", "width": width, "depth": 2, "lr": 2.0**x, "seed": seed, "hp": {"param.output_mult": mult},
             "status": "completed", "loss": loss(x, width, mult, seed)}
            for mult in (1, 8) for width in (32, 256) for x in grid for seed in range(3)]  # fmt: skip
    runs += [
        {**runs[0], "hp": {"param.output_mult": 2}, "width": width, "lr": 2.0**x, "loss": 2.0}
        for width in (32, 256)
        for x in (-6, -5)
    ]  # fmt: skip: a flat valley, no optimum located
    name = bench_protocol.EXPERIMENTS[0][0]
    text = bench_protocol.tables(
        {name: {"command": "c", "code": "x", "date": "d", "machine": "m", "runs": runs}}
    )
    drifts = [line for line in text.splitlines() if line.startswith("- mup")]
    assert [line.split(" drift over")[0] for line in drifts] == [
        f"- mup (output_mult={m})" for m in (1, 2, 8)
    ]
    assert "widths 32→256: -0.50 (-0.52 to -0.48) octaves, drifts" in drifts[2]
    assert "(no interval) octaves, inconclusive" in drifts[1]
    assert "| mup | 256 | 2 | output_mult=8 | -6.50 (" in text
