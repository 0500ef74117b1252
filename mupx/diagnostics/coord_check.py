"""The coordinate check as a gate: is the parameterization right? Pass or fail, not a picture.

What is measured (microsoft/mup ``get_coord_data`` with ``fix_data=True``; TP-V App. D.1 and Fig. 5):
for each width (or depth) in the list and each seed, the run is built through the real pipeline
(``load_run_config`` → ``Trainer.build``, which also checks the optimizer against the plan) and trained
``steps`` steps with ``Trainer.train_step`` on ONE fixed batch at a constant, deliberately large learning
rate. Forward hooks record, at every step t = 0 … steps (t = 0 is the initialisation, before any update;
mup counts it as t = 1), the RMS of each activation and the RMS of its change since t = 0:

  embedding          the token-embedding output
  attn_logits.<i>    q·kᵀ·scale of block i (the model's ``attn.logits`` probe)
  block.<i>          the residual stream after block i
  logits             the output logits
  logits_dW          the logits' part from the readout's change since init, c·(W_t − W_0)·z_t

and :class:`~mupx.diagnostics.spectral.SpectralMonitor` gives ρ_ΔW = σ_max(c·ΔW)·√(fan_in/fan_out) of
every tensor's update at every step. In a depth sweep the blocks are compared by position, ``first``
and ``last`` (block indices differ between depths).

The gate (DESIGN principle 4; ``scaling-rules.md`` §10 "operational test"): for every gated (module,
metric, t), average over seeds, fit the least-squares slope of log(size) against log(width) (or
log(depth)); PASS when every |slope| ≤ tolerance (and no run diverged). Gated:

- width sweeps: ``rms`` (t ≥ 0) and ``delta_rms`` (t ≥ 1) of every activation except the output
  logits, and ``rms`` of ``logits_dW``. The logits are μP's known exception (mup README): with an
  O(1)-initialised readout behind the 1/m output multiplier, W_0·z/m shrinks like width^-1/2 at init,
  and, since W_0 stays random with respect to the features, at every later step too; over widths
  64→512 that part dominates both their size and their change at t = 1, 2 (measured slopes ≈ -0.4).
  What μP keeps Θ(1) is the rest, the readout update's contribution (W_t − W_0)·z_t/m, so that is
  gated. The attention logits have no such exception here: the head dimension is fixed, so q·kᵀ/√d_head
  is Θ(1) at init under both parameterizations.
- depth sweeps: the same, except the blocks and the logits. Under CompleteP (α = 1) each block adds
  1/L of its branch to the residual stream, so the branches' random init part of the stream shrinks like
  L^-1/2 (the depth analogue of the logits' exception) and the first block's own change like 1/L, both by
  design: ``block.last`` is gated on its change only, ``block.first`` is recorded, not gated. In depth
  there is no readout exception, so the logits' ``rms`` and ``delta_rms`` are gated.
- ``rho_dw`` (t ≥ 1) of every hidden matrix in width sweeps: Θ(1) in width under μP (spectral condition,
  §8.4), ∝ fan_in under SP with Adam (‖sign(G)‖_R ∝ fan_in). In depth sweeps the quantity that must be
  flat in L is a block's update times L, ``depth_rho_dw`` = ρ_ΔW·(L/L_base)·α_L with α_L the residual
  multiplier (§8.2 C2.2, §8.4 "L·α_l·ρ_ΔW"): ρ_ΔW up to a constant under CompleteP (α = 1), and flat for
  depth-μP (α = 1/2) too, where ρ_ΔW itself falls like L^-1/2.

The default tolerance is 0.5. Measured over widths 64→512 (depth 2) and depths 2→16 (width 128), 2
seeds, 5 steps: μP's worst |slope| is 0.32-0.42 (AdamW widths and depths, SGD widths), from finite-size
effects at the base shape: Adam's sign-like first updates of the readout and of q/k are partly unaligned
with the features, so their effect shrinks like width^-1/2 at the smallest widths. SP with AdamW fails
with slopes up to 1.9 (≈ 100 of 121 gated slopes above 1.0). §10's |slope| ≈ 0.2 assumes ≥ 16x of range
at larger widths; over 8x at widths this small the finite-width scatter alone reaches 0.4. SGD over depth
needs ``param.embed_mult=10``: its update follows the gradient's scale, which the pre-LN blocks divide by
the residual stream's RMS, and with the embedding at RMS 0.02 that RMS at init falls 2.2x from depth 2 to
16 (the branches dominate it at depth 2, the embedding at 16), so at embed_mult 1 the first block's updates
grow with L from t = 3 on (worst slope 0.88); at 10 the worst is 0.10 (0.14 over depths 4→32).

The default learning rate is the optimizer's configured one: every ``lr`` and ``*_lr`` key × ``lr_mult``
(default 1), or ``--lr`` for ``optimizer.lr``. mup's tip is "larger than for real training"; the
configured defaults already are (AdamW 3e-3 and SGD 0.3 with momentum 0.9 are 3x mup's coord-check lrs,
1e-3 and 0.1), and on one fixed batch larger ones make the loss spike (AdamW ×3: μP slopes up to 0.55
from the spikes alone), which hides the parameterization behind noise. Gradient clipping is off:
clipping the global norm rescales every update by a width-dependent factor and would hide (or fake) a
scaling error. Runs are float32 (no bf16 autocast on GPU) for the same reason.
"""

from __future__ import annotations

import dataclasses
import math
import shlex
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
from torch.func import functional_call

from ..errors import MupxError
from ..io import atomic_write_json, check_folder
from ..models.contract import logits_of, next_token_loss
from ..nn import AttentionLogits
from ..runconfig import RunConfig, load_run_config
from ..scaling.roles import Role

DEFAULT_WIDTHS = (64, 128, 256, 512)
DEFAULT_STEPS = 5
DEFAULT_SEEDS = 2
DEFAULT_TOLERANCE = 0.5
DEFAULT_LR_MULT = 1.0
MIN_POINTS = 3
MIN_RANGE = 8  # widths (depths) should span 8x: over one octave a slope turns seed noise into a failure

# CPU-sized defaults; the user's -s overrides come after these and win.
SMALL = (
    "model.depth=2", "model.width=128", "model.head_dim=16", "data.vocab_size=512", "data.max_documents=150",
    "train.batch=8", "train.seq_len=32", "train.grad_clip=0", "train.dtype=float32",
)  # fmt: skip
# What the check itself needs; applied after the user's overrides.
FORCED = ("train.schedule=constant", "train.warmup=0", "train.progress=false", "train.spectral_every=1")


@dataclass(frozen=True)
class CoordCheckSpec:
    """What to check: the axis and its values, the run length, the gate, and the config overrides."""

    axis: Literal["width", "depth"]
    values: tuple[int, ...]
    steps: int = DEFAULT_STEPS
    seeds: int = DEFAULT_SEEDS
    tolerance: float = DEFAULT_TOLERANCE
    lr: float | None = None  # exact optimizer.lr; None: lr_mult × the configured lr keys
    lr_mult: float = DEFAULT_LR_MULT
    overrides: tuple[str, ...] = ()  # group selections from flags, then the user's -s overrides

    def __post_init__(self):
        if self.steps < 1:
            raise MupxError(f"--steps must be at least 1, got {self.steps}")
        if self.seeds < 1:
            raise MupxError(f"--seeds must be at least 1, got {self.seeds}")
        if not self.tolerance > 0:
            raise MupxError(f"--tolerance must be > 0, got {self.tolerance}")
        if self.lr is not None and not self.lr > 0:
            raise MupxError(f"--lr must be > 0, got {self.lr}")
        if not self.lr_mult > 0:
            raise MupxError(f"--lr-mult must be > 0, got {self.lr_mult}")
        if len(self.values) < MIN_POINTS:
            raise MupxError(
                f"a coordinate check needs at least {MIN_POINTS} {self.axis}s, got {list(self.values)}"
            )
        if any(v <= 0 for v in self.values) or any(
            b <= a for a, b in zip(self.values, self.values[1:], strict=False)
        ):
            raise MupxError(
                f"--{self.axis}s must be positive and strictly increasing, got {list(self.values)}"
            )


def parse_sizes(text: str, flag: str) -> tuple[int, ...]:
    """'64,128,256' -> (64, 128, 256); anything else is a one-line error naming the flag."""
    try:
        return tuple(int(part) for part in text.split(","))
    except ValueError:
        raise MupxError(
            f"{flag} must be comma-separated integers like 64,128,256,512, got {text!r}"
        ) from None


def make_spec(widths: str | None, depths: str | None, **kwargs) -> CoordCheckSpec:
    if widths is not None and depths is not None:
        raise MupxError("give either --widths or --depths, not both")
    if depths is not None:
        return CoordCheckSpec("depth", parse_sizes(depths, "--depths"), **kwargs)
    values = parse_sizes(widths, "--widths") if widths is not None else DEFAULT_WIDTHS
    return CoordCheckSpec("width", values, **kwargs)


# --- building the runs -----------------------------------------------------------------------------


def point_overrides(spec: CoordCheckSpec, value: int, lr_overrides: list[str]) -> list[str]:
    if spec.axis == "width":
        base = ["param.base_depth=${model.depth}"]
        point = [f"model.width={value}", f"param.base_width={spec.values[0]}"]
    else:
        base = ["param.base_width=${model.width}"]
        point = [f"model.depth={value}", f"param.base_depth={spec.values[0]}"]
    steps = [f"train.steps={spec.steps}"]
    return list(SMALL) + base + lr_overrides + list(spec.overrides) + point + steps + list(FORCED)


def lr_overrides(spec: CoordCheckSpec, optimizer_section: dict) -> list[str]:
    """The large coordinate-check learning rates: every lr key × lr_mult, or --lr for optimizer.lr."""
    out = []
    for key, value in optimizer_section.items():
        if key == "lr" and spec.lr is not None:
            out.append(f"optimizer.lr={spec.lr!r}")
        elif (key == "lr" or key.endswith("_lr")) and isinstance(value, (int, float)):
            out.append(f"optimizer.{key}={float(value) * spec.lr_mult!r}")
    return out


def compose_points(spec: CoordCheckSpec) -> tuple[list[RunConfig], list[list[str]]]:
    """Compose and validate every point before anything trains, so bad input fails fast (exit 2)."""
    probe = load_run_config(point_overrides(spec, spec.values[0], []))
    lrs = lr_overrides(spec, probe.resolved["optimizer"])
    overrides = [point_overrides(spec, v, lrs) for v in spec.values]
    return [load_run_config(o) for o in overrides], overrides


def with_seed(cfg: RunConfig, seed: int) -> RunConfig:
    """The same run with another seed (composing again through Hydra would cost ~0.6 s per run)."""
    return dataclasses.replace(cfg, seed=seed, resolved={**cfg.resolved, "seed": seed})


# --- recording one run -----------------------------------------------------------------------------


class FixedBatch:
    """A sampler that returns the same batch every step (mup's ``fix_data=True``)."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor):
        self.batch = (x, y)

    def next(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.batch

    def next_shard(self, rank: int, world: int, accum: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """The trainer's interface (one process, no accumulation in a coordinate check)."""
        return [self.batch]


class ActivationRecorder:
    """Forward hooks keeping the latest output of each watched module (a step may run two forwards,
    e.g. Sophia's Hessian phase, both at the same weights). The modules are found from the plan, for any
    model: the token embedding (the module holding the first input-role tensor), each labelled residual
    block (from the role map) with its :class:`~mupx.nn.AttentionLogits` probe where it has one, and the
    readout (the last module holding the output-role tensor, or the tied embedding), whose output are the
    logits and whose call with W − W_0 (bias 0) is their part from the readout's change, c·(W_t − W_0)·z_t."""

    def __init__(self, model, plan, labels: dict[str, str]):
        self.latest: dict[str, torch.Tensor] = {}
        params = dict(model.named_parameters())
        modules = dict(model.named_modules())
        embedding_row = next(r for r in plan.rows if r.role is Role.INPUT)
        readout_row = next((r for r in plan.rows if r.role is Role.OUTPUT), embedding_row)
        holders = [m for m in modules.values() if getattr(m, "weight", None) is params[readout_row.name]]
        embedding = next(
            m for m in modules.values() if getattr(m, "weight", None) is params[embedding_row.name]
        )
        readout = holders[-1]
        if readout is embedding:
            raise MupxError(
                f"the readout uses {embedding_row.name} outside a module, so the coordinate check cannot watch the "
                "logits: compute them with a module holding the tied weight (mupx.Readout, as nanoGPT's lm_head)"
            )
        self.handles = [embedding.register_forward_hook(self._save("embedding"))]
        for prefix, label in labels.items():
            block = modules[prefix]
            self.handles.append(block.register_forward_hook(self._save(f"block.{label}")))
            probe = next((m for m in block.modules() if isinstance(m, AttentionLogits)), None)
            if probe is not None:
                self.handles.append(probe.register_forward_hook(self._save(f"attn_logits.{label}")))
        readout0 = readout.weight.detach().clone()
        inside = []

        def logits(module, args, output):
            if inside:  # the call below runs this hook again
                return
            inside.append(True)
            try:
                delta = {"weight": module.weight.detach() - readout0}
                if getattr(module, "bias", None) is not None:
                    delta["bias"] = torch.zeros_like(module.bias)
                with torch.no_grad():
                    self.latest["logits"] = logits_of(output).detach()
                    self.latest["logits_dW"] = logits_of(functional_call(module, delta, args)).detach()
            finally:
                inside.clear()

        self.handles.append(readout.register_forward_hook(logits))

    def _save(self, label: str):
        def hook(module, args, output):
            self.latest[label] = logits_of(output).detach()  # a block may return a tuple (Hugging Face)

        return hook

    def close(self) -> None:
        for h in self.handles:
            h.remove()


def block_labels(plan, axis: str) -> dict[str, str]:
    """Residual block (its module name) -> label: every block by its index in a width sweep,
    ``first``/``last`` in a depth sweep (block indices differ between depths)."""
    blocks = sorted({b for b in (plan.roles.block_of(r.name) for r in plan.rows) if b}, key=lambda b: b[1])
    if axis == "depth":
        return {blocks[0][0]: "first", blocks[-1][0]: "last"}
    return {prefix: str(i) for prefix, i in blocks}


def tensor_label(plan, name: str, labels: dict[str, str]) -> str | None:
    """A tensor's name with its block index replaced by the block's label (None: an unlabelled block)."""
    block = plan.roles.block_of(name)
    if block is None:
        return name
    label = labels.get(block[0])
    return None if label is None else plan.roles.relabel(name, label)


def _rms(t: torch.Tensor) -> float | None:
    return _finite(t.float().pow(2).mean().sqrt().item())


def _finite(v: float) -> float | None:
    """Non-finite values (a diverged run) are stored as None, so coord_check.json stays strict JSON."""
    return v if math.isfinite(v) else None


def record_run(cfg: RunConfig, axis: str) -> dict:
    """Train one point on one fixed batch; return per-step activation sizes and spectral ratios."""
    from ..train import Trainer

    trainer = Trainer.build(cfg)
    model, plan = trainer.model, trainer.plan
    trainer.sampler = FixedBatch(*trainer.sampler.next())
    labels = block_labels(plan, axis)
    names = {r.name: tensor_label(plan, r.name, labels) for r in plan.rows}
    depth_factor = plan.depth / plan.base_depth * plan.multipliers.residual
    recorder = ActivationRecorder(model, plan, labels)
    acts: dict[str, dict[str, list]] = {}
    tensors: dict[str, dict[str, list]] = {}
    init: dict[str, torch.Tensor] = {}
    losses: list[float] = []
    diverged = None
    try:
        for t in range(cfg.train.steps + 1):
            if t < cfg.train.steps:
                loss, _, spectral = trainer.train_step()
            else:  # the last point: a forward at the final weights, no update
                with torch.no_grad(), trainer.autocast():
                    x, y = (v.to(trainer.device) for v in trainer.sampler.next())
                    loss, spectral = next_token_loss(model(x), y).item(), None
            losses.append(_finite(loss))
            for label, out in recorder.latest.items():
                row = acts.setdefault(
                    label, {"rms": []} if label == "logits_dW" else {"rms": [], "delta_rms": []}
                )
                row["rms"].append(_rms(out))
                if "delta_rms" in row:
                    init.setdefault(label, out)
                    row["delta_rms"].append(_rms(out - init[label]) if t else None)
            if spectral:
                for name, values in spectral.items():
                    if names[name] is None:
                        continue
                    row = tensors.setdefault(names[name], {k: [None] for k in values})
                    for k, v in values.items():
                        row[k].append(_finite(v))
                    if plan.row(name).role is Role.HIDDEN:
                        factor = depth_factor if plan.roles.block_of(name) else 1.0
                        row.setdefault("depth_rho_dw", [None]).append(_finite(values["rho_dw"] * factor))
            if losses[-1] is None or any(r["rms"][-1] is None for r in acts.values()):
                diverged = f"non-finite loss or activation at step {t}"
                break
    finally:
        recorder.close()
    hidden = sorted({names[r.name] for r in plan.rows if r.role is Role.HIDDEN and names[r.name]})
    return {"activations": acts, "tensors": tensors, "loss": losses, "diverged": diverged, "hidden": hidden}


# --- the gate --------------------------------------------------------------------------------------


def fit_slope(xs: list[float], ys: list[float]) -> float | None:
    """Least-squares slope of log(y) against log(x); 0 if every y is exactly 0 (e.g. what a zero-initialised
    readout gives at t = 0); None (a failure) if some y is zero, negative or not finite."""
    if all(y == 0 for y in ys):
        return 0.0
    if any(not (math.isfinite(y) and y > 0) for y in ys):
        return None
    lx, ly = [math.log(x) for x in xs], [math.log(y) for y in ys]
    mx, my = sum(lx) / len(lx), sum(ly) / len(ly)
    return sum((a - mx) * (b - my) for a, b in zip(lx, ly, strict=True)) / sum((a - mx) ** 2 for a in lx)


def gated(section: str, module: str, metric: str, axis: str, hidden: set[str]) -> bool:
    if section == "activations":
        if axis == "width":
            return module != "logits"  # the logits' init exception: their readout-update part is gated
        if module.startswith("block."):  # CompleteP's 1/L blocks: see the module docstring
            return module == "block.last" and metric == "delta_rms"
        return module != "logits_dW"
    return module in hidden and metric == ("rho_dw" if axis == "width" else "depth_rho_dw")


def mean_sizes(
    records: list[list[dict]], section: str, n_t: int
) -> dict[str, dict[str, list[list[float | None]]]]:
    """sizes[module][metric][point][t] = mean over seeds (None where undefined or a run stopped)."""
    out: dict = {}
    for module, metrics in records[0][0][section].items():
        for metric in metrics:
            grid = []
            for point in records:
                per_t = []
                for t in range(n_t):
                    vals = [r[section].get(module, {}).get(metric, []) for r in point]
                    vals = [v[t] if t < len(v) else None for v in vals]
                    per_t.append(None if any(v is None for v in vals) else sum(vals) / len(vals))
                grid.append(per_t)
            out.setdefault(module, {})[metric] = grid
    return out


def gate(sizes: dict, values: tuple[int, ...], axis: str, hidden: set[str], tolerance: float) -> list[dict]:
    slopes = []
    for section, modules in sizes.items():
        for module, metrics in modules.items():
            for metric, grid in metrics.items():
                for t in range(len(grid[0])):
                    ys = [grid[i][t] for i in range(len(values))]
                    if t == 0 and all(y is None for y in ys):
                        continue  # undefined at init (changes, update ratios)
                    slope = None if any(y is None for y in ys) else fit_slope(list(values), ys)
                    is_gated = gated(section, module, metric, axis, hidden)
                    ok = slope is not None and abs(slope) <= tolerance
                    slopes.append({"section": section, "module": module, "metric": metric, "t": t, "slope": slope,
                                   "gated": is_gated, "ok": ok if is_gated else None})  # fmt: skip
    return slopes


# --- the command -----------------------------------------------------------------------------------


def range_warning(spec: CoordCheckSpec) -> str | None:
    """A warning when the values span less than MIN_RANGE: the slope of log size over a narrow range
    amplifies seed noise (correct μP AdamW over widths 32, 48, 64 reached |slope| 0.51)."""
    span = spec.values[-1] / spec.values[0]
    if span >= MIN_RANGE:
        return None
    return (
        f"the {spec.axis}s {','.join(map(str, spec.values))} span {span:.3g}x, less than {MIN_RANGE}x: over a "
        f"narrow range seed noise shows as slope, so a FAIL may be noise; check over {MIN_RANGE}x or more"
    )


def proxy_differences(spec: CoordCheckSpec, cfg: RunConfig) -> list[str]:
    """The keys where the check's own small proxy (SMALL, which -s overrides) differs from the config the
    user's overrides compose (the checked axis aside): 'model.head_dim 16 (your config: 32)'."""
    from ..config import compose, flatten, to_dict

    yours = flatten(to_dict(compose(list(spec.overrides))))
    ours = flatten(cfg.resolved)
    keys = [o.split("=", 1)[0] for o in SMALL]
    return [
        f"{k} {ours[k]} (your config: {yours[k]})"
        for k in keys
        if k != f"model.{spec.axis}" and ours[k] != yours[k]
    ]


def default_out(cfg: RunConfig, axis: str) -> Path:
    return Path("runs") / "coord_check" / f"{cfg.optimizer}-{cfg.param.name}-{axis}s"


def run_coord_check(spec: CoordCheckSpec, out: Path | None = None, console=None, model_fn=None) -> dict:
    """Run the check, write ``coord_check.json`` and ``coord_check.png`` into ``out``, return the result.
    ``model_fn(width, depth, mult)`` builds the model instead of the config (the API's ``mupx.coord_check``)."""
    start = time.perf_counter()
    configs, overrides = compose_points(spec)
    if model_fn is not None:
        configs = [
            dataclasses.replace(c, model=dataclasses.replace(c.model, model_fn=model_fn)) for c in configs
        ]
    cfg0 = configs[0]
    out = out or default_out(cfg0, spec.axis)
    check_folder(out, "--out")  # before anything trains
    if out.is_dir() and any(out.iterdir()):
        raise MupxError(f"--out {out} already holds files; choose another --out or remove it")
    warnings = [w for w in [range_warning(spec)] if w]
    differs = proxy_differences(spec, cfg0)
    if console is not None:
        if differs:
            console.print(f"the check trains its own small proxy, not your config: {', '.join(differs)} "
                          "(set these with -s to check other shapes)", highlight=False, soft_wrap=True)  # fmt: skip
        for w in warnings:
            console.print(f"[yellow]warning[/yellow]: {w}", highlight=False, soft_wrap=True)
    seeds = [cfg0.seed + i for i in range(spec.seeds)]
    records = []
    for value, cfg in zip(spec.values, configs, strict=True):
        records.append([record_run(with_seed(cfg, s), spec.axis) for s in seeds])
        if console is not None:
            console.print(
                f"  {spec.axis} {value}: done ({time.perf_counter() - start:.1f} s)", highlight=False
            )
    hidden = set(records[0][0]["hidden"])
    sizes = {section: mean_sizes(records, section, spec.steps + 1) for section in ("activations", "tensors")}
    slopes = gate(sizes, spec.values, spec.axis, hidden, spec.tolerance)
    checked = [s for s in slopes if s["gated"]]
    diverged = [f"{spec.axis} {v} seed {s}: {r['diverged']}" for v, point in zip(spec.values, records, strict=True)
                for s, r in zip(seeds, point, strict=True) if r["diverged"]]  # fmt: skip
    verdict = "pass" if checked and all(s["ok"] for s in checked) and not diverged else "fail"
    worst = max(checked, key=lambda s: math.inf if s["slope"] is None else abs(s["slope"]), default=None)
    result = {
        "verdict": verdict,
        "axis": spec.axis,
        "values": list(spec.values),
        "steps": spec.steps,
        "seeds": seeds,
        "tolerance": spec.tolerance,
        "optimizer": cfg0.optimizer,
        "param": cfg0.param.name,
        "depth_alpha": cfg0.param.depth_alpha,
        "lr": {k: v for k, v in cfg0.resolved["optimizer"].items() if k == "lr" or k.endswith("_lr")},
        "worst": worst,
        "diverged": diverged,
        "warnings": warnings,
        "proxy_differs": differs,
        "n_gated": len(checked),
        "n_failed": sum(1 for s in checked if not s["ok"]),
        "slopes": sorted(
            slopes, key=lambda s: (not s["gated"], -(math.inf if s["slope"] is None else abs(s["slope"])))
        ),
        "sizes": sizes,
        "per_seed": {str(v): point for v, point in zip(spec.values, records, strict=True)},
        "command": shlex.join(["mupx", *sys.argv[1:]]) if Path(sys.argv[0]).stem in ("mupx", "cli") else None,
        "overrides": {str(v): o for v, o in zip(spec.values, overrides, strict=True)},
        "wall_time_s": None,
    }
    out.mkdir(parents=True, exist_ok=True)
    from .plot import plot_coord_check

    plot_coord_check(result, out / "coord_check.png")
    result["wall_time_s"] = time.perf_counter() - start
    atomic_write_json(out / "coord_check.json", result)
    if console is not None:
        print_summary(result, out, console)
    return result


def print_summary(result: dict, out: Path, console, n: int = 10) -> None:
    from rich.table import Table

    table = Table(
        title=f"worst |slope| of log size vs log {result['axis']} (tolerance {result['tolerance']:g})"
    )
    for col in ("module", "metric", "t", "slope", ""):
        table.add_column(col, justify="right" if col in ("t", "slope") else "left")
    for s in [s for s in result["slopes"] if s["gated"]][:n]:
        slope = "n/a" if s["slope"] is None else f"{s['slope']:+.3f}"
        table.add_row(s["module"], s["metric"], str(s["t"]), slope, "ok" if s["ok"] else "[red]FAIL[/red]")
    console.print(table)
    for d in result["diverged"]:
        console.print(f"[red]diverged[/red]: {d}")
    for w in result["warnings"]:
        console.print(f"[yellow]warning[/yellow]: {w}", highlight=False, soft_wrap=True)
    values = ",".join(map(str, result["values"]))
    worst = result["worst"]
    worst_text = "n/a" if worst is None or worst["slope"] is None else f"{abs(worst['slope']):.3f}"
    head = "[green]PASS[/green]" if result["verdict"] == "pass" else "[red]FAIL[/red]"
    console.print(
        f"{head}: {result['optimizer']} {result['param']} over {result['axis']}s {values}: "
        f"{result['n_failed']} of {result['n_gated']} gated slopes above {result['tolerance']:g} "
        f"(worst |slope| {worst_text}) in {result['wall_time_s']:.1f} s -> {out}",
        highlight=False,
    )
