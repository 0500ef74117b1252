"""ADOPT (pytorch_optimizer.ADOPT wrapped): the optimizer contract, the update against the paper's
formula, and the μP plan rows."""

import dataclasses
import io
import math
from pathlib import Path

import pytest
import torch

from mupx.errors import MupxError
from mupx.models import Transformer
from mupx.optim import check_against_plan, param_groups
from mupx.optim.adopt import AdoptOptions, build_adopt
from mupx.scaling.plan import apply_init, build_plan
from mupx.scaling.roles import Role

from .helpers import GPT2, MUP, plan

OPTS = AdoptOptions(lr=3e-3, betas=(0.9, 0.9999), eps=1e-6, clip_exponent=0.25, weight_decay=0.0)
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
    p = build_plan(TINY, TINY_MUP, "adopt", options, vocab_size=VOCAB, context=CONTEXT)
    model = Transformer(TINY, VOCAB, CONTEXT, p.multipliers)
    apply_init(model, p, torch.Generator().manual_seed(seed))
    return p, model, build_adopt(param_groups(model, p), options)


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
    assert {g["update"] for g in opt.param_groups} == {"adopt"}
    assert all(g["weight_decouple"] for g in opt.param_groups)


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
        ({"clip_exponent": 0.0}, "optimizer.clip_exponent"),
    ],
)
def test_bad_options(change, match):
    with pytest.raises(MupxError, match=match):
        dataclasses.replace(OPTS, **change)


# --- the update rule ------------------------------------------------------------------------------


def test_update_matches_the_paper_with_clipping_and_decoupled_decay():
    """Alg. 1 of arXiv 2411.02853 with clip(·, t^c): step 1 only sets v; later steps use v of the
    previous gradients. Gradients are scaled so that the clipping binds on some entries."""
    g = torch.Generator().manual_seed(0)
    grads = [torch.randn(6, 5, generator=g) * s for s in (0.01, 1.0, 5.0, 0.1, 3.0)]
    w0 = torch.randn(6, 5, generator=g)
    lr, wd, eps, (b1, b2), c = 0.1, 0.3, 1e-6, (0.8, 0.9), 0.5
    opts = AdoptOptions(lr=lr, betas=(b1, b2), eps=eps, clip_exponent=c, weight_decay=wd)
    w = w0.clone().requires_grad_()
    opt = build_adopt([{"params": [w], "lr": lr, "weight_decay": wd, "eps": eps}], opts)
    ref, m, v = w0.clone(), torch.zeros_like(w0), torch.zeros_like(w0)
    clipped = 0
    for t, grad in enumerate(grads, start=1):
        w.grad = grad.clone()
        opt.step()
        ref.mul_(1 - lr * wd)
        if t == 1:
            v = grad * grad
        else:
            normed = grad / v.sqrt().clamp(min=eps)
            clipped += int((normed.abs() > t**c).sum())
            m = b1 * m + (1 - b1) * normed.clamp(-(t**c), t**c)
            ref = ref - lr * m
            v = b2 * v + (1 - b2) * grad * grad
        torch.testing.assert_close(w.detach(), ref, rtol=1e-5, atol=1e-6)
    assert clipped > 0  # the clip was exercised


def test_first_step_only_initialises():
    w = torch.ones(4, requires_grad=True)
    opt = build_adopt([{"params": [w], "lr": 0.1, "weight_decay": 0.0, "eps": 1e-6}], OPTS)
    w.grad = torch.randn(4, generator=torch.Generator().manual_seed(0))
    opt.step()
    assert torch.equal(w.detach(), torch.ones(4))


# --- μP plan rows ---------------------------------------------------------------------------------


@pytest.mark.parametrize("width,depth", [(256, 2), (512, 2), (256, 8), (512, 8)])
def test_plan_takes_adams_rules(width, depth):
    """Hidden lr 1/m_N (no depth factor at α=1), input/output/vector lr 1; ε after max(√v, ·) as
    Adam's: hidden 1/(m_N·m_L), input/vector-in-block 1/m_N (·1/m_L), output 1/m_N."""
    m, ml = width / 128, depth / 2
    p = plan(width=width, depth=depth, optimizer="adopt", options=OPTS)
    for r in p.rows:
        assert r.update == "adopt", r.name
        if r.role is Role.HIDDEN:
            assert r.fan_in_mult == m  # also the MLP down-projection: its fan_in 4·width over the base's
            assert math.isclose(r.lr_mult, 1 / m) and math.isclose(r.eps_mult, 1 / (m * ml)), r.name
        elif r.role is Role.OUTPUT:
            assert r.lr_mult == 1 and math.isclose(r.eps_mult, 1 / m)
        elif r.role is Role.INPUT:
            assert r.lr_mult == 1 and math.isclose(r.eps_mult, 1 / m)
        else:
            assert r.lr_mult == 1 and math.isclose(
                r.eps_mult, 1 / (m * (ml if r.name.startswith("blocks.") else 1))
            ), r.name
        assert math.isclose(r.lr, OPTS.lr * r.lr_mult) and math.isclose(r.eps, OPTS.eps * r.eps_mult)
    half = plan(width=width, depth=depth, optimizer="adopt", options=OPTS, depth_alpha=0.5)
    q = half.row("blocks.1.attn.q.weight")
    assert math.isclose(q.lr_mult, 1 / m / math.sqrt(ml)) and math.isclose(q.eps_mult, 1 / m / math.sqrt(ml))


def test_yaml_matches_the_options():
    from omegaconf import OmegaConf

    from mupx.config import typed

    cfg = OmegaConf.to_container(OmegaConf.load(Path(__file__).parents[1] / "configs/optimizer/adopt.yaml"))
    assert cfg.pop("name") == "adopt"
    assert set(cfg) == {f.name for f in dataclasses.fields(AdoptOptions)}
    assert typed(AdoptOptions, cfg, "optimizer") == AdoptOptions(
        lr=1e-3, betas=(0.9, 0.9999), eps=1e-6, clip_exponent=0.25, weight_decay=0.0
    )
