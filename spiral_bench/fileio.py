"""Crash-safe file writing and JSONL reading shared by the trainer, sweep, analysis, report and
run driver: a reader never sees a half-written file.

`write_atomic`: write to a temp file in the target's folder, flush + fsync, chmod 0644 (mkstemp
makes 0600), then `os.replace` over the target (atomic on POSIX); on any error the temp file is
removed and the old target is untouched. `swap_dir`: the same for a whole directory (the old copy
is moved aside first and removed last). `read_jsonl`: rows of a JSON-lines file that a killed
writer may have left with a torn last line, which ends the file.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable, IO


def write_atomic(path: str | os.PathLike, data: str | bytes | Callable[[IO[bytes]], None]) -> None:
    """Atomically replace `path` with `data` (text is UTF-8 encoded; a callable gets the binary
    file object and writes into it, e.g. `lambda f: df.to_parquet(f)`)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            if callable(data):
                data(f)
            else:
                f.write(data.encode("utf-8") if isinstance(data, str) else data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_json(path: str | os.PathLike, obj, **dumps_kwargs) -> None:
    """`write_atomic(path, json.dumps(obj, **dumps_kwargs))` (indent=1 unless given)."""
    dumps_kwargs.setdefault("indent", 1)
    write_atomic(path, json.dumps(obj, **dumps_kwargs))


def swap_dir(tmp: str | os.PathLike, target: str | os.PathLike) -> None:
    """Replace directory `target` by the finished directory `tmp` (old copy kept as .<name>.old
    until the new one is in place, then removed)."""
    tmp, target = Path(tmp), Path(target)
    old = target.with_name(f".{target.name}.old")
    if old.exists():
        shutil.rmtree(old)
    if target.exists():
        os.replace(target, old)
    os.replace(tmp, target)
    shutil.rmtree(old, ignore_errors=True)


def read_jsonl(path: str | os.PathLike) -> list[dict]:
    """Rows of a JSON-lines file; a line that does not parse (a torn write) ends the file."""
    rows = []
    for line in Path(path).read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            break
    return rows
