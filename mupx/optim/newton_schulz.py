"""Newton–Schulz orthogonalisation: the core of Muon and Muon++.

Given a matrix G = U S Vᵀ, returns approximately U Vᵀ (the nearest semi-orthogonal matrix) without an
SVD, by a fixed number of matmul-only iterations (Keller Jordan's Muon, 2024; ``scaling-rules.md`` §3.8):

    X ← G / ‖G‖_F                      (so every singular value is ≤ 1)
    repeat k times:  A = X Xᵀ;  X ← a X + (b A + c A²) X      (a, b, c) = (3.4445, −4.7750, 2.0315)

The quintic's coefficients maximise the slope at zero rather than converge, so the result is
U S′ Vᵀ with S′ roughly in [0.5, 1.5] (Keller's docstring), not exactly U Vᵀ. Tall matrices are
transposed first so that the Gram matrix A is the smaller side. Same arithmetic, in the same order, as
``torch.optim.Muon``'s ``_zeropower_via_newtonschulz`` (so our Muon reproduces it bit for bit in
bfloat16); here the working dtype is a parameter, since float32 is faster than bfloat16 on many CPUs.
"""

from __future__ import annotations

import torch

COEFFICIENTS = (3.4445, -4.7750, 2.0315)
EPS = 1e-7  # floor of the Frobenius norm (torch.optim.Muon's default)


def ns_dtype(name: str, device: torch.device) -> torch.dtype:
    """The working dtype for ``ns_dtype`` = auto (bfloat16 on CUDA, float32 elsewhere) | float32 | bfloat16."""
    if name == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    return {"float32": torch.float32, "bfloat16": torch.bfloat16}[name]


@torch.no_grad()
def orthogonalize(g: torch.Tensor, steps: int = 5, dtype: torch.dtype = torch.bfloat16) -> torch.Tensor:
    """≈ U Vᵀ of the 2-D matrix ``g`` by ``steps`` quintic Newton–Schulz iterations in ``dtype``.

    Returns a new tensor of ``g``'s shape in ``dtype``; ``g`` is not modified.
    """
    a, b, c = COEFFICIENTS
    x = g.to(dtype)
    tall = g.size(0) > g.size(1)
    if tall:
        x = x.T
    x = x / x.norm().clamp(min=EPS)
    for _ in range(steps):
        gram = x @ x.T
        poly = torch.addmm(gram, gram, gram, beta=b, alpha=c)
        x = torch.addmm(x, poly, x, beta=a)
    return x.T if tall else x
