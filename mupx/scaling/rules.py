"""The μP rules table: one entry per optimizer, mapping a tensor's role and multipliers to its
learning-rate and ε multipliers. Every exponent lives in this file, so a reviewer can check each one
against its source (``shared/scaling-rules.md`` in the project notes; tags [D] derived, [I] authors'
code, [S] quoted, [ours] our own).

Multipliers are ratios to the base shape (TP-V App. B): ``fan_in`` = fan_in/fan_in_base, ``fan_out``
likewise, ``depth`` = L/L_base (m_L, only for tensors inside residual blocks; 1 elsewhere) and
``blocks`` = n_blk/n_blk_base for block-preconditioned optimizers. Under SP every ratio is 1, so every
multiplier is 1. ``alpha`` is the residual exponent (branch multiplier m_L^-alpha); alpha = 0 switches
the depth rules off.

Shared by all optimizers (TP-V Table 8 form; CompleteP Table 1):
  init std   input σ · 1, hidden σ · fan_in^-1/2, output σ · 1 (or zero), vectors: gains 1, biases 0
  forward    output logits × output_mult · fan_in^-1; embeddings × embed_mult; residual m_L^-alpha;
             attention √d_head,0 / d_head (= 1/√d_head at a fixed head_dim)
Weight decay (not in the table; ``plan.weight_decay``): ``coupled`` (default) keeps the per-step decay
lr·wd at its base value in width, wd × 1/lr_mult (2603.00541 Eq. ∆2, CompleteP's λ·m_N for AdamW hidden);
``independent`` applies decay λ/width_mult per step, untied from the lr (2512.05620); both × m_L^(α−1)
inside residual blocks (2603.00541 Tables 5/6, 9–12); gains and biases undecayed by default.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .roles import Role


@dataclass(frozen=True)
class Mono:
    """A monomial fan_in^a · fan_out^b · depth^c · blocks^d in the per-tensor multipliers."""

    fan_in: float = 0.0
    fan_out: float = 0.0
    depth: float = 0.0
    blocks: float = 0.0

    def __call__(self, m: Multiples) -> float:
        return m.fan_in**self.fan_in * m.fan_out**self.fan_out * m.depth**self.depth * m.blocks**self.blocks

    def __str__(self) -> str:
        terms = [f"{k}^{_fmt(v)}" for k, v in vars(self).items() if v != 0]
        return "·".join(terms) if terms else "1"


def _fmt(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else f"{x:g}"


@dataclass(frozen=True)
class Multiples:
    """A tensor's multipliers relative to the base shape (all 1 under SP)."""

    fan_in: float = 1.0
    fan_out: float = 1.0
    depth: float = 1.0
    blocks: float = 1.0


@dataclass(frozen=True)
class Tensor:
    """What a rule may look at: role, absolute fans at the target shape, whether it sits in a block."""

    role: Role
    fan_in: int
    fan_out: int
    in_block: bool


@dataclass(frozen=True)
class RoleRule:
    """How one tensor is optimised: which update handles it, its lr and ε multipliers.

    ``lr_key``/``eps_key`` name the optimizer options holding the base values (hybrids such as Muon use
    ``adam_lr`` for the tensors they hand to AdamW); ``eps=None`` means the update has no ε.
    ``extra`` scales further per-tensor options (e.g. Shampoo's graft ε) by their own monomials.
    ``n_blocks`` is the tensor's preconditioner block count (the plan divides it by the base's).
    """

    update: str
    lr: Mono
    eps: Mono | None = None
    lr_key: str = "lr"
    eps_key: str = "eps"
    extra: dict[str, Mono] = field(default_factory=dict)
    n_blocks: int = 1

    def form(self) -> str:
        """The rule's form as compared between base and target: 'update shampoo, lr ∝ ..., eps ∝ ...'."""
        eps = f"{self.eps_key} ∝ {self.eps}" if self.eps is not None else "no ε"
        return f"update {self.update}, {self.lr_key} ∝ {self.lr}, {eps}"


@dataclass(frozen=True)
class Context:
    alpha: float
    options: Any


Rule = Callable[[Tensor, Context], RoleRule]


# --- shared pieces --------------------------------------------------------------------------------

INIT_STD = {Role.INPUT: Mono(), Role.HIDDEN: Mono(fan_in=-0.5), Role.OUTPUT: Mono()}
OUTPUT_FORWARD = Mono(fan_in=-1)  # TP-V Table 8: logits = α_out · W z / m


def clip_norm_weight(m: Multiples) -> float:
    """A tensor's weight in the width-invariant gradient norm (``train.grad_clip_norm: mup``) [ours, measured].

    Under μP every backpropagated signal is Θ(1/width) per coordinate (the readout's 1/m multiplier), so a
    gradient's entries are Θ(1/m) and its Frobenius norm is √(numel)/m: Θ(1) for a hidden matrix (m² entries),
    Θ(1/√m) for a tensor with one width side (embeddings, readout, gains, biases). The global norm thus falls
    with width (31 → 21 at the first step of SGD over widths 32 → 256, RESULTS.md output-sgd-noclip) and a
    clip at a width-constant threshold (TP-V B.3) binds less at the target than on the proxy. Weighting each
    tensor's norm by max(fan_in, fan_out) / √(fan_in · fan_out) (1 for hidden matrices, √m for one width
    side) makes every term Θ(1). The weight is 1 at the base shape and under SP (every ratio 1), so there
    the norm is torch's global one; depth is not weighted."""
    return max(m.fan_in, m.fan_out) / (m.fan_in * m.fan_out) ** 0.5


def adam_like(
    t: Tensor, ctx: Context, update: str = "adamw", lr_key: str = "lr", eps_key: str = "eps"
) -> RoleRule:
    """AdamW (TP-V Table 3/8 [D]; CompleteP Table 1 [D+E]; 2603.00541 Table 6 [D]).

    lr:  input 1, hidden fan_in^-1 · m_L^(α-1), output 1 (with the 1/m forward multiplier),
         vectors m_L^(α-1) inside blocks, 1 outside.
    ε (after √v): ∝ the gradient's entry size: input fan_out^-1, hidden fan_in^-1 · m_L^-α,
         output fan_in^-1, vectors fan_out^-1 · m_L^-α (TP-V B.3, CompleteP, 2603.00541 Table 6).
    Also used for ADOPT, Sophia (2603.00541 App. C.8) and for the AdamW side of hybrids.
    """
    a = ctx.alpha
    lr = {
        Role.INPUT: Mono(),
        Role.HIDDEN: Mono(fan_in=-1, depth=a - 1),
        Role.OUTPUT: Mono(),
        Role.VECTOR: Mono(depth=a - 1),
    }[t.role]
    eps = {
        Role.INPUT: Mono(fan_out=-1),
        Role.HIDDEN: Mono(fan_in=-1, depth=-a),
        Role.OUTPUT: Mono(fan_in=-1),
        Role.VECTOR: Mono(fan_out=-1, depth=-a),
    }[t.role]
    return RoleRule(update, lr, eps, lr_key=lr_key, eps_key=eps_key)


def sgd(t: Tensor, ctx: Context) -> RoleRule:
    """SGD (TP-V Table 3/8 [D]; 2603.00541 Table 5 (k>=2) and Table 11 (k=1) [D]).

    lr: input fan_out, hidden fan_out/fan_in · m_L^(2α-1), output fan_in (Table 8, with the 1/m
    forward multiplier), vectors fan_out (· m_L^(2α-1) inside blocks). 2α-1 gives m_L at α=1 and
    1 at α=1/2, the two derived cases.
    """
    d = 2 * ctx.alpha - 1
    lr = {
        Role.INPUT: Mono(fan_out=1),
        Role.HIDDEN: Mono(fan_out=1, fan_in=-1, depth=d),
        Role.OUTPUT: Mono(fan_in=1),
        Role.VECTOR: Mono(fan_out=1, depth=d),
    }[t.role]
    return RoleRule("sgd", lr)


def adamw(t: Tensor, ctx: Context) -> RoleRule:
    return adam_like(t, ctx)


def adopt(t: Tensor, ctx: Context) -> RoleRule:
    """ADOPT normalises entrywise like Adam: Adam's rules (TP-V App. B.3 puts Adagrad/RMSProp-like
    optimizers with Adam; a retrievable ADOPT table was [NF], so this is [ours])."""
    return adam_like(t, ctx, update="adopt")


def lamb(t: Tensor, ctx: Context) -> RoleRule:
    """LAMB: hidden lr ∝ fan_in^-1/2 (TP-V App. B.3 [D, heuristic]: the Frobenius trust ratio makes
    update entries Θ(1/√n) instead of Θ(1/n)); other roles and ε as Adam; depth as Adam [ours]."""
    r = adam_like(t, ctx, update="lamb")
    if t.role is Role.HIDDEN:
        return RoleRule("lamb", Mono(fan_in=-0.5, depth=ctx.alpha - 1), r.eps)
    return r


def sophia(t: Tensor, ctx: Context) -> RoleRule:
    """SophiaG: AdamW's lr rules (2603.00541 App. C.8, Table 6 [D]). Its ε is added to ρ·h, a
    squared-gradient quantity, so it scales as the square of Adam's ε rule (TP-V B.3's
    "1/fan_in² if added before the square root") [ours]."""
    r = adam_like(t, ctx, update="sophia")
    e = r.eps
    return RoleRule("sophia", r.lr, Mono(2 * e.fan_in, 2 * e.fan_out, 2 * e.depth, 2 * e.blocks))


def _adam_side(t: Tensor, ctx: Context) -> RoleRule:
    """Embeddings, readout and vectors of a hybrid go to AdamW, by role (not by ndim)."""
    return adam_like(t, ctx, update="adamw", lr_key="adam_lr", eps_key="adam_eps")


def muon(t: Tensor, ctx: Context) -> RoleRule:
    """Muon on hidden matrices, AdamW elsewhere (Keller Jordan; Qiu ``muon_adam`` [I]).

    The optimizer multiplies the orthogonalised update by its shape factor: ``spectral``
    √(fan_out/fan_in) or ``original`` √max(1, fan_out/fan_in) (both constant in width at fixed aspect
    ratio, so the hidden lr is constant: 2603.00541 Table 4 [D]), or ``rms`` 0.2·√max(fan_out, fan_in)
    (Moonlight), which grows as √m, so its lr scales fan_in^-1/2 (2603.00541 Tables 1/3 [D]).
    Depth: none at α=1 (Table 4, k>=2), m_L^-1/2 at α=1/2 (Table 10): m_L^(α-1).
    """
    if t.role is not Role.HIDDEN:
        return _adam_side(t, ctx)
    width = -0.5 if ctx.options.shape_factor == "rms" else 0.0
    return RoleRule("muon", Mono(fan_in=width, depth=ctx.alpha - 1))


def muonpp(t: Tensor, ctx: Context) -> RoleRule:
    """Muon++: the update's spectral norm is set to √(fan_out/fan_in) explicitly, so the lr is
    constant in width (as for explicit spectral normalisation, Qiu ``spectral-*`` [I]); depth m_L^(α-1)."""
    if t.role is not Role.HIDDEN:
        return _adam_side(t, ctx)
    return RoleRule("muonpp", Mono(depth=ctx.alpha - 1))


def _sides(t: Tensor, max_dim: int) -> tuple[bool, bool]:
    """Which sides of a [fan_out, fan_in] matrix get a preconditioner (left = fan_out side)."""
    return t.fan_out <= max_dim, t.fan_in <= max_dim


def shampoo(t: Tensor, ctx: Context) -> RoleRule:
    """Shampoo ΔW = -η (L+εI)^-e_L G (R+εI)^-e_R on hidden matrices; AdamW elsewhere.

    E = e_L + e_R over the preconditioned sides; n_blk preconditioner blocks.
    lr: (fan_out/fan_in)^(1-E) · n_blk^-E · m_L^(1-2E) at α=1 (Qiu et al. Table 1 via 2603.00541 App. C.9
        [S], their code [I]). For general α the block gradient scales m_L^-α, so the preconditioned update
        scales m_L^(-α(1-2E)), and the step must scale m_L^(α-1): depth exponent α(1-2E) + α - 1 [ours;
        equals Table 10's m_L^-1/2 at E=1/2, α=1/2].
        Grafted from Adam: Adam's hidden rule (Qiu code [I]). Explicit spectral normalisation of the
        update (2512.05620): constant, m_L^(α-1).
    ε (matrix): fan_in/fan_out · m_L^-2α · n_blk^-1 (Qiu code ``matrix_eps·(din/dout)/N²/nb`` [I];
        2603.00541 Table 4/10: ε/r_L² at k>=2, ε/r_L at k=1).
    graft ε: Adam's ε rule (the graft is an Adam step) [ours].
    """
    if t.role is not Role.HIDDEN:
        return _adam_side(t, ctx)
    o, a = ctx.options, ctx.alpha
    left, right = _sides(t, o.max_precond_dim)
    n_blk = block_count(t.fan_in, t.fan_out, o.block_size, (left, right))
    E = o.exponent_left * left + o.exponent_right * right
    if o.graft == "adam":
        lr = Mono(fan_in=-1, depth=a - 1)
    elif o.spectral_norm:
        lr = Mono(depth=a - 1)
    else:
        lr = Mono(fan_out=1 - E, fan_in=-(1 - E), blocks=-E, depth=a * (1 - 2 * E) + (a - 1))
    eps = Mono(fan_in=1, fan_out=-1, depth=-2 * a, blocks=-1)
    graft_eps = adam_like(t, ctx).eps
    return RoleRule("shampoo", lr, eps, extra={"graft_eps": graft_eps}, n_blocks=n_blk)


def soap(t: Tensor, ctx: Context) -> RoleRule:
    """SOAP (Adam in Shampoo's eigenbasis) on hidden matrices; AdamW elsewhere.

    lr (Qiu et al. Table 1 via 2603.00541 App. C.10 [S]; code [I]): both sides √(fan_out/fan_in)·n_blk^-1/2;
        input side only fan_in^-1/2·n_blk^-1/2; output side only √fan_out·n_blk^-1/2/fan_in; depth
        m_L^(α-1) (2603.00541 Tables 4/10). Explicit spectral normalisation: constant, m_L^(α-1).
    ε (Adam's, in the rotated space; Qiu code [I]): both sides √(fan_in/fan_out)·n_blk^-1/2; input side
        only √fan_in·n_blk^-1/2/fan_out; output side only (fan_out·n_blk)^-1/2; all · m_L^-α.
    """
    if t.role is not Role.HIDDEN:
        return _adam_side(t, ctx)
    o, a = ctx.options, ctx.alpha
    left, right = _sides(t, o.max_precond_dim)
    n_blk = block_count(t.fan_in, t.fan_out, o.block_size, (left, right))
    if not (left or right):
        return RoleRule("soap", Mono(fan_in=-1, depth=a - 1), Mono(fan_in=-1, depth=-a), n_blocks=n_blk)
    if left and right:
        lr, eps = Mono(fan_out=0.5, fan_in=-0.5, blocks=-0.5), Mono(fan_in=0.5, fan_out=-0.5, blocks=-0.5)
    elif right:
        lr, eps = Mono(fan_in=-0.5, blocks=-0.5), Mono(fan_in=0.5, fan_out=-1, blocks=-0.5)
    else:
        lr, eps = Mono(fan_out=0.5, fan_in=-1, blocks=-0.5), Mono(fan_out=-0.5, blocks=-0.5)
    if o.spectral_norm:
        lr = Mono()
    lr = Mono(lr.fan_in, lr.fan_out, a - 1, lr.blocks)
    eps = Mono(eps.fan_in, eps.fan_out, -a, eps.blocks)
    return RoleRule("soap", lr, eps, n_blocks=n_blk)


RULES: dict[str, Rule] = {
    "sgd": sgd,
    "adamw": adamw,
    "adopt": adopt,
    "lamb": lamb,
    "sophia": sophia,
    "shampoo": shampoo,
    "soap": soap,
    "muon": muon,
    "muonpp": muonpp,
}


def tile_size(dim: int, block_size: int) -> int:
    """The tile length along a side of length ``dim``: the whole side when ``block_size`` is 0 or at least
    ``dim``, else the largest divisor of ``dim`` not above ``block_size`` (equal tiles, so every tile is
    preconditioned alike and the rules' n_blk^−E and ε/n_blk hold; 1280 with 1024 gives 640)."""
    if block_size <= 0 or dim <= block_size:
        return dim
    return next(b for b in range(block_size, 0, -1) if dim % b == 0)


def block_count(fan_in: int, fan_out: int, block_size: int, sides: tuple[bool, bool] = (True, True)) -> int:
    """Number of preconditioner tiles of a [fan_out, fan_in] matrix (cut only along preconditioned sides)."""
    left, right = sides
    return (fan_out // tile_size(fan_out, block_size) if left else 1) * (
        fan_in // tile_size(fan_in, block_size) if right else 1
    )
