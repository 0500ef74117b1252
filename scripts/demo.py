"""`make demo`: μP training of a GPT-2 proxy at two widths on the embedded stdlib corpus, with the same
base learning rate (transferred zero-shot from the base width 64), then where the runs are."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from rich.console import Console

from mupx.runconfig import load_run_config
from mupx.train import run

WIDTHS = (64, 256)
COMMON = [
    "optimizer=adamw", "param=mup", "param.base_width=64", "model.head_dim=32", "model.depth=2",
    "optimizer.lr=0.01", "train.steps=200", "train.batch=8", "train.seq_len=64", "train.eval_every=100",
]  # fmt: skip


def main() -> int:
    console = Console()
    root = Path(sys.argv[1] if len(sys.argv) > 1 else "runs/demo")
    start = time.perf_counter()
    results = []
    for width in WIDTHS:
        cfg = load_run_config(COMMON + [f"model.width={width}"])
        out = root / cfg.run_id
        if (out / "result.json").exists():
            console.print(f"width {width}: already done in {out}")
            from mupx.train import load_result

            results.append((width, out, load_result(out)))
            continue
        results.append((width, out, run(cfg, out, console=console)))
    console.print("\n[bold]μP demo[/]: same base lr 0.01 at both widths (hidden lr scaled 1/width_mult by the plan)")
    for width, out, r in results:
        console.print(f"  width {width:4d}: train loss {r['final_train_loss']:.3f}, val loss {r['val_loss']:.3f} -> {out}")
    console.print(f"done in {time.perf_counter() - start:.0f} s; inspect a plan with: cat {results[-1][1]}/plan.tsv")
    return 0


if __name__ == "__main__":
    sys.exit(main())
