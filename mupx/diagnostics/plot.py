"""The coordinate-check figure: one column per step, size against width (or depth) on log-log axes,
one line per module; rows: activation RMS, RMS of the change since init, and the gated ρ_ΔW."""

from __future__ import annotations

import io
from pathlib import Path

from ..io import atomic_write_bytes

ROWS = (
    ("activations", "rms", "activation RMS"),
    ("activations", "delta_rms", "RMS of change since t=0"),
    ("tensors", None, None),
)


def plot_coord_check(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    xs, n_t = result["values"], result["steps"] + 1
    tensor_metric = "rho_dw" if result["axis"] == "width" else "depth_rho_dw"
    gated = {(s["section"], s["module"], s["metric"]) for s in result["slopes"] if s["gated"]}
    hidden = {module for section, module, _ in gated if section == "tensors"}
    colors = plt.get_cmap("tab20").colors
    color = {
        m: colors[i % len(colors)] for i, m in enumerate([*result["sizes"]["activations"], *sorted(hidden)])
    }
    fig, axes = plt.subplots(len(ROWS), n_t, figsize=(2.6 * n_t + 2.5, 2.4 * len(ROWS)), squeeze=False)
    for r, (section, metric, title) in enumerate(ROWS):
        metric = metric or tensor_metric
        title = title or ("ρ_ΔW (hidden)" if metric == "rho_dw" else "ρ_ΔW·(L/L_base)·α_L (hidden)")
        modules = [m for m in result["sizes"][section] if section == "activations" or m in hidden]
        labelled = False
        for t in range(n_t):
            ax = axes[r][t]
            lines = 0
            for module in modules:
                ys = [row[t] for row in result["sizes"][section][module].get(metric, [])]
                pts = [(x, y) for x, y in zip(xs, ys, strict=False) if y is not None and y > 0]
                if pts:
                    style = "-" if (section, module, metric) in gated else "--"  # dashed: recorded, not gated
                    ax.plot(
                        *zip(*pts, strict=True),
                        style,
                        color=color[module],
                        marker="o",
                        markersize=3,
                        label=module,
                    )
                    lines += 1
            if not lines:
                ax.set_axis_off()
                continue
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_xticks(xs, [str(x) for x in xs], fontsize=7)
            ax.minorticks_off()
            ax.tick_params(labelsize=7)
            if r == 0:
                ax.set_title(f"t = {t}" + (" (init)" if t == 0 else ""), fontsize=9)
            if t == n_t - 1:
                ax.legend(fontsize=6, loc="center left", bbox_to_anchor=(1.02, 0.5), frameon=False)
            if r == len(ROWS) - 1:
                ax.set_xlabel(result["axis"], fontsize=8)
            if not labelled:
                ax.set_ylabel(title, fontsize=8)
                labelled = True
    verdict = result["verdict"].upper()
    fig.suptitle(
        f"coordinate check {result['optimizer']} {result['param']}: {verdict} "
        f"(tolerance {result['tolerance']:g} on |slope| of log size vs log {result['axis']})",
        fontsize=10,
    )
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())
