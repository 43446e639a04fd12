"""`analyze_file`: hand-computed summaries, input validation with line numbers, atomic output, and
the same compute and multipliers as `eval`'s cell store on the same samples."""
import json
import os

import numpy as np
import pandas as pd
import pytest

from fakes import FakeTask, ScriptedBackend, random_policy
from spiral_bench.analyze import AnalyzeInputError, analyze_file
from spiral_bench.evaluate import analyze_cells, find_comparison
from spiral_bench.stats import PairedBootstrap, percentile_ci
from spiral_bench.sweep import AggregativeSpec, BudgetGrid, load_cells, run_sweep


def write(path, rows):
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n")
    return path


def hand_rows():
    rows = []
    for i, (c, a) in enumerate(zip([1, 0, 0], ["5", "3", "3"])):
        rows.append({"method": "A", "problem_id": "p1", "sample_id": i, "correct": bool(c), "answer": a})
    for i, (c, a) in enumerate(zip([1, 1, 0], ["7", "7", None])):
        rows.append({"method": "A", "problem_id": "p2", "sample_id": i, "correct": c, "answer": a})
    for i, c in enumerate([0, 0, 0, 1]):
        rows.append({"method": "B", "problem_id": "p1", "sample_id": i, "correct": c})
    for i, c in enumerate([0.0, 0.0, 0.0]):
        rows.append({"method": "B", "problem_id": "p2", "sample_id": i, "correct": c})
    return rows


def test_hand_computed_summary(tmp_path):
    s = analyze_file(write(tmp_path / "s.jsonl", hand_rows()), tmp_path / "out", B=400, seed=0)
    assert s == json.loads((tmp_path / "out" / "summary.json").read_text())
    A, B = s["methods"]["A"], s["methods"]["B"]
    assert A["n_problems"] == B["n_problems"] == 2
    assert list(A["pass@k"]) == ["1", "2", "3"] and list(B["pass@k"]) == ["1", "2", "3"]  # B: min(4, 3)
    # A: p1 pass@k = 1/3, 2/3, 1; p2 = 2/3, 1, 1.  maj: p1 = 1/3, 1/3 (tie 5/3 twice), 0; p2 = 2/3, 1, 1
    for k, want in zip("123", [0.5, 5 / 6, 1.0]):
        assert A["pass@k"][k]["mean"] == pytest.approx(want)
    for k, want in zip("123", [0.5, 2 / 3, 0.5]):
        assert A["maj@k"][k]["mean"] == pytest.approx(want)
    for k, want in zip("123", [1 / 8, 1 / 4, 3 / 8]):
        assert B["pass@k"][k]["mean"] == pytest.approx(want)
    assert B["maj@k"] == {} and any("'B'" in w and "maj@k" in w for w in s["warnings"])
    for blk in (A["pass@k"], A["maj@k"], B["pass@k"]):
        for v in blk.values():
            assert 0 <= v["ci"][0] <= v["mean"] <= v["ci"][1] <= 1
    assert s["compute_unit"] == "samples" and A["compute@k"] == {"1": 1.0, "2": 2.0, "3": 3.0}
    assert [(c["method"], c["baseline"], c["metric"]) for c in s["comparisons"]] == [("A", "B", "pass@k"), ("B", "A", "pass@k")]
    ab, ba = s["comparisons"]
    # A's levels .5, .83, 1 are never reached by B (max .375 at 3 samples): lower bounds 3/1, 3/2, 3/3
    assert ab["multiplier_max"]["value"] == pytest.approx(3.0) and ab["multiplier_max"]["censored"] is True
    assert [m["value"] for m in ab["multipliers"]] == pytest.approx([3.0, 1.5, 1.0])
    assert ab["gap"]["abs_points_max"]["value"] == pytest.approx(62.5)
    assert ab["gap"]["rel_pct_max"]["value"] == pytest.approx(300.0)
    # B's levels all lie at or below A's first point: no defined multiplier
    assert ba["multiplier_max"]["value"] is None and ba["multiplier_max"]["censored"] is False


def test_cis_are_the_shared_paired_bootstrap(tmp_path):
    rng = np.random.default_rng(0)
    rows = [{"problem_id": f"q{p}", "sample_id": s, "correct": bool(rng.random() < 0.4)}
            for p in range(30) for s in range(2)]
    s = analyze_file(write(tmp_path / "s.jsonl", rows), tmp_path / "o", B=500, seed=7)
    assert list(s["methods"]) == ["default"]
    assert s["comparisons"] == []
    # per-problem pass@1 = mean of the two samples; problems sorted by id
    vals = {}
    for r in rows:
        vals.setdefault(r["problem_id"], []).append(float(r["correct"]))
    per = np.array([np.mean(vals[p]) for p in sorted(vals)])
    ci = percentile_ci(PairedBootstrap(30, B=500, seed=7).means(per[:, None]))[:, 0]
    assert s["methods"]["default"]["pass@k"]["1"]["ci"] == pytest.approx(list(ci))
    s2 = analyze_file(write(tmp_path / "s.jsonl", rows), tmp_path / "o2", B=500, seed=7)
    assert s2["methods"] == s["methods"]


def test_token_compute(tmp_path):
    rows = [{"method": m, "problem_id": p, "sample_id": i, "correct": i == 0, "answer": str(i),
             "prompt_tokens": 10, "completion_tokens": t}
            for m in ("x", "y") for p, toks in (("a", [20, 40]), ("b", [50, 50])) for i, t in enumerate(toks)]
    s = analyze_file(write(tmp_path / "s.jsonl", rows), tmp_path / "o", B=100)
    # a k-sample cell: the prompt once (10 at every k), generated tokens k * mean completion
    # (a -> 30, b -> 50 per sample), averaged over problems; the axis is generated tokens
    assert s["compute_unit"] == "generated_tokens"
    assert s["methods"]["x"]["compute@k"] == {"1": 40.0, "2": 80.0}
    assert s["methods"]["x"]["prompt_tokens@k"] == {"1": 10.0, "2": 10.0}
    assert len(s["comparisons"]) == 2


def test_zero_generated_tokens_everywhere_is_an_error(tmp_path):
    rows = [{"problem_id": p, "sample_id": i, "correct": 1, "prompt_tokens": 5, "completion_tokens": 0}
            for p in "ab" for i in range(2)]
    with pytest.raises(AnalyzeInputError, match="completion_tokens 0"):
        analyze_file(write(tmp_path / "s.jsonl", rows), tmp_path / "o", B=10)


def flat(x, key=""):
    """Nested dicts/lists -> {path: leaf} (for approx comparisons)."""
    if isinstance(x, dict):
        return {k2: v for k, y in x.items() for k2, v in flat(y, f"{key}/{k}").items()}
    if isinstance(x, list):
        return {k2: v for i, y in enumerate(x) for k2, v in flat(y, f"{key}/{i}").items()}
    return {key: x}


def test_analyze_and_the_cell_store_give_the_same_compute_and_multipliers(tmp_path):
    """The same samples through `eval`'s cell store (run_sweep -> analyze_cells) and through
    `analyze` (the pools written as JSONL): the same compute at every k (prompt once, k/n of the
    pool's generated tokens) and the same pass@k multipliers, CIs and gaps."""
    gold = ["7", "3", "5", "1", "4", "9", "2", "8", "6", "0", "7", "3"]
    task = FakeTask(gold)
    probs = task.problems()
    answers = {f"q{i}": g for i, g in enumerate(gold)}
    n, L = 6, 24
    grid = BudgetGrid(name="agree", sequential=(L,), parallel=tuple(range(1, n + 1)),
                      aggregative=(AggregativeSpec("none"),), problems=len(gold), seeds=(0,))
    store = tmp_path / "store"
    for method, p_correct in (("m", 0.55), ("b", 0.25)):
        run_sweep(ScriptedBackend(random_policy(p_correct, answers, pad_max=12)), task, probs, grid, method,
                  store, seed=1, progress=False)
    ev = analyze_cells(load_cells(store), ["m"], "b", B=300, seed=5)

    lines = []
    for method in ("m", "b"):
        pool = pd.read_parquet(store / "work" / method / f"pool_L{L}_r0.parquet")
        for r in pool.itertuples(index=False):
            lines.append({"method": method, "problem_id": r.problem_id, "sample_id": int(r.j),
                          "correct": float(r.reward), "answer": r.key if isinstance(r.key, str) else None,
                          "prompt_tokens": int(r.prompt_tokens), "completion_tokens": int(r.completion_tokens)})
    an = analyze_file(write(tmp_path / "samples.jsonl", lines), tmp_path / "an", B=300, seed=5)

    # the same multipliers ("up to", at every level), gaps and CIs
    got = next(c for c in an["comparisons"] if (c["method"], c["baseline"]) == ("m", "b"))
    want = find_comparison(ev, "m", "b", "pass@k")
    # equal up to float summation order (pandas < 3.1 sums in another order: 1-3 ulp)
    assert flat(got["multiplier_max"]) == pytest.approx(flat(want["multiplier_max"]), rel=1e-12)
    assert flat(got["multipliers"]) == pytest.approx(flat(want["multipliers"]), rel=1e-12)
    assert flat(got["gap"]) == pytest.approx(flat(want["gap"]), rel=1e-12)   # sums in another order
    assert got["multiplier_max"]["value"] is not None and got["multipliers"]
    assert an["compute_unit"] == ev["compute_col"] == "generated_tokens"
    # the same compute and accuracy at every k, and that compute is the stated convention
    for method in ("m", "b"):
        pts = {p["k"]: p for p in ev["curves"][method]["pass@k"]}
        blk = an["methods"][method]
        assert sorted(pts) == list(range(1, n + 1)) == [int(k) for k in blk["compute@k"]]
        mine = [x for x in lines if x["method"] == method]
        for k in range(1, n + 1):
            pt = pts[k]
            assert blk["compute@k"][str(k)] == pytest.approx(pt["compute"]["mean"], rel=1e-12)
            assert pt["compute"]["mean"] == pytest.approx(pt["compute_means"]["generated_tokens"], rel=1e-12)
            assert blk["prompt_tokens@k"][str(k)] == pytest.approx(pt["compute_means"]["prompt_tokens"], rel=1e-12)
            assert flat(blk["pass@k"][str(k)]) == pytest.approx(flat(pt["accuracy"]), rel=1e-12)
            by_p = {}
            for x in mine:
                by_p.setdefault(x["problem_id"], []).append(x)
            hand_gen = np.mean([k * np.mean([x["completion_tokens"] for x in s]) for s in by_p.values()])
            hand_prompt = np.mean([s[0]["prompt_tokens"] for s in by_p.values()])   # once, not k times
            assert blk["compute@k"][str(k)] == pytest.approx(hand_gen, rel=1e-12)
            assert blk["prompt_tokens@k"][str(k)] == pytest.approx(hand_prompt, rel=1e-12)


def test_every_bad_line_is_reported_with_its_number(tmp_path):
    good = {"problem_id": "p", "sample_id": 0, "correct": True}
    rows = [good,                                                   # 1 ok
            "{not json",                                            # 2
            {"problem_id": 3, "sample_id": 1, "correct": 1},        # 3 id not a string
            {"problem_id": "p", "sample_id": 2, "correct": 1.5},    # 4 out of range
            "   ",                                                  # 5 blank: skipped
            good,                                                   # 6 duplicate of 1
            {"problem_id": "p", "sample_id": 3},                    # 7 no correct
            {"problem_id": "p", "sample_id": True, "correct": 0},   # 8 bool id
            [1, 2]]                                                 # 9 not an object
    with pytest.raises(AnalyzeInputError) as ei:
        analyze_file(write(tmp_path / "s.jsonl", rows), tmp_path / "o")
    lines = sorted({n for n, _ in ei.value.errors})
    assert lines == [2, 3, 4, 6, 7, 8, 9]
    msg = str(ei.value)
    assert isinstance(ei.value, ValueError) and all(f"line {n}:" in msg for n in lines) and "line 5:" not in msg
    assert "line 1" in msg  # the duplicate names the first occurrence
    assert not (tmp_path / "o" / "summary.json").exists()


def _tokens_on_one_line(rows):
    rows[0]["completion_tokens"] = 5
    return rows


def _answer_missing_on_one_line(rows):
    rows[1].pop("answer")
    return rows


def _b_lacks_p2(rows):
    return [r for r in rows if not (r["method"] == "B" and r["problem_id"] == "p2")]


@pytest.mark.parametrize("mutate,needle", [
    (_tokens_on_one_line, "line 2: lacks 'completion_tokens'"),
    (_answer_missing_on_one_line, "line 2: lacks 'answer'"),
    (_b_lacks_p2, "method 'B' has no samples for problem(s) ['p2']"),
])
def test_inconsistent_files_are_errors(tmp_path, mutate, needle):
    with pytest.raises(ValueError) as ei:
        analyze_file(write(tmp_path / "s.jsonl", mutate(hand_rows())), tmp_path / "o")
    assert needle in str(ei.value)


def test_unknown_keys_warn_and_output_is_written_atomically(tmp_path, monkeypatch):
    rows = [{"problem_id": "p", "sample_id": i, "correct": 1, "engine": "vllm"} for i in range(2)]
    path = write(tmp_path / "s.jsonl", rows)
    s = analyze_file(path, tmp_path / "o", B=50)
    assert any("'engine'" in w and "line 1" in w for w in s["warnings"])
    before = (tmp_path / "o" / "summary.json").read_text()

    def boom(*a, **k):
        raise RuntimeError("disk full")
    import spiral_bench.fileio as fileio
    monkeypatch.setattr(fileio.os, "fsync", boom)  # fails after the temp file holds the data
    with pytest.raises(RuntimeError):
        analyze_file(path, tmp_path / "o", B=60)
    assert (tmp_path / "o" / "summary.json").read_text() == before  # old file intact
    assert os.listdir(tmp_path / "o") == ["summary.json"]  # no temp file left behind


def test_samples_decoded_together_are_scored_at_their_groups_width(tmp_path):
    """Issue 26, case 7: a grouped export (samples of one group decoded together, here perfectly
    correlated: a group is all right or all wrong) was pooled as independent samples: pass@4 from
    two groups of 4 (one right) read 1 - 1/C(8,4) = 0.986. Declared with `group`, it is measured at
    the groups' width: pass@4 = mean over groups of "any correct" = 0.5, pass@1 = 0.5, maj@4 = 0.5."""
    rows = []
    for p in ("p1", "p2"):
        for g, ok in ((0, True), (1, False)):
            rows += [{"method": "bridge", "problem_id": p, "sample_id": 4 * g + i, "group": g, "correct": ok,
                      "answer": "1" if ok else "2", "completion_tokens": 10} for i in range(4)]
        rows += [{"method": "plain", "problem_id": p, "sample_id": i, "correct": i % 2 == 0,
                  "answer": str(i % 2 + 1), "completion_tokens": 10} for i in range(8)]
    s = analyze_file(write(tmp_path / "g.jsonl", rows), tmp_path / "out", B=100)
    br = s["methods"]["bridge"]
    assert list(br["pass@k"]) == ["1", "4"] and br["estimator"].startswith("direct: groups of 4")
    assert br["pass@k"]["4"]["mean"] == 0.5 and br["pass@k"]["1"]["mean"] == 0.5 and br["maj@k"]["4"]["mean"] == 0.5
    assert br["compute@k"] == {"1": 10.0, "4": 40.0}
    plain = s["methods"]["plain"]
    assert plain["estimator"].startswith("pooled") and plain["pass@k"]["4"]["mean"] == pytest.approx(1 - 1 / 70)
    assert not any("group" in w for w in s["warnings"])
    # a method that mixes grouped and ungrouped lines, or groups of two widths, is refused
    bad = [dict(r) for r in rows]
    del bad[0]["group"]
    with pytest.raises(AnalyzeInputError, match="lacks 'group'"):
        analyze_file(write(tmp_path / "b.jsonl", bad), tmp_path / "out2", B=50)
    uneven = [r for r in rows if not (r["method"] == "bridge" and r["sample_id"] == 7)]
    with pytest.raises(AnalyzeInputError, match=r"unequal sizes \[3, 4\]"):
        analyze_file(write(tmp_path / "u.jsonl", uneven), tmp_path / "out3", B=50)
