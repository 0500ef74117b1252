"""Hydra composition and typed validation of mupx configs.

The Typer commands turn flags into Hydra overrides and call :func:`compose` (Hydra's compose API, not
``@hydra.main``, which fights torchrun: hydra #2038). Each config section is then checked into a typed
dataclass by :func:`typed`, so a bad value is reported as one line naming the key, the value and what is
allowed.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.resources
import json
import re
import types
import typing
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

from omegaconf import DictConfig, OmegaConf

from .errors import MupxError, choose

GROUPS = ("model", "optimizer", "param", "data", "train", "tracking")


def config_dir() -> Path:
    """The folder holding config.yaml and the groups, found through the installed package."""
    return Path(str(importlib.resources.files("mupx.configs")))


def choices(group: str) -> list[str]:
    return sorted(p.stem for p in (config_dir() / group).glob("*.yaml"))


def split_override(override: str) -> tuple[str, str]:
    if "=" not in override:
        raise MupxError(f"bad override {override!r}: expected key=value, e.g. train.steps=100")
    key, value = override.split("=", 1)
    return key.strip(), value.strip()


def compose(overrides: list[str] | None = None) -> DictConfig:
    """Compose configs/config.yaml with Hydra overrides; unknown names and keys are one-line errors."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    overrides = list(overrides or [])
    group_overrides, key_overrides = [], []
    for ov in overrides:
        key, value = split_override(ov)
        if key.startswith("+"):
            _refuse_append(key[1:], ov)
        if key.lstrip("+~") in GROUPS:
            if value not in choices(key.lstrip("+~")):
                raise choose(key.lstrip("+~"), value, choices(key.lstrip("+~")))
            group_overrides.append(ov)
        else:
            key_overrides.append(ov)
    try:
        with initialize_config_dir(config_dir=str(config_dir()), version_base=None, job_name="mupx"):
            try:
                return hydra_compose(config_name="config", overrides=group_overrides + key_overrides)
            except (HydraException, OmegaConfBaseException):
                # Name the unknown key and what is known there, then fall back to Hydra's message.
                base = hydra_compose(config_name="config", overrides=group_overrides)
                for ov in key_overrides:
                    key, _ = split_override(ov)
                    if not key.startswith(("+", "~")):
                        _check_key(base, key)
                raise
    except (HydraException, OmegaConfBaseException) as e:
        raise MupxError(f"bad config override: {str(e).splitlines()[0]}") from None


def _refuse_append(key: str, override: str) -> None:
    """``+key=value`` adds a key in Hydra; mupx's configs are typed, so an added key is either unknown
    (refused, naming what is known) or already there (set it without the +)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    with initialize_config_dir(config_dir=str(config_dir()), version_base=None, job_name="mupx"):
        base = hydra_compose(config_name="config")
    _check_key(base, key)
    raise MupxError(f"bad override {override!r}: {key} exists; set it without the +, e.g. {override[1:]}")


def _check_key(cfg: DictConfig, key: str) -> None:
    node: Any = cfg
    parts = key.split(".")
    for i, part in enumerate(parts):
        if not isinstance(node, DictConfig) or part not in node:
            where = ".".join(parts[:i]) or "the top level"
            known = ", ".join(sorted(node.keys())) if isinstance(node, DictConfig) else "none"
            raise MupxError(f"unknown config key {key!r} (known keys under {where}: {known})")
        node = node[part]


def to_dict(cfg: DictConfig) -> dict:
    return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]


def config_hash(obj: Any, length: int = 10) -> str:
    """A stable short hash of a JSON-able object (a resolved config): the basis of stable run ids."""
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def typed(cls: type, values: Any, section: str):
    """Build dataclass ``cls`` from a mapping, checking keys and types; errors name ``section.key``."""
    if isinstance(values, DictConfig):
        values = OmegaConf.to_container(values, resolve=True)
    if not isinstance(values, dict):
        raise MupxError(f"{section} must be a mapping, got {values!r}")
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    hints = typing.get_type_hints(cls)
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise MupxError(f"unknown config key {section}.{unknown[0]} (known: {', '.join(sorted(fields))})")
    kwargs = {}
    for name, field in fields.items():
        if name not in values:
            if field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
                raise MupxError(f"missing config key {section}.{name}")
            continue
        kwargs[name] = _coerce(values[name], hints[name], f"{section}.{name}")
    return cls(**kwargs)


def _coerce(value: Any, hint: Any, key: str) -> Any:
    origin, args = get_origin(hint), get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        errors = []
        for a in inner:
            try:
                return _coerce(value, a, key)
            except MupxError as e:
                errors.append(str(e))
        raise MupxError(errors[0])
    if dataclasses.is_dataclass(hint):  # a nested section, e.g. tracking.wandb
        return typed(hint, value, key)
    if origin is Literal:
        if value not in args:
            raise MupxError(f"{key} must be one of {', '.join(map(str, args))}, got {value!r}")
        return value
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise MupxError(f"{key} must be a list, got {value!r}")
        if origin is tuple and args and args[-1] is not Ellipsis and len(args) != len(value):
            raise MupxError(f"{key} must have {len(args)} entries, got {value!r}")
        item = args[0] if args else Any
        return origin(_coerce(v, item, f"{key}[{i}]") for i, v in enumerate(value))
    if hint is bool:
        if not isinstance(value, bool):
            raise MupxError(f"{key} must be true or false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise MupxError(f"{key} must be an integer, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise MupxError(f"{key} must be a number, got {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise MupxError(f"{key} must be a string, got {value!r}")
        return value
    return value


# --- user config files (--config) and config differences -------------------------------------------------

# The key of a composed section that names the group option it came from (data: its source; the hub
# corpora are ``hub`` with their keys set).
GROUP_KEYS = {"model": "flavour", "optimizer": "name", "param": "name", "data": "source"}


def override_value(value: Any) -> str:
    """A value as Hydra's override grammar reads it back unchanged (strings quoted, quotes and the
    backslashes before them escaped)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(override_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ",".join(f"{k}:{override_value(v)}" for k, v in value.items()) + "}"
    text = re.sub(r"(\\*)'", lambda m: m.group(1) * 2 + "\\'", str(value))
    return "'" + re.sub(r"(\\+)$", lambda m: m.group(1) * 2, text) + "'"


def flatten(tree: dict, prefix: str = "") -> dict[str, Any]:
    """{"train": {"steps": 5}} -> {"train.steps": 5} (empty mappings are leaves)."""
    out = {}
    for key, value in tree.items():
        if isinstance(value, dict) and value:
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def config_file_overrides(path: str | Path) -> list[str]:
    """A user config file (``--config``: a team's experiment file, or a run's saved config.yaml) as Hydra
    overrides (see :func:`tree_overrides`)."""
    import yaml

    path = Path(path)
    try:
        tree = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise MupxError(f"--config {path}: no such file") from None
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
        raise MupxError(f"--config {path} is not a readable YAML file ({type(e).__name__})") from None
    if tree is None:
        return []
    if not isinstance(tree, dict):
        raise MupxError(
            f"--config {path} must be a mapping of config keys like a run's config.yaml, got a {type(tree).__name__}"
        )
    if "defaults" in tree:
        raise MupxError(
            f"--config {path}: a Hydra defaults list is not read here; select a group by its section, "
            "e.g. optimizer: muon, or optimizer: {name: muon, lr: 0.01}"
        )
    return tree_overrides(tree)


def tree_overrides(tree: dict) -> list[str]:
    """A config as Hydra overrides: a group selection per section that names its option
    (``optimizer: {name: muon, ...}`` or ``optimizer: muon``), then every key it sets."""
    groups, keys = [], []
    for section, value in tree.items():
        if section in GROUPS and isinstance(value, str):
            groups.append(f"{section}={value}")
            continue
        if section in GROUP_KEYS and isinstance(value, dict) and GROUP_KEYS[section] in value:
            groups.append(f"{section}={value[GROUP_KEYS[section]]}")
        if isinstance(value, dict):
            keys += [f"{k}={override_value(v)}" for k, v in flatten(value, f"{section}.").items()]
        else:
            keys.append(f"{section}={override_value(value)}")
    return groups + keys


def with_config(file: list[str], overrides: list[str]) -> list[str]:
    """A config's overrides (``file``: :func:`config_file_overrides`, :func:`tree_overrides`) followed by
    ``overrides`` (flags and -s, which win). A section of the config whose group a later override selects
    differently does not apply (``--optimizer adamw`` with a file written for muon takes AdamW's
    defaults, not muon's keys)."""
    theirs = dict(split_override(o) for o in file if split_override(o)[0] in GROUPS)
    ours = dict(split_override(o) for o in overrides if split_override(o)[0] in GROUPS)
    other = {g for g in ours if g in theirs and ours[g] != theirs[g]}
    return [o for o in file if split_override(o)[0].split(".")[0] not in other] + list(overrides)


def config_diff(a: dict, b: dict) -> list[str]:
    """The dotted keys whose values differ between two composed configs, as 'key (a -> b)'."""
    fa, fb = flatten(a), flatten(b)
    missing = object()
    out = []
    for key in sorted(fa.keys() | fb.keys()):
        va, vb = fa.get(key, missing), fb.get(key, missing)
        if va != vb:
            out.append(
                f"{key} ({'unset' if va is missing else va!r} -> {'unset' if vb is missing else vb!r})"
            )
    return out
