"""The μP plan: one row per parameter with its role, fans, multipliers and the resulting init std,
learning rate, weight decay, ε and forward multiplier. Computed as data from the model config, the base
shape and the optimizer's rules entry; printed by ``mupx rules``, saved with every run (``plan.tsv``),
applied with ordinary param groups and init, and checked against the optimizer at step 0.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Literal

import torch

from ..errors import MupxError
from ..models import ModelConfig, Multipliers, Transformer
from ..models.transformer import attention_scale
from .roles import Role, fans, in_block, layer_agnostic, role_of
from .rules import INIT_STD, OUTPUT_FORWARD, RULES, Context, Multiples, RoleRule, Tensor

WD_CONVENTIONS = ("coupled", "independent")
DEFAULT_WD_CONVENTION = "coupled"


@dataclass(frozen=True)
class ParamConfig:
    """The parameterization: ``sp`` or ``mup``, its base shape and conventions."""

    name: Literal["sp", "mup"]
    base_width: int
    base_depth: int
    depth_alpha: float
    wd_convention: Literal["coupled", "independent"]
    init_std: float
    embed_mult: float
    output_mult: float
    decay_vectors: bool = False

    def __post_init__(self):
        if self.base_width <= 0:
            raise MupxError(f"param.base_width must be a positive integer, got {self.base_width}")
        if self.base_depth <= 0:
            raise MupxError(f"param.base_depth must be a positive integer, got {self.base_depth}")
        if not (self.depth_alpha == 0 or 0.5 <= self.depth_alpha <= 1):
            raise MupxError(
                f"param.depth_alpha {self.depth_alpha} is out of range (allowed: 0 = off, or 0.5 (depth-μP) to 1 (CompleteP))"
            )
        if self.init_std < 0:
            raise MupxError(f"param.init_std must be >= 0, got {self.init_std}")


@dataclass(frozen=True)
class PlanRow:
    name: str
    role: Role
    shape: tuple[int, ...]
    update: str
    fan_in: int
    fan_out: int
    fan_in_mult: float
    fan_out_mult: float
    depth_mult: float
    blocks_mult: float
    init: Literal["normal", "zeros", "ones"]
    init_std: float
    lr_rule: str
    lr_mult: float
    lr: float
    wd: float
    eps_mult: float | None
    eps: float | None
    fwd_mult: float
    extra: dict[str, float]

    def group_settings(self) -> dict:
        """The param-group keys this row fixes (compared with the optimizer at step 0)."""
        settings = {"lr": self.lr, "weight_decay": self.wd}
        if self.eps is not None:
            settings["eps"] = self.eps
        settings.update(self.extra)
        return settings


@dataclass(frozen=True)
class Plan:
    parameterization: str
    optimizer: str
    width: int
    depth: int
    base_width: int
    base_depth: int
    depth_alpha: float
    wd_convention: str
    multipliers: Multipliers
    rows: tuple[PlanRow, ...]

    def row(self, name: str) -> PlanRow:
        for r in self.rows:
            if r.name == name:
                return r
        raise KeyError(name)

    def header(self) -> dict:
        return {
            "parameterization": self.parameterization,
            "optimizer": self.optimizer,
            "width": self.width,
            "depth": self.depth,
            "base_width": self.base_width,
            "base_depth": self.base_depth,
            "depth_alpha": self.depth_alpha,
            "wd_convention": self.wd_convention,
            "embed_mult": self.multipliers.embed,
            "output_mult": self.multipliers.output,
            "attn_scale": self.multipliers.attn_scale,
            "residual_mult": self.multipliers.residual,
        }

    def to_json(self) -> dict:
        rows = [dict(dataclasses.asdict(r), role=str(r.role), shape=list(r.shape)) for r in self.rows]
        return {"header": self.header(), "rows": rows}

    TSV_COLUMNS = (
        "name role shape update fan_in fan_out fan_in_mult fan_out_mult depth_mult blocks_mult init init_std "
        "lr_rule lr_mult lr wd eps_mult eps fwd_mult"
    ).split()

    def to_tsv(self) -> str:
        lines = ["# " + " ".join(f"{k}={v}" for k, v in self.header().items())]
        lines.append("\t".join(self.TSV_COLUMNS))
        for r in self.rows:
            cells = []
            for c in self.TSV_COLUMNS:
                v = getattr(r, c)
                cells.append("x".join(map(str, v)) if c == "shape" else ("-" if v is None else (f"{v:.6g}" if isinstance(v, float) else str(v))))
            lines.append("\t".join(cells))
        return "\n".join(lines) + "\n"


def model_shapes(cfg: ModelConfig, vocab_size: int, context: int) -> dict[str, tuple[int, ...]]:
    """Parameter shapes of a model config, built on the meta device (no memory, no init)."""
    with torch.device("meta"):
        model = Transformer(cfg, vocab_size, context, Multipliers(1.0, 1.0, 1.0, 1.0))
    return {n: tuple(p.shape) for n, p in model.named_parameters()}


def base_config(cfg: ModelConfig, param: ParamConfig) -> ModelConfig:
    if param.base_width % cfg.head_dim:
        raise MupxError(
            f"param.base_width {param.base_width} is not a multiple of model.head_dim {cfg.head_dim} "
            f"(allowed: {cfg.head_dim}, {2 * cfg.head_dim}, ...)"
        )
    return dataclasses.replace(cfg, width=param.base_width, depth=param.base_depth)


def forward_multipliers(cfg: ModelConfig, param: ParamConfig) -> Multipliers:
    mup = param.name == "mup"
    width_mult = cfg.width / param.base_width if mup else 1.0
    depth_mult = cfg.depth / param.base_depth if mup else 1.0
    return Multipliers(
        embed=param.embed_mult,
        output=param.output_mult * (OUTPUT_FORWARD(Multiples(fan_in=width_mult)) if mup else 1.0),
        attn_scale=attention_scale(cfg.head_dim, cfg.head_dim, mup),
        residual=depth_mult ** (-param.depth_alpha) if mup else 1.0,
    )


def build_plan(cfg: ModelConfig, param: ParamConfig, optimizer: str, options, vocab_size: int, context: int) -> Plan:
    """Compute the plan for a model config under a parameterization and an optimizer's options."""
    if optimizer not in RULES:
        raise MupxError(f"no μP rules for optimizer {optimizer!r} (have: {', '.join(RULES)})")
    rule = RULES[optimizer]
    ctx = Context(alpha=param.depth_alpha, options=options)
    mup = param.name == "mup"
    shapes = model_shapes(cfg, vocab_size, context)
    base_shapes = {layer_agnostic(n): s for n, s in model_shapes(base_config(cfg, param), vocab_size, context).items()}
    depth_ratio = cfg.depth / param.base_depth if (mup and param.depth_alpha != 0) else 1.0
    width_ratio = cfg.width / param.base_width if mup else 1.0
    mult = forward_multipliers(cfg, param)

    rows = []
    for name, shape in shapes.items():
        role = role_of(name, shape)
        fan_in, fan_out = fans(role, shape)
        base_shape = base_shapes.get(layer_agnostic(name))
        if base_shape is None:
            raise MupxError(f"parameter {name} has no counterpart in the base model (base_width/base_depth)")
        base_in, base_out = fans(role, base_shape)
        block = in_block(name)
        r: RoleRule = rule(Tensor(role, fan_in, fan_out, block), ctx)
        base_r: RoleRule = rule(Tensor(role, base_in, base_out, block), ctx)
        if mup and (r.update, r.lr, r.eps, r.lr_key) != (base_r.update, base_r.lr, base_r.eps, base_r.lr_key):
            raise MupxError(
                f"{name}: the {optimizer} rule changes form between the base shape and the target "
                f"(lr {base_r.lr} -> {r.lr}), e.g. a side crosses optimizer.max_precond_dim; "
                "multipliers would compare different updates: raise max_precond_dim or move the base shape"
            )
        m = (
            Multiples(
                fan_in=fan_in / base_in,
                fan_out=fan_out / base_out,
                depth=depth_ratio if block else 1.0,
                blocks=r.n_blocks / base_r.n_blocks,
            )
            if mup
            else Multiples()
        )
        lr_mult = r.lr(m)
        base_lr = float(getattr(options, r.lr_key))
        lr = base_lr * lr_mult
        wd = weight_decay(float(options.weight_decay), role, param, lr_mult, lr, width_ratio, m.depth)
        eps_mult = r.eps(m) if r.eps is not None else None
        eps = float(getattr(options, r.eps_key)) * eps_mult if eps_mult is not None else None
        extra = {k: float(getattr(options, k)) * mono(m) for k, mono in r.extra.items()}
        init, std = _init(name, role, m, param, cfg)
        fwd = {Role.INPUT: mult.embed, Role.OUTPUT: mult.output}.get(role, 1.0)
        rows.append(
            PlanRow(
                name=name, role=role, shape=shape, update=r.update, fan_in=fan_in, fan_out=fan_out,
                fan_in_mult=m.fan_in, fan_out_mult=m.fan_out, depth_mult=m.depth, blocks_mult=m.blocks,
                init=init, init_std=std, lr_rule=lr_rule(r.lr, block) if mup else "1", lr_mult=lr_mult, lr=lr, wd=wd,
                eps_mult=eps_mult, eps=eps, fwd_mult=fwd, extra=extra,
            )
        )  # fmt: skip
    return Plan(
        parameterization=param.name, optimizer=optimizer, width=cfg.width, depth=cfg.depth,
        base_width=param.base_width, base_depth=param.base_depth, depth_alpha=param.depth_alpha,
        wd_convention=param.wd_convention, multipliers=mult, rows=tuple(rows),
    )  # fmt: skip


def lr_rule(mono, block: bool) -> str:
    """The lr rule as printed: depth factors apply inside residual blocks only (m_L = 1 elsewhere)."""
    return str(mono if block else dataclasses.replace(mono, depth=0.0))


def weight_decay(wd_base: float, role: Role, param: ParamConfig, lr_mult: float, lr: float, width_ratio: float,
                 depth_ratio: float) -> float:  # fmt: skip
    """The torch-style coefficient (decay per step = lr · wd) of one tensor.

    Per-step decay: the base value in width (``coupled``: lr·wd held constant, CompleteP Table 1's
    λ·m_N for AdamW hidden; ``independent``: wd_base / width_mult, 2512.05620), times m_L^(α−1) inside
    residual blocks, so it shrinks with depth as the update does. That is CompleteP's and 2603.00541's
    (Tables 5/6 at α = 1, 9–12 at α = ½) depth-free AdamW coefficient (the lr carries m_L^(α−1)) and their
    λ/r_L^α for SGD (whose lr carries m_L^(2α−1)); at α = 1 the factor is 1. ``depth_ratio`` is m_L for
    tensors in blocks, 1 elsewhere. Gains and biases get no decay unless ``param.decay_vectors`` (as
    CompleteP's code, nanoGPT and torchtitan: decaying a norm gain towards 0 shrinks its whole layer)."""
    if role is Role.VECTOR and not param.decay_vectors:
        return 0.0
    depth = depth_ratio ** (param.depth_alpha - 1) if param.depth_alpha else 1.0
    if param.wd_convention == "coupled":
        return wd_base * depth / lr_mult
    return wd_base / width_ratio * depth / lr


def _init(name: str, role: Role, m: Multiples, param: ParamConfig, cfg: ModelConfig) -> tuple[str, float]:
    if role is Role.VECTOR:
        return ("zeros", 0.0) if name.endswith("bias") else ("ones", 1.0)
    if (role is Role.OUTPUT and cfg.zero_init_readout) or (cfg.zero_init_query and name.endswith("attn.q.weight")):
        return "zeros", 0.0
    return "normal", param.init_std * INIT_STD[role](m)


@torch.no_grad()
def apply_init(model: torch.nn.Module, plan: Plan, generator: torch.Generator) -> None:
    """Initialise every parameter as its plan row says, drawing from ``generator`` (a CPU generator, so
    the same seed gives the same weights on every device; never the global RNG)."""
    params = dict(model.named_parameters())
    if set(params) != {r.name for r in plan.rows}:
        raise RuntimeError("the plan does not match the model's parameters")
    for r in plan.rows:
        p = params[r.name]
        if r.init == "normal":
            p.copy_(torch.randn(p.shape, generator=generator, dtype=torch.float32).mul_(r.init_std))
        elif r.init == "zeros":
            p.zero_()
        else:
            p.fill_(1.0)


def is_close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-30)
