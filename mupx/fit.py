"""Turn a sweep's run records into learning-rate optima with uncertainty, their drift with width and
depth, the exponents of their dependence on the training horizon (tokens) and the batch, a verdict, and
the base hyperparameters to transfer (DESIGN.md principle 6: fits carry uncertainty).

Everything here is plain numpy on JSON-able dicts: ``fit_sweep(runs)`` returns what ``sweep.json``
stores under ``"fits"``, and ``mupx report`` recomputes it from the runs.

**Axes.** A run record sits at a width, a depth, a horizon in tokens (``tokens`` = steps × global batch ×
sequence length) and a global batch (``batch``); records without a ``batch`` key (written before mupx
swept horizons and batches) are at one unnamed horizon and batch (``None``).

**One optimum per series** (param, width, depth, tokens, batch, hp combo), in x = log2(lr):

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

**Drift** along each axis (width, depth, tokens, batch) at every fixed value of the other axes and hp
combo, when the series there cover ≥ 2 distinct values: the slope of log2 lr* on log2 width (depth,
tokens, batch). Weighted by 1/se² when every point has an interval (each se floored at the lower quartile
of the se's, so that one optimum whose se came out far too small does not dominate), with the propagated
variance scaled by the PDG factor χ²/dof when the scatter is larger than the intervals explain, and
Welch–Satterthwaite degrees of freedom; ordinary least squares with the residual interval when some
optimum has no interval (none with only two points).
``octaves`` = slope × log2(max/min) is the drift over the swept range. Verdict:

* ``"inconclusive"`` — fewer than two optima, or some value has no optimum or one at the grid edge
  (named in ``reason``): the data cannot support a claim either way;
* ``"drifts"`` — |octaves| > tolerance;
* ``"transfers"`` — |octaves| ≤ tolerance.

``decisive`` adds whether the 95% interval of ``octaves`` agrees: wholly inside ±tolerance for
"transfers", wholly beyond it for "drifts" (``None`` when there is no interval or no verdict).

Width and depth are judged so because μP claims lr* does not move with them. Along tokens and batch it
does move, and the slope is a measured *exponent*, reported with its interval and never judged against
the tolerance: verdict ``"measured"`` (or ``"inconclusive"``, as above). Under μP lr* ∝ D^−0.32 in the
horizon D (Bjorck et al. 2409.19913) and, for Adam in the SDE view, ∝ √B in the batch (Malladi et al.
2205.10287); a sweep measures its own exponents.

**The plane** (one fit across all axes): at the recommended hp combo, log2 lr* = intercept + Σ slope_a ·
log2(a) over the axes a that vary among its optima (width, depth, tokens, batch; an axis whose column
makes the design singular is dropped, the last first), fitted like the drift (weights 1/se², PDG scale,
Satterthwaite df; ordinary least squares when some optimum has no interval). Each slope has its 95%
interval, width's and depth's the transfer verdict above, tokens' and batch's the exponent's.
``estimate`` evaluates the plane (with a 95% interval: the linear combination's variance from the
plane's covariance and its Satterthwaite df) at any point: along width and depth it extrapolates the
drift, which μP's zero-shot transfer does not.

**Recommendation**: the hp combo with the lowest ``best_loss`` at the largest width (and, among its
depths, tokens and batches, the largest), and at that combo the plane at the inverse-variance weighted
centroid of log2 width and log2 depth — which is the weighted mean of log2 lr* over all widths and
depths (μP's claim is that lr* is constant in the base-lr units the sweep uses; an ordinary mean when
some point has no interval) — and at the ``reference`` horizon and batch, the longest and largest swept
(the nearest to a target). Optima at the grid edge are left out (they are bounds) unless there is nothing
else, and listed in ``at_edge``.

t quantiles: ``T975`` is the standard two-sided 95% table for df 1–30 (t₀.₉₇₅); above 30 the
Cornish–Fisher expansion of t in z = 1.959964 to the 1/df³ term (error < 1e-4 there). Non-integer
df (Satterthwaite) round down, which is conservative.

**Output** (JSON-able, no NaN: a missing number is ``None``; log2 values and intervals are in log2 lr),
per param: ``points`` — one per series: ``width, depth, tokens, batch, hp, lr_star, log2_lr_star, interval, se, df,
curvature`` (2a, per octave²), ``at_edge, edge, best_lr, best_loss`` (grid argmin and its seed-mean
loss), ``n_lrs, n_seeds, n_diverged`` (runs), ``n_missing`` (failed/pending runs), ``fit_lrs``,
``method`` ("quadratic" | "grid"), ``quadratic`` (``x0, a, b, c``: loss ≈ c + b(x − x0) + a(x − x0)²,
c the mean seed offset, for plotting), ``seed_log2_lr_stars``, ``note`` (why there is no quadratic or
no interval) and ``curve`` (per lr: ``lr, log2_lr, mean_loss, std_loss, n_seeds, n_diverged, status``);
``drift`` — ``{"width": [...], "depth": [...]}`` as above (and ``"tokens"``, ``"batch"`` when the records
carry them), each entry naming the fixed values of the other axes; ``recommended`` — ``lr, log2_lr,
interval, weighted, hp, n_points, at_edge, hp_losses, reference, predict, plane, bound`` (``reference``:
``{tokens, batch}`` of the recommendation; ``predict``: ``intercept, slope_width, slope_depth,
slope_tokens, slope_batch, centroid``; ``plane``: per axis of the plane ``slope, slope_interval, df,
range, octaves, octaves_interval, verdict, decisive, reason``; ``bound``: ``{lower, upper}`` when every
optimum is at the grid's edge, so the lr is a bound and has no interval; None when no series has an
optimum); ``verdict`` — per axis, the worst verdict at the recommended hp ("drifts" > "inconclusive" >
"measured" > "transfers"; None when the axis was not swept).
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass

import numpy as np

from .errors import MupxError
from .summary import exponent_text

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


AXES = ("width", "depth", "tokens", "batch")
JUDGED = ("width", "depth")  # μP claims lr* does not move: judged against the tolerance
EXPONENTS = ("tokens", "batch")  # lr* moves: the slope is a measured exponent


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
        groups[r["param"]][(_hp_key(r.get("hp")), *(_axis_value(r, a) for a in AXES))].append(r)
    carried = [a for a in AXES if a in JUDGED or any(_axis_value(r, a) is not None for r in runs)]
    fits = {}
    for param in sorted(groups):
        points = []
        for (hp, *at), series in sorted(groups[param].items(), key=lambda kv: _sort_key(kv[0])):
            points.append(
                {**dict(zip(AXES, at, strict=True)), "hp": dict(hp), **fit_series(series, objective)}
            )
        drift = {axis: _drifts(points, axis, tolerance_octaves) for axis in carried}
        recommended = _recommend(points, tolerance_octaves)
        best = _hp_key(recommended["hp"]) if recommended else None
        verdict = {
            axis: _overall([d for d in drift[axis] if best is None or _hp_key(d["hp"]) == best])
            for axis in drift
        }
        fits[param] = {"points": points, "drift": drift, "recommended": recommended, "verdict": verdict}
    return fits


def _axis_value(record: dict, axis: str):
    """A record's value along ``axis``; horizon and batch are None in records that predate them (whose
    ``tokens`` was the count trained, not an axis)."""
    if axis in EXPONENTS and "batch" not in record:
        return None
    return record.get(axis)


def estimate(fit: dict, at: dict[str, float]) -> dict:
    """The plane of one param's fit at ``at`` (axis -> value; an axis left out sits at the recommendation's
    point: width and depth at the optima's weighted centroid, i.e. no extrapolation along them, as μP
    transfers; tokens and batch at the reference): ``{"log2_lr", "interval", "se", "df"}`` (interval and
    se None when the plane has no noise estimate)."""
    chosen = _choose(fit["points"])
    if chosen is None:
        raise MupxError("this fit has no optimum to predict from (no completed runs)")
    plane = _plane(chosen[2])
    value, se, df = plane.at(
        {**plane.recommendation_point(), **{a: math.log2(v) for a, v in at.items() if v}}
    )
    t = t975(df) if se is not None else None
    return {"log2_lr": value, "interval": [value - t * se, value + t * se] if t else None,
            "se": se, "df": df}  # fmt: skip


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


@dataclass
class _LeastSquares:
    """A fitted linear model y ≈ X·coef (:func:`_wls`): the coefficients, their covariance (None when
    nothing is left to estimate the noise), whether it was weighted, and what a linear combination of the
    coefficients needs for its degrees of freedom (``coef = C @ y``; ``s2``, ``dfs``: each point's
    variance and df; ``df``: the residual df n − k where the covariance rests on the residuals)."""

    coef: np.ndarray
    cov: np.ndarray | None
    weighted: bool
    C: np.ndarray
    s2: np.ndarray | None = None
    dfs: np.ndarray | None = None
    df: float | None = None

    def combination(self, x) -> tuple[float, float | None, float | None]:
        """x·coef with its standard error and degrees of freedom; se and df None without a covariance."""
        x = np.asarray(x, float)
        value = float(x @ self.coef)
        if self.cov is None:
            return value, None, None
        se = math.sqrt(max(float(x @ self.cov @ x), 0.0))
        if self.df is not None:
            return value, se, self.df
        parts = (x @ self.C) ** 2 * self.s2  # each point's contribution to the variance (Welch–Satterthwaite)
        return value, se, float(parts.sum() ** 2 / np.sum(parts**2 / self.dfs)) if parts.sum() > 0 else None


def _wls(X: np.ndarray, y: np.ndarray, se: list | None, dfs: list | None) -> _LeastSquares:
    """Least squares of y on X. With standard errors for every point: weights 1/se², with each se floored
    at the lower quartile of the se's (an se estimated from a few degrees of freedom is now and then far
    too small, and its weight would let that one point dominate the fit and narrow its interval: measured
    on synthetic horizon sweeps with 2 seeds, the exponent's 95% interval covered the truth 91% of the time
    without the floor, 95% with it); the propagated covariance, scaled by χ²/dof when that exceeds 1 (the
    PDG scale factor), with Welch–Satterthwaite df per linear combination from the points' own df. (Taking
    the residual df n − k once the scale applies instead gave t = 12.7 for three widths, intervals of ±3
    octaves where the points scattered by 0.2, and 98–99% coverage on synthetic 3-width sweeps; with the
    Satterthwaite df the coverage test in tests/test_fit_axes.py reads 92–95%.) Without standard errors:
    ordinary least squares, residual covariance, df n − k; no covariance when nothing is left to estimate
    the noise."""
    n, k = X.shape
    if se is not None:
        s2 = np.maximum(np.asarray(se, float), SE_FLOOR) ** 2
        s2 = np.maximum(s2, np.percentile(s2, 25))
        G = np.linalg.inv(X.T @ (X / s2[:, None]))
        C = G @ (X / s2[:, None]).T  # coef = C @ y
        coef = C @ y
        chi2 = float(np.sum((y - X @ coef) ** 2 / s2))
        scale = chi2 / (n - k) if n > k else 1.0
        scale = max(scale, 1.0)
        return _LeastSquares(coef, G * scale, True, C, s2 * scale, np.asarray(dfs, float))
    C = np.linalg.pinv(X)
    coef = C @ y
    if n <= k:
        return _LeastSquares(coef, None, False, C)
    resid = y - X @ coef
    return _LeastSquares(
        coef, float(resid @ resid) / (n - k) * np.linalg.inv(X.T @ X), False, C, df=float(n - k)
    )


def _drifts(points: list[dict], axis: str, tol: float) -> list[dict]:
    """One drift entry per (hp combo, values of the other axes) whose series cover ≥ 2 values of ``axis``."""
    others = [a for a in AXES if a != axis]
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for p in points:
        groups[(_hp_key(p["hp"]), *(p[a] for a in others))].append(p)
    out = []
    for (hp, *at), pts in sorted(groups.items(), key=lambda kv: _sort_key(kv[0])):
        if len({p[axis] for p in pts if p[axis] is not None}) >= 2:
            fixed = {a: v for a, v in zip(others, at, strict=True) if v is not None}
            out.append({"hp": dict(hp), **fixed, **_drift(sorted(pts, key=lambda p: p[axis]), axis, tol)})
    return out


def slice_points(points: list[dict], entry: dict, axis: str) -> list[dict]:
    """The points of one drift entry along ``axis``: its hp combo and its values of the other axes."""
    return [p for p in points if _hp_key(p.get("hp")) == _hp_key(entry.get("hp"))
            and all(p.get(a) == entry.get(a) for a in AXES if a != axis)]  # fmt: skip


def _drift(pts: list[dict], axis: str, tol: float) -> dict:
    have = [p for p in pts if p["log2_lr_star"] is not None]
    values = [p[axis] for p in have]
    out = {
        "range": [pts[0][axis], pts[-1][axis]], "n_points": len(have), "slope": None, "slope_interval": None,
        "intercept": None, "octaves": None, "octaves_interval": None, "weighted": False,
        "at_edge": [p[axis] for p in pts if p["at_edge"]], "no_optimum": [p[axis] for p in pts if p["log2_lr_star"] is None],
    }  # fmt: skip
    if len(set(values)) >= 2:
        u = np.log2(np.array(values, float))
        y = np.array([p["log2_lr_star"] for p in have])
        ok = all(p["se"] is not None for p in have)
        X = np.stack([np.ones_like(u), u], 1)
        fit = _wls(X, y, [p["se"] for p in have] if ok else None, [p["df"] for p in have] if ok else None)
        out.update(_slope(fit, 1, values), intercept=float(fit.coef[0]), weighted=fit.weighted)
    return {**out, **_judge(out, axis, tol)}


def _slope(fit: _LeastSquares, i: int, values: list) -> dict:
    """Coefficient ``i`` of a fit as a slope over the swept ``values``: the slope, its 95% interval, the
    move of log2 lr* over the range (octaves) and that move's interval."""
    x = np.zeros(len(fit.coef))
    x[i] = 1.0
    slope, se, df = fit.combination(x)
    span = math.log2(max(values) / min(values))
    t = t975(df) if se is not None else None
    half = t * se if t is not None else None
    return {
        "slope": slope, "slope_interval": [slope - half, slope + half] if half is not None else None, "df": df,
        "range": [min(values), max(values)], "octaves": slope * span,
        "octaves_interval": [(slope - half) * span, (slope + half) * span] if half is not None else None,
    }  # fmt: skip


def _judge(out: dict, axis: str, tol: float) -> dict:
    """The verdict of a slope along ``axis`` (``out``: :func:`_slope`'s fields, and the values with an edge
    optimum or none): width and depth against the tolerance, tokens and batch as a measured exponent."""

    def names(values: list) -> str:
        return f"{axis} " + ", ".join(str(v) for v in values)

    if out.get("no_optimum"):
        return {"verdict": "inconclusive", "decisive": None,
                "reason": f"no optimum at {names(out['no_optimum'])} (every lr diverged or no completed runs)"}  # fmt: skip
    if out.get("at_edge"):
        return {"verdict": "inconclusive", "decisive": None,
                "reason": f"optimum at the lr grid edge at {names(out['at_edge'])}: extend the lr range there"}  # fmt: skip
    if out["slope"] is None:
        return {
            "verdict": "inconclusive",
            "decisive": None,
            "reason": f"fewer than two {axis}s with an optimum",
        }
    oct_, ci = out["octaves"], out["octaves_interval"]
    lo, hi = out["range"]
    if axis in EXPONENTS:
        return {"verdict": "measured", "decisive": None,
                "reason": f"{exponent_text(axis, out)} from {axis} {lo} to {hi}: lr* moves {oct_:+.2f} octaves"}  # fmt: skip
    moved = f"lr* moves {oct_:+.2f} octaves" + (
        f" (95% {ci[0]:+.2f} to {ci[1]:+.2f})" if ci else " (no interval)"
    )
    moved += f" from {axis} {lo} to {hi}"
    if abs(oct_) <= tol:
        decisive = (ci[0] >= -tol and ci[1] <= tol) if ci else None
        return {"verdict": "transfers", "decisive": decisive, "reason": f"{moved}, within ±{tol:g}"
                + ("" if ci is None or decisive else "; the interval reaches past the tolerance")}  # fmt: skip
    decisive = (ci[0] > tol or ci[1] < -tol) if ci else None
    return {"verdict": "drifts", "decisive": decisive,
            "reason": f"{moved}, beyond ±{tol:g} ({out['slope']:+.2f} octaves per doubling)"
            + ("" if ci is None or decisive else "; the interval reaches inside the tolerance")}  # fmt: skip


@dataclass
class _Plane:
    """log2 lr* as a plane in the log2 of the axes that vary among ``use`` (:func:`_plane`)."""

    axes: list[str]
    fit: _LeastSquares
    centroid: dict[str, float]  # weighted mean of log2 value per axis the optima carry
    reference: dict[str, float]  # log2 of the longest horizon and largest batch among them

    def at(self, point: dict[str, float]) -> tuple[float, float | None, float | None]:
        """(log2 lr*, se, df) at ``point`` (axis -> log2 value)."""
        return self.fit.combination([1.0, *(point[a] for a in self.axes)])

    def recommendation_point(self) -> dict[str, float]:
        """Width and depth at the centroid (no extrapolation: μP's zero shot), tokens and batch at the reference."""
        return {**self.centroid, **self.reference}


def _plane(use: list[dict]) -> _Plane:
    """WLS of log2 lr* on log2 of every axis that varies among ``use`` (dropping the last axis while the
    design is singular)."""
    y = np.array([p["log2_lr_star"] for p in use])
    ok = all(p["se"] is not None for p in use)
    se, dfs = ([p["se"] for p in use], [p["df"] for p in use]) if ok else (None, None)
    u = {a: np.log2(np.array([p[a] for p in use], float)) for a in AXES if all(p[a] is not None for p in use)}
    axes = [a for a in u if len(set(u[a])) >= 2]
    while axes:
        X = np.stack([np.ones(len(use)), *(u[a] for a in axes)], 1)
        if np.linalg.matrix_rank(X) == X.shape[1] and len(use) >= X.shape[1]:
            break
        axes.pop()
    X = np.stack([np.ones(len(use)), *(u[a] for a in axes)], 1)
    weights = 1 / np.maximum(np.asarray(se, float), SE_FLOOR) ** 2 if ok else np.ones(len(use))
    centroid = {a: float(np.average(v, weights=weights)) for a, v in u.items()}
    reference = {a: float(u[a].max()) for a in EXPONENTS if a in u}
    return _Plane(axes, _wls(X, y, se, dfs), centroid, reference)


def _choose(points: list[dict]) -> tuple[tuple, list[dict], list[dict], list[dict]] | None:
    """(hp combo, its points, the points the plane uses, the candidates at the corner) of a recommendation:
    the combo with the lowest best loss at the corner (the largest width, then depth, tokens, batch), its
    optima without those at the grid edge (bounds) unless there is nothing else."""
    have = [p for p in points if p["log2_lr_star"] is not None and p["best_loss"] is not None]
    if not have:
        return None
    corner = max(have, key=lambda p: tuple(p[a] or 0 for a in AXES))
    top = sorted((p for p in have if all(p[a] == corner[a] for a in AXES)), key=lambda p: p["best_loss"])
    hp = _hp_key(top[0]["hp"])
    at_hp = [p for p in have if _hp_key(p["hp"]) == hp]
    return hp, at_hp, [p for p in at_hp if not p["at_edge"]] or at_hp, top


def _where(p: dict) -> dict:
    """A point's place: its width and depth, and its horizon and batch when it has them."""
    return {a: p[a] for a in AXES if p.get(a) is not None}


def _recommend(points: list[dict], tol: float) -> dict | None:
    chosen = _choose(points)
    if chosen is None:
        return None
    hp, at_hp, use, top = chosen
    plane = _plane(use)
    m, se, df = plane.at(plane.recommendation_point())
    t = t975(df) if se is not None else None
    interval = [m - t * se, m + t * se] if t is not None else None
    # Only edge optima: each is a bound (lr* ≥ the top of the grid, or ≤ its bottom), so μP's constant lr*
    # is at least the largest lower bound and at most the smallest upper bound; no mean, no interval.
    lower = [p["lr_star"] for p in use if p["at_edge"] and p["edge"] == "high"]
    upper = [p["lr_star"] for p in use if p["at_edge"] and p["edge"] == "low"]
    bound, lr = None, 2.0**m
    if all(p["at_edge"] for p in use) and (lower or upper):
        bound = {"lower": max(lower) if lower else None, "upper": min(upper) if upper else None}
        lr, interval = bound["lower"] or bound["upper"], None
        m = math.log2(lr)
    slopes = dict(zip(plane.axes, (float(v) for v in plane.fit.coef[1:]), strict=True))
    axes = {}
    for i, a in enumerate(plane.axes, start=1):
        entry = _slope(plane.fit, i, [p[a] for p in use])
        axes[a] = {**entry, **_judge(entry, a, tol)}
    return {
        "lr": lr, "log2_lr": m, "interval": interval, "bound": bound, "weighted": plane.fit.weighted, "hp": dict(hp),
        "n_points": len(use), "at_edge": [_where(p) for p in at_hp if p["at_edge"]],
        "hp_losses": [{"hp": p["hp"], "best_loss": p["best_loss"], **_where(p)} for p in top],
        "reference": {a: round(2.0**v) for a, v in plane.reference.items()},
        "predict": {"intercept": float(plane.fit.coef[0]), **{f"slope_{a}": slopes.get(a, 0.0) for a in AXES},
                    "centroid": plane.centroid},
        "plane": axes,
    }  # fmt: skip


def _overall(entries: list[dict]) -> str | None:
    verdicts = {e["verdict"] for e in entries}
    for v in ("drifts", "inconclusive", "measured", "transfers"):
        if v in verdicts:
            return v
    return None


def _hp_key(hp: dict | None) -> tuple:
    return tuple(sorted((hp or {}).items()))


def _sort_key(key: tuple) -> tuple:
    return tuple(repr(k) if isinstance(k, tuple) else k for k in key)
