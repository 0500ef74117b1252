"""`mupx data prepare`: local JSON-lines and Parquet corpora trained on offline, a killed prepare resumed
byte-identically, tokenizer choices (bpe, tokenizer.json, hub name) and one-line errors with exit 2."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mupx.data import DataConfig, load_corpus
from mupx.data.tokenizer import train_bpe

from .conftest import TINY
from .test_cli import cli, sets

WORDS = "the a cat dog bird sat ran flew on under over mat tree home far away and then slowly quickly".split()
MODEL = [o for o in TINY if not o.startswith("data.")]  # the tiny model and train settings


def docs(n: int) -> list[str]:
    return [
        f"story {i}: " + " ".join(WORDS[(i * k + k * k) % len(WORDS)] for k in range(1, 12)) + "."
        for i in range(n)
    ]


def write_jsonl(path: Path, n: int) -> Path:
    path.write_text("".join(json.dumps({"text": t, "id": i}) + "\n" for i, t in enumerate(docs(n))))
    return path


def data_sets(path: Path, cache: Path, *extra: str) -> list[str]:
    return sets(
        [
            f"data.path={path}",
            "data.vocab_size=300",
            "data.val_fraction=0.1",
            f"data.cache_dir={cache}",
            *extra,
        ]
    )


def mupx(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "mupx.cli", *args], capture_output=True, text=True, timeout=timeout
    )


def entries(cache: Path) -> list[Path]:
    """The published cache entries (not the hidden partial folders and locks, nor the datasets cache)."""
    found = (cache / "data").glob("*") if (cache / "data").is_dir() else []
    return [p for p in found if p.is_dir() and not p.name.startswith((".", "hf-"))]


def one_line_error(code: int, err: str) -> str:
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("mupx: error:"), err
    return lines[0]


@pytest.mark.parametrize("fmt", ["jsonl", "parquet"])
def test_prepare_then_train_offline(tmp_path, fmt):
    """jsonl through data=local; parquet as a local copy of a hub corpus (data=tinystories, data.path)."""
    if fmt == "jsonl":
        path, corpus = write_jsonl(tmp_path / "docs.jsonl", 400), ["--data", "local"]
    else:
        path, corpus = tmp_path / "docs.parquet", ["--data", "tinystories"]
        pq.write_table(pa.table({"text": docs(400), "n": list(range(400))}), path)
    cache = tmp_path / "cache"
    prep = mupx("data", "prepare", *corpus, *data_sets(path, cache))
    assert prep.returncode == 0, prep.stderr
    assert "prepared: 400 documents" in prep.stdout and "tokenizing train" in prep.stdout
    [entry] = entries(cache)
    assert sorted(p.name for p in entry.iterdir()) == ["meta.json", "tokenizer.json", "train.bin", "val.bin"]
    built = {p.name: p.stat().st_mtime_ns for p in entry.iterdir()}

    out = tmp_path / "run"
    run = mupx("train", *corpus, "--steps", "5", "--out", str(out), *sets(MODEL), *data_sets(path, cache))
    assert run.returncode == 0, run.stderr
    result = json.loads((out / "result.json").read_text())
    assert result["status"] == "completed"
    assert result["data"]["cache_path"] == str(entry) and result["data"]["source"] == "local"
    assert {p.name: p.stat().st_mtime_ns for p in entry.iterdir()} == built  # read, not rebuilt
    again = mupx("data", "prepare", *corpus, "--quiet", *data_sets(path, cache))
    assert again.returncode == 0 and "already prepared: 400 documents" in again.stdout
    if fmt == "parquet":
        return  # a sweep reads the cache through the same code for either format

    sweep_model = [o for o in MODEL if not o.startswith(("model.width=", "param.base_width="))]
    sweep = mupx("sweep", "--widths", "32,64", "--lrs", "1e-3,1e-2", "--steps", "3", "--root", str(tmp_path),
                 "--name", "s", "-s", f"data={corpus[1]}", *sets(sweep_model), *data_sets(path, cache))  # fmt: skip
    assert sweep.returncode == 0, sweep.stderr
    runs = json.loads((tmp_path / "s" / "sweep.json").read_text())["runs"]
    assert len(runs) == 4 and all(r["status"] == "completed" for r in runs)
    assert {p.name: p.stat().st_mtime_ns for p in entry.iterdir()} == built


SLOW_PREPARE = """
import sys, time
import mupx.data.corpus as corpus
encode = corpus.encode
def slow(*args):
    time.sleep(0.01)
    return encode(*args)
corpus.encode = slow  # slow enough to be killed mid-way on any disk
from mupx.cli import main
main(sys.argv[1:])
"""


def test_killed_prepare_resumes_to_the_same_bytes(tmp_path):
    path = write_jsonl(tmp_path / "docs.jsonl", 3000)
    killed, clean = tmp_path / "killed", tmp_path / "clean"
    args = ["data", "prepare", "--data", "local", "--chunk-docs", "10"]
    proc = subprocess.Popen(
        [sys.executable, "-c", SLOW_PREPARE, *args, *data_sets(path, killed)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 120
    progress = None
    while time.monotonic() < deadline and proc.poll() is None:
        found = list((killed / "data").glob(".local-*.partial/progress.json"))
        progress = json.loads(found[0].read_text()) if found else None
        if progress and progress["train"]["docs"] >= 200:
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert progress and 200 <= progress["train"]["docs"] < 2000 and not progress["train"]["done"]
    assert entries(killed) == []  # nothing half-built is published

    resumed = mupx(*args, *data_sets(path, killed))
    assert resumed.returncode == 0, resumed.stderr
    assert "tokenizing train (resumed)" in resumed.stdout and "training BPE" not in resumed.stdout
    assert "prepared: 3,000 documents" in resumed.stdout
    assert not list((killed / "data").glob(".*.partial"))
    whole = mupx("data", "prepare", "--data", "local", "--quiet", *data_sets(path, clean))
    assert whole.returncode == 0, whole.stderr
    [a], [b] = entries(killed), entries(clean)
    assert a.name == b.name
    names = sorted(p.name for p in a.iterdir())
    assert (
        names
        == ["meta.json", "tokenizer.json", "train.bin", "val.bin"]
        == sorted(p.name for p in b.iterdir())
    )
    for name in names:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name


def test_streamed_local_copy_gives_the_same_tokens(tmp_path):
    path = write_jsonl(tmp_path / "docs.jsonl", 300)
    kw = dict(path=str(path), vocab_size=300, val_fraction=0.1, max_documents=250)
    loaded = load_corpus(DataConfig("local", cache_dir=str(tmp_path / "a"), **kw))
    streamed = load_corpus(DataConfig("hub", name="HuggingFaceFW/fineweb", streaming=True, cache_dir=str(tmp_path / "b"), **kw), chunk_docs=7)  # fmt: skip
    assert streamed.manifest["n_docs_train"] + streamed.manifest["n_docs_val"] == 250
    assert streamed.manifest == {**loaded.manifest, "cache_path": streamed.manifest["cache_path"]}
    assert np.array_equal(streamed.train, loaded.train) and np.array_equal(streamed.val, loaded.val)


def test_tokenizer_json_path(capsys, tmp_path):
    path = write_jsonl(tmp_path / "docs.jsonl", 300)
    tok = tmp_path / "my-tokenizer.json"
    tok.write_text(train_bpe([docs(300)], vocab_size=280).to_str())
    code, out, err = cli(capsys, "data", "prepare", "--data", "local", *data_sets(path, tmp_path / "c", f"data.tokenizer={tok}"))  # fmt: skip
    assert code == 0, err
    assert "vocab 280" in out
    [entry] = entries(tmp_path / "c")
    meta = json.loads((entry / "meta.json").read_text())
    assert meta["tokenizer"] == str(tok) and meta["requested_vocab_size"] is None
    assert (entry / "tokenizer.json").read_bytes() == tok.read_bytes()


def test_hub_names_offline_are_one_line_exit_2(capsys, tmp_path):
    start = time.perf_counter()
    code, _, err = cli(capsys, "data", "prepare", "--data", "tinystories", "-s", f"data.cache_dir={tmp_path}")
    line = one_line_error(code, err)
    assert "'roneneldan/TinyStories' offline" in line and "data.path" in line
    path = write_jsonl(tmp_path / "docs.jsonl", 50)
    code, _, err = cli(
        capsys, "data", "prepare", "--data", "local", *data_sets(path, tmp_path, "data.tokenizer=gpt2")
    )
    line = one_line_error(code, err)
    assert "hub tokenizer 'gpt2' offline" in line and "tokenizer.json path" in line
    code, _, err = cli(
        capsys, "data", "prepare", "--data", "local", *data_sets(path, tmp_path, "data.tokenizer=nope.json")
    )
    assert "nope.json" in one_line_error(code, err)
    assert time.perf_counter() - start < 20
    assert entries(tmp_path) == []


def test_cache_with_another_tokenizer_is_one_line_exit_2(capsys, tmp_path):
    path = write_jsonl(tmp_path / "docs.jsonl", 200)
    args = ["data", "prepare", "--data", "local", *data_sets(path, tmp_path / "c")]
    code, _, err = cli(capsys, *args)
    assert code == 0, err
    [entry] = entries(tmp_path / "c")
    (entry / "tokenizer.json").write_text(train_bpe([["another corpus entirely"]], vocab_size=270).to_str())
    code, _, err = cli(capsys, *args)
    line = one_line_error(code, err)
    assert "different tokenizer (vocab 300" in line and "vocab 2" in line and str(entry) in line


def test_bad_chunk_size(capsys, tmp_path):
    path = write_jsonl(tmp_path / "docs.jsonl", 50)
    code, _, err = cli(
        capsys, "data", "prepare", "--data", "local", "--chunk-docs", "0", *data_sets(path, tmp_path)
    )
    assert "--chunk-docs must be a positive number of documents, got 0" in one_line_error(code, err)


@pytest.mark.parametrize("name", ["fineweb", "fineweb_edu", "openwebtext", "tinystories"])
def test_corpus_configs(name):
    from mupx.runconfig import load_run_config

    d = load_run_config([f"data={name}"]).data
    assert d.source == "hub" and d.name and d.text_field == "text" and d.path is None
    assert d.streaming == (name != "tinystories")
    assert load_run_config([f"data={name}", "data.path=/x/y.parquet"]).data.path == "/x/y.parquet"
