"""``mupx sweep``: expand the grid, run what has not finished, fit, and keep ``sweep.json`` current.

Re-running the same command resumes: runs whose folder holds a completed or diverged result are skipped,
failed and unfinished runs run again. In ``auto`` lr mode the grid grows in rounds until every series'
optimum is bracketed and its fit window (±1 octave) filled at half-octave steps.

**Horizons share runs.** In a sweep over two or more horizons (warmup-stable-decay with one warmup in
steps, :mod:`mupx.sweep.grid`) the runs of one (param, width, depth, hp, batch, lr, seed) differ only in
``train.steps``, and their schedules agree until a horizon's decay starts. So only the longest horizon
(the *trunk*) trains from the start: it keeps a checkpoint at each shorter horizon's decay start
(``train.branch_points``, outside the checkpoint rotation), and each shorter horizon is a *branch*: its
own sweep point and run folder, with the same config and run id as an independent run of that horizon,
that loads the trunk's checkpoint (``train.branch_from``) and trains only its decay, ending bit-identical
to the independent run on CPU (tests/test_horizon.py). Rounds: the trunks (and everything else) first,
then each branch whose trunk has run (a branch whose trunk left no checkpoint — it diverged or failed
before the branch point, or is not in the grid — runs independently instead; a branch with a checkpoint
of its own resumes from it). A branch checkpoint is deleted once its branch finished. ``sweep.json``'s
``cost`` counts the tokens trained against the tokens the same runs would have trained independently.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

from omegaconf import OmegaConf

from .. import checkpoint
from ..config import compose, to_dict
from ..errors import MupxError
from ..fit import WINDOW_OCTAVES, fit_sweep
from ..runconfig import from_resolved, result_keys
from ..scaling.plan import build_plan
from ..schedule import Schedule
from .executors import Task
from .grid import SweepSpec
from .lock import SweepLock
from .store import FINISHED, read_result, read_spec, record, spec_path, write_spec, write_sweep_json


def check_plan(cfg):
    """Build the series' μP plan once, so a shape the plan refuses (a base width that is not a multiple of
    the head dim, ...) is a one-line error before anything runs, not a failure of every run."""
    return build_plan(
        cfg.model, cfg.param, cfg.optimizer, cfg.options, cfg.data.vocab_size, cfg.train.seq_len
    )


def same_training(a, b) -> bool:
    """Whether two plans train identically: the same tensors, init, per-group settings and forward
    multipliers (μP and SP at the base shape, where every μP multiplier is 1)."""
    fields = ("name", "shape", "update", "init", "init_std", "fwd_mult")
    rows = [[(tuple(getattr(r, f) for f in fields), r.group_settings()) for r in p.rows] for p in (a, b)]
    return rows[0] == rows[1] and a.multipliers == b.multipliers


def completed(spec: SweepSpec) -> SweepSpec:
    """A spec written before mupx swept batches names none: its runs' batch and sequence length are the
    composed config's."""
    if spec.batches:
        return spec
    train = to_dict(compose([f"model={spec.model}", f"optimizer={spec.optimizer}", *spec.overrides]))["train"]
    return dataclasses.replace(spec, batches=(train["batch"],), seq_len=train["seq_len"])


@dataclasses.dataclass(frozen=True)
class Branch:
    """A shorter horizon's run and where it branches off its trunk: the trunk's run, the checkpoint the
    trunk keeps at the branch point, and that step."""

    task: Task
    trunk: Task
    path: Path
    step: int


class Sweep:
    def __init__(self, spec: SweepSpec, folder: Path, command: list[str]):
        self.spec, self.folder, self.command = completed(spec), Path(folder), command
        self.tasks: dict[tuple[str, str], Task] = {}  # by (param, run id): a run may serve two params
        self.results: dict[str, dict | None] = {}
        self.branches: dict[str, Branch] = {}  # by the branch's run id
        self._made: dict[tuple, Task] = {}
        self._composed: dict[tuple, dict] = {}
        self._reference_plans: dict[tuple, object] = {}

    # --- the grid ----------------------------------------------------------------------------------
    def task(self, series: tuple, lr: float, seed: int) -> Task:
        key = (series, lr, seed)
        if key not in self._made:
            self._made[key] = self._make_task(series, lr, seed)
        return self._made[key]

    def _make_task(self, series: tuple, lr: float, seed: int) -> Task:
        param, width, depth, combo, steps, batch = series
        twin = self._twin(series)
        if twin is not None:  # the same runs as the twin series: run once, recorded under both params
            task = self.task(twin, lr, seed)
            return dataclasses.replace(task, axes={**task.axes, "param": param})
        overrides = self.spec.overrides_for(*series, lr, seed)
        if series not in self._composed:  # one Hydra compose per series; lr and seed are set directly
            self._composed[series] = to_dict(compose(overrides))
            check_plan(from_resolved(self._composed[series]))
        resolved = copy.deepcopy(self._composed[series])
        wandb = resolved["tracking"]["wandb"]
        if (
            wandb["mode"] != "disabled" and wandb["group"] is None
        ):  # a sweep's wandb runs: grouped by its name
            overrides = [*overrides, f"tracking.wandb.group='{self.spec.name}'"]
            resolved["tracking"]["wandb"]["group"] = self.spec.name
        resolved["optimizer"]["lr"], resolved["seed"] = lr, seed
        horizons = self.spec.horizon_steps(batch) if self.spec.horizon_sweep else [steps]
        schedule = Schedule.of(from_resolved(resolved).train)
        points = [dataclasses.replace(schedule, steps=n).decay_start for n in horizons if n < steps]
        if points:  # the trunk: a checkpoint at each shorter horizon's decay start
            overrides = [*overrides, f"train.branch_points=[{','.join(map(str, points))}]"]
            resolved["train"]["branch_points"] = points
        cfg = from_resolved(resolved)  # validates every run before anything runs
        run_dir = self.folder / "runs" / cfg.run_id
        axes = {"param": param, "width": width, "depth": depth, "steps": steps,
                "tokens": steps * batch * self.spec.seq_len, "batch": batch, "lr": lr, "seed": seed, "hp": dict(combo)}  # fmt: skip
        self._check_folder(run_dir, cfg.resolved)
        task = Task(cfg.run_id, overrides, axes, run_dir, self.folder / "logs" / f"{cfg.run_id}.log")
        if steps < max(horizons):  # a branch off the longest horizon's run
            trunk = self.task((*series[:4], max(horizons), batch), lr, seed)
            step = schedule.decay_start
            self.branches[task.run_id] = Branch(
                task, trunk, checkpoint.branch_path(trunk.run_dir, step).resolve(), step
            )
        return task

    def _twin(self, series: tuple) -> tuple | None:
        """For an SP series whose plan equals the μP series' at the same shape (the base shape), that μP
        series; else None."""
        param, *rest = series
        if param != "sp" or "mup" not in self.spec.params:
            return None
        twin = ("mup", *rest)
        return twin if same_training(self._reference_plan(series), self._reference_plan(twin)) else None

    def _reference_plan(self, series: tuple):
        """The series' plan at one reference lr and seed, the same for every series: the plans' per-group lrs
        then compare, whatever lr each series' first run has (an auto grid's first μP run is not at 1e-3)."""
        if series not in self._reference_plans:
            overrides = self.spec.overrides_for(*series, self.spec.lrs[0] if self.spec.lrs else 1e-3, 0)
            self._reference_plans[series] = check_plan(from_resolved(to_dict(compose(overrides))))
        return self._reference_plans[series]

    def _check_folder(self, run_dir: Path, resolved: dict) -> None:
        """A run folder holding a different config is refused, never mixed into the results."""
        saved = run_dir / "config.yaml"
        if saved.exists():
            try:
                theirs = OmegaConf.to_container(OmegaConf.load(saved), resolve=True)
            except Exception:
                theirs = None  # unreadable: the run did not finish writing; it reruns
            if theirs is not None and result_keys(theirs) != result_keys(resolved):
                raise MupxError(
                    f"run folder {run_dir} holds a run with a different config; refusing to mix it into this sweep"
                )

    def lrs_for(self, series: tuple) -> list[float]:
        """Grid mode: the spec's list. Auto mode: the points the results so far call for.

        Auto points lie on a lattice of ``resolution`` octaves around the centre (integer steps ``j``,
        exact floats): the coarse grid every ``1 / resolution`` steps, extended an octave past an edge
        optimum, then every lattice point within the fit's window (``WINDOW_OCTAVES`` either side of the
        series' argmin, mupx.fit) is run, again after the argmin moves, so the quadratic always sees a full
        window (an argmin refined to a half-octave point once left its window one point short)."""
        if self.spec.lrs is not None:
            return list(self.spec.lrs)
        auto = self.spec.auto
        c, per_octave = math.log2(auto.center), round(1 / auto.resolution)
        half = auto.coarse // 2
        points = {per_octave * i for i in range(-half, auto.coarse - half)}
        lo_limit = per_octave * (-half - auto.max_extend)
        hi_limit = per_octave * (auto.coarse - half - 1 + auto.max_extend)
        reach = round(WINDOW_OCTAVES * per_octave)
        while True:
            means = self._series_losses(series, {c + j * auto.resolution for j in points})
            if means is None:
                break  # results pending: this round is not over
            js = sorted(points)
            best = min(js, key=lambda j: means[c + j * auto.resolution])
            if best == js[0] and best - per_octave >= lo_limit:
                new = {best - per_octave}
            elif best == js[-1] and best + per_octave <= hi_limit:
                new = {best + per_octave}
            else:
                new = {j for j in range(best - reach, best + reach + 1) if lo_limit <= j <= hi_limit}
            if not new - points:
                break
            points |= new
        return [2.0 ** (c + j * auto.resolution) for j in sorted(points)]

    def _series_losses(self, series: tuple, points: set[float]) -> dict[float, float] | None:
        means = {}
        for x in points:
            losses = []
            for seed in self.spec.seeds:
                t = self.task(series, 2.0**x, seed)
                r = self.results.get(t.run_id) or read_result(t.run_dir)
                if r is None or r["status"] not in FINISHED:
                    return None
                losses.append(record(t.run_id, t.axes, r)["loss"])
            finite = [v for v in losses if v is not None and math.isfinite(v)]
            means[x] = sum(finite) / len(finite) if finite else math.inf
        return means

    def all_tasks(self) -> list[Task]:
        tasks = []
        for series in self.spec.series():
            for lr in self.lrs_for(series):
                for seed in self.spec.seeds:
                    tasks.append(self.task(series, lr, seed))
        for t in tasks:
            self.tasks[(t.axes["param"], t.run_id)] = t
        return tasks

    # --- running -----------------------------------------------------------------------------------
    def records(self) -> list[dict]:
        return [
            record(t.run_id, t.axes, self.results.get(t.run_id) or read_result(t.run_dir))
            for t in self.tasks.values()
        ]

    def write(self) -> dict:
        runs = self.records()
        return write_sweep_json(
            self.folder,
            self.spec,
            runs,
            fit_sweep(runs, tolerance_octaves=self.spec.tolerance),
            self.command,
            self.cost(),
        )

    def cost(self) -> dict | None:
        """A horizon sweep's saving: the tokens its finished runs trained (a branch only its decay) against
        the tokens the same runs would have trained independently; None for one horizon."""
        if not self.spec.horizon_sweep:
            return None
        trained = independent = branched = 0
        for task in {t.run_id: t for t in self.tasks.values()}.values():
            result = self.results.get(task.run_id) or read_result(task.run_dir)
            if not result or result["status"] not in FINISHED:
                continue
            independent += result["tokens"]
            trained += result.get("tokens_trained", result["tokens"])
            branched += result.get("branch") is not None
        return {"tokens_trained": trained, "tokens_independent": independent, "branched_runs": branched,
                "ratio": trained / independent if independent else None}  # fmt: skip

    def launchable(self, task: Task, grid: set[str], attempted: set[str]) -> Task | None:
        """The task to run now, or None while it waits: a branch branches off its trunk's checkpoint once
        the trunk has run; without that checkpoint (the trunk ended before the branch point, or is not in
        the grid) it runs independently; with a checkpoint of its own it resumes from it."""
        branch = self.branches.get(task.run_id)
        if branch is None or checkpoint.has_checkpoint(task.run_dir):
            return task
        if branch.path.exists():
            return dataclasses.replace(task, overrides=[*task.overrides, f"train.branch_from={branch.path}"])
        trunk = branch.trunk
        if trunk.run_id not in grid or trunk.run_id in attempted or _finished(trunk):
            return task
        return None

    def drop_branch_checkpoints(self, grid: set[str], final: bool) -> None:
        """Delete the trunks' branch checkpoints whose branch finished (and, at the end, those no branch of
        the grid uses)."""
        for run_id, branch in self.branches.items():
            if branch.path.exists() and (_finished(branch.task) or (final and run_id not in grid)):
                branch.path.unlink()

    def run(self, executor, progress: Callable[[str, dict], None] | None = None) -> dict:
        """Run rounds until nothing is left to run; returns the final sweep.json document. A round runs
        every unfinished run that can run now (a branch waits for its trunk's round) and was not tried in
        an earlier round of this call: a run that fails is retried by the next ``mupx sweep``, not here."""
        with SweepLock(self.folder) as lock:
            if lock.took_over is not None and progress:
                progress("stale-lock", lock.took_over)
            if spec_path(self.folder).exists() and read_spec(self.folder) != self.spec:
                if progress:
                    progress("spec-changed", {})
            write_spec(self.folder, self.spec)
            attempted: set[str] = set()
            while True:
                unique = list(
                    {t.run_id: t for t in self.all_tasks()}.values()
                )  # a twin series' runs run once
                grid = {t.run_id for t in unique}
                todo = [t for t in unique if not _finished(t)]
                ready = [
                    r
                    for t in todo
                    if t.run_id not in attempted and (r := self.launchable(t, grid, attempted))
                ]
                self.drop_branch_checkpoints(grid, final=not ready)
                if progress:
                    progress("round", {"total": len(unique), "todo": len(todo), "records": self.records()})
                if not ready:
                    break
                attempted |= {t.run_id for t in ready}

                def done(task: Task, result: dict) -> None:
                    self.results[task.run_id] = result
                    doc = self.write()
                    if progress:
                        progress("done", {"task": task, "result": result, "records": doc["runs"]})

                executor.run(ready, done)
            return self.write()


def _finished(task: Task) -> bool:
    return (read_result(task.run_dir) or {}).get("status") in FINISHED


def best_by_width(records: list[dict]) -> dict[tuple, float]:
    """Lowest finished loss so far per (param, width, depth): shown on the progress bar."""
    best: dict[tuple, float] = defaultdict(lambda: math.inf)
    for r in records:
        if r["loss"] is not None:
            key = (r["param"], r["width"], r["depth"])
            best[key] = min(best[key], r["loss"])
    return dict(best)
