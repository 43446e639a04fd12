"""Test set-up: offline hub, benchmark data, a throw-away model cache, and one session-wide smoke run
of `spiral-bench run` (SFT base, GRPO, SPIRAL, smoke sweep, analysis, report).

Benchmark data: every test that reads benchmark files takes the `data_dir` fixture, which runs it
twice: on the committed excerpts (tests/fixtures/data, always) and on the full files of the folder
that $SPIRAL_BENCH_DATA names when the session starts (skipped, with the reason, where it is unset;
CI sets it). Library code that falls back on $SPIRAL_BENCH_DATA sees the excerpts.
"""
import contextlib
import io
import os
import re
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# the real vLLM engine on the CPU (`pytest -m vllm`): eager and in-process. A default engine start is
# ~50 s there (torch.compile, and spawning vLLM's engine-core and worker processes, each importing
# vllm); this one ~4 s after the first (spiral_bench/backends/vllm.py; BENCHMARKS.md, "CI time").
# Tests of the engine's own processes (tests/test_vllm_eval.py) put the defaults back.
os.environ.setdefault("SPIRAL_BENCH_VLLM_ENGINE_ARGS", '{"enforce_eager": true, "distributed_executor_backend": "uni"}')
os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
ROOT = Path(__file__).resolve().parents[1]
FIXTURE_DATA = ROOT / "tests" / "fixtures" / "data"
FULL_DATA = os.environ.get("SPIRAL_BENCH_DATA") or None  # the full benchmark files, where the caller has them
os.environ["SPIRAL_BENCH_DATA"] = str(FIXTURE_DATA)
os.environ.setdefault("SPIRAL_BENCH_CACHE", tempfile.mkdtemp(prefix="spiral-bench-test-cache-"))

import pytest  # noqa: E402


# records per file in the full benchmark files (README.md, "Data")
FULL_COUNTS = {"gsm8k/test.jsonl": 1319, "gsm8k/train.jsonl": 7473, "math500/test.jsonl": 500,
               "aime/aime24.jsonl": 30, "aime/aime25.jsonl": 30, "countdown/countdown_cd3_test.jsonl": 256}


@pytest.fixture(scope="session", params=["excerpt", "full"])
def data_dir(request) -> Path:
    """A benchmark data folder: the committed excerpts, then the full files where $SPIRAL_BENCH_DATA has them."""
    if request.param == "excerpt":
        return FIXTURE_DATA
    if FULL_DATA is None:
        pytest.skip("full benchmark files: set SPIRAL_BENCH_DATA to a data folder (README.md, 'Data'); "
                    "the excerpts in tests/fixtures/data ran instead")
    d = Path(FULL_DATA)
    assert d.is_dir(), f"SPIRAL_BENCH_DATA={d} is not a folder"
    return d


@pytest.fixture(scope="session")
def data_counts(data_dir) -> dict[str, int]:
    """Records per file in `data_dir`: FULL_COUNTS for the full files, the excerpt sizes for the excerpts."""
    if data_dir != FIXTURE_DATA:
        return FULL_COUNTS
    from fixtures.make_fixtures import EXCERPTS
    return {rel: len(lines) for rel, lines in EXCERPTS.items()}


# A few-second `spiral-bench run`: a 30-step SFT base (near-random, so traces run to max length and
# GRPO's G = 24 matches SPIRAL's 8 + 4 x 4 traces), 2 RL steps of 2 prompts, the smoke grid.
# SMOKE_SIZE_FLAGS shrink any documented `spiral-bench run` or `train` to this size (tests/test_docs.py).
SMOKE_SFT_FLAGS = ["--set", "sft.steps=30", "--set", "sft.eval_problems=6", "--set", "sft.eval_samples=4",
                   "--set", "sft.max_new_tokens=16"]
SMOKE_TRAIN_FLAGS = ["--steps", "2", *SMOKE_SFT_FLAGS, "--set", "prompts_per_step=2", "--set", "group_size=24",
                     "--set", "max_new_tokens=16", "--set", "spiral_max_new_tokens=16", "--no-progress"]
SMOKE_SIZE_FLAGS = ["--budget-grid", "smoke", "--bootstrap", "200", *SMOKE_TRAIN_FLAGS]
SMOKE_RUN_ARGS = ["run", *SMOKE_SIZE_FLAGS]   # the README's main job (`spiral-bench run`) at smoke size


@pytest.fixture(scope="session")
def workdir(tmp_path_factory) -> Path:
    """The folder documented commands run in (tests/test_docs.py); its results/ is the smoke run's
    results root, so the README's main job at smoke size finds the smoke run done."""
    return tmp_path_factory.mktemp("work")


@pytest.fixture(scope="session")
def smoke_run(workdir):
    """(run folder, stdout of the command, wall seconds) of one smoke `spiral-bench run` (SPIRAL and
    its matched GRPO baseline)."""
    from spiral_bench.cli import main

    out = workdir / "results"
    buf = io.StringIO()
    t0 = time.perf_counter()
    with contextlib.redirect_stdout(buf):
        rc = main(SMOKE_RUN_ARGS + ["--out", str(out)])
    seconds = time.perf_counter() - t0
    assert rc == 0, buf.getvalue()[-3000:]
    run_dir = Path(re.findall(r"(\S+)[/\\]report\.html", buf.getvalue())[-1])
    assert (run_dir / "run.yaml").is_file()
    return run_dir, buf.getvalue(), seconds
