"""Learning-rate schedules as a factor of each group's planned lr.

The factor multiplies every param group's own lr (``torch.optim.lr_scheduler.LambdaLR`` sets
``lr = initial_lr · factor``), so the plan's per-tensor ratios hold at every step: a scheduler never
overwrites group LRs with one value (the bug that switched μP off in nanotron #404, DeepSpeed #7713).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Schedule:
    """Linear warmup over ``warmup`` of the steps, then constant / cosine / linear decay to
    ``final_frac``, or warmup-stable-decay (``wsd``) with a linear decay over the last ``decay``."""

    kind: str
    steps: int
    warmup: float
    final_frac: float
    decay: float

    def __call__(self, step: int) -> float:
        n_warm = round(self.warmup * self.steps)
        if step < n_warm:
            return (step + 1) / n_warm
        if self.kind == "constant":
            return 1.0
        if self.kind == "wsd":
            n_decay = max(1, round(self.decay * self.steps))
            start = self.steps - n_decay
            if step < start:
                return 1.0
            progress = (step - start + 1) / n_decay
        else:
            progress = (step - n_warm + 1) / max(1, self.steps - n_warm)
        progress = min(1.0, progress)
        if self.kind == "cosine":
            return self.final_frac + (1 - self.final_frac) * 0.5 * (1 + math.cos(math.pi * progress))
        return 1.0 - (1.0 - self.final_frac) * progress  # linear and wsd's decay


def attach(optimizer: torch.optim.Optimizer, schedule: Schedule) -> torch.optim.lr_scheduler.LambdaLR:
    """Scale every group's lr by ``schedule(step)`` relative to its own planned lr."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
