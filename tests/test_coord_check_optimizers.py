"""The coordinate check of every optimizer besides AdamW (tests/test_coord_check.py holds AdamW's, with detailed
assertions, and SGD's depth case): each passes over 8x width and over depths 2 to 16 with its defaults. A file
of its own so that the test workers (-n 2 --dist loadfile) share the coordinate checks' minutes evenly."""

import pytest

from mupx.diagnostics.coord_check import make_spec, run_coord_check
from mupx.optim import REGISTRY

OTHERS = sorted(set(REGISTRY) - {"adamw"})  # adamw has its own tests above, with detailed assertions
# SGD over depth needs the embedding to dominate the residual stream at the base depth (see
# test_sgd_over_depth_needs_the_embedding_to_dominate_the_residual_stream in test_coord_check.py); 10 is Cerebras-GPT's m_emb.
DEPTH_SETS = {"sgd": ("param.embed_mult=10",)}
# Depth checks at width 64 (the CLI's default is 128): depth, not width, is the axis under test, and width
# 128 at depth 16 made Shampoo's check alone 30 s.
NARROW = ("model.width=64",)


# Widths 32 -> 256 (8x, as the default 64 -> 512), 2 seeds: a quarter of the compute (Shampoo's float64 eigh
# of the 2048-wide MLP factors at width 512 alone took 25 s). SGD keeps 64 -> 512: at base width 32 its
# readout update still shrinks with width (measured worst slope -0.57 at logits_dW; -0.4 or less for the rest).
WIDTHS = {"sgd": "64,128,256,512"}


@pytest.mark.parametrize("name", OTHERS)
def test_every_optimizer_passes_over_8x_width(name, tmp_path):
    """A check over 8x width (5 steps; constant lr x3) with the optimizer's defaults."""
    widths = WIDTHS.get(name, "32,64,128,256")
    spec = make_spec(widths, None, overrides=(f"optimizer={name}", "param=mup"))
    result = run_coord_check(spec, tmp_path)
    assert result["values"] == [int(w) for w in widths.split(",")]
    assert result["verdict"] == "pass", result["worst"]


@pytest.mark.parametrize("name", OTHERS)
def test_every_optimizer_passes_over_depths_2_to_16(name, tmp_path):
    spec = make_spec(
        None, "2,4,8,16", overrides=(f"optimizer={name}", "param=mup", *NARROW, *DEPTH_SETS.get(name, ()))
    )
    result = run_coord_check(spec, tmp_path)
    assert result["depth_alpha"] == 1.0
    assert result["verdict"] == "pass", result["worst"]
