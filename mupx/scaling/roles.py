"""Parameter roles, assigned from a parameter's name and shape by a role map (no attributes on tensors).

Roles follow TP-V App. B (matrix-like / vector-like by the number of width-like dimensions):

- ``input``: token and learned position embeddings, stored ``[vocab, width]``: fan_in = vocab (fixed),
  fan_out = width.
- ``hidden``: every other matrix (attention q/k/v/o, MLP up/gate/down), stored ``[fan_out, fan_in]``.
- ``output``: the unembedding (readout) ``[vocab, width]``: fan_in = width.
- ``vector``: biases and norm gains: fan_in = 1, fan_out = their length.

A **role map** is an ordered list of :class:`Rule` (regex on the name → role and storage layout; the first
match wins, as torchtitan's per-parameter group config) and the pattern of a residual block's name, whose
first group is the block index (tensors inside blocks take the depth rules). A tensor no rule places gets
its role from its shape: 0-D and 1-D → vector, 2-D inside a residual block → hidden. A 2-D tensor outside
every block (an embedding, a readout or a hidden matrix: the shape cannot tell) and a 3-D+ tensor are
one-line errors naming the tensor.

Layouts: ``out_in`` is ``[fan_out, fan_in]`` (``nn.Linear``; the default of hidden and output matrices),
``in_out`` is ``[fan_in, fan_out]`` (``nn.Embedding``'s ``[vocab, width]``, the default of inputs; Hugging
Face GPT-2's ``Conv1D``).

Built-in maps (:data:`ROLE_MAPS`): mupx's own names, nanoGPT (``transformer.wte/wpe``, ``transformer.h.N``,
``lm_head``; litgpt uses the same names), Hugging Face GPT-2 (nanoGPT's names with Conv1D matrices),
Hugging Face Llama-style decoders (``model.embed_tokens``, ``model.layers.N``, ``lm_head``) and torchtitan's
Llama (``tok_embeddings``, ``layers.N``, ``output``). ``auto`` picks one from the names.

A tied embedding is one tensor used as input and output; ``named_parameters`` lists it once, under its
first name (the embedding's), so it keeps the ``input`` role, which under TP-V Table 8 has the same init
and learning-rate rule as the output role (see rules.py).
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from enum import Enum
from typing import Literal

from ..errors import MupxError, choose

Shapes = dict[str, tuple[int, ...]]


class Role(str, Enum):
    INPUT = "input"
    HIDDEN = "hidden"
    OUTPUT = "output"
    VECTOR = "vector"

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class Rule:
    """Tensors whose name matches ``pattern`` (``re.search``) take ``role``, stored in ``layout`` (None: the
    role's default, ``in_out`` for inputs and ``out_in`` for matrices)."""

    pattern: str
    role: Literal["input", "hidden", "output", "vector"]
    layout: Literal["out_in", "in_out"] | None = None

    def __post_init__(self):
        _regex(self.pattern, "role rule pattern")
        if self.role not in set(Role):
            raise choose("role", self.role, [str(r) for r in Role])
        if self.layout not in (None, "out_in", "in_out"):
            raise choose("layout", self.layout, ["out_in", "in_out"])


@dataclass(frozen=True)
class Placement:
    """Where a tensor sits in the plan: its role, fans, and its residual block (prefix, index) or None."""

    role: Role
    fan_in: int
    fan_out: int
    block: tuple[str, int] | None


@dataclass(frozen=True)
class RoleMap:
    """Rules (first match wins) and the residual-block pattern (``re.match``; group 1 = the block index)."""

    name: str
    rules: tuple[Rule, ...]
    block: str

    def __post_init__(self):
        if _regex(self.block, "role map block pattern").groups < 1:
            raise MupxError(
                f"role map block pattern {self.block!r} needs a group for the block index, e.g. '^layers\\.(\\d+)\\.'"
            )

    def extended(self, rules=(), block: str | None = None) -> RoleMap:
        """This map with ``rules`` tried first and, when given, another block pattern."""
        if not rules and block is None:
            return self
        name = f"{self.name}+{len(rules)} rules" if rules else self.name
        return RoleMap(name, tuple(rules) + self.rules, block or self.block)

    def block_of(self, name: str) -> tuple[str, int] | None:
        """(the block's module name, its index) for a tensor inside a residual block, else None."""
        m = re.match(self.block, name)
        if m is None:
            return None
        try:
            return m.group(0).rstrip("."), int(m.group(1))
        except (TypeError, ValueError):
            raise MupxError(
                f"role map {self.name}: block pattern {self.block!r} captured {m.group(1)!r} from {name}, not a block index"
            ) from None

    def relabel(self, name: str, label: str) -> str:
        """``transformer.h.7.attn.c_attn.weight`` -> ``transformer.h.<label>.attn.c_attn.weight``."""
        m = re.match(self.block, name)
        return name if m is None else name[: m.start(1)] + label + name[m.end(1) :]

    def layer_agnostic(self, name: str) -> str:
        """``blocks.7.attn.q.weight`` -> ``blocks.*.attn.q.weight``: the key for looking up base shapes."""
        return self.relabel(name, "*")

    def place(self, name: str, shape: tuple[int, ...]) -> Placement:
        block = self.block_of(name)
        rule = next((r for r in self.rules if re.search(r.pattern, name)), None)
        if len(shape) > 2:
            raise MupxError(
                f"parameter {name} has shape {tuple(shape)}: mupx plans 0-D, 1-D and 2-D tensors only"
            )
        if rule is not None:
            role = Role(rule.role)
        elif len(shape) <= 1:
            role = Role.VECTOR
        elif block is not None:
            role = Role.HIDDEN
        else:
            raise MupxError(
                f"no role rule of map {self.name} places parameter {name} {tuple(shape)}: a matrix outside the "
                f"residual blocks may be an embedding, a readout or a hidden matrix (add a rule, e.g. "
                f"model.roles.rules=[{{pattern: '{re.escape(name)}', role: input}}], or choose another map)"
            )
        if len(shape) < 2:
            if role is not Role.VECTOR:
                raise MupxError(
                    f"role rule makes parameter {name} of shape {tuple(shape)} {role}: only matrices take that role"
                )
            return Placement(role, 1, shape[0] if shape else 1, block)
        layout = (rule and rule.layout) or ("in_out" if role is Role.INPUT else "out_in")
        fan_in, fan_out = (shape[0], shape[1]) if layout == "in_out" else (shape[1], shape[0])
        return Placement(role, fan_in, fan_out, block)

    def recognizes(self, shapes: Shapes) -> bool:
        """Whether some name is in a residual block and some name matches an input rule."""
        inputs = [r.pattern for r in self.rules if r.role == "input"]
        return any(self.block_of(n) for n in shapes) and any(re.search(p, n) for p in inputs for n in shapes)


def _regex(pattern: str, what: str) -> re.Pattern:
    try:
        return re.compile(pattern)
    except (re.error, TypeError) as e:
        raise MupxError(f"{what} {pattern!r} is not a regular expression ({e})") from None


MUPX = RoleMap(
    "mupx",
    (Rule(r"(^|\.)(tok_emb|pos_emb)\.weight$", "input"), Rule(r"(^|\.)lm_head\.weight$", "output")),
    r"^blocks\.(\d+)\.",
)
NANOGPT = RoleMap(
    "nanogpt",
    (Rule(r"^transformer\.(wte|wpe)\.weight$", "input"), Rule(r"^lm_head\.weight$", "output")),
    r"^transformer\.h\.(\d+)\.",
)
HF_GPT2 = RoleMap(
    "hf_gpt2",
    (
        Rule(r"\.(attn\.c_attn|attn\.c_proj|mlp\.c_fc|mlp\.c_proj)\.weight$", "hidden", "in_out"),
        *NANOGPT.rules,
    ),
    NANOGPT.block,
)  # Conv1D stores its weight [fan_in, fan_out]
HF_LLAMA = RoleMap(
    "hf_llama",
    (Rule(r"^model\.embed_tokens\.weight$", "input"), Rule(r"^lm_head\.weight$", "output")),
    r"^model\.layers\.(\d+)\.",
)
TORCHTITAN = RoleMap(
    "torchtitan",
    (Rule(r"^tok_embeddings\.weight$", "input"), Rule(r"^output\.weight$", "output")),
    r"^layers\.(\d+)\.",
)
ROLE_MAPS: dict[str, RoleMap] = {
    "mupx": MUPX,
    "nanogpt": NANOGPT,
    "litgpt": dataclasses.replace(NANOGPT, name="litgpt"),
    "hf_gpt2": HF_GPT2,
    "hf_llama": HF_LLAMA,
    "torchtitan": TORCHTITAN,
}


def detect(shapes: Shapes) -> RoleMap | None:
    """The built-in map that fits the names: the first whose block pattern and an input rule match.
    nanoGPT, litgpt and Hugging Face GPT-2 share their names; HF GPT-2 stores ``attn.c_attn`` as a Conv1D
    ``[d, 3d]``, nanoGPT as an ``nn.Linear`` ``[3d, d]``."""
    for m in (MUPX, HF_LLAMA, TORCHTITAN, NANOGPT):
        if m.recognizes(shapes):
            conv1d = any(
                n.endswith("attn.c_attn.weight") and len(s) == 2 and s[1] == 3 * s[0]
                for n, s in shapes.items()
            )
            return HF_GPT2 if (m is NANOGPT and conv1d) else m
    return None


@dataclass(frozen=True)
class RolesConfig:
    """``model.roles``: a built-in map (or ``auto``), the user's rules tried before its own, and optionally
    the user's residual-block pattern."""

    map: str = "auto"
    rules: tuple[Rule, ...] = ()
    block: str | None = None

    def __post_init__(self):
        if self.map != "auto" and self.map not in ROLE_MAPS:
            raise choose("model.roles.map", self.map, ["auto", *ROLE_MAPS])
        if self.block is not None:
            _regex(self.block, "model.roles.block")


def role_map(roles: str | RoleMap | RolesConfig, shapes: Shapes) -> RoleMap:
    """The role map for a model's ``shapes``: a RoleMap as given, a built-in one by name, or ``auto``."""
    if isinstance(roles, RoleMap):
        return roles
    if isinstance(roles, str):
        roles = RolesConfig(map=roles)
    base = detect(shapes) if roles.map == "auto" else ROLE_MAPS[roles.map]
    if base is None and roles.block is None:
        raise MupxError(
            f"no built-in role map fits these parameter names (the first is {next(iter(shapes), 'none')}; maps: "
            f"{', '.join(ROLE_MAPS)}): name your residual blocks with model.roles.block (e.g. '^layers\\.(\\d+)\\.') "
            "and your embedding and readout with model.roles.rules"
        )
    return (base or RoleMap("user", (), roles.block)).extended(roles.rules, roles.block)
