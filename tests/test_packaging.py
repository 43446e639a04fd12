"""Packaging: the wheel adds one top-level name; CI runs exactly the README's test command."""
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_wheel_has_single_top_level_package(tmp_path):
    r = subprocess.run([sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir",
                        str(tmp_path), str(ROOT)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    (wheel,) = tmp_path.glob("*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    top = {n.split("/")[0] for n in names}
    assert top == {"spiral_bench", "spiral_bench-0.1.0.dist-info"}, top
    for sub in ("tasks", "trainers", "baselines"):
        assert f"spiral_bench/{sub}/__init__.py" in names
    assert "spiral_bench/baselines/published.yaml" in names
    assert any(n.startswith("spiral_bench/presets/") and n.endswith(".yaml") for n in names)


def test_ci_runs_the_readme_test_command():
    ci = next(l for l in (ROOT / ".ci" / "run").read_text().splitlines()
              if l.startswith("python3 -m venv") and "pytest" in l)
    readme = (ROOT / "README.md").read_text()
    assert ci in readme, f"README must contain the exact CI test command:\n{ci}"


def test_cli_help_runs():
    r = subprocess.run(["spiral-bench", "--help"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "tasks" in r.stdout
