"""`make bench-transfer`: how well the learning rate transfers, per optimizer, under μP and under SP.

For each optimizer, one ``mupx sweep --param both`` over widths spanning 8× (depth fixed), and for AdamW
and Muon one more over depths spanning 8× (width fixed, depth-μP with α = 1 against SP's unscaled
residuals), 3 seeds per point, on the embedded stdlib corpus with the CPU proxy protocol of
configs/proxy-cpu.yaml (the demo's; benchmarks/RESULTS.md, "The CPU proxy protocol", says why each setting
is there). Where one optimizer needs more, CPU_SETS and CPU_SWEEPS name it, each with the measurement behind it
(SGD and Sophia: base output multiplier 8 and the width-invariant clip norm; 5 seeds for the noisiest sweeps;
AdamW's depth sweep at width 128 and 300 steps; Sophia's width sweep at 300 steps),
and the tables list every row measured so. Each sweep is the CLI command a user would type (echoed); rerunning resumes, so an interrupted
benchmark continues where it stopped.

**Learning-rate grid.** ``--lrs auto``: a 1-octave coarse grid of 5 points around the optimizer's
configured lr, extended an octave at a time while a series' optimum sits at an edge, then filled with every half-octave
point of the fit window (±1 octave around the series' argmin, again when the argmin moves). The optimum is
thus fitted on a full half-octave window of 5 points for every width and parameterization, including SP's,
whose optimum moves. For Muon, Muon++, Shampoo and SOAP the swept lr is that of the
hidden matrices; their AdamW side (embeddings, readout, gains, biases) keeps its configured lr, μP-scaled.

**Recorded** per optimizer, axis and parameterization (from the sweep's ``fits``, mupx.fit): lr* per
width (depth) with its 95% interval; the drift of log2 lr* over the range with its 95% interval and the
verdict at tolerance 0.5 octave; and the **transfer regret** at the largest width (depth): the loss there
at the smallest width's lr* minus the best loss there, with the loss at an lr off the grid read from the
seed-mean loss curve, linear in log2 lr between grid points (a neighbour that diverged makes it
"diverged"; beyond the grid, no number). Under μP the smallest width's lr* is the zero-shot transfer;
under SP it is what reusing the proxy's lr gives.

**Sizes.** CPU (configs/proxy-cpu.yaml): widths 32 and 256 at depth 2 (base width 32: two heads of 16),
depths 2 and 16 at width 32, init std 0.1 (GPT-2's 0.02 at width 768 moved to the base width by μP's
1/√fan_in rule), 150 steps of 32×64 byte tokens. Base width 16 (one head) was the first protocol's: LAMB's
lr* rose 0.37 octave from width 16 to 32 and then held within ±0.2 to 256 (RESULTS.md, profile-lamb), a
finite-width effect that a base of two heads leaves out. ``--widths``/``--depths`` change the range (at least 4× apart), ``--tokenizer`` the
tokens (bytes | bpe). GPU (``--gpu``, packed 4 runs per GPU): widths 128→1024 at depth 4, depths 2→16 at
width 256, 1000 steps of 32×256 tokens, head_dim 64, a 4096-token BPE. ``--quick``: AdamW's width sweep
alone (the same runs as the full benchmark's, so a full run afterwards reuses them).

Writes the raw per-optimizer results to benchmarks/transfer.json (merged with earlier rows measured at the
same sizes; ``--only`` reruns a subset), every run's record among them (its axes, lr, seed, status and
final val loss: ``mupx.fit.fit_sweep`` recomputes the fits from them), the tables to benchmarks/RESULTS.md and the headline table to
README.md, each between the bench-transfer markers; ``--render`` rewrites both from transfer.json.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import time
from pathlib import Path

from common import command_line, machine, mupx, replace_section, utc_now

from mupx.io import atomic_write_json

HERE = Path(__file__).resolve().parent
RESULTS, RAW, README = HERE / "RESULTS.md", HERE / "transfer.json", HERE.parent / "README.md"
OPTIMIZERS = ("adamw", "adopt", "lamb", "sophia", "sgd", "muon", "muonpp", "shampoo", "soap")
DEPTH_OPTIMIZERS = ("adamw", "muon")
PROTOCOL = HERE.parent / "configs" / "proxy-cpu.yaml"
TOKENIZERS = ("bytes", "bpe")
SIZES = {
    "cpu": {"widths": [32, 256], "depth": 2, "depths": [2, 16], "depth_width": 32, "steps": 150, "seeds": 3,
            "tokenizer": "bytes", "runs_per_gpu": None},
    "gpu": {"widths": [128, 256, 512, 1024], "depth": 4, "depths": [2, 4, 8, 16], "depth_width": 256,
            "steps": 1000, "seeds": 2, "batch": 32, "seq_len": 256, "head_dim": 64, "vocab": 4096,
            "runs_per_gpu": 4},
}  # fmt: skip
TOLERANCE = 0.5
# Where each optimizer's auto grid starts on the CPU (log2 of the swept base lr): near its optima in the run of
# 2026-12-06 (widths 16->128), so that few octave extensions run at the widest width; the grid still extends past
# any edge optimum and fills the fit window around each series' own optimum, so the centre decides the cost only.
# SGD and Sophia: near their optima at output multiplier 8 (bench-protocol output-sgd-mupclip; Sophia at 300 steps,
# steps-sophia: 2^-8.75 at width 32, 2^-8.48 at 256).
CPU_CENTRES = {"adamw": -6, "adopt": -6, "lamb": -5, "sophia": -8.5, "sgd": -3, "muon": -4, "muonpp": -4,
               "shampoo": -3, "soap": -4}  # fmt: skip
# Where the CPU protocol departs from itself for one optimizer (or one sweep), each for a measured reason
# (benchmarks/RESULTS.md, bench-protocol). SGD and Sophia: base output multiplier 8, at which μP's best loss at
# width 256 is no longer worse than SP's (output-sgd, output-sophia), and the width-invariant clip norm, since
# their step follows the clipped gradient's size (SGD directly, Sophia through m / h with h unclipped) and the
# global norm falls with width under μP (output-sgd-mupclip).
CPU_SETS = {"sgd": ["param.output_mult=8", "train.grad_clip_norm=mup"],
            "sophia": ["param.output_mult=8", "train.grad_clip_norm=mup"]}  # fmt: skip
# Where one sweep's size departs from SIZES["cpu"], each for a measured reason. 5 seeds where 3 left the optimum's
# 95% interval wider than the ±0.5-octave claim can be decided with (their 3-seed rows: RESULTS.md). AdamW over depth:
# width 128 (init 0.05, the base init std's rule at that base width), 300 steps and its grid centred at its optima
# there; at width 32 its lr* rose +0.69 octave from depth 2 to 16, and over widths 32, 64, 128 that rise fell
# +0.69, +0.50, +0.29, a finite-width effect of narrow blocks (bench-protocol depth-300, depth-w64-300,
# depth-w128-300). Muon's depth row transfers decisively at width 32 and keeps the protocol's size. Sophia over
# width: 300 steps; at 150 steps its width-32 valley was flat within the seed noise (5 seeds: -0.57, 95% -1.68 to
# +0.54), at 300 steps the interval halved (steps-sophia, 3 seeds: +0.27, -0.36 to +0.91).
CPU_SWEEPS = {("sgd", "width"): {"seeds": 5}, ("sophia", "width"): {"seeds": 5, "steps": 300},
              ("shampoo", "width"): {"seeds": 5},
              ("adamw", "depth"): {"seeds": 5, "depth_width": 128, "steps": 300, "centre": -8}}  # fmt: skip
RECORD = ("param", "width", "depth", "lr", "seed", "status", "loss")  # what the fit reads from each run
MIN_RANGE = 4  # the widest (deepest) proxy at least this many times the smallest: a drift needs a range


def sweep_args(optimizer: str, axis: str, size: dict, root: Path, jobs: int | None) -> list[str]:
    """The ``mupx sweep`` arguments of one optimizer's sweep along ``axis`` (width or depth)."""
    if "head_dim" not in size:  # the CPU protocol: this sweep's own departures from it (CPU_SWEEPS)
        size = {**size, **CPU_SWEEPS.get((optimizer, axis), {})}
    if axis == "width":
        shape = ["--widths", ",".join(map(str, size["widths"])), "--depths", str(size["depth"])]
    else:
        shape = ["--widths", str(size["depth_width"]), "--depths", ",".join(map(str, size["depths"]))]
    if "head_dim" in size:  # GPU sizes: set here, not by the CPU protocol file
        sets = [f"model.head_dim={size['head_dim']}", f"train.batch={size['batch']}",
                f"train.seq_len={size['seq_len']}", f"train.eval_every={size['steps']}", "train.eval_batches=8",
                f"data.vocab_size={size['vocab']}"]  # fmt: skip
        protocol, lrs, seeds = [], "auto", size["seeds"]
    else:
        sets = [] if size["tokenizer"] == "bytes" else ["data.tokenizer=bpe", "data.vocab_size=1024"]
        sets.append(
            f"param.init_std={base_init_std(size['widths'][0] if axis == 'width' else size['depth_width'])}"
        )
        sets += CPU_SETS.get(optimizer, [])
        protocol, lrs = (
            ["--config", os.path.relpath(PROTOCOL)],
            f"auto:2^{size.get('centre', CPU_CENTRES[optimizer])}",
        )
        seeds = size["seeds"]
    args = ["sweep", "--optimizer", optimizer, "--param", "both", *shape, "--seeds", str(seeds), "--lrs", lrs,
            "--steps", str(size["steps"]), "--tolerance", str(TOLERANCE), "--name", f"{optimizer}-{axis}",
            "--root", str(root), *protocol]  # fmt: skip
    if jobs is not None:
        args += ["--jobs", str(jobs)]
    if size["runs_per_gpu"]:
        args += ["--runs-per-gpu", str(size["runs_per_gpu"])]
    return args + [a for s in sets for a in ("-s", s)]


def base_init_std(base_width: int) -> float:
    """The CPU protocol's base init std: GPT-2's 0.02 at width 768 moved to the base width by μP's own
    1/√fan_in rule (0.14 at 16, 0.1 at 32; benchmarks/RESULTS.md, init-a and init-b)."""
    return round(0.02 * math.sqrt(768 / base_width), 2)


def protocol_flags(args, size: dict) -> dict:
    """The sizes with ``--widths``/``--depths``/``--tokenizer`` applied; a bad value exits 2 with one line."""
    size = dict(size)
    for flag, key in (("widths", "widths"), ("depths", "depths")):
        text = getattr(args, flag)
        if text is None:
            continue
        try:
            values = [int(v) for v in text.split(",")]
        except ValueError:
            fail(f"--{flag} {text!r} is not a comma-separated list of integers (e.g. 16,128)")
        if len(values) < 2 or values != sorted(set(values)) or values[0] <= 0:
            fail(f"--{flag} {text!r} must list at least two increasing positive values (e.g. 16,128)")
        if values[-1] < MIN_RANGE * values[0]:
            fail(
                f"--{flag} {text!r} spans {values[-1] / values[0]:g}x; the transfer claim needs at least {MIN_RANGE}x"
            )
        size[key] = values
    if args.tokenizer is not None:
        if args.tokenizer not in TOKENIZERS:
            fail(f"unknown --tokenizer {args.tokenizer!r} (allowed: {', '.join(TOKENIZERS)})")
        size["tokenizer"] = args.tokenizer
    return size


def fail(message: str) -> None:
    print(f"bench_transfer: error: {message}", file=sys.stderr)
    sys.exit(2)


def run_sweep(args: list[str]) -> dict:
    mupx(*args)
    root, name = Path(args[args.index("--root") + 1]), args[args.index("--name") + 1]
    return json.loads((root / name / "sweep.json").read_text())


def regret(points: list[dict], axis: str) -> dict:
    """Loss at the largest ``axis`` value when trained at the smallest one's lr*, minus the best loss there.

    Beyond the grid, the loss at the grid's end towards the lr (when that end did not diverge) minus the
    best is a lower bound, assuming the loss keeps rising away from the optimum."""
    first, last = points[0], points[-1]
    out = {"lr": first["lr_star"], "loss": None, "best_loss": last["best_loss"], "regret": None,
           "lower_bound": None, "note": ""}  # fmt: skip
    if first["lr_star"] is None or last["best_loss"] is None:
        out["note"] = "no optimum"
        return out
    x = math.log2(first["lr_star"])
    curve = sorted(last["curve"], key=lambda c: c["log2_lr"])
    for lo, hi in zip(curve, curve[1:], strict=False):
        if lo["log2_lr"] <= x <= hi["log2_lr"]:
            if lo["mean_loss"] is None or hi["mean_loss"] is None:
                out["note"] = "diverged"
                return out
            f = (x - lo["log2_lr"]) / (hi["log2_lr"] - lo["log2_lr"])
            out["loss"] = lo["mean_loss"] + f * (hi["mean_loss"] - lo["mean_loss"])
            out["regret"] = out["loss"] - last["best_loss"]
            return out
    end = curve[-1] if x > curve[-1]["log2_lr"] else curve[0]
    if end["mean_loss"] is None:
        out["note"] = "diverged"
    else:
        out["lower_bound"] = end["mean_loss"] - last["best_loss"]
        out["note"] = "outside the grid"
    return out


def summarise(doc: dict, axis: str) -> dict:
    """Per parameterization: lr* per axis value, the drift with its interval and verdict, and the regret."""
    out = {}
    for param, fit in doc["fits"].items():
        points = sorted(fit["points"], key=lambda p: p[axis])
        drift = fit["drift"][axis][0] if fit["drift"][axis] else {}
        out[param] = {
            "values": [p[axis] for p in points],
            "lr_star": [p["lr_star"] for p in points],
            "interval": [p["interval"] for p in points],
            "at_edge": [p["at_edge"] for p in points],
            "best_loss": [p["best_loss"] for p in points],
            "octaves": drift.get("octaves"),
            "octaves_interval": drift.get("octaves_interval"),
            "verdict": drift.get("verdict", "inconclusive"),
            "decisive": drift.get("decisive"),
            "reason": drift.get("reason", ""),
            "regret": regret(points, axis),
        }
    runs = doc["runs"]
    out["records"] = [
        {k: r.get(k) for k in RECORD} for r in runs
    ]  # mupx.fit.fit_sweep(records) recomputes the fits
    out["runs"] = len(runs)
    out["diverged"] = sum(r["status"] == "diverged" for r in runs)
    out["wall_s"] = sum(r.get("wall_time_s") or 0 for r in runs)
    return out


# --- the report -------------------------------------------------------------------------------------


def octaves(s: dict) -> str:
    if s["octaves"] is None:
        return "–"
    ci = s["octaves_interval"]
    return f"{s['octaves']:+.2f}" + (f" ({ci[0]:+.2f} to {ci[1]:+.2f})" if ci else " (no interval)")


def regret_text(s: dict) -> str:
    """The regret in loss and as a share of the best loss there (issue 11's bar: ≤ 0.5% under μP)."""
    r = s["regret"]
    value, bound = r["regret"], r.get("lower_bound")
    if value is None and bound is None:
        return r["note"]
    shown = value if value is not None else bound
    return f"{'' if value is not None else '≥ '}{shown:.3f} ({100 * shown / r['best_loss']:.2f}%)"


def best_loss_text(s: dict, records: list[dict] | None, param: str, axis: str) -> str:
    """The best seed-mean loss at the largest width (depth), ± the standard error of that seed mean (from the
    run records, when kept): under μP wider must not be worse than SP's best beyond the seed noise."""
    loss = s["best_loss"][-1]
    if loss is None:
        return "–"
    by_lr: dict[float, list[float]] = {}
    for r in records or []:
        if (r["param"], r[axis], r["status"]) == (param, s["values"][-1], "completed") and math.isfinite(
            r["loss"] or math.nan
        ):
            by_lr.setdefault(r["lr"], []).append(r["loss"])
    seeds = min(by_lr.values(), key=statistics.mean, default=[])
    return f"{loss:.3f}" + (
        f" ± {statistics.stdev(seeds) / math.sqrt(len(seeds)):.3f}" if len(seeds) > 1 else ""
    )


def verdict(s: dict) -> str:
    v = s["verdict"]
    return f"**{v}**" if s["decisive"] else v


def commands_text(raw: dict) -> str:
    """The commands that measured the rows, each with the optimizers it ran (a resumed or partial run
    records its own command per optimizer, so the table names every command it came from)."""
    by_command: dict[str, list[str]] = {}
    for name in OPTIMIZERS:
        if name in raw["results"]:
            by_command.setdefault(raw["results"][name].get("command", raw["command"]), []).append(name)
    return (
        "; ".join(f"`{c}` ({', '.join(names)})" for c, names in by_command.items()) or f"`{raw['command']}`"
    )


def row_seeds(r: dict) -> int | None:
    """The seeds a row was measured with, read from its run records."""
    return len({x["seed"] for x in r.get("records") or []}) or None


def row_shape(r: dict, axis: str, size: dict) -> dict:
    """The fixed width (of a depth row) and the steps of a row's sweep where they differ from ``size``'s, with
    the init std that a base width of its own carries, read from its sweep command."""
    words = r.get("sweep", "").split()
    flag = {w: words[i + 1] for i, w in enumerate(words[:-1]) if w.startswith("--")}
    shape = {}
    if axis == "depth" and "--widths" in flag and int(flag["--widths"]) != size["depth_width"]:
        init = next((w.split("=")[1] for w in words if w.startswith("param.init_std=")), None)
        shape["width"] = flag["--widths"] + (f" (init std {init})" if init else "")
    if "--steps" in flag and int(flag["--steps"]) != size["steps"]:
        shape["steps"] = flag["--steps"]
    return shape


def row_settings(r: dict) -> list[str]:
    """The ``-s`` settings of a row's sweep beyond the init std and tokens that tokens_text names (CPU_SETS)."""
    words = r.get("sweep", "").split()
    sets = [words[i + 1] for i, word in enumerate(words[:-1]) if word == "-s"]
    return [s for s in sets if not s.startswith(("param.init_std=", "data."))]


def departures_text(raw: dict) -> str:
    """The rows measured with another seed count or settings of their own than the protocol's, from each row."""
    parts = []
    for name in OPTIMIZERS:
        for axis in ("width", "depth"):
            r = raw["results"].get(name, {}).get(axis)
            if r is None:
                continue
            n = row_seeds(r)
            items = [f"{n} seeds"] if n not in (None, raw["size"]["seeds"]) else []
            items += [f"{k} {v}" for k, v in row_shape(r, axis, raw["size"]).items()]
            items += [f"`{s}`" for s in row_settings(r)]
            if items:
                parts.append(f"{name} over {axis}: {', '.join(items)}")
    return "; ".join(parts)


def headline(raw: dict) -> str:
    size = raw["size"]
    rows = raw["results"]
    w = size["widths"]
    departures = departures_text(raw)
    lines = [
        f"**Learning-rate transfer per optimizer** ({commands_text(raw)}; {raw['machine']}; last run {raw['date']}). "
        f"Drift of log2 lr* over widths {w[0]}→{w[-1]} ({w[-1] // w[0]}×) at depth {size['depth']}, with its 95% "
        f"interval, {size['seeds']} seeds, {tokens_text(size)}; verdict at "
        f"±{TOLERANCE} octave (bold: the interval agrees); regret = loss at width {w[-1]} at the width-{w[0]} "
        f"lr* minus the best loss there (≥: a lower bound, that lr is beyond the grid there); best loss: the best "
        f"seed-mean val loss at width {w[-1]} ± its standard error over the seeds. Tables, lr* per "
        f"width and the depth sweeps: "
        f"[benchmarks/RESULTS.md](benchmarks/RESULTS.md)."
        + (f" Rows with settings of their own (why: RESULTS.md): {departures}." if departures else ""),
        "",
        "| optimizer | μP drift (octaves) | μP verdict | μP regret | SP drift (octaves) | SP verdict | SP regret | "
        f"best loss at {w[-1]}, μP / SP |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name in OPTIMIZERS:
        r = rows.get(name, {}).get("width")
        if r is None:
            lines.append(f"| {name} | not measured yet | | | | | | |")
            continue
        mup, sp = r["mup"], r["sp"]
        best = " / ".join(best_loss_text(r[p], r.get("records"), p, "width") for p in ("mup", "sp"))
        lines.append(
            f"| {name} | {octaves(mup)} | {verdict(mup)} | {regret_text(mup)} | {octaves(sp)} | {verdict(sp)} | "
            f"{regret_text(sp)} | {best} |"
        )
    return "\n".join(lines)


def tables(raw: dict) -> str:
    size = raw["size"]
    departures = departures_text(raw)
    lines = [
        "## Learning-rate transfer (`make bench-transfer`)",
        "",
        f"- Last run: {raw['date']}; commands {commands_text(raw)}",
        f"- Machine: {raw['machine']}",
        f"- Sizes: GPT-2 proxy, {tokens_text(size)} (cosine schedule, 10% warmup), {size['seeds']} seeds per point, "
        f"objective = final validation loss; widths {size['widths']} at depth {size['depth']}; depths "
        f"{size['depths']} at width {size['depth_width']} (μP: depth-μP with α = 1; SP: no depth scaling).",
        *(
            [
                f"- Rows with settings of their own (bench_transfer.CPU_SETS, CPU_SWEEPS; each measured in the "
                f"bench-protocol section below): {departures}"
            ]
            if departures
            else []
        ),
        "- Grid: `--lrs auto` (coarse octave grid around the configured lr, extended past edge optima, then every "
        "half-octave point within the fit window, ±1 octave of each series' optimum). Swept lr: the hidden "
        "matrices' for muon, muonpp, shampoo, soap.",
        "- Drift: slope of log2 lr* on log2 width (depth) × log2 of the range, weighted by the optima's intervals "
        "(mupx.fit), with its 95% interval; verdict at ±0.5 octave, **bold** when the interval agrees. Regret: "
        "seed-mean loss at the largest width (depth) at the smallest one's lr*, minus the best seed-mean loss there "
        "(≥: that lr lies beyond the grid there; the bound is the loss at the grid's end minus the best), and in % "
        "of that best loss. Best loss: the best seed-mean val loss at the largest width (depth), μP beside SP.",
        "",
    ]
    for axis in ("width", "depth"):
        lines += [
            f"### Over {axis}",
            "",
            f"| optimizer | param | lr* per {axis} | drift (octaves, 95%) | verdict | regret | best loss at {axis} {size[axis + 's'][-1]} | runs (diverged) | run s | measured |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]  # fmt: skip
        for name in OPTIMIZERS:
            entry = raw["results"].get(name, {})
            r = entry.get(axis)
            if r is None:
                if axis == "width" or name in DEPTH_OPTIMIZERS:
                    lines.append(f"| {name} | | not measured yet | | | | | | | |")
                continue
            for param in ("mup", "sp"):
                s = r[param]
                lrs = ", ".join(
                    f"{v}: {'–' if lr is None else f'{lr:.3g}'}{'(edge)' if edge else ''}"
                    for v, lr, edge in zip(s["values"], s["lr_star"], s["at_edge"], strict=True)
                )
                runs = f"{r['runs']} ({r['diverged']})" if param == "mup" else ""
                secs = f"{r['wall_s']:.0f}" if param == "mup" else ""
                lines.append(
                    f"| {name if param == 'mup' else ''} | {'μP' if param == 'mup' else 'SP'} | {lrs} | {octaves(s)} | "
                    f"{verdict(s)} | {regret_text(s)} | {best_loss_text(s, r.get('records'), param, axis)} | {runs} | {secs} | "
                    f"{entry['date'] if param == 'mup' else ''} |"
                )
        lines.append("")
    lines.append(
        "Inconclusive verdicts name their reason in the raw results (benchmarks/transfer.json, `reason`); "
        "run s = the runs' summed wall time."
    )
    return "\n".join(lines)


def tokens_text(size: dict) -> str:
    """The proxies' data and steps, in words."""
    if "head_dim" in size:
        return (f"head_dim {size['head_dim']}, {size['steps']} steps of {size['batch']}×{size['seq_len']} tokens of a "
                f"{size['vocab']}-token BPE")  # fmt: skip
    tokens = "byte" if size["tokenizer"] == "bytes" else "1024-token BPE"
    bases = sorted({size["widths"][0], size["depth_width"]})
    inits = ", ".join(f"{base_init_std(b)} at base width {b}" for b in bases)
    return (f"{size['steps']} steps of 32×64 {tokens} tokens with configs/proxy-cpu.yaml (head_dim 16, init std "
            f"{inits})")  # fmt: skip


def render(raw: dict) -> None:
    replace_section(RESULTS, "bench-transfer", tables(raw), default_head="# Benchmarks\n")
    replace_section(README, "bench-transfer", headline(raw))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="AdamW's width sweep only (< 20 min on 2 CPU cores)"
    )
    parser.add_argument("--only", default="", help="comma-separated optimizers to (re)run, e.g. adamw,muon")
    parser.add_argument(
        "--gpu", action="store_true", help="GPU sizes: widths 128-1024, 1000 steps, 4 runs per GPU"
    )
    parser.add_argument("--root", default="runs/bench-transfer", help="folder holding the sweeps")
    parser.add_argument("--jobs", type=int, default=None, help="concurrent runs (default: mupx sweep's)")
    parser.add_argument("--render", action="store_true", help="only rewrite the tables from transfer.json")
    parser.add_argument("--widths", default=None, help="widths of the width sweeps (CPU default 32,256)")
    parser.add_argument("--depths", default=None, help="depths of the depth sweeps (CPU default 2,16)")
    parser.add_argument("--tokenizer", default=None, help="bytes (default) | bpe (a 1024-token BPE)")
    args = parser.parse_args()
    if args.render:
        render(json.loads(RAW.read_text()))
        return
    only = [o for o in args.only.split(",") if o] or (["adamw"] if args.quick else list(OPTIMIZERS))
    bad = [o for o in only if o not in OPTIMIZERS]
    if bad:
        fail(f"--only {bad[0]!r} is not an optimizer (allowed: {', '.join(OPTIMIZERS)})")
    kind = "gpu" if args.gpu else "cpu"
    size = protocol_flags(args, SIZES[kind])
    old = json.loads(RAW.read_text()) if RAW.exists() else {}
    results = old.get("results", {}) if old.get("size") == size else {}
    command = command_line()
    for name in only:
        axes = ["width"] if args.quick or name not in DEPTH_OPTIMIZERS else ["width", "depth"]
        entry = {"date": utc_now(), "command": command}
        for axis in axes:
            start = time.perf_counter()
            sweep = sweep_args(name, axis, size, Path(args.root), args.jobs)
            doc = run_sweep(sweep)
            entry[axis] = {**summarise(doc, axis), "sweep_s": time.perf_counter() - start,
                           "sweep": " ".join(["mupx", *sweep])}  # fmt: skip
        results[name] = {**results.get(name, {}), **entry}
        raw = {"command": command, "date": utc_now(), "machine": machine(), "kind": kind, "size": size,
               "results": results}  # fmt: skip
        atomic_write_json(RAW, raw)
        render(raw)
    print(f"\nwrote {RAW.relative_to(HERE.parent)}, the bench-transfer sections of RESULTS.md and README.md")


if __name__ == "__main__":
    main()
