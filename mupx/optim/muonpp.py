"""Muon++: Muon whose every hidden-matrix update has spectral norm exactly lr·√(fan_out/fan_in).

Source: J. Zhao, "Muon++" (arXiv 2601.01306). Only the abstract was available to us: it argues that
"maintaining spectral control at the level of optimizer updates alone is sufficient to preserve
μP-compatible scaling, eliminating the need for explicit spectral normalization of the weights", and
proposes a Muon variant that "satisfies [the] spectral condition throughout the training process".
The paper's own algorithm, constants and experiments were not available, so **this module is mupx's
reading of that principle, not a reproduction of the paper**.

What mupx does, per hidden matrix W ∈ R^{fan_out × fan_in} (fan_out = shape[0]) at group lr η:

    B, M, O        exactly as Muon (momentum, Nesterov, O ← NS₅(M); see ``muon.py``)
    σ̂ ← estimate of σ_max(O) (below)
    W ← W (1 − η λ)                                   decoupled decay with the group's lr
    W ← W − η · √(fan_out/fan_in) · O / σ̂

So σ_max(ΔW) = η·√(fan_out/fan_in) up to the estimate's error, i.e. the update's RMS→RMS operator
norm ‖ΔW‖_R = √(fan_in/fan_out)·σ_max(ΔW) equals η at every step and every width: the spectral
condition ‖ΔW‖_R = Θ(1) (Yang, Simon & Bernstein 2023) held with constant 1 rather than only in
order. Plain Muon has ‖ΔW‖_R = η·σ_max(O), and σ_max(O) is not 1: the quintic Newton–Schulz leaves
singular values roughly in [0.5, 1.5] (Keller Jordan) — measured 1.13–1.20 on our proxy — by an
amount that depends on the momentum's spectrum, hence on the step, the layer and the width. Only the
step length changes; the direction O is Muon's. The weights themselves are never normalised.

The σ_max estimate. O's spectrum is nearly flat at the top (NS pushes every singular value towards 1),
so plain power iteration on O converges very slowly: on the width-128 proxy, 1 warm-started round per
step underestimated σ_max by up to 25% (10% on average) and 20 rounds still by up to 4%, which would
make Muon++'s step *less* regular than Muon's. mupx therefore runs the power iteration on
P = (X Xᵀ)⁸, where X is O in its wide orientation (m = min(fan_in, fan_out) rows), so each round
raises the singular values to the 32nd power. P costs one Gram product and three squarings of the
small side in the NS dtype (2m²n + 6m³ flops, 20–30% of the five NS iterations' 20m²n + 10m³;
bfloat16 products estimate as well as float32 ones, since only the direction of the vector matters).
``power_iters`` rounds per step (default 8, i.e. σ^256) after the first 10 steps of each matrix,
``warmup_power_iters`` (default 16) during them, warm-started from the previous step's vector (the
schedule of Qiu et al.'s spectral normaliser, 2512.05620 code: fewer rounds once warm, more early on).
σ̂ = ‖Xᵀ u‖ for the final unit vector u, which never overestimates σ_max, so the realised ‖ΔW‖_R/η
is ≥ 1. The vector is kept in the optimizer state (a float32 tensor of length m, so checkpoints
round-trip) and starts from a vector seeded by the shape (``mupx.optim.spectral``), never from the
global RNG. Measured (``scripts/muonpp_spectral.py``, 500 steps, widths 64–512): see the report.

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
SQUARINGS = 3  # the power iteration runs on (X Xᵀ)^(2^SQUARINGS)


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


def update_sigma_max(
    o: torch.Tensor, u: torch.Tensor | None, iters: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """(σ̂ ≤ σ_max(o), the unit vector it came from) by ``iters`` warm-started power-iteration rounds
    on (X Xᵀ)⁸, X = ``o`` in its wide orientation; ``u`` is the previous step's vector or None."""
    x = o.T if o.shape[0] > o.shape[1] else o
    power = x @ x.T  # products in the NS dtype; the power iteration and σ̂ in float32
    for _ in range(SQUARINGS):
        power = power @ power
    _, u = sigma_max(power, u, iters)
    sigma = (x.float().T @ u).norm()
    # A zero update gives u = 0, which would stick as the warm start: restart from a flat unit vector.
    return sigma, torch.where(sigma > 0, u, torch.full_like(u, u.numel() ** -0.5))


class Muonpp(Muon):
    """Muon++ for groups with ``update == "muonpp"``, AdamW for ``update == "adamw"``."""

    hidden_update = "muonpp"

    def _apply(self, p: torch.Tensor, o: torch.Tensor, state: dict, group: dict) -> None:
        """W ← W − lr · √(fan_out/fan_in) · O / σ̂_max(O)."""
        state["step"] = state.get("step", 0) + 1
        iters = group["warmup_power_iters"] if state["step"] <= WARMUP_STEPS else group["power_iters"]
        sigma, state["power_vector"] = update_sigma_max(o, state.get("power_vector"), iters)
        target = math.sqrt(p.shape[0] / p.shape[1])
        p.add_(o.float().mul_(target / sigma.clamp_min(1e-30)), alpha=-group["lr"])


def build_muonpp(groups: list[dict], options: MuonppOptions) -> torch.optim.Optimizer:
    return Muonpp(groups, options)
