"""Paired bootstrap (vs scipy), curves, multipliers with censoring, gaps, claims, and a
coverage simulation with known true accuracy curves and a planted 4x multiplier."""
import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps
from scipy.special import betaln

from spiral_bench.estimators import pass_at_k
from spiral_bench.stats import (gain_ratio, MAX_WARNING, PairedBootstrap, accuracy_at, accuracy_gap, bootstrap_counts,
                                cell_matrices, common_grid, compare, compute_to_reach, load_claims,
                                monotone_curve, multiplier_max, multipliers, paired_bootstrap,
                                percentile_ci)


def test_bootstrap_counts_are_resamples_and_seeded():
    w = bootstrap_counts(37, B=500, seed=3)
    assert w.shape == (500, 37) and (w.sum(axis=1) == 37).all()
    assert np.array_equal(w, bootstrap_counts(37, B=500, seed=3))
    assert not np.array_equal(w, bootstrap_counts(37, B=500, seed=4))
    # each problem is drawn Binomial(P, 1/P) times: mean 1
    assert w.mean() == pytest.approx(1.0) and w.var() == pytest.approx(1 - 1 / 37, rel=0.05)


def test_mean_ci_matches_scipy_percentile_bootstrap():
    rng = np.random.default_rng(0)
    x = rng.beta(0.7, 1.5, size=300)
    B = 20_000
    ours = paired_bootstrap({"m": x[:, None]}, B=B, seed=1)["m"]["ci"][:, 0]
    ref = sps.bootstrap((x,), np.mean, method="percentile", n_resamples=B, random_state=2).confidence_interval
    se = x.std(ddof=1) / np.sqrt(len(x))
    # Monte Carlo error of a 2.5% / 97.5% quantile from 20k replicates is ~0.02 se for each
    assert abs(ours[0] - ref.low) < 0.1 * se and abs(ours[1] - ref.high) < 0.1 * se


def test_bootstrap_is_paired_across_methods():
    rng = np.random.default_rng(1)
    a = rng.random((200, 3))
    b = a + 0.1 + 0.01 * rng.random((200, 3))  # strongly correlated with a by problem
    res = paired_bootstrap({"a": a, "b": b}, B=1000, seed=0)
    diff = res["b"]["reps"] - res["a"]["reps"]
    direct = PairedBootstrap(200, B=1000, seed=0).means(b - a)
    np.testing.assert_allclose(diff, direct, atol=1e-12)
    assert np.ptp(diff[:, 0]) < 0.01 < np.ptp(res["a"]["reps"][:, 0])  # pairing removes problem noise


def test_percentile_ci_ignores_nan():
    reps = np.concatenate([np.arange(1, 101, dtype=float), [np.nan] * 50])[:, None]
    np.testing.assert_allclose(percentile_ci(reps, 0.9)[:, 0], np.percentile(np.arange(1, 101), [5, 95]))
    assert np.isnan(percentile_ci(np.full((10, 1), np.nan))).all()


def test_monotone_curve_interpolation_and_inverse_by_hand():
    comp = np.array([4.0, 1.0, 16.0, 2.0])
    acc = np.array([0.6, 0.2, 0.5, 0.3])  # 16 dips below 4: running max keeps 0.6
    x, y = monotone_curve(comp, acc)
    np.testing.assert_allclose(np.exp(x), [1, 2, 4, 16])
    np.testing.assert_allclose(y, [0.2, 0.3, 0.6, 0.6])
    # linear in log compute: 8 is halfway between 4 and 16; sqrt(8) halfway between 2 and 4
    np.testing.assert_allclose(accuracy_at(comp, acc, [1, 2 * np.sqrt(2), 8, 16]), [0.2, 0.45, 0.6, 0.6])
    assert np.isnan(accuracy_at(comp, acc, [0.5, 17])).all()
    np.testing.assert_allclose(compute_to_reach(comp, acc, [0.2, 0.45, 0.6, 0.1]), [1, 2 * np.sqrt(2), 4, 1])
    assert compute_to_reach(comp, acc, [0.61])[0] == np.inf


def test_planted_multiplier_censoring_and_skipped_levels():
    k = np.arange(1, 65, dtype=float)
    f = lambda kk: 1 - 0.8 ** kk  # noqa: E731
    m = multipliers(k, f(k / 4), k[:16], f(k[:16]))  # baseline needs exactly 4x the compute
    np.testing.assert_allclose(m["value"], 4.0, rtol=1e-12)
    # only the method's first point is a lower bound: its compute there is at most its smallest
    np.testing.assert_array_equal(m["censored"], np.arange(16) == 0)
    # short baseline grid: levels it never reaches become lower bounds C_b_max / C_m(a)
    m2 = multipliers(k[:32], f(k[:32] / 4), k[:16], f(k[:16]))
    np.testing.assert_allclose(m2["value"][:8], 4.0)
    np.testing.assert_array_equal(m2["censored"], (k[:16] > 8) | (k[:16] == 1))
    np.testing.assert_allclose(m2["value"][8:], 32 / k[8:16])
    mx = multiplier_max(k[:32], f(k[:32] / 4), k[:16], f(k[:16]))
    # max(4 uncensored, 32/9 censored) = 4, flagged: a censored level could hide a larger m
    assert mx["censored"] and mx["value"] == pytest.approx(4.0)
    # levels at or below the baseline's first-point accuracy are skipped
    m3 = multipliers(k, f(k), k, f(k) - 0.05)
    assert np.isnan(m3["value"][0]) and np.isfinite(m3["value"][1:]).all()
    assert (m3["value"][1:] < 1).all()  # a worse method has m < 1
    # a level at or below the method's first-point accuracy: its compute there is at most its
    # smallest, so m is a lower bound (here 10^0.5 at level 0.2, where the method is better at every
    # compute; and at 0.4, the method's first point itself)
    m4 = multipliers([1, 10, 100], [.1, .3, .5], [10, 100], [.4, .7], levels=[.2, .4, .45])
    np.testing.assert_allclose(m4["value"][:2], [10 ** 0.5 / 10, 10 ** 1.5 / 10], rtol=1e-12)
    np.testing.assert_array_equal(m4["censored"], [True, True, False])


def test_accuracy_gap_and_common_grid():
    cb, ab = np.array([1.0, 4.0, 16.0]), np.array([0.2, 0.4, 0.5])
    cm, am = np.array([2.0, 8.0, 32.0]), np.array([0.4, 0.6, 0.7])
    q = common_grid(cb, cm)
    np.testing.assert_allclose(q, [2, 4, 8, 16])
    g = accuracy_gap(cb, ab, cm, am, q)
    # baseline at 2: 0.3, at 8: 0.45; method at 4: 0.5, at 16: 0.65
    np.testing.assert_allclose(g["abs_points"], [10, 10, 15, 15])
    np.testing.assert_allclose(g["rel_pct"], [100 * (0.4 / 0.3 - 1), 25, 100 * (0.6 / 0.45 - 1), 30])


def test_compare_a_method_with_itself_is_exactly_one_and_zero():
    rng = np.random.default_rng(2)
    acc = np.sort(rng.random((80, 6)), axis=1)
    comp = np.tile(np.arange(1, 7.0), (80, 1)) * rng.integers(5, 10, (80, 1))
    res = compare(PairedBootstrap(80, B=300, seed=0), acc, comp, acc, comp)
    mm = res["multiplier_max"]
    assert mm["value"] == pytest.approx(1.0) and mm["ci"] == pytest.approx([1.0, 1.0])
    assert res["gap"]["abs_points_max"]["ci"] == pytest.approx([0.0, 0.0], abs=1e-9)
    assert res["warning"] == MAX_WARNING


def test_gap_at_max_compute_uses_every_replicate_when_compute_varies_by_problem():
    """Per-problem compute varies (harder problems write longer traces), so each replicate's mean
    compute moves: the gap at the largest common compute must be read at the replicate's own
    largest common compute (a plain loop here), not at the point estimate's, which about half of
    the replicates do not reach."""
    rng = np.random.default_rng(5)
    P, B = 200, 300
    hard = rng.random(P)
    base = np.array([1.0, 2.0, 4.0, 8.0])
    comp_b = (100 + 200 * hard)[:, None] * base                              # (P, 4)
    comp_m = (110 + 190 * hard)[:, None] * base
    acc_b = (rng.random((P, 4)) < 0.2 + 0.08 * np.arange(4) - 0.15 * hard[:, None]).astype(float)
    acc_m = (rng.random((P, 4)) < 0.3 + 0.08 * np.arange(4) - 0.15 * hard[:, None]).astype(float)
    boot = PairedBootstrap(P, B=B, seed=1)
    g = compare(boot, acc_m, comp_m, acc_b, comp_b)["gap"]
    top, first = g["at_max_compute"], g["by_compute"][0]
    assert top["abs_points"]["valid_fraction"] == 1.0 and top["rel_pct"]["valid_fraction"] == 1.0
    assert first["abs_points"]["valid_fraction"] == 1.0 and g["by_compute"][-1]["abs_points"]["valid_fraction"] == 1.0
    ref = []
    for r in range(B):
        w = boot.counts[r] / P
        cb, cm, ab, am = (w @ v for v in (comp_b, comp_m, acc_b, acc_m))
        q = min(cb.max(), cm.max())
        gb = np.interp(np.log(q), np.log(cb), np.maximum.accumulate(ab))
        gm = np.interp(np.log(q), np.log(cm), np.maximum.accumulate(am))
        ref.append(100 * (gm - gb))
    assert top["abs_points"]["ci"] == pytest.approx(np.percentile(ref, [2.5, 97.5]), abs=1e-9)


def test_load_claims_has_the_published_figures():
    claims = {c["id"]: c for c in load_claims()}
    assert claims["coverage_efficiency_up_to"]["value"] == 11.0
    assert claims["coverage_efficiency_up_to"]["type"] == "at_least" and claims["grsp_accuracy_change"]["type"] == "bound"
    assert {c["type"] for k, c in claims.items() if k not in ("coverage_efficiency_up_to", "grsp_accuracy_change")} == {"point"}
    assert not any("issue" in c["source"] or "BASELINES.md" in c["source"] for c in claims.values())  # public sources
    assert [claims[f"coverage_efficiency_{b}"]["value"] for b in ("beyondaime", "aime2026", "aime2025")] == [7.3, 9.4, 10.6]
    assert [claims[f"rsa_pass1_gap_{b}"]["value"] for b in ("beyondaime", "aime2026", "aime2025")] == [13.5, 9.8, 8.1]
    assert claims["all_primitives_relative_gain"]["value"] == 15.0
    grsp = {k: c for k, c in claims.items() if k.startswith("grsp_")}
    assert {k: (c["value"], c["method"], c["baseline"]) for k, c in grsp.items()} == {
        "grsp_accuracy_change": (-1.6, "grsp", "grpo"), "grsp_tokens_change": (-7.9, "grsp", "grpo"),
        "grsp_segments_change": (-21.0, "grsp", "grpo")}
    assert round(100 * (43.80 - 45.40)) / 100 == -1.6 and round(100 * (4897 / 5315 - 1), 1) == -7.9
    assert round(100 * (21.07 / 26.66 - 1), 1) == -21.0
    assert all("2510.09535" in c["source"] for c in grsp.values())
    assert all("2606.23595" in c["source"] for c in claims.values() if "method" not in c)
    b = claims["bridge_gain_ratio_pass1"]
    assert (b["value"], b["method"], b["baseline"]) == (1.39, "bridge", "grpo") and "2510.01143" in b["source"]
    assert round(5.85 / 4.20, 2) == b["value"] and claims["bridge_pass1_gain_over_rl"]["value"] == round(39.40 - 37.75, 2)


def test_cell_matrices_pairs_problems_and_rejects_missing_rows():
    rows = [{"method": m, "family": "parallel", "cell": f"k{k}", "problem_id": p, "correct": float(k > i),
             "compute": 10.0 * k} for m in ("a", "b") for k in (1, 2) for i, p in enumerate(["q2", "q1"])]
    out = cell_matrices(pd.DataFrame(rows))
    assert out["problems"] == ["q1", "q2"]
    g = out["groups"][("a", "parallel")]
    assert g["cells"] == ["k1", "k2"]
    np.testing.assert_array_equal(g["acc"], [[0, 1], [1, 1]])
    with pytest.raises(ValueError, match="missing"):
        cell_matrices(pd.DataFrame(rows[:-1]))
    with pytest.raises(ValueError, match="duplicate"):
        cell_matrices(pd.DataFrame(rows + rows[:1]))


# ----------------------------------------------------------------------------- simulation
A_, B_ = 0.6, 1.8  # per-problem success probability p ~ Beta(A_, B_)
N_M, N_B, M_TRUE = 8, 32, 4.0  # method pool, baseline pool, planted multiplier


def true_pass(k):
    """E_p[1 - (1-p)^k] for p ~ Beta(A_, B_) (k may be fractional)."""
    return 1 - np.exp(betaln(A_, B_ + k) - betaln(A_, B_))


def simulate(E, P, B, seed, level_k=2, chunk=50):
    """E experiments of P problems. Method: c ~ Bin(N_M, p). Baseline on the same problems:
    p' = 1 - (1-p)^(1/4), so its true pass@k is the method's at k/4 (multiplier exactly 4 at every
    level). pass@k from binomial pools with the unbiased estimator; B resamples per experiment.
    Returns coverage of pass@1 and pass@4 CIs, of the multiplier CI at the fixed level
    true_pass(level_k), and of the "up to" CI, plus the mean multiplier CI."""
    rng = np.random.default_rng(seed)
    km, kb = np.arange(1, N_M + 1), np.arange(1, N_B + 1)
    level = true_pass(level_k)
    cov = {"pass@1": [], "pass@4": [], "multiplier": [], "multiplier_max": []}
    for e0 in range(0, E, chunk):
        e = min(chunk, E - e0)
        p = rng.beta(A_, B_, size=(e, P))
        cm = rng.binomial(N_M, p)
        cb = rng.binomial(N_B, 1 - (1 - p) ** (1 / M_TRUE))
        vm = pass_at_k(np.full(e * P, N_M), cm.ravel(), km).reshape(e, P, N_M)
        vb = pass_at_k(np.full(e * P, N_B), cb.ravel(), kb).reshape(e, P, N_B)
        idx = rng.integers(0, P, size=(e, B, P))
        w = np.zeros((e, B, P))
        np.add.at(w, (np.arange(e)[:, None, None], np.arange(B)[None, :, None], idx), 1.0 / P)
        rm, rb = w @ vm, w @ vb  # (e, B, K)
        for k in (1, 4):
            lo, hi = percentile_ci(np.moveaxis(rm[..., k - 1], 1, 0))
            cov[f"pass@{k}"].append((lo <= true_pass(k)) & (true_pass(k) <= hi))
        mrep = multipliers(kb, rb, km, rm, np.full((e, B, 1), level))["value"][..., 0]
        lo, hi = percentile_ci(np.moveaxis(mrep, 1, 0))
        cov["multiplier"].append((lo <= M_TRUE) & (M_TRUE <= hi))
        mx = multiplier_max(kb, rb, km, rm)["value"]
        lo, hi = percentile_ci(np.moveaxis(mx, 1, 0))
        cov["multiplier_max"].append((lo <= M_TRUE) & (M_TRUE <= hi))
    return {k: float(np.mean(np.concatenate(v))) for k, v in cov.items()}


def test_simulation_coverage_fast():
    cov = simulate(E=200, B=300, P=150, seed=11)
    print("coverage (200 experiments, B=300):", cov)
    assert 0.90 <= cov["pass@1"] <= 0.99 and 0.90 <= cov["pass@4"] <= 0.99
    assert cov["multiplier"] >= 0.85


@pytest.mark.slow
def test_simulation_coverage_1000_experiments():
    cov = simulate(E=1000, B=500, P=200, seed=12)
    print("coverage (1000 experiments, B=500):", cov)
    assert 0.93 <= cov["pass@1"] <= 0.97 and 0.93 <= cov["pass@4"] <= 0.97
    assert cov["multiplier"] >= 0.90


def test_planted_4x_multiplier_is_recovered():
    rng = np.random.default_rng(5)
    P = 500
    p = rng.beta(A_, B_, size=P)
    vm = pass_at_k(np.full(P, N_M), rng.binomial(N_M, p), np.arange(1, N_M + 1))
    vb = pass_at_k(np.full(P, N_B), rng.binomial(N_B, 1 - (1 - p) ** 0.25), np.arange(1, N_B + 1))
    cm = np.tile(np.arange(1, N_M + 1.0), (P, 1))
    cb = np.tile(np.arange(1, N_B + 1.0), (P, 1))
    res = compare(PairedBootstrap(P, B=2000, seed=0), vm, cm, vb, cb, levels=true_pass(np.array([1.0, 2, 4])))
    for m in res["multipliers"]:
        assert not m["censored"] and m["ci"][0] <= M_TRUE <= m["ci"][1], m
        assert m["value"] == pytest.approx(M_TRUE, rel=0.35)
    assert res["multiplier_max"]["ci"][0] <= M_TRUE * 1.5  # "up to" is optimistic, yet not far off


def test_gain_ratio_by_hand_and_undefined_when_the_baseline_gain_reaches_zero():
    # replicates where every gain is known: ratio on each replicate = gm / gb
    rr = np.array([0.30, 0.31, 0.29, 0.30])
    rb = rr + np.array([0.04, 0.05, 0.03, 0.04])       # baseline gains 0.03..0.05: CI excludes 0
    rm = rr + np.array([0.06, 0.05, 0.06, 0.08])       # method gains
    g = gain_ratio(0.36, 0.34, 0.30, rm, rb, rr)
    assert g["defined"] and g["value"] == pytest.approx(0.06 / 0.04)
    want = np.percentile(np.array([0.06, 0.05, 0.06, 0.08]) / np.array([0.04, 0.05, 0.03, 0.04]), [2.5, 97.5])
    assert g["ci"] == pytest.approx(want)
    assert g["method_gain"]["value"] == pytest.approx(0.06) and g["baseline_gain"]["value"] == pytest.approx(0.04)
    assert g["baseline_gain"]["ci"] == pytest.approx(np.percentile([0.04, 0.05, 0.03, 0.04], [2.5, 97.5]))
    # a baseline gain whose CI reaches 0: the ratio's confidence set is unbounded -> undefined (NaN)
    rb2 = rr + np.array([0.02, -0.01, 0.01, 0.00])
    u = gain_ratio(0.36, 0.305, 0.30, rm, rb2, rr)
    assert not u["defined"] and np.isnan(u["value"]) and np.isnan(u["ci"]).all()
    assert u["method_gain"]["value"] == pytest.approx(0.06)       # the gains are still reported
    # a baseline that LOST ground (gain CI entirely below 0): a ratio of two losses is no gain ratio
    n = gain_ratio(0.28, 0.26, 0.30, rr - 0.02, rr - 0.04, rr)
    assert not n["defined"] and np.isnan(n["value"]) and n["baseline_gain"]["ci"][1] < 0
