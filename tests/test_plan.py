"""The μP plan: roles, multipliers and per-tensor settings against the papers' tables."""

import dataclasses
import math

import pytest
import torch

from mupx.errors import MupxError
from mupx.models import Transformer
from mupx.scaling.plan import apply_init
from mupx.scaling.roles import Role

from .helpers import ADAMW, GPT2, LLAMA, SGD, SP, plan

HIDDEN = [
    "attn.q.weight",
    "attn.k.weight",
    "attn.v.weight",
    "attn.o.weight",
    "mlp.up.weight",
    "mlp.down.weight",
]


def rows_by_suffix(p, suffix):
    return [r for r in p.rows if r.name.endswith(suffix)]


def test_roles_by_name_and_shape():
    p = plan()
    roles = {r.name: r.role for r in p.rows}
    assert roles["tok_emb.weight"] is Role.INPUT and roles["pos_emb.weight"] is Role.INPUT
    assert roles["lm_head.weight"] is Role.OUTPUT
    assert roles["blocks.0.attn.q.weight"] is Role.HIDDEN and roles["blocks.1.mlp.down.weight"] is Role.HIDDEN
    assert roles["blocks.0.ln1.weight"] is Role.VECTOR and roles["ln_f.bias"] is Role.VECTOR
    emb = p.row("tok_emb.weight")
    assert (emb.fan_in, emb.fan_out) == (256, 128)  # [vocab, d]: fan_in is the vocab
    down = p.row("blocks.0.mlp.down.weight")
    assert (down.fan_in, down.fan_out) == (512, 128)


@pytest.mark.parametrize("width,m", [(512, 2), (1024, 4)])
def test_adamw_mup_matches_tpv_table8(width, m):
    """TP-V Table 8 (Adam): hidden lr 1/fan_in (the MLP down-projection by its own fan_in), input and
    output lr 1, output multiplier 1/fan_in, hidden init var 1/fan_in, input/output init constant."""
    p = plan(width=width, base_width=256)
    assert p.row("tok_emb.weight").lr_mult == 1
    assert p.row("pos_emb.weight").lr_mult == 1
    assert p.row("lm_head.weight").lr_mult == 1
    for suffix in HIDDEN:
        for r in rows_by_suffix(p, suffix):
            assert r.fan_in_mult == m and math.isclose(r.lr_mult, 1 / m), r.name
            assert math.isclose(r.lr, ADAMW.lr / m)
            assert math.isclose(r.init_std, 0.02 / math.sqrt(m))
            assert math.isclose(r.eps, ADAMW.eps / m)  # ε after √v scales like 1/fan_in (TP-V B.3)
            assert math.isclose(r.wd, ADAMW.weight_decay * m)  # coupled: lr·wd held at its base value
    assert math.isclose(p.multipliers.output, 1 / m)
    assert p.row("lm_head.weight").init_std == 0.02 and p.row("tok_emb.weight").init_std == 0.02
    for r in p.rows:
        if r.role is Role.VECTOR:
            assert r.lr_mult == 1 and r.init in ("ones", "zeros")


@pytest.mark.parametrize("width,m", [(512, 2), (1024, 4)])
def test_sgd_mup_matches_tpv_table8(width, m):
    """TP-V Table 8 (SGD): input and bias lr fan_out, hidden lr 1, output lr fan_in (with 1/fan_in multiplier)."""
    p = plan(width=width, base_width=256, optimizer="sgd", options=SGD)
    assert p.row("tok_emb.weight").lr_mult == m
    assert p.row("lm_head.weight").lr_mult == m
    assert p.row("ln_f.weight").lr_mult == m
    for suffix in HIDDEN:
        for r in rows_by_suffix(p, suffix):
            assert math.isclose(r.lr_mult, 1.0), r.name
    assert all(r.eps is None for r in p.rows)


@pytest.mark.parametrize("optimizer,options", [("adamw", ADAMW), ("sgd", SGD)])
def test_sp_rows_are_all_one(optimizer, options):
    p = plan(width=1024, depth=8, base_width=256, param=SP, optimizer=optimizer, options=options)
    for r in p.rows:
        assert (r.fan_in_mult, r.fan_out_mult, r.depth_mult, r.lr_mult, r.fwd_mult) == (1, 1, 1, 1, 1), r.name
        assert r.eps_mult in (None, 1)
        assert r.init_std in (0.0, 1.0, 0.02)
    assert p.multipliers.output == 1 and p.multipliers.residual == 1
    assert math.isclose(p.multipliers.attn_scale, 1 / math.sqrt(32))


@pytest.mark.parametrize("model", [GPT2, LLAMA])
@pytest.mark.parametrize("optimizer,options", [("adamw", ADAMW), ("sgd", SGD)])
def test_mup_equals_sp_at_base_shape(model, optimizer, options):
    mup = plan(
        width=256, depth=4, base_width=256, base_depth=4, model=model, optimizer=optimizer, options=options
    )
    sp = plan(
        width=256,
        depth=4,
        base_width=256,
        base_depth=4,
        param=SP,
        model=model,
        optimizer=optimizer,
        options=options,
    )
    assert [r.group_settings() for r in mup.rows] == [r.group_settings() for r in sp.rows]
    assert [(r.init, r.init_std, r.fwd_mult) for r in mup.rows] == [
        (r.init, r.init_std, r.fwd_mult) for r in sp.rows
    ]
    assert mup.multipliers == sp.multipliers


def test_depth_rules_completep():
    """CompleteP Table 1 (AdamW, alpha=1): residual 1/m_L, hidden lr has no depth factor, ε × m_L^-1 in blocks."""
    p = plan(width=256, depth=8, base_width=128, base_depth=2)
    assert math.isclose(p.multipliers.residual, 1 / 4)
    q = p.row("blocks.5.attn.q.weight")
    assert q.depth_mult == 4 and math.isclose(q.lr_mult, 1 / 2)
    assert math.isclose(q.eps, ADAMW.eps / 2 / 4)
    assert p.row("ln_f.weight").depth_mult == 1  # outside the blocks
    half = plan(width=256, depth=8, base_width=128, base_depth=2, depth_alpha=0.5)
    assert math.isclose(half.multipliers.residual, 1 / 2)
    assert math.isclose(half.row("blocks.5.attn.q.weight").lr_mult, 1 / 2 * 4**-0.5)  # m_L^(alpha-1)
    assert math.isclose(half.row("blocks.5.ln1.weight").lr_mult, 4**-0.5)
    off = plan(width=256, depth=8, base_width=128, base_depth=2, depth_alpha=0.0)
    assert off.multipliers.residual == 1 and off.row("blocks.5.attn.q.weight").depth_mult == 1
    sgd = plan(width=128, depth=8, base_width=128, base_depth=2, optimizer="sgd", options=SGD)
    assert math.isclose(sgd.row("blocks.3.attn.o.weight").lr_mult, 4)  # 2603.00541 Table 5: η·r_L


def test_independent_weight_decay_scales_with_inverse_width():
    p = plan(width=512, base_width=128, wd_convention="independent")
    for r in p.rows:
        per_step = r.lr * r.wd  # torch applies p -= lr·wd·p
        assert math.isclose(per_step, 0 if r.role is Role.VECTOR else ADAMW.weight_decay / 4), r.name


@pytest.mark.parametrize("alpha", [0.5, 1.0])
def test_coupled_weight_decay_over_depth_follows_2603_00541(alpha):
    """AdamW: the coefficient is free of depth while the in-block lr carries m_L^(α−1) (CompleteP Table 1,
    2603.00541 Tables 6/12); SGD: λ/r_L^α (Tables 5/11). Either way the per-step decay lr·wd of an
    in-block tensor is the base one × m_L^(α−1); outside the blocks it is the base one."""
    m_l = 4
    adam = plan(width=256, depth=8, base_width=128, base_depth=2, depth_alpha=alpha)
    q = adam.row("blocks.3.attn.q.weight")
    assert math.isclose(q.wd, ADAMW.weight_decay * 2)  # width: λ·m_N, no depth factor
    assert math.isclose(q.lr * q.wd, ADAMW.lr * ADAMW.weight_decay * m_l ** (alpha - 1))
    emb = adam.row("tok_emb.weight")
    assert math.isclose(emb.lr * emb.wd, ADAMW.lr * ADAMW.weight_decay)
    sgd_options = dataclasses.replace(SGD, weight_decay=0.1)
    sgd = plan(
        width=128,
        depth=8,
        base_width=128,
        base_depth=2,
        depth_alpha=alpha,
        optimizer="sgd",
        options=sgd_options,
    )
    assert math.isclose(sgd.row("blocks.3.attn.o.weight").wd, 0.1 / m_l**alpha)


def test_gains_and_biases_are_not_decayed_unless_asked():
    p = plan(width=256, base_width=128)
    vectors = [r for r in p.rows if r.role is Role.VECTOR]
    assert vectors and all(r.wd == 0 for r in vectors)
    assert all(r.wd > 0 for r in p.rows if r.role is not Role.VECTOR)
    p = plan(width=256, base_width=128, decay_vectors=True)
    assert all(
        math.isclose(r.lr * r.wd, ADAMW.lr * ADAMW.weight_decay) for r in p.rows if r.role is Role.VECTOR
    )


def test_lr_rule_text_has_depth_factors_only_inside_blocks():
    p = plan(width=256, depth=8, base_width=128, base_depth=2, depth_alpha=0.5)
    assert p.row("ln_f.weight").lr_rule == "1" and p.row("ln_f.weight").lr_mult == 1
    assert p.row("blocks.0.ln1.weight").lr_rule == "depth^-0.5"
    assert p.row("blocks.0.attn.q.weight").lr_rule == "fan_in^-1·depth^-0.5"


def test_tied_embeddings_cannot_zero_init_the_readout():
    with pytest.raises(MupxError, match="zero_init_readout needs an untied readout"):
        dataclasses.replace(GPT2, tie_embeddings=True, zero_init_readout=True)


@pytest.mark.parametrize("width", [128, 512])
def test_measured_init_std_per_role(width):
    p = plan(width=width, base_width=128)
    model = Transformer(GPT2.__class__(**{**GPT2.__dict__, "width": width}), 256, 64, p.multipliers)
    apply_init(model, p, torch.Generator().manual_seed(0))
    params = dict(model.named_parameters())
    m = width / 128
    hidden = torch.cat([params[f"blocks.{i}.{s}"].flatten() for i in range(2) for s in HIDDEN])
    assert abs(hidden.std().item() / (0.02 / math.sqrt(m)) - 1) < 0.02
    assert abs(params["tok_emb.weight"].std().item() / 0.02 - 1) < 0.05
    assert abs(params["lm_head.weight"].std().item() / 0.02 - 1) < 0.05
    assert torch.all(params["blocks.0.ln1.weight"] == 1) and torch.all(params["blocks.0.attn.q.bias"] == 0)


def test_zero_init_options():
    import dataclasses

    p = plan(model=dataclasses.replace(GPT2, zero_init_readout=True, zero_init_query=True))
    assert p.row("lm_head.weight").init == "zeros"
    assert p.row("blocks.1.attn.q.weight").init == "zeros"
    assert p.row("blocks.1.attn.k.weight").init == "normal"


def test_bad_param_values_are_one_line_errors():
    with pytest.raises(MupxError, match="depth_alpha 2"):
        plan(depth_alpha=2.0)
    with pytest.raises(MupxError, match="base_width 100"):
        plan(base_width=100)
