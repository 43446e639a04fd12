"""Scaffolds with a scripted fake policy: planted answers, hand-computed results and token counts."""
import math
from collections import Counter

import pytest

from fakes import INFO, FakeTask, ScriptedBackend, candidate_answers, planted_policy
from spiral_bench.backends.base import SamplingConfig, derive_seed
from spiral_bench.compute import request_compute
from spiral_bench.config import ConfigError, build
from spiral_bench.scaffolds import (SCAFFOLDS, ScaffoldConfig, aggregate, majority, majority_vote, parallel,
                                    rsa, run_scaffold, single)

L = 16
SAMPLING = SamplingConfig(max_new_tokens=L)


def brute_flops(P, G):
    N, l, d = INFO["n_params_nonembedding"], INFO["n_layers"], INFO["d_model"]
    t = sum(2 * N + 2 * l * i * d for i in range(1, P + 1))
    for g in G:
        t += sum(2 * N + 2 * l * i * d for i in range(P + 1, P + g + 1))
    return t


def setup(search, gold, aggregator="majority", **kw):
    task = FakeTask(gold)
    qs = {f"q{i}": g for i, g in enumerate(gold)}
    be = ScriptedBackend(planted_policy(search, aggregator, gold=qs), **kw)
    return task, task.problems(), be


# ------------------------------------------------------------------------------- majority
MAJ_SEARCH = {"q0": ["7", "2", "7", None], "q1": ["1", "1", "3", None], "q2": ["5", "4", None, None],
              "q3": [None, None, None, None]}
MAJ_GOLD = ["7", "3", "5", "0"]


def test_majority_planted_answers_and_tokens():
    task, probs, be = setup(MAJ_SEARCH, MAJ_GOLD)
    recs = majority(be, task, probs, SAMPLING, n=4, seed=11)
    assert len(be.calls) == 1 and len(be.calls[0]) == 4          # one call, one request per problem
    assert [r.answer for r in recs[:2]] == ["7", "1"]
    assert [r.correct for r in recs[:2]] == [1.0, 0.0]
    assert recs[2].answer in ("4", "5") and recs[2].correct == float(recs[2].answer == "5")
    assert recs[3].answer is None and recs[3].correct == 0.0      # None does not vote
    # "ANSWER=7" is 8 chars, "none" 4: p0 generates 8+8+8+4 = 28, prompt "Q q0\n" = 5, budget 4*16
    c = recs[0].compute
    assert (c.prompt_tokens, c.generated_tokens, c.max_token_budget) == (5, 28, 64)
    assert c.flops == brute_flops(5, [8, 8, 8, 4])
    assert recs[3].compute.generated_tokens == 16


def test_majority_tie_is_a_reproducible_seeded_draw():
    task, probs, be = setup(MAJ_SEARCH, MAJ_GOLD)
    p2 = probs[2:3]
    wins = [majority(be, task, p2, SAMPLING, n=4, seed=s)[0].answer for s in range(200)]
    again = [majority(be, task, p2, SAMPLING, n=4, seed=s)[0].answer for s in range(200)]
    assert wins == again
    cnt = Counter(wins)
    assert set(cnt) == {"4", "5"} and 70 <= cnt["5"] <= 130       # fair coin, 200 draws: +-4.2 sd
    # the draw does not depend on the order of the traces
    assert majority_vote(["5", "4", None], 99)[0] == majority_vote([None, "4", "5"], 99)[0]
    assert majority_vote([None, None], 1) == (None, None)
    assert majority_vote(["a", "b", "b"], 1) == ("b", 1)


def test_parallel_and_single():
    task, probs, be = setup(MAJ_SEARCH, MAJ_GOLD)
    recs = parallel(be, task, probs, SAMPLING, n=4, seed=0)
    assert [r.correct for r in recs] == [1.0, 1.0, 1.0, 0.0]      # pass@4: any correct
    assert [r.answer for r in recs] == ["7", "3", "5", None]
    assert recs[1].majority_correct == 0.0
    one = single(be, task, probs, SAMPLING, seed=0)
    assert [r.answer for r in one] == ["7", "1", "5", None]       # sample 0 of each
    assert [r.compute.generated_tokens for r in one] == [8, 8, 8, 4]
    assert one[0].compute.max_token_budget == L


# ------------------------------------------------------------------------------ aggregate
def test_aggregate_set_size_shuffle_and_truncation():
    long = ("raw", "z" * 12 + "ANSWER=7")                         # 20 chars > 16: truncated, no answer
    search = {"q0": ["7", long, "2", "9"], "q1": ["3", "3", "1", "8"]}
    task, probs, be = setup(search, ["7", "3"], aggregator="first")
    recs = aggregate(be, task, probs, SAMPLING, n=4, set_size=2, seed=5)
    assert len(be.calls) == 2 and len(be.calls[1]) == 2           # one aggregation request per problem
    cand_texts = {0: ["ANSWER=7", "z" * 12 + "ANSW", "ANSWER=2", "ANSWER=9"], 1: ["ANSWER=3", "ANSWER=3", "ANSWER=1", "ANSWER=8"]}
    for b, (r, req) in enumerate(zip(recs, be.calls[1])):
        shown = r.steps[1]["sets"][0]
        assert len(shown) == 2 and len(set(shown)) == 2 and set(shown) <= set(range(4))
        texts = [cand_texts[b][i] for i in shown]
        trunc = [b == 0 and i == 1 for i in shown]
        assert req.prompt == task.aggregation_prompt(probs[b], texts, trunc)
        assert (" (truncated)" in req.prompt) == any(trunc)
        first = candidate_answers(req.prompt)[0]                  # aggregator copies the first shown
        assert r.answer == first and r.correct == float(first == ["7", "3"][b])
        # tokens: search layer + one aggregation trace "agg ANSWER=x" (12 chars, or "agg none" 8)
        gen0 = [len(t) for t in cand_texts[b]]
        agg_len = 8 if first is None else 12
        c = r.compute
        assert c.prompt_tokens == 5 + len(req.prompt)
        assert c.generated_tokens == sum(gen0) + agg_len
        assert c.max_token_budget == 4 * L + L
        assert c.flops == brute_flops(5, gen0) + brute_flops(len(req.prompt), [agg_len])
    # with set_size = n the truncated candidate is always shown, and marked
    full = aggregate(be, task, probs[:1], SAMPLING, n=2, set_size=2, seed=5)[0]
    prompt = be.calls[-1][0].prompt
    i_long = full.steps[1]["sets"][0].index(1)
    assert f"Candidate {i_long + 1} (truncated):\n{'z' * 12}ANSW\n" in prompt and prompt.count("(truncated)") == 1
    # same seed -> same sets; across seeds and problems the sets and their order vary
    again = aggregate(be, task, probs, SAMPLING, n=4, set_size=2, seed=5)
    assert [r.steps[1]["sets"] for r in again] == [r.steps[1]["sets"] for r in recs]
    sets = {tuple(aggregate(be, task, probs[:1], SAMPLING, n=4, set_size=2, seed=s)[0].steps[1]["sets"][0])
            for s in range(60)}
    assert len(sets) == 12                                        # all 4*3 ordered pairs appear


def test_aggregate_all_candidates_shuffled_order():
    search = {f"q{i}": ["1", "2", "3", "4"] for i in range(40)}
    task, probs, be = setup(search, ["1"] * 40, aggregator="first")
    recs = aggregate(be, task, probs, SAMPLING, n=4, set_size=4, seed=0)
    firsts = Counter(r.steps[1]["sets"][0][0] for r in recs)
    assert all(sorted(r.steps[1]["sets"][0]) == [0, 1, 2, 3] for r in recs)
    assert len(firsts) >= 3                                       # not always the sampled order
    assert sum(r.correct for r in recs) == firsts[0]              # correct iff candidate 0 shown first


# ------------------------------------------------------------------------------------ rsa
def test_rsa_population_accuracy_per_step_full_subsets():
    search = {"q0": ["7", "7", "2", "9"], "q1": ["1", "1", "3", None], "q2": ["5", "5", "5", "4"]}
    task, probs, be = setup(search, ["7", "3", "5"], aggregator="majority")
    recs = rsa(be, task, probs, SAMPLING, population=4, subset=4, steps=2, seed=3)
    assert len(be.calls) == 3 and [len(c) for c in be.calls] == [3, 12, 12]
    acc = [[s["accuracy"] for s in r.steps] for r in recs]
    assert acc == [[0.5, 1.0, 1.0], [0.25, 0.0, 0.0], [0.75, 1.0, 1.0]]
    assert [[s["majority_correct"] for s in r.steps] for r in recs] == [[1, 1, 1], [0, 0, 0], [1, 1, 1]]
    assert [r.correct for r in recs] == [1.0, 0.0, 1.0] and [r.answer for r in recs] == ["7", "1", "5"]
    # tokens: step 0 as sampled; each later step: 4 traces "agg ANSWER=x" of 12 chars
    r0 = recs[0]
    agg_prompts = [q.prompt for q in be.calls[1][:4] + be.calls[2][:4]]
    assert r0.compute.generated_tokens == 4 * 8 + 2 * 4 * 12
    assert r0.compute.prompt_tokens == 5 + sum(len(p) for p in agg_prompts)
    assert r0.compute.max_token_budget == 4 * L + 2 * 4 * L       # N*L + T*N*L
    assert r0.compute.flops == pytest.approx(brute_flops(5, [8] * 4) + sum(brute_flops(len(p), [12]) for p in agg_prompts))
    assert sum(s["compute"].generated_tokens for s in r0.steps) == r0.compute.generated_tokens


def test_rsa_random_subsets_oracle_aggregator():
    n_prob = 300
    search = {f"q{i}": ["7", "1", "2", "3"] for i in range(n_prob)}
    task, probs, be = setup(search, ["7"] * n_prob, aggregator="oracle")
    recs = rsa(be, task, probs, SAMPLING, population=4, subset=2, steps=1, seed=0)
    for r in recs:
        sets = r.steps[1]["sets"]
        assert r.steps[1]["rewards"] == [float(0 in s) for s in sets]  # correct iff the gold trace was shown
        assert all(len(s) == 2 and len(set(s)) == 2 for s in sets)
    mean1 = sum(r.steps[1]["accuracy"] for r in recs) / n_prob
    expect = 1 - math.comb(3, 2) / math.comb(4, 2)                # 0.5
    assert abs(mean1 - expect) < 4 * math.sqrt(0.25 / (4 * n_prob))
    assert all(r.steps[0]["accuracy"] == 0.25 for r in recs)


def test_rsa_seeds_and_candidate_reuse():
    search = {"q0": ["7", "2", "2", "9"], "q1": ["3", "1", "3", "8"]}
    task, probs, be = setup(search, ["7", "3"], aggregator="first")
    recs = rsa(be, task, probs, SAMPLING, population=4, subset=3, steps=2, seed=8)
    # explicit derived seeds: layer 0 shared by all scaffolds, one seed per (step, problem, member)
    assert [q.seed for q in be.calls[0]] == [derive_seed(8, "search", 0, p.id) for p in probs]
    assert [q.seed for q in be.calls[2]] == [derive_seed(8, "rsa", 2, p.id, i) for p in probs for i in range(4)]
    # reusing pooled traces (the first 4 of 6) gives the same records with two calls fewer
    pool = [s for s in ScriptedBackend(be.policy).generate(
        [type(be.calls[0][0])(q.prompt, 6, q.seed, L) for q in be.calls[0]], SAMPLING)]
    be2 = ScriptedBackend(be.policy)
    reused = rsa(be2, task, probs, SAMPLING, population=4, subset=3, steps=2, seed=8, candidates=pool)
    assert len(be2.calls) == 2 and reused == recs
    assert recs == rsa(ScriptedBackend(be.policy), task, probs, SAMPLING, population=4, subset=3, steps=2, seed=8)
    # step t of a T-step run equals the T=t run (steps do not depend on T)
    short = rsa(ScriptedBackend(be.policy), task, probs, SAMPLING, population=4, subset=3, steps=1, seed=8)
    assert [r.steps for r in short] == [r.steps[:2] for r in recs]


# --------------------------------------------------------------------------------- config
def test_config_and_registry():
    assert set(SCAFFOLDS) == {"single", "parallel", "majority", "aggregate", "rsa"}
    cfg = build(ScaffoldConfig, {"name": "majority", "n": 4, "seed": 11})
    task, probs, be = setup(MAJ_SEARCH, MAJ_GOLD)
    assert run_scaffold(cfg, be, task, probs, SAMPLING) == majority(be, task, probs, SAMPLING, n=4, seed=11)
    with pytest.raises(ConfigError, match="name"):
        build(ScaffoldConfig, {"name": "majorty"})
    with pytest.raises(ConfigError, match="set_size"):
        build(ScaffoldConfig, {"name": "aggregate", "n": 2, "set_size": 4})
    with pytest.raises(ConfigError, match="subset"):
        build(ScaffoldConfig, {"name": "rsa", "population": 2, "subset": 3})
    with pytest.raises(ConfigError, match="steps"):
        build(ScaffoldConfig, {"steps": -1})
    assert request_compute(5, [8], L, INFO).flops == brute_flops(5, [8])
