"""Run under torchrun by tests/test_ddp.py: ``mupx train`` for several optimizers, one after another, in the
same ranks and the same process group, so the suite pays torchrun's, torch's and gloo's start-up once
instead of once per optimizer. A run ends with a barrier instead of leaving the group (a second
``init_process_group`` on torchrun's store can hang on the first group's keys); the last one leaves it.

Usage: torchrun --standalone --nproc-per-node=2 tests/ddp_driver.py OUT_ROOT NAME[,NAME...] -s KEY=VALUE ...
Each optimizer NAME trains into OUT_ROOT/NAME with the -s overrides plus its own (--set-NAME KEY=VALUE).
"""

from __future__ import annotations

import sys

import torch.distributed

import mupx.train
from mupx.cli import main
from mupx.distributed import Dist, shutdown


def run_all(root: str, names: list[str], args: list[str]) -> int:
    shared = [
        a
        for i, a in enumerate(args)
        if not (a.startswith("--set-") or (i and args[i - 1].startswith("--set-")))
    ]
    worst = 0
    mupx.train.shutdown = lambda d: d.active and torch.distributed.barrier()
    for name in names:
        own = [v for i, v in enumerate(args[1:], 1) if args[i - 1] == f"--set-{name}"]
        argv = ["train", "--out", f"{root}/{name}", "--quiet", "-s", f"optimizer={name}", *shared]
        argv += [a for o in own for a in ("-s", o)]
        try:
            main(argv)
        except SystemExit as e:
            worst = max(worst, e.code if isinstance(e.code, int) else 1)
    if torch.distributed.is_initialized():
        shutdown(Dist(rank=torch.distributed.get_rank(), world=torch.distributed.get_world_size()))
    return worst


if __name__ == "__main__":
    sys.exit(run_all(sys.argv[1], sys.argv[2].split(","), sys.argv[3:]))
