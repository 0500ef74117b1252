"""CLI conventions: --version, help without arguments, defaults and choices in --help, Hydra-style KEY=VALUE,
--config (a user config; a run's saved config.yaml replays), --cfg job, rules as TSV in a pipe, and the
declared dependencies. Nothing here trains."""

import json
import os
import re
from pathlib import Path

import yaml

import mupx
from mupx.config import choices

from .test_cli import cli

ROOT = Path(__file__).resolve().parents[1]


def test_version_and_no_arguments(capsys):
    code, out, err = cli(capsys, "--version")
    assert code == 0 and out.strip() == f"mupx {mupx.__version__}"
    code, out, err = cli(capsys)
    assert code == 0 and err == "" and "Commands" in out and "transfer" in out
    code, out, err = cli(capsys, "data")
    assert code == 0 and err == "" and "prepare" in out


def test_help_shows_defaults_choices_and_the_truth_about_jobs(capsys):
    code, out, _ = cli(capsys, "train", "--help")
    text = " ".join(out.replace("│", " ").split())
    assert code == 0
    for shown in ("config: 128", "config: 200", "config: adamw", "config: stdlib", "config: auto"):
        assert shown in text, shown
    for name in choices("data") + choices("optimizer"):  # the 7 corpora and 9 optimizers, from configs/
        assert re.search(rf"\b{name}\b", text), name
    assert len(choices("data")) == 7
    code, out, _ = cli(capsys, "sweep", "--help")
    assert f"core count ({os.cpu_count()} here)" in " ".join(out.replace("│", " ").split())
    code, out, _ = cli(capsys, "coord-check", "--help")
    assert "at least 3" in " ".join(out.replace("│", " ").split())


def test_positional_key_value_is_an_override(capsys):
    _, with_s, _ = cli(capsys, "rules", "--json", "-s", "model.width=256", "-s", "param.base_width=64")
    code, positional, err = cli(capsys, "rules", "--json", "model.width=256", "param.base_width=64")
    assert code == 0, err
    assert json.loads(positional) == json.loads(with_s)
    assert json.loads(positional)["header"]["width"] == 256


def test_cfg_job_prints_the_composed_config_and_writes_nothing(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # every default output folder would land here
    for args in (
        ["train", "--width", "256", "train.steps=7"],
        ["rules", "--optimizer", "muon"],
        ["coord-check", "--widths", "64,128,512", "-s", "train.seq_len=16"],
        ["sweep", "--widths", "64,128", "--lrs", "1e-3,1e-2", "--batch", "8", "--out", str(tmp_path / "s")],
    ):
        code, out, err = cli(capsys, *args, "--cfg", "job")
        assert code == 0, err
        cfg = yaml.safe_load(out)
        assert set(cfg) >= {"model", "optimizer", "param", "data", "train", "seed", "device"}, args
    assert cfg["train"]["batch"] == 8 and cfg["model"]["width"] == 64  # the sweep's first run
    assert list(tmp_path.iterdir()) == []


def test_a_config_file_merges_on_top_of_the_defaults_and_a_saved_config_replays(capsys, tmp_path):
    team = tmp_path / "team.yaml"
    team.write_text("optimizer:\n  name: muon\n  lr: 0.01\ntrain:\n  steps: 7\nmodel: llama\n")
    code, out, err = cli(capsys, "train", "--config", team, "--width", "256", "--cfg", "job")
    assert code == 0, err
    cfg = yaml.safe_load(out)
    assert (
        cfg["optimizer"]["name"] == "muon"
        and cfg["optimizer"]["lr"] == 0.01
        and "adam_lr" in cfg["optimizer"]
    )
    assert cfg["train"]["steps"] == 7 and cfg["model"]["flavour"] == "llama" and cfg["model"]["width"] == 256
    # flags and -s win; a flag choosing another optimizer drops the file's optimizer section
    _, out, _ = cli(
        capsys, "train", "--config", team, "--optimizer", "adamw", "-s", "train.steps=9", "--cfg", "job"
    )
    cfg = yaml.safe_load(out)
    assert (
        cfg["optimizer"]["name"] == "adamw" and cfg["optimizer"]["lr"] == 0.003 and cfg["train"]["steps"] == 9
    )
    # a composed config, saved as a run saves it, replays to the same config (strings with quotes too)
    _, first, _ = cli(capsys, "train", "--data", "tinystories", "--optimizer", "shampoo", "--cfg", "job")
    composed = yaml.safe_load(first)
    composed["data"]["tokenizer"] = "C:\\it's a path\\"
    saved = tmp_path / "config.yaml"
    saved.write_text(yaml.safe_dump(composed))
    code, again, err = cli(capsys, "train", "--config", saved, "--cfg", "job")
    assert code == 0, err
    assert yaml.safe_load(again) == composed

    # a sweep's --batches decide the batch over the file's train.batch (configs/proxy-cpu.yaml sets one)
    code, out, err = cli(capsys, "sweep", "--config", "configs/proxy-cpu.yaml", "--widths", "16,64", "--lrs", "1e-3",
                         "--tokens", "65536", "--batches", "8,32", "--out", str(tmp_path / "s"), "--cfg", "job")  # fmt: skip
    assert code == 0, err
    composed = yaml.safe_load(out)
    assert composed["train"]["batch"] == 8 and not (tmp_path / "s").exists()
    assert (
        composed["train"]["eval_batch"] == 32
    )  # the file's: every batch is scored on the same 16 x 32 windows
    # without one, the sweep scores every batch on the largest batch's windows
    code, out, err = cli(capsys, "sweep", "--widths", "16,64", "--lrs", "1e-3", "--seq-len", "64", "--tokens", "65536",
                         "--batches", "8,32", "--out", str(tmp_path / "s"), "--cfg", "job")  # fmt: skip
    assert code == 0, err
    assert yaml.safe_load(out)["train"]["eval_batch"] == 32


def test_rules_prints_tsv_in_a_pipe_and_never_truncates_tensor_names(capsys):
    code, out, _ = cli(capsys, "rules", "--optimizer", "shampoo", "--width", "256")  # capsys: not a terminal
    lines = out.splitlines()
    assert code == 0 and lines[0].startswith("# ") and lines[1].split("\t")[:3] == ["name", "role", "shape"]
    names = [line.split("\t")[0] for line in lines[2:]]
    assert "blocks.1.mlp.down.weight" in names and all("\t" in line for line in lines[1:])
    code, out, _ = cli(capsys, "rules", "--table", "--all", "--optimizer", "shampoo")  # 80 columns, not a tty
    assert code == 0 and "…" not in out
    assert all(n in out for n in names)


def test_runtime_dependencies_are_declared():
    block = re.search(r"^dependencies = \[(.*?)^\]", (ROOT / "pyproject.toml").read_text(), re.M | re.S)[1]
    deps = {re.split(r"[<>=]", d)[0]: d for d in re.findall(r'^\s*"([^"]+)"', block, re.M)}
    assert "pytorch-optimizer" in deps  # mupx/optim/adopt.py imports it
    assert deps["submitit"].endswith("<2")  # slurm.py uses two private functions of submitit 1.x
    assert deps["typer"] == "typer>=0.29"  # its own click: no undeclared click import
    sources = "\n".join(p.read_text() for p in (ROOT / "mupx").rglob("*.py"))
    assert not re.search(r"^\s*(import click|from click)", sources, re.M)
