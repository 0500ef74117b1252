"""Building the model a run trains: mupx's Transformer, the user's class named by ``model._target_`` (as
Hydra's ``_target_``: ``pkg.module.Class`` on the Python path, called with the arguments ``model.args``
maps), or a Python factory ``model_fn(width, depth, mult)`` handed over by the API."""

from __future__ import annotations

import dataclasses
import importlib
import inspect

from torch import nn

from ..errors import MupxError
from ..nn import Multipliers
from .config import ModelConfig
from .transformer import Transformer


def build_model(cfg: ModelConfig, vocab_size: int, context: int, mult: Multipliers) -> nn.Module:
    """The model of ``cfg`` with the forward multipliers ``mult`` (on the current default device)."""
    if cfg.model_fn is not None:
        model = cfg.model_fn(cfg.width, cfg.depth, mult)
        what = f"model_fn {getattr(cfg.model_fn, '__qualname__', cfg.model_fn)!r}"
    elif cfg._target_ is None:
        return Transformer(cfg, vocab_size, context, mult)
    else:
        model = instantiate(cfg, constructor_args(cfg, vocab_size, context, mult))
        what = f"model._target_ {cfg._target_}"
    if not isinstance(model, nn.Module):
        raise MupxError(f"{what} returned a {type(model).__name__}, not a torch.nn.Module")
    return model


def constructor_args(cfg: ModelConfig, vocab_size: int, context: int, mult: Multipliers) -> dict[str, tuple]:
    """Constructor argument -> (the model.args key that maps it, value)."""
    if cfg.args.heads is not None and cfg.head_dim is None:
        raise MupxError("model.args.heads needs model.head_dim (heads = model.width / model.head_dim)")
    values = {
        "width": cfg.width, "depth": cfg.depth, "vocab": vocab_size, "context": context,
        "heads": cfg.width // cfg.head_dim if cfg.head_dim else None, "head_dim": cfg.head_dim, "multipliers": mult,
    }  # fmt: skip
    out: dict[str, tuple] = {}
    for field in dataclasses.fields(cfg.args):
        arg = getattr(cfg.args, field.name)
        if arg is None:
            continue
        if arg in out:
            raise MupxError(
                f"model.args.{out[arg][0]} and model.args.{field.name} both name the constructor argument {arg!r}"
            )
        out[arg] = (field.name, values[field.name])
    return out


def locate(target: str):
    """The object at ``pkg.module.Class``."""
    module_name, _, attr = target.rpartition(".")
    if not module_name:
        raise MupxError(f"model._target_ {target!r} must be a dotted path like pkg.module.Class")
    try:
        module = importlib.import_module(module_name)
    except Exception as e:  # a missing module, or an error inside it
        first = str(e).splitlines()[0] if str(e) else ""
        raise MupxError(
            f"model._target_ {target!r} cannot be imported ({type(e).__name__}: {first}); it must be pkg.module.Class "
            "on the Python path (e.g. PYTHONPATH=.)"
        ) from None
    if not hasattr(module, attr):
        raise MupxError(f"model._target_ {target!r} cannot be imported: module {module_name} has no {attr!r}")
    return getattr(module, attr)


def instantiate(cfg: ModelConfig, args: dict[str, tuple]) -> nn.Module:
    """Call ``model._target_`` with ``args``, after checking them against its signature."""
    target = cfg._target_
    cls = locate(target)
    try:
        params = inspect.signature(cls).parameters
    except (TypeError, ValueError):  # no signature to check (a builtin): the call itself will tell
        params = None
    if params is not None and not any(p.kind is p.VAR_KEYWORD for p in params.values()):
        accepted = [n for n, p in params.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
        for arg, (key, _) in args.items():
            if arg not in accepted:
                raise MupxError(
                    f"model._target_ {target} has no constructor argument {arg!r} (from model.args.{key}; its "
                    f"arguments: {', '.join(accepted) or 'none'}); set model.args.{key} to one of them or null"
                )
        for name, p in params.items():
            if (
                p.default is p.empty
                and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
                and name not in args
            ):
                raise MupxError(
                    f"model._target_ {target} needs the constructor argument {name!r}, which no model.args key maps "
                    f"(mupx passes: {', '.join(args) or 'nothing'}); map it or give it a default"
                )
    try:
        return cls(**{arg: value for arg, (_, value) in args.items()})
    except MupxError:
        raise
    except Exception as e:
        first = str(e).splitlines()[0] if str(e) else ""
        raise MupxError(f"model._target_ {target} failed to build: {type(e).__name__}: {first}") from None
