"""Run a sweep on a SLURM cluster: ``mupx sweep --executor slurm``.

## SLURM

Run ``mupx sweep`` on a login node (it needs ``sbatch``, ``srun`` and ``sacct`` on PATH), in a folder that
the compute nodes share, with the same Python environment on them::

    mupx sweep --executor slurm --partition gpu --time-min 120 --array-parallelism 32 \\
        --optimizer muon --widths 256,512,1024 --lrs 2^-12:2^-4:0.5

Every run that is not finished becomes one element of a SLURM job array, submitted through submitit. The
element runs exactly what ``--executor local`` runs (``mupx train --out <run folder> ...``) as a child
process, its output in ``logs/<run id>.log``. ``mupx sweep`` stays in the foreground: it polls the jobs,
updates ``sweep.json`` as each run ends and fits at the end. Stopping it (Ctrl-C) cancels the jobs it
submitted that have not ended; rerunning the same command resumes (finished runs are kept, the rest run
again).

Flags and what they become:

- ``--partition P``: ``#SBATCH --partition=P`` (default: the cluster's default partition).
- ``--time-min M``: ``#SBATCH --time=M``, the limit per run, in minutes.
- ``--gpus-per-run G``: ``#SBATCH --gpus-per-node=G`` and ``--device cuda`` (G > 1 starts ``torchrun`` on
  the node). ``--gpus-per-run 0`` asks for no GPU: the run uses ``--device cpu`` (CPU-only clusters).
- ``--array-parallelism N``: ``#SBATCH --array=0-K%N``, at most N runs of the sweep at once.
- ``--dry-run``: print the sbatch script of the first array (and what its first element runs); submit
  nothing, create no ``slurm/`` folder. Works without SLURM installed.

Each array element also gets ``--job-name=mupx-<sweep name>``, ``--signal=USR2@90``, ``--open-mode=append``
and its own folder ``<sweep folder>/slurm/<array id>_<index>/`` for submitit's files (the pickled job,
its result, stdout/stderr). A job that fails (the run's own failure, an exception, a node failure, an
out-of-memory kill, ``scancel``) becomes a ``failed`` run in ``sweep.json`` with the reason; the sweep goes on.

Preemption and requeue: SLURM sends the job USR2 90 s before its time limit (``--signal``) and, where the
cluster is set up for it, before a preemption (SIGTERM, then USR2). submitit catches USR2 in the job's own
process, requeues the array element (``scontrol requeue``), asks the run to stop (SIGTERM: it finishes
its step, checkpoints and exits, within ``STOP_WAIT_S``) and exits; the requeued element calls
``resume_or_start(task)``, which continues the run from its newest checkpoint (``mupx train --resume``;
bit-identical on CPU), or starts it again when it has none; a run whose folder already holds a finished
result is kept. SLURM signals every process of the job: the run's own process ignores USR2, so that the
job's process decides, and checkpoints and stops on SIGTERM; a job whose run SIGTERM stopped reports no
result and waits for the USR2 or the kill that follows (a cluster that requeues preempted jobs itself
restarts the element the same way).

submitit cannot tell a time-out from a preemption: a USR2 that comes later than min(80% of the time limit,
the limit minus 10 minutes) counts as a time-out, and after one such requeue (``max_timeouts = 1``) the
next fails the run ("timed-out too many times"): a run that needs more than twice ``--time-min`` shows as
failed; raise ``--time-min`` (a rerun of the sweep resumes it from its checkpoint).
"""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import submitit
from submitit.core.utils import FailedJobError, UncompletedJobError
from submitit.slurm.slurm import _get_default_parameters, _make_sbatch_string

from ..errors import MupxError, choose
from ..io import atomic_write_json
from ..train import StopRequest
from .executors import Task, finish_unresulted, prepare_rundir, train_command
from .store import FINISHED, read_result

NEEDED_COMMANDS = ("sbatch", "srun", "sacct")  # submit, start the job step, read job states
STOP_WAIT_S = (
    60.0  # how long a run may take to checkpoint after SIGTERM, and a stopped job waits for the requeue
)
STOP_POLL_S = 0.1  # how often the wait loop looks at the stop flag (Ctrl-C, SIGTERM)


def _ignore_usr2() -> None:
    """In the run's child process: SLURM signals every process of a job, and SIGUSR2 (submitit's requeue
    signal) would kill the run before the job's own process acts on it. SIGTERM stays: the run may save."""
    signal.signal(signal.SIGUSR2, signal.SIG_IGN)


def resume_or_start(task: Task, device: str, gpus_per_run: int) -> dict | None:
    """Run one task inside its SLURM job (first start and requeue alike). Returns the run's result, or None
    when SIGTERM stopped the run (SLURM preempting or cancelling the job).

    A run folder holding a finished result is kept; an unfinished run resumes from its newest checkpoint
    (``prepare_rundir`` keeps it, ``train_command`` adds ``--resume``), else starts from an empty folder.
    """
    finished = read_result(task.run_dir)
    if finished and finished.get("status") in FINISHED:
        return finished
    prepare_rundir(task)
    env = dict(os.environ)
    if "SLURM_CPUS_PER_TASK" in env:
        env.setdefault("OMP_NUM_THREADS", env["SLURM_CPUS_PER_TASK"])
    attempt = int(env.get("SLURM_RESTART_COUNT") or 0) + 1
    with open(task.log, "w" if attempt == 1 else "a") as log:
        log.write(
            f"mupx: slurm job {submitit.JobEnvironment().job_id} attempt {attempt} on {socket.gethostname()}\n"
        )
        log.flush()
        proc = subprocess.Popen(
            train_command(task, device, gpus_per_run),
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            preexec_fn=_ignore_usr2,
        )
        try:
            returncode = proc.wait()
        finally:
            if (
                proc.poll() is None
            ):  # submitit's requeue handler raised out of wait(): the run checkpoints and ends
                proc.terminate()
                try:
                    proc.wait(timeout=STOP_WAIT_S)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
    result = read_result(task.run_dir)
    if returncode == -signal.SIGTERM or (result or {}).get("status") == "interrupted":
        return None
    return result or finish_unresulted(task, returncode)


class SlurmRun(submitit.helpers.Checkpointable):
    """One array element. Checkpointable: on SLURM's USR2 submitit requeues it unchanged."""

    def __init__(self, task: Task, device: str, gpus_per_run: int):
        self.task, self.device, self.gpus_per_run = task, device, gpus_per_run

    def __call__(self) -> dict:
        result = resume_or_start(self.task, self.device, self.gpus_per_run)
        if result is None:
            # Stopped by SIGTERM: report nothing. SLURM's USR2 (submitit requeues) or SIGKILL follows; if
            # neither does, the job ends without a result and the sweep records the run as failed.
            time.sleep(STOP_WAIT_S)
            raise SystemExit("mupx: the run was stopped by SIGTERM and the job was not requeued")
        return result


def _failed(task: Task, reason: str) -> dict:
    result = {"run_id": task.run_id, "status": "failed", "reason": reason[:500]}
    atomic_write_json(task.run_dir / "result.json", result)
    return result


def _error_line(error: Exception) -> str:
    """The last line of the traceback inside submitit's FailedJobError message (or the message itself)."""
    text = str(error)
    parts = text.split("-" * 22)
    lines = [ln.strip() for ln in (parts[1] if len(parts) > 2 else text).splitlines() if ln.strip()]
    return lines[-1] if lines else type(error).__name__


@dataclass
class SlurmExecutor:
    folder: Path  # the sweep folder; submitit's files go to <folder>/slurm/
    partition: str | None = None
    time_min: int = 60
    gpus_per_run: int = 1  # 0: CPU-only jobs
    array_parallelism: int = 64
    dry_run: bool = False
    cpus_per_task: int | None = None
    # more sbatch parameters, by submitit's names (account, qos, mem, constraint, ...)
    options: dict = field(default_factory=dict)
    max_timeouts: int = 1  # requeues after a (submitit-classified) time-out; see the module docs
    max_array_size: int = 1000  # SLURM's MaxArraySize is 1001 by default
    poll_s: float = 2.0  # how often result files are looked for
    sacct_every_s: float = 60.0  # job states (for jobs that end without a result) at least this often
    result_grace_s: float = 15.0  # how long an ended job's result may take to show on a shared filesystem

    def __post_init__(self):
        self.folder = Path(self.folder)
        if self.time_min < 1:
            raise MupxError(f"--time-min must be >= 1 minute, got {self.time_min}")
        if self.gpus_per_run < 0:
            raise MupxError(f"--gpus-per-run must be >= 0 (0: CPU-only jobs), got {self.gpus_per_run}")
        if self.array_parallelism < 1:
            raise MupxError(f"--array-parallelism must be >= 1, got {self.array_parallelism}")
        if self.partition is not None and not self.partition.strip():
            raise MupxError("--partition must not be empty")
        allowed = _get_default_parameters()
        for key in self.options:
            if key not in allowed:
                raise choose("slurm option", key, sorted(allowed))
        missing = [c for c in NEEDED_COMMANDS if shutil.which(c) is None]
        if missing and not self.dry_run:
            raise MupxError(
                f"--executor slurm needs {', '.join(missing)} on PATH (run on a SLURM login node; --dry-run shows the script)"
            )

    @property
    def device(self) -> str:
        return "cuda" if self.gpus_per_run > 0 else "cpu"

    def parameters(self) -> dict:
        """sbatch parameters, by submitit's SlurmExecutor names."""
        p = {
            "job_name": f"mupx-{self.folder.name}",
            "time": self.time_min,
            "array_parallelism": self.array_parallelism,
        }
        if self.partition:
            p["partition"] = self.partition
        if self.gpus_per_run > 0:
            p["gpus_per_node"] = self.gpus_per_run
        if self.cpus_per_task:
            p["cpus_per_task"] = self.cpus_per_task
        return {**p, **self.options}

    @property
    def submitit_folder(self) -> Path:
        return (self.folder / "slurm" / "%j").expanduser().absolute()

    def sbatch_script(self, tasks: list[Task]) -> str:
        """The sbatch script of the first array, as submitit writes it, and what its first element runs."""
        n = min(len(tasks), self.max_array_size)
        folder = self.submitit_folder
        command = " ".join(
            [shlex.quote(sys.executable), "-u -m submitit.core._submit", shlex.quote(str(folder))]
        )
        array = n if n > 1 else None  # submitit submits a single run as a plain job
        script = _make_sbatch_string(command=command, folder=folder, map_count=array, **self.parameters())
        arrays = -(-len(tasks) // self.max_array_size)
        first = shlex.join(train_command(_absolute(tasks[0]), self.device, self.gpus_per_run))
        return f"{script.rstrip()}\n\n# mupx: {len(tasks)} runs in {arrays} job array(s); element 0 runs:\n# {first}\n"

    def run(self, tasks: list[Task], on_done: Callable[[Task, dict], None]) -> None:
        if not tasks:
            return
        if self.dry_run:  # print, and end the command: nothing will ever finish
            sys.__stdout__.write(self.sbatch_script(tasks))
            sys.__stdout__.flush()
            raise SystemExit(0)
        executor = submitit.SlurmExecutor(folder=self.submitit_folder, max_num_timeout=self.max_timeouts)
        executor.update_parameters(**self.parameters())
        pending: list[tuple[submitit.Job, Task]] = []
        # Ctrl-C (SIGINT) and SIGTERM only set a flag, which the loops below check: the KeyboardInterrupt is
        # raised here, never inside submitit's or subprocess's code, where it could be caught and lost
        # (the sweep then ran on and exited 0).
        with StopRequest() as stop:
            try:
                for start in range(0, len(tasks), self.max_array_size):
                    chunk = tasks[start : start + self.max_array_size]
                    try:
                        jobs = executor.submit_array(
                            [SlurmRun(_absolute(t), self.device, self.gpus_per_run) for t in chunk]
                        )
                    except FailedJobError as e:  # sbatch refused (bad partition, account, limits...)
                        raise MupxError(f"sbatch failed: {_error_line(e)}") from None
                    pending += zip(jobs, chunk, strict=True)
                    _raise_if_stopped(stop)
                self._wait(pending, on_done, stop)
            finally:
                if pending:  # interrupted: the jobs of this sweep end with it
                    subprocess.call(
                        ["scancel", *(job.job_id for job, _ in pending)], stdout=subprocess.DEVNULL
                    )

    def _wait(self, pending: list, on_done: Callable[[Task, dict], None], stop: StopRequest) -> None:
        """Poll until every job ended, calling ``on_done`` as each does. Removes ended jobs from ``pending``;
        raises KeyboardInterrupt once ``stop`` saw a signal."""
        ended_at: dict[str, float] = {}
        last_sacct = time.monotonic()
        while pending:
            deadline = time.monotonic() + self.poll_s
            while time.monotonic() < deadline and stop.signal is None:
                time.sleep(min(STOP_POLL_S, self.poll_s))
            _raise_if_stopped(stop)
            force = time.monotonic() - last_sacct >= self.sacct_every_s
            if force:
                last_sacct = time.monotonic()
            for entry in list(pending):
                job, task = entry
                done = job.done(force_check=force)
                force = False  # one sacct call refreshes every job
                if not done:
                    ended_at.pop(job.job_id, None)  # requeued, or not ended after all
                    continue
                result = self._outcome(job, task, ended_at)
                if result is not None:
                    pending.remove(entry)
                    on_done(task, result)

    def _outcome(self, job: submitit.Job, task: Task, ended_at: dict[str, float]) -> dict | None:
        """The result of an ended job, or None while a result may still appear."""
        if job.paths.result_pickle.exists():
            try:
                return job.result()
            except UncompletedJobError as e:  # the job raised, or submitit gave up requeueing it
                return _failed(task, f"slurm job {job.job_id} failed: {_error_line(e)}")
        first_seen = ended_at.setdefault(job.job_id, time.monotonic())
        if time.monotonic() - first_seen < self.result_grace_s:
            return None
        return _failed(
            task,
            f"slurm job {job.job_id} ended {job.state} without a result; see logs/{task.log.name} and slurm/{job.job_id}/",
        )


def _raise_if_stopped(stop: StopRequest) -> None:
    if stop.signal is not None:
        raise KeyboardInterrupt(stop.signal)


def _absolute(task: Task) -> Task:
    """The task with absolute paths: the job may start in another folder."""
    return replace(task, run_dir=task.run_dir.absolute(), log=task.log.absolute())
