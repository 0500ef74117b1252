"""Muon on the hidden matrices, AdamW on everything else (one optimizer, routed by the plan's role).

Update of a hidden matrix W ∈ R^{fan_out × fan_in} with gradient G, momentum μ, group lr η and weight
decay λ (Keller Jordan, "Muon: an optimizer for hidden layers in neural networks", 2024; the EMA/lerp
form of ``torch.optim.Muon``):

    B ← μ B + (1 − μ) G                          momentum buffer
    M ← (1 − μ) G + μ B    if nesterov, else B
    O ← NS₅(M)                                   ≈ U Vᵀ of M (see ``newton_schulz.py``)
    W ← W (1 − η λ)                              decoupled decay with the group's lr
    W ← W − η · s · O                            s = the shape factor

Shape factors ``s`` (``optimizer.shape_factor``), with fan_out = shape[0], fan_in = shape[1]:

- ``spectral`` √(fan_out/fan_in): O has spectral norm ≈ 1, so η is "spectral norm per update" in the
  RMS→RMS operator norm, ‖ΔW‖_R ≈ η (Yang, Simon & Bernstein's spectral condition; Qiu et al.
  2512.05620 ``muon`` ``(dout/din)**0.5``). The μP default.
- ``original`` √max(1, fan_out/fan_in): Keller's factor (torch's ``adjust_lr_fn="original"``). Differs
  from ``spectral`` only for wide matrices (fan_out < fan_in, e.g. the MLP down-projection), by a
  width-independent constant.
- ``rms`` 0.2·√max(fan_out, fan_in): Moonlight (2502.16982 Eq. 4), matches AdamW's update RMS. Grows
  as √width, so μP scales the hidden lr by fan_in^-1/2 (2603.00541 Tables 1/3).

The tensors the plan sends to ``adamw`` (embeddings, readout, norm gains, biases) take
:func:`~mupx.optim.adam_side.adamw_update` with ``adam_betas`` and the group's lr, ε and decay.

Why our own implementation (``shared/optimizer-survey.md``): ``torch.optim.Muon`` offers only the
``original`` and ``match_rms_adamw`` factors (no √(fan_out/fan_in), no callable), accepts only 2-D
parameters (so a second optimizer would be needed for the rest) and defaults weight decay to 0.1; its
arithmetic is otherwise what we do here, and the tests use it as an oracle (bit-exact with
``shape_factor=original`` and ``ns_dtype=bfloat16``).

What μP needs: the lr, weight decay and ε come from each param group (the plan), never from the
options. Hidden lr multiplier (rules.py ``muon``): 1 for ``spectral``/``original`` (the factor is inside
the update and constant in width at fixed aspect ratio), fan_in^-1/2 for ``rms``; × m_L^(α−1) in depth.
Decay is ``W·(1 − η λ)`` with the group lr η, which already carries μP's multiplier and the schedule
(the shape factor is not in it — the same formula as torch's "unadjusted lr" decay); the plan's coupled
convention keeps η·λ at its base value. Nothing here draws random numbers, and the state holds only
tensors, so DDP ranks stay identical and checkpoints load with ``weights_only=True``.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Literal

import torch

from ..errors import MupxError
from .adam_side import adamw_update
from .builtin import check_betas, check_common
from .newton_schulz import ns_dtype, orthogonalize

SHAPE_FACTORS = ("spectral", "original", "rms")
NS_DTYPES = ("auto", "float32", "bfloat16")


def check_muon_common(o) -> None:
    """Checks shared by Muon and Muon++ options (one-line MupxErrors naming ``optimizer.<key>``)."""
    check_common(o.lr, o.weight_decay)
    if not 0 <= o.momentum < 1:
        raise MupxError(f"optimizer.momentum must be in [0, 1), got {o.momentum}")
    if o.ns_steps < 1:
        raise MupxError(f"optimizer.ns_steps must be a positive integer, got {o.ns_steps}")
    if o.ns_dtype not in NS_DTYPES:
        raise MupxError(f"optimizer.ns_dtype must be one of {', '.join(NS_DTYPES)}, got {o.ns_dtype!r}")
    if o.adam_lr <= 0:
        raise MupxError(f"optimizer.adam_lr must be > 0, got {o.adam_lr}")
    check_betas(o.adam_betas, "optimizer.adam_betas")
    if o.adam_eps < 0:
        raise MupxError(f"optimizer.adam_eps must be >= 0, got {o.adam_eps}")


@dataclass(frozen=True)
class MuonOptions:
    lr: float
    momentum: float
    nesterov: bool
    ns_steps: int
    ns_dtype: Literal["auto", "float32", "bfloat16"]
    shape_factor: Literal["spectral", "original", "rms"]
    weight_decay: float
    adam_lr: float
    adam_betas: tuple[float, float]
    adam_eps: float

    def __post_init__(self):
        check_muon_common(self)
        if self.shape_factor not in SHAPE_FACTORS:
            raise MupxError(
                f"optimizer.shape_factor must be one of {', '.join(SHAPE_FACTORS)}, got {self.shape_factor!r}"
            )


def shape_factor(kind: str, shape: torch.Size) -> float:
    fan_out, fan_in = shape
    if kind == "spectral":
        return math.sqrt(fan_out / fan_in)
    if kind == "original":
        return math.sqrt(max(1, fan_out / fan_in))
    return 0.2 * math.sqrt(max(fan_out, fan_in))


# Option keys that are per-tensor in the plan: read from each group, never from the defaults.
PLANNED = ("lr", "weight_decay", "adam_lr", "adam_eps")


class Muon(torch.optim.Optimizer):
    """Muon for groups with ``update == "muon"``, AdamW for groups with ``update == "adamw"``.

    Every group must carry ``lr`` and ``weight_decay`` (and ``eps`` for AdamW groups), as the plan's
    param groups do. The remaining options (momentum, Nesterov, NS steps and dtype, shape factor, Adam
    betas) become per-group defaults, so they show in ``groups.json`` and in the state dict.
    """

    hidden_update = "muon"

    def __init__(self, groups: list[dict], options):
        defaults = {k: v for k, v in dataclasses.asdict(options).items() if k not in PLANNED}
        super().__init__(groups, defaults)
        for i, group in enumerate(self.param_groups):
            update = group.get("update")
            if update not in (self.hidden_update, "adamw"):
                raise ValueError(
                    f"param group {i} has update {update!r}; expected {self.hidden_update!r} or 'adamw'"
                )
            needed = ("lr", "weight_decay", "eps") if update == "adamw" else ("lr", "weight_decay")
            missing = [k for k in needed if k not in group]
            if missing:
                raise ValueError(
                    f"param group {i} ({update}) has no {missing[0]!r}: the plan sets it per group"
                )
            if update == self.hidden_update and any(p.ndim != 2 for p in group["params"]):
                raise ValueError(f"param group {i} ({update}) holds a tensor that is not a 2-D matrix")

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                if group["update"] == "adamw":
                    betas = tuple(group["adam_betas"])
                    adamw_update(
                        p, p.grad, self.state[p], group["lr"], betas, group["eps"], group["weight_decay"]
                    )
                else:
                    self._hidden_step(p, p.grad, self.state[p], group)
        return loss

    def _hidden_step(self, p: torch.Tensor, grad: torch.Tensor, state: dict, group: dict) -> None:
        if "momentum_buffer" not in state:
            state["momentum_buffer"] = torch.zeros_like(p)
        buf, mu = state["momentum_buffer"], group["momentum"]
        buf.lerp_(grad, 1 - mu)
        update = grad.lerp(buf, mu) if group["nesterov"] else buf
        o = orthogonalize(update, group["ns_steps"], ns_dtype(group["ns_dtype"], p.device))
        lr, wd = group["lr"], group["weight_decay"]
        if wd:
            p.mul_(1 - lr * wd)
        self._apply(p, o, state, group)

    def _apply(self, p: torch.Tensor, o: torch.Tensor, state: dict, group: dict) -> None:
        """W ← W − lr · s · O with the fixed shape factor s."""
        p.add_(o, alpha=-(group["lr"] * shape_factor(group["shape_factor"], p.shape)))


def build_muon(groups: list[dict], options: MuonOptions) -> torch.optim.Optimizer:
    return Muon(groups, options)
