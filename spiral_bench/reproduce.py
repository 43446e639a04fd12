"""`spiral-bench reproduce RUN_DIR --out DIR`: rerun a saved run from its run.yaml (same config,
same seeds) into DIR/<run folder name> and compare, metric by metric, the saved values with the
new ones.

Metrics (`collect_metrics`, from saved files only):
  curve/<method>/<family>/<cell>/accuracy, .../compute   every curve point of analysis.json (means)
  comparison/<method>/<family>/multiplier_max[/ci_lo|/ci_hi]   the "up to" multipliers
  claim/<claim>/measured, /ci_lo, /ci_hi                 the verdict rows' measured values
  train/<method>/<field>                                 the last metrics.jsonl row's numeric fields,
                                                         except the wall-clock ones (names with seconds, elapsed, time)
  base/<key>                                             numeric SFT-base metrics (no wall times)
`compare_metrics(saved, new)` -> one row per name: saved, new, diff = new - saved, status:
"same" (equal, or absent/undefined on both sides: diff 0), "differs", "missing in saved",
"missing in new" (diff NaN). On one machine a deterministic pipeline gives diff exactly 0.
"""
from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from spiral_bench.fileio import read_jsonl
from spiral_bench.report.runfiles import read_json

_WALL_WORDS = ("seconds", "minutes", "elapsed", "time")
DIFF_COLUMNS = ["name", "saved", "new", "diff", "status"]


def _num(x) -> float | None:
    """A finite-or-NaN float for numbers, None for anything else (bools are not metrics)."""
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return None
    return float(x)


def _flat(d: dict, prefix: str, out: dict) -> None:
    for k, v in d.items():
        if isinstance(v, dict):
            _flat(v, f"{prefix}{k}/", out)
        elif not any(w in str(k) for w in _WALL_WORDS) and _num(v) is not None:
            out[f"{prefix}{k}"] = _num(v)


def collect_metrics(run_dir) -> dict[str, float | None]:
    """name -> value for every metric of a run folder (module doc); None = present but undefined."""
    d = Path(run_dir)
    out: dict[str, float | None] = {}
    a = read_json(d / "analysis.json")
    if a:
        for m, fams in (a.get("curves") or {}).items():
            for fam, pts in fams.items():
                for p in pts:
                    out[f"curve/{m}/{fam}/{p['cell']}/accuracy"] = _num(p["accuracy"]["mean"])
                    out[f"curve/{m}/{fam}/{p['cell']}/compute"] = _num(p["compute"]["mean"])
        for c in a.get("comparisons") or []:
            mm = c.get("multiplier_max")
            if mm:
                key = f"comparison/{c['method']}/{c['baseline']}/{c['family']}/multiplier_max"
                lo, hi = (mm.get("ci") or [None, None])[:2]
                out[key], out[key + "/ci_lo"], out[key + "/ci_hi"] = _num(mm.get("value")), _num(lo), _num(hi)
        for r in a.get("claims") or []:
            for f in ("measured", "ci_lo", "ci_hi"):
                out[f"claim/{r['claim']}/{f}"] = _num(r.get(f))
    for mdir in sorted(p for p in (d / "train").glob("*") if p.is_dir()):
        if (mdir / "metrics.jsonl").is_file():
            rows = read_jsonl(mdir / "metrics.jsonl")
            if rows:
                for k, v in rows[-1].items():
                    if not any(w in k for w in _WALL_WORDS) and (_num(v) is not None or v is None):
                        out[f"train/{mdir.name}/{k}"] = _num(v)
    sft = read_json(d / "base" / "sft_metrics.json")
    if sft:
        _flat({k: v for k, v in sft.items() if k != "loss_curve"}, "base/", out)
    return out


def _absent(x) -> bool:
    return x is None or (isinstance(x, float) and math.isnan(x))


def compare_metrics(saved: dict, new: dict) -> pd.DataFrame:
    """One row per metric name in either dict (sorted): name, saved, new, diff, status (module doc)."""
    rows = []
    for name in sorted(set(saved) | set(new)):
        s, n = saved.get(name), new.get(name)
        if name not in new:
            st, diff = "missing in new", math.nan
        elif name not in saved:
            st, diff = "missing in saved", math.nan
        elif _absent(s) and _absent(n):
            st, diff = "same", 0.0
        elif _absent(s) or _absent(n):
            st, diff = "differs", math.nan
        else:
            diff = n - s if not (math.isinf(s) or math.isinf(n)) else (0.0 if s == n else math.inf)
            st = "same" if s == n else "differs"
        rows.append({"name": name, "saved": math.nan if s is None else s, "new": math.nan if n is None else n,
                     "diff": diff, "status": st})
    return pd.DataFrame(rows, columns=DIFF_COLUMNS)


def compare_runs(saved_dir, new_dir) -> pd.DataFrame:
    """`compare_metrics` of two run folders' saved files."""
    return compare_metrics(collect_metrics(saved_dir), collect_metrics(new_dir))


def reproduce(run_dir, out_dir, cache_dir=None) -> pd.DataFrame:
    """Rerun run_dir's saved run.yaml (`run.run_pipeline`, same config and seeds) into
    out_dir/<run folder name> and diff its metrics with the saved ones (`compare_runs`).
    cache_dir: the SFT-base cache (default $SPIRAL_BENCH_CACHE or ~/.cache/spiral_bench).
    The new run folder is in the result's attrs["new_run_dir"]."""
    from spiral_bench.run import load_run_config, run_pipeline

    src, dst = Path(run_dir).resolve(), Path(out_dir).resolve()
    if not (src / "run.yaml").is_file():
        raise FileNotFoundError(f"{src / 'run.yaml'} not found: nothing to reproduce from")
    new = dst / src.name
    if new == src or src in new.parents:
        raise ValueError(f"reproduce --out must lie outside the run folder it reproduces ({src})")
    from spiral_bench.evaluate import engine_options
    from spiral_bench.run import engine_options_of
    cfg = load_run_config(src)
    with engine_options(**engine_options_of(cfg)):
        run_pipeline(cfg, dst, progress=False, cache_dir=cache_dir, run_dir=new)
    df = compare_runs(src, new)
    df.attrs["new_run_dir"] = str(new)
    return df


def format_diff(df: pd.DataFrame, only_differences: bool = False) -> str:
    """A plain-text table of the comparison, then a one-line summary."""
    counts = df["status"].value_counts().to_dict() if len(df) else {}
    fin = df["diff"].abs()
    mx = float(fin[fin.notna()].max()) if fin.notna().any() else 0.0
    summary = (f"{len(df)} metrics: {counts.get('same', 0)} identical, {counts.get('differs', 0)} differ, "
               f"{counts.get('missing in new', 0) + counts.get('missing in saved', 0)} missing on one side; "
               f"max |diff| = {mx:.6g}")
    show = df[df["status"] != "same"] if only_differences else df
    if show.empty:
        return summary
    with pd.option_context("display.max_rows", None, "display.max_colwidth", 80, "display.width", 200):
        body = show.to_string(index=False, float_format=lambda v: f"{v:.10g}")
    return body + "\n" + summary
