"""A sweep is a folder of runs: ``sweep.yaml`` (the spec), ``runs/<run id>/`` (one run folder each, as
``mupx train`` writes it), ``logs/`` and ``sweep.json`` — derived from the run folders, written
atomically, versioned and validated when read."""

from __future__ import annotations

import json
import platform
import socket
import time
from pathlib import Path

import yaml

from ..errors import MupxError
from ..io import atomic_write_json, atomic_write_text
from .grid import SweepSpec

SCHEMA_VERSION = 1
FINISHED = ("completed", "diverged")  # results a rerun keeps; failed and unfinished runs run again


def spec_path(folder: Path) -> Path:
    return folder / "sweep.yaml"


def write_spec(folder: Path, spec: SweepSpec) -> None:
    atomic_write_text(spec_path(folder), yaml.safe_dump(spec.to_json(), sort_keys=False))


def read_spec(folder: Path) -> SweepSpec:
    try:
        return SweepSpec.from_json(yaml.safe_load(spec_path(folder).read_text()))
    except (OSError, TypeError, KeyError, yaml.YAMLError) as e:
        raise MupxError(
            f"cannot read the sweep spec {spec_path(folder)}: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
        ) from None


def read_result(run_dir: Path) -> dict | None:
    """The run's result.json, or None when the run has not finished (or the file is unreadable)."""
    try:
        return json.loads((run_dir / "result.json").read_text())
    except (OSError, ValueError):
        return None


def record(run_id: str, axes: dict, result: dict | None) -> dict:
    """One entry of sweep.json's ``runs``: the run's axes (param, width, depth, steps, tokens, batch, lr,
    seed, hp: where the run sits in the grid, whatever it trained) and outcome (the fit's input), with the
    tokens the run trained itself (``tokens_trained``: a branch only its decay) and the branch it took
    (``branch``: the trunk's checkpoint and step, or None)."""
    status = result["status"] if result else "pending"
    loss = None
    if result and status == "completed":
        loss = (
            result.get("val_loss") if result.get("val_loss") is not None else result.get("final_train_loss")
        )
    keep = (
        "final_train_loss",
        "val_loss",
        "first_loss",
        "tokens_trained",
        "branch",
        "wall_time_s",
        "tokens_per_s",
        "reason",
    )
    return {
        "run_id": run_id,
        **axes,
        "status": status,
        "loss": loss,
        **{k: (result or {}).get(k) for k in keep},
    }


def write_sweep_json(
    folder: Path, spec: SweepSpec, runs: list[dict], fits: dict, command: list[str], cost: dict | None = None
) -> dict:
    """sweep.json: the spec, the run records, the fits and, for a horizon sweep, ``cost`` (tokens trained
    with branched horizons against independent runs; :meth:`mupx.sweep.runner.Sweep.cost`)."""
    doc = {
        "schema_version": SCHEMA_VERSION,
        "name": spec.name,
        "updated": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "command": command,
        "machine": {
            "host": socket.gethostname(),
            "platform": platform.platform(),
            "python": platform.python_version(),
        },
        "spec": spec.to_json(),
        "runs": runs,
        "fits": fits,
        "cost": cost,
    }
    atomic_write_json(folder / "sweep.json", doc)
    return doc


def load_sweep_json(path: Path) -> dict:
    """Read and validate sweep.json; a missing, corrupt or foreign-version file is a one-line error."""
    path = Path(path)
    if path.is_dir():
        path = path / "sweep.json"
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        raise MupxError(f"no sweep file at {path}") from None
    except (OSError, ValueError) as e:
        raise MupxError(
            f"{path} is not valid JSON ({type(e).__name__}); rerun `mupx sweep` on its folder to rebuild it"
        ) from None
    if not isinstance(doc, dict) or doc.get("schema_version") != SCHEMA_VERSION:
        version = doc.get("schema_version") if isinstance(doc, dict) else None
        raise MupxError(f"{path} has schema_version {version!r}; this mupx reads version {SCHEMA_VERSION}")
    for key in ("name", "spec", "runs", "fits"):
        if key not in doc:
            raise MupxError(f"{path} is missing the key {key!r}")
    if not isinstance(doc["runs"], list) or not all(
        isinstance(r, dict) and "run_id" in r for r in doc["runs"]
    ):
        raise MupxError(f"{path}: 'runs' must be a list of run records")
    return doc
