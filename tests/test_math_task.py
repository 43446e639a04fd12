"""The `math` task: its train split (the MATH test split minus MATH-500) and its test split (MATH-500,
as `math500`), on the committed excerpts and, where $SPIRAL_BENCH_DATA has them, the full files
(conftest.data_dir); the boxed-answer extractor; the errors without data; and the `train_paper`
preset's task, which must have a train split. No network: the hub path is only run offline.

References are independent of the task code: the raw JSONL rows read with `json`, MATH-500's own
`answer` field for the MATH rows that are MATH-500 problems, and hand-written boxed solutions.
"""
import json
import shutil

import pytest

from conftest import FIXTURE_DATA
from spiral_bench.tasks import get_task
from spiral_bench.tasks.datasets_tasks import boxed_answer, math_level
from spiral_bench.tasks.graders import latex_is_safe

MATH = "math/math_test_5000.jsonl"
MATH500 = "math500/test.jsonl"


def rows(data_dir, rel):
    return [json.loads(line) for line in (data_dir / rel).read_text(encoding="utf-8").splitlines()]


def norm(text):
    return " ".join(text.split())


@pytest.fixture(scope="module")
def math_task(data_dir):
    return get_task("math", data_dir=str(data_dir))


@pytest.fixture(scope="module")
def train(math_task):
    return math_task.problems("train")


# --- the extractor ------------------------------------------------------------------------------
def test_boxed_answer_balances_braces_and_takes_the_last():
    assert boxed_answer("so $x = \\boxed{\\frac{1}{2}}$.") == "\\frac{1}{2}"
    assert boxed_answer("first \\boxed{3}, then \\boxed{ \\sqrt{\\frac{a}{b^{2}}} }.") == "\\sqrt{\\frac{a}{b^{2}}}"
    assert boxed_answer("$\\boxed{\\left( 3, \\frac{\\pi}{2} \\right)}$") == "\\left( 3, \\frac{\\pi}{2} \\right)"
    assert boxed_answer("\\boxed{\\text{(C)}}") == "\\text{(C)}"
    assert boxed_answer("the answer is 5") is None
    assert boxed_answer("\\boxed{\\frac{1}{2}") is None            # unbalanced
    assert boxed_answer("\\boxed{ }") is None and boxed_answer(None) is None and boxed_answer("") is None
    assert [math_level(x) for x in ("Level 3", 5, "Level ?", None)] == [3, 5, None, None]


def test_train_rows_take_an_answer_field_or_the_boxed_solution(math_task):
    hub_like = math_task.to_problem({"problem": "p", "answer": " 7 ", "level": "Level 2"}, 3, "train")
    assert (hub_like.id, hub_like.answer, hub_like.meta["level"]) == ("math-train-00003", "7", 2)
    boxed = math_task.to_problem({"problem": "p", "solution": "\\boxed{\\frac{3}{4}}", "idx": 42}, 0, "train")
    assert (boxed.id, boxed.answer) == ("math-train-00042", "\\frac{3}{4}")
    with pytest.raises(ValueError, match="idx 9 has no answer"):
        math_task.to_problem({"problem": "p", "solution": "no box here", "idx": 9}, 0, "train")


# --- the train split ----------------------------------------------------------------------------
def test_train_is_the_math_file_minus_math500(data_dir, train):
    raw, held = rows(data_dir, MATH), {norm(r["problem"]) for r in rows(data_dir, MATH500)}
    in_500 = [r for r in raw if norm(r["problem"]) in held]
    # the excerpt holds 5 MATH-500 problems (those of the math500 excerpt), so dropping them is tested there too
    full = data_dir != FIXTURE_DATA
    assert (len(raw), len(in_500), len(train)) == ((5000, 500, 4500) if full else (30, 5, 25))
    assert not {norm(p.question) for p in train} & held                      # disjoint from MATH-500
    keep = [r for r in raw if norm(r["problem"]) not in held]
    assert [p.question for p in train] == [r["problem"] for r in keep]        # file order, nothing else lost
    assert [p.id for p in train] == [f"math-train-{r['idx']:05d}" for r in keep]
    assert len({p.id for p in train}) == len(train)
    # the extractor against an independent gold: MATH-500's answer field for the same problems
    gold = {norm(r["problem"]): r["answer"] for r in rows(data_dir, MATH500)}
    assert [boxed_answer(r["solution"]) for r in in_500] == [gold[norm(r["problem"])] for r in in_500]
    assert all(p.answer and p.answer == boxed_answer(r["solution"]) for p, r in zip(train, keep))
    assert all(p.meta["subject"] == r["type"] and p.meta["level"] == int(r["level"][-1]) for p, r in zip(train, keep))


def test_train_ids_are_stable_and_selection_deterministic(data_dir, math_task, train):
    again = get_task("math", data_dir=str(data_dir)).problems("train")
    assert [p.id for p in again] == [p.id for p in train] and [p.answer for p in again] == [p.answer for p in train]
    assert train[0].id == "math-train-00000" and train[0].answer == "2"     # line 0 of the MATH test file
    assert math_task.problems("train", 4) == train[:4]
    shuffled = math_task.problems("train", 6, seed=3)
    assert shuffled == math_task.problems("train", 6, seed=3) and shuffled != train[:6]
    prompt = math_task.prompt(train[0])
    assert prompt.startswith(train[0].question) and prompt.endswith("within \\boxed{}.")


def test_every_train_answer_is_scored_by_the_tasks_own_grader(data_dir, math_task, train):
    """The grader gives 1 to `\\boxed{<gold>}` and 0 to a wrong number, for all 4,500 answers: the
    three whose gold the safety bound rejects (math-train-02854 `\\frac{1}{2004!}`, -04641
    `2^{2005}`, -04923 `3^{2007}`; graders.latex_is_safe: no 4-digit exponent or factorial) are
    compared as exact strings before that bound, so an exact copy scores 1."""
    fails = [p for p in train if math_task.reward(p, f"so \\boxed{{{p.answer}}}.") != 1.0]
    print(f"math train grader self-check: {len(train) - len(fails)}/{len(train)} pass; failing: "
          f"{[(p.id, p.answer) for p in fails]}")
    assert fails == []
    unsafe = [p.id for p in train if not latex_is_safe(p.answer)]
    assert data_dir == FIXTURE_DATA or unsafe == ["math-train-02854", "math-train-04641", "math-train-04923"]
    assert all(math_task.reward(p, "\\boxed{-98765}") == 0.0 for p in train[:40])


# --- the test split is MATH-500 -----------------------------------------------------------------
def test_test_split_is_math500_with_the_same_grading(data_dir, math_task):
    m500 = get_task("math500", data_dir=str(data_dir))
    mine, theirs = math_task.problems("test"), m500.problems("test")
    assert [(p.id, p.question, p.answer) for p in mine] == [(p.id, p.question, p.answer) for p in theirs]
    assert len(mine) == (500 if data_dir != FIXTURE_DATA else 42)
    for p in mine[:12]:
        for completion in (f"\\boxed{{{p.answer}}}", "\\boxed{-98765}", "no answer", "\\boxed{0.5}"):
            assert math_task.reward(p, completion) == m500.reward(p, completion)
        assert math_task.prompt(p) == m500.prompt(p) and math_task.canonical(p.answer) == m500.canonical(p.answer)


# --- errors -------------------------------------------------------------------------------------
def test_missing_files_hub_and_split_errors(tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match="math_test_5000.jsonl"):
        get_task("math", data_dir=str(tmp_path)).problems("train")
    (tmp_path / "math").mkdir()
    shutil.copy(FIXTURE_DATA / MATH, tmp_path / MATH)       # the MATH file alone: MATH-500 is needed to exclude
    with pytest.raises(FileNotFoundError, match="math500"):
        get_task("math", data_dir=str(tmp_path)).problems("train")
    with pytest.raises(ValueError, match="no split 'validation'"):
        get_task("math", data_dir=str(tmp_path)).problems("validation")
    # no data folder and no network (HF_*_OFFLINE=1, an empty cache): a clear error naming both files
    monkeypatch.delenv("SPIRAL_BENCH_DATA", raising=False)
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    with pytest.raises(FileNotFoundError, match=r"no data folder .*math_test_5000.jsonl and math500/test.jsonl"):
        get_task("math").problems("train")


# --- the train_paper preset trains on a task with a train split ---------------------------------
def test_train_paper_preset_task_has_a_train_split():
    from spiral_bench.trainers.train_config import make_config
    cfg = make_config(None, "train_paper", {})
    assert get_task(cfg.task, **cfg.task_options).problems("train", 2)
    math_cfg = make_config("grpo", "train_paper", {"task": "math"})
    assert (math_cfg.task, math_cfg.task_options) == ("math", {})
    assert len(get_task("math", **math_cfg.task_options).problems("train", 3)) == 3   # the excerpts ($SPIRAL_BENCH_DATA)
