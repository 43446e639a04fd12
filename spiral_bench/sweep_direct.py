"""Direct evaluation at width w for backends whose samples are not independent (a Bridge model).

A pooled estimate (spiral_bench.estimators) is an expectation over k-subsets of ONE pool of
independent samples; a Bridge group's samples attend to each other, so a subset of a group of 8
is not a group of 4. For such a backend (`independent_samples = False`) `sweep.run_sweep` draws,
per replicate r, budget L and width w, ONE group per problem:
    Request(prompt, n = w, seed = derive_seed(rseed, "search", 0, problem.id, "width", w))
(widths = the grid's parallel k's of its pass@k / maj@k cells, its aggregate n's and its rsa N's)
and scores each cell on the group generated at its own width:
    pass@w = max_j reward_j                          (the group's indicator: some sample correct)
    maj@w  = maj_at_k_single(keys, rewards, k = w)   (k = n: the single subset is the group, so
             the value is the group's majority vote, ties averaged; no subset expectation)
    compute = request_compute(prompt, the group's completion tokens, L)
aggregate(n) reads its candidates from the width-n group, rsa(N) starts from the width-N group.
Cells record `estimator = "direct"` (pooled cells `"pooled"`) and pool_size = w for pass/maj.
With a prefix-consistent backend (BridgeSampler is: a group drawn with budget L is the first L
tokens of the same group drawn with a larger one) each width is drawn once at L_max and derived
per L (`sweep.derive_pool`). Groups are stored as work/<label>/group_w<w>_L<L>_r<r>.parquet.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from . import estimators
from .backends.base import Request, derive_seed


def direct_widths(cells) -> list[int]:
    """Every width a direct sweep draws for `cells` (sweep.Cell list): sorted, distinct."""
    out = set()
    for c in cells:
        out.add(c.k)  # pass@k / maj@k: k; aggregate: n candidates; rsa / rsa_maj: population N
    return sorted(out)


def group_seed(rseed: int, width: int, problem_id: str) -> int:
    """Seed of the width-w group of one problem (replicate seed rseed)."""
    return derive_seed(rseed, "search", 0, problem_id, "width", int(width))


def get_group(backend, task, problems, sampling, width: int, rseed: int, path: Path, with_ids: bool = False):
    """The stored (or newly drawn: one generate call, one request of n = width per problem)
    width-w groups as a pool frame (sweep.POOL_COLUMNS)."""
    import pandas as pd

    from .sweep import _frame_samples, _grade, _samples_frame, write_parquet

    if path.exists():
        df = pd.read_parquet(path)
        if (_frame_samples(df, problems, width) is not None and df.groupby("problem_id").size().max() == width
                and (not with_ids or "token_ids" in df.columns)):
            return df
    reqs = [Request(task.prompt(p), n=width, seed=group_seed(rseed, width, p.id),
                    max_new_tokens=sampling.max_new_tokens) for p in problems]
    df = _samples_frame(problems, backend.generate(reqs, sampling), with_ids)
    _grade(task, problems, df)
    write_parquet(df, path)
    return pd.read_parquet(path)


def group_scores(frame, problems, width: int) -> tuple[np.ndarray, np.ndarray]:
    """(pass@w, maj@w), each (P,), from one width-w group per problem (formulas in the module doc)."""
    by = {pid: g.sort_values("j") for pid, g in frame.groupby("problem_id", sort=False)}
    pas, maj = [], []
    for p in problems:
        g = by[p.id]
        r = g["reward"].to_numpy(dtype=np.float64)
        if len(r) != width:
            raise ValueError(f"problem {p.id}: a width-{width} group has {len(r)} samples")
        keys = [k if isinstance(k, str) else None for k in g["key"]]
        pas.append(float(r.max()))
        # k == n: the only k-subset is the group itself, so this is its own majority vote, not a
        # subset expectation over a pool (which require_independent forbids for dependent samples)
        maj.append(float(estimators.maj_at_k_single(keys, r, [width], method="exact")[0]))
    return np.asarray(pas), np.asarray(maj)


def direct_groups(backend, task, problems, samp, widths, rseed, r, wdir: Path, prefix_pool: bool,
                  Lmax: int, decode, cache: dict) -> dict:
    """width -> (pool frame at samp.max_new_tokens, samples per problem). With prefix pooling the
    L_max groups are drawn once and kept in `cache` (width -> frame with token ids)."""
    import dataclasses

    from .sweep import _frame_samples, derive_pool

    L, out = samp.max_new_tokens, {}
    for w in widths:
        if prefix_pool:
            if w not in cache:
                cache[w] = get_group(backend, task, problems, dataclasses.replace(samp, max_new_tokens=Lmax), w,
                                     rseed, wdir / f"group_w{w}_L{Lmax}_r{r}.parquet", with_ids=True)
            frame = derive_pool(cache[w], L, decode, samp.stop, task, problems)
        else:
            frame = get_group(backend, task, problems, samp, w, rseed, wdir / f"group_w{w}_L{L}_r{r}.parquet")
        out[w] = (frame, _frame_samples(frame, problems, w))
    return out


def direct_level(backend, task, problems, samp, todo, grid, rseed, r, wdir, prefix_pool, Lmax, decode, gcache,
                  info, finish) -> None:
    """Every unfinished cell at one (replicate, L) of a non-independent backend (sweep_direct)."""
    from .compute import request_compute
    from .scaffolds import aggregate
    from .sweep import _run_rsa

    L = samp.max_new_tokens
    groups = direct_groups(backend, task, problems, samp, direct_widths(todo), rseed, r, wdir, prefix_pool, Lmax,
                           decode, gcache)
    for c in (c for c in todo if c.family in ("pass@k", "maj@k")):
        frame, samples = groups[c.k]
        scores = group_scores(frame, problems, c.k)[0 if c.family == "pass@k" else 1]
        finish(c, scores, [request_compute(s[0].prompt_tokens, [x.completion_tokens for x in s], L, info)
                           for s in samples])
    for c in (c for c in todo if c.family == "aggregate"):
        recs = aggregate(backend, task, problems, samp, n=c.k, set_size=c.set_size,
                         template=grid.aggregation_template, seed=rseed, candidates=groups[c.k][1])
        finish(c, [x.correct for x in recs], [x.compute for x in recs])
    for (Np, K) in dict.fromkeys((c.k, c.set_size) for c in todo if c.family.startswith("rsa")):
        mine = [c for c in todo if c.family.startswith("rsa") and (c.k, c.set_size) == (Np, K)]
        _run_rsa(backend, task, problems, samp, groups[Np][1], K, mine, grid, rseed, info,
                 wdir / f"rsa_L{L}_N{Np}_K{K}_r{r}", finish)
