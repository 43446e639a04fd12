"""Bridge (spiral_bench.bridge, bridge_decode): the block's formula, zero-init identity, the group
and finished-sequence masks, lockstep log-probs against a teacher-forced group pass, save/load,
the size rule, and the backends (hf routes to the lockstep sampler, vllm refuses)."""
import math

import pytest
import torch

from spiral_bench.backends.base import Request, SamplingConfig
from spiral_bench.backends.hf import HFBackend
from spiral_bench.bridge import (
    BridgeBlock,
    BridgeConfig,
    add_bridge,
    bridge_params,
    group_context,
    is_bridged,
)
from spiral_bench.bridge_decode import (
    BridgeSampler,
    alive_from_mask,
    group_logits,
    group_token_logprobs,
)
from spiral_bench.config import ConfigError
from spiral_bench.models import TINY_PRESETS, build_tiny, load_model, save
from spiral_bench.sampling import Sampler


def bridged(seed=0, scale=0.5):
    """tiny-1m with a Bridge whose output projection is random (as after training), so it acts."""
    model, tok = build_tiny("tiny-1m", seed=0)
    stack = add_bridge(model)
    if scale:
        g = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for b in stack.blocks:
                b.o.weight.copy_(torch.randn(b.o.weight.shape, generator=g) * scale)
    return model, tok


def encode(tok, prompt, completions):
    """[n, P + max] ids and mask for one group: the prompt, then right-padded completions."""
    p = tok(prompt, add_special_tokens=False)["input_ids"]
    T = len(p) + max(len(c) for c in completions)
    ids = torch.full((len(completions), T), tok.pad_token_id)
    mask = torch.zeros(len(completions), T, dtype=torch.long)
    for i, c in enumerate(completions):
        ids[i, :len(p) + len(c)] = torch.tensor(p + c)
        mask[i, :len(p) + len(c)] = 1
    return ids, mask, len(p)


# ---------------------------------------------------------------- the block
def test_block_matches_hand_formula():
    torch.manual_seed(0)
    D, B, S = 8, 5, 3
    blk = BridgeBlock(D, bridge_dim=4, num_heads=2)
    torch.nn.init.normal_(blk.o.weight)
    torch.nn.init.normal_(blk.norm_weight)
    h = torch.randn(B, S, D)
    group = torch.tensor([0, 0, 1, 0, 1])
    alive = torch.ones(B, S, dtype=torch.bool)
    alive[3, 1:] = False     # row 3 finished after position 0
    alive[4, 2] = False
    out = blk(h, group, alive)
    ref = torch.zeros(B, S, D)
    for s in range(S):
        for b in range(B):
            heads = []
            for hd in range(2):
                sl = slice(2 * hd, 2 * hd + 2)
                x = h[:, s] / torch.sqrt(h[:, s].pow(2).mean(-1, keepdim=True) + 1e-6) * blk.norm_weight
                q, k, v = blk.q(x)[:, sl], blk.k(x)[:, sl], blk.v(x)[:, sl]
                keep = [c for c in range(B) if c == b or (group[c] == group[b] and alive[c, s])]
                a = torch.stack([q[b] @ k[c] / math.sqrt(2) for c in keep])
                heads.append((torch.softmax(a, 0)[:, None] * v[keep]).sum(0))
            ref[b, s] = blk.o(torch.cat(heads))
    assert torch.allclose(out, ref, atol=1e-5)
    # width 1: a row alone in its group gets its own value
    solo = blk(h, torch.arange(B), alive)
    assert torch.allclose(solo, blk.o(blk.v(h / torch.sqrt(h.pow(2).mean(-1, keepdim=True) + 1e-6)
                                            * blk.norm_weight)), atol=1e-6)


def test_param_counts_are_3_to_5_percent():
    for name, shape in TINY_PRESETS.items():
        model, _ = build_tiny(name)
        base = sum(p.numel() for p in model.parameters())
        stack = add_bridge(model, BridgeConfig())
        D, L, d = shape["hidden_size"], shape["num_hidden_layers"], stack.bridge_dim
        assert bridge_params(model) == L * (4 * D * d + D)
        assert 0.03 <= bridge_params(model) / base <= 0.05, (name, d, bridge_params(model) / base)
    assert {n: add_bridge(build_tiny(n)[0]).bridge_dim for n in TINY_PRESETS} == \
        {"tiny-1m": 20, "tiny-5m": 34, "tiny-20m": 54}
    with pytest.raises(ConfigError, match="multiple of num_heads"):
        add_bridge(build_tiny("tiny-1m")[0], BridgeConfig(bridge_dim=5, num_heads=2))


# ---------------------------------------------------------------- identity and masks
def test_zero_init_bridge_is_exactly_the_base_model():
    base, tok = build_tiny("tiny-1m", seed=0)
    model, _ = bridged(scale=0)
    ids, mask, _ = encode(tok, "12*7-5=?", [[5, 6, 7, 8], [9, 10], [11, 12, 13]])
    with torch.no_grad():
        want = base(input_ids=ids, attention_mask=mask).logits
        got = group_logits(model, ids, mask, torch.tensor([0, 0, 0]))
    assert torch.equal(got, want)
    # and the lockstep sampler draws what the plain sampler draws
    reqs = [Request("3+4=", n=3, seed=1), Request("(81-19)*4+2=?\nA:", n=2, seed=2)]
    sc = SamplingConfig(max_new_tokens=12, temperature=1.0)
    a = BridgeSampler(model, tok).generate(reqs, sc)
    b = Sampler(base, tok, fast_decode=False, share_prefix=False).generate(reqs, sc)
    for ra, rb in zip(a, b):
        for x, y in zip(ra, rb):
            assert x.token_ids == y.token_ids
            assert torch.allclose(torch.tensor(x.logprobs), torch.tensor(y.logprobs), atol=1e-5)


def test_bridged_model_needs_a_group_context():
    model, _ = bridged()
    with pytest.raises(RuntimeError, match="group context"):
        model(input_ids=torch.tensor([[5, 6, 7]]))
    with pytest.raises(ValueError, match="does not match"), group_context(model, torch.tensor([0, 0]), None):
        model(input_ids=torch.tensor([[5, 6, 7]]))


def test_other_prompts_and_finished_sequences_do_not_change_logits():
    model, tok = bridged()
    g = torch.Generator().manual_seed(3)
    comp = [torch.randint(5, 90, (10,), generator=g).tolist() for _ in range(5)]
    comp[2] = comp[2][:4]                       # row 2 finishes after 4 tokens
    ids, mask, P = encode(tok, "7*8=", comp[:3])
    ids2, mask2, _ = encode(tok, "7*8=", comp[3:])   # another prompt's group (same text: ids decide)
    X, M = torch.cat([ids, ids2]), torch.cat([mask, mask2])
    group = torch.tensor([0, 0, 0, 1, 1])

    def logits(x):
        with torch.no_grad():
            return group_logits(model, x, M, group)

    ref = logits(X)
    changed = X.clone()
    changed[3:, P:] = torch.randint(5, 90, changed[3:, P:].shape, generator=g)   # the other group
    changed[2, P + 3] = 50 if changed[2, P + 3] != 50 else 51                     # row 2's last token
    got = logits(changed)
    assert torch.equal(got[:2], ref[:2])
    # positive controls: an alive sibling and row 2 before it finished do change row 0
    for row, col in ((1, P + 2), (2, P + 1)):
        c = X.clone()
        c[row, col] = 50 if c[row, col] != 50 else 51
        d = (logits(c)[0] - ref[0]).abs().amax(-1)
        assert torch.all(d[:col] == 0) and d[col:].max() > 1e-3
    # alive: real tokens before the row's last one
    assert alive_from_mask(torch.tensor([[0, 1, 1, 1, 0]])).tolist() == [[False, True, True, False, False]]


# ---------------------------------------------------------------- lockstep sampling
def reference_group_logprobs(model, tok, prompt, samples, temperature):
    """Independent reference: one unpadded-prompt forward over the group, transformers' own masks."""
    ids, mask, P = encode(tok, prompt, [s.token_ids for s in samples])
    with torch.no_grad():
        logits = group_logits(model, ids, mask, torch.zeros(len(samples), dtype=torch.long))
    lp = torch.log_softmax(logits[:, P - 1:-1].double() / temperature, -1)
    return lp.gather(-1, ids[:, P:, None])[..., 0]


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_lockstep_logprobs_equal_teacher_forced_group_pass(temperature):
    model, tok = bridged()
    reqs = [Request("3+4=", n=3, seed=5), Request("(81-19)*4+2=?\nA:", n=4, seed=6)]
    sc = SamplingConfig(max_new_tokens=24, temperature=temperature, stop=tuple("abcdefgh"))
    out = BridgeSampler(model, tok).generate(reqs, sc)
    lengths = [s.completion_tokens for r in out for s in r]
    assert min(lengths) < 24 and max(lengths) > min(lengths)   # finished rows are exercised
    ids, mask, P = encode(tok, reqs[1].prompt, [s.token_ids for s in out[1]])
    for r, samples in zip(reqs, out):
        ref = reference_group_logprobs(model, tok, r.prompt, samples, temperature)
        for i, s in enumerate(samples):
            assert torch.allclose(torch.tensor(s.logprobs, dtype=torch.float64), ref[i, :len(s.token_ids)],
                                  atol=1e-4), (r.prompt, i)
    # the trainer-side pass (ready masks, sampling.token_logprobs) agrees too
    lp = group_token_logprobs(model, ids, mask, P, torch.zeros(4, dtype=torch.long), temperature)
    for i, s in enumerate(out[1]):
        assert torch.allclose(lp[i, :len(s.token_ids)], torch.tensor(s.logprobs), atol=1e-4)
    # the Bridge matters: each row teacher-forced alone gives other log-probs
    gaps = [(reference_group_logprobs(model, tok, reqs[1].prompt, [s], temperature)[0, :len(s.token_ids)]
             - ref[i, :len(s.token_ids)]).abs().max() for i, s in enumerate(out[1])]
    assert max(gaps) > 1e-3


def test_groups_do_not_depend_on_batch_composition():
    model, tok = bridged()
    sc = SamplingConfig(max_new_tokens=16, temperature=1.0)
    a = Request("3+4=", n=3, seed=1)
    alone = BridgeSampler(model, tok).generate([a], sc)[0]
    mixed = BridgeSampler(model, tok).generate([Request("x", n=2, seed=9), a, Request("99", n=4, seed=3)], sc)[1]
    assert [s.token_ids for s in alone] == [s.token_ids for s in mixed]
    # a group is never split across batches; groups pack up to batch_size rows
    small = BridgeSampler(model, tok).generate([a, Request("99", n=4, seed=3)],
                                               SamplingConfig(max_new_tokens=16, batch_size=2))
    assert [s.token_ids for s in small[0]] == [s.token_ids for s in alone]


def test_budget_prefix_consistency():
    model, tok = bridged()
    r = [Request("12*7-5=?", n=3, seed=4)]
    short = BridgeSampler(model, tok).generate(r, SamplingConfig(max_new_tokens=8))[0]
    long = BridgeSampler(model, tok).generate(r, SamplingConfig(max_new_tokens=20))[0]
    for s, t in zip(short, long):
        assert s.token_ids == t.token_ids[:len(s.token_ids)]


# ---------------------------------------------------------------- checkpoints and backends
def test_save_and_load_keep_the_bridge(tmp_path):
    model, tok = bridged(seed=2)
    save(model, tok, tmp_path / "ckpt")
    assert is_bridged(tmp_path / "ckpt") and (tmp_path / "ckpt" / "bridge.safetensors").is_file()
    loaded, _ = load_model(tmp_path / "ckpt")
    assert is_bridged(loaded) and bridge_params(loaded) == bridge_params(model)
    ids, mask, _ = encode(tok, "5-2=", [[7, 8, 9], [10, 11]])
    with torch.no_grad():
        assert torch.equal(group_logits(loaded, ids, mask, torch.tensor([0, 0])),
                           group_logits(model, ids, mask, torch.tensor([0, 0])))
    # the base weights stay a plain checkpoint: transformers alone loads them without Bridge keys
    from safetensors.torch import load_file
    assert not any(k.startswith("bridge") for k in load_file(str(tmp_path / "ckpt" / "model.safetensors")))


def test_backends(tmp_path):
    model, tok = bridged()
    hf = HFBackend(model, tok)
    assert isinstance(hf.sampler, BridgeSampler) and hf.independent_samples is False
    assert HFBackend(*build_tiny("tiny-1m")).independent_samples is True
    save(model, tok, tmp_path / "b")
    from spiral_bench.backends.vllm import VLLMBackend
    with pytest.raises(ConfigError, match="cannot run Bridge models"):
        VLLMBackend(str(tmp_path / "b"))


def test_group_pass_is_differentiable_into_the_bridge():
    model, tok = bridged(scale=0)              # untrained: W_O = 0, so only W_O gets a gradient
    ids, mask, P = encode(tok, "3+4=", [[20, 21, 22], [23, 24]])
    lp = group_token_logprobs(model, ids, mask, P, torch.tensor([0, 0]))
    lp.sum().backward()
    blk = model.bridge.blocks[0]
    assert torch.isfinite(blk.o.weight.grad).all() and blk.o.weight.grad.abs().max() > 0
    assert blk.q.weight.grad.abs().max() == 0
