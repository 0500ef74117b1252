"""SGD and AdamW from ``torch.optim``: they take per-group lr, weight decay and ε, so μP needs only the
plan's param groups (no own implementation)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..errors import MupxError


def check_common(lr: float, weight_decay: float) -> None:
    if lr <= 0:
        raise MupxError(f"optimizer.lr must be > 0, got {lr}")
    if weight_decay < 0:
        raise MupxError(f"optimizer.weight_decay must be >= 0, got {weight_decay}")


def check_betas(betas: tuple[float, ...], key: str = "optimizer.betas") -> None:
    if not all(0 <= b < 1 for b in betas):
        raise MupxError(f"{key} must be in [0, 1), got {list(betas)}")


@dataclass(frozen=True)
class SGDOptions:
    lr: float
    momentum: float
    nesterov: bool
    weight_decay: float

    def __post_init__(self):
        check_common(self.lr, self.weight_decay)
        if not 0 <= self.momentum < 1:
            raise MupxError(f"optimizer.momentum must be in [0, 1), got {self.momentum}")
        if self.nesterov and self.momentum == 0:
            raise MupxError("optimizer.nesterov=true needs optimizer.momentum > 0")


def build_sgd(groups: list[dict], o: SGDOptions) -> torch.optim.Optimizer:
    return torch.optim.SGD(
        groups, lr=o.lr, momentum=o.momentum, nesterov=o.nesterov, weight_decay=o.weight_decay
    )


@dataclass(frozen=True)
class AdamWOptions:
    lr: float
    betas: tuple[float, float]
    eps: float
    weight_decay: float

    def __post_init__(self):
        check_common(self.lr, self.weight_decay)
        check_betas(self.betas)
        if self.eps < 0:
            raise MupxError(f"optimizer.eps must be >= 0, got {self.eps}")


def build_adamw(groups: list[dict], o: AdamWOptions) -> torch.optim.Optimizer:
    fused = all(p.is_cuda for g in groups for p in g["params"])
    return torch.optim.AdamW(
        groups, lr=o.lr, betas=o.betas, eps=o.eps, weight_decay=o.weight_decay, fused=fused or None
    )
