"""Pooled estimators: pass@k, maj@k and RSA population accuracy from one pool of samples.

Notation: a problem has a pool of n samples; sample i has correctness r_i in [0, 1] (0/1 for a
binary verifier) and an answer a_i (a hashable, or None = abstain). Every k <= n is derived
from the same pool, as the exact expectation over the C(n, k) subsets S of size k drawn
uniformly without replacement -- no new sampling.

pass@k (binary, c correct of n; Chen et al. 2021, unbiased):
    pass@k = 1 - C(n-c, k) / C(n, k) = 1 - prod_{i=n-c+1}^{n} (1 - k/i)
    evaluated in product form as a sum of log1p terms (stable for n in the thousands);
    it is 1 exactly when n - c < k.
pass@k (fractional r_i): the expected best correctness in the subset, E_S[max_{i in S} r_i].
    With r sorted ascending, r_(1) <= ... <= r_(n), the subset maximum is r_(j) when j is the
    largest index in S, which happens for C(j-1, k-1) of the C(n, k) subsets:
    pass@k = sum_{j=k}^{n} r_(j) C(j-1, k-1) / C(n, k).   (= the binary formula for 0/1 r.)

maj@k: in a subset S, every non-None answer votes; the answers with the most votes tie and one
    is picked uniformly at random; the subset scores the correctness of the picked answer.
    None abstains: it never votes and never counts as correct; a subset of only None scores 0.
    An answer's correctness is the mean r_i over the pool samples that gave it (identical to
    scoring the subset's own samples of the winner: given the winner and its vote count t,
    its t samples are a uniform t-subset of its pool samples). Exact formula: for an answer A
    with multiplicity mu, and t = its votes in S,
        P(A picked) = sum_{t>=1} C(mu, t) / C(n, k) * sum_r N_t(k - t, r) / (1 + r),
    where N_t(s, r) counts the ways to draw s further samples from the other answers and the
    abstentions so that no other answer gets more than t votes and exactly r others get t
    (the generating function prod_{B != A} [sum_{x<t} C(mu_B, x) y^x + C(mu_B, t) w y^t],
    times (1 + y)^{#None + sum of multiplicities below t}). maj@k = sum_A P(A picked) corr(A).
    `method="auto"` uses this exact formula for pools of n <= EXACT_MAX_POOL samples and
    `mc_subsets` seeded Monte Carlo subsets above (counts above ~1e300 overflow float64).

Independence: every subset expectation above assumes the pool's n samples are independent draws
    of the method (exchangeable, so a uniform k-subset is distributed as k fresh samples). Samples
    generated jointly break that: a Bridge group of width n (spiral_bench.bridge) attends to itself,
    so k of its samples are not a width-k group. pass_at_k, pass_at_k_pool, maj_at_k and
    maj_at_k_single take `independent` (default True) and raise DependentSamplesError when it is
    False; such methods are measured from groups generated at width k directly. Backends say
    `independent_samples` (False for the hf backend on a Bridge model).

RSA population accuracy: the mean correctness of the population at each step, averaged over
    problems (the RSA analogue of pass@1).
"""
from __future__ import annotations

import math
from collections import Counter
from functools import lru_cache
from typing import Hashable, Sequence

import numpy as np
from scipy.special import gammaln

EXACT_MAX_POOL = 400  # pools up to this size use the exact maj@k formula in method="auto"
DEFAULT_MC_SUBSETS = 20_000


class DependentSamplesError(ValueError):
    """A pooled subset estimator was asked to score a pool whose samples are not independent."""


def require_independent(independent: bool, what: str) -> None:
    """DependentSamplesError unless `independent` (see 'Independence' in the module docstring)."""
    if not independent:
        raise DependentSamplesError(
            f"{what}: a pooled estimate is an expectation over k-subsets of independent samples, but this "
            "pool was generated jointly (independent_samples=False, e.g. a Bridge group whose samples attend "
            "to each other): a k-subset of it is not k samples of the method; measure it from groups "
            "generated at width k instead")


def _ks(k) -> np.ndarray:
    ks = np.atleast_1d(np.asarray(k))
    if ks.ndim != 1 or not np.issubdtype(ks.dtype, np.integer) or (ks < 1).any():
        raise ValueError(f"k must be a positive integer or a 1-D array of them, got {k!r}")
    return ks.astype(np.int64)


def pass_at_k(n, c, k, *, independent: bool = True) -> np.ndarray:
    """Unbiased pass@k = 1 - C(n-c, k)/C(n, k), vectorised over problems and k.

    n, c: int arrays of shape (P,) (or scalars): pool size and number of correct samples.
    k: int or int array of shape (K,). Returns float array (P, K). Needs 0 <= c <= n, k <= n.
    Product form: C(n-c,k)/C(n,k) = prod_{i=n-c+1}^{n} (1 - k/i), summed as log1p terms via
    cumulative sums T[k, j] = sum_{i=k+1}^{j} log1p(-k/i), so the cost is O(K * max n + P * K).
    independent=False (a jointly generated pool) raises DependentSamplesError.
    """
    require_independent(independent, "pass@k")
    n = np.atleast_1d(np.asarray(n)).astype(np.int64)
    c = np.atleast_1d(np.asarray(c))
    if not np.all(c == np.round(c)):
        raise ValueError("c must be integer counts; use pass_at_k_pool for fractional correctness")
    c = c.astype(np.int64)
    ks = _ks(k)
    n, c = np.broadcast_arrays(n, c)
    if (c < 0).any() or (c > n).any():
        raise ValueError("need 0 <= c <= n for every problem")
    if (ks[None, :] > n[:, None]).any():
        raise ValueError(f"k up to {ks.max()} needs at least that many samples; smallest pool is {n.min()}")
    nmax = int(n.max())
    i = np.arange(nmax + 1, dtype=np.float64)  # 0..nmax
    terms = np.zeros((len(ks), nmax + 1))
    valid = i[None, :] > ks[:, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        terms[valid] = np.log1p(-(ks[:, None] / np.maximum(i[None, :], 1))[valid])
    T = np.cumsum(terms, axis=1)  # T[k, j] = sum_{i<=j, i>k} log1p(-k/i)
    lo = n - c  # (P,)
    out = np.ones((len(n), len(ks)))
    ok = lo[:, None] >= ks[None, :]  # else C(n-c, k) = 0 and pass@k = 1
    kk = np.broadcast_to(np.arange(len(ks))[None, :], ok.shape)
    log_ratio = T[kk, n[:, None]] - T[kk, np.broadcast_to(lo[:, None], ok.shape)]
    out[ok] = -np.expm1(log_ratio[ok]) + 0.0  # + 0.0: no -0.0
    return out


def pass_at_k_pool(correct, k, *, independent: bool = True) -> np.ndarray:
    """pass@k from per-sample correctness, exact over all k-subsets; fractional r allowed.

    correct: float array (P, N) with entries in [0, 1]; NaN pads pools shorter than N.
    k: int or int array (K,), every k <= the smallest pool. Returns (P, K).
    Formula: sum_{j=k}^{n} r_(j) C(j-1, k-1)/C(n, k) (r sorted ascending); for 0/1 entries it
    routes to `pass_at_k` (product form), which it equals. independent=False raises
    DependentSamplesError.
    """
    require_independent(independent, "pass@k")
    r = np.asarray(correct, dtype=np.float64)
    if r.ndim != 2:
        raise ValueError(f"correct must be (P, N), got shape {r.shape}")
    present = ~np.isnan(r)
    vals = r[present]
    if ((vals < 0) | (vals > 1)).any():
        raise ValueError("correctness must lie in [0, 1]")
    n = present.sum(axis=1)
    ks = _ks(k)
    if (ks.max() > n).any():
        raise ValueError(f"k up to {ks.max()} needs that many samples; smallest pool is {n.min()}")
    if np.all((vals == 0) | (vals == 1)):
        return pass_at_k(n, np.nansum(r, axis=1).astype(np.int64), ks)
    srt = np.sort(r, axis=1)  # NaN last, so positions 0..n_p-1 hold the pool ascending
    j = np.arange(1, r.shape[1] + 1, dtype=np.float64)[None, :]  # 1-based rank
    out = np.empty((r.shape[0], len(ks)))
    nn = n[:, None].astype(np.float64)
    for col, kv in enumerate(ks):
        logw = (gammaln(j) - gammaln(kv) - gammaln(j - kv + 1)) - (
            gammaln(nn + 1) - gammaln(kv + 1) - gammaln(nn - kv + 1))
        w = np.where((j >= kv) & (j <= nn), np.exp(np.where(j >= kv, logw, 0.0)), 0.0)
        out[:, col] = np.sum(w * np.nan_to_num(srt), axis=1)
    return out


# ----------------------------------------------------------------------------- maj@k
def _mul(A: np.ndarray, g: np.ndarray, a: float, t: int) -> np.ndarray:
    """A(y, w) * (sum_x g[x] y^x + a w y^t), truncated to A's shape (rows = y, cols = w)."""
    S1, R1 = A.shape
    out = np.zeros_like(A)
    for x, gx in enumerate(g):
        if x >= S1:
            break
        out[x:] += gx * A[: S1 - x]
    if a and t < S1 and R1 > 1:
        out[t:, 1:] += a * A[: S1 - t, : R1 - 1]
    return out


@lru_cache(maxsize=4096)
def _win_probs(mults: tuple[int, ...], z: int, kmax: int) -> dict[int, np.ndarray]:
    """P(one given answer of multiplicity mu is picked) for k = 0..kmax, keyed by mu.

    mults: sorted multiplicities of the distinct non-None answers; z: number of None samples.
    Returns {mu: array (kmax+1,)} (index k; entry 0 unused). Exact; see the module docstring.
    """
    n = z + sum(mults)
    groups = Counter(mults)
    out = {mu: np.zeros(kmax + 1) for mu in groups}
    cnk = np.array([float(math.comb(n, kk)) for kk in range(kmax + 1)])
    for t in range(1, min(max(groups, default=0), kmax) + 1):
        S = kmax - t
        low = z + sum(mu * c for mu, c in groups.items() if mu < t)
        live = {mu: c for mu, c in groups.items() if mu >= t}
        n_live = sum(live.values())
        R = min(n_live - 1, S // t) + 1
        base = np.array([float(math.comb(low, s)) for s in range(S + 1)])
        inv = 1.0 / (1.0 + np.arange(R))
        fac = {mu: (np.array([float(math.comb(mu, x)) for x in range(t)]), float(math.comb(mu, t)))
               for mu in live}
        E = np.zeros((S + 1, R))  # (1 + y)^low * prod_h f_h^(c_h - 1): all but one of each group
        E[:, 0] = base
        for mu_h, c_h in live.items():
            for _ in range(c_h - 1):
                E = _mul(E, *fac[mu_h], t)
        for mu_g in live:
            A = E
            for mu_h in live:  # add back one of every other group
                if mu_h != mu_g:
                    A = _mul(A, *fac[mu_h], t)
            v = A @ inv  # v[s] = sum_r N_t(s, r) / (1 + r)
            kk = np.arange(t, kmax + 1)
            out[mu_g][kk] += math.comb(mu_g, t) * v[kk - t] / cnk[kk]
    return out


def _encode(answers: Sequence[Hashable | None], correct: Sequence[float]):
    """Codes (n,) with -1 for None, and per-answer mean correctness (m,)."""
    if len(answers) != len(correct):
        raise ValueError(f"{len(answers)} answers but {len(correct)} correctness values")
    index: dict = {}
    codes = np.empty(len(answers), dtype=np.int64)
    for i, a in enumerate(answers):
        codes[i] = -1 if a is None else index.setdefault(a, len(index))
    r = np.asarray(correct, dtype=np.float64)
    if r.size and (np.isnan(r).any() or (r < 0).any() or (r > 1).any()):
        raise ValueError("correctness must lie in [0, 1]")
    m = len(index)
    cnt = np.bincount(codes[codes >= 0], minlength=m)
    tot = np.bincount(codes[codes >= 0], weights=r[codes >= 0], minlength=m)
    return codes, cnt, tot / np.maximum(cnt, 1)


def _maj_mc(codes: np.ndarray, acc: np.ndarray, kmax: int, n_subsets: int, seed: int) -> np.ndarray:
    """Monte Carlo maj@k for k = 1..kmax: the first k entries of random permutations."""
    rng = np.random.default_rng(seed)
    n, m = len(codes), len(acc)
    total = np.zeros(kmax)
    done = 0
    chunk = max(1, min(n_subsets, 2_000_000 // max(1, kmax * max(m, 1))))
    while done < n_subsets:
        M = min(chunk, n_subsets - done)
        perm = np.argsort(rng.random((M, n)), axis=1)[:, :kmax]
        sub = codes[perm]  # (M, kmax)
        if m == 0:
            done += M
            continue
        onehot = (sub[..., None] == np.arange(m)).astype(np.float64)  # (M, kmax, m)
        votes = np.cumsum(onehot, axis=1)
        noisy = votes + 0.5 * rng.random(votes.shape)  # iid noise < 1 breaks ties uniformly
        win = np.argmax(noisy, axis=2)
        score = np.where(votes.max(axis=2) > 0, acc[win], 0.0)
        total += score.sum(axis=0)
        done += M
    return total / n_subsets


def maj_at_k_single(answers: Sequence[Hashable | None], correct: Sequence[float], k, *,
                    method: str = "auto", mc_subsets: int = DEFAULT_MC_SUBSETS,
                    seed: int = 0, independent: bool = True) -> np.ndarray:
    """maj@k for one problem's pool of n answers; returns (K,) for k (int or (K,) ints).

    method: "exact" (closed form), "mc" (`mc_subsets` uniform subsets, seeded), or "auto"
    (exact when n <= EXACT_MAX_POOL, else mc). independent=False raises DependentSamplesError.
    """
    require_independent(independent, "maj@k")
    ks = _ks(k)
    codes, cnt, acc = _encode(answers, correct)
    n = len(codes)
    if ks.max() > n:
        raise ValueError(f"k={ks.max()} exceeds the pool of {n} samples")
    if method == "auto":
        method = "exact" if n <= EXACT_MAX_POOL else "mc"
    kmax = int(ks.max())
    if method == "exact":
        z = int((codes < 0).sum())
        probs = _win_probs(tuple(sorted(int(x) for x in cnt)), z, kmax)
        res = np.zeros(kmax + 1)
        for mu, p in probs.items():
            res += p * acc[cnt == mu].sum()
        return res[ks]
    if method == "mc":
        return _maj_mc(codes, acc, kmax, int(mc_subsets), seed)[ks - 1]
    raise ValueError(f"method must be 'auto', 'exact' or 'mc', got {method!r}")


def maj_at_k(answers: Sequence[Sequence[Hashable | None]], correct: Sequence[Sequence[float]], k, *,
             method: str = "auto", mc_subsets: int = DEFAULT_MC_SUBSETS, seed: int = 0,
             independent: bool = True) -> np.ndarray:
    """maj@k for P problems: answers[p] and correct[p] are the pool of problem p (lengths may
    differ; every k must fit the smallest pool). Returns (P, K). Monte Carlo problems use
    seed + p. independent=False raises DependentSamplesError."""
    require_independent(independent, "maj@k")
    ks = _ks(k)
    if len(answers) != len(correct):
        raise ValueError(f"{len(answers)} answer pools but {len(correct)} correctness pools")
    out = np.empty((len(answers), len(ks)))
    for p, (a, r) in enumerate(zip(answers, correct)):
        out[p] = maj_at_k_single(a, r, ks, method=method, mc_subsets=mc_subsets, seed=seed + p)
    return out


def rsa_population_accuracy(correct, per_problem: bool = False) -> np.ndarray:
    """Mean correctness of an RSA population at each step.

    correct: array (P, T, N) -- problems x steps (step 0 = the initial population) x
    population members, values in [0, 1]. Returns (T,) averaged over problems, or (P, T) when
    per_problem (feed that to the bootstrap, which resamples problems).
    """
    r = np.asarray(correct, dtype=np.float64)
    if r.ndim != 3:
        raise ValueError(f"correct must be (P, T, N), got shape {r.shape}")
    if np.isnan(r).any() or (r < 0).any() or (r > 1).any():
        raise ValueError("correctness must lie in [0, 1]")
    pp = r.mean(axis=2)
    return pp if per_problem else pp.mean(axis=0)
