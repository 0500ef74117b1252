"""Learning-rate schedules as a factor of each group's planned lr.

The factor multiplies every param group's own lr (``torch.optim.lr_scheduler.LambdaLR`` sets
``lr = initial_lr · factor``), so the plan's per-tensor ratios hold at every step: a scheduler never
overwrites group LRs with one value (the bug that switched μP off in nanotron #404, DeepSpeed #7713).

Warmup-stable-decay (``wsd``, Hägele et al. 2405.18392): linear warmup, a constant stable phase, and a
linear decay over the last ``decay`` fraction of the run. With the warmup given in steps
(``train.warmup_steps``) rather than as a fraction of the run, two wsd runs of different lengths follow
the same factor until the shorter one's decay starts: the shorter run can branch off a checkpoint of the
longer one's stable phase (``train.branch_from``) and continue bit-identically to an independent run.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Schedule:
    """Linear warmup over ``warmup`` of the steps (or ``warmup_steps`` steps when given), then constant /
    cosine / linear decay to ``final_frac``, or warmup-stable-decay (``wsd``) with a linear decay over the
    last ``decay`` of the steps."""

    kind: str
    steps: int
    warmup: float
    final_frac: float
    decay: float
    warmup_steps: int | None = None

    @classmethod
    def of(cls, train) -> Schedule:
        """The schedule of a run's ``train`` config (:class:`mupx.runconfig.TrainConfig`)."""
        return cls(
            train.schedule, train.steps, train.warmup, train.final_lr_frac, train.decay, train.warmup_steps
        )

    @property
    def n_warmup(self) -> int:
        return self.warmup_steps if self.warmup_steps is not None else round(self.warmup * self.steps)

    @property
    def decay_start(self) -> int:
        """wsd: the first step of the decay (the steps before it are warmup or stable)."""
        return self.steps - max(1, round(self.decay * self.steps))

    def __call__(self, step: int) -> float:
        n_warm = self.n_warmup
        if step < n_warm:
            return (step + 1) / n_warm
        if self.kind == "constant":
            return 1.0
        if self.kind == "wsd":
            start = self.decay_start
            if step < start:
                return 1.0
            progress = (step - start + 1) / (self.steps - start)
        else:
            progress = (step - n_warm + 1) / max(1, self.steps - n_warm)
        progress = min(1.0, progress)
        if self.kind == "cosine":
            return self.final_frac + (1 - self.final_frac) * 0.5 * (1 + math.cos(math.pi * progress))
        return 1.0 - (1.0 - self.final_frac) * progress  # linear and wsd's decay


def attach(optimizer: torch.optim.Optimizer, schedule: Schedule) -> torch.optim.lr_scheduler.LambdaLR:
    """Scale every group's lr by ``schedule(step)`` relative to its own planned lr."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
