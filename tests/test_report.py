"""report: the report of a full run, a partial run (one method, no training logs), an unfinished
sweep and an empty folder renders and says what is missing; HTML is self-contained; generation
time; headless Chromium renders every figure without console errors.

The default run folder is written from library calls (`evaluate.analyze_cells` on a synthetic
cell store of the smoke grid's cells, metrics.jsonl rows with `loop.METRIC_FIELDS`, a manifest in
the `run.py` schema), so the edge cases are cheap to set up; the slow `test_report_of_a_real_pipeline_run` renders a
real `run_pipeline` run of both methods in Chromium (~15-30 s), and test_reproduce.py checks the
report a real GRPO-only pipeline run writes.
Expected values are read back from those files independently (pandas on the cells, the analysis'
claim rows), not from the report code.
"""
import base64
import json
import math
import re
import shutil
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from spiral_bench.config import build
from spiral_bench.trainers.train_config import TrainConfig, budget_tokens_per_prompt

from spiral_bench.evaluate import analyze_cells, verdict_table, write_analysis
from spiral_bench.report import load_run, write_report
from spiral_bench.sweep import CELL_COLUMNS, grid_cells, load_cells, load_grid
from spiral_bench.trainers.loop import METRIC_FIELDS

CHROMIUM = Path("/usr/bin/chromium")
P = 20
STRENGTH = {"base": 0.0, "grpo": 0.4, "spiral": 0.9}
SECTIONS = ["Verdicts", "Accuracy vs compute", "Scaling-efficiency multiplier m(a)", "Sequential axis",
            "Training", "Manifest", "Missing"]


# ------------------------------------------------------------------------------ run folder builder
def cell_frame(methods) -> pd.DataFrame:
    """Every smoke-grid cell for each method: accuracy rises with log compute, faster for stronger methods."""
    rows = []
    for m in methods:
        for c in grid_cells(load_grid("smoke")):
            mult = {"pass@k": c.k, "maj@k": c.k, "aggregate": c.k + 1}.get(c.family, c.k * (c.steps + 1))
            comp = 0.8 * c.max_tokens * mult
            acc = min(0.95, 0.05 + 0.07 * math.log2(comp / 8) * (1 + STRENGTH[m]) + 0.1 * (c.family == "pass@k"))
            for p in range(P):
                rows.append(dict(method=m, cell=c.id, family=c.family, max_tokens=c.max_tokens, k=c.k,
                                 set_size=c.set_size, steps=c.steps, pool_size=c.pool_size, replicate=c.replicate,
                                 problem_id=f"p{p:02d}", correct=float((p + 0.5) / P < acc), prompt_tokens=12.0,
                                 generated_tokens=comp, max_token_budget=float(c.max_tokens * mult), flops=1e6 * comp))
    return pd.DataFrame(rows, columns=CELL_COLUMNS)


def metrics_rows(method: str, steps: int = 5) -> list[dict]:
    rows = []
    for s in range(1, steps + 1):
        r = {k: 0.0 for k in METRIC_FIELDS}
        r.update(step=s, search_reward=0.1 * s, search_acc=0.1 * s, search_entropy=2.0 - 0.1 * s, search_len=30.0 + s,
                 agg_acc=0.2 * s if method == "spiral" else None, agg_len=40.0 if method == "spiral" else None,
                 generated_tokens_per_prompt=760.0 + s, total_generated_tokens=6000 * s, seconds=1.5, elapsed=1.5 * s,
                 prompts_sampled=8 if s < steps else 16, generated_tokens=(760.0 + s) * (8 if s < steps else 16))
        rows.append(r)
    return rows


def make_run(d: Path, method: str = "spiral", train=("grpo", "spiral"), evaluated=("base", "grpo", "spiral"),
             baseline="grpo", analysis: bool = True, run_yaml_extra: dict | None = None) -> Path:
    """A run folder in the layout of `spiral_bench.run` (see module doc)."""
    d.mkdir(parents=True, exist_ok=True)
    cfg = {"method": method, "budget_grid": "smoke", "task": "arithmetic", "task_options": {}, "model": "tiny",
           "train_config": "train_tiny", "train_overrides": {}, "steps": 5, "seed": 0, "baseline": True,
           "tolerance": 0.1, "allow_unmatched": False, "device": "cpu", "dtype": "float32", "bootstrap": 200,
           **(run_yaml_extra or {})}
    (d / "run.yaml").write_text(yaml.safe_dump(cfg))
    cells = cell_frame(evaluated)
    for m, sub in cells.groupby("method"):
        (d / "cells" / m).mkdir(parents=True, exist_ok=True)
        for cid, cs in sub.groupby("cell"):
            cs.to_parquet(d / "cells" / m / f"{cid}.parquet", index=False)
    if analysis:
        cells.to_parquet(d / "cells.parquet", index=False)
        a = analyze_cells(cells, list(evaluated), baseline, B=200, seed=0, context={"task": "arithmetic", "grid": "smoke"},
                          claim_method="spiral" if "spiral" in evaluated and baseline != "spiral" else None)
        write_analysis(a, d)
    for m in train:
        t = d / "train" / m
        (t / "final").mkdir(parents=True, exist_ok=True)
        (t / "config.yaml").write_text(yaml.safe_dump({"method": m, "seed": 0}))
        (t / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in metrics_rows(m)))
    (d / "base").mkdir(exist_ok=True)
    (d / "base" / "sft_metrics.json").write_text(json.dumps(
        {"train_minutes": 0.1, "final_loss": 0.75, "loss_curve": [{"step": 1, "loss": 3.0, "seconds": 0.1}],
         "eval": {"problems": 2, "single": 0.25, "pass@8": 0.5, "aggregate": 0.375}}))
    stages = {s: {"seconds": 1.25, "status": "done", "peak_rss_mb": 500.0}
              for s in ["base"] + [f"train_{m}" for m in train] + [f"sweep_{m}" for m in evaluated] + ["analysis"]}
    manifest = {"schema": "spiral-bench/run/1", "run": cfg, "run_hash": "f00dcafe" * 2,
                "command": f"spiral-bench run --method {method} --budget-grid smoke --out results",
                "reproduce": ["git checkout 0123abcd", "pip install torch==2.13.0 && pip install -e .",
                              f"spiral-bench run --method {method} --budget-grid smoke --out results",
                              f"spiral-bench report {d}"],
                "git": {"commit": "0123abcd" * 5, "dirty": False}, "versions": {"python": "3.11.2", "torch": "2.13.0"},
                "hardware": {"machine": "x86_64", "cpu_count": 2, "device": "cpu"},
                "seeds": {"run": 0, "train": 0, "sweep": 0, "bootstrap": 0, "sft_init": 0, "sft_data": 0},
                "config_hashes": {"run": "aa11", "grid": "bb22", "sft": "cc33", **{m: f"{m}-hash" for m in train}},
                "data_files": {"/data/aime25.jsonl": "ab" * 32}, "models": {"base": "/cache/sft/cc33"},
                "stages": stages, "started": "2026-01-01T00:00:00+00:00", "finished": "2026-01-01T00:10:00+00:00"}
    (d / "manifest.json").write_text(json.dumps(manifest))
    return d


@pytest.fixture(scope="session")
def runs(tmp_path_factory):
    """{"full", "partial", "unfinished", "empty"} run folders, built once."""
    root = tmp_path_factory.mktemp("runs")
    full = make_run(root / "full")
    partial = make_run(root / "partial", method="spiral", train=(), evaluated=("spiral", "base"), baseline="base",
                       run_yaml_extra={"baseline": False})
    unfinished = make_run(root / "unfinished", analysis=False)
    for f in (unfinished / "cells" / "spiral").glob("rsa*.parquet"):   # spiral's rsa cells not finished yet
        f.unlink()
    shutil.rmtree(unfinished / "train" / "spiral" / "final")
    man = json.loads((unfinished / "manifest.json").read_text())
    man["stages"]["sweep_spiral"]["status"] = "running"
    del man["stages"]["analysis"], man["finished"]
    (unfinished / "manifest.json").write_text(json.dumps(man))
    (root / "empty").mkdir()
    return {"full": full, "partial": partial, "unfinished": unfinished, "empty": root / "empty"}


@pytest.fixture(scope="session")
def full_report(runs, tmp_path_factory):
    out = tmp_path_factory.mktemp("report_full")
    t0 = time.perf_counter()
    res = write_report([runs["full"]], out)
    res["wall"] = time.perf_counter() - t0
    return res


@pytest.fixture(scope="session")
def partial_report(runs, tmp_path_factory):
    return write_report(runs["partial"], tmp_path_factory.mktemp("report_partial"))


def sections_in_order(md: str) -> list[str]:
    heads = [h for h in re.findall(r"^### (.+)$", md, re.M)]
    return [h for h in heads if h in SECTIONS]


# ------------------------------------------------------------------------------ tests
def test_full_run_report_content_and_order(full_report, runs):
    md = full_report["md"].read_text()
    html = full_report["html"].read_text()
    assert sections_in_order(md) == SECTIONS
    a = json.loads((runs["full"] / "analysis.json").read_text())
    t = verdict_table(a)
    assert len(t) > 0
    ver = md[md.index("### Verdicts"):md.index("### Accuracy vs compute")]
    for r in t.itertuples(index=False):         # every claim row, its verdict, on one table line
        line = next(ln for ln in ver.splitlines() if ln.startswith(f"| {r.claim} |"))
        assert line.rstrip(" |").endswith(r.verdict)
        assert r.source.split(";")[0] in line
    assert "Nothing missing" in md and full_report["missing"] == {str(runs["full"]): []}
    man = json.loads((runs["full"] / "manifest.json").read_text())
    for text in man["reproduce"] + [man["git"]["commit"], man["versions"]["torch"], "ab" * 32, man["run_hash"],
                                    man["config_hashes"]["spiral"]]:
        assert text in md
    assert f"| total |  | {sum(s['seconds'] for s in man['stages'].values()):g} |" in md
    # the matched-compute audit: the budget per prompt of the saved config, and generated tokens per
    # prompt as totals (what check_pairing gates on), not the mean of the per-step ratios
    rows = metrics_rows("grpo")
    expect = sum(r["generated_tokens"] for r in rows) / sum(r["prompts_sampled"] for r in rows)
    assert expect != pytest.approx(np.mean([r["generated_tokens_per_prompt"] for r in rows]))
    budget = budget_tokens_per_prompt(build(TrainConfig, {"method": "grpo", "seed": 0}))
    assert f"| grpo | 5 | {budget:.4g} | {expect:.4g} |" in md
    assert "Neither measure counts the prompt tokens" in md
    assert "&lt;" not in html or "<script" not in html
    assert "<script" not in html.lower() and "<link" not in html.lower() and not re.search(r'src="(?!data:)', html)


def test_figures_embedded_and_linked(full_report):
    figs = full_report["figures"]
    assert [p.name for p in figs] == ["accuracy_vs_compute.png", "multipliers.png", "sequential.png", "training.png"]
    html = full_report["html"].read_text()
    srcs = re.findall(r'<img src="data:image/png;base64,([^"]+)"', html)
    assert [base64.b64decode(s) for s in srcs] == [p.read_bytes() for p in figs]
    for p in figs:
        b = p.read_bytes()
        assert b[:8] == b"\x89PNG\r\n\x1a\n" and 5_000 < len(b) < 400_000
    md = full_report["md"].read_text()
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md)
    assert links == [f"figures/{p.name}" for p in figs]
    assert all((full_report["md"].parent / link).is_file() for link in links)


def test_report_generation_time(full_report):
    assert full_report["wall"] < 30.0 and full_report["seconds"] <= full_report["wall"]


def test_partial_run_says_what_is_missing(runs, partial_report):
    res = partial_report
    md = res["md"].read_text()
    assert sections_in_order(md) == SECTIONS
    miss = "\n".join(res["missing"][str(runs["partial"])])
    assert "train/spiral/metrics.jsonl" in miss and "method grpo: not trained" in miss
    assert [p.name for p in res["figures"]] == ["accuracy_vs_compute.png", "multipliers.png", "sequential.png"]
    train = md[md.index("### Training"):md.index("### Manifest")]
    assert "Not available" in train and "training.png" not in train
    tail = md[md.index("### Missing"):]
    assert "train/spiral/metrics.jsonl" in tail


def test_unfinished_sweep_is_analysed_in_memory(runs, tmp_path):
    d = runs["unfinished"]
    before = sorted(p.relative_to(d) for p in d.rglob("*"))
    res = write_report(d, tmp_path)
    assert sorted(p.relative_to(d) for p in d.rglob("*")) == before      # nothing written into the run
    md = res["md"].read_text()
    assert "computed in memory" in md and len(res["figures"]) == 4
    miss = "\n".join(res["missing"][str(d)])
    assert "analysis.json" in miss and "'sweep_spiral' did not finish (status: running)" in miss
    assert "train/spiral/final" in miss
    # the sequential table's pass@1 at L=16 equals the mean over the stored cells (pandas, independently)
    cells = load_cells(d)
    seq = md[md.index("### Sequential axis"):md.index("### Training")]
    row = next(ln for ln in seq.splitlines() if ln.startswith("| 16 |"))
    for m in ("base", "grpo", "spiral"):
        sel = cells[(cells.method == m) & (cells.family == "pass@k") & (cells.k == 1) & (cells.max_tokens == 16)]
        assert f"{sel.correct.mean():.3g} [" in row
    # spiral has no rsa cells: its rsa curve is absent from the in-memory analysis
    a = load_run(d).analysis
    assert "rsa" not in a["curves"]["spiral"] and "rsa" in a["curves"]["grpo"]


def test_empty_folder_and_missing_folder(runs, tmp_path):
    res = write_report(runs["empty"], tmp_path / "r")
    miss = "\n".join(res["missing"][str(runs["empty"])])
    for part in ("run.yaml", "manifest.json", "base/sft_metrics.json", "train/grpo/metrics.jsonl", "the sweep"):
        assert part in miss
    assert res["figures"] == [] and "### Missing" in res["md"].read_text()
    with pytest.raises(FileNotFoundError):
        write_report(tmp_path / "nope", tmp_path / "r2")


def test_several_runs_one_report(runs, tmp_path):
    res = write_report([runs["partial"], runs["empty"]], tmp_path)
    md = res["md"].read_text()
    assert md.count("## Run ") == 2 and md.index("## Run partial") < md.index("## Run empty")
    assert [p.name for p in res["figures"]] == [f"1-partial-{n}.png" for n in ("accuracy_vs_compute", "multipliers",
                                                                                "sequential")]
    assert md.count("### Missing") == 2 and set(res["missing"]) == {str(runs["partial"]), str(runs["empty"])}


def test_two_training_runs_per_method_and_a_finished_run_reads_as_finished(tmp_path):
    """A run with 2 training runs per method (grpo, spiral; run 1 weaker, so the runs differ): the
    verdict table has the training-runs column and no provisional mark, the variance split table
    is there, the figure draws each run; the summary names the task and steps when run.yaml leaves
    them to the training config (task None, steps None), and the 'report' stage that is open while
    the report renders is not listed missing."""
    d = make_run(tmp_path / "two", analysis=False, run_yaml_extra={"task": None, "steps": None, "train_seeds": 2})
    cells = cell_frame(("base", "grpo", "spiral"))
    weaker = cells[cells.method != "base"].copy()
    weaker["train_run"] = 1
    weaker["correct"] = np.where(weaker.problem_id.isin([f"p{p:02d}" for p in range(0, P, 3)]), 0.0, weaker.correct)
    cells = pd.concat([cells.assign(train_run=0), weaker], ignore_index=True)
    a = analyze_cells(cells, ["base", "grpo", "spiral"], "grpo", B=200, seed=0, claim_method="spiral",
                      context={"grid": "smoke"})
    write_analysis(a, d)
    for m in ("grpo", "spiral"):
        shutil.copytree(d / "train" / m, d / "train" / f"{m}-run1")
        (d / "train" / m / "config.yaml").write_text(yaml.safe_dump({"method": m, "seed": 0, "steps": 30}))
    man = json.loads((d / "manifest.json").read_text())
    man["task"] = {"name": "arithmetic", "options": {}}
    man["stages"]["report"] = {"seconds": 0.0, "status": "running"}
    (d / "manifest.json").write_text(json.dumps(man))
    res = write_report(d, tmp_path / "out")
    md = res["md"].read_text()
    assert res["missing"][str(d)] == [] and "Nothing missing" in md and "part(s) of this run are missing" not in md
    assert "| task | arithmetic |" in md and "| training steps | 30 |" in md
    assert "| training runs per method | base 1, grpo 2, spiral 2 |" in md
    ver = md[md.index("### Verdicts"):md.index("### Accuracy vs compute")]
    assert "| training runs |" in ver and "(provisional)" not in ver
    for r in verdict_table(a).itertuples(index=False):
        line = next(ln for ln in ver.splitlines() if ln.startswith(f"| {r.claim} |"))
        assert line.rstrip(" |").endswith(f"| 2 vs 2 | {r.verdict}")
    assert "#### Variance split: training runs vs problems" in ver and "matched gap rsa\\|L24" in ver
    assert "Every row: measured on" in ver and ver.count("measured on this run's task") == 1
    assert "V[r]/R" in ver                                              # the formula, stated in the report
    # one training run: every row provisional, the reason said
    one = tmp_path / "one"
    make_run(one)
    md1 = write_report(one, tmp_path / "out1")["md"].read_text()
    assert md1.count("1 vs 1 (provisional)") == len(verdict_table(a))
    assert "1 training run: the interval leaves out training variance" in md1


def test_each_training_run_is_drawn_faintly_behind_the_pooled_curve(tmp_path):
    from spiral_bench.report import figures as F

    a = {"methods": ["spiral"], "curves": {"spiral": {"pass@k": [
        {"compute": {"mean": c}, "accuracy": {"mean": acc, "ci": [acc - .1, acc + .1]}, "on_frontier": True,
         "runs": [{"train_run": 0, "compute": c, "accuracy": acc - .05},
                  {"train_run": 1, "compute": c, "accuracy": acc + .05}]}
        for c, acc in ((10.0, .2), (20.0, .4), (40.0, .5))]}}, "frontier": {}}
    lines = []
    real = F._run_lines
    F._run_lines = lambda ax, pts, color: lines.append(len({r["train_run"] for p in pts for r in p["runs"]})) or \
        real(ax, pts, color)
    try:
        assert F.accuracy_vs_compute(a, tmp_path) is not None
    finally:
        F._run_lines = real
    assert lines == [2]


def _chromium_check(html_path: Path, shot: Path, n_figures: int) -> None:
    pw = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is absent (Debian package chromium, installed by .ci/run)")
    errors, requests = [], []
    with pw.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.on("request", lambda req: requests.append(req.url))
            resp = page.goto(html_path.resolve().as_uri(), wait_until="load")
            assert resp is None or resp.ok
            assert page.title().startswith("spiral-bench report")
            imgs = page.eval_on_selector_all("img", "els => els.map(e => [e.complete, e.naturalWidth, e.naturalHeight])")
            page.screenshot(path=str(shot), full_page=True)
        finally:
            browser.close()
    assert len(imgs) == n_figures and all(c and w > 0 and h > 0 for c, w, h in imgs), imgs
    assert errors == []
    assert all(u.startswith(("file:", "data:")) for u in requests), requests   # self-contained
    assert shot.stat().st_size > 10_000


def test_report_renders_in_headless_chromium(full_report, tmp_path):
    _chromium_check(full_report["html"], tmp_path / "report.png", len(full_report["figures"]))


def test_partial_report_renders_in_headless_chromium(partial_report, tmp_path):
    _chromium_check(partial_report["html"], tmp_path / "partial.png", 3)


@pytest.mark.slow
def test_report_of_a_real_pipeline_run(tmp_path, monkeypatch):
    """A real `spiral-bench run` (tiny SFT base, 1 RL step of each method, a micro grid) -> report."""
    from spiral_bench.config import build
    from spiral_bench.run import RunConfig, run_pipeline

    monkeypatch.setenv("SPIRAL_BENCH_CACHE", str(tmp_path / "cache"))
    grid = tmp_path / "micro.yaml"
    grid.write_text(yaml.safe_dump({"name": "micro", "sequential": [8, 12], "parallel": [1, 2], "problems": 3,
                                    "aggregative": [{"kind": "none"}, {"kind": "majority"},
                                                    {"kind": "aggregate", "set_size": 2},
                                                    {"kind": "rsa", "population": 2, "subset": 2, "steps": [1]}]}))
    cfg = build(RunConfig, {"method": "spiral", "budget_grid": str(grid), "steps": 1, "bootstrap": 50,
                            "allow_unmatched": True, "train_overrides": TINY_TRAIN})
    man = run_pipeline(cfg, tmp_path / "results", progress=False)
    rd = Path(man["run_dir"])
    t0 = time.perf_counter()
    res = write_report([rd], tmp_path / "rep")
    assert time.perf_counter() - t0 < 30
    assert len(res["figures"]) == 4 and res["missing"][str(rd)] == []
    _chromium_check(res["html"], tmp_path / "real.png", 4)


TINY_TRAIN = {"sft.steps": 2, "sft.batch_size": 4, "sft.eval_problems": 2, "sft.eval_samples": 2,
              "sft.max_new_tokens": 8, "sft.train_problems": 20, "train_problems": 8, "prompts_per_step": 1,
              "group_size": 4, "max_new_tokens": 8, "spiral_max_new_tokens": 8, "n1": 2, "k": 1, "subset_size": 2,
              "n2": 2}
