"""Where sweep runs execute. Each run is ``mupx train`` outside the sweep's process (a crash or OOM ends
that run, not the sweep).

- ``LocalExecutor``: N concurrent run slots on this machine, each a warm worker process
  (:mod:`mupx.sweep.worker`) that runs its slot's runs one after another through the same ``mupx train``
  code, started once; a worker that dies takes only its current run with it and is replaced. With GPUs,
  each slot is pinned with ``CUDA_VISIBLE_DEVICES`` (``runs_per_gpu`` small runs may share one GPU); a
  run needing ``gpus_per_run`` > 1 GPUs is a fresh ``torchrun`` process per run. On CPU, each slot gets
  a thread budget through ``OMP_NUM_THREADS``: cores / jobs, capped by an ``OMP_NUM_THREADS`` already set
  (a machine shared with other work, e.g. a test suite on several workers, asks for fewer threads that way;
  more threads than free cores make OpenMP spin-wait).
- ``SlurmExecutor`` (slurm.py): the same command as a SLURM job array through submitit.
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import subprocess
import sys
import threading
import time
import weakref
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


def train_args(task: Task, device: str) -> list[str]:
    """The ``mupx train`` arguments of one run (``--resume`` when it left a checkpoint)."""
    args = ["train", "--out", str(task.run_dir), "--quiet", "--device", device]
    if checkpoint.has_checkpoint(task.run_dir):
        args.append("--resume")
    return args + [a for o in task.overrides for a in ("-s", o)]


def train_command(task: Task, device: str, gpus_per_run: int = 1) -> list[str]:
    """The run as a command line of its own process (torchrun for several GPUs)."""
    args = train_args(task, device)
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
    _slots: list[dict] | None = field(default=None, init=False, repr=False)

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
            asked = os.environ.get("OMP_NUM_THREADS", "")
            if asked.isdigit() and int(asked) >= 1:
                threads = min(threads, int(asked))
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
        """Run ``tasks`` in the slots, calling ``on_done`` as each ends. The slots' warm workers stay up for
        the next call (a sweep's next round); they end with this executor (or when this process exits,
        since their input closes). An interruption stops the runs, which checkpoint, and the workers."""
        if self._slots is None:
            self._slots = self.slots()
            weakref.finalize(self, close_workers, self._slots)
        todo, free = deque(tasks), deque(self._slots)
        active: list[tuple[RunProcess, Task, dict]] = []
        try:
            while todo or active:
                while todo and free:
                    task, slot = todo.popleft(), free.popleft()
                    prepare_rundir(task)
                    if self.gpus_per_run > 1:
                        proc = FreshProcess(
                            train_command(task, slot["device"], self.gpus_per_run), slot["env"]
                        )
                    else:
                        if slot.get("worker") is None or not slot["worker"].alive():
                            slot["worker"] = WarmWorker(slot["env"])
                        proc = slot["worker"]
                    proc.start(train_args(task, slot["device"]), task.log)
                    active.append((proc, task, slot))
                time.sleep(0.05)
                for entry in list(active):
                    proc, task, slot = entry
                    code = proc.returncode()
                    if code is None:
                        continue
                    active.remove(entry)
                    free.append(slot)
                    result = read_result(task.run_dir) or finish_unresulted(task, code)
                    on_done(task, result)
        except BaseException:
            for proc, *_ in active:
                proc.terminate()  # the run checkpoints and records itself as interrupted
            close_workers(self._slots)
            for proc, *_ in active:
                proc.close()
            raise


def close_workers(slots: list[dict]) -> None:
    for slot in slots:
        if slot.get("worker") is not None:
            slot["worker"].close()


class FreshProcess:
    """One run in a process of its own (torchrun runs)."""

    def __init__(self, command: list[str], env: dict):
        self.command, self.env = command, env
        self.proc: subprocess.Popen | None = None

    def start(self, args: list[str], log: Path) -> None:
        with open(log, "w") as f:
            self.proc = subprocess.Popen(
                self.command, stdout=f, stderr=subprocess.STDOUT, env={**os.environ, **self.env}
            )

    def returncode(self) -> int | None:
        return self.proc.poll()

    def terminate(self) -> None:
        self.proc.terminate()

    def close(self) -> None:
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


class WarmWorker:
    """A :mod:`mupx.sweep.worker` process that runs one slot's runs one after another."""

    def __init__(self, env: dict):
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "mupx.sweep.worker"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            env={**os.environ, **env}, text=True,
        )  # fmt: skip
        self.replies: queue.SimpleQueue = queue.SimpleQueue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.replies.put(json.loads(line)["code"])

    def alive(self) -> bool:
        return self.proc.poll() is None

    def start(self, args: list[str], log: Path) -> None:
        self.proc.stdin.write(json.dumps({"argv": args, "log": str(log)}) + "\n")
        self.proc.stdin.flush()

    def returncode(self) -> int | None:
        """The current run's exit status once it ended (the worker's own when it died during the run)."""
        try:
            return self.replies.get_nowait()
        except queue.Empty:
            pass
        if self.proc.poll() is None:
            return None
        try:  # a reply written just before the worker ended
            return self.replies.get(timeout=1)
        except queue.Empty:
            return self.proc.returncode or 1

    def terminate(self) -> None:
        if self.alive():
            self.proc.terminate()

    def close(self) -> None:
        """End of input: the worker exits after its current run (killed if it does not within 10 s)."""
        if self.proc.stdin and not self.proc.stdin.closed:
            try:
                self.proc.stdin.close()
            except OSError:  # it is gone already
                pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


RunProcess = FreshProcess | WarmWorker


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
