"""The ``mupx`` command line. Each command turns its flags into Hydra overrides, composes the config and
calls one function; every user error is one line on stderr with exit code 2."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated

import click
import typer
import typer.exceptions
from rich.console import Console

from .errors import MupxError

app = typer.Typer(
    name="mupx",
    help="μP hyperparameter transfer: rules, coordinate checks, sweeps, transfer and reports.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()

Overrides = Annotated[list[str], typer.Option("--set", "-s", help="Hydra override key=value (repeatable)")]


WandbProject = Annotated[
    str | None, typer.Option("--wandb", help="mirror runs to this wandb project (tracking.wandb.project)")
]
WandbMode = Annotated[
    str | None, typer.Option(help="wandb mode: online (default with --wandb) | offline (no network) | disabled")
]


def wandb_overrides(project: str | None, mode: str | None) -> list[str]:
    """``--wandb PROJECT [--wandb-mode M]`` as tracking overrides (a project alone means online)."""
    out = [f"tracking.wandb.project={project}"] if project else []
    if mode or project:
        out.append(f"tracking.wandb.mode={mode or 'online'}")
    return out


def overrides_from(flags: dict[str, object], extra: list[str] | None) -> list[str]:
    """Turn CLI flags into Hydra overrides (flags first, then the user's ``-s`` overrides)."""
    keys = {
        "model": "model", "optimizer": "optimizer", "param": "param", "data": "data",
        "width": "model.width", "depth": "model.depth", "lr": "optimizer.lr", "steps": "train.steps",
        "batch": "train.batch", "seq_len": "train.seq_len", "seed": "seed", "device": "device",
        "base_width": "param.base_width", "base_depth": "param.base_depth",
    }  # fmt: skip
    out = [f"{keys[k]}={v}" for k, v in flags.items() if v is not None]
    return out + list(extra or [])


@app.command()
def train(
    model: Annotated[str | None, typer.Option(help="model flavour: gpt2 | llama")] = None,
    width: Annotated[int | None, typer.Option(help="d_model")] = None,
    depth: Annotated[int | None, typer.Option(help="number of transformer blocks")] = None,
    optimizer: Annotated[str | None, typer.Option(help="optimizer name (configs/optimizer/)")] = None,
    param: Annotated[str | None, typer.Option(help="parameterization: mup | sp")] = None,
    lr: Annotated[float | None, typer.Option(help="base learning rate")] = None,
    steps: Annotated[int | None, typer.Option(help="optimizer steps")] = None,
    batch: Annotated[int | None, typer.Option(help="sequences per step")] = None,
    seq_len: Annotated[int | None, typer.Option(help="tokens per sequence (= model context)")] = None,
    seed: Annotated[int | None, typer.Option(help="seed for init and data order")] = None,
    device: Annotated[str | None, typer.Option(help="auto | cpu | cuda | cuda:N")] = None,
    data: Annotated[str | None, typer.Option(help="data source: stdlib | local | hub")] = None,
    out: Annotated[Path | None, typer.Option(help="run folder (default runs/train/<run id>)")] = None,
    quiet: Annotated[bool, typer.Option(help="no progress bar")] = False,
    resume: Annotated[
        bool, typer.Option(help="continue the run in --out from its newest checkpoint")
    ] = False,
    nproc: Annotated[
        int, typer.Option(help="ranks to start with torchrun on this machine (DDP: one per GPU, or gloo on CPU)")
    ] = 1,
    wandb: WandbProject = None,
    wandb_mode: WandbMode = None,
    set_: Overrides = None,
):
    """Train one GPT-2 or Llama proxy under SP or μP and write its run folder."""
    from .runconfig import load_run_config
    from .train import run

    flags = dict(model=model, width=width, depth=depth, optimizer=optimizer, param=param, lr=lr, steps=steps,
                 batch=batch, seq_len=seq_len, seed=seed, device=device, data=data)  # fmt: skip
    overrides = overrides_from(flags, wandb_overrides(wandb, wandb_mode) + (set_ or []))
    if quiet:
        overrides.append("train.progress=false")
    cfg = load_run_config(overrides)
    if resume and out is None:
        raise MupxError("--resume needs --out: the run folder to continue")
    out = out or Path("runs") / "train" / cfg.run_id
    if nproc != 1:
        from .distributed import launch_torchrun

        raise typer.Exit(launch_torchrun(nproc, cfg, overrides, out, resume))
    result = run(cfg, out, console=console, resume=resume)
    if int(os.environ.get("RANK", "0")) != 0:
        return
    loss = result["final_train_loss"]
    summary = (
        f"{result['status']}: train loss {loss:.4f}, val loss {result['val_loss']:.4f}"
        if loss is not None
        else f"{result['status']}: {result['reason']}"
    )
    console.print(f"{summary}, {result['tokens_per_s']:,.0f} tok/s -> {out}")
    if result["status"] == "interrupted":
        raise typer.Exit(130)


@app.command()
def rules(
    optimizer: Annotated[str | None, typer.Option(help="optimizer name")] = None,
    param: Annotated[str | None, typer.Option(help="mup | sp")] = None,
    model: Annotated[str | None, typer.Option(help="gpt2 | llama")] = None,
    width: Annotated[int | None, typer.Option(help="target width")] = None,
    depth: Annotated[int | None, typer.Option(help="target depth")] = None,
    base_width: Annotated[int | None, typer.Option(help="base (proxy) width")] = None,
    base_depth: Annotated[int | None, typer.Option(help="base (proxy) depth")] = None,
    vocab: Annotated[int | None, typer.Option(help="vocabulary size (default: data.vocab_size)")] = None,
    json_: Annotated[bool, typer.Option("--json", help="print the plan as JSON")] = False,
    all_layers: Annotated[
        bool, typer.Option("--all", help="one row per tensor (default: identical layers folded)")
    ] = False,
    set_: Overrides = None,
):
    """Show what μP does to every tensor: role, fans, multipliers, init std, lr, wd, ε, forward multiplier."""
    from .runconfig import load_run_config
    from .scaling.plan import build_plan
    from .scaling.table import render_plan

    flags = dict(optimizer=optimizer, param=param, model=model, width=width, depth=depth,
                 base_width=base_width, base_depth=base_depth)  # fmt: skip
    cfg = load_run_config(overrides_from(flags, set_))
    if vocab is not None and vocab <= 0:
        raise MupxError(f"--vocab must be a positive integer, got {vocab}")
    plan = build_plan(
        cfg.model, cfg.param, cfg.optimizer, cfg.options, vocab or cfg.data.vocab_size, cfg.train.seq_len
    )
    if json_:
        print(json.dumps(plan.to_json(), indent=2))
    else:
        render_plan(plan, console, fold=not all_layers)


@app.command("coord-check")
def coord_check(
    optimizer: Annotated[str | None, typer.Option(help="optimizer name")] = None,
    param: Annotated[str | None, typer.Option(help="mup | sp")] = None,
    model: Annotated[str | None, typer.Option(help="gpt2 | llama")] = None,
    widths: Annotated[
        str | None, typer.Option(help="comma-separated widths (default 64,128,256,512)")
    ] = None,
    depths: Annotated[
        str | None, typer.Option(help="depths at a fixed width (128; -s model.width=N)")
    ] = None,
    steps: Annotated[int, typer.Option(help="training steps on one fixed batch")] = 5,
    seeds: Annotated[int, typer.Option(help="seeds per width/depth (sizes are averaged over seeds)")] = 2,
    lr: Annotated[
        float | None, typer.Option(help="optimizer.lr (default: the configured lr keys x --lr-mult)")
    ] = None,
    lr_mult: Annotated[float, typer.Option(help="multiplier on the configured lr and *_lr keys")] = 1.0,
    tolerance: Annotated[
        float, typer.Option(help="largest allowed |slope| of log size vs log width/depth")
    ] = 0.5,
    out: Annotated[
        Path | None, typer.Option(help="output folder (default runs/coord_check/<optimizer>-<param>-<axis>s)")
    ] = None,
    set_: Overrides = None,
):
    """Coordinate check as a gate: fit log activation size (and ρ_ΔW) against log width or depth per module
    and step; exit 0 when every |slope| is within the tolerance, 1 when not."""
    from .diagnostics.coord_check import make_spec, run_coord_check

    flags = dict(optimizer=optimizer, param=param, model=model)
    spec = make_spec(widths, depths, steps=steps, seeds=seeds, tolerance=tolerance, lr=lr, lr_mult=lr_mult,
                     overrides=tuple(overrides_from(flags, set_)))  # fmt: skip
    result = run_coord_check(spec, out, console=console)
    raise typer.Exit(0 if result["verdict"] == "pass" else 1)


@app.command()
def sweep(
    optimizer: Annotated[str, typer.Option(help="optimizer name")] = "adamw",
    model: Annotated[str, typer.Option(help="gpt2 | llama")] = "gpt2",
    widths: Annotated[str, typer.Option(help="comma-separated widths")] = "64,128,256",
    depths: Annotated[str | None, typer.Option(help="comma-separated depths (default: the model's)")] = None,
    lrs: Annotated[
        str,
        typer.Option(
            help="list (1e-3,3e-3), log2 range (2^-12:2^-4:0.5), or auto[:CENTER] (default centre: optimizer.lr)"
        ),
    ] = "auto",
    seeds: Annotated[int, typer.Option(help="seeds per point")] = 1,
    param: Annotated[str, typer.Option(help="mup | sp | both")] = "mup",
    hp: Annotated[
        list[str] | None,
        typer.Option(help="extra axis key=v1,v2 (repeatable), e.g. optimizer.weight_decay=0,0.1"),
    ] = None,
    steps: Annotated[int | None, typer.Option(help="steps per run (default: train.steps)")] = None,
    base_width: Annotated[
        int | None, typer.Option(help="μP base width (default: the smallest width)")
    ] = None,
    base_depth: Annotated[
        int | None, typer.Option(help="μP base depth (default: the smallest depth)")
    ] = None,
    name: Annotated[
        str | None, typer.Option(help="sweep name (default from optimizer, param and widths)")
    ] = None,
    root: Annotated[Path, typer.Option(help="folder holding sweeps")] = Path("runs"),
    jobs: Annotated[
        int | None, typer.Option(help="concurrent runs (default: one per GPU x runs-per-gpu, or 2 on CPU)")
    ] = None,
    executor: Annotated[str, typer.Option(help="local | slurm")] = "local",
    runs_per_gpu: Annotated[int, typer.Option(help="small runs sharing one GPU")] = 1,
    gpus_per_run: Annotated[int, typer.Option(help="GPUs per run (>1 starts torchrun)")] = 1,
    tolerance: Annotated[
        float, typer.Option(help="drift (octaves over the swept range) that still counts as transfer")
    ] = 0.5,
    partition: Annotated[str | None, typer.Option(help="slurm: partition")] = None,
    time_min: Annotated[int, typer.Option(help="slurm: time limit per run, minutes")] = 60,
    array_parallelism: Annotated[int, typer.Option(help="slurm: at most this many array tasks at once")] = 64,
    dry_run: Annotated[bool, typer.Option(help="slurm: print the sbatch script and submit nothing")] = False,
    wandb: WandbProject = None,
    wandb_mode: WandbMode = None,
    set_: Overrides = None,
):
    """LR sweeps of proxies over widths/depths (x seeds x SP/μP), run in parallel, fitted into sweep.json."""
    from .sweep.command import run_sweep_command

    run_sweep_command(
        dict(optimizer=optimizer, model=model, widths=widths, depths=depths, lrs=lrs, seeds=seeds, param=param,
             hp=hp or [], steps=steps, base_width=base_width, base_depth=base_depth, name=name, root=root,
             jobs=jobs, executor=executor, runs_per_gpu=runs_per_gpu, gpus_per_run=gpus_per_run,
             tolerance=tolerance, partition=partition, time_min=time_min,
             array_parallelism=array_parallelism, dry_run=dry_run,
             overrides=wandb_overrides(wandb, wandb_mode) + (set_ or [])),
        console,
    )  # fmt: skip


@app.command()
def transfer(
    from_: Annotated[Path, typer.Option("--from", help="the sweep's sweep.json (or its folder)")],
    width: Annotated[int, typer.Option(help="target width")],
    depth: Annotated[int | None, typer.Option(help="target depth (default: the sweep's largest)")] = None,
    steps: Annotated[int | None, typer.Option(help="steps (default: the sweep's)")] = None,
    param: Annotated[str, typer.Option(help="parameterization to transfer: mup | sp")] = "mup",
    baseline: Annotated[
        str | None, typer.Option(help="also run the same base lr under this param (sp)")
    ] = None,
    verify: Annotated[
        int, typer.Option(help="K extra lrs around the transferred one, to measure regret")
    ] = 0,
    jobs: Annotated[int | None, typer.Option(help="concurrent runs")] = None,
):
    """Run the target with the sweep's transferred hyperparameters; writes transfer.json."""
    from .sweep.command import make_executor
    from .transfer import run_transfer

    if param not in ("mup", "sp"):
        raise MupxError(f"unknown param {param!r} (allowed: mup, sp)")
    executor = make_executor(
        dict(executor="local", dry_run=False, jobs=jobs, runs_per_gpu=1, gpus_per_run=1), from_
    )
    doc = run_transfer(from_, width, depth, steps, param, baseline, verify, executor)
    p = doc["predicted"]
    console.print(
        f"transferred base lr {p['lr']:.4g} ({param}; drift-extrapolated {p['extrapolated_lr']:.4g}) -> width {width}, depth {doc['target']['depth']}"
    )
    for r in doc["runs"]:
        loss = f"{r['loss']:.4f}" if r["loss"] is not None else r["status"]
        console.print(f"  {r['role']:>10} {r['param']} lr {r['lr']:.4g}: {loss}")
    if doc["regret"]:
        console.print(
            f"regret {doc['regret']['value']:+.4f} (best lr at target {doc['regret']['best_lr']:.4g})"
        )
    if doc["baseline"] and doc["baseline"]["gain"] is not None:
        console.print(
            f"{param} vs {doc['baseline']['param']} at the same base lr: {doc['baseline']['gain']:+.4f} loss"
        )


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
        str | None, typer.Option(help="name of the reference run (default: the adamw one, else the first)")
    ] = None,
    out: Annotated[Path | None, typer.Option(help="output folder (default runs/compare-<names>)")] = None,
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


data_app = typer.Typer(help="Corpora: tokenize into the token cache ahead of training.", no_args_is_help=True)
app.add_typer(data_app, name="data")


@data_app.command("prepare")
def data_prepare(
    data: Annotated[
        str | None,
        typer.Option(
            help="corpus (configs/data/): stdlib | local | hub | fineweb | fineweb_edu | openwebtext | tinystories"
        ),
    ] = None,
    chunk_docs: Annotated[
        int | None, typer.Option(help="documents per resumable chunk (default 10000)")
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
    except (click.exceptions.Exit, typer.Exit) as e:
        sys.exit(e.exit_code)
    except (click.exceptions.ClickException, typer.exceptions.TyperException) as e:
        # Typer >= 0.29 vendors its own click, whose exceptions derive from TyperException.
        message = e.format_message() if hasattr(e, "format_message") else str(e)
        print(f"mupx: error: {' '.join(message.split())}", file=sys.stderr)
        sys.exit(2)
    except (click.exceptions.Abort, typer.Abort, KeyboardInterrupt):
        print("mupx: interrupted", file=sys.stderr)
        sys.exit(130)
    if isinstance(code, int) and code:
        sys.exit(code)


if __name__ == "__main__":
    main()
