"""Test session setup: offline, and one shared token cache for the whole session."""

import os

import pytest
import torch

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ.setdefault("WANDB_MODE", "disabled")
# One intra-op thread in the test processes and every subprocess they start: the suite runs on 2 pytest
# workers (-n 2), the models are tiny, and with 2 threads per process on a busy 2-core machine OpenMP's
# spin-waiting made tests 6-40x slower (measured: shampoo's tests 85-212 s instead of 14 s, a coord check
# 62 s instead of 17 s). A test of the thread budget sets OMP_NUM_THREADS itself.
os.environ["OMP_NUM_THREADS"] = "1"
torch.set_num_threads(1)

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
