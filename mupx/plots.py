"""The report's figures, drawn from ``fit_sweep``'s output (and the runs' metrics) with matplotlib's Agg
backend. Each function returns PNG bytes; ``mupx.report`` writes them (atomically) and embeds them.

Conventions shared by the figures: colour = width (one sequential colour map over the sweep's widths, the
same in every panel; along depth too), learning rates and widths on log2 axes, one panel per
parameterization (μP and SP side by side, or stacked where the legends are long).
"""

from __future__ import annotations

import io
import math

import numpy as np

from .fit import EXPONENTS, slice_points

PARAM_TITLES = {"mup": "μP", "sp": "SP"}
LINESTYLES = ("-", "--", ":", "-.")  # one per hp combination or depth
DPI = 110


def pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def png_bytes(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, bbox_inches="tight")
    pyplot().close(fig)
    return buf.getvalue()


def width_colors(widths: list[int]) -> dict[int, tuple]:
    """One colour per width from a sequential map (dark = narrow, light = wide; the last yellow is skipped)."""
    cmap = pyplot().get_cmap("viridis")
    n = len(widths)
    return {w: cmap(0.85 * i / max(n - 1, 1)) for i, w in enumerate(sorted(widths))}


def short_hp(hp: dict | None) -> str:
    """'weight_decay=0.1' (the last part of each key)."""
    return ", ".join(f"{k.split('.')[-1]}={v:g}" if isinstance(v, float) else f"{k.split('.')[-1]}={v}"
                     for k, v in (hp or {}).items())  # fmt: skip


def varying(fits: dict) -> list[str]:
    """The axes besides width whose values differ among the fits' points (depth, tokens, batch)."""
    return [
        a
        for a in ("depth", "tokens", "batch")
        if len({p.get(a) for f in fits.values() for p in f["points"]}) > 1
    ]


def axis_text(axis: str, value) -> str:
    """'depth 4', '1.64M tokens', 'batch 64'."""
    if axis == "tokens":
        from .summary import count_text

        return f"{count_text(value)} tokens"
    return f"{axis} {value}"


def fixed_axes(entries: list[dict], axis: str) -> list[str]:
    """The other axes whose fixed value differs between drift entries along ``axis`` (what names each line)."""
    return [
        a for a in ("width", "depth", "tokens", "batch") if a != axis and len({e.get(a) for e in entries}) > 1
    ]


def series_label(point: dict, vary: list[str]) -> str:
    """'depth 4, 1.64M tokens, weight_decay=0.1' for the panels that need it ('' when nothing varies;
    ``vary``: :func:`varying`)."""
    return ", ".join(
        [axis_text(a, point[a]) for a in vary] + ([short_hp(point.get("hp"))] if point.get("hp") else [])
    )


def _log2_xticks(ax) -> None:
    """Integer log2 ticks on x, labelled 2^k."""
    from matplotlib.ticker import FuncFormatter, MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"$2^{{{int(v)}}}$" if v == int(v) else ""))


def loss_vs_lr(fits: dict, widths: list[int]) -> bytes:
    """Seed-mean objective (the runs' final val loss, ± seed std) against log2 lr, one line per width; per
    param a column, per (depth, hp) a row. Dashed: the fitted quadratic over its window; star with a
    horizontal bar: the optimum and its 95% interval (open star: at the grid edge); dotted vertical: the
    recommended base lr; ×: diverged lrs, at the top; hollow circle at the bottom: lrs with no finished run
    yet (pending or failed)."""
    plt = pyplot()
    params, vary = list(fits), varying(fits)
    rows = list(dict.fromkeys(series_label(p, vary) for fit in fits.values() for p in fit["points"]))
    colors = width_colors(widths)
    fig, axes = plt.subplots(
        len(rows), len(params), figsize=(4.6 * len(params), 3.3 * len(rows)), squeeze=False, sharey="row"
    )
    for c, param in enumerate(params):
        for r, label in enumerate(rows):
            ax = axes[r][c]
            for p in fits[param]["points"]:
                if series_label(p, vary) == label:
                    _draw_series(ax, p, colors[p["width"]], sorted(widths).index(p["width"]))
            rec = fits[param].get("recommended")
            if rec and rec.get("log2_lr") is not None:
                ax.axvline(rec["log2_lr"], color="black", ls=":", lw=1.1, zorder=1)
            title = PARAM_TITLES.get(param, param) + (f" — {label}" if label else "")
            ax.set_title(title, fontsize=10)
            ax.set_xlabel("learning rate (log2)", fontsize=8)
            if c == 0:
                ax.set_ylabel("val loss (seed mean ± std)", fontsize=8)
            _log2_xticks(ax)
            ax.tick_params(labelsize=7)
            ax.grid(alpha=0.25)
    _legend(axes[0][-1], colors)
    fig.tight_layout()
    return png_bytes(fig)


def _draw_series(ax, p: dict, color, k: int) -> None:
    """One width's curve; its diverged (top) and missing (bottom) marks sit in row k, so widths don't hide
    each other."""
    ok = [c for c in p["curve"] if c["status"] == "ok"]
    if ok:
        xs = [c["log2_lr"] for c in ok]
        ys = [c["mean_loss"] for c in ok]
        err = [c["std_loss"] or 0.0 for c in ok]
        ax.errorbar(xs, ys, yerr=err, color=color, marker="o", markersize=3.5, lw=1.3, capsize=2)
    q = p.get("quadratic")
    if q and p.get("fit_lrs"):
        lo, hi = math.log2(min(p["fit_lrs"])), math.log2(max(p["fit_lrs"]))
        x = np.linspace(lo, hi, 50)
        ax.plot(x, q["c"] + q["b"] * (x - q["x0"]) + q["a"] * (x - q["x0"]) ** 2, "--", color=color, lw=1)
    if p.get("log2_lr_star") is not None:
        xs = p["log2_lr_star"]
        if q and p["method"] == "quadratic":
            ys = q["c"] + q["b"] * (xs - q["x0"]) + q["a"] * (xs - q["x0"]) ** 2
        else:
            ys = p["best_loss"]
        iv = p.get("interval")
        xerr = [[xs - iv[0]], [iv[1] - xs]] if iv else None
        ax.errorbar([xs], [ys], xerr=xerr, color=color, capsize=3, lw=1.6, zorder=5,
                    marker="*", markersize=11, markeredgecolor="black", markeredgewidth=0.6,
                    markerfacecolor="white" if p.get("at_edge") else color)  # fmt: skip
    edge = ax.get_xaxis_transform()  # x in data, y in axes fractions
    for c in p["curve"]:
        if c["status"] == "diverged":
            ax.plot([c["log2_lr"]], [0.96 - 0.045 * k], "x", color=color, transform=edge, ms=6, mew=1.8)
        elif c["status"] == "missing":
            ax.plot([c["log2_lr"]], [0.04 + 0.045 * k], "o", mfc="none", color=color, transform=edge, ms=6)


def _legend(ax, colors: dict) -> None:
    from matplotlib.lines import Line2D

    handles = [
        Line2D([], [], color=col, marker="o", markersize=4, label=f"width {w}") for w, col in colors.items()
    ]
    handles += [
        Line2D([], [], color="grey", ls="--", label="quadratic fit (window)"),
        Line2D([], [], color="black", ls=":", label="recommended base lr"),
        Line2D([], [], color="grey", marker="*", ls="none", markersize=10, mec="black", label="optimum, 95% interval"),
        Line2D([], [], color="grey", marker="*", ls="none", markersize=10, mfc="white", mec="black", label="optimum at grid edge"),
        Line2D([], [], color="grey", marker="x", ls="none", mew=1.8, label="diverged"),
        Line2D([], [], color="grey", marker="o", ls="none", mfc="none", label="pending / failed"),
    ]  # fmt: skip
    ax.legend(handles=handles, fontsize=7, loc="center left", bbox_to_anchor=(1.02, 0.5), frameon=False)


def optimum_vs_axis(fits: dict, axis: str, tolerance: float, widths: list[int]) -> bytes:
    """log2 lr* against log2 width (or depth, tokens, batch), one panel per param and one series per (values
    of the other axes, hp): the optima with their 95% intervals (triangles: a bound at the grid edge), the
    fitted drift line, and, along width and depth, the transfer zone — the band of half-width tolerance/2
    around the line's midpoint, which holds the line exactly when its drift over the swept range is within
    the tolerance; along tokens and batch the line's slope is the measured exponent. The verdicts and
    exponents are in the legend. Off the width axis the colour is the width (as in the other figures);
    along width, the series."""
    plt = pyplot()
    params = [p for p in fits if fits[p]["drift"].get(axis)]
    fig, axes = plt.subplots(len(params), 1, figsize=(8.0, 2.9 * len(params)), squeeze=False, sharex=True)
    by_width, cycle = width_colors(widths), plt.get_cmap("tab10")
    for ax, param in zip(axes[:, 0], params, strict=True):
        entries = fits[param]["drift"][axis]
        values = sorted({p[axis] for p in fits[param]["points"]})
        span = math.log2(values[-1] / values[0])
        hps = list(dict.fromkeys(short_hp(d.get("hp")) for d in entries))
        fixed = fixed_axes(entries, axis)
        for k, d in enumerate(entries):
            color = by_width[d["width"]] if axis != "width" else cycle(k % 10)
            ls = LINESTYLES[hps.index(short_hp(d.get("hp"))) % 4] if axis != "width" else "-"
            pts = slice_points(fits[param]["points"], d, axis)
            parts = [axis_text(a, d[a]) for a in fixed] + ([short_hp(d["hp"])] if d.get("hp") else [])
            name = ", ".join(parts)
            dodge = 0.015 * span * (k - (len(entries) - 1) / 2)  # keep overlapping error bars apart
            _draw_optima(ax, pts, axis, color, "osDPXh*"[k % 7], dodge)
            label = f"{name}: " if name else ""
            if d.get("slope") is not None:
                u = np.log2(np.array(d["range"], float))
                y = d["intercept"] + d["slope"] * u
                mid = y.mean()
                band = 0.12 if len(entries) <= 2 else 0.05
                if axis in EXPONENTS:
                    text = f"{label}lr* ∝ {axis}^{d['slope']:+.2f} → {d['verdict']}"
                else:
                    ax.fill_between(
                        u, mid - tolerance / 2, mid + tolerance / 2, color=color, alpha=band, lw=0
                    )
                    text = f"{label}{d['octaves']:+.2f} oct → {d['verdict']}"
                ax.plot(u, y, ls, color=color, lw=1.3, label=text)
            else:
                ax.plot([], [], " ", label=f"{label}{d['verdict']}")
        ax.set_title(f"{PARAM_TITLES.get(param, param)}: lr* vs {axis}", fontsize=10)
        ax.set_ylabel("optimal lr (log2)", fontsize=8)
        ax.set_xticks(
            [math.log2(v) for v in values],
            [axis_text(axis, v).split(" ")[0 if axis == "tokens" else -1] for v in values],
        )
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.25)
        if axis not in EXPONENTS:
            ax.fill_between(
                [], [], color="grey", alpha=0.3, label=f"transfer zone (drift ≤ {tolerance:g} oct)"
            )
        ax.legend(fontsize=7, frameon=False, loc="center left", bbox_to_anchor=(1.02, 0.5))
    axes[-1][0].set_xlabel(f"{axis} (log scale)", fontsize=8)
    fig.tight_layout()
    return png_bytes(fig)


PARAM_COLORS = {"mup": "#1f77b4", "sp": "#d62728"}


def headline(fits: dict, axis: str, tolerance: float, target: dict | None = None) -> bytes:
    """μP and SP on the same axes: log2 lr* against log2 width (or depth) with 95% intervals, each
    parameterization's fitted drift line with its verdict, and the transfer band: μP's recommended base
    lr ± tolerance/2, drawn out to the transfer target when there is one. ``target`` (optional):
    ``{"value": width or depth, "lr": transferred lr, "measured": lr* at the target or None, "interval":
    its log2 interval or None}``. At the recommended hp; one line per value of the other axes."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7.2, 4.0))
    values = sorted({p[axis] for fit in fits.values() for p in fit["points"]})
    xs = [math.log2(v) for v in values]
    right = math.log2(target["value"]) if target else xs[-1]
    rec = (fits.get("mup") or {}).get("recommended")
    if rec and rec.get("log2_lr") is not None:
        y = rec["log2_lr"]
        ax.axhspan(y - tolerance / 2, y + tolerance / 2, color=PARAM_COLORS["mup"], alpha=0.10, lw=0,
                   label=f"transfer band: μP base lr {rec['lr']:.3g} ± {tolerance / 2:g} oct")  # fmt: skip
    for param, fit in fits.items():
        color = PARAM_COLORS.get(param, "grey")
        hp = (fit.get("recommended") or {}).get("hp") or {}
        entries = [d for d in fit["drift"].get(axis, []) if (d.get("hp") or {}) == hp]
        fixed = fixed_axes(entries, axis)
        for k, d in enumerate(entries):
            pts = slice_points(fit["points"], d, axis)
            dodge = 0.03 * (1 if param == "sp" else -1) + 0.02 * k
            _draw_optima(ax, pts, axis, color, "os"[param == "sp"], dodge)
            where = f" ({', '.join(axis_text(a, d[a]) for a in fixed)})" if fixed else ""
            ci = d.get("octaves_interval")
            text = (
                f"{PARAM_TITLES.get(param, param)}{where}: drift {d['octaves']:+.2f} oct"
                if d.get("octaves") is not None
                else f"{PARAM_TITLES.get(param, param)}{where}"
            )
            text += (f" (95% {ci[0]:+.2f} to {ci[1]:+.2f})" if ci else "") + f" → {d['verdict']}"
            if d.get("slope") is not None:
                u = np.log2(np.array(d["range"], float))
                ax.plot(
                    u,
                    d["intercept"] + d["slope"] * u,
                    "-" if k == 0 else "--",
                    color=color,
                    lw=1.4,
                    label=text,
                )
            else:
                ax.plot([], [], " ", label=text)
    if target:
        ax.plot([right], [math.log2(target["lr"])], "*", color=PARAM_COLORS["mup"], markersize=13,
                markeredgecolor="black", markeredgewidth=0.6, label=f"transferred lr at {axis} {target['value']}")  # fmt: skip
        if target.get("measured") is not None:
            iv = target.get("interval")
            y = math.log2(target["measured"])
            yerr = [[y - iv[0]], [iv[1] - y]] if iv else None
            ax.errorbar([right + 0.04], [y], yerr=yerr, fmt="D", color="black", mfc="white", capsize=3,
                        markersize=6, label=f"lr* measured at {axis} {target['value']} (verify runs)")  # fmt: skip
        values = sorted({*values, target["value"]})
    ax.set_xticks([math.log2(v) for v in values], [str(v) for v in values])
    ax.set_xlabel(f"{axis} (log scale)", fontsize=9)
    ax.set_ylabel("optimal base lr (log2)", fontsize=9)
    ax.set_title(f"Does the optimal learning rate stay put as the {axis} grows? μP vs SP", fontsize=10)
    ax.tick_params(labelsize=8)
    ax.grid(alpha=0.25)
    ax.legend(fontsize=7.5, frameon=False, loc="upper left", bbox_to_anchor=(1.02, 1.0))
    fig.tight_layout()
    return png_bytes(fig)


def _draw_optima(ax, pts: list[dict], axis: str, color, marker: str, dodge: float) -> None:
    for p in pts:
        if p.get("log2_lr_star") is None:
            continue
        x, y = math.log2(p[axis]) + dodge, p["log2_lr_star"]
        if p.get("at_edge"):
            m = "^" if p.get("edge") == "high" else "v"
            ax.plot([x], [y], m, color=color, mfc="white", markersize=8)
            continue
        iv = p.get("interval")
        yerr = [[y - iv[0]], [iv[1] - y]] if iv else None
        ax.errorbar([x], [y], yerr=yerr, color=color, marker=marker, markersize=5, capsize=3, lw=1.2)


def training_curves(curves: dict[str, list[dict]], widths: list[int]) -> bytes:
    """Train loss against tokens for the best-lr run of each series, one panel per param: the raw
    per-step loss faint, its EMA solid (``mupx.compare.smooth``)."""
    from .compare import smooth

    plt = pyplot()
    params = list(curves)
    colors = width_colors(widths)
    fig, axes = plt.subplots(1, len(params), figsize=(4.6 * len(params), 3.3), squeeze=False, sharey=True)
    for ax, param in zip(axes[0], params, strict=True):
        labels = list(dict.fromkeys(c["label"] for c in curves[param]))
        for c in curves[param]:
            t, loss = np.asarray(c["tokens"], float), np.asarray(c["loss"], float)
            color, ls = colors[c["width"]], LINESTYLES[labels.index(c["label"]) % 4]
            ax.plot(t, loss, color=color, alpha=0.25, lw=0.8)
            st, sl = smooth(t, loss, 0.05 * t[-1])
            name = f"w{c['width']}" + (f" {c['label']}" if c["label"] else "") + f", lr {c['lr']:.3g}"
            ax.plot(st, sl, ls, color=color, lw=1.5, label=name)
        ax.set_title(f"{PARAM_TITLES.get(param, param)}: best-lr run per width", fontsize=10)
        ax.set_xlabel("tokens", fontsize=8)
        ax.set_ylabel("train loss", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.25)
        ax.legend(fontsize=7, frameon=False)
    fig.tight_layout()
    return png_bytes(fig)
