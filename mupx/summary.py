"""The words mupx prints for a sweep's fits, the same in the sweep's summary, ``mupx transfer`` and the
report: an optimum or a bound, the recommended base lr with its base shape, and the command to run next."""

from __future__ import annotations

from pathlib import Path


def lr_text(lr: float, edge: str | None) -> str:
    """An optimum on the grid's edge is a bound: '≥ 0.0312' (high edge) or '≤ 0.0312' (low edge)."""
    return f"{'≥ ' if edge == 'high' else '≤ ' if edge == 'low' else ''}{lr:.3g}"


def recommendation_text(rec: dict) -> str:
    """'base lr 0.00312 at base width 64, depth 2' (with its interval, or as a bound) of a recommendation
    with its base shape (``base_width``, ``base_depth``)."""
    bound = rec.get("bound")
    if bound:
        lr = "≥ " + f"{bound['lower']:.4g}" if bound.get("lower") else ""
        if bound.get("upper"):
            lr = f"{lr} and ≤ {bound['upper']:.4g}" if lr else f"≤ {bound['upper']:.4g}"
        lr += " (a bound: every optimum is on the lr grid's edge)"
    else:
        interval = rec.get("interval")
        lr = f"{rec['lr']:.4g}" + (
            f" (95% interval {2 ** interval[0]:.3g} – {2 ** interval[1]:.3g})" if interval else ""
        )
    hp = " with " + ", ".join(f"{k}={v}" for k, v in rec["hp"].items()) if rec.get("hp") else ""
    return f"base lr {lr} at base width {rec['base_width']}, depth {rec['base_depth']}{hp}"


def next_step(fits: dict, folder: Path, transfers: list[dict] = ()) -> str:
    """The command to run next, from the first param's verdict (μP's when there is one) and, once a
    transfer ran, its target: train it with the sweep's hyperparameters."""
    param = "mup" if "mup" in fits else next(iter(fits))
    fit = fits[param]
    verdicts = {axis: v for axis, v in (fit.get("verdict") or {}).items() if v}
    rec = fit.get("recommended") or {}
    if "drifts" in verdicts.values():
        return (f"mupx report {folder}  (lr* drifts with {', '.join(a for a, v in verdicts.items() if v == 'drifts')}: "
                "mupx transfer refuses this sweep without --force)")  # fmt: skip
    if "inconclusive" in verdicts.values() or rec.get("bound"):
        edges = ", ".join(f"width {e['width']} depth {e['depth']}" for e in rec.get("at_edge", []))
        where = f" (optima at the lr grid's edge at {edges})" if edges else ""
        return f"rerun with a wider --lrs, or --lrs auto{where}; mupx report {folder} shows the curves"
    done = [t for t in transfers if "error" not in t and (t.get("predicted") or {}).get("param") == param]
    if done:
        target = max(done, key=lambda t: (t["target"]["width"], t["target"]["depth"]))["target"]
        return (f"mupx train --from-sweep {folder / 'sweep.json'} --width {target['width']} --depth "
                f"{target['depth']} --steps <your target's steps>")  # fmt: skip
    budget = "".join(
        f" --{flag} <target {flag}>"
        for axis, flag in (("tokens", "tokens"), ("batch", "batch"))
        if verdicts.get(axis)
    )
    return f"mupx transfer --from {folder} --width <target width>{budget} --baseline sp --verify 2"


def count_text(n) -> str:
    """1638400 -> '1.64M' (tokens and batches as a researcher reads them)."""
    if not isinstance(n, (int, float)):
        return "-"
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.3g}{unit}"
    return f"{n:g}"


def exponent_text(axis: str, e: dict) -> str:
    """'lr* ∝ tokens^-0.31 (95% -0.45 to -0.17)' of a plane's slope along tokens or batch."""
    iv = e.get("slope_interval")
    return f"lr* ∝ {axis}^{e['slope']:+.2f}" + (
        f" (95% {iv[0]:+.2f} to {iv[1]:+.2f})" if iv else " (no interval)"
    )


def reference_text(ref: dict) -> str:
    """' for 6.55M tokens at batch 64': the horizon and batch a recommendation is at."""
    parts = ([f"{count_text(ref['tokens'])} tokens"] if ref.get("tokens") else []) + (
        [f"batch {ref['batch']}"] if ref.get("batch") else []
    )
    return " for " + " at ".join(parts) if parts else ""
