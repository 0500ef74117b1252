"""The flags that several ``mupx`` commands share, each defined once as an ``Annotated`` alias, and the
code that turns them into Hydra overrides.

Flags that set a config key default to ``None`` (the key keeps its configured value); their ``--help``
shows that value, read from the default config files (``configs/config.yaml`` and the groups it selects),
and the group flags list the names in ``configs/<group>/`` (and complete them in a shell).
"""

from __future__ import annotations

import functools
import os
import sys
from pathlib import Path
from typing import Annotated

import typer
import yaml

from .config import choices, config_dir, config_file_overrides, with_config
from .errors import choose


@functools.cache
def config_defaults() -> dict:
    """The default config as plain data, from the YAML files (composing through Hydra would cost ~0.3 s
    on every start, help or not)."""
    root = config_dir()
    top = yaml.safe_load((root / "config.yaml").read_text())
    tree = {k: v for k, v in top.items() if k != "defaults"}
    for entry in top["defaults"]:
        if isinstance(entry, dict):
            ((group, name),) = entry.items()
            tree[group] = {
                "<name>": name,
                **(yaml.safe_load((root / group / f"{name}.yaml").read_text()) or {}),
            }
    return tree


def configured(key: str) -> str:
    """'config: <value>' of a dotted key of the default config, as --help shows it."""
    node = config_defaults()
    for part in key.split("."):
        node = node[part]
    return f"config: {node['<name>'] if isinstance(node, dict) else node}"


def complete(group: str):
    def names(incomplete: str) -> list[str]:
        return [c for c in choices(group) if c.startswith(incomplete)]

    return names


def group_option(group: str, what: str) -> typer.models.OptionInfo:
    """A flag selecting a config group: its names listed in --help, completed in a shell."""
    return typer.Option(
        help=f"{what}: {' | '.join(choices(group))}", metavar="NAME", autocompletion=complete(group),
        show_default=configured(group),
    )  # fmt: skip


def key_option(key: str, what: str) -> typer.models.OptionInfo:
    return typer.Option(help=f"{what} ({key})", show_default=configured(key))


# --- the run's config --------------------------------------------------------------------------------------
Model = Annotated[str | None, group_option("model", "model flavour")]
Optimizer = Annotated[str | None, group_option("optimizer", "optimizer")]
Param = Annotated[str | None, group_option("param", "parameterization")]
Data = Annotated[str | None, group_option("data", "corpus (configs/data/; `mupx data prepare` tokenizes it)")]
Width = Annotated[int | None, key_option("model.width", "d_model")]
Depth = Annotated[int | None, key_option("model.depth", "number of transformer blocks")]
Lr = Annotated[
    float | None,
    typer.Option(
        help="base learning rate (optimizer.lr)", show_default="config: the optimizer's, e.g. adamw 0.003"
    ),
]
Steps = Annotated[int | None, key_option("train.steps", "optimizer steps per run")]
Tokens = Annotated[
    str | None,
    typer.Option(help="the target's horizon in tokens (1e9, 6.5M, 400k): steps = tokens / (--batch x seq_len)",
                 show_default=False),
]  # fmt: skip
Batch = Annotated[int | None, key_option("train.batch", "sequences per optimizer step (global)")]
SeqLen = Annotated[int | None, key_option("train.seq_len", "tokens per sequence (= model context)")]
Seed = Annotated[int | None, key_option("seed", "seed for init and data order")]
Device = Annotated[
    str | None,
    typer.Option(
        help="auto | cpu | cuda | cuda:N (device); sweep/transfer: cpu keeps every run off the GPUs",
        show_default=configured("device"),
    ),
]
BaseWidth = Annotated[
    int | None, key_option("param.base_width", "μP base width: multipliers are ratios to it")
]
BaseDepth = Annotated[int | None, key_option("param.base_depth", "μP base depth")]

Overrides = Annotated[
    list[str] | None,
    typer.Option("--set", "-s", help="Hydra override key=value (repeatable)", show_default=False),
]
Positional = Annotated[
    list[str] | None,
    typer.Argument(help="Hydra-style key=value overrides, as -s (e.g. train.steps=100)", show_default=False,
                   metavar="KEY=VALUE"),
]  # fmt: skip
ConfigFile = Annotated[
    Path | None,
    typer.Option(
        "--config",
        help="a YAML config merged on top of the defaults (a team's experiment file, or a run's saved "
        "config.yaml to replay it); flags, -s and KEY=VALUE win",
        show_default=False,
    ),
]
Cfg = Annotated[
    str | None,
    typer.Option("--cfg", help="job: print the composed config and exit (as Hydra's --cfg job)", metavar="job",
                 show_default=False),
]  # fmt: skip
WandbProject = Annotated[
    str | None,
    typer.Option(
        "--wandb", help="mirror runs to this wandb project (tracking.wandb.project)", show_default=False
    ),
]
WandbMode = Annotated[
    str | None,
    typer.Option(
        help="wandb mode: online (default with --wandb) | offline (no network) | disabled", show_default=False
    ),
]

# --- the sweep's horizons and batches, and how transfer moves the lr along them ------------------------------
StepsList = Annotated[
    str | None,
    typer.Option("--steps", help="horizons: comma-separated optimizer steps per run (e.g. 100,200,400; several train "
                 "warmup-stable-decay, the shorter branched off the longest)", show_default=configured("train.steps")),
]  # fmt: skip
TokensList = Annotated[
    str | None,
    typer.Option("--tokens", help="horizons in tokens instead of steps (e.g. 1M,2M,4M: steps = tokens / (batch x "
                 "seq_len), so batches compare at equal tokens)", show_default=False),
]  # fmt: skip
Batches = Annotated[
    str | None,
    typer.Option(help="comma-separated global batches (sequences per step; several need --tokens)",
                 show_default=configured("train.batch")),
]  # fmt: skip


def rule_option(what: str, rules: str) -> typer.models.OptionInfo:
    """A transfer flag naming the rule that moves the lr to the target's horizon or batch."""
    return typer.Option(help=f"how the lr moves to the target's {what}: {rules}",
                        show_default=f"measured when the sweep varied the {what}, else none")  # fmt: skip


HorizonRule = Annotated[
    str | None,
    rule_option(
        "horizon",
        "measured (the sweep's exponent) | none | power:E (lr ∝ tokens^E; -0.32: Bjorck et al. 2409.19913)",
    ),
]
BatchRule = Annotated[
    str | None, rule_option("batch", "measured | none | sqrt (lr ∝ √B, Malladi et al. 2205.10287) | power:E")
]
AdamRules = Annotated[
    str | None,
    typer.Option(help="Adam-family settings moved with the batch (Marek et al. 2507.07101): beta2 (β2^(B'/B)), eps "
                 "(ε·√(B/B')), or both: beta2,eps", show_default="off"),
]  # fmt: skip
CompareUncorrected = Annotated[
    bool,
    typer.Option(help="also run the lr the proxies would have handed over uncorrected, to show its regret"),
]

# --- where runs execute (sweep and transfer) ------------------------------------------------------------------
EXECUTORS = ("local", "slurm")
Executor = Annotated[str, typer.Option(help=f"where runs execute: {' | '.join(EXECUTORS)}")]
Jobs = Annotated[
    int | None,
    typer.Option(
        help="concurrent local runs (on CPU each gets cores/jobs threads)",
        show_default=f"one per visible GPU x --runs-per-gpu; without a GPU the CPU core count ({os.cpu_count()} here)",
    ),
]
RunsPerGpu = Annotated[int, typer.Option(help="small runs sharing one GPU (local)")]
GpusPerRun = Annotated[
    int, typer.Option(help="GPUs per run: > 1 starts torchrun (local and slurm); slurm 0 = CPU-only jobs")
]
Partition = Annotated[
    str | None, typer.Option(help="slurm: partition", show_default="the cluster's default partition")
]
TimeMin = Annotated[int, typer.Option(help="slurm: time limit per run, minutes")]
ArrayParallelism = Annotated[int, typer.Option(help="slurm: at most this many array tasks at once")]
DryRun = Annotated[bool, typer.Option(help="slurm: print the sbatch script and submit nothing")]


def wandb_overrides(project: str | None, mode: str | None) -> list[str]:
    """``--wandb PROJECT [--wandb-mode M]`` as tracking overrides (a project alone means online)."""
    out = [f"tracking.wandb.project={project}"] if project else []
    if mode or project:
        out.append(f"tracking.wandb.mode={mode or 'online'}")
    return out


FLAG_KEYS = {
    "model": "model", "optimizer": "optimizer", "param": "param", "data": "data", "width": "model.width",
    "depth": "model.depth", "lr": "optimizer.lr", "steps": "train.steps", "batch": "train.batch",
    "seq_len": "train.seq_len", "seed": "seed", "device": "device", "base_width": "param.base_width",
    "base_depth": "param.base_depth",
}  # fmt: skip


def overrides_from(
    flags: dict[str, object], set_: list[str] | None = None, positional: list[str] | None = None,
    wandb: tuple[str | None, str | None] = (None, None),
) -> list[str]:  # fmt: skip
    """The user's overrides in the order they apply: flags, --wandb, -s, KEY=VALUE (later ones win)."""
    out = [f"{FLAG_KEYS[k]}={v}" for k, v in flags.items() if v is not None]
    return out + wandb_overrides(*wandb) + list(set_ or []) + list(positional or [])


def user_overrides(config: Path | None, *args, **kwargs) -> list[str]:
    """``--config`` (under everything else), then :func:`overrides_from`."""
    file = config_file_overrides(config) if config is not None else []
    return with_config(file, overrides_from(*args, **kwargs))


def wants_config(cfg: str | None) -> bool:
    """Whether ``--cfg job`` asked to print the composed config instead of running."""
    if cfg is not None and cfg != "job":
        raise choose("--cfg", cfg, ["job"])
    return cfg == "job"


def print_config(resolved: dict, note: str = "") -> None:
    """The composed config as YAML on stdout (a run's config.yaml; replayable with --config)."""
    from omegaconf import OmegaConf

    sys.stdout.write((f"# {note}\n" if note else "") + OmegaConf.to_yaml(OmegaConf.create(resolved)))
    sys.stdout.flush()
