"""μP's forward multipliers as building blocks for a model's forward pass.

The plan computes the values (:attr:`mupx.Plan.multipliers`); these blocks are where a model applies them.
They cannot be applied from outside a model, because only the model knows where its embedding, attention,
residual branches and readout are. mupx's own Transformer uses the same blocks.

- embeddings   ``x = embedding(idx) * mult.embed``: the tunable input multiplier (TP-V App. B.1; nanoGPT-mup's
               α_in), 1 by default.
- readout      :class:`Readout`: logits = (x · mult.output) Wᵀ with mult.output = output_mult / m, m the width
               multiplier of the readout's fan_in (TP-V Table 8; microsoft/mup's ``MuReadout``).
- attention    ``F.scaled_dot_product_attention(q, k, v, scale=mult.attn_scale)``: √d_head,0 / d_head (TP-V
               App. B.1), which is 1/√d_head when the head dimension is fixed across widths (width grows
               through the number of heads, as in mupx's Transformer): :func:`attention_scale`.
- residuals    :func:`residual`: ``x + mult.residual · branch`` with mult.residual = m_L^-α, m_L = L/L_base
               (CompleteP, 2505.01618: α = 1; depth-μP, TP-VI: α = ½; 1 when α = 0 or under SP).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class Multipliers:
    """The forward multipliers a plan fixes for one model shape (all 1 under SP, except ``attn_scale``).

    ``attn_scale`` is None when the plan was made without a head dimension (``mupx.plan(head_dim=None)``):
    keep the model's own 1/√d_head then, which is μP's scale as long as d_head does not grow with width."""

    embed: float
    output: float
    attn_scale: float | None
    residual: float


NEUTRAL = Multipliers(
    embed=1.0, output=1.0, attn_scale=1.0, residual=1.0
)  # for building a model to read its shapes


def attention_scale(head_dim: int, base_head_dim: int, mup: bool = True) -> float:
    """μP: √(d_head,0)/d_head (TP-V App. B.1; equals 1/√d_head at the base); SP: 1/√d_head."""
    scale = 1.0 / math.sqrt(head_dim)
    return scale * math.sqrt(base_head_dim / head_dim) if mup else scale


def residual(x: torch.Tensor, branch: torch.Tensor, mult: Multipliers) -> torch.Tensor:
    """A residual add with μP's branch multiplier: ``x + m_L^-α · branch``."""
    return x + mult.residual * branch


class Readout(nn.Module):
    """The output layer: logits = (x · mult) Wᵀ (+ b), W stored ``[vocab, width]`` like ``nn.Linear``.

    ``mult`` is the plan's ``multipliers.output``. To tie it to a token embedding, share the tensor as
    nanoGPT does (``embedding.weight = readout.weight``): the plan then lists it once, under its first name,
    with the embedding's role (TP-V Table 8 gives tied input and output weights the same rules)."""

    def __init__(self, width: int, vocab_size: int, mult: float, bias: bool = False):
        super().__init__()
        self.mult = mult
        self.weight = nn.Parameter(torch.empty(vocab_size, width))
        if not self.weight.is_meta:  # on meta (a shape model) normal_ would import torch._dynamo: ~3 s
            nn.init.normal_(
                self.weight, std=0.02
            )  # a usable default; plan.apply_init draws it as the plan says
        self.bias = nn.Parameter(torch.zeros(vocab_size)) if bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x * self.mult, self.weight, self.bias)


class AttentionLogits(nn.Identity):
    """An optional probe for the coordinate check: pass ``q·kᵀ·scale`` through it when ``watched`` (a forward
    hook is attached), so the check can record the attention logits that a fused attention kernel never
    materialises. Costs nothing when nobody watches."""

    @property
    def watched(self) -> bool:
        return bool(self._forward_hooks)
