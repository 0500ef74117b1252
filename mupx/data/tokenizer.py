"""Tokenizers: train a byte-level BPE with the ``tokenizers`` library, load a ``tokenizer.json``, or fetch
a hub tokenizer (``Tokenizer.from_pretrained``, which reads the Hugging Face cache when offline).

Documents are encoded in batches (in Rust) and flattened with numpy, each followed by the end-of-text
token, into a 1-D array of ids (uint16 when the vocabulary fits, else uint32).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from ..errors import MupxError
from .files import offline_vars

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


def byte_tokenizer() -> Tokenizer:
    """Bytes as tokens: the 256 byte symbols of byte-level BPE with no merges, plus ``<|endoftext|>``
    (vocab 257). Nothing is trained, so the token ids are the same for every corpus; with a vocabulary
    this small the embedding and readout stay a small share of a proxy's parameters even at width 32."""
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    tok = Tokenizer(models.BPE(vocab={c: i for i, c in enumerate(alphabet)}, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens([EOT])
    return tok


@dataclass(frozen=True)
class TokenizerChoice:
    """What ``data.tokenizer`` names, resolved before the cache lookup."""

    name: str  # recorded in the manifest: "bpe", the tokenizer.json's absolute path, or the hub name
    data: bytes | None  # the tokenizer.json bytes; None: a BPE is trained on the corpus
    path: Path | None  # the user's tokenizer.json file, if any

    @property
    def identity(self) -> str:
        """The tokenizer's part of the cache key: "bpe", or the sha256 of its tokenizer.json."""
        return "bpe" if self.data is None else hashlib.sha256(self.data).hexdigest()


def resolve_tokenizer(spec: str | None) -> TokenizerChoice:
    """``data.tokenizer``: null or ``bpe`` trains a byte-level BPE; ``bytes`` is :func:`byte_tokenizer`; a
    value ending in ``.json`` or naming an existing path is a tokenizer.json file; anything else is a hub
    tokenizer name such as ``gpt2``."""
    if spec is None or spec == "bpe":
        return TokenizerChoice("bpe", None, None)
    if spec == "bytes":
        return TokenizerChoice("bytes", byte_tokenizer().to_str().encode("utf-8"), None)
    path = Path(spec).expanduser()
    if spec.endswith(".json") or path.exists():
        load_tokenizer(path)  # fail early, naming the path, if it is missing or broken
        path = path.resolve()
        return TokenizerChoice(str(path), path.read_bytes(), path)
    return TokenizerChoice(spec, hub_tokenizer(spec).to_str().encode("utf-8"), None)


def hub_tokenizer(name: str) -> Tokenizer:
    """``Tokenizer.from_pretrained(name)``; offline, only a tokenizer already in the Hugging Face cache loads,
    anything else is a one-line MupxError (with no network and no offline switch, after hub retries, ~25 s)."""
    from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError, RepositoryNotFoundError
    from huggingface_hub.utils import logging as hub_logging

    level = hub_logging.get_verbosity()
    hub_logging.set_verbosity_error()  # no "Retrying in 1s" lines before the one-line error
    try:
        return Tokenizer.from_pretrained(name)
    except LocalEntryNotFoundError:
        why = " ".join(offline_vars()) or "no network"
        raise MupxError(
            f"cannot load hub tokenizer {name!r} offline ({why}): it is not in the Hugging Face cache; "
            "set data.tokenizer to a tokenizer.json path (or bpe)"
        ) from None
    except RepositoryNotFoundError:
        raise MupxError(
            f"data.tokenizer {name!r} is neither a file nor a hub model (or it is private/gated); "
            "use bpe, a tokenizer.json path or a hub model name such as gpt2"
        ) from None
    except EntryNotFoundError:
        raise MupxError(
            f"hub model {name!r} has no tokenizer.json; set data.tokenizer to a tokenizer.json path"
        ) from None
    except Exception as e:  # a malformed name (HFValidationError), a broken file, ...
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise MupxError(f"cannot load hub tokenizer {name!r}: {first}") from None
    finally:
        hub_logging.set_verbosity(level)


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


def encode(tok: Tokenizer, docs: list[str], eot: int, dtype: np.dtype) -> np.ndarray:
    """One flat array for a batch of documents: doc0 ids, eot, doc1 ids, eot, ..."""
    if hasattr(tok, "encode_special_tokens"):
        tok.encode_special_tokens = True  # a literal "<|endoftext|>" inside a document is plain text
    encode_batch = getattr(tok, "encode_batch_fast", tok.encode_batch)  # fast: skips character offsets
    eot_arr = np.array([eot], dtype=dtype)
    parts = []
    for enc in encode_batch(docs, add_special_tokens=False):
        parts += [np.asarray(enc.ids, dtype=dtype), eot_arr]
    return np.concatenate(parts) if parts else np.empty(0, dtype=dtype)
