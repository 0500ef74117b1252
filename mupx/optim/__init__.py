"""Optimizers: a registry name -> (options dataclass, builder), the plan's param groups, and the
step-0 check that the optimizer really holds the plan's per-tensor settings.

Adding an optimizer is one implementation file here, one entry in ``scaling/rules.py`` and one
``configs/optimizer/<name>.yaml``.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from ..config import typed
from ..errors import MupxError, choose
from ..scaling.plan import Plan


@dataclass(frozen=True)
class OptimizerSpec:
    """An optimizer's module, its options dataclass and its builder, imported on first use (some pull
    in heavy dependencies: pytorch_optimizer, torch._dynamo)."""

    module: str
    options_name: str
    build_name: str
    summary: str

    @property
    def options(self) -> type:
        return getattr(importlib.import_module(self.module, __name__), self.options_name)

    @property
    def build(self) -> Callable[[list[dict], Any], torch.optim.Optimizer]:
        return getattr(importlib.import_module(self.module, __name__), self.build_name)


REGISTRY: dict[str, OptimizerSpec] = {
    "sgd": OptimizerSpec(".builtin", "SGDOptions", "build_sgd", "torch.optim.SGD (momentum)"),
    "adamw": OptimizerSpec(".builtin", "AdamWOptions", "build_adamw", "torch.optim.AdamW"),
    "adopt": OptimizerSpec(
        ".adopt", "AdoptOptions", "build_adopt", "ADOPT with update clipping (pytorch_optimizer)"
    ),
    "lamb": OptimizerSpec(".lamb", "LambOptions", "build_lamb", "LAMB without the ||W|| clamp (own)"),
    "sophia": OptimizerSpec(
        ".sophia", "SophiaOptions", "build_sophia", "SophiaG with a Gauss-Newton-Bartlett phase (own)"
    ),
    "shampoo": OptimizerSpec(
        ".shampoo", "ShampooOptions", "build_shampoo", "Shampoo on hidden matrices, AdamW elsewhere (own)"
    ),
    "soap": OptimizerSpec(
        ".soap", "SOAPOptions", "build_soap", "SOAP on hidden matrices, AdamW elsewhere (own)"
    ),
    "muon": OptimizerSpec(
        ".muon", "MuonOptions", "build_muon", "Muon on hidden matrices, AdamW elsewhere (own)"
    ),
    "muonpp": OptimizerSpec(
        ".muonpp", "MuonppOptions", "build_muonpp", "Muon++: update spectral norm held at its target (own)"
    ),
}


def parse_options(section: dict) -> tuple[str, Any]:
    """(name, typed options) from the composed ``optimizer`` config section."""
    section = dict(section)
    name = section.pop("name", None)
    if name not in REGISTRY:
        raise choose("optimizer", name, REGISTRY)
    return name, typed(REGISTRY[name].options, section, "optimizer")


class PlanMismatchError(MupxError):
    """The optimizer's real per-group settings differ from the plan: μP would silently be off."""


def param_groups(model: torch.nn.Module, plan: Plan) -> list[dict]:
    """One param group per distinct (update, settings), each listing its parameter names."""
    params = dict(model.named_parameters())
    groups: dict[tuple, dict] = {}
    for row in plan.rows:
        settings = row.group_settings()
        key = (row.update, tuple(sorted(settings.items())))
        group = groups.setdefault(key, {"params": [], "names": [], "update": row.update, **settings})
        group["params"].append(params[row.name])
        group["names"].append(row.name)
    return list(groups.values())


def build_optimizer(model: torch.nn.Module, plan: Plan, name: str, options: Any) -> torch.optim.Optimizer:
    return REGISTRY[name].build(param_groups(model, plan), options)


def check_against_plan(
    optimizer: torch.optim.Optimizer, model: torch.nn.Module, plan: Plan, lr_factor: float
) -> None:
    """Raise PlanMismatchError unless every parameter sits in exactly one group whose lr (= plan lr ×
    the schedule's current factor), weight decay, ε and other planned keys equal its plan row."""
    names = {id(p): n for n, p in model.named_parameters()}
    seen: dict[str, int] = {}
    for gi, group in enumerate(_groups(optimizer)):
        for p in group["params"]:
            name = names.get(id(p))
            if name is None:
                raise PlanMismatchError(f"optimizer group {gi} holds a tensor that is not a model parameter")
            if name in seen:
                raise PlanMismatchError(f"parameter {name} is in optimizer groups {seen[name]} and {gi}")
            seen[name] = gi
            row = plan.row(name)
            expected = row.group_settings()
            expected["lr"] = row.lr * lr_factor
            if "initial_lr" in group:
                expected["initial_lr"] = row.lr
            for key, want in expected.items():
                got = group.get(key)
                got = float(got) if isinstance(got, (int, float, torch.Tensor)) else got
                if got is None or not math.isclose(got, want, rel_tol=1e-6, abs_tol=1e-30):
                    raise PlanMismatchError(
                        f"optimizer group {gi} has {key}={got} for {name}, but the plan says {want:.6g}: μP would be off"
                    )
    missing = [r.name for r in plan.rows if r.name not in seen]
    if missing:
        raise PlanMismatchError(f"parameter {missing[0]} is in no optimizer group ({len(missing)} missing)")


def _groups(optimizer: torch.optim.Optimizer) -> list[dict]:
    """All param groups, including those of a hybrid optimizer's inner optimizers."""
    return list(optimizer.param_groups)


def group_settings(optimizer: torch.optim.Optimizer) -> list[dict]:
    """The optimizer's real per-group settings (JSON-able), as saved in every run's groups.json."""
    rows = []
    for group in _groups(optimizer):
        row = {k: v for k, v in group.items() if k != "params"}
        rows.append({k: (float(v) if isinstance(v, torch.Tensor) else v) for k, v in row.items()})
    return rows
