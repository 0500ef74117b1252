"""Small builders shared by the tests."""

from __future__ import annotations

import dataclasses

from mupx.models import ModelConfig
from mupx.optim.builtin import AdamWOptions, SGDOptions
from mupx.scaling.plan import ParamConfig, build_plan

GPT2 = ModelConfig(
    flavour="gpt2", width=128, depth=2, head_dim=32, ffn_mult=4.0, tie_embeddings=False, bias=True,
    zero_init_readout=False, zero_init_query=False, norm_eps=1e-5,
)  # fmt: skip
LLAMA = dataclasses.replace(GPT2, flavour="llama", bias=False, ffn_mult=8 / 3)
MUP = ParamConfig(
    name="mup", base_width=128, base_depth=2, depth_alpha=1.0, wd_convention="coupled", init_std=0.02,
    embed_mult=1.0, output_mult=1.0,
)  # fmt: skip
SP = dataclasses.replace(MUP, name="sp")
ADAMW = AdamWOptions(lr=1e-3, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1)
SGD = SGDOptions(lr=0.1, momentum=0.9, nesterov=False, weight_decay=0.0)


def plan(
    width=128,
    depth=2,
    base_width=128,
    base_depth=2,
    param=MUP,
    model=GPT2,
    optimizer="adamw",
    options=ADAMW,
    **pkw,
):
    m = dataclasses.replace(model, width=width, depth=depth)
    p = dataclasses.replace(param, base_width=base_width, base_depth=base_depth, **pkw)
    return build_plan(m, p, optimizer, options, vocab_size=256, context=64)
