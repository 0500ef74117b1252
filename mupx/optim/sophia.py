"""SophiaG (Liu et al. 2023, arXiv 2305.14342, Alg. 3) with the Gauss–Newton–Bartlett (GNB) Hessian
estimate run by the training loop; our own implementation.

Per tensor, with h a diagonal Hessian estimate and N the number of tokens in the estimating batch:

  GNB phase (every ``hessian_every`` steps, before the step's forward pass; ``mupx.train``):
      sample labels ŷ ~ softmax(model(x)), backpropagate the mean loss on ŷ, then ``update_hessian(N)``:
      h ← β2·h + (1 − β2)·N·g⊙g       (N·g⊙g turns the mean-loss gradient into a per-token estimate)
  step:
      m ← β1·m + (1 − β1)·g
      p ← p·(1 − lr·wd)                 (decoupled decay)
      p ← p − lr·sign(m)·min(|m| / (ρ·h + ε), 1)

The N factor is the official code's ``bs`` (there it multiplies ρ·h in the step; here it enters h, the
same thing for a fixed batch). ε is the param group's ``eps``: the official code hard-codes 1e-15, and
``sophia-opt`` copies it, so μP could not scale it. ``pytorch_optimizer.SophiaH`` (Hutchinson) needs
``backward(create_graph=True)``, which fails under DDP and torch.compile (optimizer survey §5.2/§5.4),
hence our own.

Schedule of the estimate: ``hessian_due()`` is true at steps 0, k, 2k, ... (k = ``hessian_every``), so
h is estimated before the first update. The official recipe estimates at ``iter % k == k − 1``, after
that iteration's step, so its first k updates run with h = 0, i.e. ratio |m|/ε clipped to 1: pure
sign-momentum steps. Both start with mostly clipped (sign) steps, as h has no bias correction (also as
in the official code). The step count is each param group's ``step``, saved in the state dict, so the
schedule resumes where it stopped.

μP (rules.py ``sophia``): every entry of the update is at most lr, as for sign descent, so Sophia takes
AdamW's lr rules (2603.00541 App. C.8). ε is added to ρ·h, a squared-gradient quantity, so its
multiplier is the square of Adam's ε multiplier. ρ is not scaled, so |m|/(ρ·h) ∝ 1/(gradient entry
size) grows with width: wider models clip more entries to sign steps (measured: the median ratio of
hidden matrices grew 4–9× from width 64 to 256 under μP).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..errors import MupxError
from .builtin import check_betas, check_common


@dataclass(frozen=True)
class SophiaOptions:
    lr: float
    betas: tuple[float, float]
    rho: float
    eps: float
    hessian_every: int
    weight_decay: float

    def __post_init__(self):
        check_common(self.lr, self.weight_decay)
        check_betas(self.betas)
        if self.rho <= 0:
            raise MupxError(f"optimizer.rho must be > 0, got {self.rho}")
        if self.eps <= 0:
            raise MupxError(f"optimizer.eps must be > 0 (it keeps |m|/(rho*h + eps) finite), got {self.eps}")
        if self.hessian_every < 1:
            raise MupxError(
                f"optimizer.hessian_every must be >= 1 (steps between estimates), got {self.hessian_every}"
            )


class SophiaG(torch.optim.Optimizer):
    """SophiaG; the training loop calls ``hessian_due()`` before each step and, when due, runs the GNB
    backward pass and ``update_hessian(n_tokens)`` (see ``mupx.train.Trainer.hessian_phase``)."""

    def __init__(self, params, lr, betas, rho, eps, weight_decay, hessian_every: int):
        defaults = {"lr": lr, "betas": betas, "rho": rho, "eps": eps, "weight_decay": weight_decay}
        super().__init__(params, defaults)
        self.hessian_every = hessian_every
        for group in self.param_groups:
            group.setdefault("step", 0)  # steps taken; in the state dict, so the schedule resumes

    def hessian_due(self) -> bool:
        """Whether the training loop should run the GNB phase before this step."""
        return self.param_groups[0]["step"] % self.hessian_every == 0

    def _state(self, p: torch.Tensor) -> dict:
        state = self.state[p]
        if not state:
            state["exp_avg"] = torch.zeros_like(p)
            state["hessian"] = torch.zeros_like(p)
        return state

    @torch.no_grad()
    def update_hessian(self, n_tokens: int) -> None:
        """Fold the current gradients (of the loss on sampled labels) into the Hessian EMA."""
        for group in self.param_groups:
            beta2 = group["betas"][1]
            for p in group["params"]:
                if p.grad is None:
                    continue
                h = self._state(p)["hessian"]
                h.mul_(beta2).addcmul_(p.grad, p.grad, value=(1 - beta2) * n_tokens)

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            lr, wd, eps, rho = group["lr"], group["weight_decay"], group["eps"], group["rho"]
            beta1 = group["betas"][0]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self._state(p)
                m = state["exp_avg"].lerp_(p.grad, 1 - beta1)
                ratio = (m.abs() / (rho * state["hessian"] + eps)).clamp_(max=1)
                if wd:
                    p.mul_(1 - lr * wd)
                p.addcmul_(m.sign(), ratio, value=-lr)
            group["step"] += 1
        return loss


def build_sophia(groups: list[dict], o: SophiaOptions) -> torch.optim.Optimizer:
    return SophiaG(groups, o.lr, o.betas, o.rho, o.eps, o.weight_decay, o.hessian_every)
