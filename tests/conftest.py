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


# The two test workers (`make test`: -n 2 --dist loadfile --no-loadscope-reorder) take whole files in collection
# order. The files that train most go first and the quick ones fill in at the end, so that neither worker sits
# idle while the other finishes a long file (longest first; by default xdist orders files by their number of
# tests, which put the single 30-60 s tests last). Order by measured duration under -n 2, longest first.
LONGEST_FIRST = [
    "test_coord_check_optimizers.py", "test_sweep.py", "test_coord_check.py", "test_resume.py", "test_prepare.py",
    "test_api.py", "test_slurm.py", "test_ddp.py", "test_report.py", "test_gpu_check.py", "test_target_run.py",
    "test_horizon.py", "test_data.py", "test_bad_input.py",
]  # fmt: skip


def pytest_collection_modifyitems(items):
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: each file keeps its own order
