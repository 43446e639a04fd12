"""Tests of trainers/rl_core.py and trainers/losses.py: hand-computed SPIRAL and loss examples,
brute-force references, and equality of loss and gradients with TRL 1.16's GRPOTrainer."""
import itertools
import math

import pytest
import torch

from spiral_bench.config import ConfigError, build
from spiral_bench.trainers.losses import aggregate
from spiral_bench.trainers.rl_core import (
    ADVANTAGES, AGGREGATION, LOSSES, SEARCH, RLLossConfig, build_rollout_batch, compute_loss,
    get_advantage, get_loss, grpo, length_control, per_token_logprobs, sample_subsets,
    spiral_aggregation, spiral_search)

# --------------------------------------------------------------------------- SPIRAL, by hand
SUBSETS = torch.tensor([[0, 1, 2, 3], [0, 1, 4, 5], [2, 3, 4, 5], [0, 2, 4, 6]])  # trace 7 in no subset
AGG_REWARDS = torch.tensor([[1., 1., 0., 0.],    # f0 = 2/4 = 0.5
                            [0., 0., 0., 1.],    # f1 = 1/4 = 0.25
                            [1., 1., 1., 0.],    # f2 = 3/4 = 0.75
                            [1., 1., 1., 1.]])   # f3 = 4/4 = 1.0
# b = (0.5 + 0.25 + 0.75 + 1.0) / 4 = 2.5 / 4 = 0.625
# f - b = [-0.125, -0.375, 0.125, 0.375]
EXPECTED_SEARCH = [
    (-0.125 - 0.375 + 0.375) / 3,   # trace 0 in G0, G1, G3 -> -0.125/3 = -0.041666...
    (-0.125 - 0.375) / 2,           # trace 1 in G0, G1     -> -0.25
    (-0.125 + 0.125 + 0.375) / 3,   # trace 2 in G0, G2, G3 -> 0.125
    (-0.125 + 0.125) / 2,           # trace 3 in G0, G2     -> 0.0
    (-0.375 + 0.125 + 0.375) / 3,   # trace 4 in G1, G2, G3 -> 0.041666...
    (-0.375 + 0.125) / 2,           # trace 5 in G1, G2     -> -0.125
    0.375,                          # trace 6 in G3 only
    0.0,                            # trace 7 uncovered
]
EXPECTED_AGG = [[0.5, 0.5, -0.5, -0.5],        # r - 0.5
                [-0.25, -0.25, -0.25, 0.75],   # r - 0.25
                [0.25, 0.25, 0.25, -0.75],     # r - 0.75
                [0.0, 0.0, 0.0, 0.0]]          # r - 1.0


def test_spiral_hand_example_all_uncovered_modes():
    assert EXPECTED_SEARCH[1] == -0.25 and EXPECTED_SEARCH[2] == 0.125 and EXPECTED_SEARCH[5] == -0.125
    adv, keep = spiral_search(SUBSETS, AGG_REWARDS, 8, uncovered="zero")
    torch.testing.assert_close(adv, torch.tensor(EXPECTED_SEARCH), atol=1e-7, rtol=0)
    assert keep.tolist() == [True] * 8
    adv, keep = spiral_search(SUBSETS, AGG_REWARDS, 8, uncovered="drop")
    torch.testing.assert_close(adv, torch.tensor(EXPECTED_SEARCH), atol=1e-7, rtol=0)
    assert keep.tolist() == [True] * 7 + [False]
    with pytest.raises(ValueError, match=r"\[\[7\]\]"):
        spiral_search(SUBSETS, AGG_REWARDS, 8, uncovered="force")
    # a covering set of subsets passes "force": G3 = {0, 2, 6, 7}, f - b unchanged
    covering = SUBSETS.clone()
    covering[3] = torch.tensor([0, 2, 6, 7])
    adv, keep = spiral_search(covering, AGG_REWARDS, 8, uncovered="force")
    assert keep.all() and adv[7].item() == pytest.approx(0.375) and adv[4].item() == pytest.approx(-0.125)
    torch.testing.assert_close(spiral_aggregation(AGG_REWARDS), torch.tensor(EXPECTED_AGG), atol=1e-7, rtol=0)


def _spiral_search_bruteforce(subsets, rewards, n_search):
    f = [sum(r) / len(r) for r in rewards]
    b = sum(f) / len(f)
    out = []
    for j in range(n_search):
        ds = [f[i] - b for i, s in enumerate(subsets) if j in s]
        out.append(sum(ds) / len(ds) if ds else 0.0)
    return out


def test_spiral_search_matches_bruteforce_and_batches():
    g = torch.Generator().manual_seed(0)
    subs, rews = [], []
    for _ in range(6):
        s = sample_subsets(10, 5, 3, g)
        r = torch.randint(0, 2, (5, 4), generator=g).float()
        adv, _ = spiral_search(s, r, 10)
        torch.testing.assert_close(adv, torch.tensor(_spiral_search_bruteforce(s.tolist(), r.tolist(), 10)),
                                   atol=1e-6, rtol=0)
        subs.append(s)
        rews.append(r)
    batched, keep = spiral_search(torch.stack(subs), torch.stack(rews), 10, uncovered="drop")
    assert batched.shape == keep.shape == (6, 10)
    for p in range(6):
        torch.testing.assert_close(batched[p], spiral_search(subs[p], rews[p], 10)[0])


def test_spiral_search_input_errors():
    with pytest.raises(ValueError, match="twice"):
        spiral_search(torch.tensor([[0, 0]]), torch.ones(1, 2), 4)
    with pytest.raises(ValueError, match="lie in"):
        spiral_search(torch.tensor([[0, 4]]), torch.ones(1, 2), 4)
    with pytest.raises(ValueError, match="uncovered"):
        spiral_search(SUBSETS, AGG_REWARDS, 8, uncovered="skip")


# --------------------------------------------------------------------------- subset sampling
@pytest.mark.parametrize("n_search,K,n,force", [(8, 4, 4, False), (8, 4, 4, True), (8, 2, 4, True),
                                                (7, 2, 4, True), (5, 10, 2, False), (9, 3, 3, True),
                                                (40, 6, 20, True), (40, 6, 20, False)])
def test_sample_subsets_distinct_sized_covering(n_search, K, n, force):
    for seed in range(30):
        s = sample_subsets(n_search, K, n, torch.Generator().manual_seed(seed), force_cover=force)
        assert s.shape == (K, n) and s.dtype == torch.long
        sets = [frozenset(row) for row in s.tolist()]
        assert all(len(x) == n for x in sets)                      # no repeated trace inside a subset
        assert len(set(sets)) == K                                 # distinct as sets
        assert all(0 <= t < n_search for x in sets for t in x)
        if force:
            assert set().union(*sets) == set(range(n_search))


def test_sample_subsets_all_subsets_deterministic_and_uncovered_possible():
    s = sample_subsets(5, 10, 2, torch.Generator().manual_seed(1))          # K = C(5, 2): every pair once
    assert sorted(tuple(r) for r in s.tolist()) == list(itertools.combinations(range(5), 2))
    a = sample_subsets(8, 4, 4, torch.Generator().manual_seed(3))
    assert torch.equal(a, sample_subsets(8, 4, 4, torch.Generator().manual_seed(3)))
    # without force_cover, some draw of 2 subsets of size 4 out of 8 leaves a trace uncovered
    missed = [len(set(sample_subsets(8, 2, 4, torch.Generator().manual_seed(k)).flatten().tolist())) < 8
              for k in range(50)]
    assert any(missed)


def test_sample_subsets_errors():
    with pytest.raises(ValueError, match=r"C\(4,4\)=1"):
        sample_subsets(4, 2, 4)
    with pytest.raises(ValueError, match="K\\*n = 1\\*4 = 4 < 8"):
        sample_subsets(8, 1, 4, force_cover=True)
    with pytest.raises(ValueError, match="n <= n_search"):
        sample_subsets(3, 1, 4)


# --------------------------------------------------------------------------- GRPO advantage, length control
def test_grpo_advantage_unbiased_std_matches_trl():
    from trl.trainer.utils import nanstd
    r = torch.tensor([[1., 0., 0., 1.], [1., 1., 1., 0.], [0., 0., 0., 0.]])
    a = grpo(r)
    # group 0: mean 0.5, unbiased std = sqrt(4 * 0.25 / 3) = sqrt(1/3)
    torch.testing.assert_close(a[0], torch.tensor([1., -1., -1., 1.]) * 0.5 / (math.sqrt(1 / 3) + 1e-4))
    # group 1: mean 0.75, deviations (.25,.25,.25,-.75), unbiased var = (3*.0625 + .5625)/3 = 0.25 -> std 0.5
    torch.testing.assert_close(a[1], torch.tensor([0.25, 0.25, 0.25, -0.75]) / (0.5 + 1e-4))
    assert a[2].abs().max() == 0
    ref = (r - r.mean(1, keepdim=True)) / (nanstd(r, dim=1, keepdim=True) + 1e-4)   # TRL's formula
    torch.testing.assert_close(a, ref)
    torch.testing.assert_close(grpo(r, scale_std=False), r - r.mean(1, keepdim=True))
    torch.testing.assert_close(grpo(r[0]), a[0])
    assert grpo(torch.tensor([1.0])).item() == 0.0


def test_length_control():
    adv = torch.tensor([0.5, -0.5, 0.5, 0.0, 1.0, 0.3])
    lengths = torch.tensor([10, 20, 5, 30, 8, 9])
    # > 8 and positive -> 0; negative kept; length 8 is not longer than 8
    assert length_control(adv, lengths, 8).tolist() == [0.0, -0.5, 0.5, 0.0, 1.0, 0.0]


def test_registries():
    assert set(ADVANTAGES) == {"grpo", "spiral_search", "spiral_aggregation", "length_control"}
    assert get_advantage("grpo") is grpo and set(LOSSES) == {"clipped", "is_reinforce"}
    with pytest.raises(KeyError, match="known"):
        get_advantage("nope")
    with pytest.raises(KeyError, match="known"):
        get_loss("nope")


# --------------------------------------------------------------------------- losses by hand
# old = 0, logp = log w. Row 0: A = +1, w = (1.1, 1.5, masked); row 1: A = -2, w = (0.5, 0.9, 1.3)
W = torch.tensor([[1.1, 1.5, 1.0], [0.5, 0.9, 1.3]])
MASK = torch.tensor([[1, 1, 0], [1, 1, 1]])
ADV = torch.tensor([1.0, -2.0])


def _loss(cfg: dict, w=W, ref=None, old=torch.zeros(2, 3), adv=ADV):
    logp = torch.log(w).requires_grad_(True)
    loss, metrics = compute_loss(logp, old, adv, MASK, ref, build(RLLossConfig, cfg))
    loss.backward()
    return loss.item(), logp.grad, metrics


def test_clipped_token_level_by_hand():
    # eps 0.2: row 0 tokens: -min(1.1, 1.1) = -1.1, -min(1.5, 1.2) = -1.2
    # row 1 (A=-2): -min(-1.0, 0.8*-2=-1.6) = 1.6, -min(-1.8, -1.8) = 1.8, -min(-2.6, 1.2*-2=-2.4) = 2.6
    loss, grad, m = _loss({"loss_agg": "grpo"})
    assert loss == pytest.approx(((-1.1 - 1.2) / 2 + (1.6 + 1.8 + 2.6) / 3) / 2)   # 0.425
    loss, grad, m = _loss({"loss_agg": "dapo"})
    assert loss == pytest.approx((-2.3 + 6.0) / 5)                                 # 0.74
    # d/dlogp of -w A / 5 where unclipped, 0 where the clipped branch is taken
    torch.testing.assert_close(grad, torch.tensor([[-1.1 / 5, 0, 0], [0, 1.8 / 5, 2.6 / 5]]))
    assert m["clip_high"] == pytest.approx(1 / 5) and m["clip_low"] == pytest.approx(1 / 5)
    loss, _, _ = _loss({"loss_agg": "dr_grpo", "max_completion_length": 4})
    assert loss == pytest.approx(3.7 / (2 * 4))                                    # B * max_len = 8
    loss, _, _ = _loss({"loss_agg": "dapo", "eps_high": 0.6})                      # clip-higher: 1.5 < 1.6
    assert loss == pytest.approx((-1.1 - 1.5 + 6.0) / 5)


def test_clipped_sequence_level_by_hand():
    # GSPO: w0 = exp(mean(log 1.1, log 1.5)) = sqrt(1.65) = 1.2845 -> clipped at 1.2 (A>0): -1.2
    #       w1 = (0.5*0.9*1.3)^(1/3) = 0.8366 in [0.8, 1.2]: -(-2 * w1) = 2 * w1
    w1 = (0.5 * 0.9 * 1.3) ** (1 / 3)
    loss, grad, _ = _loss({"loss_agg": "grpo", "ratio_level": "sequence"})
    assert loss == pytest.approx((-1.2 + 2 * w1) / 2)
    # gradient: row 0 clipped -> 0; row 1: d(2 w1)/dlogp_t / 2 = w1 / 3 per token
    torch.testing.assert_close(grad, torch.tensor([[0, 0, 0], [w1 / 3] * 3]))


def test_is_reinforce_by_hand():
    loss, grad, _ = _loss({"surrogate": "is_reinforce", "loss_agg": "dapo"})
    assert loss == pytest.approx((-1.1 - 1.5 + 1.0 + 1.8 + 2.6) / 5)              # -w A
    torch.testing.assert_close(grad, torch.tensor([[-1.1, -1.5, 0], [1.0, 1.8, 2.6]]) / 5)
    loss, grad, m = _loss({"surrogate": "is_reinforce", "loss_agg": "dapo", "is_truncation": 1.2})
    lw = torch.log(W)
    assert loss == pytest.approx(float(-(1.1 * lw[0, 0] + 1.2 * lw[0, 1]) + 2 * (0.5 * lw[1, 0] + 0.9 * lw[1, 1]
                                                                            + 1.2 * lw[1, 2])) / 5, rel=1e-6)
    torch.testing.assert_close(grad, torch.tensor([[-1.1, -1.2, 0], [1.0, 1.8, 2.4]]) / 5)
    assert m["is_truncated"] == pytest.approx(2 / 5)


def test_kl_k3_by_hand():
    # A = 0 and on-policy: the loss is beta * mean k3; ref - logp = 0.5 -> e^0.5 - 0.5 - 1
    logp = torch.log(W)
    loss, _, m = _loss({"beta": 0.1, "loss_agg": "dapo"}, ref=logp + 0.5, old=None, adv=torch.zeros(2))
    assert loss == pytest.approx(0.1 * (math.exp(0.5) - 1.5)) and m["kl"] == pytest.approx(math.exp(0.5) - 1.5)
    # d/dlogp of beta k3 / 5 tokens: k3' = 1 - e^0.5; with the IS bias correction (w = 1, dw/dlogp = 1):
    # (w k3)' = k3 + k3' = e^0.5 - 1.5 + 1 - e^0.5 = -0.5
    _, grad, _ = _loss({"beta": 0.1, "loss_agg": "dapo"}, ref=logp + 0.5, old=None, adv=torch.zeros(2))
    torch.testing.assert_close(grad, MASK * 0.1 * (1 - math.exp(0.5)) / 5)
    loss, grad, _ = _loss({"beta": 0.1, "loss_agg": "dapo", "kl_bias_correction": True}, ref=logp + 0.5, old=None,
                          adv=torch.zeros(2))
    assert loss == pytest.approx(0.1 * (math.exp(0.5) - 1.5))
    torch.testing.assert_close(grad, MASK * 0.1 * -0.5 / 5)
    with pytest.raises(ValueError, match="ref_logprobs"):
        _loss({"beta": 0.1})


def test_loss_config_validation_and_dapo_global_count():
    with pytest.raises(ConfigError, match="max_completion_length"):
        build(RLLossConfig, {"loss_agg": "dr_grpo"})
    with pytest.raises(ConfigError, match="surrogate"):
        build(RLLossConfig, {"surrogate": "ppo2"})
    x = torch.ones(2, 3)
    assert aggregate(x, MASK.float(), "dapo", num_items=10).item() == pytest.approx(0.5)  # 5 tokens / 10


# --------------------------------------------------------------------------- rollout batch
def test_build_rollout_batch_layout():
    b = build_rollout_batch([[5, 6], [7]], [[8, 9, 10], []], pad_id=0, sampling_logprobs=[[-1., -2., -3.], []],
                            rewards=[1, 0], roles=[SEARCH, AGGREGATION], group_ids=[3, 3])
    assert b.prompt_width == 2 and len(b) == 2
    assert b.input_ids.tolist() == [[5, 6, 8, 9, 10], [0, 7, 0, 0, 0]]
    assert b.attention_mask.tolist() == [[1, 1, 1, 1, 1], [0, 1, 0, 0, 0]]
    assert b.completion_mask.tolist() == [[0, 0, 1, 1, 1], [0, 0, 0, 0, 0]]
    assert b.old_logprobs.tolist() == [[0, 0, -1, -2, -3], [0, 0, 0, 0, 0]]
    assert b.completion_lengths.tolist() == [3, 0] and b.roles.tolist() == [0, 1]
    s = b.select(torch.tensor([False, True]))
    assert s.input_ids.tolist() == [[0, 7, 0, 0, 0]] and s.rewards.tolist() == [0.0]
    t = b.trl_inputs()
    assert t["completion_ids"].tolist() == [[8, 9, 10], [0, 0, 0]] and t["num_items_in_batch"].item() == 3
    with pytest.raises(ValueError, match="log-probs"):
        build_rollout_batch([[1]], [[2, 3]], 0, sampling_logprobs=[[-1.0]])
    with pytest.raises(ValueError, match="at least one token"):
        build_rollout_batch([[]], [[2]], 0)


# --------------------------------------------------------------------------- tiny model, TRL
VOCAB = "abcdefghijklmnopqrstuvwxyz0123456789+-=*"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast, Qwen3Config, Qwen3ForCausalLM
    d = tmp_path_factory.mktemp("tiny")
    vocab = {"<pad>": 0, "<eos>": 1, **{c: i + 2 for i, c in enumerate(VOCAB)}}
    tk = Tokenizer(models.WordLevel(vocab, unk_token="<pad>"))
    tk.pre_tokenizer = pre_tokenizers.Split("", "isolated")
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, pad_token="<pad>", eos_token="<eos>", padding_side="left")
    torch.manual_seed(0)
    cfg = Qwen3Config(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, head_dim=8, max_position_embeddings=64,
                      pad_token_id=0, eos_token_id=1, bos_token_id=1, tie_word_embeddings=False)
    Qwen3ForCausalLM(cfg).save_pretrained(d)
    tok.save_pretrained(d)
    return d, tok


def _rollout(tok, gen_seed=0, G=4, C=6):
    """2 prompts x G random completions (variable lengths, eos-terminated), with GRPO advantages."""
    g = torch.Generator().manual_seed(gen_seed)
    prompts = [tok("ab+c=").input_ids, tok("7*3=").input_ids]       # different lengths: left padding
    p_ids, c_ids, groups = [], [], []
    for gi, p in enumerate(prompts):
        for _ in range(G):
            L = int(torch.randint(1, C + 1, (1,), generator=g))
            c = torch.randint(2, 42, (L,), generator=g).tolist()
            c[-1] = 1 if L < C else c[-1]
            p_ids.append(p)
            c_ids.append(c)
            groups.append(gi)
    rewards = torch.randint(0, 2, (2, G), generator=g).float()
    rewards[0, 0], rewards[0, 1] = 1.0, 0.0                            # no zero-advantage group
    return build_rollout_batch(p_ids, c_ids, tok.pad_token_id, rewards=rewards.flatten(),
                               advantages=grpo(rewards).flatten(), group_ids=groups)


def test_per_token_logprobs_match_unpadded_rows(tiny):
    from transformers import AutoModelForCausalLM
    d, tok = tiny
    model = AutoModelForCausalLM.from_pretrained(d)
    b = _rollout(tok)
    lp, ent = per_token_logprobs(model, b.input_ids, b.attention_mask, b.completion_mask, temperature=0.7,
                                 return_entropy=True)
    for r in range(len(b)):
        real = b.input_ids[r][b.attention_mask[r].bool()]
        n_c = int(b.completion_lengths[r])
        with torch.no_grad():
            logits = model(real.unsqueeze(0)).logits[0, :-1] / 0.7
        ref = torch.log_softmax(logits, -1).gather(-1, real[1:, None])[:, 0][-n_c:]
        ref_ent = -(logits.softmax(-1) * logits.log_softmax(-1)).sum(-1)[-n_c:]
        P = b.prompt_width
        torch.testing.assert_close(lp[r, P:P + n_c].detach(), ref, atol=1e-5, rtol=0)
        torch.testing.assert_close(ent[r, P:P + n_c].detach(), ref_ent, atol=1e-5, rtol=0)
        assert lp[r][~b.completion_mask[r].bool()].abs().max() == 0


def _trl_trainer(d, tok, tmp_path, loss_type, max_completion_length, **kw):
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer
    args = GRPOConfig(output_dir=str(tmp_path / "trl"), report_to=[], use_cpu=True, num_generations=4,
                      per_device_train_batch_size=8, max_completion_length=max_completion_length,
                      loss_type=loss_type, save_strategy="no", bf16=False, **kw)  # TRL defaults to bf16 autocast
    trainer = GRPOTrainer(model=str(d), reward_funcs=lambda completions, **_: [0.0] * len(completions),
                          args=args, train_dataset=Dataset.from_dict({"prompt": ["ab"] * 8}), processing_class=tok)
    trainer.current_gradient_accumulation_steps = 1   # what Trainer's loop sets with gradient_accumulation_steps=1
    trainer.model.train()
    return trainer


def _grads(model):
    return {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.filterwarnings("ignore:.*gradient_checkpointing.*:FutureWarning")
@pytest.mark.parametrize("loss_type,level,beta,eps_high,kl_corr,temp", [
    ("grpo", "token", 0.0, None, False, 1.0), ("dr_grpo", "token", 0.0, None, False, 1.0),
    ("dapo", "token", 0.0, None, False, 1.0), ("dapo", "token", 0.0, 0.28, False, 0.7),
    ("grpo", "sequence", 0.0, None, False, 1.0), ("dapo", "token", 0.04, None, False, 1.0),
    ("grpo", "token", 0.04, None, True, 1.0)])
def test_loss_and_grads_equal_trl_grpo_trainer(tiny, tmp_path, loss_type, level, beta, eps_high, kl_corr, temp):
    d, tok = tiny
    max_len = 8                                   # > the widest completion (6), so dr_grpo's constant matters
    kw = {"importance_sampling_level": level, "beta": beta, "use_bias_correction_kl": kl_corr, "temperature": temp}
    if eps_high is not None:
        kw["epsilon_high"] = eps_high
    trainer = _trl_trainer(d, tok, tmp_path, loss_type, max_len, **kw)
    model = trainer.model
    b = _rollout(tok, gen_seed=1)
    g = torch.Generator().manual_seed(2)
    with torch.no_grad():                          # old policy = current one + noise, so clipping engages
        cur = per_token_logprobs(model, b.input_ids, b.attention_mask, b.completion_mask, temperature=temp)
        b.old_logprobs = (cur + 0.3 * torch.randn(cur.shape, generator=g)) * b.completion_mask
        ref = (cur + 0.2 * torch.randn(cur.shape, generator=g)) * b.completion_mask
    inputs = b.trl_inputs()
    if beta:
        inputs["ref_per_token_logps"] = ref[:, b.prompt_width:]

    model.zero_grad()
    trl_loss = trainer.compute_loss(model, inputs)
    trl_loss.backward()
    trl_grads = _grads(model)

    model.zero_grad()
    cfg = build(RLLossConfig, {"loss_agg": loss_type, "ratio_level": level, "beta": beta,
                               "eps_high": eps_high if eps_high is not None else 0.2,
                               "max_completion_length": max_len, "kl_bias_correction": kl_corr})
    assert trainer.temperature == temp
    logp = per_token_logprobs(model, b.input_ids, b.attention_mask, b.completion_mask, temperature=temp)
    loss, metrics = compute_loss(logp, b.old_logprobs, b.advantages, b.completion_mask, ref if beta else None, cfg)
    loss.backward()
    ours = _grads(model)

    print(f"{loss_type}/{level}/beta={beta}/T={temp}: |loss diff| = {abs(loss.item() - trl_loss.item()):.2e}, max |grad diff| = "
          f"{max((ours[n] - trl_grads[n]).abs().max().item() for n in ours):.2e}, clip={metrics['clip_region']:.3f}")
    assert metrics["clip_region"] > 0            # the clipped branch is exercised
    assert abs(loss.item() - trl_loss.item()) <= 1e-5, (loss.item(), trl_loss.item())
    assert set(ours) == set(trl_grads) and len(ours) == len(list(model.parameters()))
    for n in ours:
        assert trl_grads[n].abs().max() > 0, n
        torch.testing.assert_close(ours[n], trl_grads[n], atol=1e-5, rtol=1e-5, msg=n)


def test_length_buckets_hand_computed():
    from spiral_bench.trainers.rl_core import length_buckets
    # cost = rows x (max prompt + max completion) + overhead per group:
    # pairs {0,1},{2,3}: 2*2+1 + 2*11+1 = 28 < singletons 30 < one group 45
    assert length_buckets([1, 1, 1, 1], [10, 1, 10, 1], overhead=1) == [[1, 3], [0, 2]]
    assert length_buckets([1, 1, 1, 1], [10, 1, 10, 1], overhead=1000) == [[1, 3, 0, 2]]
    assert length_buckets([], []) == []
    g = length_buckets([5, 1, 9, 2, 2, 7], [3, 30, 1, 8, 8, 2], overhead=4)
    assert sorted(i for grp in g for i in grp) == list(range(6))


def test_packed_logprobs_equal_one_row_per_trace():
    """Completions packed behind one copy of their prompt get the log-probs (and gradients) of their
    own unpadded rows."""
    from spiral_bench.models import build_tiny
    from spiral_bench.trainers.rl_core import packed_logprobs
    model, tok = build_tiny("tiny-1m", seed=0)
    g = torch.Generator().manual_seed(0)
    rnd = lambda n: torch.randint(5, 60, (n,), generator=g).tolist()
    packs = [(rnd(7), [rnd(5), rnd(1), rnd(9)]), (rnd(3), [rnd(4)]), (rnd(12), [rnd(2), rnd(6)])]
    got = packed_logprobs(model, packs, tok.pad_token_id, temperature=0.7)
    assert [len(x) for x in got] == [5, 1, 9, 4, 2, 6]
    refs = []
    for p, cs in packs:
        for c in cs:
            logits = model(torch.tensor([p + c])).logits[0, len(p) - 1:-1] / 0.7
            refs.append(torch.log_softmax(logits, -1).gather(-1, torch.tensor(c)[:, None])[:, 0])
    for a, b in zip(got, refs):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=0)
    ga = torch.autograd.grad(sum(x.sum() for x in got), model.lm_head.weight)[0]
    gb = torch.autograd.grad(sum(x.sum() for x in refs), model.lm_head.weight)[0]
    torch.testing.assert_close(ga, gb, atol=1e-5, rtol=1e-4)
