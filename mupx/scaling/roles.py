"""Parameter roles, assigned from a parameter's name and shape (no attributes on tensors).

Roles follow TP-V App. B (matrix-like / vector-like by the number of width-like dimensions):

- ``input``: token and learned position embeddings, stored ``[vocab, width]``: fan_in = vocab (fixed),
  fan_out = width.
- ``hidden``: every other matrix (attention q/k/v/o, MLP up/gate/down), stored ``[fan_out, fan_in]``.
- ``output``: the unembedding ``lm_head.weight`` ``[vocab, width]``: fan_in = width.
- ``vector``: biases and norm gains: fan_in = 1, fan_out = their length.

A tied embedding is one tensor used as input and output; it keeps the ``input`` role, which under
TP-V Table 8 has the same init and learning-rate rule as the output role (see rules.py).
"""

from __future__ import annotations

import re
from enum import Enum

from ..errors import MupxError


class Role(str, Enum):
    INPUT = "input"
    HIDDEN = "hidden"
    OUTPUT = "output"
    VECTOR = "vector"

    def __str__(self) -> str:
        return self.value


# First match wins (torchtitan-style); anything else is classified by its number of dimensions.
NAME_ROLES: tuple[tuple[str, Role], ...] = (
    (r"(^|\.)(tok_emb|pos_emb)\.weight$", Role.INPUT),
    (r"(^|\.)lm_head\.weight$", Role.OUTPUT),
)

_LAYER = re.compile(r"^blocks\.\d+\.")


def role_of(name: str, shape: tuple[int, ...]) -> Role:
    for pattern, role in NAME_ROLES:
        if re.search(pattern, name):
            return role
    if len(shape) <= 1:
        return Role.VECTOR
    if len(shape) == 2:
        return Role.HIDDEN
    raise MupxError(f"parameter {name} has shape {tuple(shape)}: mupx plans 1-D and 2-D tensors only")


def fans(role: Role, shape: tuple[int, ...]) -> tuple[int, int]:
    """(fan_in, fan_out) of a tensor in its role's layout."""
    if role is Role.VECTOR:
        return 1, (shape[0] if shape else 1)
    if role is Role.INPUT:
        return shape[0], shape[1]
    return shape[1], shape[0]


def in_block(name: str) -> bool:
    """Whether the tensor lives inside a residual block (and so takes the depth rules)."""
    return bool(_LAYER.match(name))


def layer_agnostic(name: str) -> str:
    """``blocks.7.attn.q.weight`` -> ``blocks.*.attn.q.weight``: the key for looking up base shapes."""
    return _LAYER.sub("blocks.*.", name)
