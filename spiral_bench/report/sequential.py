"""The report's sequential-efficiency view (issue 17) for runs with a length-shaped method (grsp,
lcpo): accuracy and generated tokens per correct answer by max-token budget, segments per response
and their length distribution by cluster, with paired bootstrap CIs against the baseline (GRPO);
it also fills the GRSP claim rows of the verdict table that need samples (tokens per correct
answer, segments per response; `spiral_bench.claims` leaves them "not measured").

Read from saved files only (no sample redrawn or regraded): each method's sweep pool with the
largest max tokens L_max, replicate 0, training run 0 (`work/<method>/pool_L<L>_r0.parquet`:
problem_id, text, completion_tokens, reward). The budgets are the sweep's max tokens <= L_max; a
sample cut at budget b keeps its answer only if it stopped within b tokens
(`spiral_bench.efficiency`, which has the formulas). Segments: the GRSP segmentation of the run's
GRSP config (default: after each ';' or newline) on the sample's characters, so lengths are in
characters (one token each for the character-level tiny models); cluster edges from
train/grsp/grsp_edges.json (fixed at GRSP's first step), else the terciles of the baseline's
segment lengths. The re-check share (`tasks.arithmetic.recheck_share`) is shown for arithmetic.
"""
from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pandas as pd

from .. import efficiency as eff
from . import figures as F

SHAPED = ("grsp", "lcpo")
GRSP_STATS = ("tpc_rel_pct", "segments_rel_pct")      # claim statistics measured here (published.yaml)


def _pool(run_dir: Path, method: str) -> tuple[int, pd.DataFrame] | None:
    files = {}
    for p in (run_dir / "work" / method).glob("pool_L*_r0.parquet"):
        m = re.fullmatch(r"pool_L(\d+)_r0\.parquet", p.name)
        if m:
            files[int(m.group(1))] = p
    if not files:
        return None
    L = max(files)
    return L, pd.read_parquet(files[L], columns=["problem_id", "text", "completion_tokens", "reward"])


def _matrix(df: pd.DataFrame, problems: list[str], col: str) -> np.ndarray:
    g = df.groupby("problem_id")[col].apply(list)
    S = min(len(g[p]) for p in problems)
    return np.array([g[p][:S] for p in problems], dtype=np.float64)


def _grsp_cfg(run) -> "object":
    from ..config import build
    from ..trainers.grsp import GRSPConfig
    cfg = ((run.train.get("grsp") or {}).get("config") or {}).get("grsp") or {}
    try:
        g = build(GRSPConfig, cfg)
    except Exception:          # an old or foreign config: the defaults
        g = GRSPConfig()
    return g if g.segmentation != "confidence" else GRSPConfig()


def compute(run, B: int = 2000, seed: int = 0) -> dict | None:
    """The view's numbers for a run with grsp or lcpo and saved pools; None when not applicable."""
    a = run.analysis or {}
    methods = [m for m in (a.get("methods") or run.expected_methods()) if m != "base"]
    base = a.get("baseline") or "grpo"
    if not any(m in SHAPED for m in methods):
        return None
    pools = {m: p for m in dict.fromkeys(methods + [base]) if (p := _pool(run.path, m)) is not None}
    if base not in pools or len(pools) < 2:
        run.missing.append(f"sequential efficiency: no saved sample pools for {base} and a shaped method "
                           f"(work/<method>/pool_L*_r0.parquet)")
        return None
    L = min(L for L, _ in pools.values())
    problems = sorted(set.intersection(*(set(df["problem_id"]) for _, df in pools.values())))
    budgets = sorted({int(p["max_tokens"]) for pts in (a.get("sequential") or {}).values() for p in pts
                      if int(p["max_tokens"]) <= L} | {L})
    cfg = _grsp_cfg(run)
    data = {}
    for m, (_, df) in pools.items():
        df = df[df["problem_id"].isin(problems)]
        texts = df.groupby("problem_id")["text"].apply(list)
        S = min(len(texts[p]) for p in problems)
        segs = [eff.segment_samples([list(t) for t in texts[p][:S]], cfg) for p in problems]
        data[m] = {"R": _matrix(df, problems, "reward"), "N": _matrix(df, problems, "completion_tokens"),
                   "segs": segs, "texts": [t for p in problems for t in texts[p][:S]]}
    edges_file = run.path / "train" / "grsp" / "grsp_edges.json"
    try:
        edges, src = json.loads(edges_file.read_text())["edges"], "train/grsp/grsp_edges.json"
    except (OSError, ValueError, KeyError):
        from ..trainers.grsp import quantile_edges
        lens = [x for per in data[base]["segs"] for s in per for x in s] or [1]
        edges, src = quantile_edges(lens, cfg.num_clusters), f"terciles of {base}'s segment lengths"
    out = {"baseline": base, "budgets": budgets, "problems": len(problems), "edges": edges, "edges_source": src,
           "methods": {}, "comparisons": {}}
    arithmetic = ((run.config or {}).get("task") or (a.get("context") or {}).get("task")) == "arithmetic"
    for m, d in data.items():
        seg = eff.segment_summary([x for per in d["segs"] for x in per], edges)
        if arithmetic:
            from ..tasks.arithmetic import recheck_share
            seg["recheck_share"] = recheck_share(d["texts"])
        out["methods"][m] = {"budgets": eff.budget_table(d["R"], d["N"], budgets), "segments": seg,
                             "samples_per_problem": d["R"].shape[1]}
        if m != base:
            out["comparisons"][m] = {
                "budgets": eff.compare_budgets((d["R"], d["N"]), (data[base]["R"], data[base]["N"]), budgets, B, seed),
                "segments_ratio": eff.compare_segments(d["segs"], data[base]["segs"], B, seed)}
    return out


def fill_claims(analysis: dict | None, view: dict | None) -> None:
    """Fill the claim rows with statistic tpc_rel_pct / segments_rel_pct (100 (ratio - 1) at L_max,
    method vs baseline of the row) from the view; verdicts by `claims.judge` with the row's claim.
    The view reads training run 0 of each method with a one-level problem bootstrap, so these rows
    say 1 vs 1 training runs and provisional, whatever the run's own number of runs."""
    from .. import stats
    from ..claims import NOTE_SEP, judge
    from ..seed_stats import PROVISIONAL_NOTE
    if not analysis or not view:
        return
    claims = {c["id"]: c for c in stats.load_claims()}
    for row in analysis.get("claims") or []:
        c = claims.get(row["claim"])
        if not c or c["statistic"] not in GRSP_STATS or row.get("baseline") != view["baseline"]:
            continue
        comp = view["comparisons"].get(row.get("method"))
        if not comp:
            continue
        est = comp["budgets"][-1]["tpc_ratio"] if c["statistic"] == "tpc_rel_pct" else comp["segments_ratio"]
        lo, hi = (100.0 * (x - 1.0) for x in est["ci"])
        if not (math.isfinite(est["value"]) and math.isfinite(lo) and math.isfinite(hi)):
            continue
        row.update(measured=100.0 * (est["value"] - 1.0), ci_lo=lo, ci_hi=hi, verdict=judge(c, lo, hi),
                   train_runs={row["method"]: 1, row["baseline"]: 1}, provisional=True)
        what = "tokens per correct answer" if c["statistic"] == "tpc_rel_pct" else "segments per response"
        segs = [g for g in row["note"].split(NOTE_SEP) if not g.startswith(("provisional:", "the needed cells"))]
        segs += [f"{what}, relative change at max tokens {view['budgets'][-1]} from the saved sample pools of "
                 f"training run 0 of each method ({view['problems']} problems, one-level problem bootstrap; see "
                 f"Sequential efficiency)", f"provisional: {PROVISIONAL_NOTE}"]
        row["note"] = NOTE_SEP.join(segs)


def _ci(e: dict, scale: float = 1.0, shift: float = 0.0, digits: int = 3) -> str:
    v, (lo, hi) = e["value"], e["ci"]
    f = lambda x: f"{scale * x + shift:+.{digits}g}" if shift or scale != 1 else f"{x:.{digits}g}"  # noqa: E731
    return f"{f(v)} [{f(lo)}, {f(hi)}]"


def blocks(view: dict) -> list:
    """Report blocks (tables) of the view."""
    base, Ls = view["baseline"], view["budgets"]
    rows = []
    for m, mv in view["methods"].items():
        comp = view["comparisons"].get(m)
        for j, L in enumerate(Ls):
            t = mv["budgets"][j]
            c = comp["budgets"][j] if comp else None
            rows.append([m, str(L), f"{t['accuracy']:.3f}", f"{t['tokens_per_correct']:.1f}",
                         _ci(c["d_acc_points"]) + " pts" if c else "(baseline)",
                         _ci(c["tpc_ratio"]) if c else "(baseline)"])
    seg_rows = []
    for m, mv in view["methods"].items():
        s, comp = mv["segments"], view["comparisons"].get(m)
        seg_rows.append([m, f"{s['segments_per_response']:.2f}", _ci(comp["segments_ratio"]) if comp else "(baseline)",
                         f"{s['mean_segment_len']:.2f}", " / ".join(f"{v:.2f}" for v in s["per_cluster"]),
                         " / ".join(f"{v:.2f}" for v in s["cluster_share"]),
                         f"{s['recheck_share']:.3f}" if "recheck_share" in s else "n/a"])
    warn = []
    if view["methods"][base]["segments"].get("recheck_share") == 0.0:
        warn = [("p", f"{base}'s samples hold no redundant re-check (re-check share 0): a length penalty has little "
                      f"to remove here, so tokens per correct answer can hardly fall. On arithmetic, the task option "
                      f"recheck_prob (e.g. 0.3) puts re-checks into the SFT traces.")]
    return warn + [("p", f"From the sweep's saved samples at max tokens {Ls[-1]} ({view['problems']} problems, paired): a "
                  f"sample cut at a smaller budget b keeps its answer only if it stopped within b tokens. Tokens "
                  f"per correct answer = all generated tokens (cut at b) / correct samples. CIs: 95% percentile, "
                  f"one resampling of problems shared by both methods, against {base}."),
            ("table", ["method", "max tokens", "accuracy", "tokens / correct", f"accuracy - {base} [95% CI]",
                       f"tokens / correct ÷ {base} [95% CI]"], rows),
            ("p", f"Segments (GRSP segmentation, lengths in characters = tokens of the char-level models); clusters "
                  f"short / middle / long by edges {[round(e, 2) for e in view['edges']]} ({view['edges_source']}). "
                  f"Re-check share: steps that repeat the step before (arithmetic)."),
            ("table", ["method", "segments / response", f"ratio to {base} [95% CI]", "mean segment length",
                       "segments / response per cluster", "share of segments per cluster", "re-check share"],
             seg_rows)]


def figure(view: dict, out_dir, name: str = "sequential_efficiency.png") -> Path | None:
    """Three panels: accuracy by budget, tokens per correct answer by budget, segments per response
    per length cluster (bars per method)."""
    ms = list(view["methods"])
    col = F.colors(ms)
    fig, axes = F._grid(3, w=3.8, h=3.0)
    for m in ms:
        t = view["methods"][m]["budgets"]
        x = [r["budget"] for r in t]
        axes[0].plot(x, [r["accuracy"] for r in t], marker="o", ms=3, color=col[m], label=m)
        axes[1].plot(x, [r["tokens_per_correct"] for r in t], marker="o", ms=3, color=col[m], label=m)
    for ax, yl in ((axes[0], "accuracy, one trace"), (axes[1], "generated tokens per correct answer")):
        ax.set_xlabel("max tokens per trace", fontsize=8)
        ax.set_ylabel(yl, fontsize=8)
        ax.legend(fontsize=7)
    axes[0].set_title("Accuracy by budget", fontsize=9)
    axes[1].set_title("Tokens per correct answer by budget", fontsize=9)
    K = len(view["edges"]) + 1
    w = 0.8 / max(1, len(ms))
    for i, m in enumerate(ms):
        axes[2].bar(np.arange(K) + (i - (len(ms) - 1) / 2) * w, view["methods"][m]["segments"]["per_cluster"], w,
                    color=col[m], label=m)
    axes[2].set_xticks(range(K), ["short", "middle", "long"] if K == 3 else [f"c{k + 1}" for k in range(K)])
    axes[2].set_ylabel("segments per response", fontsize=8)
    axes[2].set_title("Segments per response by length cluster", fontsize=9)
    axes[2].legend(fontsize=7)
    return F._save(fig, out_dir, name)
