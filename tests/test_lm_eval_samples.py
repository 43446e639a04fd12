"""`spiral-bench analyze` on lm-eval's --log_samples files: end to end on files written by lm-eval's
own CLI (a subprocess `python -m lm_eval run`, and lm-eval's CLI in-process through
`spiral-bench lm-eval`) with tasks of any number of samples (`spiral-bench lm-eval-path --samples N`),
and the mapping's edge cases (several filters, one response per line, clear errors).

References: lm-eval's own aggregated numbers in its results_*.json, and spiral-bench's grader
applied to the responses lm-eval logged.
"""
from __future__ import annotations

import contextlib
import glob
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import spiral_bench.lm_eval as sle
from spiral_bench.analyze import AnalyzeInputError, analyze_file
from spiral_bench.cli import main as spiral_bench_main
from spiral_bench.lm_eval_samples import task_of
from spiral_bench.tasks import get_task
from test_lm_eval import FirstCharParity as _Parity
from spiral_bench.tasks.base import _REGISTRY, register


class FirstCharParity(_Parity):
    """Arithmetic problems graded so that a random tiny model scores about 1/2: correct iff the
    first character's code point has the parity of the gold answer (test_lm_eval's task, own name)."""

    name = "lmeval_samples_parity"


@pytest.fixture(scope="module", autouse=True)
def _parity_task():
    register(FirstCharParity.name)(FirstCharParity)
    yield
    _REGISTRY.pop(FirstCharParity.name, None)


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory) -> str:
    from spiral_bench.models import build_tiny, save
    d = tmp_path_factory.mktemp("tiny")
    save(*build_tiny("tiny", seed=0), d)
    return str(d)


def one(pattern: str) -> Path:
    files = glob.glob(pattern, recursive=True)
    assert len(files) == 1, files
    return Path(files[0])


def run_cli(argv: list[str]) -> tuple[int, str]:
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        rc = spiral_bench_main(argv)
    return rc, buf.getvalue()


def test_lm_eval_cli_samples_k5_analyzed(tiny_dir, tmp_path):
    """lm-eval's CLI (in-process, the task named by its tag) on a 5-sample task in sample_tasks' format, graded by a
    task a random model half solves: analyze's pass@1 and pass@5 equal lm-eval's own numbers, and
    its per-sample scores are spiral-bench's grader on the responses lm-eval logged."""
    folder = Path(sle.sample_tasks(5, tmp_path / "k5"))
    text = (folder / "spiral_arithmetic_k5.yaml").read_text()
    (folder / "parity_k5.yaml").write_text(
        text.replace("spiral_arithmetic_k5", "parity_k5").replace('"arithmetic"', f'"{FirstCharParity.name}"')
        .replace("tag: spiral_k5", "tag: spiral_parity_probe_k5"))
    out = tmp_path / "out"
    rc, _ = run_cli(["lm-eval", "run", "--model", "hf", "--model_args", f"pretrained={tiny_dir},dtype=float32",
                     "--device", "cpu", "--include_path", str(folder), "--tasks", "spiral_parity_probe_k5", "--limit", "6",
                     "--gen_kwargs", "max_gen_toks=4", "--batch_size", "64", "--output_path", str(out),
                     "--log_samples"])
    assert rc == 0
    samples = one(str(out / "**" / "samples_parity_k5_*.jsonl"))
    assert task_of(samples) == "parity_k5"
    lm = json.loads(one(str(out / "**" / "results_*.json")).read_text())["results"]["parity_k5"]
    rc, printed = run_cli(["analyze", str(samples), "--out", str(tmp_path / "an"), "--bootstrap", "200"])
    assert rc == 0 and "parity_k5: 6 problems" in printed
    s = json.loads((tmp_path / "an" / "summary.json").read_text())
    m = s["methods"]["parity_k5"]
    assert (m["n_problems"], m["n_samples_min"], m["n_samples_max"]) == (6, 5, 5)
    assert s["input"]["format"] == "lm-eval log_samples" and s["compute_unit"] == "samples"
    assert m["pass@k"]["1"]["mean"] == pytest.approx(lm["pass@1,all"], abs=1e-12)
    assert m["pass@k"]["1"]["mean"] == pytest.approx(lm["exact_match,all"], abs=1e-12)
    assert m["pass@k"]["5"]["mean"] == pytest.approx(lm["pass@5,all"], abs=1e-12)
    assert m["maj@k"]["5"]["mean"] == pytest.approx(lm["maj@5,all"], abs=1e-12)  # votes over the task's keys
    assert 0.0 < m["pass@k"]["1"]["mean"] < 1.0  # a non-trivial number, so equality means something
    task = get_task(FirstCharParity.name)
    problems = {p.id: p for p in task.problems("test", n=6)}
    for line in samples.read_text().splitlines():
        rec = json.loads(line)
        (comps,) = rec["filtered_resps"]
        assert rec["exact_match"] == [task.reward(problems[rec["doc"]["id"]], c) for c in comps]
    # issue 26, case 9: the same file logged with per-document metrics only (pass@1, pass@5, maj@5,
    # no per-sample exact_match; lm-eval's self-consistency tasks and our older k8 tasks log so):
    # pass@1 x 5 is each document's exact correct count, so pass@k equals lm-eval's own numbers
    per_doc = tmp_path / "samples_parity_k5_2026-01-01T00-00-00.jsonl"
    per_doc.write_text("".join(json.dumps({k: v for k, v in json.loads(line).items() if k != "exact_match"}) + "\n"
                               for line in samples.read_text().splitlines()))
    for how in ({}, {"metric": "pass@1"}):
        d = analyze_file(per_doc, tmp_path / f"per_doc{len(how)}", B=100, **how)
        pd_m = d["methods"]["parity_k5"]
        assert pd_m["n_samples_max"] == 5 and pd_m["maj@k"] == {}
        assert pd_m["pass@k"]["1"]["mean"] == pytest.approx(lm["pass@1,all"], abs=1e-12)
        assert pd_m["pass@k"]["5"]["mean"] == pytest.approx(lm["pass@5,all"], abs=1e-12)
    assert any("pass@1" in w for w in d["warnings"] + analyze_file(per_doc, tmp_path / "w", B=50)["warnings"])
    # --rescore through the task's own take_first_k (k = repeats) filter and process_results: every
    # repeat scored (lm-eval's filter refused one repeat alone: "Need at least 5 responses")
    rc, _ = run_cli(["analyze", str(per_doc), "--out", str(tmp_path / "re"), "--rescore", "--include-path",
                     str(folder), "--bootstrap", "100"])
    assert rc == 0
    re_m = json.loads((tmp_path / "re" / "summary.json").read_text())["methods"]["parity_k5"]
    assert re_m["n_samples_max"] == 5 and re_m["pass@k"]["1"]["mean"] == pytest.approx(lm["pass@1,all"], abs=1e-12)


def test_real_lm_eval_cli_files_analyzed(tiny_dir, tmp_path):
    """The `lm_eval` program in a subprocess on spiral_arithmetic_k3 (`lm-eval-path --samples 3`)
    and spiral_arithmetic (one sample): analyze reads both samples files."""
    rc, printed = run_cli(["lm-eval-path", "--samples", "3"])
    folder = printed.strip()
    assert rc == 0 and (Path(folder) / "spiral_arithmetic_k3.yaml").is_file()
    out = tmp_path / "out"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    cmd = [sys.executable, "-m", "lm_eval", "run", "--model", "hf",
           "--model_args", f"pretrained={tiny_dir},dtype=float32", "--device", "cpu",
           "--include_path", folder,
           "--tasks", "spiral_arithmetic_k3", "--limit", "4", "--gen_kwargs", "max_gen_toks=6",
           "--batch_size", "64", "--output_path", str(out), "--log_samples"]
    proc = subprocess.run(cmd, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    cmd1 = [*cmd[:cmd.index("--include_path")], "--include_path", sle.include_path(),
            "--tasks", "spiral_arithmetic", "--limit", "4", "--gen_kwargs", "max_gen_toks=6",
            "--batch_size", "64", "--output_path", str(tmp_path / "out1"), "--log_samples"]
    proc = subprocess.run(cmd1, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for res_dir, task, n in ((out, "spiral_arithmetic_k3", 3), (tmp_path / "out1", "spiral_arithmetic", 1)):
        samples = one(str(res_dir / "**" / f"samples_{task}_*.jsonl"))
        lm = json.loads(one(str(res_dir / "**" / "results_*.json")).read_text())["results"][task]
        s = analyze_file(samples, tmp_path / f"an_{task}", B=200)
        m = s["methods"][task]
        assert (m["n_problems"], m["n_samples_min"], m["n_samples_max"]) == (4, n, n)
        flt = "all" if n > 1 else "none"
        assert m["pass@k"]["1"]["mean"] == pytest.approx(lm[f"exact_match,{flt}"], abs=1e-12)
        if n > 1:
            assert m["pass@k"][str(n)]["mean"] == pytest.approx(lm[f"pass@{n},{flt}"], abs=1e-12)
            assert m["maj@k"][str(n)]["mean"] == pytest.approx(lm[f"maj@{n},{flt}"], abs=1e-12)


def lm_line(doc_id, flt, resps, **metrics):
    return {"doc_id": doc_id, "doc": {"q": doc_id}, "target": "1", "arguments": {}, "resps": [resps],
            "filtered_resps": [resps], "filter": flt, "metrics": list(metrics), **metrics}


def write_lines(path, lines):
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))
    return path


def test_several_filters_are_methods_and_one_response_lines(tmp_path):
    """lm-eval's own style (one extracted response per line, a scalar exact_match, two filters):
    each filter is a method; the pass@1 values are the mean exact_match of the lines."""
    lines = []
    for d, (a, b) in enumerate([(1, 1), (0, 1), (0, 0), (1, 0)]):
        lines += [lm_line(d, "strict-match", "7", exact_match=float(a)),
                  lm_line(d, "flexible-extract", "7", exact_match=float(b))]
    f = write_lines(tmp_path / "samples_gsm8k_2026-01-01T00-00-00.000001.jsonl", lines)
    s = analyze_file(f, tmp_path / "out", B=200)
    assert set(s["methods"]) == {"gsm8k/strict-match", "gsm8k/flexible-extract"}
    assert s["methods"]["gsm8k/strict-match"]["pass@k"]["1"]["mean"] == 0.5
    assert s["methods"]["gsm8k/flexible-extract"]["pass@k"]["1"]["mean"] == 0.5
    assert len(s["comparisons"]) == 2


def test_lm_eval_lines_errors_name_the_line(tmp_path):
    lines = [lm_line(0, "all", ["a", "b"], exact_match=[1.0, 0.0]),
             lm_line(1, "all", ["a", "b"], exact_match=0.5),          # one number for two responses
             lm_line(2, "all", ["a", "b"], acc=[1.0, 1.0]),           # no exact_match
             lm_line(3, "all", ["a", "b"], exact_match=[1.0, 2.0])]   # out of range
    f = write_lines(tmp_path / "samples_t_2026-01-01T00-00-00.jsonl", lines)
    with pytest.raises(AnalyzeInputError) as e:
        analyze_file(f, tmp_path / "out")
    msg = str(e.value)
    assert "line 2: exact_match is 0.5 for 2 response(s)" in msg
    assert "line 3: no metric 'exact_match'" in msg and "['acc']" in msg
    assert "line 4: correct must be a bool or a number in [0, 1], got 2.0" in msg
    s = analyze_file(write_lines(tmp_path / "samples_t_2026-01-01T00-00-01.jsonl", [lines[2]]), tmp_path / "o2",
                     B=100, metric="acc")   # --metric picks another per-sample metric
    assert s["methods"]["t"]["pass@k"]["2"]["mean"] == 1.0 and s["input"]["metric"] == "acc"


def test_multiple_choice_lines_are_one_sample_each(tmp_path):
    """A loglikelihood task (one request per choice, a scalar acc per doc) is one sample per doc."""
    lines = [{"doc_id": d, "doc": {}, "target": "0", "arguments": {}, "resps": [[[-1.0, False]], [[-2.0, True]]],
              "filtered_resps": [[-1.0, False], [-2.0, True]], "filter": "none", "metrics": ["acc"], "acc": a}
             for d, a in enumerate([1.0, 0.0, 1.0])]
    s = analyze_file(write_lines(tmp_path / "samples_arc_easy_2026-01-01T00-00-00.jsonl", lines), tmp_path / "o",
                     B=100, metric="acc")
    m = s["methods"]["arc_easy"]
    assert (m["n_problems"], m["n_samples_max"]) == (3, 1) and m["pass@k"]["1"]["mean"] == pytest.approx(2 / 3)


def test_rescore_scores_every_raw_repeat(tiny_dir, tmp_path):
    """A task with repeats 4 and lm-eval's default take_first filter logs one scalar exact_match per
    doc: analyze sees one sample per problem; with --rescore every raw repeat is scored by the task's
    own filter and process_results, which equals spiral-bench's grader on lm-eval's logged repeats."""
    probe = tmp_path / "probe"
    probe.mkdir()
    (probe / "parity_first4.yaml").write_text(
        f"include: {json.dumps(str(Path(sle.include_path()) / '_spiral_base.yaml'))}\ntask: parity_first4\n"
        f"repeats: 4\ndataset_kwargs: {{spiral_name: parity_first4, spiral_task: {FirstCharParity.name}}}\n"
        "generation_kwargs: {until: [\"\\n\"], max_gen_toks: 4, do_sample: true, temperature: 1.0}\n")
    out = tmp_path / "out"
    rc, _ = run_cli(["lm-eval", "run", "--model", "hf", "--model_args", f"pretrained={tiny_dir},dtype=float32",
                     "--device", "cpu", "--include_path", str(probe), "--tasks", "parity_first4", "--limit", "6",
                     "--batch_size", "64", "--output_path", str(out), "--log_samples"])
    assert rc == 0
    samples = one(str(out / "**" / "samples_parity_first4_*.jsonl"))
    lm = json.loads(one(str(out / "**" / "results_*.json")).read_text())["results"]["parity_first4"]
    plain = analyze_file(samples, tmp_path / "plain", B=100)["methods"]["parity_first4"]
    assert plain["n_samples_max"] == 1
    assert plain["pass@k"]["1"]["mean"] == pytest.approx(lm["exact_match,none"], abs=1e-12)
    rc, printed = run_cli(["analyze", str(samples), "--out", str(tmp_path / "re"), "--rescore",
                           "--include-path", str(probe), "--bootstrap", "100"])
    assert rc == 0
    s = json.loads((tmp_path / "re" / "summary.json").read_text())
    m = s["methods"]["parity_first4"]
    assert (m["n_problems"], m["n_samples_min"], m["n_samples_max"]) == (6, 4, 4) and s["input"]["rescored"]
    task = get_task(FirstCharParity.name)
    problems = {p.id: p for p in task.problems("test", n=6)}
    rewards = []
    for line in samples.read_text().splitlines():
        rec = json.loads(line)
        (raw,) = rec["resps"]
        assert len(raw) == 4
        rewards.append([task.reward(problems[rec["doc"]["id"]], r) for r in raw])
        assert rewards[-1][0] == rec["exact_match"]      # lm-eval scored the first repeat
    assert m["pass@k"]["1"]["mean"] == pytest.approx(sum(map(sum, rewards)) / 24, abs=1e-12)
    assert m["pass@k"]["4"]["mean"] == pytest.approx(sum(map(max, rewards)) / 6, abs=1e-12)
    assert 0 < m["pass@k"]["1"]["mean"] < m["pass@k"]["4"]["mean"]
