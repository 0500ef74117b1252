"""The CLI: `mupx rules`, `mupx train`, and one-line errors with exit code 2 for bad input."""

import json
import os
import subprocess
import sys

import pytest

from mupx.cli import main

from .conftest import TINY


def cli(capsys, *args):
    """Run the CLI in-process (arguments such as paths as their str); returns (exit code, stdout, stderr)."""
    try:
        main([str(a) for a in args])
        code = 0
    except SystemExit as e:
        code = e.code
    out = capsys.readouterr()
    return code, out.out, out.err


def sets(overrides):
    return [a for o in overrides for a in ("-s", o)]


def test_rules_adamw_mup_matches_tpv(capsys):
    code, out, _ = cli(
        capsys,
        "rules",
        "--optimizer",
        "adamw",
        "--param",
        "mup",
        "--width",
        "1024",
        "--base-width",
        "256",
        "--json",
    )
    assert code == 0
    plan = json.loads(out)
    rows = {r["name"]: r for r in plan["rows"]}
    assert plan["header"]["output_mult"] == 0.25
    assert rows["tok_emb.weight"]["lr_mult"] == 1
    assert rows["blocks.0.mlp.down.weight"]["lr_mult"] == 0.25  # its own fan_in: 4096/1024
    assert rows["blocks.1.attn.q.weight"]["lr_mult"] == 0.25
    code, table, _ = cli(
        capsys, "rules", "--optimizer", "adamw", "--width", "1024", "--base-width", "256", "--table"
    )
    assert code == 0 and "coupled" in table and "(default)" in table and "output logits x0.25" in table


def test_rules_sp_rows_are_one(capsys):
    code, out, _ = cli(capsys, "rules", "--param", "sp", "--width", "1024", "--base-width", "256", "--json")
    assert code == 0
    assert all(r["lr_mult"] == 1 and r["fwd_mult"] == 1 for r in json.loads(out)["rows"])


BAD = [
    (["train", "--model", "gpt3"], "unknown model 'gpt3' (allowed: gpt2, llama)"),
    (["train", "--optimizer", "adamax"], "unknown optimizer 'adamax'"),
    (["train", "--param", "ntk"], "unknown param 'ntk' (allowed: mup, sp)"),
    (["train", "--data", "webtext"], "unknown data 'webtext'"),
    (["train", "--width", "100"], "model.width 100 is not a positive multiple of model.head_dim 32"),
    (["train", "--lr", "0"], "optimizer.lr must be > 0, got 0.0"),
    (["train", "--lr", "-1e-3"], "optimizer.lr must be > 0"),
    (["train", "--steps", "0"], "train.steps must be a positive integer, got 0"),
    (["train", "--data", "local", "-s", "data.path=/nonexistent/corpus.jsonl"], "/nonexistent/corpus.jsonl"),
    (["train", "--data", "local"], "data.path is required"),
    (["train", "-s", "train.stepz=3"], "unknown config key 'train.stepz'"),
    (["train", "-s", "model.width=wide"], "model.width must be an integer, got 'wide'"),
    (["train", "-s", "noequals"], "bad override 'noequals'"),
    (["train", "--device", "tpu"], "unknown device 'tpu'"),
    (["train", "--width", "abc"], "Invalid value for '--width'"),
    (["rules", "--base-width", "48"], "param.base_width 48 is not a multiple of model.head_dim 32"),
    (["rules", "-s", "param.depth_alpha=0.3"], "param.depth_alpha 0.3 is out of range"),
]


@pytest.mark.parametrize("args,message", BAD, ids=[" ".join(a) for a, _ in BAD])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(capsys, tmp_path, args, message):
    out = tmp_path / "run"
    extra = ["--out", str(out)] if args[0] == "train" else []
    code, _, err = cli(capsys, *args, *extra)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mupx: error:"), err
    assert message in lines[0]
    assert not out.exists()


def test_existing_run_folder_is_not_overwritten(capsys, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "result.json").write_text('{"mine": 1}')
    code, _, err = cli(capsys, "train", "--out", str(out), *sets(TINY))
    assert code == 2 and "already holds a finished run" in err
    assert (out / "result.json").read_text() == '{"mine": 1}'


def test_train_subprocess_end_to_end(tmp_path):
    """The console entry point as a user runs it: a finished run, and a bad flag without a traceback."""
    env = dict(os.environ)
    out = tmp_path / "run"
    ok = subprocess.run(
        [sys.executable, "-m", "mupx.cli", "train", "--steps", "5", "--out", str(out), *sets(TINY)],
        capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
    assert ok.returncode == 0, ok.stderr
    assert json.loads((out / "result.json").read_text())["status"] == "completed"
    assert str(out) in ok.stdout
    bad = subprocess.run(
        [sys.executable, "-m", "mupx.cli", "train", "--optimizer", "nope", *sets(TINY)],
        capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert bad.stderr.strip().count("\n") == 0
