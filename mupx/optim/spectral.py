"""Spectral norm σ_max of a matrix by power iteration, warm-started from the previous call's vector.

Used by Muon++ and explicit spectral normalisation (to set an update's σ_max) and by the spectral-ratio
diagnostics. A warm start makes one iteration per step enough once the top singular vector settles
(Qiu et al. use 1 per step, 5 early on [I]). The start vector comes from a local generator seeded by
the shape, never the global RNG.
"""

from __future__ import annotations

import torch


def start_vector(n: int, device, dtype=torch.float32) -> torch.Tensor:
    g = torch.Generator().manual_seed(1_000_003 * n + 7)
    v = torch.randn(n, generator=g, dtype=torch.float32).to(device=device, dtype=dtype)
    return v / v.norm()


@torch.no_grad()
def sigma_max(
    matrix: torch.Tensor, v: torch.Tensor | None = None, iters: int = 1
) -> tuple[torch.Tensor, torch.Tensor]:
    """(σ_max estimate, right singular vector estimate) of a 2-D ``matrix`` [out, in].

    ``v`` is the previous right vector (warm start) or None. σ is ‖M v‖ after ``iters`` rounds of
    v ← Mᵀ M v / ‖·‖; it never overestimates σ_max.
    """
    m = matrix.float()
    if v is None:
        v = start_vector(m.shape[1], m.device)
    for _ in range(max(1, iters)):
        u = m @ v
        u = u / u.norm().clamp_min(1e-30)
        v = m.T @ u
        v = v / v.norm().clamp_min(1e-30)
    return (m @ v).norm(), v
