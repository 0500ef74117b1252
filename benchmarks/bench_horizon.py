"""`make bench-horizon`: the learning rate across the training horizon and the batch, measured and
transferred, with the CPU proxy protocol (configs/proxy-cpu.yaml) on 2 CPU cores.

1. **Horizon**: an AdamW μP sweep over widths 16 and 64 and three horizons spanning 4× (75, 150, 300
   steps), 3 seeds. The horizons share their runs: warmup-stable-decay, each shorter horizon's decay
   branching off the longest run (Hägele et al. 2405.18392). Recorded: the fitted horizon exponent
   (lr* ∝ tokens^a) with its 95% interval, and what branching saved: the tokens and the wall time of the
   sweep against the same runs trained independently. The saving is measured, not estimated: one lr and
   seed per width is also trained independently at every horizon (`mupx sweep --steps N` with the same
   schedule; the runs have the same ids) and its final losses are compared with the branched runs'.
2. **Transfer 4× longer**: `mupx transfer` to width 64 at 1200 steps (4× the longest proxy), the lr moved
   by the measured exponent, with a 4-point verify sweep and the uncorrected proxy lr beside it, 2 seeds:
   the octave error against the verify sweep's optimum, and the regret of both lrs.
3. **Batch**: AdamW μP at width 64 over batches 2, 4 and 8 at equal tokens (1,310,720 per run: 10,240 to
   2,560 steps), 3 seeds, the auto lr grid, every batch scored on the same 16 × 32 validation windows
   (``train.eval_batch``), then a transfer to batch 32 (4× the largest proxy) at the same tokens: 640 steps.
   The first protocol (batches 8 and 32, target 128) put the target past the critical batch (its loss 2.06
   against 1.70 at batch 32) and fitted the exponent on two batches (+0.25, 95% −1.96 to +2.47): the transfer
   failed (regret 1.55% against the uncorrected lr's 0.78%). So the proxies moved below batch 8 and the target
   to 32, where lr* still grew with the batch (2^-5.92 at 8, 2^-5.07 at 32).

Writes benchmarks/horizon.json (the sweeps' fits and the transfers, with their commands) and the
bench-horizon sections of benchmarks/RESULTS.md and README.md; ``--only horizon|batch`` reruns one part and keeps the
other's results (each part records its own command and date); ``--render`` rewrites both from
horizon.json.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from pathlib import Path

from common import command_line, machine, mupx, replace_section, utc_now

from mupx.io import atomic_write_json

HERE = Path(__file__).resolve().parent
RESULTS, RAW, README = HERE / "RESULTS.md", HERE / "horizon.json", HERE.parent / "README.md"
PROTOCOL = os.path.relpath(HERE.parent / "configs" / "proxy-cpu.yaml")
COMMON = ["--optimizer", "adamw", "--param", "mup", "--seeds", "3", "--config", PROTOCOL]
WIDTHS = "16,64"  # the horizon part's; the batch part sweeps the batch at the target's width alone
HORIZONS = "75,150,300"
PARTS = ("horizon", "batch")
LRS = "2^-8:2^-4.5:0.5"
# The batch part: three batches below the critical batch and a target 4x the largest. At 1,310,720 tokens, width
# 64, batches 8 and 32 had their optima at 2^-5.92 and 2^-5.07 and val losses 1.66 and 1.70, and batch 128 (160
# steps) ended at 2.06 with its optimum back below batch 32's (bench-horizon of 2026-12-02): the critical batch
# lies between 32 and 128, so the proxies are batches 2, 4, 8 and the target 32. The auto grid starts an octave
# under batch 8's optimum there (√B puts batch 2's two octaves under it) and extends past any edge optimum.
BATCH = {"tokens": "1310720", "batches": "2,4,8", "target": "32", "lrs": "auto:2^-6.5", "width": "64"}


def reading(raw: dict) -> str:
    """What the batch part's numbers say, each claim computed from horizon.json (so a rerun rewrites it)."""
    b, t = raw["batch"], raw["batch_transfer"]
    slope = (b["plane"] or {}).get("batch") or {}
    ci = slope.get("slope_interval")
    best = {p["batch"]: p["best_loss"] for p in b["points"] if p["best_loss"] is not None}
    regret, unc, target = t.get("regret") or {}, t.get("uncorrected") or {}, t["target"]

    def num(x, fmt: str) -> str:
        return "–" if x is None else format(x, fmt)

    def share(x) -> str:
        return "–" if x is None else f"{100 * x:.2f}%"

    sqrt_b = ("within" if ci and ci[0] <= 0.5 <= ci[1] else "outside") + " its interval"
    target_loss = regret.get("best_loss")
    above = target_loss is not None and best and target_loss > max(best.values())
    return (
        f"Reading of the batch part ({raw['runs']['batch']['date']}): lr* ∝ batch^{num(slope.get('slope'), '+.2f')} "
        f"(95% {num(ci and ci[0], '+.2f')} to {num(ci and ci[1], '+.2f')}) over batches {BATCH['batches']} at equal "
        f"tokens: the SDE view's √B (Malladi et al. 2205.10287) lies {sqrt_b}. Moved along it "
        f"{target['batch'] // max(best, default=target['batch'])}× beyond the largest proxy, the lr lands "
        f"{num(regret.get('octave_error'), '+.2f')} octaves from the optimum the verify runs measured at batch "
        f"{target['batch']}, regret {share(regret.get('relative'))} of the loss; the uncorrected proxy lr loses "
        f"{share(unc.get('relative'))}. The proxies' best val losses "
        f"({', '.join(f'{best[k]:.3f} at batch {k}' for k in sorted(best))}) lie within "
        f"{max(best.values()) - min(best.values()):.3f} of each other; the target's ({num(target_loss, '.3f')} in "
        f"{target['steps']} steps) is {'above' if above else 'not above'} them. The first protocol (batches 8 and 32, "
        "target 128, 2026-12-02) was past the critical batch: its exponent, fitted on two batches, was +0.25 (95% "
        "−1.96 to +2.47), and the moved lr lost 1.55% against the uncorrected lr's 0.78%."
    )


def sweep(root: Path, name: str, lrs: str, *args: str) -> tuple[dict, float]:
    start = time.perf_counter()
    mupx("sweep", *COMMON, "--lrs", lrs, "--jobs", "2", "--out", str(root / name), *args)
    return json.loads((root / name / "sweep.json").read_text()), time.perf_counter() - start


def transfer(root: Path, name: str, *args: str) -> dict:
    mupx("transfer", "--from", str(root / name), "--verify", "4", "--seeds", "2", "--compare-uncorrected",
         "--jobs", "2", *args)  # fmt: skip
    folder = next(p for p in sorted((root / name).glob("transfer-*")) if (p / "transfer.json").exists())
    return json.loads((folder / "transfer.json").read_text())


def independent(root: Path, doc: dict) -> dict:
    """One lr and seed per width trained at every horizon on its own (the sweep's schedule and warmup): the
    wall time that branching saved, measured, and whether each branch equals its independent run."""
    spec = doc["spec"]
    lr = sorted({r["lr"] for r in doc["runs"]})[len({r["lr"] for r in doc["runs"]}) // 2]
    rows, wall = [], 0.0
    for steps in HORIZONS.split(","):
        start = time.perf_counter()
        mupx("sweep", "--optimizer", "adamw", "--param", "mup", "--widths", WIDTHS, "--seeds", "1", "--lrs", repr(lr),
             "--steps", steps, "--jobs", "2", "--config", PROTOCOL, "--out", str(root / f"independent-{steps}"), "-s", "train.schedule=wsd",
             "-s", f"train.warmup_steps={spec['warmup_steps']}")  # fmt: skip
        wall += time.perf_counter() - start
        alone = json.loads((root / f"independent-{steps}" / "sweep.json").read_text())["runs"]
        for r in alone:
            twin = next(b for b in doc["runs"] if b["run_id"] == r["run_id"])
            rows.append({"width": r["width"], "steps": int(steps), "run_id": r["run_id"], "loss": r["loss"],
                         "branched_loss": twin["loss"], "equal": r["loss"] == twin["loss"],
                         "wall_s": r["wall_time_s"], "branched_wall_s": twin["wall_time_s"]})  # fmt: skip
    return {"lr": lr, "runs": rows, "wall_s": sum(r["wall_s"] for r in rows),
            "branched_wall_s": sum(r["branched_wall_s"] for r in rows)}  # fmt: skip


def summary(doc: dict, seconds: float) -> dict:
    rec = doc["fits"]["mup"]["recommended"]
    return {"command": " ".join(doc["command"]), "seconds": seconds, "cost": doc.get("cost"),
            "plane": rec.get("plane"), "lr": rec["lr"], "interval": rec.get("interval"),
            "reference": rec.get("reference"), "points": [
                {k: p.get(k) for k in ("width", "tokens", "batch", "lr_star", "interval", "at_edge", "best_loss")}
                for p in doc["fits"]["mup"]["points"]]}  # fmt: skip


def transfer_summary(t: dict) -> dict:
    keep = ("target", "predicted", "roles", "regret", "uncorrected", "rules")
    return {k: t.get(k) for k in keep}


def slope_text(plane: dict | None, axis: str) -> str:
    s = (plane or {}).get(axis) or {}
    if s.get("slope") is None:
        return "–"
    ci = s.get("slope_interval")
    return f"{s['slope']:+.2f}" + (f" (95% {ci[0]:+.2f} to {ci[1]:+.2f})" if ci else "")


def transfer_rows(t: dict) -> list[str]:
    """The transferred lr and the uncorrected proxy lr: octaves from the optimum the verify runs measured,
    regret in loss and as a share of the best loss."""
    pred, regret, unc = t["predicted"], t.get("regret") or {}, t.get("uncorrected") or {}
    error = regret.get("octave_error")
    moved = ", ".join(a for a, r in pred["rules"].items() if r == "measured") or "no axis"

    def row(name: str, lr: float, octaves: float | None, value: float | None, share: float | None) -> str:
        return (f"| {name} | {lr:.4g} | {'–' if octaves is None else f'{octaves:+.2f}'} | "
                f"{'–' if value is None else f'{value:+.4f}'} | {'–' if share is None else f'{100 * share:.2f}%'} |")  # fmt: skip

    off = None if error is None else error + math.log2(pred["uncorrected_lr"] / pred["lr"])
    return [
        row(
            f"transferred (moved along {moved})",
            pred["lr"],
            error,
            regret.get("value"),
            regret.get("relative"),
        ),
        row("uncorrected proxy lr", pred["uncorrected_lr"], off, unc.get("regret"), unc.get("relative")),
    ]


def tables(raw: dict) -> str:
    h, b = raw["horizon"], raw["batch"]
    ind = raw["independent"]
    cost = h.get("cost") or {}
    lines = [
        "## Horizon and batch (`make bench-horizon`)",
        "",
        *(
            f"- {part.capitalize()} part last run: {run['date']}; command `{run['command']}`; {run['machine']}"
            for part, run in raw["runs"].items()
        ),
        f"- Horizon sweep: `{h['command']}`",
        f"- Batch sweep: `{b['command']}`",
        f"- AdamW μP, 3 seeds, widths {WIDTHS} (horizon) and {BATCH['width']} (batch), CPU proxy protocol "
        "(configs/proxy-cpu.yaml); transfers with 2 seeds, "
        "a 4-point verify sweep (half-octave steps) and the uncorrected proxy lr beside the transferred one.",
        "",
        "| axis | exponent of lr* (95%) | swept | target |",
        "|---|---|---|---|",
        f"| tokens | {slope_text(h['plane'], 'tokens')} | 3 horizons, {HORIZONS} steps | 4× the longest |",
        f"| batch | {slope_text(b['plane'], 'batch')} | batches {BATCH['batches']} at {int(BATCH['tokens']):,} tokens | "
        f"batch {BATCH['target']} at the same tokens |",
        "",
        f"Branched horizons: {cost.get('tokens_trained', 0):,} tokens trained for runs that train "
        f"{cost.get('tokens_independent', 0):,} independently ({cost.get('ratio', float('nan')):.2f}×). Measured on "
        f"one lr ({ind['lr']:.4g}) and seed per width: the branched runs took {ind['branched_wall_s']:.0f} s, the same "
        f"runs trained independently {ind['wall_s']:.0f} s ({ind['branched_wall_s'] / ind['wall_s']:.2f}×); their "
        f"final val losses are equal bit for bit in {sum(r['equal'] for r in ind['runs'])} of {len(ind['runs'])}.",
        "",
        "| transfer | lr | octaves from the verify optimum | regret | regret / loss |",
        "|---|---|---|---|---|",
    ]
    batch_target = f"4× batch ({BATCH['target']}, width {BATCH['width']})"
    for name, key in (
        ("4× longer (1200 steps, width 64)", "horizon_transfer"),
        (batch_target, "batch_transfer"),
    ):
        lines.append(f"| **{name}** | | | | |")
        lines += transfer_rows(raw[key])
    return "\n".join([*lines, "", reading(raw)])


def headline(raw: dict) -> str:
    """README's lines: each axis's exponent and what moving the lr along it bought at a 4x target."""
    h, b = raw["horizon"], raw["batch"]
    rows = [
        "**Horizon and batch** (`.venv/bin/python benchmarks/bench_horizon.py`; "
        f"{raw['runs']['batch']['machine']}; horizon part {raw['runs']['horizon']['date']}, batch part "
        f"{raw['runs']['batch']['date']}). AdamW μP, CPU proxy protocol, 3 seeds; each target 4× beyond the proxies, "
        "its lr moved by the measured exponent, against a 4-point verify sweep (2 seeds) and the uncorrected proxy lr. "
        "Tables: [benchmarks/RESULTS.md](benchmarks/RESULTS.md).",
        "",
        "| axis | swept | exponent of lr* (95%) | target | regret, moved lr | regret, uncorrected lr |",
        "|---|---|---|---|---|---|",
    ]
    for axis, doc, swept, target, key in (
        ("tokens", h, f"{HORIZONS} steps, widths {WIDTHS}", "1200 steps", "horizon_transfer"),
        ("batch", b, f"batches {BATCH['batches']} at {int(BATCH['tokens']):,} tokens", f"batch {BATCH['target']}", "batch_transfer"),
    ):  # fmt: skip
        t = raw[key]
        moved, unc = (t.get("regret") or {}).get("relative"), (t.get("uncorrected") or {}).get("relative")
        rows.append(f"| {axis} | {swept} | {slope_text(doc['plane'], axis)} | {target} | "
                    f"{'–' if moved is None else f'{100 * moved:.2f}%'} | {'–' if unc is None else f'{100 * unc:.2f}%'} |")  # fmt: skip
    return "\n".join(rows)


def render(raw: dict) -> None:
    replace_section(RESULTS, "bench-horizon", tables(raw), default_head="# Benchmarks\n")
    replace_section(README, "bench-horizon", headline(raw))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default="runs/bench-horizon", help="folder holding the sweeps")
    parser.add_argument(
        "--only", choices=PARTS, help="rerun one part, keep the other's results from horizon.json"
    )
    parser.add_argument(
        "--render", action="store_true", help="only rewrite RESULTS.md and README.md from horizon.json"
    )
    args = parser.parse_args()
    if args.render:
        render(json.loads(RAW.read_text()))
        return
    root = Path(args.root)
    raw = json.loads(RAW.read_text()) if args.only else {"runs": {}}
    for part in [args.only] if args.only else PARTS:
        raw["runs"][part] = {"command": command_line(), "date": utc_now(), "machine": machine()}
        if part == "horizon":
            hdoc, hs = sweep(root, "horizon", LRS, "--widths", WIDTHS, "--steps", HORIZONS)
            raw["horizon"], raw["independent"] = summary(hdoc, hs), independent(root, hdoc)
            ht = transfer(root, "horizon", "--width", "64", "--steps", "1200")
            raw["horizon_transfer"] = transfer_summary(ht)
        else:
            bdoc, bs = sweep(
                root,
                "batch",
                BATCH["lrs"],
                "--widths",
                BATCH["width"],
                "--tokens",
                BATCH["tokens"],
                "--batches",
                BATCH["batches"],
            )
            raw["batch"] = summary(bdoc, bs)
            # --force: the sweep has one width, so it has no width verdict to decide this transfer; the batch
            # axis it measures is the one extrapolated (the verdict is printed first).
            bt = transfer(
                root,
                "batch",
                "--width",
                BATCH["width"],
                "--tokens",
                BATCH["tokens"],
                "--batch",
                BATCH["target"],
                "--force",
            )
            raw["batch_transfer"] = transfer_summary(bt)
    atomic_write_json(RAW, raw)
    render(raw)
    print(
        f"\nwrote {RAW.relative_to(HERE.parent)} and the bench-horizon sections of RESULTS.md and README.md"
    )


if __name__ == "__main__":
    main()
