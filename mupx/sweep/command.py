"""``mupx sweep`` from flags to a finished sweep folder: validate everything first (a bad grid is a
one-line error before any folder exists), then run with a progress bar and print the verdicts."""

from __future__ import annotations

import math
import os
import sys
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from ..config import compose, to_dict
from ..errors import MupxError, choose
from ..io import check_folder
from .executors import LocalExecutor, visible_gpus
from .grid import PARAMS, AutoLR, SweepSpec, auto_center, check_overrides, parse_hp, parse_ints, parse_lrs
from .runner import Sweep, best_by_width

EXECUTORS = ("local", "slurm")


def build_spec(o: dict) -> SweepSpec:
    if o["param"] not in PARAMS:
        raise choose("--param", o["param"], PARAMS)
    if o["seeds"] < 1:
        raise MupxError(f"--seeds must be >= 1, got {o['seeds']}")
    if o["steps"] is not None and o["steps"] < 1:
        raise MupxError(f"--steps must be >= 1, got {o['steps']}")
    if not 0 < o["tolerance"]:
        raise MupxError(f"--tolerance must be > 0 octaves, got {o['tolerance']}")
    widths = parse_ints(o["widths"], "--widths")
    check_overrides(o["overrides"])
    base = to_dict(compose([f"model={o['model']}", f"optimizer={o['optimizer']}", *o["overrides"]]))
    depths = parse_ints(o["depths"], "--depths") if o["depths"] else [base["model"]["depth"]]
    lrs = parse_lrs(o["lrs"])
    name = o["name"] or f"{o['optimizer']}-{o['param']}-w{'-'.join(map(str, widths))}" + (
        f"-d{'-'.join(map(str, depths))}" if len(depths) > 1 else ""
    )
    if not name or "/" in name or name.startswith("."):
        raise MupxError(f"--name {name!r} must be a plain folder name")
    return SweepSpec(
        name=name, model=o["model"], optimizer=o["optimizer"], params=tuple(PARAMS[o["param"]]),
        widths=tuple(widths), depths=tuple(depths), lrs=tuple(lrs) if lrs is not None else None,
        seeds=tuple(range(o["seeds"])), hp=parse_hp(o["hp"]), base_width=o["base_width"] or widths[0],
        base_depth=o["base_depth"] or depths[0], steps=o["steps"] or base["train"]["steps"],
        overrides=tuple(o["overrides"]), tolerance=o["tolerance"],
        auto=AutoLR(center=auto_center(o["lrs"], float(base["optimizer"]["lr"]))) if lrs is None else None,
    )  # fmt: skip


def make_executor(o: dict, folder: Path):
    if o["executor"] not in EXECUTORS:
        raise choose("--executor", o["executor"], EXECUTORS)
    if o["executor"] == "slurm":
        from .slurm import SlurmExecutor

        return SlurmExecutor(folder=folder, partition=o["partition"], time_min=o["time_min"], gpus_per_run=o["gpus_per_run"],
                             array_parallelism=o["array_parallelism"], dry_run=o["dry_run"])  # fmt: skip
    if o["dry_run"]:
        raise MupxError("--dry-run applies to --executor slurm only")
    gpus = visible_gpus()
    default = len(gpus) * o["runs_per_gpu"] if gpus else (os.cpu_count() or 1)
    jobs = o["jobs"] if o["jobs"] is not None else default  # --jobs 0 is an error, not the default
    return LocalExecutor(jobs=jobs, gpus=gpus, runs_per_gpu=o["runs_per_gpu"], gpus_per_run=o["gpus_per_run"])


def run_sweep_command(o: dict, console: Console) -> dict:
    spec = build_spec(o)
    folder = Path(o["root"]) / spec.name
    check_folder(folder, "sweep folder")
    executor = make_executor(o, folder)
    sweep = Sweep(spec, folder, command=["mupx", *sys.argv[1:]])
    sweep.all_tasks()  # compose and validate every run of the first round before anything runs
    progress = Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
        TextColumn("{task.fields[best]}"), console=console, transient=False,
    )  # fmt: skip
    bar = progress.add_task(spec.name, total=None, best="")

    def report(event: str, info: dict) -> None:
        if event == "stale-lock":
            console.print(f"taking over a stale lock left by pid {info.get('pid')} on {info.get('host')}")
        elif event == "spec-changed":
            console.print("the sweep spec changed since the last run: runs outside the new grid are ignored")
        elif event == "round":
            progress.update(
                bar, total=info["total"], completed=info["total"] - info["todo"], best=_best(info["records"])
            )
        elif event == "done":
            progress.update(bar, advance=1, best=_best(info["records"]))
            r = info["result"]
            if r["status"] not in ("completed", "diverged"):
                progress.console.print(
                    f"[red]run {info['task'].run_id} {r['status']}[/]: {r.get('reason', '')}"
                )

    with progress:
        doc = sweep.run(executor, report)
    print_fits(doc, console)
    console.print(f"sweep folder: {folder}  (sweep.json, runs/, logs/)")
    return doc


def _best(records: list[dict]) -> str:
    best = best_by_width(records)
    return " ".join(
        f"{p}/w{w}{'' if len({k[2] for k in best}) == 1 else f'd{d}'} {v:.3f}"
        for (p, w, d), v in sorted(best.items())
        if math.isfinite(v)
    )


def print_fits(doc: dict, console: Console) -> None:
    table = Table(title=f"{doc['name']}: optimum per width", header_style="bold")
    for c in ("param", "width", "depth", "hp", "lr*", "95% interval (lr)", "at edge", "best loss"):
        table.add_column(c)
    for param, fit in doc["fits"].items():
        for p in fit["points"]:
            interval = p.get("interval")
            text = f"{2 ** interval[0]:.3g} – {2 ** interval[1]:.3g}" if interval else "-"
            lr = f"{p['lr_star']:.3g}" if p.get("lr_star") else "-"
            best = f"{p['best_loss']:.4f}" if p.get("best_loss") is not None else "-"
            hp = ",".join(f"{k}={v}" for k, v in (p.get("hp") or {}).items()) or "-"
            table.add_row(
                param, str(p["width"]), str(p["depth"]), hp, lr, text, "yes" if p.get("at_edge") else "", best
            )
    console.print(table)
    for param, fit in doc["fits"].items():
        for axis in ("width", "depth"):
            for d in fit.get("drift", {}).get(axis, []):
                console.print(
                    f"{param} drift over {axis} {d.get('range')}: {_num(d.get('octaves'))} octaves -> [bold]{d.get('verdict')}[/] ({d.get('reason', '')})"
                )
        rec = fit.get("recommended")
        if rec and rec.get("lr"):
            console.print(f"{param} recommended base lr {rec['lr']:.4g} {rec.get('hp') or ''}")


def _num(x) -> str:
    return f"{x:+.2f}" if isinstance(x, (int, float)) else "-"
