"""`mupx compare`: the speedup arithmetic on synthetic curves (tests/test_report.py compares two real tiny
transfers, adamw and sgd, on the sweeps it reports)."""

import math

import numpy as np
import pytest

from mupx.compare import seconds_per_step, smooth, speedup, tokens_to_reach


def f(t):
    return 2.0 + 6.0 * (t / 128.0) ** -0.3  # a loss curve falling like a power law in tokens


TOKENS = np.arange(1, 401) * 128.0  # 400 steps of 128 tokens


@pytest.mark.parametrize("smoothed", [False, True])
def test_speedup_of_a_curve_that_runs_1_4x_faster(smoothed):
    ref, x = f(TOKENS), f(1.4 * TOKENS)
    rt, rl, xt, xl = TOKENS, ref, TOKENS, x
    if smoothed:
        rng = np.random.default_rng(0)
        tau = 0.05 * TOKENS[-1]
        rt, rl = smooth(TOKENS, ref + rng.normal(0, 0.02, len(TOKENS)), tau)
        xt, xl = smooth(TOKENS, x + rng.normal(0, 0.02, len(TOKENS)), tau)
    s = speedup(rt, rl, xt, xl)
    assert s["value"] == pytest.approx(1.4, rel=0.02)
    assert not s["reference_reaches_x"] and s["lower_bound"] == pytest.approx(1.0)  # matched budgets
    back = speedup(xt, xl, rt, rl)  # the other way round: X is the reference
    assert back["value"] == pytest.approx(1 / s["value"], rel=1e-9) and back["reference_reaches_x"]


def test_speedup_when_the_reference_trained_longer():
    longer = np.arange(1, 801) * 128.0
    s = speedup(longer, f(longer), TOKENS, f(1.4 * TOKENS))
    # the reference reaches X's final loss at 1.4x X's tokens: the compute-equivalent multiplier
    assert s["reference_reaches_x"] and s["lower_bound"] is None
    assert s["reference_tokens"] == pytest.approx(1.4 * TOKENS[-1], rel=0.01)
    assert s["value"] == pytest.approx(1.4, rel=0.01)


def test_tokens_to_reach_interpolates_in_log_tokens():
    t = np.array([100.0, 1000.0])
    assert tokens_to_reach(t, [3.0, 2.0], 2.5) == pytest.approx(math.sqrt(100 * 1000))
    assert tokens_to_reach(t, [3.0, 2.0], 3.5) == 100.0
    assert tokens_to_reach(t, [3.0, 2.0], 1.0) is None


def test_smooth_has_no_lag_on_a_line():
    t = np.arange(1, 101) * 10.0
    st, sl = smooth(t, 5.0 - 0.01 * t, tau=100.0)
    assert np.allclose(sl, 5.0 - 0.01 * st)  # each smoothed point lies on the line at its own token


def test_seconds_per_step_is_robust_to_a_pause():
    rows = [{"step": s, "time": 0.1 * s + (5.0 if s > 10 else 0.0)} for s in range(1, 21)]
    assert seconds_per_step(rows) == pytest.approx(0.1)
