"""ADOPT (Taniguchi et al. 2024, arXiv 2411.02853, Alg. 1 with update clipping), from pytorch_optimizer.

Update, per tensor, with v the second moment of the *previous* gradients:

  step 1:  v ← g⊙g                                   (initialisation only: no parameter change)
  step t:  p ← p·(1 − lr·wd)                         (decoupled decay)
           m ← β1·m + (1 − β1)·clip(g / max(√v, ε), t^clip_exponent)
           p ← p − lr·m
           v ← β2·v + (1 − β2)·g⊙g

Library, not our own: ``pytorch_optimizer.ADOPT`` meets mupx's optimizer contract. It reads lr, eps and
weight_decay per param group; ``weight_decouple=True`` gives the decay ``p·(1 − lr·wd)``; its clip
function is an attribute of the optimizer, not of a param group, so the state dict holds only tensors
and numbers (the per-group ``step`` counter included) and loads with ``weights_only=True``; it draws no
random numbers. Its first step only initialises v, as in the paper. The clipping is needed: without it
ADOPT diverged on our benchmark (embedding rows first seen after step 1 have v = 0, so g/max(√v, ε) is
huge); heavyball's unclipped ADOPT blew up to 1e6 (optimizer survey, ADOPT probe).

Note: decay is applied on the initialising step too (p·(1 − lr·wd) with no update): one extra decay
step, harmless.

μP: the update normalises entrywise like Adam, so ADOPT takes Adam's rules (rules.py ``adopt``): hidden
lr ∝ 1/fan_in, ε (compared with √v, so ∝ the gradient's entry size) as Adam's ε.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch
from pytorch_optimizer import ADOPT

from ..errors import MupxError
from .builtin import check_betas, check_common


@dataclass(frozen=True)
class AdoptOptions:
    lr: float
    betas: tuple[float, float]
    eps: float
    clip_exponent: float
    weight_decay: float

    def __post_init__(self):
        check_common(self.lr, self.weight_decay)
        check_betas(self.betas)
        if self.eps <= 0:
            raise MupxError(
                f"optimizer.eps must be > 0 (it keeps g/max(sqrt(v), eps) finite where v = 0), got {self.eps}"
            )
        if self.clip_exponent <= 0:
            raise MupxError(
                f"optimizer.clip_exponent must be > 0 (clip threshold step^clip_exponent), got {self.clip_exponent}"
            )


def clip_threshold(step: int, exponent: float) -> float:
    """ADOPT's clip threshold c_t = t^exponent (the paper uses exponent 1/4)."""
    return float(step) ** exponent


def build_adopt(groups: list[dict], o: AdoptOptions) -> torch.optim.Optimizer:
    return ADOPT(
        groups,
        lr=o.lr,
        betas=o.betas,
        eps=o.eps,
        clip_lambda=functools.partial(clip_threshold, exponent=o.clip_exponent),
        weight_decay=o.weight_decay,
        weight_decouple=True,
    )
