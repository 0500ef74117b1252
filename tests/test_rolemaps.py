"""Role maps: names and shapes -> roles, fans and residual blocks for mupx's own names, nanoGPT, litgpt,
Hugging Face GPT-2 and Llama and torchtitan; a model built under each naming plans exactly like mupx's
own equivalent Transformer, tensor by tensor."""

from __future__ import annotations

import dataclasses
import re

import pytest
import torch

import mupx
from mupx.errors import MupxError
from mupx.models import Transformer
from mupx.nn import NEUTRAL
from mupx.scaling.roles import ROLE_MAPS, Role, RolesConfig, Rule, detect, role_map

from .helpers import GPT2, LLAMA

VOCAB, CONTEXT, HEAD_DIM = 512, 64, 16
MUPX_GPT2 = dataclasses.replace(GPT2, head_dim=HEAD_DIM)
MUPX_LLAMA = dataclasses.replace(LLAMA, head_dim=HEAD_DIM, ffn_mult=2.0)


def mupx_model(cfg, width, depth):
    with torch.device("meta"):
        return Transformer(dataclasses.replace(cfg, width=width, depth=depth), VOCAB, CONTEXT, NEUTRAL)


def roles(shapes, name="auto"):
    m = role_map(name, shapes)
    return m, {n: m.place(n, s) for n, s in shapes.items()}


# --- the maps on names alone ---------------------------------------------------------------------------


LITGPT = {  # litgpt's GPT (Lightning-AI/litgpt litgpt/model.py): nanoGPT's names, fused qkv, LLaMAMLP
    "lm_head.weight": (VOCAB, 64), "transformer.wte.weight": (VOCAB, 64), "transformer.h.0.norm_1.weight": (64,),
    "transformer.h.0.attn.qkv.weight": (192, 64), "transformer.h.0.attn.proj.weight": (64, 64),
    "transformer.h.0.mlp.fc_1.weight": (128, 64), "transformer.h.0.mlp.proj.weight": (64, 128),
    "transformer.ln_f.weight": (64,),
}  # fmt: skip
TORCHTITAN = {  # torchtitan's Llama 3 (torchtitan/models/llama3/model/model.py)
    "tok_embeddings.weight": (VOCAB, 64), "layers.0.attention.wq.weight": (64, 64),
    "layers.0.feed_forward.w2.weight": (64, 128), "layers.0.attention_norm.weight": (64,),
    "layers.1.ffn_norm.weight": (64,), "norm.weight": (64,), "output.weight": (VOCAB, 64),
}  # fmt: skip


def test_litgpt_and_torchtitan_names():
    m, p = roles(LITGPT, "litgpt")
    assert p["transformer.wte.weight"].role is Role.INPUT and p["lm_head.weight"].role is Role.OUTPUT
    down = p["transformer.h.0.mlp.proj.weight"]
    assert (down.role, down.fan_in, down.fan_out, down.block) == (
        Role.HIDDEN,
        128,
        64,
        ("transformer.h.0", 0),
    )
    assert p["transformer.ln_f.weight"].role is Role.VECTOR and p["transformer.ln_f.weight"].block is None
    assert detect(LITGPT).name == "nanogpt"  # litgpt's names are nanoGPT's (Linear layout): the same map
    m, p = roles(TORCHTITAN)
    assert m.name == "torchtitan"
    assert (p["tok_embeddings.weight"].role, p["output.weight"].role) == (Role.INPUT, Role.OUTPUT)
    assert p["layers.1.ffn_norm.weight"].block == ("layers.1", 1) and p["norm.weight"].block is None
    assert m.layer_agnostic("layers.1.ffn_norm.weight") == "layers.*.ffn_norm.weight"


def test_auto_tells_hugging_face_gpt2_from_nanogpt_by_the_conv1d_orientation():
    common = {"transformer.wte.weight": (VOCAB, 64), "lm_head.weight": (VOCAB, 64)}
    nano = {**common, "transformer.h.0.attn.c_attn.weight": (192, 64)}  # nn.Linear [3d, d]
    hf = {**common, "transformer.h.0.attn.c_attn.weight": (64, 192)}  # Conv1D [d, 3d]
    assert detect(nano).name == "nanogpt" and detect(hf).name == "hf_gpt2"
    for shapes in (nano, hf):
        c_attn = roles(shapes)[1]["transformer.h.0.attn.c_attn.weight"]
        assert (c_attn.fan_in, c_attn.fan_out) == (64, 192)


def test_user_rules_come_first_and_a_user_block_pattern_needs_no_built_in_map():
    shapes = {
        "embed.weight": (VOCAB, 64),
        "stack.0.proj.weight": (64, 64),
        "stack.0.gain": (64,),
        "head.weight": (VOCAB, 64),
    }
    cfg = RolesConfig(
        block=r"^stack\.(\d+)\.", rules=(Rule(r"^embed\.", "input"), Rule(r"^head\.", "output"))
    )
    m, p = roles(shapes, cfg)
    assert [p[n].role for n in shapes] == [Role.INPUT, Role.HIDDEN, Role.VECTOR, Role.OUTPUT]
    override = RolesConfig(map="mupx", rules=(Rule(r"lm_head\.weight$", "hidden"),))
    assert (
        roles({"lm_head.weight": (VOCAB, 64), "blocks.0.x.weight": (4, 4)}, override)[1][
            "lm_head.weight"
        ].role
        is Role.HIDDEN
    )


@pytest.mark.parametrize(
    "shapes,roles_,message",
    [
        ({"transformer.wte.weight": (VOCAB, 64), "blocks.0.w": (64, 64)}, "mupx",
         "no role rule of map mupx places parameter transformer.wte.weight (512, 64)"),
        ({"tok_emb.weight": (VOCAB, 64), "blocks.0.experts": (4, 64, 64)}, "mupx",
         "parameter blocks.0.experts has shape (4, 64, 64): mupx plans 0-D, 1-D and 2-D tensors only"),
        ({"embed.weight": (VOCAB, 64), "stack.0.w": (64, 64)}, "auto", "no built-in role map fits these parameter names"),
        ({"tok_emb.weight": (VOCAB, 64)}, lambda: RolesConfig(rules=(Rule("(", "input"),)), "'(' is not a regular expression"),
        ({"tok_emb.weight": (VOCAB, 64)}, lambda: RolesConfig(block=r"^blocks\.\d+\."), "needs a group for the block index"),
    ],
)  # fmt: skip
def test_what_no_rule_places_is_a_one_line_error_naming_it(shapes, roles_, message):
    with pytest.raises(MupxError, match=re.escape(message)):
        m = role_map(roles_() if callable(roles_) else roles_, shapes)
        [m.place(n, s) for n, s in shapes.items()]


# --- real models under each naming plan like mupx's own, tensor by tensor ------------------------------


NANOGPT_NAMES = {  # nanoGPT / HF GPT-2 name -> (mupx names, fan_out factor: c_attn fuses q, k, v)
    "transformer.wte.weight": ("tok_emb.weight",), "transformer.wpe.weight": ("pos_emb.weight",),
    "transformer.ln_f.weight": ("ln_f.weight",), "transformer.ln_f.bias": ("ln_f.bias",),
    "lm_head.weight": ("lm_head.weight",),
    "h.ln_1.weight": ("ln1.weight",), "h.ln_1.bias": ("ln1.bias",), "h.ln_2.weight": ("ln2.weight",),
    "h.ln_2.bias": ("ln2.bias",), "h.attn.c_attn.weight": ("attn.q.weight", "attn.k.weight", "attn.v.weight"),
    "h.attn.c_attn.bias": ("attn.q.bias", "attn.k.bias", "attn.v.bias"), "h.attn.c_proj.weight": ("attn.o.weight",),
    "h.attn.c_proj.bias": ("attn.o.bias",), "h.mlp.c_fc.weight": ("mlp.up.weight",), "h.mlp.c_fc.bias": ("mlp.up.bias",),
    "h.mlp.c_proj.weight": ("mlp.down.weight",), "h.mlp.c_proj.bias": ("mlp.down.bias",),
}  # fmt: skip
LLAMA_NAMES = {
    "model.embed_tokens.weight": ("tok_emb.weight",), "model.norm.weight": ("ln_f.weight",),
    "lm_head.weight": ("lm_head.weight",), "h.input_layernorm.weight": ("ln1.weight",),
    "h.post_attention_layernorm.weight": ("ln2.weight",), "h.self_attn.q_proj.weight": ("attn.q.weight",),
    "h.self_attn.k_proj.weight": ("attn.k.weight",), "h.self_attn.v_proj.weight": ("attn.v.weight",),
    "h.self_attn.o_proj.weight": ("attn.o.weight",), "h.mlp.gate_proj.weight": ("mlp.gate.weight",),
    "h.mlp.up_proj.weight": ("mlp.up.weight",), "h.mlp.down_proj.weight": ("mlp.down.weight",),
}  # fmt: skip
SAME = ("role", "update", "fan_in", "fan_in_mult", "fan_out_mult", "depth_mult", "blocks_mult", "init", "init_std",
        "lr_rule", "lr_mult", "lr", "wd", "eps_mult", "eps", "fwd_mult", "extra")  # fmt: skip


def assert_plans_match(theirs, ours, names: dict):
    """Every tensor of ``theirs`` has the row of its mupx counterparts (``names``, with ``h.`` for the block;
    fan_out times the number of fused counterparts), and every mupx tensor is some tensor's counterpart."""
    assert (theirs.width, theirs.depth, theirs.base_width, theirs.base_depth) == (
        ours.width,
        ours.depth,
        ours.base_width,
        ours.base_depth,
    )
    assert theirs.multipliers == ours.multipliers
    covered = set()
    for row in theirs.rows:
        block = theirs.roles.block_of(row.name)
        key = "h." + row.name[len(block[0]) + 1 :] if block else row.name
        counterparts = [f"blocks.{block[1]}.{n}" if block else n for n in names[key]]
        for name in counterparts:
            mine = ours.row(name)
            assert {f: getattr(row, f) for f in SAME} == {f: getattr(mine, f) for f in SAME}, (row.name, name)
            assert row.fan_out == mine.fan_out * len(counterparts), row.name
        covered.update(counterparts)
    assert covered == {r.name for r in ours.rows}


def nanogpt(width, depth, tie):
    from .test_api import load_user_model

    return load_user_model().GPT(width, depth, width // HEAD_DIM, VOCAB, CONTEXT, NEUTRAL, tie=tie)


SETTINGS = {"adamw": {"weight_decay": 0.1}, "sgd": {}, "muon": {}}


@pytest.mark.parametrize("optimizer", sorted(SETTINGS))
@pytest.mark.parametrize("tie", [False, True])
def test_nanogpt_plans_like_mupx_gpt2(optimizer, tie):
    cfg = dataclasses.replace(MUPX_GPT2, tie_embeddings=tie)
    with torch.device("meta"):
        theirs = mupx.plan(
            nanogpt(128, 4, tie),
            nanogpt(64, 2, tie),
            optimizer=optimizer,
            head_dim=HEAD_DIM,
            **SETTINGS[optimizer],
        )
    ours = mupx.plan(
        mupx_model(cfg, 128, 4),
        mupx_model(cfg, 64, 2),
        optimizer=optimizer,
        head_dim=HEAD_DIM,
        **SETTINGS[optimizer],
    )
    assert theirs.roles.name == "nanogpt" and ours.roles.name == "mupx"
    assert ("lm_head.weight" in {r.name for r in theirs.rows}) is not tie
    assert_plans_match(theirs, ours, NANOGPT_NAMES)


HF = "transformers is not installed (pip install mupx[hf]): the Hugging Face GPT-2 and Llama plans are not checked"


def hf_gpt2(width, depth, tie):
    transformers = pytest.importorskip("transformers", reason=HF)
    transformers.logging.set_verbosity_error()
    config = transformers.GPT2Config(vocab_size=VOCAB, n_positions=CONTEXT, n_embd=width, n_layer=depth,
                                     n_head=width // HEAD_DIM, tie_word_embeddings=tie, bos_token_id=0, eos_token_id=0)  # fmt: skip
    with torch.device("meta"):
        return transformers.GPT2LMHeadModel(config)


def hf_llama(width, depth, tie):
    transformers = pytest.importorskip("transformers", reason=HF)
    transformers.logging.set_verbosity_error()
    config = transformers.LlamaConfig(vocab_size=VOCAB, hidden_size=width, intermediate_size=2 * width,
                                      num_hidden_layers=depth, num_attention_heads=width // HEAD_DIM,
                                      num_key_value_heads=width // HEAD_DIM, max_position_embeddings=CONTEXT,
                                      tie_word_embeddings=tie, bos_token_id=0, eos_token_id=0)  # fmt: skip
    with torch.device("meta"):
        return transformers.LlamaForCausalLM(config)


@pytest.mark.parametrize("optimizer", sorted(SETTINGS))
@pytest.mark.parametrize("tie", [False, True])
@pytest.mark.parametrize(
    "build,cfg,names,map_",
    [(hf_gpt2, MUPX_GPT2, NANOGPT_NAMES, "hf_gpt2"), (hf_llama, MUPX_LLAMA, LLAMA_NAMES, "hf_llama")],
    ids=["gpt2", "llama"],
)  # fmt: skip
def test_hugging_face_models_plan_like_mupx(build, cfg, names, map_, optimizer, tie):
    cfg = dataclasses.replace(cfg, tie_embeddings=tie)
    theirs = mupx.plan(
        build(128, 4, tie), build(64, 2, tie), optimizer=optimizer, head_dim=HEAD_DIM, **SETTINGS[optimizer]
    )
    ours = mupx.plan(
        mupx_model(cfg, 128, 4),
        mupx_model(cfg, 64, 2),
        optimizer=optimizer,
        head_dim=HEAD_DIM,
        **SETTINGS[optimizer],
    )
    assert theirs.roles.name == map_
    assert ("lm_head.weight" in {r.name for r in theirs.rows}) is not tie  # HF lists a tied head once
    assert_plans_match(theirs, ours, names)


def test_every_built_in_map_is_reachable_by_name():
    assert set(ROLE_MAPS) == {"mupx", "nanogpt", "litgpt", "hf_gpt2", "hf_llama", "torchtitan"}
