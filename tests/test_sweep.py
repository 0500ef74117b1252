"""`mupx sweep`: grid parsing, a real sweep end to end, resume, the folder lock, auto lr mode."""

import json
import math
import os
import signal
import socket
import subprocess
import sys
import time
from collections import defaultdict

import pytest

from mupx.errors import MupxError
from mupx.sweep.executors import LocalExecutor
from mupx.sweep.grid import parse_hp, parse_ints, parse_lrs
from mupx.sweep.lock import SweepLock
from mupx.sweep.store import load_sweep_json

from .conftest import TINY
from .test_cli import cli, sets

SWEEP_TINY = [o for o in TINY if not o.startswith(("model.width=", "param.base_width="))]


def sweep_cmd(root, *args):
    sets = [a for o in SWEEP_TINY for a in ("-s", o)]
    return [sys.executable, "-m", "mupx.cli", "sweep", "--root", str(root), "--jobs", "2", *sets, *args]


def run_cli(cmd, timeout=600):
    return subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ), timeout=timeout)


def test_parse_lrs_forms():
    assert parse_lrs("2^-10:2^-8:0.5") == pytest.approx([2**-10, 2**-9.5, 2**-9, 2**-8.5, 2**-8])
    assert parse_lrs("1e-3,3e-3") == [1e-3, 3e-3]
    assert parse_lrs("auto") is None
    assert parse_ints("64,128", "--widths") == [64, 128]
    assert parse_hp(["optimizer.weight_decay=0,0.1"]) == {"optimizer.weight_decay": [0.0, 0.1]}
    assert parse_hp(["optimizer.block_size=32,1024", "optimizer.weight_decay=2^-3"]) == {
        "optimizer.block_size": [32, 1024], "optimizer.weight_decay": [0.125]}  # fmt: skip


def test_an_integer_option_sweeps_as_an_hp_axis(capsys, tmp_path):
    """--hp optimizer.block_size=32 reaches the run as the integer it is (it was 32.0, refused by every run)."""
    code, out, err = cli(capsys, "sweep", "--optimizer", "soap", "--widths", "32", "--lrs", "1e-3", "--hp",
                         "optimizer.block_size=32,64", "--out", str(tmp_path / "s"), "--cfg", "job")  # fmt: skip
    assert code == 0, err
    assert "block_size: 32\n" in out


@pytest.mark.parametrize(
    "bad,fn",
    [("2^-4:2^-8:0.5", parse_lrs), ("1e-3:1e-2", parse_lrs), ("0,1e-3", parse_lrs), ("fast", parse_lrs),
     ("128,64", lambda t: parse_ints(t, "--widths")), ("64,x", lambda t: parse_ints(t, "--widths")),
     ("-64", lambda t: parse_ints(t, "--widths"))],
)  # fmt: skip
def test_bad_grids_are_one_line_errors(bad, fn):
    with pytest.raises(MupxError, match=bad.replace("^", r"\^")):
        fn(bad)


@pytest.fixture(scope="module")
def finished_sweep(tmp_path_factory):
    root = tmp_path_factory.mktemp("sweeps")
    args = ["--widths", "32,64", "--lrs", "2^-9:2^-5:2", "--param", "both", "--steps", "6", "--name", "s"]
    proc = run_cli(sweep_cmd(root, *args))
    assert proc.returncode == 0, proc.stderr + proc.stdout
    return root / "s", args


def test_sweep_writes_runs_and_fits(finished_sweep):
    folder, _ = finished_sweep
    doc = load_sweep_json(folder / "sweep.json")
    assert len(doc["runs"]) == 2 * 2 * 3  # params x widths x lrs
    # at the base width (32) μP and SP train identically: those 3 runs ran once and count for both
    assert len(list(folder.glob("runs/*/result.json"))) == 9
    at_base = {(r["param"], r["lr"]): r["run_id"] for r in doc["runs"] if r["width"] == 32}
    assert all(at_base[("sp", lr)] == at_base[("mup", lr)] for _, lr in at_base)
    assert all("-sp-" in r["run_id"] for r in doc["runs"] if r["param"] == "sp" and r["width"] == 64)
    assert all(r["status"] == "completed" and math.isfinite(r["loss"]) for r in doc["runs"])
    assert {p["width"] for p in doc["fits"]["mup"]["points"]} == {32, 64}
    assert set(doc["fits"]) == {"mup", "sp"}
    for r in doc["runs"]:  # one run folder per stable run id, holding the run files
        run_dir = folder / "runs" / r["run_id"]
        assert (run_dir / "result.json").exists() and (run_dir / "plan.tsv").exists()
        assert f"w{r['width']}" in r["run_id"]
    assert (folder / "sweep.yaml").exists() and not (folder / ".lock").exists()


def test_a_run_in_a_warm_worker_equals_a_fresh_process(finished_sweep, tmp_path):
    """The sweep's runs share warm worker processes; the last run a worker did must be bit-identical to
    the same ``mupx train`` in a fresh process (nothing leaks from the runs before it)."""
    folder, _ = finished_sweep
    doc = load_sweep_json(folder / "sweep.json")
    last = max((r for r in doc["runs"] if r["param"] == "sp"), key=lambda r: (r["width"], r["lr"]))
    sets = [a for o in SWEEP_TINY for a in ("-s", o)]
    sets += ["-s", "param=sp", "-s", f"model.width={last['width']}", "-s", "param.base_width=32",
             "-s", f"optimizer.lr={last['lr']!r}", "-s", "train.steps=6", "-s", "param.base_depth=2"]  # fmt: skip
    threads = LocalExecutor(jobs=2).slots()[0]["env"][
        "OMP_NUM_THREADS"
    ]  # the thread budget of a slot of --jobs 2
    fresh = subprocess.run([sys.executable, "-m", "mupx.cli", "train", "--out", str(tmp_path / "f"), "--quiet", *sets],
                           capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": threads}, timeout=300)  # fmt: skip
    assert fresh.returncode == 0, fresh.stderr
    mine = json.loads((tmp_path / "f" / "result.json").read_text())
    theirs = json.loads((folder / "runs" / last["run_id"] / "result.json").read_text())
    assert mine["run_id"] == last["run_id"]
    assert (mine["val_loss"], mine["final_train_loss"]) == (theirs["val_loss"], theirs["final_train_loss"])


@pytest.mark.parametrize(
    "asked,jobs,threads", [(None, 2, 4), (None, 16, 1), ("1", 2, 1), ("2", 1, 2), ("16", 2, 4), ("x", 4, 2)]
)
def test_a_cpu_slots_threads_are_cores_over_jobs_capped_by_a_set_omp_num_threads(
    asked, jobs, threads, monkeypatch
):
    monkeypatch.setattr(os, "cpu_count", lambda: 8)
    if asked is None:
        monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    else:
        monkeypatch.setenv("OMP_NUM_THREADS", asked)
    slots = LocalExecutor(jobs=jobs).slots()
    assert len(slots) == jobs and {s["env"]["OMP_NUM_THREADS"] for s in slots} == {str(threads)}


def test_rerun_skips_finished_runs(finished_sweep):
    folder, args = finished_sweep
    before = {p: p.stat().st_mtime_ns for p in folder.glob("runs/*/result.json")}
    proc = run_cli(sweep_cmd(folder.parent, *args))
    assert proc.returncode == 0, proc.stderr
    after = {p: p.stat().st_mtime_ns for p in folder.glob("runs/*/result.json")}
    assert before == after


def test_second_sweep_on_a_locked_folder_refuses(tmp_path):
    folder = tmp_path / "busy"
    with SweepLock(folder):
        proc = run_cli(
            sweep_cmd(tmp_path, "--widths", "32,64", "--lrs", "1e-3", "--steps", "2", "--name", "busy")
        )
    assert proc.returncode == 2
    assert "in use by pid" in proc.stderr and proc.stderr.count("\n") == 1


def test_stale_lock_is_taken_over(tmp_path):
    folder = tmp_path / "stale"
    folder.mkdir()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (folder / ".lock").write_text(json.dumps({"pid": dead.pid, "host": socket.gethostname(), "started": 0}))
    os.utime(folder / ".lock", (0, 0))
    lock = SweepLock(folder).acquire()
    assert lock.took_over["pid"] == dead.pid
    assert json.loads((folder / ".lock").read_text())["pid"] == os.getpid()
    lock.release()
    assert not (folder / ".lock").exists()


def comparable_doc(doc: dict) -> dict:
    """sweep.json without what legitimately differs between two executions of one sweep: timings and
    the folder it lives in."""
    drop = ("wall_time_s", "tokens_per_s", "command", "updated")
    if isinstance(doc, dict):
        return {k: comparable_doc(v) for k, v in doc.items() if k not in drop}
    if isinstance(doc, list):
        return [comparable_doc(v) for v in doc]
    return doc


def test_killed_sweep_resumes_to_the_same_sweep_json(tmp_path):
    """A running sweep holds its folder (a second one refuses); SIGKILLed mid-way, its stale lock is taken
    over by the rerun, which runs only what had not finished and ends with the sweep.json of an
    uninterrupted sweep; a deleted sweep.json is rebuilt from the run folders without running anything."""
    args = ["--widths", "32,64", "--lrs", "2^-9:2^-5:4", "--steps", "20", "--name", "k", "--jobs", "1"]
    cmd = sweep_cmd(tmp_path / "a", *args)
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    folder = tmp_path / "a" / "k"
    deadline = time.time() + 300
    while time.time() < deadline and len(list(folder.glob("runs/*/result.json"))) < 1:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGSTOP)  # the sweep (and its worker) hold still, the lock held, mid-way
    second = run_cli(cmd)
    assert second.returncode == 2 and "in use by pid" in second.stderr and second.stderr.count("\n") == 1
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    finished = {p.parent.name: p.stat().st_mtime_ns for p in folder.glob("runs/*/result.json")}
    assert 1 <= len(finished) < 4
    rerun = run_cli(cmd)
    assert rerun.returncode == 0, rerun.stderr
    doc = load_sweep_json(folder)
    assert len(doc["runs"]) == 4 and all(r["status"] == "completed" for r in doc["runs"])
    for run_id, mtime in finished.items():  # no finished run executed twice
        assert (folder / "runs" / run_id / "result.json").stat().st_mtime_ns == mtime

    straight = run_cli(sweep_cmd(tmp_path / "b", *args))
    assert straight.returncode == 0, straight.stderr
    assert comparable_doc(doc) == comparable_doc(load_sweep_json(tmp_path / "b" / "k"))

    mtimes = {p: p.stat().st_mtime_ns for p in folder.glob("runs/*/result.json")}
    (folder / "sweep.json").unlink()
    rebuilt = run_cli(cmd)
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert comparable_doc(load_sweep_json(folder)) == comparable_doc(doc)
    assert {p: p.stat().st_mtime_ns for p in folder.glob("runs/*/result.json")} == mtimes


def test_auto_mode_brackets_each_optimum(tmp_path):
    """An auto grid of μP and SP at the base width: SP trains what μP does there, so its runs are μP's (run
    once, recorded under both), whichever lr the grid's first run has."""
    proc = run_cli(sweep_cmd(tmp_path, "--widths", "32", "--steps", "4", "--name", "auto", "--lrs", "auto:0.03",
                             "--param", "both"))  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    doc = load_sweep_json(tmp_path / "auto")
    by_param = {
        p: {(r["lr"], r["seed"]): r["run_id"] for r in doc["runs"] if r["param"] == p} for p in ("mup", "sp")
    }
    assert by_param["sp"] == by_param["mup"]
    assert len(list((tmp_path / "auto").glob("runs/*/result.json"))) == len(by_param["mup"])
    point = doc["fits"]["mup"]["points"][0]
    lrs = sorted(lr for lr, _ in by_param["mup"])
    assert len(lrs) > 5  # the coarse grid grew
    assert not point["at_edge"]
    assert lrs[0] < point["best_lr"] < lrs[-1]
    losses = defaultdict(list)
    for r in doc["runs"]:
        if r["param"] == "mup":
            losses[r["lr"]].append(r["loss"])
    argmin = min(losses, key=lambda lr: sum(losses[lr]) / len(losses[lr]))
    offsets = {round(2 * (math.log2(lr) - math.log2(argmin))) / 2 for lr in lrs}
    assert {-1.0, -0.5, 0.5, 1.0} <= offsets, offsets  # the fit window filled at half-octave steps


def test_bad_sweep_flags_exit_2_and_create_nothing(tmp_path, capsys):
    """In process (tests/test_bad_input.py runs the CLI as a subprocess for the exit code and no traceback)."""
    for args, message in [
        (["--widths", "64,32"], "increasing"),
        (["--lrs", "2^-4:2^-8:1"], "STOP must be >= START"),
        (["--param", "ntk"], "unknown --param 'ntk'"),
        (
            ["--widths", "32,40", "--lrs", "1e-3"],
            "model.width 40 is not a positive multiple of model.head_dim 16",
        ),
        (["--hp", "optimizer.weight_decay"], "expected key=v1,v2"),
        (["--executor", "kube"], "unknown --executor 'kube'"),
        (["-s", "model.width=128"], "use --widths instead"),
    ]:
        code, _, err = cli(
            capsys, "sweep", "--root", str(tmp_path), *sets(SWEEP_TINY), *args, "--name", "bad"
        )
        assert code == 2, (args, err)
        assert message in err and err.count("\n") == 1, (args, err)
        assert not (tmp_path / "bad").exists()
