"""One training run: build the data, model, plan and optimizer, check the optimizer against the plan,
train with periodic evaluation and divergence detection, and write the run folder:

  config.yaml    the resolved config         plan.tsv / plan.json   the μP plan
  groups.json    the optimizer's real per-group settings at step 0
  metrics.jsonl  one row per logged step     result.json            written atomically at the end

A diverged run (non-finite loss, or loss above ``diverge_factor`` × its first loss) is a result with
status ``diverged``, not a crash.
"""

from __future__ import annotations

import contextlib
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from omegaconf import OmegaConf

from .data import BatchSampler, TokenCorpus, load_corpus
from .errors import MupxError
from .io import append_jsonl, atomic_write_json, atomic_write_text
from .models import Transformer
from .optim import build_optimizer, check_against_plan, group_settings
from .runconfig import RunConfig
from .scaling.plan import Plan, apply_init, build_plan
from .schedule import Schedule, attach

EVAL_SEED = 0  # every run is scored on the same validation windows


def resolve_device(spec: str) -> torch.device:
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if spec.startswith("cuda"):
        if not torch.cuda.is_available():
            raise MupxError(f"device {spec!r} requested but CUDA is not available (allowed here: auto, cpu)")
        index = torch.device(spec).index or 0
        if index >= torch.cuda.device_count():
            raise MupxError(f"device {spec!r} does not exist ({torch.cuda.device_count()} CUDA devices)")
    return torch.device(spec)


def plan_for(cfg: RunConfig, vocab_size: int) -> Plan:
    return build_plan(cfg.model, cfg.param, cfg.optimizer, cfg.options, vocab_size, cfg.train.seq_len)


@dataclass
class Trainer:
    """Everything one run needs, built and validated before anything is written to disk."""

    cfg: RunConfig
    corpus: TokenCorpus
    plan: Plan
    model: Transformer
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    sampler: BatchSampler
    device: torch.device
    step: int = 0
    history: list[float] = field(default_factory=list)
    hessian_generator: torch.Generator | None = None
    spectral: object | None = None

    @classmethod
    def build(cls, cfg: RunConfig) -> Trainer:
        device = resolve_device(cfg.device)
        corpus = load_corpus(cfg.data)
        plan = plan_for(cfg, corpus.vocab_size)
        torch.manual_seed(cfg.seed)
        model = Transformer(cfg.model, corpus.vocab_size, cfg.train.seq_len, plan.multipliers).to(device)
        apply_init(model, plan, torch.Generator().manual_seed(cfg.seed))
        optimizer = build_optimizer(model, plan, cfg.optimizer, cfg.options)
        t = cfg.train
        scheduler = attach(optimizer, Schedule(t.schedule, t.steps, t.warmup, t.final_lr_frac, t.decay))
        check_against_plan(optimizer, model, plan, lr_factor=scheduler.lr_lambdas[0](0))
        sampler = BatchSampler(corpus.train, t.batch, t.seq_len, seed=cfg.seed)
        trainer = cls(cfg, corpus, plan, model, optimizer, scheduler, sampler, device)
        if hasattr(optimizer, "update_hessian"):
            trainer.hessian_generator = torch.Generator(device=device).manual_seed(cfg.seed + 1)
        if t.spectral_every:
            from .diagnostics.spectral import SpectralMonitor

            trainer.spectral = SpectralMonitor(model, plan)
        return trainer

    def autocast(self):
        dtype = self.cfg.train.dtype
        if dtype == "bfloat16" or (dtype == "auto" and self.device.type == "cuda"):
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def forward_backward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        with self.autocast():
            loss = self.model(x, y)
        loss.backward()
        return loss.detach()

    def hessian_phase(self, x: torch.Tensor) -> None:
        """Sophia's Gauss-Newton-Bartlett estimate (Liu et al. 2023, Alg. 2): backpropagate the loss on
        labels sampled from the model's own predictions, then let the optimizer fold grad² into its
        Hessian EMA. Labels come from a dedicated generator, never the global RNG."""
        with self.autocast():
            logits = self.model(x)
        flat = logits.float().view(-1, logits.shape[-1])
        labels = torch.multinomial(flat.softmax(-1), 1, generator=self.hessian_generator).view(-1)
        torch.nn.functional.cross_entropy(flat, labels).backward()
        self.optimizer.update_hessian(n_tokens=x.numel())
        self.optimizer.zero_grad(set_to_none=True)

    def train_step(self) -> tuple[float, float, dict | None]:
        """One optimizer step; returns (loss, grad norm before clipping, spectral metrics or None)."""
        x, y = (t.to(self.device, non_blocking=True) for t in self.sampler.next())
        if self.hessian_generator is not None and self.optimizer.hessian_due():
            self.hessian_phase(x)
        loss = self.forward_backward(x, y)
        clip = self.cfg.train.grad_clip
        params = [p for p in self.model.parameters() if p.grad is not None]
        norm = torch.nn.utils.clip_grad_norm_(params, clip if clip > 0 else float("inf"))
        watch = self.spectral is not None and (self.step % self.cfg.train.spectral_every == 0)
        if watch:
            self.spectral.before_step()
        self.optimizer.step()
        spectral = self.spectral.after_step() if watch else None
        self.optimizer.zero_grad(set_to_none=True)
        self.scheduler.step()
        self.step += 1
        return loss.item(), norm.item(), spectral

    @torch.no_grad()
    def evaluate(self) -> float:
        sampler = BatchSampler(self.corpus.val, self.cfg.train.batch, self.cfg.train.seq_len, seed=EVAL_SEED)
        self.model.eval()
        total = 0.0
        for _ in range(self.cfg.train.eval_batches):
            x, y = (t.to(self.device) for t in sampler.next())
            with self.autocast():
                total += self.model(x, y).item()
        self.model.train()
        return total / self.cfg.train.eval_batches

    def lr_factor(self) -> float:
        return self.scheduler.lr_lambdas[0](self.step)


def prepare_out(out: Path) -> None:
    """Refuse to write into a folder that already holds a run, so nothing the user had is overwritten."""
    if out.exists() and not out.is_dir():
        raise MupxError(f"--out {out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()):
        what = "a finished run (result.json)" if (out / "result.json").exists() else "files"
        raise MupxError(f"run folder {out} already holds {what}; choose another --out or remove it")


def write_start_files(trainer: Trainer, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "config.yaml", OmegaConf.to_yaml(OmegaConf.create(trainer.cfg.resolved)))
    atomic_write_text(out / "plan.tsv", trainer.plan.to_tsv())
    atomic_write_json(out / "plan.json", trainer.plan.to_json())
    atomic_write_json(out / "groups.json", {"step": 0, "groups": group_settings(trainer.optimizer)})


def run(cfg: RunConfig, out: Path, console=None) -> dict:
    """Train one run into ``out`` and return its result (also written to ``out/result.json``)."""
    prepare_out(out)
    trainer = Trainer.build(cfg)
    write_start_files(trainer, out)
    t = cfg.train
    metrics = out / "metrics.jsonl"
    tokens_per_step = t.batch * t.seq_len
    status, reason, first_loss, val_loss = "completed", "", None, None
    start = time.perf_counter()
    progress = _progress(console) if t.progress else None
    task = progress.add_task(cfg.run_id, total=t.steps, loss=float("nan"), tps=0.0) if progress else None
    try:
        with progress or contextlib.nullcontext():
            while trainer.step < t.steps:
                lr_factor = trainer.lr_factor()
                loss, gnorm, spectral = trainer.train_step()
                trainer.history.append(loss)
                first_loss = loss if first_loss is None else first_loss
                elapsed = time.perf_counter() - start
                row = {"step": trainer.step, "loss": loss, "grad_norm": gnorm, "lr_factor": lr_factor,
                       "tokens": trainer.step * tokens_per_step, "time": elapsed,
                       "tokens_per_s": trainer.step * tokens_per_step / elapsed}  # fmt: skip
                if spectral:
                    row["spectral"] = spectral
                if not math.isfinite(loss):
                    status, reason = "diverged", f"non-finite loss at step {trainer.step}"
                elif loss > t.diverge_factor * first_loss:
                    status, reason = "diverged", f"loss {loss:.3g} > {t.diverge_factor:g} x first loss {first_loss:.3g} at step {trainer.step}"
                if status == "completed" and (trainer.step % t.eval_every == 0 or trainer.step == t.steps):
                    val_loss = trainer.evaluate()
                    row["val_loss"] = val_loss
                if trainer.step % t.log_every == 0 or trainer.step == t.steps or status != "completed" or "val_loss" in row or spectral:
                    append_jsonl(metrics, row)
                if progress:
                    progress.update(task, advance=1, loss=loss, tps=row["tokens_per_s"])
                if status != "completed":
                    break
    except Exception as e:
        _write_result(out, trainer, "failed", f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}", first_loss, val_loss, start)
        raise
    return _write_result(out, trainer, status, reason, first_loss, val_loss, start)


def _write_result(out: Path, trainer: Trainer, status: str, reason: str, first_loss, val_loss, start: float) -> dict:
    cfg, t = trainer.cfg, trainer.cfg.train
    wall = time.perf_counter() - start
    tail = [v for v in trainer.history[-t.smooth :] if math.isfinite(v)]
    tokens = trainer.step * t.batch * t.seq_len
    result = {
        "run_id": cfg.run_id,
        "status": status,
        "reason": reason,
        "optimizer": cfg.optimizer,
        "param": cfg.param.name,
        "model": cfg.model.flavour,
        "width": cfg.model.width,
        "depth": cfg.model.depth,
        "lr": cfg.resolved["optimizer"]["lr"],
        "seed": cfg.seed,
        "steps": trainer.step,
        "steps_planned": t.steps,
        "tokens": tokens,
        "first_loss": first_loss,
        "final_train_loss": sum(tail) / len(tail) if (tail and status == "completed") else None,
        "val_loss": val_loss if status == "completed" else None,
        "wall_time_s": wall,
        "tokens_per_s": tokens / wall if wall > 0 else None,
        "n_params": sum(p.numel() for p in trainer.model.parameters()),
        "device": str(trainer.device),
        "data": trainer.corpus.manifest,
    }
    atomic_write_json(out / "result.json", result)
    return result


def _progress(console):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    return Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]:.4f}"), TextColumn("{task.fields[tps]:,.0f} tok/s"),
        TimeRemainingColumn(), console=console, transient=False,
    )  # fmt: skip


def load_result(run_dir: Path) -> dict:
    with open(run_dir / "result.json") as f:
        return json.load(f)
