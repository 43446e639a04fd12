"""Benchmark graders on real benchmark files (the committed excerpts, and the full files where
$SPIRAL_BENCH_DATA has them: see conftest.data_dir), a table of tricky equivalences, and the time
limits of the math-verify wrapper (main thread and worker threads)."""
import json
import re
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from fractions import Fraction

import pytest

from spiral_bench.tasks import get_task
from spiral_bench.tasks.base import Problem
from spiral_bench.tasks.graders import latex_is_safe, math_equal, parse_number, run_with_timeout


NAMES = ("gsm8k", "math500", "aime24", "aime25")


@pytest.fixture(scope="module")
def tasks(data_dir):
    return {n: get_task(n, data_dir=str(data_dir)) for n in NAMES}


@pytest.fixture(scope="module")
def graders():
    """The tasks without data (graders only: no file is read unless problems() is called)."""
    return {n: get_task(n) for n in NAMES}


# --- loading ------------------------------------------------------------------------------------
def test_loading_counts_ids_and_prompts(tasks, data_counts):
    files = {"gsm8k": "gsm8k/test.jsonl", "math500": "math500/test.jsonl", "aime24": "aime/aime24.jsonl",
             "aime25": "aime/aime25.jsonl"}
    for name, t in tasks.items():
        probs = t.problems("test")
        assert len(probs) == data_counts[files[name]] and len({p.id for p in probs}) == len(probs)
        assert t.prompt(probs[0]).startswith(probs[0].question) and "\\boxed{}" in t.prompt(probs[0])
    assert tasks["gsm8k"].problems("test")[32].id == "gsm8k-test-00032"
    assert len(tasks["gsm8k"].problems("train")) == data_counts["gsm8k/train.jsonl"]
    assert tasks["math500"].problems("test")[0].id == "test/precalculus/807.json"
    a24 = tasks["aime24"].problems("test")
    assert a24[0].id == "aime24-I-01" and a24[0].answer == "204"
    assert {"aime24-I-02", "aime24-II-01"} <= {p.id for p in a24}
    assert next(p for p in a24 if p.id == "aime24-I-02").answer == "25"  # "025" in the file
    assert {p.id for p in tasks["aime25"].problems("test")} == {f"aime25-{c}-{k:02d}" for c in ("I", "II")
                                                              for k in range(1, 16)}
    assert [p.id for p in tasks["gsm8k"].problems("test", 5)] == [f"gsm8k-test-{i:05d}" for i in range(5)]
    shuffled = tasks["gsm8k"].problems("test", 5, seed=7)
    assert shuffled == tasks["gsm8k"].problems("test", 5, seed=7) and shuffled != tasks["gsm8k"].problems("test", 5)


def test_missing_file_and_split_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match=re.escape(str(tmp_path / "math500" / "test.jsonl"))):
        get_task("math500", data_dir=str(tmp_path)).problems("test")
    with pytest.raises(FileNotFoundError, match="aime24.jsonl"):
        get_task("aime24", data_dir=str(tmp_path)).problems()
    with pytest.raises(ValueError, match="no split 'train'"):
        get_task("math500", data_dir=str(tmp_path)).problems("train")


# --- every gold answer graded against itself ------------------------------------------------------
def _gsm_plus_one(ans: str) -> str:
    return str(parse_number(ans) + 1)


def test_gsm8k_every_gold_answer(tasks, data_dir):
    t = tasks["gsm8k"]
    probs = t.problems("test")
    rows = [json.loads(line) for line in open(data_dir / "gsm8k" / "test.jsonl")]
    for p, row in zip(probs, rows):
        gold = p.answer
        assert t.reward(p, f"Let me think. ... so the answer is \\boxed{{{gold}}}") == 1.0, gold
        assert t.reward(p, f"#### {gold}") == 1.0, gold
        assert t.reward(p, row["answer"]) == 1.0, gold  # the reference solution as written
        assert t.reward(p, f"The answer is ${gold}.") == 1.0, gold
        assert t.reward(p, f"so the answer is \\boxed{{{_gsm_plus_one(gold)}}}") == 0.0, gold
        assert t.reward(p, f"#### {gold}1") == 0.0, gold
    assert t.canonical("1,000") == t.canonical("$1000.00") == t.canonical("\\boxed{1000}") == "1000"


def test_math500_every_gold_answer(tasks):
    t = tasks["math500"]
    probs = t.problems("test")
    answers = [p.answer for p in probs]
    for i, p in enumerate(probs):
        gold = p.answer
        assert latex_is_safe(gold), gold  # the input guard never rejects a real answer
        assert t.reward(p, f"... so the answer is \\boxed{{{gold}}}") == 1.0, gold
        # the same answer, written differently, so it goes through math-verify (no string match)
        assert t.reward(p, f"\\boxed{{\\displaystyle {gold}}}") == 1.0, gold
        assert t.reward(p, f"\\boxed{{\\displaystyle {gold} + 1}}") == 0.0, gold
        other = answers[(i + 1) % len(answers)]
        assignment = re.fullmatch(r"\s*[a-z]\s*=\s*(.+)", other)  # math-verify reads "x=5" as 5
        expected = other == gold or bool(assignment and assignment.group(1).strip() == gold)
        assert t.reward(p, f"\\boxed{{{other}}}") == float(expected), (gold, other)


def test_aime_every_gold_answer(tasks):
    for name in ("aime24", "aime25"):
        t = tasks[name]
        for p in t.problems("test"):
            gold = int(p.answer)
            assert t.reward(p, f"so the answer is \\boxed{{{gold}}}") == 1.0
            assert t.reward(p, f"\\boxed{{{gold:03d}}}") == 1.0        # "025" == "25"
            assert t.reward(p, f"The answer is {gold}.") == 1.0
            assert t.reward(p, f"\\boxed{{{gold + 1}}}") == 0.0
            assert t.reward(p, f"\\boxed{{{gold}}} wait, no: \\boxed{{{gold + 1}}}") == 0.0  # the last box counts
            assert t.canonical(t.extract(f"\\boxed{{{gold:03d}}}")) == str(gold)


# --- tricky equivalences ----------------------------------------------------------------------------
# (task, gold, completion, expected verdict, note)
TABLE = [
    ("math500", "\\frac{1}{2}", "\\boxed{0.5}", 1, ""),
    ("math500", "\\frac{1}{2}", "\\boxed{\\dfrac12}", 1, ""),
    ("math500", "0.5", "The answer is $\\frac{1}{2}$.", 1, ""),
    ("math500", "3", "\\boxed{x = 3}", 1, ""),
    ("math500", "1000", "\\boxed{1,000}", 1, ""),
    ("math500", "10,\\!080", "\\boxed{10080}", 1, ""),
    ("math500", "18", "\\boxed{18 \\text{ dollars}}", 1, ""),
    ("math500", "18", "The answer is 18 dollars.", 1, "plain-word units are stripped before math-verify"),
    ("math500", "90^\\circ", "\\boxed{90}", 1, ""),
    ("math500", "\\text{(C)}", "\\boxed{C}", 1, ""),
    ("math500", "\\text{Evelyn}", "\\boxed{Evelyn}", 1, ""),
    ("math500", "\\text{Evelyn}", "\\boxed{\\text{Evenly}}", 0, ""),
    ("math500", "\\sqrt{2}/2", "\\boxed{\\frac{\\sqrt{2}}{2}}", 1, ""),
    ("math500", "\\left( 3, \\frac{\\pi}{2} \\right)", "\\boxed{(3, \\pi/2)}", 1, ""),
    ("math500", "x^3+3x-6", "\\boxed{3x + x^3 - 6}", 1, ""),
    ("math500", "\\frac{1}{3}", "\\boxed{0.333}", 0, ""),
    ("math500", "2", "\\boxed{-2}", 0, ""),
    ("math500", "1000", "\\boxed{1.000}", 0, ""),
    ("math500", "12", "\\boxed{1,2}", 0, "read as the set {1, 2}"),
    ("math500", "\\frac{1}{2}", "\\boxed{\\frac{1}{2}} or maybe \\boxed{3}", 0, "the last box counts"),
    ("math500", "\\frac{1}{2}", "\\boxed{\\frac{1}{2}", 0, "unbalanced box"),
    ("math500", "\\frac12", "\\boxed{0.50000001}", 1, "math-verify QUIRK: rounds floats to 6 places"),
    ("math500", "2", "\\boxed{2.0000001}", 0, "math-verify QUIRK: ...but not here (inconsistent)"),
    ("math500", "5", "\\boxed{x=5}", 1, "an assignment counts as its value"),
    ("math500", "902", "\\boxed{\\infty+\\tan(\\pi/2)}", 0, "math-verify says 1 (oo + zoo); our guard says 0"),
    ("math500", "902", "\\boxed{\\log(0)}", 0, ""),
    ("math500", "(-\\infty, 3]", "\\boxed{\\left(-\\infty, 3\\right]}", 1, "infinities in the gold stay allowed"),
    ("math500", "(-\\infty, 3]", "\\boxed{\\infty+\\tan(\\pi/2)}", 0, ""),
    ("aime24", "902", "\\boxed{\\infty+\\tan(\\pi/2)}", 0, "found by the fuzz test"),
    ("gsm8k", "18", "#### 18", 1, ""),
    ("gsm8k", "18", "\\boxed{18}", 1, ""),
    ("gsm8k", "18", "The answer is $18.00", 1, ""),
    ("gsm8k", "1000", "The answer is 1,000.", 1, ""),
    ("gsm8k", "1,000", "\\boxed{1000}", 1, ""),
    ("gsm8k", "18", "She makes 18 dollars", 1, ""),
    ("gsm8k", "18", "The answer is 18 dollars.", 1, ""),
    ("gsm8k", "3", "x = 3", 1, ""),
    ("gsm8k", "3", "\\boxed{x = 3}", 1, ""),
    ("gsm8k", "-3", "\\boxed{-3}", 1, ""),
    ("gsm8k", "18", "#### 19", 0, ""),
    ("gsm8k", "18", "\\boxed{١٨}", 0, "unicode digits are not normalised"),
    ("gsm8k", "18", "\\boxed{１８}", 0, "full-width digits are not normalised"),
    ("gsm8k", "18", "\\boxed{18.5}", 0, ""),
    ("gsm8k", "18", "18 apples, then 19", 0, "the last number counts"),
    ("gsm8k", "1000", "\\boxed{1.000}", 0, ""),
    ("gsm8k", "18", "\\boxed{1e1+8}", 0, ""),
    ("aime24", "25", "\\boxed{025}", 1, ""),
    ("aime24", "25", "\\boxed{25.0}", 1, ""),
    ("aime24", "25", "\\boxed{\\frac{50}{2}}", 1, ""),
    ("aime24", "25", "\\boxed{24}", 0, ""),
    ("aime24", "25", "\\boxed{25.5}", 0, ""),
]


@pytest.mark.parametrize("task,gold,completion,expected,note", TABLE)
def test_equivalence_table(graders, task, gold, completion, expected, note):
    p = Problem("t", "q", gold)
    assert graders[task].reward(p, completion) == expected, note


def test_majority_vote_keys(graders):
    m = graders["math500"]
    assert m.canonical("0.5") == m.canonical("\\frac12") == m.canonical("\\dfrac{1}{2}") == "1/2"
    assert m.canonical("x^2+1") == m.canonical("1 + x^2") and m.canonical("x^2+1") != m.canonical("x^2+2")
    assert m.canonical(None) is None and m.canonical("10^{10^{10}}") is None
    assert graders["aime25"].canonical("025") == "25"


# --- time limits ------------------------------------------------------------------------------------
def test_run_with_timeout_main_thread_interrupts_python_code():
    prev = signal.getsignal(signal.SIGALRM)
    start = time.monotonic()

    def spin():
        x = 0
        while True:
            x += 1
    assert run_with_timeout(spin, 0.3, "late") == "late"
    assert time.monotonic() - start < 1.0
    assert signal.getsignal(signal.SIGALRM) is prev and signal.getitimer(signal.ITIMER_REAL)[0] == 0
    assert run_with_timeout(lambda: 7, 0.3) == 7
    assert run_with_timeout(lambda: 1 / 0, 0.3, "err") == "err"
    # an `except Exception` inside the timed code cannot swallow the deadline
    def stubborn():
        while True:
            try:
                time.sleep(0.01)
            except Exception:  # noqa: BLE001
                pass
    start = time.monotonic()
    assert run_with_timeout(stubborn, 0.2, "late") == "late" and time.monotonic() - start < 1.0


def test_graders_work_off_the_main_thread(tasks):
    start = time.monotonic()
    out = ThreadPoolExecutor(1).submit(run_with_timeout, lambda: time.sleep(3), 0.3, "late").result()
    assert out == "late" and time.monotonic() - start < 1.5
    probs = tasks["math500"].problems("test", 40)
    t = tasks["math500"]

    def grade(p):
        assert threading.current_thread() is not threading.main_thread()
        return (t.reward(p, f"\\boxed{{\\displaystyle {p.answer}}}"),
                t.reward(p, f"\\boxed{{\\displaystyle {p.answer}+1}}"),
                math_equal(p.answer, "10^{10^{10}}"))
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(grade, probs))
    assert results == [(1.0, 0.0, False)] * len(probs)


def test_parse_number_normalisation():
    cases = {"1,000": 1000, "$18.00": 18, "18 dollars": 18, "x = 3": 3, "\\boxed{18}": 18, "-3/4": Fraction(-3, 4),
             "\\$32,\\!348": 32348, "10,\\!080": 10080, "\\frac{270}7\\text{ degrees}": Fraction(270, 7),
             "90^\\circ": 90, "50\\%": 50, ".5": Fraction(1, 2), "1{,}000": 1000}
    for text, want in cases.items():
        assert parse_number(text) == want, text
    for text in ["١٨", "１８", "1e5", "nan", "inf", "3 apples and 4", "1,2", "9" * 41, "1/0", "", None, "²"]:
        assert parse_number(text) is None, text


def test_latex_guard():
    for ok in ["x^2+1", "2^{10}", "9^{999}", "(x^2+1)^2", "10^{-5}", "5!", "\\binom{10}{3}", "\\frac{\\sqrt{3}}{2}",
               "90^\\circ", "e^{i\\pi}"]:
        assert latex_is_safe(ok), ok
    for bad in ["9**9**9", "9^9^9", "10^{10^{10}}", "2^{10000}", "x^{x^{x}}", "(10^{99})^{99}", "(((2^2)^2)^2)^2",
                "1000!", "(3!)!", "\\binom{100000}{5}", "\\Gamma(5)", "\\sum_{i=1}^{9} i", "\\int_0^1 x",
                "١٨", "１８", "18²", "1\x002", "((((((((1))))))))", "9" * 61, "x" * 401, "__import__('os')", ""]:
        assert not latex_is_safe(bad), bad


def test_a_grading_backend_error_is_counted_not_silent(monkeypatch, tmp_path, capsys):
    """An exception inside math-verify (math-verify 0.7 calls signal.alarm(None) here) scores 0 but is
    counted, and the count reaches analysis.json's warnings (so the report) and survives a resume."""
    import math_verify
    from spiral_bench.evaluate import note_grader_errors
    from spiral_bench.tasks import graders

    def broken(*a, **k):
        raise TypeError("'NoneType' object cannot be interpreted as an integer")
    graders.reset_grader_errors()
    graders._math_equal.cache_clear()
    t, p = get_task("math500"), Problem("t", "q", "\\sqrt{2}/2")
    assert t.reward(p, "\\boxed{\\frac{\\sqrt{2}}{2}}") == 1.0 and graders.grader_errors()["count"] == 0
    graders._math_equal.cache_clear()
    monkeypatch.setattr(math_verify, "verify", broken)
    assert t.reward(p, "\\boxed{\\frac{\\sqrt{2}}{2}}") == 0.0
    errs = graders.grader_errors()
    assert errs["count"] == 1 and list(errs["kinds"]) == ["math-verify verify: TypeError"]
    graders._math_equal.cache_clear()
    analysis = {"warnings": []}
    assert note_grader_errors(analysis, tmp_path)["count"] == 1
    assert "raised 1 error(s)" in analysis["warnings"][0] and "scored 0" in analysis["warnings"][0]
    assert "warning: the grader's backend raised 1" in capsys.readouterr().err
    assert t.reward(p, "\\boxed{\\frac{2}{2\\sqrt{2}}}") == 0.0            # a resumed attempt adds its own
    again = {}
    assert note_grader_errors(again, tmp_path)["count"] == 2 and graders.grader_errors()["count"] == 0
    monkeypatch.undo()
    graders._math_equal.cache_clear()
    (tmp_path / "clean").mkdir()
    clean: dict = {}
    assert note_grader_errors(clean, tmp_path / "clean")["count"] == 0 and "warnings" not in clean
