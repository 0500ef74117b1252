"""``mupx sweep`` from flags to a finished sweep folder: validate everything first (a bad grid is a
one-line error before any folder exists), then run with a progress bar and print the verdicts, the
recommendation (a base lr at the sweep's base shape) and the next command. ``make_executor`` and
``RunDisplay`` serve ``mupx transfer`` too."""

from __future__ import annotations

import math
import os
import sys
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from ..cli_options import EXECUTORS, config_defaults, print_config
from ..config import compose, config_file_overrides, split_override, to_dict, with_config
from ..errors import MupxError, MupxFailure, choose
from ..io import check_folder
from ..summary import count_text, exponent_text, lr_text, next_step, recommendation_text, reference_text
from .executors import LocalExecutor, Task, visible_gpus
from .grid import (
    AXIS_KEYS,
    PARAMS,
    AutoLR,
    SweepSpec,
    auto_center,
    check_overrides,
    parse_counts,
    parse_hp,
    parse_ints,
    parse_lrs,
)
from .runner import Sweep, best_by_width

SWEEP_KEYS = (*AXIS_KEYS, "train.save_final")  # what a sweep's own flags and defaults decide, not --config


def sweep_overrides(config: Path | None, optimizer: str | None, model: str | None, later: list[str],
                    flagged: tuple[str, ...] = ()) -> tuple[str, str, list[str]]:  # fmt: skip
    """The optimizer, the model and the overrides every run of a sweep (or transfer) gets: what ``--config``
    sets except the sweep's own axes (widths, lrs, seeds, param, base shape, steps, and the ``flagged``
    keys, e.g. train.batch under --batches: its flags decide those), then ``later`` (flags, -s,
    KEY=VALUE). The optimizer and model are the flags', else the file's, else the defaults'."""
    check_overrides(later)
    file = config_file_overrides(config) if config else []
    picked = dict(split_override(o) for o in file if split_override(o)[0] in ("model", "optimizer"))
    optimizer = optimizer or picked.get("optimizer") or config_defaults()["optimizer"]["<name>"]
    model = model or picked.get("model") or config_defaults()["model"]["<name>"]
    chosen = [f"model={model}", f"optimizer={optimizer}"]
    merged = with_config(file, chosen + later)
    from_file = merged[: len(merged) - len(chosen) - len(later)]
    own = (*SWEEP_KEYS, *flagged)
    return optimizer, model, [o for o in from_file if split_override(o)[0] not in own] + later


def build_spec(o: dict) -> SweepSpec:
    if o["param"] not in PARAMS:
        raise choose("--param", o["param"], PARAMS)
    if o["seeds"] < 1:
        raise MupxError(f"--seeds must be >= 1, got {o['seeds']}")
    if not 0 < o["tolerance"]:
        raise MupxError(f"--tolerance must be > 0 octaves, got {o['tolerance']}")
    widths = parse_ints(o["widths"], "--widths")
    base = to_dict(compose([f"model={o['model']}", f"optimizer={o['optimizer']}", *o["overrides"]]))
    depths = parse_ints(o["depths"], "--depths") if o["depths"] else [base["model"]["depth"]]
    lrs = parse_lrs(o["lrs"])
    steps, tokens, batches = horizons_and_batches(o, base["train"])
    overrides, eval_batch = list(o["overrides"]), base["train"].get("eval_batch")
    if len(batches) > 1 and eval_batch is None:
        # the val set is eval_batches x eval_batch windows: unset, each batch would be scored on its own number
        eval_batch = max(batches)
        overrides.append(f"train.eval_batch={eval_batch}")
    if eval_batch is not None:
        check_batch(eval_batch, o.get("gpus_per_run") or 1, base["train"]["accum"], "train.eval_batch")
    name = o["name"] or f"{o['optimizer']}-{o['param']}-w{'-'.join(map(str, widths))}" + "".join(
        f"-{tag}{'-'.join(map(str, values))}" for tag, values in (("d", depths), ("n", steps), ("t", tokens), ("b", batches))
        if len(values) > 1
    )  # fmt: skip
    if not name or "/" in name or name.startswith("."):
        raise MupxError(f"--name {name!r} must be a plain folder name")
    return SweepSpec(
        name=name, model=o["model"], optimizer=o["optimizer"], params=tuple(PARAMS[o["param"]]),
        widths=tuple(widths), depths=tuple(depths), lrs=tuple(lrs) if lrs is not None else None,
        seeds=tuple(range(o["seeds"])), hp=parse_hp(o["hp"]), base_width=o["base_width"] or widths[0],
        base_depth=o["base_depth"] or depths[0], steps=tuple(steps), tokens=tuple(tokens), batches=tuple(batches),
        seq_len=base["train"]["seq_len"], warmup_steps=shared_warmup(o, base["train"], steps, tokens, batches),
        overrides=tuple(overrides), tolerance=o["tolerance"],
        auto=AutoLR(center=auto_center(o["lrs"], float(base["optimizer"]["lr"]))) if lrs is None else None,
    )  # fmt: skip


def user_value(overrides: list[str], key: str) -> str | None:
    """The value the last of ``overrides`` gives ``key`` (None: none sets it)."""
    values = [split_override(ov)[1] for ov in overrides if split_override(ov)[0].lstrip("+~") == key]
    return values[-1] if values else None


def horizons_and_batches(o: dict, train: dict) -> tuple[list[int], list[int], list[int]]:
    """The horizons in steps (``--steps``, default the config's) or in tokens (``--tokens``) and the global
    batches (``--batches``, default the config's ``train.batch``), checked: each batch divisible by the ranks
    of a run (``--gpus-per-run``) × ``train.accum``, each token horizon a whole number of steps at every
    batch, and several batches only at equal tokens."""
    if o.get("tokens") and o.get("steps"):
        raise MupxError("give the horizons as --steps or as --tokens, not both")
    if o.get("batches") and user_value(o["overrides"], "train.batch") is not None:
        raise MupxError(
            f"--batches and train.batch={user_value(o['overrides'], 'train.batch')} (--batch or -s): give the batches with --batches"
        )
    tokens = parse_counts(o["tokens"], "--tokens") if o.get("tokens") else []
    steps = parse_ints(o["steps"], "--steps") if o.get("steps") else ([] if tokens else [train["steps"]])
    batches = parse_ints(o["batches"], "--batches") if o.get("batches") else [train["batch"]]
    if len(batches) > 1 and not tokens:
        raise MupxError(f"--batches {o['batches']} with a horizon in steps: each batch would train a different number of "
                        "tokens, so the fit could not tell the batch from the horizon; give the horizon in tokens (--tokens)")  # fmt: skip
    ranks = o.get("gpus_per_run") or 1
    for b in batches:
        check_batch(b, ranks, train["accum"])
        for t in tokens:
            per_step = b * train["seq_len"]
            if t % per_step:
                lower = max(per_step, t // per_step * per_step)
                raise MupxError(f"--tokens {t} is not a whole number of steps at batch {b} x seq_len {train['seq_len']} "
                                f"({per_step} tokens per step): e.g. {lower} or {lower + per_step}")  # fmt: skip
    return steps, tokens, batches


def check_batch(batch: int, ranks: int, accum: int, key: str = "train.batch") -> None:
    """A global batch (or a validation batch, ``key`` train.eval_batch) is split over the ranks of a run and its
    accumulation micro-batches."""
    what = "global sequences per step" if key == "train.batch" else "sequences per validation batch"
    if batch % (ranks * accum):
        raise MupxError(f"{key} {batch} ({what}) is not divisible by {ranks} rank(s) x train.accum {accum}")


def shared_warmup(
    o: dict, train: dict, steps: list[int], tokens: list[int], batches: list[int]
) -> int | None:
    """A horizon sweep's one warmup in steps (``train.warmup_steps``, or ``train.warmup`` of its shortest run;
    each run's config checks that it ends before the run's decay); None for one horizon. Such a sweep trains
    warmup-stable-decay: another ``train.schedule`` is refused."""
    if len(steps or tokens) < 2:
        return None
    schedule = user_value(o["overrides"], "train.schedule")
    if schedule not in (None, "wsd"):
        raise MupxError(f"train.schedule={schedule}: a sweep over several horizons trains warmup-stable-decay "
                        "(train.schedule=wsd), so that the shorter horizons branch off the longest; sweep one horizon at a time for another schedule")  # fmt: skip
    runs = [n for b in batches for n in ([t // (b * train["seq_len"]) for t in tokens] if tokens else steps)]
    warmup = train.get("warmup_steps")
    return round(train["warmup"] * min(runs)) if warmup is None else warmup


def sweep_folder(out: Path | None, root: Path | None, name: str | None) -> tuple[Path, str | None]:
    """``--out DIR`` is ``--root DIR/.. --name DIR's name``; the sweep's root and name (None: derived)."""
    if out is None:
        return Path(root or "runs"), name
    if root is not None or name is not None:
        raise MupxError("give --out, or --root and --name, not both")
    if out.name in ("", ".", ".."):
        raise MupxError(f"--out {str(out)!r} must name the sweep's folder, e.g. runs/adamw")
    return out.parent, out.name


def make_executor(o: dict, folder: Path):
    """The executor of a sweep or a transfer from the shared flags (cli_options: Executor, Jobs, ...)."""
    if o["executor"] not in EXECUTORS:
        raise choose("--executor", o["executor"], EXECUTORS)
    device = o.get("device") or "auto"
    if o["executor"] == "slurm":
        from .slurm import SlurmExecutor

        if device != "auto":
            raise MupxError(
                f"--device {device} applies to --executor local (slurm: --gpus-per-run 0 asks for CPU-only jobs)"
            )
        return SlurmExecutor(folder=folder, partition=o["partition"], time_min=o["time_min"], gpus_per_run=o["gpus_per_run"],
                             array_parallelism=o["array_parallelism"], dry_run=o["dry_run"])  # fmt: skip
    if o["dry_run"]:
        raise MupxError("--dry-run applies to --executor slurm only")
    gpus = local_gpus(device)
    default = len(gpus) * o["runs_per_gpu"] if gpus else (os.cpu_count() or 1)
    jobs = o["jobs"] if o["jobs"] is not None else default  # --jobs 0 is an error, not the default
    return LocalExecutor(jobs=jobs, gpus=gpus, runs_per_gpu=o["runs_per_gpu"], gpus_per_run=o["gpus_per_run"])


def local_gpus(device: str) -> list[str]:
    """The GPUs local runs may use under ``--device``: auto = every visible one, cpu = none, cuda = every
    visible one (at least one), cuda:N = the N-th visible one."""
    gpus = visible_gpus()
    if device in ("auto", "cpu"):
        return gpus if device == "auto" else []
    if device == "cuda" or device.startswith("cuda:"):
        index = device.partition(":")[2]
        if not gpus or (index and (not index.isdigit() or int(index) >= len(gpus))):
            raise MupxError(
                f"--device {device} but {len(gpus)} GPUs are visible (allowed here: auto, cpu{', cuda' if gpus else ''})"
            )
        return [gpus[int(index)]] if index else gpus
    raise choose("device", device, ["auto", "cpu", "cuda", "cuda:N"])


class RunDisplay:
    """The progress bar of a sweep or a transfer: finished runs out of all, the best loss so far, and a
    line for each run that failed, with its log."""

    def __init__(self, console: Console, title: str):
        self.console = console
        self.progress = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
            TextColumn("{task.fields[best]}"), console=console, transient=False,
        )  # fmt: skip
        self.bar = self.progress.add_task(title, total=None, best="")

    def __enter__(self):
        self.progress.__enter__()
        return self

    def __exit__(self, *exc):
        return self.progress.__exit__(*exc)

    def total(self, total: int, done: int, best: str = "") -> None:
        self.progress.update(self.bar, total=total, completed=done, best=best)

    def done(self, task: Task, result: dict, best: str) -> None:
        self.progress.update(self.bar, advance=1, best=best)
        if result["status"] not in ("completed", "diverged"):
            self.progress.console.print(
                f"[red]run {task.run_id} {result['status']}[/]: {result.get('reason', '')} (log: {task.log})",
                highlight=False, soft_wrap=True,
            )  # fmt: skip


def print_first_run(o: dict) -> None:
    """``--cfg job``: the composed config of the sweep's first run (the others differ in its axes)."""
    spec = build_spec(o)
    series = spec.series()[0]
    lr = spec.lrs[0] if spec.lrs is not None else spec.auto.center
    resolved = to_dict(compose(spec.overrides_for(*series, lr, spec.seeds[0])))
    print_config(
        resolved,
        f"the first run of sweep {spec.name}; the others differ in width, depth, horizon, batch, lr, seed, param, --hp",
    )


def run_sweep_command(o: dict, console: Console) -> dict:
    spec = build_spec(o)
    folder = Path(o["root"]) / spec.name
    check_folder(folder, "sweep folder")
    executor = make_executor(o, folder)
    sweep = Sweep(spec, folder, command=["mupx", *sys.argv[1:]])
    sweep.all_tasks()  # compose and validate every run of the first round before anything runs
    display = RunDisplay(console, spec.name)

    def report(event: str, info: dict) -> None:
        if event == "stale-lock":
            console.print(f"taking over a stale lock left by pid {info.get('pid')} on {info.get('host')}")
        elif event == "spec-changed":
            console.print("the sweep spec changed since the last run: runs outside the new grid are ignored")
        elif event == "round":
            display.total(info["total"], info["total"] - info["todo"], _best(info["records"]))
        elif event == "done":
            display.done(info["task"], info["result"], _best(info["records"]))

    with display:
        doc = sweep.run(executor, report)
    print_fits(doc, console)
    console.print(f"sweep folder: {folder}  (sweep.json, runs/, logs/)", highlight=False, soft_wrap=True)
    check_some_completed(doc, folder)
    console.print(f"next: {next_step(doc['fits'], folder)}", highlight=False, soft_wrap=True)
    return doc


def check_some_completed(doc: dict, folder: Path) -> None:
    """A sweep where no run completed has nothing to fit: exit 1 with why."""
    runs = doc["runs"]
    if any(r["status"] == "completed" for r in runs):
        return
    counts: dict[str, int] = {}
    for r in runs:
        counts[r["status"]] = counts.get(r["status"], 0) + 1
    first = next((r for r in runs if r.get("reason")), None)
    why = f"; e.g. width {first['width']} lr {first['lr']:.3g}: {first['reason']}" if first else ""
    if set(counts) == {"diverged"}:
        hint = "lower the learning rates (--lrs, or --lrs auto:CENTER with a smaller centre)"
    else:
        hint = f"see {folder / 'logs'}"
    summary = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
    raise MupxFailure(f"no run of the sweep completed ({summary}){why}; {hint}")


def _best(records: list[dict]) -> str:
    best = best_by_width(records)
    return " ".join(
        f"{p}/w{w}{'' if len({k[2] for k in best}) == 1 else f'd{d}'} {v:.3f}"
        for (p, w, d), v in sorted(best.items())
        if math.isfinite(v)
    )


def print_fits(doc: dict, console: Console) -> None:
    swept = [
        a
        for a in ("tokens", "batch")
        if len({p.get(a) for fit in doc["fits"].values() for p in fit["points"]}) > 1
    ]
    table = Table(title=f"{doc['name']}: optimum per width", header_style="bold")
    for c in ("param", "width", "depth", *swept, "hp", "lr*", "95% interval (lr)", "at edge", "best loss"):
        table.add_column(c)
    for param, fit in doc["fits"].items():
        for p in fit["points"]:
            interval = p.get("interval")
            text = f"{2 ** interval[0]:.3g} – {2 ** interval[1]:.3g}" if interval else "-"
            lr = (
                lr_text(p["lr_star"], p.get("edge") if p.get("at_edge") else None)
                if p.get("lr_star")
                else "-"
            )
            best = f"{p['best_loss']:.4f}" if p.get("best_loss") is not None else "-"
            hp = ",".join(f"{k}={v}" for k, v in (p.get("hp") or {}).items()) or "-"
            table.add_row(param, str(p["width"]), str(p["depth"]), *(count_text(p[a]) for a in swept), hp, lr, text,
                          "yes" if p.get("at_edge") else "", best)  # fmt: skip
    console.print(table)
    for param, fit in doc["fits"].items():
        for axis, entries in fit.get("drift", {}).items():
            for d in entries:
                console.print(
                    f"{param} drift over {axis} {d.get('range')}: {_num(d.get('octaves'))} octaves -> [bold]{d.get('verdict')}[/] ({d.get('reason', '')})"
                )
        rec = fit.get("recommended")
        if rec and rec.get("lr"):
            for axis, e in rec.get("plane", {}).items():
                if axis in ("tokens", "batch"):
                    console.print(f"{param} {exponent_text(axis, e)} (one plane over {', '.join(rec['plane'])})",
                                  highlight=False, soft_wrap=True)  # fmt: skip
            base = {"base_width": doc["spec"]["base_width"], "base_depth": doc["spec"]["base_depth"]}
            at = reference_text(rec.get("reference") or {}) if swept else ""
            console.print(
                f"{param} recommended {recommendation_text({**rec, **base})}{at}",
                highlight=False,
                soft_wrap=True,
            )
    cost = doc.get("cost")
    if cost and cost.get("ratio") is not None:
        console.print(
            f"branched horizons: {count_text(cost['tokens_trained'])} tokens trained for runs that train "
            f"{count_text(cost['tokens_independent'])} independently ({cost['ratio']:.2f}x, {cost['branched_runs']} runs branched)",
            highlight=False, soft_wrap=True,
        )  # fmt: skip


def _num(x) -> str:
    return f"{x:+.2f}" if isinstance(x, (int, float)) else "-"
