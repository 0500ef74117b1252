"""LAMB (own, no ‖W‖ clamp): the optimizer contract, the update against the formula, the μP point
(trust ratio × fan_in^-1/2 lr gives Θ(1/fan_in) update entries; a clamp at 10 would not), the plan rows."""

import dataclasses
import io
import math
from pathlib import Path

import pytest
import torch

from mupx.errors import MupxError
from mupx.models import Transformer
from mupx.optim import check_against_plan, param_groups
from mupx.optim.lamb import LambOptions, build_lamb
from mupx.scaling.plan import apply_init, build_plan
from mupx.scaling.roles import Role

from .helpers import GPT2, MUP, plan

OPTS = LambOptions(lr=3e-2, betas=(0.9, 0.999), eps=1e-6, weight_decay=0.0)
TINY = dataclasses.replace(GPT2, width=64, depth=2, head_dim=16)
TINY_MUP = dataclasses.replace(
    MUP, base_width=32, base_depth=2
)  # width 64 = 2 × base: non-trivial multipliers
VOCAB, CONTEXT, BATCH = 256, 32, 8


def tokens(n=4096, period=37, noise=0.1):
    """A repeating random pattern with 10% noise tokens: learnable well below ln 256."""
    g = torch.Generator().manual_seed(0)
    pattern = torch.randint(0, VOCAB, (period,), generator=g)
    stream = pattern.repeat(n // period + 1)[:n]
    return torch.where(torch.rand(n, generator=g) < noise, torch.randint(0, VOCAB, (n,), generator=g), stream)


DATA = tokens()


def batch(step: int) -> tuple[torch.Tensor, torch.Tensor]:
    starts = torch.randint(
        0, len(DATA) - CONTEXT - 1, (BATCH,), generator=torch.Generator().manual_seed(1000 + step)
    )
    windows = torch.stack([DATA[s : s + CONTEXT + 1] for s in starts.tolist()])
    return windows[:, :-1], windows[:, 1:]


def setup(options=OPTS, seed=0):
    p = build_plan(TINY, TINY_MUP, "lamb", options, vocab_size=VOCAB, context=CONTEXT)
    model = Transformer(TINY, VOCAB, CONTEXT, p.multipliers)
    apply_init(model, p, torch.Generator().manual_seed(seed))
    return p, model, build_lamb(param_groups(model, p), options)


def train_step(model, opt, step: int) -> float:
    x, y = batch(step)
    loss = model(x, y)
    loss.backward()
    opt.step()
    opt.zero_grad(set_to_none=True)
    return loss.item()


def plain(x) -> bool:
    """Only tensors, numbers, strings and containers of those (what weights_only=True loads)."""
    if x is None or isinstance(x, (torch.Tensor, bool, int, float, str)):
        return True
    if isinstance(x, (list, tuple)):
        return all(plain(v) for v in x)
    if isinstance(x, dict):
        return all(plain(k) and plain(v) for k, v in x.items())
    return False


# --- contract -----------------------------------------------------------------------------------


def test_groups_hold_the_plan():
    p, model, opt = setup()
    check_against_plan(opt, model, p, lr_factor=1.0)
    assert {g["update"] for g in opt.param_groups} == {"lamb"}


def test_lr_zero_group_is_frozen_with_weight_decay():
    _, model, opt = setup(dataclasses.replace(OPTS, weight_decay=0.1))
    frozen = opt.param_groups[0]
    frozen["lr"] = 0.0
    before = {n: q.detach().clone() for n, q in model.named_parameters()}
    for step in range(3):
        train_step(model, opt, step)
    for n, q in model.named_parameters():
        if n in frozen["names"]:
            assert torch.equal(q, before[n]), n
    others = [n for g in opt.param_groups[1:] for n in g["names"]]
    assert all(not torch.equal(dict(model.named_parameters())[n], before[n]) for n in others)


def fixed_grad_steps(model, opt, n=3):
    """n steps on the gradients of one batch, so each tensor's path depends only on its own group."""
    model(*batch(0)).backward()
    grads = {q: q.grad.clone() for q in model.parameters()}
    for _ in range(n):
        for q in model.parameters():
            q.grad = grads[q].clone()
        opt.step()


def test_eps_and_weight_decay_are_read_per_group():
    """Changing group 0's eps changes only group 0's tensors; decay is p·(1 − lr·wd), on its group only."""
    results = []
    for eps0 in (None, 1.0):
        _, model, opt = setup()
        if eps0 is not None:
            opt.param_groups[0]["eps"] = eps0
        fixed_grad_steps(model, opt)
        results.append(dict(model.named_parameters()))
    group0 = set(opt.param_groups[0]["names"])
    for n in results[0]:
        assert torch.equal(results[0][n], results[1][n]) == (n not in group0), n

    _, model, opt = setup()
    opt.param_groups[0]["weight_decay"] = 0.5
    before = {n: q.detach().clone() for n, q in model.named_parameters()}
    for q in model.parameters():
        q.grad = torch.zeros_like(q)
    opt.step()
    lr = opt.param_groups[0]["lr"]
    for n, q in model.named_parameters():
        want = before[n] * (1 - lr * 0.5) if n in opt.param_groups[0]["names"] else before[n]
        assert torch.equal(q, want), n


def test_step_does_not_touch_the_global_rng():
    _, model, opt = setup()
    model(*batch(0)).backward()
    rng = torch.get_rng_state()
    opt.step()
    model(*batch(1)).backward()
    opt.step()
    assert torch.equal(torch.get_rng_state(), rng)


def test_state_dict_round_trip_resumes_bit_identically():
    _, model, opt = setup()
    for step in range(12):
        train_step(model, opt, step)
    want = {n: q.detach().clone() for n, q in model.named_parameters()}

    _, model, opt = setup()
    for step in range(5):
        train_step(model, opt, step)
    assert plain(opt.state_dict())
    buf = io.BytesIO()
    torch.save({"model": model.state_dict(), "opt": opt.state_dict()}, buf)
    buf.seek(0)
    ckpt = torch.load(buf, weights_only=True)
    _, model, opt = setup(seed=1)  # fresh model with other weights, fresh optimizer
    model.load_state_dict(ckpt["model"])
    opt.load_state_dict(ckpt["opt"])
    for step in range(5, 12):
        train_step(model, opt, step)
    for n, q in model.named_parameters():
        assert torch.equal(q, want[n]), n


def test_trains_the_tiny_proxy():
    torch.manual_seed(0)
    _, model, opt = setup()
    losses = [train_step(model, opt, step) for step in range(60)]
    assert all(math.isfinite(x) for x in losses)
    assert sum(losses[-10:]) / 10 < 0.8 * losses[0], losses


@pytest.mark.parametrize(
    "change,match",
    [
        ({"lr": 0.0}, "optimizer.lr"),
        ({"weight_decay": -1.0}, "optimizer.weight_decay"),
        ({"betas": (0.9, 1.0)}, "optimizer.betas"),
        ({"eps": 0.0}, "optimizer.eps"),
    ],
)
def test_bad_options(change, match):
    with pytest.raises(MupxError, match=match):
        dataclasses.replace(OPTS, **change)


# --- the update rule ------------------------------------------------------------------------------


def test_update_matches_the_formula():
    """r = m̂/(√v̂ + ε); W ← W·(1 − lr·wd) − lr·(‖W‖/‖r‖)·r, ‖W‖ before the decay; ratio 1 for W = 0."""
    g = torch.Generator().manual_seed(0)
    lr, wd, eps, (b1, b2) = 0.05, 0.3, 1e-6, (0.8, 0.9)
    opts = LambOptions(lr=lr, betas=(b1, b2), eps=eps, weight_decay=wd)
    w0 = [torch.randn(6, 5, generator=g), torch.zeros(5)]
    ws = [w.clone().requires_grad_() for w in w0]
    opt = build_lamb([{"params": ws, "lr": lr, "weight_decay": wd, "eps": eps}], opts)
    refs = [w.clone() for w in w0]
    ms, vs = [torch.zeros_like(w) for w in w0], [torch.zeros_like(w) for w in w0]
    for t in range(1, 5):
        for i, w in enumerate(ws):
            grad = torch.randn(w.shape, generator=g)
            w.grad = grad
            ms[i] = b1 * ms[i] + (1 - b1) * grad
            vs[i] = b2 * vs[i] + (1 - b2) * grad * grad
            r = (ms[i] / (1 - b1**t)) / ((vs[i] / (1 - b2**t)).sqrt() + eps)
            ratio = refs[i].norm() / r.norm() if refs[i].norm() > 0 else 1.0
            refs[i] = refs[i] * (1 - lr * wd) - lr * ratio * r
        opt.step()
        for w, ref in zip(ws, refs, strict=True):
            torch.testing.assert_close(w.detach(), ref, rtol=1e-5, atol=1e-7)


def test_zero_initialised_bias_moves():
    b = torch.zeros(8, requires_grad=True)
    opt = build_lamb([{"params": [b], "lr": 0.1, "weight_decay": 0.0, "eps": 1e-8}], OPTS)
    b.grad = torch.randn(8, generator=torch.Generator().manual_seed(0))
    opt.step()
    # step 1: m̂/√v̂ = sign(g), ratio 1, so every entry moves by lr
    torch.testing.assert_close(b.detach(), -0.1 * b.grad.sign(), rtol=1e-6, atol=0)


def test_trust_ratio_gives_mup_update_size_and_a_clamp_would_not():
    """Under the μP plan a hidden matrix's update entries shrink like 1/fan_in (TP-V B.3): each step
    moves W by RMS(ΔW) = lr·RMS(W) (the trust ratio rescales r to W's size), and both lr ∝ fan_in^-1/2
    and RMS(W) ∝ fan_in^-1/2. With ‖W‖ clamped at 10 (pytorch_optimizer, torch-optimizer) the clamp binds
    at these widths under a standard 1/√fan_in init, and the update shrinks like fan_in^-3/2 instead."""

    def rms(x):
        return x.pow(2).mean().sqrt().item()

    size, clamped, norms = {}, {}, {}
    for width in (256, 1024):
        # init_std 1/16 = 1/√base_width: the standard 1/√fan_in init at the base shape
        p = plan(width=width, base_width=256, optimizer="lamb", options=OPTS, init_std=1 / 16)
        row = p.row("blocks.0.attn.q.weight")
        assert (row.fan_in, row.fan_in_mult) == (width, width / 256)
        g = torch.Generator().manual_seed(0)
        w = (torch.randn(width, width, generator=g) * row.init_std).requires_grad_()
        opt = build_lamb([{"params": [w], "lr": row.lr, "weight_decay": 0.0, "eps": row.eps}], OPTS)
        before = w.detach().clone()
        w.grad = torch.randn(width, width, generator=g) / width  # μP hidden gradient entries ~ 1/fan_in
        opt.step()
        size[width] = rms(w.detach() - before)
        assert math.isclose(size[width], row.lr * rms(before), rel_tol=1e-3)
        norms[width] = before.norm().item()
        clamped[width] = size[width] * min(norms[width], 10.0) / norms[width]  # the step with ‖W‖ clamped
    assert norms[256] > 10 and norms[1024] > 10  # ≈ 16 and ≈ 32: the clamp binds at both widths
    assert math.isclose(size[1024] / size[256], 1 / 4, rel_tol=0.02)  # Θ(1/fan_in): μP
    assert math.isclose(clamped[1024] / clamped[256], 1 / 8, rel_tol=0.02)  # fan_in^-3/2: not μP


# --- μP plan rows ---------------------------------------------------------------------------------


@pytest.mark.parametrize("width,depth", [(256, 2), (512, 2), (256, 8), (512, 8)])
def test_plan_hidden_lr_is_fan_in_to_the_minus_half(width, depth):
    """TP-V App. B.3: hidden lr m_N^-1/2 (no depth factor at α=1, m_L^-1/2 at α=1/2); other roles and
    every ε as Adam's (ε is added to √v̂)."""
    m, ml = width / 128, depth / 2
    p = plan(width=width, depth=depth, optimizer="lamb", options=OPTS)
    for r in p.rows:
        assert r.update == "lamb", r.name
        if r.role is Role.HIDDEN:
            assert r.fan_in_mult == m
            assert math.isclose(r.lr_mult, m**-0.5) and math.isclose(r.eps_mult, 1 / (m * ml)), r.name
        elif r.role in (Role.INPUT, Role.OUTPUT):
            assert r.lr_mult == 1 and math.isclose(r.eps_mult, 1 / m), r.name
        else:
            assert r.lr_mult == 1 and math.isclose(
                r.eps_mult, 1 / (m * (ml if r.name.startswith("blocks.") else 1))
            ), r.name
        assert math.isclose(r.lr, OPTS.lr * r.lr_mult) and math.isclose(r.eps, OPTS.eps * r.eps_mult)
    half = plan(width=width, depth=depth, optimizer="lamb", options=OPTS, depth_alpha=0.5)
    q = half.row("blocks.1.attn.q.weight")
    assert math.isclose(q.lr_mult, (m * ml) ** -0.5) and math.isclose(q.eps_mult, 1 / m / math.sqrt(ml))


def test_yaml_matches_the_options():
    from omegaconf import OmegaConf

    from mupx.config import typed

    cfg = OmegaConf.to_container(OmegaConf.load(Path(__file__).parents[1] / "configs/optimizer/lamb.yaml"))
    assert cfg.pop("name") == "lamb"
    assert set(cfg) == {f.name for f in dataclasses.fields(LambOptions)}
    assert typed(LambOptions, cfg, "optimizer") == LambOptions(
        lr=1e-2, betas=(0.9, 0.999), eps=1e-6, weight_decay=0.0
    )
