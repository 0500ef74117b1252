"""`make demo`: the main job end to end on the embedded stdlib corpus, sized for 2 CPU cores (< 8 min).

1. `mupx coord-check`: AdamW under μP over widths 16→128, saved in the sweep folder (the report shows it);
2. `mupx sweep`: AdamW, μP and SP (`--param both`) at widths 16 and 128 (8×), 3 seeds, a half-octave lr
   grid, 150 steps, 2 runs at once, with the CPU proxy protocol of configs/proxy-cpu.yaml
   (benchmarks/RESULTS.md says why each setting is there);
3. the fit (in sweep.json): lr* per width with 95% intervals, the drift of lr* with width and its verdict;
4. `mupx transfer`: the μP base lr at width 160 (beyond the sweep, 10× the base), with the SP baseline at the
   same base lr and a 2-point verify sweep around it, 2 seeds each (regret);
5. `mupx report`: plots, report.md and a self-contained report.html, whose path ends the demo.

Each step is the CLI command a user would type, echoed before it runs; rerunning resumes (finished runs
are skipped). Usage: python scripts/demo.py [ROOT] (default runs/).
"""

from __future__ import annotations

import shlex
import subprocess
import sys
import time
from pathlib import Path

PROTOCOL = Path(__file__).resolve().parent.parent / "configs" / "proxy-cpu.yaml"
SWEEP = ["--widths", "16,128", "--lrs", "2^-8:2^-5:0.5", "--seeds", "3", "--steps", "150"]


def mupx(*args: str) -> None:
    command = [sys.executable, "-m", "mupx.cli", *args]
    print(f"\n$ mupx {shlex.join(args)}", flush=True)
    code = subprocess.run(command).returncode
    if code != 0:
        sys.exit(code)


def main() -> int:
    root = Path(sys.argv[1] if len(sys.argv) > 1 else "runs")
    sweep = root / "demo"
    protocol = ["--config", str(PROTOCOL.relative_to(Path.cwd()) if PROTOCOL.is_relative_to(Path.cwd()) else PROTOCOL)]  # fmt: skip
    start = time.perf_counter()
    if not (sweep / "coord_check" / "coord_check.json").exists():
        mupx("coord-check", "--optimizer", "adamw", "--param", "mup", "--widths", "16,32,64,128",
             "--out", str(sweep / "coord_check"))  # fmt: skip
    mupx(
        "sweep",
        "--optimizer",
        "adamw",
        "--param",
        "both",
        *SWEEP,
        "--jobs",
        "2",
        "--out",
        str(sweep),
        *protocol,
    )
    mupx("transfer", "--from", str(sweep / "sweep.json"), "--width", "160", "--baseline", "sp", "--verify", "2",
         "--seeds", "2", "--jobs", "2")  # fmt: skip
    mupx("report", str(sweep))
    print(f"\ndemo done in {time.perf_counter() - start:.0f} s; open {sweep / 'report' / 'report.html'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
