"""SOAP (Vyas et al., "SOAP: Improving and Stabilizing Shampoo using Adam", arXiv 2409.11321): Adam run
in the eigenbasis of Shampoo's Kronecker factors, on hidden matrices; AdamW on everything else. Our own
implementation, with blocking and explicit spectral normalisation as the μP knobs of Qiu et al.
(2512.05620).

Update, per hidden matrix G = ∇W [fan_out, fan_in], per tile Gᵢ (the whole matrix when block_size = 0;
otherwise equal tiles of at most B along each side longer than B (``tile_size``), cut only along the
sides ≤ ``max_precond_dim``, exactly as the rules' ``_sides`` and ``block_count`` count them); k counts
this tensor's Adam steps:

  first call (k = 0), no parameter change:
      Lᵢ = (1 − β_s)·Gᵢ Gᵢᵀ,  Rᵢ = (1 − β_s)·Gᵢᵀ Gᵢ,  Q_L, Q_R = eigenvectors (eigh, descending)
  every later call, k ← k + 1:
      G' = Q_Lᵀ G Q_R                                  rotated gradient
      M ← β1·M + (1 − β1)·G                            first moment, kept in the original space
      V ← β2·V + (1 − β2)·G'⊙G'                        second moment, kept in the rotated space
      U = Q_L [ (Q_Lᵀ M Q_R)/(1 − β1^k) / (√(V/(1 − β2^k)) + ε) ] Q_Rᵀ
      Lᵢ ← β_s·Lᵢ + (1 − β_s)·Gᵢ Gᵢᵀ,  Rᵢ ← β_s·Rᵢ + (1 − β_s)·Gᵢᵀ Gᵢ   (after the step, as the paper)
      if k % precondition_every == 0: refresh Q_L, Q_R (see below)
  spectral_norm:  U ← U · √(fan_out/fan_in) / σ_max(U)      (Qiu ``norm_by_spect``)
  W ← W·(1 − lr·wd);  W ← W − lr·U

β_s = ``shampoo_beta`` (betas[1] when negative); ε is the group's planned ``eps``. A side that is not
preconditioned keeps the identity (no factor stored), which gives the one-sided forms of the rules.

Choices:
- The first call only builds the factors and bases, as the authors' code does ("so that we never use
  the current gradients in the projection"). In its own eigenbasis G' = Q_Lᵀ G Q_R is diagonal up to
  round-off, and Adam's first step is sign(G'), so round-off entries above ε become ±1: measured on a
  256×256 rank-64 float32 gradient, that noise had 0.2–3.8× the signal's Frobenius norm at ε = 1e-8
  (gradient entries ~1e-5 to ~1e-3) and 23–31× at ε = 1e-12. The Adam tensors do step on the first call.
- Refresh by one power-iteration step and QR, warm-started from the current basis (paper Algorithm 4;
  authors' code): columns are ordered by the estimated eigenvalues diag(Qᵀ P Q), descending, and V is
  permuted along with them, so each V entry keeps following its basis vector (V cannot be rotated: only
  its diagonal in the rotated space is kept). A fresh eigh would return eigenvectors in an arbitrary
  order and sign inside near-degenerate clusters, which breaks that correspondence, and costs more
  (CPU, one thread, 1024×1024: eigh ≈ 2.0 s, product + QR ≈ 0.7 s).
- The initial eigh runs in float64: the first factor has rank ≤ the number of tokens, and float32 eigh
  on its large degenerate cluster can fail to converge (the authors' code retries in float64 for this).
  It runs once; on a width-256 model it took 7.5 s against 3.1 s for pytorch_optimizer's float32 eigh.
  State and the per-step arithmetic are float32 (float64 for float64 parameters).
- ε follows ``torch.optim.AdamW`` (added to the bias-corrected √V̂), so it is exactly the Adam ε that
  the plan scales. pytorch_optimizer adds it to the uncorrected √V (an ε/√(1 − β2^k) effect); with ε → 0
  and no weight decay the two agree to 2e-8 in float64 (tests/test_soap.py).
- σ_max by warm-started power iteration (mupx.optim.spectral), 5 iterations a step: O(fan_out·fan_in)
  each, small next to the O(fan_out·fan_in·B) rotations.

torch.compile: not supported for the optimizer step (mupx compiles only the model). ``step`` is marked
``torch.compiler.disable``, so ``torch.compile(opt.step)`` runs it eagerly and gives eager's numbers.
Compiling it would gain little: the step is dominated by batched matmuls, QR and eigh, and its per-tensor
control flow (first call, refresh period) would recompile or graph-break; pytorch_optimizer's SOAP
compiled this way recompiled every step and diverged (optimizer survey §5.4).

Why our own: pytorch_optimizer's SOAP is correct eager but wrong under ``torch.compile(opt.step)``, has
no blocking and places ε outside the bias correction; heavyball's SOAP was the slowest measured;
Facebook's Distributed Shampoo (with a SOAP config) is not installable here (optimizer survey §3–5).
State here is tensors and ints only (``torch.load(weights_only=True)`` works).

μP (rules.py ``soap``; Qiu et al. Table 1 via 2603.00541 App. C.10, and their code): with both sides
rotated and n_blk tiles, hidden lr ∝ √(fan_out/fan_in)·n_blk^(−½) and ε ∝ √(fan_in/fan_out)·n_blk^(−½)·
m_L^(−α) (the size of a rotated gradient entry); one-sided and unrotated forms are in the rules; with
explicit spectral normalisation the lr is constant. Embeddings, readout, gains and biases take AdamW
(``adamw_update``) with ``adam_lr``/``adam_betas``/``adam_eps`` by role.

Why ``spectral_norm`` is on by default (configs/optimizer/soap.yaml). Qiu et al.'s rule describes SOAP
once V has learnt the rotated gradient's statistics (rotated Adam ≈ Shampoo with E = ½). The first Adam
steps after the bases are built are not in that regime: V holds one or two squared rotated gradients, so
m/√V is close to sign(G'), a dense ±1 matrix whose spectral norm grows with width, as plain Adam's does
(Adam's μP lr is 1/fan_in for that reason). Measured (``mupx coord-check --optimizer soap -s
optimizer.spectral_norm=false``, widths 64→512, constant lr 3e-3, no warmup): the first block's update RMS
at t = 2 grows ≈ √width (0.034, 0.050, 0.068, 0.092) and by t = 5 the block outputs grow with slope +2.25
in log width: the gate fails, with ε = 1e-6 and with a batch of 2048 tokens alike. With
``spectral_norm=true`` every update has σ_max = √(fan_out/fan_in) from its first step and the gate passes
(worst |slope| 0.17). With ``spectral_norm=false`` (the paper's SOAP) use an lr warmup long enough for V
to settle before transferring.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..errors import MupxError
from ..scaling.rules import tile_size
from .adam_side import adamw_update
from .builtin import check_betas, check_common
from .spectral import sigma_max, start_vector

SPECTRAL_ITERS = 5  # power iterations per step for σ_max (warm-started)
# Options that are the same for every tensor; lr, weight_decay and eps come from the plan.
SHARED = (
    "betas", "shampoo_beta", "block_size", "max_precond_dim", "precondition_every", "spectral_norm", "adam_betas",
)  # fmt: skip


@dataclass(frozen=True)
class SOAPOptions:
    lr: float
    betas: tuple[float, float]
    shampoo_beta: float
    eps: float
    block_size: int
    max_precond_dim: int
    precondition_every: int
    spectral_norm: bool
    weight_decay: float
    adam_lr: float
    adam_betas: tuple[float, float]
    adam_eps: float

    def __post_init__(self):
        check_common(self.lr, self.weight_decay)
        check_betas(self.betas)
        check_betas(self.adam_betas, "optimizer.adam_betas")
        if self.shampoo_beta >= 1:
            raise MupxError(
                f"optimizer.shampoo_beta must be < 1 (in [0, 1), or negative to use betas[1]), got {self.shampoo_beta}"
            )
        if self.eps <= 0:
            raise MupxError(
                f"optimizer.eps must be > 0 (Adam ε in the rotated space; 0 gives 0/0 on zero gradients), got {self.eps}"
            )
        if self.adam_lr <= 0:
            raise MupxError(f"optimizer.adam_lr must be > 0, got {self.adam_lr}")
        if self.adam_eps < 0:
            raise MupxError(f"optimizer.adam_eps must be >= 0, got {self.adam_eps}")
        if self.block_size < 0:
            raise MupxError(f"optimizer.block_size must be >= 0 (0 = whole matrix), got {self.block_size}")
        if self.max_precond_dim < 1:
            raise MupxError(f"optimizer.max_precond_dim must be >= 1, got {self.max_precond_dim}")
        if self.precondition_every < 1:
            raise MupxError(
                f"optimizer.precondition_every must be >= 1 (steps), got {self.precondition_every}"
            )


def to_tiles(x: torch.Tensor, bo: int, bi: int) -> torch.Tensor:
    """[fan_out, fan_in] -> [n_tiles, bo, bi], tiles in row-major order."""
    fo, fi = x.shape
    return x.reshape(fo // bo, bo, fi // bi, bi).transpose(1, 2).reshape(-1, bo, bi)


def from_tiles(t: torch.Tensor, fo: int, fi: int) -> torch.Tensor:
    bo, bi = t.shape[-2:]
    return t.reshape(fo // bo, fi // bi, bo, bi).transpose(1, 2).reshape(fo, fi)


def layout(shape: torch.Size, group: dict) -> tuple[int, int, bool, bool]:
    """(tile rows, tile cols, rotate left?, rotate right?) of a [fan_out, fan_in] matrix."""
    fo, fi = shape
    left, right = fo <= group["max_precond_dim"], fi <= group["max_precond_dim"]
    b = group["block_size"]
    return (tile_size(fo, b) if left else fo), (tile_size(fi, b) if right else fi), left, right


def eigenbasis(factor: torch.Tensor) -> torch.Tensor:
    """Eigenvectors of a stack [..., n, n] of symmetric PSD matrices, by descending eigenvalue (float64 eigh)."""
    return torch.linalg.eigh(factor.double()).eigenvectors.flip(-1).to(factor.dtype)


def rotate(x: torch.Tensor, state: dict, back: bool = False) -> torch.Tensor:
    """Q_Lᵀ x Q_R (or Q_L x Q_Rᵀ with ``back``) on tiles [n, bo, bi]; a missing side is the identity."""
    ql, qr = state.get("left_basis"), state.get("right_basis")
    if ql is not None:
        x = (ql if back else ql.mT) @ x
    if qr is not None:
        x = x @ (qr.mT if back else qr)
    return x


@torch.no_grad()
def refresh(state: dict) -> None:
    """One power-iteration step + QR per rotated side, columns sorted by estimated eigenvalue
    (descending) and the second moment V permuted to match (paper Algorithm 4; authors' code)."""
    v = state["exp_avg_sq"]
    for side, dim, other in (("left", -2, -1), ("right", -1, -2)):  # V's rows follow Q_L, its columns Q_R
        if side not in state:
            continue
        basis = state[f"{side}_basis"]
        power = state[side] @ basis
        order = (basis * power).sum(-2).argsort(dim=-1, descending=True)  # diag(Qᵀ P Q)
        power = power.gather(-1, order.unsqueeze(-2).expand_as(power))
        state[f"{side}_basis"] = torch.linalg.qr(power).Q
        v = v.gather(dim, order.unsqueeze(other).expand_as(v))
    state["exp_avg_sq"] = v


class SOAP(torch.optim.Optimizer):
    """Groups with ``update == "soap"`` (hidden matrices) or ``"adamw"`` (the rest), each carrying its
    planned lr, weight_decay and eps. Not for ``torch.compile(opt.step)``: see the module docstring."""

    def __init__(self, groups: list[dict], options: SOAPOptions):
        shared = {k: getattr(options, k) for k in SHARED}
        if shared["shampoo_beta"] < 0:
            shared["shampoo_beta"] = options.betas[1]
        super().__init__(groups, shared)
        for i, group in enumerate(self.param_groups):
            if group.get("update") == "soap":
                for p in group["params"]:
                    if p.ndim != 2:
                        raise ValueError(f"soap group {i} holds a {p.ndim}-D tensor (hidden matrices only)")
            elif group.get("update") != "adamw":
                raise ValueError(f"group {i} has update {group.get('update')!r} (SOAP handles soap, adamw)")
            missing = [k for k in ("lr", "weight_decay", "eps") if k not in group]
            if missing:
                raise ValueError(
                    f"group {i} lacks {missing}: lr, weight_decay and ε come from the plan's groups"
                )

    @torch.compiler.disable
    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            lr, wd, eps = float(group["lr"]), float(group["weight_decay"]), float(group["eps"])
            for p in group["params"]:
                if p.grad is None:
                    continue
                if group["update"] == "adamw":
                    adamw_update(p, p.grad, self.state[p], lr, group["adam_betas"], eps, wd)
                    continue
                u = self._direction(p, group, eps)
                if u is None:
                    continue
                if wd:
                    p.mul_(1 - lr * wd)
                p.add_(u.to(p.dtype), alpha=-lr)
        return loss

    def _direction(self, p: torch.Tensor, group: dict, eps: float) -> torch.Tensor | None:
        """Advance p's state by its gradient and return the update U (None on the first call)."""
        state = self.state[p]
        fo, fi = p.shape
        bo, bi, left, right = layout(p.shape, group)
        dtype = torch.promote_types(p.dtype, torch.float32)
        g = to_tiles(p.grad.to(dtype), bo, bi)
        beta_s = group["shampoo_beta"]
        if not state:
            state["step"] = 0
            state["exp_avg"] = torch.zeros_like(g)
            state["exp_avg_sq"] = torch.zeros_like(g)
            for side, on, gram in (("left", left, g @ g.mT), ("right", right, g.mT @ g)):
                if on:
                    state[side] = torch.zeros_like(gram).lerp_(gram, 1 - beta_s)
                    state[f"{side}_basis"] = eigenbasis(state[side])
            if group["spectral_norm"]:
                state["sigma_vec"] = start_vector(fi, p.device)
            return None
        state["step"] += 1
        k = state["step"]
        beta1, beta2 = group["betas"]
        g_rot = rotate(g, state)
        m = state["exp_avg"].lerp_(g, 1 - beta1)
        v = state["exp_avg_sq"].mul_(beta2).addcmul_(g_rot, g_rot, value=1 - beta2)
        denom = (v.sqrt() / math.sqrt(1 - beta2**k)).add_(eps)
        u = rotate(rotate(m, state) / denom, state, back=True) / (1 - beta1**k)
        u = from_tiles(u, fo, fi)
        if left:
            state["left"].lerp_(g @ g.mT, 1 - beta_s)
        if right:
            state["right"].lerp_(g.mT @ g, 1 - beta_s)
        if k % group["precondition_every"] == 0:
            refresh(state)
        if group["spectral_norm"]:
            sigma, state["sigma_vec"] = sigma_max(u, state["sigma_vec"], SPECTRAL_ITERS)
            u = u * (math.sqrt(fo / fi) / sigma.clamp_min(1e-30))
        return u


def build_soap(groups: list[dict], options: SOAPOptions) -> torch.optim.Optimizer:
    return SOAP(groups, options)
