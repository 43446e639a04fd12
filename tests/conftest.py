"""Test set-up: offline hub, the shared data folder, and a session-wide tiny model fixture."""
import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("SPIRAL_BENCH_DATA", str((ROOT.parent / "shared" / "data").resolve()))

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def data_dir() -> Path:
    d = Path(os.environ["SPIRAL_BENCH_DATA"])
    assert d.is_dir(), f"SPIRAL_BENCH_DATA={d} does not exist; point it at shared/data"
    return d
