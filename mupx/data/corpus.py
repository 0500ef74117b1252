"""load_corpus: text source -> tokenizer -> cached token arrays (TokenCorpus), built resumably."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer

from ..errors import MupxError
from ..io import atomic_write_bytes
from .cache import FORMAT_VERSION, SPLITS, CacheEntry, cache_key
from .config import DataConfig
from .documents import Source, Texts
from .files import HubSource, LocalSource
from .stdlib import StdlibSource
from .tokenizer import (
    TokenizerChoice,
    encode,
    eot_id,
    file_sha256,
    load_tokenizer,
    resolve_tokenizer,
    token_dtype,
    train_bpe,
    vocab_size,
)

BATCH_DOCS = 1000  # documents per batch fed to the BPE trainer
CHUNK_DOCS = 10_000  # documents per resumable chunk: encoded, appended and recorded in progress.json

# on_progress(stage, documents done, tokens done, documents in the stage or None): stage is "bpe" (training
# the tokenizer, called once), "train" or "val" (called at the start of the split and after every chunk)
OnProgress = Callable[[str, int, int, int | None], None]


@dataclass
class TokenCorpus:
    """The train and val token streams (read-only memory maps) and what produced them."""

    train: np.ndarray
    val: np.ndarray
    vocab_size: int  # the tokenizer's real vocab size (may be below the requested one for tiny corpora)
    manifest: dict  # JSON-able record of the corpus, tokenizer and cache entry
    tokenizer_path: Path


def make_source(cfg: DataConfig) -> Source:
    """The stdlib corpus, local files, or a hub dataset (its local copy when ``data.path`` is set)."""
    if cfg.source == "stdlib":
        return StdlibSource(cfg.val_fraction, cfg.max_documents)
    if cfg.source == "local" or cfg.path:
        return LocalSource(cfg)
    return HubSource(cfg)


def load_corpus(
    cfg: DataConfig, on_progress: OnProgress | None = None, chunk_docs: int = CHUNK_DOCS
) -> TokenCorpus:
    """Tokenize ``cfg``'s documents, or reuse the cache entry built earlier for the same inputs; a build
    killed part-way resumes after its last finished chunk of ``chunk_docs`` documents."""
    tokenizer = resolve_tokenizer(cfg.tokenizer)
    source = make_source(cfg)
    key = cache_key(
        {
            "source": source.name,
            "corpus_hash": source.corpus_hash,
            "tokenizer": tokenizer.identity,
            "vocab_size": cfg.vocab_size if tokenizer.data is None else None,
            "val_fraction": cfg.val_fraction,
            "max_documents": cfg.max_documents,
            "format": cfg.format,
            "text_field": cfg.text_field,
        }
    )
    entry = CacheEntry(cfg.cache_root() / "data" / key)
    meta = entry.read_meta()
    if meta is None:
        with entry.lock():
            meta = entry.read_meta()  # another process may have built it while we waited
            if meta is None:
                meta = _build(cfg, source, entry, key, tokenizer, on_progress or _quiet, chunk_docs)
    tokenizer_path = tokenizer.path or entry.tokenizer
    _check_tokenizer(entry, meta, tokenizer_path)
    manifest = {k: v for k, v in meta.items() if k != "format_version"}
    manifest["tokenizer"] = tokenizer.name
    manifest["cache_path"] = str(entry.folder)
    return TokenCorpus(
        train=entry.open("train", meta["dtype"]),
        val=entry.open("val", meta["dtype"]),
        vocab_size=meta["vocab_size"],
        manifest=manifest,
        tokenizer_path=tokenizer_path,
    )


def _quiet(stage: str, docs: int, tokens: int, total: int | None) -> None:
    pass


def _build(
    cfg: DataConfig,
    source: Source,
    entry: CacheEntry,
    key: str,
    tokenizer: TokenizerChoice,
    on_progress: OnProgress,
    chunk_docs: int,
) -> dict:
    """Build the entry in its partial folder, continuing a killed build of the same key, then publish it."""
    docs = dict(zip(SPLITS, source.documents(), strict=True))
    for split in SPLITS:
        if docs[split].n_docs == 0:
            _empty(cfg, split, sum(d.n_docs or 0 for d in docs.values()))
    progress = entry.read_progress()
    if (
        progress is None
        or progress.get("cache_key") != key
        or not (entry.partial / "tokenizer.json").is_file()
    ):
        entry.restart()
        data = tokenizer.data
        if data is None:
            on_progress("bpe", 0, 0, docs["train"].n_docs)
            data = (
                train_bpe(docs["train"].batches(BATCH_DOCS), cfg.vocab_size, docs["train"].n_docs)
                .to_str()
                .encode()
            )
        atomic_write_bytes(entry.partial / "tokenizer.json", data)
        progress = {"cache_key": key, **{s: {"docs": 0, "tokens": 0, "done": False} for s in SPLITS}}
        entry.write_progress(progress)
    tok = Tokenizer.from_str((entry.partial / "tokenizer.json").read_text(encoding="utf-8"))
    n_vocab = vocab_size(tok)
    dtype = token_dtype(n_vocab)
    eot = eot_id(tok, tokenizer.name)
    for split in SPLITS:
        _encode_split(entry, progress, split, docs[split], tok, eot, dtype, on_progress, chunk_docs)
        if progress[split]["docs"] == 0:  # a streamed split, whose size was unknown until now
            _empty(cfg, split, sum(progress[s]["docs"] for s in SPLITS))
    meta = {
        "format_version": FORMAT_VERSION,
        "source": source.name,
        "corpus_hash": source.corpus_hash,
        "n_docs_train": progress["train"]["docs"],
        "n_docs_val": progress["val"]["docs"],
        "n_tokens_train": progress["train"]["tokens"],
        "n_tokens_val": progress["val"]["tokens"],
        "tokenizer": tokenizer.name,
        "tokenizer_hash": file_sha256(entry.partial / "tokenizer.json"),
        "vocab_size": n_vocab,
        "requested_vocab_size": cfg.vocab_size if tokenizer.data is None else None,
        "eot_id": eot,
        "dtype": dtype.name,
        "val_fraction": cfg.val_fraction,
        "max_documents": cfg.max_documents,
        "cache_key": key,
        "info": source.info,
    }
    entry.publish(meta)
    return meta


def _encode_split(
    entry: CacheEntry,
    progress: dict,
    split: str,
    docs: Texts,
    tok: Tokenizer,
    eot: int,
    dtype: np.dtype,
    on_progress: OnProgress,
    chunk_docs: int,
) -> None:
    """Append the split's tokens chunk by chunk from where ``progress`` says the last build stopped."""
    done = progress[split]
    if done["done"]:
        return
    on_progress(split, done["docs"], done["tokens"], docs.n_docs)
    with entry.append(split, done["tokens"], dtype.itemsize) as f:
        for batch in docs.batches(chunk_docs, start=done["docs"]):
            ids = encode(tok, batch, eot, dtype)
            f.write(ids.tobytes())
            f.flush()
            os.fsync(f.fileno())  # the tokens are on disk before progress.json counts them
            done["docs"] += len(batch)
            done["tokens"] += len(ids)
            entry.write_progress(progress)
            on_progress(split, done["docs"], done["tokens"], docs.n_docs)
    done["done"] = True
    entry.write_progress(progress)


def _empty(cfg: DataConfig, split: str, n: int) -> None:
    raise MupxError(
        f"the {split} split of data={cfg.source} is empty ({n} documents, data.val_fraction "
        f"{cfg.val_fraction}); use more documents or another data.val_fraction"
    )


def _check_tokenizer(entry: CacheEntry, meta: dict, tokenizer_path: Path) -> None:
    """The tokens on disk must come from the tokenizer in use (same file hash)."""
    if file_sha256(tokenizer_path) == meta["tokenizer_hash"]:
        return
    n_vocab = vocab_size(load_tokenizer(tokenizer_path))
    raise MupxError(
        f"token cache {entry.folder} was built with a different tokenizer (vocab {meta['vocab_size']}, "
        f"sha256 {meta['tokenizer_hash'][:12]}) than {tokenizer_path} (vocab {n_vocab}); "
        "delete it or use another cache_dir"
    )
