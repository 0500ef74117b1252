"""One training run: build the data, model, plan and optimizer, check the optimizer against the plan,
train with periodic evaluation and divergence detection, and write the run folder:

  config.yaml    the resolved config         plan.tsv / plan.json   the μP plan
  groups.json    the optimizer's real per-group settings at step 0
  metrics.jsonl  one row per step            result.json            written atomically at the end

A diverged run (non-finite loss, or loss above ``diverge_factor`` × its first loss) is a result with
status ``diverged``, not a crash.

The loop reads the loss and grad norm back from the device every ``train.log_every`` steps, not every
step: reading a value makes the host wait for the device to finish, and a per-step wait leaves a GPU idle
while the host prepares the next step (the small proxies of a sweep are launch-bound). Until the read the
values stay on the device; a read fetches all of them in one transfer and records them in order exactly as
per-step reads would (the same metrics rows, history and result), so every step keeps its row. Divergence,
evaluation, checkpoints and signals are acted on at reads: the steps due for an evaluation or a checkpoint
are read points, and a run that diverged is stopped at the next read, having trained up to
``log_every - 1`` steps past the divergence (its rows end at the diverging step; ``steps`` in its result
counts every step trained).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import math
import shutil
import signal
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch
from omegaconf import OmegaConf
from torch.nn.parallel import DistributedDataParallel

from . import checkpoint
from .config import config_diff
from .data import BatchSampler, TokenCorpus, load_corpus
from .data.sampler import derived_seed
from .distributed import Dist, any_rank, gather, init_from_env, mean, shutdown
from .errors import MupxError
from .io import append_jsonl, atomic_write_json, atomic_write_text, check_folder
from .mfu import mfu, peak_flops
from .models import build_model
from .models.contract import logits_of, next_token_loss
from .optim import build_optimizer, check_against_plan, group_settings
from .runconfig import RunConfig, result_keys
from .scaling.plan import Plan, apply_init, build_plan
from .scaling.rules import Multiples, clip_norm_weight
from .schedule import Schedule, attach
from .tracking import WandbTracker

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
    """Everything one run needs, built and validated before anything is written to disk.

    Under torchrun (DDP) ``model`` is the plain module and ``engine`` its DistributedDataParallel
    wrapper (or the compiled module); every rank draws its own batches, gradients are averaged by DDP,
    so every optimizer acts on the all-reduced gradient and the ranks stay identical.
    """

    cfg: RunConfig
    corpus: TokenCorpus
    plan: Plan
    model: torch.nn.Module
    engine: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    sampler: BatchSampler
    device: torch.device
    dist: Dist = field(default_factory=Dist)
    tracker: WandbTracker = field(default_factory=WandbTracker)  # opt-in wandb mirror, rank 0 only
    step: int = 0
    history: list[float] = field(default_factory=list)
    first_loss: float | None = None
    val_loss: float | None = None
    elapsed: float = 0.0  # wall time of earlier sessions of this run (before a resume)
    spectral: object | None = None
    branch: dict | None = (
        None  # {"from": checkpoint, "step": s} when this run branched off another's checkpoint
    )

    @classmethod
    def build(cls, cfg: RunConfig) -> Trainer:
        d, device_spec = init_from_env(cfg.device)
        device = resolve_device(device_spec)
        t = cfg.train
        if t.batch % (d.world * t.accum):
            raise MupxError(
                f"train.batch {t.batch} (global sequences per step) is not divisible by world size {d.world} "
                f"x train.accum {t.accum}"
            )
        if t.eval_batch is not None and t.eval_batch % (d.world * t.accum):
            raise MupxError(
                f"train.eval_batch {t.eval_batch} (sequences per validation batch) is not divisible by world size "
                f"{d.world} x train.accum {t.accum}"
            )
        corpus = load_corpus(cfg.data)
        plan = plan_for(cfg, corpus.vocab_size)
        torch.manual_seed(cfg.seed)
        model = build_model(cfg.model, corpus.vocab_size, t.seq_len, plan.multipliers).to(device)
        apply_init(model, plan, torch.Generator().manual_seed(cfg.seed))
        optimizer = build_optimizer(model, plan, cfg.optimizer, cfg.options)
        scheduler = attach(optimizer, Schedule.of(t))
        check_against_plan(optimizer, model, plan, lr_factor=scheduler.lr_lambdas[0](0))
        engine: torch.nn.Module = torch.compile(model) if t.compile else model
        if d.active:
            engine = DistributedDataParallel(
                engine, device_ids=[device.index] if device.type == "cuda" else None
            )
        sampler = BatchSampler(
            corpus.train, t.batch, t.seq_len, seed=cfg.seed
        )  # global batches; each rank reads its shard
        trainer = cls(cfg, corpus, plan, model, engine, optimizer, scheduler, sampler, device, d)
        if t.spectral_every:
            from .diagnostics.spectral import SpectralMonitor

            trainer.spectral = SpectralMonitor(model, plan)
        return trainer

    @property
    def tokens_per_step(self) -> int:
        return self.cfg.train.batch * self.cfg.train.seq_len

    def autocast(self):
        dtype = self.cfg.train.dtype
        if dtype == "bfloat16" or (dtype == "auto" and self.device.type == "cuda"):
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def gradient_sync(self, sync: bool):
        """Under DDP, backward passes all-reduce gradients only when ``sync`` (the last micro-batch)."""
        return self.engine.no_sync() if (self.dist.active and not sync) else contextlib.nullcontext()

    def forward_backward(
        self, x: torch.Tensor, y: torch.Tensor, sync: bool = True, scale: float = 1.0
    ) -> torch.Tensor:
        """Loss of one micro-batch and its backward (DDP all-reduces only when ``sync``)."""
        with self.gradient_sync(sync):
            with self.autocast():
                loss = next_token_loss(self.engine(x), y)
            (loss * scale).backward()
        return loss.detach()

    def hessian_phase(self, batches: list[tuple[torch.Tensor, torch.Tensor]]) -> None:
        """Sophia's Gauss-Newton-Bartlett estimate (Liu et al. 2023, Alg. 2): backpropagate the loss on
        labels sampled from the model's own predictions, then let the optimizer fold grad² into its
        Hessian EMA. Over the whole global batch, like the training gradient (all micro-batches, all-reduced
        by DDP); the labels of global micro-batch j at step s come from a generator seeded by (seed, s, j),
        never the global RNG, so the estimate is the same for any number of ranks and micro-batches and
        needs no state in a checkpoint."""
        accum = len(batches)
        for i, (x, _) in enumerate(batches):
            seed = derived_seed("sophia-labels", self.cfg.seed, self.step, self.dist.rank * accum + i)
            generator = torch.Generator(device=self.device).manual_seed(seed)
            with self.gradient_sync(i == accum - 1):
                with self.autocast():
                    logits = logits_of(self.engine(x))
                flat = logits.float().view(-1, logits.shape[-1])
                labels = torch.multinomial(flat.softmax(-1), 1, generator=generator).view(-1)
                (torch.nn.functional.cross_entropy(flat, labels) / accum).backward()
        self.optimizer.update_hessian(n_tokens=self.cfg.train.batch * self.cfg.train.seq_len)
        self.optimizer.zero_grad(set_to_none=True)

    def queue_step(self) -> tuple[torch.Tensor, torch.Tensor, dict | None]:
        """One optimizer step over ``train.accum`` micro-batches, without waiting for the device: returns (loss
        averaged over micro-batches and ranks, grad norm before clipping) as unread 0-d tensors on the device,
        and the spectral metrics or None. Reading them (:func:`read_values`) waits for the step to finish."""
        accum = self.cfg.train.accum
        shard = self.sampler.next_shard(self.dist.rank, self.dist.world, accum)
        batches = [
            (x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)) for x, y in shard
        ]
        if hasattr(self.optimizer, "update_hessian") and self.optimizer.hessian_due():
            self.hessian_phase(batches)
        loss = (
            sum(
                self.forward_backward(x, y, sync=i == accum - 1, scale=1.0 / accum)
                for i, (x, y) in enumerate(batches)
            )
            / accum
        )
        norm = self.clip_gradients()
        watch = self.spectral is not None and (self.step % self.cfg.train.spectral_every == 0)
        if watch:
            self.spectral.before_step()
        self.optimizer.step()
        spectral = self.spectral.after_step() if watch else None
        self.optimizer.zero_grad(set_to_none=True)
        self.scheduler.step()
        self.step += 1
        return mean(loss, self.dist), norm, spectral

    def clip_gradients(self) -> torch.Tensor:
        """Scale the gradients down to norm ``train.grad_clip`` (0 = off) and return the norm before: torch's
        global norm, or with ``train.grad_clip_norm: mup`` the width-invariant one, each tensor's norm times
        :func:`~mupx.scaling.rules.clip_norm_weight` of its plan row (equal to the global norm at the base width)."""
        t = self.cfg.train
        named = [(name, p) for name, p in self.model.named_parameters() if p.grad is not None]
        params, max_norm = [p for _, p in named], t.grad_clip if t.grad_clip > 0 else float("inf")
        if t.grad_clip_norm == "global":
            return torch.nn.utils.clip_grad_norm_(params, max_norm)
        weights = self.clip_weights
        norm = torch.linalg.vector_norm(
            torch.stack([torch.linalg.vector_norm(p.grad) * weights[name] for name, p in named])
        )
        torch.nn.utils.clip_grads_with_norm_(params, max_norm, norm)
        return norm

    @functools.cached_property
    def clip_weights(self) -> dict[str, float]:
        """Each parameter's weight in the width-invariant gradient norm, from its fan multipliers in the plan."""
        return {row.name: clip_norm_weight(Multiples(fan_in=row.fan_in_mult, fan_out=row.fan_out_mult))
                for row in self.plan.rows}  # fmt: skip

    def train_step(self) -> tuple[float, float, dict | None]:
        """:meth:`queue_step` read at once (a host sync per step), for callers that use each loss as it comes."""
        loss, norm, spectral = self.queue_step()
        return loss.item(), norm.item(), spectral

    @torch.no_grad()
    def evaluate(self) -> float:
        """Mean loss on fixed validation windows: the first ``eval_batches`` x ``eval_batch`` (default
        ``train.batch``) windows of one seeded stream, the same for every run and resume, and for every
        training batch once ``eval_batch`` is set; computed in ``accum`` micro-batches, each rank on its shard
        of every batch, averaged over ranks."""
        t = self.cfg.train
        sampler = BatchSampler(self.corpus.val, t.eval_batch or t.batch, t.seq_len, seed=EVAL_SEED)
        self.model.eval()
        total = torch.zeros((), device=self.device)
        for _ in range(t.eval_batches):
            for x, y in sampler.next_shard(self.dist.rank, self.dist.world, t.accum):
                with self.autocast():
                    total += next_token_loss(self.model(x.to(self.device)), y.to(self.device))
        self.model.train()
        return mean(total / (t.eval_batches * t.accum), self.dist).item()

    def lr_factor(self) -> float:
        return self.scheduler.lr_lambdas[0](self.step)

    def state_dict(self) -> dict:
        """Everything a bit-identical continuation needs; tensors and plain values only. Under DDP the
        model, optimizer and data sampler are identical on every rank; the global RNG states are kept per rank."""
        return {
            "run_id": self.cfg.run_id,
            "world": self.dist.world,
            "step": self.step,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "ranks": gather(self._rank_state(), self.dist),
            "history": torch.tensor(self.history, dtype=torch.float64),
            "first_loss": self.first_loss,
            "val_loss": self.val_loss,
            "elapsed": self.elapsed,
            "config": result_keys(
                self.cfg.resolved
            ),  # what a branch checks it differs from only in train.steps
            "branch": self.branch,
        }

    def _rank_state(self) -> dict:
        return {
            "sampler": self.sampler.state_dict(),
            "rng": checkpoint.rng_state(),
        }

    def load_state_dict(self, state: dict) -> None:
        if state["run_id"] != self.cfg.run_id:
            raise MupxError(
                f"checkpoint {state.get('_path')} belongs to run {state['run_id']}, not {self.cfg.run_id}"
            )
        if state["world"] != self.dist.world:
            raise MupxError(
                f"checkpoint {state.get('_path')} was written by {state['world']} ranks; resume it with as many (now {self.dist.world})"
            )
        self._restore(state, state["scheduler"])
        self.branch = state.get("branch")

    def branch_off(self, state: dict, path: Path) -> None:
        """Continue another run's checkpoint ``state`` (``train.branch_from``): a run that differs from this one
        only in ``train.steps`` and whose lr schedule agrees with this one's on every step before the
        checkpoint (a wsd run of another horizon with the same warmup in steps, checkpointed in its stable
        phase before this run's decay starts). Everything else a step depends on — weights, optimizer state,
        data position, RNG, loss history — is then what this run would have at that step, so it continues
        bit-identically to training from scratch (on CPU). The scheduler keeps this run's own schedule:
        ``LambdaLR.load_state_dict`` would copy the saved schedule (the other run's horizon) over it, so the
        saved lr lambdas are dropped and every group's lr set by this run's schedule at the step. The μP plan
        is checked against the optimizer there, as at step 0."""
        if "config" not in state:
            raise MupxError(
                f"--branch-from {path}: the checkpoint records no config (written before mupx branched runs)"
            )
        if state["world"] != self.dist.world:
            raise MupxError(
                f"--branch-from {path} was written by {state['world']} ranks; branch it with as many (now {self.dist.world})"
            )
        differs = [
            d
            for d in config_diff(state["config"], result_keys(self.cfg.resolved))
            if not d.startswith("train.steps ")
        ]
        if differs:
            raise MupxError(f"--branch-from {path}: its run differs from this one in more than train.steps "
                            f"(its -> this: {'; '.join(differs[:5])}{'; ...' if len(differs) > 5 else ''})")  # fmt: skip
        step, mine = state["step"], Schedule.of(self.cfg.train)
        theirs = replace(mine, steps=state["config"]["train"]["steps"])
        if step >= mine.steps:
            raise MupxError(
                f"--branch-from {path} is at step {step}, not before this run's last step ({mine.steps})"
            )
        bad = next((k for k in range(step) if theirs(k) != mine(k)), None)
        if bad is not None:
            raise MupxError(f"--branch-from {path}: the lr schedules differ at step {bad} (factor {theirs(bad):.4g} there, "
                            f"{mine(bad):.4g} here), before its step {step}: branch off the stable phase of a wsd run "
                            "with the same warmup in steps (train.warmup_steps)")  # fmt: skip
        self._restore(state, {**state["scheduler"], "lr_lambdas": [None] * len(self.scheduler.lr_lambdas)})
        factor = mine(step)
        for group, base in zip(self.optimizer.param_groups, self.scheduler.base_lrs, strict=True):
            group["lr"] = base * factor  # as LambdaLR sets it: base_lr * lambda(step)
        check_against_plan(self.optimizer, self.model, self.plan, lr_factor=factor)
        self.branch = {"from": str(path), "step": step}

    def _restore(self, state: dict, scheduler: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(scheduler)
        mine = state["ranks"][self.dist.rank]
        self.sampler.load_state_dict(mine["sampler"])
        checkpoint.set_rng_state(mine["rng"])
        self.step = state["step"]
        self.history = state["history"].tolist()
        self.first_loss, self.val_loss, self.elapsed = (
            state["first_loss"],
            state["val_loss"],
            state["elapsed"],
        )

    def ranks_in_sync(self) -> bool | None:
        """Under DDP: whether every rank holds bit-identical parameters (None without DDP)."""
        if not self.dist.active:
            return None
        digest = hashlib.sha256()
        for p in self.model.parameters():
            digest.update(p.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
        return len(set(gather(digest.hexdigest(), self.dist))) == 1


def read_values(values: list[torch.Tensor]) -> list[float]:
    """Device scalars as Python floats, in one transfer (one host sync for all); each equals its ``.item()``."""
    return torch.stack([v.double() for v in values]).tolist() if values else []


def prepare_out(out: Path, resume: bool) -> None:
    """Refuse to write into a folder that already holds a run, so nothing the user had is overwritten
    (``resume`` continues the run in ``out`` instead)."""
    check_folder(out, "--out")
    if resume:
        saved_config(out)
        return
    if out.is_dir() and any(out.iterdir()):
        if (out / "result.json").exists():
            what = "a finished run (result.json)"
        elif (out / "config.yaml").exists():
            what = "an unfinished run (use --resume)"
        else:
            what = "files that are not a run (no config.yaml)"
        raise MupxError(f"run folder {out} already holds {what}; choose another --out or remove it")


def saved_config(out: Path) -> Path:
    """The config.yaml of the run in ``out`` that --resume continues; a one-line error when there is none."""
    if not out.exists():
        raise MupxError(f"--resume: no run folder at {out} (give the --out of the run to continue)")
    if not (out / "config.yaml").is_file():
        raise MupxError(
            f"--resume: {out} holds no run (no config.yaml); give the --out of the run to continue"
        )
    return out / "config.yaml"


def check_resumable(out: Path, cfg: RunConfig) -> None:
    result = read_json(out / "result.json")
    if result and result.get("status") in ("completed", "diverged"):
        raise MupxError(
            f"run folder {out} already holds a finished run ({result['status']}); nothing to resume"
        )
    if (out / "config.yaml").exists():
        differs = config_diff(result_keys(load_saved(out)), result_keys(cfg.resolved))
        if differs:
            raise MupxError(
                f"run folder {out} holds a run with a different config; refusing to resume it with this one "
                f"(saved -> given: {'; '.join(differs[:5])}{'; ...' if len(differs) > 5 else ''})"
            )


def load_saved(out: Path) -> dict:
    """The composed config saved in the run folder ``out`` (what --resume continues with)."""
    try:
        saved = OmegaConf.to_container(OmegaConf.load(saved_config(out)), resolve=True)
        result_keys(saved)
        if not all(isinstance(saved.get(k), dict) for k in ("model", "optimizer", "param", "data", "train")):
            raise KeyError("a section")
    except MupxError:
        raise
    except Exception as e:  # YAML/OmegaConf errors on a torn file, or a config without its sections
        raise MupxError(
            f"run folder {out} holds an unreadable config.yaml ({type(e).__name__}); remove the folder to start over"
        ) from None
    return saved


def read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def write_start_files(trainer: Trainer, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "config.yaml", OmegaConf.to_yaml(OmegaConf.create(trainer.cfg.resolved)))
    atomic_write_text(out / "plan.tsv", trainer.plan.to_tsv())
    atomic_write_json(out / "plan.json", trainer.plan.to_json())
    atomic_write_json(
        out / "groups.json", {"step": trainer.step, "groups": group_settings(trainer.optimizer)}
    )


def truncate_metrics(path: Path, step: int, into: Path | None = None) -> None:
    """Drop metric rows logged after ``step`` (they are recomputed identically after a resume); with
    ``into``, write the rows up to ``step`` there instead (a branch starts with its trunk's rows)."""
    if path.exists():
        rows = [ln for ln in path.read_text().splitlines() if ln.strip()]
        keep = []
        for ln in rows:
            try:
                if json.loads(ln)["step"] <= step:
                    keep.append(ln)
            except (ValueError, KeyError):
                break  # a torn last line from a kill
        atomic_write_text(into or path, "".join(ln + "\n" for ln in keep))


class StopRequest:
    """SIGTERM/SIGINT (SLURM preemption, Ctrl-C) ask the loop to checkpoint and stop after this step."""

    def __init__(self):
        self.signal: str | None = None
        self._old = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame):
        self.signal = signal.Signals(signum).name

    def __exit__(self, *exc):
        for sig, handler in self._old.items():
            signal.signal(sig, handler)


def run(cfg: RunConfig, out: Path, console=None, resume: bool = False) -> dict:
    """Train one run into ``out`` and return its result (also written to ``out/result.json``).

    With ``resume``, continue from the newest readable checkpoint in ``out`` (or start over when there
    is none): losses are bit-identical to an uninterrupted run on CPU.
    """
    # Every rank checks the folder before Trainer.build joins the process group (a rendezvous), so no
    # rank can see rank 0's first files; afterwards only rank 0 writes.
    prepare_out(out, resume)
    if resume:
        check_resumable(out, cfg)
    trainer = Trainer.build(cfg)
    try:
        return _train(trainer, out, console, resume)
    finally:
        shutdown(trainer.dist)


def _train(trainer: Trainer, out: Path, console, resume: bool) -> dict:
    cfg, main = trainer.cfg, trainer.dist.main
    state = checkpoint.load_latest(out, trainer.device) if resume else None
    if state is not None:
        trainer.load_state_dict(state)
        if main:
            if console is not None:
                console.print(
                    f"resumed {out} from its step-{trainer.step} checkpoint", highlight=False, soft_wrap=True
                )
            truncate_metrics(out / "metrics.jsonl", trainer.step)
            (out / "result.json").unlink(missing_ok=True)
    else:
        if cfg.train.branch_from:
            trunk = Path(cfg.train.branch_from)
            trainer.branch_off(checkpoint.load(trunk, trainer.device), trunk)
        if main:
            for stale in ("metrics.jsonl", "result.json"):
                (out / stale).unlink(missing_ok=True)
            write_start_files(trainer, out)
            if trainer.branch:  # the trunk's rows up to the branch point, as an independent run has them
                truncate_metrics(
                    trunk.parent.parent / "metrics.jsonl", trainer.step, into=out / "metrics.jsonl"
                )
    w = cfg.tracking.wandb
    if main and w.mode != "disabled":
        try:
            trainer.tracker.start(
                cfg.run_id, w.group, cfg.resolved, trainer.plan.to_json()["rows"], out, w.mode, w.project
            )
        except MupxError:
            if state is None:  # a new run: leave no half-written folder behind (prepare_out found it empty)
                shutil.rmtree(out, ignore_errors=True)
            raise
    t = cfg.train
    metrics = out / "metrics.jsonl"
    tokens_per_step = trainer.tokens_per_step
    flops_per_token, peak = trainer.plan.flops_per_token(t.seq_len), peak_flops(trainer.device, t.peak_tflops)
    status, reason = "completed", ""
    start = time.perf_counter() - trainer.elapsed
    progress = _progress(console) if (t.progress and main) else None
    task = (
        progress.add_task(cfg.run_id, total=t.steps, completed=trainer.step, loss=float("nan"), tps=0.0)
        if progress
        else None
    )

    def save_checkpoint(branch: bool = False) -> None:
        trainer.elapsed = time.perf_counter() - start
        state = trainer.state_dict()  # collective under DDP: every rank's data and RNG position
        if main:
            checkpoint.save(out, trainer.step, state, keep=t.keep_checkpoints, branch=branch)

    pending: list[tuple] = []  # (step, lr factor, time queued, loss, grad norm, spectral) of the unread steps

    def record() -> list[dict]:
        """Read the pending steps' losses and grad norms (one host sync) and take them in order as a per-step
        read would: history, first loss, divergence; returns their metrics rows, up to a diverging step."""
        nonlocal status, reason
        values = read_values([v for p in pending for v in p[3:5]])
        now = time.perf_counter() - start  # the last pending step has finished
        rows = []
        for i, (step, lr_factor, queued, _, _, spectral) in enumerate(pending):
            loss, gnorm = values[2 * i], values[2 * i + 1]
            trainer.history.append(loss)
            trainer.first_loss = loss if trainer.first_loss is None else trainer.first_loss
            elapsed = now if i == len(pending) - 1 else queued
            row = {"step": step, "loss": loss, "grad_norm": gnorm, "lr_factor": lr_factor,
                   "tokens": step * tokens_per_step, "time": elapsed, "tokens_per_s": step * tokens_per_step / elapsed}  # fmt: skip
            if peak:
                row["mfu"] = mfu(row["tokens_per_s"], flops_per_token, peak)
            if spectral:
                row["spectral"] = spectral
            rows.append(row)
            if not math.isfinite(loss):
                status, reason = "diverged", f"non-finite loss at step {step}"
            elif loss > t.diverge_factor * trainer.first_loss:
                status, reason = (
                    "diverged",
                    f"loss {loss:.3g} > {t.diverge_factor:g} x first loss {trainer.first_loss:.3g} at step {step}",
                )
            if status != "completed":
                break
        pending.clear()
        return rows

    def log(rows: list[dict]) -> None:
        if main:
            for row in rows:
                append_jsonl(metrics, row)
                trainer.tracker.log(row)

    try:
        with progress or contextlib.nullcontext(), StopRequest() as stop:
            while trainer.step < t.steps:
                lr_factor = trainer.lr_factor()
                loss, gnorm, spectral = trainer.queue_step()
                pending.append((trainer.step, lr_factor, time.perf_counter() - start, loss, gnorm, spectral))
                if progress:
                    progress.update(task, advance=1)
                evaluate = trainer.step % t.eval_every == 0 or trainer.step == t.steps
                save = (
                    t.checkpoint_every > 0
                    and trainer.step % t.checkpoint_every == 0
                    and trainer.step < t.steps
                )
                signalled = stop.signal is not None and not trainer.dist.active  # DDP ranks agree at reads
                branch_point = trainer.step in t.branch_points  # a shorter horizon branches off here
                if not (trainer.step % t.log_every == 0 or evaluate or save or signalled or branch_point):
                    continue
                rows = record()
                if status == "completed" and evaluate:
                    trainer.val_loss = trainer.evaluate()
                    rows[-1]["val_loss"] = trainer.val_loss
                log(rows)
                if progress:
                    progress.update(task, loss=rows[-1]["loss"], tps=rows[-1]["tokens_per_s"])
                if status != "completed":  # the loss is the mean over ranks: every rank stops here
                    break
                if any_rank(
                    stop.signal is not None, trainer.dist, trainer.device
                ):  # torchrun signals each rank
                    save_checkpoint()
                    return _write_result(
                        out,
                        trainer,
                        "interrupted",
                        f"{stop.signal or 'a signal to another rank'} at step {trainer.step}; continue with --resume",
                        start,
                    )
                if save:
                    save_checkpoint()
                if branch_point:
                    save_checkpoint(branch=True)
        if status == "completed" and t.save_final:
            save_checkpoint()  # the final weights: a finished run keeps what it trained
    except Exception as e:
        if (
            pending and status == "completed"
        ):  # an unread divergence can fail a later step (Sophia: NaN logits)
            with contextlib.suppress(Exception):  # the device may be unusable after the error
                log(record())
        if status == "diverged":
            return _write_result(out, trainer, status, reason, start)
        _write_result(out, trainer, "failed", _failure_reason(e), start)
        raise
    return _write_result(out, trainer, status, reason, start)


def _failure_reason(e: Exception) -> str:
    if isinstance(e, torch.OutOfMemoryError):
        return "out of memory: " + (str(e).splitlines()[0] if str(e) else "")
    return f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"


def _write_result(out: Path, trainer: Trainer, status: str, reason: str, start: float) -> dict:
    """The run's result (every rank returns it; rank 0 writes it)."""
    cfg, t = trainer.cfg, trainer.cfg.train
    wall = time.perf_counter() - start
    tail = [v for v in trainer.history[-t.smooth :] if math.isfinite(v)]
    tokens = trainer.step * trainer.tokens_per_step
    branch_step = (trainer.branch or {}).get("step", 0)
    flops_per_token = trainer.plan.flops_per_token(t.seq_len)
    peak = peak_flops(trainer.device, t.peak_tflops)
    result = {
        "run_id": cfg.run_id,
        "status": status,
        "reason": reason,
        "optimizer": cfg.optimizer,
        "param": cfg.param.name,
        "model": cfg.model.name,
        "width": cfg.model.width,
        "depth": cfg.model.depth,
        "lr": cfg.resolved["optimizer"]["lr"],
        "seed": cfg.seed,
        "steps": trainer.step,
        "steps_planned": t.steps,
        "tokens": tokens,
        "tokens_trained": tokens
        - branch_step * trainer.tokens_per_step,  # a branch trained from its branch point
        "branch": trainer.branch,
        "first_loss": trainer.first_loss,
        "final_train_loss": sum(tail) / len(tail) if (tail and status == "completed") else None,
        "val_loss": trainer.val_loss if status == "completed" else None,
        "wall_time_s": wall,
        "tokens_per_s": tokens / wall if wall > 0 else None,
        "flops_per_token": flops_per_token,
        "mfu": mfu(tokens / wall, flops_per_token, peak) if wall > 0 else None,
        "n_params": sum(p.numel() for p in trainer.model.parameters()),
        "device": str(trainer.device),
        "world_size": trainer.dist.world,
        "ranks_in_sync": trainer.ranks_in_sync()
        if status != "failed"
        else None,  # a collective: not after an error
        "data": trainer.corpus.manifest,
    }
    if trainer.dist.main:
        atomic_write_json(out / "result.json", result)
        trainer.tracker.finish(result)
    return result


def _progress(console):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    return Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]:.4f}"), TextColumn("{task.fields[tps]:,.0f} tok/s"),
        TimeRemainingColumn(), console=console, transient=False,
    )  # fmt: skip
