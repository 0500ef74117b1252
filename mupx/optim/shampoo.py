"""Shampoo (Gupta, Koren, Singer 2018, arXiv 1802.09568) on hidden matrices, AdamW on everything else;
our own implementation, with blocking, Adam grafting and explicit spectral normalisation as the μP
knobs of Qiu et al. (2512.05620).

Update, per hidden matrix G = ∇W [fan_out, fan_in] (t counts this tensor's steps):

  M ← β1·M + (1 − β1)·G                                   momentum on the gradient
  per tile Gᵢ of G (the whole matrix when block_size = 0; otherwise equal tiles of at most B along
  each preconditioned side longer than B, ``tile_size``):
      Lᵢ ← β2·Lᵢ + (1 − β2)·Gᵢ Gᵢᵀ,   Rᵢ ← β2·Rᵢ + (1 − β2)·Gᵢᵀ Gᵢ
      at t = 1, 2, ..., k, then 1 + k, 1 + 2k, ... (k = precondition_every):
          Pᵢ = (Lᵢ/(1 − β2^t) + εI)^(−e_L),   Qᵢ = (Rᵢ/(1 − β2^t) + εI)^(−e_R)
      Uᵢ = Pᵢ · M̂ᵢ · Qᵢ                                    with M̂ = M/(1 − β1^t)
  graft = adam:       U ← U · ‖M̂/(√v̂ + ε_graft)‖_F / ‖U‖_F   (v: Adam's EMA of G⊙G with β2; per matrix)
  spectral_norm:      U ← U · √(fan_out/fan_in) / σ_max(U)     (Qiu ``norm_by_spect``)
  W ← W·(1 − lr·wd);  W ← W − lr·U

A side whose dimension exceeds ``max_precond_dim``, or whose exponent is 0, keeps the identity (no
factor stored); tiles are cut only along sides ≤ ``max_precond_dim``, exactly as the rules' ``_sides`` and
``block_count`` count them. The inverse roots are computed at the first step, so the first update is
already preconditioned (pytorch_optimizer's ``Shampoo`` starts its roots at zero and moves nothing
until its first recompute).

Choices:
- Roots at every one of the first k steps, then every k: a gradient has rank ≤ min(fan_in, fan_out,
  tokens), so the first steps' factors are rank-deficient, and a root computed from them multiplies
  any direction that is new since (one the momentum soon holds) by up to ε^(−e) per side. Measured on
  the width-64 proxy (lr 1e-2, roots only at steps 1, 11, 21, ...): σ_max(U) of the 256×64 MLP matrix
  went from 1.0 at step 1 to 24–240 at steps 2–10 and the loss ended at 3.6 instead of 1.0. By step k
  the EMA spans enough directions (≥ k gradients) and stale roots are harmless; the cost is k − 1
  extra eighs once per run.
- Momentum on the gradient, not on the preconditioned update: every step's update then uses the
  newest roots (no mixture of directions preconditioned by stale roots), and the Adam graft shares the
  same M̂ as its numerator, so the graft compares two steps with one momentum. Both forms are linear in G,
  so the μP scaling is the same.
- Bias correction of M and of the factors (as Adam's): without it the first roots would see L scaled by
  1 − β2 = 10⁻³ and the first updates would be (1 − β2)^(−E) ≈ 30× too large at E = ½, and ε would
  compete with a factor that is still warming up.
- Eigendecomposition (torch.linalg.eigh) in float64; factors and roots are kept in float32. GGᵀ of a
  gradient is rank-deficient (at most batch·tokens directions), so most eigenvalues sit at the scale of
  ε, and float32 eigh has absolute eigenvalue errors ~1e-7·λ_max. Measured on a rank-64 factor of a
  256×256 (and rank-128 of 1024×1024) gradient: float32 roots are 0.7% off (Frobenius) at ε = 1e-6·λ_max
  and 17–19% at ε = 1e-8·λ_max, i.e. set by rounding rather than by the μP-scaled ε. (The update of a
  gradient inside the factor's range was still within 4e-5, because rounding hits the near-null
  directions; the stale-root steps above are exactly where the momentum leaves that range.) float64
  costs about 2× float32's eigh time on CPU (6 vs 3 ms at 256, 250 vs 135 ms at 1024), once every k steps.
- σ_max by warm-started power iteration (mupx.optim.spectral), 5 iterations every step (Qiu et al. use
  5 in their first 50 steps and 1 after): it costs O(fan_in·fan_out) per iteration, small next to the
  O(fan_in·fan_out·B) preconditioning, and an underestimated σ_max inflates the update.

Why our own: pytorch_optimizer's ``Shampoo`` keeps full factors for every dimension, biases included
(14× parameter memory), and its zero-initialised roots freeze the first steps; its ``ScalableShampoo``
has block size, ε and exponents per instance (not per tensor) and Python objects in its state (fails
``torch.load(weights_only=True)``); torch-optimizer's ``Shampoo`` uses the exponent −1/order instead of
−1/(2·order) and produced NaNs; Facebook's Distributed Shampoo is not installable here (optimizer
survey §3). State here is tensors and ints only.

μP (rules.py ``shampoo``; Qiu et al. Table 1 via 2603.00541 App. C.9, and their code): with
E = e_L + e_R over the preconditioned sides and n_blk tiles, hidden lr ∝ (fan_out/fan_in)^(1−E) ·
n_blk^(−E) · m_L^(1−2E) (at α = 1); ε ∝ fan_in/fan_out · m_L^(−2α) · n_blk^(−1), the scale of the
factors' eigenvalues. With the Adam graft the step has Adam's size, so lr takes Adam's 1/fan_in and the
graft ε Adam's ε rule; with explicit spectral normalisation lr is constant. Embeddings, readout, gains
and biases take AdamW (``adamw_update``) with ``adam_lr``/``adam_eps`` by role.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch

from ..errors import MupxError
from ..scaling.rules import tile_size
from .adam_side import adamw_update
from .builtin import check_betas, check_common
from .spectral import sigma_max, start_vector

SPECTRAL_ITERS = 5  # power iterations per step for σ_max (warm-started)
# Options that are the same for every tensor; lr, weight_decay, eps and graft_eps come from the plan.
SHARED = (
    "betas", "exponent_left", "exponent_right", "block_size", "max_precond_dim", "precondition_every",
    "graft", "spectral_norm", "adam_betas",
)  # fmt: skip


@dataclass(frozen=True)
class ShampooOptions:
    lr: float
    betas: tuple[float, float]
    eps: float
    exponent_left: float
    exponent_right: float
    block_size: int
    max_precond_dim: int
    precondition_every: int
    graft: Literal["none", "adam"]
    graft_eps: float
    spectral_norm: bool
    weight_decay: float
    adam_lr: float
    adam_betas: tuple[float, float]
    adam_eps: float

    def __post_init__(self):
        check_common(self.lr, self.weight_decay)
        check_betas(self.betas)
        check_betas(self.adam_betas, "optimizer.adam_betas")
        if self.adam_lr <= 0:
            raise MupxError(f"optimizer.adam_lr must be > 0, got {self.adam_lr}")
        if self.eps <= 0:
            raise MupxError(f"optimizer.eps must be > 0 (the matrix ε in (L + εI)^-e), got {self.eps}")
        for key in ("graft_eps", "adam_eps"):
            if getattr(self, key) < 0:
                raise MupxError(f"optimizer.{key} must be >= 0, got {getattr(self, key)}")
        el, er = self.exponent_left, self.exponent_right
        if not (0 <= el <= 0.5 and 0 <= er <= 0.5 and el + er > 0):
            raise MupxError(
                f"optimizer.exponent_left {el} / exponent_right {er}: an exponent out of range "
                "(allowed: each in [0, 0.5], exponent_left + exponent_right > 0; standard Shampoo 0.25, 0.25)"
            )
        if self.block_size < 0:
            raise MupxError(f"optimizer.block_size must be >= 0 (0 = whole matrix), got {self.block_size}")
        if self.max_precond_dim < 1:
            raise MupxError(f"optimizer.max_precond_dim must be >= 1, got {self.max_precond_dim}")
        if self.precondition_every < 1:
            raise MupxError(f"optimizer.precondition_every must be >= 1, got {self.precondition_every}")
        if self.graft not in ("none", "adam"):
            raise MupxError(f"optimizer.graft must be one of none, adam, got {self.graft!r}")
        if self.graft == "adam" and self.spectral_norm:
            raise MupxError(
                "optimizer.graft=adam and optimizer.spectral_norm=true both set the update's size "
                "(allowed: at most one of them)"
            )


def inverse_root(factor: torch.Tensor, eps: float, exponent: float) -> torch.Tensor:
    """(A + εI)^(−exponent) of a stack [..., n, n] of symmetric PSD matrices, by eigh in float64."""
    evals, evecs = torch.linalg.eigh(factor.double())
    scale = (evals.clamp_min(0) + eps).pow(-exponent)
    return ((evecs * scale.unsqueeze(-2)) @ evecs.mT).float()


def to_tiles(x: torch.Tensor, bo: int, bi: int) -> torch.Tensor:
    """[fan_out, fan_in] -> [n_tiles, bo, bi], tiles in row-major order."""
    fo, fi = x.shape
    return x.reshape(fo // bo, bo, fi // bi, bi).transpose(1, 2).reshape(-1, bo, bi)


def from_tiles(t: torch.Tensor, fo: int, fi: int) -> torch.Tensor:
    bo, bi = t.shape[-2:]
    return t.reshape(fo // bo, fi // bi, bo, bi).transpose(1, 2).reshape(fo, fi)


def layout(shape: torch.Size, group: dict) -> tuple[int, int, bool, bool]:
    """(tile rows, tile cols, left factor?, right factor?) of a [fan_out, fan_in] matrix."""
    fo, fi = shape
    left, right = fo <= group["max_precond_dim"], fi <= group["max_precond_dim"]
    b = group["block_size"]
    bo, bi = (tile_size(fo, b) if left else fo), (tile_size(fi, b) if right else fi)
    return bo, bi, left and group["exponent_left"] > 0, right and group["exponent_right"] > 0


class Shampoo(torch.optim.Optimizer):
    """Groups with ``update == "shampoo"`` (hidden matrices) or ``"adamw"`` (the rest), each carrying
    its planned lr, weight_decay and eps (shampoo groups also graft_eps)."""

    def __init__(self, groups: list[dict], options: ShampooOptions):
        super().__init__(groups, {k: getattr(options, k) for k in SHARED})
        for i, group in enumerate(self.param_groups):
            needed = ["lr", "weight_decay", "eps"]
            if group.get("update") == "shampoo":
                needed += ["graft_eps"] if group["graft"] == "adam" else []
                for p in group["params"]:
                    if p.ndim != 2:
                        raise ValueError(f"shampoo group {i} holds a {p.ndim}-D tensor (matrices only)")
            elif group.get("update") != "adamw":
                raise ValueError(f"group {i} has update {group.get('update')!r} (allowed: shampoo, adamw)")
            missing = [k for k in needed if k not in group]
            if missing:
                raise ValueError(f"group {i} lacks {missing}: these come from the plan, not defaults")

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            lr, wd = float(group["lr"]), float(group["weight_decay"])
            for p in group["params"]:
                if p.grad is None:
                    continue
                if group["update"] == "adamw":
                    adamw_update(p, p.grad, self.state[p], lr, group["adam_betas"], float(group["eps"]), wd)
                else:
                    u = self._direction(p, group)
                    if wd:
                        p.mul_(1 - lr * wd)
                    p.add_(u.to(p.dtype), alpha=-lr)
        return loss

    def _direction(self, p: torch.Tensor, group: dict) -> torch.Tensor:
        """Advance p's state by its gradient and return the update direction U (before −lr)."""
        state = self.state[p]
        fo, fi = p.shape
        bo, bi, left, right = layout(p.shape, group)
        n = (fo // bo) * (fi // bi)
        if not state:
            state["step"] = 0
            state["momentum"] = torch.zeros(fo, fi, device=p.device)
            for side, on, b in (("left", left, bo), ("right", right, bi)):
                if on:
                    state[side] = torch.zeros(n, b, b, device=p.device)
                    state[f"{side}_root"] = torch.zeros(n, b, b, device=p.device)
            if group["graft"] == "adam":
                state["graft_sq"] = torch.zeros(fo, fi, device=p.device)
            if group["spectral_norm"]:
                state["sigma_vec"] = start_vector(fi, p.device)
        state["step"] += 1
        t = state["step"]
        beta1, beta2 = group["betas"]
        g = p.grad.float()
        state["momentum"].lerp_(g, 1 - beta1)
        m_hat = state["momentum"] / (1 - beta1**t)
        tiles = to_tiles(g, bo, bi)
        if left:
            state["left"].baddbmm_(tiles, tiles.mT, beta=beta2, alpha=1 - beta2)
        if right:
            state["right"].baddbmm_(tiles.mT, tiles, beta=beta2, alpha=1 - beta2)
        k = group["precondition_every"]
        if t <= k or (t - 1) % k == 0:
            eps, debias = float(group["eps"]), 1 - beta2**t
            for side, on in (("left", left), ("right", right)):
                if on:
                    state[f"{side}_root"] = inverse_root(state[side] / debias, eps, group[f"exponent_{side}"])
        u = to_tiles(m_hat, bo, bi)
        if left:
            u = state["left_root"] @ u
        if right:
            u = u @ state["right_root"]
        u = from_tiles(u, fo, fi)
        if group["graft"] == "adam":
            v = state["graft_sq"].mul_(beta2).addcmul_(g, g, value=1 - beta2)
            adam = m_hat / (v.div(1 - beta2**t).sqrt_().add_(float(group["graft_eps"])))
            u = u * (adam.norm() / u.norm().clamp_min(1e-30))
        if group["spectral_norm"]:
            sigma, state["sigma_vec"] = sigma_max(u, state["sigma_vec"], SPECTRAL_ITERS)
            u = u * (math.sqrt(fo / fi) / sigma.clamp_min(1e-30))
        return u


def build_shampoo(groups: list[dict], options: ShampooOptions) -> torch.optim.Optimizer:
    return Shampoo(groups, options)
