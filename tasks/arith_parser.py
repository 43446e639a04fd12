"""Bounded, exact arithmetic parsing of model output (no eval): `parse_arith`, `safe_arith`,
`format_fraction` (re-exported by `graders`).

`parse_arith(text, ...)`: recursive descent over ASCII integers, `+ - * /` and parentheses with
exact `Fraction`s; standard precedence, left associative:
    expr := term (('+'|'-') term)*,  term := factor (('*'|'/') factor)*,
    factor := INT | '(' expr ')' | '-' factor (if allow_unary).
Bounds: length, nesting depth, digits per literal, |intermediate|; `^`/`**` rejected; division by
zero and (integer_only) non-integer intermediates are errors (`ExprError`; `safe_arith` returns None).
"""
from __future__ import annotations

from fractions import Fraction


class ExprError(ValueError):
    """A malformed, unsafe or invalid arithmetic expression."""


class _Parser:
    def __init__(self, text, max_depth, max_digits, allow_unary, integer_only, max_abs):
        self.s, self.i, self.depth = text, 0, 0
        self.max_depth, self.max_digits, self.max_abs = max_depth, max_digits, max_abs
        self.allow_unary, self.integer_only = allow_unary, integer_only
        self.numbers: list[int] = []

    def peek(self) -> str:
        while self.i < len(self.s) and self.s[self.i] in " \t":
            self.i += 1
        return self.s[self.i] if self.i < len(self.s) else ""

    def check(self, v: Fraction) -> Fraction:
        if abs(v) > self.max_abs:
            raise ExprError("intermediate result too large")
        if self.integer_only and v.denominator != 1:
            raise ExprError(f"non-integer intermediate result {v}")
        return v

    def binary(self, ops: str, operand) -> Fraction:
        """operand ((op in ops) operand)*, folded left to right."""
        v = operand()
        while self.peek() and self.peek() in ops:
            op = self.s[self.i]
            self.i += 1
            w = operand()
            if op == "/" and w == 0:
                raise ExprError("division by zero")
            v = self.check(v + w if op == "+" else v - w if op == "-" else v * w if op == "*" else v / w)
        return v

    def expr(self) -> Fraction:
        return self.binary("+-", lambda: self.binary("*/", self.factor))

    def enter(self):
        self.depth += 1
        if self.depth > self.max_depth:
            raise ExprError("expression nested too deeply")

    def factor(self) -> Fraction:
        c = self.peek()
        if c == "(":
            self.i += 1
            self.enter()
            v = self.expr()
            if self.peek() != ")":
                raise ExprError("missing ')'")
            self.i += 1
            self.depth -= 1
            return v
        if c == "-" and self.allow_unary:
            self.i += 1
            self.enter()
            v = -self.factor()
            self.depth -= 1
            return v
        j = self.i
        while j < len(self.s) and "0" <= self.s[j] <= "9":
            j += 1
        if j == self.i:
            raise ExprError(f"expected a number at position {self.i}")
        if j - self.i > self.max_digits:
            raise ExprError("number has too many digits")
        n = int(self.s[self.i:j])
        self.i = j
        self.numbers.append(n)
        return self.check(Fraction(n))


def parse_arith(text: str, *, max_len: int = 256, max_depth: int = 16, max_digits: int = 12,
                allow_unary: bool = True, integer_only: bool = False,
                max_abs: int = 10 ** 40) -> tuple[Fraction, list[int]]:
    """Evaluate `text` exactly; return (value, integer literals in order). Raises ExprError."""
    if not isinstance(text, str):
        raise ExprError("not a string")
    if len(text) > max_len:
        raise ExprError(f"expression longer than {max_len} characters")
    if "^" in text or "**" in text:
        raise ExprError("exponentiation is not allowed")
    bad = set(text) - set("0123456789+-*/() \t")
    if bad:
        raise ExprError(f"unexpected characters {sorted(bad)[:5]!r}")
    p = _Parser(text, max_depth, max_digits, allow_unary, integer_only, max_abs)
    v = p.expr()
    if p.peek():
        raise ExprError(f"unexpected {p.peek()!r} at position {p.i}")
    return v, p.numbers


def safe_arith(text: str, **kw) -> Fraction | None:
    """`parse_arith(text, **kw)[0]`, or None when the expression is malformed/unsafe/invalid."""
    try:
        return parse_arith(text, **kw)[0]
    except (ExprError, RecursionError):
        return None


def format_fraction(v: Fraction) -> str:
    """'12', '-3', '1/2': the canonical text of an exact number."""
    return str(v.numerator) if v.denominator == 1 else f"{v.numerator}/{v.denominator}"
