"""Tokenizers: train a byte-level BPE with the ``tokenizers`` library, or load a ``tokenizer.json``.

Documents are encoded in batches (in Rust) and flattened with numpy, each followed by the end-of-text
token, into a 1-D array of ids (uint16 when the vocabulary fits, else uint32).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from ..errors import MupxError

EOT = "<|endoftext|>"
EOT_CANDIDATES = (EOT, "</s>", "<|end_of_text|>", "<eos>", "<|eos|>", "[SEP]")


def train_bpe(batches: Iterable[list[str]], vocab_size: int, n_docs: int | None = None) -> Tokenizer:
    """A byte-level BPE of at most ``vocab_size`` tokens (including ``<|endoftext|>``) trained on ``batches``."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[EOT],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(batches, trainer, length=n_docs)
    return tok


def load_tokenizer(path: str | Path) -> Tokenizer:
    """Load a ``tokenizer.json``; a missing or unreadable file is a one-line MupxError naming it."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise MupxError(f"data.tokenizer {str(path)!r} does not exist (expected a tokenizer.json file)")
    try:
        return Tokenizer.from_file(str(path))
    except Exception as e:  # the Rust side raises a bare Exception for bad JSON
        raise MupxError(f"data.tokenizer {str(path)!r} is not a valid tokenizer.json: {e}") from None


def file_sha256(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def vocab_size(tok: Tokenizer) -> int:
    """The real vocabulary size: one more than the largest id (added tokens included)."""
    return max(tok.get_vocab(with_added_tokens=True).values()) + 1


def eot_id(tok: Tokenizer, where: str) -> int:
    """The id of the end-of-text token appended after every document."""
    for token in EOT_CANDIDATES:
        idx = tok.token_to_id(token)
        if idx is not None:
            return idx
    raise MupxError(f"tokenizer {where} has no end-of-text token (looked for {', '.join(EOT_CANDIDATES)})")


def token_dtype(n_vocab: int) -> np.dtype:
    return np.dtype(np.uint16) if n_vocab <= 2**16 else np.dtype(np.uint32)


def encode(tok: Tokenizer, batches: Iterable[list[str]], eot: int, dtype: np.dtype) -> Iterator[np.ndarray]:
    """For each batch of documents, one flat array: doc0 ids, eot, doc1 ids, eot, ..."""
    if hasattr(tok, "encode_special_tokens"):
        tok.encode_special_tokens = True  # a literal "<|endoftext|>" inside a document is plain text
    encode_batch = getattr(tok, "encode_batch_fast", tok.encode_batch)  # fast: skips character offsets
    eot_arr = np.array([eot], dtype=dtype)
    for batch in batches:
        parts = []
        for enc in encode_batch(batch, add_special_tokens=False):
            parts += [np.asarray(enc.ids, dtype=dtype), eot_arr]
        yield np.concatenate(parts) if parts else np.empty(0, dtype=dtype)
