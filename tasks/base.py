"""The task interface and the task registry.

A task gives, for one family of reasoning problems:

- `problems(split, n=None, seed=0)`: a deterministic list of `Problem`s, each with a stable `id`;
- `prompt(problem)`: the search prompt (the text the policy continues);
- `reference(problem)`: the gold answer as a string;
- `extract(completion)`: the final answer in a completion, or None;
- `canonical(answer)`: a normalised key so equal answers vote together in majority vote;
- `reward(problem, completion)`: a float in [0, 1], never raises, bounded in time;
- `aggregation_prompt(problem, candidates, truncated=None, template=None)`: the prompt of the
  aggregation role (truncated[i] marks a candidate that hit its token budget),
  which reads the problem and a list of candidate traces and writes a final answer.

Procedural tasks (arithmetic, countdown) also give `gold_trace(problem)` (a solver-written
search trace) and `gold_aggregation_trace(problem, candidates)` (a trace that checks the
candidates and ends with the right answer), used to warm-start both roles by SFT.

Completions are untrusted: graders never call eval/exec and bound every parse.
"""
from __future__ import annotations

import dataclasses
import difflib
from typing import Any, Callable

_REGISTRY: dict[str, Callable[..., "Task"]] = {}


@dataclasses.dataclass(frozen=True)
class Problem:
    """One problem: a stable id, the question text, the gold answer, and task-specific data."""

    id: str
    question: str
    answer: str
    meta: dict = dataclasses.field(default_factory=dict, hash=False, compare=False)


class Task:
    """Base class; subclasses implement the methods marked 'implement'."""

    name: str = "task"
    procedural: bool = False
    # Default aggregation template; fields: {question}, {candidates}. Candidates are
    # rendered with `candidate_template` (fields: {i} 1-based, {text}, {truncated}).
    aggregation_template: str = (
        "{question}\n\nHere are candidate solutions:\n{candidates}\n"
        "Check them and write the correct final answer.\n"
    )
    candidate_template: str = "Candidate {i}{truncated}:\n{text}\n"

    # --- implement -------------------------------------------------------------------
    def problems(self, split: str = "test", n: int | None = None, seed: int = 0) -> list[Problem]:
        raise NotImplementedError

    def prompt(self, problem: Problem) -> str:
        raise NotImplementedError

    def extract(self, completion: str) -> str | None:
        raise NotImplementedError

    def reward(self, problem: Problem, completion: str) -> float:
        raise NotImplementedError

    # --- shared ----------------------------------------------------------------------
    def reference(self, problem: Problem) -> str:
        return problem.answer

    def canonical(self, answer: str | None) -> str | None:
        """Key for majority vote; override where equal answers can be written differently."""
        return None if answer is None else answer.strip()

    def candidate_text(self, trace: str) -> str:
        """How a trace is shown as a candidate in an aggregation prompt (override to drop notes that
        only aggregation traces carry, so RSA's later steps look like its first)."""
        return trace

    def aggregation_prompt(self, problem: Problem, candidates: list[str],
                           truncated: list[bool] | None = None, template: str | None = None) -> str:
        truncated = truncated or [False] * len(candidates)
        body = "".join(
            self.candidate_template.format(i=i + 1, text=self.candidate_text(c),
                                           truncated=" (truncated)" if t else "")
            for i, (c, t) in enumerate(zip(candidates, truncated)))
        return (template or self.aggregation_template).format(question=self.prompt(problem), candidates=body)

    def gold_trace(self, problem: Problem) -> str:
        raise NotImplementedError(f"task {self.name!r} has no solver")

    def gold_aggregation_trace(self, problem: Problem, candidates: list[str]) -> str:
        raise NotImplementedError(f"task {self.name!r} has no aggregation solver")

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "procedural": self.procedural}


def register(name: str):
    """Class/factory decorator: `@register("countdown")` makes `get_task("countdown")` work.

    The factory's own docstring (not one inherited from a base class) describes the task; its first
    line is what `spiral-bench tasks list` prints. A factory without one is a TypeError here, when
    the module is imported, not later when someone lists the tasks."""
    def deco(factory):
        if not _own_doc(factory):
            raise TypeError(f"task {name!r}: {getattr(factory, '__qualname__', factory)!r} has no docstring; "
                            "its first line is the task's description in `spiral-bench tasks list`")
        _REGISTRY[name] = factory
        return factory
    return deco


def _own_doc(factory) -> str:
    doc = factory.__dict__.get("__doc__") if isinstance(factory, type) else getattr(factory, "__doc__", None)
    return (doc or "").strip()


def list_tasks() -> list[str]:
    return sorted(_REGISTRY)


def task_info(name: str) -> dict[str, Any]:
    """What `tasks list` shows of a registered task, without building it: name, kind, description."""
    if name not in _REGISTRY:
        get_task(name)  # raises the unknown-task error with its suggestion
    factory = _REGISTRY[name]
    kind = "procedural" if getattr(factory, "procedural", False) else "dataset"
    return {"name": name, "kind": kind, "description": _own_doc(factory).splitlines()[0]}


def get_task(name: str, **options) -> Task:
    """Build a registered task; unknown names and options raise ValueError naming them."""
    if name not in _REGISTRY:
        hint = difflib.get_close_matches(name, list(_REGISTRY), n=1)
        extra = f" (did you mean {hint[0]!r}?)" if hint else ""
        raise ValueError(f"unknown task {name!r}{extra}; known tasks: {', '.join(list_tasks())}")
    try:
        return _REGISTRY[name](**options)
    except TypeError as e:
        raise ValueError(f"task {name!r}: bad options {options}: {e}") from None
