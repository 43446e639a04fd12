"""Evaluate checkpoints over a budget grid and analyse the cell store: curves, multipliers, gaps,
claim verdicts (`analysis.json`).

`analyze_cells(cells, methods, baseline)` works on the cell store only (`sweep.CELL_COLUMNS`):
- points: a grid point = (family, max_tokens, k, set_size, steps, pool_size); per problem its
  correctness and compute (`compute_col`: generated_tokens, max_token_budget or flops) are
  averaged over replicates. Every method and point is resampled with ONE `stats.PairedBootstrap`
  over problems (B replicates, seeded), so all comparisons are paired by problem.
- curves[method][family]: per point mean accuracy and mean compute with percentile CIs; the
  family's curve is the monotone envelope over all its points (all max_tokens and k).
- frontier[method] ("all primitives"): the envelope over every point of the deployable families
  maj@k, aggregate, rsa, rsa_maj (pass@k is excluded: it is oracle selection, not an answer).
- sequential[method]: pass@1 (family pass@k, k = 1) at each max_tokens.
- comparisons: per method != baseline and family (plus "all" = the frontier), `stats.compare`:
  multiplier_max ("up to", CI, censored, warning), multipliers m(a) at the method's levels and at
  FIXED_LEVELS, accuracy gap at equal compute (abs points, rel %) per compute and its max; plus
  matched-cell gaps: sequential (pass@1 at each L) and rsa (family rsa at the largest L and T).
  Matched-cell gap: abs = 100 (mean_m - mean_b), rel = 100 (mean_m / mean_b - 1), CIs from the
  same paired replicates.
- claims: one row per claim of `stats.load_claims()` (see `claim_rows`).
Compute must be > 0 on a log axis: points whose mean compute is 0 are dropped (named in
"warnings") and per-problem compute is floored at 1e-9 times the largest compute
(`compute.floor_compute`, as `analyze` does). What a cell's compute is (a k-sample cell: its
prompt once, k/n of its pool's generated tokens) is stated once, in `spiral_bench.compute`.

`evaluate(checkpoints, task, grid, out_dir)` sweeps each checkpoint with the hf backend into one
cell store (resumable: `sweep.run_sweep` skips finished cells) and writes `analysis.json`
atomically (non-finite numbers as null).
"""
from __future__ import annotations

import gc
import json
import math
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from . import stats
from .analyze import _clean
from .compute import floor_compute
from .fileio import write_json

FAMILIES = ("pass@k", "maj@k", "aggregate", "rsa", "rsa_maj")
DEPLOYABLE = ("maj@k", "aggregate", "rsa", "rsa_maj")
COMPUTE_COLS = ("generated_tokens", "max_token_budget", "flops")
ALL_COMPUTE = ("prompt_tokens",) + COMPUTE_COLS
FIXED_LEVELS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
POINT_COLS = ["family", "max_tokens", "k", "set_size", "steps", "pool_size"]
SCHEMA = "spiral-bench/analysis/1"
PAPER_SETUP = "Qwen3-4B-Instruct-2507 with LoRA, SPIRAL vs GRPO"
NOTE_SEP = " | "                             # between the segments of a verdict row's note
BENCHMARK_TASKS = {"AIME 2025": ("aime25",)}   # claim benchmark -> task names that are that benchmark
VERDICT_COLUMNS = ["claim", "description", "published", "unit", "source", "benchmark", "method", "baseline",
                   "measured", "ci_lo", "ci_hi", "censored", "verdict", "note"]


# ------------------------------------------------------------------------------- helpers
def point_id(family, max_tokens, k, set_size, steps, pool_size) -> str:
    return f"{family}|L{int(max_tokens)}|k{int(k)}|s{int(set_size)}|T{int(steps)}|N{int(pool_size)}"


def _est(values: np.ndarray, reps: np.ndarray, level: float) -> dict:
    ci = stats.percentile_ci(reps, level)
    return {"mean": float(values), "ci": [float(ci[0]), float(ci[1])]}


def _matched_gap(boot, a_m: np.ndarray, a_b: np.ndarray, level: float) -> dict:
    """Gap between two per-problem columns (P,) of the same grid point: abs points and rel %."""
    rm, rb = boot.means(a_m), boot.means(a_b)
    m, b = float(a_m.mean()), float(a_b.mean())
    with np.errstate(invalid="ignore", divide="ignore"):
        rel_r = np.where(rb > 0, 100.0 * (rm / rb - 1.0), np.nan)
    ca, cr = stats.percentile_ci(100.0 * (rm - rb), level), stats.percentile_ci(rel_r, level)
    return {"method_mean": m, "baseline_mean": b,
            "abs_points": {"value": 100.0 * (m - b), "ci": [float(ca[0]), float(ca[1])]},
            "rel_pct": {"value": 100.0 * (m / b - 1.0) if b > 0 else math.nan, "ci": [float(cr[0]), float(cr[1])]}}


def _fixed_multipliers(boot, am, cm, ab, cb, levels, level) -> list[dict]:
    lv = np.asarray(levels, dtype=np.float64)
    p = stats.multipliers(cb.mean(0), ab.mean(0), cm.mean(0), am.mean(0), lv)
    r = stats.multipliers(boot.means(cb), boot.means(ab), boot.means(cm), boot.means(am),
                          np.broadcast_to(lv, (boot.B, len(lv))))
    ci = stats.percentile_ci(r["value"], level)
    return [{"level": float(a), "value": float(v), "censored": bool(c),
             "ci": [float(ci[0, i]), float(ci[1, i])] if np.isfinite(v) else [None, None],
             "valid_fraction": float(np.isfinite(r["value"][:, i]).mean())}
            for i, (a, v, c) in enumerate(zip(lv, p["value"], p["censored"]))]


def _prepare(cells: pd.DataFrame, methods, compute_col: str):
    """Replicate-averaged per-problem matrices: {(method, family): {"cells", "acc", "compute", "meta"}}."""
    missing = set(POINT_COLS + ["method", "problem_id", "correct", compute_col, "replicate"]) - set(cells.columns)
    if missing:
        raise ValueError(f"cells lack columns {sorted(missing)}")
    df = cells[cells["method"].isin(methods)].copy()
    absent = [m for m in methods if m not in set(df["method"])]
    if absent:
        raise ValueError(f"no cells for method(s) {absent}; the store has {sorted(set(cells['method']))}")
    df["point"] = [point_id(*r) for r in df[POINT_COLS].itertuples(index=False)]
    agg = (df.groupby(["method", "family", "point", "problem_id"], sort=True)
             .agg(correct=("correct", "mean"), compute=(compute_col, "mean"), n_rep=("replicate", "nunique"),
                  **{c: (c, "mean") for c in ALL_COMPUTE if c in df.columns})
             .reset_index())
    mats = stats.cell_matrices(agg, "correct", "compute", ("method", "family"), "point")
    meta = df.drop_duplicates("point").set_index("point")[POINT_COLS]
    extra = agg.groupby("point").agg(n_rep=("n_rep", "max"))
    return mats, meta, extra, agg


# ------------------------------------------------------------------------------- analysis
def analyze_cells(cells: pd.DataFrame, methods: list[str], baseline: str | None, B: int = 2000, seed: int = 0,
                  compute_col: str = "generated_tokens", level: float = 0.95, fixed_levels=FIXED_LEVELS,
                  claim_method: str | None = None, strict: bool = True, context: dict | None = None) -> dict:
    """The full analysis of a cell store (module doc); returns a JSON-safe dict (schema SCHEMA).

    methods: labels to analyse; baseline: one of them (None: no comparisons, no verdicts);
    claim_method: the method whose comparison with the baseline the claims are checked on
    (default the first method that is not the baseline); strict: verdicts use the claims'
    null_value (a CI reaching the no-effect value is "inconclusive", see `stats.verdict`);
    context: free-form facts (task, checkpoints, grid) stored under "context" and used in notes.
    """
    if compute_col not in COMPUTE_COLS:
        raise ValueError(f"compute_col {compute_col!r} is not one of {list(COMPUTE_COLS)}")
    methods = list(dict.fromkeys(methods))
    if baseline is not None and baseline not in methods:
        methods.append(baseline)
    mats, meta, extra, agg = _prepare(cells, methods, compute_col)
    problems, groups = mats["problems"], mats["groups"]
    P = len(problems)
    boot = stats.PairedBootstrap(P, B, seed)
    warnings: list[str] = []
    top = max(float(np.nanmax(g["compute"])) for g in groups.values()) if groups else 1.0
    point_means = agg.groupby(["method", "point"]).mean(numeric_only=True)

    curves: dict = {m: {} for m in methods}
    use: dict = {}                                       # (method, family) -> (acc, compute, point ids)
    for (m, fam), g in groups.items():
        keep = g["compute"].mean(axis=0) > 0
        for c in np.asarray(g["cells"])[~keep]:
            warnings.append(f"{m} {c}: mean {compute_col} is 0, left out of the curves")
        acc, comp = g["acc"][:, keep], floor_compute(g["compute"][:, keep], top)
        ids = [c for c, k in zip(g["cells"], keep) if k]
        ra, rc = boot.means(acc), boot.means(comp)
        order = np.argsort(comp.mean(0), kind="stable")
        run = np.maximum.accumulate(acc.mean(0)[order]) if len(order) else np.array([])
        on = np.zeros(len(ids), bool)
        if len(order):
            on[order] = np.r_[True, run[1:] > run[:-1]]
        pts = []
        for i in order:
            md, pm = meta.loc[ids[i]], point_means.loc[(m, ids[i])]
            pts.append({"cell": ids[i], **{c: (md[c] if c == "family" else int(md[c])) for c in POINT_COLS},
                        "n_replicates": int(extra.loc[ids[i], "n_rep"]),
                        "accuracy": _est(acc[:, i].mean(), ra[:, i], level),
                        "compute": _est(comp[:, i].mean(), rc[:, i], level),
                        "compute_means": {c: float(pm[c]) for c in ALL_COMPUTE if c in pm.index},
                        "on_frontier": bool(on[i])})
        curves[m][fam] = pts
        use[(m, fam)] = (acc, comp, ids)

    frontier, sequential = {}, {}
    for m in methods:
        fams = [f for f in DEPLOYABLE if (m, f) in use and use[(m, f)][2]]
        if fams:
            acc = np.concatenate([use[(m, f)][0] for f in fams], axis=1)
            comp = np.concatenate([use[(m, f)][1] for f in fams], axis=1)
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

    comparisons = []
    for m in methods:
        if baseline is None or m == baseline:
            continue
        for fam in FAMILIES + ("all",):
            if (m, fam) not in use or (baseline, fam) not in use or not use[(m, fam)][2] or not use[(baseline, fam)][2]:
                continue
            am, cm, idm = use[(m, fam)]
            ab, cb, idb = use[(baseline, fam)]
            res = stats.compare(boot, am, cm, ab, cb, level=level)
            res["multipliers_fixed"] = _fixed_multipliers(boot, am, cm, ab, cb, fixed_levels, level)
            shared = [c for c in idm if c in idb]
            res["matched"] = [{"cell": c, **_matched_gap(boot, am[:, idm.index(c)], ab[:, idb.index(c)], level)}
                              for c in shared]
            comparisons.append({"method": m, "baseline": baseline, "family": fam, "compute_unit": compute_col, **res})
        seq_m = {p["max_tokens"]: p["cell"] for p in sequential.get(m, [])}
        seq_b = {p["max_tokens"]: p["cell"] for p in sequential.get(baseline, [])}
        gaps = []
        for L in sorted(set(seq_m) & set(seq_b)):
            am, _, idm = use[(m, "pass@k")]
            ab, _, idb = use[(baseline, "pass@k")]
            gaps.append({"max_tokens": L, **_matched_gap(boot, am[:, idm.index(seq_m[L])], ab[:, idb.index(seq_b[L])], level)})
        comparisons.append({"method": m, "baseline": baseline, "family": "sequential", "compute_unit": "max_tokens",
                            "matched": gaps})

    out = {"schema": SCHEMA, "methods": methods, "baseline": baseline, "compute_col": compute_col,
           "n_problems": P, "replicates": sorted(int(r) for r in cells["replicate"].unique()),
           "bootstrap": {"B": int(B), "seed": seed, "level": level, "resampled": "problems",
                         "paired": "one resampling shared by every method and cell"},
           "fixed_levels": [float(x) for x in fixed_levels], "context": dict(context or {}),
           "curves": curves, "frontier": frontier, "sequential": sequential, "comparisons": comparisons,
           "warnings": warnings, "multiplier_warning": stats.MAX_WARNING}
    out = _clean(out)
    out["claims"] = _clean(claim_rows(out, stats.load_claims(), claim_method, strict))
    return out


def find_comparison(analysis: dict, method: str, baseline: str, family: str) -> dict | None:
    for c in analysis.get("comparisons", []):
        if (c["method"], c["baseline"], c["family"]) == (method, baseline, family):
            return c
    return None


def _rsa_matched(comp: dict | None) -> dict | None:
    """The matched rsa gap at the largest max_tokens, then the largest T."""
    if not comp or not comp.get("matched"):
        return None
    key = lambda g: (int(g["cell"].split("|L")[1].split("|")[0]), int(g["cell"].split("|T")[1].split("|")[0]))  # noqa: E731
    return max(comp["matched"], key=key)


def claim_rows(analysis: dict, claims: list[dict], claim_method: str | None = None, strict: bool = True) -> list[dict]:
    """One verdict row per published claim, from an analysis dict.

    multiplier_max / pass@k: the "up to" pass@k coverage multiplier of claim_method vs baseline;
    rel_pct_at_max_compute: the relative gap at the largest common compute of the two "all
    primitives" frontiers (deployable families); abs_points / RSA: the matched-cell gap in RSA
    population accuracy (pass@1) at the largest max_tokens and T. Verdicts from `stats.verdict`
    (with the claim's null_value when strict); "not measured" when the quantity is missing.
    """
    base = analysis.get("baseline")
    others = [m for m in analysis.get("methods", []) if m != base]
    meth = claim_method or (others[0] if others else None)
    ctx = analysis.get("context", {})
    where = f"task {ctx['task']!r}" if ctx.get("task") else "this run's task"
    unit = analysis.get("compute_col", "generated_tokens")
    rows = []
    for c in claims:
        row = {"claim": c["id"], "description": c["description"], "published": c["value"], "unit": c["unit"],
               "source": c["source"], "benchmark": c["benchmark"], "method": meth, "baseline": base,
               "measured": None, "ci_lo": None, "ci_hi": None, "censored": False, "verdict": "not measured"}
        if ctx.get("task") in BENCHMARK_TASKS.get(c["benchmark"], ()):
            first = (f"measured on {where} ({analysis.get('n_problems')} problems), the benchmark of the published "
                     f"figure; the paper's setup ({PAPER_SETUP}) may still differ from this run's models")
        else:
            first = (f"measured on {where} ({analysis.get('n_problems')} problems) with this run's models; the "
                     f"published figure is for another benchmark ({c['benchmark']}) and setup ({PAPER_SETUP}), "
                     f"so this checks the direction and size of the effect here, not the published number")
        notes = [first]
        est, censored = None, False
        if meth is None or base is None:
            notes.append("no baseline to compare with")
        elif c["statistic"] == "multiplier_max":
            comp = find_comparison(analysis, meth, base, c["metric"])
            if comp:
                est, censored = comp["multiplier_max"], bool(comp["multiplier_max"]["censored"])
                notes.append(f"compute = {unit}; " + stats.MAX_WARNING)
                if censored:
                    notes.append("a lower bound: the baseline never reaches that accuracy within the grid")
        elif c["statistic"] == "rel_pct_at_max_compute":
            comp = find_comparison(analysis, meth, base, "all")
            if comp and comp["gap"]["at_max_compute"]:
                g = comp["gap"]["at_max_compute"]
                est = g["rel_pct"]
                notes.append(f"our reading: relative accuracy gap at the largest common {unit} "
                             f"({g['compute']:.4g}) of the envelopes over maj@k / aggregate / rsa / rsa_maj "
                             f"(pass@k left out: oracle selection)")
        elif c["statistic"] == "abs_points":
            g = _rsa_matched(find_comparison(analysis, meth, base, "rsa"))
            if g:
                est = g["abs_points"]
                notes.append(f"matched cell {g['cell']} (largest max tokens, then largest T): RSA population "
                             f"accuracy {100 * g['method_mean']:.1f}% vs {100 * g['baseline_mean']:.1f}%")
        else:
            notes.append(f"statistic {c['statistic']!r} is not mapped to a measurement")
        if est is not None and est.get("value") is not None:
            lo, hi = est["ci"]
            row.update(measured=est["value"], ci_lo=lo, ci_hi=hi, censored=censored,
                       verdict=stats.verdict([lo, hi], c["value"], c["direction"], censored,
                                             c["null_value"] if strict else None))
            if strict and row["verdict"] == "inconclusive" and lo is not None and hi is not None:
                notes.append(f"the CI reaches the no-effect value {c['null_value']} or is undefined")
        elif meth is not None and base is not None and len(notes) == 1:
            notes.append("the needed cells are not in the store (or are undefined)")
        row["note"] = NOTE_SEP.join(notes)
        rows.append(row)
    return rows


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


def verdict_table(analysis: dict) -> pd.DataFrame:
    """The claims rows of an analysis as a DataFrame (VERDICT_COLUMNS)."""
    return pd.DataFrame(analysis.get("claims", []), columns=VERDICT_COLUMNS)


def _num(x, unit: str) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "n/a"
    return f"{x:.2f}x" if unit == "multiplier" else f"{x:+.1f}%" if unit == "percent" else f"{x:+.1f} pts"


def format_verdicts(analysis: dict) -> str:
    """A plain-text verdict table for the terminal, then the notes."""
    t = verdict_table(analysis)
    head = f"Claims vs measured ({analysis.get('compute_col')}, {analysis.get('bootstrap', {}).get('B')} paired " \
           f"bootstrap resamples, {analysis.get('n_problems')} problems)"
    lines = [head, f"{'claim':32s} {'published':>10s} {'measured':>10s} {'95% CI':>24s}  verdict"]
    for r in t.itertuples(index=False):
        meas = ("≥ " if r.censored else "") + _num(r.measured, r.unit)
        ci = f"[{_num(r.ci_lo, r.unit)}, {_num(r.ci_hi, r.unit)}]" if r.measured is not None else ""
        lines.append(f"{r.claim:32s} {_num(r.published, r.unit):>10s} {meas:>10s} {ci:>24s}  {r.verdict}")
    if len(t):
        lines.append(f"method {t.method.iloc[0]} vs baseline {t.baseline.iloc[0]}; verdicts: CI vs the published "
                     f"value, 'inconclusive' when the CI also reaches the no-effect value. Notes:")
        seen: set = set()
        for r in t.itertuples(index=False):      # each distinct note segment once
            for seg in str(r.note).split(NOTE_SEP):
                if seg not in seen:
                    seen.add(seg)
                    lines.append(f"  [{r.claim}] {seg}")
    return "\n".join(lines)


# ------------------------------------------------------------------------------- evaluate
def make_backend(path, device: str = "cpu", dtype: str = "float32", backend: str = "hf"):
    """The generation backend for a checkpoint (`backends.factory.get_backend`): "hf" (default) or
    "vllm" (GPU, its own environment; vllm picks the device itself).

    HFBackend declares `prefix_consistent = True` (see its class), so the sweep draws one pool at
    the largest max-token level and cuts it for the smaller ones.
    """
    from .backends.factory import get_backend

    if backend == "vllm":
        return get_backend("vllm", str(path), dtype=dtype)
    return get_backend(backend, str(path), device=device, dtype=dtype)


def sweep_checkpoint(path, label: str, task, problems, grid, out_dir, seed: int = 0, device: str = "cpu",
                     dtype: str = "float32", progress: bool = True, sampling=None, backend: str = "hf"):
    """Sweep one checkpoint (a path, tiny preset or hub id) under `label` into out_dir's cell store
    (`sweep.run_sweep`, resumable); frees the model afterwards. Returns its rows."""
    from .sweep import run_sweep

    engine = make_backend(path, device=device, dtype=dtype, backend=backend)
    try:
        return run_sweep(engine, task, problems, grid, label, out_dir, seed=seed, progress=progress,
                         sampling=sampling)
    finally:
        del engine
        gc.collect()


def evaluate(checkpoints: dict, task, grid, out_dir, seed: int = 0, device: str = "cpu", dtype: str = "float32",
             progress: bool = True, baseline_label: str | None = None, sampling=None, B: int = 2000,
             compute_col: str = "generated_tokens", split: str = "test", problems_seed: int = 0,
             claim_method: str | None = None, backend: str = "hf") -> dict:
    """Sweep every checkpoint ({label: path or tiny preset}) over `grid` on `task` into one cell
    store under out_dir, then analyse it and write out_dir/analysis.json. Resumable.

    task: a Task or a registered name; grid: a BudgetGrid, preset name or YAML path;
    baseline_label: default the last label when there are two or more (none with one label).
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
    for label, path in checkpoints.items():
        sweep_checkpoint(path, label, task, problems, grid, out_dir, seed=seed, device=device, dtype=dtype,
                         progress=progress, sampling=sampling, backend=backend)
    cells = load_cells(out_dir)
    context = {"task": getattr(task, "name", type(task).__name__), "grid": grid.name, "seed": seed,
               "checkpoints": {k: str(v) for k, v in checkpoints.items()}, "split": split}
    res = analyze_cells(cells, labels, baseline_label, B=B, seed=seed, compute_col=compute_col,
                        claim_method=claim_method, context=context)
    note_grader_errors(res, out_dir)
    write_analysis(res, out_dir)
    return res
