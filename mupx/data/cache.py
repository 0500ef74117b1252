"""The token cache: one folder per (corpus, tokenizer, split options), holding the tokens as raw arrays.

Layout of ``<cache_root>/data/``::

    <key>/               a published entry
        tokenizer.json   the tokenizer used (trained BPE, or a copy of the user's or the hub's file)
        train.bin        raw token ids (uint16 or uint32), opened read-only with np.memmap
        val.bin
        meta.json        the manifest
    .<key>.partial/      the entry being built: the same files (meta.json last) and progress.json
    .<key>.lock          locked (flock) by the process building <key>

An entry is built in its partial folder, a chunk of documents at a time: each chunk's tokens are appended
and fsynced, then ``progress.json`` (documents and tokens done per split) is replaced atomically. A killed
build therefore resumes after its last recorded chunk, first cutting each token file back to the recorded
length. The finished folder is renamed to ``<key>`` in one step, so a reader (training) sees a whole
entry or none, and builders hold the lock, so two processes never build the same entry at once.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import numpy as np

from ..io import atomic_write_json

FORMAT_VERSION = 1
SPLITS = ("train", "val")


def cache_key(parts: dict) -> str:
    """A short stable name for a cache entry: the source name and a hash of everything that shapes it."""
    text = json.dumps({"version": FORMAT_VERSION, **parts}, sort_keys=True, separators=(",", ":"))
    return f"{parts['source']}-{hashlib.sha256(text.encode()).hexdigest()[:16]}"


class CacheEntry:
    """One entry of the token cache: its published folder and the partial folder it is built in."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.partial = folder.with_name(f".{folder.name}.partial")
        self.tokenizer = folder / "tokenizer.json"
        self.meta = folder / "meta.json"

    def bin(self, split: str) -> Path:
        return self.folder / f"{split}.bin"

    def read_meta(self) -> dict | None:
        """The entry's meta.json if the entry is complete (readable meta.json, tokenizer.json, token files
        of the recorded sizes), else None."""
        try:
            meta = json.loads(self.meta.read_text(encoding="utf-8"))
            if meta.get("format_version") != FORMAT_VERSION or not self.tokenizer.is_file():
                return None
            itemsize = np.dtype(meta["dtype"]).itemsize
            for split in SPLITS:
                if self.bin(split).stat().st_size != meta[f"n_tokens_{split}"] * itemsize:
                    return None
            return meta
        except (OSError, ValueError, KeyError, TypeError):
            return None

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Hold an exclusive lock on the entry (a no-op where ``fcntl`` is missing)."""
        self.folder.parent.mkdir(parents=True, exist_ok=True)
        try:
            import fcntl
        except ImportError:  # not POSIX: atomic renames still keep every file whole
            yield
            return
        with open(self.folder.with_name(f".{self.folder.name}.lock"), "w") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    # --- building (hold the lock) ----------------------------------------------------------------------
    def read_progress(self) -> dict | None:
        """The partial build's progress.json, or None if there is no readable one."""
        try:
            return json.loads((self.partial / "progress.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None

    def write_progress(self, progress: dict) -> None:
        atomic_write_json(self.partial / "progress.json", progress)

    def restart(self) -> None:
        """Drop any partial build and start an empty one."""
        shutil.rmtree(self.partial, ignore_errors=True)
        self.partial.mkdir(parents=True)

    def append(self, split: str, n_tokens: int, itemsize: int) -> BinaryIO:
        """The partial ``<split>.bin``, cut back to its first ``n_tokens`` tokens, open for appending."""
        path = self.partial / f"{split}.bin"
        f = open(path, "r+b" if path.exists() else "w+b")  # noqa: SIM115 - the caller closes it
        f.truncate(n_tokens * itemsize)
        f.seek(0, os.SEEK_END)
        return f

    def publish(self, meta: dict) -> None:
        """Write meta.json into the partial folder and rename the folder into place (replacing an
        incomplete entry left by an older build)."""
        atomic_write_json(self.partial / "meta.json", meta)
        (self.partial / "progress.json").unlink()
        for stray in self.partial.glob(".*.tmp"):  # temporary files of a killed build's atomic writes
            stray.unlink()
        shutil.rmtree(self.folder, ignore_errors=True)
        os.replace(self.partial, self.folder)

    def open(self, split: str, dtype: str) -> np.ndarray:
        """The split's tokens as a read-only memory map."""
        return np.memmap(self.bin(split), dtype=np.dtype(dtype), mode="r")
