"""`make bench-compare`: compute-equivalent speedup of Muon, SOAP and Shampoo over AdamW under μP.

Each optimizer trains the target model at its own μP-transferred learning rate, from its proxy sweep:

1. the μP/SP width sweep of ``make bench-transfer`` (the same command, so it is reused when that
   benchmark has run, and run here otherwise);
2. ``mupx transfer --from <sweep>/sweep.json --width W --depth D --steps S``: the target at the sweep's
   recommended base lr;
3. ``mupx compare`` of the four transfer runs against AdamW's: the speedup is the ratio of tokens AdamW
   needs to reach the loss both runs reach to the tokens the other optimizer needs (mupx.compare), the
   multiplier behind 2512.05620's ~1.4× at 190M–1.4B parameters; and the same in wall time.

**Sizes.** CPU: the largest target this 2-core machine trains in minutes, width 256 (the widest proxy's) and
depth 4 (2× the proxies' depth), 400 steps of 32×64 byte tokens (configs/proxy-cpu.yaml). GPU (``--gpu``): width 1024, depth 8, 2000 steps of 32×256
tokens. At these sizes the numbers say how the optimizers compare on small models with short budgets,
nothing about 2512.05620's scale.

Writes benchmarks/compare.json (compare.json of ``mupx compare`` plus the settings), the table to
benchmarks/RESULTS.md and the headline to README.md between the bench-compare markers; ``--render``
rewrites them from compare.json.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from bench_transfer import SIZES, run_sweep, sweep_args
from common import command_line, machine, mupx, replace_section, utc_now

from mupx.io import atomic_write_json

HERE = Path(__file__).resolve().parent
RESULTS, RAW, README = HERE / "RESULTS.md", HERE / "compare.json", HERE.parent / "README.md"
OPTIMIZERS = ("adamw", "muon", "soap", "shampoo")
TARGETS = {"cpu": {"width": 256, "depth": 4, "steps": 400}, "gpu": {"width": 1024, "depth": 8, "steps": 2000}}


def number(value: float | None, spec: str, unit: str = "") -> str:
    return "–" if value is None else f"{value:{spec}}{unit}"


def rows(raw: dict) -> list[str]:
    out = [
        "| optimizer | transferred lr | final loss | speedup in tokens vs AdamW | step time / AdamW's | speedup in wall time |",
        "|---|---|---|---|---|---|",
    ]  # fmt: skip
    for r in raw["compare"]["runs"]:
        d = r["detail"]
        tokens = f"{r['speedup']:.2f}×" + (f" (≥ {d['lower_bound']:.2f}×)" if d.get("lower_bound") else "")
        out.append(
            f"| {r['name']} | {r['lr']:.3g} | {r['final_loss']:.3f} | {tokens} | {number(r['step_time_ratio'], '.2f')} | "
            f"{number(r['speedup_time'], '.2f', '×')} |"
        )
    return out


def describe(raw: dict) -> str:
    t, s = raw["target"], raw["size"]
    return (
        f"GPT-2 proxy at width {t['width']}, depth {t['depth']}, {t['steps']} steps of "
        f"{s.get('batch', 32)}×{s.get('seq_len', 64)} tokens, each optimizer at the lr its μP sweep over widths "
        f"{s['widths'][0]}→{s['widths'][-1]} transferred"
    )


def tables(raw: dict) -> str:
    return "\n".join([
        "## Optimizers at matched compute (`make bench-compare`)",
        "",
        f"- Date: {raw['date']}; command `{raw['command']}`",
        f"- Machine: {raw['machine']}",
        f"- {describe(raw)} (`mupx transfer`), compared by `mupx compare` (EMA smoothing 5% of the budget).",
        "- Speedup in tokens: tokens AdamW needs to reach the loss both runs reach ÷ tokens the optimizer needs "
        "(> 1: faster than AdamW); when AdamW never reaches the other's final loss, the estimate comes from where the "
        "other reaches AdamW's, and (≥ x) is the bound from the budgets. Wall time: × AdamW's seconds per token ÷ "
        "the optimizer's, on this machine.",
        "",
        *rows(raw),
    ])  # fmt: skip


def headline(raw: dict) -> str:
    return "\n".join([
        f"**Optimizers at matched compute** (`{raw['command']}`; {raw['machine']}; {raw['date']}): {describe(raw)}. "
        "2512.05620 reports ~1.4× for Muon/SOAP/Shampoo over AdamW at 190M–1.4B parameters; this is a small model "
        "with a short budget.",
        "",
        *rows(raw),
    ])  # fmt: skip


def render(raw: dict) -> None:
    replace_section(RESULTS, "bench-compare", tables(raw), default_head="# Benchmarks\n")
    replace_section(README, "bench-compare", headline(raw))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gpu", action="store_true", help="GPU sizes (width 1024, depth 8, 2000 steps)")
    parser.add_argument("--root", default="runs/bench-transfer", help="folder holding the sweeps")
    parser.add_argument("--render", action="store_true", help="only rewrite the tables from compare.json")
    args = parser.parse_args()
    if args.render:
        render(json.loads(RAW.read_text()))
        return
    kind = "gpu" if args.gpu else "cpu"
    size, target, root = SIZES[kind], TARGETS[kind], Path(args.root)
    transfers = []
    for name in OPTIMIZERS:
        run_sweep(sweep_args(name, "width", size, root, None))
        sweep = root / f"{name}-width"
        # --force: the comparison runs each optimizer at its transferred lr whatever its sweep's verdict
        # (bench-transfer reports the verdicts)
        mupx("transfer", "--from", str(sweep / "sweep.json"), "--width", str(target["width"]),
             "--depth", str(target["depth"]), "--steps", str(target["steps"]), "--force")  # fmt: skip
        transfers.append(str(sweep / f"transfer-w{target['width']}-d{target['depth']}"))
    out = root / "compare"
    mupx("compare", *transfers, "--out", str(out))
    raw = {
        "command": command_line(), "date": utc_now(), "machine": machine(),
        "kind": kind, "size": size, "target": target, "compare": json.loads((out / "compare.json").read_text()),
    }  # fmt: skip
    atomic_write_json(RAW, raw)
    render(raw)
    print(f"\nwrote {RAW.relative_to(HERE.parent)}, the bench-compare sections of RESULTS.md and README.md")


if __name__ == "__main__":
    main()
