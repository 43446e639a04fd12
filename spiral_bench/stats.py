"""Statistics, paired across methods by problem: bootstrap CIs, curves, multipliers, gaps, claims.

Paired bootstrap: one (B, P) matrix W of multinomial counts (W[b, p] = how often problem p is
drawn in replicate b; each row sums to P) is drawn once per call and shared by every method and
cell, so comparisons are paired. Replicate means are one matrix product, W @ X / P, for the
per-problem values X (P, C). CIs are percentile intervals [q_{(1-level)/2}, q_{(1+level)/2}] of
the replicates (NaN replicates ignored). Nonlinear statistics (multipliers, gaps) are computed on
every replicate's curves (`compare_curves`). With several training runs per method, the replicates
come from the two-level bootstrap of `spiral_bench.seed_stats`: for method m with R_m runs and
values X_m (R_m, P, C), replicate b's mean is sum_r (V_m[b, r] / R_m) sum_p (W[b, p] / P) X_m[r, p, :],
V_m[b] the counts of R_m draws with replacement from m's runs (drawn per method, after W), W the
problem counts above (shared by every method and run); with one run per method (V = 1) it is
exactly this one-level bootstrap, with the same draws.

Curves: points (compute c_j, accuracy a_j) -> sorted by compute, made monotone by a running max
(the best accuracy reachable with at most that compute), interpolated linearly in log compute;
no extrapolation (NaN outside the grid). Inverse C(a): the smallest compute at which the curve
reaches a (inf if it never does).

Scaling-efficiency multiplier at accuracy level a: m(a) = C_baseline(a) / C_method(a).
  - default levels: the method's own curve points (the levels it reaches);
  - a level the baseline never reaches gives the lower bound m(a) >= C_baseline_max / C_method(a),
    flagged `censored`; so does a level below the method's smallest-compute accuracy (the method's
    compute there is only bounded above by its smallest compute, so m is a lower bound);
  - a level at or below the baseline's smallest-compute accuracy is skipped (NaN): there the
    baseline's compute is only bounded above, so m would be an upper bound;
  - "up to" = max over levels (a lower bound if any level is censored); its CI is the percentile
    interval of the maximum recomputed on each replicate. See MAX_WARNING.
  - a replicate where a multiplier is undefined (its baseline reaches the level(s) at its cheapest
    point, so m is only bounded above; or its method never reaches a fixed level) counts as 0 in the
    CI ("no advantage measurable"), not dropped: dropping them biases the CI upward, since they are
    exactly the replicates least favourable to the method. `valid_fraction` is the defined share.
Accuracy gap at equal compute c: abs = 100 (a_m(c) - a_b(c)) points, rel = 100 (a_m(c)/a_b(c) - 1)
%, at every compute of either grid inside both (fixed from the point estimate; a bootstrap replicate
reads them clamped to the range its own curves cover, and "at max compute" at its own largest
common compute), and its max.

Verdicts on published claims: `spiral_bench.verdicts`.
"""
from __future__ import annotations

import importlib.resources
import warnings
from typing import Mapping

import numpy as np
import yaml

MAX_WARNING = ("'up to' is the maximum over accuracy levels: picking the most favourable level "
               "after seeing the data biases it upward, and its bootstrap CI does not correct for "
               "that selection; prefer multipliers at fixed, pre-registered levels.")


# ----------------------------------------------------------------------------- bootstrap
def bootstrap_counts(n_problems: int, B: int = 2000, seed: int | np.random.Generator = 0) -> np.ndarray:
    """(B, P) int32 multinomial counts: row b = how often each problem is drawn in replicate b."""
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    if n_problems < 1 or B < 1:
        raise ValueError(f"need n_problems >= 1 and B >= 1, got {n_problems}, {B}")
    idx = rng.integers(0, n_problems, size=(B, n_problems))
    flat = idx + (np.arange(B)[:, None] * n_problems)
    return np.bincount(flat.ravel(), minlength=B * n_problems).reshape(B, n_problems).astype(np.int32)


class PairedBootstrap:
    """One shared resampling of P problems; `means(X)` gives replicate means of X (P, ...)."""

    def __init__(self, n_problems: int, B: int = 2000, seed: int | np.random.Generator = 0):
        self.n_problems, self.B = int(n_problems), int(B)
        self.counts = bootstrap_counts(n_problems, B, seed)
        self._w = self.counts.astype(np.float64) / self.n_problems

    def means(self, values) -> np.ndarray:
        """values (P, ...) -> replicate means (B, ...)."""
        x = np.asarray(values, dtype=np.float64)
        if x.shape[0] != self.n_problems:
            raise ValueError(f"values have {x.shape[0]} problems, the bootstrap has {self.n_problems}")
        return (self._w @ x.reshape(self.n_problems, -1)).reshape((self.B,) + x.shape[1:])


def percentile_ci(reps, level: float = 0.95) -> np.ndarray:
    """reps (B, ...) -> (2, ...) percentile interval, ignoring NaN replicates (all NaN -> NaN)."""
    r = np.asarray(reps, dtype=np.float64)
    r = np.where(np.isfinite(r), r, np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN slices give NaN
        return np.nanpercentile(r, [50 * (1 - level), 50 * (1 + level)], axis=0)


def paired_bootstrap(values: Mapping[str, np.ndarray], B: int = 2000, seed=0, level: float = 0.95) -> dict:
    """Means and percentile CIs of several methods' per-problem values, one shared resampling.

    values: {name: (P, C)} with the same P problems in the same order for every name.
    Returns {name: {"mean": (C,), "ci": (2, C), "reps": (B, C)}}.
    """
    names = list(values)
    arrs = [np.asarray(values[k], dtype=np.float64) for k in names]
    P = {a.shape[0] for a in arrs}
    if len(P) != 1:
        raise ValueError(f"all methods need the same problems for a paired bootstrap, got sizes {sorted(P)}")
    boot = PairedBootstrap(P.pop(), B, seed)
    out = {}
    for k, a in zip(names, arrs):
        reps = boot.means(a)
        out[k] = {"mean": a.mean(axis=0), "ci": percentile_ci(reps, level), "reps": reps}
    return out


def gain_ratio(method: float, baseline: float, reference: float, rm, rb, rr, level: float = 0.95) -> dict:
    """Ratio of two gains over a shared reference (Bridge's "gain ratio": pass@1 gain of the method
    over the base divided by RL only's), from point means and paired bootstrap replicates (B,):

        ratio = (method - reference) / (baseline - reference)

    CI: percentile interval of the replicate ratios, reported only when the denominator's own
    percentile CI lies entirely above 0 (the baseline's gain is significantly positive). When it
    reaches 0 the ratio's confidence set is unbounded (Fieller); when it lies below 0 the baseline
    lost ground, and a ratio of two losses (> 1 when the method lost more) is no gain ratio. In both
    cases value and CI are NaN and `defined` is False; the two gains and their CIs are always given
    (in the units of the inputs).
    Returns {"value", "ci": [lo, hi], "defined", "method_gain": {"value", "ci"},
    "baseline_gain": {"value", "ci"}}.
    """
    rm, rb, rr = (np.asarray(x, dtype=np.float64) for x in (rm, rb, rr))
    gm, gb = rm - rr, rb - rr                          # (B,) replicate gains
    cm, cb = percentile_ci(gm, level), percentile_ci(gb, level)
    den = float(baseline - reference)
    defined = bool(np.isfinite(cb).all() and cb[0] > 0 and den > 0)
    if defined:
        with np.errstate(divide="ignore", invalid="ignore"):
            ci = percentile_ci(gm / gb, level)
        value, ci = float(method - reference) / den, [float(ci[0]), float(ci[1])]
    else:
        value, ci = float("nan"), [float("nan"), float("nan")]
    return {"value": value, "ci": ci, "defined": defined,
            "method_gain": {"value": float(method - reference), "ci": [float(cm[0]), float(cm[1])]},
            "baseline_gain": {"value": den, "ci": [float(cb[0]), float(cb[1])]}}


# ----------------------------------------------------------------------------- curves
def monotone_curve(compute, acc) -> tuple[np.ndarray, np.ndarray]:
    """(..., M) compute > 0 and accuracy -> (log compute sorted ascending, running max of acc)."""
    c, a = np.broadcast_arrays(np.asarray(compute, dtype=np.float64), np.asarray(acc, dtype=np.float64))
    if not (np.isfinite(c).all() and np.isfinite(a).all()):
        raise ValueError("compute and accuracy must be finite")
    if (c <= 0).any():
        raise ValueError("compute must be > 0 (curves are interpolated in log compute)")
    order = np.argsort(c, axis=-1, kind="stable")
    x = np.log(np.take_along_axis(c, order, -1))
    y = np.maximum.accumulate(np.take_along_axis(a, order, -1), axis=-1)
    return x, y


def _gather(v, j):
    return np.take_along_axis(v, j, axis=-1)


def interp_log(x, y, compute_query) -> np.ndarray:
    """Monotone curve (x = log compute (..., M), y (..., M)) at compute_query (..., Q) -> (..., Q).
    Linear in log compute; NaN outside [exp(x_0), exp(x_M-1)]."""
    q = np.log(np.asarray(compute_query, dtype=np.float64))
    q = np.broadcast_to(q, x.shape[:-1] + q.shape[-1:])
    M = x.shape[-1]
    j = np.sum(x[..., None, :] <= q[..., :, None], axis=-1)  # x[j-1] <= q < x[j]
    i0, i1 = np.clip(j - 1, 0, M - 1), np.clip(j, 0, M - 1)
    x0, x1, y0, y1 = _gather(x, i0), _gather(x, i1), _gather(y, i0), _gather(y, i1)
    with np.errstate(invalid="ignore", divide="ignore"):
        frac = np.where(x1 > x0, (q - x0) / (x1 - x0), 0.0)
    out = y0 + frac * (y1 - y0)
    out = np.where(j == 0, np.nan, out)
    return np.where((j == M) & (q > x[..., -1:]), np.nan, out)


def accuracy_at(compute, acc, compute_query) -> np.ndarray:
    """Accuracy of the monotone curve through (compute, acc) (..., M) at compute_query (..., Q)."""
    x, y = monotone_curve(compute, acc)
    return interp_log(x, y, compute_query)


def _reach(x, y, levels):
    """Inverse of the monotone curve: (compute (..., L), at_start (..., L) bool)."""
    a = np.broadcast_to(np.asarray(levels, dtype=np.float64), x.shape[:-1] + np.shape(levels)[-1:])
    M = x.shape[-1]
    j = np.sum(y[..., None, :] < a[..., :, None], axis=-1)  # first index with y >= a
    i0, i1 = np.clip(j - 1, 0, M - 1), np.clip(j, 0, M - 1)
    x0, x1, y0, y1 = _gather(x, i0), _gather(x, i1), _gather(y, i0), _gather(y, i1)
    with np.errstate(invalid="ignore", divide="ignore"):
        frac = np.where(y1 > y0, (a - y0) / (y1 - y0), 0.0)
    lc = np.where(j == 0, x[..., :1], x0 + frac * (x1 - x0))
    c = np.where(j == M, np.inf, np.exp(lc))
    return np.where(np.isnan(a), np.nan, c), j == 0


def compute_to_reach(compute, acc, levels) -> np.ndarray:
    """Smallest compute at which the monotone curve (..., M) reaches each level (..., L); inf if
    never. A level at or below the first point's accuracy returns the smallest compute."""
    x, y = monotone_curve(compute, acc)
    return _reach(x, y, levels)[0]


def _multipliers_xy(xb, yb, xm, ym, levels):
    cm, _ = _reach(xm, ym, levels)
    cb, b_start = _reach(xb, yb, levels)
    valid = np.isfinite(cm) & ~b_start
    below_m = np.asarray(levels, dtype=np.float64) <= ym[..., :1]  # C_method(a) = its smallest compute: bounded above
    censored = valid & (np.isinf(cb) | below_m)
    with np.errstate(invalid="ignore", divide="ignore"):
        val = np.where(np.isinf(cb), np.exp(xb[..., -1:]) / cm, cb / cm)
    return np.where(valid, val, np.nan), censored


def multipliers(compute_b, acc_b, compute_m, acc_m, levels=None) -> dict:
    """m(a) = C_baseline(a) / C_method(a) for curves (..., M_b) and (..., M_m).

    levels: (..., L) accuracies, default the method's monotone curve points. Returns {"levels",
    "value" (..., L) (NaN where undefined), "censored" (..., L) bool: value is a lower bound}.
    """
    xb, yb = monotone_curve(compute_b, acc_b)
    xm, ym = monotone_curve(compute_m, acc_m)
    lv = ym if levels is None else np.asarray(levels, dtype=np.float64)
    val, cen = _multipliers_xy(xb, yb, xm, ym, lv)
    return {"levels": lv, "value": val, "censored": cen}


def _max_over(val, cen):
    has = np.isfinite(val).any(axis=-1)
    filled = np.where(np.isfinite(val), val, -np.inf)
    arg = np.argmax(filled, axis=-1)
    mx = np.where(has, _gather(filled, arg[..., None])[..., 0], np.nan)
    return mx, (cen & np.isfinite(val)).any(axis=-1), arg


def multiplier_max(compute_b, acc_b, compute_m, acc_m) -> dict:
    """The "up to" multiplier: max over the method's levels. Returns {"value" (...,), "censored"
    (...,) (any level censored: the max is a lower bound), "level" (...,)}."""
    m = multipliers(compute_b, acc_b, compute_m, acc_m)
    mx, cen, arg = _max_over(m["value"], m["censored"])
    return {"value": mx, "censored": cen, "level": _gather(m["levels"], arg[..., None])[..., 0]}


def accuracy_gap(compute_b, acc_b, compute_m, acc_m, compute_query) -> dict:
    """Gap at equal compute: {"abs_points": 100 (a_m - a_b), "rel_pct": 100 (a_m/a_b - 1)} (..., Q);
    NaN outside either grid, rel NaN where a_b = 0."""
    am = accuracy_at(compute_m, acc_m, compute_query)
    ab = accuracy_at(compute_b, acc_b, compute_query)
    with np.errstate(invalid="ignore", divide="ignore"):
        rel = np.where(ab > 0, 100.0 * (am / ab - 1.0), np.nan)
    return {"abs_points": 100.0 * (am - ab), "rel_pct": rel}


def common_grid(compute_b, compute_m) -> np.ndarray:
    """Sorted union of two compute grids (1-D), restricted to the range both cover."""
    cb, cm = np.asarray(compute_b, float).ravel(), np.asarray(compute_m, float).ravel()
    lo, hi = max(cb.min(), cm.min()), min(cb.max(), cm.max())
    u = np.unique(np.concatenate([cb, cm]))
    return u[(u >= lo) & (u <= hi)]


def _nanmax(v):
    has = np.isfinite(v).any(axis=-1)
    return np.where(has, np.max(np.where(np.isfinite(v), v, -np.inf), axis=-1), np.nan)


def _est(value, reps, conf, **extra) -> dict:
    ci = percentile_ci(reps, conf)
    fin = np.isfinite(np.asarray(reps, float))
    return {"value": value, "ci": [ci[0], ci[1]], "valid_fraction": float(fin.mean()), **extra}


def undefined_as_zero(reps) -> np.ndarray:
    """Multiplier replicates with the undefined ones (NaN) counted as 0 (module doc: "no advantage
    measurable"), for their percentile CI."""
    r = np.asarray(reps, dtype=np.float64)
    return np.where(np.isnan(r), 0.0, r)


def multiplier_est(value: float, reps, conf: float, **extra) -> dict:
    """{"value", "ci", "valid_fraction", ...} of a multiplier: `valid_fraction` = the defined share of
    the replicates, the CI over all of them with the undefined ones counted as 0."""
    out = _est(value, undefined_as_zero(reps), conf, **extra)
    out["valid_fraction"] = float(np.isfinite(np.asarray(reps, dtype=np.float64)).mean())
    return out


def compare(boot: PairedBootstrap, acc_m, compute_m, acc_b, compute_b, levels=None,
            level: float = 0.95) -> dict:
    """Method vs baseline from per-problem cell values, paired by `boot`'s shared resampling.

    acc_m, compute_m: (P, M_m) per-problem accuracy / compute of the method's cells; acc_b,
    compute_b: (P, M_b) the baseline's. Curves use the means over problems. levels: fixed
    accuracy levels for multipliers (default the method's point-estimate curve points).
    Returns plain floats/lists: multiplier_max {value, ci, censored, censored_fraction, level,
    valid_fraction}, warning, multipliers [{level, value, censored, ci, valid_fraction}], gap
    {by_compute [{compute, abs_points, rel_pct}], abs_points_max, rel_pct_max, at_max_compute}.
    valid_fraction = share of replicates where the statistic is defined (its CI uses those).
    """
    am, cm, ab, cb = (np.asarray(v, dtype=np.float64) for v in (acc_m, compute_m, acc_b, compute_b))
    return compare_curves([v.mean(axis=0) for v in (am, cm, ab, cb)], [boot.means(v) for v in (am, cm, ab, cb)],
                          levels, level)


def compare_curves(point, reps, levels=None, level: float = 0.95) -> dict:
    """`compare` from curves already averaged: point = (acc_m, compute_m, acc_b, compute_b), the
    point-estimate curves (M_m,), (M_m,), (M_b,), (M_b,); reps = the same four as replicate curves
    (B, M_m), (B, M_m), (B, M_b), (B, M_b), from any bootstrap (one-level `PairedBootstrap`, or the
    two-level `seed_stats.TwoLevelBootstrap`). Returns what `compare` does."""
    pm = [np.asarray(v, dtype=np.float64) for v in point]
    rm = [np.asarray(v, dtype=np.float64) for v in reps]
    B = rm[0].shape[0]
    # "up to": recomputed on every replicate with its own levels
    pmax = multiplier_max(pm[3], pm[2], pm[1], pm[0])
    rmax = multiplier_max(rm[3], rm[2], rm[1], rm[0])
    out = {"multiplier_max": multiplier_est(float(pmax["value"]), rmax["value"], level,
                                            censored=bool(pmax["censored"]),
                                            censored_fraction=float(np.mean(rmax["censored"])),
                                            level=float(pmax["level"])),
           "warning": MAX_WARNING}
    lv = np.asarray(monotone_curve(pm[1], pm[0])[1] if levels is None else levels, dtype=np.float64)
    lv = np.unique(lv)
    pmul = multipliers(pm[3], pm[2], pm[1], pm[0], lv)
    rmul = multipliers(rm[3], rm[2], rm[1], rm[0], np.broadcast_to(lv, (B, len(lv))))
    ci = percentile_ci(undefined_as_zero(rmul["value"]), level)
    vf = np.isfinite(rmul["value"]).mean(axis=0)
    out["multipliers"] = [{"level": float(a), "value": float(v), "censored": bool(c),
                           # no CI where the point estimate is undefined
                           "ci": [float(ci[0, i]), float(ci[1, i])] if np.isfinite(v) else [None, None],
                           "valid_fraction": float(vf[i])}
                          for i, (a, v, c) in enumerate(zip(lv, pmul["value"], pmul["censored"]))]
    q = common_grid(pm[3], pm[1])
    gap = {"by_compute": [], "abs_points_max": None, "rel_pct_max": None, "at_max_compute": None}
    if len(q):
        # a replicate's mean compute moves: queries at the ends of the grid are clamped to the range
        # both of its curves cover, and "at max compute" is read at the replicate's own largest
        # common compute (otherwise about half the replicates fall off the end and are dropped)
        lo = np.maximum(rm[3].min(-1), rm[1].min(-1))[:, None]
        hi = np.minimum(rm[3].max(-1), rm[1].max(-1))[:, None]
        qr = np.where(hi >= lo, np.clip(np.broadcast_to(q, (B, len(q))), lo, hi), np.nan)
        pg = accuracy_gap(pm[3], pm[2], pm[1], pm[0], q)
        rg = accuracy_gap(rm[3], rm[2], rm[1], rm[0], qr)
        rtop = accuracy_gap(rm[3], rm[2], rm[1], rm[0], np.where(hi >= lo, hi, np.nan))

        def entry(i, reps, j):  # point estimate at q[i], replicates from column j of reps
            return {"compute": float(q[i]), **{k: _est(float(pg[k][i]), reps[k][:, j], level)
                                               for k in ("abs_points", "rel_pct")}}
        gap["by_compute"] = [entry(i, rg, i) for i in range(len(q))]
        gap["abs_points_max"] = _est(float(_nanmax(pg["abs_points"])), _nanmax(rg["abs_points"]), level)
        gap["rel_pct_max"] = _est(float(_nanmax(pg["rel_pct"])), _nanmax(rg["rel_pct"]), level)
        gap["at_max_compute"] = entry(len(q) - 1, rtop, 0)
    out["gap"] = gap
    return out


# ----------------------------------------------------------------------------- frames
def cell_matrices(df, value_col: str = "correct", compute_col: str = "compute",
                  group_cols=("method", "family"), cell_col: str = "cell",
                  problem_col: str = "problem_id") -> dict:
    """Pivot a long cell-store frame into paired per-problem matrices, one per group.

    df: one row per (group..., cell, problem). Returns {"problems": [...], "groups": {group_key:
    {"cells": [...], "acc": (P, C), "compute": (P, C)}}} with one problem order for all groups.
    Raises ValueError on duplicate rows or a problem missing from any (group, cell): a paired
    comparison needs every problem everywhere.
    """
    key = list(group_cols) + [cell_col, problem_col]
    dup = df.duplicated(key, keep=False)
    if dup.any():
        raise ValueError(f"duplicate rows for {df.loc[dup, key].drop_duplicates().head(5).to_dict('records')}")
    problems = sorted(df[problem_col].unique().tolist())
    groups = {}
    for gk, sub in df.groupby(list(group_cols), sort=True):
        acc = sub.pivot(index=problem_col, columns=cell_col, values=value_col).reindex(problems)
        comp = sub.pivot(index=problem_col, columns=cell_col, values=compute_col).reindex(problems)
        missing = acc.isna()
        if missing.any().any():
            bad = [(p, c) for p, c in zip(*np.nonzero(missing.to_numpy()))][:5]
            raise ValueError(f"group {gk}: missing (problem, cell) rows, e.g. "
                             f"{[(problems[p], acc.columns[c]) for p, c in bad]}")
        groups[gk] = {"cells": acc.columns.tolist(), "acc": acc.to_numpy(float), "compute": comp.to_numpy(float)}
    return {"problems": problems, "groups": groups}


# ----------------------------------------------------------------------------- claims
_CLAIM_KEYS = {"id", "description", "value", "unit", "statistic", "metric", "benchmark",
               "direction", "null_value", "source"}
# optional: which method pair a claim compares (default: the run's claim method, spiral, vs its baseline)
# and the paper's setup in words (default claims.PAPER_SETUP, SPIRAL's)
_CLAIM_OPTIONAL = {"method", "baseline", "setup", "type"}


def load_claims() -> list[dict]:
    """The published claims from spiral_bench/baselines/published.yaml, validated."""
    text = importlib.resources.files("spiral_bench.baselines").joinpath("published.yaml").read_text()
    doc = yaml.safe_load(text)
    claims = doc.get("claims") if isinstance(doc, dict) else None
    if not isinstance(claims, list) or not claims:
        raise ValueError("published.yaml: expected a non-empty 'claims' list")
    for i, c in enumerate(claims):
        missing, extra = _CLAIM_KEYS - set(c), set(c) - _CLAIM_KEYS - _CLAIM_OPTIONAL
        if missing or extra:
            raise ValueError(f"published.yaml claims[{i}]: missing {sorted(missing)}, unknown {sorted(extra)}")
        if c["direction"] not in (">=", "<="):
            raise ValueError(f"published.yaml claims[{i}].direction: {c['direction']!r}")
        kind = c.setdefault("type", "point")
        if kind not in ("point", "at_least", "bound"):
            raise ValueError(f"published.yaml claims[{i}].type: {kind!r} (point, at_least or bound)")
        if kind != "bound" and c["null_value"] is None:
            raise ValueError(f"published.yaml claims[{i}]: a {kind} claim needs its null_value (the no-effect value)")
    return claims
