"""SOAP (own): the optimizer contract, the rotated-space update against a closed form, blocking as
independent tiles, explicit spectral normalisation, pytorch_optimizer's SOAP as a reference, and the
plan's SOAP rows (rules.py ``soap``, scaling-rules.md §3.7) at two widths and two depths."""

import dataclasses
import io
import math
from pathlib import Path

import pytest
import torch
import yaml
from pytorch_optimizer import SOAP as PoSOAP

from mupx.config import typed
from mupx.errors import MupxError
from mupx.models import Transformer
from mupx.optim import check_against_plan, param_groups
from mupx.optim.soap import SOAP, SOAPOptions, build_soap
from mupx.scaling.plan import apply_init, build_plan
from mupx.scaling.roles import Role

from .helpers import GPT2, MUP, plan

OPTS = SOAPOptions(
    lr=3e-3, betas=(0.95, 0.95), shampoo_beta=-1.0, eps=1e-8, block_size=0, max_precond_dim=4096,
    precondition_every=10, spectral_norm=False, weight_decay=0.0, adam_lr=3e-3, adam_betas=(0.9, 0.95), adam_eps=1e-8,
)  # fmt: skip
TINY = dataclasses.replace(GPT2, width=64, depth=2, head_dim=16)
TINY_MUP = dataclasses.replace(
    MUP, base_width=32, base_depth=2
)  # width 64 = 2 × base: non-trivial multipliers
VOCAB, CONTEXT, BATCH = 256, 32, 8
HIDDEN = [
    "attn.q.weight",
    "attn.k.weight",
    "attn.v.weight",
    "attn.o.weight",
    "mlp.up.weight",
    "mlp.down.weight",
]


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
    p = build_plan(TINY, TINY_MUP, "soap", options, vocab_size=VOCAB, context=CONTEXT)
    model = Transformer(TINY, VOCAB, CONTEXT, p.multipliers)
    apply_init(model, p, torch.Generator().manual_seed(seed))
    return p, model, build_soap(param_groups(model, p), options)


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


def single(shape, options=OPTS, lr=0.1, eps=1e-8, wd=0.0, dtype=torch.float64, seed=0):
    """One hidden matrix in a soap group: (parameter, optimizer)."""
    w = torch.nn.Parameter(torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=dtype))
    return w, SOAP([{"params": [w], "update": "soap", "lr": lr, "weight_decay": wd, "eps": eps}], options)


def grads(shape, n, dtype=torch.float64, seed=1):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(shape, generator=g, dtype=dtype) for _ in range(n)]


# --- contract -----------------------------------------------------------------------------------


def test_groups_hold_the_plan():
    p, model, opt = setup()
    check_against_plan(opt, model, p, lr_factor=1.0)
    updates = {n: g["update"] for g in opt.param_groups for n in g["names"]}
    for r in p.rows:  # hidden matrices by SOAP, everything else by AdamW with adam_lr / adam_eps
        assert updates[r.name] == ("soap" if r.role is Role.HIDDEN else "adamw"), r.name
    emb = p.row("tok_emb.weight")
    assert emb.lr == OPTS.adam_lr and math.isclose(emb.eps, OPTS.adam_eps / 2)  # Adam ε: input fan_out^-1


def test_lr_zero_group_is_frozen_with_weight_decay():
    _, model, opt = setup(dataclasses.replace(OPTS, weight_decay=0.1, precondition_every=2))
    frozen = next(g for g in opt.param_groups if g["update"] == "soap")
    frozen["lr"] = 0.0
    before = {n: q.detach().clone() for n, q in model.named_parameters()}
    for step in range(4):
        train_step(model, opt, step)
    for n, q in model.named_parameters():
        assert torch.equal(q, before[n]) == (n in frozen["names"]), n


def test_lr_eps_and_weight_decay_come_from_the_group_not_the_options():
    """The options' lr/eps/weight_decay are deliberately absurd; the groups' values decide the step,
    and the decay is decoupled p·(1 − lr·wd) before the update."""
    sane = dataclasses.replace(OPTS, precondition_every=2)
    absurd = dataclasses.replace(sane, lr=123.0, eps=0.5, weight_decay=0.9)
    gs = grads((6, 8), 4)
    runs = {}
    for name, opts, lr, eps, wd in (("group", absurd, 0.05, 1e-3, 0.0), ("same", sane, 0.05, 1e-3, 0.0),
                                    ("lr2", absurd, 0.1, 1e-3, 0.0), ("eps", absurd, 0.05, 1.0, 0.0),
                                    ("wd", absurd, 0.05, 1e-3, 0.2)):  # fmt: skip
        w, opt = single((6, 8), opts, lr=lr, eps=eps, wd=wd)
        w0 = w.detach().clone()
        steps = []
        for g in gs:
            before = w.detach().clone()
            w.grad = g.clone()
            opt.step()
            steps.append((before, w.detach() - before))
        runs[name] = (w0, steps)
    assert all(torch.equal(a[1], b[1]) for a, b in zip(runs["group"][1], runs["same"][1], strict=True))
    assert torch.equal(runs["group"][1][0][1], torch.zeros(6, 8))  # the first call only builds the bases
    for (_, d1), (_, d2) in zip(runs["group"][1][1:], runs["lr2"][1][1:], strict=True):
        torch.testing.assert_close(d2, 2 * d1)
    assert not torch.allclose(runs["eps"][1][-1][1], runs["group"][1][-1][1])
    assert torch.equal(runs["wd"][1][0][1], torch.zeros(6, 8))  # no decay on the initialising call
    (before, d_wd), (_, d) = runs["wd"][1][1], runs["group"][1][1]  # identical state until this step
    torch.testing.assert_close(d_wd, d - 0.05 * 0.2 * before)


def test_step_leaves_global_rng_alone_and_is_deterministic():
    finals = []
    for _ in range(2):
        _, model, opt = setup(dataclasses.replace(OPTS, spectral_norm=True, precondition_every=2))
        rng = torch.get_rng_state()
        for step in range(4):
            train_step(model, opt, step)
        assert torch.equal(torch.get_rng_state(), rng)
        finals.append([q.detach().clone() for q in model.parameters()])
    assert all(torch.equal(a, b) for a, b in zip(*finals, strict=True))


@pytest.mark.parametrize("options", [
    dataclasses.replace(OPTS, precondition_every=3),
    # max_precond_dim 64: the MLP's 4·width side stays unpreconditioned at the base (128) and the target (256)
    dataclasses.replace(OPTS, precondition_every=3, block_size=16, spectral_norm=True, weight_decay=0.1, max_precond_dim=64),
])  # fmt: skip
def test_resume_is_bit_identical_across_a_refresh(options):
    """Refreshes after Adam steps 3 and 6 (calls 4 and 7); the checkpoint is taken after call 5."""
    _, model, opt = setup(options)
    for step in range(9):
        train_step(model, opt, step)
    straight = [q.detach().clone() for q in model.parameters()]

    _, model_a, opt_a = setup(options)
    for step in range(5):
        train_step(model_a, opt_a, step)
    buf = io.BytesIO()
    torch.save({"model": model_a.state_dict(), "opt": opt_a.state_dict()}, buf)
    assert plain(opt_a.state_dict())
    buf.seek(0)
    ckpt = torch.load(buf, weights_only=True)
    _, model_b, opt_b = setup(options, seed=99)  # fresh model, different init
    model_b.load_state_dict(ckpt["model"])
    opt_b.load_state_dict(ckpt["opt"])
    for step in range(5, 9):
        train_step(model_b, opt_b, step)
    assert all(torch.equal(a, b) for a, b in zip(straight, model_b.parameters(), strict=True))


def test_trains_the_tiny_proxy():
    _, model, opt = setup(dataclasses.replace(OPTS, lr=1e-2, adam_lr=1e-2))
    losses = [train_step(model, opt, step) for step in range(60)]
    assert all(math.isfinite(x) for x in losses)
    assert sum(losses[-10:]) / 10 < 0.8 * losses[0], losses


@pytest.mark.parametrize("key,value", [
    ("lr", 0.0), ("weight_decay", -1.0), ("betas", (0.9, 1.0)), ("adam_betas", (1.2, 0.9)), ("shampoo_beta", 1.0),
    ("eps", 0.0), ("adam_lr", 0.0), ("adam_eps", -1.0), ("block_size", -4), ("max_precond_dim", 0),
    ("precondition_every", 0),
])  # fmt: skip
def test_bad_options_are_one_line_errors(key, value):
    with pytest.raises(MupxError, match=f"optimizer.{key}") as e:
        dataclasses.replace(OPTS, **{key: value})
    assert "\n" not in str(e.value)


def test_default_blocking_keeps_the_rule_at_wide_targets():
    """The configured block_size 1024 keeps both sides rotated at any width (a side longer than 1024 in
    equal tiles, tests/test_shampoo.py), so the rule keeps its form from a width-128 base to 4096."""
    cfg = yaml.safe_load((Path(__file__).parents[1] / "configs/optimizer/soap.yaml").read_text())
    cfg.pop("name")
    p = plan(width=4096, optimizer="soap", options=typed(SOAPOptions, cfg, "optimizer"))
    up = p.row("blocks.0.mlp.up.weight")  # [16384, 4096]: 16 x 4 tiles; the base [512, 128]: one
    assert up.blocks_mult == 64 and up.lr_mult == 1  # spectral_norm: lr constant
    assert math.isclose(up.eps_mult, 64**-0.5)  # ε ∝ √(fan_in/fan_out)·n_blk^-½ (the ratio is constant)


def test_yaml_matches_the_options():
    cfg = yaml.safe_load((Path(__file__).parents[1] / "configs/optimizer/soap.yaml").read_text())
    assert cfg.pop("name") == "soap"
    assert list(cfg) == [f.name for f in dataclasses.fields(SOAPOptions)]
    assert typed(SOAPOptions, cfg, "optimizer") == dataclasses.replace(
        OPTS, spectral_norm=True, block_size=1024, max_precond_dim=65536
    )


def test_compiled_step_runs_eagerly_and_matches():
    """torch.compile(opt.step) is not supported by compiling: step is torch.compiler.disable'd, so a
    compiled call runs the eager code and gives bit-identical results."""
    finals = []
    for compiled in (False, True):
        w, opt = single((8, 12), dataclasses.replace(OPTS, precondition_every=2), dtype=torch.float32)
        step = torch.compile(opt.step) if compiled else opt.step
        for g in grads((8, 12), 5, dtype=torch.float32):
            w.grad = g
            step()
        finals.append(w.detach().clone())
    assert torch.equal(*finals)


# --- the update ---------------------------------------------------------------------------------


def test_one_adam_step_matches_the_eigh_closed_form():
    """shampoo_beta = 0 makes the factors G₁G₁ᵀ and G₁ᵀG₁ exactly; after them, the first Adam step (any
    β1, β2, bias-corrected) is ΔW = −lr · Q_L [G₂'/(|G₂'| + ε)] Q_Rᵀ with G₂' = Q_Lᵀ G₂ Q_R and Q_L, Q_R the
    eigenvectors of those factors (independent of their signs and order, as the map is odd entrywise)."""
    lr, eps = 0.1, 1e-3
    g1, g2 = grads((7, 7), 2)  # square: both factors full rank, so the eigenbases are unique up to sign
    w, opt = single((7, 7), dataclasses.replace(OPTS, shampoo_beta=0.0, betas=(0.8, 0.6)), lr=lr, eps=eps)
    w0 = w.detach().clone()
    w.grad = g1
    opt.step()
    assert torch.equal(w.detach(), w0)
    state = opt.state[w]
    torch.testing.assert_close(state["left"][0], g1 @ g1.T, rtol=1e-14, atol=1e-14)
    torch.testing.assert_close(state["right"][0], g1.T @ g1, rtol=1e-14, atol=1e-14)
    w.grad = g2
    opt.step()
    ql, qr = torch.linalg.eigh(g1 @ g1.T).eigenvectors, torch.linalg.eigh(g1.T @ g1).eigenvectors
    rot = ql.T @ g2 @ qr
    expected = w0 - lr * ql @ (rot / (rot.abs() + eps)) @ qr.T
    torch.testing.assert_close(w.detach(), expected, rtol=1e-10, atol=1e-10)


def test_same_gradient_twice_gives_the_polar_factor():
    """With G₂ = G₁ = U S Vᵀ the rotated gradient is diagonal, so the step is −lr · U diag(s/(s+ε)) Vᵀ."""
    lr, eps = 0.1, 1e-6
    (g,) = grads((5, 7), 1)
    w, opt = single((5, 7), dataclasses.replace(OPTS, shampoo_beta=0.0), lr=lr, eps=eps)
    w0 = w.detach().clone()
    for _ in range(2):
        w.grad = g.clone()
        opt.step()
    u, s, vh = torch.linalg.svd(g, full_matrices=False)
    torch.testing.assert_close(w.detach(), w0 - lr * (u * (s / (s + eps))) @ vh, rtol=1e-8, atol=1e-8)


def test_blocks_are_independent_tiles():
    """block_size B: each B×B tile has its own factors and bases, i.e. it steps like its own matrix."""
    opts = dataclasses.replace(OPTS, precondition_every=2)
    gs = grads((8, 12), 5)
    w, opt = single((8, 12), dataclasses.replace(opts, block_size=4), lr=0.05)
    corners = [(i, j) for i in (0, 4) for j in (0, 4, 8)]
    params = [torch.nn.Parameter(w.detach()[i : i + 4, j : j + 4].clone()) for i, j in corners]
    ref = SOAP([{"params": params, "update": "soap", "lr": 0.05, "weight_decay": 0.0, "eps": 1e-8}], opts)
    for g in gs:
        w.grad = g.clone()
        for q, (i, j) in zip(params, corners, strict=True):
            q.grad = g[i : i + 4, j : j + 4].clone()
        opt.step()
        ref.step()
    assert opt.state[w]["left"].shape == (6, 4, 4)
    got = [w.detach()[i : i + 4, j : j + 4] for i, j in corners]
    for a, b in zip(got, params, strict=True):
        torch.testing.assert_close(a, b.detach(), rtol=1e-12, atol=1e-12)


def test_a_side_above_max_precond_dim_is_not_rotated():
    w, opt = single((40, 12), dataclasses.replace(OPTS, max_precond_dim=16, block_size=4))
    for g in grads((40, 12), 2):
        w.grad = g
        opt.step()
    state = opt.state[w]
    assert "left" not in state and "left_basis" not in state
    assert state["right"].shape == (3, 4, 4) and state["exp_avg"].shape == (
        3,
        40,
        4,
    )  # tiles along fan_in only


def test_spectral_norm_sets_sigma_max():
    lr = 0.01
    w, opt = single((16, 32), dataclasses.replace(OPTS, spectral_norm=True), lr=lr)
    for g in grads((16, 32), 4):
        before = w.detach().clone()
        w.grad = g
        opt.step()
    sigma = torch.linalg.matrix_norm((before - w.detach()) / lr, ord=2)
    assert abs(sigma.item() / math.sqrt(16 / 32) - 1) < 0.05


@pytest.mark.parametrize("max_dim,shape", [(4096, (24, 24)), (28, (24, 32)), (20, (24, 32))])
def test_matches_pytorch_optimizer_soap(max_dim, shape):
    """pytorch_optimizer's SOAP (eager) with the same settings: first call only initialises, QR refresh
    with sorting, ε → 0 (it adds ε before the bias correction), no weight decay (it decays after the
    update). float64, so both eigh agree; its QR runs in float32, hence ~1e-8 and not 1e-15.
    Rotated factors are full rank (a rank-deficient one leaves its null-space basis to eigh's rounding).
    max_dim 28 rotates the fan_out side only, 20 neither side. Measured max |Δ| after 8 calls (parameters
    moved by ~0.1): 2.1e-8, 1.5e-8, 2.2e-16."""
    lr = 1e-2
    opts = dataclasses.replace(OPTS, betas=(0.9, 0.95), precondition_every=3, max_precond_dim=max_dim)
    a, opt = single(shape, opts, lr=lr, eps=1e-30)
    b = torch.nn.Parameter(a.detach().clone())
    ref = PoSOAP([b], lr=lr, betas=(0.9, 0.95), shampoo_beta=0.95, weight_decay=0.0, precondition_frequency=3,
                 max_precondition_dim=max_dim, eps=1e-30)  # fmt: skip
    a0 = a.detach().clone()
    for g in grads(shape, 8):
        a.grad, b.grad = g.clone(), g.clone()
        opt.step()
        ref.step()
    assert (a.detach() - a0).abs().max() > 0.05
    assert (a.detach() - b.detach()).abs().max() < 1e-6


# --- the plan -----------------------------------------------------------------------------------


def expected_rows(p, opts, base_width=128, alpha=1.0):
    """(lr_mult, eps_mult) per hidden row from the §3.7 formulas, written on absolute fans."""
    out = {}
    depth = p.depth / p.base_depth
    for r in p.rows:
        if r.role is not Role.HIDDEN:
            continue
        fi0, fo0 = r.fan_in * base_width // p.width, r.fan_out * base_width // p.width

        def lr_eps(fi, fo):
            left, right = fo <= opts.max_precond_dim, fi <= opts.max_precond_dim
            b = opts.block_size
            nb = ((fo // b) if b and left else 1) * ((fi // b) if b and right else 1)
            if left and right:
                return math.sqrt(fo / fi / nb), math.sqrt(fi / fo / nb)
            if right:
                return 1 / math.sqrt(fi * nb), math.sqrt(fi / nb) / fo
            if left:
                return math.sqrt(fo / nb) / fi, 1 / math.sqrt(fo * nb)
            return 1 / fi, 1 / fi

        (lr, eps), (lr0, eps0) = lr_eps(r.fan_in, r.fan_out), lr_eps(fi0, fo0)
        lr_mult = 1.0 if opts.spectral_norm else lr / lr0
        out[r.name] = (lr_mult * depth ** (alpha - 1), eps / eps0 * depth**-alpha)
    return out


CASES = {  # name: (options, widths); base width 128 (GPT-2 helper: head_dim 32, ffn 4×)
    "both sides": (OPTS, (256, 512)),
    "both sides, blocks of 64": (dataclasses.replace(OPTS, block_size=64), (256, 512)),
    # max_precond_dim 400 at widths 128/256/384: MLP up [4w, w] is rotated on fan_in only, down on fan_out only
    "one-sided": (dataclasses.replace(OPTS, max_precond_dim=400), (256, 384)),
    "one-sided, blocks of 64": (dataclasses.replace(OPTS, max_precond_dim=400, block_size=64), (256, 384)),
    "spectral norm, blocks of 64": (dataclasses.replace(OPTS, block_size=64, spectral_norm=True), (256, 512)),
}


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("depth,alpha", [(2, 1.0), (8, 1.0), (8, 0.5)])
def test_plan_soap_rows(case, depth, alpha):
    opts, widths = CASES[case]
    for width in widths:
        p = plan(
            width=width,
            depth=depth,
            base_width=128,
            base_depth=2,
            optimizer="soap",
            options=opts,
            depth_alpha=alpha,
        )
        want = expected_rows(p, opts, alpha=alpha)
        assert len(want) == 6 * depth
        for name, (lr_mult, eps_mult) in want.items():
            r = p.row(name)
            assert r.update == "soap"
            assert math.isclose(r.lr_mult, lr_mult, rel_tol=1e-9), (name, r.lr_mult, lr_mult)
            assert math.isclose(r.eps_mult, eps_mult, rel_tol=1e-9), (name, r.eps_mult, eps_mult)
            assert math.isclose(r.lr, opts.lr * lr_mult) and math.isclose(r.eps, opts.eps * eps_mult)
        m, m_l = width / 128, depth / 2
        for r in p.rows:  # AdamW side: base adam_lr / adam_eps, Adam's rules
            if r.role is Role.INPUT:
                assert r.update == "adamw" and r.lr == opts.adam_lr and math.isclose(r.eps, opts.adam_eps / m)
            elif r.role is Role.OUTPUT:
                assert r.update == "adamw" and r.lr == opts.adam_lr and math.isclose(r.eps, opts.adam_eps / m)
            elif r.role is Role.VECTOR and r.name.startswith("blocks."):
                assert r.update == "adamw" and math.isclose(r.lr, opts.adam_lr * m_l ** (alpha - 1))


def test_plan_soap_rows_spelled_out():
    """The same rules with the numbers written down (width 512 = 4× base 128, depth 8 = 4× base 2, α = 1)."""
    p = plan(width=512, depth=8, optimizer="soap", options=dataclasses.replace(OPTS, block_size=64))
    q, up = p.row("blocks.5.attn.q.weight"), p.row("blocks.5.mlp.up.weight")
    # n_blk: q 8·8 = 64 vs base 2·2 = 4 → 16; up 32·8 = 256 vs 8·2 = 16 → 16; √(fan_out/fan_in) ratio 1
    assert math.isclose(q.lr_mult, 16**-0.5) and math.isclose(up.lr_mult, 16**-0.5)
    assert math.isclose(q.eps_mult, 16**-0.5 / 4) and math.isclose(up.eps_mult, 16**-0.5 / 4)
    one = plan(width=384, depth=2, optimizer="soap", options=dataclasses.replace(OPTS, max_precond_dim=400))
    up, down = one.row("blocks.0.mlp.up.weight"), one.row("blocks.0.mlp.down.weight")
    assert math.isclose(up.lr_mult, 3**-0.5) and math.isclose(up.eps_mult, 3**0.5 / 3)  # fan_in side only
    assert math.isclose(down.lr_mult, 3**0.5 / 3) and math.isclose(
        down.eps_mult, 3**-0.5
    )  # fan_out side only
