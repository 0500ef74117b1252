"""LAMB (You et al. 2019, arXiv 1904.00962, Alg. 2) without the ‖W‖ clamp; our own implementation.

Update, per tensor W (t counts this tensor's steps):

  m ← β1·m + (1 − β1)·g,   v ← β2·v + (1 − β2)·g⊙g
  r = m̂ / (√v̂ + ε)                    with m̂ = m/(1 − β1^t), v̂ = v/(1 − β2^t)   (the Adam direction)
  ratio = ‖W‖_F / ‖r‖_F               (1 when either norm is 0, so zero-initialised biases still move)
  W ← W·(1 − lr·wd)                   (decoupled decay)
  W ← W − lr·ratio·r

‖W‖ is taken before the decay. The paper puts λW inside r (so it also enters ‖r‖); here decay is
decoupled and outside the trust ratio, so every mupx optimizer has the same per-step decay lr·wd that
the plan's weight-decay conventions reason about.

Own implementation because pytorch_optimizer's and torch-optimizer's ``Lamb`` clamp ‖W‖ at 10
(optimizer survey §3/§5.3). That clamp binds at realistic widths (‖W‖_F of a d→4d matrix under PyTorch's
default init is 26–52 at d = 512–2048) and breaks width scaling: once it binds, the ratio's numerator
stops growing with width, and the update shrinks a factor √n faster than μP wants.

μP (rules.py ``lamb``; TP-V App. B.3): r has Θ(1) entries like Adam's update, and the trust ratio
rescales it to RMS(W): for a hidden matrix RMS(W) ∝ fan_in^-1/2, so with hidden lr ∝ fan_in^-1/2 the
update entries are Θ(1/fan_in), μP's. Inputs, outputs and vectors have width-independent RMS(W), so
they take Adam's lr. ε is compared with √v, so it takes Adam's ε rule. A hidden matrix initialised at
zero gets ratio 1 on its first step, i.e. entries lr·Θ(1) = Θ(fan_in^-1/2), not μP's Θ(1/fan_in).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..errors import MupxError
from .builtin import check_betas, check_common


@dataclass(frozen=True)
class LambOptions:
    lr: float
    betas: tuple[float, float]
    eps: float
    weight_decay: float

    def __post_init__(self):
        check_common(self.lr, self.weight_decay)
        check_betas(self.betas)
        if self.eps <= 0:
            raise MupxError(
                f"optimizer.eps must be > 0 (it keeps m/(sqrt(v) + eps) finite where a gradient entry is 0), got {self.eps}"
            )


class Lamb(torch.optim.Optimizer):
    def __init__(self, params, lr: float, betas: tuple[float, float], eps: float, weight_decay: float):
        super().__init__(params, {"lr": lr, "betas": betas, "eps": eps, "weight_decay": weight_decay})

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            lr, wd, eps = group["lr"], group["weight_decay"], group["eps"]
            beta1, beta2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state["step"] = 0
                    state["exp_avg"] = torch.zeros_like(p)
                    state["exp_avg_sq"] = torch.zeros_like(p)
                state["step"] += 1
                t, m, v = state["step"], state["exp_avg"], state["exp_avg_sq"]
                m.lerp_(p.grad, 1 - beta1)
                v.mul_(beta2).addcmul_(p.grad, p.grad, value=1 - beta2)
                denom = v.sqrt().div_(math.sqrt(1 - beta2**t)).add_(eps)
                r = (m / (1 - beta1**t)).div_(denom)
                w_norm, r_norm = torch.linalg.vector_norm(p), torch.linalg.vector_norm(r)
                ratio = torch.where((w_norm > 0) & (r_norm > 0), w_norm / r_norm, 1.0)
                if wd:
                    p.mul_(1 - lr * wd)
                p.sub_(r.mul_(ratio), alpha=lr)
        return loss


def build_lamb(groups: list[dict], o: LambOptions) -> torch.optim.Optimizer:
    return Lamb(groups, lr=o.lr, betas=o.betas, eps=o.eps, weight_decay=o.weight_decay)
