"""`make bench-speed`: how fast mupx trains, against bare PyTorch and reference optimizers.

One process, one model (GPT-2 flavour, width 256, depth 4, head_dim 32, fp32 on CPU) and one data
source (the embedded stdlib corpus, batch 8 x seq 128), ``torch.set_num_threads(1)``:

1. Training step: ``Trainer.train_step()`` (scheduler, plan-driven AdamW groups, grad clipping, metrics)
   against a bare loop on a copy of the same ``Transformer``: ``torch.optim.AdamW`` over plain groups
   built once with the same lr/eps/wd, forward, backward, clip, step, zero_grad. Both draw their batches
   from identically seeded samplers inside the timed step, so they train on the same data and end with
   bit-identical parameters (checked). Ratio = bare time / mupx time (goal >= 0.97). A second copy of
   the bare loop runs alongside as a control: its ratio to the first shows the noise floor.
2. Optimizer step: ``optimizer.step()`` alone on fixed gradients (no forward/backward), for every
   optimizer with its default config, against AdamW; state memory = bytes of the tensors in
   ``optimizer.state``. Then mupx's Muon, SOAP and Shampoo against torch.optim.Muon and
   pytorch_optimizer's SOAP / ScalableShampoo (eager) on the same hidden matrices, with settings made
   comparable (listed in the output).
3. Tokens/s and MFU (mupx.mfu) of both loops of part 1, on a GPU only.

Every ratio is paired: after a warm-up, the contenders run in rounds, one timed block each, in an order
that rotates from round to round (A B, B A, ... or A B C, B C A, ...); each round gives one ratio, and
the tables show the median and the interquartile range over rounds. Raw timings (seconds per block) go
to benchmarks/speed.json, the tables to benchmarks/RESULTS.md and the headline to README.md, each between
the bench-speed markers (``--render`` rewrites the headline from speed.json without measuring).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch
from common import bare_loop, command_line, ratios, replace_section, rounds, summary, utc_now
from pytorch_optimizer import SOAP, ScalableShampoo
from pytorch_optimizer.optimizer.utils.graft import LayerWiseGrafting

from mupx.data import BatchSampler
from mupx.io import atomic_write_json
from mupx.mfu import mfu, peak_flops
from mupx.optim import REGISTRY, build_optimizer, param_groups
from mupx.runconfig import load_run_config
from mupx.train import Trainer, plan_for

HERE = Path(__file__).resolve().parent
RESULTS, RAW = HERE / "RESULTS.md", HERE / "speed.json"
README = HERE.parent / "README.md"
# Constant lr without warmup so that mupx's schedule leaves the planned lr as the bare loop has it.
RUN = [
    "model=gpt2", "model.width=256", "model.depth=4", "model.head_dim=32", "data=stdlib", "train.batch=8",
    "train.seq_len=128", "train.schedule=constant", "train.warmup=0", "train.steps=1000000",
    "train.progress=false", "device=auto",
]  # fmt: skip
OPTIMIZERS = ("sgd", "adamw", "adopt", "lamb", "sophia", "shampoo", "soap", "muon", "muonpp")
BLOCK = 10  # optimizer steps per timed block = Shampoo's and SOAP's precondition_every: one refresh each
WARMUP = BLOCK  # past Shampoo's roots at each of its first 10 steps and Muon++'s 10 warm-up steps
TRAIN_BLOCK = 3  # training steps per timed block
REPS = {"full": {"train": 16, "optim": 7}, "quick": {"train": 5, "optim": 3}}


def ms_per_step(times: list[float], steps: int) -> str:
    return f"{1e3 * statistics.median(times) / steps:.1f}"


def state_bytes(obj, seen: set | None = None) -> int:
    """Bytes of the distinct tensors reachable from ``obj`` (dicts, lists, objects' attributes)."""
    seen = set() if seen is None else seen
    if id(obj) in seen:
        return 0
    seen.add(id(obj))
    if isinstance(obj, torch.Tensor):
        return obj.numel() * obj.element_size()
    if isinstance(obj, dict):
        return sum(state_bytes(v, seen) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(state_bytes(v, seen) for v in obj)
    if hasattr(obj, "__dict__"):  # pytorch_optimizer's ScalableShampoo keeps objects in its state
        return sum(state_bytes(v, seen) for v in vars(obj).values())
    return 0


def mib(n: int) -> str:
    return f"{n / 2**20:.1f}"


# --- 1. the training step ---------------------------------------------------------------------------


def training_step(trainer: Trainer, reps: int) -> dict:
    def mupx() -> None:
        for _ in range(TRAIN_BLOCK):
            trainer.train_step()

    (bare, model), (control, control_model) = bare_loop(trainer, TRAIN_BLOCK), bare_loop(trainer, TRAIN_BLOCK)
    contenders = {"mupx": mupx, "bare": bare, "bare_control": control}
    rounds(contenders, 2)  # warm-up
    times = rounds(contenders, reps)
    identical = all(
        torch.equal(p, q) and torch.equal(p, r)
        for p, q, r in zip(
            trainer.model.parameters(), model.parameters(), control_model.parameters(), strict=True
        )
    )
    return {"steps_per_block": TRAIN_BLOCK, "seconds": times, "bit_identical": identical}


# --- 2. the optimizer step --------------------------------------------------------------------------


def with_grads(model: torch.nn.Module, grads: dict[str, torch.Tensor]) -> torch.nn.Module:
    model = copy.deepcopy(model)
    for n, p in model.named_parameters():
        p.grad = grads[n].clone()
    return model


def stepper(optimizer: torch.optim.Optimizer) -> Callable[[], None]:
    def run() -> None:
        for _ in range(BLOCK):
            optimizer.step()

    return run


def warm(optimizer: torch.optim.Optimizer, grads: dict[str, torch.Tensor], names: dict) -> None:
    """WARMUP steps, then check the step left the fixed gradients alone."""
    for _ in range(WARMUP):
        optimizer.step()
    for group in optimizer.param_groups:
        for p in group["params"]:
            assert torch.equal(p.grad, grads[names[id(p)]]), f"{type(optimizer).__name__} changed a gradient"


def optimizer_steps(model: torch.nn.Module, grads: dict, vocab: int, reps: int) -> dict:
    optimizers = {}
    for name in OPTIMIZERS:
        cfg = load_run_config([*RUN, f"optimizer={name}"])
        m = with_grads(model, grads)
        optimizers[name] = build_optimizer(m, plan_for(cfg, vocab), name, cfg.options)
        warm(optimizers[name], grads, {id(p): n for n, p in m.named_parameters()})
    out = {name: {"state_bytes": state_bytes(opt.state), "seconds": []} for name, opt in optimizers.items()}
    others = [name for name in OPTIMIZERS if name != "adamw"]
    for name in others:
        out[name]["seconds_adamw"] = []
    for i in range(reps):  # every block of an optimizer next to a block of AdamW
        for name in others:
            times = rounds(
                {"adamw": stepper(optimizers["adamw"]), name: stepper(optimizers[name])}, 1, first=i
            )
            out[name]["seconds"] += times[name]
            out[name]["seconds_adamw"] += times["adamw"]
            out["adamw"]["seconds"] += times["adamw"]
    return out


def torch_muon(groups: list[dict], o) -> torch.optim.Optimizer:
    return torch.optim.Muon(
        [{"params": g["params"], "lr": g["lr"]} for g in groups], weight_decay=0.0, momentum=o.momentum,
        nesterov=o.nesterov, ns_steps=o.ns_steps, adjust_lr_fn="original",
    )  # fmt: skip


def po_soap(groups: list[dict], o) -> torch.optim.Optimizer:
    return SOAP(
        [{"params": g["params"], "lr": g["lr"], "eps": g["eps"]} for g in groups], betas=o.betas,
        shampoo_beta=o.betas[1] if o.shampoo_beta < 0 else o.shampoo_beta, weight_decay=0.0,
        precondition_frequency=o.precondition_every, max_precondition_dim=o.max_precond_dim,
    )  # fmt: skip


def po_shampoo(groups: list[dict], o) -> torch.optim.Optimizer:
    whole = max(max(p.shape) for g in groups for p in g["params"])
    return ScalableShampoo(
        [{"params": g["params"], "lr": g["lr"]} for g in groups], betas=o.betas, moving_average_for_momentum=True,
        weight_decay=0.0, start_preconditioning_step=1, preconditioning_compute_steps=o.precondition_every,
        statistics_compute_steps=1, block_size=o.block_size or whole,
        no_preconditioning_for_layers_with_dim_gt=o.max_precond_dim, shape_interpretation=False,
        graft_type=LayerWiseGrafting.NONE, nesterov=False, matrix_eps=o.eps,
    )  # fmt: skip


# name: (config overrides that make mupx comparable, reference builder, reference, what is set alike, what differs)
REFERENCES = {
    "muon": (
        ["optimizer.shape_factor=original", "optimizer.ns_dtype=bfloat16", "optimizer.weight_decay=0"],
        torch_muon,
        "torch.optim.Muon",
        "shape factor `original` (torch's `adjust_lr_fn='original'`), Newton–Schulz in bfloat16 (torch's only "
        "dtype), 5 NS steps, momentum 0.95, Nesterov, no weight decay, the plan's lr per group",
        "nothing in the arithmetic (bit-identical updates: tests/test_muon.py); mupx's CPU default is "
        "float32 NS (`ns_dtype=auto`), used in the table above",
    ),
    "soap": (
        ["optimizer.spectral_norm=false"],
        po_soap,
        "pytorch_optimizer.SOAP",
        "betas (0.95, 0.95), Shampoo β 0.95, refresh every 10 steps (power step + QR), whole matrices "
        "(mupx block_size 0, both max precond dim 4096 > every side), no weight decay, the plan's lr and ε "
        "per group, mupx's explicit spectral normalisation off",
        "ε added before (pytorch_optimizer) vs after (mupx) the bias correction; pytorch_optimizer rotates "
        "with one tensordot per side and matrix, mupx with batched matmuls over tiles; the one-off initial "
        "eigh (float32 vs float64) falls in the warm-up",
    ),
    "shampoo": (
        [],
        po_shampoo,
        "pytorch_optimizer.ScalableShampoo",
        "betas (0.9, 0.999) with momentum as an EMA, inverse 4th root per side (mupx exponents 0.25/0.25, "
        "pytorch_optimizer 2·rank = 4), roots every 10 steps, factors every step, whole matrices (block = the largest "
        "side, no shape merging), no grafting, no Nesterov, no weight decay, the plan's lr per group",
        "roots by coupled Schur–Newton iteration in float32 (pytorch_optimizer) vs float64 eigh (mupx); "
        "matrix ε one value (1e-6, the base value) vs mupx's μP-scaled ε per tensor; pytorch_optimizer's "
        "momentum is on the preconditioned gradient and its factors start at ε·I without bias correction",
    ),
}


def references(model: torch.nn.Module, grads: dict, vocab: int, reps: int) -> dict:
    """mupx's hybrid optimizers restricted to their hidden-matrix groups, against the reference on the same
    matrices (each contender on its own copy of the model, with the same fixed gradients)."""
    out = {}
    for name, (overrides, build_ref, *_) in REFERENCES.items():
        cfg = load_run_config([*RUN, f"optimizer={name}", *overrides])
        plan = plan_for(cfg, vocab)
        contenders = []
        for build in (REGISTRY[name].build, build_ref):
            m = with_grads(model, grads)
            hidden = [g for g in param_groups(m, plan) if g["update"] == name]
            opt = build(hidden, cfg.options)
            warm(opt, grads, {id(p): n for n, p in m.named_parameters()})
            contenders.append(opt)
        ours, ref = contenders
        times = rounds({"mupx": stepper(ours), "reference": stepper(ref)}, reps)
        out[name] = {
            "seconds_mupx": times["mupx"],
            "seconds_reference": times["reference"],
            "state_bytes_mupx": state_bytes(ours.state),
            "state_bytes_reference": state_bytes(ref.state),
        }
    return out


# --- the report -------------------------------------------------------------------------------------


def report(meta: dict, train: dict, optim: dict, refs: dict, gpu: list[str]) -> str:
    t = train["seconds"]
    speed, control = ratios(t["bare"], t["mupx"]), ratios(t["bare"], t["bare_control"])
    goal = statistics.median(speed) >= 0.97
    lines = [
        "## Speed (`make bench-speed`)",
        "",
        f"- Date: {meta['date']}; wall time {meta['wall_s'] / 60:.1f} min{' (`--quick`)' if meta['quick'] else ''}",
        f"- Command: `{meta['command']}`",
        f"- Machine: {meta['processor']}, os.cpu_count() = {meta['cpus']}, torch {meta['torch']}, device "
        f"{meta['device']}; torch.set_num_threads(1) (other jobs share the cores: only the paired ratios are "
        "meaningful, absolute times are indicative)",
        f"- Model: GPT-2 flavour, width 256, depth 4, head_dim 32, {meta['params'] / 1e6:.2f} M parameters, "
        f"vocab {meta['vocab']} (stdlib corpus BPE); batch 8 × seq 128 = 1024 tokens per step; "
        f"{meta['dtype']}; μP plan with the default base shape; lr schedule constant, no warmup",
        "- Method: in one process, after a warm-up, the contenders run in rounds, one timed block each, in an "
        "order that rotates every round (A B, B A, ...); each round gives one ratio. Shown: median "
        "(p25–p75) over n rounds. Raw timings: `benchmarks/speed.json`.",
        "",
        "### 1. Training step: mupx vs a bare PyTorch loop",
        "",
        f"Blocks of {TRAIN_BLOCK} steps, n = {len(speed)} rounds. mupx: `trainer.train_step()` (AdamW, "
        "scheduler, plan-driven groups, grad clipping at 1.0, loss and grad-norm metrics). Bare: the same "
        "`Transformer` (a copy), `torch.optim.AdamW` over plain groups built once with the plan's lr/ε/wd, "
        "forward, backward, `clip_grad_norm_`, step, `zero_grad`. Both draw the same batches from identically "
        "seeded samplers inside the timed step. Control: a second, identical bare loop in the same rounds.",
        "",
        "| contender | ms/step (median) | bare time / its time |",
        "|---|---|---|",
        f"| mupx `train_step()` | {ms_per_step(t['mupx'], TRAIN_BLOCK)} | **{summary(speed)}** |",
        f"| bare PyTorch loop | {ms_per_step(t['bare'], TRAIN_BLOCK)} | 1 |",
        f"| bare loop, control copy | {ms_per_step(t['bare_control'], TRAIN_BLOCK)} | {summary(control)} |",
        "",
        f"Goal (mupx ≥ 0.97 of the bare loop's speed): {'met' if goal else '**not met**'}; the control's "
        "spread is the noise floor. Parameters of all three models bit-identical after the benchmark: "
        f"{'yes' if train['bit_identical'] else '**no**'}.",
        "",
        "### 2. Optimizer step and state memory vs AdamW",
        "",
        "`optimizer.step()` alone on fixed gradients (one backward on one batch), each optimizer on its own "
        "copy of the model with its default config (`configs/optimizer/*.yaml`) and μP plan. Blocks of "
        f"{BLOCK} steps (= Shampoo's and SOAP's `precondition_every`, so each block holds one preconditioner "
        f"refresh) after {WARMUP} warm-up steps; each block in a round with an AdamW block, n = "
        f"{len(optim['sgd']['seconds'])} rounds. State = bytes of the tensors in `optimizer.state`. Sophia: "
        "its Gauss–Newton–Bartlett Hessian phase (an extra forward and backward every `hessian_every` = 10 "
        "steps) lives in the trainer and is not in these step times.",
        "",
        "| optimizer | ms/step (median) | step time / AdamW's | state MiB | state / AdamW's |",
        "|---|---|---|---|---|",
    ]
    adamw_bytes = optim["adamw"]["state_bytes"]
    for name in OPTIMIZERS:
        row = optim[name]
        ratio = "1" if name == "adamw" else summary(ratios(row["seconds"], row["seconds_adamw"]))
        lines.append(
            f"| {name} | {ms_per_step(row['seconds'], BLOCK)} | {ratio} | {mib(row['state_bytes'])} | "
            f"{row['state_bytes'] / adamw_bytes:.2f} |"
        )
    lines += [
        "",
        "#### Against reference implementations (hidden matrices only)",
        "",
        "mupx's optimizer restricted to its hidden-matrix groups (the 2-D attention and MLP weights; "
        "embeddings, readout, gains and biases left out) vs the reference on a copy of the same matrices "
        f"with the same fixed gradients, eager; blocks of {BLOCK} steps after {WARMUP} warm-up steps, "
        f"n = {len(next(iter(refs.values()))['seconds_mupx'])} rounds. A time ratio < 1 means mupx is faster.",
        "",
        "| mupx | reference | mupx ms/step | reference ms/step | mupx time / reference's | mupx state MiB "
        "| reference state MiB |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, row in refs.items():
        ours, ref = row["seconds_mupx"], row["seconds_reference"]
        lines.append(
            f"| {name} | {REFERENCES[name][2]} | {ms_per_step(ours, BLOCK)} | {ms_per_step(ref, BLOCK)} | "
            f"{summary(ratios(ours, ref))} | {mib(row['state_bytes_mupx'])} | {mib(row['state_bytes_reference'])} |"
        )
    lines.append("")
    for name, (overrides, _, ref, alike, differs) in REFERENCES.items():
        how = f" (`{' '.join(overrides)}`)" if overrides else " (its default config)"
        lines.append(f"- {name} vs {ref}{how}. Same: {alike}. Still differs: {differs}.")
    lines += ["", "### 3. GPU throughput and MFU", "", *gpu]
    return "\n".join(lines)


def gpu_lines(trainer: Trainer, train: dict) -> list[str]:
    if trainer.device.type != "cuda":
        return ["Skipped: no GPU here (`torch.cuda.is_available()` is False); MFU is defined on a GPU only."]
    cfg = trainer.cfg
    tokens = TRAIN_BLOCK * trainer.tokens_per_step
    flops = trainer.plan.flops_per_token(cfg.train.seq_len)
    peak = peak_flops(trainer.device, cfg.train.peak_tflops)
    lines = ["| loop | tokens/s | MFU |", "|---|---|---|"]
    for label in ("mupx", "bare"):
        tps = tokens / statistics.median(train["seconds"][label])
        value = mfu(tps, flops, peak)
        lines.append(
            f"| {label} | {tps:,.0f} | {'n/a (unknown peak)' if value is None else f'{value:.1%}'} |"
        )
    return lines


def headline(meta: dict, train: dict, refs: dict) -> str:
    """README's speed headline: the paired ratios of parts 1 and 2, with the command and machine."""
    t = train["seconds"]
    speed = statistics.median(ratios(t["bare"], t["mupx"]))
    ref = {
        name: statistics.median(ratios(r["seconds_mupx"], r["seconds_reference"])) for name, r in refs.items()
    }
    names = {
        "muon": "`torch.optim.Muon`'s",
        "soap": "pytorch_optimizer's SOAP's",
        "shampoo": "pytorch_optimizer's ScalableShampoo's",
    }
    versus = ", ".join(
        f"its {n.capitalize() if n != 'soap' else 'SOAP'} step {v:.3f}× {names.get(n, n)}"
        for n, v in ref.items()
    )
    return (
        f"**Speed** (`{meta['command']}`, {meta['date']}, {meta['cpus']} CPUs, {meta['device']}, torch "
        f"{meta['torch']}; paired interleaved rounds, full tables in [benchmarks/RESULTS.md](benchmarks/RESULTS.md)): "
        f"mupx's training step runs at {speed:.3f}× the speed of a bare PyTorch loop of the same model and AdamW "
        f"(goal ≥ 0.97). Time per optimizer step against the reference implementation: {versus}."
    )  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--render",
        action="store_true",
        help="only rewrite README's speed headline from benchmarks/speed.json (measures nothing)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="fewer repetitions: about 4 minutes instead of 7 on 2 busy CPU cores",
    )
    args = parser.parse_args()
    if args.render:
        raw = json.loads(RAW.read_text())
        replace_section(README, "bench-speed", headline(raw["meta"], raw["training_step"], raw["references"]))
        return
    reps = REPS["quick" if args.quick else "full"]
    torch.set_num_threads(1)
    start = time.perf_counter()
    trainer = Trainer.build(load_run_config(RUN))
    initial = copy.deepcopy(trainer.model)
    x, y = BatchSampler(
        trainer.corpus.train, trainer.cfg.train.batch, trainer.cfg.train.seq_len, seed=1
    ).next()
    initial(x.to(trainer.device), y.to(trainer.device)).backward()
    grads = {n: p.grad.detach().clone() for n, p in initial.named_parameters()}
    vocab = trainer.corpus.vocab_size

    print("1/3 training step ...", flush=True)
    train = training_step(trainer, reps["train"])
    print("2/3 optimizer steps ...", flush=True)
    optim = optimizer_steps(initial, grads, vocab, reps["optim"])
    refs = references(initial, grads, vocab, reps["optim"])
    print("3/3 GPU throughput ...", flush=True)
    gpu = gpu_lines(trainer, train)
    device = trainer.device
    meta = {
        "date": utc_now(),
        "command": command_line(),
        "quick": args.quick,
        "processor": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "torch": torch.__version__,
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "threads": torch.get_num_threads(),
        "params": sum(p.numel() for p in initial.parameters()),
        "vocab": vocab,
        "dtype": "bf16 autocast" if device.type == "cuda" else "fp32",
        "overrides": RUN,
        "wall_s": time.perf_counter() - start,
    }
    atomic_write_json(
        RAW, {"meta": meta, "training_step": train, "optimizer_step": optim, "references": refs}
    )
    text = report(meta, train, optim, refs, gpu)
    replace_section(RESULTS, "bench-speed", text, default_head="# Benchmarks\n")
    replace_section(README, "bench-speed", headline(meta, train, refs))
    print(text)


if __name__ == "__main__":
    main()
