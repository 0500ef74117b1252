"""Spectral ratios: how large each tensor and each update is in the norm that μP controls.

For a 2-D tensor in PyTorch layout ``[fan_out, fan_in]`` with forward multiplier ``c`` (the plan row's
``fwd_mult``: the output-logit multiplier for the readout, the embedding multiplier for embeddings, 1
elsewhere), ``scaling-rules.md`` §8.4 defines

    ρ_W  = σ_max(c·W)  · √(fan_in/fan_out)      (= ‖c·W‖ as an RMS→RMS operator norm)
    ρ_ΔW = σ_max(c·ΔW) · √(fan_in/fan_out)      ΔW = W_after − W_before of one optimizer step

(Yang, Simon & Bernstein 2023, Condition 1: both Θ(1) in width under μP). The update ΔW is the change
actually applied, so it includes the learning rate, the schedule and weight decay. σ_max comes from
power iteration (:func:`mupx.optim.spectral.sigma_max`), warm-started from the previous call's vector
kept per tensor. Embeddings are looked up by one-hot inputs, so their size is the coordinate RMS of the
rows that changed, ``RMS(ΔE)`` (and ``RMS(E)``); vectors (biases, gains) use ``RMS(Δb)`` (and ``RMS(b)``).
"""

from __future__ import annotations

import math

import torch

from ..optim.spectral import sigma_max
from ..scaling.plan import Plan
from ..scaling.roles import Role

COLD_ITERS = 30  # power iterations from the fixed start vector (first call per tensor)
WARM_ITERS = 3  # power iterations from the previous call's vector


def rms(t: torch.Tensor) -> float:
    return t.float().pow(2).mean().sqrt().item() if t.numel() else 0.0


class SpectralRatio:
    """ρ(M) = σ_max(c·M)·√(fan_in/fan_out) of successive matrices, warm-starting the power iteration."""

    def __init__(self, c: float = 1.0, cold_iters: int = COLD_ITERS, warm_iters: int = WARM_ITERS):
        self.c, self.cold_iters, self.warm_iters = c, cold_iters, warm_iters
        self.v: torch.Tensor | None = None

    def __call__(self, matrix: torch.Tensor) -> float:
        iters = self.cold_iters if self.v is None else self.warm_iters
        sigma, v = sigma_max(matrix, self.v, iters)
        # a zero matrix (e.g. an optimizer's first step that only builds its statistics) or a non-finite
        # one leaves no direction to warm-start from: start cold next time
        self.v = v if bool(torch.isfinite(v).all()) and v.norm() > 0 else None
        fan_out, fan_in = matrix.shape
        return abs(self.c) * sigma.item() * math.sqrt(fan_in / fan_out)


class SpectralMonitor:
    """Spectral ratios of every parameter around one optimizer step.

    ``before_step()`` snapshots the parameters; ``after_step()`` returns a JSON-able dict
    ``{name: {"rho_w": ρ_W, "rho_dw": ρ_ΔW}}`` for hidden and output matrices and
    ``{name: {"rms_w": RMS(W), "rms_dw": RMS(ΔW)}}`` for embeddings (rows that changed) and vectors.
    Costs one parameter copy of memory while a step is watched and a few mat-vecs per matrix.
    """

    def __init__(
        self, model: torch.nn.Module, plan: Plan, cold_iters: int = COLD_ITERS, warm_iters: int = WARM_ITERS
    ):
        params = dict(model.named_parameters())
        self.rows = [(r, params[r.name]) for r in plan.rows]
        self.ratios = {
            (r.name, which): SpectralRatio(r.fwd_mult, cold_iters, warm_iters)
            for r, p in self.rows
            if p.ndim == 2 and r.role is not Role.INPUT
            for which in ("w", "dw")
        }
        self.before: dict[str, torch.Tensor] | None = None

    @torch.no_grad()
    def before_step(self) -> None:
        self.before = {r.name: p.detach().clone() for r, p in self.rows}

    @torch.no_grad()
    def after_step(self) -> dict[str, dict[str, float]]:
        if self.before is None:
            raise RuntimeError("SpectralMonitor.after_step() called without before_step()")
        out = {}
        for r, p in self.rows:
            new = p.detach()
            delta = new.float() - self.before[r.name].float()
            if (r.name, "w") in self.ratios:
                out[r.name] = {
                    "rho_w": self.ratios[r.name, "w"](new),
                    "rho_dw": self.ratios[r.name, "dw"](delta),
                }
            elif r.role is Role.INPUT:
                changed = delta.abs().amax(dim=1) > 0
                out[r.name] = {
                    "rms_w": abs(r.fwd_mult) * rms(new),
                    "rms_dw": abs(r.fwd_mult) * rms(delta[changed]),
                }
            else:
                out[r.name] = {"rms_w": rms(new), "rms_dw": rms(delta)}
        self.before = None
        return out
