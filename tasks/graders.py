"""Safe grading helpers shared by every task: bounded parsing, number normalisation, math-verify.

Model output is hostile input: nothing here calls eval/exec, every reader bounds its work first,
and the public graders never raise.

- `tail(text)`: the last `MAX_TAIL` (4,096) characters ('' for non-strings).
- `parse_arith`, `safe_arith`, `format_fraction`, `ExprError`: bounded exact arithmetic, defined in
  `tasks/arith_parser.py` and re-exported here.
- `parse_number(text)`: an answer string as an exact number, stripping `\\boxed{}`, `$`, `\\$`,
  `%`, `\\!`, `{,}`, `\\text{..}`, `^\\circ`, trailing plain-word units ("18 dollars"), "x ="; accepts
  `-1,234.50`, `3/4`, `\\frac{a}{b}`, `\\dfrac12`. Only ASCII digits count: unicode digits
  (Arabic-Indic, full-width, superscripts) make an answer non-matching (None).
- `answer_region(text)`: the last `\\boxed{..}`/`\\fbox{..}`, else after the last "####", else after
  the last "answer is"/"answer:", else the last number.
- `math_equal(gold, pred)` / `math_canonical(answer)`: math-verify `parse` (LaTeX extraction
  only: never sympy's `parse_expr`, which evals) + `verify`, under `run_with_timeout(
  MATH_TIMEOUT_S)` with math-verify's own signal timeouts off. `latex_is_safe` first rejects
  regions that could make sympy compute something huge (length, nesting, power towers, powers
  of powers, big exponents/factorials/binomials, sums/integrals/limits, control characters,
  unicode digits). The trusted gold is parsed once and cached under its own limit
  (`prepare_gold`); math-verify is imported and warmed up once, outside any limit. A
  prediction holding or evaluating to oo/zoo/nan never matches a finite gold (math-verify 0.9
  grades `\\infty+\\tan(\\pi/2)` equal to any number).
- Errors are not wrong answers: an exception inside math-verify (a version whose API differs, a
  bug) still scores 0 but is counted by `grade_errors.grader_errors()` (kind, count, first message),
  logged once per kind, and written into the run's manifest and analysis warnings,
  so a broken grading backend can never pass for a model that answers wrongly. Time-outs are
  bounded work by design and are not counted.
- `run_with_timeout(fn, limit, default, record=None)`: on the main thread a SIGALRM interval timer raises a
  BaseException inside `fn` (so `except Exception` in libraries cannot swallow it), re-fired
  every 50 ms, never inside the wrapper's own frame. On other threads (or without SIGALRM) `fn`
  runs in a daemon thread abandoned after `limit` s: the caller gets `default` on time, the
  thread may burn CPU until it ends (the input guards keep that short). Nested calls on the
  main thread run under the outer deadline.
"""
from __future__ import annotations

import logging
import re
import signal
import threading
import time
import unicodedata
from fractions import Fraction
from functools import lru_cache
from typing import Any, Callable

from .arith_parser import ExprError, format_fraction, parse_arith, safe_arith  # noqa: F401  (re-exported)
from .grade_errors import (error_warning, grader_errors, merge_errors, record_error,  # noqa: F401  (re-exported)
                           reset_grader_errors)

MAX_TAIL = 4096          # characters of a completion that graders look at (the end)
MAX_REGION = 400         # characters of an answer region
MAX_NUMBER_DIGITS = 40   # digits of a number answer
MAX_DEPTH = 6            # bracket nesting of an answer given to math-verify (MATH-500 golds: <= 2)
MATH_TIMEOUT_S = 0.75    # wall-clock limit of one math-verify comparison (prediction parse + verify)
GOLD_TIMEOUT_S = 5.0     # limit of the one-time (cached) parse of a trusted gold answer

_ASCII_NUM = re.compile(r"(?<![0-9])(?:[+-]?(?:[0-9]{1,3}(?:,[0-9]{3})+|[0-9]+)(?:\.[0-9]+)?|[+-]?\.[0-9]+)"
                        r"(?![0-9]|,[0-9])", re.ASCII)


def tail(text: Any, n: int = MAX_TAIL) -> str:
    """The last `n` characters of `text` ('' for non-strings)."""
    return text[-n:] if isinstance(text, str) else ""


# --- numeric normalisation ----------------------------------------------------------------
def _has_foreign_digits(s: str) -> bool:
    return any(ch.isdigit() and not ("0" <= ch <= "9") for ch in s) or \
        any(unicodedata.category(ch)[0] == "C" and ch not in "\n\t" for ch in s)


def last_boxed(text: str) -> str | None:
    """Content of the last `\\boxed{...}` / `\\fbox{...}` (balanced braces, bounded), or
    `\\boxed 5` without braces; None if absent or unbalanced."""
    text = tail(text)
    k = max(text.rfind("\\boxed"), text.rfind("\\fbox"))
    if k < 0:
        return None
    j = k + (6 if text.startswith("\\boxed", k) else 5)
    if j < len(text) and text[j] == " ":
        m = re.match(r" +([^\s$]{1,%d})" % MAX_REGION, text[j:])
        return m.group(1) if m else None
    if j >= len(text) or text[j] != "{":
        return None
    depth = 0
    for e in range(j, min(len(text), j + MAX_REGION + 2)):
        if text[e] == "{":
            depth += 1
        elif text[e] == "}":
            depth -= 1
            if depth == 0:
                return text[j + 1:e]
    return None


def answer_region(text: str) -> str | None:
    """The final-answer region of a completion (see module doc), bounded to MAX_REGION chars."""
    text = tail(text)
    if not text:
        return None
    boxed = last_boxed(text)
    if boxed is not None:
        return boxed.strip()[:MAX_REGION]
    k = text.rfind("####")
    if k >= 0:
        return text[k + 4:].split("\n", 1)[0].strip()[:MAX_REGION]
    low = text.lower()
    k = max(low.rfind("answer is"), low.rfind("answer:"))
    if k >= 0:
        region = text[k:].split("\n", 1)[0]
        region = region[region.find(":") + 1:] if region.lower().startswith("answer:") else region[9:]
        region = region.strip().lstrip(":").strip().rstrip(".").strip()
        if region.startswith("$") and region.count("$") >= 2:
            region = region[1:region.index("$", 1)]
        return region[:MAX_REGION] or None
    nums = list(_ASCII_NUM.finditer(text))
    return nums[-1].group(0) if nums else None


_UNITS = re.compile(r"^(.*?[0-9])\s*[A-Za-z][A-Za-z.\- ]*$", re.ASCII | re.S)


def _strip_wrappers(s: str) -> str:
    s = s.strip()
    for _ in range(3):
        b = last_boxed(s) if ("\\boxed" in s or "\\fbox" in s) else None
        if b is not None:
            s = b.strip()
        if len(s) >= 2 and s[0] == "$" and s[-1] == "$":
            s = s.strip("$").strip()
        for a, b2 in (("\\left", ""), ("\\right", ""), ("\\!", ""), ("{,}", ","), ("\\,", ""),
                      ("\\$", ""), ("\\%", ""), ("%", ""), ("$", ""), ("\\dfrac", "\\frac"),
                      ("\\tfrac", "\\frac")):
            s = s.replace(a, b2)
        s = re.sub(r"\\(?:text|mbox|mathrm|textbf)\{[^{}]*\}", " ", s).strip()
        s = re.sub(r"\^\s*\{?\\circ\}?", "", s).strip()
        s = s.rstrip(".").strip()
    if "=" in s:  # "x = 3" -> "3"
        s = s.rsplit("=", 1)[1].strip()
    return s


def parse_number(text: Any) -> Fraction | None:
    """Normalise an answer string to an exact number, or None (see module doc)."""
    if not isinstance(text, str) or len(text) > MAX_REGION or _has_foreign_digits(text):
        return None
    s = _strip_wrappers(text)
    m = _UNITS.match(s)
    if m:
        s = m.group(1).strip()
    m = re.fullmatch(r"\\frac\s*(?:\{\s*([+-]?[0-9]+)\s*\}|([0-9]))\s*(?:\{\s*([0-9]+)\s*\}|([0-9]))", s,
                     re.ASCII)
    if m:
        num, den = int(m.group(1) or m.group(2)), int(m.group(3) or m.group(4))
        return Fraction(num, den) if den else None
    m = re.fullmatch(r"([+-]?[0-9]{1,%d})\s*/\s*([0-9]{1,%d})" % (MAX_NUMBER_DIGITS, MAX_NUMBER_DIGITS), s, re.ASCII)
    if m:
        den = int(m.group(2))
        return Fraction(int(m.group(1)), den) if den else None
    if _ASCII_NUM.fullmatch(s) and sum(ch.isdigit() for ch in s) <= MAX_NUMBER_DIGITS:
        return Fraction(s.replace(",", ""))
    return None


def extract_number(text: Any) -> Fraction | None:
    """The final number of a free-form completion (GSM8K style): normalise `answer_region`;
    if the region is not a plain number, fall back to the first number inside it."""
    region = answer_region(text)
    if region is None:
        return None
    v = parse_number(region)
    if v is None and not _has_foreign_digits(region):
        m = _ASCII_NUM.search(region.replace("{,}", ",").replace("\\!", ""))
        v = parse_number(m.group(0)) if m else None
    return v


# --- time limits --------------------------------------------------------------------------
class _Deadline(BaseException):
    """Raised inside a timed call on the main thread; BaseException so `except Exception` in
    library code does not swallow it."""


_TIMER = {"active": False}


def _on_alarm(signum, frame):
    # Never raise inside run_with_timeout's own frame (its set-up and clean-up), only in `fn`.
    if _TIMER["active"] and (frame is None or frame.f_code is not _RUN_CODE):
        raise _Deadline()


def run_with_timeout(fn: Callable[[], Any], limit: float, default: Any = None, record: str | None = None) -> Any:
    """`fn()`, or `default` when it raises or runs past `limit` seconds (see module doc). With
    `record`, an exception raised by `fn` (not the time limit) is counted under that name."""
    on_main = threading.current_thread() is threading.main_thread() and hasattr(signal, "setitimer")
    if on_main and _TIMER["active"]:  # nested: the outer deadline applies
        return fn()
    if not on_main:
        box: list = []

        def work():
            try:
                box.append(fn())
            except Exception as e:  # noqa: BLE001 - a grader never raises
                if record:
                    record_error(record, e)
            except BaseException:  # noqa: BLE001
                pass
        t = threading.Thread(target=work, daemon=True, name="grader-timeout")
        t.start()
        t.join(limit)
        return box[0] if box else default
    result, start = default, time.monotonic()
    prev_handler = signal.signal(signal.SIGALRM, _on_alarm)
    prev_timer = signal.setitimer(signal.ITIMER_REAL, limit, 0.05)  # re-fires every 50 ms
    _TIMER["active"] = True
    try:
        result = fn()
    except _Deadline:
        result = default
    except Exception as e:  # noqa: BLE001
        result = default
        if record:
            record_error(record, e)
    finally:
        _TIMER["active"] = False
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, prev_handler)
        if prev_timer[0] > 0:  # someone else's timer: give back what is left of it
            signal.setitimer(signal.ITIMER_REAL, max(prev_timer[0] - (time.monotonic() - start), 1e-3),
                             prev_timer[1])
    return result


_RUN_CODE = run_with_timeout.__code__


# --- math-verify ----------------------------------------------------------------------------
_BIG_FACT = re.compile(r"(?:[0-9]{4,}|[)}\]])\s*!")
_BIG_BINOM = re.compile(r"\\[dt]?binom\s*\{[^}]*[0-9]{5,}|\\choose")
_BANNED = ("\\sum", "\\prod", "\\int", "\\lim", "\\oint", "\\Gamma", "\\operatorname", "__", "import")


def _group_end(s: str, j: int) -> int:
    """Index just past the bracket group opening at s[j] (or len(s) if unbalanced)."""
    close = {"{": "}", "(": ")", "[": "]"}[s[j]]
    depth = 0
    for e in range(j, len(s)):
        if s[e] == s[j]:
            depth += 1
        elif s[e] == close:
            depth -= 1
            if depth == 0:
                return e + 1
    return len(s)


def _powers_are_small(s: str) -> bool:
    """Reject power towers (`9**9**9`, `10^{10^{10}}`), exponents with 4+ digit literals or
    factorials, and more than two powers of a bracketed group that itself holds a power."""
    group_powers = 0
    for m in re.finditer(r"\^|\*\*", s):
        j = m.end()
        while j < len(s) and s[j] == " ":
            j += 1
        if j < len(s) and s[j] in "{([":
            e = _group_end(s, j)
        else:
            e = j
            while e < len(s) and (s[e].isalnum() or s[e] in ".\\"):
                e += 1
        exp = s[j:e]
        if "^" in exp or "**" in exp or "!" in exp or re.search(r"[0-9]{4,}", exp):
            return False
        if re.match(r"\s*(?:\^|\*\*)", s[e:]):
            return False
        k = m.start() - 1
        while k >= 0 and s[k] == " ":
            k -= 1
        if k >= 0 and s[k] in ")}]":
            opener = {")": "(", "}": "{", "]": "["}[s[k]]
            depth, b = 0, k
            while b >= 0:
                depth += (s[b] == s[k]) - (s[b] == opener)
                if depth == 0:
                    break
                b -= 1
            if "^" in s[b:k] or "**" in s[b:k]:
                group_powers += 1
                if group_powers > 2 or len(exp.strip("{}() ")) > 1:
                    return False
    return True


def latex_is_safe(s: str) -> bool:
    """True when `s` is short, shallow and free of constructs that make sympy blow up."""
    if not isinstance(s, str) or not s or len(s) > MAX_REGION or _has_foreign_digits(s):
        return False
    depth = best = 0
    for ch in s:
        if ch in "([{":
            depth += 1
            best = max(best, depth)
        elif ch in ")]}":
            depth -= 1
    if best > MAX_DEPTH or re.search(r"[0-9]{61,}", s, re.ASCII):
        return False
    if s.count("^") + s.count("**") > 12 or s.count("!") > 3:
        return False
    if _BIG_FACT.search(s) or _BIG_BINOM.search(s) or any(b in s for b in _BANNED):
        return False
    return _powers_are_small(s)


_WARMUP = ["\\frac{1}{2}", "0.5", "(3, \\frac{\\pi}{2})", "[1, 2)", "\\{1, 2\\}", "x \\in [1, 2]",
           "\\begin{pmatrix} 1 \\\\ 2 \\end{pmatrix}", "x = 3", "\\text{(A)}", "\\sqrt{2}", "x^2 + 1",
           "90^\\circ", "10,\\!080", "\\infty", "2 - 3i", "\\log 2", "\\sin x", "a < 1"]


@lru_cache(maxsize=1)
def _mv():
    """Import math-verify (it pulls sympy) and warm it up once, outside any time limit, so
    that no lazy import or parser build happens inside a timed (interruptible) call."""
    import math_verify
    from math_verify import grader as mvg, parser as mvp
    mvp.TIMEOUT_WARNING_SHOWN = True  # we run math-verify with our own time limit
    mvg.TIMEOUT_WARNING_SHOWN = True
    logging.getLogger("math_verify").setLevel(logging.ERROR)
    cfg = [math_verify.LatexExtractionConfig()]
    parsed = [math_verify.parse("\\boxed{" + w + "}", cfg, parsing_timeout=None) for w in _WARMUP]
    for a, b in zip(parsed, parsed[1:] + parsed[:1]):
        math_verify.verify(a, a, timeout_seconds=None)
        math_verify.verify(a, b, timeout_seconds=None)
    return math_verify


def _mv_parse(latex: str):
    mv = _mv()
    return mv.parse("\\boxed{" + latex + "}", extraction_config=[mv.LatexExtractionConfig()],
                    parsing_timeout=None)


def _nonfinite(parsed: list) -> bool:
    """True if a parsed answer holds oo, -oo, zoo or nan, literally or in the value of any
    sub-expression (`\\infty+\\tan(\\pi/2)`, `\\sqrt{2}/\\log(0)`); an evaluation error counts."""
    import sympy
    bad = (sympy.oo, -sympy.oo, sympy.zoo, sympy.nan)
    for x in parsed:
        if not isinstance(x, sympy.Basic):
            continue
        if x.has(*bad):
            return True
        for sub in sympy.preorder_traversal(x):
            if isinstance(sub, (sympy.Atom, sympy.Tuple)) or not isinstance(sub, sympy.Expr):
                continue
            try:
                v = sub.evalf(15)
            except Exception:  # noqa: BLE001
                return True
            if isinstance(v, sympy.Basic) and v.has(*bad):
                return True
    return False


_GOLD: dict[str, tuple[list, bool]] = {}


def prepare_gold(gold: str) -> bool:
    """Parse and cache a gold answer ahead of grading (the first `math_equal` against a gold
    answer parses it, which can take a few hundred ms); True if math-verify could parse it."""
    try:
        return bool(_gold_parsed(gold)[0])
    except Exception:  # noqa: BLE001
        return False


def _gold_parsed(gold: str) -> tuple[list, bool]:
    """(math-verify's parse, is it non-finite) of a trusted gold answer: cached, computed under
    its own GOLD_TIMEOUT_S."""
    if gold not in _GOLD:
        if len(_GOLD) > 65536:
            _GOLD.clear()

        def work():
            parsed = _mv_parse(gold)
            return parsed, _nonfinite(parsed)
        _GOLD[gold] = run_with_timeout(work, GOLD_TIMEOUT_S, None, record="math-verify parse") or ([], False)
    return _GOLD[gold]


_PLAIN_UNITS = re.compile(r"^\s*([+-]?[0-9][0-9,.]*)\s+[A-Za-z]{2,}[A-Za-z ]*\.?\s*$", re.ASCII)


def _clean_pred(pred: str) -> str:
    m = _PLAIN_UNITS.match(pred)  # "18 dollars" -> "18" (math-verify reads it as 18*d*o*l*...)
    return m.group(1) if m else pred


def math_equal(gold: str, pred: str | None, timeout: float = MATH_TIMEOUT_S) -> bool:
    """math-verify equivalence of a gold answer and a predicted answer region; never raises.
    Shortcuts: equal strings, or both plain numbers that are equal (True) or both integers
    that differ (False); results are cached by (gold, pred, timeout)."""
    try:
        if not isinstance(pred, str) or not isinstance(gold, str):
            return False
        return _math_equal(gold, pred.strip()[:MAX_REGION + 1], float(timeout))
    except Exception as e:  # noqa: BLE001 - graders never raise
        record_error("math_equal", e)
        return False


@lru_cache(maxsize=65536)
def _math_equal(gold: str, pred: str, timeout: float) -> bool:
    pred = _clean_pred(pred)
    if pred == gold.strip():          # before the safety check: an exact copy of a huge gold (2^{2005}) is right
        return True
    if not latex_is_safe(pred):
        return False
    g, p = parse_number(gold), parse_number(pred)
    if g is not None and p is not None:
        if g == p:
            return True
        if g.denominator == 1 and p.denominator == 1:
            return False
    mv = _mv()
    gp, gold_nonfinite = _gold_parsed(gold)
    if not gp:
        return False

    def work() -> bool:
        pp = _mv_parse(pred)
        if not pp or not mv.verify(gp, pp, timeout_seconds=None):
            return False
        return gold_nonfinite or not _nonfinite(pp)  # math-verify says oo + tan(pi/2) == 902
    return run_with_timeout(work, timeout, False, record="math-verify verify") is True


def math_canonical(answer: str | None, timeout: float = MATH_TIMEOUT_S) -> str | None:
    """Majority-vote key: the exact number if `answer` is one, else the string form of
    math-verify's parse, else the answer without spaces; None for unsafe/empty answers."""
    try:
        if not isinstance(answer, str) or not answer.strip():
            return None
        return _math_canonical(answer.strip()[:MAX_REGION + 1], float(timeout))
    except Exception as e:  # noqa: BLE001
        record_error("math_canonical", e)
        return None


@lru_cache(maxsize=65536)
def _math_canonical(answer: str, timeout: float) -> str | None:
    try:
        v = parse_number(answer)
        if v is not None:
            return format_fraction(v)
        answer = _clean_pred(answer.strip())
        if not latex_is_safe(answer):
            return None
        _mv()

        def work():
            parsed = _mv_parse(answer)
            return str(parsed[0])[:MAX_REGION] if parsed else None
        key = run_with_timeout(work, timeout, None, record="math-verify parse")
        return key if key is not None else re.sub(r"\s+", "", answer)
    except Exception as e:  # noqa: BLE001
        record_error("math_canonical", e)
        return None
