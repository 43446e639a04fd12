"""Declared dependency floors: the constraints file CI installs them from (`.ci/min_constraints.py`),
and library behaviour the floors exist for, checked where an old release breaks it silently.

CI's minimum-versions step installs every direct dependency at its declared lower bound and runs
the unit tests; these tests make a too-low floor fail there with a message that names it.
"""
from __future__ import annotations

import importlib.metadata
import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / ".ci" / "min_constraints.py"


def _script():
    spec = importlib.util.spec_from_file_location("min_constraints", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


# --- library behaviour the floors exist for ---------------------------------------------------------
EQUIVALENT = [  # MATH-style gold, equivalent prediction: only math-verify can tell (no plain numbers)
    ("\\left( 3, \\frac{\\pi}{2} \\right)", "(3,\\pi/2)"),
    ("\\frac{\\sqrt{2}}{2}", "\\sqrt{2}/2"),
    ("x^3+3x-6", "3x + x^3 - 6"),
]


@pytest.mark.parametrize("gold,pred", EQUIVALENT)
def test_math_verify_with_its_timeouts_off_grades_equivalent_answers_equal(gold, pred):
    """The graders call math-verify with its own signal timeouts off (None). math-verify 0.7 then
    calls signal.alarm(None), logs the TypeError and returns an empty parse: every MATH answer that
    needs math-verify was graded wrong, silently. 0.8 accepts None."""
    import math_verify
    from spiral_bench.tasks.graders import math_equal

    cfg = [math_verify.LatexExtractionConfig()]
    g = math_verify.parse("\\boxed{" + gold + "}", cfg, parsing_timeout=None)
    p = math_verify.parse("\\boxed{" + pred + "}", cfg, parsing_timeout=None)
    version = importlib.metadata.version("math-verify")
    assert g and p, f"math-verify {version} parses nothing with parsing_timeout=None"
    assert math_verify.verify(g, p, timeout_seconds=None), f"math-verify {version}: {gold} != {pred}"
    assert math_equal(gold, pred)
    assert not math_equal(gold, pred + "+1")


# --- the constraints file --------------------------------------------------------------------------
def test_floor_of_a_requirement():
    floor = _script().floor
    assert floor("torch>=2.13") == ("torch", "2.13")
    assert floor("lm-eval[hf]>=0.4.12,<0.5") == ("lm-eval", "0.4.12")
    assert floor("trl==1.16.0") == ("trl", "1.16.0")
    assert floor("Foo_Bar.baz ~= 1.2 ; python_version >= '3.11'") == ("foo-bar-baz", "1.2")
    for bad in ("numpy", "numpy<3", "numpy>1.2", "x>=1,>=2"):
        with pytest.raises(ValueError, match="lower bound"):
            floor(bad)


def test_constraints_pin_every_direct_dependency_to_its_floor(tmp_path):
    """One `name==floor` line per requirement of [project] and the dev extra, extras dropped
    (a constraints file cannot carry them); a requirement without a floor is an error."""
    mod = _script()
    project = mod.tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    lines = mod.constraints()
    names = [line.split("==")[0] for line in lines]
    assert len(lines) == len(project["dependencies"]) + len(project["optional-dependencies"]["dev"])
    assert len(set(names)) == len(names) and "lm-eval" in names and not any("[" in line for line in lines)
    for line in lines:
        name, version = line.split("==")
        assert version[0].isdigit() and "," not in version, line

    py = tmp_path / "pyproject.toml"
    py.write_text('[project]\nname = "x"\ndependencies = ["a[extra]>=1.2,<2", "b==3.0"]\n'
                  '[project.optional-dependencies]\ndev = ["c>=0.1"]\n')
    out = tmp_path / "c.txt"
    r = subprocess.run([sys.executable, str(SCRIPT), "--pyproject", str(py), "-o", str(out)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert [l for l in out.read_text().splitlines() if not l.startswith("#")] == ["a==1.2", "b==3.0", "c==0.1"]
    py.write_text('[project]\nname = "x"\ndependencies = ["a"]\n[project.optional-dependencies]\ndev = []\n')
    r = subprocess.run([sys.executable, str(SCRIPT), "--pyproject", str(py)], capture_output=True, text=True)
    assert r.returncode == 2 and "'a'" in r.stderr and "lower bound" in r.stderr
