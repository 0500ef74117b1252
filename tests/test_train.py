"""One training run: files, determinism, schedules, divergence and the step-0 plan check."""

import json
import math

import pytest
import torch

from mupx.errors import MupxError
from mupx.optim import PlanMismatchError, check_against_plan
from mupx.runconfig import load_run_config
from mupx.schedule import Schedule
from mupx.train import Trainer, run

from .conftest import TINY


def losses(run_dir):
    return [json.loads(line)["loss"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_run_writes_its_folder_and_loss_decreases(tmp_path):
    cfg = load_run_config(TINY + ["train.steps=60", "optimizer.lr=0.01", "train.eval_every=30"])
    result = run(cfg, tmp_path / "r")
    files = {p.name for p in (tmp_path / "r").iterdir()}
    assert {"config.yaml", "plan.tsv", "plan.json", "groups.json", "metrics.jsonl", "result.json"} <= files
    assert result["status"] == "completed" and result["steps"] == 60
    assert result["final_train_loss"] < 0.9 * result["first_loss"]
    assert math.isfinite(result["val_loss"]) and result["tokens"] == 60 * 4 * 32
    assert result["data"]["corpus_hash"] and result["run_id"] == cfg.run_id
    saved = json.loads((tmp_path / "r" / "result.json").read_text())
    assert saved == json.loads(json.dumps(result))
    groups = json.loads((tmp_path / "r" / "groups.json").read_text())["groups"]
    plan = json.loads((tmp_path / "r" / "plan.json").read_text())
    lrs = {r["name"]: r["lr"] for r in plan["rows"]}
    for g in groups:  # the optimizer's real settings at step 0 are the plan's
        for name in g["names"]:
            assert math.isclose(g["initial_lr"], lrs[name])


def test_same_seed_gives_bit_identical_losses(tmp_path):
    overrides = TINY + ["train.steps=8", "seed=3"]
    run(load_run_config(overrides), tmp_path / "a")
    run(load_run_config(overrides), tmp_path / "b")
    run(load_run_config(TINY + ["train.steps=8", "seed=4"]), tmp_path / "c")
    assert losses(tmp_path / "a") == losses(tmp_path / "b")
    assert losses(tmp_path / "a") != losses(tmp_path / "c")


def test_diverging_lr_is_a_result(tmp_path):
    result = run(
        load_run_config(TINY + ["train.steps=40", "optimizer.lr=30", "train.warmup=0"]), tmp_path / "d"
    )
    assert result["status"] == "diverged" and result["reason"]
    assert result["final_train_loss"] is None and result["steps"] < 40
    assert json.loads((tmp_path / "d" / "result.json").read_text())["status"] == "diverged"


@pytest.mark.parametrize("kind", ["constant", "cosine", "linear", "wsd"])
def test_schedules_keep_group_lr_ratios(kind):
    trainer = Trainer.build(
        load_run_config(TINY + ["model.width=256", f"train.schedule={kind}", "train.steps=50"])
    )
    plan_lr = {}
    names = {id(p): n for n, p in trainer.model.named_parameters()}
    for g in trainer.optimizer.param_groups:
        plan_lr[id(g)] = trainer.plan.row(names[id(g["params"][0])]).lr
    assert len({round(v, 12) for v in plan_lr.values()}) > 1  # μP gives the groups different lrs
    factors = []
    for step in range(50):
        ratios = {g["lr"] / plan_lr[id(g)] for g in trainer.optimizer.param_groups}
        assert max(ratios) - min(ratios) < 1e-12, (step, ratios)
        factors.append(ratios.pop())
        trainer.scheduler.step()
    assert math.isclose(factors[0], Schedule(kind, 50, 0.1, 0.1, 0.2)(0))
    if kind != "constant":
        assert factors[-1] < 0.2


def test_plan_check_fires_when_a_group_is_tampered_with():
    trainer = Trainer.build(load_run_config(TINY + ["model.width=128"]))
    check_against_plan(trainer.optimizer, trainer.model, trainer.plan, trainer.lr_factor())
    hidden = next(g for g in trainer.optimizer.param_groups if any(".attn." in n for n in g["names"]))
    hidden["lr"] *= 2
    with pytest.raises(PlanMismatchError, match="μP would be off"):
        check_against_plan(trainer.optimizer, trainer.model, trainer.plan, trainer.lr_factor())
    hidden["lr"] /= 2
    trainer.optimizer.param_groups[0]["weight_decay"] = 0.5
    with pytest.raises(PlanMismatchError, match="weight_decay"):
        check_against_plan(trainer.optimizer, trainer.model, trainer.plan, trainer.lr_factor())


def test_plan_check_catches_a_scheduler_that_sets_lrs_absolutely():
    trainer = Trainer.build(load_run_config(TINY + ["model.width=128"]))
    for g in trainer.optimizer.param_groups:
        g["lr"] = 1e-3  # what a misconfigured scheduler does
    with pytest.raises(PlanMismatchError):
        check_against_plan(trainer.optimizer, trainer.model, trainer.plan, trainer.lr_factor())


def test_plan_check_catches_a_dropped_group():
    trainer = Trainer.build(load_run_config(TINY))
    trainer.optimizer.param_groups.pop()
    with pytest.raises(PlanMismatchError, match="in no optimizer group"):
        check_against_plan(trainer.optimizer, trainer.model, trainer.plan, trainer.lr_factor())


def test_llama_flavour_trains(tmp_path):
    result = run(
        load_run_config(TINY + ["model=llama", "train.steps=30", "optimizer.lr=0.01"]), tmp_path / "l"
    )
    assert result["status"] == "completed" and result["final_train_loss"] < result["first_loss"]


def test_tied_embeddings_share_one_tensor():
    trainer = Trainer.build(load_run_config(TINY + ["model.tie_embeddings=true"]))
    names = [r.name for r in trainer.plan.rows]
    assert "lm_head.weight" not in names and "tok_emb.weight" in names
    x = torch.zeros(1, 4, dtype=torch.long)
    assert trainer.model(x).shape == (1, 4, trainer.corpus.vocab_size)


def test_mfu_is_logged_against_the_stated_peak(tmp_path):
    """MFU = tokens/s x (6 N_matmul + 12 L T d) / peak; on a CPU only with train.peak_tflops, which does not
    change the run id."""
    base = TINY + ["train.steps=3"]
    cpu = run(load_run_config(base), tmp_path / "cpu")
    assert cpu["mfu"] is None and "mfu" not in json.loads(
        (tmp_path / "cpu" / "metrics.jsonl").read_text().splitlines()[0]
    )
    cfg = load_run_config(base + ["train.peak_tflops=0.5"])
    assert cfg.run_id == load_run_config(base).run_id
    result = run(cfg, tmp_path / "peak")
    trainer = Trainer.build(cfg)
    d, depth, t, vocab = 64, 2, 32, trainer.corpus.vocab_size
    matmul = depth * (4 * d * d + 2 * 4 * d * d) + vocab * d  # q k v o, up down, readout (untied)
    assert result["flops_per_token"] == 6 * matmul + 12 * depth * t * d
    assert math.isclose(result["mfu"], result["tokens_per_s"] * result["flops_per_token"] / 0.5e12)
    rows = [json.loads(line) for line in (tmp_path / "peak" / "metrics.jsonl").read_text().splitlines()]
    assert all(math.isclose(r["mfu"], r["tokens_per_s"] * result["flops_per_token"] / 0.5e12) for r in rows)


def test_the_val_set_is_the_same_windows_whatever_the_training_batch():
    """The val loss scores eval_batches x eval_batch fixed windows: with eval_batch set, runs at batch 2 and 8
    are scored on the same windows (a batch sweep compares them); unset, each batch draws its own number."""

    def val_loss(*overrides):
        return Trainer.build(load_run_config([*TINY, "train.eval_batches=2", *overrides])).evaluate()

    fixed = val_loss("train.batch=2", "train.eval_batch=8")
    assert fixed == val_loss("train.batch=8", "train.eval_batch=8") == val_loss("train.batch=8")
    assert val_loss("train.batch=2") != fixed  # 2 x 2 windows instead of 2 x 8


def test_an_eval_batch_the_micro_batches_cannot_split_is_refused():
    with pytest.raises(MupxError, match=r"train.eval_batch 6 is not divisible by train.accum 4"):
        load_run_config([*TINY, "train.accum=4", "train.eval_batch=6"])


def test_a_val_batch_equal_to_the_batch_keeps_the_run_id_of_a_run_without_one():
    """train.eval_batch unset or equal to train.batch scores the same windows: the same result, the same id (runs
    that predate the key resume)."""
    plain = load_run_config(TINY)
    assert load_run_config([*TINY, "train.eval_batch=4"]).run_id == plain.run_id
    assert load_run_config([*TINY, "train.eval_batch=8"]).run_id != plain.run_id


def _first_gradients(width: int, *overrides: str) -> Trainer:
    """A μP SGD trainer at ``width`` (base 32) after one backward on its first training batch."""
    trainer = Trainer.build(load_run_config([*TINY, "optimizer=sgd", f"model.width={width}", "param.base_width=32",
                                             "param.init_std=0.1", "train.batch=8", *overrides]))  # fmt: skip
    x, y = trainer.sampler.next_shard(0, 1, 1)[0]
    trainer.forward_backward(x, y)
    return trainer


def _weighted_norm(trainer: Trainer) -> float:
    return math.sqrt(
        sum(
            (trainer.clip_weights[n] * float(p.grad.norm())) ** 2 for n, p in trainer.model.named_parameters()
        )
    )


def test_the_width_invariant_clip_norm_holds_still_with_width_where_the_global_norm_falls():
    """Under μP the embedding, readout and vector gradients shrink as 1/√width, so torch's global norm falls from
    the proxy to the target and a clip at a fixed threshold binds less there (RESULTS.md, output-sgd-noclip).
    grad_clip_norm: mup weights those tensors by √(width multiplier): at the base width it is the global norm
    exactly, at 8x the base it stays within 15% of its base value while the global norm falls by over 25%."""
    protocol = (
        "train.grad_clip_norm=mup",
        "data.tokenizer=bytes",
        "param.output_mult=8",
    )  # output-sgd-noclip's
    base, wide = _first_gradients(32, *protocol), _first_gradients(256, *protocol)
    global_base, global_wide = (torch.nn.utils.get_total_norm([p.grad for p in t.model.parameters()]).item()
                                for t in (base, wide))  # fmt: skip
    assert _weighted_norm(base) == pytest.approx(global_base, rel=1e-6)
    assert {base.clip_weights["blocks.0.attn.q.weight"], wide.clip_weights["blocks.0.attn.q.weight"]} == {1.0}
    assert (
        wide.clip_weights["tok_emb.weight"]
        == wide.clip_weights["blocks.0.ln1.weight"]
        == pytest.approx(8**0.5)
    )
    assert global_wide / global_base < 0.75  # measured 0.69
    assert 0.85 < _weighted_norm(wide) / _weighted_norm(base) < 1.15  # measured 0.89


@pytest.mark.parametrize("kind", ["global", "mup"])
def test_the_clip_bounds_the_norm_it_is_named_for(kind):
    """clip_gradients returns the norm before clipping and leaves the clipped gradients at norm grad_clip in the
    same norm (global: torch's; mup: the weighted one); under SP every weight is 1, the two are the same."""
    trainer = _first_gradients(256, "train.grad_clip=0.5", f"train.grad_clip_norm={kind}")
    before = trainer.clip_gradients().item()
    after = _weighted_norm(trainer) if kind == "mup" else torch.nn.utils.get_total_norm(
        [p.grad for p in trainer.model.parameters()]).item()  # fmt: skip
    assert before > 0.5 and after == pytest.approx(0.5, rel=1e-4)
    sp = _first_gradients(256, "param=sp", "train.grad_clip_norm=mup")
    assert set(sp.clip_weights.values()) == {1.0}


def test_the_global_clip_norm_keeps_the_run_id_of_a_run_without_the_key():
    plain = load_run_config(TINY)
    assert load_run_config([*TINY, "train.grad_clip_norm=global"]).run_id == plain.run_id
    assert load_run_config([*TINY, "train.grad_clip_norm=mup"]).run_id != plain.run_id
    with pytest.raises(MupxError, match=r"train.grad_clip_norm"):
        load_run_config([*TINY, "train.grad_clip_norm=layer"])
