"""`make bench-protocol`: the experiments that chose the CPU proxy protocol (configs/proxy-cpu.yaml) of
`make demo` and `make bench-transfer`, each one `mupx sweep` a user could type.

Each experiment asks one question about the proxy regime: how noisy the optimum is, which base init std
to transfer, what warmup does, which width range and grid give a decisive verdict in the minutes a CPU
has. Its command runs into runs/protocol/<name> (resumable); the run records (axes and final val loss)
are kept in benchmarks/protocol.json, and the tables in the protocol section of benchmarks/RESULTS.md are
recomputed from them with mupx's own fit (``--render``), so every number there can be rerun.

Usage: python benchmarks/bench_protocol.py [--only NAME,...] [--render]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from common import command_line, machine, mupx, replace_section, utc_now

from mupx.fit import fit_sweep
from mupx.io import atomic_write_json

HERE = Path(__file__).resolve().parent
RESULTS, RAW = HERE / "RESULTS.md", HERE / "protocol.json"
BASE = ["-s", "model.head_dim=16", "-s", "data.tokenizer=bytes", "-s", "train.batch=32", "-s", "train.seq_len=64",
        "-s", "train.eval_batches=16", "-s", "train.eval_every=100000"]  # fmt: skip


def width_row(optimizer: str, centre: float, steps: str, *extra: str) -> list[str]:
    """bench-transfer's width row as a protocol sweep: μP over widths 32→256 at init 0.1, 3 seeds, the auto grid
    centred at 2^centre, plus the experiment's own overrides."""
    return [
        "--optimizer",
        optimizer,
        "--widths",
        "32,256",
        "--param",
        "mup",
        "--lrs",
        f"auto:2^{centre}",
        "--seeds",
        "3",
        "--steps",
        steps,
        "-s",
        "param.init_std=0.1",
        *extra,
    ]


EXPERIMENTS = [
    ("noise", "μP alone at the old init 0.02 (base width 32), 200 steps, 3 seeds, half-octave grid: how well "
              "is each optimum located?",
     ["--widths", "32,64,128", "--param", "mup", "--lrs", "2^-9:2^-5:0.5", "--seeds", "3", "--steps", "200"]),
    ("init-a", "The base init std at base width 32: 0.02, 0.04, 0.08.",
     ["--widths", "32", "--param", "mup", "--lrs", "2^-9:2^-6:0.5", "--seeds", "3", "--steps", "200",
      "--hp", "param.init_std=0.02,0.04,0.08"]),
    ("init-b", "The base init std at base width 32: 0.1 (GPT-2's 0.02 at width 768 moved by 1/sqrt(fan_in)), 0.16.",
     ["--widths", "32", "--param", "mup", "--lrs", "2^-7.5:2^-4.5:0.5", "--seeds", "3", "--steps", "200",
      "--hp", "param.init_std=0.1,0.16"]),
    ("init-0.1", "μP and SP at init 0.1, widths 32→128, 200 steps, auto lr grid: verdicts, and μP's best loss "
                 "against SP's.",
     ["--widths", "32,64,128", "--param", "both", "--lrs", "auto:2^-6.5", "--seeds", "3", "--steps", "200",
      "-s", "param.init_std=0.1"]),
    ("warmup-0.3", "Warmup 30% instead of 10% (init 0.1): loss and the shape of the lr curve.",
     ["--widths", "32,64,128", "--param", "both", "--lrs", "2^-8:2^-4.5:0.5", "--seeds", "3", "--steps", "200",
      "-s", "param.init_std=0.1", "-s", "train.warmup=0.3"]),
    ("steps-150", "150 steps (the demo's minutes), widths 32→128, init 0.1: is SP's drift decisive over 4x?",
     ["--widths", "32,64,128", "--param", "both", "--lrs", "2^-8:2^-5.5:0.5", "--seeds", "3", "--steps", "150",
      "-s", "param.init_std=0.1"]),
    ("base-16", "Base width 16 (8x to 128, one head of 16 at the base), init 0.02*sqrt(768/16) = 0.14, 150 steps.",
     ["--widths", "16,32,64,128", "--param", "both", "--lrs", "2^-8:2^-5.5:0.5", "--seeds", "3", "--steps", "150",
      "-s", "param.init_std=0.14"]),
    ("head-dim-8", "Base width 16 with two heads of 8 instead of one of 16 (init 0.14, octave grid, 200 steps).",
     ["--widths", "16,32,64,128", "--param", "both", "--lrs", "2^-8.5:2^-4.5:1", "--seeds", "3", "--steps", "200",
      "-s", "param.init_std=0.14", "-s", "model.head_dim=8"]),
    ("clip-sgd", "SGD under μP, widths 16→128 (init 0.14, 150 steps, auto lr grid), global grad-norm clip at 1.0 "
                 "against none: under μP the embedding, readout and vector gradients fall as 1/√width while the "
                 "hidden ones stay, so whether the clip binds can differ between proxy and target. Does it move "
                 "lr* with width?",
     ["--optimizer", "sgd", "--widths", "16,128", "--param", "mup", "--lrs", "auto", "--seeds", "3", "--steps",
      "150", "-s", "param.init_std=0.14", "--hp", "train.grad_clip=0,1.0"]),
    ("clip-sophia", "The same for Sophia (its update is clipped per coordinate too).",
     ["--optimizer", "sophia", "--widths", "16,128", "--param", "mup", "--lrs", "auto", "--seeds", "3", "--steps",
      "150", "-s", "param.init_std=0.14", "--hp", "train.grad_clip=0,1.0"]),
    ("rho-sophia", "Sophia's ρ (not μP-scaled: the share of sign-clipped coordinates may change with width) at "
                   "0.01 and 0.16 around the default 0.04 (clip-sophia's grad_clip=1.0 series): does ρ move lr* "
                   "with width?",
     ["--optimizer", "sophia", "--widths", "16,128", "--param", "mup", "--lrs", "auto", "--seeds", "3", "--steps",
      "150", "-s", "param.init_std=0.14", "--hp", "optimizer.rho=0.01,0.16"]),
    *((f"profile-{name}", question,
       ["--optimizer", name, "--widths", "16,32,64,128,256", "--param", "mup", "--lrs", "auto", "--seeds", "3",
        "--steps", "150", "-s", "param.init_std=0.14"]) for name, question in (
        ("lamb", "LAMB under μP over widths 16→256, every doubling (bench-transfer: +0.52 octave over 16→128): is "
                 "the drift spread evenly over the doublings, or carried by the smallest widths (a finite-width "
                 "effect that a larger base width removes)?"),
        ("soap", "The same for SOAP (bench-transfer: +0.56 over 16→128 under μP, +0.50 under SP, whose hidden lr is "
                 "the same)."),
    )),
    *((f"block-{name}", f"{label} under μP over bench-transfer's widths 32→256 (init 0.1) with "
       "preconditioner tiles of 32, the base width, instead of one tile per matrix (block_size 1024): Qiu et al. "
       "(2512.05620) find blocking mitigates the finite-width drift of the preconditioned optimizers' lr* and block "
       f"at their base width (128 in §3, 512 in §4). {why}",
       width_row(name, centre, "150", "--hp", "optimizer.block_size=32"))
      for name, label, centre, why in (
          ("soap", "SOAP", -4, "SOAP drifted +0.78 octave over 32→256 unblocked (profile-soap)."),
          ("shampoo", "Shampoo", -3, "Shampoo drifted −0.53 over 16→128 unblocked (bench-transfer of 2026-12-06)."),
      )),
    ("depth-4-32", "AdamW over depths 4→32 at width 32 (init 0.1), μP (depth-μP, α = 1) and SP: bench-transfer's depth "
                   "sweep from base depth 2 left μP's lr* at depth 16 without an interval (a valley flat within the "
                   "seed noise, +0.46 octave); TP-V §6.1 names depth 4 as the least depth for transfer. Does a base "
                   "of 4 blocks locate the optima and decide the verdicts?",
     ["--widths", "32", "--depths", "4,32", "--param", "both", "--lrs", "auto:2^-6", "--seeds", "3", "--steps",
      "150", "-s", "param.init_std=0.1"]),
    *((name, question, ["--widths", width, "--depths", "2,16", "--param", "mup", "--lrs", f"auto:2^{centre}",
                        "--seeds", seeds, "--steps", steps, "-s", f"param.init_std={init}"])
      for name, width, centre, seeds, steps, init, question in (
          ("depth-300", "32", -6, "5", "300", 0.1,
           "bench-transfer's AdamW depth sweep (width 32, depths 2→16, μP with α = 1) at 300 steps instead of 150, 5 "
           "seeds: at 150 steps with 5 seeds μP's lr* rose +0.69 octave (95% +0.21 to +1.17) from depth 2 to 16, in "
           "line with depth-4-32's +0.37. Deeper models, whose branches start at 1/L, may favour larger lrs early "
           "in training: is the rise a short-horizon effect?"),
          ("depth-w64", "64", -6, "3", "150", 0.0707,
           "bench-transfer's AdamW depth sweep (depths 2→16, μP with α = 1, 150 steps) at width 64 instead of 32 "
           "(init 0.1·√(32/64), the protocol's base init moved by μP's 1/√fan_in rule), 3 seeds: at width 32 lr* "
           "rose +0.69 octave from depth 2 to 16 at both 150 and 300 steps (depth-300), so the horizon is not the "
           "cause. CompleteP's depth transfer is shown at widths of 256 and more: does the rise shrink at twice the "
           "width (a finite-width effect of 2 heads per block)?"),
          ("depth-w64-300", "64", -7.5, "5", "300", 0.0707,
           "depth-w64 at 300 steps and 5 seeds, as depth-300 located width 32's optima: at 150 steps the depth-16 "
           "valley at width 64 was flat within the seed spread (no interval, +0.51). Is the rise smaller at width "
           "64 than width 32's +0.69 (+0.43 to +0.95)?"),
          ("depth-w128-300", "128", -8, "5", "300", 0.05,
           "depth-w64-300 at width 128 (init 0.1·√(32/128)): the rise of lr* from depth 2 to 16 was +0.69 (+0.43 "
           "to +0.95) at width 32 and +0.50 (+0.32 to +0.68) at width 64, both at 300 steps with 5 seeds. If it is "
           "a finite-width effect of the narrow blocks, it keeps shrinking at width 128 (8 heads per block): does "
           "AdamW's depth transfer become decisive there?"),
      )),
    *((f"output-{name}", f"{label} under μP over bench-transfer's widths 32→256 (init 0.1) with the base output "
       "multiplier 1 (the default) and 8: bench-transfer's μP best loss at width 256 lost to SP's "
       f"({mup_best} against {sp_best}), and at 8 the width-256 logits carry SP's multiplier (8/8 = 1) while "
       "every other rule stays μP's. Is the readout's multiplier what is off?",
       width_row(name, centre, "150", "--hp", "param.output_mult=1,8"))
      for name, label, centre, mup_best, sp_best in (
          ("sgd", "SGD", -2, "2.520", "2.246"),
          ("sophia", "Sophia", -8.5, "2.502", "2.299"),
      )),
    *((f"output-sgd-{suffix}", question,
       width_row("sgd", -3, "150", "-s", "param.output_mult=8", "--hp", hp))
      for suffix, hp, question in (
          ("noclip", "train.grad_clip=0",
           "output-sgd's output multiplier 8 without the global gradient clip: its μP lr* still fell with width "
           "(−0.90 octave, 95% −1.30 to −0.50, over 32→256), and clip-sgd showed the clip binding less at the wider "
           "width, whose global gradient norm is smaller under μP. Is the clip what moves SGD's lr*?"),
          ("mupclip", "train.grad_clip_norm=mup",
           "output-sgd's output multiplier 8 with the clip at 1.0 bounding the width-invariant norm "
           "(train.grad_clip_norm=mup: embedding, readout and vector gradients weighted by √(width multiplier), so "
           "the norm no longer falls with width): does SGD's lr* hold with the clip still on?"),
      )),
    *((f"steps-{name}", f"bench-transfer's {label} width row (μP, widths 32→256, init 0.1{extra}) at 300 steps instead "
       f"of 150, 3 seeds: with 5 seeds at 150 steps its drift was {was}, undecided because the width-32 valley is "
       "flat within the seed spread. depth-300 showed 300 steps curving AdamW's valleys and halving the drift's "
       "interval: does the longer horizon decide it?",
       width_row(name, centre, "300", *sets))
      for name, label, extra, was, centre, sets in (
          ("sophia", "Sophia", ", output multiplier 8, the width-invariant clip", "−0.57 (−1.68 to +0.54)", -8.5,
           ["-s", "param.output_mult=8", "-s", "train.grad_clip_norm=mup"]),
          ("shampoo", "Shampoo", "", "−0.39 (−1.69 to +0.91)", -3.5, []),
      )),
    *((f"adam-{name}", f"bench-transfer's {label} width row (μP, widths 32→256, init 0.1, {steps} steps) with the "
       "AdamW side's base lr (embeddings, readout, gains, biases) at 0.01, AdamW's own lr* at base width 32 "
       "(bench-transfer: 0.0098), instead of the configured 3e-3, 1.7 octaves below it. With the Adam side at 3e-3 "
       f"the hidden matrices' lr* {was}. Is the Adam side the tensor group that is off: does the hidden lr* "
       "compensate for an under-tuned embedding and readout lr by an amount that changes with width (they weigh "
       "more at width 32)?",
       width_row(name, centre, steps, "--hp", "optimizer.adam_lr=0.01"))
      for name, label, steps, centre, was in (
          ("soap", "SOAP", "150", -4, "rose +0.81 octave (95% +0.64 to +0.98)"),
          ("shampoo", "Shampoo", "300", -3.5, "fell −0.53 (−0.70 to −0.37) at 300 steps (steps-shampoo)"),
      )),
    ("graft-shampoo", "bench-transfer's Shampoo width row (μP, widths 32→256, init 0.1, 150 steps) with Adam grafting "
                      "(optimizer.graft=adam: each hidden update rescaled to the Frobenius norm of the Adam update, "
                      "whose lr then scales as Adam's 1/fan_in, Qiu et al.'s grafted_shampoo rule), the way "
                      "facebookresearch/optimizers' Distributed Shampoo is meant to be used (\"graft from the previous "
                      "method\"). Ungrafted, its lr* falls −0.53 octave over 32→256 at 300 steps (steps-shampoo, "
                      "adam-shampoo) and its width-32 valley is flat at 150: does grafting, which takes the step size "
                      "from Adam's μP-exact rule and only the direction from the preconditioner, transfer decisively?",
     width_row("shampoo", -7, "150", "--hp", "optimizer.graft=adam")),
]  # fmt: skip
KEEP = ("param", "width", "depth", "lr", "seed", "hp", "status", "loss")
FINDINGS = """What each experiment decided (the numbers are in its table):

- **noise**: at the old init 0.02 the optima at widths 32 and 128 had wide or lopsided intervals and the
  curves were jagged within a seed; seeds × lrs, not the val set, carry the noise (the val windows are the
  same for every run).
- **init-a, init-b**: the base init std is a hyperparameter μP transfers, and 0.02 (GPT-2's at width 768)
  is far too small at base width 32: the best loss falls from 0.02 to 0.08–0.1 and rises again at 0.16;
  0.1 = 0.02·√(768/32) is GPT-2's init moved to the base width by μP's own 1/√fan_in rule, so the protocol
  uses that rule at its base width (0.14 at 16). It also curves the lr–loss valley more (curvature 0.13
  against 0.055), which locates each optimum better.
- **init-0.1**: with it μP holds still over 32→128 and wins at 128 (best loss below SP's), SP drifts.
- **warmup-0.3**: a longer warmup lowers the loss but flattens the valley (lr* at width 32 no longer
  located); the protocol keeps 10%.
- **steps-150**: 150 steps fit the demo's minutes and locate μP's optima well, but over 4× SP drifts only
  −0.75 octave and its interval reaches inside the ±0.5 tolerance: 4× is too little range for a decisive SP
  verdict.
- **base-16**: base width 16 (one head of 16) gives 8× to width 128 at the same cost; SP drifts −0.95
  over 8×, μP holds (+0.10). Its grid's top (2^-5.5) cut μP's windows short (intervals to 2^-5.1), so the
  demo's grid reaches 2^-5; with three seeds widths 16 and 128 alone carry the verdicts (`make demo`).
- **head-dim-8**: two heads of 8 at the base instead of one of 16 made the width-16 valley flat (curvature
  0.056) and its optimum unlocated: head_dim 16 stays.
- **clip-sophia, rho-sophia** (issue 11, item 5): neither the global clip nor ρ moves Sophia's lr* with
  width here. The clip at 1.0 raises lr* by about 0.3 octave at both widths (−7.64 → −7.33 at 16,
  −7.65 → −7.30 at 128), so the drift stays put (−0.01 without, +0.04 with); ρ from 0.01 to 0.16 leaves every
  optimum within 0.2 octave (drifts −0.04 and +0.17). Only the unclipped series has a drift interval
  (−0.77 to +0.75), so "does not matter" holds to about ±0.75 octave over 8×, not to ±0.5: no width rule for
  them was added.
- **profile-lamb, profile-soap** (which widths carry the drift: one sweep over every doubling 16→256, refitted
  over each pair of neighbouring widths and over 32→256): LAMB's lr* rises +0.37 octave (95% +0.12 to +0.61)
  from width 16 to 32 and then holds, −0.03, +0.16, −0.02 over the next three doublings and +0.13 (−0.01 to
  +0.27) over 32→256, decisively within ±0.5: its 16→128 "drift" (+0.50 here, +0.52 in bench-transfer) is the
  one-head base, so bench-transfer's base width moves to 32 (two heads). SOAP's is no base effect: −0.03 over
  16→32, then +0.26, +0.31, +0.23 per doubling, +0.78 (+0.64 to +0.92) over 32→256, lr* ∝ width^+0.26 under
  the rule that sets the update's spectral norm to √(fan_out/fan_in) (2512.05620); SP drifted alike in the
  first bench-transfer (its hidden lr is the same), so it is the hidden matrices' lr that must move.
- **block-soap, block-shampoo** (issue 11, item 2: the group whose lr must move is SOAP's hidden matrices):
  tiles of 32, the base width, take SOAP's drift over 32→256 from +0.81 (bench-transfer, one tile per matrix) to
  +0.28 (+0.11 to +0.44), decisive, as Qiu et al. find; Shampoo's to +0.34 (−0.02 to +0.69). The tiles cost
  loss at width 256: SOAP 2.099 against 1.954 one tile per matrix, Shampoo 2.088 against 2.042, so blocked
  SOAP at its transferred lr (2.108) still loses to unblocked SOAP at its drifted transferred lr (2.012). The
  default stays one tile per matrix (block_size 1024); the drift is a finding, not a rule change.
- **depth-4-32** (issue 11, item 2: AdamW over depth): a base of 4 blocks does not decide μP's depth verdict
  either. At depth 32 μP's seed means stay within 0.006 from 2^−7 to 2^−6 (2.328–2.334) and rise by 0.12 one
  octave later: a flat-bottomed valley with a cliff, which the quadratic window fits without significant
  curvature (+0.37, no interval), as depth 16 did from base depth 2. SP drifts decisively, −0.85 (−1.12 to
  −0.59), and loses 0.15 in loss at depth 32 (2.479 against 2.328). What would locate the deep optimum is not
  measured (a longer horizon is the next candidate); bench-transfer keeps depths 2→16.
- **depth-300** (is AdamW's rise of lr* with depth a short-horizon effect?): no. At 300 steps, 5 seeds, μP's lr*
  rises +0.69 (+0.43 to +0.95) from depth 2 to 16, the same +0.69 as bench-transfer's 150 steps (+0.21 to
  +1.17); the longer runs curve both valleys (0.127 and 0.103) and locate both optima (−6.46 and −5.77), so the
  interval halves but its centre stays, 0.07 octave short of a decisive drift. Depth 16 does not beat depth 2
  in loss here (2.066 against 2.068). The rise is steady (+0.23 octave per doubling of depth) where the
  horizon is not: a width-32 model (2 heads per block) may be too narrow for CompleteP's depth limit, which its
  paper shows at widths of 256 and more (depth-w64).
- **depth-w64** (does the rise shrink at twice the width?): not decided at 150 steps. At width 64 (init
  0.0707 at that base) μP's lr* moves +0.51 from depth 2 to 16 (+0.17 per doubling, against width 32's +0.23),
  but the depth-16 valley is flat within the seed spread (seed means 2.215, 2.226, 2.224 from 2^−7.5 to
  2^−6.5), so that optimum has no interval and neither has the drift; width 64's depth 2 is located
  (2^−7.79, 2^−7.96 to 2^−7.44). Depth 16 beats depth 2 in loss here (2.215 against 2.248).
- **depth-w64-300** (width 64 at 300 steps, 5 seeds): both optima located (2^−7.27, 2^−7.40 to 2^−7.18; 2^−6.77,
  2^−6.88 to 2^−6.60) and the rise is +0.50 (+0.32 to +0.68), +0.17 per doubling of depth, against width 32's
  +0.69 (+0.43 to +0.95) in the same protocol: smaller at twice the width, the two intervals overlapping, neither
  decisive. At depth 16 the seed means either side of depth 2's lr* (2^−7.27) are 1.999 (2^−7.5) and 1.982
  (2^−7, the best grid point): reusing depth 2's lr costs at most 0.017 in loss. Depth 16 does not beat
  depth 2 in loss at 300 steps (1.982 against 1.975), as at width 32. Read together: under CompleteP (α = 1)
  AdamW's lr* rises with depth at these widths by a finite-width amount that shrinks with width; no depth rule is
  changed on it (CompleteP's code and 2603.00541 give no depth factor for Adam's hidden lr at α = 1, and a rule
  fitted to widths 32–64 would not hold at the widths where their transfer is shown) (depth-w128-300).
- **depth-w128-300** (width 128, 300 steps, 5 seeds): AdamW's depth transfer is decisive there. Both optima
  located (2^−8.00, 2^−8.09 to 2^−7.92 at depth 2; 2^−7.72, 2^−7.85 to 2^−7.62 at depth 16), drift +0.29
  (+0.14 to +0.43), **transfers**: the rise from depth 2 to 16 is +0.69, +0.50, +0.29 at widths 32, 64, 128
  in the same protocol, shrinking with each doubling of width, as a finite-width effect does, toward
  CompleteP's depth-independent lr. Depth 16 now beats depth 2 in loss (1.884 against 1.896), which it did not
  at widths 32 and 64 at 300 steps. The depth-16 runs take 170 s each here. bench-transfer's AdamW depth row
  now runs at this size (bench_transfer.CPU_SWEEPS; these μP runs are its μP runs, the same run ids), with SP
  beside it: SP drifts −0.58 (−0.83 to −0.34) and loses 0.17 in loss at depth 16 (2.050 against 1.884).
  Muon's depth row transfers decisively at width 32 and stays there.
- **output-sgd, output-sophia** (issue 11, item 3: μP's best loss at 256 lost to SP's for these two): the
  hyperparameter that is off is the base output multiplier. At 8 instead of 1 (the width-256 readout then
  carries SP's multiplier, 8·32/256 = 1) μP's best loss at width 256 falls from 2.520 to 2.236 ± 0.010 for SGD
  (SP's 2.246 ± 0.005 in bench-transfer) and from 2.502 to 2.159 ± 0.009 for Sophia (SP's 2.299 ± 0.018): wider
  is better again (width 32: 2.546 and 2.509, within a seed error of multiplier 1's 2.561 and 2.549, so the
  base width alone cannot choose it). lr* still falls with width at 8: SGD −0.90 (−1.30 to −0.50), Sophia −0.56
  (the width-32 valley too flat for an interval). bench-transfer keeps multiplier 1 for every optimizer (its
  protocol was fixed before the run, and SP's rows need their own multiplier); a base output multiplier swept
  at the base with the target's readout in view is the next protocol's candidate.
- **output-sgd-noclip** (is the clip what moves SGD's lr* at multiplier 8?): without the global clip SGD's lr*
  holds, +0.04 (−1.11 to +1.19), but at 2^−7 instead of 2^−2.8, and it trains far worse (2.881 at 32, 2.433
  at 256, against 2.546 and 2.236 clipped). In the clipped runs the first step's global gradient norm is 31
  at width 32 and 21 at 256 (it falls with width under μP as the vector-like gradients shrink) and the clip
  binds on 55–62% of the steps near the optima (metrics.jsonl's grad_norm, seed 0), where the update is
  lr·g/‖g‖ and the global norm sets the effective lr. SGD's training and its drift both hang on the clip here;
  a clip whose norm is width-invariant under μP is the rule to try (output-sgd-mupclip).
- **output-sgd-mupclip** (the clip bounding the width-invariant norm, train.grad_clip_norm=mup,
  rules.clip_norm_weight): SGD's drift at multiplier 8 goes from −0.90 (−1.30 to −0.50) to +0.12 (−0.33 to
  +0.57), "transfers", the interval 0.07 past the tolerance, with the clip still on and the loss kept (2.232 at
  width 256 against 2.236; width 32 is the same runs' result, 2.546, since the weights are 1 at the base).
  bench-transfer's SGD and Sophia rows now run with it (bench_transfer.CPU_SETS: SGD +0.09, −0.23 to +0.41,
  decisive); the default stays `global` because the other rows were measured with the global norm, and a
  default that changes them needs their rerun.
- **steps-sophia** (does 300 steps decide Sophia's width row?): not yet. μP's drift is +0.27 (−0.36 to +0.91) with
  3 seeds, an interval half as wide as the 5-seed 150-step row's (−0.57, −1.68 to +0.54) and on the other side
  of zero, so the 150-step centre was noise. Width 256's valley curves well (curvature 0.190, optimum 2^−8.48,
  −8.57 to −8.38); width 32's hardly does (0.046: seed means 2.300–2.309 from 2^−9.5 to 2^−8, optimum 2^−8.75,
  −9.70 to −8.52). The base-width valley, not the target's, is what leaves Sophia undecided; the longer horizon
  lowers the loss (best 1.936 at width 256 against 2.180 at 150 steps) and keeps wider better.
- **steps-shampoo** (the same for Shampoo): 300 steps locate both optima (2^−3.39, 2^−3.51 to 2^−3.21 at width
  32; 2^−3.92, 2^−3.97 to 2^−3.86 at 256) and the drift is −0.53 (−0.70 to −0.37), −0.18 octave per doubling:
  an interval an eighth as wide as the 150-step row's, straddling the tolerance's edge, so still no decisive
  verdict either way. It agrees with the first bench-transfer's −0.53 over 16→128: under μP Shampoo's lr* falls
  slowly with width here (block-shampoo's tiles turned it to +0.34). Wider is better (1.711 at 256 against 2.078).
- **adam-soap, adam-shampoo** (is the AdamW side the group whose lr must move?): no. With the Adam side's base lr
  at 0.01 (AdamW's own lr* at width 32) instead of 3e-3, the hidden matrices' lr* drifts as before: SOAP +1.02
  (+0.80 to +1.24) at 150 steps (+0.81 with 3e-3), Shampoo −0.53 (−0.67 to −0.39) at 300 steps (−0.53, −0.70
  to −0.37, with 3e-3). What moves with width is the preconditioned hidden update, as profile-soap and
  block-soap found. The Adam side's lr was off, though: at 0.01 the best loss falls at both widths, more at
  the base (SOAP 2.310 → 2.193 at 32, 1.954 → 1.907 at 256; Shampoo 2.078 → 1.974 and 1.711 → 1.685). The
  configured adam_lr (3e-3 in shampoo, soap, muon, muonpp) stays, because every bench-transfer row was
  measured with it; a proxy sweep should tune it with `--hp optimizer.adam_lr=...` as any other base value.
- **graft-shampoo** (does Adam grafting make Shampoo transfer?): no, it drifts the other way, decisively:
  +0.93 (+0.76 to +1.10) over 32→256 at 150 steps (2^−5.71 at 32, 2^−4.78 at 256). The graft gives the update
  Adam's Frobenius norm under Adam's 1/fan_in lr; a likely reading, not measured here, is that the
  preconditioned direction spreads that norm over more singular directions than Adam's update does, so its
  spectral norm per unit lr falls with width and lr* rises, as SOAP's does. It trains better at 256 (1.968
  against the ungrafted 2.045 at 150 steps) and alike at 32 (2.290 against 2.306). Ungrafted Shampoo (−0.18
  octave per doubling), grafted Shampoo (+0.31) and SOAP (+0.27) all leave a finite-width drift under their
  sourced rules; only blocking at the base width (block-soap, block-shampoo) removes it, at a loss cost. No rule
  is changed on it: it is the finding.
- **clip-sgd**: not decided. SGD barely trains in 150 steps (val loss 2.69–2.79, a flat and jagged valley), so
  no optimum has an interval and the −1.49 "drift" with the clip is noise between two minima at width 128.
  What the runs do show is the mechanism the clip was suspected of: without it both widths diverge at
  2^−0.24 and train at 2^−0.74 (the stability edge transfers); with it width 16 still trains at 2^0.26
  while width 128 diverges there, since μP's global gradient norm falls with width and the clip binds less
  at the target. output-sgd-noclip and output-sgd-mupclip decided it where SGD trains (base width 32, output
  multiplier 8); the coordinate checks are unaffected (they run with train.grad_clip=0).
"""


def run(name: str, args: list[str], root: Path) -> dict:
    """Run one experiment's sweep (resumable) and return its compact record."""
    mupx("sweep", *args, *BASE, "--jobs", "2", "--out", str(root / name))
    doc = json.loads((root / name / "sweep.json").read_text())
    return {"command": "mupx sweep " + " ".join([*args, *BASE]), "code": code_version(), "date": utc_now(),
            "machine": machine(), "runs": [{k: r.get(k) for k in KEEP} for r in doc["runs"]]}  # fmt: skip


def code_version() -> str:
    """HEAD's short commit, marked '+uncommitted' when mupx/ or configs/ differ from it: the code a run used is then
    not that commit's (a run of a flag not yet committed would name a commit that lacks it)."""
    git = ("git", "-C", str(HERE.parent))
    commit = subprocess.run(
        [*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    dirty = subprocess.run(
        [*git, "status", "--porcelain", "--", "mupx", "configs"], capture_output=True, text=True
    ).stdout
    return commit + ("+uncommitted" if dirty.strip() else "")


def _iv(p: dict) -> str:
    """log2 lr* with its 95% interval, or why it has none."""
    if p.get("log2_lr_star") is None:
        return "–"
    iv = p.get("interval")
    if iv:
        return f"{p['log2_lr_star']:+.2f} ({iv[0]:+.2f} to {iv[1]:+.2f})"
    return f"{p['log2_lr_star']:+.2f} ({'grid edge' if p.get('at_edge') else 'no interval'})"


def _hp_text(series: dict) -> str:
    """A series' swept hyperparameters by their last key part ('output_mult=8'), or '' when it has none."""
    return ", ".join(f"{k.split('.')[-1]}={v}" for k, v in (series.get("hp") or {}).items())


def sub_range_fits(runs: list[dict]) -> list[tuple[str, dict]]:
    """Over three or more widths, the fits of each consecutive pair of widths and of all widths but the smallest:
    which doublings carry a drift (a finite-width effect at the base shows as a drift over the first pair alone)."""
    widths = sorted({r["width"] for r in runs})
    if len(widths) < 3:
        return []
    subsets = [[lo, hi] for lo, hi in zip(widths, widths[1:], strict=False)] + (
        [widths[1:]] if len(widths) > 3 else []
    )
    return [(param, fit) for subset in subsets
            for param, fit in fit_sweep([r for r in runs if r["width"] in subset]).items()]  # fmt: skip


def tables(raw: dict) -> str:
    lines = [
        "## The CPU proxy protocol (`make bench-protocol`)",
        "",
        "How configs/proxy-cpu.yaml was chosen. Every experiment is one `mupx sweep` on the embedded stdlib corpus "
        "with bytes as tokens, head_dim 16, 32 × 64 tokens per step, the final val loss over 16 × 32 fixed windows, "
        "AdamW (betas 0.9/0.95) unless the command names another optimizer, cosine to 10%, 10% warmup, depth 2, "
        "base width the smallest width; its raw records "
        "are in benchmarks/protocol.json and every number below is recomputed from them with mupx.fit. lr* in "
        "log2 with its 95% interval; drift over the widths with its 95% interval; **bold**: decisive (the "
        "interval agrees with the verdict at ±0.5 octave).",
        "",
    ]
    lines += [FINDINGS, ""]
    for name, question, _ in EXPERIMENTS:
        exp = raw.get(name)
        if exp is None:
            lines += [f"### {name}", "", question, "", "Not run yet.", ""]
            continue
        fits = fit_sweep(exp["runs"])
        lines += [f"### {name}", "", question, "", f"`{exp['command']}` (code {exp['code']}, {exp['date']}; "
                  f"{exp['machine']})", "", "| param | width | depth | hp | log2 lr* (95%) | curvature | best val loss |",
                  "|---|---|---|---|---|---|---|"]  # fmt: skip
        for param, fit in fits.items():
            for p in fit["points"]:
                hp = _hp_text(p) or "–"
                curv = f"{p['curvature']:.3f}" if p.get("curvature") is not None else "–"
                best = f"{p['best_loss']:.4f}" if p.get("best_loss") is not None else "–"
                lines.append(f"| {param} | {p['width']} | {p['depth']} | {hp} | {_iv(p)} | {curv} | {best} |")
        drifts = []
        for param, fit in [*fits.items(), *sub_range_fits(exp["runs"])]:
            for axis, d in [(a, d) for a in ("width", "depth") for d in fit["drift"].get(a, [])]:
                if d.get("octaves") is None:
                    drifts.append(f"{param}: {d['verdict']} ({d['reason']})")
                    continue
                ci = d.get("octaves_interval")
                text = f"{d['octaves']:+.2f}" + (
                    f" ({ci[0]:+.2f} to {ci[1]:+.2f})" if ci else " (no interval)"
                )
                verdict = f"**{d['verdict']}**" if d.get("decisive") else d["verdict"]
                hp = _hp_text(d)
                label = f"{param} ({hp})" if hp else param
                drifts.append(
                    f"{label} drift over {axis}s {d['range'][0]}→{d['range'][1]}: {text} octaves, {verdict}"
                )
        lines += ["", *(f"- {d}" for d in drifts), ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="", help="comma-separated experiments to (re)run")
    parser.add_argument("--root", default="runs/protocol", help="folder holding the sweeps")
    parser.add_argument("--render", action="store_true", help="only rewrite RESULTS.md from protocol.json")
    args = parser.parse_args()
    raw = json.loads(RAW.read_text()) if RAW.exists() else {}
    if not args.render:
        names = [n for n in args.only.split(",") if n] or [name for name, *_ in EXPERIMENTS]
        known = {name: a for name, _, a in EXPERIMENTS}
        bad = [n for n in names if n not in known]
        if bad:
            sys.exit(
                f"bench_protocol: error: --only {bad[0]!r} is not an experiment (allowed: {', '.join(known)})"
            )
        for name in names:
            raw[name] = run(name, known[name], Path(args.root))
            raw["_command"] = command_line()
            atomic_write_json(RAW, raw)
    replace_section(RESULTS, "bench-protocol", tables(raw), default_head="# Benchmarks\n")
    print(f"wrote {RAW.relative_to(HERE.parent)} and the bench-protocol section of RESULTS.md")


if __name__ == "__main__":
    main()
