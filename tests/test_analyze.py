"""`analyze_file`: hand-computed summaries, input validation with line numbers, atomic output."""
import json
import os

import numpy as np
import pytest

from spiral_bench.analyze import AnalyzeInputError, analyze_file
from spiral_bench.stats import PairedBootstrap, percentile_ci


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
    # per-sample tokens: a -> 40, b -> 60; a k-sample cell costs k * that, averaged over problems
    assert s["compute_unit"] == "tokens"
    assert s["methods"]["x"]["compute@k"] == {"1": 50.0, "2": 100.0}
    assert len(s["comparisons"]) == 2


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
