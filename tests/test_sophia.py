"""SophiaG (own) with the Gauss-Newton-Bartlett phase run by a small loop shaped like
``mupx.train.Trainer.hessian_phase``: the optimizer contract, the schedule of the estimate, the update
against the formula, and the μP plan rows."""

import dataclasses
import io
import math
from pathlib import Path

import pytest
import torch

from mupx.errors import MupxError
from mupx.models import Transformer
from mupx.optim import check_against_plan, param_groups
from mupx.optim.sophia import SophiaOptions, build_sophia
from mupx.scaling.plan import apply_init, build_plan
from mupx.scaling.roles import Role

from .helpers import GPT2, MUP, plan

OPTS = SophiaOptions(lr=3e-3, betas=(0.965, 0.99), rho=0.04, eps=1e-15, hessian_every=5, weight_decay=0.0)
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
    p = build_plan(TINY, TINY_MUP, "sophia", options, vocab_size=VOCAB, context=CONTEXT)
    model = Transformer(TINY, VOCAB, CONTEXT, p.multipliers)
    apply_init(model, p, torch.Generator().manual_seed(seed))
    return p, model, build_sophia(param_groups(model, p), options)


def hessian_phase(model, opt, x: torch.Tensor, gen: torch.Generator) -> None:
    """As ``Trainer.hessian_phase``: loss on labels sampled from the model (local generator), then
    ``update_hessian``; the grads are cleared before the step's own forward pass."""
    logits = model(x)
    flat = logits.float().view(-1, logits.shape[-1])
    labels = torch.multinomial(flat.softmax(-1), 1, generator=gen).view(-1)
    torch.nn.functional.cross_entropy(flat, labels).backward()
    opt.update_hessian(n_tokens=x.numel())
    opt.zero_grad(set_to_none=True)


def train_step(model, opt, step: int, gen: torch.Generator) -> float:
    x, y = batch(step)
    if opt.hessian_due():
        hessian_phase(model, opt, x, gen)
    loss = model(x, y)
    loss.backward()
    opt.step()
    opt.zero_grad(set_to_none=True)
    return loss.item()


def generator(seed=1) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


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
    assert {g["update"] for g in opt.param_groups} == {"sophia"}


def test_lr_zero_group_is_frozen_with_weight_decay():
    _, model, opt = setup(dataclasses.replace(OPTS, weight_decay=0.1))
    frozen = opt.param_groups[0]
    frozen["lr"] = 0.0
    before = {n: q.detach().clone() for n, q in model.named_parameters()}
    gen = generator()
    for step in range(3):
        train_step(model, opt, step, gen)
    for n, q in model.named_parameters():
        if n in frozen["names"]:
            assert torch.equal(q, before[n]), n
    others = [n for g in opt.param_groups[1:] for n in g["names"]]
    assert all(not torch.equal(dict(model.named_parameters())[n], before[n]) for n in others)


def fixed_grad_steps(model, opt, n=3):
    """A Hessian update and n steps on the gradients of one batch, so each tensor's path depends only on
    its own group."""
    model(*batch(0)).backward()
    grads = {q: q.grad.clone() for q in model.parameters()}
    opt.update_hessian(n_tokens=BATCH * CONTEXT)
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


def test_state_dict_round_trip_resumes_bit_identically():
    """Saved at step 7 (estimates at 0 and 5), resumed across the estimate at step 10. The label
    generator's state is part of the checkpoint, as a training loop would save it."""
    _, model, opt = setup()
    gen = generator()
    for step in range(14):
        train_step(model, opt, step, gen)
    want = {n: q.detach().clone() for n, q in model.named_parameters()}

    _, model, opt = setup()
    gen = generator()
    for step in range(7):
        train_step(model, opt, step, gen)
    assert plain(opt.state_dict())
    buf = io.BytesIO()
    torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "gen": gen.get_state()}, buf)
    buf.seek(0)
    ckpt = torch.load(buf, weights_only=True)
    _, model, opt = setup(seed=1)  # fresh model with other weights, fresh optimizer
    model.load_state_dict(ckpt["model"])
    opt.load_state_dict(ckpt["opt"])
    gen = generator(seed=99)
    gen.set_state(ckpt["gen"])
    assert not opt.hessian_due()  # step 7: the next estimate is at 10
    for step in range(7, 14):
        assert opt.hessian_due() == (step % OPTS.hessian_every == 0)
        train_step(model, opt, step, gen)
    for n, q in model.named_parameters():
        assert torch.equal(q, want[n]), n


def test_gnb_loop_trains_the_tiny_proxy_and_leaves_the_global_rng_alone():
    """60 steps with the GNB phase every 5 steps: the loss falls well below its start, and neither the
    label sampling (own generator) nor the optimizer draws from the global RNG."""
    _, model, opt = setup()
    gen = generator()
    rng = torch.get_rng_state()
    losses = [train_step(model, opt, step, gen) for step in range(60)]
    assert torch.equal(torch.get_rng_state(), rng)
    assert all(math.isfinite(x) for x in losses)
    assert sum(losses[-10:]) / 10 < 0.8 * losses[0], losses
    assert all(bool((s["hessian"] > 0).any()) for s in opt.state.values())  # every tensor got an estimate


@pytest.mark.parametrize(
    "change,match",
    [
        ({"lr": 0.0}, "optimizer.lr"),
        ({"weight_decay": -1.0}, "optimizer.weight_decay"),
        ({"betas": (0.965, 1.0)}, "optimizer.betas"),
        ({"rho": 0.0}, "optimizer.rho"),
        ({"eps": 0.0}, "optimizer.eps"),
        ({"hessian_every": 0}, "optimizer.hessian_every"),
    ],
)
def test_bad_options(change, match):
    with pytest.raises(MupxError, match=match):
        dataclasses.replace(OPTS, **change)


# --- the schedule and the update rule -------------------------------------------------------------


def test_hessian_is_due_at_the_first_step_then_every_k():
    w = torch.zeros(3, requires_grad=True)
    opt = build_sophia(
        [{"params": [w], "lr": 0.1, "weight_decay": 0.0, "eps": 1e-15}],
        dataclasses.replace(OPTS, hessian_every=3),
    )
    due = []
    for _ in range(7):
        due.append(opt.hessian_due())
        w.grad = torch.ones(3)
        opt.step()
    assert due == [True, False, False, True, False, False, True]


def test_update_matches_the_formula():
    """h ← β2·h + (1 − β2)·N·g⊙g at each estimate; m ← β1·m + (1 − β1)·g;
    p ← p·(1 − lr·wd) − lr·sign(m)·min(|m|/(ρ·h + ε), 1). Scales chosen so that some entries clip."""
    g = torch.Generator().manual_seed(0)
    lr, wd, eps, rho, (b1, b2), n = 0.05, 0.3, 1e-4, 0.5, (0.8, 0.9), 16
    opts = SophiaOptions(lr=lr, betas=(b1, b2), rho=rho, eps=eps, hessian_every=2, weight_decay=wd)
    w0 = torch.randn(6, 5, generator=g)
    w = w0.clone().requires_grad_()
    opt = build_sophia([{"params": [w], "lr": lr, "weight_decay": wd, "eps": eps}], opts)
    ref, m, h = w0.clone(), torch.zeros_like(w0), torch.zeros_like(w0)
    ratios = []
    for _ in range(6):
        if opt.hessian_due():
            sample = torch.randn(6, 5, generator=g) * 0.3
            w.grad = sample
            opt.update_hessian(n_tokens=n)
            h = b2 * h + (1 - b2) * n * sample * sample
        grad = torch.randn(6, 5, generator=g)
        w.grad = grad
        opt.step()
        m = b1 * m + (1 - b1) * grad
        ratio = (m.abs() / (rho * h + eps)).clamp(max=1)
        ratios.append(ratio)
        ref = ref * (1 - lr * wd) - lr * m.sign() * ratio
        torch.testing.assert_close(w.detach(), ref, rtol=1e-5, atol=1e-6)
    ratios = torch.stack(ratios)
    assert (ratios == 1).any() and (ratios < 1).any()  # both branches of the min were exercised


# --- μP plan rows ---------------------------------------------------------------------------------


@pytest.mark.parametrize("width,depth", [(256, 2), (512, 2), (256, 8), (512, 8)])
def test_plan_takes_adams_lr_and_squared_eps(width, depth):
    """lr as AdamW (2603.00541 App. C.8); ε is added to ρ·h ∝ g², so its multiplier is the square of
    Adam's: hidden (m_N·m_L)^-2, input/output m_N^-2, vectors (m_N·m_L)^-2 in blocks."""
    m, ml = width / 128, depth / 2
    p = plan(width=width, depth=depth, optimizer="sophia", options=OPTS)
    for r in p.rows:
        assert r.update == "sophia", r.name
        if r.role is Role.HIDDEN:
            assert r.fan_in_mult == m
            assert math.isclose(r.lr_mult, 1 / m) and math.isclose(r.eps_mult, (m * ml) ** -2), r.name
        elif r.role in (Role.INPUT, Role.OUTPUT):
            assert r.lr_mult == 1 and math.isclose(r.eps_mult, m**-2), r.name
        else:
            assert r.lr_mult == 1 and math.isclose(
                r.eps_mult, (m * (ml if r.name.startswith("blocks.") else 1)) ** -2
            ), r.name
        assert math.isclose(r.lr, OPTS.lr * r.lr_mult) and math.isclose(r.eps, OPTS.eps * r.eps_mult)
    half = plan(width=width, depth=depth, optimizer="sophia", options=OPTS, depth_alpha=0.5)
    q = half.row("blocks.1.attn.q.weight")
    assert math.isclose(q.lr_mult, 1 / m / math.sqrt(ml)) and math.isclose(q.eps_mult, 1 / (m * m * ml))


def test_yaml_matches_the_options():
    from omegaconf import OmegaConf

    from mupx.config import typed

    cfg = OmegaConf.to_container(OmegaConf.load(Path(__file__).parents[1] / "configs/optimizer/sophia.yaml"))
    assert cfg.pop("name") == "sophia"
    assert set(cfg) == {f.name for f in dataclasses.fields(SophiaOptions)}
    want = SophiaOptions(
        lr=1e-3, betas=(0.965, 0.99), rho=0.04, eps=1e-15, hessian_every=10, weight_decay=0.0
    )
    assert typed(SophiaOptions, cfg, "optimizer") == want
