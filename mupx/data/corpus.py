"""load_corpus: text source -> tokenizer -> cached token arrays (TokenCorpus)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import MupxError
from ..io import atomic_write_bytes, atomic_write_json, atomic_write_text
from .cache import FORMAT_VERSION, CacheEntry, cache_key
from .config import DataConfig
from .documents import Source
from .files import HubSource, LocalSource
from .stdlib import StdlibSource
from .tokenizer import encode, eot_id, file_sha256, load_tokenizer, token_dtype, train_bpe, vocab_size

BATCH_DOCS = 1000  # documents per encode_batch call


@dataclass
class TokenCorpus:
    """The train and val token streams (read-only memory maps) and what produced them."""

    train: np.ndarray
    val: np.ndarray
    vocab_size: int  # the tokenizer's real vocab size (may be below the requested one for tiny corpora)
    manifest: dict  # JSON-able record of the corpus, tokenizer and cache entry
    tokenizer_path: Path


def make_source(cfg: DataConfig) -> Source:
    if cfg.source == "stdlib":
        return StdlibSource(cfg.val_fraction, cfg.max_documents)
    if cfg.source == "local":
        return LocalSource(cfg)
    return HubSource(cfg)


def load_corpus(cfg: DataConfig) -> TokenCorpus:
    """Tokenize ``cfg``'s documents, or reuse the cache entry built earlier for the same inputs."""
    source = make_source(cfg)
    user_tokenizer = Path(cfg.tokenizer).expanduser().resolve() if cfg.tokenizer else None
    if user_tokenizer is not None:
        load_tokenizer(user_tokenizer)  # fail early, naming the path, if it is missing or broken
    key = cache_key(
        {
            "source": source.name,
            "corpus_hash": source.corpus_hash,
            "tokenizer": file_sha256(user_tokenizer) if user_tokenizer else "bpe",
            "vocab_size": None if user_tokenizer else cfg.vocab_size,
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
                meta = _build(cfg, source, entry, key, user_tokenizer)
    tokenizer_path = user_tokenizer or entry.tokenizer
    _check_tokenizer(entry, meta, tokenizer_path)
    manifest = {k: v for k, v in meta.items() if k != "format_version"}
    manifest["tokenizer"] = str(user_tokenizer) if user_tokenizer else "bpe"
    manifest["cache_path"] = str(entry.folder)
    return TokenCorpus(
        train=entry.open("train", meta["dtype"]),
        val=entry.open("val", meta["dtype"]),
        vocab_size=meta["vocab_size"],
        manifest=manifest,
        tokenizer_path=tokenizer_path,
    )


def _build(cfg: DataConfig, source: Source, entry: CacheEntry, key: str, user_tokenizer: Path | None) -> dict:
    """Write tokenizer.json, train.bin and val.bin, then meta.json (last: it marks the entry complete)."""
    train_docs, val_docs = source.documents()
    for split, docs in (("train", train_docs), ("val", val_docs)):
        if len(docs) == 0:
            n = len(train_docs) + len(val_docs)
            raise MupxError(
                f"the {split} split of data={cfg.source} is empty ({n} documents, data.val_fraction "
                f"{cfg.val_fraction}); use more documents or another data.val_fraction"
            )
    if user_tokenizer is not None:
        tok = load_tokenizer(user_tokenizer)
        atomic_write_bytes(entry.tokenizer, user_tokenizer.read_bytes())
    else:
        tok = train_bpe(train_docs.batches(BATCH_DOCS), cfg.vocab_size, len(train_docs))
        atomic_write_text(entry.tokenizer, tok.to_str())
    n_vocab = vocab_size(tok)
    dtype = token_dtype(n_vocab)
    eot = eot_id(tok, str(user_tokenizer or "bpe"))
    n_train = entry.write_tokens("train", encode(tok, train_docs.batches(BATCH_DOCS), eot, dtype))
    n_val = entry.write_tokens("val", encode(tok, val_docs.batches(BATCH_DOCS), eot, dtype))
    meta = {
        "format_version": FORMAT_VERSION,
        "source": source.name,
        "corpus_hash": source.corpus_hash,
        "n_docs_train": len(train_docs),
        "n_docs_val": len(val_docs),
        "n_tokens_train": n_train,
        "n_tokens_val": n_val,
        "tokenizer": str(user_tokenizer) if user_tokenizer else "bpe",
        "tokenizer_hash": file_sha256(entry.tokenizer),
        "vocab_size": n_vocab,
        "requested_vocab_size": None if user_tokenizer else cfg.vocab_size,
        "eot_id": eot,
        "dtype": dtype.name,
        "val_fraction": cfg.val_fraction,
        "max_documents": cfg.max_documents,
        "cache_key": key,
        "info": source.info,
    }
    atomic_write_json(entry.meta, meta)
    return meta


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
