"""The committed data excerpts (tests/fixtures/data) are true excerpts of the benchmark files: every
line is the line of the full file that make_fixtures.EXCERPTS names, byte for byte, and the whole
folder stays small. The full-file check runs where $SPIRAL_BENCH_DATA has the full files (CI)."""
from pathlib import Path

import pytest

from conftest import FIXTURE_DATA, FULL_DATA
from fixtures.make_fixtures import EXCERPTS


def test_excerpts_are_small_and_listed():
    files = sorted(p for p in FIXTURE_DATA.rglob("*.jsonl"))
    assert [str(p.relative_to(FIXTURE_DATA)) for p in files] == sorted(EXCERPTS)
    assert sum(p.stat().st_size for p in files) < 400_000
    for rel, keep in EXCERPTS.items():
        assert len((FIXTURE_DATA / rel).read_bytes().splitlines()) == len(keep) >= 15, rel
    assert "licen" in (FIXTURE_DATA / "README.md").read_text().lower()


@pytest.mark.skipif(FULL_DATA is None, reason="full benchmark files: set SPIRAL_BENCH_DATA (CI does)")
def test_excerpts_are_lines_of_the_full_files():
    for rel, keep in EXCERPTS.items():
        full = Path(FULL_DATA, rel).read_bytes().splitlines()
        mine = (FIXTURE_DATA / rel).read_bytes().splitlines()
        assert mine == [full[i] for i in keep], rel
