"""``mupx transfer``: run the target model with the hyperparameters a sweep transferred, and measure how
well the transfer held.

The base lr is the sweep's recommendation for the chosen parameterization (the weighted mean of the
per-width optima, μP's zero-shot claim); the drift-plane extrapolation to the target is recorded beside
it. ``--baseline sp`` runs the same base lr under SP (what μP buys); ``--verify K`` runs K more lrs
around the transferred one (half-octave steps) to measure the regret = loss(transferred) − best loss at
the target. Everything lands in ``<sweep>/transfer-w<W>-d<D>/`` with ``transfer.json``; re-running
resumes.
"""

from __future__ import annotations

import dataclasses
import math
import time
from pathlib import Path

from .errors import MupxError
from .fit import fit_series, fit_sweep, predict_log2_lr
from .io import atomic_write_json, check_folder
from .sweep.executors import Task
from .sweep.grid import SweepSpec
from .sweep.lock import SweepLock
from .sweep.runner import Sweep
from .sweep.store import FINISHED, load_sweep_json, read_result, record

SCHEMA_VERSION = 1


def verify_offsets(k: int) -> list[float]:
    """K lr offsets in octaves around the transferred lr, nearest first: -0.5, +0.5, -1, +1, ..."""
    offsets = []
    step = 1
    while len(offsets) < k:
        for sign in (-1, 1):
            if len(offsets) < k:
                offsets.append(sign * 0.5 * step)
        step += 1
    return sorted(offsets)


def plan_transfer(doc: dict, param: str, width: int, depth: int | None) -> dict:
    """What the sweep predicts for the target: base lr (with interval), extrapolation and hp."""
    spec = SweepSpec.from_json(doc["spec"])
    fits = fit_sweep(doc["runs"], tolerance_octaves=spec.tolerance)
    if param not in fits:
        raise MupxError(f"the sweep has no {param!r} runs (has: {', '.join(fits) or 'none'})")
    fit = fits[param]
    rec = fit.get("recommended")
    if not rec or rec.get("lr") is None:
        raise MupxError(f"the sweep's {param} runs have no fitted optimum yet (finish the sweep first)")
    depth = depth or spec.depths[-1]
    return {
        "param": param,
        "lr": rec["lr"],
        "log2_lr": rec.get("log2_lr", math.log2(rec["lr"])),
        "interval": rec.get("interval"),
        "hp": rec.get("hp") or {},
        "extrapolated_lr": 2.0 ** predict_log2_lr(fit, width, depth),
        "verdict": fit.get("verdict"),
        "depth": depth,
    }


def run_transfer(sweep_json: Path, width: int, depth: int | None, steps: int | None, param: str, baseline: str | None,
                 verify: int, executor, progress=None) -> dict:  # fmt: skip
    if width <= 0:
        raise MupxError(f"--width must be a positive integer, got {width}")
    if depth is not None and depth <= 0:
        raise MupxError(f"--depth must be a positive integer, got {depth}")
    if verify < 0:
        raise MupxError(f"--verify must be >= 0, got {verify}")
    if baseline not in (None, "sp", "mup") or baseline == param:
        raise MupxError(
            f"--baseline {baseline!r} must be the other parameterization (allowed: {'sp' if param == 'mup' else 'mup'})"
        )
    if steps is not None and steps < 1:
        raise MupxError(f"--steps must be >= 1, got {steps}")
    sweep_json = Path(sweep_json)
    doc = load_sweep_json(sweep_json)
    spec = SweepSpec.from_json(doc["spec"])
    pred = plan_transfer(doc, param, width, depth)
    depth = pred["depth"]
    spec = dataclasses.replace(spec, steps=steps or spec.steps, widths=(width,), depths=(depth,))
    sweep_dir = sweep_json if sweep_json.is_dir() else sweep_json.parent
    folder = sweep_dir / f"transfer-w{width}-d{depth}"
    check_folder(folder, "transfer folder")
    combo = tuple(pred["hp"].items())
    planner = Sweep(spec, folder, command=[])
    roles = [("transfer", param, pred["lr"])]
    if baseline:
        roles.append(("baseline", baseline, pred["lr"]))
    roles += [(f"verify{o:+g}", param, pred["lr"] * 2.0**o) for o in verify_offsets(verify)]
    tasks: list[tuple[str, Task]] = [
        (role, planner.task((p, width, depth, combo), lr, spec.seeds[0])) for role, p, lr in roles
    ]
    with SweepLock(folder):
        todo = [t for _, t in tasks if (read_result(t.run_dir) or {}).get("status") not in FINISHED]
        if todo:
            executor.run(todo, progress or (lambda task, result: None))
    return write_transfer(folder, sweep_json, pred, width, depth, spec.steps, tasks)


def write_transfer(
    folder: Path, sweep_json: Path, pred: dict, width: int, depth: int, steps: int, tasks
) -> dict:
    runs = [{"role": role, **record(t.run_id, t.axes, read_result(t.run_dir))} for role, t in tasks]
    main = runs[0]
    verify = [r for r in runs if r["role"] == "transfer" or r["role"].startswith("verify")]
    finished = [r for r in verify if r["loss"] is not None]
    regret = None
    if len(verify) > 1 and main["loss"] is not None:
        best = min(finished, key=lambda r: r["loss"])
        curve = fit_series([dict(r, hp={}) for r in verify])
        measured = curve.get("log2_lr_star")
        regret = {
            "value": main["loss"] - best["loss"],
            "best_lr": best["lr"],
            "best_loss": best["loss"],
            "measured_lr_star": curve.get("lr_star"),
            "measured_at_edge": curve.get("at_edge"),
            "octave_error": (pred["log2_lr"] - measured) if measured is not None else None,
        }
    base = next((r for r in runs if r["role"] == "baseline"), None)
    doc = {
        "schema_version": SCHEMA_VERSION,
        "sweep": str(sweep_json),
        "updated": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "target": {"width": width, "depth": depth, "steps": steps},
        "predicted": pred,
        "runs": runs,
        "loss": main["loss"],
        "status": main["status"],
        "regret": regret,
        "baseline": None
        if base is None
        else {
            "param": base["param"],
            "loss": base["loss"],
            "status": base["status"],
            "gain": (base["loss"] - main["loss"])
            if (base["loss"] is not None and main["loss"] is not None)
            else None,
        },  # fmt: skip
    }
    atomic_write_json(folder / "transfer.json", doc)
    return doc
