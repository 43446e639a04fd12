"""Benchmark: the README's main job, `spiral-bench run` with its defaults, from nothing (a fresh model
cache, so the SFT base is trained too) on this machine; prints the wall time and peak memory of
every stage, the SFT base's held-out figures (the default must not be degenerate: single-trace
accuracy in [0.15, 0.60] and pass@8 >= 1.3x single), and per checkpoint the key accuracies of the
sweep with 95% paired-bootstrap CIs (the learning signal: GRPO should raise single-trace accuracy,
SPIRAL aggregated accuracy). Last line: `run_wall_seconds=<total>`.

    python benchmarks/bench_run.py [--out /tmp/bench_run] [--keep-cache] [run flags, e.g. --budget-grid smoke]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def _pick(analysis: dict, method: str, family: str, **match) -> dict | None:
    pts = [p for p in analysis["curves"].get(method, {}).get(family, [])
           if all(p[k] == v for k, v in match.items())]
    return max(pts, key=lambda p: (p["max_tokens"], p["k"], p["steps"])) if pts else None


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=None, help="results root (default: a temp folder, removed after)")
    ap.add_argument("--keep-cache", action="store_true", help="reuse the user's model cache (no fresh SFT)")
    a, run_flags = ap.parse_known_args(argv)
    out = Path(a.out or tempfile.mkdtemp(prefix="bench_run-"))
    if not a.keep_cache:
        os.environ["SPIRAL_BENCH_CACHE"] = str(out / "cache")
    from spiral_bench.cli import main as cli

    t0 = time.perf_counter()
    rc = cli(["run", "--out", str(out), *run_flags])
    total = time.perf_counter() - t0
    if rc:
        sys.exit(rc)
    rd = max((p for p in out.iterdir() if (p / "manifest.json").is_file()),
             key=lambda p: (p / "manifest.json").stat().st_mtime)   # the run just finished
    man = json.loads((rd / "manifest.json").read_text())
    print(f"\nrun folder {rd}; {man['hardware']['cpu_count']} CPUs, torch threads {man['hardware']['torch_threads']}")
    print(f"{'stage':14s} {'seconds':>8s} {'peak RSS MB':>12s}")
    for name, st in man["stages"].items():
        print(f"{name:14s} {st['seconds']:8.1f} {st['peak_rss_mb']:12.0f}")
    sm = json.loads((rd / "base" / "sft_metrics.json").read_text()) if (rd / "base" / "sft_metrics.json").is_file() else {}
    ev = sm.get("eval", {})
    if ev:
        n = max(int(k.split("@")[1]) for k in ev if k.startswith("pass@"))
        print(f"sft_base_single={ev['single']:.3f} sft_base_pass@{n}={ev[f'pass@{n}']:.3f} "
              f"ratio={ev[f'pass@{n}'] / max(ev['single'], 1e-9):.2f} sft_base_aggregate={ev['aggregate']:.3f} "
              f"({ev['problems']} held-out problems)")
    from spiral_bench.trainers.train_config import pairing_text
    for i, p in enumerate(man.get("pairings") or ([man["pairing"]] if man.get("pairing") else [])):
        print(f"matched compute, training run {i} (matched_by {p['matched_by']}): {pairing_text(p)}")
    analysis = json.loads((rd / "analysis.json").read_text())
    rows = {"pass@1 (max L)": ("pass@k", {"k": 1}), "maj@16": ("maj@k", {"k": 16}),
            "aggregate (4 of 16)": ("aggregate", {}), "rsa T=2 population": ("rsa", {})}
    print(f"{'accuracy':22s} " + " ".join(f"{m:>22s}" for m in analysis["methods"]))
    for label, (fam, match) in rows.items():
        cells = []
        for m in analysis["methods"]:
            pt = _pick(analysis, m, fam, **match)
            acc = pt["accuracy"] if pt else None
            cells.append(f"{acc['mean']:.3f} [{acc['ci'][0]:.3f}, {acc['ci'][1]:.3f}]" if acc else "n/a")
        print(f"{label:22s} " + " ".join(f"{c:>22s}" for c in cells))
    print(f"run_wall_seconds={total:.0f}")
    if a.out is None:
        shutil.rmtree(out, ignore_errors=True)


if __name__ == "__main__":
    main()
