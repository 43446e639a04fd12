"""Distributed training (trainers/distributed.py): the strategy choice, token-budgeted micro-batches,
config checks, gradient checkpointing and bf16 in one process, and (slow) torchrun with 2 gloo
processes: DDP with LoRA and FSDP2 with full fine-tuning end with one process's weights, and an
FSDP2 run resumed from its checkpoint ends as if it had not stopped.
"""
from __future__ import annotations

import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from safetensors.torch import load_file

from spiral_bench.config import ConfigError
from spiral_bench.trainers import loop, update
from spiral_bench.trainers.distributed import resolve_strategy

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_trainers import BASE, LAUNCHER, TESTS, cfg_of, torchrun, train_one_and_two_processes, weights  # noqa: E402


@pytest.fixture(autouse=True)
def _cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("SPIRAL_BENCH_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


def test_resolve_strategy():
    assert resolve_strategy("auto", 0, 1) == resolve_strategy("fsdp", 0, 1) == "none"  # one process: no wrapper
    assert resolve_strategy("auto", 16, 2) == "ddp" and resolve_strategy("auto", 0, 8) == "fsdp"
    assert resolve_strategy("ddp", 0, 2) == "ddp"
    with pytest.raises(ValueError, match="distributed"):
        resolve_strategy("deepspeed", 0, 2)


def _trace(prompt_len: int, completion: int, role: int = 0, prompt: int = 0):
    return SimpleNamespace(role=role, prompt_ids=[prompt] * prompt_len,
                           sample=SimpleNamespace(completion_tokens=completion, token_ids=[1] * completion))


def test_padded_tokens_counts_rows_times_width():
    a, b, c = _trace(5, 3), _trace(7, 2, prompt=1), _trace(5, 4)
    assert update.padded_tokens([[a], [b]], pack=False) == 2 * (7 + 3)     # max prompt + max completion
    assert update.padded_tokens([[a, c], [b]], pack=True) == 2 * (5 + 3 + 4)  # longest packed row
    assert update.padded_tokens([], pack=True) == 0


@pytest.mark.parametrize("pack", [False, True])
def test_token_budget_caps_every_micro_batch(pack):
    """max_tokens: each forward holds at most that many padded tokens (a unit over it goes alone);
    every trace is in exactly one forward; no budget gives fewer, larger forwards."""
    traces = [_trace(4 + i % 3, 3 + (7 * i) % 11, prompt=i % 4) for i in range(40)] + [_trace(4, 90)]
    for budget in (60, 150):
        batches = update.forward_batches(traces, pack, 48, 0, max_tokens=budget)
        assert sorted(id(t) for b in batches for u in b for t in u) == sorted(map(id, traces))
        for b in batches:
            assert update.padded_tokens(b, pack) <= budget or len(b) == 1
    assert len(update.forward_batches(traces, pack, 48, 0)) < len(update.forward_batches(traces, pack, 48, 0, 60))


def test_config_refuses_fsdp_with_lora_and_bf16_on_bf16_weights():
    with pytest.raises(ConfigError, match="fsdp shards full fine-tuning"):
        cfg_of(distributed="fsdp", lora={"r": 4})
    with pytest.raises(ConfigError, match="needs dtype float32"):
        cfg_of(bf16=True, dtype="bfloat16")
    assert "distributed" not in loop.to_dict(cfg_of()) and loop.to_dict(cfg_of(bf16=True))["bf16"] is True


def test_gradient_checkpointing_and_token_budget_take_the_same_step(tmp_path):
    """Recomputing activations in the backward (non-reentrant) gives bit-identical weights; a token
    budget of 64 per micro-batch (more, smaller forwards) the same step up to float summation order."""
    out = {}
    for name, kw in (("base", {}), ("ckpt", {"gradient_checkpointing": True}),
                     ("budget", {"max_tokens_per_microbatch": 64})):
        out[name] = weights(loop.train(cfg_of(method="spiral", steps=2, **kw), tmp_path / name, progress=False))
    init = load_file(str(Path(loop.init_model_path(cfg_of())) / "model.safetensors"))
    assert any(not torch.equal(out["base"][k], init[k]) for k in init)
    assert all(torch.equal(out["base"][k], out["ckpt"][k]) for k in init)
    for k in init:
        torch.testing.assert_close(out["base"][k], out["budget"][k], atol=1e-4, rtol=0)


def test_bf16_mixed_precision_trains_float32_weights_on_cpu(tmp_path):
    """bf16 on CPU (torch.autocast): the steps run, the saved weights stay float32 and move, and the
    log-prob ratio against the float32 sampler shows bf16's rounding."""
    final = loop.train(cfg_of(method="spiral", steps=1, bf16=True), tmp_path / "bf16", progress=False)
    w = weights(final)
    init = load_file(str(Path(loop.init_model_path(cfg_of())) / "model.safetensors"))
    assert all(v.dtype == torch.float32 for v in w.values()) and any(not torch.equal(w[k], init[k]) for k in w)
    row = loop.read_metrics(tmp_path / "bf16")[0]
    assert row["grad_norm"] > 0 and 1e-4 < row["ratio_max_dev"] < 0.5


# --------------------------------------------------------------------------- torchrun (slow)
def max_weight_difference(a: Path, b: Path) -> float:
    """Largest |difference| over the tensors of two model folders (LoRA checkpoints: the adapters)."""
    name = "adapter.safetensors" if (a / "adapter.safetensors").is_file() else "model.safetensors"
    wa, wb = load_file(str(a / name)), load_file(str(b / name))
    assert wa.keys() == wb.keys()
    return max(float((wa[k] - wb[k]).abs().max()) for k in wa)


@pytest.mark.slow
@pytest.mark.parametrize("strategy,method", [("ddp", "grpo"), ("ddp", "spiral"), ("fsdp", "grpo"), ("fsdp", "spiral")])
def test_torchrun_ddp_lora_and_fsdp_full_weights_match_one_process(tmp_path, strategy, method):
    """DDP (LoRA adapters) and FSDP2 (full fine-tuning, fully_shard per decoder layer) on 2 gloo
    processes end 3 steps with the weights of one process within 1e-4. Micro-batches of 3 traces:
    the ranks hold different numbers of them, so the zero-loss padding passes run too. LoRA at lr
    3e-3: A's gradient is exactly 0 in step 1 (B = 0) and tiny in step 2, where Adam's g / sqrt(v)
    turns float noise of ~1e-9 into steps of up to lr (lr 1e-2: 5e-4 apart with losses 4e-9 apart)."""
    extra = {"lora": {"r": 4}, "lr": 3e-3} if strategy == "ddp" else {}
    cfg = {**BASE, "method": method, "steps": 3, "prompts_per_step": 4, "micro_batch_size": 3,
           "checkpoint_every": 3, "distributed": strategy, **extra}
    r1, r2 = train_one_and_two_processes(tmp_path, cfg)
    assert len(r1) == len(r2) == 3
    for a, b in zip(r1, r2):
        assert a["generated_tokens"] == b["generated_tokens"] and a["n_loss_traces"] == b["n_loss_traces"]
        assert a["loss"] == pytest.approx(b["loss"], abs=1e-4) and a["grad_norm"] == pytest.approx(b["grad_norm"], rel=1e-3)
    trained = "checkpoint" if strategy == "ddp" else "final"  # LoRA: the adapters (final/ = W + (alpha/r) B A)
    diff = max_weight_difference(tmp_path / "one" / trained, tmp_path / "two" / trained)
    merged = max_weight_difference(tmp_path / "one" / "final", tmp_path / "two" / "final")
    print(f"{strategy} {method}: max |w(1 proc) - w(2 procs)| = {diff:.3g} ({trained}), {merged:.3g} (final)")
    assert diff < 1e-4
    from spiral_bench.models import resolve_model
    init = load_file(str(Path(resolve_model("tiny-1m")) / "model.safetensors"))
    w = weights(tmp_path / "two" / "final")
    assert max(float((w[k] - init[k]).abs().max()) for k in w) > 1e-3  # the steps moved the weights
    state = torch.load(tmp_path / "two" / "checkpoint" / "trainer_state.pt", weights_only=False)
    keys = set(state["optimizer"]["state"])
    assert all(isinstance(k, str) for k in keys) if strategy == "fsdp" else all(isinstance(k, int) for k in keys)


@pytest.mark.slow
def test_torchrun_fsdp_resume_continues_identically(tmp_path):
    """An FSDP2 run stopped after its step-2 checkpoint (full weights and optimizer state gathered to
    rank 0) and started again ends with the weights and losses of an uninterrupted FSDP2 run."""
    script = tmp_path / "launch.py"
    script.write_text(LAUNCHER.format(tests=str(TESTS)))
    cfg = {**BASE, "method": "grpo", "steps": 4, "prompts_per_step": 4, "micro_batch_size": 3,
           "checkpoint_every": 2, "distributed": "fsdp"}
    ref = torchrun(script, cfg, tmp_path / "ref")
    assert ref.returncode == 0, ref.stderr[-3000:]
    stopped = torchrun(script, cfg, tmp_path / "run", "2")
    assert stopped.returncode != 0 and not (tmp_path / "run" / "final").exists()
    assert len(loop.read_metrics(tmp_path / "run")) == 2
    done = torchrun(script, cfg, tmp_path / "run")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "resuming from step 2" in done.stdout
    a, b = weights(tmp_path / "ref" / "final"), weights(tmp_path / "run" / "final")
    print("fsdp resume: max |w(uninterrupted) - w(resumed)| =", max(float((a[k] - b[k]).abs().max()) for k in a))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert [r["loss"] for r in loop.read_metrics(tmp_path / "ref")] == [r["loss"] for r in loop.read_metrics(tmp_path / "run")]
