"""mupx: μP hyperparameter transfer, as a command-line runner and a Python API.

The API (README "Your own model"; loaded on first use, so ``mupx`` on the command line starts fast):

- ``mupx.plan(model, base, optimizer=..., **settings)`` or ``mupx.plan(model_fn, width=, depth=, base_width=)``
  -> :class:`Plan` (``plan.param_groups(model)``, ``plan.apply_init(model)``, ``plan.optimizer_for(model)``,
  ``plan.check(optimizer, model)``, ``plan.multipliers``);
- ``mupx.coord_check(model_fn, widths=... | depths=...)``: the pass/fail gate of ``mupx coord-check``;
- forward building blocks: :class:`Multipliers`, :class:`Readout`, :func:`residual`, :func:`attention_scale`,
  :class:`AttentionLogits`;
- role maps: :class:`RoleMap`, :class:`Rule`, ``ROLE_MAPS``; base shapes files: ``save_shapes``, ``load_shapes``.
"""

__version__ = "0.1.0"

_EXPORTS = {
    "plan": "api", "coord_check": "api", "save_shapes": "api", "load_shapes": "api",
    "Plan": "scaling.plan", "PlanRow": "scaling.plan",
    "RoleMap": "scaling.roles", "Rule": "scaling.roles", "Role": "scaling.roles", "ROLE_MAPS": "scaling.roles",
    "Multipliers": "nn", "Readout": "nn", "residual": "nn", "attention_scale": "nn", "AttentionLogits": "nn",
    "MupxError": "errors",
}  # fmt: skip

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'mupx' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
