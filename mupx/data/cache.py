"""The token cache: one folder per (corpus, tokenizer, split options), holding the tokens as raw arrays.

Layout of ``<cache_root>/data/<cache_key>/``::

    tokenizer.json   the tokenizer used (trained BPE, or a copy of the user's file)
    train.bin        raw token ids (uint16 or uint32), opened read-only with np.memmap
    val.bin
    meta.json        the manifest; written last, so an entry without a valid meta.json is absent

Every file is written to a temporary name in the same folder and renamed into place, and builders take
an exclusive lock on the folder, so two processes preparing the same entry at once cannot corrupt it and
a reader never sees a partial file.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

FORMAT_VERSION = 1
SPLITS = ("train", "val")


def cache_key(parts: dict) -> str:
    """A short stable name for a cache entry: the source name and a hash of everything that shapes it."""
    text = json.dumps({"version": FORMAT_VERSION, **parts}, sort_keys=True, separators=(",", ":"))
    return f"{parts['source']}-{hashlib.sha256(text.encode()).hexdigest()[:16]}"


class CacheEntry:
    """One folder of the token cache."""

    def __init__(self, folder: Path):
        self.folder = folder
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
        self.folder.mkdir(parents=True, exist_ok=True)
        try:
            import fcntl
        except ImportError:  # not POSIX: atomic renames still keep every file whole
            yield
            return
        with open(self.folder / ".lock", "w") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    def write_tokens(self, split: str, chunks: Iterable[np.ndarray]) -> int:
        """Stream arrays into ``<split>.bin`` atomically; returns the number of tokens written."""
        path = self.bin(split)
        fd, tmp = tempfile.mkstemp(dir=self.folder, prefix=f".{path.name}.", suffix=".tmp")
        n = 0
        try:
            with os.fdopen(fd, "wb") as f:
                for chunk in chunks:
                    f.write(chunk.tobytes())
                    n += len(chunk)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
        return n

    def open(self, split: str, dtype: str) -> np.ndarray:
        """The split's tokens as a read-only memory map."""
        return np.memmap(self.bin(split), dtype=np.dtype(dtype), mode="r")
