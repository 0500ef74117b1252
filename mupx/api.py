"""The Python API: μP for a model mupx did not write, through the same plan, optimizers, step-0 check and
coordinate check as the CLI.

    plan = mupx.plan(model_fn, width=1024, depth=12, base_width=256, optimizer="adamw", lr=3e-3, head_dim=64)
    model = model_fn(1024, 12, plan.multipliers)   # the model applies them with mupx.nn's building blocks
    plan.apply_init(model, seed=0)
    opt = plan.optimizer_for(model)                # checked against the plan before it is returned
    mupx.coord_check(model_fn, widths=(64, 128, 256, 512), depth=2, head_dim=16)["verdict"]   # "pass"

``model_fn(width, depth, mult)`` builds the model at a width and depth with the forward multipliers
``mult`` (a :class:`mupx.Multipliers`). Base shapes come from a base model (build it on the meta device:
``with torch.device("meta"): base = GPT(...)``), from a ``{name: shape}`` mapping, or from a shapes file
written by :func:`save_shapes`; nothing is stored on the tensors.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path

import torch

from .config import compose, to_dict, typed
from .errors import MupxError
from .nn import NEUTRAL
from .optim import parse_options
from .scaling.plan import ParamConfig, Plan, plan_from_shapes, shapes_of
from .scaling.roles import Role, RoleMap, Shapes, role_map

ModelFn = Callable[[int, int, object], torch.nn.Module]


def save_shapes(model: torch.nn.Module, path: str | Path) -> Path:
    """Write the parameter shapes of ``model`` (the base model) to a JSON file for :func:`plan`'s ``base``."""
    path = Path(path)
    path.write_text(
        json.dumps({"shapes": {n: list(s) for n, s in shapes_of(model).items()}}, indent=1) + "\n"
    )
    return path


def load_shapes(path: str | Path) -> Shapes:
    """The shapes saved by :func:`save_shapes`."""
    try:
        shapes = json.loads(Path(path).read_text())["shapes"]
        return {str(n): tuple(int(d) for d in s) for n, s in shapes.items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        raise MupxError(
            f"base shapes file {path} is not readable as written by mupx.save_shapes ({type(e).__name__})"
        ) from None


def _shapes(model, what: str) -> Shapes:
    if isinstance(model, torch.nn.Module):
        return shapes_of(model)
    if isinstance(model, (str, Path)):
        return load_shapes(model)
    if isinstance(model, Mapping):
        return {str(n): tuple(s) for n, s in model.items()}
    raise MupxError(
        f"the {what} must be a torch.nn.Module, a {{name: shape}} mapping or a shapes file, got {type(model).__name__}"
    )


def _built(model_fn: ModelFn, width: int, depth: int) -> Shapes:
    with torch.device("meta"):
        return shapes_of(model_fn(width, depth, NEUTRAL))


def settings_for(optimizer: str, param: str, settings: dict) -> tuple[object, ParamConfig]:
    """The optimizer's options and the parameterization: the defaults of ``configs/optimizer/<optimizer>.yaml``
    and ``configs/param/<param>.yaml`` with ``settings`` (keys of either) applied, validated as the CLI does."""
    resolved = to_dict(compose([f"optimizer={optimizer}", f"param={param}"]))
    opt, par = dict(resolved["optimizer"]), dict(resolved["param"])
    for key, value in settings.items():
        section = par if key in par else opt if key in opt else None
        if section is None or key in ("name", "base_width", "base_depth"):
            known = sorted((set(opt) | set(par)) - {"name", "base_width", "base_depth"})
            raise MupxError(
                f"unknown setting {key!r} for {optimizer} under {param} (known: {', '.join(known)})"
            )
        section[key] = value
    _, options = parse_options(opt)
    return options, typed(ParamConfig, par, "param")


def plan(model: torch.nn.Module | Mapping | ModelFn, base: torch.nn.Module | Mapping | str | Path | None = None, *,
         width: int | None = None, depth: int | None = None, base_width: int | None = None,
         base_depth: int | None = None, optimizer: str = "adamw", param: str = "mup", roles: str | RoleMap = "auto",
         head_dim: int | None = None, zero_init_readout: bool = False, zero_init_query: bool = False,
         **settings) -> Plan:  # fmt: skip
    """The μP plan of a model against its base shape: the same :class:`~mupx.scaling.plan.Plan` that
    ``mupx rules`` prints.

    ``model`` is a module (any device, ``meta`` included) or a ``{name: shape}`` mapping, with ``base`` its
    base model (a module, a mapping, or a :func:`save_shapes` file); or a ``model_fn(width, depth, mult)``
    with ``width``/``depth`` and ``base_width`` (``base_depth``: ``depth``), built on the meta device.
    ``roles``: a built-in role map (``auto``, ``mupx``, ``nanogpt``, ``litgpt``, ``hf_gpt2``, ``hf_llama``,
    ``torchtitan``) or a :class:`~mupx.RoleMap`. ``head_dim``: the attention head size, fixed across widths
    (sets ``plan.multipliers.attn_scale``; None leaves the model's own 1/√d_head). ``settings``: the
    optimizer's options and the parameterization's keys, as ``-s optimizer.KEY`` / ``-s param.KEY``
    (``lr=3e-3, weight_decay=0.1, depth_alpha=0.5, output_mult=2``)."""
    if callable(model) and not isinstance(model, torch.nn.Module):
        if width is None or depth is None or base_width is None or base is not None:
            raise MupxError(
                "mupx.plan(model_fn, ...) needs width, depth and base_width (and base_depth, default: depth), not base"
            )
        shapes, base_shapes = _built(model, width, depth), _built(model, base_width, base_depth or depth)
    else:
        if base is None or any(v is not None for v in (width, depth, base_width, base_depth)):
            raise MupxError(
                "mupx.plan(model, base) reads widths and depths from the shapes: give base, not width/depth/base_width/base_depth"
            )
        shapes, base_shapes = _shapes(model, "model"), _shapes(base, "base")
    options, par = settings_for(optimizer, param, settings)
    return plan_from_shapes(
        shapes, base_shapes, role_map(roles, shapes), par, optimizer, options, head_dim=head_dim,
        zero_init_readout=zero_init_readout, zero_init_query=zero_init_query,
    )  # fmt: skip


def coord_check(model_fn: ModelFn, widths: tuple[int, ...] | None = None, depths: tuple[int, ...] | None = None, *,
                width: int = 128, depth: int = 2, optimizer: str = "adamw", param: str = "mup", roles: str = "auto",
                head_dim: int | None = None, steps: int = 5, seeds: int = 2, tolerance: float = 0.5,
                lr: float | None = None, lr_mult: float = 1.0, out: str | Path | None = None,
                overrides: tuple[str, ...] = ()) -> dict:  # fmt: skip
    """``mupx coord-check`` on ``model_fn(width, depth, mult)``: the same runs, gate and files (``out``:
    coord_check.json and .png). Over ``widths`` at ``depth``, or over ``depths`` at ``width``. The data is
    mupx's embedded corpus tokenized to the model's vocabulary size (read from its token embedding, at
    least 257), in sequences of 32 tokens; ``overrides`` are ``-s`` overrides. Returns the result:
    ``result["verdict"]`` is ``"pass"`` or ``"fail"``, ``result["worst"]`` the largest gated slope."""
    from .diagnostics.coord_check import CoordCheckSpec, run_coord_check

    if (widths is None) == (depths is None):
        raise MupxError("mupx.coord_check needs widths or depths (one of them)")
    axis, values = ("width", widths) if widths is not None else ("depth", depths)
    shapes = _built(
        model_fn, values[0] if axis == "width" else width, depth if axis == "width" else values[0]
    )
    roles_map = role_map(roles, shapes)
    vocab = next(
        (p.fan_in for p in (roles_map.place(n, s) for n, s in shapes.items()) if p.role is Role.INPUT), None
    )
    if vocab is None:
        raise MupxError(
            "the model has no token embedding (a tensor with the input role): mupx.coord_check feeds it tokens"
        )
    fixed = f"model.depth={depth}" if axis == "width" else f"model.width={width}"
    own = (f"optimizer={optimizer}", f"param={param}", f"data.vocab_size={vocab}", fixed,
           f"model.head_dim={head_dim if head_dim else 'null'}", f"model.roles.map={roles}")  # fmt: skip
    spec = CoordCheckSpec(axis, tuple(values), steps=steps, seeds=seeds, tolerance=tolerance, lr=lr, lr_mult=lr_mult,
                          overrides=own + tuple(overrides))  # fmt: skip
    return run_coord_check(spec, Path(out) if out is not None else None, model_fn=model_fn)
