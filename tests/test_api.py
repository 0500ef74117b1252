"""The Python API on a user's model: plans identical to ``mupx rules``, param groups, init and the step-0
check on a real model, the coordinate check through the API and through ``mupx coord-check -s
model._target_=...`` (μP passes, SP fails, AdamW and Muon), and a sweep of a model class in a local file."""

from __future__ import annotations

import dataclasses
import functools
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import torch

import mupx
from mupx.errors import MupxError
from mupx.models import Transformer
from mupx.models.contract import next_token_loss
from mupx.optim import PlanMismatchError
from mupx.runconfig import load_run_config

from .test_cli import cli, sets
from .test_sweep import SWEEP_TINY

# A nanoGPT-style model (nanoGPT's module names, fused c_attn, (logits, loss) output) that applies μP's
# forward multipliers with mupx's building blocks. Written to a file, as a user's model would be.
MODEL_SOURCE = """
import torch
import torch.nn.functional as F
from torch import nn

import mupx


class Attention(nn.Module):
    def __init__(self, n_embd, n_head, mult):
        super().__init__()
        self.n_head, self.scale = n_head, mult.attn_scale
        self.c_attn = nn.Linear(n_embd, 3 * n_embd)
        self.c_proj = nn.Linear(n_embd, n_embd)
        self.logits = mupx.AttentionLogits()

    def forward(self, x):
        b, t, c = x.shape
        q, k, v = (z.view(b, t, self.n_head, c // self.n_head).transpose(1, 2) for z in self.c_attn(x).split(c, dim=2))
        if self.logits.watched:
            self.logits(q @ k.transpose(-2, -1) * self.scale)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=self.scale)
        return self.c_proj(y.transpose(1, 2).reshape(b, t, c))


class Block(nn.Module):
    def __init__(self, n_embd, n_head, mult):
        super().__init__()
        self.mult = mult
        self.ln_1, self.attn = nn.LayerNorm(n_embd), Attention(n_embd, n_head, mult)
        self.ln_2 = nn.LayerNorm(n_embd)
        self.mlp = nn.ModuleDict(dict(c_fc=nn.Linear(n_embd, 4 * n_embd), c_proj=nn.Linear(4 * n_embd, n_embd)))

    def forward(self, x):
        x = mupx.residual(x, self.attn(self.ln_1(x)), self.mult)
        return mupx.residual(x, self.mlp.c_proj(F.gelu(self.mlp.c_fc(self.ln_2(x)))), self.mult)


class GPT(nn.Module):
    def __init__(self, n_embd, n_layer, n_head, vocab_size, block_size, mult, tie=False):
        super().__init__()
        self.mult = mult
        self.transformer = nn.ModuleDict(dict(
            wte=nn.Embedding(vocab_size, n_embd), wpe=nn.Embedding(block_size, n_embd),
            h=nn.ModuleList(Block(n_embd, n_head, mult) for _ in range(n_layer)), ln_f=nn.LayerNorm(n_embd),
        ))
        self.lm_head = mupx.Readout(n_embd, vocab_size, mult.output)
        if tie:
            self.transformer.wte.weight = self.lm_head.weight

    def forward(self, idx, targets=None):
        x = self.transformer.wte(idx) + self.transformer.wpe(torch.arange(idx.shape[1], device=idx.device))
        x = x * self.mult.embed
        for block in self.transformer.h:
            x = block(x)
        logits = self.lm_head(self.transformer.ln_f(x))
        loss = None if targets is None else F.cross_entropy(logits.flatten(0, 1), targets.flatten())
        return logits, loss
"""
TARGET = ["-s", "model._target_=usergpt.GPT", "-s", "model.args.width=n_embd", "-s", "model.args.depth=n_layer",
          "-s", "model.args.heads=n_head", "-s", "model.args.context=block_size"]  # fmt: skip
VOCAB, CONTEXT = 512, 32


def write_user_model(folder: Path, name: str = "usergpt") -> Path:
    path = Path(folder) / f"{name}.py"
    path.write_text(MODEL_SOURCE)
    return path


@functools.cache
def load_user_model():
    """The model file, imported as a user's script would import it."""
    path = write_user_model(Path(tempfile.mkdtemp(prefix="mupx-usergpt-")))
    spec = importlib.util.spec_from_file_location("usergpt", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def gpt(width: int, depth: int, mult) -> torch.nn.Module:
    """The user's model_fn(width, depth, mult): heads of 16."""
    return load_user_model().GPT(width, depth, width // 16, VOCAB, CONTEXT, mult)


def user_env(folder: Path) -> dict:
    return dict(os.environ, PYTHONPATH=os.pathsep.join([str(folder), os.environ.get("PYTHONPATH", "")]),
                COLUMNS="200")  # fmt: skip


# --- plans -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("optimizer", ["adamw", "muon", "sgd"])
def test_an_api_plan_equals_the_one_mupx_rules_prints(optimizer, capsys):
    args = [
        "--optimizer",
        optimizer,
        "--width",
        "256",
        "--depth",
        "4",
        "--base-width",
        "128",
        "--base-depth",
        "2",
    ]
    code, out, _ = cli(capsys, "rules", *args, "--json")
    assert code == 0
    printed = json.loads(out)
    cfg = load_run_config([f"optimizer={optimizer}"])

    def transformer(width, depth, mult):
        return Transformer(
            dataclasses.replace(cfg.model, width=width, depth=depth),
            cfg.data.vocab_size,
            cfg.train.seq_len,
            mult,
        )

    plan = mupx.plan(
        transformer,
        width=256,
        depth=4,
        base_width=128,
        base_depth=2,
        optimizer=optimizer,
        head_dim=cfg.model.head_dim,
    )
    assert isinstance(plan, mupx.Plan)
    assert plan.to_json()["rows"] == printed["rows"] and plan.to_json()["header"] == printed["header"]


def test_base_shapes_from_a_meta_model_a_mapping_or_a_file_give_one_plan(tmp_path):
    with torch.device("meta"):
        base = gpt(64, 2, mupx.Multipliers(1, 1, 1, 1))
    target = gpt(128, 2, mupx.Multipliers(1, 1, 1, 1))
    path = mupx.save_shapes(base, tmp_path / "base.json")
    plans = [mupx.plan(target, b, lr=1e-3, depth_alpha=0.5) for b in (base, mupx.load_shapes(path), path)]
    assert plans[0].rows == plans[1].rows == plans[2].rows
    assert plans[0].row("transformer.h.0.attn.c_attn.weight").lr_mult == 0.5 and plans[0].options.lr == 1e-3
    assert plans[0] == mupx.plan(gpt, width=128, depth=2, base_width=64, lr=1e-3, depth_alpha=0.5)


def test_plan_param_groups_init_and_the_step_0_check_on_a_real_model():
    plan = mupx.plan(gpt, width=128, depth=2, base_width=64, optimizer="adamw", head_dim=16, weight_decay=0.1)
    assert plan.multipliers == mupx.Multipliers(embed=1.0, output=0.5, attn_scale=0.25, residual=1.0)
    model = gpt(128, 2, plan.multipliers)
    plan.apply_init(model, seed=0)
    c_attn = model.transformer.h[0].attn.c_attn
    assert abs(c_attn.weight.std().item() / (0.02 / 2**0.5) - 1) < 0.05 and c_attn.bias.abs().max() == 0
    assert abs(model.lm_head.weight.std().item() / 0.02 - 1) < 0.05
    groups = plan.param_groups(model)
    hidden = next(g for g in groups if "transformer.h.0.attn.c_attn.weight" in g["names"])
    assert hidden["lr"] == plan.options.lr / 2 and hidden["weight_decay"] == 0.2
    for optimizer in (
        plan.optimizer_for(model),
        plan.optimizer_for(model, torch.optim.AdamW, betas=(0.9, 0.95)),
    ):
        x = torch.randint(0, VOCAB, (4, CONTEXT), generator=torch.Generator().manual_seed(0))
        losses = []
        for _ in range(5):
            loss = next_token_loss(model(x[:, :-1]), x[:, 1:])
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
            losses.append(loss.item())
        assert losses[-1] < losses[0]
    with pytest.raises(PlanMismatchError, match="μP would be off"):
        plan.check(torch.optim.AdamW(model.parameters(), lr=plan.options.lr), model)
    muon = mupx.plan(gpt, width=128, depth=2, base_width=64, optimizer="muon")
    with pytest.raises(MupxError, match="runs 2 updates"):
        muon.optimizer_for(gpt(128, 2, muon.multipliers), torch.optim.AdamW)


def test_api_bad_input_is_one_line():
    with pytest.raises(MupxError, match="unknown setting 'lrr' for adamw under mup"):
        mupx.plan(gpt, width=128, depth=2, base_width=64, lrr=1e-3)
    with pytest.raises(MupxError, match="needs width, depth and base_width"):
        mupx.plan(gpt, width=128)
    with pytest.raises(MupxError, match="logits for every position"):
        next_token_loss(torch.zeros(2, 1, VOCAB), torch.zeros(2, 8, dtype=torch.long))


# --- the coordinate check: through the API and the CLI ------------------------------------------------------

WIDTHS = (32, 64, 128, 256)


@pytest.mark.parametrize("optimizer", ["adamw", "muon"])
@pytest.mark.parametrize("param", ["mup", "sp"])
def test_coord_check_through_the_api(optimizer, param, tmp_path):
    result = mupx.coord_check(
        gpt, widths=WIDTHS, depth=2, optimizer=optimizer, param=param, head_dim=16, out=tmp_path
    )
    assert result["verdict"] == ("pass" if param == "mup" else "fail"), result["worst"]
    if param == "sp":
        assert abs(result["worst"]["slope"]) > 0.8
    gated = {(s["module"], s["metric"]) for s in result["slopes"] if s["gated"]}
    assert {
        ("embedding", "rms"),
        ("block.1", "delta_rms"),
        ("attn_logits.0", "rms"),
        ("logits_dW", "rms"),
    } <= gated
    assert ("transformer.h.0.attn.c_attn.weight", "rho_dw") in gated


# Every optimizer x param pair is checked in process above; through the CLI on a user's file, one that
# passes and one that fails (each a subprocess of its own: the costly part).
@pytest.mark.parametrize("optimizer,param", [("muon", "mup"), ("adamw", "sp")])
def test_coord_check_on_a_model_class_in_a_local_file(optimizer, param, tmp_path):
    write_user_model(tmp_path)
    cmd = [sys.executable, "-m", "mupx.cli", "coord-check", "--optimizer", optimizer, "--param", param,
           "--widths", ",".join(map(str, WIDTHS)), *TARGET, "--out", str(tmp_path / "out")]  # fmt: skip
    p = subprocess.run(cmd, env=user_env(tmp_path), capture_output=True, text=True, timeout=600)
    assert p.returncode == (0 if param == "mup" else 1), p.stdout + p.stderr
    result = json.loads((tmp_path / "out" / "coord_check.json").read_text())
    assert ("transformer.h.1.mlp.c_proj.weight", "rho_dw") in {
        (s["module"], s["metric"]) for s in result["slopes"] if s["gated"]
    }


def test_sweep_of_a_model_class_in_a_local_file(tmp_path):
    write_user_model(tmp_path)
    sweep = [sys.executable, "-m", "mupx.cli", "sweep", "--root", str(tmp_path), "--name", "user", "--jobs", "2",
             "--widths", "32,64", "--lrs", "2^-9:2^-5:2", "--steps", "3", *sets(SWEEP_TINY), *TARGET]  # fmt: skip
    p = subprocess.run(sweep, env=user_env(tmp_path), capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stdout + p.stderr
    doc = json.loads((tmp_path / "user" / "sweep.json").read_text())
    assert len(doc["runs"]) == 6 and all(r["status"] == "completed" for r in doc["runs"])
    assert [(pt["width"], pt["lr_star"] > 0) for pt in doc["fits"]["mup"]["points"]] == [
        (32, True),
        (64, True),
    ]
    run = next((tmp_path / "user" / "runs").iterdir())
    assert json.loads((run / "result.json").read_text())["model"] == "usergpt.GPT"
    assert "transformer.h.1.attn.c_attn.weight" in (run / "plan.tsv").read_text()
