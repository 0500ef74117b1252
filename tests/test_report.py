"""`mupx report`: a real tiny sweep and transfer -> figures, report.md, a self-contained report.html;
bad input is one line, exit 2, nothing written. Then `mupx compare` on the same transfers (adamw) and an sgd
one, and make bench-transfer's summary of the sweep: in this file so that the tiny sweeps are built once (the
test workers take whole files)."""

import contextlib
import io
import json
import math
import re
import shutil
import sys
from pathlib import Path

import pytest

from mupx.cli import main

from .conftest import TINY
from .test_cli import cli

SWEEP_TINY = [o for o in TINY if not o.startswith(("model.width=", "param.base_width="))]
_BUILT: dict[str, object] = {}  # optimizer -> sweep folder, shared by the report and compare tests


def _mupx(*args) -> str:
    """Run the CLI in this process (no interpreter start-up) with sys.argv as a shell would set it, since
    sweep.json records it; returns stdout."""
    argv = [str(a) for a in args]
    saved, sys.argv = sys.argv, ["mupx", *argv]
    out = io.StringIO()
    try:
        with contextlib.redirect_stdout(out):
            main(argv)
    except SystemExit as e:
        raise AssertionError(f"mupx {' '.join(argv)} exited {e.code}: {out.getvalue()[-2000:]}") from None
    finally:
        sys.argv = saved
    return out.getvalue()


def tiny_sweep(tmp_path_factory, optimizer: str = "adamw"):
    """A finished tiny sweep with a transfer to width 128 (built once per session and optimizer).
    adamw: widths 32, 64 x 3 lrs x mup and sp, 10 steps, transfer with an SP baseline. Others: one width
    and one lr, just enough for a transfer to compare."""
    if optimizer not in _BUILT:
        root = tmp_path_factory.mktemp(f"report-{optimizer}")
        sets = [a for o in SWEEP_TINY for a in ("-s", o)]
        if optimizer == "adamw":
            grid, extra = (
                ["--widths", "32,64", "--lrs", "2^-9:2^-5:2", "--param", "both"],
                ["--baseline", "sp"],
            )
        else:
            grid, extra = ["--widths", "32", "--lrs", "0.1", "--param", "mup"], []
        _mupx("sweep", "--optimizer", optimizer, *grid, "--steps", 10, "--jobs", 2, "--name", optimizer,
              "--root", root, *sets)  # fmt: skip
        folder = root / optimizer
        _mupx(
            "transfer", "--from", folder / "sweep.json", "--width", 128, *extra, "--jobs", 2, "--force"
        )  # tiny: no verdict
        _BUILT[optimizer] = folder
    return _BUILT[optimizer]


@pytest.fixture(scope="module")
def reported(tmp_path_factory):
    folder = tiny_sweep(tmp_path_factory)
    # a coordinate check in the sweep folder is picked up (a stand-in PNG: the real one is tested elsewhere)
    check = folder / "coord_check"
    check.mkdir(exist_ok=True)
    (check / "coord_check.json").write_text(json.dumps({
        "verdict": "pass", "axis": "width", "values": [32, 64], "tolerance": 0.5, "optimizer": "adamw",
        "param": "mup", "n_failed": 0, "n_gated": 3, "command": "mupx coord-check --widths 32,64",
        "worst": {"module": "block.0", "metric": "rms", "t": 1, "slope": -0.12},
    }))  # fmt: skip
    _a_png(check / "coord_check.png")
    return folder, _mupx("report", folder)


def _a_png(path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = plt.figure(figsize=(2, 1.5))
    fig.savefig(path)
    plt.close(fig)


def test_report_writes_every_file_and_valid_images(reported):
    import matplotlib.image as mpimg

    folder, stdout = reported
    out = folder / "report"
    assert str(out / "report.html") in stdout.replace("\n", "")
    for name in (
        "headline.png",
        "loss_vs_lr.png",
        "optimum_vs_width.png",
        "training_curves.png",
        "coord_check.png",
    ):
        image = mpimg.imread(out / name)
        assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100, name
    assert not (out / "optimum_vs_depth.png").exists()  # one depth


def test_report_md_holds_the_tables_and_commands(reported):
    folder, _ = reported
    md = (folder / "report" / "report.md").read_text()
    doc = json.loads((folder / "sweep.json").read_text())
    assert "| param | axis | at | hp | drift (octaves) | 95% interval | verdict | reason |" in md
    assert re.search(r"\| mup \| width \| depth 2 \| – \| .* \| (transfers|drifts|inconclusive) \|", md)
    assert re.search(r"\| sp \| width \| depth 2 \|", md)
    assert "## Optimum per width" in md and "| mup | 64 | 2 |" in md
    assert "transfer-w128-d2" in md and "sp: " in md  # transfer table with the SP baseline
    assert "mupx sweep --optimizer adamw" in md and doc["command"][1] == "sweep"
    assert (
        f"mupx transfer --from {folder}/sweep.json --width 128 --depth 2 --steps 10 --param mup --baseline sp"
        in md
    )
    assert f"mupx report {folder}" in md
    assert "PASS" in md and "mupx coord-check --widths 32,64" in md
    assert md.index("](headline.png)") < md.index("## Verdict")  # the report opens with μP vs SP at a glance
    for name in ("loss_vs_lr.png", "optimum_vs_width.png", "training_curves.png", "coord_check.png"):
        assert f"]({name})" in md
    assert "The fitted objective is each run's validation loss at its last step" in md
    assert "Every mup run" in md and "| lr | w32 | w64 |" in md  # the per-run grid
    [one] = [r for r in doc["runs"] if r["param"] == "mup" and r["width"] == 64 and r["lr"] == 2**-5]
    assert f"{one['loss']:.4f} (1)" in md  # one seed
    rec = doc["fits"]["mup"]["recommended"]
    assert "at base width 32, depth 2" in md and "| mup | base lr" in md and rec
    assert "--force" in md.split("## Commands")[1]  # the forced transfer replays as it ran
    assert md.rstrip().endswith("```") and "## Next" in md


def test_a_failing_coord_check_is_flagged_beside_the_verdict(reported, tmp_path):
    import shutil

    from mupx.report import write_report

    folder = tmp_path / "adamw"
    shutil.copytree(reported[0], folder, ignore=shutil.ignore_patterns("report"))
    check = json.loads((folder / "coord_check" / "coord_check.json").read_text())
    (folder / "coord_check" / "coord_check.json").write_text(json.dumps({**check, "verdict": "fail"}))
    write_report(folder)
    md = (folder / "report" / "report.md").read_text()
    verdict = md.split("## Verdict")[1].split("## Loss against")[0]
    assert "coordinate check in coord_check FAILED for adamw under μP" in verdict


def test_report_html_is_self_contained(reported):
    folder, _ = reported
    page = (folder / "report" / "report.html").read_text()
    assert page.startswith("<!DOCTYPE html>") and "<style>" in page
    srcs = re.findall(r'(?:src|href)\s*=\s*"([^"]*)"', page)
    assert len(srcs) == 5 and all(s.startswith("data:image/png;base64,") for s in srcs)
    assert not re.search(r"https?://|<link|@import|url\(", page)
    assert "drift (octaves)" in page and "mupx report" in page


def test_report_marks_pending_and_failed_runs_and_reads_transfers(reported, tmp_path, capsys):
    folder, _ = reported
    copy = tmp_path / "partial"
    copy.mkdir()
    doc = json.loads((folder / "sweep.json").read_text())
    doc["runs"][0].update(status="failed", loss=None, reason="exit code 1: boom")
    doc["runs"][1].update(status="pending", loss=None)
    (copy / "sweep.json").write_text(json.dumps(doc))
    transfer = json.loads(next(folder.glob("transfer-*/transfer.json")).read_text())
    transfer["regret"] = {"value": 0.0123, "best_lr": 0.02, "best_loss": 5.0}
    (copy / "transfer-w999-d2").mkdir()
    (copy / "transfer-w999-d2" / "transfer.json").write_text(json.dumps(transfer))
    (copy / "transfer-w1-d1").mkdir()
    (copy / "transfer-w1-d1" / "transfer.json").write_text("{")
    code, _, err = cli(capsys, "report", copy / "sweep.json")
    assert code == 0, err
    md = (copy / "report" / "report.md").read_text()
    unfinished = sum(r["status"] not in ("completed", "diverged") for r in doc["runs"])
    assert f"Warning: {unfinished} run(s) pending or failed" in md, md
    assert "| failed | exit code 1: boom |" in md and "pending/failed" in md
    assert "+0.0123 (best lr 0.02)" in md and "unreadable transfer.json" in md
    assert (copy / "report" / "loss_vs_lr.png").exists()


@pytest.mark.parametrize("case", ["missing folder", "no sweep.json", "corrupt", "schema", "bad runs"])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(case, tmp_path, capsys, reported):
    folder = tmp_path / "sweep"
    if case != "missing folder":
        folder.mkdir()
    good = json.loads((reported[0] / "sweep.json").read_text())
    if case == "corrupt":
        (folder / "sweep.json").write_text('{"schema_version": 1, "runs": [')
    elif case == "schema":
        (folder / "sweep.json").write_text(json.dumps({**good, "schema_version": 99}))
    elif case == "bad runs":
        (folder / "sweep.json").write_text(json.dumps({**good, "runs": [{"run_id": "x", "lr": "fast"}]}))
    before = sorted(tmp_path.rglob("*"))
    code, _, err = cli(capsys, "report", folder)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mupx: error:"), err
    assert sorted(tmp_path.rglob("*")) == before


def test_report_plots_upload_to_an_offline_wandb_run(reported, tmp_path, monkeypatch):
    """`mupx report --wandb demo --wandb-mode offline`: the plots go to one offline wandb run in the sweep's
    group, with no network and no key."""
    import shutil

    for var in ("WANDB_MODE", "WANDB_API_KEY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "wandb-config"))
    folder = tmp_path / "adamw"
    shutil.copytree(reported[0], folder)
    _mupx("report", folder, "--wandb", "demo", "--wandb-mode", "offline")
    [run] = (folder / "report" / "wandb").glob("offline-run-*")
    assert len(list(run.glob("files/media/images/report/loss_vs_lr_*.png"))) == 1


# --- mupx compare on the tiny transfers --------------------------------------------------------------


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


# --- benchmarks/bench_transfer.py's summary of the same sweep -----------------------------------------------


def test_bench_transfer_summarises_the_sweep_and_renders_its_tables(tmp_path_factory, tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import bench_transfer

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
           "results": {"adamw": {"date": "today", "command": "bench --only adamw", "width": summary},
                       "sgd": {"date": "today", "command": "bench --only sgd", "width": summary}}}  # fmt: skip
    bench_transfer.render(raw)
    text = readme.read_text()
    assert (
        "(`bench --only adamw` (adamw); `bench --only sgd` (sgd);" in text
    )  # each row's own command, not the last
    assert text.endswith("<!-- bench-transfer:end -->\n\nkept\n")
    row = next(line for line in text.splitlines() if line.startswith("| adamw |"))
    assert f"{summary['mup']['octaves']:+.2f}" in row
    assert "| muon | not measured yet |" in text
    assert "### Over depth" in results.read_text()
    mup_row = next(line for line in results.read_text().splitlines() if line.startswith("| adamw | μP |"))
    assert (
        f"| {summary['mup']['best_loss'][-1]:.3f} |" in mup_row
    )  # the best loss at the widest, beside SP's (1 seed: no ±)
    assert len(summary["records"]) == 12 and {"param", "width", "lr", "seed", "status", "loss"} <= set(
        summary["records"][0]
    )
    r = summary["mup"]["regret"]
    if r["regret"] is not None:  # the regret in loss and in % of the best loss there
        assert f"{r['regret']:.3f} ({100 * r['regret'] / r['best_loss']:.2f}%)" in mup_row
