"""Compute accounting: hand-computed token/FLOP figures, a brute-force positional reference, and the
k-sample cell convention (prompt once, k/n of the pool's generated tokens)."""
import itertools

import pytest

import numpy as np

from spiral_bench.compute import (Compute, attention_flops, expected_subset_compute, expected_subset_tokens,
                                floor_compute, request_compute)

INFO = {"n_params_nonembedding": 1000, "n_layers": 2, "d_model": 8}


def brute_flops(P, G, info=INFO):
    """Independent reference: walk every processed token position."""
    N, l, d = info["n_params_nonembedding"], info["n_layers"], info["d_model"]
    total = sum(2 * N + 2 * l * i * d for i in range(1, P + 1))          # prompt, once
    for g in G:
        total += sum(2 * N + 2 * l * i * d for i in range(P + 1, P + g + 1))
    return total


def test_request_compute_hand_values():
    c = request_compute(5, [8, 3], 10, INFO)
    # dense 2*1000*(5+11)=32000; attn 16*30 + 16*(182-30) + 16*(72-30) = 480+2432+672
    assert c == Compute(5.0, 11.0, 20.0, 35584.0)
    assert c.flops == brute_flops(5, [8, 3])


@pytest.mark.parametrize("P,G", [(0, [4]), (7, []), (13, [0, 1, 29, 5]), (1, [1])])
def test_request_compute_matches_positional_sum(P, G):
    c = request_compute(P, G, 32, INFO)
    assert c.flops == brute_flops(P, G)
    assert (c.prompt_tokens, c.generated_tokens, c.max_token_budget) == (P, sum(G), 32 * len(G))


def test_attention_term_formula():
    assert attention_flops(0, 3, 2, 8) == 2 * 2 * 8 * (1 + 2 + 3)
    assert attention_flops(3, 5, 1, 1) == 2 * (4 + 5)


def test_expected_subset_compute_equals_subset_average():
    P, G, L = 6, [3, 9, 0, 4, 11], 12
    for k in range(1, len(G) + 1):
        subs = [request_compute(P, list(s), L, INFO) for s in itertools.combinations(G, k)]
        avg = Compute.total(subs)
        m = len(subs)
        e = expected_subset_compute(P, G, k, L, INFO)
        assert e.prompt_tokens == P
        assert e.generated_tokens == pytest.approx(avg.generated_tokens / m)
        assert e.max_token_budget == k * L
        assert e.flops == pytest.approx(avg.flops / m)
    with pytest.raises(ValueError, match="k=6"):
        expected_subset_compute(P, G, 6, L, INFO)


def test_missing_model_info_is_named():
    with pytest.raises(ValueError, match="d_model"):
        request_compute(1, [1], 1, {"n_params_nonembedding": 1, "n_layers": 1})


def test_compute_addition():
    assert Compute(1, 2, 3, 4.0) + Compute(10, 20, 30, 40.0) == Compute(11, 22, 33, 44.0)
    assert Compute.total([]) == Compute()


def test_k_sample_cell_counts_the_prompt_once():
    P, G = 7, [3, 9, 0, 4]
    for k in range(1, 5):
        prompt, gen = expected_subset_tokens(P, G, k)
        assert prompt == 7.0                                     # once, not k times
        assert gen == pytest.approx(k * np.mean(G))
        e = expected_subset_compute(P, G, k, 10, INFO)           # the cell store's figures use the same rule
        assert (e.prompt_tokens, e.generated_tokens) == (prompt, gen)
    with pytest.raises(ValueError, match="k=0"):
        expected_subset_tokens(P, G, 0)


def test_floor_compute():
    assert floor_compute([[0.0, 5.0], [2.0, 0.0]], 5.0).tolist() == [[5e-9, 5.0], [2.0, 5e-9]]
    assert floor_compute([0.0], 0.0).tolist() == [1e-9]
