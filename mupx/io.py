"""Atomic file writes: write to a temporary file in the same folder, fsync, then rename over the target.

A reader therefore sees either the old file or the whole new one, never a half-written file, even if
the writer is killed. A write that fails (a full disk, a path through a file) is a one-line MupxError.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from .errors import MupxError


def check_folder(path: str | os.PathLike, what: str = "--out") -> None:
    """Fail early, before any work, unless ``path`` is a folder or can be created as one: neither it nor
    its nearest existing parent may be a file."""
    path = Path(path)
    for p in (path, *path.parents):
        if p.exists():
            if not p.is_dir():
                raise MupxError(
                    f"{what} {path} exists and is not a folder"
                    if p == path
                    else f"{what} {path} cannot be created: {p} is a file, not a folder"
                )
            return


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600; a result file gets the usual permissions
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(e, OSError):
            raise MupxError(f"cannot write {path}: {e.strerror or e}") from None
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_files(folder: str | os.PathLike, files: dict[str, bytes | str]) -> None:
    """Write several files into ``folder``, each atomically; if a write fails (a full disk) and this call
    created the folder, the folder is removed, so no half-written output folder is left behind."""
    folder = Path(folder)
    created = not folder.exists()
    try:
        for name, data in files.items():
            atomic_write_bytes(folder / name, data.encode("utf-8") if isinstance(data, str) else data)
    except MupxError:
        if created:
            shutil.rmtree(folder, ignore_errors=True)
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def json_text(obj: Any) -> str:
    """The JSON mupx writes: indented, sorted keys, numpy/torch scalars and paths as plain values."""
    return json.dumps(obj, indent=2, sort_keys=True, default=_jsonable) + "\n"


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    atomic_write_text(path, json_text(obj))


def _jsonable(obj: Any) -> Any:
    if hasattr(obj, "item"):  # numpy / torch scalars
        return obj.item()
    if isinstance(obj, (set, tuple)):
        return list(obj)
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def append_jsonl(path: str | os.PathLike, row: dict) -> None:
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(row, default=_jsonable) + "\n")
