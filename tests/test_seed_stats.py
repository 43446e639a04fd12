"""The two-level paired bootstrap (training runs within each method, then problems shared by all):
against a plain per-replicate loop with the same random draws, its reduction to the one-level
problem bootstrap with one run per method, the analysis of a cell store with several runs per
method (provisional verdicts, per-run curves, variance split), and a simulation with planted
training-run variance: false support with no true effect and coverage of a planted gap."""
import math

import numpy as np
import pandas as pd
import pytest

from spiral_bench.evaluate import analyze_cells, find_comparison, format_verdicts, verdict_table
from spiral_bench.seed_stats import (PROVISIONAL_NOTE, TwoLevelBootstrap, is_provisional, run_counts,
                                     variance_split)
from spiral_bench.stats import PairedBootstrap, bootstrap_counts, percentile_ci
from spiral_bench.verdicts import verdict
from spiral_bench.sweep import CELL_COLUMNS


def test_run_counts_resample_runs_and_one_run_draws_nothing():
    rng = np.random.default_rng(0)
    v = run_counts(3, 500, rng)
    assert v.shape == (500, 3) and (v.sum(axis=1) == 3).all() and v.mean() == pytest.approx(1.0, abs=0.05)
    state = np.random.default_rng(1).bit_generator.state
    r1 = np.random.default_rng(1)
    assert (run_counts(1, 7, r1) == 1).all() and r1.bit_generator.state == state   # no draw for one run


def test_one_run_per_method_is_the_one_level_problem_bootstrap():
    rng = np.random.default_rng(2)
    x = rng.random((1, 60, 4))
    two = TwoLevelBootstrap(60, {"a": 1, "b": 1}, B=300, seed=9)
    one = PairedBootstrap(60, B=300, seed=9)
    np.testing.assert_array_equal(two.counts, one.counts)
    np.testing.assert_array_equal(two.means("a", x), one.means(x[0]))     # bit for bit


def plain_loop_means(P, runs, B, seed, values):
    """Reference: the module doc's formula with an explicit loop over replicates, drawn in the
    documented order (problem counts first, then each method's run indices)."""
    rng = np.random.default_rng(seed)
    W = bootstrap_counts(P, B, rng)
    drawn = {m: (rng.integers(0, R, size=(B, R)) if R > 1 else np.zeros((B, 1), int)) for m, R in runs.items()}
    out = {}
    for m, x in values.items():
        reps = []
        for b in range(B):
            per_run = [W[b] @ x[r] / P for r in drawn[m][b]]      # each drawn run, on the resampled problems
            reps.append(np.mean(per_run, axis=0))
        out[m] = np.array(reps)
    return out, W, drawn


def test_two_level_means_match_a_plain_loop_with_the_same_draws():
    rng = np.random.default_rng(3)
    P, B, runs = 40, 200, {"base": 1, "grpo": 3, "spiral": 4}
    values = {m: rng.random((R, P, 5)) for m, R in runs.items()}
    boot = TwoLevelBootstrap(P, runs, B=B, seed=11)
    ref, W, _ = plain_loop_means(P, runs, B, 11, values)
    np.testing.assert_array_equal(boot.counts, W)
    for m in runs:
        np.testing.assert_allclose(boot.means(m, values[m]), ref[m], atol=1e-12)
        np.testing.assert_allclose(boot.point(m, values[m]), values[m].mean(axis=(0, 1)))
    # runs differ from each other: resampling them widens the interval beyond problems alone
    shifted = values["spiral"] + np.arange(4)[:, None, None] * 0.3
    wide = np.ptp(percentile_ci(boot.means("spiral", shifted)), axis=0)
    narrow = np.ptp(percentile_ci(boot.means("spiral", shifted, resample="problems")), axis=0)
    assert (wide > 2 * narrow).all()
    with pytest.raises(ValueError, match="runs, problems"):
        boot.means("grpo", values["spiral"])


def test_variance_split_and_runs_needed():
    rng = np.random.default_rng(4)
    P, R, B = 80, 4, 1000
    run_effect = np.array([0.0, 0.1, 0.2, 0.3])[:, None]
    only_runs = np.broadcast_to(run_effect, (R, P)) + 0.0          # every problem alike: all variance is runs
    boot = TwoLevelBootstrap(P, {"m": R}, B=B, seed=0)
    s = variance_split(boot.means("m", only_runs, "runs"), boot.means("m", only_runs, "problems"))
    assert s["share_runs"] == pytest.approx(1.0) and s["var_problems"] == pytest.approx(0.0, abs=1e-20)
    only_problems = np.broadcast_to(rng.random(P), (R, P)) + 0.0   # every run alike: all variance is problems
    s = variance_split(boot.means("m", only_problems, "runs"), boot.means("m", only_problems, "problems"))
    assert s["share_problems"] == pytest.approx(1.0)
    # runs needed: z^2 var_runs R / (g^2 - z^2 var_problems), by hand
    z2 = 1.959963984540054 ** 2
    s = variance_split(np.array([0.0, 2.0]), np.array([0.0, 1.0]), estimate=3.0, n_runs=3)
    assert s["var_runs"] == 2.0 and s["var_problems"] == 0.5
    assert s["runs_needed"] == math.ceil(z2 * 2.0 * 3 / (9.0 - z2 * 0.5))
    assert variance_split(np.array([0.0, 2.0]), np.array([0.0, 10.0]), estimate=3.0, n_runs=3)["runs_needed"] is None


def test_is_provisional():
    assert is_provisional({"spiral": 1, "grpo": 3}, "spiral", "grpo")
    assert not is_provisional({"spiral": 3, "grpo": 3}, "spiral", "grpo")
    assert not is_provisional({"spiral": 3, "base": 1}, "spiral", "base")       # base: a fixed checkpoint


# ------------------------------------------------------------------------------ a cell store with runs
P = 120
COMP = [1.0, 2.0, 4.0, 8.0]


def run_rows(method, run, acc, rng, family="rsa", T=2):
    """One rsa cell (L=32, T) and pass@k cells at COMP, per problem, for one training run."""
    out = []
    for i, c in enumerate(COMP):
        a = min(1.0, acc + 0.08 * i)
        for p in range(P):
            out.append(dict(method=method, cell=f"pass_{i}", family="pass@k", max_tokens=32, k=i + 1, set_size=0,
                            steps=0, pool_size=8, replicate=0, problem_id=f"p{p:03d}",
                            correct=float(rng.random() < a), prompt_tokens=10.0, generated_tokens=100.0 * c,
                            max_token_budget=200.0 * c, flops=1e6 * c, train_run=run))
    for p in range(P):
        out.append(dict(method=method, cell="rsa_T2", family=family, max_tokens=32, k=8, set_size=4, steps=T,
                        pool_size=0, replicate=0, problem_id=f"p{p:03d}", correct=float(rng.random() < acc + 0.1),
                        prompt_tokens=10.0, generated_tokens=1500.0, max_token_budget=3000.0, flops=1.5e7,
                        train_run=run))
    return out


def run_store(run_acc: dict, seed=0):
    rng = np.random.default_rng(seed)
    rows = []
    for m, accs in run_acc.items():
        for r, a in enumerate(accs):
            rows += run_rows(m, r, a, rng)
    return pd.DataFrame(rows, columns=CELL_COLUMNS)


def test_analysis_with_three_runs_matches_a_plain_loop_and_is_not_provisional():
    df = run_store({"grpo": [0.30, 0.36, 0.26], "spiral": [0.40, 0.30, 0.35]})
    B = 300
    a = analyze_cells(df, ["grpo", "spiral"], "grpo", B=B, seed=5, claim_method="spiral", context={"task": "t"})
    assert a["train_runs"] == {"grpo": 3, "spiral": 3} and a["bootstrap"]["resampled"] == "training runs, then problems"
    assert not a["provisional"] and not any(r["provisional"] for r in a["claims"])
    assert all(r["train_runs"] == {"spiral": 3, "grpo": 3} for r in a["claims"])
    # the matched rsa gap: point = mean over runs and problems; CI = the plain loop's percentiles
    x = {m: np.stack([df[(df.method == m) & (df.train_run == r) & (df.cell == "rsa_T2")]
                      .sort_values("problem_id")["correct"].to_numpy() for r in range(3)]) for m in ("grpo", "spiral")}
    ref, _, _ = plain_loop_means(P, {"grpo": 3, "spiral": 3}, B, 5, x)
    g = find_comparison(a, "spiral", "grpo", "rsa")["matched"][0]
    assert g["abs_points"]["value"] == pytest.approx(100 * (x["spiral"].mean() - x["grpo"].mean()))
    assert g["abs_points"]["ci"] == pytest.approx(np.percentile(100 * (ref["spiral"] - ref["grpo"]), [2.5, 97.5]),
                                                  abs=1e-9)
    row = verdict_table(a).set_index("claim").loc["rsa_pass1_gap_aime2025"]
    assert row.measured == pytest.approx(g["abs_points"]["value"]) and [row.ci_lo, row.ci_hi] == g["abs_points"]["ci"]
    # the interval with runs resampled is wider than the problems-only one of the same data
    one = analyze_cells(df[df.train_run == 0], ["grpo", "spiral"], "grpo", B=B, seed=5)
    assert one["provisional"] and one["train_runs"] == {"grpo": 1, "spiral": 1}
    # per-run curves, and the variance split of the gap (the runs differ a lot: a large run share)
    pt = a["curves"]["spiral"]["pass@k"][0]
    assert [r["train_run"] for r in pt["runs"]] == [0, 1, 2]
    assert np.mean([r["accuracy"] for r in pt["runs"]]) == pytest.approx(pt["accuracy"]["mean"])
    vs = g["variance_split"]
    assert 0 < vs["share_runs"] < 1 and vs["share_runs"] + vs["share_problems"] == pytest.approx(1.0)
    assert "variance_split" in find_comparison(a, "spiral", "grpo", "all")
    assert "3 vs 3" in format_verdicts(a) and "(provisional)" not in format_verdicts(a)


def test_one_run_verdicts_are_provisional_everywhere():
    df = run_store({"grpo": [0.30], "spiral": [0.40]})
    a = analyze_cells(df, ["grpo", "spiral"], "grpo", B=100, claim_method="spiral")
    assert a["provisional"] and a["bootstrap"]["resampled"] == "problems"
    t = verdict_table(a)
    assert t.provisional.all() and all(PROVISIONAL_NOTE in n for n in t.note)
    text = format_verdicts(a)
    assert "(provisional)" in text and PROVISIONAL_NOTE in text
    # a store without the train_run column (made before runs existed) reads as run 0
    b = analyze_cells(df.drop(columns=["train_run"]), ["grpo", "spiral"], "grpo", B=100, claim_method="spiral")
    assert b["claims"] == a["claims"]


def test_a_run_with_an_unfinished_sweep_is_left_out_with_a_warning():
    df = run_store({"grpo": [0.30, 0.32], "spiral": [0.40, 0.38]})
    df = df[~((df.method == "spiral") & (df.train_run == 1) & (df.cell == "rsa_T2"))]
    a = analyze_cells(df, ["grpo", "spiral"], "grpo", B=50)
    assert a["train_runs"] == {"grpo": 2, "spiral": 1}
    assert any("spiral training run 1" in w for w in a["warnings"])


# ------------------------------------------------------------------------------ simulation
AS_CLAIMED = ("reproduced", "larger than claimed")   # the old "supported": real, and reaching the claim


def simulate(E, R, delta, tau=0.02, P=100, n=8, B=400, seed=0, claim=8.1):
    """E simulated experiments. Problem p has success probability q_p ~ U(0.2, 0.8); training run r
    of a method shifts it by s_r ~ N(0, tau) (clipped at +-0.15: mean 0), the method by delta; a
    cell holds the fraction of n samples correct. Both methods see the same problems. Returns the
    share of experiments whose verdict on a claim of +claim points (no-effect value 0) is
    "supported", from the two-level interval of R runs per method and from the one-level interval
    of run 0 alone, and the coverage of the true gap 100 delta by each interval."""
    rng = np.random.default_rng(seed)
    sup2 = sup1 = cov2 = cov1 = 0
    for _ in range(E):
        q = rng.uniform(0.2, 0.8, P)
        s_m, s_b = (np.clip(rng.normal(0, tau, R), -0.15, 0.15) for _ in range(2))
        xm = rng.binomial(n, q + s_m[:, None] + delta)[..., None] / n      # (R, P, 1)
        xb = rng.binomial(n, q + s_b[:, None])[..., None] / n
        boot = TwoLevelBootstrap(P, {"m": R, "b": R}, B=B, seed=rng)
        two = percentile_ci(100 * (boot.means("m", xm) - boot.means("b", xb))[:, 0])
        one_boot = PairedBootstrap(P, B=B, seed=rng)
        one = percentile_ci(100 * (one_boot.means(xm[0]) - one_boot.means(xb[0]))[:, 0])
        sup2 += verdict(two, claim, ">=", null_value=0.0) in AS_CLAIMED
        sup1 += verdict(one, claim, ">=", null_value=0.0) in AS_CLAIMED
        cov2 += two[0] <= 100 * delta <= two[1]
        cov1 += one[0] <= 100 * delta <= one[1]
    return {"supported_two_level": sup2 / E, "supported_one_level": sup1 / E,
            "coverage_two_level": cov2 / E, "coverage_one_level": cov1 / E}


def test_seed_variance_simulation_fast():
    null = simulate(E=300, R=3, delta=0.0, seed=1)
    print("no effect, 300 experiments:", null)
    assert null["supported_two_level"] <= 0.07 and null["supported_one_level"] >= 2 * null["supported_two_level"]
    assert null["coverage_two_level"] >= 0.9 > null["coverage_one_level"]


@pytest.mark.slow
def test_seed_variance_simulation_false_support_and_coverage():
    """3 training runs per method, 100 problems, 8 samples per cell; between-run SD of one run's
    gap about 3.7 points (2.8 of it training, the rest sampling) against a problem-bootstrap SE of
    about 2.3, as measured on the default job (issue 19: 3.7 and 2.5). Measured here (4000
    experiments each, B = 400): no true effect: "supported" (a +8.1-point claim, no-effect value 0)
    in 1.6% of experiments with the two-level interval vs 10.8% with the one-level interval of one
    run per method; planted gap +5 points: two-level coverage 96.6% (one-level: 77.8%).
    Not asserted, a harsher regime (tau = 0.04: training SD of the gap 5.7 points): 3 runs give
    false support 5.2% (one-level 22.7%) and coverage 90.1%; 5 runs give coverage 94.3%."""
    null = simulate(E=4000, R=3, delta=0.0, seed=2)
    print("no effect:", null)
    assert null["supported_two_level"] <= 0.05
    assert null["supported_one_level"] >= 3 * null["supported_two_level"]
    eff = simulate(E=4000, R=3, delta=0.05, seed=3)
    print("planted +5 points:", eff)
    assert 0.93 <= eff["coverage_two_level"] <= 0.97
    assert eff["coverage_one_level"] < 0.85
