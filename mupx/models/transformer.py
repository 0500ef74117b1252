"""One decoder-only Transformer with two flavours chosen by config.

- ``gpt2``: LayerNorm, GELU MLP (``ffn_mult`` × width, 4 by default), learned positions, optional tied
  embeddings.
- ``llama``: RMSNorm, SwiGLU MLP, rotary positions (RoPE), untied by default.

Width grows through the number of heads at a fixed ``head_dim`` (heads = width / head_dim). Every scale
that μP touches in the forward pass is an explicit multiplier set by the plan, applied with the same
building blocks a user's model uses (:mod:`mupx.nn`): the embedding multiplier, the :class:`~mupx.nn.Readout`,
the attention scale passed to ``F.scaled_dot_product_attention(scale=...)`` and the residual-branch
multiplier (:func:`~mupx.nn.residual`). Initialisation is not done here: :func:`mupx.scaling.plan.apply_init`
draws every tensor from the plan.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import MupxError
from ..nn import AttentionLogits, Multipliers, Readout, residual
from .config import ModelConfig
from .contract import next_token_loss


def _norm(cfg: ModelConfig) -> nn.Module:
    if cfg.flavour == "gpt2":
        return nn.LayerNorm(cfg.width, eps=cfg.norm_eps, bias=cfg.bias)
    return nn.RMSNorm(cfg.width, eps=cfg.norm_eps)


def rope_tables(context: int, head_dim: int, theta: float = 10000.0) -> tuple[torch.Tensor, torch.Tensor]:
    """cos/sin tables for rotary embeddings, shape [context, head_dim/2] (Su et al. 2021)."""
    inv_freq = 1.0 / theta ** (torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim)
    angles = torch.outer(torch.arange(context, dtype=torch.float64), inv_freq)
    return angles.cos().float(), angles.sin().float()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate pairs (x[..., :d/2], x[..., d/2:]) of a [B, H, T, d] tensor by position-dependent angles."""
    t = x.shape[-2]
    cos, sin = cos[:t].to(x.dtype), sin[:t].to(x.dtype)
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1)


class Attention(nn.Module):
    def __init__(self, cfg: ModelConfig, scale: float):
        super().__init__()
        w = cfg.width
        self.n_heads, self.head_dim, self.scale = cfg.n_heads, cfg.head_dim, scale
        self.q = nn.Linear(w, w, bias=cfg.bias)
        self.k = nn.Linear(w, w, bias=cfg.bias)
        self.v = nn.Linear(w, w, bias=cfg.bias)
        self.o = nn.Linear(w, w, bias=cfg.bias)
        self.logits = AttentionLogits()  # the coordinate check's probe (SDPA never materialises the logits)

    def forward(self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor] | None) -> torch.Tensor:
        b, t, c = x.shape
        q, k, v = (
            lin(x).view(b, t, self.n_heads, self.head_dim).transpose(1, 2) for lin in (self.q, self.k, self.v)
        )
        if rope is not None:
            q, k = apply_rope(q, *rope), apply_rope(k, *rope)
        if self.logits.watched:
            self.logits(q @ k.transpose(-2, -1) * self.scale)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=self.scale)
        return self.o(y.transpose(1, 2).reshape(b, t, c))


class MLP(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.swiglu = cfg.flavour == "llama"
        self.up = nn.Linear(cfg.width, cfg.ffn_dim, bias=cfg.bias)
        if self.swiglu:
            self.gate = nn.Linear(cfg.width, cfg.ffn_dim, bias=cfg.bias)
        self.down = nn.Linear(cfg.ffn_dim, cfg.width, bias=cfg.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.silu(self.gate(x)) * self.up(x) if self.swiglu else F.gelu(self.up(x))
        return self.down(h)


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig, mult: Multipliers):
        super().__init__()
        self.mult = mult
        self.ln1, self.attn = _norm(cfg), Attention(cfg, mult.attn_scale)
        self.ln2, self.mlp = _norm(cfg), MLP(cfg)

    def forward(self, x: torch.Tensor, rope) -> torch.Tensor:
        x = residual(x, self.attn(self.ln1(x), rope), self.mult)
        return residual(x, self.mlp(self.ln2(x)), self.mult)


class Transformer(nn.Module):
    def __init__(self, cfg: ModelConfig, vocab_size: int, context: int, mult: Multipliers):
        super().__init__()
        if cfg.head_dim is None:
            raise MupxError(
                "model.head_dim is null: mupx's Transformer needs a head dimension (null is for model._target_)"
            )
        self.cfg, self.vocab_size, self.context, self.mult = cfg, vocab_size, context, mult
        self.tok_emb = _embedding(vocab_size, cfg.width)
        if cfg.flavour == "gpt2":
            self.pos_emb = _embedding(context, cfg.width)
        else:
            cos, sin = rope_tables(context, cfg.head_dim)
            self.register_buffer("rope_cos", cos, persistent=False)
            self.register_buffer("rope_sin", sin, persistent=False)
        self.blocks = nn.ModuleList(Block(cfg, mult) for _ in range(cfg.depth))
        self.ln_f = _norm(cfg)
        self.lm_head = Readout(cfg.width, vocab_size, mult.output)
        if cfg.tie_embeddings:  # one tensor, listed once under its first name: tok_emb.weight
            self.tok_emb.weight = self.lm_head.weight

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None) -> torch.Tensor:
        """Logits [B, T, V], or the mean cross-entropy when ``targets`` is given."""
        t = idx.shape[1]
        if t > self.context:
            raise ValueError(f"sequence length {t} exceeds the model context {self.context}")
        x = self.tok_emb(idx)
        rope = None
        if self.cfg.flavour == "gpt2":
            x = x + self.pos_emb(torch.arange(t, device=idx.device))
        else:
            rope = (self.rope_cos, self.rope_sin)
        x = x * self.mult.embed
        for block in self.blocks:
            x = block(x, rope)
        logits = self.lm_head(self.ln_f(x))
        return logits if targets is None else next_token_loss(logits, targets)


def _embedding(n: int, width: int) -> nn.Embedding:
    """An embedding with uninitialised weights (the plan initialises every tensor: apply_init). Its own
    N(0, 1) init would be wasted work, and on the meta device (the plan's shape model) ``normal_`` imports
    torch._dynamo, ~3 s of every mupx command."""
    return nn.Embedding(n, width, _weight=torch.empty(n, width))
