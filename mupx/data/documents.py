"""Documents: a source's texts, split into train and val, read in batches of strings.

Every source (the stdlib corpus, local files, hub datasets) hands :func:`mupx.data.load_corpus` an object
with a ``corpus_hash`` (computed cheaply, before any tokenization, so a cache hit skips the rest), an
``info`` dict for the manifest, and ``documents()``, which returns the train and val :class:`Texts`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from typing import Any, Protocol


def is_val(key: str, val_fraction: float) -> bool:
    """Deterministic split: the document named ``key`` is val if its hash falls below ``val_fraction``."""
    return int(hashlib.sha256(key.encode("utf-8")).hexdigest()[:8], 16) / 2**32 < val_fraction


class Texts(Protocol):
    """A sequence of documents that can be read in batches of strings."""

    def __len__(self) -> int: ...

    def batches(self, size: int) -> Iterator[list[str]]: ...


class TextList:
    """Documents held in memory as a list of strings."""

    def __init__(self, texts: list[str]):
        self.texts = texts

    def __len__(self) -> int:
        return len(self.texts)

    def batches(self, size: int) -> Iterator[list[str]]:
        for i in range(0, len(self.texts), size):
            yield self.texts[i : i + size]


class DatasetTexts:
    """Documents in one string column of a ``datasets.Dataset`` (read lazily from its Arrow files)."""

    def __init__(self, dataset: Any, field: str):
        self.dataset = dataset.select_columns([field])
        self.field = field

    def __len__(self) -> int:
        return len(self.dataset)

    def batches(self, size: int) -> Iterator[list[str]]:
        for batch in self.dataset.iter(batch_size=size):
            yield [t if t is not None else "" for t in batch[self.field]]


class Source(Protocol):
    """What :func:`mupx.data.load_corpus` needs from a data source."""

    name: str  # "stdlib", "local" or "hub"
    corpus_hash: str  # identifies the documents, their order and the options that shape them
    info: dict  # extra JSON-able fields for the manifest

    def documents(self) -> tuple[Texts, Texts]: ...  # (train, val)
