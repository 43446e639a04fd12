"""`spiral-bench run` end to end (smoke grid, SPIRAL and its GRPO baseline): the report, the cell store, the
analysis and the printed verdict table exist and agree; a rerun resumes instead of redoing work;
a stage that dies is marked failed and the next run finishes it; bad input fails fast."""
import contextlib
import io
import json
import re
import shlex
from pathlib import Path

import pandas as pd
import pytest
import yaml

pytestmark = pytest.mark.e2e   # .ci/min_versions leaves it out: the README's test command runs it

from spiral_bench.cli import build_parser, main
from spiral_bench.evaluate import POINT_COLS, point_id, verdict_table
from spiral_bench.run import RunConfig, command_for, load_run_config
from spiral_bench.sweep import load_cells


def test_smoke_run_end_to_end(smoke_run):
    run_dir, stdout, seconds = smoke_run
    assert seconds < 600, f"smoke run took {seconds:.0f} s"   # catches a hang; ~100 s on 2 idle cores
    for f in ("run.yaml", "manifest.json", "analysis.json", "cells.parquet", "report.html", "report.md"):
        assert (run_dir / f).is_file() and (run_dir / f).stat().st_size > 0, f
    assert str(run_dir / "report.html") in stdout

    man = json.loads((run_dir / "manifest.json").read_text())
    runs = [f"{m}{r}" for m in ("grpo", "spiral") for r in ("", "-run1", "-run2")]   # 3 training runs by default
    stages = ["base", *(f"train_{r}" for r in runs), "sweep_base", *(f"sweep_{r}" for r in runs), "analysis", "report"]
    assert list(man["stages"]) == stages                 # listed in this order, whatever order they ran in
    assert man["execution"]["workers"] >= 1 and man["execution"]["wall_seconds"] > 0
    assert all(man["stages"][s]["status"] == "done" and man["stages"][s]["seconds"] > 0 for s in stages)
    assert man["pairing"]["matched"] and man["pairing"]["relative_difference"] <= 0.10
    assert man["grader_errors"] == {"count": 0, "kinds": {}}   # counted (tests/test_graders_data.py), none here
    assert man["models"]["base"] != man["models"]["grpo"] != man["models"]["spiral"]

    # the training runs behind the links logged one row per step
    for m in ("grpo", "spiral"):
        rows = (run_dir / "train" / m / "metrics.jsonl").read_text().splitlines()
        assert [json.loads(r)["step"] for r in rows] == [1, 2]
        assert man["config_hashes"][m] in (run_dir / "train" / m).resolve().name

    # cell store <-> analysis: every curve point's accuracy is the mean of its cells
    cells = load_cells(run_dir)
    assert set(cells["method"]) == {"base", "grpo", "spiral"}
    analysis = json.loads((run_dir / "analysis.json").read_text())
    assert analysis["baseline"] == "grpo" and analysis["n_problems"] == cells["problem_id"].nunique()
    cells["point"] = [point_id(*r) for r in cells[POINT_COLS].itertuples(index=False)]
    checked = 0
    for m, fams in analysis["curves"].items():
        for fam, pts in fams.items():
            for p in pts:
                per_problem = cells[(cells.method == m) & (cells.point == p["cell"])].groupby("problem_id").mean(
                    numeric_only=True)
                assert len(per_problem) == analysis["n_problems"]
                assert p["accuracy"]["mean"] == pytest.approx(per_problem["correct"].mean())
                assert p["compute"]["mean"] == pytest.approx(per_problem["generated_tokens"].mean())
                checked += 1
    assert checked >= 3 * 5

    # analysis <-> printed verdict table <-> report: same claims, same verdicts
    table = verdict_table(analysis)
    assert len(table) >= 3
    md = (run_dir / "report.md").read_text()
    html = (run_dir / "report.html").read_text()
    for r in table.itertuples(index=False):
        line = next(l for l in stdout.splitlines() if l.startswith(r.claim + " "))
        assert line.rstrip().endswith(r.verdict)
        assert r.claim in md and r.claim in html
        md_row = next(l for l in md.splitlines() if r.claim in l and "|" in l)
        assert r.verdict in md_row


def test_rerun_resumes_without_redoing_work(smoke_run):
    run_dir, _, _ = smoke_run
    cfg = load_run_config(run_dir)
    cells_before = pd.read_parquet(run_dir / "cells.parquet")
    metrics_before = {m: (run_dir / "train" / m / "metrics.jsonl").read_text() for m in ("grpo", "spiral")}
    man_before = json.loads((run_dir / "manifest.json").read_text())
    out = run_dir.parent
    runs_before = {p for p in out.iterdir() if (p / "run.yaml").is_file()}
    argv = shlex.split(command_for(cfg, out))[1:] + ["--no-progress"]
    assert main(argv) == 0
    man = json.loads((run_dir / "manifest.json").read_text())
    assert man["started"] == man_before["started"] and man["run_hash"] == man_before["run_hash"]
    assert {m: (run_dir / "train" / m / "metrics.jsonl").read_text() for m in ("grpo", "spiral")} == metrics_before
    pd.testing.assert_frame_equal(pd.read_parquet(run_dir / "cells.parquet"), cells_before)
    assert {p for p in out.iterdir() if (p / "run.yaml").is_file()} == runs_before   # same folder, not a new one


def test_command_for_round_trips_through_the_cli(smoke_run):
    run_dir, _, _ = smoke_run
    cfg = load_run_config(run_dir)
    args = build_parser().parse_args(shlex.split(command_for(cfg, "results"))[1:])
    assert args.func.__name__ == "cmd_run"
    fields = {"method": args.method, "budget_grid": args.budget_grid, "steps": args.steps,
              "bootstrap": args.bootstrap, "baseline": not args.no_baseline}
    assert fields == {"method": cfg.method, "budget_grid": cfg.budget_grid, "steps": cfg.steps,
                      "bootstrap": cfg.bootstrap, "baseline": cfg.baseline}
    assert yaml.safe_load((run_dir / "run.yaml").read_text())["train_overrides"] == cfg.train_overrides
    assert dict(a.split("=", 1) for a in args.set) == {k: str(v) for k, v in cfg.train_overrides.items()}


def test_failed_stage_is_marked_and_finished_by_the_next_run(smoke_run, monkeypatch, capsys):
    """A sweep that dies leaves manifest status 'failed'; the same command then completes it and
    reuses the trained runs (shared by config hash under the same results root). In this process
    (--jobs 1), so that the patched sweep is the one that runs; a job failing in a worker process:
    tests/test_jobs.py."""
    import spiral_bench.evaluate as ev
    from tests.conftest import SMOKE_RUN_ARGS

    run_dir, _, _ = smoke_run
    out = run_dir.parent
    argv = [a if a != "200" else "150" for a in SMOKE_RUN_ARGS] + ["--out", str(out), "--jobs", "1"]  # another run folder
    real = ev.sweep_checkpoint

    def dies_on_spiral(path, label, *a, **kw):
        if label == "spiral":
            raise KeyboardInterrupt("killed")
        return real(path, label, *a, **kw)

    monkeypatch.setattr(ev, "sweep_checkpoint", dies_on_spiral)
    before = set(out.iterdir())
    with pytest.raises(KeyboardInterrupt):
        main(argv)
    (new_dir,) = [p for p in set(out.iterdir()) - before if (p / "run.yaml").is_file()]
    stages = json.loads((new_dir / "manifest.json").read_text())["stages"]
    assert stages["sweep_grpo"]["status"] == "done" and stages["sweep_spiral"]["status"] == "failed"
    assert "analysis" not in stages
    monkeypatch.setattr(ev, "sweep_checkpoint", real)
    assert main(argv) == 0
    man = json.loads((new_dir / "manifest.json").read_text())
    assert all(s["status"] == "done" for s in man["stages"].values())
    assert (new_dir / "train" / "grpo").resolve() == (run_dir / "train" / "grpo").resolve()
    assert set(load_cells(new_dir)["method"]) == {"base", "grpo", "spiral"}
    assert "resuming from step 2" in capsys.readouterr().out   # training was reused, not redone


@pytest.mark.parametrize("argv, needle", [
    (["run", "--budget-grid", "no-such-grid"], "no-such-grid"),
    (["run", "--set", "lr=-1"], "lr"),
    (["run", "--task", "no-such-task"], "no-such-task"),
    (["eval", "--checkpoint", "tiny-1m", "--baseline", "tiny-1m", "--baseline-label", "method",
      "--task", "arithmetic"], "different names"),
])
def test_bad_input_fails_fast_with_a_message(argv, needle, tmp_path, capsys):
    assert main(argv + ["--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and needle in err
    assert not any(tmp_path.iterdir())   # nothing written before the config is valid


def test_run_config_defaults_are_the_documented_main_job():
    cfg = RunConfig()
    assert (cfg.method, cfg.budget_grid, cfg.model, cfg.baseline) == ("spiral", "default", "tiny", True)
    assert cfg.methods() == ["grpo", "spiral"]
    assert RunConfig(method="spiral", baseline=False).methods() == ["spiral"]


def test_train_seeds_trains_and_sweeps_every_run_and_resamples_them(smoke_run):
    """The default trains 3 runs per method (seeds 0, 1, 2), sweeps every run into one cell store
    under the method's name with its train_run, the analysis resamples runs (two-level bootstrap)
    and the verdicts are not provisional. `--train-seeds 1 --jobs 1` (one run, every stage in this
    process) reuses run 0 by config hash, gives exactly run 0's cells (worker processes change
    nothing), and its verdicts are provisional."""
    from tests.conftest import SMOKE_RUN_ARGS

    run_dir, stdout, _ = smoke_run
    man = json.loads((run_dir / "manifest.json").read_text())
    assert man["seeds"]["train_runs"] == {"run0": 0, "run1": 1, "run2": 2} and len(man["pairings"]) == 3
    cells = load_cells(run_dir)
    assert set(cells["method"]) == {"base", "grpo", "spiral"}
    assert cells.groupby("method")["train_run"].unique().map(sorted).to_dict() == {
        "base": [0], "grpo": [0, 1, 2], "spiral": [0, 1, 2]}
    a = json.loads((run_dir / "analysis.json").read_text())
    assert a["train_runs"] == {"base": 1, "grpo": 3, "spiral": 3}
    assert a["bootstrap"]["resampled"] == "training runs, then problems"
    assert not a["provisional"] and all(r["train_runs"] == {"spiral": 3, "grpo": 3} for r in a["claims"])
    assert [r["train_run"] for r in a["curves"]["spiral"]["pass@k"][0]["runs"]] == [0, 1, 2]
    md = (run_dir / "report.md").read_text()
    assert "Variance split" in md and "3 vs 3" in md and "(provisional)" not in md

    out = run_dir.parent
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        assert main(SMOKE_RUN_ARGS + ["--train-seeds", "1", "--jobs", "1", "--out", str(out)]) == 0
    one_dir = Path(re.findall(r"(\S+)[/\\]report\.html", buf.getvalue())[-1])
    assert one_dir != run_dir
    one = json.loads((one_dir / "analysis.json").read_text())
    assert one["provisional"] and all(r["provisional"] for r in one["claims"])
    assert "(provisional)" in buf.getvalue()
    assert "1 training run: the interval leaves out training variance" in buf.getvalue()
    one_man = json.loads((one_dir / "manifest.json").read_text())
    assert one_man["execution"]["workers"] == 1
    assert (one_dir / "train" / "spiral").resolve() == (run_dir / "train" / "spiral").resolve()   # reused
    cols = ["method", "cell", "problem_id", "correct", "generated_tokens"]
    key = ["method", "cell", "problem_id"]
    pd.testing.assert_frame_equal(load_cells(one_dir)[cols].sort_values(key).reset_index(drop=True),
                                  cells[cells.train_run == 0][cols].sort_values(key).reset_index(drop=True))
    # resumes: the same command redoes nothing
    before = pd.read_parquet(one_dir / "cells.parquet")
    with contextlib.redirect_stdout(io.StringIO()):
        assert main(SMOKE_RUN_ARGS + ["--train-seeds", "1", "--jobs", "1", "--out", str(out)]) == 0
    pd.testing.assert_frame_equal(pd.read_parquet(one_dir / "cells.parquet"), before)


def test_train_seeds_one_keeps_the_run_folder_and_n_is_in_the_command():
    """train_seeds = 1 leaves the run hash as it was before the field existed, so an
    existing run folder is found and resumed; N > 1 is another run, and its command says so."""
    from spiral_bench.config import config_hash, to_dict
    from spiral_bench.run import run_hash

    cfg = RunConfig(train_seeds=1)
    later = ("train_seeds", "chat_template", "system_prompt", "vllm")   # fields added after the first runs
    old = {k: v for k, v in to_dict(cfg).items() if k not in later}
    assert run_hash(cfg) == config_hash(old) and run_hash(RunConfig(train_seeds=3)) != run_hash(cfg)
    assert RunConfig().train_seeds == 3 and "--train-seeds" not in command_for(RunConfig(), "results")
    args = build_parser().parse_args(shlex.split(command_for(cfg, "results"))[1:])
    assert args.train_seeds == 1


def test_eval_takes_several_training_runs_per_method_and_train_makes_them(smoke_run, tmp_path):
    """`eval --checkpoint A A-run1 --baseline B B-run1`: each label's runs are swept as its training
    runs (run i with seed + i), the intervals resample them and the verdicts are not provisional;
    run i's cells equal the main job's cells of that run. `train --train-seeds 2 --out D` writes D and
    D-run1 with seeds S and S+1."""
    from tests.conftest import SMOKE_TRAIN_FLAGS

    run_dir, _, _ = smoke_run
    ck = {m: [str(run_dir / "train" / lab / "final") for lab in (m, f"{m}-run1")] for m in ("spiral", "grpo")}
    out = tmp_path / "eval"
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        assert main(["eval", "--checkpoint", *ck["spiral"], "--label", "spiral", "--baseline", *ck["grpo"],
                     "--baseline-label", "grpo", "--task", "arithmetic", "--budget-grid", "smoke",
                     "--bootstrap", "100", "--out", str(out)]) == 0
    a = json.loads((out / "analysis.json").read_text())
    assert a["train_runs"] == {"spiral": 2, "grpo": 2} and not a["provisional"]
    assert "2 vs 2" in buf.getvalue()
    cols = ["method", "cell", "problem_id", "correct", "generated_tokens", "train_run"]
    key = ["method", "train_run", "cell", "problem_id"]
    ours = load_cells(out)[cols].sort_values(key).reset_index(drop=True)
    main_job = load_cells(run_dir)
    main_job = main_job[main_job.method.isin(["spiral", "grpo"]) & (main_job.train_run < 2)]
    pd.testing.assert_frame_equal(ours, main_job[cols].sort_values(key).reset_index(drop=True))

    d = tmp_path / "grpo-try"
    with contextlib.redirect_stdout(io.StringIO()) as buf:
        assert main(["train", "--method", "grpo", *SMOKE_TRAIN_FLAGS, "--train-seeds", "2", "--out", str(d)]) == 0
    assert [yaml.safe_load((p / "config.yaml").read_text())["seed"] for p in (d, tmp_path / "grpo-try-run1")] == [0, 1]
    assert (tmp_path / "grpo-try-run1" / "final").is_dir() and "training run 1, seed 1" in buf.getvalue()


def test_run_trains_other_methods_against_the_grpo_baseline(smoke_run, tmp_path):
    """`run --method grsp` trains GRSP and the GRPO baseline (reused from the smoke run by config
    hash), gates the pair on matched compute, sweeps both and compares GRSP with GRPO; the report
    renders, with the sequential-efficiency view and the GRSP claim rows, every figure loading in
    headless Chromium. Bad method names fail before any work."""
    from tests.conftest import SMOKE_RUN_ARGS

    run_dir, _, _ = smoke_run
    out = run_dir.parent
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        assert main(SMOKE_RUN_ARGS + ["--method", "grsp", "--train-seeds", "1", "--out", str(out)]) == 0
    new_dir = Path(re.findall(r"(\S+)[/\\]report\.html", buf.getvalue())[-1])
    assert new_dir.name.startswith("grsp-arithmetic-smoke-")
    man = json.loads((new_dir / "manifest.json").read_text())
    assert [s for s in man["stages"] if s.startswith(("train_", "sweep_"))] == [
        "train_grpo", "train_grsp", "sweep_base", "sweep_grpo", "sweep_grsp"]
    assert man["pairing"]["method"] == "grsp" and man["pairing"]["baseline"] == "grpo"
    assert man["pairing"]["budget"]["a"] == man["pairing"]["budget"]["b"]          # both G x L
    assert (new_dir / "train" / "grpo").resolve() == (run_dir / "train" / "grpo").resolve()
    rows = [json.loads(r) for r in (new_dir / "train" / "grsp" / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 2 and all("grsp_segments_per_response" in r for r in rows)
    a = json.loads((new_dir / "analysis.json").read_text())
    assert a["baseline"] == "grpo" and set(load_cells(new_dir)["method"]) == {"base", "grpo", "grsp"}
    assert any(c["method"] == "grsp" and c["baseline"] == "grpo" for c in a["comparisons"])
    md = (new_dir / "report.md").read_text()
    assert "grsp" in md and "### Sequential efficiency" in md and "figures/sequential_efficiency.png" in md
    assert "| grsp | " in md[md.index("### Sequential efficiency"):] and "segments / response" in md
    for claim in ("grsp_accuracy_change", "grsp_tokens_change", "grsp_segments_change"):
        assert f"| {claim} |" in md
    from tests.test_report import _chromium_check
    html = new_dir / "report.html"
    n_figs = len(re.findall(r'<img src="data:image/png', html.read_text()))
    assert n_figs == 5        # accuracy vs compute, multipliers, sequential, sequential efficiency, training
    _chromium_check(html, tmp_path / "grsp.png", n_figs)
    assert main(["run", "--method", "spiral,nope", "--out", str(out)]) == 2


def test_run_method_bridge_end_to_end(tmp_path):
    """`run --method bridge`: trains GRPO (RL only) and Bridge from the same base at matched compute,
    sweeps base and GRPO pooled and the Bridge directly at every width (estimator direct), and the
    analysis / report / claims say so; the claims are Bridge's rows."""
    from tests.conftest import SMOKE_RUN_ARGS

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        assert main(SMOKE_RUN_ARGS + ["--method", "bridge", "--train-seeds", "1", "--out", str(tmp_path)]) == 0
    run_dir = Path(re.findall(r"(\S+)[/\\]report\.html", buf.getvalue())[-1])
    man = json.loads((run_dir / "manifest.json").read_text())
    assert [s for s in man["stages"] if s.startswith(("train_", "sweep_"))] == [
        "train_grpo", "train_bridge", "sweep_base", "sweep_grpo", "sweep_bridge"]
    assert man["pairing"]["budget"]["a"] == man["pairing"]["budget"]["b"]          # both G x L
    assert (run_dir / "train" / "bridge" / "final" / "bridge_config.json").is_file()
    cells = load_cells(run_dir)
    assert dict(cells.groupby("method").estimator.agg(lambda e: "+".join(sorted(set(e))))) == {
        "base": "pooled", "grpo": "pooled", "bridge": "direct"}
    a = json.loads((run_dir / "analysis.json").read_text())
    assert a["baseline"] == "grpo" and a["estimators"]["bridge"] == ["direct"]
    rows = {c["claim"]: c for c in a["claims"]}
    assert set(rows) == {"bridge_gain_ratio_pass1", "bridge_pass1_gain_over_rl"}
    gap = next(c for c in a["comparisons"] if (c["method"], c["family"]) == ("bridge", "sequential"))["matched"][-1]
    assert rows["bridge_pass1_gain_over_rl"]["measured"] == pytest.approx(gap["abs_points"]["value"])
    gr = gap["gain_ratio"]                             # computed from the run's base, grpo and bridge cells
    assert gr["reference"] == "base" and rows["bridge_gain_ratio_pass1"]["verdict"] != "not measured"
    assert rows["bridge_gain_ratio_pass1"]["measured"] == (gr["value"] if gr["defined"] else None)
    assert "bridge direct" in (run_dir / "report.md").read_text()
