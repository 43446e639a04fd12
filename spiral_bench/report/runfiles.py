"""Read a run folder (`results/<run>/`) from saved files only, and list what is missing.

Layout read (every part optional):
  run.yaml                  the RunConfig as a dict (method: spiral | grpo | grsp | lcpo | both, comma-separated; baseline, ...)
  manifest.json             versions, git, hardware, seeds, hashes, stages (status, seconds), reproduce
  base/sft_metrics.json     the SFT base's own evaluation
  train/<method>/           config.yaml, metrics.jsonl (one row per step), final/
  analysis.json             the sweep's analysis (schema spiral-bench/analysis/1)
  cells/<method>/*.parquet  finished cells of the sweep
When analysis.json is absent but finished cells exist (an unfinished sweep), the analysis is
computed in memory with `evaluate.analyze_cells` from those cells (no sample is redrawn or
regraded) and flagged provisional; nothing is written into the run folder.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import yaml

from spiral_bench.fileio import read_jsonl

TRAIN_METHODS = ("grpo", "spiral")
EVAL_BASE = "base"
DEFAULT_B = 1000


@dataclasses.dataclass
class RunFiles:
    """What one run folder holds; `missing` lists what is absent or unfinished, in words."""

    path: Path
    config: dict | None = None
    manifest: dict | None = None
    sft: dict | None = None
    train: dict = dataclasses.field(default_factory=dict)   # method -> {"config": dict | None, "metrics": [rows]}
    analysis: dict | None = None
    analysis_source: str = ""
    missing: list = dataclasses.field(default_factory=list)

    @property
    def name(self) -> str:
        return self.path.resolve().name

    def expected_methods(self) -> list[str]:
        """Trained methods this run was meant to produce (`run.RunConfig.methods`: every method but
        grpo trains the GRPO baseline too unless baseline is false; grpo and spiral when run.yaml is
        absent)."""
        cfg = self.config or {}
        if cfg.get("method") is None:
            return list(TRAIN_METHODS)
        from spiral_bench.run import RunConfig
        try:
            return RunConfig(method=str(cfg["method"]), baseline=cfg.get("baseline", True) is not False).methods()
        except ValueError:          # a method name this version does not know: as written
            return [str(cfg["method"])]

    def expected_runs(self) -> list[str]:
        """Training-run labels of this run (`run.run_labels`): each expected method, then
        <method>-run<i> for i < train_seeds."""
        from spiral_bench.run import run_labels
        n = (self.config or {}).get("train_seeds") or 1
        return [lab for m in self.expected_methods() for lab in run_labels(m, int(n))]


def read_json(path: Path):
    """Parsed JSON, or None when the file is absent; raises ValueError naming the file when it is unreadable."""
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise ValueError(f"{path}: {e}") from None


def read_yaml(path: Path):
    if not path.is_file():
        return None
    try:
        return yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as e:
        raise ValueError(f"{path}: {e}") from None



def _safe(run: RunFiles, what: str, fn, *args):
    try:
        return fn(*args)
    except ValueError as e:
        run.missing.append(f"{what}: unreadable ({e})")
        return None


def _bootstrap_B(config: dict | None) -> int:
    b = (config or {}).get("bootstrap")
    if isinstance(b, dict):
        b = b.get("B")
    return int(b) if isinstance(b, int) and not isinstance(b, bool) and b > 0 else DEFAULT_B


def analysis_from_cells(run: RunFiles) -> dict | None:
    """The in-memory analysis of an unfinished sweep's finished cells (module doc), or None."""
    from spiral_bench.evaluate import analyze_cells
    from spiral_bench.sweep import load_cells

    files = sorted(run.path.glob("cells/*/*.parquet"))
    if not files:
        return None
    cells = load_cells(run.path)
    methods = list(dict.fromkeys([m for m in (EVAL_BASE, *TRAIN_METHODS) if m in set(cells["method"])]
                                 + sorted(set(cells["method"]))))
    # as `run.run_pipeline` does: grpo is the baseline when it ran beside another method, else base
    baseline = "grpo" if "grpo" in methods and set(methods) - {"grpo", "base"} else \
        "base" if "base" in methods and len(methods) > 1 else None
    cfg = run.config or {}
    context = {k: cfg[k] for k in ("task", "budget_grid", "seed") if k in cfg}
    if "budget_grid" in context:
        context["grid"] = str(context.pop("budget_grid"))
    context["unfinished_sweep"] = True
    try:
        a = analyze_cells(cells, methods, baseline, B=_bootstrap_B(cfg), seed=int(cfg.get("seed", 0) or 0),
                          claim_method="spiral" if "spiral" in methods and baseline != "spiral" else None,
                          context=context)
    except ValueError as e:
        run.missing.append(f"analysis of the {len(files)} finished cell files failed: {e}")
        return None
    run.analysis_source = (f"computed in memory from {len(files)} finished cell files of the unfinished "
                           f"sweep (analysis.json absent); provisional")
    return a


def load_run(run_dir) -> RunFiles:
    """Everything readable in `run_dir` (module doc). Raises FileNotFoundError if it is not a folder."""
    path = Path(run_dir)
    if not path.is_dir():
        raise FileNotFoundError(f"run folder {path} does not exist")
    run = RunFiles(path)
    run.config = _safe(run, "run.yaml", read_yaml, path / "run.yaml")
    if run.config is None and not (path / "run.yaml").exists():
        run.missing.append("run.yaml (the run's config): methods, task and grid are inferred from other files")
    run.manifest = _safe(run, "manifest.json", read_json, path / "manifest.json")
    if run.manifest is None and not (path / "manifest.json").exists():
        run.missing.append("manifest.json (versions, git commit, seeds, hardware, hashes, wall times, "
                           "reproduce commands)")
    for name, st in ((run.manifest or {}).get("stages") or {}).items():
        # the 'report' stage is open while this very report is rendered: not a missing part
        if isinstance(st, dict) and st.get("status") != "done" and name != "report":
            run.missing.append(f"stage {name!r} did not finish (status: {st.get('status')})")
    run.sft = _safe(run, "base/sft_metrics.json", read_json, path / "base" / "sft_metrics.json")
    if run.sft is None and not (path / "base" / "sft_metrics.json").exists():
        run.missing.append("base/sft_metrics.json (the SFT base's own evaluation)")

    expected = run.expected_methods()
    present = sorted(p.name for p in (path / "train").glob("*") if p.is_dir()) if (path / "train").is_dir() else []
    for m in list(dict.fromkeys(run.expected_runs() + present)):
        d = path / "train" / m
        if not (d / "metrics.jsonl").is_file():
            why = "" if m in run.expected_runs() else " (not part of this run's config)"
            run.missing.append(f"train/{m}/metrics.jsonl (training curves of {m}){why}")
            continue
        run.train[m] = {"config": _safe(run, f"train/{m}/config.yaml", read_yaml, d / "config.yaml"),
                        "metrics": read_jsonl(d / "metrics.jsonl")}
        if not (d / "final").is_dir():
            run.missing.append(f"train/{m}/final (the trained model of {m}): training did not finish")
    for m in TRAIN_METHODS:
        if m not in expected:
            run.missing.append(f"method {m}: not trained in this run (run.yaml method: {run.config.get('method')}, "
                               f"baseline: {run.config.get('baseline', True)})")

    run.analysis = _safe(run, "analysis.json", read_json, path / "analysis.json")
    if run.analysis is not None:
        run.analysis_source = "analysis.json"
    elif not (path / "analysis.json").exists():
        run.analysis = analysis_from_cells(run)
        if run.analysis is None and not list(path.glob("cells/*/*.parquet")):
            run.missing.append("the sweep: neither analysis.json nor any finished cell (cells/<method>/*.parquet)")
        elif run.analysis is not None:
            run.missing.append("analysis.json: the sweep did not finish; figures and verdicts below come from "
                               "the finished cells only")
    if run.analysis is not None:
        have = set(run.analysis.get("methods") or [])
        for m in [EVAL_BASE] + expected:
            if m not in have:
                run.missing.append(f"evaluation of {m!r}: no cells for it in the sweep")
        if run.analysis.get("baseline") is None:
            run.missing.append("a baseline in the analysis: no multipliers, gaps or verdicts")
    return run
