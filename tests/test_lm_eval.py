"""lm-eval integration (spiral_bench.lm_eval): task YAMLs, hooks, the `spiral` model type, the CLI.

References are independent of the code under test: brute-force pass@k / maj@k over a hand-labelled
pool, spiral-bench's own `run_scaffold` (with a fresh backend) for the `spiral` model type, and
lm-eval's own CLI in a subprocess for the task YAMLs. All offline (conftest sets HF_*_OFFLINE).
"""
from __future__ import annotations

import dataclasses
import glob
import json
import os
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

import spiral_bench.lm_eval as sle
from fakes import FakeTask, ScriptedBackend, random_policy
from lm_eval.api.instance import Instance
from spiral_bench.backends.base import SamplingConfig, derive_seed
from spiral_bench.config import ConfigError
from spiral_bench.lm_eval import hooks
from spiral_bench.lm_eval.model import SpiralLM
from spiral_bench.scaffolds import ScaffoldConfig, run_scaffold
from spiral_bench.tasks import get_task, register
from spiral_bench.tasks.arithmetic import ArithmeticTask

BASE = ["arithmetic", "countdown", "gsm8k", "math500", "aime24", "aime25"]
NAMES = {f"spiral_{t}{k}" for t in BASE for k in ("", "_k8")}
FAKE_ANSWERS = ["3", "1", "4", "1", "5", "9"]


class FirstCharParity(ArithmeticTask):
    """Arithmetic problems, graded leniently so a random tiny model scores about 1/2: the answer is
    the first character; correct iff its code point has the parity of the gold answer."""

    name = "lmeval_parity"

    def extract(self, completion):
        return completion[:1] if completion[:1] not in ("", "\n") else None

    def canonical(self, answer):
        return answer

    def reward(self, problem, completion):
        a = self.extract(completion)
        return float(a is not None and ord(a) % 2 == int(problem.answer) % 2)


@pytest.fixture(scope="module", autouse=True)
def _test_tasks():
    """Register this file's two test tasks for its tests only."""
    from spiral_bench.tasks.base import _REGISTRY
    register("lmeval_parity")(FirstCharParity)
    def lmeval_fake(**_):
        """A FakeTask with scripted answers."""
        return FakeTask(answers=FAKE_ANSWERS)
    register("lmeval_fake")(lmeval_fake)
    yield
    _REGISTRY.pop("lmeval_parity", None)
    _REGISTRY.pop("lmeval_fake", None)
    hooks._task.cache_clear()


def _results(out_dir: Path) -> dict:
    files = glob.glob(str(out_dir / "**" / "results_*.json"), recursive=True)
    assert len(files) == 1, files
    return json.loads(Path(files[0]).read_text())


def _samples(out_dir: Path, task: str) -> list[dict]:
    files = glob.glob(str(out_dir / "**" / f"samples_{task}_*.jsonl"), recursive=True)
    assert len(files) == 1, files
    return [json.loads(line) for line in Path(files[0]).read_text().splitlines()]


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory) -> str:
    from spiral_bench.models import build_tiny, save
    d = tmp_path_factory.mktemp("tiny")
    model, tok = build_tiny("tiny", seed=0)
    save(model, tok, d)
    return str(d)


# ------------------------------------------------------------------------------- YAMLs
def test_yamls_are_complete_and_explicit():
    from lm_eval.tasks._yaml_loader import load_yaml
    found = sle.validate_tasks()
    assert set(found) == NAMES
    for name, file in found.items():
        assert Path(file).parent == Path(sle.include_path())
        cfg = load_yaml(file, resolve_func=True)
        g = cfg["generation_kwargs"]
        assert cfg["output_type"] == "generate_until" and isinstance(g["max_gen_toks"], int) and g["max_gen_toks"] > 0
        if name.startswith(("spiral_arithmetic", "spiral_countdown")):
            assert g["until"] == ["\n"]
        if name.endswith("_k8"):
            assert cfg["repeats"] == 8 and g["do_sample"] is True
            assert cfg["filter_list"] == [{"name": "all", "filter": [{"function": "take_first_k", "k": 8}]}]
            assert [m["metric"] for m in cfg["metric_list"]] == ["exact_match", "pass@1", "pass@8", "maj@8"]
        else:
            assert cfg.get("repeats", 1) == 1 and [m["metric"] for m in cfg["metric_list"]] == ["exact_match"]
        if name.startswith("spiral_aime"):
            assert g["max_gen_toks"] == 32768  # AIME traces of reasoning models run long


def test_task_manager_docs_are_spiral_problems(data_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # nothing is read relative to the working directory
    monkeypatch.setenv("SPIRAL_BENCH_DATA", str(data_dir))
    tm = sle.task_manager(include_defaults=False)  # skip indexing lm-eval's thousands of tasks
    assert NAMES <= set(tm.all_tasks)
    loaded = tm.load(["spiral_arithmetic", "spiral_gsm8k_k8", "spiral_aime25"])["tasks"]
    for name, spiral in [("spiral_arithmetic", "arithmetic"), ("spiral_gsm8k_k8", "gsm8k"),
                         ("spiral_aime25", "aime25")]:
        lm_task = loaded[name]
        docs = lm_task.test_docs()
        task = get_task(spiral)
        problems = task.problems("test")
        assert len(docs) == len(problems)
        for i in (0, 1, len(problems) - 1):
            assert docs[i]["id"] == problems[i].id
            assert lm_task.doc_to_text(docs[i]) == task.prompt(problems[i])
            assert lm_task.doc_to_target(docs[i]) == problems[i].answer


# ------------------------------------------------------------------------------ scoring
def _brute(rewards, keys):
    """pass@1 = mean, pass@8 = max, maj@8 = mean correctness over the tied plurality keys."""
    votes = Counter(k for k in keys if k is not None)
    if not votes:
        maj = 0.0
    else:
        top = max(votes.values())
        tied = [k for k, c in votes.items() if c == top]
        corr = {k: sum(r for r, kk in zip(rewards, keys) if kk == k) / votes[k] for k in tied}
        maj = sum(corr.values()) / len(tied)
    return {"pass@1": sum(rewards) / len(rewards), "pass@8": max(rewards), "maj@8": maj}


@pytest.mark.parametrize("answers", [
    ["G", "G", "7", "7", "7", None, "G", "7"],      # wrong plurality (7 x4 vs gold x3)
    ["G", "G", "G", "5", "5", "5", None, None],     # tie gold/wrong -> 1/2
    [None] * 8,                                     # nobody answers
    ["G", "G", "G", "G", "G", "G", "G", "1"],
])
def test_process_results_k8_brute_force(answers):
    doc = hooks.problem_rows("arithmetic", n=3)[2]
    gold = doc["answer"]
    wrong = str((int(gold) + 1) % 100)
    comps, rewards, keys = [], [], []
    for a in answers:
        a = gold if a == "G" else (wrong if a == "7" else a)
        comps.append("1+2=3;junk" if a is None else f"9+9=18;#{a}\nignored #{gold}")
        rewards.append(float(a == gold))
        keys.append(a)
    got = hooks.process_results_k8(doc, [comps])
    assert got.pop("exact_match") == rewards  # the single-sample metric, one value per sample
    assert got == pytest.approx(_brute(rewards, keys), abs=1e-12)
    assert hooks.process_results(doc, [comps[0]]) == {"exact_match": rewards[0]}
    five = hooks.process_results_samples(doc, [comps[:5]])  # any number of samples
    assert five.pop("exact_match") == rewards[:5] and set(five) == {"pass@1", "pass@5", "maj@5"}
    assert five["pass@1"] == pytest.approx(sum(rewards[:5]) / 5) and five["pass@5"] == max(rewards[:5])
    with pytest.raises(hooks.SpiralTaskError, match="8 repeats"):
        hooks.process_results_k8(doc, [comps[:7]])


# -------------------------------------------------------------------- spiral model type
GEN = {"until": ["\n"], "max_gen_toks": 40, "do_sample": True, "temperature": 1.0}
SAMPLING = SamplingConfig(temperature=1.0, max_new_tokens=40, stop=("\n",))
SCAFFOLDS = [dict(scaffold="single"), dict(scaffold="parallel", n=3), dict(scaffold="majority", n=5),
             dict(scaffold="aggregate", n=4, set_size=2),
             dict(scaffold="rsa", population=4, subset=2, steps=2)]


def _policy():
    return random_policy(0.45, {f"q{i}": a for i, a in enumerate(FAKE_ANSWERS)})


@pytest.mark.parametrize("spec", SCAFFOLDS, ids=lambda s: s["scaffold"])
def test_spiral_model_equals_run_scaffold(spec):
    """Fast path (scripted policy): every scaffold, 3 repeats per doc as lm-eval clones them."""
    rows = hooks.problem_rows("lmeval_fake")
    R = 3
    reqs = []
    for i, row in enumerate(rows):
        inst = Instance("generate_until", row, (row["prompt"], dict(GEN)), 0, ("fake_lm_task", i, R))
        reqs += [inst] * R
    lm = SpiralLM.with_backend(ScriptedBackend(_policy()), seed=11, **spec)
    texts = lm.generate_until(reqs)
    task = FakeTask(answers=FAKE_ANSWERS)
    problems = task.problems()
    cfg = ScaffoldConfig(name=spec["scaffold"], **{k: v for k, v in spec.items() if k != "scaffold"})
    per_repeat = []
    for r in range(R):
        seed = 11 if r == 0 else derive_seed(11, "lm_eval_repeat", r)
        recs = run_scaffold(dataclasses.replace(cfg, seed=seed), ScriptedBackend(_policy()), task, problems, SAMPLING)
        got = [texts[b * R + r] for b in range(len(problems))]
        per_repeat.append(got)
        for p, rec, text in zip(problems, recs, got):
            want = rec.majority_correct if spec["scaffold"] == "rsa" else rec.correct
            assert task.reward(p, text) == want
            assert task.extract(text) == rec.answer
    assert per_repeat[0] != per_repeat[1]  # repeats are independent runs


def test_spiral_model_other_lm_eval_tasks_need_task_arg():
    ctx = [FakeTask(answers=FAKE_ANSWERS).prompt(p) for p in FakeTask(answers=FAKE_ANSWERS).problems()]
    reqs = [Instance("generate_until", {"text": c}, (c, dict(GEN)), 0, ("other", i, 1)) for i, c in enumerate(ctx)]
    with pytest.raises(ConfigError, match="task=NAME"):
        SpiralLM.with_backend(ScriptedBackend(_policy()), scaffold="majority", n=3).generate_until(reqs)
    lm = SpiralLM.with_backend(ScriptedBackend(_policy()), scaffold="majority", n=5, seed=2, task="lmeval_fake")
    texts = lm.generate_until(reqs)
    task = FakeTask(answers=FAKE_ANSWERS)
    from spiral_bench.tasks.base import Problem
    problems = [Problem(f"other/{i}", p.question, p.answer) for i, p in enumerate(task.problems())]
    recs = run_scaffold(ScaffoldConfig(name="majority", n=5, seed=2), ScriptedBackend(_policy()), task,
                        problems, SAMPLING)
    assert [task.extract(t) for t in texts] == [r.answer for r in recs]
    with pytest.raises(NotImplementedError, match="only generates"):
        lm.loglikelihood(reqs)
    with pytest.raises(ConfigError, match="populaton.*population"):
        SpiralLM.with_backend(None, scaffold="rsa", populaton=3)


# ---------------------------------------------------------------- lm-eval's own CLI (a)
def test_lm_eval_cli_runs_our_k8_task(tiny_dir, tmp_path):
    out = tmp_path / "out"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    cmd = [sys.executable, "-m", "lm_eval", "run", "--model", "hf",
           "--model_args", f"pretrained={tiny_dir},dtype=float32", "--device", "cpu",
           "--include_path", sle.include_path(), "--tasks", "spiral_arithmetic_k8", "--limit", "8",
           "--gen_kwargs", "max_gen_toks=12", "--batch_size", "64", "--output_path", str(out), "--log_samples"]
    proc = subprocess.run(cmd, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = _results(out)["results"]["spiral_arithmetic_k8"]
    for m in ("pass@1", "pass@8", "maj@8"):
        assert 0.0 <= res[f"{m},all"] <= 1.0
    samples = _samples(out, "spiral_arithmetic_k8")
    assert len(samples) == 8
    task = get_task("arithmetic")
    for s in samples:  # lm-eval's per-doc numbers equal the brute force over its own 8 responses
        (comps,) = s["filtered_resps"]  # one request per doc; its 8 responses kept by the filter
        assert len(comps) == 8
        problem = next(p for p in task.problems("test", n=8) if p.id == s["doc"]["id"])
        want = _brute([task.reward(problem, c) for c in comps], [task.canonical(task.extract(c)) for c in comps])
        assert {m: s[m] for m in want} == pytest.approx(want, abs=1e-12)


# ------------------------------------------------- `spiral-bench lm-eval --model spiral` (b)
def test_run_cli_spiral_model_equals_spiral_bench(tiny_dir, tmp_path):
    from spiral_bench.evaluate import make_backend  # the backend `spiral-bench eval` uses
    probe = tmp_path / "probe"
    probe.mkdir()
    (probe / "parity_probe.yaml").write_text(
        f"include: {Path(sle.include_path()) / '_spiral_base.yaml'}\ntask: parity_probe\n"
        "dataset_kwargs: {spiral_name: parity_probe, spiral_task: lmeval_parity, spiral_options: {}}\n"
        "generation_kwargs: {until: [\"\\n\"], max_gen_toks: 64, do_sample: false, temperature: 0.0}\n")
    out = tmp_path / "out"
    scaffold = dict(population=3, subset=2, steps=1, seed=3)
    from spiral_bench.cli import main as spiral_bench_main  # `spiral-bench lm-eval ...`
    rc = spiral_bench_main(["lm-eval", "--model", "spiral", "--model_args",
                      f"pretrained={tiny_dir},scaffold=rsa," + ",".join(f"{k}={v}" for k, v in scaffold.items()),
                      "--include_path", str(probe), "--tasks", "spiral_arithmetic,parity_probe", "--limit", "6",
                      "--gen_kwargs", "do_sample=True,temperature=1.0,max_gen_toks=12",
                      "--output_path", str(out), "--log_samples"])
    assert rc == 0
    results = _results(out)["results"]
    sampling = SamplingConfig(temperature=1.0, max_new_tokens=12, stop=("\n",))
    for lm_name, spiral in [("spiral_arithmetic", "arithmetic"), ("parity_probe", "lmeval_parity")]:
        task = get_task(spiral)
        problems = task.problems("test", n=6)
        backend = make_backend(tiny_dir)
        recs = run_scaffold(ScaffoldConfig(name="rsa", **scaffold), backend, task, problems, sampling)
        by_id = {s["doc"]["id"]: s for s in _samples(out, lm_name)}
        assert sorted(by_id) == sorted(p.id for p in problems)
        for p, rec in zip(problems, recs):
            s = by_id[p.id]
            assert s["exact_match"] == rec.majority_correct          # rsa: the final majority answer
            assert task.extract(s["filtered_resps"][0]) == rec.answer
        mean = sum(r.majority_correct for r in recs) / len(recs)
        assert results[lm_name]["exact_match,none"] == pytest.approx(mean, abs=1e-12)
        if spiral == "lmeval_parity":
            assert 0.0 < mean < 1.0  # a non-trivial number, so equality means something


# ------------------------------------------------------------------- clear errors (c)
def test_broken_yaml_names_task_and_file(tmp_path, capsys):
    copy = tmp_path / "copy"
    shutil.copytree(sle.include_path(), copy, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    broken = copy / "spiral_gsm8k.yaml"
    broken.write_text(broken.read_text().replace("generation_kwargs:", "generation_kwargs: [\n"))
    with pytest.raises(sle.SpiralTaskError) as e:
        sle.validate_tasks(copy)
    assert "'spiral_gsm8k'" in str(e.value) and str(broken) in str(e.value)
    user = tmp_path / "user"
    user.mkdir()
    (user / "my_probe.yaml").write_text("task: my_probe\ndoc_to_text: [unclosed\n")
    rc = sle.run_cli(["run", "--model", "hf", "--model_args", "pretrained=none", "--include_path", str(user),
                      "--tasks", "my_probe"])
    err = capsys.readouterr().err
    assert rc == 2 and "'my_probe'" in err and str(user / "my_probe.yaml") in err
    assert "Tasks not found" not in err


def test_missing_data_dir_names_task_and_file(tmp_path, monkeypatch, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setenv("SPIRAL_BENCH_DATA", str(empty))
    yaml_file = str(Path(sle.include_path()) / "spiral_gsm8k.yaml")
    rc = sle.run_cli(["run", "--model", "hf", "--model_args", "pretrained=none", "--tasks", "spiral_gsm8k"])
    err = capsys.readouterr().err
    assert rc == 2 and "'spiral_gsm8k'" in err and yaml_file in err and str(empty / "gsm8k" / "test.jsonl") in err
    # lm-eval's own loading path (custom_dataset hook) says the same, not "task not found"
    with pytest.raises(hooks.SpiralTaskError) as e:
        sle.task_manager(include_defaults=False).load(["spiral_math500"])
    assert "'spiral_math500'" in str(e.value) and str(empty / "math500" / "test.jsonl") in str(e.value)
    monkeypatch.delenv("SPIRAL_BENCH_DATA")
    with pytest.raises(hooks.SpiralTaskError, match=r"spiral_aime24.*\$SPIRAL_BENCH_DATA"):
        hooks.load_dataset(spiral_task="aime24", spiral_name="spiral_aime24")
    assert hooks.load_dataset(spiral_task="countdown", spiral_n=3)["test"].num_rows == 3  # procedural: no data
