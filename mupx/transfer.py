"""``mupx transfer``: run the target model with the hyperparameters a sweep transferred, and measure how
well the transfer held.

**The lr at the target's budget.** The target differs from the proxies along four axes, and each gets a
rule, printed with how far the target lies beyond the proxies:

* width and depth: μP's zero shot — the base lr does not move (the sweep's verdict says whether its
  optima agree; the fitted plane's slope is shown beside it, and its extrapolation recorded as
  ``extrapolated_lr``);
* tokens (the horizon, ``--horizon-rule``): ``measured`` — the exponent the sweep's plane fitted over its
  horizons (the default when the sweep varied the horizon); ``power:E`` — lr ∝ D^E (Bjorck et al.
  2409.19913 measured E = −0.32 under μP); ``none`` — no correction (the default otherwise, with a
  warning line when the target's horizon differs);
* batch (``--batch-rule``): ``measured`` (the default when the sweep varied the batch at equal tokens);
  ``sqrt`` — lr ∝ √(B/B0), the SDE scaling rule for Adam (Malladi et al. 2205.10287); ``power:E``;
  ``none`` (the default otherwise, with a warning line).

A ``measured`` rule used beyond the proxies warns when its exponent's 95% interval moves the lr at the target
by more than an octave either way (or has no interval): then it knows little more than ``none``.

The prediction is the sweep's recommended base lr (the plane at the optima's centroid in width and
depth, at the reference horizon and batch: the longest and largest swept) moved along tokens and batch:
with ``measured`` by the plane itself (one linear combination of its coefficients, so its 95% interval
carries the exponents' uncertainty), with a fixed exponent by E·log2(target / reference). A ``measured``
rule along an axis the sweep did not vary is an error when the target differs there. The lr the proxies
would have handed over uncorrected (the recommendation) is recorded beside it, and
``--compare-uncorrected`` runs it too, so its regret shows beside the corrected one.

For the Adam-family (the Adam moments of adamw, adopt, lamb, SOAP and the Adam side of the hybrids; the
Hessian EMA of Sophia), ``--adam-rules beta2,eps`` (off unless asked) moves β2 and ε with the batch
(Marek et al. 2507.07101): ``beta2`` keeps the EMA's half-life constant in tokens, β2' = β2^(B'/B);
``eps`` keeps ε in proportion to √v, whose gradient-noise scale falls as 1/√B: ε' = ε·√(B/B') (not
Sophia's, which is added to a Hessian estimate already scaled by the batch's tokens).

``--baseline sp`` runs the same base lr under SP (what μP buys); ``--verify K`` runs K more lrs around the
transferred one (half-octave steps) to measure the regret = loss(transferred) − best loss at the target.
Everything lands in ``<sweep>/transfer-w<W>-d<D>/`` with ``transfer.json`` (the runs of another horizon or
batch have run ids of their own; transfer.json describes the latest transfer); re-running resumes.
"""

from __future__ import annotations

import dataclasses
import math
import re
import time
from dataclasses import dataclass
from pathlib import Path

from . import checkpoint
from .cli_options import print_config
from .config import compose, override_value, to_dict
from .errors import MupxError, choose
from .fit import EXPONENTS, JUDGED, estimate, fit_series, fit_sweep
from .io import atomic_write_json, check_folder
from .summary import count_text, recommendation_text
from .sweep.command import RunDisplay, check_batch, make_executor, sweep_overrides, user_value
from .sweep.executors import Task
from .sweep.grid import SweepSpec, parse_counts
from .sweep.lock import SweepLock
from .sweep.runner import Sweep, completed
from .sweep.store import FINISHED, load_sweep_json, read_result, record

SCHEMA_VERSION = 1
RULE_FLAGS = {"tokens": "--horizon-rule", "batch": "--batch-rule"}
RULE_NAMES = {"tokens": ("measured", "none", "power:E"), "batch": ("measured", "none", "sqrt", "power:E")}
SUGGESTED = {  # a published exponent for an axis the sweep did not vary, and its source
    "tokens": ("power:-0.32", -0.32, "lr* ∝ D^-0.32 (Bjorck et al. 2409.19913)"),
    "batch": ("sqrt", 0.5, "the SDE rule lr ∝ √B (Malladi et al. 2205.10287)"),
}
ADAM_KEYS = {  # optimizer -> (keys whose second entry is an Adam-like β2, keys holding an Adam-like ε)
    "adamw": (("betas",), ("eps",)), "adopt": (("betas",), ("eps",)), "lamb": (("betas",), ("eps",)),
    "sophia": (("betas",), ()), "muon": (("adam_betas",), ("adam_eps",)), "muonpp": (("adam_betas",), ("adam_eps",)),
    "shampoo": (("adam_betas",), ("adam_eps",)), "soap": (("betas", "adam_betas"), ("eps", "adam_eps")),
}  # fmt: skip
ADAM_RULES = ("beta2", "eps")


@dataclass(frozen=True)
class Rules:
    """How the lr moves along the target's horizon and batch (None: the default, measured when the sweep
    varied the axis, else none) and which Adam settings move with the batch."""

    tokens: str | None = None
    batch: str | None = None
    adam: tuple[str, ...] = ()

    @classmethod
    def parse(cls, horizon: str | None, batch: str | None, adam: str | None) -> Rules:
        for axis, text in (("tokens", horizon), ("batch", batch)):
            if text is not None:
                exponent_of(text, axis)  # a one-line error for a name not allowed
        names = tuple(a.strip() for a in (adam or "").split(",") if a.strip())
        for name in names:
            if name not in ADAM_RULES:
                raise choose("--adam-rules", name, ADAM_RULES)
        return cls(horizon, batch, names)


def exponent_of(rule: str, axis: str) -> float | None:
    """The fixed exponent of a rule (none: 0, sqrt: ½, power:E: E); None for measured."""
    if rule == "measured":
        return None
    if rule == "none":
        return 0.0
    if rule == "sqrt" and axis == "batch":
        return 0.5
    m = re.fullmatch(r"power:([-+]?\d*\.?\d+(?:[eE][-+]?\d+)?)", rule)
    if not m:
        raise choose(RULE_FLAGS[axis], rule, RULE_NAMES[axis])
    return float(m.group(1))


def verify_offsets(k: int) -> list[float]:
    """K lr offsets in octaves around the transferred lr, nearest first: -0.5, +0.5, -1, +1, ..."""
    offsets = []
    step = 1
    while len(offsets) < k:
        for sign in (-1, 1):
            if len(offsets) < k:
                offsets.append(sign * 0.5 * step)
        step += 1
    return sorted(offsets)


def plan_transfer(doc: dict, param: str, width: int, depth: int | None, tokens: int | None = None,
                  batch: int | None = None, rules: Rules = Rules()) -> dict:  # fmt: skip
    """What the sweep predicts for the target at (width, depth, tokens, batch; tokens and batch default to
    the sweep's reference): the base lr (with its 95% interval, or a bound) relative to the base shape, the
    rule and move along each axis, the uncorrected proxy lr, hp, and the verdict with its reasons."""
    spec = completed(SweepSpec.from_json(doc["spec"]))
    fits = fit_sweep(doc["runs"], tolerance_octaves=spec.tolerance)
    if param not in fits:
        raise MupxError(f"the sweep has no {param!r} runs (has: {', '.join(fits) or 'none'})")
    fit = fits[param]
    rec = fit.get("recommended")
    if not rec or rec.get("lr") is None:
        raise MupxError(f"the sweep's {param} runs have no fitted optimum yet (finish the sweep first)")
    depth = depth or spec.depths[-1]
    hp = rec.get("hp") or {}
    reasons = {
        axis: [d["reason"] for d in fit["drift"][axis] if (d.get("hp") or {}) == hp] for axis in fit["drift"]
    }
    proxies = proxy_values(spec)
    reference = {a: (rec.get("reference") or {}).get(a) or max(proxies[a]) for a in EXPONENTS}
    target = {
        "width": width,
        "depth": depth,
        "tokens": tokens or reference["tokens"],
        "batch": batch or reference["batch"],
    }
    axes, measured, fixed = {}, {}, 0.0
    for axis in (*JUDGED, *EXPONENTS):
        info = axis_info(
            axis, target[axis], proxies[axis], reference.get(axis), (rec.get("plane") or {}).get(axis)
        )
        if axis in EXPONENTS:
            info.update(axis_rule(axis, info, getattr(rules, axis), fit["verdict"].get(axis)))
            if info["rule"] == "measured":
                measured[axis] = target[axis]
            else:
                fixed += info["shift_octaves"]
        axes[axis] = info
    at_target = estimate(fit, measured)
    moved = at_target["log2_lr"] - estimate(fit, {})["log2_lr"]
    for axis in measured:
        alone = estimate(fit, {axis: target[axis]})["log2_lr"] - estimate(fit, {})["log2_lr"]
        axes[axis]["shift_octaves"] = alone
    log2_lr = rec.get("log2_lr", math.log2(rec["lr"])) + moved + fixed
    lr = rec["lr"] * 2.0 ** (moved + fixed)  # exactly the recommendation when nothing moves it
    interval = (
        [v + fixed for v in at_target["interval"]] if at_target["interval"] and not rec.get("bound") else None
    )
    extrapolated = estimate(fit, {"width": width, "depth": depth, **measured})["log2_lr"] + fixed
    return {
        "param": param, "lr": lr, "log2_lr": log2_lr, "interval": interval, "bound": rec.get("bound"),
        "uncorrected_lr": rec["lr"], "uncorrected_interval": rec.get("interval"), "hp": hp,
        "base_width": spec.base_width, "base_depth": spec.base_depth, "extrapolated_lr": 2.0**extrapolated,
        "verdict": fit.get("verdict"), "reasons": reasons, "depth": depth, "target": target, "axes": axes,
        "reference": reference, "rules": {a: axes[a]["rule"] for a in EXPONENTS},
    }  # fmt: skip


def proxy_values(spec: SweepSpec) -> dict[str, list[int]]:
    """The values the sweep's runs take along each axis."""
    runs = [(n, b) for b in spec.batches for n in spec.horizon_steps(b)]
    return {"width": sorted(spec.widths), "depth": sorted(spec.depths),
            "tokens": sorted({n * b * spec.seq_len for n, b in runs}), "batch": sorted(spec.batches)}  # fmt: skip


def axis_info(axis: str, target: float, proxies: list, reference: float | None, plane: dict | None) -> dict:
    """Where the target lies along ``axis`` against the proxies: ``beyond`` = target / the nearest end of
    the swept range when outside it (None inside), and the plane's slope there."""
    lo, hi = min(proxies), max(proxies)
    beyond = target / hi if target > hi else target / lo if target < lo else None
    return {
        "target": target, "proxies": [lo, hi], "reference": reference, "beyond": beyond, "rule": "mup",
        "slope": (plane or {}).get("slope"), "slope_interval": (plane or {}).get("slope_interval"), "shift_octaves": 0.0,
    }  # fmt: skip


def axis_rule(axis: str, info: dict, rule: str | None, verdict: str | None) -> dict:
    """The rule along tokens or batch (the default: measured when swept, else none) and its fixed move; a
    measured rule needs the sweep to have measured that axis, unless the target sits at the proxies' value."""
    swept = info["proxies"][0] != info["proxies"][1]
    rule = rule or ("measured" if swept else "none")
    exponent = exponent_of(rule, axis)
    differs = info["target"] != info["reference"]
    if rule == "measured" and differs and (not swept or info["slope"] is None):
        what = "the horizon" if axis == "tokens" else "the batch"
        why = (f"the sweep did not vary {what} (its runs all train at {axis} {count_text(info['reference'])})" if not swept
               else f"the sweep's optima do not measure the {axis} exponent ({verdict})")  # fmt: skip
        raise MupxError(f"{RULE_FLAGS[axis]} measured: {why}, and the target is at {axis} {count_text(info['target'])}; "
                        f"sweep {'--steps or --tokens' if axis == 'tokens' else '--batches'} over it, or choose {RULE_FLAGS[axis]} none | {SUGGESTED[axis][0]}")  # fmt: skip
    shift = exponent * math.log2(info["target"] / info["reference"]) if exponent is not None else 0.0
    return {"rule": rule, "exponent": exponent if exponent is not None else info["slope"], "shift_octaves": shift,
            "default_none": rule == "none" and differs and not swept}  # fmt: skip


def axis_lines(pred: dict) -> list[str]:
    """One line per axis the target leaves the proxies' range along, or moves the lr along, with its rule."""
    lines = []
    for axis, a in pred["axes"].items():
        lo, hi = a["proxies"]
        where = (f"{a['beyond']:.1f}x beyond the {'widest' if axis == 'width' else 'deepest' if axis == 'depth' else 'longest' if axis == 'tokens' else 'largest'} proxy "
                 f"({count_text(hi)} -> {count_text(a['target'])})" if a["beyond"] and a["beyond"] > 1
                 else f"{1 / a['beyond']:.1f}x below the smallest proxy ({count_text(lo)} -> {count_text(a['target'])})" if a["beyond"]
                 else f"within the proxies ({count_text(lo)} - {count_text(hi)}) at {count_text(a['target'])}")  # fmt: skip
        slope = ("" if a["slope"] is None else f"slope {a['slope']:+.2f}"
                 + (f" (95% {a['slope_interval'][0]:+.2f} to {a['slope_interval'][1]:+.2f})" if a["slope_interval"] else ""))  # fmt: skip
        if axis in JUDGED:
            if a["beyond"]:
                lines.append(
                    f"{axis}: {where}, μP: base lr unchanged"
                    + (f" (the sweep's plane: {slope})" if slope else "")
                )
            continue
        if a.get("default_none"):
            name, e, source = SUGGESTED[axis]
            lines.append(f"warning: {axis}: the target is at {count_text(a['target'])} and every proxy at "
                         f"{count_text(a['reference'])}, but the sweep did not vary it: lr not corrected ({RULE_FLAGS[axis]} none); "
                         f"{source} would move it {e * math.log2(a['target'] / a['reference']):+.2f} octaves ({RULE_FLAGS[axis]} {name})")  # fmt: skip
        elif a["target"] != a["reference"] or a["beyond"]:
            rule = f"measured, {slope}" if a["rule"] == "measured" else a["rule"]
            lines.append(f"{axis}: {where}, {rule}: {a['shift_octaves']:+.2f} octaves")
            if a["rule"] == "measured" and a["beyond"]:
                lines += imprecise_exponent(axis, a)
    return lines


# A measured exponent is used beyond the proxies only with a warning when its 95% interval moves the lr at the
# target by more than this many octaves either way (twice the ±0.5 tolerance of a transfer): the rule then
# says little more than "unknown" (bench-horizon's 4x batch: +0.25 (95% -1.96 to +2.47), regret 1.55%).
IMPRECISE_OCTAVES = 1.0


def imprecise_exponent(axis: str, a: dict) -> list[str]:
    """A warning line when the measured exponent along ``axis`` is too uncertain to extrapolate with."""
    octaves = math.log2(a["target"] / a["reference"])
    if a["slope_interval"] is None:
        spread = "has no interval"
    else:
        lo, hi = sorted(e * octaves for e in a["slope_interval"])
        if max(a["shift_octaves"] - lo, hi - a["shift_octaves"]) <= IMPRECISE_OCTAVES:
            return []
        spread = f"moves the lr {lo:+.2f} to {hi:+.2f} octaves at the target (95%)"
    more = "--steps or --tokens values" if axis == "tokens" else "--batches"
    return [
        f"warning: {axis}: the measured exponent {spread}: too uncertain to extrapolate with; "
        f"{RULE_FLAGS[axis]} none keeps the proxy lr, or sweep more {more} or seeds"
    ]


def refusal(pred: dict) -> str | None:
    """Why the sweep does not support a zero-shot transfer (None when it does): a verdict other than
    "transfers" along width or depth, a measured rule along an axis whose exponent is inconclusive, or a
    recommendation that is only a bound."""
    verdicts = pred["verdict"] or {}
    bad = {axis: v for axis, v in verdicts.items() if axis in JUDGED and v not in (None, "transfers")}
    bad |= {axis: v for axis, v in verdicts.items()
            if axis in EXPONENTS and v == "inconclusive" and pred["rules"].get(axis) == "measured"}  # fmt: skip
    if bad:
        why = "; ".join(
            f"{axis}: {v} ({' / '.join(pred['reasons'].get(axis, [])) or 'no reason recorded'})"
            for axis, v in bad.items()
        )
        return f"the sweep's {pred['param']} verdict is not 'transfers' ({why})"
    if pred["bound"]:
        return f"the sweep's {pred['param']} recommendation is only a bound (every optimum is on the lr grid's edge)"
    return None


def adam_settings(optimizer: str, settings: dict, names: tuple[str, ...], batch: int, reference: int) -> dict:
    """β2 and ε moved with the batch (Marek et al. 2507.07101): β2' = β2^(B'/B), ε' = ε·√(B/B'); per key,
    ``{"from", "to", "rule"}``."""
    if not names:
        return {}
    if optimizer not in ADAM_KEYS:
        raise MupxError(
            f"--adam-rules: {optimizer} has no Adam-like β2 or ε (allowed for: {', '.join(ADAM_KEYS)})"
        )
    betas, epss = ADAM_KEYS[optimizer]
    ratio, out = batch / reference, {}
    if "beta2" in names:
        for key in betas:
            b1, b2 = settings[key]
            out[key] = {"from": [b1, b2], "to": [b1, b2**ratio], "rule": f"beta2^({batch}/{reference})"}
    if "eps" in names:
        for key in epss:
            out[key] = {
                "from": settings[key],
                "to": settings[key] * math.sqrt(1 / ratio),
                "rule": f"eps*sqrt({reference}/{batch})",
            }
    return out


@dataclass
class TransferPlan:
    """The target's runs, composed and validated, before anything runs or is written."""

    sweep_json: Path
    folder: Path
    pred: dict
    width: int
    depth: int
    steps: int
    overrides: list[str]  # the user's, on top of the sweep's
    tasks: list[tuple[str, Task]]  # (role, task): transfer, baseline, uncorrected, verify±k
    forced: bool = False  # run with --force although the sweep's verdict refused it
    batch: int = 0
    tokens: int = 0
    seq_len: int = 0
    adam: dict = dataclasses.field(default_factory=dict)
    rules: Rules = Rules()


def plan_runs(sweep_json: Path, width: int, depth: int | None, steps: int | None, param: str, baseline: str | None,
              verify: int, config: Path | None = None, overrides: list[str] | None = None, tokens: str | None = None,
              batch: int | None = None, rules: Rules = Rules(), compare_uncorrected: bool = False,
              ranks: int = 1, seeds: int = 1) -> TransferPlan:  # fmt: skip
    """Compose and validate every run of the transfer (one-line errors before any folder exists).
    ``config`` (``--config``) and ``overrides`` (the user's flags, -s, KEY=VALUE) apply on top of the sweep's
    own, except its axes; a transfer run keeps its final weights (``train.save_final``), which the sweep's
    runs skip. The target trains ``steps`` or ``tokens`` (default: the sweep's reference horizon, in the
    unit the sweep gave it) at the global ``batch`` (default: ``train.batch`` of the overrides, else the
    sweep's reference batch). Every role runs ``seeds`` seeds (the sweep's seeds 0, 1, ...: the same
    initialisations and data orders at every lr, so the roles' seed-mean losses compare like for like)."""
    if seeds < 1:
        raise MupxError(f"--seeds must be >= 1, got {seeds}")
    if width <= 0:
        raise MupxError(f"--width must be a positive integer, got {width}")
    if depth is not None and depth <= 0:
        raise MupxError(f"--depth must be a positive integer, got {depth}")
    if verify < 0:
        raise MupxError(f"--verify must be >= 0, got {verify}")
    if baseline not in (None, "sp", "mup") or baseline == param:
        raise MupxError(
            f"--baseline {baseline!r} must be the other parameterization (allowed: {'sp' if param == 'mup' else 'mup'})"
        )
    if steps is not None and steps < 1:
        raise MupxError(f"--steps must be >= 1, got {steps}")
    if steps is not None and tokens is not None:
        raise MupxError("give the target's horizon as --steps or as --tokens, not both")
    if batch is not None and batch < 1:
        raise MupxError(f"--batch must be >= 1, got {batch}")
    sweep_json = Path(sweep_json)
    doc = load_sweep_json(sweep_json)
    spec = completed(SweepSpec.from_json(doc["spec"]))
    _, _, overrides = sweep_overrides(config, spec.optimizer, spec.model, list(overrides or []))
    base = to_dict(
        compose([f"model={spec.model}", f"optimizer={spec.optimizer}", *spec.overrides, *overrides])
    )
    seq_len, reference = base["train"]["seq_len"], plan_transfer(doc, param, width, depth)["reference"]
    ref_steps = reference["tokens"] // (spec.seq_len * reference["batch"])
    batch = batch or int(user_value(overrides, "train.batch") or 0) or reference["batch"]
    check_batch(batch, ranks, base["train"]["accum"])
    if base["train"].get("eval_batch") is not None:
        check_batch(base["train"]["eval_batch"], ranks, base["train"]["accum"], "train.eval_batch")
    if tokens is not None:
        (target_tokens,) = parse_counts(str(tokens), "--tokens")
        if target_tokens % (batch * seq_len):
            raise MupxError(
                f"--tokens {target_tokens} is not a whole number of steps at batch {batch} x seq_len {seq_len}"
            )
        steps = target_tokens // (batch * seq_len)
    elif steps is None:  # the reference horizon: in tokens when the sweep gave tokens, else in steps
        steps = reference["tokens"] // (batch * seq_len) if spec.tokens else ref_steps
    pred = plan_transfer(doc, param, width, depth, steps * batch * seq_len, batch, rules)
    depth = pred["depth"]
    adam = adam_settings(spec.optimizer, base["optimizer"], rules.adam, batch, reference["batch"])
    adam_overrides = [f"optimizer.{k}={override_value(v['to'])}" for k, v in adam.items()]
    spec = dataclasses.replace(
        spec, steps=(steps,), tokens=(), batches=(batch,), seq_len=seq_len, widths=(width,), depths=(depth,),
        overrides=(*spec.overrides, "train.save_final=true", *overrides, *adam_overrides),
    )  # fmt: skip
    sweep_dir = sweep_json if sweep_json.is_dir() else sweep_json.parent
    folder = sweep_dir / f"transfer-w{width}-d{depth}"
    check_folder(folder, "transfer folder")
    combo = tuple(pred["hp"].items())
    planner = Sweep(spec, folder, command=[])
    roles = [("transfer", param, pred["lr"])]
    if baseline:
        roles.append(("baseline", baseline, pred["lr"]))
    if compare_uncorrected and not math.isclose(pred["uncorrected_lr"], pred["lr"], rel_tol=1e-9):
        roles.append(("uncorrected", param, pred["uncorrected_lr"]))
    roles += [(f"verify{o:+g}", param, pred["lr"] * 2.0**o) for o in verify_offsets(verify)]
    tasks = [(role, planner.task((p, width, depth, combo, steps, batch), lr, seed))
             for role, p, lr in roles for seed in range(seeds)]  # fmt: skip
    return TransferPlan(sweep_json, folder, pred, width, depth, steps, overrides, tasks, batch=batch,
                        tokens=steps * batch * seq_len, seq_len=seq_len, adam=adam, rules=rules)  # fmt: skip


def run_transfer(plan: TransferPlan, executor, display: RunDisplay | None = None) -> dict:
    """Run what has not finished (shown on ``display``) and write transfer.json."""
    with SweepLock(plan.folder):
        todo = [t for _, t in plan.tasks if (read_result(t.run_dir) or {}).get("status") not in FINISHED]
        if display:
            display.total(len(plan.tasks), len(plan.tasks) - len(todo))
        if todo:

            def done(task: Task, result: dict) -> None:
                if display:
                    loss = record(task.run_id, task.axes, result)["loss"]
                    last = f"{task.axes['param']} lr {task.axes['lr']:.3g}: {result['status'] if loss is None else f'{loss:.4f}'}"
                    display.done(task, result, last)

            executor.run(todo, done)
    return write_transfer(plan)


def run_transfer_command(o: dict, console) -> dict | None:
    """``mupx transfer``: the verdict first (refused unless it is "transfers", or --force), the runs with
    their logs, a progress bar, then the losses, the regret and whether the baseline won."""
    rules = Rules.parse(o.get("horizon_rule"), o.get("batch_rule"), o.get("adam_rules"))
    plan = plan_runs(o["sweep"], o["width"], o["depth"], o["steps"], o["param"], o["baseline"], o["verify"],
                     o["config"], o["overrides"], o.get("tokens"), o.get("batch"), rules, o.get("compare_uncorrected", False),
                     o["gpus_per_run"] if o.get("gpus_per_run", 1) > 1 else 1, o.get("seeds", 1))  # fmt: skip
    if o["print_config"]:
        role, task = plan.tasks[0]
        return print_config(to_dict(compose(task.overrides)), f"the {role} run of {plan.folder}")
    executor = make_executor(o, plan.folder)
    pred, param = plan.pred, plan.pred["param"]
    console.print(verdict_text(pred), highlight=False, soft_wrap=True)
    why = refusal(pred)
    if why and not o["force"]:
        raise MupxError(f"{why}; refusing to transfer (--force runs it anyway)")
    plan.forced = why is not None
    console.print(
        f"transferring {recommendation_text(pred)} ({param}; drift-extrapolated {pred['extrapolated_lr']:.4g}) "
        f"-> width {plan.width}, depth {plan.depth}, {plan.steps} steps of {plan.batch} x {plan.seq_len} tokens "
        f"({count_text(plan.tokens)} tokens)",
        highlight=False, soft_wrap=True,
    )  # fmt: skip
    for line in budget_lines(pred, plan.adam):
        console.print(f"  {line}", highlight=False, soft_wrap=True)
    for role, task in plan.tasks:
        console.print(
            f"  {role:>10} {task.axes['param']} lr {task.axes['lr']:.4g}  log: {task.log}",
            highlight=False,
            soft_wrap=True,
        )
    with RunDisplay(console, plan.folder.name) as display:
        doc = run_transfer(plan, executor, display)
    for r in doc["roles"]:
        loss = (
            f"{r['loss']:.4f}"
            if r["loss"] is not None
            else f"{r['status']} ({r.get('reason') or 'no reason recorded'})"
        )
        seeds = f" (mean of {r['n_seeds']} seeds)" if r["n_seeds"] > 1 and r["loss"] is not None else ""
        console.print(
            f"  {r['role']:>10} {r['param']} lr {r['lr']:.4g}: {loss}{seeds}", highlight=False, soft_wrap=True
        )
    if doc["regret"]:
        r = doc["regret"]
        console.print(f"regret {r['value']:+.4f} ({100 * r['relative']:.2f}% of the loss; best lr at target {r['best_lr']:.4g})",
                      highlight=False, soft_wrap=True)  # fmt: skip
    u = doc["uncorrected"]
    if u and u.get("regret") is not None:
        console.print(f"uncorrected proxy lr {u['lr']:.4g}: regret {u['regret']:+.4f} ({100 * u['relative']:.2f}% of the loss)",
                      highlight=False, soft_wrap=True)  # fmt: skip
    b = doc["baseline"]
    if b and b["gain"] is not None:
        if b["gain"] < 0:
            console.print(
                f"[bold]the {b['param']} baseline won[/]: loss {b['loss']:.4f} against {param}'s {doc['loss']:.4f} "
                f"({-b['gain']:.4f} lower) at the same base lr", highlight=False, soft_wrap=True,
            )  # fmt: skip
        else:
            console.print(
                f"{param} beat the {b['param']} baseline by {b['gain']:.4f} loss ({doc['loss']:.4f} against "
                f"{b['loss']:.4f}) at the same base lr", highlight=False, soft_wrap=True,
            )  # fmt: skip
    main = plan.tasks[0][1]
    final = checkpoint.all_checkpoints(main.run_dir)
    console.print(
        f"transfer folder: {plan.folder}  (transfer.json, runs/, logs/)"
        + (f"; final weights: {final[-1]}" if final and doc["status"] == "completed" else ""),
        highlight=False, soft_wrap=True,
    )  # fmt: skip
    return doc


def budget_lines(pred: dict, adam: dict) -> list[str]:
    """The axes the target leaves the proxies along and the rule applied to each, the prediction against
    the uncorrected proxy lr, and the Adam settings moved with the batch."""
    lines = axis_lines(pred)
    if not math.isclose(pred["lr"], pred["uncorrected_lr"], rel_tol=1e-9):
        iv = pred["interval"]
        lines.append(f"predicted base lr {pred['lr']:.4g}" + (f" (95% {2 ** iv[0]:.3g} - {2 ** iv[1]:.3g})" if iv else "")
                     + f", {pred['log2_lr'] - math.log2(pred['uncorrected_lr']):+.2f} octaves from the uncorrected proxy lr {pred['uncorrected_lr']:.4g}")  # fmt: skip
    for key, a in adam.items():
        lines.append(
            f"optimizer.{key}: {_g(a['from'])} -> {_g(a['to'])} ({a['rule']}, Marek et al. 2507.07101)"
        )
    return lines


def _g(value) -> str:
    return "[" + ", ".join(_g(v) for v in value) + "]" if isinstance(value, list) else f"{value:.6g}"


def verdict_text(pred: dict) -> str:
    """'sweep verdict (mup): width transfers (lr* moves ...)' per swept axis."""
    parts = [
        f"{axis} {v}" + (f" ({'; '.join(pred['reasons'][axis])})" if pred["reasons"].get(axis) else "")
        for axis, v in (pred["verdict"] or {}).items()
        if v is not None
    ]
    if not parts:
        return f"sweep verdict ({pred['param']}): not measured (one width and one depth: no drift to check)"
    return f"sweep verdict ({pred['param']}): " + "; ".join(parts)


def sweep_train_overrides(path: Path, flags: dict, later: list[str], console) -> list[str]:
    """``mupx train --from-sweep``: the sweep's optimizer, model, base shape, base lr (moved to the run's
    horizon and batch by the default rules, each axis printed as ``mupx transfer`` prints it), hp and, from
    a horizon sweep, its warmup-stable-decay schedule, as overrides (the flags that would set them
    differently are refused)."""
    for key in ("lr", "base_width", "base_depth"):
        if flags.get(key) is not None:
            raise MupxError(
                f"--from-sweep sets --{key.replace('_', '-')} (the sweep's recommendation); give one of them"
            )
    doc = load_sweep_json(path)
    spec = completed(SweepSpec.from_json(doc["spec"]))
    for key in ("optimizer", "model"):
        if flags.get(key) not in (None, getattr(spec, key)):
            raise MupxError(
                f"--{key} {flags[key]}, but the sweep {path} tuned {getattr(spec, key)}: its lr does not apply "
                f"(allowed: {getattr(spec, key)})"
            )
    param = flags.get("param") or ("mup" if "mup" in spec.params else spec.params[0])
    schedule = (
        [] if spec.warmup_steps is None else ["train.schedule=wsd", f"train.warmup_steps={spec.warmup_steps}"]
    )
    train = to_dict(compose([f"model={spec.model}", f"optimizer={spec.optimizer}", *schedule, *later]))[
        "train"
    ]
    pred = plan_transfer(
        doc, param, spec.widths[-1], None, train["steps"] * train["batch"] * train["seq_len"], train["batch"]
    )
    console.print(f"from {path}: {recommendation_text(pred)} ({param})", highlight=False, soft_wrap=True)
    for line in budget_lines(pred, {}):
        console.print(f"  {line}", highlight=False, soft_wrap=True)
    why = refusal(pred)
    if why:
        console.print(f"[yellow]warning[/]: {why}", highlight=False, soft_wrap=True)
    return [
        f"model={spec.model}", f"optimizer={spec.optimizer}", f"param={param}", f"param.base_width={spec.base_width}",
        f"param.base_depth={spec.base_depth}", *schedule, *(f"{k}={override_value(v)}" for k, v in pred["hp"].items()),
        f"optimizer.lr={pred['lr']!r}",
    ]  # fmt: skip


def by_role(runs: list[dict]) -> list[dict]:
    """One entry per role, in order: its lr and param, the seed-mean loss (None unless every seed
    completed) and the status (the first non-completed seed's, else completed)."""
    roles: dict[str, list[dict]] = {}
    for r in runs:
        roles.setdefault(r["role"], []).append(r)
    out = []
    for role, rs in roles.items():
        losses = [r["loss"] for r in rs if r["loss"] is not None]
        failed = next((r for r in rs if r["loss"] is None), None)
        out.append({"role": role, "param": rs[0]["param"], "lr": rs[0]["lr"], "n_seeds": len(rs),
                    "loss": sum(losses) / len(losses) if failed is None else None,
                    "status": failed["status"] if failed else "completed",
                    "reason": failed.get("reason") if failed else None})  # fmt: skip
    return out


def write_transfer(plan: TransferPlan) -> dict:
    """transfer.json: the target, the prediction (per axis, the rules, the uncorrected proxy lr), each run,
    the regret of the transferred lr (and of the uncorrected one, when it ran) against the best lr at the
    target, and the baseline."""
    pred = plan.pred
    runs = [{"role": role, **record(t.run_id, t.axes, read_result(t.run_dir))} for role, t in plan.tasks]
    roles = by_role(runs)
    main = roles[0]
    verify = [r for r in roles if r["role"] == "transfer" or r["role"].startswith("verify")]
    uncorrected = next((r for r in roles if r["role"] == "uncorrected"), None)
    finished = [r for r in [*verify, *([uncorrected] if uncorrected else [])] if r["loss"] is not None]
    best = min(finished, key=lambda r: r["loss"]) if finished else None
    regret = None
    if len(verify) > 1 and main["loss"] is not None:
        curve = fit_series(
            [dict(r, hp={}) for r in runs if r["role"] == "transfer" or r["role"].startswith("verify")]
        )
        measured = curve.get("log2_lr_star")
        regret = {
            "value": main["loss"] - best["loss"],
            "relative": (main["loss"] - best["loss"]) / best["loss"],
            "best_lr": best["lr"],
            "best_loss": best["loss"],
            "measured_lr_star": curve.get("lr_star"),
            "measured_interval": curve.get("interval"),
            "measured_at_edge": curve.get("at_edge"),
            "octave_error": (pred["log2_lr"] - measured) if measured is not None else None,
        }
    gap = uncorrected and len(verify) > 1 and uncorrected["loss"] is not None
    base = next((r for r in roles if r["role"] == "baseline"), None)
    doc = {
        "schema_version": SCHEMA_VERSION,
        "sweep": str(plan.sweep_json),
        "updated": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "target": {
            "width": plan.width,
            "depth": plan.depth,
            "steps": plan.steps,
            "tokens": plan.tokens,
            "batch": plan.batch,
            "seq_len": plan.seq_len,
        },  # fmt: skip
        "overrides": plan.overrides,
        "rules": dataclasses.asdict(plan.rules),  # as given (None: the default)
        "forced": plan.forced,
        "predicted": pred,
        "optimizer": plan.adam,
        "roles": roles,
        "runs": runs,
        "loss": main["loss"],
        "status": main["status"],
        "regret": regret,
        "uncorrected": {
            "lr": pred["uncorrected_lr"],
            "loss": uncorrected["loss"] if uncorrected else None,
            "regret": uncorrected["loss"] - best["loss"] if gap else None,
            "relative": (uncorrected["loss"] - best["loss"]) / best["loss"] if gap else None,
        },
        "baseline": None
        if base is None
        else {
            "param": base["param"],
            "loss": base["loss"],
            "status": base["status"],
            "gain": (base["loss"] - main["loss"])
            if (base["loss"] is not None and main["loss"] is not None)
            else None,
        },  # fmt: skip
    }
    atomic_write_json(plan.folder / "transfer.json", doc)
    return doc
