"""Shampoo (mupx.optim.shampoo): the update against closed forms, the optimizer contract, and the plan's
μP rows (E and n_blk terms) against Qiu et al.'s formulas."""

import dataclasses
import io
import math
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from mupx.config import typed
from mupx.errors import MupxError
from mupx.models import ModelConfig, Transformer
from mupx.optim import check_against_plan, param_groups
from mupx.optim.shampoo import ShampooOptions, build_shampoo, layout
from mupx.scaling.plan import ParamConfig, apply_init, build_plan
from mupx.scaling.roles import Role
from mupx.scaling.rules import RULES, Context, Tensor, block_count, tile_size

from .helpers import plan

OPTS = ShampooOptions(
    lr=1e-2, betas=(0.9, 0.999), eps=1e-6, exponent_left=0.25, exponent_right=0.25, block_size=0,
    max_precond_dim=4096, precondition_every=10, graft="none", graft_eps=1e-8, spectral_norm=False,
    weight_decay=0.0, adam_lr=3e-3, adam_betas=(0.9, 0.95), adam_eps=1e-8,
)  # fmt: skip


YAML = Path(__file__).resolve().parents[1] / "configs" / "optimizer" / "shampoo.yaml"


# --- the update against closed forms ----------------------------------------------------------------


def group(w, lr=0.1, wd=0.0, eps=1e-6, graft_eps=1e-8) -> dict:
    return dict(params=[w], update="shampoo", lr=lr, weight_decay=wd, eps=eps, graft_eps=graft_eps)


def one_step(grad: torch.Tensor, lr=1.0, **kw) -> torch.Tensor:
    """The change of a zero matrix after one step on ``grad`` (with β1 = 0, so M̂ = G)."""
    opts = dataclasses.replace(OPTS, betas=(0.0, kw.pop("beta2", 0.999)), **kw)
    w = torch.nn.Parameter(torch.zeros_like(grad))
    w.grad = grad.clone()
    build_shampoo([group(w, lr, eps=opts.eps, graft_eps=opts.graft_eps)], opts).step()
    return w.detach().double()


def matrix(fo: int, fi: int, seed: int, spread=(1.0, 3.0)) -> torch.Tensor:
    """A float32 matrix with known singular values spread over ``spread`` (well conditioned)."""
    g = torch.Generator().manual_seed(seed)
    u, _ = torch.linalg.qr(torch.randn(fo, fo, generator=g, dtype=torch.float64))
    v, _ = torch.linalg.qr(torch.randn(fi, fi, generator=g, dtype=torch.float64))
    k = min(fo, fi)
    s = torch.linspace(*spread, k, dtype=torch.float64)
    return (u[:, :k] * s) @ v[:, :k].T


def closed_form(g: torch.Tensor, eps: float, el: float, er: float) -> torch.Tensor:
    """(GGᵀ + εI)^-e_L G (GᵀG + εI)^-e_R via the SVD G = U S Vᵀ: U diag(s (s²+ε)^-e_L (s²+ε)^-e_R) Vᵀ
    (G has no component in the null spaces, so the ε^-e there never acts)."""
    u, s, vh = torch.linalg.svd(g.double(), full_matrices=False)
    return (u * (s * (s**2 + eps) ** -el * (s**2 + eps) ** -er)) @ vh


@pytest.mark.parametrize("beta2", [0.0, 0.999])  # bias correction makes L̂ = GGᵀ after one step for any β2
def test_quarter_exponents_give_the_polar_factor(beta2):
    g = matrix(24, 16, seed=0)
    delta = one_step(g.float(), lr=0.5, eps=1e-10, beta2=beta2)
    u, _, vh = torch.linalg.svd(g, full_matrices=False)
    torch.testing.assert_close(-delta / 0.5, u @ vh, rtol=0, atol=2e-4)  # e = ¼, ¼, ε → 0: U Vᵀ


@pytest.mark.parametrize("el,er,eps", [(0.25, 0.25, 1.0), (0.5, 0.0, 0.5), (0.1, 0.4, 2.0), (0.5, 0.5, 0.3)])
def test_update_matches_closed_form(el, er, eps):
    g = matrix(12, 20, seed=1, spread=(0.1, 3.0))
    delta = one_step(g.float(), eps=eps, exponent_left=el, exponent_right=er)
    torch.testing.assert_close(-delta, closed_form(g, eps, el, er), rtol=1e-4, atol=1e-5)


def test_blocks_are_preconditioned_independently():
    g = matrix(16, 24, seed=2, spread=(0.1, 3.0)).float()
    delta = one_step(g, eps=0.5, block_size=8)
    want = torch.zeros(16, 24, dtype=torch.float64)
    for i in range(2):
        for j in range(3):
            tile = g[8 * i : 8 * i + 8, 8 * j : 8 * j + 8]
            want[8 * i : 8 * i + 8, 8 * j : 8 * j + 8] = closed_form(tile, 0.5, 0.25, 0.25)
    torch.testing.assert_close(-delta, want, rtol=1e-4, atol=1e-5)


def test_side_above_max_precond_dim_is_identity_and_not_cut():
    g = matrix(32, 8, seed=3, spread=(0.1, 3.0)).float()
    delta = one_step(g, eps=0.5, max_precond_dim=16, block_size=4)  # left side 32 > 16: identity, uncut
    want = torch.cat([closed_form(g[:, j : j + 4], 0.5, 0.0, 0.25) for j in range(0, 8, 4)], dim=1)
    torch.testing.assert_close(-delta, want, rtol=1e-4, atol=1e-5)


def test_adam_graft_sets_the_frobenius_norm():
    g = matrix(24, 16, seed=4).float()
    delta = one_step(g, lr=0.1, graft="adam", graft_eps=1e-3)
    adam = g.double() / (g.double().abs() + 1e-3)  # Adam's first step: G / (|G| + ε)
    assert math.isclose(delta.norm().item(), 0.1 * adam.norm().item(), rel_tol=1e-5)
    u, _, vh = torch.linalg.svd(g.double(), full_matrices=False)
    cos = (-delta * (u @ vh)).sum() / (delta.norm() * (u @ vh).norm())
    assert cos > 0.999  # still Shampoo's direction


def test_spectral_norm_sets_sigma_max():
    """σ_max(Δ)/lr = √(fan_out/fan_in); G has a clear spectral gap, so 5 power iterations find σ_max."""
    u, s, vh = torch.linalg.svd(matrix(32, 8, seed=5, spread=(0.2, 1.0)), full_matrices=False)
    s[-1] = 4.0
    g = ((u * s) @ vh).float()
    delta = one_step(g, lr=0.1, spectral_norm=True, exponent_left=0.1, exponent_right=0.1)
    sigma = torch.linalg.matrix_norm(delta, 2).item() / 0.1
    assert math.isclose(sigma, math.sqrt(32 / 8), rel_tol=1e-4)


def test_roots_are_recomputed_every_step_early_then_every_k():
    w = torch.nn.Parameter(torch.zeros(6, 4))
    opt = build_shampoo([group(w, eps=1e-3)], dataclasses.replace(OPTS, precondition_every=3))
    g = torch.Generator().manual_seed(0)
    refreshed = []
    for t in range(1, 11):
        w.grad = torch.randn(6, 4, generator=g)
        before = opt.state[w]["left_root"].clone() if t > 1 else None
        opt.step()
        if before is not None and not torch.equal(before, opt.state[w]["left_root"]):
            refreshed.append(t)
    assert refreshed == [2, 3, 4, 7, 10]  # steps 1..k, then 1 + k, 1 + 2k, ...


# --- the contract -----------------------------------------------------------------------------------

CFG = ModelConfig(
    flavour="gpt2", width=64, depth=2, head_dim=16, ffn_mult=4.0, tie_embeddings=False, bias=True,
    zero_init_readout=False, zero_init_query=False, norm_eps=1e-5,
)  # fmt: skip
PARAM = ParamConfig(
    name="mup", base_width=64, base_depth=2, depth_alpha=1.0, wd_convention="coupled", init_std=0.02,
    embed_mult=1.0, output_mult=1.0,
)  # fmt: skip


def tokens(n=4096, period=23, noise=0.1, seed=0) -> torch.Tensor:
    """A repeating random pattern with 10% of the tokens replaced by noise."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, (period,), generator=g).repeat(n // period + 1)[:n]
    return torch.where(torch.rand(n, generator=g) < noise, torch.randint(0, 256, (n,), generator=g), x)


def setup(options=OPTS, seed=0, width=64):
    cfg = dataclasses.replace(CFG, width=width)
    p = build_plan(cfg, PARAM, "shampoo", options, vocab_size=256, context=32)
    model = Transformer(cfg, 256, 32, p.multipliers)
    apply_init(model, p, torch.Generator().manual_seed(seed))
    return p, model, build_shampoo(param_groups(model, p), options)


def batches(n, seed=1, batch=8, seq=32):
    data, g = tokens(), torch.Generator().manual_seed(seed)
    for _ in range(n):
        idx = torch.randint(0, len(data) - seq - 1, (batch,), generator=g)
        xy = torch.stack([data[i : i + seq + 1] for i in idx])
        yield xy[:, :-1], xy[:, 1:]


def train(model, opt, data) -> list[float]:
    losses = []
    for x, y in data:
        loss = model(x, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


def test_groups_hold_the_plan():
    p, model, opt = setup(dataclasses.replace(OPTS, weight_decay=0.1))
    check_against_plan(opt, model, p, lr_factor=1.0)
    updates = {g["update"] for g in opt.param_groups}
    assert updates == {"shampoo", "adamw"}
    for g in opt.param_groups:
        roles = {p.row(n).role for n in g["names"]}
        assert roles == {Role.HIDDEN} if g["update"] == "shampoo" else Role.HIDDEN not in roles


def test_reads_lr_wd_eps_per_group_and_lr0_freezes():
    _, model, opt = setup(dataclasses.replace(OPTS, weight_decay=0.5))
    frozen = next(g for g in opt.param_groups if g["update"] == "shampoo")
    frozen["lr"] = 0.0
    other = [g for g in opt.param_groups if g is not frozen]
    before = {id(q): q.detach().clone() for g in opt.param_groups for q in g["params"]}
    train(model, opt, batches(3))
    assert all(torch.equal(q, before[id(q)]) for q in frozen["params"])
    assert all(not torch.equal(q, before[id(q)]) for g in other for q in g["params"] if q.grad is not None)


def test_decay_is_lr_times_wd_on_its_group_only():
    w1, w2 = torch.nn.Parameter(torch.ones(4, 4)), torch.nn.Parameter(torch.ones(4, 4))
    opt = build_shampoo([group(w1, wd=0.5), group(w2)], OPTS)
    w1.grad, w2.grad = torch.zeros(4, 4), torch.zeros(4, 4)
    opt.step()
    assert torch.allclose(w1, torch.full((4, 4), 0.95)) and torch.equal(w2, torch.ones(4, 4))


def test_missing_planned_key_is_an_error_not_a_default():
    w = torch.nn.Parameter(torch.zeros(4, 4))
    with pytest.raises(ValueError, match="eps"):
        build_shampoo([{"params": [w], "update": "shampoo", "lr": 0.1, "weight_decay": 0.0}], OPTS)


def test_no_global_rng_and_deterministic():
    opts = dataclasses.replace(OPTS, spectral_norm=True, block_size=16)
    runs = []
    for _ in range(2):
        _, model, opt = setup(opts)
        state = torch.get_rng_state()
        train(model, opt, batches(3))
        assert torch.equal(state, torch.get_rng_state())
        runs.append([q.detach().clone() for q in model.parameters()])
    assert all(torch.equal(a, b) for a, b in zip(*runs, strict=True))


@pytest.mark.parametrize(
    "extra", [{}, {"graft": "adam", "block_size": 16}, {"spectral_norm": True, "exponent_right": 0.0}]
)
def test_resume_is_bit_identical_across_a_refresh(extra):
    opts = dataclasses.replace(OPTS, precondition_every=3, weight_decay=0.1, **extra)
    _, model, opt = setup(opts)
    train(model, opt, batches(9))
    want = [q.detach().clone() for q in model.parameters()]

    data = batches(9)
    _, model, opt = setup(opts)
    train(model, opt, (next(data) for _ in range(5)))
    buf = io.BytesIO()
    torch.save({"model": model.state_dict(), "opt": opt.state_dict()}, buf)
    buf.seek(0)
    ckpt = torch.load(buf, weights_only=True)
    _, model, opt = setup(opts, seed=7)  # a fresh model with other weights, then the checkpoint
    model.load_state_dict(ckpt["model"])
    opt.load_state_dict(ckpt["opt"])
    train(model, opt, data)  # steps 6..9 cross the refresh at step 7
    assert all(torch.equal(a, b) for a, b in zip(want, model.parameters(), strict=True))


@pytest.mark.parametrize("extra", [{}, {"block_size": 16, "graft": "adam"}, {"spectral_norm": True}])
def test_trains_the_proxy(extra):
    _, model, opt = setup(dataclasses.replace(OPTS, **extra))
    losses = train(model, opt, batches(60))
    assert sum(losses[-10:]) / 10 < 0.8 * losses[0], losses


def test_state_layout_matches_the_rules_block_count():
    """The optimizer's tiles are the rules' n_blk (so the plan's n_blk^-E and ε/n_blk are the ones
    that run), and sides above max_precond_dim keep no factor."""
    opts = dataclasses.replace(OPTS, block_size=16, max_precond_dim=128)
    p, model, opt = setup(opts)
    train(model, opt, batches(1))
    params = dict(model.named_parameters())
    for row in p.rows:
        if row.role is not Role.HIDDEN:
            continue
        state = opt.state[params[row.name]]
        rule = RULES["shampoo"](Tensor(row.role, row.fan_in, row.fan_out, True), Context(1.0, opts))
        bo, bi, _, _ = layout(params[row.name].shape, opt.param_groups[0])
        n = next(iter(v for k, v in state.items() if k in ("left", "right"))).shape[0]
        assert n == rule.n_blocks == (row.fan_out // bo) * (row.fan_in // bi), row.name
        assert ("left" in state) == (row.fan_out <= 128) and ("right" in state) == (row.fan_in <= 128)


# --- options and config -----------------------------------------------------------------------------


def test_yaml_keys_are_the_options_fields():
    section = OmegaConf.to_container(OmegaConf.load(YAML))
    assert section.pop("name") == "shampoo"
    assert list(section) == [f.name for f in dataclasses.fields(ShampooOptions)]
    assert typed(ShampooOptions, section, "optimizer") == dataclasses.replace(
        OPTS, block_size=1024, max_precond_dim=65536
    )


@pytest.mark.parametrize(
    "bad,match",
    [
        ({"exponent_left": 0.6}, "exponent out of range"),
        ({"exponent_right": -0.1}, "exponent out of range"),
        ({"exponent_left": 0.0, "exponent_right": 0.0}, "exponent out of range"),
        ({"block_size": -1}, "block_size must be >= 0"),
        ({"precondition_every": 0}, "precondition_every must be >= 1"),
        ({"max_precond_dim": 0}, "max_precond_dim must be >= 1"),
        ({"betas": (0.9, 1.0)}, r"optimizer.betas must be in \[0, 1\)"),
        ({"adam_betas": (-0.1, 0.9)}, r"optimizer.adam_betas must be in \[0, 1\)"),
        ({"eps": 0.0}, "optimizer.eps must be > 0"),
        ({"lr": 0.0}, "optimizer.lr must be > 0"),
        ({"graft": "sgd"}, "graft must be one of none, adam"),
        ({"graft": "adam", "spectral_norm": True}, "at most one of them"),
    ],
)
def test_bad_options_are_one_line_errors(bad, match):
    with pytest.raises(MupxError, match=match) as e:
        dataclasses.replace(OPTS, **bad)
    assert "\n" not in str(e.value)


def test_a_side_is_cut_into_equal_tiles_of_at_most_block_size():
    """block_size 48 on sides 128 and 512: tiles of 32, the largest divisor not above 48; a side no longer
    than the block is one tile. The optimizer's layout is the rules' count."""
    assert [tile_size(d, 48) for d in (32, 48, 128, 512, 1280)] == [32, 48, 32, 32, 40]
    assert tile_size(5120, 1024) == 1024 and tile_size(1280, 1024) == 640 and tile_size(512, 0) == 512
    p = plan(optimizer="shampoo", options=dataclasses.replace(OPTS, block_size=48))
    up = p.row("blocks.0.mlp.up.weight")  # [512, 128] at the base: 16 x 4 tiles of 32
    assert up.blocks_mult == 1 and block_count(128, 512, 48) == 64
    assert layout(torch.Size((512, 128)), {"max_precond_dim": 4096, "block_size": 48, "exponent_left": 0.25,
                                           "exponent_right": 0.25})[:2] == (32, 32)  # fmt: skip


def test_default_blocking_keeps_the_rule_at_wide_targets():
    """The configured block_size 1024 keeps every side preconditioned at any width, so the rule keeps its
    form from a width-128 base to a width-4096 target (the MLP's 16384 side in 16 tiles)."""
    cfg = typed(
        ShampooOptions,
        {k: v for k, v in OmegaConf.to_container(OmegaConf.load(YAML)).items() if k != "name"},
        "optimizer",
    )
    p = plan(width=4096, optimizer="shampoo", options=cfg)
    up = p.row("blocks.0.mlp.up.weight")  # [16384, 4096]: 16 x 4 tiles of 1024; the base [512, 128]: one
    assert up.blocks_mult == 64 and math.isclose(up.lr_mult, 64**-0.5)  # E = ½: (fo/fi)^½ constant


# --- the plan's μP rows -----------------------------------------------------------------------------


def hidden_rows(p):
    return [r for r in p.rows if r.role is Role.HIDDEN]


@pytest.mark.parametrize("exponent", [0.25, 0.5])  # E = ½ (standard) and E = 1 ("shampoo2")
@pytest.mark.parametrize("block_size", [0, 32])
@pytest.mark.parametrize("width,depth", [(256, 2), (512, 8)])
def test_plan_lr_and_eps_follow_qiu(exponent, block_size, width, depth):
    """lr × (fan_out/fan_in)^(1−E)·n_blk^(−E)·m_L^(1−2E), ε × fan_in/fan_out·m_L^−2·n_blk^−1 (α = 1),
    ratios to the base (width 128, depth 2); a fixed block size makes n_blk grow as width²."""
    opts = dataclasses.replace(OPTS, exponent_left=exponent, exponent_right=exponent, block_size=block_size)
    p = plan(width=width, depth=depth, base_width=128, base_depth=2, optimizer="shampoo", options=opts)
    E, m_l = 2 * exponent, depth / 2
    for r in hidden_rows(p):
        assert r.update == "shampoo"
        fo, fi = r.shape
        n_blk = (fo // block_size) * (fi // block_size) if block_size else 1
        base_fo, base_fi = fo * 128 // width, fi * 128 // width
        blocks = n_blk / ((base_fo // block_size) * (base_fi // block_size) if block_size else 1)
        assert blocks == ((width / 128) ** 2 if block_size else 1) and r.blocks_mult == blocks
        ratio = r.fan_out_mult / r.fan_in_mult
        lr_mult = ratio ** (1 - E) * blocks ** (-E) * m_l ** (1 - 2 * E)
        assert math.isclose(r.lr_mult, lr_mult) and math.isclose(r.lr, OPTS.lr * lr_mult), r.name
        assert math.isclose(r.eps, OPTS.eps / ratio / m_l**2 / blocks), r.name
        graft_eps = OPTS.graft_eps / r.fan_in_mult / m_l  # Adam's ε rule
        assert math.isclose(r.extra["graft_eps"], graft_eps), r.name


@pytest.mark.parametrize("width,depth", [(256, 2), (512, 8)])
def test_plan_graft_takes_adams_lr_and_spectral_norm_a_constant(width, depth):
    kw = dict(width=width, depth=depth, base_width=128, base_depth=2, optimizer="shampoo")
    grafted = plan(**kw, options=dataclasses.replace(OPTS, graft="adam", block_size=32))
    spectral = plan(**kw, options=dataclasses.replace(OPTS, spectral_norm=True, block_size=32))
    for g, s in zip(hidden_rows(grafted), hidden_rows(spectral), strict=True):
        assert math.isclose(g.lr_mult, 1 / g.fan_in_mult)
        assert s.lr_mult == 1
        assert math.isclose(g.eps, s.eps)  # the matrix ε is the same rule whatever rescales the step


@pytest.mark.parametrize("width,depth", [(256, 2), (512, 8)])
def test_plan_adam_side_by_role(width, depth):
    p = plan(width=width, depth=depth, base_width=128, base_depth=2, optimizer="shampoo", options=OPTS)
    m = width / 128
    for r in p.rows:
        if r.role is Role.HIDDEN:
            continue
        assert r.update == "adamw" and "graft_eps" not in r.extra
        assert math.isclose(r.lr, OPTS.adam_lr), r.name  # input 1, output 1, vectors m_L^(α−1) = 1
        want = {Role.INPUT: 1 / m, Role.OUTPUT: 1 / m, Role.VECTOR: 1 / m / r.depth_mult}
        assert math.isclose(r.eps, OPTS.adam_eps * want[r.role]), r.name


def test_plan_counts_only_preconditioned_sides():
    """max_precond_dim 300 leaves the MLP's 4·width side unpreconditioned at widths 128 and 256: E = ½
    for the attention matrices and ¼ for the MLP; blocks count only along preconditioned sides."""
    opts = dataclasses.replace(OPTS, max_precond_dim=300, block_size=32)
    p = plan(width=256, depth=2, base_width=128, base_depth=2, optimizer="shampoo", options=opts)
    for r in hidden_rows(p):
        E = 0.25 if "mlp" in r.name else 0.5
        blocks = 2.0 if "mlp" in r.name else 4.0
        assert r.blocks_mult == blocks and math.isclose(r.lr_mult, blocks ** (-E)), r.name
        assert math.isclose(r.eps, OPTS.eps / blocks), r.name


@pytest.mark.parametrize("exponent", [0.125, 0.5])  # E = ¼ and E = 1; at E = ½ both forms agree
def test_plan_depth_rule_at_alpha_half(exponent):
    """At α = ½ the gradient of a block matrix scales as m_L^−½, so U ∝ m_L^(−½(1−2E)), while the step
    should be ∝ m_L^(α−1) = m_L^−½: lr ∝ m_L^(α(1−2E)+α−1). At E = 0 this is SGD's m_L^(2α−1) (rules.sgd),
    at E = ½ Muon's m_L^(α−1) (the one case the rule was checked against, 2603.00541 Table 10)."""
    opts = dataclasses.replace(OPTS, exponent_left=exponent, exponent_right=exponent)
    E, a = 2 * exponent, 0.5
    p = plan(width=128, depth=8, base_depth=2, optimizer="shampoo", options=opts, depth_alpha=a)
    assert math.isclose(p.row("blocks.0.attn.q.weight").lr_mult, 4 ** (a * (1 - 2 * E) + a - 1))
