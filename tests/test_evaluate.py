"""evaluate.py: analysis of a cell store (planted multipliers, censoring, pairing, claim rows) and
`evaluate` end to end on a tiny random model; the hf sampler's prefix consistency."""
import json
import math

import numpy as np
import pandas as pd
import pytest

from spiral_bench import stats
from spiral_bench.backends.base import Request, SamplingConfig
from spiral_bench.evaluate import (VERDICT_COLUMNS, analyze_cells, evaluate, find_comparison, format_verdicts,
                                   make_backend, verdict_table)
from spiral_bench.models import build_tiny, save
from spiral_bench.claims import judge
from spiral_bench.sweep import CELL_COLUMNS, decoder_of, load_cells, truncate_sample
from spiral_bench.verdicts import LABELS

P = 200
U = (np.arange(P) + 0.5) / P                      # problem p is solved iff u_p < accuracy
COMP = [2.0 ** i for i in range(8)]               # compute 1 .. 128


def f(c):
    """True accuracy at compute c: 0.05 + 0.1 log2(c), capped at 1."""
    return min(1.0, 0.05 + 0.1 * math.log2(c))


def rows(method, family, acc_of_c, computes, u=U, k0=1, L=32, T=0):
    out = []
    for i, c in enumerate(computes):
        a = acc_of_c(c)
        for p in range(P):
            out.append(dict(method=method, cell=f"{family}_{i}", family=family, max_tokens=L, k=k0 + i, set_size=0,
                            steps=T, pool_size=0, replicate=0, problem_id=f"p{p:03d}", correct=float(u[p] < a),
                            prompt_tokens=10.0, generated_tokens=c, max_token_budget=2 * c, flops=1e6 * c))
    return out


def store(mult=4.0, method_computes=COMP[:6], extra=()):
    """Baseline accuracy f(c) on compute 1..128; the method reaches f(mult * c) at compute c."""
    r = rows("b", "pass@k", f, COMP) + rows("m", "pass@k", lambda c: f(mult * c), method_computes)
    for x in extra:
        r += x
    return pd.DataFrame(r, columns=CELL_COLUMNS)


def test_planted_multiplier_is_recovered():
    a = analyze_cells(store(4.0), ["m"], "b", B=500)
    c = find_comparison(a, "m", "b", "pass@k")
    mm = c["multiplier_max"]
    assert mm["value"] == pytest.approx(4.0) and mm["ci"] == pytest.approx([4.0, 4.0])
    # the method's first point is a lower bound (its compute there is at most its smallest), so the
    # maximum over levels is too: flagged, in every replicate
    assert mm["censored"] and mm["censored_fraction"] == 1.0
    defined = [x for x in c["multipliers"] if x["value"] is not None]
    assert len(defined) == 6 and all(x["value"] == pytest.approx(4.0) for x in defined)
    for x in defined[1:-1]:   # above the method's first point, every replicate gives exactly 4 (paired)
        assert x["ci"] == pytest.approx([4.0, 4.0])
    # the method's top level: replicates whose method curve stops below it have no multiplier (the
    # method never reaches it there); they count as 0, the least favourable value, not dropped
    top = defined[-1]
    assert 0.3 < top["valid_fraction"] < 0.9 and top["ci"] == pytest.approx([0.0, 4.0])
    fx = {x["level"]: x for x in c["multipliers_fixed"]}
    assert fx[0.5]["value"] == pytest.approx(4.0) and fx[0.9]["value"] is None   # 0.9: the method never gets there
    # the pass@1 point: accuracy of the cell, its CI from the shared bootstrap
    pt = a["curves"]["m"]["pass@k"][0]
    assert pt["compute"]["mean"] == 1.0 and pt["accuracy"]["mean"] == pytest.approx(np.mean(U < f(4)))
    assert a["sequential"]["m"][0]["accuracy"] == pt["accuracy"]


def test_planted_multiplier_with_noise_inside_ci():
    rng = np.random.default_rng(3)
    r = rows("b", "pass@k", f, COMP, u=rng.random(P)) + rows("m", "pass@k", lambda c: f(4 * c), COMP[:6], u=rng.random(P))
    c = find_comparison(analyze_cells(pd.DataFrame(r), ["m"], "b", B=1000, seed=1), "m", "b", "pass@k")
    fx = {x["level"]: x for x in c["multipliers_fixed"]}
    for lv in (0.4, 0.5, 0.6):
        lo, hi = fx[lv]["ci"]
        assert lo < 4.0 < hi and hi / lo > 1.3     # a real interval, and it covers the truth


def test_censoring_when_baseline_never_reaches():
    a = analyze_cells(store(4.0, method_computes=COMP), ["m"], "b", B=200)
    c = find_comparison(a, "m", "b", "pass@k")
    assert c["multiplier_max"]["censored"] is True
    by_level = {round(x["level"], 3): x for x in c["multipliers"]}
    # method at compute 64 and 128 reaches 0.85 and 0.95 (> the baseline's best 0.75 at 128):
    # lower bounds C_b_max / C_m = 128/64 = 2 and 128/128 = 1
    assert by_level[0.85]["censored"] and by_level[0.85]["value"] == pytest.approx(2.0)
    assert by_level[0.95]["censored"] and by_level[0.95]["value"] == pytest.approx(1.0)
    assert not by_level[0.55]["censored"] and by_level[0.55]["value"] == pytest.approx(4.0)


def test_identical_methods_paired():
    rng = np.random.default_rng(0)
    u = rng.random(P)
    r = rows("b", "pass@k", f, COMP, u=u) + rows("same", "pass@k", f, COMP, u=u)
    c = find_comparison(analyze_cells(pd.DataFrame(r), ["same"], "b", B=500), "same", "b", "pass@k")
    assert c["multiplier_max"]["ci"] == pytest.approx([1.0, 1.0])
    assert c["gap"]["abs_points_max"]["ci"] == pytest.approx([0.0, 0.0], abs=1e-9)
    # (a replicate's mean compute can land a rounding error outside the curve at the grid's edge,
    # compute 1: stats.compare clamps the query into the replicate's range)
    for g in c["gap"]["by_compute"]:
        assert g["abs_points"]["ci"] == pytest.approx([0.0, 0.0], abs=1e-9)


def claim_store(mult):
    """pass@k with a planted multiplier, a maj@k family 20% (relative) better at equal compute, and
    rsa at L=32, T=1,2 with RSA accuracy 0.6 vs 0.5 at T=2."""
    extra = [rows("b", "maj@k", lambda c: 0.5 * f(c), COMP), rows("m", "maj@k", lambda c: 0.6 * f(c), COMP),
             rows("b", "rsa", lambda c: 0.4, [200.0], T=1), rows("m", "rsa", lambda c: 0.45, [200.0], T=1),
             rows("b", "rsa", lambda c: 0.5, [300.0], T=2), rows("m", "rsa", lambda c: 0.6, [300.0], T=2)]
    return store(mult, extra=extra)


@pytest.mark.parametrize("mult,expect", [(4.0, "inconclusive"), (16.0, "reproduced")])
def test_verdict_rows_for_every_claim(mult, expect):
    a = analyze_cells(claim_store(mult), ["m"], "b", B=400, context={"task": "synthetic"})
    ids = [c["id"] for c in stats.load_claims() if "method" not in c]   # GRSP's and Bridge's rows need their runs
    assert len(ids) < len(stats.load_claims())
    t = verdict_table(a)
    assert list(t.columns) == VERDICT_COLUMNS and t.claim.tolist() == ids
    for r in t.itertuples():
        assert r.verdict in LABELS and r.published is not None
        claim = next(c for c in stats.load_claims() if c["id"] == r.claim)
        assert r.verdict == judge(claim, r.ci_lo, r.ci_hi, r.censored)
        assert "synthetic" in r.note and "other benchmarks" in r.note
    row = t.set_index("claim")
    assert row.loc["coverage_efficiency_up_to", "measured"] == pytest.approx(mult)
    assert row.loc["coverage_efficiency_up_to", "verdict"] == expect
    # 15%: relative gap of the all-primitives frontiers at the largest common compute; the maj@k
    # family is the envelope there (0.6 f vs 0.5 f at compute 128 -> +20%); rsa points are at
    # larger compute than either frontier's maj@k points but are matched in both
    rel = row.loc["all_primitives_relative_gain", "measured"]
    comp = find_comparison(a, "m", "b", "all")
    g = comp["gap"]["at_max_compute"]
    assert rel == g["rel_pct"]["value"]
    assert g["compute"] == 300.0 and rel == pytest.approx(100 * (np.mean(U < 0.6) / np.mean(U < 0.5) - 1))
    # RSA pass@1 gap: the matched cell at the largest T: 60% vs 50% -> +10 points
    assert row.loc["rsa_pass1_gap_aime2025", "measured"] == pytest.approx(10.0)
    assert "|T2|" in row.loc["rsa_pass1_gap_aime2025", "note"]
    text = format_verdicts(a)
    assert all(i in text for i in ids) and expect in text
    # on the published benchmark itself, the note says so (and only for that claim)
    same = verdict_table(analyze_cells(claim_store(mult), ["m"], "b", B=50, context={"task": "aime25"})).set_index("claim")
    assert "the benchmark of the published figure" in same.loc["coverage_efficiency_aime2025", "note"]
    assert "other benchmarks" in same.loc["coverage_efficiency_beyondaime", "note"]
    assert "other benchmarks" not in same.loc["coverage_efficiency_aime2025", "note"]
    # said once: the terminal prints each distinct note segment once, the shared context line included
    assert text.count("other benchmarks") == 1


def test_no_baseline_gives_unmeasured_rows_and_errors():
    a = analyze_cells(store(), ["m", "b"], None, B=50)
    assert a["comparisons"] == [] and set(verdict_table(a).verdict) == {"not measured"}
    with pytest.raises(ValueError, match="compute_col"):
        analyze_cells(store(), ["m"], "b", compute_col="tokens")
    bad = store()
    bad = bad[~((bad.method == "m") & (bad.problem_id == "p000"))]
    with pytest.raises(ValueError, match="missing"):
        analyze_cells(bad, ["m"], "b", B=10)


# ------------------------------------------------------------------------------ real sampler
@pytest.fixture(scope="module")
def tiny_dirs(tmp_path_factory):
    d = tmp_path_factory.mktemp("tiny")
    out = {}
    for label, s in (("tuned", 1), ("base", 0)):
        model, tok = build_tiny("tiny", seed=s)
        out[label] = str(save(model, tok, d / label))
    return out


@pytest.mark.parametrize("stop", [(), ("\n",), ("7",)])
def test_hf_backend_is_prefix_consistent(tiny_dirs, stop):
    be = make_backend(tiny_dirs["base"])
    assert getattr(be, "prefix_consistent", False) is True
    sc = SamplingConfig(stop=stop, batch_size=64)
    reqs = lambda L: [Request(f"{i}+{i + 3}=", n=6, seed=100 + i, max_new_tokens=L) for i in range(4)]  # noqa: E731
    short, long = be.generate(reqs(16), sc), be.generate(reqs(48), sc)
    n_cut = 0
    for rs, rl in zip(short, long):
        for s, lg in zip(rs, rl):
            assert s.token_ids == lg.token_ids[:16]
            assert (s.text, s.completion_tokens, s.finish_reason) == \
                truncate_sample(lg.token_ids, lg.text, lg.finish_reason, 16, decoder_of(be), stop)
            n_cut += lg.completion_tokens > 16
            if lg.completion_tokens <= 16:
                assert (s.text, s.finish_reason) == (lg.text, lg.finish_reason)
            else:
                assert s.finish_reason == "length"
    assert n_cut > 0


def test_evaluate_end_to_end(tiny_dirs, tmp_path):
    out = tmp_path / "run"
    a = evaluate(tiny_dirs, "arithmetic", "smoke", out, seed=0, progress=False, B=200)
    cells = pd.read_parquet(out / "cells.parquet")
    assert set(cells.method) == {"tuned", "base"} and len(cells) == 2 * 22 * 6
    on_disk = json.loads((out / "analysis.json").read_text())
    assert on_disk == a and a["baseline"] == "base" and a["methods"] == ["tuned", "base"]
    assert {c["family"] for c in a["comparisons"]} >= {"pass@k", "maj@k", "aggregate", "rsa", "rsa_maj", "all",
                                                      "sequential"}
    for m in ("tuned", "base"):
        for L in (16, 24):
            sel = cells[(cells.method == m) & (cells.family == "pass@k") & (cells.k == 1) & (cells.max_tokens == L)]
            pt = next(p for p in a["sequential"][m] if p["max_tokens"] == L)
            assert pt["accuracy"]["mean"] == pytest.approx(sel.correct.mean())
            assert pt["compute"]["mean"] == pytest.approx(sel.generated_tokens.mean())
        for fam, pts in a["curves"][m].items():
            for p in pts:
                sel = cells[(cells.method == m) & (cells.family == fam) & (cells.k == p["k"])
                            & (cells.max_tokens == p["max_tokens"]) & (cells.steps == p["steps"])]
                assert len(sel) == 6 and p["accuracy"]["mean"] == pytest.approx(sel.correct.mean())
                assert p["compute_means"]["flops"] == pytest.approx(sel.flops.mean())
    assert len(a["claims"]) == len([c for c in stats.load_claims() if "method" not in c])   # no grsp/bridge here
    # resumed: nothing resampled, same cells, same analysis
    again = evaluate(tiny_dirs, "arithmetic", "smoke", out, seed=0, progress=False, B=200)
    assert again == a and load_cells(out).equals(cells)


def test_bridge_claims_are_checked_on_a_bridge_run_only():
    from spiral_bench.claims import claim_rows
    claims = stats.load_claims()
    a = {"baseline": "grpo", "methods": ["base", "grpo", "bridge"], "comparisons": [], "n_problems": 6}
    rows = claim_rows(a, claims, claim_method="bridge")
    assert [r["claim"] for r in rows] == [c["id"] for c in claims if c.get("method") == "bridge"] != []
    assert all(r["verdict"] == "not measured" and "not in the store" in r["note"] for r in rows)
    spiral = claim_rows({**a, "methods": ["base", "grpo", "spiral"]}, claims, claim_method="spiral")
    assert [r["claim"] for r in spiral] == [c["id"] for c in claims if "method" not in c]


@pytest.mark.parametrize("grpo_acc, verdicts", [(0.40, ("reproduced", "larger than claimed")),
                                                (0.30, ("inconclusive", "larger than claimed"))])
def test_bridge_rows_from_a_run_store(grpo_acc, verdicts):
    """Bridge's two rows from a store with base, grpo and bridge pass@1 cells (nested solved sets, so
    every gain is >= 0 on every replicate): gain ratio (45 - 30) / (grpo - 30), and +5 points over
    grpo at 40%; with grpo = base the ratio is undefined and its row inconclusive."""
    one = lambda m, a: rows(m, "pass@k", lambda c: a, [1.0])  # noqa: E731
    cells = pd.DataFrame(one("base", 0.30) + one("grpo", grpo_acc) + one("bridge", 0.45), columns=CELL_COLUMNS)
    a = analyze_cells(cells, ["base", "grpo", "bridge"], "grpo", B=500, claim_method="bridge")
    gr = find_comparison(a, "bridge", "grpo", "sequential")["matched"][0]["gain_ratio"]
    assert gr["reference"] == "base" and gr["method_gain"]["value"] == pytest.approx(15.0)
    assert gr["baseline_gain"]["value"] == pytest.approx(100 * (grpo_acc - 0.30))
    claims = {r["claim"]: r for r in a["claims"]}
    ratio, pts = claims["bridge_gain_ratio_pass1"], claims["bridge_pass1_gain_over_rl"]
    if grpo_acc > 0.30:
        assert gr["defined"] and gr["value"] == pytest.approx(1.5) and 1.0 < gr["ci"][0] < 1.5 < gr["ci"][1]
        assert ratio["measured"] == pytest.approx(1.5)
    else:
        assert not gr["defined"] and gr["value"] is None and ratio["measured"] is None
        assert "undefined" in ratio["note"]
    assert pts["measured"] == pytest.approx(100 * (0.45 - grpo_acc))
    assert (ratio["verdict"], pts["verdict"]) == verdicts
    assert "width 1" in pts["note"] and "base: bridge +15.0 pts" in ratio["note"]
