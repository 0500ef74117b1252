"""The ``mupx`` command line. Each command turns its flags into Hydra overrides, composes the config and
calls one function; every user error is one line on stderr with exit code 2. The flags several commands
share are defined once in :mod:`mupx.cli_options`."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated

import typer
import typer.exceptions
from rich.console import Console

from .cli_options import (
    AdamRules,
    ArrayParallelism,
    BaseDepth,
    BaseWidth,
    Batch,
    Batches,
    BatchRule,
    Cfg,
    CompareUncorrected,
    ConfigFile,
    Data,
    Depth,
    Device,
    DryRun,
    Executor,
    GpusPerRun,
    HorizonRule,
    Jobs,
    Lr,
    Model,
    Optimizer,
    Overrides,
    Param,
    Partition,
    Positional,
    RunsPerGpu,
    Seed,
    SeqLen,
    Steps,
    StepsList,
    TimeMin,
    Tokens,
    TokensList,
    WandbMode,
    WandbProject,
    Width,
    overrides_from,
    print_config,
    user_overrides,
    wants_config,
)  # fmt: skip
from .errors import MupxError

app = typer.Typer(
    name="mupx",
    help="μP hyperparameter transfer: rules, coordinate checks, sweeps, transfer and reports.",
    add_completion=True,
    pretty_exceptions_enable=False,
)
console = Console()


def _version(value: bool) -> None:
    if value:
        from . import __version__

        print(f"mupx {__version__}")
        raise typer.Exit(0)


@app.callback(invoke_without_command=True)
def _root(
    ctx: typer.Context,
    version: Annotated[
        bool, typer.Option("--version", help="print the version and exit", callback=_version, is_eager=True)
    ] = False,
):
    """μP hyperparameter transfer: rules, coordinate checks, sweeps, transfer and reports."""
    _help_without_command(ctx)


def _help_without_command(ctx: typer.Context) -> None:
    """``mupx`` (or ``mupx data``) alone prints its help and exits 0."""
    if ctx.invoked_subcommand is None:
        print(ctx.get_help())
        raise typer.Exit(0)


@app.command()
def train(
    model: Model = None,
    width: Width = None,
    depth: Depth = None,
    optimizer: Optimizer = None,
    param: Param = None,
    lr: Lr = None,
    steps: Steps = None,
    batch: Batch = None,
    seq_len: SeqLen = None,
    seed: Seed = None,
    device: Device = None,
    data: Data = None,
    base_width: BaseWidth = None,
    base_depth: BaseDepth = None,
    from_sweep: Annotated[
        Path | None,
        typer.Option(
            "--from-sweep",
            help="a sweep's sweep.json (or folder): train with its optimizer, model, base shape, recommended "
            "base lr and hp (instead of --lr, --base-width, --base-depth)",
            show_default=False,
        ),
    ] = None,
    branch_from: Annotated[
        Path | None,
        typer.Option(
            help="start from another run's checkpoint (train.branch_from): a run that differs from it only in "
            "train.steps and whose schedule agrees with its up to the checkpoint's step (a shorter wsd horizon, "
            "warmup in train.warmup_steps) continues it bit-identically to training from scratch",
            show_default=False,
        ),
    ] = None,
    out: Annotated[Path | None, typer.Option(help="run folder", show_default="runs/train/<run id>")] = None,
    quiet: Annotated[bool, typer.Option(help="no progress bar")] = False,
    resume: Annotated[
        bool,
        typer.Option(
            help="continue the run in --out from its newest checkpoint, with its saved config.yaml (flags given "
            "must match it)"
        ),
    ] = False,
    nproc: Annotated[
        int,
        typer.Option(help="ranks to start with torchrun on this machine (DDP: one per GPU, or gloo on CPU)"),
    ] = 1,
    wandb: WandbProject = None,
    wandb_mode: WandbMode = None,
    config: ConfigFile = None,
    cfg: Cfg = None,
    set_: Overrides = None,
    overrides: Positional = None,
):
    """Train one GPT-2 or Llama proxy under SP or μP and write its run folder."""
    from .config import config_file_overrides, override_value, tree_overrides, with_config
    from .runconfig import load_run_config
    from .train import load_saved, run

    flags = dict(model=model, width=width, depth=depth, optimizer=optimizer, param=param, lr=lr, steps=steps,
                 batch=batch, seq_len=seq_len, seed=seed, device=device, data=data, base_width=base_width,
                 base_depth=base_depth)  # fmt: skip
    later = overrides_from(flags, set_, overrides, (wandb, wandb_mode))
    if branch_from is not None:
        later.append(f"train.branch_from={override_value(str(branch_from))}")
    if from_sweep is not None:
        from .transfer import sweep_train_overrides

        later = sweep_train_overrides(from_sweep, flags, later, console) + later
    if resume:
        if out is None:
            raise MupxError("--resume needs --out: the run folder to continue")
        if config is not None:
            raise MupxError(
                "--resume continues with the run's saved config.yaml; --config is not read with it"
            )
        file = tree_overrides(load_saved(out))
    else:
        file = config_file_overrides(config) if config is not None else []
    composed = with_config(file, later) + (["train.progress=false"] if quiet else [])
    run_cfg = load_run_config(composed)
    if wants_config(cfg):
        return print_config(run_cfg.resolved)
    out = out or Path("runs") / "train" / run_cfg.run_id
    if nproc != 1:
        from .distributed import launch_torchrun

        raise typer.Exit(launch_torchrun(nproc, run_cfg, composed, out, resume))
    result = run(run_cfg, out, console=console, resume=resume)
    if int(os.environ.get("RANK", "0")) != 0:
        return
    loss = result["final_train_loss"]
    summary = (
        f"{result['status']}: train loss {loss:.4f}, val loss {result['val_loss']:.4f}"
        if loss is not None
        else f"{result['status']}: {result['reason']}"
    )
    console.print(f"{summary}, {result['tokens_per_s']:,.0f} tok/s -> {out}", highlight=False, soft_wrap=True)
    if result["status"] == "interrupted":
        raise typer.Exit(130)


@app.command()
def rules(
    optimizer: Optimizer = None,
    param: Param = None,
    model: Model = None,
    width: Annotated[
        int | None, typer.Option(help="target width (model.width)", show_default="config: 128")
    ] = None,
    depth: Depth = None,
    base_width: BaseWidth = None,
    base_depth: BaseDepth = None,
    vocab: Annotated[int | None, typer.Option(help="vocabulary size", show_default="data.vocab_size")] = None,
    json_: Annotated[bool, typer.Option("--json", help="print the plan as JSON")] = False,
    table: Annotated[
        bool,
        typer.Option(
            "--table", help="the table even when stdout is not a terminal (there: TSV, as plan.tsv)"
        ),
    ] = False,
    all_layers: Annotated[
        bool, typer.Option("--all", help="one row per tensor (default: identical layers folded)")
    ] = False,
    config: ConfigFile = None,
    cfg: Cfg = None,
    set_: Overrides = None,
    overrides: Positional = None,
):
    """Show what μP does to every tensor: role, fans, multipliers, init std, lr, wd, ε, forward multiplier.

    A table on a terminal, TSV (as plan.tsv) in a pipe, JSON with --json."""
    from .runconfig import load_run_config
    from .scaling.plan import build_plan
    from .scaling.table import render_plan

    flags = dict(optimizer=optimizer, param=param, model=model, width=width, depth=depth,
                 base_width=base_width, base_depth=base_depth)  # fmt: skip
    run_cfg = load_run_config(user_overrides(config, flags, set_, overrides))
    if wants_config(cfg):
        return print_config(run_cfg.resolved)
    if vocab is not None and vocab <= 0:
        raise MupxError(f"--vocab must be a positive integer, got {vocab}")
    plan = build_plan(
        run_cfg.model, run_cfg.param, run_cfg.optimizer, run_cfg.options, vocab or run_cfg.data.vocab_size,
        run_cfg.train.seq_len,
    )  # fmt: skip
    if json_:
        print(json.dumps(plan.to_json(), indent=2))
    elif table or sys.stdout.isatty():
        render_plan(plan, console, fold=not all_layers)
    else:
        sys.stdout.write(plan.to_tsv())


@app.command("coord-check")
def coord_check(
    optimizer: Optimizer = None,
    param: Param = None,
    model: Model = None,
    widths: Annotated[
        str | None,
        typer.Option(
            help="comma-separated widths: at least 3, spanning at least 8x (a narrower range turns seed noise "
            "into slopes: a warning)",
            show_default="64,128,256,512",
        ),
    ] = None,
    depths: Annotated[
        str | None,
        typer.Option(
            help="comma-separated depths at a fixed width (128; -s model.width=N): at least 3",
            show_default=False,
        ),
    ] = None,
    steps: Annotated[int, typer.Option(help="training steps on one fixed batch")] = 5,
    seeds: Annotated[int, typer.Option(help="seeds per width/depth (sizes are averaged over seeds)")] = 2,
    lr: Annotated[
        float | None,
        typer.Option(help="optimizer.lr", show_default="the configured lr keys x --lr-mult"),
    ] = None,
    lr_mult: Annotated[float, typer.Option(help="multiplier on the configured lr and *_lr keys")] = 1.0,
    tolerance: Annotated[
        float, typer.Option(help="largest allowed |slope| of log size vs log width/depth")
    ] = 0.5,
    out: Annotated[
        Path | None,
        typer.Option(
            help="output folder (must be new or empty)",
            show_default="runs/coord_check/<optimizer>-<param>-<axis>s",
        ),
    ] = None,
    config: ConfigFile = None,
    cfg: Cfg = None,
    set_: Overrides = None,
    overrides: Positional = None,
):
    """Coordinate check as a gate: exit 0 when every slope of log size vs log width (depth) is flat, 1 when not.

    Fits log activation size (and ρ_ΔW) against log width or depth per module and step. It trains its own
    small proxy (head_dim 16, vocab 512, short sequences; it prints what differs from your config): set -s
    keys to check other shapes."""
    from .diagnostics.coord_check import compose_points, make_spec, run_coord_check

    flags = dict(optimizer=optimizer, param=param, model=model)
    spec = make_spec(widths, depths, steps=steps, seeds=seeds, tolerance=tolerance, lr=lr, lr_mult=lr_mult,
                     overrides=tuple(user_overrides(config, flags, set_, overrides)))  # fmt: skip
    if wants_config(cfg):
        configs, _ = compose_points(spec)
        note = f"the first of {len(configs)} points ({spec.axis} {spec.values[0]}); the others differ in model.{spec.axis}"
        return print_config(configs[0].resolved, note)
    result = run_coord_check(spec, out, console=console)
    raise typer.Exit(0 if result["verdict"] == "pass" else 1)


@app.command()
def sweep(
    optimizer: Optimizer = None,
    model: Model = None,
    widths: Annotated[str, typer.Option(help="comma-separated widths")] = "64,128,256",
    depths: Annotated[
        str | None, typer.Option(help="comma-separated depths", show_default="the model's depth")
    ] = None,
    lrs: Annotated[
        str,
        typer.Option(
            help="list (1e-3,3e-3), log2 range (2^-12:2^-4:0.5), or auto[:CENTER] (centre: optimizer.lr)"
        ),
    ] = "auto",
    seeds: Annotated[int, typer.Option(help="seeds per point")] = 1,
    param: Annotated[str, typer.Option(help="mup | sp | both")] = "mup",
    hp: Annotated[
        list[str] | None,
        typer.Option(
            help="extra axis key=v1,v2 (repeatable), e.g. optimizer.weight_decay=0,0.1", show_default=False
        ),
    ] = None,
    steps: StepsList = None,
    tokens: TokensList = None,
    batches: Batches = None,
    base_width: Annotated[
        int | None, typer.Option(help="μP base width", show_default="the smallest width")
    ] = None,
    base_depth: Annotated[
        int | None, typer.Option(help="μP base depth", show_default="the smallest depth")
    ] = None,
    data: Data = None,
    batch: Batch = None,
    seq_len: SeqLen = None,
    device: Device = None,
    out: Annotated[
        Path | None,
        typer.Option(help="the sweep's folder (= --root its parent --name its name)", show_default=False),
    ] = None,
    name: Annotated[
        str | None, typer.Option(help="sweep name", show_default="<optimizer>-<param>-w<widths>")
    ] = None,
    root: Annotated[Path | None, typer.Option(help="folder holding sweeps", show_default="runs")] = None,
    tolerance: Annotated[
        float, typer.Option(help="drift (octaves over the swept range) that still counts as transfer")
    ] = 0.5,
    jobs: Jobs = None,
    executor: Executor = "local",
    runs_per_gpu: RunsPerGpu = 1,
    gpus_per_run: GpusPerRun = 1,
    partition: Partition = None,
    time_min: TimeMin = 60,
    array_parallelism: ArrayParallelism = 64,
    dry_run: DryRun = False,
    wandb: WandbProject = None,
    wandb_mode: WandbMode = None,
    config: ConfigFile = None,
    cfg: Cfg = None,
    set_: Overrides = None,
    overrides: Positional = None,
):
    """LR sweeps of proxies over widths/depths/horizons/batches (x seeds x SP/μP), run in parallel, fitted into sweep.json.

    Several horizons train warmup-stable-decay and branch the shorter ones off the longest run. Its runs
    keep no final weights (-s train.save_final=true keeps them)."""
    from .sweep.command import print_first_run, run_sweep_command, sweep_folder, sweep_overrides

    root, name = sweep_folder(out, root, name)
    later = overrides_from(
        dict(data=data, batch=batch, seq_len=seq_len), set_, overrides, (wandb, wandb_mode)
    )
    optimizer, model, run_overrides = sweep_overrides(
        config, optimizer, model, later, ("train.batch",) if batches else ()
    )
    o = dict(optimizer=optimizer, model=model, widths=widths, depths=depths, lrs=lrs, seeds=seeds, param=param,
             hp=hp or [], steps=steps, tokens=tokens, batches=batches, base_width=base_width, base_depth=base_depth, name=name, root=root,
             jobs=jobs, executor=executor, runs_per_gpu=runs_per_gpu, gpus_per_run=gpus_per_run, device=device,
             tolerance=tolerance, partition=partition, time_min=time_min,
             array_parallelism=array_parallelism, dry_run=dry_run, overrides=run_overrides)  # fmt: skip
    if wants_config(cfg):
        return print_first_run(o)
    doc = run_sweep_command(o, console)
    return doc


@app.command()
def transfer(
    from_: Annotated[
        Path, typer.Option("--from", help="the sweep's sweep.json (or its folder)", show_default=False)
    ],
    width: Annotated[int, typer.Option(help="target width", show_default=False)],
    depth: Annotated[
        int | None, typer.Option(help="target depth", show_default="the sweep's largest")
    ] = None,
    steps: Annotated[
        int | None, typer.Option(help="the target's steps", show_default="the sweep's longest horizon")
    ] = None,
    tokens: Tokens = None,
    batch: Annotated[
        int | None,
        typer.Option(help="the target's global batch (train.batch)", show_default="the sweep's largest"),
    ] = None,
    horizon_rule: HorizonRule = None,
    batch_rule: BatchRule = None,
    adam_rules: AdamRules = None,
    compare_uncorrected: CompareUncorrected = False,
    param: Annotated[str, typer.Option(help="parameterization to transfer: mup | sp")] = "mup",
    baseline: Annotated[
        str | None, typer.Option(help="also run the same base lr under this param (sp)", show_default=False)
    ] = None,
    verify: Annotated[
        int, typer.Option(help="K extra lrs around the transferred one, to measure regret")
    ] = 0,
    seeds: Annotated[
        int, typer.Option(help="seeds per run (roles compare by their seed-mean loss: a steadier regret)")
    ] = 1,
    force: Annotated[
        bool,
        typer.Option(help="transfer even when the sweep's verdict is not 'transfers' (drifts, inconclusive)"),
    ] = False,
    data: Data = None,
    seq_len: SeqLen = None,
    device: Device = None,
    jobs: Jobs = None,
    executor: Executor = "local",
    runs_per_gpu: RunsPerGpu = 1,
    gpus_per_run: GpusPerRun = 1,
    partition: Partition = None,
    time_min: TimeMin = 60,
    array_parallelism: ArrayParallelism = 64,
    dry_run: DryRun = False,
    wandb: WandbProject = None,
    wandb_mode: WandbMode = None,
    config: ConfigFile = None,
    cfg: Cfg = None,
    set_: Overrides = None,
    overrides: Positional = None,
):
    """Run the target with the sweep's transferred hyperparameters; writes transfer.json.

    The lr moves to the target's width and depth by μP, and to its horizon and batch by the rules (each axis
    it extrapolates along is printed, with how far). The runs use the sweep's settings, with the flags, -s
    and --config on top, and keep their final weights. A sweep whose verdict is not 'transfers' is refused
    unless --force."""
    from .transfer import run_transfer_command

    if param not in ("mup", "sp"):
        raise MupxError(f"unknown param {param!r} (allowed: mup, sp)")
    later = overrides_from(dict(data=data, seq_len=seq_len), set_, overrides, (wandb, wandb_mode))
    o = dict(sweep=from_, width=width, depth=depth, steps=steps, tokens=tokens, batch=batch, horizon_rule=horizon_rule,
             batch_rule=batch_rule, adam_rules=adam_rules, compare_uncorrected=compare_uncorrected, param=param,
             baseline=baseline, verify=verify, seeds=seeds,
             force=force, config=config, overrides=later, print_config=wants_config(cfg), executor=executor,
             jobs=jobs, runs_per_gpu=runs_per_gpu, gpus_per_run=gpus_per_run, device=device, partition=partition,
             time_min=time_min, array_parallelism=array_parallelism, dry_run=dry_run)  # fmt: skip
    run_transfer_command(o, console)


@app.command()
def report(
    sweep: Annotated[Path, typer.Argument(help="the sweep folder (runs/<name>) or its sweep.json")],
    wandb: WandbProject = None,
    wandb_mode: WandbMode = None,
):
    """Plots, report.md and a self-contained report.html of a sweep (and its transfers) in <sweep>/report/."""
    from .report import write_report

    path = write_report(sweep)
    if wandb or wandb_mode:
        from .tracking import upload_report

        upload_report(path.parent, wandb, wandb_mode or "online")
    console.print(f"report: {path}", highlight=False, soft_wrap=True)


@app.command()
def compare(
    transfers: Annotated[
        list[Path], typer.Argument(help="transfer.json files, transfer-*/ folders or sweep folders with one")
    ],
    reference: Annotated[
        str | None,
        typer.Option(help="name of the reference run", show_default="the adamw one, else the first"),
    ] = None,
    out: Annotated[
        Path | None, typer.Option(help="output folder", show_default="runs/compare-<names>")
    ] = None,
    smooth: Annotated[float, typer.Option(help="EMA time constant as a fraction of the token budget")] = 0.05,
    force: Annotated[
        bool, typer.Option(help="compare even if width, depth, token budget or data differ")
    ] = False,
):
    """Optimizers against each other at matched compute: token (and wall-time) speedup over a reference."""
    from rich.table import Table

    from .compare import format_speedup, run_compare

    doc = run_compare(transfers, reference, out, force, smooth)
    table = Table(title=f"speedup over {doc['reference']} (tokens to reach the same smoothed loss)")
    columns = ("run", "param", "lr", "final loss", "ms/step", "step time ratio", "speedup (tokens)", "speedup (time)")  # fmt: skip
    for col in columns:
        table.add_column(col, justify="left" if col in ("run", "param") else "right")
    for r in doc["runs"]:
        ms = f"{r['seconds_per_step'] * 1e3:.3g}" if r["seconds_per_step"] else "-"
        ratio = f"{r['step_time_ratio']:.2f}" if r["step_time_ratio"] else "-"
        time_ = f"{r['speedup_time']:.2f}×" if r["speedup_time"] else "-"
        table.add_row(r["name"], r["param"], f"{r['lr']:.3g}", f"{r['final_loss']:.4f}", ms, ratio,
                      format_speedup(r), time_)  # fmt: skip
    console.print(table)
    console.print(f"compare: {doc['out']}/compare.json, compare.png", highlight=False, soft_wrap=True)


data_app = typer.Typer(help="Corpora: tokenize into the token cache ahead of training.")
app.add_typer(data_app, name="data")


@data_app.callback(invoke_without_command=True)
def _data(ctx: typer.Context):
    """Corpora: tokenize into the token cache ahead of training."""
    _help_without_command(ctx)


@data_app.command("prepare")
def data_prepare(
    data: Data = None,
    chunk_docs: Annotated[
        int | None, typer.Option(help="documents per resumable chunk", show_default="10000")
    ] = None,
    quiet: Annotated[bool, typer.Option(help="no progress bar")] = False,
    set_: Overrides = None,
):
    """Tokenize a corpus once into the token cache that training reads; a killed prepare resumes when rerun."""
    from .data.prepare import prepare
    from .runconfig import load_run_config

    if chunk_docs is not None and chunk_docs < 1:
        raise MupxError(f"--chunk-docs must be a positive number of documents, got {chunk_docs}")
    cfg = load_run_config(overrides_from(dict(data=data), set_))
    corpus, built = prepare(cfg.data, console, chunk_docs, show_progress=not quiet)
    m = corpus.manifest
    console.print(
        f"{'prepared' if built else 'already prepared'}: {m['n_docs_train'] + m['n_docs_val']:,} documents, "
        f"{len(corpus.train):,} train / {len(corpus.val):,} val tokens, vocab {corpus.vocab_size} "
        f"-> {m['cache_path']}",
        highlight=False,
        soft_wrap=True,
    )


def main(argv: list[str] | None = None) -> None:
    """Console entry point: one-line errors with exit code 2 for bad input, never a traceback."""
    try:
        code = app(args=argv, standalone_mode=False)
    except MupxError as e:
        print(f"mupx: error: {e}", file=sys.stderr)
        sys.exit(e.exit_code)
    except typer.Exit as e:
        sys.exit(e.exit_code)
    except (typer.Abort, KeyboardInterrupt):
        print("mupx: interrupted", file=sys.stderr)
        sys.exit(130)
    except typer.exceptions.TyperException as e:  # typer's click errors: a bad flag, a missing option
        message = e.format_message() if hasattr(e, "format_message") else str(e)
        print(f"mupx: error: {' '.join(message.split())}", file=sys.stderr)
        sys.exit(2)
    if isinstance(code, int) and code:
        sys.exit(code)


if __name__ == "__main__":
    main()
