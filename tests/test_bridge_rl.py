"""Bridge GRPO and the P-Match control in the shared RL loop (trainers/bridge_rl.py, trainers/update.py)."""
from __future__ import annotations

import json

import pytest
import torch
from fakes import FakeTask

from spiral_bench.bridge import BridgeConfig, add_bridge, bridge_params, get_bridge, samples_independent
from spiral_bench.config import ConfigError, build
from spiral_bench.models import build_tiny, load_model
from spiral_bench.tasks.base import register
from spiral_bench.trainers import loop
from spiral_bench.trainers.train_config import TrainConfig, budget_tokens_per_prompt, make_config


class BridgeParity(FakeTask):
    """Reward 1 when the completion's first character has an even code point: about half the traces."""
    name = "bridge_parity"

    def reward(self, problem, completion):
        return float(bool(completion) and ord(completion[0]) % 2 == 0)


register("bridge_parity")(BridgeParity)

BASE = {"task": "bridge_parity", "task_options": {"n": 16}, "model": "tiny-1m", "train_problems": 16, "steps": 2,
        "prompts_per_step": 2, "group_size": 4, "max_new_tokens": 10, "lr": 1e-2, "checkpoint_every": 2,
        "micro_batch_size": 0}


@pytest.fixture(autouse=True)
def _cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("SPIRAL_BENCH_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


def test_pmatch_has_the_bridge_parameter_count_and_is_independent():
    a, b = build_tiny("tiny-1m")[0], build_tiny("tiny-1m")[0]
    add_bridge(a, BridgeConfig())
    add_bridge(b, BridgeConfig(kind="pmatch"))
    assert bridge_params(a) == bridge_params(b) > 0
    assert not samples_independent(a) and samples_independent(b)
    ids = torch.tensor([[5, 6, 7, 8], [9, 10, 11, 12]])
    base = build_tiny("tiny-1m")[0]
    with torch.no_grad():  # zero-init output: exactly the base model, and no group context needed
        assert torch.equal(b(input_ids=ids).logits, base(input_ids=ids).logits)


def test_bridge_and_pmatch_budgets_equal_grpo():
    g = make_config("grpo", overrides={"group_size": 4, "max_new_tokens": 32})
    for m in ("bridge", "pmatch"):
        assert budget_tokens_per_prompt(make_config(m, overrides={"group_size": 4, "max_new_tokens": 32})) == budget_tokens_per_prompt(g)
    with pytest.raises(ConfigError, match="LoRA"):
        make_config("bridge", overrides={"lora": {"r": 4}})


def test_bridge_run_trains_the_bridge_on_policy(tmp_path):
    """Step 1 samples exactly GRPO's traces (zero-init Bridge, same seeds); the group pass matches
    the lockstep sampler (ratio 1); the Bridge weights move; final/ carries the Bridge."""
    rows = {}
    for m in ("grpo", "bridge", "pmatch"):
        out = loop.train(build(TrainConfig, {**BASE, "method": m}), tmp_path / m, progress=False)
        rows[m] = [json.loads(x) for x in (tmp_path / m / "metrics.jsonl").read_text().splitlines()]
        if m != "grpo":
            model, _ = load_model(out, "float32", "cpu")
            blocks = get_bridge(model).blocks
            o = blocks[0].o.weight if m == "bridge" else blocks[0].down.weight
            assert float(o.detach().abs().max()) > 0                         # zero at init, trained by RL
            assert get_bridge(model).cfg.kind == m
    first = {m: (r[0]["search_reward"], r[0]["generated_tokens"]) for m, r in rows.items()}
    assert first["bridge"] == first["grpo"] == first["pmatch"]
    for m in ("bridge", "pmatch"):
        assert all(r["ratio_max_dev"] < 1e-4 for r in rows[m]), rows[m]
        assert rows[m][0]["n_loss_traces"] == 8                      # whole groups, none skipped


def test_warm_up_trains_only_the_bridge(tmp_path):
    from spiral_bench.trainers import bridge_rl

    bridge_rl.register()
    cfg = build(TrainConfig, {**BASE, "method": "bridge", "task": "bridge_parity",
                              "bridge": {"warmup_steps": 3, "warmup_problems": 4, "warmup_samples": 4}})
    loop._prepare_dir(cfg, tmp_path, True)
    ref = build_tiny("tiny-1m")[0].state_dict()
    run = loop.Run(cfg, tmp_path, progress=False)
    got = run.model.state_dict()
    base_keys = [k for k in got if not k.startswith("bridge.")]
    sft = load_model(run.init_path, "float32", "cpu")[0].state_dict()
    assert all(torch.equal(got[k], sft[k]) for k in base_keys)     # the base is untouched
    assert float(get_bridge(run.model).blocks[0].o.weight.detach().abs().max()) > 0
    assert len(ref) == len(base_keys)


def test_bridge_lr_is_its_own_parameter_group(tmp_path):
    """bridge.lr: the added weights get their own AdamW group at that lr (the run's schedule); with
    the run's lr 0 one RL step moves the Bridge and nothing else."""
    cfg = build(TrainConfig, {**BASE, "method": "bridge", "lr": 0.0, "steps": 1, "bridge": {"lr": 5e-2}})
    loop._prepare_dir(cfg, tmp_path, True)
    run = loop.Run(cfg, tmp_path, progress=False)
    assert [g["lr"] for g in run.opt.param_groups] == [0.0, 5e-2]
    added = {id(p) for p in get_bridge(run.model).parameters()}
    assert {id(p) for p in run.opt.param_groups[1]["params"]} == added
    before = {k: v.clone() for k, v in run.model.state_dict().items()}
    out = loop.train(cfg, tmp_path / "t", progress=False)
    after = load_model(out, "float32", "cpu")[0].state_dict()
    moved = {k for k in after if not torch.equal(after[k], before[k])}
    assert moved and all(k.startswith("bridge.") for k in moved), sorted(moved)[:5]
