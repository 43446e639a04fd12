"""Reusable test doubles: a scripted fake policy (`ScriptedBackend`) and a tiny task (`FakeTask`).

FakeTask: problem i has id "p<i>", question "q<i>", a planted gold answer; prompt "Q q<i>\n";
a completion's answer is the text after the last "ANSWER=" (up to whitespace), else None;
reward 1.0 iff that answer equals the gold answer. It uses the base class's aggregation prompt.

ScriptedBackend: one token = one character. Sample j of a request is `policy(prompt, seed, j)`
with seed = sample_seed(request.seed, j), cut to max_new_tokens characters (finish_reason
"length" when cut, else "stop"). prompt_tokens = len(prompt). It logs every call and counts the
tokens it generated, and can raise after a given number of calls (to simulate a crash).

Toy7 (registered as task "toy7"): a FakeTask whose reward is 1 iff the completion contains '7'
(rewards vary inside a group from the first step), the trainer tests' task.

arithmetic_prompts / requests_for: the prompts of the first n arithmetic test problems and one
Request per prompt (seed seed0 + i), as the real-engine tests compare backends on them.
"""
from __future__ import annotations

import random
import re
import time
from collections import Counter

from spiral_bench.backends.base import Request, Sample, sample_seed
from spiral_bench.tasks.base import Problem, Task, register

INFO = {"n_params_nonembedding": 1000, "n_layers": 2, "d_model": 8, "n_params": 1500}
_ANS = re.compile(r"ANSWER=(\S{1,40})")


class FakeTask(Task):
    """Tiny task whose gold answers are planted: answers[i] is problem i's answer."""

    name = "fake"

    def __init__(self, answers=None, n=4):
        self.answers = list(answers) if answers is not None else [str(i % 10) for i in range(n)]

    def problems(self, split="test", n=None, seed=0):
        ps = [Problem(f"p{i}", f"q{i}", a) for i, a in enumerate(self.answers)]
        return ps[:n] if n is not None else ps

    def prompt(self, problem):
        return f"Q {problem.question}\n"

    def extract(self, completion):
        found = _ANS.findall(completion[:10_000])
        return found[-1] if found else None

    def reward(self, problem, completion):
        return float(self.extract(completion) == problem.answer)


def candidate_answers(prompt: str) -> list:
    """Answers of the candidates shown in an aggregation prompt, in shown order (None if none)."""
    parts = re.split(r"Candidate \d+(?: \(truncated\))?:\n", prompt)[1:]
    out = []
    for part in parts:
        found = _ANS.findall(part)
        out.append(found[-1] if found else None)
    return out


def is_aggregation(prompt: str) -> bool:
    return "Here are candidate solutions:" in prompt


def planted_policy(search: dict, aggregator: str = "majority", gold: dict | None = None, pad: int = 0):
    """A scripted policy.

    search: question -> list of answers (sample j gets answers[j % len]); an answer of None
    writes no answer ("none"); a tuple ("raw", text) writes `text` verbatim; any other answer
    writes "x" * pad + "ANSWER=<a>".
    aggregator: "majority" (most common shown answer, ties -> smallest string),
    "first" (the first shown candidate's answer), or "oracle" (the gold answer if any shown
    candidate has it, else the first shown answer); gold: question -> gold answer.
    """
    def policy(prompt: str, seed: int, j: int) -> str:
        q = re.match(r"Q (\S+)\n", prompt).group(1)
        if not is_aggregation(prompt):
            answers = search[q]
            a = answers[j % len(answers)]
            if isinstance(a, tuple):
                return a[1]
            return "x" * pad + ("none" if a is None else f"ANSWER={a}")
        shown = candidate_answers(prompt)
        votes = [a for a in shown if a is not None]
        if aggregator == "majority":
            c = Counter(votes)
            best = min(c, key=lambda a: (-c[a], a)) if c else None
        elif aggregator == "first":
            best = shown[0]
        elif aggregator == "oracle":
            best = gold[q] if gold[q] in shown else shown[0]
        else:
            raise ValueError(aggregator)
        return "agg " + ("none" if best is None else f"ANSWER={best}")
    return policy


def random_policy(p_correct: float, gold: dict, n_wrong: int = 3, pad_max: int = 12):
    """A seeded random policy: the search answer is gold w.p. p_correct else one of n_wrong wrong
    answers; length varies with a random pad (so some traces hit max tokens); aggregation
    traces pick the majority of the shown answers w.p. 0.8 else a random shown answer."""
    def policy(prompt: str, seed: int, j: int) -> str:
        rng = random.Random(seed)
        q = re.match(r"Q (\S+)\n", prompt).group(1)
        pad = "y" * rng.randrange(pad_max)
        if not is_aggregation(prompt):
            a = gold[q] if rng.random() < p_correct else f"w{rng.randrange(n_wrong)}"
            return pad + f"ANSWER={a}"
        shown = [a for a in candidate_answers(prompt) if a is not None]
        if not shown:
            return pad + "none"
        c = Counter(shown)
        a = min(c, key=lambda x: (-c[x], x)) if rng.random() < 0.8 else rng.choice(shown)
        return pad + f"ANSWER={a}"
    return policy


class CrashError(RuntimeError):
    pass


class ScriptedBackend:
    """A `Backend` driven by a scripted policy (see module doc)."""

    def __init__(self, policy, info=None, crash_after_calls: int | None = None, delay: float = 0.0):
        self.policy, self.info = policy, dict(info or INFO)
        self.crash_after_calls, self.delay = crash_after_calls, delay
        self.calls: list[list] = []       # the requests of every generate call
        self.generated_tokens = 0
        self.n_traces = 0

    def generate(self, requests, sampling, progress=False):
        if self.crash_after_calls is not None and len(self.calls) >= self.crash_after_calls:
            raise CrashError(f"injected crash before call {len(self.calls) + 1}")
        self.calls.append(list(requests))
        if self.delay:
            time.sleep(self.delay)
        out = []
        for r in requests:
            L = r.max_new_tokens or sampling.max_new_tokens
            row = []
            for j in range(r.n):
                full = self.policy(r.prompt, sample_seed(r.seed, j), j)
                text = full[:L]
                row.append(Sample(text=text, token_ids=[ord(ch) for ch in text], logprobs=[0.0] * len(text),
                                  prompt_tokens=len(r.prompt), completion_tokens=len(text),
                                  finish_reason="length" if len(full) > L else "stop"))
                self.generated_tokens += len(text)
                self.n_traces += 1
            out.append(row)
        return out

    def model_info(self):
        return dict(self.info)


def arithmetic_prompts(n: int = 8) -> list[str]:
    from spiral_bench.tasks import get_task

    task = get_task("arithmetic")
    return [task.prompt(p) for p in task.problems("test", n=n)]


def requests_for(prompts, n: int, seed0: int = 0, L: int | None = None) -> list[Request]:
    return [Request(p, n=n, seed=seed0 + i, max_new_tokens=L) for i, p in enumerate(prompts)]


class Toy7(FakeTask):
    """A fake task for the trainer tests: reward 1 iff the completion contains '7'."""
    name = "toy7"

    def reward(self, problem, completion):
        return float("7" in completion)


register("toy7")(Toy7)
