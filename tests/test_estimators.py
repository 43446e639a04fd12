"""pass@k, maj@k and RSA population accuracy against brute-force enumeration of all k-subsets,
exact rational arithmetic and hand-computed cases."""
import itertools
import math
from collections import Counter
from fractions import Fraction

import numpy as np
import pytest

from spiral_bench import estimators as est
from spiral_bench.estimators import (DependentSamplesError, maj_at_k, maj_at_k_single, pass_at_k,
                                     pass_at_k_pool, rsa_population_accuracy)


def brute_pass(r, k):
    """E over all k-subsets of the best correctness in the subset."""
    return float(np.mean([max(r[i] for i in s) for s in itertools.combinations(range(len(r)), k)]))


def brute_maj(answers, r, k):
    """E over all k-subsets: non-None answers vote, ties split uniformly, the subset scores the
    mean correctness of its own samples of the picked answer; all-None scores 0."""
    total = 0.0
    subsets = list(itertools.combinations(range(len(answers)), k))
    for s in subsets:
        votes = Counter(answers[i] for i in s if answers[i] is not None)
        if not votes:
            continue
        top = max(votes.values())
        winners = [a for a, v in votes.items() if v == top]
        total += np.mean([np.mean([r[i] for i in s if answers[i] == a]) for a in winners])
    return total / len(subsets)


def test_pass_at_k_binary_equals_brute_force():
    rng = np.random.default_rng(0)
    for _ in range(150):
        n = int(rng.integers(1, 9))
        r = (rng.random(n) < rng.random()).astype(float)
        ks = np.arange(1, n + 1)
        want = [brute_pass(r, k) for k in ks]
        np.testing.assert_allclose(pass_at_k(n, int(r.sum()), ks)[0], want, rtol=0, atol=1e-12)
        np.testing.assert_allclose(pass_at_k_pool(r[None], ks)[0], want, rtol=0, atol=1e-12)


def test_pass_at_k_fractional_equals_brute_force():
    rng = np.random.default_rng(1)
    for _ in range(150):
        n = int(rng.integers(1, 9))
        r = rng.choice([0.0, 0.25, 0.5, 0.7, 1.0], size=n)  # ties included
        if np.all((r == 0) | (r == 1)):
            r[0] = 0.5
        ks = np.arange(1, n + 1)
        np.testing.assert_allclose(pass_at_k_pool(r[None], ks)[0], [brute_pass(r, k) for k in ks],
                                   rtol=0, atol=1e-12)


def test_pass_at_k_large_n_matches_exact_rationals_and_vectorises():
    n = np.array([2000, 2000, 2000, 640, 100])
    c = np.array([1, 37, 1990, 0, 95])
    ks = np.array([1, 5, 100, 10])
    got = pass_at_k(n, c, ks)
    assert got.shape == (5, 4)
    for p in range(5):
        for j, k in enumerate(ks):
            want = 1 - Fraction(math.comb(n[p] - c[p], k), math.comb(n[p], k))
            assert got[p, j] == pytest.approx(float(want), rel=1e-11, abs=1e-15)


def test_pass_at_k_pool_with_uneven_pools_uses_each_pools_size():
    r = np.array([[1, 0, 0, 0], [1, 0, np.nan, np.nan]], dtype=float)
    got = pass_at_k_pool(r, [1, 2])
    np.testing.assert_allclose(got, [[0.25, 0.5], [0.5, 1.0]])
    r2 = np.array([[0.5, 0.0, 0.0], [1.0, 0.5, np.nan]])
    np.testing.assert_allclose(pass_at_k_pool(r2, [1, 2]),
                               [[brute_pass([0.5, 0, 0], 1), brute_pass([0.5, 0, 0], 2)],
                                [0.75, 1.0]])


def test_pass_at_k_rejects_bad_input():
    with pytest.raises(ValueError):
        pass_at_k(4, 2, 5)
    with pytest.raises(ValueError):
        pass_at_k(4, 5, 1)
    with pytest.raises(ValueError):
        pass_at_k_pool(np.array([[0.5, 1.2]]), 1)
    with pytest.raises(ValueError):
        pass_at_k_pool(np.array([[1.0, np.nan]]), 2)


def random_pool(rng, n):
    answers = [rng.choice(["a", "b", "c", "d", None], p=[0.35, 0.25, 0.15, 0.1, 0.15]) for _ in range(n)]
    answers = [None if a is None else str(a) for a in answers]
    # fractional, and not constant within an answer, to test the per-answer mean
    r = [0.0 if a is None else float(rng.choice([0.0, 0.5, 1.0])) for a in answers]
    return answers, r


def test_maj_at_k_exact_equals_brute_force_with_ties_and_abstentions():
    rng = np.random.default_rng(2)
    for _ in range(120):
        n = int(rng.integers(1, 9))
        answers, r = random_pool(rng, n)
        ks = np.arange(1, n + 1)
        got = maj_at_k_single(answers, r, ks, method="exact")
        np.testing.assert_allclose(got, [brute_maj(answers, r, k) for k in ks], rtol=0, atol=1e-12)


def test_maj_at_k_hand_cases():
    # a, a, b with a correct: maj@1 = 2/3; maj@2: {a,a} -> 1, {a,b} x2 -> tie -> 1/2: 2/3; maj@3 = 1
    np.testing.assert_allclose(maj_at_k_single(["a", "a", "b"], [1, 1, 0], [1, 2, 3]), [2 / 3, 2 / 3, 1.0])
    # None abstains: {None, b} -> b (wrong); {a, None} -> a; {a, b} -> tie
    np.testing.assert_allclose(maj_at_k_single(["a", None, "b"], [1, 0, 0], [2]), [(1 + 0 + 0.5) / 3])
    # all abstain -> wrong, even with correct=1 recorded on an abstention
    np.testing.assert_allclose(maj_at_k_single([None, None], [1, 1], [1, 2]), [0.0, 0.0])


def test_maj_at_k_monte_carlo_agrees_with_exact_and_auto_switches(monkeypatch):
    rng = np.random.default_rng(3)
    answers, r = random_pool(rng, 14)
    ks = np.arange(1, 15)
    exact = maj_at_k_single(answers, r, ks, method="exact")
    mc = maj_at_k_single(answers, r, ks, method="mc", mc_subsets=40_000, seed=5)
    np.testing.assert_allclose(mc, exact, atol=0.012)  # > 4 sd of a 40k-subset mean
    assert np.array_equal(mc, maj_at_k_single(answers, r, ks, method="mc", mc_subsets=40_000, seed=5))
    monkeypatch.setattr(est, "EXACT_MAX_POOL", 10)
    np.testing.assert_array_equal(maj_at_k_single(answers, r, ks, mc_subsets=1000, seed=1),
                                  maj_at_k_single(answers, r, ks, method="mc", mc_subsets=1000, seed=1))


def test_maj_at_k_many_problems_and_larger_pool():
    rng = np.random.default_rng(4)
    pools = [random_pool(rng, int(n)) for n in (6, 8, 7)]
    got = maj_at_k([p[0] for p in pools], [p[1] for p in pools], [1, 3, 6])
    assert got.shape == (3, 3)
    for i, (a, r) in enumerate(pools):
        np.testing.assert_allclose(got[i], [brute_maj(a, r, k) for k in (1, 3, 6)], atol=1e-12)
    # a 60-sample pool stays exact: maj@1 is the mean over answers' correctness (None = 0)
    a = [str(x) for x in rng.integers(0, 6, 60)]
    r = [1.0 if x == "0" else 0.0 for x in a]
    out = maj_at_k_single(a, r, [1, 60])
    cnt = Counter(a)
    assert out[0] == pytest.approx(np.mean(r))
    top = max(cnt.values())
    winners = [x for x, v in cnt.items() if v == top]
    assert out[1] == pytest.approx(np.mean([x == "0" for x in winners]))


def test_rsa_population_accuracy():
    c = np.zeros((2, 3, 4))
    c[0, 1, :2] = 1  # problem 0, step 1: 2 of 4
    c[1, 2, :] = 1  # problem 1, step 2: all
    np.testing.assert_allclose(rsa_population_accuracy(c), [0.0, 0.25, 0.5])
    np.testing.assert_allclose(rsa_population_accuracy(c, per_problem=True), [[0, 0.5, 0], [0, 0, 1]])
    with pytest.raises(ValueError):
        rsa_population_accuracy(np.ones((2, 3)))


def test_pooled_estimators_refuse_non_independent_pools():
    r = np.array([[1.0, 0.0, 1.0, 0.0]])
    keys = [["7", "3", "7", None]]
    for call in (lambda ind: pass_at_k(4, 2, 2, independent=ind),
                 lambda ind: pass_at_k_pool(r, [1, 2], independent=ind),
                 lambda ind: maj_at_k(keys, r, [1, 3], independent=ind),
                 lambda ind: maj_at_k_single(keys[0], r[0], 3, independent=ind)):
        assert np.all(np.isfinite(call(True)))
        with pytest.raises(DependentSamplesError, match="generated jointly"):
            call(False)
