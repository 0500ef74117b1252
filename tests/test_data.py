"""The data layer: stdlib corpus, local files, hub errors, tokenizer cache and BatchSampler (real files)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before datasets is imported: no network in tests
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from omegaconf import OmegaConf  # noqa: E402

from mupx.config import typed  # noqa: E402
from mupx.data import BatchSampler, DataConfig, TokenCorpus, load_corpus  # noqa: E402
from mupx.data.stdlib import EXCLUDED_DIRS, StdlibSource, stdlib_files  # noqa: E402
from mupx.data.tokenizer import train_bpe  # noqa: E402
from mupx.errors import MupxError  # noqa: E402

CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "data"
SMALL = {"vocab_size": 512, "max_documents": 300}  # a quick stdlib corpus for most tests


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("mupx-cache")


@pytest.fixture(scope="session")
def small(cache_dir) -> TokenCorpus:
    return load_corpus(DataConfig("stdlib", cache_dir=str(cache_dir), **SMALL))


def _docs(n: int = 300) -> list[str]:
    words = ["the", "cat", "sat", "on", "a", "mat", "and", "dog", "ran", "far", "away", "home"]
    return [
        f"story {i}: " + " ".join(words[(i * k) % len(words)] for k in range(1, 9)) + "." for i in range(n)
    ]


@pytest.fixture
def jsonl_file(tmp_path) -> Path:
    path = tmp_path / "docs.jsonl"
    path.write_text("".join(json.dumps({"text": t, "id": i}) + "\n" for i, t in enumerate(_docs())))
    return path


# --- the stdlib corpus -------------------------------------------------------------------------------


def test_stdlib_file_list_is_sorted_without_tests_or_packages():
    files = stdlib_files()
    assert files == sorted(files) and len(files) > 300
    assert "os.py" in files and "json/__init__.py" in files
    for rel in files:
        assert rel.endswith(".py")
        assert not EXCLUDED_DIRS & set(rel.split("/")[:-1]), rel
    assert not any(rel.startswith(("test/", "lib2to3/tests/", "idlelib/idle_test/")) for rel in files)


def test_stdlib_split_is_deterministic_and_disjoint():
    a, b = StdlibSource(0.05), StdlibSource(0.05)
    train, val = a.split_paths()
    assert (train, val) == b.split_paths()
    assert not set(train) & set(val) and sorted(train + val) == stdlib_files()
    assert 0 < len(val) < 0.15 * len(train)
    assert a.corpus_hash == b.corpus_hash
    assert StdlibSource(0.05, max_documents=10).corpus_hash != a.corpus_hash


def test_small_corpus(small):
    assert small.vocab_size == 512
    assert small.train.dtype == np.uint16 and small.val.dtype == np.uint16
    assert not small.train.flags.writeable
    assert len(small.train) > 10 * len(small.val) > 0
    assert int(small.train.max()) < small.vocab_size
    m = small.manifest
    json.dumps(m)
    assert m["source"] == "stdlib" and m["tokenizer"] == "bpe" and m["vocab_size"] == 512
    assert m["n_docs_train"] + m["n_docs_val"] == 300
    assert (m["n_tokens_train"], m["n_tokens_val"]) == (len(small.train), len(small.val))
    eot = m["eot_id"]
    assert (small.train == eot).sum() == m["n_docs_train"] and small.train[-1] == eot
    for key in ("corpus_hash", "tokenizer_hash", "cache_key"):
        assert m[key]


def test_second_load_hits_the_cache(small, cache_dir):
    folder = Path(small.manifest["cache_path"])
    before = {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}
    start = time.perf_counter()
    again = load_corpus(DataConfig("stdlib", cache_dir=str(cache_dir), **SMALL))
    assert time.perf_counter() - start < 2.0
    assert {p.name: p.stat().st_mtime_ns for p in folder.iterdir()} == before
    assert again.manifest == small.manifest
    assert np.array_equal(again.train, small.train) and np.array_equal(again.val, small.val)


def test_incomplete_cache_entry_is_rebuilt(tmp_path):
    cfg = DataConfig("stdlib", vocab_size=300, max_documents=40, val_fraction=0.2, cache_dir=str(tmp_path))
    first = load_corpus(cfg)
    folder = Path(first.manifest["cache_path"])
    (folder / "meta.json").unlink()  # as if the builder died before finishing
    (folder / "val.bin").write_bytes(b"\0\0")
    second = load_corpus(cfg)
    assert second.manifest["n_tokens_val"] == first.manifest["n_tokens_val"] == len(second.val)


def test_two_processes_build_the_same_entry_at_once(tmp_path):
    code = (
        "import sys; from mupx.data import DataConfig, load_corpus; "
        "c = load_corpus(DataConfig('stdlib', vocab_size=300, max_documents=60, val_fraction=0.2, cache_dir=sys.argv[1])); "
        "print(c.manifest['tokenizer_hash'], len(c.train), int(c.train.astype('int64').sum()))"
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=120)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0]
    assert outs[0] == outs[1]
    folder = next((tmp_path / "data").glob("stdlib-*"))
    assert sorted(p.name for p in folder.iterdir() if not p.name.startswith(".")) == [
        "meta.json",
        "tokenizer.json",
        "train.bin",
        "val.bin",
    ]
    assert not list(folder.glob("*.tmp"))


def test_full_stdlib_corpus_at_default_vocab(tmp_path):
    cfg = DataConfig("stdlib", cache_dir=str(tmp_path))
    start = time.perf_counter()
    corpus = load_corpus(cfg)
    built = time.perf_counter() - start
    start = time.perf_counter()
    again = load_corpus(cfg)
    cached = time.perf_counter() - start
    print(
        f"\nfull stdlib corpus: build {built:.1f} s, cached load {cached:.2f} s, "
        f"{len(corpus.train)} train / {len(corpus.val)} val tokens, vocab {corpus.vocab_size}"
    )
    assert corpus.vocab_size == 4096 and corpus.train.dtype == np.uint16
    assert len(corpus.train) > 1_000_000 and len(corpus.val) > 50_000
    assert again.manifest == corpus.manifest


# --- BatchSampler ---------------------------------------------------------------------------------------


def _batches(sampler: BatchSampler, n: int) -> list[torch.Tensor]:
    return [torch.cat(sampler.next()) for _ in range(n)]


def test_sampler_shapes_and_shift():
    tokens = np.arange(5000, dtype=np.uint16)
    x, y = BatchSampler(tokens, batch=8, seq_len=32, seed=0).next()
    assert x.shape == y.shape == (8, 32) and x.dtype == y.dtype == torch.int64
    assert torch.equal(y, x + 1)  # on 0, 1, 2, ... the next token is the id plus one


def test_sampler_on_corpus(small):
    x, y = BatchSampler(small.train, batch=4, seq_len=64, seed=1).next()
    assert torch.equal(x[:, 1:], y[:, :-1])
    assert int(x.max()) < small.vocab_size


def test_sampler_is_reproducible_per_seed_and_rank(small):
    def make(seed, rank=0):
        return BatchSampler(small.train, batch=4, seq_len=64, seed=seed, rank=rank)

    same = _batches(make(3), 3)
    assert all(torch.equal(a, b) for a, b in zip(same, _batches(make(3), 3), strict=True))
    for other in (make(4), make(3, rank=1)):
        assert not any(torch.equal(a, b) for a, b in zip(same, _batches(other, 3), strict=True))


def test_sampler_does_not_touch_the_global_rng(small):
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    _batches(BatchSampler(small.train, batch=2, seq_len=16, seed=0), 2)
    assert torch.equal(torch.rand(3), expected)


def test_sampler_state_round_trip(small, tmp_path):
    sampler = BatchSampler(small.train, batch=4, seq_len=32, seed=7, rank=2)
    _batches(sampler, 3)
    torch.save(sampler.state_dict(), tmp_path / "sampler.pt")
    expected = _batches(sampler, 3)
    resumed = BatchSampler(small.train, batch=4, seq_len=32, seed=7, rank=2)
    resumed.load_state_dict(torch.load(tmp_path / "sampler.pt", weights_only=True))
    assert resumed.step == 3
    assert all(torch.equal(a, b) for a, b in zip(expected, _batches(resumed, 3), strict=True))
    with pytest.raises(MupxError, match="seed 7 rank 2"):
        BatchSampler(small.train, batch=4, seq_len=32, seed=7, rank=0).load_state_dict(sampler.state_dict())


def test_sampler_rejects_a_too_small_split():
    with pytest.raises(MupxError, match="too small for seq_len 64: has 64 tokens"):
        BatchSampler(np.zeros(64, dtype=np.uint16), batch=2, seq_len=64, seed=0)
    BatchSampler(np.zeros(65, dtype=np.uint16), batch=2, seq_len=64, seed=0).next()


# --- local files ----------------------------------------------------------------------------------------


def _local(path, tmp_path, **kw) -> DataConfig:
    return DataConfig(
        "local", path=str(path), vocab_size=300, val_fraction=0.1, cache_dir=str(tmp_path / "c"), **kw
    )


def _check_local(corpus: TokenCorpus, n_docs: int = 300):
    m = corpus.manifest
    assert m["source"] == "local" and m["n_docs_train"] + m["n_docs_val"] == n_docs
    assert m["n_docs_val"] > 0 and len(corpus.val) > 0 and len(corpus.train) > 10 * n_docs * 0.8
    assert (corpus.train == m["eot_id"]).sum() == m["n_docs_train"]


def test_local_jsonl(jsonl_file, tmp_path):
    corpus = load_corpus(_local(jsonl_file, tmp_path))
    _check_local(corpus)
    assert corpus.manifest["info"]["format"] == "json"
    again = load_corpus(_local(jsonl_file, tmp_path))
    assert again.manifest == corpus.manifest


def test_local_text_folder_and_parquet(tmp_path):
    docs = _docs()
    folder = tmp_path / "texts"
    folder.mkdir()
    (folder / "b.txt").write_text("\n".join(docs[150:]) + "\n")
    (folder / "a.txt").write_text("\n".join(docs[:150]) + "\n")
    (folder / ".hidden.txt").write_text("not a document\n")
    text = load_corpus(_local(folder, tmp_path))
    _check_local(text)
    assert text.manifest["info"] == {**text.manifest["info"], "format": "text", "n_files": 2}

    table = pa.table({"body": docs, "n": list(range(len(docs)))})
    pq.write_table(table, tmp_path / "docs.parquet")
    parquet = load_corpus(_local(tmp_path / "docs.parquet", tmp_path, text_field="body"))
    _check_local(parquet)
    # same documents in the same order, one tokenizer training recipe: the same tokens
    assert np.array_equal(parquet.train, text.train) and np.array_equal(parquet.val, text.val)


def test_local_max_documents_and_user_tokenizer(jsonl_file, small, tmp_path):
    corpus = load_corpus(_local(jsonl_file, tmp_path, max_documents=100, tokenizer=str(small.tokenizer_path)))
    _check_local(corpus, n_docs=100)
    assert corpus.vocab_size == small.vocab_size
    assert corpus.manifest["tokenizer"] == str(small.tokenizer_path)
    assert corpus.manifest["tokenizer_hash"] == small.manifest["tokenizer_hash"]
    with pytest.raises(MupxError, match="nope.json"):
        load_corpus(_local(jsonl_file, tmp_path, tokenizer=str(tmp_path / "nope.json")))


def test_local_errors(jsonl_file, tmp_path):
    with pytest.raises(MupxError, match="missing-folder.*does not exist"):
        load_corpus(_local(tmp_path / "missing-folder", tmp_path))
    csv = tmp_path / "docs.csv"
    csv.write_text("text\nhello\n")
    with pytest.raises(MupxError, match=r"docs\.csv.*\.jsonl.*data\.format"):
        load_corpus(_local(csv, tmp_path))
    with pytest.raises(MupxError, match="'body' is not a column.*columns: text, id"):
        load_corpus(_local(jsonl_file, tmp_path, text_field="body"))
    with pytest.raises(MupxError, match="'id'.*must hold strings"):
        load_corpus(_local(jsonl_file, tmp_path, text_field="id"))
    with pytest.raises(MupxError, match="val split .* is empty"):
        load_corpus(_local(jsonl_file, tmp_path, max_documents=2))
    with pytest.raises(MupxError, match="split 'validation'"):
        load_corpus(_local(jsonl_file, tmp_path, split="validation"))


# --- hub ------------------------------------------------------------------------------------------------


def test_hub_offline_fails_fast(tmp_path):
    cfg = DataConfig("hub", name="roneneldan/TinyStories", cache_dir=str(tmp_path))
    start = time.perf_counter()
    with pytest.raises(MupxError, match="offline") as info:
        load_corpus(cfg)
    assert time.perf_counter() - start < 5.0
    assert "roneneldan/TinyStories" in str(info.value) and "\n" not in str(info.value)


def test_hub_code_path_reads_a_local_dataset_folder(jsonl_file, tmp_path, monkeypatch):
    # load_dataset(name) also takes a folder of data files: the hub code path, without a network
    import datasets

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf")  # keep ~/.cache clean
    folder = tmp_path / "dataset"
    folder.mkdir()
    jsonl_file.rename(folder / jsonl_file.name)
    cfg = DataConfig(
        "hub",
        name=str(folder),
        split="train[:200]",
        vocab_size=300,
        val_fraction=0.1,
        cache_dir=str(tmp_path / "c"),
    )
    m = load_corpus(cfg).manifest
    assert m["source"] == "hub" and m["info"]["fingerprint"]
    assert m["n_docs_train"] + m["n_docs_val"] == 200
    assert load_corpus(cfg).manifest == m


# --- tokenizer / cache mismatch -------------------------------------------------------------------------


def test_cache_built_with_another_tokenizer_is_an_error(tmp_path):
    cfg = DataConfig("stdlib", vocab_size=300, max_documents=20, val_fraction=0.2, cache_dir=str(tmp_path))
    corpus = load_corpus(cfg)
    other = train_bpe([["a completely different tiny corpus", "with other merges"]], vocab_size=280)
    corpus.tokenizer_path.write_text(other.to_str())  # the entry's tokenizer.json is now a stranger's
    with pytest.raises(MupxError, match=r"different tokenizer \(vocab 300.*vocab 2\d\d\).*delete it"):
        load_corpus(cfg)


# --- DataConfig -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"source": "stdlib", "vocab_size": 0}, "data.vocab_size .* got 0"),
        ({"source": "stdlib", "vocab_size": 2**21}, "data.vocab_size .* got 2097152"),
        ({"source": "stdlib", "val_fraction": 0.9}, "data.val_fraction .* got 0.9"),
        ({"source": "stdlib", "val_fraction": 0.0}, "data.val_fraction .* got 0.0"),
        ({"source": "stdlib", "max_documents": 0}, "data.max_documents .* got 0"),
        ({"source": "local"}, "data.path is required for data=local"),
        ({"source": "hub"}, "data.name is required for data=hub"),
        ({"source": "web"}, "data.source must be one of stdlib, local, hub, got 'web'"),
    ],
)
def test_data_config_errors(kwargs, match):
    with pytest.raises(MupxError, match=match):
        DataConfig(**kwargs)


def test_yaml_configs_build_data_configs():
    stdlib = typed(DataConfig, OmegaConf.load(CONFIGS / "stdlib.yaml"), "data")
    assert stdlib == DataConfig("stdlib")
    for name in ("local", "hub"):
        values = OmegaConf.to_container(OmegaConf.load(CONFIGS / f"{name}.yaml"))
        assert set(values) >= {
            "source",
            "vocab_size",
            "val_fraction",
            "tokenizer",
            "max_documents",
            "cache_dir",
        }
        with pytest.raises(MupxError, match=f"is required for data={name}"):
            typed(DataConfig, values, "data")
        required = {"local": "path", "hub": "name"}[name]
        cfg = typed(DataConfig, {**values, required: "x"}, "data")
        assert cfg.source == name and getattr(cfg, required) == "x"
    with pytest.raises(MupxError, match="data.format must be one of"):
        typed(DataConfig, {"source": "local", "path": "x", "format": "csv"}, "data")
