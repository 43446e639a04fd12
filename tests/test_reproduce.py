"""reproduce: metric collection and diffing on run folders (planted differences caught, wall-clock
fields ignored), and a real small CPU run reproduced through `run.run_pipeline` with every
difference exactly zero."""
import json
import math
import shutil
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from spiral_bench.reproduce import collect_metrics, compare_metrics, compare_runs, format_diff, reproduce

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_report import METRIC_FIELDS, make_run, metrics_rows  # noqa: E402

pytestmark = pytest.mark.e2e   # .ci/min_versions leaves it out: the README's test command runs it


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    return make_run(tmp_path_factory.mktemp("saved") / "run")


def test_collect_metrics_names_every_point_claim_and_final_training_value(saved):
    got = collect_metrics(saved)
    a = json.loads((saved / "analysis.json").read_text())
    n_points = 0
    for m, fams in a["curves"].items():
        for fam, pts in fams.items():
            for p in pts:
                n_points += 1
                assert got[f"curve/{m}/{fam}/{p['cell']}/accuracy"] == p["accuracy"]["mean"]
                assert got[f"curve/{m}/{fam}/{p['cell']}/compute"] == p["compute"]["mean"]
    assert sum(k.startswith("curve/") for k in got) == 2 * n_points
    for r in a["claims"]:
        assert got[f"claim/{r['claim']}/measured"] == r["measured"]
    last = metrics_rows("spiral")[-1]
    for f in METRIC_FIELDS:
        key = f"train/spiral/{f}"
        if f in ("seconds", "elapsed") or f.endswith("_seconds"):   # wall clock: differs run to run
            assert key not in got
        else:
            assert got[key] == last[f]
    assert got["base/eval/single"] == 0.25 and "base/train_minutes" not in got


def test_identical_runs_diff_exactly_zero_and_planted_differences_are_caught(saved, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(saved, copy)
    same = compare_runs(saved, copy)
    assert len(same) > 100 and (same["status"] == "same").all() and (same["diff"] == 0.0).all()
    # plant: one curve point's accuracy, one training metric, a wall-clock field, a new method's log
    a = json.loads((copy / "analysis.json").read_text())
    pt = a["curves"]["spiral"]["maj@k"][0]
    pt["accuracy"]["mean"] += 0.125
    (copy / "analysis.json").write_text(json.dumps(a))
    rows = metrics_rows("grpo")
    rows[-1]["search_acc"] = 0.25
    rows[-1]["seconds"] = 99.0
    (copy / "train" / "grpo" / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (copy / "train" / "extra").mkdir()
    (copy / "train" / "extra" / "metrics.jsonl").write_text(json.dumps({"step": 1, "loss": 1.0}) + "\n")
    df = compare_runs(saved, copy).set_index("name")
    bad = df[df["status"] != "same"]
    assert set(bad.index) == {f"curve/spiral/maj@k/{pt['cell']}/accuracy", "train/grpo/search_acc",
                              "train/extra/step", "train/extra/loss"}
    assert bad.loc[f"curve/spiral/maj@k/{pt['cell']}/accuracy", "diff"] == pytest.approx(0.125, abs=1e-12)
    assert bad.loc["train/grpo/search_acc", "diff"] == 0.25 - 0.5
    assert bad.loc["train/extra/loss", "status"] == "missing in saved" and math.isnan(bad.loc["train/extra/loss", "diff"])
    text = format_diff(df.reset_index(), only_differences=True)
    assert "train/grpo/search_acc" in text and "curve/base" not in text
    assert "1 missing" not in text and "2 differ" in text and "2 missing on one side" in text


def test_compare_metrics_undefined_values():
    df = compare_metrics({"a": None, "b": 1.0, "c": float("nan"), "d": 2.0, "e": float("inf")},
                         {"a": None, "b": None, "c": float("nan"), "d": 2.0, "e": float("inf")}).set_index("name")
    assert list(df["status"]) == ["same", "differs", "same", "same", "same"]
    assert df.loc["a", "diff"] == 0.0 and math.isnan(df.loc["b", "diff"]) and df.loc["d", "diff"] == 0.0
    assert format_diff(compare_metrics({}, {})).startswith("0 metrics")


def test_reproduce_refuses_bad_folders(saved, tmp_path):
    with pytest.raises(FileNotFoundError):
        reproduce(tmp_path, tmp_path / "out")
    with pytest.raises(ValueError, match="outside"):
        reproduce(saved, saved)


def test_reproduce_small_cpu_run_is_exact(tmp_path, monkeypatch):
    """A real run (tiny SFT base, 1 GRPO step, a 3-problem grid), rerun from its run.yaml: every diff is 0."""
    from spiral_bench.config import build
    from spiral_bench.run import RunConfig, run_pipeline

    cache = tmp_path / "cache"
    monkeypatch.setenv("SPIRAL_BENCH_CACHE", str(cache))
    grid = tmp_path / "micro.yaml"
    grid.write_text(yaml.safe_dump({"name": "micro", "sequential": [8], "parallel": [1, 2], "problems": 3,
                                    "aggregative": [{"kind": "none"}, {"kind": "majority"}]}))
    tiny = {"sft.steps": 2, "sft.batch_size": 4, "sft.eval_problems": 2, "sft.eval_samples": 2,
            "sft.max_new_tokens": 8, "sft.train_problems": 20, "train_problems": 8, "prompts_per_step": 1,
            "group_size": 4, "max_new_tokens": 8}
    cfg = build(RunConfig, {"method": "grpo", "budget_grid": str(grid), "steps": 1, "bootstrap": 50,
                            "train_overrides": tiny})
    man = run_pipeline(cfg, tmp_path / "results", progress=False, cache_dir=cache)
    rd = Path(man["run_dir"])
    # the pipeline's report stage (write_report on a real run): GRPO only -> no grpo-vs-spiral claims,
    # base is the baseline; every figure drawn, nothing missing but the untrained method
    rep = man["report"]
    assert Path(rep["html"]).is_file() and str(rep["figures"]).count(".png") == 4
    assert "method spiral: not trained" in str(rep["missing"]) and "train/grpo" not in str(rep["missing"])
    df = reproduce(rd, tmp_path / "again", cache_dir=cache)
    new = Path(df.attrs["new_run_dir"])
    assert new == (tmp_path / "again" / rd.name).resolve() and (new / "analysis.json").is_file()
    names = set(df["name"])
    assert {"train/grpo/loss", "train/grpo/total_generated_tokens", "base/eval/single"} <= names
    assert sum(n.startswith("curve/grpo/") for n in names) > 0 and sum(n.startswith("claim/") for n in names) > 0
    assert isinstance(df, pd.DataFrame) and (df["status"] == "same").all() and (df["diff"] == 0.0).all()
    assert format_diff(df).endswith("max |diff| = 0")
