"""Turn a sweep's run records into learning-rate optima with uncertainty, their drift with width and
depth, a verdict, and the base hyperparameters to transfer (DESIGN.md principle 6: fits carry
uncertainty).

Everything here is plain numpy on JSON-able dicts: ``fit_sweep(runs)`` returns what ``sweep.json``
stores under ``"fits"``, and ``mupx report`` recomputes it from the runs.

**One optimum per series** (param, width, depth, hp combo), in x = log2(lr):

1. Per lr, the completed runs' objective values (one per seed). Diverged runs (and completed runs with a
   non-finite objective) are excluded; an lr where no seed completed but some diverged is *diverged*;
   failed and pending runs are *missing*. The per-lr seed means are the curve kept for plotting.
2. The grid argmin over the lrs with a mean. When it is the smallest or largest such lr, the optimum is
   not bracketed: ``at_edge`` (``edge`` "low"/"high"), ``method`` "grid", ``lr_star`` = the argmin.
   A series where every lr diverged is at the low edge with no ``lr_star``.
3. Window: the argmin and its neighbours within ``WINDOW_OCTAVES`` = 1 octave of it, and at least the
   nearest lr on each side (so 5 lrs on a half-octave grid, 3 on an octave grid). A fixed count of
   neighbours would reach ±2 octaves on an octave grid, where lr curves are lopsided (steeper above
   the optimum): with a cubic term on the high side the quadratic's optimum was biased by 0.07–0.17
   octaves and the 95% interval covered the truth 0–9% of the time; within ±1 octave, 84–96%.
4. Least squares on the *individual* runs in the window (not the means):
   ``loss = a (x − x0)² + b (x − x0) + c_seed`` with x0 the argmin and one offset per seed. A seed
   shares its initialisation and data order across lrs, so its losses move together; the offset
   absorbs that shift, which cannot move the optimum. The residual variance then measures the seed
   noise left at each lr (and any lack of fit of the quadratic, which should widen the interval); it
   has df = runs − 2 − seeds. With one seed this is the plain fit's residual variance, as asked;
   with df = 0 (one seed, three lrs) there is no interval.
5. x* = x0 − b / (2a) when a > 0 and x* lies inside the window; a ≤ 0 is ``at_edge`` (the data do
   not curve upward), x* outside the window falls back to the grid (``note`` says why).
6. The 95% interval for x* is Fieller's interval for the ratio −b/(2a): exact for Gaussian noise when
   the quadratic is right, and asymmetric when the curvature is uncertain. When the curvature is not significant at
   95%, Fieller's set is unbounded and ``interval`` is ``null``: the data do not locate the optimum.
   (Measured on synthetic sweeps, 400 draws each: Fieller covered 92–97%; with noisy 2-seed data the
   delta method covered 86% where Fieller, counting its unbounded sets, covered 96%.) ``se`` =
   interval width / (2 t) is what the drift and the recommendation weight by.
7. Per-seed check: each seed is also fitted alone (``seed_log2_lr_stars``). It is a diagnostic, not the
   interval: with 2–3 seeds a spread of per-seed optima has 1–2 degrees of freedom (t = 12.7, 4.3),
   while the pooled fit uses the same runs with far more.

**Drift** along width (at each depth and hp combo) and along depth (at each width and hp combo), when
the series there cover ≥ 2 distinct values: the slope of log2 lr* on log2 width (depth). Weighted by
1/se² when every point has an interval, with the propagated variance scaled by the PDG factor
χ²/dof when the scatter is larger than the intervals explain, and Welch–Satterthwaite degrees of
freedom; otherwise ordinary least squares with the residual interval (none with only two points).
``octaves`` = slope × log2(max/min) is the drift over the swept range. Verdict:

* ``"inconclusive"`` — fewer than two optima, or some value has no optimum or one at the grid edge
  (named in ``reason``): the data cannot support a claim either way;
* ``"drifts"`` — |octaves| > tolerance;
* ``"transfers"`` — |octaves| ≤ tolerance.

``decisive`` adds whether the 95% interval of ``octaves`` agrees: wholly inside ±tolerance for
"transfers", wholly beyond it for "drifts" (``None`` when there is no interval or no verdict).

**Recommendation**: the hp combo with the lowest ``best_loss`` at the largest width (and, among its
depths, the largest), and at that combo the inverse-variance weighted mean of log2 lr* over all widths
and depths (μP's claim is that lr* is constant in the base-lr units the sweep uses; an ordinary mean
when some point has no interval). Optima at the grid edge are left out (they are bounds) unless there
is nothing else, and listed in ``at_edge``. ``predict`` holds the plane log2 lr* = intercept + slope_width ·
log2(width) + slope_depth · log2(depth) fitted the same way, for ``predict_log2_lr``.

t quantiles: ``T975`` is the standard two-sided 95% table for df 1–30 (t₀.₉₇₅); above 30 the
Cornish–Fisher expansion of t in z = 1.959964 to the 1/df³ term (error < 1e-4 there). Non-integer
df (Satterthwaite) round down, which is conservative.

**Output** (JSON-able, no NaN: a missing number is ``None``; log2 values and intervals are in log2 lr),
per param: ``points`` — one per series: ``width, depth, hp, lr_star, log2_lr_star, interval, se, df,
curvature`` (2a, per octave²), ``at_edge, edge, best_lr, best_loss`` (grid argmin and its seed-mean
loss), ``n_lrs, n_seeds, n_diverged`` (runs), ``n_missing`` (failed/pending runs), ``fit_lrs``,
``method`` ("quadratic" | "grid"), ``quadratic`` (``x0, a, b, c``: loss ≈ c + b(x − x0) + a(x − x0)²,
c the mean seed offset, for plotting), ``seed_log2_lr_stars``, ``note`` (why there is no quadratic or
no interval) and ``curve`` (per lr: ``lr, log2_lr, mean_loss, std_loss, n_seeds, n_diverged, status``);
``drift`` — ``{"width": [...], "depth": [...]}`` as above; ``recommended`` — ``lr, log2_lr, interval,
weighted, hp, n_points, at_edge, hp_losses, predict, bound`` (``bound``: ``{lower, upper}`` when every
optimum is at the grid's edge, so the lr is a bound and has no interval; None when no series has an optimum);
``verdict`` — per axis, the worst verdict at the recommended hp ("drifts" > "inconclusive" >
"transfers"; None when the axis was not swept).
"""

from __future__ import annotations

import math
from collections import defaultdict

import numpy as np

from .errors import MupxError

WINDOW_OCTAVES = 1.0  # the quadratic uses the lrs this close to the grid argmin (and one neighbour each side)
Z975 = 1.959963984540054
T975 = (
    12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131,
    2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042,
)  # fmt: skip
SE_FLOOR = 1e-6  # octaves: a noiseless fit has se 0; its weight must stay finite


def t975(df: float) -> float | None:
    """The 0.975 quantile of Student's t with ``df`` degrees of freedom (None when df < 1)."""
    if df is None or not df >= 1:
        return None
    df = float(df)
    if df <= len(T975):
        return T975[int(df) - 1]
    z = Z975
    return (
        z + (z**3 + z) / (4 * df) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df**2)
        + (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / (384 * df**3)
    )  # fmt: skip


def fit_sweep(runs: list[dict], tolerance_octaves: float = 0.5, objective: str = "loss") -> dict:
    """The fits for every parameterization in ``runs`` (sweep.json's run records), keyed by param."""
    if not tolerance_octaves > 0:
        raise MupxError(f"tolerance {tolerance_octaves!r} octaves must be > 0")
    if runs and not any(objective in r for r in runs):
        raise MupxError(
            f"objective {objective!r} is not a field of the run records (have: {', '.join(sorted(runs[0]))})"
        )
    groups: dict[str, dict[tuple, list[dict]]] = defaultdict(lambda: defaultdict(list))
    for r in runs:
        groups[r["param"]][(_hp_key(r.get("hp")), r["width"], r["depth"])].append(r)
    fits = {}
    for param in sorted(groups):
        points = []
        for (hp, width, depth), series in sorted(groups[param].items(), key=lambda kv: _sort_key(kv[0])):
            points.append({"width": width, "depth": depth, "hp": dict(hp), **fit_series(series, objective)})
        drift = {
            "width": _drifts(points, "width", "depth", tolerance_octaves),
            "depth": _drifts(points, "depth", "width", tolerance_octaves),
        }
        recommended = _recommend(points)
        best = _hp_key(recommended["hp"]) if recommended else None
        verdict = {
            axis: _overall([d for d in drift[axis] if best is None or _hp_key(d["hp"]) == best])
            for axis in drift
        }
        fits[param] = {"points": points, "drift": drift, "recommended": recommended, "verdict": verdict}
    return fits


def predict_log2_lr(fit: dict, width: int, depth: int) -> float:
    """log2 of the optimal base lr at (width, depth) along the fitted drift plane of one param's fit
    (``fit_sweep(...)["mup"]``): the recommended lr when only one width and depth were swept, else the
    least-squares plane through the optima, which extrapolates any drift to the target."""
    rec = fit.get("recommended")
    if not rec:
        raise MupxError("this fit has no optimum to predict from (no completed runs)")
    p = rec["predict"]
    return p["intercept"] + p["slope_width"] * math.log2(width) + p["slope_depth"] * math.log2(depth)


# --- one series ------------------------------------------------------------------------------------


def fit_series(runs: list[dict], objective: str = "loss") -> dict:
    """The optimum of one (param, width, depth, hp) series of runs; see the module docstring."""
    by_lr: dict[float, list[dict]] = defaultdict(list)
    for r in runs:
        by_lr[float(r["lr"])].append(r)
    curve, obs = [], []  # obs: (x, seed, loss) of every completed run
    n_diverged = n_missing = 0
    for lr in sorted(by_lr):
        x, done, div = math.log2(lr), [], 0
        for r in by_lr[lr]:
            v = r.get(objective)
            if r["status"] == "diverged" or (
                r["status"] == "completed" and v is not None and not math.isfinite(v)
            ):
                div += 1
            elif r["status"] == "completed" and v is not None:
                done.append(float(v))
                obs.append((x, r.get("seed"), float(v)))
        n_diverged += div
        n_missing += len(by_lr[lr]) - div - len(done)
        curve.append({
            "lr": lr, "log2_lr": x, "mean_loss": float(np.mean(done)) if done else None,
            "std_loss": float(np.std(done, ddof=1)) if len(done) >= 2 else None, "n_seeds": len(done),
            "n_diverged": div, "status": "ok" if done else "diverged" if div else "missing",
        })  # fmt: skip
    out = {
        "lr_star": None, "log2_lr_star": None, "interval": None, "se": None, "df": None, "curvature": None,
        "at_edge": False, "edge": None, "best_lr": None, "best_loss": None, "n_lrs": len(by_lr),
        "n_seeds": len({s for _, s, _ in obs}), "n_diverged": n_diverged, "n_missing": n_missing,
        "fit_lrs": [], "method": "grid", "quadratic": None, "seed_log2_lr_stars": [], "note": None, "curve": curve,
    }  # fmt: skip
    pts = [c for c in curve if c["mean_loss"] is not None]
    if not pts:
        if n_diverged:
            out.update(
                at_edge=True, edge="low", note="every learning rate diverged: the optimum is below the grid"
            )
        else:
            out["note"] = "no completed runs yet"
        return out
    i = min(range(len(pts)), key=lambda k: pts[k]["mean_loss"])
    best = pts[i]
    out.update(
        lr_star=best["lr"], log2_lr_star=best["log2_lr"], best_lr=best["lr"], best_loss=best["mean_loss"]
    )
    if len(pts) < 3:
        out.update(
            at_edge=True, edge="low" if i == 0 else "high", note=f"only {len(pts)} learning rate(s) completed"
        )
        return out
    if i in (0, len(pts) - 1):
        side = "smallest" if i == 0 else "largest"
        why = "that did not diverge" if any(c["status"] == "diverged" for c in curve) else "in the grid"
        out.update(
            at_edge=True,
            edge="low" if i == 0 else "high",
            note=f"the grid argmin is the {side} learning rate {why}",
        )
        return out
    near = [k for k, c in enumerate(pts) if abs(c["log2_lr"] - best["log2_lr"]) <= WINDOW_OCTAVES + 1e-9]
    window = pts[min(near[0], i - 1) : max(near[-1], i + 1) + 1]
    lo, hi, x0 = window[0]["log2_lr"], window[-1]["log2_lr"], best["log2_lr"]
    out["fit_lrs"] = [c["lr"] for c in window]
    wobs = [o for o in obs if lo <= o[0] <= hi]
    q = _quadratic(wobs, x0)
    if q is None:
        out["note"] = "the quadratic cannot be fitted (too few distinct learning rates)"
        return out
    a, b, c, cov, df = q
    out.update(curvature=2 * a, quadratic={"x0": x0, "a": a, "b": b, "c": c}, df=df)
    out["seed_log2_lr_stars"] = _per_seed(wobs, x0, lo, hi)
    if a <= 0:
        out.update(
            at_edge=True, note="the quadratic through the window opens downward: no minimum is bracketed"
        )
        return out
    xs = x0 - b / (2 * a)
    if not lo < xs < hi:
        out["note"] = (
            f"the quadratic's minimum (log2 lr {xs:.2f}) lies outside the fitted window; using the grid argmin"
        )
        return out
    out.update(method="quadratic", lr_star=2.0**xs, log2_lr_star=xs)
    t = t975(df) if df else None
    if cov is None or t is None:
        out["note"] = (
            "no interval: as many fitted coefficients as runs in the window (add seeds or learning rates)"
        )
        return out
    interval = _fieller(a, b, cov, t)
    if interval is None:
        out["note"] = (
            "no interval: the curvature is not significant at 95%, so the data do not locate the optimum"
        )
        return out
    out.update(interval=[x0 + interval[0], x0 + interval[1]], se=(interval[1] - interval[0]) / (2 * t))
    return out


def _quadratic(obs: list[tuple], x0: float):
    """Least squares of loss on a(x−x0)² + b(x−x0) + one offset per seed. Returns a, b, the mean offset,
    the covariance of (a, b) (None without residual degrees of freedom) and the residual df; None when
    the design is rank-deficient."""
    seeds = sorted({s for _, s, _ in obs}, key=repr)
    col = {s: k for k, s in enumerate(seeds)}
    x = np.array([o[0] for o in obs]) - x0
    y = np.array([o[2] for o in obs])
    X = np.zeros((len(obs), 2 + len(seeds)))
    X[:, 0], X[:, 1] = x**2, x
    for row, o in enumerate(obs):
        X[row, 2 + col[o[1]]] = 1.0
    if np.linalg.matrix_rank(X) < X.shape[1]:
        return None
    coef = np.linalg.lstsq(X, y, rcond=None)[0]
    df = len(obs) - X.shape[1]
    cov = None
    if df > 0:
        resid = y - X @ coef
        cov = float(resid @ resid) / df * np.linalg.inv(X.T @ X)[:2, :2]
    return float(coef[0]), float(coef[1]), float(np.mean(coef[2:])), cov, df


def _fieller(a: float, b: float, cov: np.ndarray, t: float) -> tuple[float, float] | None:
    """Fieller's interval for θ = −b/(2a): every θ with (b + 2aθ)² ≤ t²·Var(b + 2aθ). Bounded only when
    a is significantly positive (a² > t²·Var a); None otherwise."""
    vaa, vab, vbb = float(cov[0, 0]), float(cov[0, 1]), float(cov[1, 1])
    A, B, C = a * a - t * t * vaa, a * b - t * t * vab, b * b - t * t * vbb
    if A <= 0:
        return None
    root = math.sqrt(max(B * B - A * C, 0.0))
    return float((-B - root) / A / 2), float((-B + root) / A / 2)


def _per_seed(obs: list[tuple], x0: float, lo: float, hi: float) -> list[dict]:
    """Each seed's own quadratic optimum in the window (None where it has < 3 lrs or no inner minimum)."""
    out = []
    for seed in sorted({s for _, s, _ in obs}, key=repr):
        q = _quadratic([o for o in obs if o[1] == seed], x0)
        xs = x0 - q[1] / (2 * q[0]) if q and q[0] > 0 else None
        out.append({"seed": seed, "log2_lr_star": xs if xs is not None and lo < xs < hi else None})
    return out


# --- drift, recommendation -------------------------------------------------------------------------


def _wls(X: np.ndarray, y: np.ndarray, se: list | None, dfs: list | None):
    """Least squares of y on X. With standard errors for every point: weights 1/se², the propagated
    covariance scaled by χ²/dof when that exceeds 1 (the PDG scale factor), Welch–Satterthwaite df per
    coefficient. Without: ordinary least squares, residual covariance, df n − k. Returns (coef, cov,
    df per coefficient, weighted); cov and df are None when nothing is left to estimate the noise."""
    n, k = X.shape
    if se is not None:
        s2 = np.maximum(np.asarray(se, float), SE_FLOOR) ** 2
        G = np.linalg.inv(X.T @ (X / s2[:, None]))
        C = G @ (X / s2[:, None]).T  # coef = C @ y
        coef = C @ y
        chi2 = float(np.sum((y - X @ coef) ** 2 / s2))
        scale = max(1.0, chi2 / (n - k)) if n > k else 1.0
        parts = C**2 * s2  # contribution of each point to each coefficient's variance
        dfs_arr = np.asarray(dfs, float)
        df = parts.sum(1) ** 2 / np.sum(parts**2 / dfs_arr, axis=1)
        return coef, G * scale, df, True
    coef = np.linalg.lstsq(X, y, rcond=None)[0]
    if n <= k:
        return coef, None, None, False
    resid = y - X @ coef
    return coef, float(resid @ resid) / (n - k) * np.linalg.inv(X.T @ X), np.full(k, n - k, float), False


def _drifts(points: list[dict], axis: str, other: str, tol: float) -> list[dict]:
    """One drift entry per (hp combo, value of the other axis) whose series cover ≥ 2 values of ``axis``."""
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for p in points:
        groups[(_hp_key(p["hp"]), p[other])].append(p)
    out = []
    for (hp, at), pts in sorted(groups.items(), key=lambda kv: _sort_key(kv[0])):
        if len({p[axis] for p in pts}) >= 2:
            out.append({"hp": dict(hp), other: at, **_drift(sorted(pts, key=lambda p: p[axis]), axis, tol)})
    return out


def _drift(pts: list[dict], axis: str, tol: float) -> dict:
    have = [p for p in pts if p["log2_lr_star"] is not None]
    values = [p[axis] for p in have]
    out = {
        "range": [pts[0][axis], pts[-1][axis]], "n_points": len(have), "slope": None, "slope_interval": None,
        "intercept": None, "octaves": None, "octaves_interval": None, "weighted": False,
        "at_edge": [p[axis] for p in pts if p["at_edge"]], "no_optimum": [p[axis] for p in pts if p["log2_lr_star"] is None],
        "verdict": "inconclusive", "decisive": None, "reason": "",
    }  # fmt: skip
    if len(set(values)) >= 2:
        u = np.log2(np.array(values, float))
        y = np.array([p["log2_lr_star"] for p in have])
        ok = all(p["se"] is not None for p in have)
        X = np.stack([np.ones_like(u), u], 1)
        coef, cov, df, weighted = _wls(
            X, y, [p["se"] for p in have] if ok else None, [p["df"] for p in have] if ok else None
        )
        span = math.log2(max(values) / min(values))
        out.update(
            slope=float(coef[1]), intercept=float(coef[0]), octaves=float(coef[1]) * span, weighted=weighted
        )
        out["range"] = [min(values), max(values)]
        t = t975(df[1]) if cov is not None else None
        if t is not None:
            half = t * math.sqrt(float(cov[1, 1]))
            out["slope_interval"] = [out["slope"] - half, out["slope"] + half]
            out["octaves_interval"] = [out["octaves"] - half * span, out["octaves"] + half * span]

    def names(values: list) -> str:
        return f"{axis} " + ", ".join(str(v) for v in values)

    if out["no_optimum"]:
        out["reason"] = f"no optimum at {names(out['no_optimum'])} (every lr diverged or no completed runs)"
    elif out["at_edge"]:
        out["reason"] = f"optimum at the lr grid edge at {names(out['at_edge'])}: extend the lr range there"
    elif out["slope"] is None:
        out["reason"] = f"fewer than two {axis}s with an optimum"
    else:
        oct_, ci = out["octaves"], out["octaves_interval"]
        moved = f"lr* moves {oct_:+.2f} octaves" + (
            f" (95% {ci[0]:+.2f} to {ci[1]:+.2f})" if ci else " (no interval)"
        )
        moved += f" from {axis} {out['range'][0]} to {out['range'][1]}"
        if abs(oct_) <= tol:
            out["verdict"] = "transfers"
            out["decisive"] = (ci[0] >= -tol and ci[1] <= tol) if ci else None
            out["reason"] = f"{moved}, within ±{tol:g}" + (
                "" if ci is None else "" if out["decisive"] else "; the interval reaches past the tolerance"
            )
        else:
            out["verdict"] = "drifts"
            out["decisive"] = (ci[0] > tol or ci[1] < -tol) if ci else None
            out["reason"] = f"{moved}, beyond ±{tol:g} ({out['slope']:+.2f} octaves per doubling)" + (
                "" if ci is None or out["decisive"] else "; the interval reaches inside the tolerance"
            )
    return out


def _recommend(points: list[dict]) -> dict | None:
    have = [p for p in points if p["log2_lr_star"] is not None and p["best_loss"] is not None]
    if not have:
        return None
    w = max(p["width"] for p in have)
    d = max(p["depth"] for p in have if p["width"] == w)
    top = sorted((p for p in have if p["width"] == w and p["depth"] == d), key=lambda p: p["best_loss"])
    hp = _hp_key(top[0]["hp"])
    at_hp = [p for p in have if _hp_key(p["hp"]) == hp]
    use = [p for p in at_hp if not p["at_edge"]] or at_hp  # an edge optimum is a bound, not an estimate
    y = np.array([p["log2_lr_star"] for p in use])
    ok = all(p["se"] is not None for p in use)
    se, dfs = ([p["se"] for p in use], [p["df"] for p in use]) if ok else (None, None)
    coef, cov, df, weighted = _wls(np.ones((len(use), 1)), y, se, dfs)
    m = float(coef[0])
    t = t975(df[0]) if cov is not None else None
    half = t * math.sqrt(float(cov[0, 0])) if t is not None else None
    interval = [m - half, m + half] if half is not None else None
    # Only edge optima: each is a bound (lr* ≥ the top of the grid, or ≤ its bottom), so μP's constant lr*
    # is at least the largest lower bound and at most the smallest upper bound; no mean, no interval.
    lower = [p["lr_star"] for p in use if p["at_edge"] and p["edge"] == "high"]
    upper = [p["lr_star"] for p in use if p["at_edge"] and p["edge"] == "low"]
    bound, lr = None, 2.0**m
    if all(p["at_edge"] for p in use) and (lower or upper):
        bound = {"lower": max(lower) if lower else None, "upper": min(upper) if upper else None}
        lr, interval = bound["lower"] or bound["upper"], None
        m = math.log2(lr)
    # the drift plane for extrapolation, along the axes that vary (dropping depth, then width, if singular)
    u = {"width": np.log2([p["width"] for p in use]), "depth": np.log2([p["depth"] for p in use])}
    axes = [a for a in ("width", "depth") if len(set(u[a])) >= 2]
    while axes:
        X = np.stack([np.ones(len(use)), *(u[a] for a in axes)], 1)
        if np.linalg.matrix_rank(X) == X.shape[1] and len(use) >= X.shape[1]:
            break
        axes.pop()
    plane = _wls(X, y, se, dfs)[0] if axes else np.array([m])
    slope = {a: float(v) for a, v in zip(axes, plane[1:], strict=True)}
    return {
        "lr": lr, "log2_lr": m, "interval": interval, "bound": bound, "weighted": weighted, "hp": dict(hp),
        "n_points": len(use), "at_edge": [{"width": p["width"], "depth": p["depth"]} for p in at_hp if p["at_edge"]],
        "hp_losses": [{"hp": p["hp"], "best_loss": p["best_loss"], "width": w, "depth": d} for p in top],
        "predict": {"intercept": float(plane[0]), "slope_width": slope.get("width", 0.0), "slope_depth": slope.get("depth", 0.0)},
    }  # fmt: skip


def _overall(entries: list[dict]) -> str | None:
    verdicts = {e["verdict"] for e in entries}
    for v in ("drifts", "inconclusive", "transfers"):
        if v in verdicts:
            return v
    return None


def _hp_key(hp: dict | None) -> tuple:
    return tuple(sorted((hp or {}).items()))


def _sort_key(key: tuple) -> tuple:
    return tuple(repr(k) if isinstance(k, tuple) else k for k in key)
