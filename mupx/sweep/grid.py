"""The sweep grid: widths × depths × horizons × batches × learning rates × extra hyperparameters × seeds ×
parameterizations, expanded into one Hydra override list (and so one stable run id) per run.

A horizon is a number of optimizer steps (``--steps``) or of tokens (``--tokens``: steps = tokens / (global
batch × sequence length), so batches are compared at equal tokens); the batch is the global batch
(``train.batch``, ``--batches``). A sweep over two or more horizons trains warmup-stable-decay
(``train.schedule=wsd``, Hägele et al. 2405.18392) with one warmup in steps for every horizon
(``train.warmup_steps``), so that each shorter horizon can branch off the longest one's stable phase
(:mod:`mupx.sweep.runner`).
"""

from __future__ import annotations

import itertools
import math
import re
from dataclasses import asdict, dataclass, field

from ..errors import MupxError

PARAMS = {"mup": ["mup"], "sp": ["sp"], "both": ["mup", "sp"]}


def parse_ints(text: str, flag: str) -> list[int]:
    """'64,128,256' -> [64, 128, 256]: positive, distinct, increasing."""
    _no_empty_items(text, flag, "64,128,256")
    try:
        values = [int(v) for v in text.split(",")]
    except ValueError:
        raise MupxError(
            f"{flag} {text!r} is not a comma-separated list of integers (e.g. 64,128,256)"
        ) from None
    if not values or any(v <= 0 for v in values):
        raise MupxError(f"{flag} {text!r} must list positive integers (e.g. 64,128,256)")
    if values != sorted(set(values)):
        raise MupxError(f"{flag} {text!r} must be increasing without repeats")
    return values


def parse_counts(text: str, flag: str) -> list[int]:
    """Token counts: '1048576', '1e6', '1.5M', '400k', '2^20' (k, M, G: 10^3, 10^6, 10^9), comma-separated;
    whole, positive, increasing."""
    _no_empty_items(text, flag, "1M,4M")
    values = []
    for item in text.split(","):
        t = item.strip()
        scale = {"k": 1e3, "K": 1e3, "M": 1e6, "G": 1e9, "B": 1e9}.get(t[-1:], 1)
        number = _number(t[:-1] if scale != 1 else t, flag)
        value = number * scale
        if not value == int(value) or value <= 0:
            raise MupxError(f"{flag} {t!r} is not a positive whole number of tokens")
        values.append(int(value))
    if values != sorted(set(values)):
        raise MupxError(f"{flag} {text!r} must be increasing without repeats")
    return values


def _no_empty_items(text: str, flag: str, example: str) -> None:
    """'64,,128' or '64,128,' is a typo, not a shorter grid."""
    if any(not v.strip() for v in text.split(",")):
        raise MupxError(
            f"{flag} {text!r} has an empty entry (expected a comma-separated list, e.g. {example})"
        )


def _number(text: str, flag: str) -> float:
    """A float, or a power of two written 2^-10."""
    t = text.strip()
    m = re.fullmatch(r"2\^(-?\d+(?:\.\d+)?)", t)
    try:
        return 2.0 ** float(m.group(1)) if m else float(t)
    except ValueError:
        raise MupxError(f"{flag}: {t!r} is not a number or a power of two like 2^-10") from None


def parse_lrs(text: str) -> list[float] | None:
    """Learning rates: a list ('1e-3,3e-3'), a log2 range 'START:STOP:STEP' with powers of two
    ('2^-12:2^-4:0.5' = 2^-12 … 2^-4 in half-octave steps), or 'auto' / 'auto:CENTER' (None)."""
    text = text.strip()
    if text == "auto" or text.startswith("auto:"):
        return None
    if ":" in text:
        parts = text.split(":")
        if len(parts) != 3:
            raise MupxError(f"--lrs {text!r}: a range is START:STOP:STEP_IN_OCTAVES, e.g. 2^-12:2^-4:0.5")
        start, stop = _number(parts[0], "--lrs"), _number(parts[1], "--lrs")
        step = _number(parts[2], "--lrs")
        if start <= 0 or stop <= 0:
            raise MupxError(f"--lrs {text!r}: learning rates must be > 0")
        if step <= 0 or stop < start:
            raise MupxError(f"--lrs {text!r}: STOP must be >= START and the octave step > 0")
        n = math.floor((math.log2(stop) - math.log2(start)) / step + 1e-9) + 1
        if n > 64:
            raise MupxError(f"--lrs {text!r} gives {n} learning rates (at most 64)")
        return [2.0 ** (math.log2(start) + i * step) for i in range(n)]
    _no_empty_items(text, "--lrs", "1e-3,3e-3")
    values = [_number(v, "--lrs") for v in text.split(",")]
    if not values or any(v <= 0 for v in values):
        raise MupxError(f"--lrs {text!r} must list learning rates > 0, a range like 2^-12:2^-4:0.5, or auto")
    return sorted(set(values))


def auto_center(text: str, default: float) -> float:
    """The centre of auto mode's coarse grid: 'auto:2^-7' or the optimizer's configured lr."""
    if ":" not in text:
        return default
    center = _number(text.split(":", 1)[1], "--lrs")
    if center <= 0:
        raise MupxError(f"--lrs {text!r}: the auto centre must be > 0")
    return center


def parse_hp(items: list[str]) -> dict[str, list]:
    """'--hp optimizer.weight_decay=0,0.1' (repeatable) -> {'optimizer.weight_decay': [0.0, 0.1]}."""
    hp: dict[str, list] = {}
    for item in items or []:
        if "=" not in item:
            raise MupxError(f"--hp {item!r}: expected key=v1,v2 (e.g. optimizer.weight_decay=0,0.1)")
        key, values = item.split("=", 1)
        key = key.strip()
        if key in ("optimizer.lr", "model.width", "model.depth", "seed", "train.steps", "train.batch"):
            raise MupxError(
                f"--hp {key}: use --lrs / --widths / --depths / --seeds / --steps or --tokens / --batches for this axis"
            )
        parsed = [_hp_value(v) for v in values.split(",") if v.strip()]
        if not parsed:
            raise MupxError(f"--hp {item!r} lists no values")
        hp[key] = parsed
    return hp


def _hp_value(v: str):
    """An --hp value as -s would type it: an integer (block_size=32), else a number (2^-3, 0.1), else text."""
    if re.fullmatch(r"[+-]?\d+", v.strip()):
        return int(v)
    try:
        return _number(v, "--hp")
    except MupxError:
        return v.strip()


AXIS_KEYS = {
    "model": "--model", "optimizer": "--optimizer", "param": "--param", "model.width": "--widths",
    "model.depth": "--depths", "optimizer.lr": "--lrs", "seed": "--seeds", "param.base_width": "--base-width",
    "param.base_depth": "--base-depth", "train.steps": "--steps", "train.branch_from": "--steps",
    "train.branch_points": "--steps",
}  # fmt: skip


def check_overrides(overrides: list[str]) -> None:
    """A ``-s`` override may not set what the sweep's own flags set (it would silently collapse an axis)."""
    for o in overrides:
        key = o.split("=", 1)[0].lstrip("+~")
        if key in AXIS_KEYS:
            raise MupxError(f"-s {o}: the sweep sets {key} itself; use {AXIS_KEYS[key]} instead")


@dataclass(frozen=True)
class AutoLR:
    """Auto mode: a coarse 1-octave grid of ``coarse`` points centred on ``center``, extended by one
    octave past an edge optimum (at most ``max_extend`` times per side), then filled with ``resolution``-octave
    points across the fit window around each series' optimum (runner.lrs_for)."""

    center: float
    coarse: int = 5
    max_extend: int = 4
    resolution: float = 0.5


@dataclass(frozen=True)
class SweepSpec:
    name: str
    model: str
    optimizer: str
    params: tuple[str, ...]
    widths: tuple[int, ...]
    depths: tuple[int, ...]
    lrs: tuple[float, ...] | None
    seeds: tuple[int, ...]
    hp: dict[str, list] = field(default_factory=dict)
    base_width: int = 0
    base_depth: int = 0
    steps: tuple[int, ...] = ()  # horizons in optimizer steps (empty when given in tokens)
    overrides: tuple[str, ...] = ()
    tolerance: float = 0.5
    auto: AutoLR | None = None
    tokens: tuple[int, ...] = ()  # horizons in tokens
    batches: tuple[int, ...] = ()  # global batches (empty in a spec written before mupx swept them)
    seq_len: int = 0
    warmup_steps: int | None = (
        None  # a horizon sweep's shared warmup; None: one horizon, the config's schedule
    )

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict) -> SweepSpec:
        d = dict(d)
        d["auto"] = AutoLR(**d["auto"]) if d.get("auto") else None
        if isinstance(d.get("steps"), int):  # one horizon, as specs were before mupx swept them
            d["steps"] = (d["steps"],)
        for k in ("params", "widths", "depths", "seeds", "overrides"):
            d[k] = tuple(d[k])
        for k in ("steps", "tokens", "batches"):  # absent from specs written before mupx swept them
            d[k] = tuple(d.get(k, ()))
        d["lrs"] = tuple(d["lrs"]) if d.get("lrs") is not None else None
        return cls(**d)

    @property
    def horizon_sweep(self) -> bool:
        """Two or more horizons: warmup-stable-decay, the shorter horizons branched off the longest."""
        return len(self.steps or self.tokens) > 1

    def horizon_steps(self, batch: int | None) -> list[int]:
        """The steps of each horizon at ``batch``."""
        return [t // (batch * self.seq_len) for t in self.tokens] if self.tokens else list(self.steps)

    def series(self) -> list[tuple[str, int, int, tuple, int, int | None]]:
        """Every (param, width, depth, hp combo, steps, batch) whose lr curve the fit needs."""
        combos = [
            tuple(zip(self.hp, values, strict=True)) for values in itertools.product(*self.hp.values())
        ] or [()]
        return [(p, w, d, c, n, b) for p in self.params for w in self.widths for d in self.depths for c in combos
                for b in (self.batches or (None,)) for n in self.horizon_steps(b)]  # fmt: skip

    def overrides_for(
        self,
        param: str,
        width: int,
        depth: int,
        combo: tuple,
        steps: int,
        batch: int | None,
        lr: float,
        seed: int,
    ) -> list[str]:
        schedule = (
            ["train.schedule=wsd", f"train.warmup_steps={self.warmup_steps}"]
            if self.warmup_steps is not None
            else []
        )
        base = [
            f"model={self.model}", f"optimizer={self.optimizer}", f"param={param}", f"model.width={width}",
            f"model.depth={depth}", f"param.base_width={self.base_width}", f"param.base_depth={self.base_depth}",
            f"train.steps={steps}", "train.save_final=false", *schedule, *self.overrides,
            *(f"{k}={v!r}" if isinstance(v, float) else f"{k}={v}" for k, v in combo),
            *([f"train.batch={batch}"] if batch is not None else []), f"optimizer.lr={lr!r}", f"seed={seed}",
            "train.progress=false",
        ]  # fmt: skip
        return base
