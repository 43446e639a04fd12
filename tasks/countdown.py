"""Countdown: reach a target from 3 or 4 numbers with + - * / (each number used at most once).

Rules (options): `allow_fractions` (default False: every intermediate result, i.e. every
division, must be an integer), `use_all` (default False: each number at most once; True: each
exactly once, the rule of the d1 CD3 test file). Negative intermediates are allowed.

Formats (printable ASCII only):
- question/prompt `30,100,93>23:` (numbers, then the target);
- gold search trace: a few failed attempts, then the solution, each attempt a chain of binary
  steps ending with its verdict, then `#` and the final expression, e.g.
  `30+100=130,130-93=37 no;100-93=7,30-7=23 yes;#30-(100-93)`. The trace ends right after
  the expression (samplers stop on EOS or "\n"; `extract` reads the first line only).
- aggregation prompt `{prompt}|{cand 1}|...|{cand k}|>`; gold aggregation trace: one check per
  candidate, `expr=value yes|no`, `expr bad` (breaks a rule) or `?` (no final expression),
  then `#` and the first correct candidate's expression, or, if none is correct, the solver's
  solving attempt followed by `#` and its expression.

Verifier: the text after the last `#` is parsed by `graders.parse_arith` (no unary minus, at
most 64 characters, depth 8, 6-digit literals); it is correct iff the literals form a
sub-multiset of the given numbers (equal multiset if `use_all`), no division by zero, every
intermediate result is an integer unless `allow_fractions`, and the value equals the target.

Generation: problem i of a split draws numbers uniformly from [min_number, max_number], computes
every value an expression using all of them can reach (`reachable`, valid under the rules and
without negative intermediates), and draws the target uniformly among the reachable integers in
[min_target, max_target] that are not one of the numbers and whose question hashes into the
split (`arithmetic.split_of`, so train and test are disjoint). So every problem is solvable
with all numbers. The brute-force `solve` (random pair order, first hit) writes the gold
solution. With `data_dir`, split "test" is the d1 file `countdown/countdown_cd3_test.jsonl`
(256 problems, fields `input` "30,100,93" and `output` "23"), and procedural train problems
equal to one of its problems (same numbers and target) are dropped.
"""
from __future__ import annotations

import dataclasses
import os
import re
from collections import Counter
from fractions import Fraction

from spiral_bench.config import ConfigError, build, option

from .arithmetic import DEFAULT_N, MAX_ATTEMPTS, check_split, final_field, problem_rng, split_of
from .base import Problem, Task, register
from .graders import ExprError, format_fraction, parse_arith

CD3_FILE = os.path.join("countdown", "countdown_cd3_test.jsonl")
_EXPR = r"[0-9+\-*/() ]{1,64}"


@dataclasses.dataclass(frozen=True)
class CountdownConfig:
    n_numbers: int = option(3, help="numbers per problem", choices=(3, 4))
    min_number: int = option(1, help="smallest number", min=1, max=10 ** 6)
    max_number: int = option(100, help="largest number", min=1, max=10 ** 6)
    min_target: int = option(1, help="smallest target", min=-10 ** 6, max=10 ** 6)
    max_target: int = option(100, help="largest target", min=-10 ** 6, max=10 ** 6)
    allow_fractions: bool = option(False, help="allow non-integer intermediate results")
    use_all: bool = option(False, help="every number must be used exactly once")
    max_failed_attempts: int = option(2, help="failed attempts in a gold trace: 0..this", min=0, max=5)
    seed: int = option(0, help="base seed of the problem streams (added to problems(seed=...))")
    test_fraction: float = option(0.1, help="share of the question space hashed into 'test'",
                                  min=0.01, max=0.5)
    data_dir: str | None = option(None, help="data folder (README.md, 'Data'): split 'test' is "
                                  "the CD3 file; None: procedural test split")

    def validate(self):
        if self.min_number > self.max_number:
            raise ConfigError(f"min_number: {self.min_number} is larger than max_number {self.max_number}")
        if self.min_target > self.max_target:
            raise ConfigError(f"min_target: {self.min_target} is larger than max_target {self.max_target}")


class _Node:
    """An expression tree node: exact value, minimal-parenthesis text, precedence, steps."""
    __slots__ = ("value", "text", "prec", "steps")

    def __init__(self, value: Fraction, text: str, prec: int, steps: tuple[str, ...]):
        self.value, self.text, self.prec, self.steps = value, text, prec, steps


def _leaf(n: int) -> _Node:
    return _Node(Fraction(n), str(n), 3, ())


def _combine(a: _Node, op: str, b: _Node, integer_only: bool, nonneg: bool = False) -> _Node | None:
    """a op b, or None if it divides by zero, (integer_only) gives a non-integer or (nonneg)
    a negative number."""
    if op == "/" and b.value == 0:
        return None
    v = a.value + b.value if op == "+" else a.value - b.value if op == "-" else \
        a.value * b.value if op == "*" else a.value / b.value
    if (integer_only and v.denominator != 1) or (nonneg and v < 0):
        return None
    prec = 1 if op in "+-" else 2
    lt = f"({a.text})" if a.prec < prec else a.text
    rt = f"({b.text})" if b.prec < prec or (b.prec == prec and op in "-/") else b.text
    step = f"{format_fraction(a.value)}{op}{format_fraction(b.value)}={format_fraction(v)}"
    return _Node(v, f"{lt}{op}{rt}", prec, a.steps + b.steps + (step,))


def _apply(a, op: str, b, integer_only: bool, nonneg: bool):
    """a op b on ints (integer_only) or Fractions; None when not allowed."""
    if op == "+":
        v = a + b
    elif op == "-":
        v = a - b
    elif op == "*":
        v = a * b
    elif b == 0 or (integer_only and a % b):
        return None
    else:
        v = a // b if integer_only else a / b
    return None if nonneg and v < 0 else v


def _build(tree, integer_only: bool) -> _Node:
    if isinstance(tree, int):
        return _leaf(tree)
    op, left, right = tree
    return _combine(_build(left, integer_only), op, _build(right, integer_only), integer_only)


def solve(numbers: list[int], target: int, integer_only: bool = True, use_all: bool = False,
          rng=None) -> _Node | None:
    """Brute force: combine pairs (in `rng`-shuffled order) until a value equals `target`;
    with use_all only an expression using every number counts. Solutions without negative
    intermediate results are preferred (searched first). None if unsolvable."""
    num = int if integer_only else Fraction
    target = num(target)

    def rec(items: list, nonneg: bool):
        if len(items) == 1:
            return None
        pairs = [(i, j) for i in range(len(items)) for j in range(len(items)) if i != j]
        ops = list("+-*/")
        if rng is not None:
            rng.shuffle(pairs)
            rng.shuffle(ops)
        for i, j in pairs:
            rest = [x for k, x in enumerate(items) if k not in (i, j)]
            for op in ops:
                if op in "+*" and i > j:  # commutative: try one order only
                    continue
                v = _apply(items[i][0], op, items[j][0], integer_only, nonneg)
                if v is None:
                    continue
                tree = (op, items[i][1], items[j][1])
                if v == target and (not use_all or not rest):
                    return tree
                found = rec(rest + [(v, tree)], nonneg)
                if found is not None:
                    return found
        return None

    for n in numbers:
        if n == target and (not use_all or len(numbers) == 1):
            return _leaf(n)
    leaves = [(num(n), n) for n in numbers]
    found = rec(leaves, True)
    if found is None:
        found = rec(leaves, False)
    return None if found is None else _build(found, integer_only)


def _random_tree(numbers: list[int], rng, integer_only: bool) -> _Node | None:
    """A random expression tree over all `numbers` without negative intermediate results."""
    items = [_leaf(n) for n in numbers]
    while len(items) > 1:
        i, j = rng.sample(range(len(items)), 2)
        node = _combine(items[i], rng.choice("+-*/"), items[j], integer_only, nonneg=True)
        if node is None:
            return None
        items = [x for k, x in enumerate(items) if k not in (i, j)] + [node]
    return items[0]


def reachable(numbers: list[int], integer_only: bool = True) -> set[Fraction]:
    """Values of all expressions using every number once, without negative intermediate
    results (subset dynamic programming over bitmasks: V(S) = {a op b : a in V(A), b in V(S-A)})."""
    k = len(numbers)
    num = int if integer_only else Fraction  # ints are exact here and much faster
    vals: dict[int, set] = {1 << i: {num(n)} for i, n in enumerate(numbers)}
    for mask in range(1, 1 << k):
        if mask in vals:
            continue
        out: set[Fraction] = set()
        sub = (mask - 1) & mask
        while sub:
            rest = mask ^ sub
            for a in vals[sub]:
                for b in vals[rest]:
                    out.add(a + b)
                    out.add(a * b)
                    if a >= b:
                        out.add(a - b)
                    if b and not integer_only:
                        out.add(a / b)
                    elif b and a % b == 0:
                        out.add(a // b)
            sub = (sub - 1) & mask
        vals[mask] = out
    return {Fraction(v) for v in vals[(1 << k) - 1]}


@register("countdown")
class CountdownTask(Task):
    """Countdown with a bounded expression verifier and solver-written search traces."""

    name = "countdown"
    procedural = True
    aggregation_template = "{question}{candidates}|>"
    candidate_template = "|{text}"

    def __init__(self, **options):
        self.cfg = build(CountdownConfig, options)
        self._file: list[Problem] | None = None

    # --- problems ------------------------------------------------------------------------
    def _problem(self, pid: str, numbers: list[int], target: int) -> Problem:
        question = f"{','.join(map(str, numbers))}>{target}"
        sol = solve(numbers, target, not self.cfg.allow_fractions, self.cfg.use_all, problem_rng(pid, "solve"))
        if sol is None:
            raise ValueError(f"countdown problem {pid} ({question}) has no solution under the rules")
        return Problem(pid, question, sol.text, {"numbers": numbers, "target": target})

    def _file_problems(self) -> list[Problem]:
        if self._file is None:
            from .datasets_tasks import load_jsonl
            rows = load_jsonl(os.path.join(self.cfg.data_dir, CD3_FILE))
            self._file = [self._problem(f"countdown-cd3-test-{i:05d}",
                                        [int(x) for x in r["input"].split(",")], int(r["output"]))
                          for i, r in enumerate(rows)]
        return self._file

    def _make(self, split: str, seed: int, i: int, exclude: set) -> Problem:
        c = self.cfg
        rng = problem_rng("countdown", c.seed + seed, split, i)
        for _attempt in range(MAX_ATTEMPTS):
            numbers = [rng.randint(c.min_number, c.max_number) for _ in range(c.n_numbers)]
            prefix = ",".join(map(str, numbers))
            targets = sorted(int(v) for v in reachable(numbers, not c.allow_fractions)
                             if v.denominator == 1 and c.min_target <= v <= c.max_target
                             and v not in numbers and split_of(f"{prefix}>{int(v)}", c.test_fraction) == split
                             and (tuple(sorted(numbers)), int(v)) not in exclude)
            if targets:
                return self._problem(f"countdown-{split}-{c.n_numbers}n-s{c.seed + seed}-{i:06d}",
                                     numbers, rng.choice(targets))
        raise RuntimeError(f"countdown: no {split} problem after {MAX_ATTEMPTS} draws; widen the ranges")

    def problems(self, split: str = "test", n: int | None = None, seed: int = 0) -> list[Problem]:
        check_split(split)
        if self.cfg.data_dir is not None and split == "test":
            from .datasets_tasks import select
            return select(self._file_problems(), n, seed)
        exclude = set()
        if self.cfg.data_dir is not None:
            exclude = {(tuple(sorted(p.meta["numbers"])), p.meta["target"]) for p in self._file_problems()}
        n = DEFAULT_N[split] if n is None else n
        return [self._make(split, seed, i, exclude) for i in range(n)]

    def prompt(self, problem: Problem) -> str:
        return problem.question + ":"

    # --- grading ---------------------------------------------------------------------------
    def extract(self, completion: str) -> str | None:
        return final_field(completion, _EXPR)

    def canonical(self, answer: str | None) -> str | None:
        return None if answer is None else re.sub(r"\s+", "", answer)[:64] or None

    def check(self, problem: Problem, expr: str | None) -> tuple[bool, Fraction | None]:
        """(correct, value): value is None when `expr` is malformed or breaks a rule."""
        if expr is None or not re.fullmatch(_EXPR, expr, re.ASCII):
            return False, None
        try:
            value, used = parse_arith(expr, max_len=64, max_depth=8, max_digits=6, allow_unary=False,
                                      integer_only=not self.cfg.allow_fractions)
        except (ExprError, RecursionError):
            return False, None
        given, got = Counter(problem.meta["numbers"]), Counter(used)
        if any(got[k] > given[k] for k in got) or (self.cfg.use_all and got != given):
            return False, None
        return value == problem.meta["target"], value

    def reward(self, problem: Problem, completion: str) -> float:
        try:
            return float(self.check(problem, self.extract(completion))[0])
        except Exception:  # noqa: BLE001 - a grader never raises
            return 0.0

    # --- solver traces ---------------------------------------------------------------------
    def _attempt(self, node: _Node, target: int) -> str:
        return ",".join(node.steps or (node.text,)) + (" yes" if node.value == target else " no")

    def _solution(self, problem: Problem) -> _Node:
        m = problem.meta
        return solve(m["numbers"], m["target"], not self.cfg.allow_fractions, self.cfg.use_all,
                     problem_rng(problem.id, "solve"))

    def gold_trace(self, problem: Problem) -> str:
        m, rng = problem.meta, problem_rng(problem.id, "fail")
        parts = []
        for _ in range(rng.randint(0, self.cfg.max_failed_attempts)):
            for _try in range(50):
                node = _random_tree(m["numbers"], rng, not self.cfg.allow_fractions)
                if node is not None and node.steps and not any(
                        s.endswith(f"={m['target']}") for s in node.steps):
                    parts.append(self._attempt(node, m["target"]))
                    break
        sol = self._solution(problem)
        return ";".join(parts + [self._attempt(sol, m["target"])]) + f";#{sol.text}"

    def gold_aggregation_trace(self, problem: Problem, candidates: list[str]) -> str:
        parts, best = [], None
        for c in candidates:
            expr = self.extract(c)
            ok, value = self.check(problem, expr)
            if expr is None:
                parts.append("?")
            elif value is None:
                parts.append(f"{expr.strip()} bad")
            else:
                parts.append(f"{expr.strip()}={format_fraction(value)} {'yes' if ok else 'no'}")
                best = best or (expr.strip() if ok else None)
        if best is None:
            sol = self._solution(problem)
            parts.append(self._attempt(sol, problem.meta["target"]))
            best = sol.text
        return ";".join(parts) + f";#{best}"

    def describe(self) -> dict:
        return {**super().describe(), **dataclasses.asdict(self.cfg)}
