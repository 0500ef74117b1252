"""What only a GPU shows (marker ``gpu``; skipped without CUDA): bf16 autocast against fp32, the μP attention
scale inside the flash kernel, torch.compile against eager, every optimizer's step on CUDA as its plan
says, and a checkpoint written on the GPU resuming bit-identically there. ``make gpu-check`` runs them on a
GPU machine (benchmarks/gpu_check.py); the CPU suite skips them."""

import dataclasses
import json
import math
import os
import shutil

import pytest
import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

from mupx import checkpoint
from mupx.models.transformer import Attention
from mupx.nn import attention_scale
from mupx.optim import REGISTRY, check_against_plan
from mupx.runconfig import load_run_config
from mupx.train import Trainer, run

from .conftest import TINY

# cuBLAS is deterministic only with a fixed workspace, read when its first handle is made: before any test runs.
os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(
        not torch.cuda.is_available(),
        reason="needs CUDA (torch.cuda.is_available() is False): run on a GPU machine with make gpu-check",
    ),
]

GPU = TINY + ["device=cuda"]
BF16_MEAN_TOL, BF16_STEP_TOL = 0.01, 0.05  # bf16 vs fp32: mean of the last 10 of 50 steps, and any one step
COMPILE_TOL = 1e-3  # compiled vs eager in fp32, at every one of 10 steps
# Short preconditioner / Hessian periods so that 4 steps cross a refresh (eigh, QR, the Hessian phase).
PERIODS = {"shampoo": ["optimizer.precondition_every=2"], "soap": ["optimizer.precondition_every=2"],
           "sophia": ["optimizer.hessian_every=2"]}  # fmt: skip


def losses(overrides: list[str], steps: int) -> list[float]:
    trainer = Trainer.build(load_run_config(overrides + [f"train.steps={steps}"]))
    return [trainer.train_step()[0] for _ in range(steps)]


def relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).norm() / b.norm()).item()


def test_bf16_autocast_keeps_the_loss_of_fp32():
    """Width 256 (the base width: μP = SP), 50 AdamW steps on the same data from the same init. On CPU's bf16
    autocast the gap was 0.3% over the last 10 steps and 1.8% at its largest step; the tolerances
    are 1% and 5%."""
    width = ["model.width=256", "param.base_width=256", "train.batch=8", "train.seq_len=64"]
    fp32 = losses(GPU + width + ["train.dtype=float32"], 50)
    bf16 = losses(GPU + width + ["train.dtype=bfloat16"], 50)
    gaps = [abs(a - b) / b for a, b in zip(bf16, fp32, strict=True)]
    assert sum(gaps[-10:]) / 10 < BF16_MEAN_TOL, gaps
    assert max(gaps) < BF16_STEP_TOL, gaps
    assert fp32[-1] < 0.9 * fp32[0]  # it trained


def causal_attention(q, k, v, scale):
    """softmax(q kᵀ · scale + causal mask) v, as written in the papers."""
    t = q.shape[-2]
    mask = torch.ones(t, t, dtype=torch.bool, device=q.device).tril()
    return ((q @ k.transpose(-2, -1)) * scale).masked_fill(~mask, float("-inf")).softmax(-1) @ v


def test_the_mup_attention_scale_reaches_the_flash_kernel(monkeypatch):
    """The trainer passes the plan's scale to SDPA in every block; and the flash kernel applies the scale it
    is given: on the bf16 q, k, v it received, its output matches a float32 attention with that scale (μP's
    √d₀/d for a head dim grown 4x, 1/16, rather than SDPA's default 1/√d = 1/8) and is far from one with
    the default scale."""
    calls = []
    sdpa = F.scaled_dot_product_attention

    def recording(q, k, v, **kwargs):
        out = sdpa(q, k, v, **kwargs)
        calls.append((q, k, v, kwargs["scale"], out))
        return out

    monkeypatch.setattr(F, "scaled_dot_product_attention", recording)
    trainer = Trainer.build(load_run_config(GPU + ["model.depth=3"]))
    trainer.train_step()
    assert [c[3] for c in calls] == [trainer.plan.multipliers.attn_scale] * 3

    cfg = dataclasses.replace(trainer.cfg.model, width=256, head_dim=64)
    scale = attention_scale(64, 16)
    generator = torch.Generator(device="cuda").manual_seed(0)
    attn = Attention(cfg, scale).cuda()
    for lin in (attn.q, attn.k):  # q·k of order √d: the scale shapes the softmax
        torch.nn.init.normal_(lin.weight, std=cfg.width**-0.5, generator=generator)
    x = torch.randn(4, 128, cfg.width, device="cuda", generator=generator)
    calls.clear()
    with (
        torch.no_grad(),
        torch.autocast("cuda", dtype=torch.bfloat16),
        sdpa_kernel(SDPBackend.FLASH_ATTENTION),
    ):
        attn(x, None)
    [(q, k, v, given, out)] = calls
    assert given == scale and q.dtype == torch.bfloat16
    q, k, v = q.float(), k.float(), v.float()
    error = relative(out.float(), causal_attention(q, k, v, scale))
    assert error < 1e-2, error  # the output's bf16 rounding
    default = relative(causal_attention(q, k, v, cfg.head_dim**-0.5), causal_attention(q, k, v, scale))
    assert default > 10 * error, (default, error)


def test_compile_gives_the_loss_of_eager():
    """Width 128, 10 AdamW steps in float32 (bf16 would hide a difference under its rounding)."""
    width = ["model.width=128", "train.dtype=float32"]
    eager = losses(GPU + width, 10)
    compiled = losses(GPU + width + ["train.compile=true"], 10)
    gaps = [abs(a - b) / b for a, b in zip(compiled, eager, strict=True)]
    assert max(gaps) < COMPILE_TOL, gaps


def state_tensors(state) -> list[torch.Tensor]:
    if isinstance(state, torch.Tensor):
        return [state]
    if isinstance(state, dict):
        return [t for v in state.values() for t in state_tensors(v)]
    if isinstance(state, (list, tuple)):
        return [t for v in state for t in state_tensors(v)]
    return []


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_every_optimizer_steps_on_cuda_with_its_planned_groups(name):
    """The step-0 check of the optimizer's per-group lr/wd/ε against the plan passes (Trainer.build runs it
    too), 4 steps run on CUDA with finite losses, and every per-parameter state buffer lives on the GPU."""
    trainer = Trainer.build(
        load_run_config(GPU + [f"optimizer={name}", *PERIODS.get(name, []), "train.steps=4"])
    )
    check_against_plan(trainer.optimizer, trainer.model, trainer.plan, lr_factor=trainer.lr_factor())
    values = [trainer.train_step()[0] for _ in range(4)]
    assert all(math.isfinite(v) for v in values), values
    buffers = [t for s in trainer.optimizer.state.values() for t in state_tensors(s) if t.numel() > 1]
    assert buffers and all(t.is_cuda for t in buffers)
    assert all(p.is_cuda for p in trainer.model.parameters())


@pytest.fixture
def deterministic():
    torch.use_deterministic_algorithms(True)  # flash attention's backward has a deterministic mode
    yield
    torch.use_deterministic_algorithms(False)


def metric_rows(run_dir) -> list[tuple]:
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [(r["step"], r["loss"], r["grad_norm"], r.get("val_loss")) for r in rows]


def test_a_gpu_checkpoint_resumes_bit_identically_on_the_gpu(tmp_path, deterministic):
    """Two uninterrupted runs agree bit for bit (the control: deterministic kernels); a third, resumed from
    the first's step-4 checkpoint (written and loaded on the GPU), continues with the same bits."""
    cfg = load_run_config(GPU + ["train.steps=8", "train.checkpoint_every=4", "train.eval_every=4"])
    reference, control, resumed = tmp_path / "reference", tmp_path / "control", tmp_path / "resumed"
    run(cfg, reference)
    run(cfg, control)
    assert metric_rows(control) == metric_rows(reference), (
        "two identical GPU runs differ: nondeterministic kernels"
    )
    shutil.copytree(reference, resumed)
    (resumed / "result.json").unlink()
    for path in checkpoint.all_checkpoints(resumed)[1:]:  # keep step 4's, drop the final weights (step 8)
        path.unlink()
    result = run(cfg, resumed, resume=True)
    assert result["status"] == "completed"
    assert metric_rows(resumed) == metric_rows(reference)
    saved = json.loads((reference / "result.json").read_text())
    assert (result["final_train_loss"], result["val_loss"]) == (saved["final_train_loss"], saved["val_loss"])
