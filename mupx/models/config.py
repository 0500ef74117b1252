"""The ``model`` section of a run config: mupx's Transformer (its flavour and shape) or the user's own class
(``model._target_``), the width and depth mupx sweeps, and how parameter names map to μP roles."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from ..errors import MupxError
from ..scaling.roles import RolesConfig


@dataclass(frozen=True)
class TargetArgs:
    """Which constructor argument of ``model._target_`` receives each value mupx sets (None: not passed).

    ``width`` and ``depth`` are the swept ``model.width``/``model.depth``; ``vocab`` the corpus's vocabulary
    size; ``context`` ``train.seq_len``; ``heads`` width / model.head_dim and ``head_dim`` model.head_dim;
    ``multipliers`` the plan's :class:`mupx.Multipliers`, which the model must apply in its forward."""

    width: str | None = "width"
    depth: str | None = "depth"
    vocab: str | None = "vocab_size"
    context: str | None = "context"
    heads: str | None = None
    head_dim: str | None = None
    multipliers: str | None = "mult"


@dataclass(frozen=True)
class ModelConfig:
    flavour: Literal["gpt2", "llama"]
    width: int
    depth: int
    head_dim: int | None  # None: a user model's own attention scale (mult.attn_scale is None then)
    ffn_mult: float
    tie_embeddings: bool
    bias: bool
    zero_init_readout: bool
    zero_init_query: bool
    norm_eps: float
    _target_: str | None = None  # the user's model class, pkg.module.Class; None: mupx's Transformer
    args: TargetArgs = field(default_factory=TargetArgs)
    roles: RolesConfig = field(default_factory=RolesConfig)
    # A Python factory (width, depth, mult) -> nn.Module, set by the API (mupx.coord_check); never in YAML.
    model_fn: Callable | None = field(default=None, compare=False, repr=False)

    def __post_init__(self):
        if self.head_dim is not None and self.head_dim <= 0:
            raise MupxError(
                f"model.head_dim must be a positive integer (or null for your own model), got {self.head_dim}"
            )
        if self.head_dim is not None and (self.width <= 0 or self.width % self.head_dim):
            raise MupxError(
                f"model.width {self.width} is not a positive multiple of model.head_dim {self.head_dim} "
                f"(allowed widths: {self.head_dim}, {2 * self.head_dim}, {3 * self.head_dim}, ...)"
            )
        if self.width <= 0:
            raise MupxError(f"model.width must be a positive integer, got {self.width}")
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
    def name(self) -> str:
        """What a result records as the model: the flavour of mupx's Transformer, or the user's class."""
        return self._target_ or self.flavour

    @property
    def n_heads(self) -> int:
        return self.width // self.head_dim

    @property
    def ffn_dim(self) -> int:
        return max(1, round(self.ffn_mult * self.width))
