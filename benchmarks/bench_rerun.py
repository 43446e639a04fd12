"""Benchmark: rerun stability of the main job's verdicts. Runs `spiral-bench run` (defaults) with two
run seeds (training runs S..S+N-1 and S'..S'+N-1 share no seed; the SFT base is shared, cached),
or reads two finished run folders, and prints both verdict tables and, row by row, whether they
agree: the same verdict, or a disagreement whose point estimates each sit inside the other run's
interval ("within both intervals"). Last line: `rows_agreeing=<a>/<n>`.

    python benchmarks/bench_rerun.py [--out /tmp/bench_rerun] [--seeds 0 3] [run flags]
    python benchmarks/bench_rerun.py --runs RUN_DIR_A RUN_DIR_B
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def _inside(x, lo, hi) -> bool:
    return x is not None and lo is not None and hi is not None and lo <= x <= hi


def compare(a: dict, b: dict) -> list[dict]:
    """One row per claim of two analyses: both measurements and verdicts, and whether they agree."""
    rows = []
    for ra, rb in zip(a["claims"], b["claims"]):
        assert ra["claim"] == rb["claim"], (ra["claim"], rb["claim"])
        same = ra["verdict"] == rb["verdict"]
        both = _inside(ra["measured"], rb["ci_lo"], rb["ci_hi"]) and _inside(rb["measured"], ra["ci_lo"], ra["ci_hi"])
        rows.append({"claim": ra["claim"], "a": ra, "b": rb, "agree": same or both,
                     "how": "same verdict" if same else "within both intervals" if both else "DISAGREE"})
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", nargs=2, default=None, metavar="RUN_DIR", help="compare two finished run folders")
    ap.add_argument("--seeds", nargs=2, type=int, default=[0, 3], help="the two run seeds (default 0 3)")
    ap.add_argument("--out", default="/tmp/bench_rerun", help="results root of the two runs")
    a, run_flags = ap.parse_known_args(argv)
    dirs = [Path(p) for p in a.runs] if a.runs else []
    if not dirs:
        from spiral_bench.cli import main as cli
        for s in a.seeds:
            t0 = time.perf_counter()
            out = Path(a.out) / f"seed{s}"
            if cli(["run", "--seed", str(s), "--out", str(out), "--no-progress", *run_flags]):
                return 1
            dirs.append(max((p for p in out.iterdir() if (p / "manifest.json").is_file()),
                            key=lambda p: (p / "manifest.json").stat().st_mtime))
            print(f"run seed {s}: {dirs[-1]} in {time.perf_counter() - t0:.0f} s", flush=True)
    an = [json.loads((d / "analysis.json").read_text()) for d in dirs]
    from spiral_bench.claims import format_verdicts
    for d, x in zip(dirs, an):
        print(f"\n{d}:")
        print("\n".join(format_verdicts(x).splitlines()[:2 + len(x["claims"])]))
    rows = compare(*an)

    def cell(r):
        if r["measured"] is None:
            return "n/a"
        lo, hi = (f"{v:.3g}" if v is not None else "n/a" for v in (r["ci_lo"], r["ci_hi"]))
        return f"{'>= ' if r['censored'] else ''}{r['measured']:.3g} [{lo}, {hi}] {r['verdict']}"
    print(f"\n{'claim':32s} {'run A':>40s} {'run B':>40s}  agreement")
    for r in rows:
        print(f"{r['claim']:32s} {cell(r['a']):>40s} {cell(r['b']):>40s}  {r['how']}")
    print(f"rows_agreeing={sum(r['agree'] for r in rows)}/{len(rows)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
