"""``mupx report <sweep>``: the evidence of one sweep as figures, ``report.md`` and a self-contained
``report.html``, written into ``<sweep>/report/``.

The fits are recomputed from ``sweep.json``'s run records (``fit_sweep``), never read from its ``fits``,
so the report always matches the runs, including runs that finished after the sweep last wrote its fits.
Pending and failed runs are reported (counted, listed, drawn as hollow circles) and left out of the fits.

What it gathers besides the sweep: ``<sweep>/transfer-*/transfer.json`` (``mupx transfer``) as a table,
and any ``<sweep>/*/coord_check.json`` with its ``coord_check.png`` (``mupx coord-check --out
<sweep>/coord_check``), copied beside the report.

The content is built once as a list of blocks (headings, paragraphs, tables, images, code) and rendered
twice: to Markdown (images as relative links) and to HTML (inline CSS, images as base64 data URIs, no
external resource), so the two never disagree. Every input is read and every figure drawn before the
first file is written: bad input (no folder, a missing or corrupt ``sweep.json``, another schema version)
is a one-line error that leaves nothing behind.
"""

from __future__ import annotations

import base64
import html
import json
import math
import shlex
from dataclasses import dataclass, field
from pathlib import Path

from .errors import MupxError
from .fit import AXES, EXPONENTS, JUDGED, fit_sweep
from .io import atomic_write_files, check_folder
from .summary import count_text, exponent_text, next_step, recommendation_text, reference_text
from .sweep.grid import SweepSpec
from .sweep.store import load_sweep_json

MAX_LISTED = 20  # unfinished runs listed by name
VERDICT_CLASS = {"transfers": "ok", "drifts": "bad", "inconclusive": "warn"}


@dataclass
class Doc:
    """The report's content as blocks: (kind, *args) with kind h1 | h2 | p | table | img | code."""

    blocks: list[tuple] = field(default_factory=list)
    images: dict[str, bytes] = field(default_factory=dict)  # file name -> PNG bytes

    def add(self, kind: str, *args) -> None:
        self.blocks.append((kind, *args))

    def image(self, name: str, png: bytes, caption: str) -> None:
        self.images[name] = png
        self.add("img", name, caption)


# --- inputs ----------------------------------------------------------------------------------------


def load_sweep(path: Path) -> tuple[Path, dict, SweepSpec, dict]:
    """(folder, sweep.json document, spec, freshly computed fits) for a sweep folder or its sweep.json."""
    path = Path(path)
    if not path.exists():
        raise MupxError(f"no sweep folder or sweep.json at {path}")
    folder = path if path.is_dir() else path.parent
    doc = load_sweep_json(path)
    try:
        spec = SweepSpec.from_json(doc["spec"])
        fits = fit_sweep(doc["runs"], tolerance_octaves=spec.tolerance)
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise MupxError(
            f"{folder / 'sweep.json'} is malformed ({type(e).__name__}: {e}); rerun `mupx sweep` on its folder to rebuild it"
        ) from None
    return folder, doc, spec, fits


def load_transfers(folder: Path) -> list[dict]:
    """Every transfer-*/transfer.json, with its folder name; an unreadable one is kept as an error line."""
    out = []
    for path in sorted(folder.glob("transfer-*/transfer.json")):
        try:
            doc = json.loads(path.read_text())
            doc["target"]["width"]  # noqa: B018 - the minimum the table needs
        except (OSError, ValueError, KeyError, TypeError) as e:
            out.append({"folder": path.parent.name, "error": f"{type(e).__name__}"})
            continue
        out.append({"folder": path.parent.name, **doc})
    return out


def load_coord_checks(folder: Path) -> list[dict]:
    """Every <sweep>/*/coord_check.json (verdict, axis, worst slope) with its PNG bytes when present."""
    out = []
    for path in sorted(folder.glob("*/coord_check.json")):
        image = path.parent / "coord_check.png"
        try:
            doc = json.loads(path.read_text())
            png = image.read_bytes() if image.exists() else None
        except (OSError, ValueError):
            doc, png = None, None
        out.append({"folder": path.parent.name, "doc": doc if isinstance(doc, dict) else None, "png": png})
    return out


def best_lr_curves(folder: Path, runs: list[dict], fits: dict) -> dict[str, list[dict]]:
    """Per param, the metrics of the best-lr (grid argmin) run of each series, lowest completed seed."""
    from .plots import series_label, varying

    curves: dict[str, list[dict]] = {}
    vary = varying(fits)
    for param, fit in fits.items():
        for p in fit["points"]:
            if p.get("best_lr") is None:
                continue
            match = [r for r in runs if r["param"] == param and all(r.get(a) == p[a] for a in AXES if p[a] is not None)
                     and (r.get("hp") or {}) == (p.get("hp") or {}) and r["lr"] == p["best_lr"]
                     and r["status"] == "completed"]  # fmt: skip
            for r in sorted(match, key=lambda r: repr(r.get("seed"))):
                rows = _metrics(folder / "runs" / r["run_id"] / "metrics.jsonl")
                if len(rows) >= 2:
                    curves.setdefault(param, []).append({
                        "width": p["width"], "label": series_label(p, vary), "lr": r["lr"],
                        "tokens": [row["tokens"] for row in rows], "loss": [row["loss"] for row in rows],
                    })  # fmt: skip
                    break
    return curves


def _metrics(path: Path) -> list[dict]:
    try:
        rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    except (OSError, ValueError):
        return []
    return [
        r
        for r in rows
        if isinstance(r.get("loss"), (int, float)) and math.isfinite(r["loss"]) and r.get("tokens")
    ]


# --- formatting --------------------------------------------------------------------------------------


def _lr(x) -> str:
    return f"{x:.3g}" if isinstance(x, (int, float)) else "–"


def _lr_interval(iv) -> str:
    return f"{2 ** iv[0]:.3g} – {2 ** iv[1]:.3g}" if iv else "–"


def _oct(x) -> str:
    return f"{x:+.2f}" if isinstance(x, (int, float)) else "–"


def _loss(x) -> str:
    return f"{x:.4f}" if isinstance(x, (int, float)) else "–"


def _hp(hp: dict | None) -> str:
    return ", ".join(f"{k}={v}" for k, v in (hp or {}).items()) or "–"


def _cmd(args) -> str:
    return shlex.join(str(a) for a in args)


def transfer_command(folder: Path, t: dict) -> str:
    """The ``mupx transfer`` command that wrote a transfer.json (rebuilt from it; the file stores no argv)."""
    roles = [r.get("role", "") for r in t.get("runs", [])]
    target, pred = t["target"], t.get("predicted") or {}
    args = ["mupx", "transfer", "--from", t.get("sweep") or folder / "sweep.json", "--width", target["width"], "--depth",
            target["depth"], "--steps", target["steps"], "--param", pred.get("param", "mup")]  # fmt: skip
    if target.get("batch") and target["batch"] != (pred.get("reference") or {}).get("batch"):
        args += ["--batch", target["batch"]]
    rules = t.get("rules") or {}
    flags = (("tokens", "--horizon-rule"), ("batch", "--batch-rule"))
    args += [a for key, flag in flags if rules.get(key) for a in (flag, rules[key])]
    if rules.get("adam"):
        args += ["--adam-rules", ",".join(rules["adam"])]
    if any(r.get("role") == "uncorrected" for r in t.get("runs", [])):
        args.append("--compare-uncorrected")
    if t.get("baseline"):
        args += ["--baseline", t["baseline"]["param"]]
    verify = len({r for r in roles if r.startswith("verify")})
    if verify:
        args += ["--verify", verify]
    seeds = roles.count("transfer")
    if seeds > 1:
        args += ["--seeds", seeds]
    if t.get("forced"):
        args.append("--force")
    return _cmd([*args, *(a for o in t.get("overrides") or [] for a in ("-s", o))])


# --- content -----------------------------------------------------------------------------------------


def build(folder: Path, doc: dict, spec: SweepSpec, fits: dict) -> Doc:
    """Everything the report says, figures included, in memory."""
    from . import plots

    out = Doc()
    runs = doc["runs"]
    widths, depths = list(spec.widths), list(spec.depths)
    horizons = (f"horizons {', '.join(map(count_text, spec.tokens))} tokens" if spec.tokens
                else f"{', '.join(map(str, spec.steps))} steps per run")  # fmt: skip
    batches = f"; global batch {', '.join(map(str, spec.batches))}" if spec.batches else ""
    out.add("h1", f"mupx report: {doc['name']}")
    lrs = (
        f"{len(spec.lrs)} lrs, {spec.lrs[0]:.3g} – {spec.lrs[-1]:.3g}"
        if spec.lrs
        else f"auto around {spec.auto.center:.3g}"
    )
    out.add("p", f"{spec.optimizer} on {spec.model}; parameterizations {', '.join(spec.params)}; widths "
                 f"{', '.join(map(str, widths))}; depths {', '.join(map(str, depths))}; {lrs}; {len(spec.seeds)} "
                 f"seed(s); {horizons}{batches}; base width {spec.base_width}, base depth {spec.base_depth}; "
                 f"hp axes {_hp(spec.hp)}; drift tolerance {spec.tolerance:g} octaves.")  # fmt: skip
    machine = doc.get("machine") or {}
    out.add("p", f"Sweep updated {doc.get('updated', '?')} on {machine.get('host', '?')} "
                 f"({machine.get('platform', '?')}, Python {machine.get('python', '?')}).")  # fmt: skip
    if doc.get("command"):
        out.add("code", _cmd(doc["command"]))
    _status(out, runs)
    out.add("p", objective_sentence(runs))
    transfers = load_transfers(folder)
    checks = load_coord_checks(folder)
    axis = next((a for a in JUDGED if any(fit["drift"].get(a) for fit in fits.values())), None)
    if axis:
        out.image("headline.png", plots.headline(fits, axis, spec.tolerance, headline_target(transfers, axis)),
                  f"The optimal base lr (log2) against {axis}: μP and SP optima with their 95% intervals, each "
                  "parameterization's drift line and verdict, and the transfer band around μP's recommended "
                  "base lr (± half the tolerance)" + (", with the transfer target" if transfers else "") + ".")  # fmt: skip

    out.add("h2", "Verdict: does the optimal learning rate transfer?")
    _verdicts(out, fits, spec)
    _coord_check_warning(out, checks, spec)
    out.add("h2", "Loss against learning rate")
    out.image("loss_vs_lr.png", plots.loss_vs_lr(fits, widths),
              "Seed-mean final val loss per lr and width; dashed: quadratic fit; star: optimum with 95% "
              "interval; dotted: the recommended base lr; ×: diverged; hollow circle: pending or failed.")  # fmt: skip
    _grid(out, runs)
    for axis in AXES:
        if any(fit["drift"].get(axis) for fit in fits.values()):
            zone = "its slope, the measured exponent" if axis in EXPONENTS else "the transfer zone"
            out.image(f"optimum_vs_{axis}.png", plots.optimum_vs_axis(fits, axis, spec.tolerance, widths),
                      f"log2 lr* against log2 {axis} with 95% intervals (triangles: bounds at the grid edge), "
                      f"the fitted drift line and {zone}.")  # fmt: skip
    _budget(out, fits, transfers, doc.get("cost"))
    out.add("h2", "Optimum per width")
    _optima(out, fits)
    curves = best_lr_curves(folder, runs, fits)
    if curves:
        out.add("h2", "Training curves")
        out.image("training_curves.png", plots.training_curves(curves, widths),
                  "Train loss against tokens of the best-lr run per width (faint: per step; solid: EMA).")  # fmt: skip

    if transfers:
        out.add("h2", "Transfer to the target")
        _transfers(out, transfers)
    out.add("h2", "Coordinate check")
    if checks:
        _coord_checks(out, checks)
    else:
        out.add("p", "None with this sweep. A coordinate check saved in the sweep folder (`mupx coord-check "
                     f"--optimizer {spec.optimizer} --param mup --out {folder / 'coord_check'}`) is shown here, "
                     "and a failing one is flagged beside the verdict.")  # fmt: skip

    out.add("h2", "Commands")
    out.add("p", "The commands that made this report:")
    cmds = [_cmd(doc["command"])] if doc.get("command") else []
    cmds += [c["doc"]["command"] for c in checks if c["doc"] and c["doc"].get("command")]
    cmds += [transfer_command(folder, t) for t in transfers if "error" not in t]
    cmds.append(_cmd(["mupx", "report", folder]))
    out.add("code", "\n".join(cmds))
    if fits:
        out.add("h2", "Next")
        out.add("code", next_step(fits, folder, transfers))
    return out


def objective_sentence(runs: list[dict]) -> str:
    """What the fits minimise: the runs' final val loss (their ``loss``), or the train loss where a run
    recorded no val loss."""
    done = [r for r in runs if r["status"] == "completed" and r.get("loss") is not None]
    fallback = sum(1 for r in done if r.get("val_loss") is None)
    text = ("The fitted objective is each run's validation loss at its last step (the same fixed validation "
            "windows for every run); the training curves below show the train loss.")  # fmt: skip
    if fallback:
        text += f" {fallback} run(s) recorded no val loss and are scored by their smoothed final train loss."
    return text


def headline_target(transfers: list[dict], axis: str) -> dict | None:
    """The transfer furthest along ``axis``, as the headline figure's target: its transferred lr and the
    optimum its verify runs measured (None without a transfer)."""
    usable = [t for t in transfers if "error" not in t and (t.get("predicted") or {}).get("param") == "mup"]
    if not usable:
        return None
    t = max(usable, key=lambda t: t["target"][axis])
    regret = t.get("regret") or {}
    measured = None if regret.get("measured_at_edge") else regret.get("measured_lr_star")
    return {"value": t["target"][axis], "lr": t["predicted"]["lr"], "measured": measured,
            "interval": regret.get("measured_interval") if measured else None}  # fmt: skip


def _grid(out: Doc, runs: list[dict]) -> None:
    """Every run's outcome, per param a table of lr × (width, depth, hp): seed-mean objective (seeds), or
    how many diverged / are pending."""
    for param in sorted({r["param"] for r in runs}):
        mine = [r for r in runs if r["param"] == param]

        def col(r: dict) -> tuple:
            return (r["width"], r["depth"], r.get("tokens") or 0, r.get("batch") or 0, _hp(r.get("hp")))

        cols = sorted({col(r) for r in mine})
        many = [len({c[i] for c in cols}) > 1 for i in range(4)]
        any_hp = any(c[4] != "–" for c in cols)
        head = ["lr"] + [f"w{w}" + (f" d{d}" if many[1] else "") + (f" {count_text(t)} tok" if many[2] else "")
                         + (f" b{b}" if many[3] else "") + (f" {h}" if any_hp else "") for w, d, t, b, h in cols]  # fmt: skip
        rows = []
        for lr in sorted({r["lr"] for r in mine}):
            row = [_lr(lr)]
            for c in cols:
                cell = [r for r in mine if r["lr"] == lr and col(r) == c]
                row.append(_grid_cell(cell))
            rows.append(row)
        out.add("p", f"Every {param} run (seed-mean objective, seeds in brackets; div: diverged):")
        out.add("table", head, rows)


def _grid_cell(runs: list[dict]) -> str:
    if not runs:
        return ""
    done = [
        r["loss"]
        for r in runs
        if r["status"] == "completed" and r.get("loss") is not None and math.isfinite(r["loss"])
    ]
    parts = [f"{sum(done) / len(done):.4f} ({len(done)})"] if done else []
    diverged = sum(1 for r in runs if r["status"] == "diverged")
    other = len(runs) - len(done) - diverged
    parts += [f"div ×{diverged}"] if diverged else []
    parts += [f"pending/failed ×{other}"] if other else []
    return ", ".join(parts)


def _coord_check_warning(out: Doc, checks: list[dict], spec: SweepSpec) -> None:
    """A failing coordinate check of this optimizer under μP undermines every μP verdict above."""
    failed = [c for c in checks if c["doc"] and c["doc"].get("optimizer") == spec.optimizer
              and c["doc"].get("param") == "mup" and c["doc"].get("verdict") != "pass"]  # fmt: skip
    for c in failed:
        out.add("p", f"Warning: the coordinate check in {c['folder']} FAILED for {spec.optimizer} under μP: the "
                     "parameterization is not verified, so a 'transfers' verdict above is not evidence of μP.")  # fmt: skip


def _status(out: Doc, runs: list[dict]) -> None:
    counts: dict[str, int] = {}
    for r in runs:
        counts[r["status"]] = counts.get(r["status"], 0) + 1
    out.add("p", f"{len(runs)} runs: " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) + ".")
    unfinished = [r for r in runs if r["status"] not in ("completed", "diverged")]
    if unfinished:
        out.add("p", f"Warning: {len(unfinished)} run(s) pending or failed; the fits use the finished runs only "
                     "(rerun the sweep command to finish them).")  # fmt: skip
        rows = [[r["run_id"], r["status"], r.get("reason") or ""] for r in unfinished[:MAX_LISTED]]
        out.add("table", ["run", "status", "reason"], rows)
        if len(unfinished) > MAX_LISTED:
            out.add("p", f"(the first {MAX_LISTED} of {len(unfinished)} listed)")


def _verdicts(out: Doc, fits: dict, spec: SweepSpec) -> None:
    tol = spec.tolerance
    rows = []
    for param, fit in fits.items():
        for axis in AXES:
            entries = fit["drift"].get(axis, [])
            shown = [a for a in AXES if a != axis and (a in JUDGED or len({e.get(a) for e in entries}) > 1)]
            for d in entries:
                iv = d.get("octaves_interval")
                at = ", ".join(f"{a} {count_text(d[a]) if a == 'tokens' else d[a]}" for a in shown if a in d)
                rows.append([
                    param, axis, at, _hp(d.get("hp")), _oct(d.get("octaves")),
                    f"{iv[0]:+.2f} to {iv[1]:+.2f}" if iv else "–", d["verdict"], d.get("reason") or "",
                ])  # fmt: skip
    if rows:
        out.add(
            "table",
            ["param", "axis", "at", "hp", "drift (octaves)", "95% interval", "verdict", "reason"],
            rows,
        )
    else:
        out.add("p", "No drift: the sweep has a single width and depth.")
    out.add(
        "p",
        f"Drift = change of log2 lr* over the swept range; along width and depth it transfers when |drift| ≤ "
        f"{tol:g} octaves; along tokens and batch lr* is expected to move, and the slope is measured, not judged.",
    )
    rows = []
    for param, fit in fits.items():
        rec = fit.get("recommended")
        verdict = ", ".join(f"{a}: {v}" for a, v in (fit.get("verdict") or {}).items() if v) or "–"
        if rec:
            rows.append([param, recommendation_text({**rec, "base_width": spec.base_width, "base_depth": spec.base_depth}),
                         str(rec.get("n_points")), verdict])  # fmt: skip
        else:
            rows.append([param, "–", "0", verdict])
    out.add("table", ["param", "recommended", "optima used", "verdict"], rows)


def _optima(out: Doc, fits: dict) -> None:
    rows = []
    swept = [a for a in EXPONENTS if len({p.get(a) for f in fits.values() for p in f["points"]}) > 1]
    for param, fit in fits.items():
        for p in fit["points"]:
            edge = f"at {p['edge']} edge" if p.get("at_edge") else ""
            runs = f"{p['n_seeds']} seed{'s' * (p['n_seeds'] != 1)}, {p['n_diverged']} diverged" + (
                f", {p['n_missing']} pending/failed" if p["n_missing"] else ""
            )
            rows.append([
                param, str(p["width"]), str(p["depth"]), *(count_text(p[a]) for a in swept), _hp(p.get("hp")), _lr(p.get("lr_star")),
                _lr_interval(p.get("interval")), p["method"] + (f" ({edge})" if edge else ""), _lr(p.get("best_lr")),
                _loss(p.get("best_loss")), runs, p.get("note") or "",
            ])  # fmt: skip
    out.add(
        "table",
        [
            "param",
            "width",
            "depth",
            *swept,
            "hp",
            "lr*",
            "95% interval",
            "method",
            "grid best lr",
            "best loss",
            "runs",
            "note",
        ],
        rows,
    )


def _transfers(out: Doc, transfers: list[dict]) -> None:
    rows = []
    for t in transfers:
        if "error" in t:
            rows.append([t["folder"], f"unreadable transfer.json ({t['error']})", *(["–"] * 8)])
            continue
        target, pred = t["target"], t.get("predicted") or {}
        regret, base = t.get("regret"), t.get("baseline")
        loss = _loss(t["loss"]) if t.get("loss") is not None else t.get("status", "–")
        base_loss = (_loss(base["loss"]) if base["loss"] is not None else base["status"]) if base else "–"
        u = t.get("uncorrected") or {}
        rows.append([
            t["folder"], f"w{target['width']} d{target['depth']}, {target['steps']} steps"
            + (f" of batch {target['batch']} ({count_text(target.get('tokens'))} tokens)" if target.get("batch") else ""),
            pred.get("param", "–"), _lr(pred.get("lr")), _lr(pred.get("extrapolated_lr")), loss,
            f"{regret['value']:+.4f} (best lr {_lr(regret['best_lr'])})" if regret else "–",
            f"{_lr(u.get('lr'))}" + (f": regret {u['regret']:+.4f}" if u.get("regret") is not None else ""),
            f"{base['param']}: {base_loss}" if base else "–",
            f"{base['gain']:+.4f}" if base and base.get("gain") is not None else "–",
        ])  # fmt: skip
    out.add("table", ["transfer", "target", "param", "predicted lr", "extrapolated lr", "loss", "regret",
                      "uncorrected proxy lr", "baseline loss", "gain over baseline"], rows)  # fmt: skip
    out.add("p", "Predicted lr: the sweep's recommended base lr moved to the target's horizon and batch by the "
                 "transfer's rules, which the transfer ran; uncorrected: the recommendation unmoved; extrapolated: the "
                 "drift plane's value at the target, for comparison. Regret = loss at the transferred lr − best loss "
                 "among the verification lrs (≥ 0; small is good). Gain = baseline loss − transferred loss at the "
                 "same base lr (> 0: the transfer wins).")  # fmt: skip


def _budget(out: Doc, fits: dict, transfers: list[dict], cost: dict | None) -> None:
    """The horizon and batch: the plane's exponents with their intervals, each transfer's prediction at its
    target with its interval, and what branched horizons saved."""
    rows = []
    for param, fit in fits.items():
        rec = fit.get("recommended") or {}
        for axis, e in (rec.get("plane") or {}).items():
            if axis in EXPONENTS:
                rows.append([param, axis, exponent_text(axis, e), e["verdict"], e.get("reason") or ""])
    if not rows:
        return
    out.add("h2", "Horizon and batch")
    out.add("p", "One plane through the optima, log2 lr* = c + Σ slope · log2(axis) over width, depth, tokens and "
                 "batch: along tokens and batch its slopes are exponents (μP references: lr* ∝ D^−0.32 in the horizon, "
                 "Bjorck et al. 2409.19913; lr ∝ √B for Adam in the SDE view, Malladi et al. 2205.10287).")  # fmt: skip
    out.add("table", ["param", "axis", "exponent (95% interval)", "verdict", "reason"], rows)
    for param, fit in fits.items():
        rec = fit.get("recommended") or {}
        if rec.get("lr"):
            out.add(
                "p",
                f"{param}: the recommendation is at the reference{reference_text(rec.get('reference') or {})}.",
            )
    for t in transfers:
        pred = t.get("predicted") or {}
        if "error" in t or not pred.get("axes"):
            continue
        iv = pred.get("interval")
        moved = "; ".join(
            f"{a}: {x['rule']} {x['shift_octaves']:+.2f} octaves"
            for a, x in pred["axes"].items()
            if a in EXPONENTS
        )
        out.add("p", f"{t['folder']}: predicted base lr {_lr(pred['lr'])} (95% {_lr_interval(iv)}) for "
                     f"{count_text(t['target'].get('tokens'))} tokens at batch {t['target'].get('batch')} ({moved}); "
                     f"uncorrected proxy lr {_lr(pred.get('uncorrected_lr'))}.")  # fmt: skip
    if cost and cost.get("ratio") is not None:
        out.add("p", f"Branched horizons trained {count_text(cost['tokens_trained'])} tokens for runs that train "
                     f"{count_text(cost['tokens_independent'])} independently ({cost['ratio']:.2f}x; {cost['branched_runs']} "
                     "runs branched off a longer run's stable phase).")  # fmt: skip


def _coord_checks(out: Doc, checks: list[dict]) -> None:
    for c in checks:
        d = c["doc"]
        if d is None:
            out.add("p", f"{c['folder']}/coord_check.json is unreadable.")
            continue
        worst = d.get("worst") or {}
        slope = worst.get("slope")
        out.add("p", f"{c['folder']}: {d.get('optimizer')} {d.get('param')} over {d.get('axis')}s "
                     f"{', '.join(map(str, d.get('values', [])))}: {str(d.get('verdict')).upper()} — "
                     f"{d.get('n_failed')} of {d.get('n_gated')} gated slopes above {d.get('tolerance')}"
                     + (f" (worst |slope| {abs(slope):.3f}: {worst.get('module')} {worst.get('metric')} t={worst.get('t')})"
                        if slope is not None else "") + ".")  # fmt: skip
        if c["png"]:
            name = "coord_check.png" if len(checks) == 1 else f"coord_check-{c['folder']}.png"
            out.image(name, c["png"], f"Coordinate check ({c['folder']}).")


# --- rendering ---------------------------------------------------------------------------------------


def to_markdown(doc: Doc) -> str:
    def text(t: str) -> str:  # literal asterisks (lr*), not emphasis
        return str(t).replace("*", "\\*")

    def cell(t: str) -> str:
        return text(t).replace("|", "\\|").replace("\n", " ")

    parts = []
    for kind, *a in doc.blocks:
        if kind == "h1":
            parts.append(f"# {a[0]}")
        elif kind == "h2":
            parts.append(f"## {a[0]}")
        elif kind == "p":
            parts.append(text(a[0]))
        elif kind == "code":
            parts.append(f"```\n{a[0]}\n```")
        elif kind == "img":
            parts.append(f"![{Path(a[0]).stem}]({a[0]})\n\n*{text(a[1])}*")
        elif kind == "table":
            head, rows = a
            lines = ["| " + " | ".join(cell(h) for h in head) + " |", "|" + "---|" * len(head)]
            lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows]
            parts.append("\n".join(lines))
    return "\n\n".join(parts) + "\n"


CSS = """
body { font: 14px/1.45 -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; color: #1f2328;
       max-width: 1150px; margin: 2em auto; padding: 0 1.2em; }
h1 { font-size: 1.6em; border-bottom: 1px solid #d0d7de; padding-bottom: .3em; }
h2 { font-size: 1.25em; margin-top: 1.8em; border-bottom: 1px solid #eaeef2; padding-bottom: .2em; }
table { border-collapse: collapse; margin: .8em 0; font-size: 12.5px; display: block; overflow-x: auto; }
th, td { border: 1px solid #d0d7de; padding: 3px 8px; text-align: left; vertical-align: top; }
th { background: #f6f8fa; }
tr:nth-child(even) td { background: #fbfcfd; }
td.ok { color: #116329; font-weight: 600; } td.bad { color: #a40e26; font-weight: 600; }
td.warn { color: #7d4e00; font-weight: 600; }
pre { background: #f6f8fa; padding: .8em; overflow-x: auto; border-radius: 4px; font-size: 12.5px; }
figure { margin: 1em 0; } figure img { max-width: 100%; border: 1px solid #eaeef2; }
figcaption { font-size: 12px; color: #57606a; }
"""


def to_html(doc: Doc) -> str:
    e = html.escape
    parts = []
    title = next((a[0] for kind, *a in doc.blocks if kind == "h1"), "mupx report")
    for kind, *a in doc.blocks:
        if kind in ("h1", "h2"):
            parts.append(f"<{kind}>{e(a[0])}</{kind}>")
        elif kind == "p":
            parts.append(f"<p>{e(a[0])}</p>")
        elif kind == "code":
            parts.append(f"<pre><code>{e(a[0])}</code></pre>")
        elif kind == "img":
            data = base64.b64encode(doc.images[a[0]]).decode("ascii")
            parts.append(f'<figure><img alt="{e(Path(a[0]).stem)}" src="data:image/png;base64,{data}">'
                         f"<figcaption>{e(a[1])}</figcaption></figure>")  # fmt: skip
        elif kind == "table":
            head, rows = a
            cells = ["<tr>" + "".join(f"<th>{e(str(h))}</th>" for h in head) + "</tr>"]
            for row in rows:
                tds = "".join(
                    f'<td class="{VERDICT_CLASS[c]}">{e(c)}</td>'
                    if c in VERDICT_CLASS
                    else f"<td>{e(str(c))}</td>"
                    for c in row
                )
                cells.append(f"<tr>{tds}</tr>")
            parts.append("<table>" + "\n".join(cells) + "</table>")
    body = "\n".join(parts)
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{e(title)}</title>\n'
            f"<style>{CSS}</style></head>\n<body>\n{body}\n</body></html>\n")  # fmt: skip


def write_report(path: Path) -> Path:
    """Build the report of a sweep folder (or its sweep.json) into ``<sweep>/report/``; returns report.html."""
    folder, doc, spec, fits = load_sweep(path)
    out = folder / "report"
    check_folder(out, "report folder")
    content = build(folder, doc, spec, fits)
    markdown, page = to_markdown(content), to_html(content)
    atomic_write_files(out, {**content.images, "report.md": markdown, "report.html": page})
    return out / "report.html"
