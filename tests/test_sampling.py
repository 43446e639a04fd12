"""The hf sampler: exact log-probs (vs independent teacher forcing), batch-independent
determinism, the Gumbel-max sampling law, stop strings / EOS / budgets, and the backends."""
import numpy as np
import pytest
import torch
from scipy import stats

from spiral_bench.backends.base import Request, SamplingConfig, sample_seed
from spiral_bench.backends.factory import get_backend
from spiral_bench.backends.hf import HFBackend
from spiral_bench.models import build_tiny
from spiral_bench.sampling import (Sampler, cut_at_stop, filter_logits, hash_uniform,
                                   select_tokens, token_logprobs)

PROMPTS = ["3+4=", "12*7-5=?", "x", "(81-19)*4+2=?\nA:", "9"]


@pytest.fixture(scope="module")
def tiny():
    return build_tiny("tiny-1m", seed=0)


@pytest.fixture(scope="module")
def backend(tiny):
    return HFBackend(*tiny)


def reference_logprobs(model, tok, prompt, ids, temperature):
    """Independent reference: one unpadded forward pass per sequence, plain HF code path."""
    p = tok(prompt, add_special_tokens=False)["input_ids"]
    x = torch.tensor([p + ids])
    with torch.no_grad():
        logits = model(x).logits[0, len(p) - 1:-1].double()
    t = temperature if temperature > 0 else 1.0
    return torch.log_softmax(logits / t, -1).gather(-1, torch.tensor(ids)[:, None])[:, 0]


# ---------------------------------------------------------------- pure functions
def test_hash_uniform_properties():
    seeds = torch.tensor([0, 1, 2**62 + 5, sample_seed(3, 1)], dtype=torch.int64)
    u = hash_uniform(seeds, 7, 1000)
    assert u.shape == (4, 1000) and (u > 0).all() and (u < 1).all()
    assert torch.equal(u[2], hash_uniform(seeds[2:3], 7, 1000)[0])   # row does not see the batch
    assert not torch.equal(u, hash_uniform(seeds, 8, 1000))          # step changes the stream
    assert stats.kstest(u.flatten().numpy(), "uniform").pvalue > 1e-3


def test_filter_logits_hand_computed():
    z = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    keep = lambda f: torch.isfinite(f)[0].tolist()
    assert keep(filter_logits(z, top_p=0.6)) == [True, True, False, False]
    assert keep(filter_logits(z, top_p=0.45)) == [True, False, False, False]
    assert keep(filter_logits(z, top_p=0.85)) == [True, True, True, False]
    assert keep(filter_logits(z, top_k=3)) == [True, True, True, False]
    assert keep(filter_logits(z, top_k=1, top_p=0.99)) == [True, False, False, False]


@pytest.mark.parametrize("temperature,top_k,top_p", [(1.0, 0, 1.0), (0.7, 3, 1.0), (1.3, 0, 0.8)])
def test_gumbel_max_follows_the_sampling_law(temperature, top_k, top_p):
    logits = torch.tensor([1.0, 0.2, -0.5, 2.0, 0.0, -2.0])
    n = 20000
    toks, lps = select_tokens(logits.expand(n, -1), torch.arange(n, dtype=torch.int64) * 7919,
                              3, temperature, top_k, top_p)
    probs = torch.softmax(filter_logits(torch.log_softmax(logits / temperature, -1)[None],
                                        top_k, top_p), -1)[0].double()
    counts = torch.bincount(toks, minlength=6).double()
    kept = probs > 0
    assert counts[~kept].sum() == 0
    expected = probs[kept] / probs[kept].sum() * counts.sum()
    chi = stats.chisquare(counts[kept].numpy(), expected.numpy())
    assert chi.pvalue > 1e-3, (counts, probs * n)
    # logprob convention: log_softmax(logits / T) at the token, no top-k/top-p renormalisation
    full = torch.log_softmax(logits / temperature, -1)
    assert torch.allclose(lps, full[toks], atol=1e-6)


def test_cut_at_stop():
    assert cut_at_stop("abc\n\nQ: next", ["\n\n", "Q:"]) == ("abc\n\n", True)
    assert cut_at_stop("xQ:y\n\nz", ["\n\n", "Q:"]) == ("xQ:", True)
    assert cut_at_stop("no stop here", ["###"]) == ("no stop here", False)
    assert cut_at_stop("text", []) == ("text", False)


# ---------------------------------------------------------------- exactness
@pytest.mark.parametrize("temperature", [1.0, 0.7])
@pytest.mark.parametrize("n", [1, 4])
def test_logprobs_equal_teacher_forcing(tiny, backend, temperature, n):
    model, tok = tiny
    reqs = [Request(p, n=n, seed=10 + i) for i, p in enumerate(PROMPTS)]   # lengths 1..16: padding
    out = backend.generate(reqs, SamplingConfig(temperature=temperature, max_new_tokens=24,
                                                batch_size=64))
    worst = 0.0
    for r, samples in zip(reqs, out):
        assert len(samples) == n
        for s in samples:
            assert s.completion_tokens == len(s.token_ids) == len(s.logprobs) > 0
            assert s.prompt_tokens == len(r.prompt)
            ref = reference_logprobs(model, tok, r.prompt, s.token_ids, temperature)
            worst = max(worst, (ref - torch.tensor(s.logprobs, dtype=torch.float64)).abs().max().item())
    print(f"max |logprob - teacher forcing| (T={temperature}, n={n}) = {worst:.2e}")
    assert worst <= 1e-4


def test_token_logprobs_matches_reference_and_sampler(tiny, backend):
    model, tok = tiny
    reqs = [Request(p, n=2, seed=i) for i, p in enumerate(PROMPTS[:3])]
    out = backend.generate(reqs, SamplingConfig(temperature=0.7, max_new_tokens=12))
    rows = [(r.prompt, s) for r, ss in zip(reqs, out) for s in ss]
    P = max(len(p) for p, _ in rows)
    C = max(s.completion_tokens for _, s in rows)
    ids = torch.full((len(rows), P + C), tok.pad_token_id)
    mask = torch.zeros_like(ids)
    for i, (p, s) in enumerate(rows):
        pi = tok(p, add_special_tokens=False)["input_ids"]
        ids[i, P - len(pi):P], mask[i, P - len(pi):P] = torch.tensor(pi), 1
        ids[i, P:P + s.completion_tokens], mask[i, P:P + s.completion_tokens] = torch.tensor(s.token_ids), 1
    with torch.no_grad():
        lp = token_logprobs(model, ids, mask, P, temperature=0.7)
    assert lp.shape == (len(rows), C)
    for i, (p, s) in enumerate(rows):
        k = s.completion_tokens
        assert torch.allclose(lp[i, :k], torch.tensor(s.logprobs), atol=1e-4)
        assert torch.allclose(lp[i, :k].double(), reference_logprobs(model, tok, p, s.token_ids, 0.7),
                              atol=1e-4)
        assert (lp[i, k:] == 0).all()


def test_token_logprobs_is_differentiable(tiny):
    model, tok = tiny
    ids = torch.tensor([[0, 5, 6, 7, 8], [9, 10, 11, 12, 0]])
    mask = torch.tensor([[0, 1, 1, 1, 1], [1, 1, 1, 1, 0]])
    lp = token_logprobs(model, ids, mask, 2)
    assert lp.shape == (2, 3) and lp[1, 2] == 0 and lp.requires_grad
    lp.sum().backward()
    assert model.lm_head.weight.grad is not None
    model.zero_grad(set_to_none=True)


def test_hf_mask_fallback_path_is_identical(tiny):
    model, tok = tiny
    reqs = [Request(p, n=2, seed=i) for i, p in enumerate(PROMPTS)]
    sc = SamplingConfig(temperature=1.0, max_new_tokens=16)
    fast = Sampler(model, tok).generate(reqs, sc)
    slow = Sampler(model, tok, fast_masks=False).generate(reqs, sc)
    assert model.config._attn_implementation == "sdpa"          # restored after sampling
    pairs = [(a, b) for ra, rb in zip(fast, slow) for a, b in zip(ra, rb)]
    assert sum(a.token_ids == b.token_ids for a, b in pairs) >= 0.9 * len(pairs)
    for a, b in pairs:
        if a.token_ids == b.token_ids:
            assert np.allclose(a.logprobs, b.logprobs, atol=1e-4)


# ---------------------------------------------------------------- determinism
def test_same_seeds_same_batch_identical(backend):
    reqs = [Request(p, n=3, seed=5 + i) for i, p in enumerate(PROMPTS)]
    sc = SamplingConfig(temperature=1.0, top_p=0.9, top_k=20, max_new_tokens=20)
    a, b = backend.generate(reqs, sc), backend.generate(reqs, sc)
    assert [[s.token_ids for s in ss] for ss in a] == [[s.token_ids for s in ss] for ss in b]
    assert len({tuple(s.token_ids) for ss in a for s in ss}) > len(PROMPTS)  # samples differ


def test_batch_composition_does_not_change_tokens(backend):
    rng = np.random.default_rng(0)
    ps = [f"{rng.integers(10, 99)}+{rng.integers(10, 99)}*{rng.integers(2, 9)}=?" for _ in range(16)]
    target = [Request(p, n=8, seed=100 + i) for i, p in enumerate(ps)]
    others = [Request("noise " * int(k) + "?", n=3, seed=int(k)) for k in rng.integers(1, 6, 6)]
    sc = SamplingConfig(temperature=1.0, max_new_tokens=32, batch_size=128)
    alone = backend.generate(target, sc)
    mixed = backend.generate(others[:3] + target[::-1] + others[3:],
                             SamplingConfig(temperature=1.0, max_new_tokens=32, batch_size=37))
    mixed = mixed[3:3 + len(target)][::-1]
    same = [a.token_ids == b.token_ids for ra, rb in zip(alone, mixed) for a, b in zip(ra, rb)]
    rate = sum(same) / len(same)
    print(f"batch-independence: {sum(same)}/{len(same)} samples identical = {rate:.4f}")
    assert rate >= 0.99


def test_prefix_fanout_matches_one_sequence_batches(tiny):
    model, tok = tiny
    reqs = [Request(p, n=4, seed=i) for i, p in enumerate(PROMPTS[:3])]
    sc = SamplingConfig(temperature=0.7, max_new_tokens=16)
    fan = Sampler(model, tok).generate(reqs, sc)
    solo = Sampler(model, tok).generate(reqs, SamplingConfig(temperature=0.7, max_new_tokens=16,
                                                             batch_size=1))
    same = [a.token_ids == b.token_ids for ra, rb in zip(fan, solo) for a, b in zip(ra, rb)]
    assert sum(same) >= len(same) - 1


def test_seed_of_sample_j(backend):
    """Sample j of Request(seed=s) is the same as sample j of a bigger request with seed s."""
    small = backend.generate([Request("5*5=", n=2, seed=9)], SamplingConfig(max_new_tokens=10))[0]
    big = backend.generate([Request("5*5=", n=6, seed=9)], SamplingConfig(max_new_tokens=10))[0]
    assert [s.token_ids for s in small] == [s.token_ids for s in big[:2]]


# ---------------------------------------------------------------- greedy, stops, budgets
def test_top_k_1_equals_greedy(backend):
    reqs = [Request(p, n=2, seed=i) for i, p in enumerate(PROMPTS)]
    g = backend.generate(reqs, SamplingConfig(temperature=0.0, max_new_tokens=16))
    k1 = backend.generate(reqs, SamplingConfig(temperature=1.3, top_k=1, max_new_tokens=16))
    assert [[s.token_ids for s in ss] for ss in g] == [[s.token_ids for s in ss] for ss in k1]
    assert all(ss[0].token_ids == ss[1].token_ids for ss in g)


def test_budget_gives_length_and_per_request_override(backend):
    reqs = [Request("1+1=", n=2, seed=1), Request("2+2=", n=1, seed=2, max_new_tokens=5)]
    out = backend.generate(reqs, SamplingConfig(max_new_tokens=9))
    eos = backend.tokenizer.eos_token_id
    for s, budget in [(out[0][0], 9), (out[0][1], 9), (out[1][0], 5)]:
        if eos not in s.token_ids:
            assert (s.finish_reason, s.completion_tokens) == ("length", budget) and s.truncated
        else:
            assert s.finish_reason == "stop" and s.token_ids[-1] == eos


def test_stop_string_ends_sample(backend):
    sc = SamplingConfig(temperature=1.0, max_new_tokens=30)
    reqs = [Request(p, n=2, seed=20 + i) for i, p in enumerate(PROMPTS)]
    free = backend.generate(reqs, sc)
    # pick, from each free sample's text, a 2-char string starting at char 4 as the stop string
    for req, ss in zip(reqs, free):
        s0 = ss[0]
        if len(s0.text) < 8 or s0.finish_reason != "length":
            continue
        stop = s0.text[4:6]
        st = backend.generate([req], SamplingConfig(temperature=1.0, max_new_tokens=30,
                                                    stop=(stop, "\x00never")))[0][0]
        assert st.finish_reason == "stop", (stop, s0.text)
        assert st.text == s0.text[:s0.text.index(stop) + 2] and st.text.endswith(stop)
        assert st.token_ids == s0.token_ids[:st.completion_tokens]
        assert st.logprobs == pytest.approx(s0.logprobs[:st.completion_tokens], abs=1e-6)
        break
    else:
        pytest.fail("no long free sample to derive a stop string from")


def test_eos_ends_sample_and_is_kept(tiny):
    model, tok = tiny
    req = Request("7*8=", n=1, seed=3)
    sc = SamplingConfig(temperature=1.0, max_new_tokens=30)
    free = Sampler(model, tok).generate([req], sc)[0][0]
    k = 5
    eos_like = free.token_ids[k]
    old = model.generation_config.eos_token_id
    model.generation_config.eos_token_id = [tok.eos_token_id, eos_like]   # treat it as an EOS
    try:
        s = Sampler(model, tok).generate([req], sc)[0][0]
    finally:
        model.generation_config.eos_token_id = old
    first = free.token_ids.index(eos_like)
    assert s.finish_reason == "stop" and s.token_ids == free.token_ids[:first + 1]
    assert s.completion_tokens == first + 1


def test_bf16_and_progress(tiny, capsys):
    model, tok = tiny
    b = get_backend("hf", (build_tiny("tiny-1m")[0], tok), dtype="bfloat16")
    out = b.generate([Request("1+2=", n=3, seed=0)], SamplingConfig(max_new_tokens=8), progress=True)
    assert all(np.isfinite(s.logprobs).all() and s.completion_tokens > 0 for s in out[0])
    assert b.model_info()["n_params"] > 0


def test_vllm_missing_is_a_clear_error():
    try:
        import vllm  # noqa: F401
        pytest.skip("vllm installed")
    except ImportError:
        pass
    with pytest.raises(ImportError, match=r"pip install spiral-bench\[vllm\]"):
        get_backend("vllm", "tiny")
    with pytest.raises(ValueError, match="hf"):
        get_backend("tpu", "tiny")


def test_shared_prefix_attention_equals_fanned_out_cache(tiny):
    """Reading each prompt's K/V once per group (_SharedPrefix) gives the same samples as fanning
    the prompt cache out to every row, with unequal groups (n = 1, 3, 5, a request repeated), a
    batch cut inside a group, and rows finishing early (EOS / budgets -> compaction)."""
    model, tok = tiny
    reqs = [Request(p, n=n, seed=20 + i, max_new_tokens=b) for i, (p, n, b) in enumerate(
        [("3+4=", 3, 24), ("12*7-5=?", 5, 6), ("x", 1, 24), ("3+4=", 2, 11), ("(81-19)*4+2=?\nA:", 4, 24)])]
    sc = SamplingConfig(temperature=1.0, max_new_tokens=24, batch_size=7)
    shared = Sampler(model, tok, share_prefix_min_tokens=0)
    shared.eos = torch.tensor([tok.convert_tokens_to_ids("7"), tok.convert_tokens_to_ids("=")])
    fan = Sampler(model, tok, share_prefix=False)
    fan.eos = shared.eos
    a, b = shared.generate(reqs, sc), fan.generate(reqs, sc)
    pairs = [(x, y) for ra, rb in zip(a, b) for x, y in zip(ra, rb)]
    assert {x.finish_reason for x, _ in pairs} == {"stop", "length"}
    assert len({x.completion_tokens for x, _ in pairs}) > 3
    assert all(x.token_ids == y.token_ids for x, y in pairs)
    assert max(abs(u - v) for x, y in pairs for u, v in zip(x.logprobs, y.logprobs)) < 1e-5


def test_sample_entropy_equals_teacher_forced_entropy(tiny, backend):
    """Sample.entropy = sum over generated tokens of H(softmax(logits / T)), from an unpadded forward."""
    model, tok = tiny
    reqs = [Request(p, n=2, seed=i) for i, p in enumerate(PROMPTS[:3])]
    out = backend.generate(reqs, SamplingConfig(temperature=0.7, max_new_tokens=12))
    for r, ss in zip(reqs, out):
        for s in ss:
            p = tok(r.prompt, add_special_tokens=False)["input_ids"]
            with torch.no_grad():
                logits = model(torch.tensor([p + s.token_ids])).logits[0, len(p) - 1:-1].double() / 0.7
            lp = torch.log_softmax(logits, -1)
            ref = float(-(lp.exp() * lp).sum())
            assert s.entropy > 0 and abs(s.entropy - ref) < 1e-4 * max(1.0, ref)


def test_lora_adapters_sampled_exactly(tiny):
    """The fused decode step reads W + (alpha/r) B A of peft LoRA layers (effective_weight):
    sampled log-probs equal teacher forcing through the peft model, and differ from the base's."""
    from spiral_bench.trainers.lora import LoraSettings, apply_lora, sampling_model
    model, tok = build_tiny("tiny-1m", seed=0)
    peft_model = apply_lora(model, LoraSettings(r=4, alpha=8.0))
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.2)
    peft_model.eval()
    reqs = [Request(p, n=3, seed=i) for i, p in enumerate(PROMPTS[:3])]
    out = Sampler(sampling_model(peft_model), tok).generate(reqs, SamplingConfig(temperature=1.0, max_new_tokens=16))
    worst = gap = 0.0
    base_model = build_tiny("tiny-1m", seed=0)[0]
    for r, ss in zip(reqs, out):
        for s in ss:
            ref = reference_logprobs(peft_model, tok, r.prompt, s.token_ids, 1.0)
            worst = max(worst, (ref - torch.tensor(s.logprobs, dtype=torch.float64)).abs().max().item())
            gap = max(gap, (reference_logprobs(base_model, tok, r.prompt, s.token_ids, 1.0) - ref).abs().max().item())
    assert worst <= 1e-4 and gap > 1e-2
