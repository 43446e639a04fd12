"""Errors inside a grading backend, counted: an exception is not a wrong answer.

A grader never raises (model output is hostile input), so an exception inside math-verify (an
installed version whose API differs, a bug) scores the answer 0. Counted here instead of
vanishing: `record_error(kind, exc)` counts it and logs the first of each kind;
`grader_errors()` / `reset_grader_errors()` read and clear the counts; `add_errors` adds a worker
process's record; `merge_errors` adds two
records (a resumed run); `error_warning(errors)` is the line a run prints and writes into its
manifest and analysis warnings (so the report shows it).
"""
from __future__ import annotations

import logging
from collections import Counter

_ERRORS: Counter = Counter()
_FIRST: dict[str, str] = {}
_LOG = logging.getLogger("spiral_bench.graders")


def record_error(kind: str, exc: BaseException) -> None:
    """Count an exception raised inside a grading backend (`kind`: where), logging the first of each kind."""
    key = f"{kind}: {type(exc).__name__}"
    if key not in _FIRST:
        _FIRST[key] = str(exc)[:300]
        _LOG.warning("grader error (%s): %s; the answer scores 0 and the error is counted", key, _FIRST[key])
    _ERRORS[key] += 1


def grader_errors() -> dict:
    """{"count": total, "kinds": {kind: {"count", "first"}}} since the last `reset_grader_errors()`.
    Results are cached per distinct (gold, answer), so a count is of distinct gradings."""
    return {"count": sum(_ERRORS.values()),
            "kinds": {k: {"count": n, "first": _FIRST[k]} for k, n in sorted(_ERRORS.items())}}


def add_errors(errors: dict | None) -> None:
    """Add a `grader_errors()` record (of a worker process) to this process's counts."""
    for k, v in ((errors or {}).get("kinds") or {}).items():
        _FIRST.setdefault(k, v["first"])
        _ERRORS[k] += v["count"]


def reset_grader_errors() -> None:
    _ERRORS.clear()
    _FIRST.clear()


def merge_errors(a: dict | None, b: dict | None) -> dict:
    """Two `grader_errors()` records added together (a resumed run adds its new gradings)."""
    kinds = {k: dict(v) for k, v in ((a or {}).get("kinds") or {}).items()}
    for k, v in ((b or {}).get("kinds") or {}).items():
        kinds.setdefault(k, {"count": 0, "first": v["first"]})["count"] += v["count"]
    return {"count": sum(v["count"] for v in kinds.values()), "kinds": kinds}


def error_warning(errors: dict | None) -> str | None:
    """The one-line warning a run prints and its report shows, or None when there were no errors."""
    if not errors or not errors.get("count"):
        return None
    first = next(iter(errors["kinds"].items()))
    return (f"the grader's backend raised {errors['count']} error(s) while grading (first: {first[0]}: "
            f"{first[1]['first']}); those answers were scored 0, so accuracies are too low: check the "
            "installed math-verify against the version spiral-bench declares")
