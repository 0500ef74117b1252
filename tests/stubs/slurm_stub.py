"""A stand-in for SLURM on one machine, for tests: ``sbatch``, ``srun``, ``sacct``, ``scancel`` and
``scontrol`` in one module, enough of each for submitit (and so ``mupx sweep --executor slurm``).

    python tests/stubs/slurm_stub.py install BIN    # writes BIN/sbatch, BIN/srun, ... (put BIN on PATH)

Everything lives in the folder ``$STUB_SLURM_DIR``:

- ``calls.jsonl``: one line per command called (argv; sbatch adds its ``#SBATCH`` options, job id, script).
- ``arrays/<A>.json``: a submitted array; ``arrays/<A>.end.json`` when it ended (``max_running``: most
  elements that ran at once, to check the ``%N`` throttle).
- ``tasks/<A>_<i>.json`` (``tasks/<A>.json`` for a plain job): each element's state (PENDING, RUNNING, COMPLETED, FAILED, CANCELLED,
  OUT_OF_MEMORY) and restart count, which ``sacct`` reports.

``sbatch`` copies the script, prints ``Submitted batch job <A>`` and leaves a background scheduler that runs
the elements (``bash script`` with SLURM_JOB_ID, SLURM_ARRAY_JOB_ID, SLURM_ARRAY_TASK_ID,
SLURM_RESTART_COUNT, ...), at most N at once for ``--array=0-M%N``. ``srun`` starts the job step in its own
process group (the processes SLURM would signal). ``scancel --signal SIG`` signals a step;
``scancel`` cancels; ``scontrol requeue`` makes the element run again when its step exits, as SLURM
does. The partition ``invalid`` is refused, as sbatch refuses an unknown partition.

Faults, from the environment of the ``sbatch`` call (array element indices; a fault comes once the step
has started a child process):

- ``STUB_SLURM_PREEMPT=0,2,2``: SIGTERM then SIGUSR2 to the step, as SLURM does before preemption (and
  as submitit's own ``job._interrupt()`` does); an index listed k times is preempted in each of its first
  k attempts.
- ``STUB_SLURM_OOM=1``: SIGKILL to the step; the element ends OUT_OF_MEMORY.
- ``STUB_SLURM_FAULT_WAIT=0:PATH``: element 0's first fault waits until PATH exists (e.g. the run's
  ``metrics.jsonl``, so that a preemption comes mid-training).
"""

from __future__ import annotations

import fcntl
import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

COMMANDS = ("sbatch", "srun", "sacct", "scancel", "scontrol")
DONE = ("COMPLETED", "FAILED", "CANCELLED", "OUT_OF_MEMORY")


def state_dir() -> Path:
    return Path(os.environ["STUB_SLURM_DIR"])


def write_json(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(obj))
    os.replace(tmp, path)


def read_json(path: Path, default=None):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return default


def log_call(entry: dict) -> None:
    with open(state_dir() / "calls.jsonl", "a") as f:
        f.write(json.dumps({**entry, "time": time.time()}) + "\n")


def indices(env_name: str) -> list[int]:
    return [int(v) for v in os.environ.get(env_name, "").split(",") if v.strip()]


# --- sbatch and its scheduler -------------------------------------------------------------------


def sbatch(argv: list[str]) -> int:
    script = Path(argv[-1])
    text = script.read_text()
    options = {}
    for line in text.splitlines():
        if line.startswith("#SBATCH --"):
            key, _, value = line[len("#SBATCH --") :].partition("=")
            options[key] = shlex.split(value)[0] if value else True
    root = state_dir()
    root.mkdir(parents=True, exist_ok=True)
    if options.get("partition") == "invalid":
        print("sbatch: error: invalid partition specified: invalid", file=sys.stderr)
        print("sbatch: error: Batch job submission failed: Invalid partition name specified", file=sys.stderr)
        return 1
    with open(root / "counter", "a+") as f:  # job ids, unique across concurrent sbatch calls
        fcntl.flock(f, fcntl.LOCK_EX)
        f.seek(0)
        job_id = int(f.read().strip() or 1000) + 1
        f.seek(0)
        f.truncate()
        f.write(str(job_id))
    copy = root / "scripts" / f"{job_id}.sh"
    copy.parent.mkdir(exist_ok=True)
    copy.write_text(text)
    is_array = "array" in options  # submitit submits a single run as a plain job
    span, _, throttle = str(options.get("array", "0-0")).partition("%")
    first, _, last = span.partition("-")
    n = int(last or first) + 1
    array = {"n": n, "throttle": int(throttle or n), "cwd": os.getcwd(), "is_array": is_array}
    write_json(root / "arrays" / f"{job_id}.json", array)
    for i in range(n):
        write_json(
            root / "tasks" / f"{element(job_id, i, is_array)}.json", {"state": "PENDING", "restarts": 0}
        )
    log_call({"cmd": "sbatch", "argv": argv, "options": options, "job_id": str(job_id), "script": str(copy)})
    subprocess.Popen(
        [sys.executable, __file__, "_schedule", str(job_id)],
        start_new_session=True,
        stdin=subprocess.DEVNULL,
        stdout=open(root / "arrays" / f"{job_id}.scheduler.log", "w"),
        stderr=subprocess.STDOUT,
    )
    print(f"Submitted batch job {job_id}")
    return 0


def element(job: int, index: int, is_array: bool) -> str:
    """An element's name as sacct shows it: A_i in an array, A for a plain job."""
    return f"{job}_{index}" if is_array else str(job)


def expand(pattern: str, env: dict) -> str:
    """sbatch/srun file name patterns: %A array id, %a index, %j job id, %t task rank."""
    for key, var in (("%A", "SLURM_ARRAY_JOB_ID"), ("%a", "SLURM_ARRAY_TASK_ID"), ("%j", "SLURM_JOB_ID")):
        pattern = pattern.replace(key, env.get(var, ""))
    return pattern.replace("%t", "0")


def schedule(job: int) -> None:
    """Run the array's elements, at most ``throttle`` at once; requeue and inject faults as asked."""
    root = state_dir()
    array = read_json(root / "arrays" / f"{job}.json")
    options = next(c["options"] for c in calls() if c["cmd"] == "sbatch" and c["job_id"] == str(job))
    script = root / "scripts" / f"{job}.sh"
    preempt, oom = indices("STUB_SLURM_PREEMPT"), indices("STUB_SLURM_OOM")
    pending, running, max_running, injected = list(range(array["n"])), {}, 0, set()  # injected: (i, attempt)

    def name(i: int) -> str:
        return element(job, i, array["is_array"])

    def task_file(i: int) -> Path:
        return root / "tasks" / f"{name(i)}.json"

    def start(i: int) -> None:
        info = read_json(task_file(i))
        env = {**os.environ, "SLURM_JOB_ID": str(job)}
        if array["is_array"]:
            env["SLURM_JOB_ID"] = f"{job}{i:04d}"  # each element has a job id of its own
            env["SLURM_ARRAY_JOB_ID"], env["SLURM_ARRAY_TASK_ID"] = str(job), str(i)
            env["SLURM_ARRAY_TASK_COUNT"] = str(array["n"])
        env["SLURM_RESTART_COUNT"] = str(info["restarts"])
        env["SLURM_JOB_NUM_NODES"], env["SLURM_JOB_NODELIST"] = "1", "localhost"
        env["SLURM_JOB_PARTITION"] = str(options.get("partition", "default"))
        env["SLURM_SUBMIT_DIR"] = array["cwd"]
        out = Path(expand(options.get("output", "slurm-%j.out"), env))
        out.parent.mkdir(parents=True, exist_ok=True)
        with open(out, "a") as log:
            running[i] = subprocess.Popen(
                ["bash", str(script)],
                cwd=array["cwd"],
                env=env,
                stdout=log,
                stderr=log,
                start_new_session=True,
            )
        write_json(task_file(i), {**info, "state": "RUNNING"})

    while pending or running:
        while pending and len(running) < array["throttle"]:
            i = pending.pop(0)
            if (root / "cancel" / name(i)).exists():
                write_json(task_file(i), {**read_json(task_file(i)), "state": "CANCELLED"})
                continue
            start(i)
        max_running = max(max_running, len(running))
        time.sleep(0.1)
        for i, proc in list(running.items()):
            attempt = read_json(task_file(i))["restarts"]
            fault = (attempt == 0 and i in oom) or attempt < preempt.count(i)
            if fault and (i, attempt) not in injected and step_has_child(name(i)) and ready(i, attempt):
                injected.add((i, attempt))
                if not os.environ.get("STUB_SLURM_FAULT_WAIT"):
                    time.sleep(1.0)  # let the run get going
                if i in oom:
                    signal_step(name(i), signal.SIGKILL)
                else:  # as submitit's job._interrupt() does: two scancel --signal calls
                    signal_step(name(i), signal.SIGTERM)
                    time.sleep(0.2)
                    signal_step(name(i), signal.SIGUSR2)
            returncode = proc.poll()
            if returncode is None:
                continue
            del running[i]
            info = read_json(task_file(i))
            requeue = root / "requeue" / name(i)
            if requeue.exists():
                requeue.unlink()
                write_json(task_file(i), {"state": "PENDING", "restarts": info["restarts"] + 1})
                pending.insert(0, i)
            elif (root / "cancel" / name(i)).exists():
                write_json(task_file(i), {**info, "state": "CANCELLED"})
            elif i in oom and (i, 0) in injected:
                write_json(task_file(i), {**info, "state": "OUT_OF_MEMORY"})
            else:
                write_json(task_file(i), {**info, "state": "COMPLETED" if returncode == 0 else "FAILED"})
    write_json(root / "arrays" / f"{job}.end.json", {"max_running": max_running})


def ready(i: int, attempt: int) -> bool:
    """Whether element i's fault may come now (``STUB_SLURM_FAULT_WAIT``, first attempt only)."""
    index, _, path = os.environ.get("STUB_SLURM_FAULT_WAIT", "").partition(":")
    return not (path and attempt == 0 and index == str(i)) or Path(path).exists()


def calls() -> list[dict]:
    path = state_dir() / "calls.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def step_pgid(name: str) -> int | None:
    text = (
        (state_dir() / "steps" / name).read_text().strip() if (state_dir() / "steps" / name).exists() else ""
    )
    return int(text) if text else None


def step_has_child(name: str) -> bool:
    """True once the job step has started a process of its own (the run), seen by process group."""
    pgid = step_pgid(name)
    if pgid is None:
        return False
    members = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        members += int(fields[2]) == pgid and fields[0] != "Z"
    return members >= 2


def signal_step(name: str, sig: int) -> None:
    pgid = step_pgid(name)
    if pgid is not None:
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            pass


# --- the other commands ---------------------------------------------------------------------------


def srun(argv: list[str]) -> int:
    """``srun --unbuffered --output OUT --error ERR command...``: one task, in its own process group."""
    files, i = {}, 0
    while i < len(argv) and argv[i].startswith("-"):
        flag = argv[i]
        if flag in ("--output", "--error"):
            files[flag] = argv[i + 1]
            i += 2
        else:
            i += 1
    env = dict(os.environ)
    array = "SLURM_ARRAY_JOB_ID" in env
    name = f"{env['SLURM_ARRAY_JOB_ID']}_{env['SLURM_ARRAY_TASK_ID']}" if array else env["SLURM_JOB_ID"]
    log_call({"cmd": "srun", "argv": argv})
    os.setpgid(0, 0)
    (state_dir() / "steps").mkdir(exist_ok=True)
    (state_dir() / "steps" / name).write_text(str(os.getpid()))
    for flag, fd in (("--output", 1), ("--error", 2)):
        if flag in files:
            path = Path(expand(files[flag], env))
            path.parent.mkdir(parents=True, exist_ok=True)
            os.dup2(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644), fd)
    env |= {"SLURM_PROCID": "0", "SLURM_LOCALID": "0", "SLURM_NODEID": "0", "SLURM_NTASKS": "1"}
    os.execvpe(argv[i], argv[i:], env)
    return 1  # not reached


def sacct(argv: list[str]) -> int:
    """``sacct -o JobID,State,NodeList --parsable2 -j A [-j B ...]``."""
    log_call({"cmd": "sacct", "argv": argv})
    fields = argv[argv.index("-o") + 1].split(",")
    jobs = [argv[k + 1].split("_")[0] for k, a in enumerate(argv) if a == "-j"]
    print("|".join(fields))
    for job in jobs:
        for path in sorted((state_dir() / "tasks").glob(f"{job}*.json")):
            if path.stem != job and not path.stem.startswith(f"{job}_"):
                continue
            info = read_json(path, {"state": "PENDING"})
            values = {
                "JobID": path.stem,
                "State": info["state"],
                "NodeList": "None assigned" if info["state"] == "PENDING" else "localhost",
            }
            print("|".join(values.get(f, "") for f in fields))
    return 0


def targets(ids: list[str]) -> list[str]:
    """Element names (A_i, or A for a plain job) for job ids given as A or A_i."""
    known = sorted(p.stem for p in (state_dir() / "tasks").glob("*.json"))
    return [t for jid in ids for t in known if t == jid or ("_" not in jid and t.startswith(f"{jid}_"))]


def scancel(argv: list[str]) -> int:
    log_call({"cmd": "scancel", "argv": argv})
    sig, ids = None, []
    for k, a in enumerate(argv):
        if a == "--signal":
            sig = argv[k + 1]
        elif a.startswith("--signal="):
            sig = a.split("=", 1)[1]
        elif not a.startswith("-") and (k == 0 or argv[k - 1] != "--signal"):
            ids.append(a)
    for name in targets(ids):
        if sig is not None:
            signal_step(name, getattr(signal, sig if sig.startswith("SIG") else f"SIG{sig}"))
            continue
        (state_dir() / "cancel").mkdir(exist_ok=True)
        (state_dir() / "cancel" / name).touch()
        signal_step(name, signal.SIGKILL)
    return 0


def scontrol(argv: list[str]) -> int:
    log_call({"cmd": "scontrol", "argv": argv})
    if argv[:1] != ["requeue"]:
        print(f"scontrol stub: unsupported {argv}", file=sys.stderr)
        return 1
    (state_dir() / "requeue").mkdir(exist_ok=True)
    for name in targets(argv[1:]):
        (state_dir() / "requeue" / name).touch()
    return 0


def install(bin_dir: Path) -> None:
    """Write one executable per command into ``bin_dir``, each calling this module with this Python."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    for name in COMMANDS:
        path = bin_dir / name
        path.write_text(
            f"#!{sys.executable}\nimport sys\nsys.path.insert(0, {str(Path(__file__).parent)!r})\n"
            f"import slurm_stub\nsys.exit(slurm_stub.main({name!r}, sys.argv[1:]))\n"
        )
        path.chmod(0o755)


def main(command: str, argv: list[str]) -> int:
    return {"sbatch": sbatch, "srun": srun, "sacct": sacct, "scancel": scancel, "scontrol": scontrol}[
        command
    ](argv)


if __name__ == "__main__":
    if sys.argv[1] == "install":
        install(Path(sys.argv[2]))
    elif sys.argv[1] == "_schedule":
        schedule(int(sys.argv[2]))
