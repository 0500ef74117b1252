"""The embedded default corpus: the ``.py`` files of the running interpreter's standard library.

It needs no download, is the same on every machine with the same Python version, and is about 12 MB of
text on Python 3.11. Test suites and installed packages are left out. ``corpus_hash`` (recorded in every
run's manifest) pins the exact files, so two runs on different Pythons are told apart.
"""

from __future__ import annotations

import hashlib
import os
import platform
import sysconfig
from pathlib import Path

from .documents import TextList, is_val

EXCLUDED_DIRS = frozenset({"site-packages", "dist-packages", "test", "tests", "idle_test"})


def stdlib_root() -> Path:
    return Path(sysconfig.get_paths()["stdlib"])


def stdlib_files(root: Path | None = None) -> list[str]:
    """Relative POSIX paths of the stdlib's ``.py`` files, sorted, without tests and installed packages."""
    root = root or stdlib_root()
    found = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if d not in EXCLUDED_DIRS]
        rel = Path(folder).relative_to(root)
        found += [(rel / f).as_posix() for f in files if f.endswith(".py")]
    return sorted(found)


class StdlibSource:
    """The stdlib corpus, split into train and val by file (a file is val if its path hashes low)."""

    name = "stdlib"

    def __init__(self, val_fraction: float, max_documents: int | None = None):
        root = stdlib_root()
        relpaths = stdlib_files(root)[:max_documents]
        digest = hashlib.sha256()
        self._files: list[tuple[str, bytes]] = []
        for rel in relpaths:
            content = (root / rel).read_bytes()
            digest.update(f"{rel}\0{hashlib.sha256(content).hexdigest()}\n".encode())
            self._files.append((rel, content))
        self.corpus_hash = digest.hexdigest()
        self.val_fraction = val_fraction
        self.info = {"python": platform.python_version(), "stdlib_root": str(root), "n_files": len(relpaths)}

    def split_paths(self) -> tuple[list[str], list[str]]:
        """The relative paths in the train and the val split."""
        train, val = [], []
        for rel, _ in self._files:
            (val if is_val(rel, self.val_fraction) else train).append(rel)
        return train, val

    def documents(self) -> tuple[TextList, TextList]:
        train, val = [], []
        for rel, content in self._files:
            text = content.decode("utf-8", errors="replace")
            (val if is_val(rel, self.val_fraction) else train).append(text)
        return TextList(train), TextList(val)
