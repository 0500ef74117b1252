"""The μP plan: one row per parameter with its role, fans, multipliers and the resulting init std,
learning rate, weight decay, ε and forward multiplier. Computed as data from names and shapes (the model's
and its base shape's), a role map, the parameterization and the optimizer's rules entry; printed by
``mupx rules``, saved with every run (``plan.tsv``), applied with ordinary param groups and init, and
checked against the optimizer at step 0. The same function plans mupx's Transformer and a user's model.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Literal

import torch

from ..errors import MupxError
from ..models import ModelConfig, build_model
from ..nn import NEUTRAL, Multipliers, attention_scale
from .roles import Placement, Role, RoleMap, Shapes, role_map
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
    """The plan of one model shape. Width and depth are read from the shapes: the width is the readout's
    fan_in (the tied embedding's fan_out), the depth the number of residual blocks."""

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
    roles: RoleMap
    options: Any = field(
        default=None, compare=False, repr=False
    )  # the optimizer's options (to build it by name)

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
            "roles": self.roles.name,
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
                cells.append(
                    "x".join(map(str, v))
                    if c == "shape"
                    else ("-" if v is None else (f"{v:.6g}" if isinstance(v, float) else str(v)))
                )
            lines.append("\t".join(cells))
        return "\n".join(lines) + "\n"

    # --- applying the plan to a model (the API; the trainer calls the same functions) ---------------------

    def param_groups(self, model: torch.nn.Module) -> list[dict]:
        """Ordinary torch param groups, one per distinct (update, lr, wd, ε, ...), each with its names."""
        from ..optim import param_groups

        return param_groups(model, self)

    def apply_init(self, model: torch.nn.Module, seed: int = 0) -> None:
        """Draw every parameter as its row says (from a CPU generator seeded with ``seed``)."""
        apply_init(model, self, torch.Generator().manual_seed(seed))

    def optimizer_for(
        self, model: torch.nn.Module, cls: type | None = None, **kwargs
    ) -> torch.optim.Optimizer:
        """The optimizer for ``model``, checked against the plan before it is returned (μP never silently off).

        Without ``cls``: mupx's own optimizer of this plan, built by name with the plan's options. With a
        torch optimizer class (``torch.optim.AdamW``, ...): ``cls(plan.param_groups(model), **kwargs)``, for
        plans with one update rule (Adam-like or SGD-like); hybrids such as Muon need mupx's optimizer."""
        from ..optim import build_optimizer

        if cls is None:
            opt = build_optimizer(model, self, self.optimizer, self.options)
        else:
            updates = sorted({r.update for r in self.rows})
            if len(updates) > 1:
                raise MupxError(
                    f"the {self.optimizer} plan runs {len(updates)} updates ({', '.join(updates)}): one torch "
                    "optimizer class cannot run them; use plan.optimizer_for(model) without a class"
                )
            opt = cls(self.param_groups(model), **kwargs)
        self.check(opt, model)
        return opt

    def check(self, optimizer: torch.optim.Optimizer, model: torch.nn.Module, lr_factor: float = 1.0) -> None:
        """Raise unless every parameter sits in one group whose lr (× the schedule's factor now), wd, ε ...
        equal its row: the step-0 check every mupx run makes."""
        from ..optim import check_against_plan

        check_against_plan(optimizer, model, self, lr_factor)

    def flops_per_token(self, seq_len: int) -> float:
        """Training FLOPs per token: 6·N + 12·L·T·width (PaLM App. B), N the matmul parameters: hidden
        matrices and the readout (a tied embedding counts once, as the readout), not the embedding lookups."""
        matmul = [r for r in self.rows if r.role in (Role.HIDDEN, Role.OUTPUT)]
        if not any(r.role is Role.OUTPUT for r in self.rows):
            matmul += [r for r in self.rows if r.role is Role.INPUT][:1]
        n = sum(math.prod(r.shape) for r in matmul)
        return 6.0 * n + 12.0 * self.depth * seq_len * self.width


def shapes_of(model: torch.nn.Module) -> Shapes:
    """Parameter names and shapes, as ``named_parameters`` lists them (a tied tensor once)."""
    return {n: tuple(p.shape) for n, p in model.named_parameters()}


def model_shapes(cfg: ModelConfig, vocab_size: int, context: int) -> Shapes:
    """Parameter shapes of a model config, built on the meta device (no memory, no init)."""
    with torch.device("meta"):
        return shapes_of(build_model(cfg, vocab_size, context, NEUTRAL))


def base_config(cfg: ModelConfig, param: ParamConfig) -> ModelConfig:
    if cfg.head_dim is not None and param.base_width % cfg.head_dim:
        raise MupxError(
            f"param.base_width {param.base_width} is not a multiple of model.head_dim {cfg.head_dim} "
            f"(allowed: {cfg.head_dim}, {2 * cfg.head_dim}, ...)"
        )
    return dataclasses.replace(cfg, width=param.base_width, depth=param.base_depth)


def build_plan(
    cfg: ModelConfig, param: ParamConfig, optimizer: str, options, vocab_size: int, context: int
) -> Plan:
    """The plan of a model config (mupx's Transformer or ``model._target_``) against its base shape
    (``param.base_width``/``param.base_depth``), built on the meta device."""
    if (
        cfg.model_fn is None
        and cfg._target_ is not None
        and cfg.args.multipliers is None
        and param.name == "mup"
    ):
        raise MupxError(
            f"model.args.multipliers is null, so model._target_ {cfg._target_} cannot apply μP's forward multipliers "
            "(output logits x 1/m, residual branches x m_L^-alpha): name the constructor argument that receives them"
        )
    shapes = model_shapes(cfg, vocab_size, context)
    base_shapes = model_shapes(base_config(cfg, param), vocab_size, context)
    return plan_from_shapes(
        shapes, base_shapes, role_map(cfg.roles, shapes), param, optimizer, options,
        head_dim=cfg.head_dim, zero_init_readout=cfg.zero_init_readout, zero_init_query=cfg.zero_init_query,
    )  # fmt: skip


def _shape_of(placements: dict[str, Placement], what: str) -> tuple[int, int]:
    """(width, depth) of a model from its placements: the readout's fan_in (or the tied embedding's fan_out)
    and the number of residual blocks."""
    readout = next((p for p in placements.values() if p.role is Role.OUTPUT), None)
    embedding = next((p for p in placements.values() if p.role is Role.INPUT), None)
    if readout is None and embedding is None:
        raise MupxError(
            f"the {what} has no token embedding and no readout (role input/output): mupx plans language models; name them with role rules"
        )
    width = readout.fan_in if readout is not None else embedding.fan_out
    return width, len({p.block[1] for p in placements.values() if p.block is not None})


def plan_from_shapes(shapes: Shapes, base_shapes: Shapes, roles: RoleMap, param: ParamConfig, optimizer: str, options,
                     head_dim: int | None = None, zero_init_readout: bool = False,
                     zero_init_query: bool = False) -> Plan:  # fmt: skip
    """Compute the plan of a model's parameter shapes against its base model's, under a parameterization
    and an optimizer's options. ``param``'s base_width/base_depth are not read: both shapes are at hand."""
    if optimizer not in RULES:
        raise MupxError(f"no μP rules for optimizer {optimizer!r} (have: {', '.join(RULES)})")
    rule = RULES[optimizer]
    ctx = Context(alpha=param.depth_alpha, options=options)
    mup = param.name == "mup"
    placements = {n: roles.place(n, s) for n, s in shapes.items()}
    base_placements = {n: roles.place(n, s) for n, s in base_shapes.items()}
    base = {roles.layer_agnostic(n): (s, base_placements[n]) for n, s in base_shapes.items()}
    width, depth = _shape_of(placements, "model")
    base_width, base_depth = _shape_of(base_placements, "base model")
    if zero_init_readout and not any(p.role is Role.OUTPUT for p in placements.values()):
        raise MupxError(
            "zero_init_readout needs an untied readout (a tensor with the output role): this model has none"
        )
    depth_mult = depth / base_depth if (mup and base_depth) else 1.0  # a model without blocks has no depth
    depth_ratio = depth_mult if param.depth_alpha != 0 else 1.0
    width_ratio = width / base_width if mup else 1.0
    mult = Multipliers(
        embed=param.embed_mult,
        output=param.output_mult * (OUTPUT_FORWARD(Multiples(fan_in=width_ratio)) if mup else 1.0),
        attn_scale=attention_scale(head_dim, head_dim, mup) if head_dim else None,
        residual=depth_mult ** (-param.depth_alpha),
    )

    rows = []
    for name, shape in shapes.items():
        place = placements[name]
        role, fan_in, fan_out, block = place.role, place.fan_in, place.fan_out, place.block is not None
        base_shape, base_place = base.get(roles.layer_agnostic(name), (None, None))
        if base_place is None:
            raise MupxError(f"parameter {name} has no counterpart in the base model (base_width/base_depth)")
        base_in, base_out = base_place.fan_in, base_place.fan_out
        r: RoleRule = rule(Tensor(role, fan_in, fan_out, block), ctx)
        base_r: RoleRule = rule(Tensor(role, base_in, base_out, block), ctx)
        if mup and (r.update, r.lr, r.eps, r.lr_key) != (base_r.update, base_r.lr, base_r.eps, base_r.lr_key):
            raise MupxError(
                f"{name}: the {optimizer} rule changes form between the base shape {'x'.join(map(str, base_shape))} "
                f"({base_r.form()}) and the target {'x'.join(map(str, shape))} ({r.form()}), e.g. a side crosses "
                "optimizer.max_precond_dim; multipliers would compare different updates: raise max_precond_dim "
                "or move the base shape"
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
        init, std = _init(name, role, m, param, zero_init_readout, zero_init_query)
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
        parameterization=param.name, optimizer=optimizer, width=width, depth=depth, base_width=base_width,
        base_depth=base_depth, depth_alpha=param.depth_alpha, wd_convention=param.wd_convention, multipliers=mult,
        rows=tuple(rows), roles=roles, options=options,
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


def _init(name: str, role: Role, m: Multiples, param: ParamConfig, zero_init_readout: bool,
          zero_init_query: bool) -> tuple[str, float]:  # fmt: skip
    if role is Role.VECTOR:
        return ("zeros", 0.0) if name.endswith("bias") else ("ones", 1.0)
    if (role is Role.OUTPUT and zero_init_readout) or (zero_init_query and name.endswith("attn.q.weight")):
        return "zeros", 0.0
    return "normal", param.init_std * INIT_STD[role](m)


@torch.no_grad()
def apply_init(model: torch.nn.Module, plan: Plan, generator: torch.Generator) -> None:
    """Initialise every parameter as its plan row says, drawing from ``generator`` (a CPU generator, so
    the same seed gives the same weights on every device; never the global RNG)."""
    params = dict(model.named_parameters())
    planned = {r.name for r in plan.rows}
    if set(params) != planned:
        only = sorted(set(params) - planned)[:1] or sorted(planned - set(params))[:1]
        where = "in the model but not the plan" if set(params) - planned else "in the plan but not the model"
        raise MupxError(f"the plan does not match the model's parameters: {only[0]} is {where}")
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
