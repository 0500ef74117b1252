"""Documents: a source's texts, split into train and val, read in batches of strings.

Every source (the stdlib corpus, local files, hub datasets) hands :func:`mupx.data.load_corpus` an object
with a ``corpus_hash`` (computed cheaply, before any tokenization, so a cache hit skips the rest), an
``info`` dict for the manifest, and ``documents()``, which returns the train and val :class:`Texts`.
Batches can start at any document, so an interrupted tokenization resumes where it stopped.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from typing import Any, Protocol

from ..errors import MupxError


def is_val(key: str, val_fraction: float) -> bool:
    """Deterministic split: the document named ``key`` is val if its hash falls below ``val_fraction``."""
    return int(hashlib.sha256(key.encode("utf-8")).hexdigest()[:8], 16) / 2**32 < val_fraction


class Texts(Protocol):
    """A sequence of documents that can be read in batches of strings, from any document on."""

    n_docs: int | None  # None: unknown before reading (a streamed dataset)

    def batches(self, size: int, start: int = 0) -> Iterator[list[str]]: ...


class TextList:
    """Documents held in memory as a list of strings."""

    def __init__(self, texts: list[str]):
        self.texts = texts
        self.n_docs = len(texts)

    def batches(self, size: int, start: int = 0) -> Iterator[list[str]]:
        for i in range(start, len(self.texts), size):
            yield self.texts[i : i + size]


class DatasetTexts:
    """Documents in one string column of a ``datasets.Dataset`` (read lazily from its Arrow files)."""

    def __init__(self, dataset: Any, field: str):
        self.dataset = dataset.select_columns([field])
        self.field = field
        self.n_docs = len(self.dataset)

    def batches(self, size: int, start: int = 0) -> Iterator[list[str]]:
        rows = self.dataset.select(range(start, self.n_docs)) if start else self.dataset
        for batch in rows.iter(batch_size=size):
            yield [t if t is not None else "" for t in batch[self.field]]


class StreamTexts:
    """One split of a streamed ``datasets.IterableDataset``, read in order and never stored: row ``i`` is
    val if ``is_val(str(i))``, the same rule as for a loaded dataset. Resuming at ``start`` reads past the
    split's first ``start`` documents again."""

    n_docs = None

    def __init__(self, dataset: Any, field: str, val_fraction: float, val: bool):
        self.dataset = dataset.select_columns([field]) if dataset.column_names else dataset
        self.field, self.val_fraction, self.val = field, val_fraction, val

    def batches(self, size: int, start: int = 0) -> Iterator[list[str]]:
        batch: list[str] = []
        seen = 0
        for i, row in enumerate(self.dataset):
            if is_val(str(i), self.val_fraction) != self.val:
                continue
            seen += 1
            if seen <= start:
                continue
            if self.field not in row:
                raise MupxError(
                    f"data.text_field {self.field!r} is not a column of the streamed dataset (columns: {', '.join(row)})"
                )
            batch.append(row[self.field] if row[self.field] is not None else "")
            if len(batch) == size:
                yield batch
                batch = []
        if batch:
            yield batch


class Source(Protocol):
    """What :func:`mupx.data.load_corpus` needs from a data source."""

    name: str  # "stdlib", "local" or "hub"
    corpus_hash: str  # identifies the documents, their order and the options that shape them
    info: dict  # extra JSON-able fields for the manifest

    def documents(self) -> tuple[Texts, Texts]: ...  # (train, val)
