"""Benchmark tasks loaded through `datasets`: gsm8k, math500, math, aime24, aime25.

Source: option `data_dir` (default `spiral_bench.data_dir()`, i.e. $SPIRAL_BENCH_DATA): local
JSONL files in this layout (README.md, "Data"), read with `datasets.load_dataset("json", ...)`:
    gsm8k/{train,test}.jsonl   question, answer ("... #### 18")
    math500/test.jsonl         problem, answer, subject, level, unique_id
    math/math_test_5000.jsonl  problem, solution (answer: its last \\boxed{}), type, level ("Level 3"), idx
    aime/aime24.jsonl          id, problem, answer ("025"), url (names contest I/II, problem no.)
    aime/aime25.jsonl          id ("0".."29": 0-14 are 2025 I, 15-29 are 2025 II), problem, answer (int)
A missing file is a FileNotFoundError naming it. Without a data folder, the hub datasets are
used (needs network; offline, a FileNotFoundError that says what to provide): openai/gsm8k "main",
HuggingFaceH4/MATH-500, HuggingFaceH4/aime_2024 (split "train"), math-ai/aime25 (split "test"); `math` train: DigitalLearningGmbH/MATH-lighteval
(the MATH train split, 7,500; also disjoint from MATH-500, which MATH drew from its test split).

`math`: split "train" is the MATH test split minus the MATH-500 problems (matched on the problem
text with whitespace collapsed: 5,000 - 500 = 4,500 problems, disjoint from MATH-500 by
construction; the exclusion also runs on hub rows), split "test" is MATH-500 itself (the same
problems, ids, answers and grading as `math500`). A train answer is the last \\boxed{} of the
solution (balanced braces, `graders.last_boxed`), or the row's `answer` field where it has one.

Ids: `gsm8k-test-00042` (file order), MATH-500 `unique_id` (`test/precalculus/807.json`),
`aime24-I-01` / `aime25-II-15` (contest and problem number), `math-train-00042` (the row's `idx`:
its line in the MATH test file, kept when the MATH-500 lines are removed). `problems(split, n, seed)`: the
file order when seed == 0, else a seed-shuffled order; then the first n.

Prompt: the question, a blank line, and "Please reason step by step, and put your final answer
within \\boxed{}." (spiral_bench/prompts/math_instruction.txt). Aggregation prompt:
spiral_bench/prompts/dataset_aggregation.txt (the paper's: audit each candidate using only its
visible text, then a single solution after a "Final Solution" marker). Grading (never raises, bounded in time, see graders.py):
- gsm8k: the final number (`graders.extract_number`: "#### 18", last \\boxed{}, "answer is",
  else the last number; "1,000", "$18.00", "18 dollars" normalised) equals the gold number.
- math500, math: math-verify equivalence of the answer region with the gold answer.
- aime24/25: the region as an exact number equals the gold integer ("025" == "25"); if the
  region is not a plain number, math-verify against the gold integer.
`canonical` (majority-vote key): the exact number ("18", "1/2") or math-verify's parse as text.
"""
from __future__ import annotations

import dataclasses
import os
import random
import re

import spiral_bench
from spiral_bench.chat import read_prompt
from spiral_bench.config import build, option

from .base import Problem, Task, register
from .graders import (MATH_TIMEOUT_S, answer_region, extract_number, format_fraction, last_boxed,
                      math_canonical, math_equal, parse_number, record_error)

INSTRUCTION = read_prompt("math_instruction.txt")  # "... put your final answer within \\boxed{}."


def load_jsonl(path: str) -> list[dict]:
    """Rows of a local JSONL file, read with `datasets`; FileNotFoundError names a missing file."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"data file not found: {path} (expected the data folder layout of "
                                "README.md, 'Data'; set --data-dir / $SPIRAL_BENCH_DATA)")
    import datasets
    return datasets.load_dataset("json", data_files=os.path.abspath(path), split="train").to_list()


def select(items: list, n: int | None = None, seed: int = 0) -> list:
    """The first n items, in file order (seed 0) or in a `random.Random(seed)` shuffled order."""
    items = list(items)
    if seed:
        random.Random(seed).shuffle(items)
    return items if n is None else items[:n]


@dataclasses.dataclass(frozen=True)
class DatasetConfig:
    data_dir: str | None = option(None, help="data folder (layout: README.md, 'Data'); None: "
                                  "$SPIRAL_BENCH_DATA, else the hub")
    timeout_s: float = option(MATH_TIMEOUT_S, help="wall-clock limit of one math-verify call (s)",
                              min=0.05, max=30.0)


class DatasetTask(Task):
    """Shared loading, prompting and extraction of the benchmark tasks."""

    files: dict[str, str] = {}                         # split -> path under data_dir
    hub: dict[str, tuple[str, str | None, str]] = {}   # split -> (dataset id, config, hub split)
    # the paper's aggregation prompt: audit each candidate from its visible text, then one solution
    # after a "Final Solution" marker (spiral_bench/prompts/dataset_aggregation.txt)
    aggregation_template = read_prompt("dataset_aggregation.txt")

    def __init__(self, **options):
        self.cfg = build(DatasetConfig, options)
        self.data_dir = spiral_bench.data_dir(self.cfg.data_dir)
        self._cache: dict[str, list[Problem]] = {}

    def local_files(self, split: str) -> list[str]:
        """The files under a data folder that `split` needs (named in the no-data error)."""
        return [self.files[split]]

    def _rows(self, split: str) -> list[dict]:
        if split not in self.files:
            raise ValueError(f"task {self.name!r} has no split {split!r}; choose one of {list(self.files)}")
        if self.data_dir is not None:
            return load_jsonl(os.path.join(self.data_dir, self.files[split]))
        import datasets
        path, config, hub_split = self.hub[split]
        try:
            return datasets.load_dataset(path, config, split=hub_split).to_list()
        except (ConnectionError, OSError) as e:  # offline, or the hub is unreachable
            raise FileNotFoundError(
                f"task {self.name!r}: no data folder (--data-dir or $SPIRAL_BENCH_DATA) and the hub dataset "
                f"{path!r} could not be loaded ({type(e).__name__}: {e}); put {' and '.join(self.local_files(split))} "
                "in a data folder as README.md 'Data' describes") from None

    def to_problem(self, row: dict, i: int, split: str) -> Problem:
        raise NotImplementedError

    def problems(self, split: str = "test", n: int | None = None, seed: int = 0) -> list[Problem]:
        if split not in self._cache:
            self._cache[split] = [self.to_problem(r, i, split) for i, r in enumerate(self._rows(split))]
        return select(self._cache[split], n, seed)

    def prompt(self, problem: Problem) -> str:
        return f"{problem.question}\n\n{INSTRUCTION}"

    def extract(self, completion: str) -> str | None:
        try:
            return answer_region(completion)
        except Exception:  # noqa: BLE001
            return None

    def describe(self) -> dict:
        return {**super().describe(), "data_dir": self.data_dir, "timeout_s": self.cfg.timeout_s}


@register("gsm8k")
class GSM8KTask(DatasetTask):
    """GSM8K grade-school word problems (1,319 test, 7,473 train); exact final number."""

    name = "gsm8k"
    files = {"train": "gsm8k/train.jsonl", "test": "gsm8k/test.jsonl"}
    hub = {"train": ("openai/gsm8k", "main", "train"), "test": ("openai/gsm8k", "main", "test")}

    def to_problem(self, row, i, split):
        answer = row["answer"].split("####")[-1].strip()
        return Problem(f"gsm8k-{split}-{i:05d}", row["question"], answer, {"solution": row["answer"]})

    def extract(self, completion: str) -> str | None:
        try:
            v = extract_number(completion)
            return None if v is None else format_fraction(v)
        except Exception:  # noqa: BLE001
            return None

    def canonical(self, answer: str | None) -> str | None:
        v = parse_number(answer)
        return None if v is None else format_fraction(v)

    def reward(self, problem: Problem, completion: str) -> float:
        try:
            got = self.extract(completion)
            return float(got is not None and got == self.canonical(problem.answer))
        except Exception as e:  # noqa: BLE001
            record_error(f"{self.name} reward", e)
            return 0.0


@register("math500")
class Math500Task(DatasetTask):
    """MATH-500 competition problems (500 test); math-verify equivalence of the boxed answer."""

    name = "math500"
    files = {"test": "math500/test.jsonl"}
    hub = {"test": ("HuggingFaceH4/MATH-500", None, "test")}

    def to_problem(self, row, i, split):
        return Problem(row["unique_id"], row["problem"], row["answer"],
                       {"subject": row.get("subject"), "level": row.get("level")})

    def canonical(self, answer: str | None) -> str | None:
        return math_canonical(answer, self.cfg.timeout_s)

    def reward(self, problem: Problem, completion: str) -> float:
        try:
            return float(math_equal(problem.answer, self.extract(completion), self.cfg.timeout_s))
        except Exception as e:  # noqa: BLE001
            record_error(f"{self.name} reward", e)
            return 0.0


def normalize_problem(text: str) -> str:
    """A problem text with runs of whitespace collapsed to one space and the ends stripped."""
    return " ".join(str(text).split())


def boxed_answer(solution: str | None) -> str | None:
    """The last `\\boxed{...}` of a worked solution (balanced braces, so `\\boxed{\\frac{1}{2}}` gives
    `\\frac{1}{2}`), stripped; None where there is none or it is empty or unbalanced."""
    if not solution:
        return None
    got = last_boxed(str(solution))
    return (got.strip() or None) if got is not None else None


def math_level(level) -> int | None:
    """MATH's level as an int: "Level 3" or 3 -> 3; anything else ("Level ?") -> None."""
    m = re.fullmatch(r"(?:Level\s*)?([1-5])", str(level).strip())
    return int(m.group(1)) if m else None


MATH_FILE = "math/math_test_5000.jsonl"


@register("math")
class MathTask(Math500Task):
    """MATH: train = MATH test split minus MATH-500 (4,500 problems), test = MATH-500; boxed answers."""

    name = "math"
    files = {"train": MATH_FILE, "test": Math500Task.files["test"]}
    hub = {"train": ("DigitalLearningGmbH/MATH-lighteval", None, "train"), "test": Math500Task.hub["test"]}

    def local_files(self, split: str) -> list[str]:
        return [MATH_FILE, self.files["test"]] if split == "train" else super().local_files(split)

    def _rows(self, split: str) -> list[dict]:
        rows = super()._rows(split)
        if split != "train":
            return rows
        held_out = {normalize_problem(r["problem"]) for r in super()._rows("test")}
        return [{**r, "idx": r.get("idx", k)} for k, r in enumerate(rows)
                if normalize_problem(r["problem"]) not in held_out]

    def to_problem(self, row, i, split):
        if split == "test":
            return super().to_problem(row, i, split)
        given = row.get("answer")
        answer = str(given).strip() if given not in (None, "") else boxed_answer(row.get("solution"))
        if not answer:
            raise ValueError(f"task 'math', split 'train': row idx {row.get('idx', i)} has no answer field and "
                             "no \\boxed{} in its solution")
        return Problem(f"math-train-{int(row.get('idx', i)):05d}", row["problem"], answer,
                       {"subject": row.get("type") or row.get("subject"), "level": math_level(row.get("level")),
                        "solution": row.get("solution")})


class _AimeTask(DatasetTask):
    year = "24"

    def _contest(self, row: dict, i: int) -> str:
        url = str(row.get("url") or "")
        m = re.search(r"AIME_(I{1,2})_Problems/Problem_([0-9]+)", url)
        if m:
            return f"{m.group(1)}-{int(m.group(2)):02d}"
        if self.year == "25" and str(row.get("id", "")).isdigit() and int(row["id"]) < 30:
            k = int(row["id"])
            return f"{'I' if k < 15 else 'II'}-{k % 15 + 1:02d}"
        return f"{i:02d}"

    def to_problem(self, row, i, split):
        answer = str(int(str(row["answer"]).strip()))
        question = row.get("problem") or row.get("question")
        return Problem(f"aime{self.year}-{self._contest(row, i)}", question, answer,
                       {"url": row.get("url")})

    def canonical(self, answer: str | None) -> str | None:
        v = parse_number(answer)
        if v is not None:
            return format_fraction(v)
        return math_canonical(answer, self.cfg.timeout_s)

    def reward(self, problem: Problem, completion: str) -> float:
        try:
            region = self.extract(completion)
            if region is None:
                return 0.0
            v = parse_number(region)
            if v is not None:
                return float(v == int(problem.answer))
            return float(math_equal(problem.answer, region, self.cfg.timeout_s))
        except Exception as e:  # noqa: BLE001
            record_error(f"{self.name} reward", e)
            return 0.0


@register("aime24")
class Aime24Task(_AimeTask):
    """AIME 2024 I and II (30 problems); integer answer 0-999."""

    name = "aime24"
    year = "24"
    files = {"test": "aime/aime24.jsonl"}
    hub = {"test": ("HuggingFaceH4/aime_2024", None, "train")}


@register("aime25")
class Aime25Task(_AimeTask):
    """AIME 2025 I and II (30 problems); integer answer 0-999."""

    name = "aime25"
    year = "25"
    files = {"test": "aime/aime25.jsonl"}
    hub = {"test": ("math-ai/aime25", None, "test")}
