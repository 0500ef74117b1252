"""Muon++ vs Muon: the spectral ratio of each hidden matrix's actual update, across widths, over a run.

For every hidden matrix W (fan_out × fan_in) and every step t, with weight decay 0 so that ΔW is the
update alone:

    ρ_ΔW = σ_max(W_{t+1} − W_t) · √(fan_in/fan_out) / lr_t

where lr_t is the tensor's group lr at that step (μP multiplier × schedule factor) and σ_max is exact
(the largest eigenvalue of the smaller Gram matrix ΔW ΔWᵀ or ΔWᵀ ΔW, by a dense eigensolver). The spectral
condition asks for ρ_ΔW = Θ(1) in width. Muon++ sets ρ_ΔW = 1 by construction (up to its σ_max
estimate, which never overestimates, so ρ ≥ 1); Muon with the spectral shape factor has
ρ_ΔW = σ_max(Newton–Schulz output), which depends on the momentum's spectrum.

Runs the real pipeline — ``load_run_config`` + ``Trainer.build`` + ``trainer.train_step()`` on the
embedded stdlib corpus — for each optimizer and width with the same seed, data and schedule (cosine,
10% warmup), snapshots the hidden matrices before each step, prints a table (per optimizer and width:
min / median / max of ρ_ΔW over all hidden tensors and steps, and the spread of the per-width medians)
and writes everything, per-step series included, to ``--out`` as JSON.

    python scripts/muonpp_spectral.py --out runs/muonpp_spectral.json
    python scripts/muonpp_spectral.py --out /tmp/quick.json --widths 64,128 --steps 50

The default size (depth 2, batch 4 × 32 tokens, vocab 1024, Newton–Schulz in bfloat16 as on GPUs)
keeps all 500 steps at every width; on 2 CPU cores the cost is dominated by Newton–Schulz and the
exact σ_max at width 512. On a machine shared with other jobs, ``OMP_NUM_THREADS=1`` avoids OpenMP
oversubscription, which can slow small matmuls down by 10× or more.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from pathlib import Path

import torch

from mupx.io import atomic_write_json
from mupx.runconfig import load_run_config
from mupx.scaling.roles import Role
from mupx.train import Trainer

OVERRIDES = [
    "model.head_dim=32",
    "train.batch=4",
    "train.seq_len=32",
    "train.progress=false",
    "train.spectral_every=0",
    "data.vocab_size=1024",
    "data.max_documents=400",
    "optimizer.weight_decay=0.0",  # ΔW is then the update alone
    "optimizer.ns_dtype=bfloat16",
]
PER_OPTIMIZER = {"muon": ["optimizer.shape_factor=spectral"], "muonpp": []}


def sigma_max_exact(delta: torch.Tensor) -> float:
    """σ_max to float32 precision: √ of the largest eigenvalue of the smaller Gram matrix (a dense
    symmetric eigensolver, not an iteration; relative error ~1e-6)."""
    d = delta.float()
    gram = d @ d.T if d.shape[0] <= d.shape[1] else d.T @ d
    return math.sqrt(max(torch.linalg.eigvalsh(gram)[-1].item(), 0.0))


def stats(values: list[float]) -> dict:
    return {"min": min(values), "median": statistics.median(values), "max": max(values)}


def run(optimizer: str, width: int, steps: int, extra: list[str]) -> dict:
    overrides = [f"optimizer={optimizer}", f"model.width={width}", f"train.steps={steps}", *OVERRIDES]
    cfg = load_run_config(overrides + PER_OPTIMIZER[optimizer] + extra)
    trainer = Trainer.build(cfg)
    mats = [(n, p) for n, p in trainer.model.named_parameters() if trainer.plan.row(n).role is Role.HIDDEN]
    group = {id(p): g for g in trainer.optimizer.param_groups for p in g["params"]}
    series: dict[str, list[float]] = {n: [] for n, _ in mats}
    losses = []
    start, cpu_start = time.perf_counter(), time.process_time()
    for _ in range(steps):
        lrs = [group[id(p)]["lr"] for _, p in mats]  # the lr this step uses (the scheduler steps after)
        before = [p.detach().clone() for _, p in mats]
        loss, _, _ = trainer.train_step()
        losses.append(loss)
        for (n, p), b, lr in zip(mats, before, lrs, strict=True):
            fan_out, fan_in = p.shape
            series[n].append(sigma_max_exact(p.detach() - b) * math.sqrt(fan_in / fan_out) / lr)
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
    everything = [r for values in series.values() for r in values]
    return {
        "optimizer": optimizer,
        "width": width,
        "steps": steps,
        "overrides": overrides + PER_OPTIMIZER[optimizer] + extra,
        "rho": stats(everything),
        "per_tensor": {n: stats(v) for n, v in series.items()},
        "loss_first": losses[0],
        "loss_final": sum(losses[-20:]) / len(losses[-20:]),
        "seconds": seconds,
        "cpu_seconds": cpu_seconds,  # all threads; compare with seconds to see contention
        "series": series,
    }


def summarise(runs: list[dict]) -> dict:
    """Per optimizer: the band of ρ over all widths, the ratio of the largest to the smallest per-width
    median, and the slope of log(median ρ) against log(width) (μP wants ≈ 0)."""
    out = {}
    for opt in dict.fromkeys(r["optimizer"] for r in runs):
        rows = [r for r in runs if r["optimizer"] == opt]
        medians = [r["rho"]["median"] for r in rows]
        x = [math.log(r["width"]) for r in rows]
        y = [math.log(m) for m in medians]
        mx, my = sum(x) / len(x), sum(y) / len(y)
        sxx = sum((a - mx) ** 2 for a in x)
        slope = sum((a - mx) * (b - my) for a, b in zip(x, y, strict=True)) / sxx if sxx else 0.0
        out[opt] = {
            "band": [min(r["rho"]["min"] for r in rows), max(r["rho"]["max"] for r in rows)],
            "median_spread": max(medians) / min(medians),
            "slope_log_median_vs_log_width": slope,
        }
    return out


def table(runs: list[dict], summary: dict) -> str:
    lines = [
        f"{'optimizer':<9} {'width':>5} {'min ρ':>8} {'median ρ':>9} {'max ρ':>8} {'loss first→final':>17} {'s':>6}"
    ]
    for r in runs:
        q = r["rho"]
        lines.append(
            f"{r['optimizer']:<9} {r['width']:>5} {q['min']:>8.4f} {q['median']:>9.4f} {q['max']:>8.4f} "
            f"{r['loss_first']:>8.3f}→{r['loss_final']:<8.3f} {r['seconds']:>6.0f}"
        )
    lines.append("")
    for opt, s in summary.items():
        lines.append(
            f"{opt:<9} band over widths [{s['band'][0]:.4f}, {s['band'][1]:.4f}]  "
            f"max/min of per-width medians {s['median_spread']:.4f}  "
            f"slope of log median ρ vs log width {s['slope_log_median_vs_log_width']:+.4f}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, required=True, help="JSON file to write")
    ap.add_argument("--widths", default="64,128,256,512")
    ap.add_argument("--steps", type=int, default=500)
    ap.add_argument("--optimizers", default="muonpp,muon")
    ap.add_argument(
        "-s", "--set", action="append", default=[], help="extra config override, e.g. -s model.depth=1"
    )
    args = ap.parse_args(argv)
    runs = []
    for opt in args.optimizers.split(","):
        for width in (int(w) for w in args.widths.split(",")):
            runs.append(run(opt, width, args.steps, args.set))
            atomic_write_json(args.out, {"runs": runs, "summary": summarise(runs)})  # a crash keeps what ran
            r = runs[-1]
            q = r["rho"]
            line = f"{opt} width {width}: ρ {q['min']:.4f} / {q['median']:.4f} / {q['max']:.4f} ({r['seconds']:.0f} s)"
            print(line, file=sys.stderr, flush=True)
    print(table(runs, summarise(runs)))


if __name__ == "__main__":
    main()
