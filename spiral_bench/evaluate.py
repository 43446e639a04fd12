"""Evaluate checkpoints over a budget grid and analyse the cell store: curves, multipliers, gaps,
claim verdicts (`analysis.json`).

`analyze_cells(cells, methods, baseline)` works on the cell store only (`sweep.CELL_COLUMNS`):
- points: a grid point = (family, max_tokens, k, set_size, steps, pool_size); per training run
  (column `train_run`, 0 when absent) and problem its correctness and compute (`compute_col`:
  generated_tokens, max_token_budget or flops) are averaged over replicates. Every method and point
  is resampled with ONE `seed_stats.TwoLevelBootstrap` (B replicates, seeded): each method's
  training runs with replacement, then problems with one resampling shared by every method, so all
  comparisons are paired by problem; with one run per method it is the one-level problem bootstrap
  (`stats.PairedBootstrap`, same draws). A point estimate is the mean over runs and problems. A
  run whose sweep lacks grid points the method's fullest run has is left out (named in warnings).
- variance_split (with two or more runs of some method): for the key statistics of the claims
  (every matched rsa gap; the "up to" multiplier and the relative gap at the largest common
  compute of families pass@k and all), the between-run vs
  between-problem share of its bootstrap variance and the runs needed for the CI to exclude 0.
- curves[method][family]: per point mean accuracy and mean compute with percentile CIs; the
  family's curve is the monotone envelope over all its points (all max_tokens and k).
- frontier[method] ("all primitives"): the envelope over every point of the deployable families
  maj@k, aggregate, rsa, rsa_maj (pass@k is excluded: it is oracle selection, not an answer).
- sequential[method]: pass@1 (family pass@k, k = 1) at each max_tokens.
- comparisons: per method != baseline and family (plus "all" = the frontier), `stats.compare`:
  multiplier_max ("up to", CI, censored, warning), multipliers m(a) at the method's levels and at
  FIXED_LEVELS, accuracy gap at equal compute (abs points, rel %) per compute and its max; plus
  matched-cell gaps: sequential (pass@1 at each L) and rsa (family rsa at the largest L and T);
  with the starting checkpoint ("base") in the store, each sequential gap also has `gain_ratio`
  (`stats.gain_ratio` in points: (pass@1_m - pass@1_base) / (pass@1_baseline - pass@1_base),
  undefined when the baseline's own gain has a CI reaching 0), Bridge's headline statistic.
  Matched-cell gap: abs = 100 (mean_m - mean_b), rel = 100 (mean_m / mean_b - 1), CIs from the
  same paired replicates.
- claims: one row per claim of `stats.load_claims()` (see `claims.claim_rows`), each marked
  provisional when it rests on one training run of a trained method (`claims` module doc).
Compute must be > 0 on a log axis: points whose mean compute is 0 are dropped (named in
"warnings") and per-problem compute is floored at 1e-9 times the largest compute
(`compute.floor_compute`, as `analyze` does). What a cell's compute is (a k-sample cell: its
prompt once, k/n of its pool's generated tokens) is stated once, in `spiral_bench.compute`.

`evaluate(checkpoints, task, grid, out_dir)` sweeps each checkpoint with the hf backend into one
cell store (resumable: `sweep.run_sweep` skips finished cells) and writes `analysis.json`
atomically (non-finite numbers as null).
"""
from __future__ import annotations

import contextlib
import contextvars
import gc
import json
import math
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from . import stats
from .analyze import _clean
from .claims import (BENCHMARK_TASKS, NOTE_SEP, PAPER_SETUP, VERDICT_COLUMNS, _num, claim_rows,  # noqa: F401
                     find_comparison, format_verdicts, verdict_table)
from .compute import floor_compute
from .fileio import write_json
from .seed_stats import TwoLevelBootstrap, variance_split

FAMILIES = ("pass@k", "maj@k", "aggregate", "rsa", "rsa_maj")
DEPLOYABLE = ("maj@k", "aggregate", "rsa", "rsa_maj")
COMPUTE_COLS = ("generated_tokens", "max_token_budget", "flops")
ALL_COMPUTE = ("prompt_tokens",) + COMPUTE_COLS
FIXED_LEVELS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
POINT_COLS = ["family", "max_tokens", "k", "set_size", "steps", "pool_size"]
SCHEMA = "spiral-bench/analysis/1"
REFERENCE = "base"                            # the starting checkpoint's label: gains over it (gain_ratio)
RUN_COL = "train_run"                         # the cell store's column naming a method's training run (0, 1, ...)
BOOTSTRAP_FORMULA = ("replicate mean of method m = sum_r V_m[r]/R_m * sum_p W[p]/P * X_m[r, p]: W = problem "
                     "counts (P draws with replacement, shared by all methods), V_m = counts of R_m draws with "
                     "replacement from m's training runs (none when R_m = 1); percentile CIs")


# ------------------------------------------------------------------------------- helpers
def point_id(family, max_tokens, k, set_size, steps, pool_size) -> str:
    return f"{family}|L{int(max_tokens)}|k{int(k)}|s{int(set_size)}|T{int(steps)}|N{int(pool_size)}"


def _est(values, reps: np.ndarray, level: float) -> dict:
    ci = stats.percentile_ci(reps, level)
    return {"mean": float(values), "ci": [float(ci[0]), float(ci[1])]}


def _matched_gap(m: float, b: float, rm: np.ndarray, rb: np.ndarray, level: float) -> dict:
    """Gap between two cells of the same grid point: point means m, b and replicate means rm, rb (B,)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        rel_r = np.where(rb > 0, 100.0 * (rm / rb - 1.0), np.nan)
    ca, cr = stats.percentile_ci(100.0 * (rm - rb), level), stats.percentile_ci(rel_r, level)
    return {"method_mean": float(m), "baseline_mean": float(b),
            "abs_points": {"value": 100.0 * (m - b), "ci": [float(ca[0]), float(ca[1])]},
            "rel_pct": {"value": 100.0 * (m / b - 1.0) if b > 0 else math.nan, "ci": [float(cr[0]), float(cr[1])]}}


def _fixed_multipliers(pt, rp, levels, level) -> list[dict]:
    """Multipliers at fixed levels from point curves pt and replicate curves rp (acc_m, cm, ab, cb)."""
    lv = np.asarray(levels, dtype=np.float64)
    p = stats.multipliers(pt[3], pt[2], pt[1], pt[0], lv)
    r = stats.multipliers(rp[3], rp[2], rp[1], rp[0], np.broadcast_to(lv, (rp[0].shape[0], len(lv))))
    ci = stats.percentile_ci(stats.undefined_as_zero(r["value"]), level)
    return [{"level": float(a), "value": float(v), "censored": bool(c),
             "ci": [float(ci[0, i]), float(ci[1, i])] if np.isfinite(v) else [None, None],
             "valid_fraction": float(np.isfinite(r["value"][:, i]).mean())}
            for i, (a, v, c) in enumerate(zip(lv, p["value"], p["censored"]))]


def _top_gap_reps(rp) -> np.ndarray:
    """Replicates (B,) of the relative gap at each replicate's own largest common compute."""
    hi = np.minimum(rp[3].max(-1), rp[1].max(-1))[:, None]
    lo = np.maximum(rp[3].min(-1), rp[1].min(-1))[:, None]
    return stats.accuracy_gap(rp[3], rp[2], rp[1], rp[0], np.where(hi >= lo, hi, np.nan))["rel_pct"][:, 0]


def _prepare(cells: pd.DataFrame, methods, compute_col: str):
    """Replicate-averaged per-problem matrices, runs stacked: ({(method, family): {"cells", "acc" (R, P, C),
    "compute" (R, P, C)}}, problems, meta, extra, agg, {method: [train runs used]}, warnings)."""
    missing = set(POINT_COLS + ["method", "problem_id", "correct", compute_col, "replicate"]) - set(cells.columns)
    if missing:
        raise ValueError(f"cells lack columns {sorted(missing)}")
    df = cells[cells["method"].isin(methods)].copy()
    absent = [m for m in methods if m not in set(df["method"])]
    if absent:
        raise ValueError(f"no cells for method(s) {absent}; the store has {sorted(set(cells['method']))}")
    df[RUN_COL] = df[RUN_COL].fillna(0).astype(int) if RUN_COL in df.columns else 0
    df["point"] = [point_id(*r) for r in df[POINT_COLS].itertuples(index=False)]
    warnings: list[str] = []
    runs = {}
    for m in methods:                        # a run whose sweep lacks points the fullest run has is left out
        pts = {r: set(g["point"]) for r, g in df[df["method"] == m].groupby(RUN_COL)}
        full = max(pts.values(), key=len)
        runs[m] = [r for r in sorted(pts) if pts[r] == full]
        for r in sorted(set(pts) - set(runs[m])):
            warnings.append(f"{m} training run {r}: its sweep lacks {len(full - pts[r])} grid point(s) the other "
                            f"runs have; left out of the analysis")
    df = df[[r in runs[m] for m, r in zip(df["method"], df[RUN_COL])]]
    agg = (df.groupby(["method", RUN_COL, "family", "point", "problem_id"], sort=True)
             .agg(correct=("correct", "mean"), compute=(compute_col, "mean"), n_rep=("replicate", "nunique"),
                  **{c: (c, "mean") for c in ALL_COMPUTE if c in df.columns})
             .reset_index())
    mats = stats.cell_matrices(agg, "correct", "compute", ("method", RUN_COL, "family"), "point")
    groups = {}
    for m in methods:
        for fam in sorted({f for (mm, _, f) in mats["groups"] if mm == m}):
            per = [mats["groups"][(m, r, fam)] for r in runs[m]]
            groups[(m, fam)] = {"cells": per[0]["cells"], "acc": np.stack([g["acc"] for g in per]),
                                "compute": np.stack([g["compute"] for g in per])}
    meta = df.drop_duplicates("point").set_index("point")[POINT_COLS]
    extra = agg.groupby("point").agg(n_rep=("n_rep", "max"))
    return groups, mats["problems"], meta, extra, agg, runs, warnings


# ------------------------------------------------------------------------------- analysis
def analyze_cells(cells: pd.DataFrame, methods: list[str], baseline: str | None, B: int = 2000, seed: int = 0,
                  compute_col: str = "generated_tokens", level: float = 0.95, fixed_levels=FIXED_LEVELS,
                  claim_method: str | None = None, context: dict | None = None,
                  fixed_checkpoints=("base",)) -> dict:
    """The full analysis of a cell store (module doc); returns a JSON-safe dict (schema SCHEMA).

    methods: labels to analyse; baseline: one of them (None: no comparisons, no verdicts);
    claim_method: the method whose comparison with the baseline the claims are checked on
    (default the first method that is not the baseline); verdicts: `verdicts.verdict`;
    context: free-form facts (task, checkpoints, grid) stored under "context" and used in notes;
    fixed_checkpoints: labels that are a fixed checkpoint, not a training run (their one run does
    not make a verdict provisional).
    """
    if compute_col not in COMPUTE_COLS:
        raise ValueError(f"compute_col {compute_col!r} is not one of {list(COMPUTE_COLS)}")
    methods = list(dict.fromkeys(methods))
    if baseline is not None and baseline not in methods:
        methods.append(baseline)
    groups, problems, meta, extra, agg, runs, warnings = _prepare(cells, methods, compute_col)
    P = len(problems)
    boot = TwoLevelBootstrap(P, {m: len(runs[m]) for m in methods}, B, seed)
    two_level = any(len(runs[m]) > 1 for m in methods)
    top = max(float(np.nanmax(g["compute"])) for g in groups.values()) if groups else 1.0
    point_means = agg.groupby(["method", "point"]).mean(numeric_only=True)

    curves: dict = {m: {} for m in methods}
    use: dict = {}                                       # (method, family) -> (acc, compute (R, P, C), point ids)
    for (m, fam), g in groups.items():
        keep = g["compute"].mean(axis=(0, 1)) > 0
        for c in np.asarray(g["cells"])[~keep]:
            warnings.append(f"{m} {c}: mean {compute_col} is 0, left out of the curves")
        acc, comp = g["acc"][..., keep], floor_compute(g["compute"][..., keep], top)
        ids = [c for c, k in zip(g["cells"], keep) if k]
        ra, rc = boot.means(m, acc), boot.means(m, comp)
        pa, pc = acc.mean(axis=(0, 1)), comp.mean(axis=(0, 1))
        order = np.argsort(pc, kind="stable")
        run = np.maximum.accumulate(pa[order]) if len(order) else np.array([])
        on = np.zeros(len(ids), bool)
        if len(order):
            on[order] = np.r_[True, run[1:] > run[:-1]]
        pts = []
        for i in order:
            md, pm = meta.loc[ids[i]], point_means.loc[(m, ids[i])]
            pts.append({"cell": ids[i], **{c: (md[c] if c == "family" else int(md[c])) for c in POINT_COLS},
                        "n_replicates": int(extra.loc[ids[i], "n_rep"]),
                        "accuracy": _est(pa[i], ra[:, i], level), "compute": _est(pc[i], rc[:, i], level),
                        "compute_means": {c: float(pm[c]) for c in ALL_COMPUTE if c in pm.index},
                        "on_frontier": bool(on[i])})
            if len(runs[m]) > 1:                     # each training run's own mean (the report draws them faintly)
                pts[-1]["runs"] = [{"train_run": int(r), "accuracy": float(acc[j, :, i].mean()),
                                    "compute": float(comp[j, :, i].mean())} for j, r in enumerate(runs[m])]
        curves[m][fam] = pts
        use[(m, fam)] = (acc, comp, ids)

    frontier, sequential = {}, {}
    for m in methods:
        fams = [f for f in DEPLOYABLE if (m, f) in use and use[(m, f)][2]]
        if fams:
            acc = np.concatenate([use[(m, f)][0] for f in fams], axis=-1)
            comp = np.concatenate([use[(m, f)][1] for f in fams], axis=-1)
            use[(m, "all")] = (acc, comp, sum((use[(m, f)][2] for f in fams), []))
            pts = [p for f in fams for p in curves[m][f]]
            pts.sort(key=lambda p: p["compute"]["mean"])
            best, env = -np.inf, []
            for p in pts:
                if p["accuracy"]["mean"] > best:
                    best = p["accuracy"]["mean"]
                    env.append({k: p[k] for k in ("cell", "family", "max_tokens", "k", "set_size", "steps",
                                                  "accuracy", "compute")})
            frontier[m] = {"families": fams, "points": env}
        seq = [p for p in curves[m].get("pass@k", []) if p["k"] == 1]
        sequential[m] = sorted(({"max_tokens": p["max_tokens"], "cell": p["cell"], "accuracy": p["accuracy"],
                                 "compute": p["compute"]} for p in seq), key=lambda p: p["max_tokens"])

    def curves_of(m, fam, resample="both"):  # point curves (acc, compute) and their replicates
        acc, comp, ids = use[(m, fam)]
        return ((acc.mean(axis=(0, 1)), comp.mean(axis=(0, 1))),
                (boot.means(m, acc, resample), boot.means(m, comp, resample)), ids)

    def split(m, fam, stat, estimate):       # between-run vs between-problem variance of stat(replicate curves)
        reps = {}
        for how in ("runs", "problems"):
            (_, _), (ra_m, rc_m), _ = curves_of(m, fam, how)
            (_, _), (ra_b, rc_b), _ = curves_of(baseline, fam, how)
            reps[how] = stat([ra_m, rc_m, ra_b, rc_b])
        n = max(len(runs[m]), len(runs[baseline]))
        return variance_split(reps["runs"], reps["problems"], estimate, n, level)

    comparisons = []
    for m in methods:
        if baseline is None or m == baseline:
            continue
        for fam in FAMILIES + ("all",):
            if (m, fam) not in use or (baseline, fam) not in use or not use[(m, fam)][2] or not use[(baseline, fam)][2]:
                continue
            (pam, pcm), (ram, rcm), idm = curves_of(m, fam)
            (pab, pcb), (rab, rcb), idb = curves_of(baseline, fam)
            pt, rp = [pam, pcm, pab, pcb], [ram, rcm, rab, rcb]
            res = stats.compare_curves(pt, rp, level=level)
            res["multipliers_fixed"] = _fixed_multipliers(pt, rp, fixed_levels, level)
            shared = [c for c in idm if c in idb]
            res["matched"] = []
            for c in shared:
                i, j = idm.index(c), idb.index(c)
                g = {"cell": c, **_matched_gap(pam[i], pab[j], ram[:, i], rab[:, j], level)}
                if two_level and fam == "rsa":      # the key matched gaps: the RSA pass@1 claims
                    g["variance_split"] = split(m, fam, lambda r, i=i, j=j: 100.0 * (r[0][:, i] - r[2][:, j]),
                                                g["abs_points"]["value"])
                res["matched"].append(g)
            if two_level and fam in ("pass@k", "all"):   # the key statistics of the claims
                res["variance_split"] = {
                    "multiplier_max": split(m, fam, lambda r: stats.multiplier_max(r[3], r[2], r[1], r[0])["value"],
                                            None),
                    "rel_pct_at_max_compute": split(m, fam, _top_gap_reps,
                                                    (res["gap"]["at_max_compute"] or {}).get("rel_pct", {})
                                                    .get("value"))}
            comparisons.append({"method": m, "baseline": baseline, "family": fam, "compute_unit": compute_col, **res})
        seq_m, seq_b, seq_r = ({p["max_tokens"]: p["cell"] for p in sequential.get(x, [])} for x in (m, baseline, REFERENCE))
        gaps = []
        if seq_m and seq_b:
            (pam, _), (ram, _), idm = curves_of(m, "pass@k")
            (pab, _), (rab, _), idb = curves_of(baseline, "pass@k")
            ref = curves_of(REFERENCE, "pass@k") if seq_r and REFERENCE not in (m, baseline) else None
            for L in sorted(set(seq_m) & set(seq_b)):
                i, j = idm.index(seq_m[L]), idb.index(seq_b[L])
                gaps.append({"max_tokens": L, **_matched_gap(pam[i], pab[j], ram[:, i], rab[:, j], level)})
                if ref is not None and L in seq_r:   # both methods' pass@1 gains over the starting checkpoint
                    (par, _), (rar, _), idr = ref
                    k = idr.index(seq_r[L])
                    gaps[-1]["gain_ratio"] = {"reference": REFERENCE, **stats.gain_ratio(
                        100 * pam[i], 100 * pab[j], 100 * par[k], 100 * ram[:, i], 100 * rab[:, j], 100 * rar[:, k], level)}
        comparisons.append({"method": m, "baseline": baseline, "family": "sequential", "compute_unit": "max_tokens",
                            "matched": gaps})

    resampled = "training runs, then problems" if two_level else "problems"
    out = {"schema": SCHEMA, "methods": methods, "baseline": baseline, "compute_col": compute_col,
           "n_problems": P, "replicates": sorted(int(r) for r in cells["replicate"].unique()),
           "train_runs": {m: len(runs[m]) for m in methods}, "train_run_ids": {m: runs[m] for m in methods},
           "estimators": {m: sorted({e if isinstance(e, str) else "pooled" for e in
                                     cells.loc[cells["method"] == m].get("estimator", pd.Series(["pooled"]))})
                          for m in methods},
           "fixed_checkpoints": list(fixed_checkpoints),
           "bootstrap": {"B": int(B), "seed": seed, "level": level, "resampled": resampled,
                         "paired": "one resampling of problems shared by every method, run and cell; runs "
                                   "resampled within each method",
                         "formula": BOOTSTRAP_FORMULA},
           "fixed_levels": [float(x) for x in fixed_levels], "context": dict(context or {}),
           "curves": curves, "frontier": frontier, "sequential": sequential, "comparisons": comparisons,
           "warnings": warnings, "multiplier_warning": stats.MAX_WARNING}
    out = _clean(out)
    out["claims"] = _clean(claim_rows(out, stats.load_claims(), claim_method))
    out["provisional"] = any(r.get("provisional") for r in out["claims"])
    return out


# ------------------------------------------------------------------------------- output
def note_grader_errors(analysis: dict, out_dir) -> dict:
    """Add the grader errors of this process's sweeps to out_dir/grader_errors.json (kept across
    resumed attempts, whose reused cells are not graded again), and put the total and its warning
    into `analysis` ("grader_errors", "warnings"), so the report shows them. Returns the total."""
    from .tasks.graders import error_warning, grader_errors, merge_errors, reset_grader_errors

    path = Path(out_dir) / "grader_errors.json"
    total = merge_errors(json.loads(path.read_text()) if path.is_file() else None, grader_errors())
    reset_grader_errors()
    write_json(path, total, indent=1)
    analysis["grader_errors"] = total
    if (w := error_warning(total)) is not None:
        analysis.setdefault("warnings", []).append(w)
        print(f"warning: {w}", file=sys.stderr, flush=True)
    return total


def write_analysis(analysis: dict, out_dir) -> Path:
    """out_dir/analysis.json, atomically."""
    path = Path(out_dir) / "analysis.json"
    write_json(path, analysis, indent=2, allow_nan=False)
    return path


def analyze_run(out_dir, methods: list[str] | None = None, baseline: str | None = None, **kw) -> dict:
    """Analyse a run folder's cell store (out_dir/cells/...) and write out_dir/analysis.json."""
    from .sweep import load_cells

    cells = load_cells(out_dir)
    if cells.empty:
        raise ValueError(f"{out_dir}: no cells in the store")
    methods = methods or sorted(cells["method"].unique())
    res = analyze_cells(cells, methods, baseline, **kw)
    write_analysis(res, out_dir)
    return res


# ------------------------------------------------------------------------------- evaluate
# Engine options `run_pipeline` does not pass itself (chat_template, system_prompt, vllm): the CLI
# sets them for the duration of one command with `engine_options(...)`; explicit arguments win.
_ENGINE_DEFAULTS: contextvars.ContextVar[dict] = contextvars.ContextVar("engine_defaults", default={})


@contextlib.contextmanager
def engine_options(**opts):
    """Defaults for `make_backend`'s chat_template, system_prompt and vllm options inside the block."""
    token = _ENGINE_DEFAULTS.set({k: v for k, v in opts.items() if v is not None})
    try:
        yield
    finally:
        _ENGINE_DEFAULTS.reset(token)


def make_backend(path, device: str = "cpu", dtype: str = "float32", backend: str = "hf",
                 chat_template: str | None = None, system_prompt: str | None = None, vllm=None, openai=None):
    """The generation backend for a checkpoint (`backends.factory.get_backend`): "hf" (default),
    "vllm" (its own environment; vllm picks the device itself; `vllm` is a `VLLMOptions`) or
    "openai" (an OpenAI-compatible server serving `path`; `openai` is an `OpenAIOptions`), with its
    prompts rendered through the model's chat template (`chat.with_chat`; chat_template "auto"
    (default), "none" or a template file, and an optional system prompt).

    Where a backend declares `prefix_consistent` (hf always; vllm on its CPU platform, where it was
    measured, or with VLLM_BATCH_INVARIANT=1), the sweep draws one pool at the largest max-token
    level and cuts it for the smaller ones.
    """
    from .backends.factory import get_backend
    from .chat import with_chat

    d = _ENGINE_DEFAULTS.get()
    chat_template = chat_template or d.get("chat_template", "auto")
    system_prompt = system_prompt if system_prompt is not None else d.get("system_prompt")
    if backend == "vllm":
        engine = get_backend("vllm", str(path), dtype=dtype, options=vllm or d.get("vllm"))
    elif backend == "openai":
        engine = get_backend("openai", str(path), options=openai or d.get("openai"))
    else:
        engine = get_backend(backend, str(path), device=device, dtype=dtype)
    try:
        return with_chat(engine, chat_template, system_prompt)
    except Exception:
        close_backend(engine)
        raise


def close_backend(engine) -> None:
    """Shut an engine down and release its memory (vllm: `close()`; hf: dropped and collected)."""
    close = getattr(engine, "close", None)
    if callable(close):
        close()
    del engine
    gc.collect()


def sweep_checkpoint(path, label: str, task, problems, grid, out_dir, seed: int = 0, device: str = "cpu",
                     dtype: str = "float32", progress: bool = True, sampling=None, backend: str = "hf",
                     train_run: int = 0, **engine_opts):
    """Sweep one checkpoint (a path, tiny preset or hub id) under `label` into out_dir's cell store
    (`sweep.run_sweep`, resumable) as training run `train_run` of that label, with one engine for
    the whole sweep; shuts the engine down and frees its memory afterwards. engine_opts:
    chat_template, system_prompt, vllm (`make_backend`). Returns its rows."""
    from .sweep import run_sweep

    engine = make_backend(path, device=device, dtype=dtype, backend=backend, **engine_opts)
    try:
        return run_sweep(engine, task, problems, grid, label, out_dir, seed=seed, progress=progress,
                         sampling=sampling, train_run=train_run)
    finally:
        close_backend(engine)
        del engine


def evaluate(checkpoints: dict, task, grid, out_dir, seed: int = 0, device: str = "cpu", dtype: str = "float32",
             progress: bool = True, baseline_label: str | None = None, sampling=None, B: int = 2000,
             compute_col: str = "generated_tokens", split: str = "test", problems_seed: int = 0,
             claim_method: str | None = None, backend: str = "hf", **engine_opts) -> dict:
    """Sweep every checkpoint ({label: path or tiny preset, or a list of them = that label's
    independent training runs}) over `grid` on `task` into one cell store under out_dir, then analyse
    it and write out_dir/analysis.json. Resumable. Run i of a label is swept with seed + i and its
    cells carry train_run = i; with several runs the intervals resample them (two-level bootstrap).

    task: a Task or a registered name; grid: a BudgetGrid, preset name or YAML path;
    baseline_label: default the last label when there are two or more (none with one label);
    engine_opts: chat_template, system_prompt, vllm, openai (`make_backend`), one engine per checkpoint,
    each shut down before the next starts.
    Returns the analysis dict.
    """
    from .sweep import BudgetGrid, load_cells, load_grid, select_problems
    from .tasks import get_task

    if not checkpoints:
        raise ValueError("no checkpoints to evaluate")
    task = get_task(task) if isinstance(task, str) else task
    grid = grid if isinstance(grid, BudgetGrid) else load_grid(grid)
    labels = list(checkpoints)
    if baseline_label is None and len(labels) > 1:
        baseline_label = labels[-1]
    if baseline_label is not None and baseline_label not in labels:
        raise ValueError(f"baseline_label {baseline_label!r} is not one of {labels}")
    problems = select_problems(task, grid, split=split, seed=problems_seed)
    from .tasks.graders import reset_grader_errors
    reset_grader_errors()
    for label, paths in checkpoints.items():
        for i, path in enumerate(paths if isinstance(paths, (list, tuple)) else [paths]):
            sweep_checkpoint(path, label, task, problems, grid, out_dir, seed=seed + i, device=device, dtype=dtype,
                             progress=progress, sampling=sampling, backend=backend, train_run=i, **engine_opts)
    cells = load_cells(out_dir)
    context = {"task": getattr(task, "name", type(task).__name__), "grid": grid.name, "seed": seed,
               "checkpoints": {k: [str(p) for p in v] if isinstance(v, (list, tuple)) else str(v)
                               for k, v in checkpoints.items()}, "split": split}
    res = analyze_cells(cells, labels, baseline_label, B=B, seed=seed, compute_col=compute_col,
                        claim_method=claim_method, context=context)
    note_grader_errors(res, out_dir)
    write_analysis(res, out_dir)
    return res
