"""Sequential efficiency of a policy from its samples (GRSP's view, issue 17): accuracy and generated
tokens per correct answer by max-token budget, segments per response and their lengths by cluster,
with paired bootstrap CIs of a method against a baseline (GRPO). Used by benchmarks/bench_grsp.py
and the report (spiral_bench/report/sequential.py).

Inputs of one method, P problems x S samples drawn at the largest budget L_max:
    R [P, S]  reward of each sample (1 = correct);  N [P, S]  its generated tokens (N <= L_max).
Sampling is token by token, so the sample drawn at a budget b <= L_max is the same sample cut at b
tokens: it keeps its answer only if it stopped within b tokens. Hence, per budget b:
    correct_b = R * [N <= b],   tokens_b = min(N, b)
    acc(b) = mean_{p,s} correct_b;   tpc(b) = sum_{p,s} tokens_b / sum_{p,s} correct_b
(tokens per correct answer: a ratio of sums, NaN when nothing is correct). Against a baseline on
the same problems, one resampling of problems shared by both (`stats.bootstrap_counts`, B replicates):
    d_acc(b) = 100 (acc_m(b) - acc_base(b))  points;   ratio(b) = tpc_m(b) / tpc_base(b)
each with its percentile CI; a replicate's sums are the count-weighted sums over problems.

Segments of one sample (token texts p_1..p_T): `trainers.grsp.segment` with the GRSP config
(arithmetic: cut after each ';'). Per method: segments per response (mean over samples, paired CI
against the baseline as a ratio of sums), mean segment length in tokens, and per cluster k
(edges e_1 <= .. <= e_{K-1}, `grsp.assign_clusters`) the segments per response and the share of
all segments.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from spiral_bench import stats
from spiral_bench.trainers import grsp


def budget_arrays(rewards, tokens, budgets: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """R [P, S], N [P, S], budgets [J] -> (correct [J, P], tokens [J, P]): per budget and problem the
    count of correct samples and the sum of generated tokens, cut at the budget (module doc)."""
    R, N = np.asarray(rewards, dtype=np.float64), np.asarray(tokens, dtype=np.float64)
    if R.shape != N.shape or R.ndim != 2:
        raise ValueError(f"rewards and tokens must both be [P, S], got {R.shape} and {N.shape}")
    b = np.asarray(budgets, dtype=np.float64)[:, None, None]
    return (R * (N <= b)).sum(-1), np.minimum(N, b).sum(-1)


def budget_table(rewards, tokens, budgets: Sequence[int]) -> list[dict]:
    """Per budget b: {"budget", "accuracy", "tokens_per_correct", "tokens_per_sample"} (module doc)."""
    C, T = budget_arrays(rewards, tokens, budgets)
    S = np.asarray(rewards).shape[1]
    out = []
    for j, b in enumerate(budgets):
        c, t = C[j].sum(), T[j].sum()
        out.append({"budget": int(b), "accuracy": c / (C.shape[1] * S), "tokens_per_correct": t / c if c else np.nan,
                    "tokens_per_sample": t / (C.shape[1] * S)})
    return out


def _ratio_reps(counts: np.ndarray, num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """counts [B, P], num [J, P], den [J, P] -> [B, J]: sum_p c num / sum_p c den (NaN where den is 0)."""
    n, d = counts @ num.T, counts @ den.T
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(d > 0, n / np.where(d > 0, d, 1), np.nan)


def compare_budgets(method: tuple, baseline: tuple, budgets: Sequence[int], B: int = 2000, seed: int = 0,
                    level: float = 0.95) -> list[dict]:
    """method = (R_m, N_m), baseline = (R_b, N_b), each [P, S] on the same problems (S may differ) ->
    per budget {"budget", "method": {accuracy, tokens_per_correct}, "baseline": {...},
    "d_acc_points": {value, ci}, "tpc_ratio": {value, ci}} from one paired problem resampling."""
    Rm, Nm = method
    Rb, Nb = baseline
    Cm, Tm = budget_arrays(Rm, Nm, budgets)
    Cb, Tb = budget_arrays(Rb, Nb, budgets)
    P = Cm.shape[1]
    if Cb.shape[1] != P:
        raise ValueError(f"paired comparison needs the same problems: {P} vs {Cb.shape[1]}")
    counts = stats.bootstrap_counts(P, B, seed).astype(np.float64)
    Sm, Sb = np.asarray(Rm).shape[1], np.asarray(Rb).shape[1]
    acc_m, acc_b = counts @ Cm.T / (P * Sm), counts @ Cb.T / (P * Sb)          # [B, J]
    d = 100.0 * (acc_m - acc_b)
    ratio = _ratio_reps(counts, Tm, Cm) / _ratio_reps(counts, Tb, Cb)
    ci_d, ci_r = stats.percentile_ci(d, level), stats.percentile_ci(ratio, level)
    tab_m, tab_b = budget_table(Rm, Nm, budgets), budget_table(Rb, Nb, budgets)
    out = []
    for j, b in enumerate(budgets):
        m, bl = tab_m[j], tab_b[j]
        tr = m["tokens_per_correct"] / bl["tokens_per_correct"] if bl["tokens_per_correct"] else np.nan
        out.append({"budget": int(b), "method": m, "baseline": bl,
                    "d_acc_points": {"value": 100.0 * (m["accuracy"] - bl["accuracy"]), "ci": [*ci_d[:, j]]},
                    "tpc_ratio": {"value": tr, "ci": [*ci_r[:, j]]}})
    return out


def segment_samples(pieces_per_sample: Sequence[Sequence[str]], cfg: grsp.GRSPConfig | None = None) -> list[list[int]]:
    """Token texts of each sample -> its segment lengths (tokens), by the GRSP config's segmentation
    (default GRSPConfig(): delimiters ';' and newline; confidence segmentation needs log-probs and is
    not offered here)."""
    cfg = cfg or grsp.GRSPConfig()
    if cfg.segmentation == "confidence":
        raise ValueError("segment_samples: confidence segmentation needs the sampler's log-probs")
    return [grsp.segment(list(p), [], cfg) for p in pieces_per_sample]


def segment_summary(segments: Sequence[Sequence[int]], edges: Sequence[float]) -> dict:
    """Segment lengths of each sample, edges [K - 1] -> {"responses", "segments_per_response",
    "mean_segment_len", "per_cluster": [K] segments per response, "cluster_share": [K] share of segments,
    "edges"}."""
    n = len(segments)
    counts = grsp.cluster_counts(segments, edges).numpy() if n else np.zeros((0, len(edges) + 1))
    total = float(counts.sum())
    tok = float(sum(map(sum, segments)))
    return {"responses": n, "segments_per_response": total / n if n else np.nan,
            "mean_segment_len": tok / total if total else np.nan,
            "per_cluster": (counts.sum(0) / n).tolist() if n else [np.nan] * (len(edges) + 1),
            "cluster_share": (counts.sum(0) / total).tolist() if total else [np.nan] * (len(edges) + 1),
            "edges": [float(e) for e in edges]}


def compare_segments(seg_m: Sequence[Sequence[Sequence[int]]], seg_b: Sequence[Sequence[Sequence[int]]],
                     B: int = 2000, seed: int = 0, level: float = 0.95) -> dict:
    """Per problem, each sample's segment lengths, for method and baseline on the same P problems ->
    {"value", "ci"} of the ratio segments per response (method / baseline), paired over problems."""
    if len(seg_m) != len(seg_b):
        raise ValueError(f"paired comparison needs the same problems: {len(seg_m)} vs {len(seg_b)}")
    P = len(seg_m)
    num = np.array([[sum(len(s) for s in per) for per in seg_m], [len(per) for per in seg_m]], dtype=np.float64)
    den = np.array([[sum(len(s) for s in per) for per in seg_b], [len(per) for per in seg_b]], dtype=np.float64)
    counts = stats.bootstrap_counts(P, B, seed).astype(np.float64)
    spr_m, spr_b = _ratio_reps(counts, num[:1], num[1:]), _ratio_reps(counts, den[:1], den[1:])
    reps = (spr_m / spr_b)[:, 0]
    value = (num[0].sum() / num[1].sum()) / (den[0].sum() / den[1].sum())
    return {"value": float(value), "ci": [float(x) for x in stats.percentile_ci(reps, level)]}
