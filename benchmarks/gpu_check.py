"""`make gpu-check`: mupx on a real GPU in one call of at most 8 minutes: the GPU tests, the training step's
speed against a bare PyTorch loop, and the main job (a sweep packed several runs per GPU, then a transfer).

Parts, in this order, each in processes of its own with a share of the time budget (``--budget``); a part
that runs out of its time is stopped and marked ``cut``, keeping what it finished, so the JSON and the table
are always written before the budget ends:

0. data: ``mupx data prepare``, the corpus tokenized once for the speed and sweep parts.
1. tests: ``pytest -m gpu tests/test_gpu.py`` (bf16 autocast against fp32, the μP attention scale inside the
   flash kernel, compile against eager, every optimizer's step on CUDA with its planned groups, a checkpoint
   written on the GPU resuming bit-identically there).
2. speed: tokens/s and MFU of mupx's ``Trainer`` against a bare PyTorch loop of the same model and optimizer in
   the same process (common.bare_loop: no host sync), in paired interleaved rounds (common.rounds, as in
   bench_speed), for a small proxy (width 256, depth 4, seq 256: launch-bound) and a GPT-2-small-sized one
   (width 768, depth 12, seq 1024), AdamW and Muon, eager and compiled, bf16. mupx runs twice per round:
   reading the loss and grad norm at every step (``Trainer.train_step``) and once per block (``queue_step``
   then ``read_values``, as the run loop does every ``train.log_every`` steps): the default reads in batches,
   and the per-step/batched column says whether that is the faster on a GPU (on a CPU they are even).
3. sweep, through the CLI as a user types it: ``mupx sweep`` (AdamW, μP and SP, widths 128→1024 at depth 4,
   4 runs packed per GPU), then ``mupx transfer`` to width 2048 with the SP baseline and a 2-point verify, then
   the same 8 small runs swept twice, packed 4 per GPU and one at a time, for the packed throughput.

Every number comes from this run. Writes gpu_check.json (everything), speed.json, tests.xml and a log per
part into ``--out`` ($OUT when set) and prints a short table last. ``--smoke``: tiny sizes on the CPU,
everything but what needs a GPU (the GPU tests skip, nothing is compiled, no MFU, no packing), about 40 s
of CPU time, most of it 8 processes importing torch; tests/test_gpu_check.py runs it, so the script cannot
rot between GPU runs.

On the GPU machine (python3 3.12 with a CUDA torch, no package registry), from the repository root, with
``.whl/`` carried from here (``make gpu-wheels``): ``make gpu-check``, which installs the wheels and mupx
(``pip --no-index``) and then runs this script.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from dataclasses import replace
from pathlib import Path

import torch
from bench_transfer import summarise
from common import bare_loop, command_line, machine, ratios, replace_section, rounds, summary, utc_now

from mupx.io import atomic_write_json
from mupx.mfu import PEAK_BF16_TFLOPS, mfu, peak_flops
from mupx.runconfig import load_run_config
from mupx.sweep.grid import parse_lrs
from mupx.train import Trainer, plan_for, read_values

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "RESULTS.md"
DEFAULT_BUDGET = {"gpu": 440.0, "smoke": 120.0}  # seconds; on the GPU machine the call's limit is 480 s
RESERVE = 10.0  # seconds kept after the last part for the JSON and the table
SHARES = {"data": 0.1, "tests": 0.22, "speed": 0.4, "sweep": 1.0}  # of the budget left when a part starts
SWEEP_SHARES = {"sweep": 0.55, "transfer": 0.65, "pack": 1.0}  # of the sweep part's time left at each step
ASSUMED_MFU = 0.25  # for the plan's time estimates only (small models on an H200: 20-40%)

SIZES = {
    "gpu": {
        "data": ["data.vocab_size=4096"],
        "proxies": {
            "small": {"width": 256, "depth": 4, "batch": 32, "seq_len": 256, "block": 20},
            "gpt2-small": {"width": 768, "depth": 12, "batch": 16, "seq_len": 1024, "block": 5},
        },
        "head_dim": 64, "optimizers": ["adamw", "muon"], "compile": [False, True], "reps": 5,
        "allowance": {False: 15.0, True: 60.0},  # seconds a speed config may need (compiling: more)
        "sweep": {"widths": [128, 256, 512, 1024], "depth": 4, "batch": 32, "seq_len": 256, "steps": 200,
                  "lrs": "2^-11:2^-5:1", "runs_per_gpu": 4, "target": 2048, "verify": 2},
        "pack": {"widths": [128, 256], "lrs": "2^-9:2^-6:1"},
    },
    "smoke": {
        "data": ["data.vocab_size=512", "data.max_documents=100"],
        "proxies": {"small": {"width": 32, "depth": 1, "batch": 2, "seq_len": 16, "block": 2}},
        "head_dim": 16, "optimizers": ["adamw", "muon"], "compile": [False], "reps": 2,
        "allowance": {False: 5.0},
        "sweep": {"widths": [32, 64], "depth": 1, "batch": 2, "seq_len": 16, "steps": 3,
                  "lrs": "2^-7", "runs_per_gpu": 1, "target": 128, "verify": 1},  # the fewest runs: ~10 s each
        "pack": None,  # packing shares one GPU between runs: nothing to measure on a CPU
    },
}  # fmt: skip


# --- running the parts ------------------------------------------------------------------------------


def call(cmd: list[str], log: Path, timeout: float, env: dict) -> dict:
    """Run ``cmd`` in a process group of its own with its output appended to ``log``; when ``timeout`` runs out
    the group (the sweep's workers too) gets SIGTERM, then SIGKILL 5 s later, and the call is ``cut``."""
    start = time.monotonic()
    print(f"$ {shlex.join(cmd)}", flush=True)
    with log.open("a") as f:
        f.write(f"\n$ {shlex.join(cmd)}\n")
        f.flush()
        proc = subprocess.Popen(
            cmd, stdout=f, stderr=subprocess.STDOUT, env=env, start_new_session=True, cwd=ROOT
        )
        try:
            proc.wait(timeout=max(timeout, 1.0))
            cut = False
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            cut = True
    seconds = time.monotonic() - start
    print(f"  -> {'cut after' if cut else f'exit {proc.returncode} in'} {seconds:.0f} s", flush=True)
    return {"command": shlex.join(cmd), "exit_code": proc.returncode, "seconds": seconds, "cut": cut}


def mupx_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "mupx.cli", *args]


def status_of(calls: list[dict]) -> str:
    if any(c["cut"] for c in calls):
        return "cut"
    return "ok" if all(c["exit_code"] == 0 for c in calls) else "failed"


def data_part(size: dict, log: Path, timeout: float, env: dict) -> dict:
    c = call(
        mupx_cmd("data", "prepare", "--data", "stdlib", "--quiet", *sets(size["data"])), log, timeout, env
    )
    return {"status": status_of([c]), "seconds": c["seconds"], "calls": [c]}


def tests_part(out: Path, timeout: float, env: dict) -> dict:
    xml = out / "tests.xml"
    xml.unlink(missing_ok=True)
    cmd = [sys.executable, "-m", "pytest", "-m", "gpu", "tests/test_gpu.py", "-q", "-rA", "-p", "no:cacheprovider",
           f"--junitxml={xml}"]  # fmt: skip
    c = call(cmd, out / "tests.log", timeout, env)
    tests = []
    for case in ET.parse(xml).iter("testcase") if xml.exists() else []:
        node = next((n for n in case if n.tag in ("failure", "error", "skipped")), None)
        message = "" if node is None else (node.get("message") or "").strip().split("\n")[0][:300]
        tests.append({"name": case.get("name"), "outcome": "passed" if node is None else node.tag,
                      "seconds": float(case.get("time", 0)), "message": message})  # fmt: skip
    counts = {k: sum(t["outcome"] == k for t in tests) for k in ("passed", "failure", "error", "skipped")}
    if c["cut"]:
        status = "cut"
    elif tests and counts["skipped"] == len(tests):
        status = "skipped"  # no CUDA here (--smoke)
    else:
        status = "ok" if c["exit_code"] == 0 and tests else "failed"
    return {"status": status, "seconds": c["seconds"], "counts": counts, "tests": tests, "calls": [c]}


# --- 2. speed (its own process: python gpu_check.py --speed-part JSON) ----------------------------------


def speed_overrides(size: dict, proxy: str, optimizer: str, compiled: bool) -> list[str]:
    p = size["proxies"][proxy]
    return [
        "model=gpt2", f"model.width={p['width']}", f"model.depth={p['depth']}", f"model.head_dim={size['head_dim']}",
        "data=stdlib", *size["data"], f"train.batch={p['batch']}", f"train.seq_len={p['seq_len']}",
        "train.schedule=constant", "train.warmup=0", "train.steps=1000000", "train.progress=false",
        f"train.compile={str(compiled).lower()}", f"optimizer={optimizer}",
    ]  # fmt: skip


def measure(overrides: list[str], block: int, reps: int) -> dict:
    """mupx reading at every step, mupx reading once per block and the bare loop, in paired rounds of one
    block each after two warm-up rounds (where compiling happens)."""
    trainer = Trainer.build(load_run_config(overrides))
    bare, _ = bare_loop(trainer, block)

    def per_step() -> None:
        for _ in range(block):
            trainer.train_step()

    def batched() -> None:
        read_values([v for _ in range(block) for v in trainer.queue_step()[:2]])

    contenders = {"per_step": per_step, "batched": batched, "bare": bare}
    start = time.perf_counter()
    rounds(contenders, 2)
    warmup = time.perf_counter() - start
    times = rounds(contenders, reps)
    cfg = trainer.cfg
    tokens = block * trainer.tokens_per_step
    flops = trainer.plan.flops_per_token(cfg.train.seq_len)
    peak = peak_flops(trainer.device, cfg.train.peak_tflops)
    tps = {k: tokens / statistics.median(v) for k, v in times.items()}
    return {
        "status": "ok",
        "overrides": overrides,
        "params": sum(p.numel() for p in trainer.model.parameters()),
        "steps_per_block": block,
        "tokens_per_step": trainer.tokens_per_step,
        "flops_per_token": flops,
        "warmup_s": warmup,
        "seconds": times,
        "tokens_per_s": tps,
        "mfu": {k: mfu(v, flops, peak) for k, v in tps.items()},
        # bare time / mupx time per round (goal >= 0.97), and per-step reads' time / batched reads' time
        "bare_over_per_step": summary(ratios(times["bare"], times["per_step"])),
        "bare_over_batched": summary(ratios(times["bare"], times["batched"])),
        "per_step_over_batched": summary(ratios(times["per_step"], times["batched"])),
        "median": {
            "bare_over_per_step": statistics.median(ratios(times["bare"], times["per_step"])),
            "bare_over_batched": statistics.median(ratios(times["bare"], times["batched"])),
            "per_step_over_batched": statistics.median(ratios(times["per_step"], times["batched"])),
        },
    }


def speed_part(path: Path, smoke: bool, deadline: float) -> None:
    """Measure every speed config into ``path``, rewritten after each (a part stopped at its deadline keeps
    what it measured); a config that no longer fits in the time left is recorded as cut, one that raises as
    failed."""
    size = SIZES["smoke" if smoke else "gpu"]
    device = "cuda" if torch.cuda.is_available() else "cpu"
    doc = {"device": torch.cuda.get_device_name(0) if device == "cuda" else "cpu", "configs": []}
    for compiled in size["compile"]:
        for proxy in size["proxies"]:
            for optimizer in size["optimizers"]:
                name = f"{proxy} {'compiled' if compiled else 'eager'} {optimizer}"
                entry = {"name": name, "proxy": proxy, "optimizer": optimizer, "compile": compiled}
                left, need = deadline - time.time(), size["allowance"][compiled]
                print(f"speed: {name} ({left:.0f} s left)", flush=True)
                if left < need:
                    entry.update(status="cut", reason=f"{left:.0f} s left, a config needs ~{need:.0f} s")
                else:
                    try:
                        entry.update(measure(speed_overrides(size, proxy, optimizer, compiled),
                                             size["proxies"][proxy]["block"], size["reps"]))  # fmt: skip
                    except Exception as e:  # an OOM or a compile error ends this config, not the part
                        entry.update(
                            status="failed",
                            reason=f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}",
                        )
                doc["configs"].append(entry)
                atomic_write_json(path, doc)
                gc.collect()
                if device == "cuda":
                    torch.cuda.empty_cache()


def speed_summary(out: Path, calls: list[dict], size: dict) -> dict:
    path = out / "speed.json"
    doc = json.loads(path.read_text()) if path.exists() else {"configs": []}
    done = {c["name"] for c in doc["configs"]}
    planned = [f"{p} {'compiled' if c else 'eager'} {o}" for c in size["compile"] for p in size["proxies"]
               for o in size["optimizers"]]  # fmt: skip
    configs = doc["configs"] + [
        {"name": n, "status": "cut", "reason": "the part was stopped"} for n in planned if n not in done
    ]
    statuses = {c["status"] for c in configs}
    status = (
        "cut"
        if "cut" in statuses
        else ("ok" if statuses == {"ok"} and calls[0]["exit_code"] == 0 else "failed")
    )
    return {"status": status, "seconds": calls[0]["seconds"], "device": doc.get("device"), "configs": configs,
            "calls": calls}  # fmt: skip


# --- 3. the main job --------------------------------------------------------------------------------


def sets(overrides: list[str]) -> list[str]:
    return [a for o in overrides for a in ("-s", o)]


def sweep_args(size: dict, widths: list[int], lrs: str, param: str, packed: int, folder: Path) -> list[str]:
    s = size["sweep"]
    return [
        "sweep", "--optimizer", "adamw", "--param", param, "--widths", ",".join(map(str, widths)),
        "--depths", str(s["depth"]), "--lrs", lrs, "--steps", str(s["steps"]), "--batch", str(s["batch"]),
        "--seq-len", str(s["seq_len"]), "--runs-per-gpu", str(packed), "--jobs", str(packed), "--out", str(folder),
        *sets([f"model.head_dim={size['head_dim']}", f"train.eval_every={s['steps']}", "train.eval_batches=4",
               *size["data"]]),
    ]  # fmt: skip


def run_rows(folder: Path, runs: list[dict]) -> list[dict]:
    """Each run's outcome and time (sweep.json) with its MFU (its result.json)."""
    rows = []
    for r in runs:
        path = folder / "runs" / r["run_id"] / "result.json"
        result = json.loads(path.read_text()) if path.exists() else {}
        rows.append({k: r.get(k) for k in ("run_id", "param", "width", "depth", "lr", "status", "loss", "steps", "tokens",
                                            "wall_time_s", "tokens_per_s")} | {"mfu": result.get("mfu")})  # fmt: skip
    return rows


def throughput(folder: Path, call_: dict) -> dict:
    """Tokens trained by a sweep's completed runs over the sweep command's wall time."""
    doc = (
        json.loads((folder / "sweep.json").read_text()) if (folder / "sweep.json").exists() else {"runs": []}
    )
    done = [r for r in doc["runs"] if r["status"] == "completed"]
    tokens = sum(r["tokens"] or 0 for r in done)
    return {"runs": len(doc["runs"]), "completed": len(done), "tokens": tokens, "seconds": call_["seconds"],
            "tokens_per_s": tokens / call_["seconds"], "run_seconds": sum(r["wall_time_s"] or 0 for r in done)}  # fmt: skip


def sweep_part(size: dict, work: Path, log: Path, deadline: float, env: dict) -> dict:
    s, calls, out = size["sweep"], [], {}
    folder = work / "sweep"
    for old in (folder, *(work / f"pack-{n}" for n in (s["runs_per_gpu"], 1))):
        shutil.rmtree(old, ignore_errors=True)  # every run of this check is timed, none resumed

    def left(step: str) -> float:
        return SWEEP_SHARES[step] * (deadline - time.time())

    c = call(
        mupx_cmd(*sweep_args(size, s["widths"], s["lrs"], "both", s["runs_per_gpu"], folder)),
        log,
        left("sweep"),
        env,
    )
    calls.append(c)
    if (folder / "sweep.json").exists():
        doc = json.loads((folder / "sweep.json").read_text())
        out["sweep"] = {"seconds": c["seconds"], "cut": c["cut"], "fit": summarise(doc, "width"),
                        "runs": run_rows(folder, doc["runs"])}  # fmt: skip
        target = ["transfer", "--from", str(folder / "sweep.json"), "--width", str(s["target"]), "--verify",
                  str(s["verify"]), "--baseline", "sp", "--force", "--runs-per-gpu", str(s["runs_per_gpu"]),
                  "--jobs", str(s["runs_per_gpu"])]  # fmt: skip
        c = call(mupx_cmd(*target), log, left("transfer"), env)
        calls.append(c)
        path = folder / f"transfer-w{s['target']}-d{s['depth']}" / "transfer.json"
        if path.exists():
            t = json.loads(path.read_text())
            out["transfer"] = {
                "seconds": c["seconds"], "cut": c["cut"], "width": s["target"], "lr": t["predicted"]["lr"],
                "verdict": t["predicted"]["verdict"], "forced": t["forced"], "loss": t["loss"], "status": t["status"],
                "regret": t["regret"], "baseline": t["baseline"],
                "runs": [{k: r.get(k) for k in ("role", "param", "lr", "status", "loss", "wall_time_s", "tokens_per_s")}
                         for r in t["runs"]],
            }  # fmt: skip
    if size["pack"] is None:
        out["pack"] = {"status": "skipped", "reason": "--smoke: packing shares a GPU between runs"}
    else:
        pack = {}
        for packed in (s["runs_per_gpu"], 1):  # the one-at-a-time sweep, the slower, gets all the time left
            sub = work / f"pack-{packed}"
            args = sweep_args(size, size["pack"]["widths"], size["pack"]["lrs"], "mup", packed, sub)
            c = call(mupx_cmd(*args), log, left("pack") if packed == 1 else left("pack") / 2, env)
            calls.append(c)
            pack[packed] = throughput(sub, c)
        whole = not any(c["cut"] for c in calls[-2:]) and pack[1]["tokens_per_s"]
        out["pack"] = {
            "status": "cut" if any(c["cut"] for c in calls[-2:]) else "ok",
            "runs_per_gpu": s["runs_per_gpu"],
            "packed": pack[s["runs_per_gpu"]],
            "one_at_a_time": pack[1],
            "throughput_ratio": pack[s["runs_per_gpu"]]["tokens_per_s"] / pack[1]["tokens_per_s"]
            if whole
            else None,
        }
    return {"status": status_of(calls), "seconds": sum(c["seconds"] for c in calls), **out, "calls": calls}


# --- the plan and the table -------------------------------------------------------------------------


def estimate(size: dict) -> dict:
    """FLOPs of the speed configs' timed and warm-up blocks and of the sweep, transfer and packing runs (mupx's
    6N + 12LTd per token), and the seconds they take at ASSUMED_MFU of an H200's dense bf16 peak."""
    vocab = int(next(o for o in size["data"] if o.startswith("data.vocab_size=")).split("=")[1])
    peak = dict(PEAK_BF16_TFLOPS)["H200"] * 1e12

    base = load_run_config(["model=gpt2", f"model.head_dim={size['head_dim']}"])

    def per_token(width: int, depth: int, seq_len: int) -> float:
        model, train = replace(base.model, width=width, depth=depth), replace(base.train, seq_len=seq_len)
        return plan_for(replace(base, model=model, train=train), vocab).flops_per_token(seq_len)

    speed = 0.0
    for p in size["proxies"].values():
        blocks = (2 + size["reps"]) * 3 * len(size["optimizers"]) * len(size["compile"])
        speed += (
            blocks * p["block"] * p["batch"] * p["seq_len"] * per_token(p["width"], p["depth"], p["seq_len"])
        )
    s = size["sweep"]
    tokens = s["steps"] * s["batch"] * s["seq_len"]
    n_lrs = len(parse_lrs(s["lrs"]))
    shapes = [
        (w, 1 if w == s["widths"][0] else 2) for w in s["widths"]
    ]  # μP = SP at the base width: run once
    sweep = sum(n * n_lrs * tokens * per_token(w, s["depth"], s["seq_len"]) for w, n in shapes)
    transfer = (2 + s["verify"]) * tokens * per_token(s["target"], s["depth"], s["seq_len"])
    pack_runs = (
        [(w, lr) for w in size["pack"]["widths"] for lr in parse_lrs(size["pack"]["lrs"])]
        if size["pack"]
        else []
    )
    pack = 2 * sum(tokens * per_token(w, s["depth"], s["seq_len"]) for w, _ in pack_runs)  # packed and not
    flops = {"speed": speed, "sweep": sweep, "transfer": transfer, "pack": pack}
    return {
        "assumed_mfu": ASSUMED_MFU,
        "peak_tflops": peak / 1e12,
        "runs": {
            "sweep": sum(n for _, n in shapes) * n_lrs,
            "transfer": 2 + s["verify"],
            "pack": 2 * len(pack_runs),
        },
        "flops": flops,
        "seconds_at_assumed_mfu": {k: v / (ASSUMED_MFU * peak) for k, v in flops.items()},
    }


def fmt(value, spec: str = ".3g", none: str = "-") -> str:
    return none if value is None else format(value, spec)


def table(doc: dict) -> str:
    m, parts = doc["meta"], doc["parts"]
    lines = [f"== mupx gpu-check: {m['machine']}; {m['date']}; {m['seconds']:.0f} s of a {m['budget_s']:.0f} s budget"
             f"{' (--smoke)' if m['smoke'] else ''} ==", "part      status    seconds"]  # fmt: skip
    for name, p in parts.items():
        lines.append(f"{name:<9} {p['status']:<9} {p.get('seconds', 0):>7.0f}")
    tests = parts.get("tests")
    if tests:
        c = tests.get("counts", {})
        bad = [
            f"{t['name']} ({t['outcome']}: {t['message']})"
            for t in tests.get("tests", [])
            if t["outcome"] in ("failure", "error")
        ]
        lines.append(f"tests: {c.get('passed', 0)} passed, {c.get('failure', 0)} failed, {c.get('error', 0)} errors, "
                     f"{c.get('skipped', 0)} skipped" + "".join(f"\n  {b}" for b in bad))  # fmt: skip
    speed = parts.get("speed")
    if speed:
        lines += ["speed (median of paired rounds; goal bare/mupx >= 0.97; default: reads every train.log_every steps)",
                  f"  {'config':<27} {'mupx tok/s':>11} {'MFU':>6} {'bare/mupx':>9} {'bare/per-step':>13} {'per-step/batched':>16}"]  # fmt: skip
        for c in speed["configs"]:
            if c["status"] != "ok":
                lines.append(f"  {c['name']:<27} {c['status']}: {c.get('reason', '')}")
                continue
            md = c["median"]
            lines.append(f"  {c['name']:<27} {c['tokens_per_s']['batched']:>11,.0f} {fmt(c['mfu']['batched'], '.1%'):>6} "
                         f"{md['bare_over_batched']:>9.3f} {md['bare_over_per_step']:>13.3f} {md['per_step_over_batched']:>16.3f}")  # fmt: skip
    sweep = parts.get("sweep")
    if sweep and "sweep" in sweep:
        fit = sweep["sweep"]["fit"]
        for param in ("mup", "sp"):
            f = fit.get(param)
            if f:
                r = f["regret"]
                lines.append(f"sweep {param}: lr* {', '.join(fmt(x) for x in f['lr_star'])} over widths {f['values']}; drift "
                             f"{fmt(f['octaves'], '+.2f')} oct -> {f['verdict']}; regret at {f['values'][-1]} "
                             f"{fmt(r['regret'], '.4f', r['note'] or '-')}")  # fmt: skip
        # μP and SP share their base-width runs: each is listed under both
        runs = {r["run_id"]: r for r in sweep["sweep"]["runs"]}.values()
        lines.append(f"sweep: {len(runs)} runs ({sum(r['status'] == 'diverged' for r in runs)} diverged) in "
                     f"{sweep['sweep']['seconds']:.0f} s"
                     f"{' (cut)' if sweep['sweep']['cut'] else ''}")  # fmt: skip
    if sweep and "transfer" in sweep:
        t = sweep["transfer"]
        b = t["baseline"] or {}
        lines.append(f"transfer w{t['width']}: lr {fmt(t['lr'])}{' (forced)' if t['forced'] else ''}, loss {fmt(t['loss'], '.4f')}, "
                     f"regret {fmt((t['regret'] or {}).get('value'), '+.4f')}, sp baseline {fmt(b.get('loss'), '.4f')} "
                     f"in {t['seconds']:.0f} s{' (cut)' if t['cut'] else ''}")  # fmt: skip
    if sweep and sweep.get("pack", {}).get("status") == "skipped":
        lines.append(f"packing: skipped ({sweep['pack']['reason']})")
    elif sweep and "pack" in sweep:
        p = sweep["pack"]
        lines.append(f"packing: {p['packed']['completed']} runs, {p['runs_per_gpu']} per GPU {p['packed']['seconds']:.0f} s, "
                     f"one at a time {p['one_at_a_time']['seconds']:.0f} s: throughput x{fmt(p['throughput_ratio'], '.2f')}")  # fmt: skip
    return "\n".join(lines)


def section(doc: dict) -> str:
    """benchmarks/RESULTS.md's gpu-check section: where and how the check ran, and its table."""
    m = doc["meta"]
    return "\n".join([
        "## GPU check (`make gpu-check`)",
        "",
        f"- Date: {m['date']}; {m['seconds']:.0f} s of a {m['budget_s']:.0f} s budget",
        f"- Command: `{m['command']}`",
        f"- Machine: {m['machine']}",
        "- Parts, sizes and method: benchmarks/gpu_check.py; everything it measured: its gpu_check.json.",
        "",
        "```",
        doc["table"],
        "```",
    ])  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes on the CPU, < 1 minute")
    parser.add_argument(
        "--out", type=Path, default=None, help="results folder (default: $OUT, else runs/gpu-check)"
    )
    parser.add_argument(
        "--work", type=Path, default=None, help="run folders and token cache (default: runs/gpu-check-work)"
    )
    parser.add_argument(
        "--budget", type=float, default=None, help="seconds for the whole check (default: 440; smoke 120)"
    )
    parser.add_argument("--parts", default="data,tests,speed,sweep", help="comma-separated parts to run")
    parser.add_argument("--speed-part", type=Path, default=None, metavar="JSON",
                        help="(run by the check itself) measure the speed part into JSON until --deadline")  # fmt: skip
    parser.add_argument("--deadline", type=float, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--render", type=Path, default=None, metavar="JSON",
                        help="only write RESULTS.md's gpu-check section from a gpu_check.json fetched from a GPU machine")  # fmt: skip
    args = parser.parse_args()
    if args.render:
        replace_section(
            RESULTS, "gpu-check", section(json.loads(args.render.read_text())), default_head="# Benchmarks\n"
        )
        return
    if args.speed_part:
        speed_part(args.speed_part, args.smoke, args.deadline)
        return
    kind = "smoke" if args.smoke else "gpu"
    size = SIZES[kind]
    budget = args.budget or DEFAULT_BUDGET[kind]
    start = time.time()
    deadline = start + budget - RESERVE
    out = args.out or Path(
        os.environ.get("OUT") or ROOT / "runs" / f"gpu-check{'-smoke' if args.smoke else ''}"
    )
    work = args.work or ROOT / "runs" / f"gpu-check{'-smoke' if args.smoke else ''}-work"
    out.mkdir(parents=True, exist_ok=True)
    work.mkdir(parents=True, exist_ok=True)
    cache = os.environ.get("MUPX_CACHE_DIR") or str(work / "cache")  # one token cache for every part
    env = {**os.environ, "MUPX_CACHE_DIR": cache, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
           "PYTHONUNBUFFERED": "1"}  # fmt: skip
    if args.smoke:  # the CPU even where there is a GPU; one thread per process (more only thrash on tiny ops)
        env.update(CUDA_VISIBLE_DEVICES="", OMP_NUM_THREADS="1")
    parts = [p for p in args.parts.split(",") if p]
    unknown = set(parts) - set(SHARES)
    if unknown:
        parser.error(f"--parts: unknown {sorted(unknown)} (allowed: {', '.join(SHARES)})")
    doc = {
        "meta": {"date": utc_now(), "command": command_line(), "machine": machine(), "torch": torch.__version__,
                 "smoke": args.smoke, "budget_s": budget, "seconds": 0.0, "sizes": size, "work": str(work)},
        "plan": estimate(size),
        "parts": {},
    }  # fmt: skip
    print(f"plan (at {ASSUMED_MFU:.0%} MFU of an H200): "
          + ", ".join(f"{k} ~{v:.0f} s" for k, v in doc["plan"]["seconds_at_assumed_mfu"].items()), flush=True)  # fmt: skip
    for part in parts:
        timeout = SHARES[part] * (deadline - time.time())
        if part == "data":
            result = data_part(size, out / "data.log", timeout, env)
        elif part == "tests":
            result = tests_part(out, timeout, env)
        elif part == "speed":
            cmd = [sys.executable, str(Path(__file__).resolve()), "--speed-part", str(out / "speed.json"),
                   "--deadline", str(time.time() + timeout - 10), *(["--smoke"] if args.smoke else [])]  # fmt: skip
            (out / "speed.json").unlink(missing_ok=True)
            result = speed_summary(out, [call(cmd, out / "speed.log", timeout, env)], size)
        else:
            result = sweep_part(size, work, out / "sweep.log", deadline, env)
        doc["parts"][part] = result
        doc["meta"]["seconds"] = time.time() - start
        atomic_write_json(out / "gpu_check.json", doc)
    doc["table"] = table(doc)
    atomic_write_json(out / "gpu_check.json", doc)
    print(f"\nresults: {out / 'gpu_check.json'}\n{doc['table']}")


if __name__ == "__main__":
    main()
