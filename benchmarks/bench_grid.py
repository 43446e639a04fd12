"""Generated tokens of the pooled sweep of a budget grid against sampling every cell on its own.

Two counts:
1. analytic, from the grid alone (`sweep.trace_counts`): traces and max-token budget per problem;
2. measured: the pooled sweep really run (`sweep.run_sweep`) on the arithmetic task with a
   scripted character-level policy (1 token = 1 character; search traces are the solver's trace,
   right w.p. 0.35 else with a wrong final answer; aggregation traces are the solver's
   aggregation trace w.p. 0.6 else a copy of a random shown candidate), so trace lengths are
   those of real arithmetic traces. pooled = tokens the backend generated; naive = the sum over
   cell rows of the generated tokens each cell costs when sampled alone (rows hold that cost;
   pass@k / maj@k rows its expectation over k-subsets), one rsa run counted per (N, K, T) cell
   (the "rsa" and "rsa_maj" rows come from the same run).
The scripted backend declares `prefix_consistent = True`, as the hf sampler does (a trace drawn
with budget L is the first L tokens of the same trace with a larger budget; the scripted policy
cuts its text to the budget, so this holds by construction): the sweep draws one pool per
replicate at the largest max tokens and derives the smaller levels by truncation.
`--no-prefix-pool` measures the sweep with one pool per max-token level instead.
Prints `token_savings_vs_naive=<measured ratio>` last.

Usage: python benchmarks/bench_grid.py [--grid default] [--problems N] [--no-prefix-pool]
"""
from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from fakes import ScriptedBackend  # noqa: E402

from spiral_bench.sweep import grid_cells, load_grid, run_sweep, trace_counts  # noqa: E402
from spiral_bench.tasks import get_task  # noqa: E402


def arithmetic_policy(task, problems, p_right=0.35, p_agg=0.6):
    by_prompt = {task.prompt(p): p for p in problems}

    def policy(prompt: str, seed: int, j: int) -> str:
        rng = random.Random(seed)
        head, sep, rest = prompt.partition("|")
        p = by_prompt[head]
        if not sep:  # search trace
            trace = task.gold_trace(p)
            if rng.random() < p_right:
                return trace
            return trace[: trace.rindex("#") + 1] + str((int(p.answer) + rng.randrange(1, 100)) % 100)
        cands = rest[:-2].split("|") if rest.endswith("|>") else rest.split("|")
        return task.gold_aggregation_trace(p, cands) if rng.random() < p_agg else rng.choice(cands)
    return policy


class PrefixScriptedBackend(ScriptedBackend):
    """The scripted backend (1 token = 1 character), declared prefix-consistent."""

    prefix_consistent = True

    def decode(self, ids):
        return "".join(map(chr, ids))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--grid", default="default")
    ap.add_argument("--problems", type=int, default=None, help="default: the grid's")
    ap.add_argument("--no-prefix-pool", action="store_true", help="one pool per max-token level")
    args = ap.parse_args()
    prefix = not args.no_prefix_pool
    grid = load_grid(args.grid)
    task = get_task("arithmetic")
    problems = task.problems("test", n=args.problems or grid.problems)
    a = trace_counts(grid, prefix_pool=prefix)
    print(f"grid={grid.name} problems={len(problems)} cells={len(grid_cells(grid))} pool_size={grid.pool_size} "
          f"prefix_pool={prefix}")
    print(f"analytic traces/problem: naive={a['naive_traces']} pooled={a['pooled_traces']} "
          f"ratio={a['naive_traces'] / a['pooled_traces']:.2f}")
    print(f"analytic max-token budget/problem: naive={a['naive_budget']} pooled={a['pooled_budget']} "
          f"ratio={a['naive_budget'] / a['pooled_budget']:.2f}")
    be = (PrefixScriptedBackend if prefix else ScriptedBackend)(arithmetic_policy(task, problems))
    with tempfile.TemporaryDirectory() as d:
        t0 = time.perf_counter()
        df = run_sweep(be, task, problems, grid, "bench", d, seed=0, progress=False)
        wall = time.perf_counter() - t0
    naive = float(df[df.family != "rsa_maj"].generated_tokens.sum())
    pooled = be.generated_tokens
    acc = df.groupby("family").correct.mean().round(3).to_dict()
    print(f"measured (scripted policy, {wall:.1f} s): traces sampled={be.n_traces}, generate calls={len(be.calls)}, "
          f"mean correct by family={acc}")
    print(f"measured generated tokens: naive={naive:.0f} pooled={pooled}")
    print(f"token_savings_vs_naive={naive / pooled:.2f}")


if __name__ == "__main__":
    main()
