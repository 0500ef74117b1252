"""Opt-in wandb tracking: offline runs need no network or key, disabled costs nothing, config is typed."""

from __future__ import annotations

import time

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402

from mupx.errors import MupxError  # noqa: E402
from mupx.runconfig import load_run_config  # noqa: E402
from mupx.tracking import TrackingConfig, WandbConfig, WandbTracker, flatten  # noqa: E402

PLAN = [
    {"name": "tok_emb.weight", "role": "input", "shape": [512, 64], "lr_mult": 1.0, "extra": {}},
    {"name": "blocks.0.attn.q.weight", "role": "hidden", "shape": [64, 64], "lr_mult": 0.5, "extra": {}},
]


@pytest.fixture
def no_wandb_env(monkeypatch, tmp_path):
    """No WANDB_MODE, no API key, no netrc; wandb's own config and cache folders in tmp."""
    for var in ("WANDB_MODE", "WANDB_API_KEY", "WANDB_DIR", "WANDB_PROJECT"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    for var, name in (
        ("WANDB_CONFIG_DIR", "config"),
        ("WANDB_CACHE_DIR", "cache"),
        ("WANDB_DATA_DIR", "data"),
    ):
        monkeypatch.setenv(var, str(tmp_path / "wandb-home" / name))


def test_offline_run_folder_holds_the_metrics(no_wandb_env, tmp_path):
    out = tmp_path / "run"
    plot = tmp_path / "lr_sweep.png"
    plt.figure(figsize=(2, 2))
    plt.plot([1, 2, 3])
    plt.savefig(plot)
    plt.close()
    start = time.perf_counter()
    tracker = WandbTracker()
    tracker.start("adamw-mup-w64-test", "my-sweep", {"optimizer": {"lr": 0.01}}, PLAN, out, "offline", None)
    for step in (1, 2, 3):
        tracker.log({"step": step, "loss": 5.0 - step, "spectral": {"blocks.0.attn.q.weight": 0.1 * step}})
    tracker.upload_images([plot])
    tracker.finish(
        {"status": "completed", "final_train_loss": 2.0, "val_loss": None, "data": {"vocab_size": 512}}
    )
    elapsed = time.perf_counter() - start
    [run] = (out / "wandb").glob("offline-run-*")
    [log] = run.glob("run-*.wandb")  # the run's record log, which `wandb sync` uploads
    names = [b"adamw-mup-w64-test", b"my-sweep", b"optimizer", b"loss", b"spectral/blocks.0.attn.q.weight"]
    names += [b"plan", b"report/lr_sweep", b"final_train_loss", b"data/vocab_size"]
    deadline = time.monotonic() + 10  # wandb-core writes the log out just after finish() returns
    while not all(n in log.read_bytes() for n in names) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert [n for n in names if n not in log.read_bytes()] == []
    assert len(list(run.glob("files/media/table/plan_*.table.json"))) == 1
    assert len(list(run.glob("files/media/images/report/lr_sweep_*.png"))) == 1
    print(f"\nwandb offline start/log/finish: {elapsed:.1f} s")
    assert elapsed < 30


def test_disabled_does_nothing(tmp_path):
    tracker = WandbTracker()
    tracker.start("r", None, {}, PLAN, tmp_path / "run", "disabled", None)
    tracker.log({"step": 1, "loss": 1.0})
    tracker.upload_images([tmp_path / "missing.png"])
    tracker.finish({"status": "completed"})
    assert tracker.run is None and not (tmp_path / "run").exists()


def test_bad_mode_and_online_without_key_are_one_line_errors(no_wandb_env, tmp_path):
    with pytest.raises(
        MupxError, match="tracking.wandb.mode must be one of online, offline, disabled, got 'on'"
    ):
        WandbTracker().start("r", None, {}, [], tmp_path, "on", None)
    start = time.perf_counter()
    with pytest.raises(MupxError, match=r"mode=online \(No API key configured.*mode=offline") as info:
        WandbTracker().start("r", None, {}, [], tmp_path, "online", None)
    assert "\n" not in str(info.value) and time.perf_counter() - start < 10


def test_flatten():
    assert flatten({"a": 1, "b": {"c": 2, "d": {"e": 3}}}) == {"a": 1, "b/c": 2, "b/d/e": 3}


def test_tracking_config_is_typed_and_not_in_the_run_id():
    base = load_run_config([])
    assert base.tracking == TrackingConfig(WandbConfig(project=None, mode="disabled", group=None))
    cfg = load_run_config(
        ["tracking.wandb.mode=offline", "tracking.wandb.project=p", "tracking.wandb.group=g"]
    )
    assert cfg.tracking.wandb == WandbConfig(project="p", mode="offline", group="g")
    assert cfg.run_id == base.run_id
    with pytest.raises(
        MupxError, match="tracking.wandb.mode must be one of online, offline, disabled, got 'loud'"
    ):
        load_run_config(["tracking.wandb.mode=loud"])
    with pytest.raises(MupxError, match="unknown config key 'tracking.wandb.entity'"):
        load_run_config(["tracking.wandb.entity=me"])


def test_train_with_wandb_offline_mirrors_the_run(no_wandb_env, tmp_path):
    """`mupx train --wandb demo --wandb-mode offline`, no network, no key: one offline wandb run inside the run
    folder holding the run id, the metrics and the result; the run id does not change."""
    import json
    import os
    import subprocess
    import sys

    from .conftest import TINY

    out = tmp_path / "run"
    sets = [a for o in TINY + ["train.steps=3"] for a in ("-s", o)]
    cmd = [
        sys.executable,
        "-m",
        "mupx.cli",
        "train",
        "--out",
        str(out),
        "--wandb",
        "demo",
        "--wandb-mode",
        "offline",
        *sets,
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ), timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads((out / "result.json").read_text())
    assert result["run_id"] == load_run_config(TINY + ["train.steps=3"]).run_id
    [run] = (out / "wandb").glob("offline-run-*")
    [log] = run.glob("run-*.wandb")
    for name in (result["run_id"].encode(), b"demo", b"grad_norm", b"final_train_loss"):
        assert name in log.read_bytes(), name
