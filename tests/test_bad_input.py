"""A catalogue of bad input across every command: each case exits with code 2, prints exactly one line
``mupx: error: ...`` naming the bad value, prints no traceback, and leaves every file and folder under
the test's tmp folder as it was (the user's files byte-identical, no half-written run folder).

Cases already covered elsewhere are not repeated: the flag and config errors of tests/test_cli.py (BAD),
the grid errors of tests/test_sweep.py, and the bad sweep files of tests/test_report.py and
tests/test_compare.py. The commands run in this process (``cli`` from test_cli); what needs a real run
folder, sweep or transfer is built once per module and copied into each test's tmp folder.
"""

from __future__ import annotations

import errno
import json
import os
import shutil

import pytest

from mupx.data import load_corpus
from mupx.runconfig import load_run_config
from mupx.train import run

from .conftest import TINY
from .test_cli import cli, sets
from .test_report import _mupx
from .test_sweep import SWEEP_TINY

MISSING = object()


def snapshot(root) -> dict:
    """Every file (its bytes) and folder (None) under ``root``."""
    return {p.relative_to(root): (p.read_bytes() if p.is_file() else None) for p in root.rglob("*")}


def changes(before: dict, after: dict) -> list[str]:
    return sorted(
        str(p) for p in before.keys() | after.keys() if before.get(p, MISSING) != after.get(p, MISSING)
    )


# --- what some cases need: a real run folder, a real sweep and its transfer (built once) -------------------


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory):
    """A finished 2-step run with a checkpoint at step 1 (also builds the session's token cache)."""
    out = tmp_path_factory.mktemp("bad-input-run") / "run"
    overrides = [*TINY, "train.steps=2", "train.checkpoint_every=1", "train.eval_every=2"]
    assert run(load_run_config(overrides), out)["status"] == "completed"
    return out, overrides


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """A finished sweep (width 32 x 3 lrs, 3 steps) and its transfer to width 64: 4 tiny runs."""
    root = tmp_path_factory.mktemp("bad-input-sweep")
    _mupx("sweep", "--widths", 32, "--lrs", "2^-9:2^-5:2", "--steps", 3, "--jobs", 2, "--name", "s",
          "--root", root, *sets(SWEEP_TINY))  # fmt: skip
    _mupx("transfer", "--from", root / "s", "--width", 64, "--jobs", 1, "--force")  # one width: no verdict
    return root / "s"


def copy_sweep(tmp, request, name="s", transfers=False):
    src = request.getfixturevalue("built")
    ignore = None if transfers else shutil.ignore_patterns("transfer-*")
    return shutil.copytree(src, tmp / name, ignore=ignore)


def copy_run(tmp, request, keep_result=False):
    src, overrides = request.getfixturevalue("run_folder")
    out = shutil.copytree(src, tmp / "run")
    if not keep_result:
        (out / "result.json").unlink()  # as if the run had been killed after its checkpoint
    return out, sets(overrides)


def two_transfers(tmp, request):
    """Two sweep folders (a, b) holding a copy of the same real transfer: comparable inputs."""
    src = request.getfixturevalue("built") / "transfer-w64-d2"
    a = shutil.copytree(src, tmp / "a" / "transfer-w64-d2")
    b = shutil.copytree(src, tmp / "b" / "transfer-w64-d2")
    return a, b


def transfer_run(folder):
    doc = json.loads((folder / "transfer.json").read_text())
    return folder / "runs" / doc["runs"][0]["run_id"]


def a_file(tmp, name="afile"):
    """A regular file where a folder would have to be (root ignores chmod, so this is the unwritable path)."""
    path = tmp / name
    path.write_text("the user's file\n")
    return path


def train(tmp, *args):
    return ["train", "--out", tmp / "run", *sets(TINY), *args]


def sweep(tmp, *args):
    return ["sweep", "--root", tmp, "--name", "bad", *sets(SWEEP_TINY), *args]


def transfer(tmp, request, *args, sweep_json=None):
    folder = copy_sweep(tmp, request)
    return ["transfer", "--from", sweep_json(folder) if sweep_json else folder, "--width", 64, *args]


def full_disk(monkeypatch, after: int):
    """Every fsync after the first ``after`` fails as on a full disk (the atomic writes fsync each file)."""
    calls = {"n": 0}
    real = os.fsync

    def fsync(fd):
        calls["n"] += 1
        if calls["n"] > after:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(fd)

    monkeypatch.setattr(os, "fsync", fsync)


# --- the catalogue: (setup(tmp, request, monkeypatch) -> argv, substrings of the one error line) -----------

CASES = []


def case(id_, *message, marks=()):
    def register(setup):
        CASES.append(pytest.param(setup, message, id=id_, marks=marks))
        return setup

    return register


# train ---------------------------------------------------------------------------------------------------
@case(
    "train --out <file>/run",
    "cannot be created",
    "afile is a file, not a folder",
)
def _(tmp, request, mp):
    return ["train", "--out", a_file(tmp) / "run", *sets(TINY)]


@case("train --out <existing file>", "exists and is not a folder")
def _(tmp, request, mp):
    return ["train", "--out", a_file(tmp), *sets(TINY)]


@case("train --resume without --out", "--resume needs --out")
def _(tmp, request, mp):
    return ["train", "--resume", *sets(TINY)]


@case("train --resume on a finished run", "already holds a finished run (completed); nothing to resume")
def _(tmp, request, mp):
    out, overrides = copy_run(tmp, request, keep_result=True)
    return ["train", "--resume", "--out", out, *overrides]


@case("train --resume with corrupt checkpoints", "no readable checkpoint in", "step-0000001.pt")
def _(tmp, request, mp):
    out, overrides = copy_run(tmp, request)
    for ckpt in (out / "checkpoints").glob("*.pt"):
        ckpt.write_bytes(ckpt.read_bytes()[:100])  # truncated, as by a full disk
    return ["train", "--resume", "--out", out, *overrides]


@case("train --resume with a truncated config.yaml", "unreadable config.yaml")
def _(tmp, request, mp):
    out, overrides = copy_run(tmp, request)
    text = (out / "config.yaml").read_text()
    (out / "config.yaml").write_text(text[: len(text) // 2])
    return ["train", "--resume", "--out", out, *overrides]


@case(
    "train -s train.schedule=exponential",
    "train.schedule must be one of constant, cosine, linear, wsd, got 'exponential'",
)
def _(tmp, request, mp):
    return train(tmp, "-s", "train.schedule=exponential")


@case("train batch not divisible by accum", "train.batch 6", "not divisible", "train.accum 4")
def _(tmp, request, mp):
    return train(tmp, "-s", "train.batch=6", "-s", "train.accum=4")


@case("train -s data.tokenizer=<truncated json>", "is not a valid tokenizer.json", "tok.json")
def _(tmp, request, mp):
    (tmp / "tok.json").write_text('{"version": "1.0", "trunc')
    return train(tmp, "-s", f"data.tokenizer={tmp / 'tok.json'}")


@case("train on a token cache built with another tokenizer", "was built with a different tokenizer")
def _(tmp, request, mp):
    load_corpus(load_run_config(TINY).data)  # the session cache holds this corpus
    cache = tmp / "cache"
    shutil.copytree(request.getfixturevalue("session_cache") / "data", cache / "data")
    for tok in (cache / "data").glob("*/tokenizer.json"):
        tok.write_bytes(tok.read_bytes() + b"\n")  # the tokenizer changed after the tokens were cached
    return train(tmp, "-s", f"data.cache_dir={cache}")


@case("train -s +foo=1", "unknown config key 'foo'", "known keys under the top level")
def _(tmp, request, mp):
    return train(tmp, "-s", "+foo=1")


@case("train -s +train.steps=3", "train.steps exists; set it without the +")
def _(tmp, request, mp):
    return train(tmp, "-s", "+train.steps=3")


@case("train KEY=VALUE that is not one", "bad override 'runs/x': expected key=value")
def _(tmp, request, mp):
    return train(tmp, "runs/x")


@case("train --resume on a mistyped path", "--resume: no run folder at", "nosuchrun")
def _(tmp, request, mp):
    return ["train", "--resume", "--out", tmp / "nosuchrun"]


@case("train --resume on a folder that is not a run", "--resume:", "holds no run (no config.yaml)")
def _(tmp, request, mp):
    (tmp / "notes").mkdir()
    a_file(tmp / "notes", "todo.txt")
    return ["train", "--resume", "--out", tmp / "notes"]


@case(
    "train --out <a folder of other files> (the 'use --resume' advice does not apply)",
    "files that are not a run",
)
def _(tmp, request, mp):
    (tmp / "notes").mkdir()
    a_file(tmp / "notes", "todo.txt")
    return ["train", "--out", tmp / "notes", *sets(TINY)]


@case("train --resume with a flag that differs from the saved config", "different config",
      "saved -> given: optimizer.lr (0.003 -> 0.5)")  # fmt: skip
def _(tmp, request, mp):
    out, _ = copy_run(tmp, request)
    return ["train", "--resume", "--out", out, "--lr", "0.5"]


@case("train --resume --config", "--config is not read with it")
def _(tmp, request, mp):
    out, _ = copy_run(tmp, request)
    return ["train", "--resume", "--out", out, "--config", out / "config.yaml"]


@case("train --config <missing file>", "--config", "nope.yaml: no such file")
def _(tmp, request, mp):
    return train(tmp, "--config", tmp / "nope.yaml")


@case("train --config <a YAML list>", "must be a mapping of config keys")
def _(tmp, request, mp):
    (tmp / "list.yaml").write_text("- train.steps=3\n")
    return train(tmp, "--config", tmp / "list.yaml")


@case("train --config <unknown key>", "unknown config key 'train.stepz'")
def _(tmp, request, mp):
    (tmp / "team.yaml").write_text("train:\n  stepz: 3\n")
    return train(tmp, "--config", tmp / "team.yaml")


@case("train --cfg all", "unknown --cfg 'all' (allowed: job)")
def _(tmp, request, mp):
    return train(tmp, "--cfg", "all")


@case("train --from-sweep with --lr", "--from-sweep sets --lr")
def _(tmp, request, mp):
    return train(tmp, "--from-sweep", copy_sweep(tmp, request), "--lr", "0.1")


@case("train --from-sweep with another optimizer", "but the sweep", "tuned adamw", "(allowed: adamw)")
def _(tmp, request, mp):
    return train(tmp, "--from-sweep", copy_sweep(tmp, request), "--optimizer", "muon")


@case("train --branch-from <a missing checkpoint>", "no checkpoint at", "nope.pt")
def _(tmp, request, mp):
    return train(tmp, "--branch-from", tmp / "nope.pt")


@case(
    "train with a horizon shorter than the warmup",
    "a horizon of 3 steps is shorter than its warmup (train.warmup_steps 5)",
)
def _(tmp, request, mp):
    return train(tmp, "--steps", "3", "-s", "train.warmup_steps=5")


# rules ---------------------------------------------------------------------------------------------------
@case("rules --optimizer soap --width 2048 -s optimizer.max_precond_dim=4096 (the rule changes form)", "changes form between the base shape 512x128",
      "(update soap, lr ∝ 1, eps ∝ fan_in^0.5·fan_out^-0.5·depth^-1·blocks^-0.5)",
      "the target 8192x2048 (update soap, lr ∝ 1, eps ∝ fan_in^0.5·fan_out^-1·depth^-1·blocks^-0.5)")  # fmt: skip
def _(tmp, request, mp):
    return ["rules", "--optimizer", "soap", "--width", "2048", "-s", "optimizer.max_precond_dim=4096"]


@case("rules --vocab 0", "--vocab must be a positive integer, got 0")
def _(tmp, request, mp):
    return ["rules", "--vocab", "0"]


@case("rules --depth 0", "model.depth must be a positive integer, got 0")
def _(tmp, request, mp):
    return ["rules", "--depth", "0"]


@case("rules --model bert", "unknown model 'bert' (allowed: gpt2, llama)")
def _(tmp, request, mp):
    return ["rules", "--model", "bert"]


@case(
    "rules width not a multiple of head_dim", "model.width 96 is not a positive multiple of model.head_dim 64"
)
def _(tmp, request, mp):
    return ["rules", "--width", "96", "--base-width", "64", "-s", "model.head_dim=64"]


@case("rules -s param.wd_convention=decoupled", "param.wd_convention must be one of coupled, independent")
def _(tmp, request, mp):
    return ["rules", "-s", "param.wd_convention=decoupled"]


# your own model (model._target_) -------------------------------------------------------------------------
USER_MODELS = """
import torch
from torch import nn


class Tiny(nn.Module):
    def __init__(self, width, depth, vocab_size, context, mult, extra=None):
        super().__init__()
        self.transformer = nn.ModuleDict(dict(wte=nn.Embedding(vocab_size, width),
                                              h=nn.ModuleList(nn.Linear(width, width) for _ in range(depth))))
        self.lm_head = nn.Linear(width, vocab_size, bias=False)
        if extra is not None:
            self.extra = nn.Parameter(torch.zeros(extra(width)))


class WithProj(Tiny):
    def __init__(self, width, depth, vocab_size, context, mult):
        super().__init__(width, depth, vocab_size, context, mult, extra=lambda w: (w, w))


class WithExperts(Tiny):
    def __init__(self, width, depth, vocab_size, context, mult):
        super().__init__(width, depth, vocab_size, context, mult, extra=lambda w: (2, w, 4))
"""


def user_model(tmp, mp, cls: str) -> list[str]:
    """A model file in the tmp folder, importable (no __pycache__ written) under a name of its own."""
    name = f"usermodels_{tmp.name.replace('-', '_')}"
    (tmp / f"{name}.py").write_text(USER_MODELS)
    mp.syspath_prepend(str(tmp))
    mp.setattr("sys.dont_write_bytecode", True)
    return ["-s", f"model._target_={name}.{cls}"]


@case(
    "rules -s model._target_=<not importable>",
    "model._target_ 'nosuchpkg.GPT' cannot be imported",
    "No module named 'nosuchpkg'",
)
def _(tmp, request, mp):
    return ["rules", "-s", "model._target_=nosuchpkg.GPT"]


@case(
    "sweep -s model.args.width=<not a constructor argument>",
    "has no constructor argument 'n_embd'",
    "model.args.width",
)
def _(tmp, request, mp):
    return sweep(tmp, "--widths", "32,64", *user_model(tmp, mp, "Tiny"), "-s", "model.args.width=n_embd")


@case(
    "rules -s model._target_=<a matrix no role rule places>",
    "no role rule of map nanogpt places parameter extra (128, 128)",
)
def _(tmp, request, mp):
    return ["rules", *user_model(tmp, mp, "WithProj")]


@case(
    "coord-check -s model._target_=<a 3-D parameter>",
    "parameter extra has shape (2, 64, 4)",
    "1-D and 2-D tensors only",
)
def _(tmp, request, mp):
    return ["coord-check", "--out", tmp / "cc", *user_model(tmp, mp, "WithExperts")]


@case(
    "rules -s model.args.multipliers=null under mup",
    "model.args.multipliers is null",
    "cannot apply μP's forward multipliers",
)
def _(tmp, request, mp):
    return ["rules", *user_model(tmp, mp, "Tiny"), "-s", "model.args.multipliers=null"]


@case("rules -s model.roles.map=bert", "unknown model.roles.map 'bert' (allowed: auto, mupx, nanogpt")
def _(tmp, request, mp):
    return ["rules", "-s", "model.roles.map=bert"]


# coord-check ---------------------------------------------------------------------------------------------
def coord(tmp, *args):
    return ["coord-check", "--out", tmp / "cc", *args]


@case("coord-check --widths 64,,128", "--widths must be comma-separated integers", "'64,,128'")
def _(tmp, request, mp):
    return coord(tmp, "--widths", "64,,128")


@case("coord-check --widths -64,64,128", "--widths must be positive and strictly increasing")
def _(tmp, request, mp):
    return coord(tmp, "--widths", "-64,64,128")


@case("coord-check --depths 2,x,8", "--depths must be comma-separated integers", "'2,x,8'")
def _(tmp, request, mp):
    return coord(tmp, "--depths", "2,x,8")


@case("coord-check --lr 0", "--lr must be > 0, got 0.0")
def _(tmp, request, mp):
    return coord(tmp, "--lr", "0")


@case("coord-check --lr-mult -1", "--lr-mult must be > 0, got -1.0")
def _(tmp, request, mp):
    return coord(tmp, "--lr-mult", "-1")


@case("coord-check --out <existing file>", "exists and is not a folder")
def _(tmp, request, mp):
    return ["coord-check", "--out", a_file(tmp)]


@case("coord-check --out <file>/cc", "cannot be created", "afile is a file, not a folder")
def _(tmp, request, mp):
    return ["coord-check", "--out", a_file(tmp) / "cc"]


@case("coord-check --out <a folder holding files>", "--out", "already holds files")
def _(tmp, request, mp):
    (tmp / "cc").mkdir()
    a_file(tmp / "cc", "coord_check.json")
    return coord(tmp, "--widths", "32,64,256")


# sweep ---------------------------------------------------------------------------------------------------
@case("sweep --lrs 2^-4:2^-12:0.5", "'2^-4:2^-12:0.5': STOP must be >= START")
def _(tmp, request, mp):
    return sweep(tmp, "--lrs", "2^-4:2^-12:0.5")


@case("sweep --lrs abc", "--lrs: 'abc' is not a number or a power of two")
def _(tmp, request, mp):
    return sweep(tmp, "--lrs", "abc")


@case("sweep --lrs 1e-3,,2e-3", "--lrs '1e-3,,2e-3' has an empty entry")
def _(tmp, request, mp):
    return sweep(tmp, "--lrs", "1e-3,,2e-3")


@case("sweep --lrs 1e-3:1e-2:0.5:1", "a range is START:STOP:STEP_IN_OCTAVES")
def _(tmp, request, mp):
    return sweep(tmp, "--lrs", "1e-3:1e-2:0.5:1")


@case("sweep --lrs auto:0", "--lrs 'auto:0': the auto centre must be > 0")
def _(tmp, request, mp):
    return sweep(tmp, "--lrs", "auto:0")


@case("sweep --widths 64,,128", "--widths '64,,128' has an empty entry")
def _(tmp, request, mp):
    return sweep(tmp, "--widths", "64,,128")


@case("sweep --widths -64", "--widths '-64' must list positive integers")
def _(tmp, request, mp):
    return sweep(tmp, "--widths", "-64")


@case("sweep --base-width 40", "param.base_width 40 is not a multiple of model.head_dim 16")
def _(tmp, request, mp):
    return sweep(tmp, "--widths", "32,64", "--lrs", "1e-3", "--base-width", "40")


@case("sweep --jobs 0", "--jobs must be >= 1, got 0")
def _(tmp, request, mp):
    return sweep(tmp, "--widths", "32", "--lrs", "1e-3", "--jobs", "0")


@case("sweep --dry-run with the local executor", "--dry-run applies to --executor slurm only")
def _(tmp, request, mp):
    return sweep(tmp, "--dry-run")


@case("sweep --name ../x", "--name '../x' must be a plain folder name")
def _(tmp, request, mp):
    return sweep(tmp, "--name", "../x")


@case("sweep --out with --name", "give --out, or --root and --name, not both")
def _(tmp, request, mp):
    return ["sweep", "--out", tmp / "s", "--name", "s", "--widths", "32", "--lrs", "1e-3"]


@case("sweep --device tpu", "unknown device 'tpu'")
def _(tmp, request, mp):
    return sweep(tmp, "--widths", "32", "--lrs", "1e-3", "--device", "tpu")


@case("sweep --device cuda:0 with --executor slurm", "--device cuda:0 applies to --executor local")
def _(tmp, request, mp):
    return sweep(
        tmp, "--widths", "32", "--lrs", "1e-3", "--executor", "slurm", "--dry-run", "--device", "cuda:0"
    )


@case("sweep --root <file>", "cannot be created", "afile is a file, not a folder")
def _(tmp, request, mp):
    return sweep(tmp, "--widths", "32", "--lrs", "1e-3", "--root", a_file(tmp))


@case("sweep rerun on a truncated sweep.yaml", "cannot read the sweep spec", "sweep.yaml")
def _(tmp, request, mp):
    (tmp / "bad").mkdir()
    (tmp / "bad" / "sweep.yaml").write_text(
        "name: bad\nmodel: gpt2\noptimizer: adamw\nparams:\n- mup\nwidths: [32,"
    )
    return sweep(tmp, "--widths", "32", "--lrs", "1e-3", "--steps", "1")


@case("sweep rerun over a run folder holding another config", "holds a run with a different config",
      "refusing to mix it into this sweep")  # fmt: skip
def _(tmp, request, mp):
    folder = copy_sweep(tmp, request)
    saved = next(folder.glob("runs/*/config.yaml"))
    saved.write_text(saved.read_text().replace("grad_clip: 1.0", "grad_clip: 0.5"))
    return ["sweep", "--root", tmp, "--name", "s", *sets(SWEEP_TINY), "--widths", "32", "--lrs", "2^-9:2^-5:2",
            "--steps", "3", "--jobs", "2"]  # fmt: skip


@case("sweep --steps with a horizon shorter than the warmup", "a horizon of 8 steps is shorter than its warmup "
      "(train.warmup_steps 10) and decay (from step 6)")  # fmt: skip
def _(tmp, request, mp):
    return sweep(tmp, "--widths", "32", "--lrs", "1e-3", "--steps", "8,32", "-s", "train.warmup_steps=10")


@case("sweep --batches with one not divisible by ranks x accum", "train.batch 6 (global sequences per step) is not "
      "divisible by 1 rank(s) x train.accum 4")  # fmt: skip
def _(tmp, request, mp):
    sets_ = [a for o in SWEEP_TINY if not o.startswith("train.batch=") for a in ("-s", o)]
    return ["sweep", "--root", tmp, "--name", "bad", *sets_, "--widths", "32", "--lrs", "1e-3", "--tokens", "768",
            "--batches", "4,6", "-s", "train.accum=4"]  # fmt: skip


@case("sweep with a validation batch the ranks x accum cannot split", "train.eval_batch 6 (sequences per validation "
      "batch) is not divisible by 1 rank(s) x train.accum 4")  # fmt: skip
def _(tmp, request, mp):
    sets_ = [a for o in SWEEP_TINY if not o.startswith("train.batch=") for a in ("-s", o)]
    return ["sweep", "--root", tmp, "--name", "bad", *sets_, "--widths", "32", "--lrs", "1e-3", "--tokens", "1024",
            "--batches", "4,8", "-s", "train.accum=4", "-s", "train.eval_batch=6"]  # fmt: skip


@case("sweep --steps 16,8 (not increasing)", "--steps '16,8' must be increasing without repeats")
def _(tmp, request, mp):
    return sweep(tmp, "--widths", "32", "--lrs", "1e-3", "--steps", "16,8")


@case("sweep --steps and --tokens", "give the horizons as --steps or as --tokens, not both")
def _(tmp, request, mp):
    return sweep(tmp, "--widths", "32", "--lrs", "1e-3", "--steps", "8,16", "--tokens", "1M,2M")


@case("sweep --tokens not a whole number of steps", "--tokens 1000 is not a whole number of steps at batch 4 x "
      "seq_len 32 (128 tokens per step): e.g. 896 or 1024")  # fmt: skip
def _(tmp, request, mp):
    return sweep(tmp, "--widths", "32", "--lrs", "1e-3", "--tokens", "1000,2048")


@case(
    "sweep --batches with a horizon in steps",
    "--batches 2,4 with a horizon in steps",
    "give the horizon in tokens (--tokens)",
)
def _(tmp, request, mp):
    sets_ = [a for o in SWEEP_TINY if not o.startswith("train.batch=") for a in ("-s", o)]
    return [
        "sweep",
        "--root",
        tmp,
        "--name",
        "bad",
        *sets_,
        "--widths",
        "32",
        "--lrs",
        "1e-3",
        "--batches",
        "2,4",
    ]


@case(
    "sweep --batches with -s train.batch",
    "--batches and train.batch=4 (--batch or -s): give the batches with --batches",
)
def _(tmp, request, mp):
    return sweep(tmp, "--widths", "32", "--lrs", "1e-3", "--tokens", "1024", "--batches", "2,4")


@case("sweep over horizons with -s train.schedule=cosine", "train.schedule=cosine: a sweep over several horizons trains "
      "warmup-stable-decay")  # fmt: skip
def _(tmp, request, mp):
    return sweep(tmp, "--widths", "32", "--lrs", "1e-3", "--steps", "8,16", "-s", "train.schedule=cosine")


@case("sweep batch not divisible by accum", "train.batch 6", "train.accum 4")
def _(tmp, request, mp):
    return sweep(tmp, "--widths", "32", "--lrs", "1e-3", "--steps", "1", "--jobs", "1",
                 "-s", "train.batch=6", "-s", "train.accum=4")  # fmt: skip


# transfer ------------------------------------------------------------------------------------------------
@case(
    "transfer --param sp --baseline sp", "--baseline 'sp' must be the other parameterization (allowed: mup)"
)
def _(tmp, request, mp):
    return transfer(tmp, request, "--param", "sp", "--baseline", "sp")


@case("transfer --param both", "unknown param 'both' (allowed: mup, sp)")
def _(tmp, request, mp):
    return transfer(tmp, request, "--param", "both")


@case("transfer --param sp from a mup-only sweep", "the sweep has no 'sp' runs (has: mup)")
def _(tmp, request, mp):
    return transfer(tmp, request, "--param", "sp")


@case("transfer --depth 0", "--depth must be a positive integer, got 0")
def _(tmp, request, mp):
    return transfer(tmp, request, "--depth", "0")


@case("transfer --verify -1", "--verify must be >= 0, got -1")
def _(tmp, request, mp):
    return transfer(tmp, request, "--verify", "-1")


@case("transfer --jobs 0", "--jobs must be >= 1, got 0")
def _(tmp, request, mp):
    return transfer(tmp, request, "--jobs", "0")


@case(
    "transfer --width 100 (not a multiple of head_dim)",
    "model.width 100 is not a positive multiple of model.head_dim 16",
)
def _(tmp, request, mp):
    return [*transfer(tmp, request), "--width", "100"]


@case("transfer from a truncated sweep.json", "sweep.json is not valid JSON")
def _(tmp, request, mp):
    def truncate(folder):
        text = (folder / "sweep.json").read_text()
        (folder / "sweep.json").write_text(text[: len(text) // 2])
        return folder / "sweep.json"

    return transfer(tmp, request, sweep_json=truncate)


@case(
    "transfer from a sweep.json of another schema_version", "has schema_version 2; this mupx reads version 1"
)
def _(tmp, request, mp):
    def bump(folder):
        doc = json.loads((folder / "sweep.json").read_text())
        (folder / "sweep.json").write_text(json.dumps({**doc, "schema_version": 2}))
        return folder

    return transfer(tmp, request, sweep_json=bump)


@case("transfer into a target folder that is a file", "exists and is not a folder", "transfer-w64-d2")
def _(tmp, request, mp):
    def block(folder):
        a_file(folder, "transfer-w64-d2")
        return folder

    return transfer(tmp, request, sweep_json=block)


@case("transfer of a sweep whose verdict is not 'transfers', without --force", "refusing to transfer",
      "--force runs it anyway")  # fmt: skip
def _(tmp, request, mp):
    def bound(folder):  # every optimum on the grid's edge: the recommendation is only a bound
        doc = json.loads((folder / "sweep.json").read_text())
        best = max(r["lr"] for r in doc["runs"])
        for r in doc["runs"]:
            r["loss"] = r["val_loss"] = 5.0 - (r["lr"] == best)
        (folder / "sweep.json").write_text(json.dumps(doc))
        return folder

    return transfer(tmp, request, sweep_json=bound)


@case("transfer --horizon-rule measured to another horizon of a one-horizon sweep", "--horizon-rule measured: the sweep "
      "did not vary the horizon (its runs all train at tokens 384)", "the target is at tokens 1.54k",
      "sweep --steps or --tokens over it, or choose --horizon-rule none | power:-0.32")  # fmt: skip
def _(tmp, request, mp):
    return transfer(tmp, request, "--steps", "12", "--horizon-rule", "measured", "--force")


@case("transfer --batch not divisible by ranks x accum", "train.batch 6 (global sequences per step) is not divisible by "
      "1 rank(s) x train.accum 4")  # fmt: skip
def _(tmp, request, mp):
    return transfer(tmp, request, "--batch", "6", "-s", "train.accum=4", "--force")


@case(
    "transfer to a horizon shorter than the warmup",
    "a horizon of 2 steps is shorter than its warmup (train.warmup_steps 3)",
)
def _(tmp, request, mp):
    return transfer(tmp, request, "--steps", "2", "-s", "train.warmup_steps=3", "--force")


@case("transfer --steps and --tokens", "give the target's horizon as --steps or as --tokens, not both")
def _(tmp, request, mp):
    return transfer(tmp, request, "--steps", "12", "--tokens", "1536")


@case("transfer --batch-rule cubic", "unknown --batch-rule 'cubic' (allowed: measured, none, sqrt, power:E)")
def _(tmp, request, mp):
    return transfer(tmp, request, "--batch-rule", "cubic")


@case("transfer --adam-rules beta3", "unknown --adam-rules 'beta3' (allowed: beta2, eps)")
def _(tmp, request, mp):
    return transfer(tmp, request, "--adam-rules", "beta3")


@case("transfer --executor pbs", "unknown --executor 'pbs' (allowed: local, slurm)")
def _(tmp, request, mp):
    return transfer(tmp, request, "--executor", "pbs")


@case("transfer -s seed=3", "the sweep sets seed itself")
def _(tmp, request, mp):
    return transfer(tmp, request, "-s", "seed=3", "--force")


# report --------------------------------------------------------------------------------------------------
@case("report when <sweep>/report is a file", "report folder", "exists and is not a folder")
def _(tmp, request, mp):
    folder = copy_sweep(tmp, request)
    a_file(folder, "report")
    return ["report", folder]


@case("report with a malformed spec in sweep.json", "is malformed (KeyError")
def _(tmp, request, mp):
    folder = copy_sweep(tmp, request)
    doc = json.loads((folder / "sweep.json").read_text())
    (folder / "sweep.json").write_text(json.dumps({**doc, "spec": {"name": "s"}}))
    return ["report", folder]


@case("report on a full disk", "cannot write", "No space left on device")
def _(tmp, request, mp):
    folder = copy_sweep(tmp, request)
    full_disk(mp, after=1)  # the first figure is written, the second is not: no half-written report/
    return ["report", folder]


# compare -------------------------------------------------------------------------------------------------
@case("compare --smooth 1", "--smooth 1.0 must be in [0, 1)")
def _(tmp, request, mp):
    a, b = two_transfers(tmp, request)
    return ["compare", a, b, "--smooth", "1", "--out", tmp / "cmp"]


@case("compare the same transfer twice", "two inputs are the same sweep")
def _(tmp, request, mp):
    a, _ = two_transfers(tmp, request)
    return ["compare", a, a, "--out", tmp / "cmp"]


@case("compare a transfer.json of another schema_version", "has schema_version 3; this mupx reads version 1")
def _(tmp, request, mp):
    a, b = two_transfers(tmp, request)
    doc = json.loads((b / "transfer.json").read_text())
    (b / "transfer.json").write_text(json.dumps({**doc, "schema_version": 3}))
    return ["compare", a, b, "--out", tmp / "cmp"]


@case("compare a run with a torn metrics.jsonl", "metrics.jsonl is not valid JSON lines")
def _(tmp, request, mp):
    a, b = two_transfers(tmp, request)
    metrics = transfer_run(b) / "metrics.jsonl"
    metrics.write_text(metrics.read_text()[:-30])
    return ["compare", a, b, "--out", tmp / "cmp"]


@case("compare a failed transfer run", "is 'failed' (boom); only completed runs compare")
def _(tmp, request, mp):
    a, b = two_transfers(tmp, request)
    result = transfer_run(b) / "result.json"
    result.write_text(json.dumps({**json.loads(result.read_text()), "status": "failed", "reason": "boom"}))
    return ["compare", a, b, "--out", tmp / "cmp"]


@case("compare --out <file>/cmp", "cannot be created", "afile is a file, not a folder")
def _(tmp, request, mp):
    a, b = two_transfers(tmp, request)
    return ["compare", a, b, "--out", a_file(tmp) / "cmp"]


@case("compare on a full disk", "cannot write", "No space left on device")
def _(tmp, request, mp):
    a, b = two_transfers(tmp, request)
    full_disk(mp, after=1)  # compare.json is written, compare.png is not: no half-written --out
    return ["compare", a, b, "--out", tmp / "cmp"]


@pytest.mark.parametrize("setup,message", CASES)
def test_bad_input_is_one_line_exit_2_and_changes_nothing(
    setup, message, tmp_path, request, monkeypatch, capsys
):
    args = [str(a) for a in setup(tmp_path, request, monkeypatch)]
    before = snapshot(tmp_path)
    code, _, err = cli(capsys, *args)
    lines = err.strip().splitlines()
    assert "Traceback" not in err, err
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("mupx: error:"), err
    for part in message:
        assert part in lines[0], lines[0]
    assert changes(before, snapshot(tmp_path)) == []


def test_the_catalogue_covers_every_command():
    commands = {p.id.split()[0] for p in CASES}
    assert commands == {"train", "rules", "coord-check", "sweep", "transfer", "report", "compare"}
    assert len(CASES) >= 28
