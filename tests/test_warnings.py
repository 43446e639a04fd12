"""No DeprecationWarning / FutureWarning from the project's own calls into its libraries.

Two nets, because a library's deprecation warning names whichever frame its `stacklevel` points at:
- pyproject's `filterwarnings` turn Deprecation/FutureWarnings whose issuing module is ours
  (`spiral_bench.*`: pandas, numpy, the stdlib point `stacklevel` at their caller) into errors in
  every test (`test_deprecations_issued_from_project_modules_are_errors` checks those filters);
- transformers' renamed keyword arguments (`past_key_values` -> `cache` in 5.24) warn from inside
  `nn.Module.__call__`, i.e. from torch's frame, so no module filter sees them. The tests below run
  the whole job (`spiral-bench run`: SFT base, GRPO, SPIRAL, sweep, analysis, report), a LoRA
  training run and the sampler's plain transformers path with every warning recorded along with
  its call stack, and fail on any Deprecation/Future/PendingDeprecationWarning raised while a
  frame of the project's own modules is on the stack.
"""
from __future__ import annotations

import contextlib
import io
import os
import traceback
import warnings
from pathlib import Path

import pytest

import spiral_bench
import spiral_bench.tasks
import spiral_bench.trainers

OURS = tuple(str(Path(m.__file__).resolve().parent) + os.sep
             for m in (spiral_bench, spiral_bench.tasks, spiral_bench.trainers))
DEPRECATIONS = (DeprecationWarning, PendingDeprecationWarning, FutureWarning)


@contextlib.contextmanager
def deprecations_via_our_code():
    """Yields a list that collects one line per Deprecation/Future/PendingDeprecationWarning raised
    in the block while a frame of spiral_bench (or its tasks / trainers) is on the call stack:
    category, message, where it was issued and the innermost project frame. Every occurrence counts
    ("always"); filters that project code installs itself inside the block still apply."""
    found: list[str] = []

    def record(message, category, filename, lineno, file=None, line=None):
        if not issubclass(category, DEPRECATIONS):
            return
        ours = [f for f in traceback.extract_stack()[:-1] if os.path.abspath(f.filename).startswith(OURS)]
        if ours:
            found.append(f"{category.__name__}: {message} [issued at {filename}:{lineno}; "
                         f"our call: {ours[-1].filename}:{ours[-1].lineno} in {ours[-1].name}]")

    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.showwarning = record
        yield found


def test_recorder_sees_a_deprecation_raised_under_our_frames_only():
    """The recorder itself: a library-style deprecation called back from a project function
    (`run_with_timeout` runs its callable in its own frame) is caught; the same warning with no
    project frame on the stack is not."""
    from spiral_bench.tasks.graders import run_with_timeout

    def deprecated_api():
        warnings.warn("old_api is deprecated", FutureWarning, stacklevel=2)
        return True

    with deprecations_via_our_code() as found:
        deprecated_api()
    assert found == []
    with deprecations_via_our_code() as found:
        assert run_with_timeout(deprecated_api, 5.0, False) is True
    assert len(found) == 1 and "old_api is deprecated" in found[0] and "graders.py" in found[0]


def test_deprecations_issued_from_project_modules_are_errors():
    """pyproject's filterwarnings: a Deprecation/FutureWarning whose issuing module is ours is an
    error; the same warning from a library's module stays a warning."""
    for category in (DeprecationWarning, FutureWarning):
        for module in ("spiral_bench.sampling", "spiral_bench.tasks.graders", "spiral_bench.trainers.loop"):
            with pytest.raises(category):
                warnings.warn_explicit("x is deprecated", category, f"{module}.py", 1, module=module)
        with warnings.catch_warnings(record=True) as seen:  # the active filters stay in force
            warnings.warn_explicit("x is deprecated", category, "lib.py", 1, module="somelib.core")
        assert [w.category for w in seen] == [category]


@pytest.mark.e2e   # the default run end to end (.ci/min_versions leaves it out)
def test_default_run_raises_no_deprecation_from_our_calls(tmp_path, monkeypatch):
    """`spiral-bench run` end to end (its own SFT base, so SFT training and evaluation run here too)."""
    from spiral_bench.cli import main

    monkeypatch.setenv("SPIRAL_BENCH_CACHE", str(tmp_path / "cache"))
    args = ["run", "--method", "both", "--budget-grid", "smoke", "--steps", "1", "--bootstrap", "50",
            "--set", "sft.steps=8", "--set", "sft.eval_problems=2", "--set", "sft.eval_samples=2",
            "--set", "sft.max_new_tokens=8", "--set", "prompts_per_step=2", "--set", "group_size=24",
            "--set", "max_new_tokens=8", "--set", "spiral_max_new_tokens=8", "--no-progress",
            "--out", str(tmp_path / "results")]
    with deprecations_via_our_code() as found, contextlib.redirect_stdout(io.StringIO()) as out:
        rc = main(args)
    assert rc == 0, out.getvalue()[-2000:]
    assert found == [], "\n".join(sorted(set(found)))


def test_lora_training_and_plain_sampler_path_raise_no_deprecation(tmp_path, monkeypatch):
    """A LoRA GRPO step (peft adapters, merged final/), and the sampler with transformers' own masks
    and kernels (fast_masks=False: every decode step goes through the model's forward)."""
    from spiral_bench.backends.base import Request, SamplingConfig
    from spiral_bench.config import build
    from spiral_bench.models import build_tiny
    from spiral_bench.sampling import Sampler
    from spiral_bench.trainers import loop
    from spiral_bench.trainers.train_config import TrainConfig

    monkeypatch.setenv("SPIRAL_BENCH_CACHE", str(tmp_path / "cache"))
    cfg = build(TrainConfig, {"task": "arithmetic", "model": "tiny-1m", "train_problems": 8, "steps": 1,
                              "prompts_per_step": 2, "group_size": 2, "max_new_tokens": 6,
                              "checkpoint_every": 1, "micro_batch_size": 0, "method": "grpo",
                              "lora": {"r": 2, "targets": ["q_proj", "down_proj"]}})
    with deprecations_via_our_code() as found:
        loop.train(cfg, tmp_path / "lora", progress=False)
        model, tok = build_tiny("tiny-1m", seed=0)
        reqs = [Request("12*7-5=?", n=2, seed=1), Request("3+4=" * 10, n=2, seed=2)]
        for kw in ({"fast_masks": False}, {"fast_decode": False}, {}):
            Sampler(model, tok, **kw).generate(reqs, SamplingConfig(temperature=1.0, max_new_tokens=6))
    assert found == [], "\n".join(sorted(set(found)))
