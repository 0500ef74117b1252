"""The decoder-only Transformer proxy (GPT-2 and Llama flavours)."""

from .transformer import ModelConfig, Multipliers, Transformer

__all__ = ["ModelConfig", "Multipliers", "Transformer"]
