"""The openai backend's checks that need no server: options, flags, and a clear error, fast and
before any sampling, when the server cannot be reached. The backend against a real vLLM OpenAI
server is tests/test_openai_server.py (`pytest -m vllm`)."""
from __future__ import annotations

import socket
import time

import pytest

pytest.importorskip("openai", reason="the openai client: `pip install -e .[dev]` (or the openai extra)")

from spiral_bench.backends.openai_api import OpenAIBackend, OpenAIOptions, from_args  # noqa: E402
from spiral_bench.cli import build_parser, main  # noqa: E402
from spiral_bench.config import ConfigError, build  # noqa: E402


def _unused_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_options_are_validated_with_the_key_named():
    with pytest.raises(ConfigError, match="max_concurrency"):
        build(OpenAIOptions, {"max_concurrency": 0}, prefix="openai.")
    with pytest.raises(ConfigError, match="max_retries"):
        build(OpenAIOptions, {"max_retries": -1}, prefix="openai.")
    with pytest.raises(ConfigError, match="api_base"):
        build(OpenAIOptions, {"api_base": "http://x"}, prefix="openai.")
    o = build(OpenAIOptions, {"base_url": "http://h:1/v1", "max_concurrency": 4, "extra_body": {"min_p": 0.1}})
    assert (o.base_url, o.max_concurrency, o.extra_body, o.max_retries) == ("http://h:1/v1", 4, {"min_p": 0.1}, 3)


def test_cli_flags_reach_the_options():
    args = build_parser().parse_args(
        ["eval", "--checkpoint", "m", "--task", "arithmetic", "--out", "o", "--backend", "openai",
         "--base-url", "http://127.0.0.1:9/v1", "--served-model-name", "served", "--max-concurrency", "3",
         "--request-timeout", "5", "--max-retries", "0", "--tokenizer", "none", "--extra-body", "min_p=0.05"])
    o = from_args(args)
    assert o == OpenAIOptions(base_url="http://127.0.0.1:9/v1", model="served", tokenizer="none",
                              max_concurrency=3, timeout=5.0, max_retries=0, extra_body={"min_p": 0.05})
    with pytest.raises(ConfigError, match="max_concurrency"):
        from_args(build_parser().parse_args(["sample", "--task", "arithmetic", "--model", "m",
                                             "--max-concurrency", "0"]))


def test_no_base_url_is_a_clear_error(monkeypatch):
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    with pytest.raises(ConfigError, match="needs the server's URL"):
        OpenAIBackend("tiny-1m", OpenAIOptions())


def test_extra_body_cannot_override_the_sampling_config():
    with pytest.raises(ConfigError, match=r"\['seed'\] are set by the sampling config"):
        OpenAIBackend("tiny-1m", OpenAIOptions(base_url="http://127.0.0.1:9/v1", extra_body={"seed": 1}))


def test_unreachable_server_fails_fast_and_names_the_url():
    url = f"http://127.0.0.1:{_unused_port()}/v1"
    t0 = time.perf_counter()
    with pytest.raises(ConfigError, match=rf"cannot reach {url} .*nothing was sampled"):
        OpenAIBackend("tiny-1m", OpenAIOptions(base_url=url, max_retries=5))
    assert time.perf_counter() - t0 < 10.0  # the check does not retry: connection refused is final


def test_eval_against_an_unreachable_server_writes_nothing(tmp_path, capsys):
    url = f"http://127.0.0.1:{_unused_port()}/v1"
    out = tmp_path / "eval"
    rc = main(["eval", "--checkpoint", "tiny-1m", "--task", "arithmetic", "--budget-grid", "smoke",
               "--backend", "openai", "--base-url", url, "--out", str(out)])
    assert rc == 2
    err = capsys.readouterr().err
    assert f"error: openai backend: cannot reach {url}" in err and "Traceback" not in err
    assert not (out / "cells").exists() and not (out / "manifests").exists()
