"""Budget grids, pooled evaluation and a resumable cell store.

A `BudgetGrid` (YAML, strict) crosses the sequential axis (max new tokens L per trace), the
parallel axis (k traces) and the aggregative axis (none -> pass@k, majority -> maj@k, aggregate
with a set size, rsa with N, K and a list of T), over `problems` problems and replicate `seeds`.
Presets live in `spiral_bench/presets/*.yaml`; `load_grid(name_or_path)` reads either (the grid
types and functions live in `spiral_bench.grid`, re-exported here).

Pooled evaluation (per method, replicate r and L): ONE pool of N_max traces per problem, with
N_max = max(parallel k's if none/majority, aggregate n's, rsa N's), drawn with the scaffolds'
layer-0 seed (`derive_seed(rseed, "search", 0, problem.id)`, rseed = replicate_seed(seed, r)), so
its first n traces ARE the search layer of any scaffold run with n <= N_max. Then, without new
sampling, every k gets pass@k and maj@k from `spiral_bench.estimators` (exact expectation over
k-subsets of the pool) with compute `compute.expected_subset_compute` (independent samples
only: for a backend with `independent_samples = False`, a Bridge model, every width is drawn as
its own group instead, `spiral_bench.sweep_direct`, estimator "direct"); aggregate cells sample only their aggregation trace (candidates = the first n pool
traces); rsa runs once to the largest T, its initial population the first N pool traces, and
gives the cells of every T on the way
(family "rsa": population accuracy at step T; "rsa_maj": majority vote of that population).
Records equal what `scaffolds.aggregate/rsa(..., seed=rseed)` return on a fresh run.

Prefix pooling across the sequential axis (backends with `prefix_consistent = True`, e.g. the hf
sampler, whose sample j uses counter-based noise so that a trace drawn with budget L is exactly
the first L tokens of the same trace drawn with a larger budget): ONE pool per replicate at
L_max = max(sequential), with token ids; the pool at L < L_max is derived without sampling by
`truncate_sample`: a trace of n <= L tokens is kept as is; otherwise its first L token ids are
decoded (`backend.decode(ids)`, else `backend.tokenizer.decode(ids, skip_special_tokens=True)`),
the stop strings are applied again (`sampling.cut_at_stop`), finish_reason = "stop" if one is
found else "length", completion_tokens = L. Every cell at L then equals a fresh run at L.

Cell store under out_dir (all files written atomically: temp file, fsync, os.replace):
  cells/<method>/<cell id>.parquet   one file per finished cell, one row per problem, columns
      CELL_COLUMNS: method, cell, family, max_tokens, k (traces at layer 0), set_size (aggregate
      set size / rsa K, else 0), steps (rsa T, aggregate 1, else 0), pool_size (N_max for
      pass@k/maj@k, else 0), replicate, problem_id, correct (in [0, 1]), prompt_tokens,
      generated_tokens, max_token_budget, flops (floats; pooled cells hold expectations),
      estimator ("pooled" | "direct": sweep_direct; a store made before the column reads "pooled"), train_run (which training run of the method the checkpoint is: 0, 1, ...; a store made
      before the column existed reads as 0). Training run i > 0 of a method is stored under the
      folder label `<method>-run<i>` (cells/, work/, manifests/), its rows keep the method's name.
  work/<method>/pool_L<L>_r<r>.parquet            the pool (so a resumed sweep never resamples);
      with prefix pooling only L = L_max is stored, with a token_ids column
  work/<method>/rsa_L<L>_N<N>_K<K>_r<r>/step<t>.parquet   every finished RSA step's population
  manifests/<method>.json   task, problems, seed, sampling (and prefix_pool when on; the openai
      backend's `engine_info()` under "engine"): a resume with other values is an error
  cells.parquet             every method's cells together, rewritten at the end of each sweep
A killed sweep started again skips finished cells, reloads pools and RSA steps, and produces
exactly the rows an uninterrupted run would. One process per method at a time.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from . import estimators
from .backends.base import Request, Sample, SamplingConfig, derive_seed
from .compute import Compute, expected_subset_compute, request_compute
from .config import to_dict
from .fileio import write_atomic, write_json
from .grid import (KINDS, PRESET_DIR, AggregativeSpec, BudgetGrid, Cell, grid_cells, load_grid,  # noqa: F401 (re-exported)
                   replicate_seed, select_problems, trace_counts)
from .scaffolds import aggregate, layer_summary, rsa_step
from .sweep_direct import direct_level

CELL_COLUMNS = ["method", "cell", "family", "max_tokens", "k", "set_size", "steps", "pool_size", "replicate",
                "problem_id", "correct", "prompt_tokens", "generated_tokens", "max_token_budget", "flops",
                "train_run", "estimator"]
POOL_COLUMNS = ["problem_id", "j", "text", "prompt_tokens", "completion_tokens", "finish_reason", "key", "reward"]
_METHOD_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,99}$")


# ------------------------------------------------------------------------------ files

def write_parquet(df: pd.DataFrame, path: Path) -> None:
    write_atomic(path, lambda f: df.to_parquet(f, index=False))


def _samples_frame(problems, pops: Sequence[Sequence[Sample]], with_ids: bool = False) -> pd.DataFrame:
    rows = [(p.id, j, s.text, s.prompt_tokens, s.completion_tokens, s.finish_reason)
            for p, pop in zip(problems, pops) for j, s in enumerate(pop)]
    df = pd.DataFrame(rows, columns=POOL_COLUMNS[:6])
    if with_ids:
        df["token_ids"] = [np.asarray(s.token_ids, dtype=np.int64) for pop in pops for s in pop]
    return df


def _frame_samples(df: pd.DataFrame, problems, n: int | None = None) -> list[list[Sample]] | None:
    """Per-problem Samples (no token ids/log-probs) from a saved frame; None if it does not fit."""
    groups = {pid: g.sort_values("j") for pid, g in df.groupby("problem_id", sort=False)}
    out = []
    for p in problems:
        g = groups.get(p.id)
        if g is None or (n is not None and len(g) < n):
            return None
        out.append([Sample(t, [], [], int(pt), int(ct), fr) for t, pt, ct, fr in
                    zip(g["text"], g["prompt_tokens"], g["completion_tokens"], g["finish_reason"])][:n])
    return out


def _manifest(path: Path, content: dict) -> None:
    if path.exists():
        old = json.loads(path.read_text())
        diff = sorted(k for k in set(old) | set(content) if old.get(k) != content.get(k))
        if diff:
            raise ValueError(f"{path}: this sweep differs from the stored one in {diff}; "
                             f"use another out_dir or method name")
        return
    write_json(path, content, indent=1, sort_keys=True)


def load_cells(out_dir: str | Path) -> pd.DataFrame:
    """Every finished cell of every method under out_dir, as one frame (CELL_COLUMNS)."""
    files = sorted(Path(out_dir).glob("cells/*/*.parquet"))
    if not files:
        return pd.DataFrame(columns=CELL_COLUMNS)
    df = pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)
    df["train_run"] = df["train_run"].fillna(0).astype(int) if "train_run" in df.columns else 0
    df["estimator"] = [e if isinstance(e, str) else "pooled" for e in df.get("estimator", [None] * len(df))]
    return df


# ------------------------------------------------------------------------------ the sweep
def _rows(method: str, cell: Cell, problems, correct, computes: Sequence[Compute], train_run: int = 0,
          estimator: str = "pooled") -> pd.DataFrame:
    d = dataclasses.asdict(cell)
    if estimator == "direct" and cell.family in ("pass@k", "maj@k"):
        d["pool_size"] = cell.k
    return pd.DataFrame({
        "method": method, "cell": cell.id, "family": cell.family, "max_tokens": cell.max_tokens, "k": cell.k,
        "set_size": cell.set_size, "steps": cell.steps, "pool_size": d["pool_size"], "replicate": cell.replicate,
        "problem_id": [p.id for p in problems], "correct": np.asarray(correct, dtype=np.float64),
        "prompt_tokens": [c.prompt_tokens for c in computes], "generated_tokens": [c.generated_tokens for c in computes],
        "max_token_budget": [c.max_token_budget for c in computes], "flops": [c.flops for c in computes],
        "train_run": int(train_run), "estimator": estimator},
        columns=CELL_COLUMNS)


def _grade(task, problems, df: pd.DataFrame, rows=None) -> None:
    """Fill df's key and reward columns (all rows, or only the positional `rows`) in place."""
    idx = np.arange(len(df)) if rows is None else np.asarray(rows, dtype=np.int64)
    by_id = {p.id: p for p in problems}
    texts, pids = df["text"].to_numpy()[idx], df["problem_id"].to_numpy()[idx]
    keys = [task.canonical(task.extract(t)) for t in texts]
    rewards = [float(task.reward(by_id[pid], t)) for pid, t in zip(pids, texts)]
    if rows is None:
        df["key"], df["reward"] = keys, rewards
    else:
        kc, rc = df.columns.get_loc("key"), df.columns.get_loc("reward")
        for i, k, r in zip(idx, keys, rewards):
            df.iat[i, kc], df.iat[i, rc] = k, r


def _get_pool(backend, task, problems, sampling, n, rseed, path: Path, with_ids: bool = False) -> pd.DataFrame:
    if path.exists():
        df = pd.read_parquet(path)
        if (_frame_samples(df, problems, n) is not None and df.groupby("problem_id").size().min() == n
                and (not with_ids or "token_ids" in df.columns)):
            return df
    reqs = [Request(task.prompt(p), n=n, seed=derive_seed(rseed, "search", 0, p.id), max_new_tokens=sampling.max_new_tokens)
            for p in problems]
    pops = backend.generate(reqs, sampling)
    df = _samples_frame(problems, pops, with_ids)
    _grade(task, problems, df)
    write_parquet(df, path)
    return pd.read_parquet(path)


def decoder_of(backend):
    """token ids -> text, as the backend decodes its samples."""
    if callable(getattr(backend, "decode", None)):
        return backend.decode
    tok = getattr(backend, "tokenizer", None)
    if tok is None:
        raise ValueError(f"{type(backend).__name__} declares prefix_consistent but has neither "
                         f"decode(token_ids) nor a tokenizer")
    return lambda ids: tok.decode(list(ids), skip_special_tokens=True)


def truncate_sample(token_ids: Sequence[int], text: str, finish_reason: str, L: int, decode,
                    stops: Sequence[str] = ()) -> tuple[str, int, str]:
    """A trace's (text, completion_tokens, finish_reason) had it been drawn with budget L.

    Valid for prefix-consistent backends (the trace with budget L is the first L tokens of the
    trace with a larger budget). n = len(token_ids) <= L: unchanged. Else the first L ids are
    decoded, cut after the earliest stop string (`sampling.cut_at_stop`), and the finish reason is
    "stop" if a stop string was found, else "length".
    """
    from .sampling import cut_at_stop

    n = len(token_ids)
    if n <= L:
        return text, n, finish_reason
    cut, found = cut_at_stop(decode(list(token_ids[:L])), tuple(s for s in stops if s))
    return cut, int(L), "stop" if found else "length"


def derive_pool(base: pd.DataFrame, L: int, decode, stops, task, problems) -> pd.DataFrame:
    """The pool at budget L from a prefix-consistent pool drawn at a larger budget (with token_ids);
    only the traces longer than L are re-decoded and re-graded."""
    df = base.drop(columns=["token_ids"]).copy()
    long = np.nonzero(base["completion_tokens"].to_numpy() > L)[0]
    if len(long):
        cols = {c: df.columns.get_loc(c) for c in ("text", "completion_tokens", "finish_reason")}
        for i in long:
            text, ct, fr = truncate_sample(base["token_ids"].iat[i], base["text"].iat[i],
                                           base["finish_reason"].iat[i], L, decode, stops)
            df.iat[i, cols["text"]], df.iat[i, cols["completion_tokens"]], df.iat[i, cols["finish_reason"]] = text, ct, fr
        _grade(task, problems, df, long)
    return df


def check_context(backend, task, problems, grid: BudgetGrid) -> None:
    """ValueError, before any sampling, when a backend with a context limit (`max_model_len`, the
    vllm backend) cannot hold the grid's largest prompt + budget: the longest search prompt + the
    largest L, and for aggregate/rsa cells the aggregation prompt with its set of candidates, each
    counted as L tokens (an upper bound: the template with empty candidates + set_size x L + L)."""
    limit = getattr(backend, "max_model_len", None)
    encode = getattr(backend, "encode", None)
    if limit is None or not callable(encode) or not problems:
        return
    render = getattr(backend, "render", None) or (lambda s: s)
    n_tok = lambda text: len(encode(render(text)))  # noqa: E731
    need = []
    Lmax = max(grid.sequential)
    p_long = max(problems, key=lambda p: len(task.prompt(p)))
    need.append((n_tok(task.prompt(p_long)) + Lmax, f"search prompt of {p_long.id} + {Lmax} new tokens"))
    sizes = {c.set_size for c in grid_cells(grid) if c.family in ("aggregate", "rsa", "rsa_maj")}
    if sizes:
        s = max(sizes)
        agg = n_tok(task.aggregation_prompt(p_long, [""] * s, [True] * s, grid.aggregation_template))
        need.append((agg + (s + 1) * Lmax, f"aggregation prompt of {p_long.id} with {s} candidates of up to "
                                           f"{Lmax} tokens + {Lmax} new tokens"))
    tokens, what = max(need)
    if tokens > limit:
        raise ValueError(f"max_model_len {limit} is shorter than the grid's largest prompt + budget: "
                         f"{what} needs up to {tokens} tokens; raise --max-model-len or lower the grid's "
                         f"sequential budgets (nothing was sampled)")


def store_label(method: str, train_run: int = 0) -> str:
    """The folder label of a method's training run in the cell store: the method for run 0."""
    return method if int(train_run) == 0 else f"{method}-run{int(train_run)}"


def run_sweep(backend, task, problems, grid: BudgetGrid | str, method: str, out_dir: str | Path,
              seed: int = 0, progress: bool = True, sampling: SamplingConfig | None = None,
              train_run: int = 0) -> pd.DataFrame:
    """Run (or resume) every cell of `grid` for one method (a checkpoint label) and training run;
    returns its rows.

    problems: used exactly as given (see `select_problems`); sampling: temperature etc. (its
    max_new_tokens is replaced by each L of the grid). See the module doc for the files.
    """
    from tqdm.auto import tqdm

    grid = load_grid(grid) if isinstance(grid, (str, Path)) else grid
    if not _METHOD_RE.match(method):
        raise ValueError(f"method {method!r}: use letters, digits and . _ + - (it names folders)")
    problems = list(problems)
    if len({p.id for p in problems}) != len(problems):
        raise ValueError("problem ids must be unique")
    out = Path(out_dir)
    label = store_label(method, train_run)
    cdir, wdir = out / "cells" / label, out / "work" / label
    sampling = sampling or SamplingConfig()
    info = backend.model_info()
    ident = hashlib.sha256(json.dumps([[p.id, p.question, p.answer] for p in problems]).encode()).hexdigest()[:16]
    base_sampling = {k: v for k, v in to_dict(sampling).items() if k not in ("max_new_tokens", "batch_size")}
    prefix_pool = bool(getattr(backend, "prefix_consistent", False))
    manifest = {"task": getattr(task, "name", type(task).__name__), "problems": ident, "seed": seed,
                "sampling": base_sampling, "aggregation_template": grid.aggregation_template,
                "maj_method": grid.maj_method, "mc_subsets": grid.mc_subsets}
    if prefix_pool:  # absent when off, so stores made before prefix pooling existed still resume
        manifest["prefix_pool"] = True
    if callable(getattr(backend, "chat_info", None)):  # absent for raw prompts (stores made before resume)
        manifest["prompt_format"] = backend.chat_info()
    if callable(getattr(backend, "engine_info", None)):  # the openai backend: which server, what it returns
        manifest["engine"] = backend.engine_info()
    check_context(backend, task, problems, grid)
    independent = bool(getattr(backend, "independent_samples", True))  # False: a Bridge model
    if not independent:  # absent when pooled, so older stores still resume
        manifest["estimator"] = "direct"
    _manifest(out / "manifests" / f"{label}.json", manifest)
    decode = decoder_of(backend) if prefix_pool else None
    for stale in list(cdir.glob(".*.tmp")) + list(wdir.glob("**/.*.tmp")):
        stale.unlink(missing_ok=True)

    cells = grid_cells(grid)
    done = lambda c: (cdir / f"{c.id}.parquet").exists()  # noqa: E731
    bar = tqdm(total=len(cells), desc=f"sweep {label}", disable=not progress)
    bar.update(sum(done(c) for c in cells))

    def finish(cell, correct, computes):
        write_parquet(_rows(method, cell, problems, correct, computes, train_run,
                            "pooled" if independent else "direct"), cdir / f"{cell.id}.parquet")
        bar.update(1)

    N, Lmax = grid.pool_size, max(grid.sequential)
    for r in grid.seeds:
        rseed = replicate_seed(seed, r)
        base, gcache = None, {}
        for L in grid.sequential:
            todo = [c for c in cells if c.replicate == r and c.max_tokens == L and not done(c)]
            if not todo:
                continue
            samp = dataclasses.replace(sampling, max_new_tokens=L)
            if not independent:  # one group per width, each cell scored on its own width's group
                direct_level(backend, task, problems, samp, todo, grid, rseed, r, wdir, prefix_pool, Lmax, decode,
                              gcache, info, finish)
                continue
            if prefix_pool:
                if base is None:
                    base = _get_pool(backend, task, problems, dataclasses.replace(sampling, max_new_tokens=Lmax), N,
                                     rseed, wdir / f"pool_L{Lmax}_r{r}.parquet", with_ids=True)
                pool = derive_pool(base, L, decode, sampling.stop, task, problems)
            else:
                pool = _get_pool(backend, task, problems, samp, N, rseed, wdir / f"pool_L{L}_r{r}.parquet")
            samples = _frame_samples(pool, problems, N)
            by = {pid: g.sort_values("j") for pid, g in pool.groupby("problem_id", sort=False)}
            rewards = np.array([by[p.id]["reward"].to_numpy() for p in problems])        # (P, N)
            keys = [[k if isinstance(k, str) else None for k in by[p.id]["key"]] for p in problems]  # null -> None
            pooled = [c for c in todo if c.family in ("pass@k", "maj@k")]
            if pooled:
                ks = sorted({c.k for c in pooled})
                est = {"pass@k": estimators.pass_at_k_pool(rewards, ks, independent=independent)
                                 if any(c.family == "pass@k" for c in pooled) else None,
                       "maj@k": estimators.maj_at_k(keys, rewards, ks, method=grid.maj_method, mc_subsets=grid.mc_subsets,
                                                    seed=derive_seed(rseed, "maj@k", L) % 2**32, independent=independent)
                       if any(c.family == "maj@k" for c in pooled) else None}
                for c in pooled:
                    comp = [expected_subset_compute(s[0].prompt_tokens, [x.completion_tokens for x in s], c.k, L, info)
                            for s in samples]
                    finish(c, est[c.family][:, ks.index(c.k)], comp)
            for c in (c for c in todo if c.family == "aggregate"):
                recs = aggregate(backend, task, problems, samp, n=c.k, set_size=c.set_size,
                                 template=grid.aggregation_template, seed=rseed, candidates=samples)
                finish(c, [x.correct for x in recs], [x.compute for x in recs])
            for (Np, K) in dict.fromkeys((c.k, c.set_size) for c in todo if c.family.startswith("rsa")):
                mine = [c for c in todo if c.family.startswith("rsa") and (c.k, c.set_size) == (Np, K)]
                _run_rsa(backend, task, problems, samp, [s[:Np] for s in samples], K, mine, grid, rseed, info,
                         wdir / f"rsa_L{L}_N{Np}_K{K}_r{r}", finish)
    bar.close()
    mine = pd.concat([pd.read_parquet(cdir / f"{c.id}.parquet") for c in cells], ignore_index=True)
    write_parquet(load_cells(out), out / "cells.parquet")
    return mine


def _run_rsa(backend, task, problems, sampling, pop0, K, cells, grid, rseed, info, wdir: Path, finish) -> None:
    """RSA to the largest unfinished T; each step's population saved, each T's cells written on the way."""
    L = sampling.max_new_tokens
    comp = [request_compute(s[0].prompt_tokens, [x.completion_tokens for x in s], L, info) for s in pop0]
    pops = pop0
    for t in range(1, max(c.steps for c in cells) + 1):
        path = wdir / f"step{t}.parquet"
        loaded = _frame_samples(pd.read_parquet(path), problems, len(pop0[0])) if path.exists() else None
        if loaded is None:
            new, _ = rsa_step(backend, task, problems, sampling, pops, t, subset=K,
                              template=grid.aggregation_template, seed=rseed)
            write_parquet(_samples_frame(problems, new), path)
            loaded = _frame_samples(pd.read_parquet(path), problems, len(pop0[0]))
        pops = loaded
        layers = [layer_summary(task, p, pop, Compute.total(
                      request_compute(s.prompt_tokens, [s.completion_tokens], L, info) for s in pop),
                      derive_seed(rseed, "rsa", t, p.id, "tie"), t) for p, pop in zip(problems, pops)]
        comp = [a + lay["compute"] for a, lay in zip(comp, layers)]
        for c in cells:
            if c.steps == t:
                finish(c, [lay["accuracy" if c.family == "rsa" else "majority_correct"] for lay in layers], comp)
