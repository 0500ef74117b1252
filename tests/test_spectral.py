"""Spectral ratios ρ_W, ρ_ΔW: closed forms, what the monitor reports, and μP vs SP under AdamW."""

import dataclasses
import json
import math

import pytest
import torch

from mupx.diagnostics.spectral import SpectralMonitor, SpectralRatio
from mupx.models import Transformer
from mupx.runconfig import load_run_config
from mupx.scaling.plan import apply_init
from mupx.scaling.roles import Role
from mupx.train import Trainer, run

from .conftest import TINY
from .helpers import GPT2, plan


def matrix_with_singular_values(
    out_dim: int, in_dim: int, sigmas: list[float], seed: int = 0
) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    u, _ = torch.linalg.qr(torch.randn(out_dim, len(sigmas), generator=g))
    v, _ = torch.linalg.qr(torch.randn(in_dim, len(sigmas), generator=g))
    return u @ torch.diag(torch.tensor(sigmas)) @ v.T


@pytest.mark.parametrize("shape", [(64, 256), (256, 64), (128, 128)])
def test_ratio_of_a_scaled_orthogonal_matrix_is_closed_form(shape):
    out_dim, in_dim = shape
    q = matrix_with_singular_values(out_dim, in_dim, [1.0] * min(shape))  # semi-orthogonal
    ratio = SpectralRatio(c=0.5)
    # rho = sigma_max(c * 3 Q) * sqrt(fan_in / fan_out) = 0.5 * 3 * sqrt(in / out)
    assert math.isclose(ratio(3.0 * q), 1.5 * math.sqrt(in_dim / out_dim), rel_tol=1e-5)


def test_power_iteration_finds_the_top_singular_value_and_warm_starts():
    m = matrix_with_singular_values(96, 48, [4.0, 2.0, 1.0, 0.5])
    ratio = SpectralRatio(c=1.0)
    assert math.isclose(ratio(m), 4.0 * math.sqrt(48 / 96), rel_tol=1e-5)
    first_v = ratio.v.clone()
    # a small change of the matrix: the warm-started vector (a few iterations) still gives sigma_max
    m2 = m + 1e-3 * matrix_with_singular_values(96, 48, [1.0], seed=1)
    assert math.isclose(ratio(m2), torch.linalg.matrix_norm(m2, ord=2).item() * math.sqrt(0.5), rel_tol=1e-4)
    assert not torch.equal(first_v, ratio.v)


def tiny_model(width=64):
    p = plan(width=width, base_width=64)  # vocab 256, context 64
    model = Transformer(dataclasses.replace(GPT2, width=width, depth=2), 256, 64, p.multipliers)
    apply_init(model, p, torch.Generator().manual_seed(0))
    return model, p


def test_monitor_reports_the_applied_change_of_every_tensor():
    model, p = tiny_model(width=128)  # width 2x the base: the readout's forward multiplier is 1/2
    params = dict(model.named_parameters())
    monitor = SpectralMonitor(model, p)
    monitor.before_step()
    q = params["blocks.0.attn.q.weight"]  # [128, 128]
    up = params["blocks.1.mlp.up.weight"]  # [512, 128]
    with torch.no_grad():
        q += 0.01 * matrix_with_singular_values(128, 128, [1.0] * 128, seed=2)
        up += 0.02 * matrix_with_singular_values(512, 128, [1.0, 0.3], seed=3)
        params["tok_emb.weight"][[3, 7, 11]] += 0.05  # three rows change
        params["blocks.0.ln1.bias"] += 0.1
    out = monitor.after_step()
    json.dumps(out)  # JSON-able, as metrics.jsonl needs
    assert set(out) == set(params)
    assert math.isclose(out["blocks.0.attn.q.weight"]["rho_dw"], 0.01, rel_tol=1e-4)
    assert math.isclose(out["blocks.1.mlp.up.weight"]["rho_dw"], 0.02 * math.sqrt(128 / 512), rel_tol=1e-4)
    assert out["blocks.0.attn.k.weight"]["rho_dw"] == 0.0  # untouched
    assert math.isclose(out["tok_emb.weight"]["rms_dw"], 0.05, rel_tol=1e-5)  # RMS over the changed rows only
    assert math.isclose(out["blocks.0.ln1.bias"]["rms_dw"], 0.1, rel_tol=1e-5)
    assert out["blocks.0.ln1.weight"]["rms_dw"] == 0.0 and out["blocks.0.ln1.weight"]["rms_w"] == 1.0
    # rho_W of the readout folds in its forward multiplier c = output_mult / width_mult = 1/2
    head = params["lm_head.weight"]
    assert p.row("lm_head.weight").fwd_mult == 0.5
    want = 0.5 * torch.linalg.matrix_norm(head.detach(), ord=2).item() * math.sqrt(128 / 256)
    # a Gaussian matrix has a small spectral gap: power iteration approaches sigma_max from below
    assert want * 0.97 < out["lm_head.weight"]["rho_w"] <= want * (1 + 1e-6)
    with pytest.raises(RuntimeError, match="before_step"):
        monitor.after_step()


def hidden_rho_dw(param: str, width: int, steps: int = 3) -> dict[str, float]:
    """Hidden ρ_ΔW at the last of ``steps`` AdamW steps, through the real Trainer."""
    overrides = TINY + [f"param={param}", f"model.width={width}", "param.base_width=64", "train.steps=10",
                        "train.schedule=constant", "train.warmup=0", "train.spectral_every=1", "optimizer.lr=3e-3"]  # fmt: skip
    trainer = Trainer.build(load_run_config(overrides))
    for _ in range(steps):
        _, _, spectral = trainer.train_step()
    hidden = {r.name for r in trainer.plan.rows if r.role is Role.HIDDEN}
    return {name: v["rho_dw"] for name, v in spectral.items() if name in hidden}


def test_mup_keeps_hidden_update_ratios_across_width_and_sp_grows_them():
    """Widths 64 and 256 after 3 AdamW steps. μP: ρ_ΔW is Θ(1) in width. SP: Adam's sign-like update of
    constant entry size has ‖A‖_R ∝ fan_in, so ρ_ΔW grows ≈ 4x (aligned updates) or 2x (unaligned)."""
    mup = {w: hidden_rho_dw("mup", w) for w in (64, 256)}
    sp = {w: hidden_rho_dw("sp", w) for w in (64, 256)}
    mup_ratio = {n: mup[256][n] / mup[64][n] for n in mup[64]}
    sp_ratio = {n: sp[256][n] / sp[64][n] for n in sp[64]}
    geo = lambda xs: math.exp(sum(map(math.log, xs)) / len(xs))  # noqa: E731
    # q and k see near-uniform attention at init: their first updates are partly unaligned noise,
    # which shrinks their ρ_ΔW at the larger width (measured 0.63-0.81); every other matrix within 1.5x
    scores = (".attn.q.", ".attn.k.")
    assert all(1 / 1.5 < r < 1.5 for n, r in mup_ratio.items() if not any(s in n for s in scores)), mup_ratio
    assert all(1 / 1.75 < r < 1.75 for r in mup_ratio.values()) and 0.8 < geo(mup_ratio.values()) < 1.25, (
        mup_ratio
    )
    assert all(r > 2 for r in sp_ratio.values()) and 3 < geo(sp_ratio.values()) < 5, sp_ratio


def test_train_logs_spectral_ratios(tmp_path):
    cfg = load_run_config(TINY + ["train.steps=4", "train.spectral_every=2", "train.log_every=100"])
    run(cfg, tmp_path / "r")
    rows = [json.loads(line) for line in (tmp_path / "r" / "metrics.jsonl").read_text().splitlines()]
    logged = {r["step"]: r.get("spectral") for r in rows}
    assert logged[1] and logged[3] and not logged.get(2) and not logged.get(4)
    assert set(logged[1]["blocks.0.attn.q.weight"]) == {"rho_w", "rho_dw"}
    assert logged[1]["blocks.0.attn.q.weight"]["rho_dw"] > 0


def test_a_zero_update_does_not_poison_the_warm_start():
    """An optimizer's first step may change nothing (SOAP builds its eigenbasis first): ρ_ΔW is 0 then,
    and the next, non-zero update must still be measured (the zero vector is no warm start)."""
    ratio = SpectralRatio()
    assert ratio(torch.zeros(32, 16)) == 0.0
    m = matrix_with_singular_values(32, 16, [2.0, 1.0])
    assert math.isclose(ratio(m), 2.0 * math.sqrt(16 / 32), rel_tol=1e-5)
    assert math.isnan(ratio(torch.full((32, 16), math.nan)))  # a diverged step, then a finite one again
    assert math.isclose(ratio(m), 2.0 * math.sqrt(16 / 32), rel_tol=1e-5)
