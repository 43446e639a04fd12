"""Sequential efficiency (spiral_bench/efficiency.py) against hand-computed values, and the GRSP claim
rows: which method pair they compare, the pass@1 gap from the analysis, the sample-based rows filled
by the report's view (spiral_bench/report/sequential.py)."""
import numpy as np
import pytest

from spiral_bench import efficiency as eff
from spiral_bench import stats
from spiral_bench.claims import claim_rows
from spiral_bench.report import sequential as SEQ
from spiral_bench.trainers.grsp import GRSPConfig

# 2 problems x 2 samples: rewards and generated tokens
R = [[1, 0], [1, 1]]
N = [[10, 30], [20, 40]]


def test_budget_table_cuts_each_sample_at_the_budget():
    t = {r["budget"]: r for r in eff.budget_table(R, N, [15, 25, 48])}
    # b=15: only the 10-token correct sample keeps its answer; tokens 10+15+15+15
    assert t[15]["accuracy"] == pytest.approx(1 / 4) and t[15]["tokens_per_correct"] == pytest.approx(55 / 1)
    # b=25: 10- and 20-token samples correct; tokens 10+25+20+25
    assert t[25]["accuracy"] == pytest.approx(2 / 4) and t[25]["tokens_per_correct"] == pytest.approx(80 / 2)
    # b=48: everything as sampled: 3 correct, 100 tokens
    assert t[48]["accuracy"] == pytest.approx(3 / 4) and t[48]["tokens_per_correct"] == pytest.approx(100 / 3)
    assert t[48]["tokens_per_sample"] == pytest.approx(25.0)
    assert np.isnan(eff.budget_table([[0]], [[5]], [8])[0]["tokens_per_correct"])
    with pytest.raises(ValueError, match=r"\[P, S\]"):
        eff.budget_table([1, 0], [3, 4], [8])


def test_paired_comparison_values_and_cis():
    same = eff.compare_budgets((R, N), (R, N), [25, 48], B=200)
    for row in same:   # identical policies: every replicate has difference 0 and ratio 1
        assert row["d_acc_points"] == {"value": 0.0, "ci": [0.0, 0.0]}
        assert row["tpc_ratio"]["value"] == pytest.approx(1.0) and row["tpc_ratio"]["ci"] == pytest.approx([1.0, 1.0])
    short = [[5, 15], [10, 20]]          # the same answers in half the tokens
    row = eff.compare_budgets((R, short), (R, N), [48], B=200)[0]
    assert row["d_acc_points"]["value"] == 0.0 and row["tpc_ratio"]["value"] == pytest.approx(0.5)
    assert row["tpc_ratio"]["ci"] == pytest.approx([0.5, 0.5])
    worse = eff.compare_budgets(([[0, 0], [1, 1]], N), (R, N), [48], B=500)[0]
    assert worse["d_acc_points"]["value"] == pytest.approx(-25.0)
    lo, hi = worse["d_acc_points"]["ci"]
    assert -50.0 <= lo <= -25.0 <= hi <= 0.0       # problem 1 loses 50 points, problem 2 none
    with pytest.raises(ValueError, match="same problems"):
        eff.compare_budgets((R[:1], N[:1]), (R, N), [48])


def test_segments_by_cluster_and_paired_ratio():
    pieces = [list("1+2=3;1+2=3;3*4=12;#12"), list("1+2=3;#3")]
    segs = eff.segment_samples(pieces, GRSPConfig())
    assert segs == [[6, 6, 7, 3], [6, 2]]
    s = eff.segment_summary(segs, [4.0, 7.0])       # clusters: < 4, [4, 7), >= 7
    assert s["segments_per_response"] == 3.0 and s["mean_segment_len"] == pytest.approx(30 / 6)
    assert s["per_cluster"] == [1.0, 1.5, 0.5] and s["cluster_share"] == pytest.approx([2 / 6, 3 / 6, 1 / 6])
    r = eff.compare_segments([[[6], [6, 2]]], [[[6, 6], [6, 6, 6, 2]]], B=50)   # 3 segments vs 6, one problem
    assert r == {"value": 0.5, "ci": [0.5, 0.5]}
    with pytest.raises(ValueError, match="log-probs"):
        eff.segment_samples(pieces, GRSPConfig(segmentation="confidence"))


def _grsp_analysis(methods=("base", "grpo", "grsp")):
    gap = lambda L, v, lo, hi: {"max_tokens": L, "method_mean": 0.30, "baseline_mean": 0.31,  # noqa: E731
                                "abs_points": {"value": v, "ci": [lo, hi]}, "rel_pct": {"value": 0.0, "ci": [0, 0]}}
    return {"baseline": "grpo", "methods": list(methods), "n_problems": 10, "context": {"task": "arithmetic"},
            "train_runs": {m: 1 for m in methods}, "fixed_checkpoints": ["base"],
            "comparisons": [{"method": "grsp", "baseline": "grpo", "family": "sequential",
                             "matched": [gap(16, -9.0, -12.0, -6.0), gap(48, -1.0, -2.5, 0.5)]}]}


def test_grsp_claims_compare_grsp_with_grpo():
    a = _grsp_analysis()
    rows = {r["claim"]: r for r in claim_rows(a, stats.load_claims(), claim_method="spiral")}
    acc = rows["grsp_accuracy_change"]
    assert (acc["method"], acc["baseline"]) == ("grsp", "grpo")
    # the gap at the largest max tokens (48), not 16; a bound claim ("no worse than -1.6"): the CI
    # [-2.5, 0.5] reaches below -1.6, so the data cannot tell
    assert (acc["measured"], acc["ci_lo"], acc["ci_hi"], acc["verdict"]) == (-1.0, -2.5, 0.5, "inconclusive")
    assert acc["type"] == "bound"
    assert "Qwen2.5-14B" in acc["note"] and "Qwen3" not in acc["note"]
    for k in ("grsp_tokens_change", "grsp_segments_change"):
        assert rows[k]["verdict"] == "not measured" and "Sequential efficiency" in rows[k]["note"]
    # SPIRAL's claims in a run without spiral: not measured (claim_method spiral is absent)
    assert rows["coverage_efficiency_up_to"]["verdict"] == "not measured"
    assert "this run has no spiral" in rows["coverage_efficiency_up_to"]["note"]
    # a run without grsp has no GRSP rows
    rows2 = {r["claim"]: r for r in claim_rows(_grsp_analysis(("base", "grpo", "spiral")), stats.load_claims())}
    assert not any(k.startswith("grsp_") for k in rows2) and "coverage_efficiency_up_to" in rows2


def filled_grsp_rows(a: dict) -> dict:
    """The claim rows of analysis `a` after the report's sequential view fills the sample-based GRSP
    rows from a planted view (tokens per correct 0.85 [0.80, 0.90], segments 0.95 [0.90, 1.01])."""
    a["claims"] = claim_rows(a, stats.load_claims(), claim_method="spiral")
    view = {"baseline": "grpo", "budgets": [16, 48], "problems": 10,
            "comparisons": {"grsp": {"budgets": [{}, {"tpc_ratio": {"value": 0.85, "ci": [0.80, 0.90]}}],
                                     "segments_ratio": {"value": 0.95, "ci": [0.90, 1.01]}}}}
    SEQ.fill_claims(a, view)
    return {r["claim"]: r for r in a["claims"]}


def test_report_view_fills_the_sample_based_grsp_rows():
    rows = filled_grsp_rows(_grsp_analysis())
    tok, seg = rows["grsp_tokens_change"], rows["grsp_segments_change"]
    assert tok["measured"] == pytest.approx(-15.0) and [tok["ci_lo"], tok["ci_hi"]] == pytest.approx([-20.0, -10.0])
    assert tok["verdict"] == "larger than claimed"   # CI [-20, -10] entirely beyond -7.9
    assert seg["measured"] == pytest.approx(-5.0) and seg["verdict"] == "no effect found"  # [-10, +1]: 0 in, -21 out
    assert rows["grsp_accuracy_change"]["measured"] == -1.0         # untouched


def _pool(d, method, rows):
    import pandas as pd
    (d / "work" / method).mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows, columns=["problem_id", "j", "text", "prompt_tokens", "completion_tokens", "finish_reason",
                                "key", "reward"]).to_parquet(d / "work" / method / "pool_L24_r0.parquet", index=False)


def test_report_view_from_saved_pools(tmp_path):
    """A run folder with grsp: the view reads the pools (L_max, replicate 0), computes the budgets,
    segments (with the run's saved edges) and re-check share, and the report shows the section and figure."""
    import json

    import yaml

    from spiral_bench.report import load_run, write_report
    d = tmp_path / "run"
    d.mkdir()
    (d / "run.yaml").write_text(yaml.safe_dump({"method": "grsp", "task": "arithmetic", "bootstrap": 100}))
    (d / "train" / "grsp").mkdir(parents=True)
    (d / "train" / "grsp" / "grsp_edges.json").write_text(json.dumps({"edges": [6.5, 7.5]}))
    long, short = "1+2=3;1+2=3;3*4=12;#12", "1+2=3;3*4=12;#12"          # 22 and 16 characters
    rows = lambda text, n: [(f"p{p}", j, text, 5, n, "stop", "12", 1.0) for p in range(6) for j in range(2)]  # noqa: E731
    _pool(d, "grpo", rows(long, 22))
    _pool(d, "grsp", rows(short, 16))
    view = SEQ.compute(load_run(d), B=100)
    assert view["budgets"] == [24] and view["problems"] == 6 and view["edges_source"] == "train/grsp/grsp_edges.json"
    g, b = view["methods"]["grsp"], view["methods"]["grpo"]
    assert g["budgets"][0]["tokens_per_correct"] == 16 and b["budgets"][0]["tokens_per_correct"] == 22
    assert view["comparisons"]["grsp"]["budgets"][0]["tpc_ratio"]["value"] == pytest.approx(16 / 22)
    assert b["segments"]["segments_per_response"] == 4 and g["segments"]["segments_per_response"] == 3
    assert b["segments"]["per_cluster"] == [3.0, 1.0, 0.0]            # lengths 6, 6, 3 | 7 | - (edges 6.5, 7.5)
    assert b["segments"]["recheck_share"] == pytest.approx(1 / 3) and g["segments"]["recheck_share"] == 0.0
    assert view["comparisons"]["grsp"]["segments_ratio"]["value"] == pytest.approx(0.75)
    res = write_report([d], tmp_path / "rep")
    md = res["md"].read_text()
    assert "### Sequential efficiency" in md and "sequential_efficiency.png" in [p.name for p in res["figures"]]
    assert "| grsp | 24 | 1.000 | 16.0 |" in md
