"""Chat templates, prompt files, vLLM options and the context check, in the default environment
(the real-engine side is tests/test_vllm_engine.py)."""
from __future__ import annotations

import argparse
import json

import pytest

from spiral_bench.backends import Request, SamplingConfig
from spiral_bench.backends.hf import HFBackend
from spiral_bench.backends.vllm_options import VLLMOptions, add_cli_flags, from_args
from spiral_bench.chat import ChatPrompts, read_prompt, tiny_chat_template_path, with_chat
from spiral_bench.config import ConfigError, build, config_hash, to_dict
from spiral_bench.tasks import get_task


@pytest.fixture(scope="module")
def hf():
    return HFBackend.from_pretrained("tiny-1m")


def test_prompt_files_hold_the_dataset_tasks_texts(data_dir):
    task = get_task("math500", data_dir=str(data_dir))
    p = task.problems("test", n=1)[0]
    assert task.prompt(p).endswith(read_prompt("math_instruction.txt")) and "\\boxed{}" in task.prompt(p)
    agg = task.aggregation_prompt(p, ["first try", "second try"], [False, True])
    assert agg.startswith(task.prompt(p))
    for phrase in ("Audit each candidate", "only its visible text", '"Final Solution"', "\\boxed{}",
                   "first try", "second try", "(truncated)"):
        assert phrase in agg, phrase
    assert agg.index("first try") < agg.index("Audit each candidate") < agg.index("Final Solution")


def test_chat_template_renders_task_and_aggregation_prompts(hf):
    chat = ChatPrompts(hf, hf.tokenizer, tiny_chat_template_path(), system_prompt="Be brief.")
    text = chat.render("1+2=")
    assert text == "<bos>system\nBe brief.<eos>\n<bos>user\n1+2=<eos>\n<bos>assistant\n"
    ids = hf.encode(text)
    assert ids[0] == hf.tokenizer.convert_tokens_to_ids("<bos>")  # special tokens, not characters
    out = chat.generate([Request("1+2=", n=2, seed=0)], SamplingConfig(max_new_tokens=4))
    assert hf.last_prompt_ids == [ids] and out[0][0].prompt_tokens == len(ids)
    raw = ChatPrompts(hf, hf.tokenizer, "none")
    raw.generate([Request("1+2=", n=1, seed=0)], SamplingConfig(max_new_tokens=4))
    assert hf.last_prompt_ids == [hf.encode("1+2=")]
    info = chat.chat_info()
    assert info["system_prompt"] == "Be brief." and len(info["chat_template_sha256"]) == 16


def test_auto_without_a_template_sends_raw_prompts_and_errors_are_clear(hf, tmp_path):
    assert with_chat(hf, "auto") is hf                   # the tiny tokenizer has no chat template
    assert with_chat(hf, "none") is hf
    assert isinstance(with_chat(hf, tiny_chat_template_path()), ChatPrompts)
    with pytest.raises(ConfigError, match="system_prompt needs a chat template"):
        with_chat(hf, "auto", system_prompt="hi")
    with pytest.raises(ConfigError, match="neither 'auto', 'none' nor a template file"):
        with_chat(hf, str(tmp_path / "missing.jinja"))


def test_sweep_manifest_records_the_prompt_format(hf, tmp_path):
    from spiral_bench.sweep import BudgetGrid, run_sweep, select_problems
    task = get_task("arithmetic")
    grid = BudgetGrid(name="t", sequential=(4,), parallel=(1,), problems=2)
    probs = select_problems(task, grid)
    run_sweep(with_chat(hf, tiny_chat_template_path()), task, probs, grid, "chat", tmp_path, progress=False)
    run_sweep(hf, task, probs, grid, "raw", tmp_path, progress=False)
    chat = json.loads((tmp_path / "manifests" / "chat.json").read_text())
    assert chat["prompt_format"]["chat_template"] == tiny_chat_template_path()
    assert "prompt_format" not in json.loads((tmp_path / "manifests" / "raw.json").read_text())


def test_context_check_names_the_prompt_before_sampling(hf, tmp_path):
    from spiral_bench.sweep import BudgetGrid, AggregativeSpec, check_context, run_sweep, select_problems
    task = get_task("arithmetic")
    grid = BudgetGrid(name="t", sequential=(8, 40), parallel=(1, 2), problems=2,
                      aggregative=(AggregativeSpec("none"), AggregativeSpec("aggregate", set_size=2)))
    probs = select_problems(task, grid)
    longest = max(len(hf.encode(task.prompt(p))) for p in probs)
    hf.max_model_len = longest + 40 + 20   # the search prompts fit; the aggregation prompt does not
    try:
        with pytest.raises(ValueError, match=r"max_model_len \d+ is shorter .* aggregation prompt .* 2 candidates"):
            run_sweep(hf, task, probs, grid, "m", tmp_path, progress=False)
        assert not (tmp_path / "work").exists() and not (tmp_path / "manifests").exists()
        hf.max_model_len = 10_000
        check_context(hf, task, probs, grid)
    finally:
        del hf.max_model_len


def test_vllm_options_from_flags_and_their_errors():
    ap = argparse.ArgumentParser()
    add_cli_flags(ap)
    opts = from_args(ap.parse_args(["--tensor-parallel-size", "2", "--max-model-len", "4096", "--no-prefix-caching",
                                    "--engine-arg", "enforce_eager=true", "--gpu-memory-utilization", "0.8"]))
    kw = opts.llm_kwargs()
    assert kw == {"tensor_parallel_size": 2, "gpu_memory_utilization": 0.8, "enable_prefix_caching": False,
                  "max_model_len": 4096, "enforce_eager": True}
    with pytest.raises(ConfigError, match=r"vllm.tensor_parallel_size: 0 is out of range"):
        from_args(ap.parse_args(["--tensor-parallel-size", "0"]))
    with pytest.raises(ConfigError, match=r"have their own option"):
        VLLMOptions(engine_args={"max_model_len": 5}).llm_kwargs()
    with pytest.raises(ConfigError, match=r"unknown key vllm.'tensor_parallel' .*did you mean vllm.'tensor_parallel_size'"):
        build(VLLMOptions, {"tensor_parallel": 2}, prefix="vllm.")


def test_engine_lora_rank_rounds_up_to_a_value_vllm_accepts():
    from spiral_bench.backends.vllm_options import engine_lora_rank
    # vLLM's LoRAConfig takes max_lora_rank in {1, 8, 16, 32, 64, 128, 256, 320, 512} only (r = 4 was refused)
    assert [engine_lora_rank(r) for r in (1, 2, 4, 8, 9, 32, 300, 512)] == [1, 8, 8, 8, 16, 32, 320, 512]
    with pytest.raises(ConfigError, match="exceeds"):
        engine_lora_rank(513)


def test_new_run_fields_at_their_defaults_keep_old_run_folders():
    from spiral_bench.run import RunConfig, command_for, run_hash
    cfg = RunConfig(train_seeds=1)        # a run made before these fields existed had one training run
    old = {k: v for k, v in to_dict(cfg).items() if k not in ("train_seeds", "chat_template", "system_prompt", "vllm")}
    assert run_hash(cfg) == config_hash(old, 12)
    cfg = RunConfig()
    tp = build(RunConfig, {"backend": "vllm", "vllm": {"tensor_parallel_size": 4, "engine_args": {"enforce_eager": True}},
                           "chat_template": "none"})
    assert run_hash(tp) != run_hash(cfg)
    cmd = command_for(tp, "results")
    assert "--tensor-parallel-size 4" in cmd and "--engine-arg enforce_eager=true" in cmd and "--chat-template none" in cmd
