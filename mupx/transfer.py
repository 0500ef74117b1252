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
from dataclasses import dataclass
from pathlib import Path

from . import checkpoint
from .cli_options import print_config
from .config import compose, override_value, to_dict
from .errors import MupxError
from .fit import fit_series, fit_sweep, predict_log2_lr
from .io import atomic_write_json, check_folder
from .summary import recommendation_text
from .sweep.command import RunDisplay, make_executor, sweep_overrides
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
    """What the sweep predicts for the target: base lr (with interval, or a bound), the base shape it is
    relative to, extrapolation, hp, and the verdict with its reasons."""
    spec = SweepSpec.from_json(doc["spec"])
    fits = fit_sweep(doc["runs"], tolerance_octaves=spec.tolerance)
    if param not in fits:
        raise MupxError(f"the sweep has no {param!r} runs (has: {', '.join(fits) or 'none'})")
    fit = fits[param]
    rec = fit.get("recommended")
    if not rec or rec.get("lr") is None:
        raise MupxError(f"the sweep's {param} runs have no fitted optimum yet (finish the sweep first)")
    depth = depth or spec.depths[-1]
    hp = rec.get("hp") or {}
    reasons = {
        axis: [d["reason"] for d in fit["drift"][axis] if (d.get("hp") or {}) == hp] for axis in fit["drift"]
    }
    return {
        "param": param,
        "lr": rec["lr"],
        "log2_lr": rec.get("log2_lr", math.log2(rec["lr"])),
        "interval": rec.get("interval"),
        "bound": rec.get("bound"),
        "hp": hp,
        "base_width": spec.base_width,
        "base_depth": spec.base_depth,
        "extrapolated_lr": 2.0 ** predict_log2_lr(fit, width, depth),
        "verdict": fit.get("verdict"),
        "reasons": reasons,
        "depth": depth,
    }


def refusal(pred: dict) -> str | None:
    """Why the sweep does not support a zero-shot transfer (None when it does): a verdict other than
    "transfers" on a swept axis, or a recommendation that is only a bound."""
    bad = {axis: v for axis, v in (pred["verdict"] or {}).items() if v not in (None, "transfers")}
    if bad:
        why = "; ".join(f"{axis}: {v} ({' / '.join(pred['reasons'].get(axis, [])) or 'no reason recorded'})" for axis, v in bad.items())
        return f"the sweep's {pred['param']} verdict is not 'transfers' ({why})"
    if pred["bound"]:
        return f"the sweep's {pred['param']} recommendation is only a bound (every optimum is on the lr grid's edge)"
    return None


@dataclass
class TransferPlan:
    """The target's runs, composed and validated, before anything runs or is written."""

    sweep_json: Path
    folder: Path
    pred: dict
    width: int
    depth: int
    steps: int
    overrides: list[str]  # the user's, on top of the sweep's
    tasks: list[tuple[str, Task]]  # (role, task): transfer, baseline, verify±k
    forced: bool = False  # run with --force although the sweep's verdict refused it


def plan_runs(sweep_json: Path, width: int, depth: int | None, steps: int | None, param: str, baseline: str | None,
              verify: int, config: Path | None = None, overrides: list[str] | None = None) -> TransferPlan:  # fmt: skip
    """Compose and validate every run of the transfer (one-line errors before any folder exists).
    ``config`` (``--config``) and ``overrides`` (the user's flags, -s, KEY=VALUE) apply on top of the sweep's
    own, except its axes; a transfer run keeps its final weights (``train.save_final``), which the sweep's
    runs skip."""
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
    _, _, overrides = sweep_overrides(config, spec.optimizer, spec.model, list(overrides or []))
    pred = plan_transfer(doc, param, width, depth)
    depth = pred["depth"]
    spec = dataclasses.replace(
        spec, steps=steps or spec.steps, widths=(width,), depths=(depth,),
        overrides=(*spec.overrides, "train.save_final=true", *overrides),
    )  # fmt: skip
    sweep_dir = sweep_json if sweep_json.is_dir() else sweep_json.parent
    folder = sweep_dir / f"transfer-w{width}-d{depth}"
    check_folder(folder, "transfer folder")
    combo = tuple(pred["hp"].items())
    planner = Sweep(spec, folder, command=[])
    roles = [("transfer", param, pred["lr"])]
    if baseline:
        roles.append(("baseline", baseline, pred["lr"]))
    roles += [(f"verify{o:+g}", param, pred["lr"] * 2.0**o) for o in verify_offsets(verify)]
    tasks = [(role, planner.task((p, width, depth, combo), lr, spec.seeds[0])) for role, p, lr in roles]
    return TransferPlan(sweep_json, folder, pred, width, depth, spec.steps, overrides, tasks)


def run_transfer(plan: TransferPlan, executor, display: RunDisplay | None = None) -> dict:
    """Run what has not finished (shown on ``display``) and write transfer.json."""
    with SweepLock(plan.folder):
        todo = [t for _, t in plan.tasks if (read_result(t.run_dir) or {}).get("status") not in FINISHED]
        if display:
            display.total(len(plan.tasks), len(plan.tasks) - len(todo))
        if todo:

            def done(task: Task, result: dict) -> None:
                if display:
                    loss = record(task.run_id, task.axes, result)["loss"]
                    last = f"{task.axes['param']} lr {task.axes['lr']:.3g}: {result['status'] if loss is None else f'{loss:.4f}'}"
                    display.done(task, result, last)

            executor.run(todo, done)
    return write_transfer(plan)


def run_transfer_command(o: dict, console) -> dict | None:
    """``mupx transfer``: the verdict first (refused unless it is "transfers", or --force), the runs with
    their logs, a progress bar, then the losses, the regret and whether the baseline won."""
    plan = plan_runs(o["sweep"], o["width"], o["depth"], o["steps"], o["param"], o["baseline"], o["verify"],
                     o["config"], o["overrides"])  # fmt: skip
    if o["print_config"]:
        role, task = plan.tasks[0]
        return print_config(to_dict(compose(task.overrides)), f"the {role} run of {plan.folder}")
    executor = make_executor(o, plan.folder)
    pred, param = plan.pred, plan.pred["param"]
    console.print(verdict_text(pred), highlight=False, soft_wrap=True)
    why = refusal(pred)
    if why and not o["force"]:
        raise MupxError(f"{why}; refusing to transfer (--force runs it anyway)")
    plan.forced = why is not None
    console.print(
        f"transferring {recommendation_text(pred)} ({param}; drift-extrapolated {pred['extrapolated_lr']:.4g}) "
        f"-> width {plan.width}, depth {plan.depth}",
        highlight=False, soft_wrap=True,
    )  # fmt: skip
    for role, task in plan.tasks:
        console.print(f"  {role:>10} {task.axes['param']} lr {task.axes['lr']:.4g}  log: {task.log}", highlight=False, soft_wrap=True)
    with RunDisplay(console, plan.folder.name) as display:
        doc = run_transfer(plan, executor, display)
    for r in doc["runs"]:
        loss = f"{r['loss']:.4f}" if r["loss"] is not None else f"{r['status']} ({r.get('reason') or 'no reason recorded'})"
        console.print(f"  {r['role']:>10} {r['param']} lr {r['lr']:.4g}: {loss}", highlight=False, soft_wrap=True)
    if doc["regret"]:
        console.print(f"regret {doc['regret']['value']:+.4f} (best lr at target {doc['regret']['best_lr']:.4g})")
    b = doc["baseline"]
    if b and b["gain"] is not None:
        if b["gain"] < 0:
            console.print(
                f"[bold]the {b['param']} baseline won[/]: loss {b['loss']:.4f} against {param}'s {doc['loss']:.4f} "
                f"({-b['gain']:.4f} lower) at the same base lr", highlight=False, soft_wrap=True,
            )  # fmt: skip
        else:
            console.print(
                f"{param} beat the {b['param']} baseline by {b['gain']:.4f} loss ({doc['loss']:.4f} against "
                f"{b['loss']:.4f}) at the same base lr", highlight=False, soft_wrap=True,
            )  # fmt: skip
    main = plan.tasks[0][1]
    final = checkpoint.all_checkpoints(main.run_dir)
    console.print(
        f"transfer folder: {plan.folder}  (transfer.json, runs/, logs/)"
        + (f"; final weights: {final[-1]}" if final and doc["status"] == "completed" else ""),
        highlight=False, soft_wrap=True,
    )  # fmt: skip
    return doc


def verdict_text(pred: dict) -> str:
    """'sweep verdict (mup): width transfers (lr* moves ...)' per swept axis."""
    parts = [
        f"{axis} {v}" + (f" ({'; '.join(pred['reasons'][axis])})" if pred["reasons"].get(axis) else "")
        for axis, v in (pred["verdict"] or {}).items()
        if v is not None
    ]
    if not parts:
        return f"sweep verdict ({pred['param']}): not measured (one width and one depth: no drift to check)"
    return f"sweep verdict ({pred['param']}): " + "; ".join(parts)


def sweep_train_overrides(path: Path, flags: dict, console) -> list[str]:
    """``mupx train --from-sweep``: the sweep's optimizer, model, base shape, recommended base lr and hp
    as overrides (the flags that would set them differently are refused)."""
    for key in ("lr", "base_width", "base_depth"):
        if flags.get(key) is not None:
            raise MupxError(f"--from-sweep sets --{key.replace('_', '-')} (the sweep's recommendation); give one of them")
    doc = load_sweep_json(path)
    spec = SweepSpec.from_json(doc["spec"])
    for key in ("optimizer", "model"):
        if flags.get(key) not in (None, getattr(spec, key)):
            raise MupxError(
                f"--{key} {flags[key]}, but the sweep {path} tuned {getattr(spec, key)}: its lr does not apply "
                f"(allowed: {getattr(spec, key)})"
            )
    param = flags.get("param") or ("mup" if "mup" in spec.params else spec.params[0])
    pred = plan_transfer(doc, param, spec.widths[-1], None)
    console.print(f"from {path}: {recommendation_text(pred)} ({param})", highlight=False, soft_wrap=True)
    why = refusal(pred)
    if why:
        console.print(f"[yellow]warning[/]: {why}", highlight=False, soft_wrap=True)
    return [
        f"model={spec.model}", f"optimizer={spec.optimizer}", f"param={param}", f"param.base_width={spec.base_width}",
        f"param.base_depth={spec.base_depth}", *(f"{k}={override_value(v)}" for k, v in pred["hp"].items()),
        f"optimizer.lr={pred['lr']!r}",
    ]  # fmt: skip


def write_transfer(plan: TransferPlan) -> dict:
    pred = plan.pred
    runs = [{"role": role, **record(t.run_id, t.axes, read_result(t.run_dir))} for role, t in plan.tasks]
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
            "measured_interval": curve.get("interval"),
            "measured_at_edge": curve.get("at_edge"),
            "octave_error": (pred["log2_lr"] - measured) if measured is not None else None,
        }
    base = next((r for r in runs if r["role"] == "baseline"), None)
    doc = {
        "schema_version": SCHEMA_VERSION,
        "sweep": str(plan.sweep_json),
        "updated": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "target": {"width": plan.width, "depth": plan.depth, "steps": plan.steps},
        "overrides": plan.overrides,
        "forced": plan.forced,
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
    atomic_write_json(plan.folder / "transfer.json", doc)
    return doc
