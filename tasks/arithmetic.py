"""Procedural multi-step integer arithmetic, evaluated LEFT TO RIGHT, with a character-level scratchpad.

A problem is operands a_0..a_n and operators o_1..o_n (n = `n_ops`); its answer is
    v_0 = a_0 mod M,   v_k = (v_{k-1} o_k a_k) mod M,   answer = v_n
(left to right, no operator precedence; with `modulus` None or 0 there is no reduction).

Formats (printable ASCII only, so a character-level tokenizer over printable ASCII covers them):
- question `37+58*3-12`; search prompt `37+58*3-12=`;
- gold search trace `37+58=95;95*3=85;85-12=73;#73` (every value reduced mod M); the final
  answer is the integer after the last `#`. The trace ends right after the answer: samplers
  should stop on EOS or "\n" (`extract` reads only the first line of a completion).
- with `recheck_prob` p > 0, each step of a solver trace is written twice with probability p
  (fixed per problem and step): `37+58=95;37+58=95;95*3=85;...`, a redundant re-check for a
  length penalty (GRSP) to remove; `recheck_share(traces)` measures the share of such repeats.
- aggregation prompt `{prompt}|{cand 1}|...|{cand k}|>` (candidates are whole traces) and gold
  aggregation trace `37+58=95;95*3=85;85-12=73;ok:1,3;#73`: the recomputed steps, the 1-based
  indices of the candidates whose final answer agrees (`ok:-` if none), then the answer.
  A candidate is shown in search-trace form (`candidate_text` drops an aggregation trace's
  `ok:...;` note), so RSA's later steps, which aggregate aggregation traces, give the aggregator
  the format it was trained on (SFT base, 300 problems, 4 candidates: a second aggregation step
  scored 0.117 reading raw aggregation traces and 0.313 with the note dropped).

Problems are a pure function of (task seed + problems seed, split, index): problem i of a
split is the first draw, from a generator seeded by those, whose question hashes into that split
(sha256(question) mod 1000 < 1000 * test_fraction means "test"), so train and test can never
share a question, and `problems(split, n)[:m] == problems(split, m)`. Ids look like
`arith-test-3ops-m100-s0-000042`. `split_of` and `problem_rng` are shared with countdown.
"""
from __future__ import annotations

import dataclasses
import hashlib
import random
import re

from spiral_bench.config import ConfigError, build, option

from .base import Problem, Task, register
from .graders import MAX_TAIL

DEFAULT_N = {"train": 10_000, "test": 500}
SPLITS = ("train", "test")
MAX_ATTEMPTS = 10_000

_OK_NOTE = re.compile(r"ok:[^;|]*;")  # the agreement note of an aggregation trace


def split_of(key: str, test_fraction: float) -> str:
    """'test' or 'train': a fixed hash partition of question texts (disjoint by construction)."""
    h = int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big") % 1000
    return "test" if h < round(1000 * test_fraction) else "train"


def problem_rng(*parts) -> random.Random:
    """A `random.Random` seeded by a string of `parts` (stable across runs and processes)."""
    return random.Random("|".join(map(str, parts)))


def check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; choose one of {list(SPLITS)}")


def final_field(completion, pattern: str) -> str | None:
    """What follows the last '#' on the first line of `completion`, if it fully matches
    `pattern` (bounded: only the last MAX_TAIL characters of that line are read)."""
    if not isinstance(completion, str):
        return None
    k = completion.find("\n")
    line = (completion if k < 0 else completion[:k])[-MAX_TAIL:]
    k = line.rfind("#")
    if k < 0:
        return None
    ans = line[k + 1:].strip(" \t\r")
    return ans if re.fullmatch(pattern, ans, re.ASCII) else None


@dataclasses.dataclass(frozen=True)
class ArithmeticConfig:
    n_ops: int = option(3, help="operations per problem", min=1, max=64)
    modulus: int | None = option(100, help="reduce every value mod M (None or 0: plain integers)",
                                 min=0, max=10 ** 9)
    operand_min: int = option(0, help="smallest operand", min=0, max=10 ** 9)
    operand_max: int = option(99, help="largest operand", min=0, max=10 ** 9)
    ops: str = option("+-*", help="operators to draw from, a non-empty subset of '+-*'")
    seed: int = option(0, help="base seed of the problem streams (added to problems(seed=...))")
    test_fraction: float = option(0.1, help="share of the question space hashed into 'test'",
                                  min=0.01, max=0.5)
    recheck_prob: float = option(0.0, help="share of the steps of a solver trace (SFT data) followed by a "
                                           "redundant re-check, the same step written again: detours a "
                                           "length penalty such as GRSP can learn to drop (0 = none)",
                                 min=0.0, max=1.0)

    def validate(self):
        if not self.ops or set(self.ops) - set("+-*"):
            raise ConfigError(f"ops: {self.ops!r} is not allowed; use a non-empty subset of '+-*'")
        if self.operand_min > self.operand_max:
            raise ConfigError(f"operand_min: {self.operand_min} is larger than operand_max {self.operand_max}")


def _unit(*parts) -> float:
    """A number in [0, 1) fixed by `parts` (which steps of a trace get a re-check)."""
    return int.from_bytes(hashlib.sha256(repr(parts).encode()).digest()[:8], "little") / 2 ** 64


def recheck_share(traces: list[str]) -> float:
    """Share of the `;`-separated steps of `traces` that repeat the step just before them (the
    redundant re-checks of `recheck_prob`, or the same detour a policy writes by itself)."""
    steps = repeats = 0
    for t in traces:
        parts = t.split("#")[0].split(";")[:-1]
        steps += len(parts)
        repeats += sum(a == b for a, b in zip(parts, parts[1:]))
    return repeats / steps if steps else 0.0


@register("arithmetic")
class ArithmeticTask(Task):
    """Left-to-right multi-step arithmetic (mod M) with a step-by-step scratchpad."""

    name = "arithmetic"
    procedural = True
    aggregation_template = "{question}{candidates}|>"
    candidate_template = "|{text}"

    def candidate_text(self, trace: str) -> str:
        return _OK_NOTE.sub("", trace)

    def __init__(self, **options):
        self.cfg = build(ArithmeticConfig, options)

    # --- problems ------------------------------------------------------------------------
    def _reduce(self, v: int) -> int:
        return v % self.cfg.modulus if self.cfg.modulus else v

    @staticmethod
    def _apply(a: int, op: str, b: int) -> int:
        return a + b if op == "+" else a - b if op == "-" else a * b

    def solve(self, operands: list[int], ops: list[str]) -> list[tuple[int, str, int, int]]:
        """The steps (left value, op, operand, result) of the left-to-right evaluation."""
        v, steps = self._reduce(operands[0]), []
        for op, b in zip(ops, operands[1:]):
            w = self._reduce(self._apply(v, op, b))
            steps.append((v, op, b, w))
            v = w
        return steps

    def _make(self, split: str, seed: int, i: int) -> Problem:
        c = self.cfg
        rng = problem_rng("arith", c.seed + seed, split, i)
        for _attempt in range(MAX_ATTEMPTS):
            operands = [rng.randint(c.operand_min, c.operand_max) for _ in range(c.n_ops + 1)]
            ops = [rng.choice(c.ops) for _ in range(c.n_ops)]
            question = str(operands[0]) + "".join(f"{o}{a}" for o, a in zip(ops, operands[1:]))
            if split_of(question, c.test_fraction) == split:
                steps = self.solve(operands, ops)
                answer = steps[-1][3]
                pid = f"arith-{split}-{c.n_ops}ops-m{c.modulus or 0}-s{c.seed + seed}-{i:06d}"
                return Problem(pid, question, str(answer), {"operands": operands, "ops": ops})
        raise RuntimeError(f"arithmetic: no {split} problem after {MAX_ATTEMPTS} draws; "
                           "the question space is too small for this test_fraction")

    def problems(self, split: str = "test", n: int | None = None, seed: int = 0) -> list[Problem]:
        check_split(split)
        n = DEFAULT_N[split] if n is None else n
        return [self._make(split, seed, i) for i in range(n)]

    def prompt(self, problem: Problem) -> str:
        return problem.question + "="

    # --- grading ---------------------------------------------------------------------------
    def extract(self, completion: str) -> str | None:
        return final_field(completion, r"-?[0-9]{1,30}")

    def canonical(self, answer: str | None) -> str | None:
        if answer is None or not re.fullmatch(r"\s*-?[0-9]{1,30}\s*", answer, re.ASCII):
            return None
        return str(int(answer))

    def reward(self, problem: Problem, completion: str) -> float:
        try:
            got = self.canonical(self.extract(completion))
            return float(got is not None and got == self.canonical(problem.answer))
        except Exception:  # noqa: BLE001 - a grader never raises
            return 0.0

    # --- solver traces ---------------------------------------------------------------------
    def _steps_text(self, problem: Problem) -> str:
        m, p = problem.meta, self.cfg.recheck_prob
        steps = [f"{a}{op}{b}={w};" for a, op, b, w in self.solve(m["operands"], m["ops"])]
        return "".join(s * (2 if p and _unit(problem.id, k) < p else 1) for k, s in enumerate(steps))

    def gold_trace(self, problem: Problem) -> str:
        return f"{self._steps_text(problem)}#{problem.answer}"

    def gold_aggregation_trace(self, problem: Problem, candidates: list[str]) -> str:
        gold = self.canonical(problem.answer)
        agree = [str(i + 1) for i, c in enumerate(candidates) if self.canonical(self.extract(c)) == gold]
        return f"{self._steps_text(problem)}ok:{','.join(agree) or '-'};#{problem.answer}"

    def describe(self) -> dict:
        return {**super().describe(), **dataclasses.asdict(self.cfg)}
