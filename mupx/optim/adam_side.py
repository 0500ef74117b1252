"""The AdamW step for the tensors a hybrid optimizer (Muon, Muon++, Shampoo, SOAP) hands to AdamW by
role: embeddings, readout, norm gains and biases. Same arithmetic as ``torch.optim.AdamW`` (decoupled
decay ``p ← p·(1 − lr·wd)``, bias-corrected moments, ε added after the square root), written out here
because it runs inside our own optimizers' ``step``, on the group's planned lr, ε and weight decay."""

from __future__ import annotations

import math

import torch


@torch.no_grad()
def adamw_update(
    p: torch.Tensor,
    grad: torch.Tensor,
    state: dict,
    lr: float,
    betas: tuple[float, float],
    eps: float,
    weight_decay: float,
) -> None:
    if not state:
        state["step"] = 0
        state["exp_avg"] = torch.zeros_like(p)
        state["exp_avg_sq"] = torch.zeros_like(p)
    state["step"] += 1
    beta1, beta2 = betas
    m, v, t = state["exp_avg"], state["exp_avg_sq"], state["step"]
    if weight_decay:
        p.mul_(1 - lr * weight_decay)
    m.lerp_(grad, 1 - beta1)
    v.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
    denom = (v.sqrt() / math.sqrt(1 - beta2**t)).add_(eps)
    p.addcdiv_(m, denom, value=-lr / (1 - beta1**t))
