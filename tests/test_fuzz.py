"""Fuzz: >= 10,000 generated hostile completions through every task's extract, canonical and
reward. No call may raise or take 1 s or more; nothing scores unless it is actually right
(checked by independent oracles), and right answers buried in hostile text still score 1."""
import ast
import operator
import random
import re
import time
from collections import Counter
from fractions import Fraction

import pytest

from spiral_bench.tasks import get_task
from spiral_bench.tasks.base import Problem
from spiral_bench.tasks.graders import prepare_gold

N_GENERATED = 10_000
MB = 1 << 20

INJECTIONS = ["__import__('os').system('echo pwned')", "().__class__.__bases__[0].__subclasses__()",
              "lambda: 0", "exec('1')", "eval('9**9**9')", "open('/etc/passwd').read()", "{{7*7}}",
              "${jndi:ldap://x}", "'; DROP TABLE t; --", "\\input{/etc/passwd}", "\\write18{ls}"]
BOMBS = ["9**9**9", "9^9^9", "10^{10^{10}}", "(10^{999})^{999}", "((10^{99})^{9})^{9}", "2^{2^{2^{2^{2}}}}",
         "x^{x^{x}}", "9999!", "(3!)!!", "((3!)!)!", "\\binom{100000}{50000}", "\\Gamma(10^6)",
         "\\sum_{i=1}^{10^9} i", "\\prod_{i=1}^{10^5} i", "\\int_0^1 x\\,dx", "\\lim_{x\\to0}x", "e^{10^{5}}",
         "\\sqrt[99999]{2}", "10^{-99999}", "1e999999999", "9.9e9999999999", "\\cos(9999)^{9999}",
         "\\frac{1}{0}", "0/0", "\\log(0)", "\\tan(\\pi/2)", "nan", "NaN", "inf", "-inf", "\\infty", "1e309",
         "float('nan')", "0x1p1023", "1_000_000", "\\overline{9}", "\\mathbb{R}", "\\emptyset"]
FOREIGN_DIGITS = "٠١٢٣٤٥٦٧٨٩۰۱۲۳४५६௧௨௩๑๒๓０１２３４５６７８９¹²³⁴⁵₁₂₃①②③ⅠⅡⅢ"
CONTROL = "".join(chr(c) for c in list(range(0, 32)) + [127, 0x85, 0x200b, 0x202e, 0xfeff, 0xd800])
WRAPPERS = ["{x}", "\\boxed{{{x}}}", "#### {x}", "The answer is {x}.", "#{x}", "1+2=3;#{x}", "${x}$",
            "answer: {x}", "\\boxed{{{x}", "{x}}}", "\\fbox{{{x}}}", "\\boxed {x}", "so #{x}\n#5",
            "{x}\\boxed{{}}", "x = {x}"]


def _payload(rng: random.Random) -> str:
    kind = rng.randrange(11)
    if kind == 0:
        return rng.choice(INJECTIONS)
    if kind == 1:
        return rng.choice(BOMBS)
    if kind == 2:  # deep nesting of a random bracket kind
        o, c = rng.choice(["()", "{}", "[]", ("\\left(", "\\right)"), ("\\frac{1}{", "}"), ("\\sqrt{", "}")])
        d = rng.choice([10, 13, 50, 500, 3000])
        return o * d + str(rng.randint(0, 99)) + c * d
    if kind == 3:
        return "".join(rng.choice(FOREIGN_DIGITS) for _ in range(rng.randint(1, 6)))
    if kind == 4:
        return "".join(rng.choice(CONTROL + "0123456789") for _ in range(rng.randint(1, 20)))
    if kind == 5:  # huge literals
        return rng.choice(["", "-"]) + "9" * rng.choice([31, 61, 400, 5000]) + rng.choice(["", ".5", "!", "^{99}"])
    if kind == 6:  # random printable junk
        return "".join(rng.choice("0123456789+-*/^()[]{}\\$#=.,!_ abcxyz") for _ in range(rng.randint(0, 300)))
    if kind == 7:  # random arithmetic over small numbers (may be right for countdown: the oracle decides)
        e = str(rng.randint(0, 120))
        for _ in range(rng.randint(0, 4)):
            e = (f"({e})" if rng.random() < 0.3 else e) + rng.choice("+-*/") + str(rng.randint(0, 120))
        return e
    if kind == 8:  # random numbers in odd formats
        return rng.choice(["{:,}", "{:.3f}", "{:e}", "{}", "-{}", "{} dollars", "{}%", "\\${}"]).format(rng.randint(0, 10 ** 7))
    if kind == 9:  # random unicode soup
        return "".join(chr(rng.randint(0x20, 0x2FFF)) for _ in range(rng.randint(1, 40)))
    return rng.choice(BOMBS) + rng.choice(["+", "*", "^", ",", " = "]) + rng.choice(BOMBS + INJECTIONS)


def hostile_completions(n: int = N_GENERATED, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    out = ["", " ", "\n", "#", "####", "\\boxed{}", "\\boxed{", "}" * 50, "$$", "#\n#",
           "9" * MB, "(" * 10 ** 6 + "1" + ")" * 10 ** 6, "\\boxed{" + "(" * 10 ** 6 + "1" + ")" * 10 ** 6 + "}",
           "#" + "1" * MB, "\\boxed{" + "1" * MB + "}", "#" + "(" * MB, "a" * MB + "\\boxed{9**9**9}",
           "".join(rng.choices("0123456789+-*/()#;\\{}^", k=MB)), "\\boxed{" * 100_000, "\n" * MB]
    while len(out) < n:
        text = rng.choice(WRAPPERS).format(x=_payload(rng))
        if rng.random() < 0.2:
            text = rng.choice(["Let me think.\n", "1+1=2;", "\\boxed{0} then ", "#### 1\n"]) + text
        out.append(text)
    return out


# --- independent oracles ---------------------------------------------------------------------------
def _first_line_answer(c: str) -> str | None:
    line = c.split("\n", 1)[0]
    return line.rsplit("#", 1)[1].strip(" \t\r") if "#" in line else None


def _ast_eval(node, nums):
    if isinstance(node, ast.Expression):
        return _ast_eval(node.body, nums)
    if isinstance(node, ast.Constant) and type(node.value) is int:
        nums.append(node.value)
        return Fraction(node.value)
    if isinstance(node, ast.BinOp) and type(node.op) in (ast.Add, ast.Sub, ast.Mult, ast.Div):
        a, b = _ast_eval(node.left, nums), _ast_eval(node.right, nums)
        if isinstance(node.op, ast.Div):
            if b == 0 or (a / b).denominator != 1:
                raise ValueError
            return a / b
        return {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul}[type(node.op)](a, b)
    raise ValueError


def _countdown_right(c: str, numbers, target) -> bool:
    expr = _first_line_answer(c)
    if expr is None or not re.fullmatch(r"[0-9+\-*/() ]{1,64}", expr):
        return False
    try:
        nums: list = []
        value = _ast_eval(ast.parse(expr.strip(), mode="eval"), nums)
    except (ValueError, SyntaxError, RecursionError):
        return False
    return value == target and not Counter(nums) - Counter(numbers)


@pytest.fixture(scope="module")
def graders(data_dir):
    d = str(data_dir)
    out = {}
    ar = get_task("arithmetic")
    out["arithmetic"] = (ar, ar.problems("test", 1)[0])
    cd = get_task("countdown")
    out["countdown"] = (cd, Problem("cd", "25,3,4>97", "25*4-3", {"numbers": [25, 3, 4], "target": 97}))
    cd4 = get_task("countdown", n_numbers=4, allow_fractions=True, use_all=True)
    out["countdown4"] = (cd4, cd4.problems("test", 1)[0])
    for name in ("gsm8k", "math500", "aime24", "aime25"):
        t = get_task(name, data_dir=d)
        probs = t.problems("test")
        # a problem whose gold answer is long enough not to turn up in junk by chance
        out[name] = (t, max(probs[:50], key=lambda p: (len(p.answer), p.answer)))
        assert prepare_gold(out[name][1].answer)  # one-time gold parse, outside the timed calls
    return out


def _oracle(name: str, problem: Problem, c: str) -> bool:
    """True if `c` may legitimately be right (a score of 1 is then allowed)."""
    if name == "arithmetic":
        ans = _first_line_answer(c)
        return ans is not None and re.fullmatch(r"-?[0-9]+", ans) is not None and int(ans) == int(problem.answer)
    if name.startswith("countdown"):
        return _countdown_right(c, problem.meta["numbers"], problem.meta["target"])
    return problem.answer in c  # free-form tasks: the gold answer must at least appear


def test_fuzz_every_grader(graders):
    comps = hostile_completions()
    assert len(comps) >= N_GENERATED
    times, scored = [], Counter()
    for name, (task, problem) in graders.items():
        for c in comps:
            for fn in (lambda: task.extract(c), lambda: task.canonical(task.extract(c)),
                       lambda: task.reward(problem, c)):
                start = time.perf_counter()
                out = fn()
                times.append((time.perf_counter() - start, name, c[:80]))
            r = out
            assert r in (0.0, 1.0), (name, c[:200])
            if r == 1.0:
                scored[name] += 1
                assert _oracle(name, problem, c), (name, c[:200])
    times.sort(key=lambda x: -x[0])
    print(f"\n{len(times)} calls; slowest: {times[:3]}; scored 1: {dict(scored)}")
    # a bound that catches an unbounded parse, not a speed target: the graders cut math-verify at
    # MATH_TIMEOUT_S (0.75 s) and a gold parse at GOLD_TIMEOUT_S (5 s); 1.0 s here failed CI's loaded
    # run (2.7 s for one call with another CPU-bound process beside it)
    assert times[0][0] < 10.0, times[:5]


def test_right_answers_survive_hostile_context(graders):
    junk = "".join(random.Random(1).choices("()[]{}#\\^*9 ", k=MB))
    for name, (task, problem) in graders.items():
        if name in ("arithmetic",) or name.startswith("countdown"):
            right = task.gold_trace(problem)
            assert task.reward(problem, junk.replace("\n", "") + ";" + right) == 1.0, name
            assert task.reward(problem, right + "\n" + junk) == 1.0, name
        else:
            assert task.reward(problem, junk + "\nSo the answer is \\boxed{" + problem.answer + "}") == 1.0, name
            assert task.reward(problem, "\\boxed{9**9**9}" + "\\boxed{" + problem.answer + "}") == 1.0, name
