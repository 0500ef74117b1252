"""What the benchmark scripts share: running a mupx command as a user would, naming the command line and the
machine a result came from, writing generated sections of Markdown files, and timing mupx's training step
against a bare PyTorch loop in paired interleaved rounds (bench_speed on the CPU, gpu_check on a GPU).

A generated section sits between ``<!-- NAME:start -->`` and ``<!-- NAME:end -->``; a benchmark replaces
its own section (README.md's headline or RESULTS.md's tables) and leaves the rest of the file as it was,
so no number in either file is typed by hand.
"""

from __future__ import annotations

import copy
import datetime
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time
from collections.abc import Callable

import torch

from mupx.data import BatchSampler
from mupx.io import atomic_write_text
from mupx.optim import build_optimizer
from mupx.train import Trainer


def mupx(*args: str) -> None:
    """Run ``mupx ARGS`` in a subprocess, echoed first; a failure ends the benchmark with its exit code."""
    print(f"\n$ mupx {shlex.join(args)}", flush=True)
    code = subprocess.run([sys.executable, "-m", "mupx.cli", *args]).returncode
    if code != 0:
        sys.exit(f"mupx {args[0]} exited {code}")


def command_line() -> str:
    """The command this benchmark was started with, as a user would retype it."""
    return shlex.join([os.path.relpath(sys.executable), *sys.argv])


def replace_section(path, name: str, text: str, default_head: str = "") -> None:
    """Put ``text`` between NAME's markers in ``path`` (appending the section when absent), atomically."""
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    old = path.read_text() if path.exists() else default_head
    section = f"{start}\n{text.rstrip()}\n{end}"
    if start in old and end in old:
        head, rest = old.split(start, 1)
        new = head + section + rest.split(end, 1)[1]
    else:
        new = old.rstrip("\n") + "\n\n" + section + "\n"
    atomic_write_text(path, new)


def utc_now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def machine() -> str:
    """One line naming the machine: CPU count and torch, and the GPU when there is one."""
    cpu = f"{platform.processor() or platform.machine()}, os.cpu_count() = {os.cpu_count()}"
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return f"{cpu}, torch {torch.__version__}, {gpu}"


# --- timing a training step against a bare loop -----------------------------------------------------


def sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def timed(fn: Callable[[], None]) -> float:
    sync()
    start = time.perf_counter()
    fn()
    sync()
    return time.perf_counter() - start


def rounds(contenders: dict[str, Callable[[], None]], reps: int, first: int = 0) -> dict[str, list[float]]:
    """Seconds per call of each contender over ``reps`` rounds; round i starts with contender ``first + i``
    (mod their number) and goes on in order, so that none always runs first."""
    names = list(contenders)
    times = {name: [] for name in names}
    for i in range(first, first + reps):
        k = i % len(names)
        for name in names[k:] + names[:k]:
            times[name].append(timed(contenders[name]))
    return times


def ratios(numerator: list[float], denominator: list[float]) -> list[float]:
    return [a / b for a, b in zip(numerator, denominator, strict=True)]


def summary(values: list[float]) -> str:
    """'median (p25–p75)' of ``values``."""
    q1, med, q3 = statistics.quantiles(values, n=4, method="inclusive")
    return f"{med:.3f} ({q1:.3f}–{q3:.3f})"


def bare_loop(trainer: Trainer, steps: int) -> tuple[Callable[[], None], torch.nn.Module]:
    """A block of ``steps`` plain PyTorch training steps, with no host sync, on a copy of the trainer's model at
    its start, compiled when the trainer's is. AdamW: ``torch.optim.AdamW`` over plain groups built once with
    the plan's lr/eps/wd; another optimizer: mupx's own on the copy (then only the loop around it is bare)."""
    cfg, device = trainer.cfg, trainer.device
    model = copy.deepcopy(trainer.model)
    named = dict(model.named_parameters())
    params = list(named.values())
    if cfg.optimizer == "adamw":
        groups = [
            {
                "params": [named[n] for n in g["names"]],
                "lr": g["lr"],
                "eps": g["eps"],
                "weight_decay": g["weight_decay"],
            }
            for g in trainer.optimizer.param_groups
        ]
        optimizer = torch.optim.AdamW(groups, betas=cfg.options.betas, fused=(device.type == "cuda") or None)
    else:
        optimizer = build_optimizer(model, trainer.plan, cfg.optimizer, cfg.options)
    engine = torch.compile(model) if cfg.train.compile else model
    sampler = BatchSampler(trainer.corpus.train, cfg.train.batch, cfg.train.seq_len, seed=cfg.seed)

    def run() -> None:
        for _ in range(steps):
            x, y = sampler.next()
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
                loss = engine(x.to(device), y.to(device))
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, cfg.train.grad_clip)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)

    return run, model
