"""The models mupx trains: its decoder-only Transformer proxy (GPT-2 and Llama flavours) or the user's own."""

from ..nn import Multipliers
from .build import build_model
from .config import ModelConfig
from .transformer import Transformer

__all__ = ["ModelConfig", "Multipliers", "Transformer", "build_model"]
