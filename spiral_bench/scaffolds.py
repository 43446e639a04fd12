"""Inference scaffolds (registry name -> function): single, parallel, majority, aggregate, rsa.

Every scaffold runs batched across problems (one `backend.generate` call per layer for all
problems) and returns one `ScaffoldRecord` per problem with its final answer, correctness,
per-layer details and compute (`spiral_bench.compute`: prompt tokens, generated tokens,
max-token budget, FLOPs). All traces use `sampling.max_new_tokens` (L).

Seeds (all from `derive_seed`, sample j of a request gets `sample_seed(request_seed, j)`):
- layer 0 (search traces) of EVERY scaffold: `derive_seed(seed, "search", 0, problem.id)`, shared
  on purpose (common random numbers): parallel(k) traces are the first k of parallel(n>k), and a
  sweep's pool of N_max traces is layer 0 of any scaffold with n <= N_max;
- aggregate: set `derive_seed(seed, "aggregate", 1, pid, "set")`, trace `derive_seed(seed, "aggregate", 1, pid)`;
- rsa step t, member i: subset `derive_seed(seed, "rsa", t, pid, i, "subset")`,
  trace `derive_seed(seed, "rsa", t, pid, i)`; vote ties `derive_seed(seed, <scaffold>, t, pid, "tie")`.

Definitions (r = task.reward, key = task.canonical(task.extract(text))):
- single: one trace; answer = its extracted answer, correct = its reward.
- parallel(n): n traces; correct = max_j r_j (pass@n, oracle selection); answer = that of the
  first trace with the highest reward.
- majority(n): plurality vote over keys (None does not vote); ties broken by a seeded uniform draw
  among the tied keys (sorted first, so the draw does not depend on trace order); correct = the
  mean reward of the traces carrying the winning key (as `estimators.maj_at_k` scores an answer);
  no vote at all -> answer None, correct 0.
- aggregate(n, set_size): n traces, then `set_size` of them drawn without replacement in a seeded
  random order are shown through `task.aggregation_prompt(problem, texts, truncated, template)`
  (truncated = finish_reason "length"); one aggregation trace; answer/correct are its own.
- rsa(N, K, T): step 0 = N search traces; step t = 1..T makes N new traces, member i aggregating
  a seeded random K-subset (random order) of step t-1's population. Each step records its
  population accuracy (mean reward) and majority vote. correct = final population accuracy
  (RSA pass@1); answer = final majority answer; majority_correct = final majority correctness.

`candidates` (per problem, a list of >= n Samples drawn with this scaffold's layer-0 seed and the
same sampling config) lets a sweep reuse pooled traces: the record then equals a fresh run's,
compute included (the candidates' compute is charged to the record).
"""
from __future__ import annotations

import dataclasses
import random
from collections import Counter
from typing import TYPE_CHECKING, Callable, Sequence

from .backends.base import Request, Sample, SamplingConfig, derive_seed
from .compute import Compute, request_compute
from .config import option

if TYPE_CHECKING:  # pragma: no cover
    from .tasks.base import Problem, Task

SCAFFOLD_NAMES = ("single", "parallel", "majority", "aggregate", "rsa")


@dataclasses.dataclass(frozen=True)
class ScaffoldConfig:
    """Which scaffold to run and its sizes."""

    name: str = option("single", help="Scaffold: single, parallel, majority, aggregate or rsa.",
                       choices=SCAFFOLD_NAMES)
    n: int = option(1, help="parallel/majority/aggregate: number of search traces per problem.", min=1)
    set_size: int = option(4, help="aggregate: candidates shown to the aggregation trace.", min=1)
    population: int = option(8, help="rsa: population size N.", min=1)
    subset: int = option(4, help="rsa: candidates K each new member aggregates.", min=1)
    steps: int = option(1, help="rsa: aggregation steps T (0 = the sampled population only).", min=0)
    template: str | None = option(None, help="Aggregation prompt template with {question} and "
                                             "{candidates}; None = the task's default.")
    seed: int = option(0, help="Run seed; every sampling seed is derived from it.")

    def validate(self) -> None:
        from .config import ConfigError
        if self.name == "aggregate" and self.set_size > self.n:
            raise ConfigError(f"set_size: {self.set_size} exceeds n={self.n} (aggregate reads set_size of n traces)")
        if self.name == "rsa" and self.subset > self.population:
            raise ConfigError(f"subset: {self.subset} exceeds population={self.population}")


@dataclasses.dataclass
class ScaffoldRecord:
    """The result of one scaffold on one problem.

    steps: one dict per layer (0 = search traces): {"step", "accuracy" (mean reward),
    "majority_answer", "majority_correct", "answers" (extracted), "rewards", "compute"
    (Compute of that layer), and "sets" (aggregation layers: the candidate indices each trace read,
    in shown order)}.
    """

    problem_id: str
    scaffold: str
    answer: str | None
    correct: float
    majority_correct: float
    compute: Compute
    steps: list[dict]


# ---------------------------------------------------------------------------------- helpers
def majority_vote(keys: Sequence[str | None], tie_seed: int) -> tuple[str | None, int | None]:
    """Plurality winner among non-None keys and the index of its first occurrence.

    Ties: uniform seeded draw among the tied keys, sorted first (independent of trace order).
    All keys None -> (None, None).
    """
    counts = Counter(k for k in keys if k is not None)
    if not counts:
        return None, None
    top = max(counts.values())
    tied = sorted(k for k, c in counts.items() if c == top)
    winner = tied[0] if len(tied) == 1 else random.Random(tie_seed).choice(tied)
    return winner, list(keys).index(winner)


def _keys(task: "Task", texts: Sequence[str]) -> tuple[list, list]:
    answers = [task.extract(t) for t in texts]
    return answers, [task.canonical(a) for a in answers]


def layer_summary(task: "Task", problem: "Problem", samples: Sequence[Sample], compute: Compute,
           tie_seed: int, step: int, sets: list | None = None) -> dict:
    texts = [s.text for s in samples]
    answers, keys = _keys(task, texts)
    rewards = [float(task.reward(problem, t)) for t in texts]
    winner, idx = majority_vote(keys, tie_seed)
    won = [r for r, k in zip(rewards, keys) if idx is not None and k == winner]
    out = {"step": step, "accuracy": sum(rewards) / len(rewards) if rewards else 0.0,
           "majority_answer": None if idx is None else answers[idx],
           "majority_correct": sum(won) / len(won) if won else 0.0,
           "answers": answers, "rewards": rewards, "compute": compute}
    if sets is not None:
        out["sets"] = sets
    return out


def _info(backend) -> dict:
    return backend.model_info()


def search_layer(backend, task: "Task", problems: Sequence["Problem"], sampling: SamplingConfig,
                 n: int, seed: int, candidates: Sequence[Sequence[Sample]] | None = None,
                 progress: bool = False) -> tuple[list[list[Sample]], list[Compute]]:
    """Layer 0: n search traces per problem (one generate call), or the first n of `candidates`."""
    L = sampling.max_new_tokens
    if candidates is None:
        reqs = [Request(task.prompt(p), n=n, seed=derive_seed(seed, "search", 0, p.id), max_new_tokens=L)
                for p in problems]
        out = backend.generate(reqs, sampling, progress=progress)
    else:
        if len(candidates) != len(problems) or any(len(c) < n for c in candidates):
            raise ValueError(f"candidates must give >= {n} traces for each of {len(problems)} problems")
        out = [list(c[:n]) for c in candidates]
    info = _info(backend)
    comp = [request_compute(s[0].prompt_tokens if s else 0, [x.completion_tokens for x in s], L, info)
            for s in out]
    return out, comp


def aggregation_layer(backend, task: "Task", problems: Sequence["Problem"], sampling: SamplingConfig,
                      populations: Sequence[Sequence[Sample]], set_size: int, n_out: int,
                      seed_parts: Callable[[str, int], tuple], set_parts: Callable[[str, int], tuple],
                      template: str | None, progress: bool = False):
    """n_out aggregation traces per problem, trace i reading a seeded random `set_size`-subset
    (random order) of that problem's population; one generate call for all problems.

    Returns (samples per problem, Compute per problem, sets per problem).
    """
    L = sampling.max_new_tokens
    reqs, sets = [], []
    for p, pop in zip(problems, populations):
        p_sets = []
        for i in range(n_out):
            idx = random.Random(derive_seed(*set_parts(p.id, i))).sample(range(len(pop)), set_size)
            p_sets.append(idx)
            chosen = [pop[j] for j in idx]
            prompt = task.aggregation_prompt(p, [c.text for c in chosen],
                                             [c.finish_reason == "length" for c in chosen], template)
            reqs.append(Request(prompt, n=1, seed=derive_seed(*seed_parts(p.id, i)), max_new_tokens=L))
        sets.append(p_sets)
    flat = backend.generate(reqs, sampling, progress=progress) if reqs else []
    info = _info(backend)
    samples, comps = [], []
    for b in range(len(problems)):
        got = [flat[b * n_out + i][0] for i in range(n_out)]
        samples.append(got)
        comps.append(Compute.total(request_compute(s.prompt_tokens, [s.completion_tokens], L, info) for s in got))
    return samples, comps, sets


# -------------------------------------------------------------------------------- scaffolds
def parallel(backend, task, problems, sampling, *, n: int, seed: int = 0, candidates=None,
             progress: bool = False, _name: str = "parallel") -> list[ScaffoldRecord]:
    """n independent traces; correct = max reward (pass@n), answer = best trace's."""
    samples, comps = search_layer(backend, task, problems, sampling, n, seed, candidates, progress)
    recs = []
    for p, s, c in zip(problems, samples, comps):
        lay = layer_summary(task, p, s, c, derive_seed(seed, _name, 0, p.id, "tie"), 0)
        best = max(range(len(s)), key=lambda j: (lay["rewards"][j], -j))
        recs.append(ScaffoldRecord(p.id, _name, lay["answers"][best], lay["rewards"][best],
                                   lay["majority_correct"], c, [lay]))
    return recs


def single(backend, task, problems, sampling, *, seed: int = 0, candidates=None,
           progress: bool = False) -> list[ScaffoldRecord]:
    """One trace per problem."""
    return parallel(backend, task, problems, sampling, n=1, seed=seed, candidates=candidates,
                    progress=progress, _name="single")


def majority(backend, task, problems, sampling, *, n: int, seed: int = 0, candidates=None,
             progress: bool = False) -> list[ScaffoldRecord]:
    """n traces and a plurality vote over canonical answers (seeded tie-break)."""
    samples, comps = search_layer(backend, task, problems, sampling, n, seed, candidates, progress)
    recs = []
    for p, s, c in zip(problems, samples, comps):
        lay = layer_summary(task, p, s, c, derive_seed(seed, "majority", 0, p.id, "tie"), 0)
        recs.append(ScaffoldRecord(p.id, "majority", lay["majority_answer"], lay["majority_correct"],
                                   lay["majority_correct"], c, [lay]))
    return recs


def aggregate(backend, task, problems, sampling, *, n: int, set_size: int, template: str | None = None,
              seed: int = 0, candidates=None, progress: bool = False) -> list[ScaffoldRecord]:
    """n search traces, then one aggregation trace over a seeded, shuffled set of set_size of them."""
    if set_size > n:
        raise ValueError(f"set_size={set_size} exceeds n={n}")
    samples, comps = search_layer(backend, task, problems, sampling, n, seed, candidates, progress)
    agg, acomps, sets = aggregation_layer(
        backend, task, problems, sampling, samples, set_size, 1,
        seed_parts=lambda pid, i: (seed, "aggregate", 1, pid),
        set_parts=lambda pid, i: (seed, "aggregate", 1, pid, "set"), template=template, progress=progress)
    recs = []
    for b, p in enumerate(problems):
        l0 = layer_summary(task, p, samples[b], comps[b], derive_seed(seed, "aggregate", 0, p.id, "tie"), 0)
        l1 = layer_summary(task, p, agg[b], acomps[b], derive_seed(seed, "aggregate", 1, p.id, "tie"), 1, sets[b])
        recs.append(ScaffoldRecord(p.id, "aggregate", l1["answers"][0], l1["rewards"][0],
                                   l1["majority_correct"], comps[b] + acomps[b], [l0, l1]))
    return recs


def rsa_step(backend, task, problems, sampling, populations, t: int, *, subset: int,
             template: str | None = None, seed: int = 0, progress: bool = False):
    """RSA step t >= 1: from step t-1's populations (per problem, N Samples) make N new members,
    member i aggregating a seeded random `subset`-subset. Returns (new populations, per-problem
    layer summaries). One generate call for all problems."""
    population = len(populations[0])
    pops, comps, sets = aggregation_layer(
        backend, task, problems, sampling, populations, subset, population,
        seed_parts=lambda pid, i: (seed, "rsa", t, pid, i),
        set_parts=lambda pid, i: (seed, "rsa", t, pid, i, "subset"), template=template, progress=progress)
    layers = [layer_summary(task, p, pops[b], comps[b], derive_seed(seed, "rsa", t, p.id, "tie"), t, sets[b])
              for b, p in enumerate(problems)]
    return pops, layers


def rsa(backend, task, problems, sampling, *, population: int, subset: int, steps: int,
        template: str | None = None, seed: int = 0, candidates=None,
        progress: bool = False) -> list[ScaffoldRecord]:
    """Recursive self-aggregation: population N, subsets of K, T steps (see module doc)."""
    if subset > population:
        raise ValueError(f"subset={subset} exceeds population={population}")
    pops, comps = search_layer(backend, task, problems, sampling, population, seed, candidates, progress)
    layers = [[layer_summary(task, p, pops[b], comps[b], derive_seed(seed, "rsa", 0, p.id, "tie"), 0)]
              for b, p in enumerate(problems)]
    for t in range(1, steps + 1):
        pops, new = rsa_step(backend, task, problems, sampling, pops, t, subset=subset, template=template,
                             seed=seed, progress=progress)
        for ls, lay in zip(layers, new):
            ls.append(lay)
    return [ScaffoldRecord(p.id, "rsa", ls[-1]["majority_answer"], ls[-1]["accuracy"], ls[-1]["majority_correct"],
                           Compute.total(l["compute"] for l in ls), ls)
            for p, ls in zip(problems, layers)]


SCAFFOLDS: dict[str, Callable[..., list[ScaffoldRecord]]] = {
    "single": single, "parallel": parallel, "majority": majority, "aggregate": aggregate, "rsa": rsa,
}


def register_scaffold(name: str):
    """Decorator adding a scaffold function `fn(backend, task, problems, sampling, **kw)`."""
    def deco(fn):
        SCAFFOLDS[name] = fn
        return fn
    return deco


def run_scaffold(cfg: ScaffoldConfig, backend, task, problems, sampling: SamplingConfig,
                 candidates=None, progress: bool = False) -> list[ScaffoldRecord]:
    """Run the scaffold a `ScaffoldConfig` names with its sizes."""
    if cfg.name not in SCAFFOLDS:
        raise ValueError(f"unknown scaffold {cfg.name!r}; known: {', '.join(SCAFFOLDS)}")
    kw: dict = {"seed": cfg.seed, "candidates": candidates, "progress": progress}
    if cfg.name in ("parallel", "majority"):
        kw["n"] = cfg.n
    elif cfg.name == "aggregate":
        kw.update(n=cfg.n, set_size=cfg.set_size, template=cfg.template)
    elif cfg.name == "rsa":
        kw.update(population=cfg.population, subset=cfg.subset, steps=cfg.steps, template=cfg.template)
    return SCAFFOLDS[cfg.name](backend, task, problems, sampling, **kw)
