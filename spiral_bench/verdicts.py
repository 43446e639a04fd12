"""Claim verdicts: what a measured confidence interval says about one published claim, in words that
answer the reader's two questions separately: is the effect real, and is it as large as claimed?

A claim (baselines/published.yaml) has a published value v, a direction d and a type:
- `point`    the effect is about v (SPIRAL's per-benchmark multipliers and gaps, GRSP's changes);
- `at_least` the effect is at least v (the "up to 11x" headline: a maximum reached somewhere);
- `bound`    the change is no worse than v ("accuracy drops by at most 1.6 points": v = -1.6, d '>=').
Point and at-least claims also have a no-effect value n (multiplier 1, gap 0), on the side of v
opposite to d. d '>=' claims an increase (v > n), d '<=' a decrease (v < n); a '<=' claim is judged
by mirroring (lo, hi, v, n -> -hi, -lo, -v, -n) and applying the '>=' rules below.

With the 95% CI [lo, hi] of the measured value ('>=' form), the labels (`RULES`, in this order):

| label               | rule (point / at_least)                          |
|---------------------|--------------------------------------------------|
| inconclusive        | the CI is undefined (non-finite or lo > hi)       |
| opposite direction  | hi < n                                            |
| larger than claimed | lo > v (point claims; an at_least claim reads "reproduced") |
| reproduced          | lo > n and lo <= v <= hi                          |
| real but smaller    | lo > n and hi < v                                 |
| no effect found     | lo <= n <= hi and hi < v                          |
| inconclusive        | lo <= n and hi >= v (the CI contains both)        |

Open upper end: when the estimate is a lower bound (`censored`: the multiplier's baseline never
reaches the level within the grid in more than CENSORED_SHARE_MAX of the bootstrap replicates, or in
the point estimate), hi says nothing about the truth's upper end, so hi = +inf: the row can then
only be "larger than claimed" / "reproduced" when lo itself is beyond v (the truth is at least lo),
"opposite direction" never, and otherwise "inconclusive" (never "reproduced" or "real but smaller"
on the censored interval alone).

Bound claims ("no worse than v", '>=' form): "within bound" when lo >= v, "outside bound" when
hi < v, else "inconclusive".
"""
from __future__ import annotations

import math

CENSORED_SHARE_MAX = 0.05   # above this share of censored replicates, the CI's upper end is open
TYPES = ("point", "at_least", "bound")
LABELS = ("reproduced", "larger than claimed", "real but smaller", "no effect found", "opposite direction",
          "within bound", "outside bound", "inconclusive", "not measured")
# (label, claim types, rule in words): the one table the README, the report and the terminal show
RULES = (
    ("reproduced", "point, at least", "the CI excludes the no-effect value and contains the published value "
                                      "(at least: or lies entirely beyond it)"),
    ("larger than claimed", "point", "the CI lies entirely beyond the published value"),
    ("real but smaller", "point, at least", "the CI excludes the no-effect value and lies entirely short of the "
                                            "published value"),
    ("no effect found", "point, at least", "the CI contains the no-effect value and lies entirely short of the "
                                           "published value"),
    ("opposite direction", "point, at least", "the CI lies entirely on the other side of the no-effect value"),
    ("within bound", "bound", "the whole CI is on the allowed side of the bound (e.g. no worse than -1.6 points)"),
    ("outside bound", "bound", "the whole CI is beyond the bound"),
    ("inconclusive", "all", "the CI contains both the no-effect and the published value (bound: the bound), or "
                            "is undefined, or its far end is open (a lower bound in more than 5% of the "
                            "bootstrap replicates) and its near end does not reach the published value"),
    ("not measured", "all", "the cells the claim needs are not in the store"),
)


def verdict(ci, published: float, direction: str = ">=", kind: str = "point", null_value: float | None = None,
            open_end: bool = False) -> str:
    """The label for a measured CI [lo, hi] against a claim (module docstring: rules, `RULES`).

    published: the claim's value v; direction: '>=' (an increase, or a bound "no lower than v") or
    '<=' (a decrease, or "no higher than v"); kind: 'point' | 'at_least' | 'bound'; null_value: the
    no-effect value n (required for point and at_least); open_end: the CI's far end (in the claim's
    direction) is not an upper bound on the truth (a censored multiplier).
    """
    if direction not in (">=", "<="):
        raise ValueError(f"direction must be '>=' or '<=', got {direction!r}")
    if kind not in TYPES:
        raise ValueError(f"claim type must be one of {TYPES}, got {kind!r}")
    lo, hi = (float(v) if v is not None else math.nan for v in ci)
    if not (math.isfinite(lo) and math.isfinite(hi)) or lo > hi:
        return "inconclusive"
    v, n = float(published), null_value
    if direction == "<=":                       # mirror into the '>=' form
        lo, hi, v = -hi, -lo, -v
        n = None if n is None else -float(n)
    if open_end:
        hi = math.inf
    if kind == "bound":
        return "within bound" if lo >= v else "outside bound" if hi < v else "inconclusive"
    if n is None:
        raise ValueError(f"a {kind} claim needs its no-effect value (null_value)")
    if not n < v:
        raise ValueError(f"the no-effect value {null_value} must lie on the other side of the published value "
                         f"{published} from the claimed direction {direction!r}")
    if hi < n:
        return "opposite direction"
    if lo > v:
        return "larger than claimed" if kind == "point" else "reproduced"
    if open_end:
        return "inconclusive"
    if lo > n:
        return "reproduced" if hi >= v else "real but smaller"
    return "no effect found" if hi < v else "inconclusive"


def rules_markdown() -> str:
    """`RULES` as a Markdown table (the README and the report print the same one)."""
    lines = ["| verdict | claim types | rule (95% CI of the measured value) |", "|---|---|---|"]
    lines += [f"| {label} | {types} | {rule} |" for label, types, rule in RULES]
    return "\n".join(lines)
