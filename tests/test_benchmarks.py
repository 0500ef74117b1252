"""The benchmark scripts' own logic: generated sections, the transfer summary and its regret, on a real sweep."""

import json
import math
import sys
from pathlib import Path

import pytest

from tests.test_report import tiny_sweep

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


def test_summary_of_a_real_sweep_and_its_generated_tables(tmp_path_factory, tmp_path, monkeypatch):
    doc = json.loads((tiny_sweep(tmp_path_factory) / "sweep.json").read_text())
    summary = bench_transfer.summarise(doc, "width")
    assert summary["runs"] == len(doc["runs"]) == 12  # 2 widths x 3 lrs x μP and SP
    for param in ("mup", "sp"):
        s, fit = summary[param], doc["fits"][param]
        assert s["values"] == [32, 64]
        drift = fit["drift"]["width"][0]
        assert (s["octaves"], s["verdict"]) == (drift["octaves"], drift["verdict"])
        r = s["regret"]
        assert r["lr"] == fit["points"][0]["lr_star"]
        if r["regret"] is not None:
            assert r["regret"] >= 0 and math.isfinite(r["loss"])
    readme, results = tmp_path / "README.md", tmp_path / "RESULTS.md"
    readme.write_text("# mupx\n\n<!-- bench-transfer:start -->\n<!-- bench-transfer:end -->\n\nkept\n")
    monkeypatch.setattr(bench_transfer, "README", readme)
    monkeypatch.setattr(bench_transfer, "RESULTS", results)
    raw = {"command": "bench", "date": "today", "machine": "here", "kind": "cpu", "size": bench_transfer.SIZES["cpu"],
           "results": {"adamw": {"date": "today", "width": summary}}}  # fmt: skip
    bench_transfer.render(raw)
    text = readme.read_text()
    assert text.endswith("<!-- bench-transfer:end -->\n\nkept\n")
    row = next(line for line in text.splitlines() if line.startswith("| adamw |"))
    assert f"{summary['mup']['octaves']:+.2f}" in row
    assert "| muon | not measured yet |" in text
    assert "### Over depth" in results.read_text()
