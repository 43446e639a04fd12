"""spiral_bench.fileio: atomic writes keep the old file on failure, leave no temp files, are
world-readable; swap_dir replaces a directory; read_jsonl stops at a torn last line."""
import json
import stat

import pandas as pd
import pytest

from spiral_bench.fileio import read_jsonl, swap_dir, write_atomic, write_json


def test_write_atomic_text_bytes_and_callable(tmp_path):
    p = tmp_path / "sub" / "a.txt"
    write_atomic(p, "héllo")
    assert p.read_text(encoding="utf-8") == "héllo"
    write_atomic(p, b"\x00\x01")
    assert p.read_bytes() == b"\x00\x01"
    df = pd.DataFrame({"x": [1, 2]})
    write_atomic(tmp_path / "t.parquet", lambda f: df.to_parquet(f, index=False))
    assert pd.read_parquet(tmp_path / "t.parquet").equals(df)
    assert stat.S_IMODE(p.stat().st_mode) == 0o644


def test_write_atomic_failure_keeps_old_file_and_no_temp(tmp_path):
    p = tmp_path / "a.json"
    write_json(p, {"v": 1})

    def boom(f):
        f.write(b'{"v": 2, "half')
        raise RuntimeError("killed mid-write")

    with pytest.raises(RuntimeError):
        write_atomic(p, boom)
    assert json.loads(p.read_text()) == {"v": 1}
    assert sorted(x.name for x in tmp_path.iterdir()) == ["a.json"]
    with pytest.raises(ValueError):  # allow_nan=False refuses NaN before anything is replaced
        write_json(p, {"v": float("nan")}, allow_nan=False)
    assert json.loads(p.read_text()) == {"v": 1}


def test_swap_dir(tmp_path):
    target, new = tmp_path / "ckpt", tmp_path / ".ckpt-new"
    target.mkdir()
    (target / "old").write_text("1")
    new.mkdir()
    (new / "w").write_text("2")
    swap_dir(new, target)
    assert [x.name for x in target.iterdir()] == ["w"] and not new.exists()
    assert sorted(x.name for x in tmp_path.iterdir()) == ["ckpt"]


def test_read_jsonl_stops_at_torn_line(tmp_path):
    p = tmp_path / "m.jsonl"
    p.write_text('{"step": 1}\n{"step": 2}\n{"step": 3, "lo')
    assert read_jsonl(p) == [{"step": 1}, {"step": 2}]
