"""Long prompts in the hf sampler: chunked prefill with fused attention keeps peak memory linear in
the prompt length, and gives the same tokens and log-probs as independent teacher forcing.

Peak memory is measured with torch's own profiler (profile_memory=True): the running sum of the
bytes of every CPU tensor allocation and free inside `generate`, in time order; its maximum is the
peak of torch-allocated bytes above what was live before the call (tracemalloc does not see torch).
"""
import json

import pytest
import torch

from spiral_bench.backends.base import Request, SamplingConfig
from spiral_bench.models import build_tiny
from spiral_bench.sampling import Sampler


@pytest.fixture(scope="module")
def tiny():
    return build_tiny("tiny-1m", seed=0)


def peak_torch_bytes(fn, trace_file) -> int:
    """Peak of torch CPU bytes allocated (minus freed) while fn() runs, from the profiler's
    memory events."""
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    prof.export_chrome_trace(str(trace_file))
    events = sorted((e for e in json.loads(trace_file.read_text())["traceEvents"] if e.get("name") == "[memory]"),
                    key=lambda e: e["ts"])
    assert events, "the profiler recorded no memory events"
    cur = peak = 0
    for e in events:
        cur += e["args"]["Bytes"]
        peak = max(peak, cur)
    return peak


def long_prompt(n: int, seed: int = 0) -> str:
    g = torch.Generator().manual_seed(seed)
    chars = "0123456789+-*=?;# abc\n"
    return "".join(chars[i] for i in torch.randint(len(chars), (n,), generator=g).tolist())


def reference_logprobs(model, tok, prompt, ids):
    """One unpadded forward pass of the whole sequence, the model's own (sdpa) attention, T = 1."""
    p = tok(prompt, add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        logits = model(torch.tensor([p + ids])).logits[0, len(p) - 1:-1].double()
    return torch.log_softmax(logits, -1).gather(-1, torch.tensor(ids)[:, None])[:, 0]


def test_prefill_peak_memory_grows_linearly(tiny, tmp_path):
    model, tok = tiny
    s = Sampler(model, tok)
    sc = SamplingConfig(temperature=1.0, max_new_tokens=4)
    s.generate([Request(long_prompt(64), n=1, seed=0)], sc)  # warm-up (lazy tables, kernels)
    peak = {n: peak_torch_bytes(lambda: s.generate([Request(long_prompt(n), n=1, seed=0)], sc),
                                tmp_path / f"trace{n}.json") for n in (1024, 4096)}
    ratio = peak[4096] / peak[1024]
    print(f"peak torch bytes: 1k prompt {peak[1024] / 2**20:.1f} MiB, 4k prompt {peak[4096] / 2**20:.1f} MiB, "
          f"ratio {ratio:.2f}")
    assert ratio < 4.0


def gqa_model():
    """A tiny Qwen3 with grouped-query attention (4 query heads per key/value head)."""
    from transformers import AutoModelForCausalLM, Qwen3Config

    from spiral_bench.models import build_char_tokenizer
    tok = build_char_tokenizer()
    cfg = Qwen3Config(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                      num_attention_heads=8, num_key_value_heads=2, head_dim=16, tie_word_embeddings=True,
                      pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)
    torch.manual_seed(1)
    return AutoModelForCausalLM.from_config(cfg, dtype=torch.float32).eval(), tok


@pytest.mark.parametrize("fast_masks,gqa", [(True, False), (False, False), (True, True)])
def test_chunked_prefill_matches_teacher_forcing(tiny, fast_masks, gqa):
    """Prompts of 1300 and 700 tokens (the shorter left-padded across a whole chunk) in chunks of
    512: log-probs equal one unchunked teacher-forced pass; tokens equal the one-chunk prefill's."""
    model, tok = gqa_model() if gqa else tiny
    reqs = [Request(long_prompt(1300, 1), n=3, seed=1), Request(long_prompt(700, 2), n=2, seed=2)]
    sc = SamplingConfig(temperature=1.0, max_new_tokens=12, batch_size=8)
    chunked = Sampler(model, tok, fast_masks=fast_masks, prefill_chunk_tokens=512).generate(reqs, sc)
    whole = Sampler(model, tok, fast_masks=fast_masks, prefill_chunk_tokens=0).generate(reqs, sc)
    worst = 0.0
    for r, a, b in zip(reqs, chunked, whole):
        for x, y in zip(a, b):
            assert x.prompt_tokens == len(r.prompt) and x.completion_tokens == 12
            assert x.token_ids == y.token_ids
            ref = reference_logprobs(model, tok, r.prompt, x.token_ids)
            worst = max(worst, (ref - torch.tensor(x.logprobs, dtype=torch.float64)).abs().max().item())
    print(f"max |logprob - teacher forcing| (chunked prefill, fast_masks={fast_masks}, gqa={gqa}) = {worst:.2e}")
    assert worst <= 1e-4
