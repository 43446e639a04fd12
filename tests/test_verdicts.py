"""Verdict labels (spiral_bench/verdicts.py) by hand, and the planted wrong-verdict cases of issue 26
run through the project's own analysis: each gave a label its interval did not carry before."""
import numpy as np
import pandas as pd
import pytest

from spiral_bench import stats
from spiral_bench.claims import claim_rows, format_verdicts
from spiral_bench.evaluate import analyze_cells, find_comparison
from spiral_bench.sweep import CELL_COLUMNS
from spiral_bench.verdicts import LABELS, RULES, rules_markdown, verdict
from test_efficiency import filled_grsp_rows


@pytest.mark.parametrize("ci,v,kw,want", [
    # point claims, '>=' (published 11x, no effect 1x)
    ((8.0, 12.0), 11, {}, "reproduced"),               # excludes 1, contains 11
    ((11.0, 11.0), 11, {}, "reproduced"),              # touches
    ((12.0, 14.0), 11, {}, "larger than claimed"),
    ((1.1, 7.0), 11, {}, "real but smaller"),          # 2.8x [1.1, 7]: real, not 11x
    ((0.8, 7.0), 11, {}, "no effect found"),
    ((0.2, 0.9), 11, {}, "opposite direction"),
    ((0.8, 12.0), 11, {}, "inconclusive"),             # contains both
    ((1.0, 7.0), 11, {}, "no effect found"),           # lo = n: the no-effect value is inside
    ((float("nan"), 3.0), 11, {}, "inconclusive"),
    ((5.0, 3.0), 11, {}, "inconclusive"),              # lo > hi
    # at_least: entirely beyond the claim is the claim
    ((12.0, 14.0), 11, {"kind": "at_least"}, "reproduced"),
    ((1.1, 7.0), 11, {"kind": "at_least"}, "real but smaller"),
    # an open upper end (a censored lower bound): only the lower end is judged
    ((4.51, 8.0), 11, {"kind": "at_least", "open_end": True}, "inconclusive"),
    ((12.0, 14.0), 11, {"kind": "at_least", "open_end": True}, "reproduced"),
    ((12.0, 14.0), 11, {"open_end": True}, "larger than claimed"),
    ((0.2, 0.9), 11, {"open_end": True}, "inconclusive"),   # a lower bound below 1 says nothing
    # '<=' claims are mirrored (GRSP tokens -7.9%, no effect 0)
    ((-20.0, -10.0), -7.9, {"direction": "<=", "null_value": 0.0}, "larger than claimed"),
    ((-9.0, -2.0), -7.9, {"direction": "<=", "null_value": 0.0}, "reproduced"),
    ((-5.0, -2.0), -7.9, {"direction": "<=", "null_value": 0.0}, "real but smaller"),
    ((-5.0, 1.0), -7.9, {"direction": "<=", "null_value": 0.0}, "no effect found"),
    ((1.0, 3.0), -7.9, {"direction": "<=", "null_value": 0.0}, "opposite direction"),
    ((-10.0, 1.0), -7.9, {"direction": "<=", "null_value": 0.0}, "inconclusive"),
    # bound: "no worse than -1.6 points"
    ((-1.0, 0.5), -1.6, {"kind": "bound", "null_value": None}, "within bound"),
    ((-1.6, 0.5), -1.6, {"kind": "bound", "null_value": None}, "within bound"),
    ((-2.5, 0.5), -1.6, {"kind": "bound", "null_value": None}, "inconclusive"),
    ((-22.7, 0.7), -1.6, {"kind": "bound", "null_value": None}, "inconclusive"),   # case 2: was "supported"
    ((-5.0, -2.0), -1.6, {"kind": "bound", "null_value": None}, "outside bound"),
])
def test_verdict_rules_by_hand(ci, v, kw, want):
    kw = {"null_value": 1.0, **kw}
    assert verdict(ci, v, **kw) == want


def test_every_label_has_one_rule_and_bad_claims_are_refused():
    assert {r[0] for r in RULES} == set(LABELS)
    md = rules_markdown()
    assert all(f"| {label} |" in md for label in LABELS)
    with pytest.raises(ValueError, match="no-effect value"):
        verdict((1, 2), 11, null_value=None)
    with pytest.raises(ValueError, match="other side"):
        verdict((1, 2), 11, null_value=20.0)
    with pytest.raises(ValueError, match="claim type"):
        verdict((1, 2), 11, kind="maybe", null_value=1.0)


def _cells(method: str, acc: float, runs: int, P: int, rng) -> list[dict]:
    """pass@1 cells of `runs` training runs: problem p (difficulty u_p, shared by every method) is
    correct iff u_p + a small per-run jitter < acc, so methods are paired as real ones are."""
    u = (np.arange(P) + 0.5) / P
    out = []
    for r in range(runs):
        correct = u + rng.normal(0, 0.03, P) < acc
        out += [dict(method=method, cell="pass@k_0", family="pass@k", max_tokens=32, k=1, set_size=0, steps=0,
                     pool_size=0, replicate=0, problem_id=f"p{p:03d}", correct=float(correct[p]), prompt_tokens=10.0,
                     generated_tokens=20.0, max_token_budget=32.0, flops=1.0, train_run=r, estimator="pooled")
                for p in range(P)]
    return out


def test_case1_a_ratio_of_two_losses_is_no_gain_ratio():
    """Planted: base 57.2%, GRPO 48.2%, Bridge 37.2% (3 runs each, 400 problems). The gain ratio of two
    losses (~2.2) was 'supported' while the same data put Bridge ~11 points below GRPO."""
    rng = np.random.default_rng(0)
    cells = pd.DataFrame(_cells("base", 0.572, 1, 400, rng) + _cells("grpo", 0.482, 3, 400, rng)
                         + _cells("bridge", 0.372, 3, 400, rng), columns=CELL_COLUMNS)
    a = analyze_cells(cells, ["base", "grpo", "bridge"], "grpo", B=400, claim_method="bridge")
    gr = find_comparison(a, "bridge", "grpo", "sequential")["matched"][0]["gain_ratio"]
    assert gr["baseline_gain"]["ci"][1] < 0 and not gr["defined"]
    rows = {r["claim"]: r for r in a["claims"]}
    ratio, pts = rows["bridge_gain_ratio_pass1"], rows["bridge_pass1_gain_over_rl"]
    assert ratio["verdict"] == "inconclusive" and ratio["measured"] is None and "LOST" in ratio["note"]
    assert pts["ci_hi"] < 0 and pts["verdict"] == "opposite direction"


def test_case3_a_censored_up_to_multiplier_is_judged_on_its_lower_end():
    """Planted: "up to" 7.82 [4.51, 8.00], point not censored, 47.6% of replicates lower bounds: was
    'not supported' for 11x; its upper end is the grid's cap, so the honest reading is inconclusive."""
    mm = {"value": 7.82, "ci": [4.51, 8.00], "censored": False, "censored_fraction": 0.476, "valid_fraction": 1.0,
          "level": 0.5}
    a = {"baseline": "grpo", "methods": ["grpo", "spiral"], "n_problems": 100, "context": {"task": "arithmetic"},
         "train_runs": {"grpo": 3, "spiral": 3}, "comparisons": [
             {"method": "spiral", "baseline": "grpo", "family": "pass@k", "multiplier_max": mm}]}
    rows = {r["claim"]: r for r in claim_rows(a, stats.load_claims())}
    up = rows["coverage_efficiency_up_to"]
    assert up["verdict"] == "inconclusive" and up["censored"] and up["censored_fraction"] == 0.476
    assert up["type"] == "at_least" and "48% of the bootstrap replicates" in up["note"]
    # 7.3x on BeyondAIME: the same interval, a point claim: inconclusive too (not "real but smaller")
    assert rows["coverage_efficiency_beyondaime"]["verdict"] == "inconclusive"
    # a censored share within 5% leaves the interval closed: real but smaller than 11x
    mm["censored_fraction"] = 0.02
    rows = {r["claim"]: r for r in claim_rows(a, stats.load_claims())}
    assert rows["coverage_efficiency_up_to"]["verdict"] == "real but smaller"
    assert "'+' after a CI" in format_verdicts({**a, "claims": list(rows.values())})


def test_case4_undefined_replicates_count_against_the_method():
    """Replicates where the baseline reaches every level at its cheapest point have no multiplier
    (only an upper bound): they count as 0 in the CI instead of being dropped."""
    # two replicates where the method is 4x cheaper, two where the baseline starts above the method
    cb = np.array([[1.0, 4.0, 16.0]] * 4)
    ab = np.array([[0.1, 0.3, 0.5], [0.1, 0.3, 0.5], [0.6, 0.7, 0.8], [0.6, 0.7, 0.8]])
    cm = np.array([[1.0, 4.0]] * 4)
    am = np.array([[0.3, 0.5]] * 4)
    point = [am.mean(0), cm.mean(0), np.array([0.1, 0.3, 0.5]), cb[0]]
    res = stats.compare_curves(point, [am, cm, ab, cb], level=0.95)
    mm = res["multiplier_max"]
    assert mm["value"] == pytest.approx(4.0) and mm["valid_fraction"] == 0.5
    assert mm["ci"] == pytest.approx(np.percentile([4.0, 4.0, 0.0, 0.0], [2.5, 97.5]))   # was [4, 4]
    lvl = {round(x["level"], 3): x for x in res["multipliers"]}
    assert lvl[0.5]["ci"][0] == pytest.approx(0.0) and lvl[0.5]["valid_fraction"] == 0.5


def test_case6_sample_based_grsp_rows_say_they_rest_on_run_0():
    """The report's sequential view reads training run 0 of each method with a one-level bootstrap:
    its rows say 1 vs 1 and provisional, whatever the run's number of training runs."""
    a = {"baseline": "grpo", "methods": ["base", "grpo", "grsp"], "n_problems": 10, "context": {"task": "arithmetic"},
         "train_runs": {"base": 1, "grpo": 3, "grsp": 3}, "fixed_checkpoints": ["base"], "comparisons": []}
    rows = filled_grsp_rows(a)
    for k in ("grsp_tokens_change", "grsp_segments_change"):
        assert rows[k]["train_runs"] == {"grsp": 1, "grpo": 1} and rows[k]["provisional"], rows[k]
        assert "training run 0" in rows[k]["note"]
    assert not rows["grsp_accuracy_change"]["provisional"]        # from the run's own 3 vs 3 cells


def test_the_readme_shows_the_rules_table_verbatim():
    from pathlib import Path
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    assert rules_markdown() in readme
