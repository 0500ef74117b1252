"""Test session setup: offline, and one shared token cache for the whole session."""

import os

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ.setdefault("WANDB_MODE", "disabled")

# Small, fast runs on the embedded corpus: a slice of the stdlib and a small vocab.
TINY = [
    "data.max_documents=150", "data.vocab_size=512", "model.width=64", "model.head_dim=16",
    "param.base_width=64", "train.batch=4", "train.seq_len=32", "train.progress=false", "train.eval_batches=2",
]  # fmt: skip


@pytest.fixture(scope="session", autouse=True)
def session_cache(tmp_path_factory):
    """Every test (and every subprocess it starts) shares one cache folder, built on first use."""
    path = tmp_path_factory.mktemp("mupx-cache")
    old = os.environ.get("MUPX_CACHE_DIR")
    os.environ["MUPX_CACHE_DIR"] = str(path)
    yield path
    if old is None:
        os.environ.pop("MUPX_CACHE_DIR", None)
    else:
        os.environ["MUPX_CACHE_DIR"] = old
