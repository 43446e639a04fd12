"""Procedural tasks (arithmetic, countdown), the registry and the bounded expression parser.

References are independent of the task code: a left-to-right fold over the question text for
arithmetic, an itertools brute force over expression shapes for Countdown, Python's own
operator precedence (on trusted, generated text) for the parser.
"""
import itertools
import json
import operator
import re
import string
from fractions import Fraction

import pytest

from spiral_bench.config import ConfigError
from spiral_bench.tasks import get_task, list_tasks
from spiral_bench.tasks.arithmetic import recheck_share, split_of
from spiral_bench.tasks.countdown import reachable, solve
from spiral_bench.tasks.graders import ExprError, parse_arith, safe_arith

PRINTABLE = set(string.printable) - set("\t\r\x0b\x0c")


# --- registry ---------------------------------------------------------------------------------
def test_registry_lists_every_family():
    assert {"arithmetic", "countdown", "gsm8k", "math500", "aime24", "aime25"} <= set(list_tasks())


def test_unknown_task_and_bad_options_are_named():
    with pytest.raises(ValueError, match="did you mean 'countdown'"):
        get_task("countdwn")
    with pytest.raises(ConfigError, match="n_opz"):
        get_task("arithmetic", n_opz=3)
    with pytest.raises(ConfigError, match="n_numbers"):
        get_task("countdown", n_numbers=5)
    with pytest.raises(ConfigError, match="ops"):
        get_task("arithmetic", ops="+^")
    with pytest.raises(ValueError, match="split"):
        get_task("arithmetic").problems("validation", 1)


# --- arithmetic -------------------------------------------------------------------------------
def _left_to_right(question: str, modulus):
    """Independent reference: fold the tokens of the question left to right."""
    toks = re.findall(r"\d+|[-+*]", question)
    red = (lambda v: v % modulus) if modulus else (lambda v: v)
    ops = {"+": operator.add, "-": operator.sub, "*": operator.mul}
    v = red(int(toks[0]))
    for op, b in zip(toks[1::2], toks[2::2]):
        v = red(ops[op](v, int(b)))
    return v


@pytest.mark.parametrize("opts", [{}, {"n_ops": 1}, {"n_ops": 5, "modulus": 7}, {"modulus": None},
                                  {"modulus": 0, "ops": "+-", "operand_max": 9}])
def test_arithmetic_answers_and_gold_traces(opts):
    task = get_task("arithmetic", **opts)
    probs = task.problems("test", 500)
    modulus = task.cfg.modulus
    for p in probs:
        assert int(p.answer) == _left_to_right(p.question, modulus)
        trace = task.gold_trace(p)
        assert set(task.prompt(p) + trace) <= PRINTABLE and "\n" not in trace
        assert trace.endswith(f"#{p.answer}")
        assert task.reward(p, trace) == 1.0
        assert task.reward(p, trace + "\nnoise #5") == 1.0  # only the first line counts
        assert task.reward(p, trace[:-1] + str((int(trace[-1]) + 1) % 10)) == 0.0
    assert len({p.id for p in probs}) == len(probs)


def test_arithmetic_trace_format_and_length():
    task = get_task("arithmetic")
    p = task.problems("test", 1)[0]
    a, b, c, d = p.meta["operands"]
    o1, o2, o3 = p.meta["ops"]
    v1 = _left_to_right(f"{a}{o1}{b}", 100)
    v2 = _left_to_right(f"{v1}{o2}{c}", 100)
    assert task.gold_trace(p) == f"{a}{o1}{b}={v1};{v1}{o2}{c}={v2};{v2}{o3}{d}={p.answer};#{p.answer}"
    assert task.prompt(p) == p.question + "="


def test_arithmetic_rechecks_are_redundant_steps_of_the_chosen_share():
    """recheck_prob p writes a step twice with probability p (fixed per problem and step): the trace
    keeps its answer and its reward, the steps without repeats are the plain trace, and the share of
    repeats over 400 problems is near p / (1 + p); p = 0 is the plain trace."""
    plain, rc = get_task("arithmetic"), get_task("arithmetic", recheck_prob=0.5)
    ps = plain.problems("train", 400)
    assert [rc.problems("train", 400)[i].question for i in (0, 399)] == [ps[0].question, ps[399].question]
    traces = [rc.gold_trace(p) for p in ps]
    assert traces == [rc.gold_trace(p) for p in ps]                     # fixed, not random per call
    for p, t in zip(ps, traces):
        assert rc.reward(p, t) == 1.0 and t.endswith(f"#{p.answer}")
        steps = t.split("#")[0].split(";")[:-1]
        dedup = [s for k, s in enumerate(steps) if k == 0 or s != steps[k - 1]]
        assert ";".join(dedup) + ";#" + p.answer == plain.gold_trace(p)
    share = recheck_share(traces)
    assert 0.5 / 1.5 - 0.04 < share < 0.5 / 1.5 + 0.04, share
    assert recheck_share([plain.gold_trace(p) for p in ps]) == 0.0
    assert recheck_share(["1+2=3;1+2=3;3*2=6;#6"]) == pytest.approx(1 / 3)
    assert get_task("arithmetic", recheck_prob=0.0).gold_trace(ps[0]) == plain.gold_trace(ps[0])


def test_arithmetic_deterministic_prefix_and_seeded():
    t = get_task("arithmetic")
    a, b = t.problems("train", 50), t.problems("train", 20)
    assert [(p.id, p.question, p.answer) for p in a[:20]] == [(p.id, p.question, p.answer) for p in b]
    assert [p.question for p in get_task("arithmetic").problems("train", 50)] == [p.question for p in a]
    other = t.problems("train", 50, seed=1)
    assert sum(p.question == q.question for p, q in zip(a, other)) < 5
    assert get_task("arithmetic", seed=1).problems("train", 5)[0].question == other[0].question


def test_arithmetic_splits_disjoint():
    t = get_task("arithmetic", n_ops=1, operand_max=30)  # a small space, so collisions would show
    train = {p.question for p in t.problems("train", 3000)}
    test = {p.question for p in t.problems("test", 300)}
    assert train and test and not (train & test)
    assert all(split_of(q, 0.1) == "test" for q in test)


def test_arithmetic_extract_is_strict():
    t = get_task("arithmetic")
    assert t.extract("1+2=3;#3") == "3" and t.extract("#-12 ") == "-12"
    for bad in ["1+2=3;#3;", "#3x", "#", "no answer", "#" + "9" * 31, None, 12, "#３", "#٣"]:
        assert t.extract(bad) is None


# --- countdown --------------------------------------------------------------------------------
def _reference_values(numbers, integer_only):
    """Independent brute force: every ordering, operator triple and bracket shape."""
    ops = "+-*/"

    def ap(a, o, b):
        if a is None or b is None or (o == "/" and b == 0):
            return None
        v = {"+": a + b, "-": a - b, "*": a * b}.get(o) if o != "/" else a / b
        return None if integer_only and v.denominator != 1 else v
    out = set()
    for perm in itertools.permutations([Fraction(n) for n in numbers]):
        for os_ in itertools.product(ops, repeat=len(numbers) - 1):
            if len(numbers) == 3:
                a, b, c = perm
                vals = [ap(ap(a, os_[0], b), os_[1], c), ap(a, os_[0], ap(b, os_[1], c))]
            else:
                a, b, c, d = perm
                x, y, z = os_
                vals = [ap(ap(ap(a, x, b), y, c), z, d), ap(ap(a, x, ap(b, y, c)), z, d),
                        ap(ap(a, x, b), y, ap(c, z, d)), ap(a, x, ap(ap(b, y, c), z, d)),
                        ap(a, x, ap(b, y, ap(c, z, d)))]
            out |= {v for v in vals if v is not None}
    return out


@pytest.mark.parametrize("n_numbers", [3, 4])
def test_countdown_problems_solvable_and_gold_traces(n_numbers):
    task = get_task("countdown", n_numbers=n_numbers)
    probs = task.problems("test", 500)
    for k, p in enumerate(probs):
        nums, target = p.meta["numbers"], p.meta["target"]
        assert len(nums) == n_numbers and 1 <= target <= 100 and target not in nums
        if k < (60 if n_numbers == 3 else 15):  # the independent brute force is slow: a sample
            assert Fraction(target) in _reference_values(nums, True)
        trace = task.gold_trace(p)
        assert set(task.prompt(p) + trace) <= PRINTABLE and "\n" not in trace
        assert trace.endswith("#" + p.answer) and " yes;#" in trace
        assert task.reward(p, trace) == 1.0
    assert len({p.id for p in probs}) == len(probs)
    assert sum(" no;" in task.gold_trace(p) for p in probs) > 100  # failed attempts do appear


def test_countdown_reachable_matches_brute_force():
    for nums in ([4, 7, 9], [2, 3, 5, 11], [1, 1, 6, 8]):
        ref = {v for v in _reference_values(nums, True) if v >= 0}
        # `reachable` forbids negative intermediates: a subset of the reference, same positives here
        got = reachable(nums)
        assert got <= _reference_values(nums, True) and {v for v in ref if v <= 60} <= got


def test_countdown_verifier_rules():
    t = get_task("countdown")
    from spiral_bench.tasks.base import Problem
    p = Problem("x", "25,3,4>97", "25*4-3", {"numbers": [25, 3, 4], "target": 97})
    assert t.reward(p, "#25*4-3") == 1.0 and t.reward(p, "#(25*4)-3") == 1.0 and t.reward(p, "# 4*25 - 3 ") == 1.0
    assert t.reward(p, "#25*4-3-0") == 0.0            # 0 is not given
    assert t.reward(p, "#25*4-3+4-4") == 0.0          # 4 reused
    assert t.reward(p, "#100-3") == 0.0               # 100 not given
    assert t.reward(p, "#-3+25*4") == 0.0             # unary minus makes -3, not given
    assert t.reward(p, "#25*4-3**1") == 0.0 and t.reward(p, "#25*4-3^1") == 0.0
    assert t.reward(p, "#25*4-3=97") == 0.0 and t.reward(p, "25*4-3") == 0.0
    q = Problem("y", "8,3,8,3>24", "", {"numbers": [8, 3, 8, 3], "target": 24})
    assert t.reward(q, "#8/(3-8/3)") == 0.0            # non-integer intermediate, forbidden
    assert get_task("countdown", allow_fractions=True).reward(q, "#8/(3-8/3)") == 1.0
    z = Problem("z", "5,5,2>7", "", {"numbers": [5, 5, 2], "target": 7})
    assert t.reward(z, "#5+2") == 1.0 and get_task("countdown", use_all=True).reward(z, "#5+2") == 0.0
    assert t.reward(z, "#5/(5-5)+2") == 0.0           # division by zero (and 5 used thrice)
    d = Problem("d", "4,2,2>2", "", {"numbers": [4, 2, 2], "target": 2})
    assert t.reward(d, "#4/(2-2)") == 0.0 and t.reward(d, "#4/2") == 1.0
    assert t.reward(p, "#" + "(" * 9 + "25*4-3" + ")" * 9) == 0.0  # deeper than the bound


def test_countdown_solver_finds_and_rejects():
    assert solve([8, 3, 8, 3], 24, integer_only=True, use_all=True) is None
    assert solve([8, 3, 8, 3], 24, integer_only=False, use_all=True).value == 24
    assert solve([8, 3, 8, 3], 24, integer_only=True).value == 24  # 8*3 uses a subset
    node = solve([30, 100, 93], 23, use_all=True)
    assert node.value == 23 and sorted(map(int, re.findall(r"\d+", node.text))) == [30, 93, 100]


def test_countdown_cd3_file(data_dir, data_counts):
    t = get_task("countdown", data_dir=str(data_dir), use_all=True)
    probs = t.problems("test")
    rows = [json.loads(line) for line in open(data_dir / "countdown" / "countdown_cd3_test.jsonl")]
    assert len(probs) == len(rows) == data_counts["countdown/countdown_cd3_test.jsonl"]
    assert probs[0].meta == {"numbers": [30, 100, 93], "target": 23} and probs[0].id == "countdown-cd3-test-00000"
    for p, r in zip(probs, rows):
        assert p.meta["target"] == int(r["output"]) and t.reward(p, t.gold_trace(p)) == 1.0
    assert [p.id for p in t.problems("test", 5, seed=3)] != [p.id for p in probs[:5]]


def test_countdown_train_excludes_file_problems(tmp_path):
    plain = get_task("countdown")
    train = plain.problems("train", 40)
    (tmp_path / "countdown").mkdir()
    with open(tmp_path / "countdown" / "countdown_cd3_test.jsonl", "w") as f:
        for p in train[:20]:
            f.write(json.dumps({"input": ",".join(map(str, p.meta["numbers"])), "output": str(p.meta["target"])}) + "\n")
    t = get_task("countdown", data_dir=str(tmp_path))
    assert len(t.problems("test")) == 20
    keys = {(tuple(sorted(p.meta["numbers"])), p.meta["target"]) for p in train[:20]}
    new = t.problems("train", 40)
    assert not keys & {(tuple(sorted(p.meta["numbers"])), p.meta["target"]) for p in new}
    assert {p.question for p in plain.problems("test", 200)}.isdisjoint(p.question for p in plain.problems("train", 2000))


# --- aggregation ------------------------------------------------------------------------------
@pytest.mark.parametrize("name,opts", [("arithmetic", {}), ("countdown", {}), ("countdown", {"n_numbers": 4})])
def test_gold_aggregation_traces(name, opts):
    task = get_task(name, **opts)
    probs = task.problems("test", 120)
    for k, p in enumerate(probs):
        right = task.gold_trace(p)
        wrong = task.gold_trace(probs[(k + 1) % len(probs)])
        if task.reward(p, wrong):
            continue
        for cands in ([right, wrong, "garbage", right], [wrong, wrong, "#1", "x"], [wrong, right[:5]], []):
            agg = task.gold_aggregation_trace(p, cands)
            assert task.reward(p, agg) == 1.0, (p, cands, agg)
            assert "\n" not in agg and set(agg) <= PRINTABLE
            prompt = task.aggregation_prompt(p, cands)
            assert prompt.startswith(task.prompt(p)) and prompt.endswith("|>")
            assert all(c in prompt for c in cands)
        if name == "arithmetic":
            agg = task.gold_aggregation_trace(p, [right, wrong, "garbage", right])
            assert "ok:1,4;" in agg and len(agg) < 100
            assert "ok:-;" in task.gold_aggregation_trace(p, [wrong])
            assert len(task.aggregation_prompt(p, [right, wrong, right, wrong])) < 200
            # RSA's later steps aggregate aggregation traces: shown in search-trace form
            prompt = task.aggregation_prompt(p, [agg, right])
            assert prompt == task.aggregation_prompt(p, [right, right]) and "ok:" not in prompt
            assert task.reward(p, task.candidate_text(agg)) == 1.0


def test_countdown_aggregation_picks_a_correct_candidate():
    t = get_task("countdown")
    from spiral_bench.tasks.base import Problem
    p = Problem("x", "25,3,4>97", "25*4-3", {"numbers": [25, 3, 4], "target": 97})
    agg = t.gold_aggregation_trace(p, ["#25+3*4", "#4*25-3", "#25*25", "nothing"])
    assert agg == "25+3*4=37 no;4*25-3=97 yes;25*25 bad;?;#4*25-3"


# --- bounded parser ---------------------------------------------------------------------------
def _ast_value(node):
    """Reference evaluator over Python's own parse tree (Python's precedence rules)."""
    import ast
    if isinstance(node, ast.Expression):
        return _ast_value(node.body)
    if isinstance(node, ast.Constant):
        return Fraction(node.value)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        return -_ast_value(node.operand)
    a, b = _ast_value(node.left), _ast_value(node.right)
    return {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
            ast.Div: operator.truediv}[type(node.op)](a, b)


def test_parse_arith_matches_python_grammar_on_generated_expressions():
    import ast
    import random
    rng = random.Random(0)
    for _ in range(500):
        expr = str(rng.randint(1, 50))
        for _ in range(rng.randint(1, 6)):
            expr = f"({expr})" if rng.random() < 0.3 else expr
            expr += rng.choice("+-*/") + ("-" if rng.random() < 0.1 else "") + str(rng.randint(1, 50))
        v, nums = parse_arith(expr)
        assert v == _ast_value(ast.parse(expr, mode="eval")), expr
        assert nums == [int(x) for x in re.findall(r"\d+", expr)]


def test_parse_arith_bounds_and_errors():
    assert parse_arith("8-3-2")[0] == 3 and parse_arith("8/4/2")[0] == 1 and parse_arith("2+3*4")[0] == 14
    assert parse_arith("-(-3)")[0] == 3
    for bad, msg in [("1/0", "zero"), ("2**3", "exponent"), ("2^3", "exponent"), ("1+", "number"),
                     ("(1", "missing"), ("1)", "unexpected"), ("1" * 13, "digits"), ("a+1", "characters"),
                     ("(" * 17 + "1" + ")" * 17, "deeply"), ("-" * 17 + "1", "deeply"), ("1+" * 200 + "1", "longer")]:
        with pytest.raises(ExprError, match=msg):
            parse_arith(bad)
    with pytest.raises(ExprError, match="non-integer"):
        parse_arith("7/2*2", integer_only=True)
    with pytest.raises(ExprError, match="unary|number"):
        parse_arith("-1", allow_unary=False)
    assert safe_arith("9" * 12 + "*" + "9" * 12, max_abs=10 ** 20) is None
    assert safe_arith("(" * 10 ** 6) is None and safe_arith(None) is None


def test_every_registered_task_lists_and_shows(capsys):
    from spiral_bench.cli import main
    from spiral_bench.tasks import task_info
    from spiral_bench.tasks.base import register
    assert main(["tasks", "list"]) == 0
    listed = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in listed] == list_tasks()
    for name in list_tasks():
        info = task_info(name)
        assert info["name"] == name and info["kind"] in ("procedural", "dataset") and info["description"]
        assert main(["tasks", "show", name, "--n", "2"]) == 0   # dataset tasks: the excerpts ($SPIRAL_BENCH_DATA)
        shown = capsys.readouterr().out
        assert shown.count("=== ") == 2 and "reference: " in shown
    assert task_info("gsm8k")["description"].startswith("GSM8K")   # its own docstring, not DatasetTask's
    with pytest.raises(TypeError, match="'Undocumented' has no docstring"):
        register("undocumented")(type("Undocumented", (), {}))
    assert "undocumented" not in list_tasks()
