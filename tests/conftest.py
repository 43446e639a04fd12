"""Test set-up: offline hub, the shared data folder, a throw-away model cache, and one session-wide
smoke run of `spiral-bench run` (SFT base, GRPO, SPIRAL, smoke sweep, analysis, report)."""
import contextlib
import io
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("SPIRAL_BENCH_DATA", str((ROOT.parent / "shared" / "data").resolve()))
os.environ.setdefault("SPIRAL_BENCH_CACHE", tempfile.mkdtemp(prefix="spiral-bench-test-cache-"))

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def data_dir() -> Path:
    d = Path(os.environ["SPIRAL_BENCH_DATA"])
    assert d.is_dir(), f"SPIRAL_BENCH_DATA={d} does not exist; point it at shared/data"
    return d


# A few-second `spiral-bench run`: a 30-step SFT base (near-random, so traces run to max length and
# GRPO's G = 24 matches SPIRAL's 8 + 4 x 4 traces), 2 RL steps of 2 prompts, the smoke grid.
SMOKE_RUN_ARGS = ["run", "--method", "both", "--budget-grid", "smoke", "--steps", "2", "--bootstrap", "200",
                  "--set", "sft.steps=30", "--set", "sft.eval_problems=6", "--set", "sft.eval_samples=4",
                  "--set", "sft.max_new_tokens=16", "--set", "prompts_per_step=2", "--set", "group_size=24",
                  "--set", "max_new_tokens=16", "--set", "spiral_max_new_tokens=16", "--no-progress"]


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory):
    """(run folder, stdout of the command, wall seconds) of one smoke `spiral-bench run --method both`."""
    from spiral_bench.cli import main

    out = tmp_path_factory.mktemp("results")
    buf = io.StringIO()
    t0 = time.perf_counter()
    with contextlib.redirect_stdout(buf):
        rc = main(SMOKE_RUN_ARGS + ["--out", str(out)])
    seconds = time.perf_counter() - t0
    assert rc == 0, buf.getvalue()[-3000:]
    (run_dir,) = [p for p in out.iterdir() if (p / "run.yaml").is_file()]
    return run_dir, buf.getvalue(), seconds
