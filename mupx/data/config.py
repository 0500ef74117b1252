"""DataConfig: where the training text comes from and how it is tokenized and cached."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from ..errors import MupxError

SOURCES = ("stdlib", "local", "hub")
FORMATS = ("auto", "text", "json", "parquet")
MIN_VOCAB = 257  # the 256 byte tokens of byte-level BPE + <|endoftext|>
MAX_VOCAB = 2**20


@dataclass(frozen=True)
class DataConfig:
    """One data source. Built from the ``data`` config section by ``typed(DataConfig, cfg.data, "data")``."""

    source: Literal["stdlib", "local", "hub"]
    vocab_size: int = 4096  # BPE vocab when mupx trains the tokenizer
    val_fraction: float = 0.05  # fraction of files/documents in the val split
    path: str | None = None  # local: a file or a folder of files; hub: a local copy used instead of the hub
    format: Literal["auto", "text", "json", "parquet"] = "auto"  # auto: from the file extension
    text_field: str = "text"  # column holding the text (json/parquet)
    name: str | None = None  # hub: dataset name, e.g. "roneneldan/TinyStories"
    subset: str | None = None  # hub: config name
    split: str = "train"  # hub/local split to read
    streaming: bool = False  # read the rows as a stream (datasets streaming mode) instead of loading them
    tokenizer: str | None = (
        None  # None or "bpe": train a byte-level BPE; "bytes"; a tokenizer.json; a hub name
    )
    max_documents: int | None = None  # keep only the first N documents (quick runs)
    cache_dir: str | None = None  # None: $MUPX_CACHE_DIR or ~/.cache/mupx

    def __post_init__(self):
        if self.source not in SOURCES:
            raise MupxError(f"data.source must be one of {', '.join(SOURCES)}, got {self.source!r}")
        if self.format not in FORMATS:
            raise MupxError(f"data.format must be one of {', '.join(FORMATS)}, got {self.format!r}")
        if isinstance(self.vocab_size, bool) or not isinstance(self.vocab_size, int):
            raise MupxError(f"data.vocab_size must be an integer, got {self.vocab_size!r}")
        if not MIN_VOCAB <= self.vocab_size <= MAX_VOCAB:
            raise MupxError(
                f"data.vocab_size must be between {MIN_VOCAB} (256 bytes + <|endoftext|>) and {MAX_VOCAB}, "
                f"got {self.vocab_size}"
            )
        if not 0 < self.val_fraction < 0.5:
            raise MupxError(f"data.val_fraction must be > 0 and < 0.5, got {self.val_fraction!r}")
        if self.max_documents is not None and self.max_documents < 2:
            raise MupxError(f"data.max_documents must be at least 2 or null, got {self.max_documents!r}")
        if not self.text_field:
            raise MupxError("data.text_field must be a non-empty column name")
        if not self.split:
            raise MupxError("data.split must be a non-empty split name, e.g. train")
        if self.tokenizer == "":
            raise MupxError(
                "data.tokenizer must be bpe, bytes, a tokenizer.json path or a hub tokenizer name, got ''"
            )
        if self.source == "local" and not self.path:
            raise MupxError("data.path is required for data=local (a file or a folder of files)")
        if self.source == "hub" and not self.name:
            raise MupxError(
                "data.name is required for data=hub (a dataset name, e.g. roneneldan/TinyStories)"
            )

    def cache_root(self) -> Path:
        """The folder holding mupx caches: data.cache_dir, else $MUPX_CACHE_DIR, else ~/.cache/mupx."""
        root = self.cache_dir or os.environ.get("MUPX_CACHE_DIR") or "~/.cache/mupx"
        return Path(root).expanduser()
