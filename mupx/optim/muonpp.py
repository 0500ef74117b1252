"""Muon++: Muon whose every hidden-matrix update has spectral norm exactly lr·√(fan_out/fan_in).

Source: J. Zhao, "Muon++" (arXiv 2601.01306). Only the abstract was available to us: it argues that
"maintaining spectral control at the level of optimizer updates alone is sufficient to preserve
μP-compatible scaling, eliminating the need for explicit spectral normalization of the weights", and
proposes a Muon variant that "satisfies [the] spectral condition throughout the training process".
The paper's own algorithm, constants and experiments were not available, so **this module is mupx's
reading of that principle, not a reproduction of the paper**.

What mupx does, per hidden matrix W ∈ R^{fan_out × fan_in} (fan_out = shape[0]) at group lr η:

    B, M, O        exactly as Muon (momentum, Nesterov, O ← NS₅(M); see ``muon.py``)
    σ̂ ← power iteration on O, warm-started from the previous step's right vector
    W ← W (1 − η λ)                                   decoupled decay with the group's lr
    W ← W − η · √(fan_out/fan_in) · O / σ̂

So σ_max(ΔW) = η·√(fan_out/fan_in) up to the power iteration's error, i.e. the update's RMS→RMS
operator norm ‖ΔW‖_R = √(fan_in/fan_out)·σ_max(ΔW) equals η at every step and every width — the
spectral condition ‖ΔW‖_R = Θ(1) (Yang, Simon & Bernstein 2023) held with constant 1 rather than
only in order. Plain Muon has ‖ΔW‖_R = η·σ_max(O), and σ_max(O) is not 1: the quintic Newton–Schulz
leaves singular values roughly in [0.5, 1.5] (Keller Jordan), by an amount that depends on the
momentum's spectrum, hence on the step, the layer and the width. The weights themselves are never
normalised.

Power iteration: ``power_iters`` rounds per step (default 1) after the first 10 steps of each matrix,
``warmup_power_iters`` (default 5) during them, while the warm-start vector settles — the schedule of
Qiu et al.'s spectral normaliser (2512.05620 code: 1 per step, 5 early on). The right vector is kept
in the optimizer state (a tensor, so checkpoints round-trip) and starts from a vector seeded by the
shape (``mupx.optim.spectral``), never from the global RNG. Power iteration never overestimates σ_max,
so the realised ‖ΔW‖_R/η is ≥ 1 and exceeds 1 by the estimate's relative error.

Assumptions: (1) the target √(fan_out/fan_in) is the right spectral scale for every hidden matrix
(Yang et al.'s condition; for a transformer's hidden matrices with width-proportional fans it is
constant in width, so μP's hidden lr is constant: rules.py ``muonpp``, × m_L^(α−1) in depth);
(2) normalising each step's update is enough, without constraining the accumulated weights (the
abstract's claim); (3) the "data-dependent" refinements the abstract mentions are not implemented.
Embeddings, readout, gains and biases take AdamW as in ``muon.py``.

Our own implementation: no library provides Muon++ (``shared/optimizer-survey.md``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch

from ..errors import MupxError
from .muon import Muon, check_muon_common
from .spectral import sigma_max

WARMUP_STEPS = 10  # steps of each matrix that use ``warmup_power_iters``


@dataclass(frozen=True)
class MuonppOptions:
    lr: float
    momentum: float
    nesterov: bool
    ns_steps: int
    ns_dtype: Literal["auto", "float32", "bfloat16"]
    weight_decay: float
    adam_lr: float
    adam_betas: tuple[float, float]
    adam_eps: float
    power_iters: int
    warmup_power_iters: int

    def __post_init__(self):
        check_muon_common(self)
        for key in ("power_iters", "warmup_power_iters"):
            if getattr(self, key) < 1:
                raise MupxError(f"optimizer.{key} must be a positive integer, got {getattr(self, key)}")


class Muonpp(Muon):
    """Muon++ for groups with ``update == "muonpp"``, AdamW for ``update == "adamw"``."""

    hidden_update = "muonpp"

    def _apply(self, p: torch.Tensor, o: torch.Tensor, state: dict, group: dict) -> None:
        """W ← W − lr · √(fan_out/fan_in) · O / σ̂_max(O)."""
        state["step"] = state.get("step", 0) + 1
        iters = group["warmup_power_iters"] if state["step"] <= WARMUP_STEPS else group["power_iters"]
        sigma, state["power_vector"] = sigma_max(o, state.get("power_vector"), iters)
        target = math.sqrt(p.shape[0] / p.shape[1])
        p.add_(o.float().mul_(target / sigma.clamp_min(1e-30)), alpha=-group["lr"])


def build_muonpp(groups: list[dict], options: MuonppOptions) -> torch.optim.Optimizer:
    return Muonpp(groups, options)
