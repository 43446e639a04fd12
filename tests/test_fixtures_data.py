"""The committed data excerpts (tests/fixtures/data) are true excerpts of the benchmark files: every
line is the line of the full file that make_fixtures.EXCERPTS names, byte for byte, every excerpt's
source file has its sha256 in the fixtures' README (and the full files have that hash), and the whole
folder stays small. The full-file checks run where $SPIRAL_BENCH_DATA has the full files (CI)."""
import hashlib
import re
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


def source_hashes() -> dict[str, str]:
    """path -> sha256 of the full source file, as tests/fixtures/data/README.md lists them."""
    text = (FIXTURE_DATA / "README.md").read_text()
    return dict(re.findall(r"^(\S+\.jsonl)\s+([0-9a-f]{64})$", text, re.M))


def test_every_excerpt_names_its_source_hash():
    assert set(source_hashes()) == set(EXCERPTS)


@pytest.mark.skipif(FULL_DATA is None, reason="full benchmark files: set SPIRAL_BENCH_DATA (CI does)")
def test_full_files_have_the_listed_hashes():
    for rel, digest in source_hashes().items():
        assert hashlib.sha256(Path(FULL_DATA, rel).read_bytes()).hexdigest() == digest, rel
