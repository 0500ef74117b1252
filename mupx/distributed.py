"""torchrun / DDP: the process's place in a job (rank, world size, device) read from torchrun's
environment, the few collective operations the training loop needs, and ``mupx train --nproc``'s
launch of torchrun. Without torchrun's environment everything here is the single-process identity.

Multi-node jobs use torchrun itself with its rendezvous flags, on every node, e.g.
``torchrun --nnodes 2 --nproc-per-node 8 --rdzv-backend c10d --rdzv-endpoint HOST:29500 -m mupx.cli train ...``
(with the same ``--out`` on a shared filesystem: only global rank 0 writes).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist

from .errors import MupxError


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world > 1


def init_from_env(device_spec: str) -> tuple[Dist, str]:
    """Join the process group torchrun set up (gloo on CPU, nccl on GPU); returns (Dist, device spec).

    Under torchrun each rank uses ``cuda:LOCAL_RANK`` when CUDA is available and the config asks for
    ``auto`` or ``cuda``, else the CPU.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist(), device_spec
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = torch.cuda.is_available() and device_spec in ("auto", "cuda")
    if use_cuda:
        if local >= torch.cuda.device_count():
            raise MupxError(f"local rank {local} has no GPU ({torch.cuda.device_count()} visible)")
        torch.cuda.set_device(local)
        device_spec = f"cuda:{local}"
    elif device_spec in ("auto",):
        device_spec = "cpu"
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    return Dist(rank=rank, world=world, local_rank=local), device_spec


def mean(value: torch.Tensor, d: Dist) -> torch.Tensor:
    """The mean of a scalar tensor over all ranks (itself without DDP)."""
    if not d.active:
        return value
    value = value.detach().clone().float()
    dist.all_reduce(value, op=dist.ReduceOp.SUM)
    return value / d.world


def any_rank(flag: bool, d: Dist, device: torch.device) -> bool:
    """True when any rank's flag is set (so every rank stops at the same step)."""
    if not d.active:
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def gather(obj, d: Dist) -> list:
    """Every rank's ``obj`` (picklable), in rank order."""
    if not d.active:
        return [obj]
    out = [None] * d.world
    dist.all_gather_object(out, obj)
    return out


GLOO_SETTLE_S = 0.5


def shutdown(d: Dist) -> None:
    """Leave the process group at the end of a run.

    After the last collective, gloo's worker thread still destroys the finished work objects, which
    decref Python-owned tensors and so need the GIL. If the process group is destroyed meanwhile (when the
    DDP wrapper's Reducer, which holds it, is freed), its destructor joins that thread while holding the GIL:
    a deadlock, seen as a rank that never exits (py-spy: ~ProcessGroupGloo in std::thread::join, the worker
    in gil_scoped_acquire from ~AsyncBarrierWork; torch 2.13, about 1 run in 6 on a loaded 2-core machine).
    Sleeping releases the GIL so the worker can finish first.
    """
    if d.active and dist.is_initialized():
        dist.barrier()
        time.sleep(GLOO_SETTLE_S)
        dist.destroy_process_group()


def launch_torchrun(nproc: int, cfg, overrides: list[str], out: Path, resume: bool) -> int:
    """Start ``mupx train`` on ``nproc`` ranks of this machine with torchrun (``--standalone``) and return
    its exit code. One rank per GPU when CUDA is available, else CPU ranks with gloo (at most one per core)."""
    if "WORLD_SIZE" in os.environ:
        raise MupxError("--nproc is for a plain shell; this process already runs under torchrun")
    cuda = torch.cuda.is_available() and cfg.device != "cpu"
    available, kind = (torch.cuda.device_count(), "GPUs") if cuda else (os.cpu_count() or 1, "CPU cores")
    if not 1 <= nproc <= available:
        raise MupxError(f"--nproc {nproc} is out of range (allowed: 1 to the {available} {kind} available)")
    t = cfg.train
    for key, batch in (("train.batch", t.batch), ("train.eval_batch", t.eval_batch)):
        if batch is not None and batch % (nproc * t.accum):
            raise MupxError(f"{key} {batch} is not divisible by --nproc {nproc} x train.accum {t.accum}")
    args = [
        "train",
        "--out",
        str(out),
        *(["--resume"] if resume else []),
        *(a for o in overrides for a in ("-s", o)),
    ]
    return subprocess.run(torchrun_command(nproc, args)).returncode


def torchrun_command(nproc: int, mupx_args: list[str]) -> list[str]:
    """The command that runs ``mupx <mupx_args>`` on ``nproc`` ranks of this machine (torchrun --standalone)."""
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
            "-m", "mupx.cli", *mupx_args]  # fmt: skip
