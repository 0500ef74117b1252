"""``mupx compare``: optimizers against each other at matched compute, from their transferred runs.

**Inputs.** Each argument is a ``transfer.json``, a ``transfer-w<W>-d<D>/`` folder holding one, or a
sweep folder holding exactly one ``transfer-*/transfer.json`` (several are an error that lists them: name
the one you mean). From each, the run with role ``transfer`` is used — the target model trained at the
base lr the sweep transferred, i.e. each optimizer at its own μP-transferred hyperparameters. Its name is
the optimizer (the sweep folder's name where two inputs share an optimizer).

**Comparable.** Every run must be completed and all must share the model flavour, the target width and
depth, the token budget (steps × batch × seq_len) and the data (a fingerprint of the corpus hash,
tokenizer hash, vocab size, split and document limit from the run's data manifest). Anything else is a
one-line error naming the difference, unless ``--force``.

**Curves.** Train loss against tokens from the run's ``metrics.jsonl``, smoothed by an exponential
moving average in tokens with time constant ``smooth`` × the longest budget (default 5%; the same kernel
for every curve), bias-corrected at the start. The EMA is applied to the token axis as well, so each
smoothed point sits at the weighted mean of the tokens it averages: for a locally linear curve the
smoothed curve has no lag, and the final smoothed loss is the run's loss about τ tokens before its end.

**Speedup** of X over the reference R (default: the run whose optimizer is adamw, else the first), in
tokens. Let ℓ be the *higher* of the two final smoothed losses — the lowest loss both runs reach — and
T_Y(ℓ) the tokens at which Y's smoothed curve first reaches ℓ (linear interpolation in log tokens); the
run whose final loss is ℓ reaches it at its last smoothed point. Then

    speedup = T_R(ℓ) / T_X(ℓ)

the ratio of tokens the two need for the same loss: > 1 when X is faster. It is the compute-equivalent
multiplier behind 2512.05620's ~1.4× for Muon/SOAP/Shampoo over AdamW, and it is antisymmetric
(speedup(X, R) = 1 / speedup(R, X)):

* the reference reaches X's final loss (X worse, or R trained longer): ℓ is X's final loss and the
  speedup is "tokens the reference needs to reach X's loss ÷ tokens X used" — below 1 when X is worse;
* the reference never reaches X's final loss (X better at matched budget): ``reference_reaches_x`` is
  false, ``lower_bound`` = T_R(end) / T_X(end) (the speedup is at least this), and the estimate is
  computed the other way round, from where X reaches the reference's final loss.

Both runs are judged at a point of their own schedule: the faster run reaches ℓ mid-schedule, before its
lr has decayed, so a run of it with a schedule ending there would reach ℓ sooner. The estimate is
therefore conservative (biased towards 1); fitting loss against budget over several runs removes that.

**Wall time.** Seconds per step is the median over consecutive metrics rows of Δtime / Δstep (robust to
evaluation pauses and the slow first steps); ``step_time_ratio`` = X's / the reference's. The speedup in
seconds is ``speedup_time`` = speedup × (reference seconds per token ÷ X's seconds per token).

Writes ``compare.json`` and ``compare.png`` (loss vs tokens and vs seconds, log x) into ``--out``
(default ``runs/compare-<names>``).
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import MupxError
from .io import atomic_write_files, check_folder, json_text

SCHEMA_VERSION = 1
DATA_KEYS = ("source", "corpus_hash", "tokenizer_hash", "vocab_size", "val_fraction", "max_documents")


# --- the arithmetic ----------------------------------------------------------------------------------


def smooth(tokens, loss, tau: float) -> tuple[np.ndarray, np.ndarray]:
    """EMA of ``loss`` (and of ``tokens``, so the points carry no lag) with time constant ``tau`` tokens,
    bias-corrected; non-uniform token spacing is handled exactly. Returns (tokens, loss) arrays."""
    t, y = np.asarray(tokens, float), np.asarray(loss, float)
    if tau <= 0 or len(t) < 2:
        return t.copy(), y.copy()
    out_t, out_y = np.empty_like(t), np.empty_like(y)
    st = sy = norm = 0.0
    prev = t[0]
    for i, (ti, yi) in enumerate(zip(t, y, strict=True)):
        decay = math.exp(-(ti - prev) / tau)
        st, sy, norm = decay * st + ti, decay * sy + yi, decay * norm + 1.0
        out_t[i], out_y[i] = st / norm, sy / norm
        prev = ti
    return out_t, out_y


def tokens_to_reach(tokens, loss, target: float) -> float | None:
    """The first token count at which the curve is at or below ``target``, interpolated linearly in
    log tokens between the two points around the crossing; None when it never gets there."""
    t, y = np.asarray(tokens, float), np.asarray(loss, float)
    below = np.nonzero(y <= target)[0]
    if len(below) == 0:
        return None
    i = int(below[0])
    if i == 0:
        return float(t[0])
    u0, u1, y0, y1 = math.log(t[i - 1]), math.log(t[i]), y[i - 1], y[i]
    frac = (y0 - target) / (y0 - y1) if y0 != y1 else 1.0
    return float(math.exp(u0 + frac * (u1 - u0)))


def speedup(ref_tokens, ref_loss, x_tokens, x_loss) -> dict:
    """The token speedup of X over the reference from their (smoothed) curves; see the module docstring."""
    ref_final, x_final = float(ref_loss[-1]), float(x_loss[-1])
    ref_end, x_end = float(ref_tokens[-1]), float(x_tokens[-1])
    target = max(ref_final, x_final)
    t_ref = ref_end if ref_final >= x_final else tokens_to_reach(ref_tokens, ref_loss, target)
    t_x = x_end if x_final >= ref_final else tokens_to_reach(x_tokens, x_loss, target)
    reaches = ref_final <= x_final
    return {
        "value": t_ref / t_x,
        "target_loss": target,
        "reference_tokens": t_ref,
        "x_tokens": t_x,
        "reference_reaches_x": reaches,
        "lower_bound": None if reaches else ref_end / x_end,
    }


def seconds_per_step(rows: list[dict]) -> float | None:
    """Median Δtime / Δstep over consecutive metrics rows (None with fewer than two rows)."""
    rates = [
        (b["time"] - a["time"]) / (b["step"] - a["step"])
        for a, b in zip(rows, rows[1:], strict=False)
        if b["step"] > a["step"] and b.get("time") is not None and a.get("time") is not None
    ]
    return float(np.median(rates)) if rates else None


# --- the runs --------------------------------------------------------------------------------------


@dataclass
class Entry:
    name: str
    source: Path  # the transfer.json
    sweep_name: str
    optimizer: str
    param: str
    lr: float
    model: str
    width: int
    depth: int
    tokens: int  # planned budget
    tokens_per_step: int
    data: str  # fingerprint of the data manifest
    rows: list[dict]


def find_transfer(arg: Path) -> Path:
    """The transfer.json an argument names: the file, a transfer-*/ folder, or a sweep folder with one."""
    arg = Path(arg)
    if arg.is_file():
        return arg
    if not arg.is_dir():
        raise MupxError(f"no transfer.json or folder at {arg}")
    if (arg / "transfer.json").is_file():
        return arg / "transfer.json"
    found = sorted(arg.glob("transfer-*/transfer.json"))
    if len(found) != 1:
        what = (
            "no transfer-*/transfer.json"
            if not found
            else f"{len(found)} transfers ({', '.join(p.parent.name for p in found)})"
        )
        raise MupxError(f"{arg} holds {what}; pass the transfer.json (or transfer-*/ folder) to compare")
    return found[0]


def _read_json(path: Path, what: str) -> dict:
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        raise MupxError(f"{what} {path} is missing") from None
    except (OSError, ValueError) as e:
        raise MupxError(f"{what} {path} is not valid JSON ({type(e).__name__})") from None
    if not isinstance(doc, dict):
        raise MupxError(f"{what} {path} is not a JSON object")
    return doc


def data_fingerprint(manifest: dict) -> str:
    parts = json.dumps({k: manifest.get(k) for k in DATA_KEYS}, sort_keys=True)
    return hashlib.sha256(parts.encode()).hexdigest()[:12]


def load_entry(arg: Path) -> Entry:
    path = find_transfer(arg)
    doc = _read_json(path, "transfer file")
    from .transfer import SCHEMA_VERSION as TRANSFER_VERSION

    if doc.get("schema_version") != TRANSFER_VERSION:
        raise MupxError(
            f"{path} has schema_version {doc.get('schema_version')!r}; this mupx reads version {TRANSFER_VERSION}"
        )
    run = next((r for r in doc.get("runs") or [] if r.get("role") == "transfer"), None)
    if run is None:
        raise MupxError(f"{path} lists no run with role 'transfer'")
    run_dir = path.parent / "runs" / run["run_id"]
    result = _read_json(run_dir / "result.json", "result file")
    if result.get("status") != "completed":
        raise MupxError(
            f"the transfer run {run_dir} is {result.get('status')!r} ({result.get('reason') or 'no reason'}); only completed runs compare"
        )
    rows = _read_rows(run_dir / "metrics.jsonl")
    try:
        per_step = int(result["tokens"]) // max(int(result["steps"]), 1)
        return Entry(
            name=result["optimizer"], source=path, sweep_name=path.parent.parent.name, optimizer=result["optimizer"],
            param=result["param"], lr=float(result["lr"]), model=result["model"], width=int(result["width"]),
            depth=int(result["depth"]), tokens=int(result["steps_planned"]) * per_step, tokens_per_step=per_step,
            data=data_fingerprint(result.get("data") or {}), rows=rows,
        )  # fmt: skip
    except (KeyError, TypeError, ValueError) as e:
        raise MupxError(
            f"result file {run_dir / 'result.json'} is malformed ({type(e).__name__}: {e})"
        ) from None


def _read_rows(path: Path) -> list[dict]:
    try:
        lines = path.read_text().splitlines()
        rows = [json.loads(line) for line in lines if line.strip()]
    except FileNotFoundError:
        raise MupxError(f"metrics file {path} is missing") from None
    except (OSError, ValueError) as e:
        raise MupxError(f"metrics file {path} is not valid JSON lines ({type(e).__name__})") from None
    rows = [r for r in rows if r.get("loss") is not None and math.isfinite(r["loss"]) and r.get("tokens")]
    if len(rows) < 2:
        raise MupxError(f"metrics file {path} has fewer than two finite loss rows")
    return rows


def check_comparable(entries: list[Entry]) -> None:
    for key, what in (("model", "model flavour"), ("width", "target width"), ("depth", "target depth"),
                      ("tokens", "token budget"), ("data", "data (manifest fingerprint)")):  # fmt: skip
        values = {e.name: getattr(e, key) for e in entries}
        if len(set(values.values())) > 1:
            listed = ", ".join(f"{n} {v}" for n, v in values.items())
            raise MupxError(f"the runs differ in {what}: {listed}; compare like with like, or pass --force")


def name_entries(entries: list[Entry]) -> None:
    """Name each entry by its optimizer, or by its sweep's folder name where optimizers repeat."""
    counts: dict[str, int] = {}
    for e in entries:
        counts[e.optimizer] = counts.get(e.optimizer, 0) + 1
    for e in entries:
        e.name = e.optimizer if counts[e.optimizer] == 1 else e.sweep_name
    names = [e.name for e in entries]
    if len(set(names)) != len(names):
        raise MupxError(f"two inputs are the same sweep ({', '.join(names)}); pass each transfer once")


# --- the command -----------------------------------------------------------------------------------


def run_compare(
    args: list[Path], reference: str | None, out: Path | None, force: bool, smooth_frac: float
) -> dict:
    if len(args) < 2:
        raise MupxError(f"compare needs at least two transfers, got {len(args)}")
    if not 0 <= smooth_frac < 1:
        raise MupxError(f"--smooth {smooth_frac} must be in [0, 1) (a fraction of the token budget)")
    entries = [load_entry(a) for a in args]
    name_entries(entries)
    if not force:
        check_comparable(entries)
    names = [e.name for e in entries]
    if reference is None:
        ref = next((e for e in entries if e.optimizer == "adamw"), entries[0])
    else:
        ref = next((e for e in entries if e.name == reference), None)
        if ref is None:
            raise MupxError(f"unknown --reference {reference!r} (allowed: {', '.join(names)})")
    out = Path(out) if out is not None else Path("runs") / ("compare-" + "-".join(names))
    check_folder(out, "--out")
    tau = smooth_frac * max(e.rows[-1]["tokens"] for e in entries)
    curves = {
        e.name: smooth([r["tokens"] for r in e.rows], [r["loss"] for r in e.rows], tau) for e in entries
    }
    sec = {e.name: seconds_per_step(e.rows) for e in entries}
    per_token = {e.name: sec[e.name] / e.tokens_per_step if sec[e.name] else None for e in entries}
    rt, rl = curves[ref.name]
    results = []
    for e in entries:
        t, loss = curves[e.name]
        s = speedup(rt, rl, t, loss)
        ratio = sec[e.name] / sec[ref.name] if sec[e.name] and sec[ref.name] else None
        timed = per_token[e.name] and per_token[ref.name]
        speed_time = s["value"] * per_token[ref.name] / per_token[e.name] if timed else None
        results.append({
            "name": e.name, "optimizer": e.optimizer, "param": e.param, "lr": e.lr, "source": str(e.source),
            "final_loss": float(loss[-1]), "final_tokens": float(t[-1]), "tokens_budget": e.tokens,
            "seconds_per_step": sec[e.name], "step_time_ratio": ratio, "speedup": s["value"],
            "speedup_time": speed_time, "detail": s,
        })  # fmt: skip
    doc = {
        "schema_version": SCHEMA_VERSION,
        "reference": ref.name,
        "smooth": {"kind": "ema_in_tokens", "fraction": smooth_frac, "tau_tokens": tau},
        "forced": force,
        "target": {"model": ref.model, "width": ref.width, "depth": ref.depth, "tokens": ref.tokens},
        "runs": results,
    }
    png = plot_compare(entries, curves, sec, doc)
    atomic_write_files(out, {"compare.json": json_text(doc), "compare.png": png})
    doc["out"] = str(out)
    return doc


def plot_compare(entries: list[Entry], curves: dict, sec: dict, doc: dict) -> bytes:
    """Loss against tokens and against seconds (log x): raw faint, smoothed solid, the speedups in the
    legend. For each X, a dotted segment at the common loss joins where the reference (□) and X (○)
    reach it: its length in log tokens is the speedup."""
    from matplotlib.ticker import EngFormatter, NullFormatter

    from .plots import png_bytes, pyplot

    plt = pyplot()
    by_name = {r["name"]: r for r in doc["runs"]}
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6), sharey=True)
    colors = plt.get_cmap("tab10")
    for k, e in enumerate(entries):
        color = colors(k % 10)
        t = np.array([r["tokens"] for r in e.rows], float)
        raw = np.array([r["loss"] for r in e.rows], float)
        st, sl = curves[e.name]
        r, d = by_name[e.name], by_name[e.name]["detail"]
        label = f"{e.name} (lr {e.lr:.3g})"
        if e.name == doc["reference"]:
            label += ": reference"
        else:
            label += f": {format_speedup(r)} tokens"
            label += f", {r['speedup_time']:.2f}× time" if r["speedup_time"] else ""
        axes[0].plot(t, raw, color=color, alpha=0.2, lw=0.8)
        axes[0].plot(st, sl, color=color, lw=1.6, label=label)
        if e.name != doc["reference"]:
            ends = [d["reference_tokens"], d["x_tokens"]]
            axes[0].plot(ends, [d["target_loss"]] * 2, ":", color=color, lw=1.2)
            axes[0].plot(ends[:1], [d["target_loss"]], "s", color=color, mfc="white", ms=5)
            axes[0].plot(ends[1:], [d["target_loss"]], "o", color=color, mfc="white", ms=5)
        if sec[e.name]:
            per_token = sec[e.name] / e.tokens_per_step
            axes[1].plot(
                st * per_token, sl, color=color, lw=1.6, label=f"{e.name}: {sec[e.name] * 1e3:.3g} ms/step"
            )
    for ax, xlabel, unit in zip(
        axes, ("tokens", "wall time (median step time × steps)"), ("", "s"), strict=True
    ):
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(EngFormatter(unit=unit, sep="" if not unit else " "))
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel(xlabel, fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.25, which="both")
        ax.legend(fontsize=7, frameon=False)
    axes[0].set_ylabel(f"train loss (EMA, τ = {doc['smooth']['fraction']:g} of budget)", fontsize=8)
    tgt = doc["target"]
    fig.suptitle(f"{tgt['model']} width {tgt['width']} depth {tgt['depth']}, {tgt['tokens']:,} tokens: speedup "
                 f"over {doc['reference']} = tokens {doc['reference']} needs (□) / tokens X needs (○)", fontsize=9)  # fmt: skip
    fig.tight_layout()
    return png_bytes(fig)


def format_speedup(r: dict) -> str:
    d = r["detail"]
    text = f"{r['speedup']:.2f}×"
    if d["lower_bound"] is not None:
        text += f" (> {d['lower_bound']:.2f}×)"
    return text
