"""The typed configuration of one training run, composed by Hydra and validated section by section."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from .config import compose, config_hash, to_dict, typed
from .data import DataConfig
from .errors import MupxError
from .models import ModelConfig
from .optim import parse_options
from .scaling.plan import ParamConfig
from .schedule import Schedule
from .tracking import TrackingConfig


@dataclass(frozen=True)
class TrainConfig:
    steps: int
    batch: int  # global sequences per optimizer step = per-rank micro-batch x world size x accum
    accum: int  # gradient-accumulation micro-batches per step
    seq_len: int
    schedule: Literal["constant", "cosine", "linear", "wsd"]
    warmup: float
    decay: float
    final_lr_frac: float
    grad_clip: float
    eval_every: int
    eval_batches: int
    log_every: int
    diverge_factor: float
    smooth: int
    spectral_every: int
    checkpoint_every: int
    keep_checkpoints: int
    save_final: bool  # checkpoint the last step (train, transfer); sweeps skip it to save disk
    compile: bool
    dtype: Literal["auto", "float32", "bfloat16"]
    progress: bool
    peak_tflops: float | None
    warmup_steps: int | None = None  # the warmup in steps (None: warmup x steps)
    eval_batch: int | None = None  # sequences per validation batch (None: batch); a batch sweep fixes it
    grad_clip_norm: Literal["global", "mup"] = (
        "global"  # the norm grad_clip bounds (mupx.scaling.rules.clip_norm_weight)
    )
    branch_from: str | None = None  # a checkpoint to continue (mupx.train: a branch); not in the run id
    branch_points: tuple[int, ...] = ()  # steps whose checkpoint is kept for a branch; not in the run id

    def __post_init__(self):
        for key in (
            "steps",
            "batch",
            "accum",
            "seq_len",
            "eval_every",
            "eval_batches",
            "log_every",
            "smooth",
        ):
            if getattr(self, key) <= 0:
                raise MupxError(f"train.{key} must be a positive integer, got {getattr(self, key)}")
        if self.batch % self.accum:
            raise MupxError(f"train.batch {self.batch} is not divisible by train.accum {self.accum}")
        for key in ("warmup", "decay", "final_lr_frac"):
            if not 0 <= getattr(self, key) <= 1:
                raise MupxError(f"train.{key} must be in [0, 1], got {getattr(self, key)}")
        if self.grad_clip < 0:
            raise MupxError(f"train.grad_clip must be >= 0 (0 = off), got {self.grad_clip}")
        if self.checkpoint_every < 0:
            raise MupxError(
                f"train.checkpoint_every must be >= 0 (0 = only on SIGTERM/SIGINT), got {self.checkpoint_every}"
            )
        if self.keep_checkpoints < 1:
            raise MupxError(f"train.keep_checkpoints must be >= 1, got {self.keep_checkpoints}")
        if self.spectral_every < 0:
            raise MupxError(f"train.spectral_every must be >= 0 (0 = off), got {self.spectral_every}")
        if self.peak_tflops is not None and not self.peak_tflops > 0:
            raise MupxError(f"train.peak_tflops must be > 0 (or null), got {self.peak_tflops}")
        if self.diverge_factor <= 1:
            raise MupxError(f"train.diverge_factor must be > 1, got {self.diverge_factor}")
        if self.eval_batch is not None and self.eval_batch <= 0:
            raise MupxError(
                f"train.eval_batch must be a positive integer (or null: train.batch), got {self.eval_batch}"
            )
        if self.eval_batch is not None and self.eval_batch % self.accum:
            raise MupxError(
                f"train.eval_batch {self.eval_batch} is not divisible by train.accum {self.accum}"
            )
        if self.warmup_steps is not None:
            wsd = self.schedule == "wsd"
            end = Schedule.of(self).decay_start if wsd else self.steps
            if not 0 <= self.warmup_steps <= end:
                raise MupxError(f"a horizon of {self.steps} steps is shorter than its warmup (train.warmup_steps "
                                f"{self.warmup_steps})" + (f" and decay (from step {end})" if wsd else ""))  # fmt: skip
        for step in self.branch_points:
            if not 0 < step < self.steps:
                raise MupxError(
                    f"train.branch_points {list(self.branch_points)}: each must lie inside the run (0 < step < {self.steps})"
                )


@dataclass(frozen=True)
class RunConfig:
    model: ModelConfig
    param: ParamConfig
    optimizer: str
    options: Any
    data: DataConfig
    train: TrainConfig
    seed: int
    device: str
    resolved: dict  # the composed config as plain data (saved as config.yaml)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)  # not in the run id

    @property
    def run_id(self) -> str:
        """Stable id from everything that changes the result."""
        o = self.resolved["optimizer"]
        return f"{self.optimizer}-{self.param.name}-w{self.model.width}-d{self.model.depth}-lr{o['lr']:.3g}-s{self.seed}-{config_hash(result_keys(self.resolved), 8)}"


def result_keys(resolved: dict) -> dict:
    """A composed config without what may differ between sessions of one run without changing its result
    (the device, tracking, the progress bar, the MFU peak, whether the final weights are kept, how often the
    loss is read from the device): what run ids hash and a resumed run must match."""
    keyed = {k: v for k, v in resolved.items() if k not in ("device", "tracking")}
    unkeyed = ("progress", "peak_tflops", "save_final", "log_every")
    keyed["train"] = {k: v for k, v in keyed["train"].items() if k not in unkeyed}
    for key in BRANCHING:  # a branch trains what an independent run of its horizon trains (mupx.train)
        keyed["train"].pop(key, None)
    if keyed["train"].get("eval_batch") in (
        None,
        keyed["train"].get("batch"),
    ):  # the same windows as unset: the
        keyed["train"].pop("eval_batch", None)  # same result, and the id of a run that predates the key
    if keyed["train"].get("grad_clip_norm") == "global":  # likewise: the id of a run that predates the key
        keyed["train"].pop("grad_clip_norm")
    return keyed


BRANCHING = ("branch_from", "branch_points")


def load_run_config(overrides: list[str]) -> RunConfig:
    """Compose and validate; every problem is a one-line MupxError."""
    return from_resolved(to_dict(compose(overrides)))


def from_resolved(resolved: dict) -> RunConfig:
    """Validate an already composed config (a plain dict, as saved in config.yaml)."""
    if not isinstance(resolved.get("seed"), int) or isinstance(resolved.get("seed"), bool):
        raise MupxError(f"seed must be an integer, got {resolved.get('seed')!r}")
    device = resolved.get("device")
    if not isinstance(device, str) or not (device in ("auto", "cpu", "cuda") or device.startswith("cuda:")):
        raise MupxError(f"unknown device {device!r} (allowed: auto, cpu, cuda, cuda:N)")
    name, options = parse_options(resolved["optimizer"])
    return RunConfig(
        model=typed(ModelConfig, resolved["model"], "model"),
        param=typed(ParamConfig, resolved["param"], "param"),
        optimizer=name,
        options=options,
        data=typed(DataConfig, resolved["data"], "data"),
        train=typed(TrainConfig, resolved["train"], "train"),
        seed=resolved["seed"],
        device=device,
        resolved=resolved,
        tracking=typed(TrackingConfig, resolved.get("tracking", {}), "tracking"),
    )
