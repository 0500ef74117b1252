"""Local files (text, JSON lines, Parquet) and Hugging Face hub datasets, read through ``datasets``.

Documents are rows of the ``text_field`` column (for text files, lines). Train/val is split by row index:
document ``i`` is val if ``sha256(str(i))`` hashes below ``val_fraction``. With ``data.streaming`` the rows
are streamed (``datasets`` streaming mode: nothing is downloaded or converted up front) instead of loaded.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import MupxError
from .config import DataConfig
from .documents import DatasetTexts, StreamTexts, is_val

EXTENSIONS = {".txt": "text", ".text": "text", ".json": "json", ".jsonl": "json", ".parquet": "parquet"}
COMPRESSIONS = (".gz", ".bz2", ".xz", ".zst")  # datasets reads these transparently (text and json)
_KNOWN = ", ".join(EXTENSIONS)


def format_of(path: Path) -> str | None:
    """The format named by a file's extension(s) (``.jsonl.gz`` is json), or None if unknown."""
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] in COMPRESSIONS:
        suffixes = suffixes[:-1]
    return EXTENSIONS.get(suffixes[-1]) if suffixes else None


def find_files(path: str, fmt: str) -> tuple[list[Path], str]:
    """The data files at ``path`` (a file, or a folder searched recursively, sorted) and their format."""
    root = Path(path).expanduser()
    if not root.exists():
        raise MupxError(f"data.path {path!r} does not exist")
    if root.is_file():
        if fmt == "auto":
            fmt = format_of(root) or ""
            if not fmt:
                raise MupxError(
                    f"cannot tell the format of data.path {path!r} from its extension (auto knows {_KNOWN}); "
                    "set data.format to one of text, json, parquet"
                )
        return [root], fmt
    candidates = []
    for f in sorted(root.rglob("*"), key=lambda p: p.relative_to(root).as_posix()):
        rel = f.relative_to(root)
        if f.is_file() and not any(part.startswith(".") for part in rel.parts):
            candidates.append((f, format_of(f)))
    if fmt == "auto":
        formats = sorted({t for _, t in candidates if t})
        if not formats:
            raise MupxError(f"no data files in folder data.path {path!r} (auto looks for {_KNOWN})")
        if len(formats) > 1:
            raise MupxError(
                f"folder data.path {path!r} holds several formats ({', '.join(formats)}); "
                "set data.format to pick one"
            )
        fmt = formats[0]
    files = [f for f, t in candidates if t == fmt]
    if not files:
        exts = ", ".join(e for e, t in EXTENSIONS.items() if t == fmt)
        raise MupxError(f"no {fmt} files ({exts}) in folder data.path {path!r}")
    return files, fmt


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _first_line(e: BaseException) -> str:
    lines = str(e).strip().splitlines()
    return lines[0] if lines else type(e).__name__


def _check_field(dataset: Any, field: str, where: str) -> None:
    if dataset.column_names is None:  # a streamed dataset without declared features: checked while reading
        return
    if field not in dataset.column_names:
        raise MupxError(
            f"data.text_field {field!r} is not a column of {where} (columns: {', '.join(dataset.column_names)})"
        )
    dtype = getattr(dataset.features[field], "dtype", None)
    if dtype not in ("string", "large_string"):
        raise MupxError(
            f"data.text_field {field!r} of {where} must hold strings, not {dataset.features[field]}"
        )


def _split(dataset: Any, field: str, val_fraction: float, max_documents: int | None):
    """Cap to the first ``max_documents`` rows, then split train/val by row index."""
    import datasets

    if isinstance(dataset, datasets.IterableDataset):
        if max_documents is not None:
            dataset = dataset.take(max_documents)
        return StreamTexts(dataset, field, val_fraction, val=False), StreamTexts(
            dataset, field, val_fraction, val=True
        )
    if max_documents is not None and max_documents < len(dataset):
        dataset = dataset.select(range(max_documents))
    val = np.array([is_val(str(i), val_fraction) for i in range(len(dataset))], dtype=bool)
    train_rows, val_rows = np.flatnonzero(~val), np.flatnonzero(val)
    return DatasetTexts(dataset.select(train_rows), field), DatasetTexts(dataset.select(val_rows), field)


class LocalSource:
    """A file or a folder of files in one format; ``corpus_hash`` covers their bytes and the read options."""

    name = "local"

    def __init__(self, cfg: DataConfig):
        assert cfg.path is not None
        self.cfg = cfg
        self.files, self.format = find_files(cfg.path, cfg.format)
        root = Path(cfg.path).expanduser()
        digest = hashlib.sha256(json.dumps([self.format, cfg.text_field, cfg.split]).encode())
        for f in self.files:
            rel = f.relative_to(root).as_posix() if root.is_dir() else ""
            digest.update(f"{rel}\0{_file_sha256(f)}\n".encode())
        self.corpus_hash = digest.hexdigest()
        self.info = {"path": str(root.resolve()), "format": self.format, "n_files": len(self.files)}

    def documents(self):
        import datasets

        cfg = self.cfg
        cache = cfg.cache_root() / "data" / "hf-datasets"
        try:
            dataset = datasets.load_dataset(
                self.format,
                data_files=[str(f) for f in self.files],
                split=cfg.split,
                cache_dir=str(cache),
                streaming=cfg.streaming,
            )
        except ValueError as e:  # includes an unknown split name
            raise MupxError(
                f"cannot read data.path {cfg.path!r} (split {cfg.split!r}): {_first_line(e)}"
            ) from None
        except datasets.exceptions.DatasetsError as e:
            cause = e.__cause__ or e
            raise MupxError(
                f"cannot read data.path {cfg.path!r} as {self.format}: {_first_line(cause)}"
            ) from None
        _check_field(dataset, cfg.text_field, f"data.path {cfg.path!r}")
        return _split(dataset, cfg.text_field, cfg.val_fraction, cfg.max_documents)


def offline_vars() -> list[str]:
    """The offline switches of huggingface_hub / datasets that are set."""
    names = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")
    return [f"{v}=1" for v in names if os.environ.get(v, "").lower() in ("1", "true", "yes", "on")]


class HubSource:
    """A Hugging Face hub dataset; ``corpus_hash`` covers its name, subset, split and datasets fingerprint
    (streamed: the builder's hash, which follows the hub revision).

    Offline (HF_HUB_OFFLINE / HF_DATASETS_OFFLINE set) only an already-downloaded dataset loads; anything
    else fails at once with a one-line error.
    """

    name = "hub"

    def __init__(self, cfg: DataConfig):
        import datasets

        self.cfg = cfg
        where = f"hub dataset {cfg.name!r}" + (f" (subset {cfg.subset!r})" if cfg.subset else "")
        try:
            if cfg.streaming:  # what load_dataset(streaming=True) does, keeping the builder for its hash
                builder = datasets.load_dataset_builder(cfg.name, cfg.subset)
                self.dataset = builder.as_streaming_dataset(split=cfg.split)
                fingerprint = f"stream-{builder.hash}"
            else:
                self.dataset = datasets.load_dataset(cfg.name, cfg.subset, split=cfg.split)
                fingerprint = getattr(self.dataset, "_fingerprint", None)
        except datasets.exceptions.DatasetNotFoundError as e:
            if offline_vars():
                raise self._offline_error() from None
            raise MupxError(f"{where} not found (or private/gated): {_first_line(e)}") from None
        except ConnectionError as e:  # datasets turns offline mode and network failures into this
            raise self._offline_error(e) from None
        except (ValueError, datasets.exceptions.DatasetsError) as e:  # bad subset or split name, ...
            raise MupxError(f"cannot load {where}, split {cfg.split!r}: {_first_line(e)}") from None
        _check_field(self.dataset, cfg.text_field, where)
        key = [cfg.name, cfg.subset, cfg.split, cfg.text_field, fingerprint]
        self.corpus_hash = hashlib.sha256(json.dumps(key).encode()).hexdigest()
        self.info = {"name": cfg.name, "subset": cfg.subset, "split": cfg.split, "fingerprint": fingerprint}

    def _offline_error(self, e: BaseException | None = None) -> MupxError:
        why = " ".join(offline_vars()) or (f"no network: {_first_line(e)}" if e else "no network")
        return MupxError(
            f"cannot load hub dataset {self.cfg.name!r} offline ({why}): download it first "
            "or set data.path to a local copy (a file or folder of .jsonl/.parquet/.txt files)"
        )

    def documents(self):
        cfg = self.cfg
        return _split(self.dataset, cfg.text_field, cfg.val_fraction, cfg.max_documents)
