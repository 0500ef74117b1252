"""Checkpoints of one run: everything needed to continue bit-identically (model, optimizer state incl.
preconditioners and Hessian estimates, schedule position, data position, every RNG, loss history).

Written atomically (temporary file, fsync, rename) as ``checkpoints/step-NNNNNNN.pt``, the last K kept;
read with ``torch.load(weights_only=True)``, so a checkpoint can hold tensors, numbers, strings and
containers only — never pickled Python objects. A truncated or corrupt newest checkpoint is skipped for
the one before it. A branch point (``train.branch_points``: where a shorter horizon branches off) is kept as
``checkpoints/branch-NNNNNNN.pt``, outside the rotation and never resumed from.
"""

from __future__ import annotations

import io
import random
import re
from pathlib import Path

import numpy as np
import torch

from .errors import MupxError
from .io import atomic_write_bytes

PATTERN = re.compile(r"^step-(\d{7})\.pt$")
BRANCH = "branch-{step:07d}.pt"


def folder(out: Path) -> Path:
    return Path(out) / "checkpoints"


def rng_state() -> dict:
    """Global RNG states as tensors and plain values (the numpy state is split into its parts)."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    py_version, py_state, py_gauss = random.getstate()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached": float(cached)},
        "python": {"version": py_version, "state": list(py_state), "gauss": py_gauss},
    }  # fmt: skip
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state(
        (n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"])
    )
    p = state["python"]
    random.setstate((p["version"], tuple(p["state"]), p["gauss"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save(out: Path, step: int, state: dict, keep: int, branch: bool = False) -> Path:
    """A checkpoint of step ``step`` (the newest ``keep`` kept), or with ``branch`` the kept branch point."""
    buf = io.BytesIO()
    torch.save(state, buf)
    path = branch_path(out, step) if branch else folder(out) / f"step-{step:07d}.pt"
    atomic_write_bytes(path, buf.getvalue())
    for old in [] if branch else all_checkpoints(out)[:-keep]:
        old.unlink(missing_ok=True)
    return path


def branch_path(out: Path, step: int) -> Path:
    return folder(out) / BRANCH.format(step=step)


def load(path: Path, device: torch.device) -> dict:
    """One checkpoint file; a missing or unreadable one is a one-line error."""
    try:
        return torch.load(path, map_location=device, weights_only=True)
    except FileNotFoundError:
        raise MupxError(f"no checkpoint at {path}") from None
    except Exception as e:  # truncated, corrupt, or not a checkpoint
        raise MupxError(f"{path} is not a readable checkpoint ({type(e).__name__})") from None


def all_checkpoints(out: Path) -> list[Path]:
    d = folder(out)
    if not d.is_dir():
        return []
    return sorted(p for p in d.iterdir() if PATTERN.match(p.name))


def load_latest(out: Path, device: torch.device) -> dict | None:
    """The newest checkpoint that loads; None when there is none. Corrupt ones are skipped (and said)."""
    errors = []
    for path in reversed(all_checkpoints(out)):
        try:
            state = torch.load(path, map_location=device, weights_only=True)
        except Exception as e:  # truncated, corrupt, or not a checkpoint
            errors.append(f"{path.name}: {type(e).__name__}")
            continue
        state["_path"] = str(path)
        state["_skipped"] = errors
        return state
    if errors:
        raise MupxError(
            f"no readable checkpoint in {folder(out)} ({'; '.join(errors)}); remove the folder to start over"
        )
    return None


def has_checkpoint(out: Path) -> bool:
    return bool(all_checkpoints(out))
