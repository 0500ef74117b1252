"""Where sweep runs execute. Each run is ``mupx train`` in its own process (a crash or OOM ends that run,
not the sweep).

- ``LocalExecutor``: N concurrent processes on this machine. With GPUs, each run is pinned with
  ``CUDA_VISIBLE_DEVICES`` (``runs_per_gpu`` small runs may share one GPU; a run needing
  ``gpus_per_run`` > 1 GPUs is started with ``torchrun``). On CPU, each run gets a thread budget
  (cores / jobs) through ``OMP_NUM_THREADS``.
- ``SlurmExecutor`` (slurm.py): the same command as a SLURM job array through submitit.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .. import checkpoint
from ..distributed import torchrun_command
from ..errors import MupxError
from ..io import atomic_write_json
from .store import read_result


@dataclass
class Task:
    run_id: str
    overrides: list[str]
    axes: dict
    run_dir: Path
    log: Path


def train_command(task: Task, device: str, gpus_per_run: int = 1) -> list[str]:
    args = ["train", "--out", str(task.run_dir), "--quiet", "--device", device]
    if checkpoint.has_checkpoint(task.run_dir):
        args.append("--resume")
    args += [a for o in task.overrides for a in ("-s", o)]
    if gpus_per_run > 1:
        return torchrun_command(gpus_per_run, args)
    return [sys.executable, "-m", "mupx.cli", *args]


def finish_unresulted(task: Task, returncode: int) -> dict:
    """A run process that ended without writing result.json failed: record why, from its log."""
    tail = ""
    if task.log.exists():
        lines = [ln for ln in task.log.read_text(errors="replace").splitlines() if ln.strip()]
        tail = lines[-1].strip() if lines else ""
    result = {"run_id": task.run_id, "status": "failed", "reason": f"exit code {returncode}: {tail}"[:500]}
    atomic_write_json(task.run_dir / "result.json", result)
    return result


def prepare_rundir(task: Task) -> None:
    """A run that did not finish continues from its newest checkpoint, or starts again from an empty
    folder when it has none (its partial files are the sweep's own)."""
    if task.run_dir.exists() and not checkpoint.has_checkpoint(task.run_dir):
        shutil.rmtree(task.run_dir)
    task.log.parent.mkdir(parents=True, exist_ok=True)


@dataclass
class LocalExecutor:
    jobs: int
    gpus: list[str] = field(default_factory=list)
    runs_per_gpu: int = 1
    gpus_per_run: int = 1

    def __post_init__(self):
        if self.jobs < 1:
            raise MupxError(f"--jobs must be >= 1, got {self.jobs}")
        if self.runs_per_gpu < 1 or self.gpus_per_run < 1:
            raise MupxError("--runs-per-gpu and --gpus-per-run must be >= 1")
        if self.gpus and self.gpus_per_run > len(self.gpus):
            raise MupxError(f"--gpus-per-run {self.gpus_per_run} but only {len(self.gpus)} GPUs are visible")
        if not self.gpus and self.gpus_per_run > 1:
            raise MupxError(f"--gpus-per-run {self.gpus_per_run} needs GPUs, and none are visible")

    def slots(self) -> list[dict]:
        """Environment and device of each concurrent run slot."""
        if not self.gpus:
            threads = max(1, (os.cpu_count() or 1) // self.jobs)
            env = {
                "OMP_NUM_THREADS": str(threads),
                "MKL_NUM_THREADS": str(threads),
                "CUDA_VISIBLE_DEVICES": "",
            }
            return [{"env": env, "device": "cpu"} for _ in range(self.jobs)]
        groups = [
            self.gpus[i : i + self.gpus_per_run]
            for i in range(0, len(self.gpus) - self.gpus_per_run + 1, self.gpus_per_run)
        ]
        per = self.runs_per_gpu if self.gpus_per_run == 1 else 1
        slots = [
            {"env": {"CUDA_VISIBLE_DEVICES": ",".join(g)}, "device": "cuda"}
            for g in groups
            for _ in range(per)
        ]
        return slots[: self.jobs] if self.jobs < len(slots) else slots

    def run(self, tasks: list[Task], on_done: Callable[[Task, dict], None]) -> None:
        queue, free = deque(tasks), deque(self.slots())
        active: list[tuple[subprocess.Popen, Task, dict, object]] = []
        try:
            while queue or active:
                while queue and free:
                    task, slot = queue.popleft(), free.popleft()
                    prepare_rundir(task)
                    log = open(task.log, "w")
                    env = {**os.environ, **slot["env"]}
                    proc = subprocess.Popen(
                        train_command(task, slot["device"], self.gpus_per_run),
                        stdout=log,
                        stderr=subprocess.STDOUT,
                        env=env,
                    )
                    active.append((proc, task, slot, log))
                time.sleep(0.1)
                for entry in list(active):
                    proc, task, slot, log = entry
                    if proc.poll() is None:
                        continue
                    log.close()
                    active.remove(entry)
                    free.append(slot)
                    result = read_result(task.run_dir) or finish_unresulted(task, proc.returncode)
                    on_done(task, result)
        finally:
            for proc, *_ in active:
                proc.terminate()
            for proc, _, _, log in active:
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                log.close()


def visible_gpus() -> list[str]:
    """GPU ids this process may use (CUDA_VISIBLE_DEVICES if set), or [] without CUDA."""
    try:
        import torch

        n = torch.cuda.device_count()
    except Exception:
        return []
    if n == 0:
        return []
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    ids = [v.strip() for v in env.split(",") if v.strip()] if env else [str(i) for i in range(n)]
    return ids[:n]
