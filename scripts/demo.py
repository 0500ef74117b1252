"""`make demo`: the main job end to end on the embedded stdlib corpus, sized for 2 CPU cores (< 10 min).

1. `mupx sweep`: AdamW, μP and SP (`--param both`) over widths 32→128 (4×), a log2 LR grid, 2 runs at once;
2. the fit (in sweep.json): lr* per width with intervals, the drift of lr* with width and its verdict;
3. `mupx transfer`: the μP base LR at width 256 (2× beyond the sweep), with the SP baseline at the same
   base LR and a 2-point verify sweep around it (regret);
4. `mupx report`: plots, report.md and a self-contained report.html, whose path ends the demo.

Each step is the CLI command a user would type, echoed before it runs; rerunning resumes (finished runs
are skipped). Usage: python scripts/demo.py [ROOT] (default runs/).
"""

from __future__ import annotations

import shlex
import subprocess
import sys
import time
from pathlib import Path

NAME = "demo"
MODEL = ["--depths", "2", "-s", "model.head_dim=16", "-s", "train.batch=16", "-s", "train.seq_len=64",
         "-s", "train.eval_every=100", "-s", "train.eval_batches=4"]  # fmt: skip


def mupx(*args: str) -> None:
    command = [sys.executable, "-m", "mupx.cli", *args]
    print(f"\n$ mupx {shlex.join(args)}", flush=True)
    code = subprocess.run(command).returncode
    if code != 0:
        sys.exit(code)


def main() -> int:
    root = Path(sys.argv[1] if len(sys.argv) > 1 else "runs")
    sweep = root / NAME
    start = time.perf_counter()
    mupx("sweep", "--optimizer", "adamw", "--param", "both", "--widths", "32,64,128", "--lrs", "2^-10:2^-5:1",
         "--steps", "100", "--jobs", "2", "--name", NAME, "--root", str(root), *MODEL)  # fmt: skip
    mupx("transfer", "--from", str(sweep / "sweep.json"), "--width", "256", "--baseline", "sp", "--verify", "2",
         "--jobs", "2")  # fmt: skip
    mupx("report", str(sweep))
    print(f"\ndemo done in {time.perf_counter() - start:.0f} s; open {sweep / 'report' / 'report.html'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
