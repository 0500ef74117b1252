"""One decoder-only Transformer with two flavours chosen by config.

- ``gpt2``: LayerNorm, GELU MLP (``ffn_mult`` × width, 4 by default), learned positions, optional tied
  embeddings.
- ``llama``: RMSNorm, SwiGLU MLP, rotary positions (RoPE), untied by default.

Width grows through the number of heads at a fixed ``head_dim`` (heads = width / head_dim). Every scale
that μP touches in the forward pass is an explicit multiplier set by the plan (:class:`Multipliers`):
the embedding multiplier, the output-logit multiplier, the attention scale passed to
``F.scaled_dot_product_attention(scale=...)`` and the residual-branch multiplier. Initialisation is not
done here: :func:`mupx.scaling.apply_init` draws every tensor from the plan.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import MupxError


@dataclass(frozen=True)
class ModelConfig:
    flavour: Literal["gpt2", "llama"]
    width: int
    depth: int
    head_dim: int
    ffn_mult: float
    tie_embeddings: bool
    bias: bool
    zero_init_readout: bool
    zero_init_query: bool
    norm_eps: float

    def __post_init__(self):
        if self.head_dim <= 0:
            raise MupxError(f"model.head_dim must be a positive integer, got {self.head_dim}")
        if self.width <= 0 or self.width % self.head_dim:
            raise MupxError(
                f"model.width {self.width} is not a positive multiple of model.head_dim {self.head_dim} "
                f"(allowed widths: {self.head_dim}, {2 * self.head_dim}, {3 * self.head_dim}, ...)"
            )
        if self.depth <= 0:
            raise MupxError(f"model.depth must be a positive integer, got {self.depth}")
        if self.ffn_mult <= 0:
            raise MupxError(f"model.ffn_mult must be > 0, got {self.ffn_mult}")
        if self.norm_eps <= 0:
            raise MupxError(f"model.norm_eps must be > 0, got {self.norm_eps}")
        if self.tie_embeddings and self.zero_init_readout:
            raise MupxError(
                "model.zero_init_readout needs an untied readout: with model.tie_embeddings=true the readout is "
                "the embedding, which cannot start at zero (set one of them to false)"
            )

    @property
    def n_heads(self) -> int:
        return self.width // self.head_dim

    @property
    def ffn_dim(self) -> int:
        return max(1, round(self.ffn_mult * self.width))


@dataclass(frozen=True)
class Multipliers:
    """Forward multipliers fixed by the plan (all 1 except ``attn_scale`` = 1/√head_dim under SP)."""

    embed: float
    output: float
    attn_scale: float
    residual: float


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
        # Probe for diagnostics: the attention logits are computed and passed through this identity
        # only when a forward hook is attached to it (SDPA never materialises them).
        self.logits = nn.Identity()

    def forward(self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor] | None) -> torch.Tensor:
        b, t, c = x.shape
        q, k, v = (lin(x).view(b, t, self.n_heads, self.head_dim).transpose(1, 2) for lin in (self.q, self.k, self.v))
        if rope is not None:
            q, k = apply_rope(q, *rope), apply_rope(k, *rope)
        if self.logits._forward_hooks:
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
        self.residual = mult.residual
        self.ln1, self.attn = _norm(cfg), Attention(cfg, mult.attn_scale)
        self.ln2, self.mlp = _norm(cfg), MLP(cfg)

    def forward(self, x: torch.Tensor, rope) -> torch.Tensor:
        x = x + self.residual * self.attn(self.ln1(x), rope)
        return x + self.residual * self.mlp(self.ln2(x))


class Transformer(nn.Module):
    def __init__(self, cfg: ModelConfig, vocab_size: int, context: int, mult: Multipliers):
        super().__init__()
        self.cfg, self.vocab_size, self.context, self.mult = cfg, vocab_size, context, mult
        self.tok_emb = nn.Embedding(vocab_size, cfg.width)
        if cfg.flavour == "gpt2":
            self.pos_emb = nn.Embedding(context, cfg.width)
        else:
            cos, sin = rope_tables(context, cfg.head_dim)
            self.register_buffer("rope_cos", cos, persistent=False)
            self.register_buffer("rope_sin", sin, persistent=False)
        self.blocks = nn.ModuleList(Block(cfg, mult) for _ in range(cfg.depth))
        self.ln_f = _norm(cfg)
        if not cfg.tie_embeddings:
            self.lm_head = nn.Linear(cfg.width, vocab_size, bias=False)

    @property
    def readout_weight(self) -> torch.Tensor:
        return self.tok_emb.weight if self.cfg.tie_embeddings else self.lm_head.weight

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
        logits = F.linear(self.ln_f(x) * self.mult.output, self.readout_weight)
        if targets is None:
            return logits
        return F.cross_entropy(logits.float().view(-1, logits.shape[-1]), targets.reshape(-1))

    def flops_per_token(self, seq_len: int) -> float:
        """Training FLOPs per token: 6·N (matmul params) + 12·L·T·width for attention (PaLM App. B)."""
        lookups = {"pos_emb.weight"} | (set() if self.cfg.tie_embeddings else {"tok_emb.weight"})
        n = sum(p.numel() for name, p in self.named_parameters() if p.ndim == 2 and name not in lookups)
        return 6.0 * n + 12.0 * self.cfg.depth * seq_len * self.cfg.width


def attention_scale(head_dim: int, base_head_dim: int, mup: bool) -> float:
    """μP: √(d_head,0)/d_head (TP-V App. B.1; equals 1/√d_head at the base); SP: 1/√d_head."""
    scale = 1.0 / math.sqrt(head_dim)
    return scale * math.sqrt(base_head_dim / head_dim) if mup else scale
