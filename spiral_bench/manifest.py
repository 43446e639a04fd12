"""The facts a run's manifest.json records: package versions, git commit, hardware, data-file
hashes, and `Manifest`, the file kept up to date as stages run (status, wall seconds summed over
attempts, peak resident memory when a stage ends).
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import platform
import subprocess
import time
from contextlib import contextmanager
from pathlib import Path

from .fileio import write_json
from .jobs import peak_rss_mb

PACKAGES = ("spiral-bench", "torch", "transformers", "tokenizers", "datasets", "numpy", "pandas", "scipy",
            "pyarrow", "math-verify", "lm_eval", "trl", "vllm")


def versions() -> dict:
    """Python's version and those of PACKAGES that are installed."""
    from importlib.metadata import PackageNotFoundError, version
    out = {"python": platform.python_version()}
    for p in PACKAGES:
        try:
            out[p] = version(p)
        except PackageNotFoundError:
            pass
    return out


def git_info() -> dict:
    """The commit of this checkout and whether tracked files differ from it (None: no git)."""
    root = Path(__file__).resolve().parents[1]
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True,
                                timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return {"commit": commit or None, "dirty": bool(dirty)}
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}


def hardware(device: str) -> dict:
    """Platform, CPU count, torch threads, the device (and the GPU's name and count where CUDA is)."""
    import torch
    hw = {"platform": platform.platform(), "machine": platform.machine(), "processor": platform.processor(),
          "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(), "device": device}
    if torch.cuda.is_available():
        hw["gpu"] = torch.cuda.get_device_name(0)
        hw["gpu_count"] = torch.cuda.device_count()
    return hw


def data_files(task) -> dict:
    """sha256 of every local data file the task reads (procedural tasks read none)."""
    d, files = getattr(task, "data_dir", None), getattr(task, "files", {}) or {}
    out = {}
    for rel in files.values():
        p = Path(d, rel) if d else None
        if p is not None and p.is_file():
            out[str(p)] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


class Manifest:
    """manifest.json kept up to date as stages run (status, wall seconds summed over attempts)."""

    def __init__(self, path: Path, base: dict):
        old = json.loads(path.read_text()) if path.is_file() else {}
        self.path, self.data = path, {**base, "stages": old.get("stages", {}), "started": old.get("started") or now()}
        self.echo = lambda line: print(line, flush=True)    # tqdm's write while a stages bar is shown
        self.save()

    def save(self) -> None:
        write_json(self.path, self.data, default=str)

    def start(self, name: str, quiet: bool = False) -> dict:
        st = self.data["stages"].setdefault(name, {"seconds": 0.0})
        st["status"] = "running"
        self.save()
        self.echo(f"== {name}" + (" started" if quiet else ""))
        return st

    def finish(self, name: str, seconds: float, rss_mb: float, status: str, announce: bool = False) -> None:
        st = self.data["stages"][name]
        st["status"] = status
        st["seconds"] = round(st.get("seconds", 0.0) + seconds, 2)
        st["peak_rss_mb"] = round(rss_mb, 1)
        self.save()
        if announce:
            self.echo(f"== {name} {status} ({seconds:.0f} s)")

    @contextmanager
    def stage(self, name: str):
        st = self.start(name)
        t0, status = time.perf_counter(), "failed"
        try:
            yield st
            status = "done"
        finally:
            self.finish(name, time.perf_counter() - t0, peak_rss_mb(), status)


def now() -> str:
    """UTC now, ISO 8601 to the second."""
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
