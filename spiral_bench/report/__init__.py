"""Reproducibility reports from saved run folders (figures, HTML, Markdown, manifest).

`write_report(run_dirs, out_dir=None)` (render.py) reads run folders (runfiles.py) and draws the
figures (figures.py); `spiral_bench.reproduce` reruns a run and diffs its metrics.
"""
from .render import write_report
from .runfiles import RunFiles, load_run

__all__ = ["write_report", "load_run", "RunFiles"]
