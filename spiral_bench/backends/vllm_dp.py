"""Data parallelism for the vllm backend: `data_parallel_size` engine replicas on one node.

`vllm.LLM(data_parallel_size > 1)` is refused by vLLM in a single process, so
`VLLMDataParallel(model_path, dtype, seed, options)` starts `options.data_parallel_size` worker
processes (spawned), each with its own `VLLMBackend` (data_parallel_size 1) on its own
`tensor_parallel_size` GPUs (`CUDA_VISIBLE_DEVICES` slices of the visible GPUs; on a CPU the
replicas share the CPU). `generate` splits the requests into contiguous shares of about equal
sample count, one per replica, runs them concurrently and returns the samples in request order.
Every sample has its own seed (`sample_seed`), so the samples do not depend on the split (measured
batch invariance, spiral_bench/backends/vllm.py). `close()` stops every replica.
"""
from __future__ import annotations

import dataclasses
import multiprocessing as mp
import os
from typing import Sequence

from .base import Request, Sample, SamplingConfig
from .vllm_options import VLLMOptions


def _replica(conn, model_path: str, dtype: str, seed: int, options: VLLMOptions, devices: str | None) -> None:
    if devices is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = devices
    from .vllm import VLLMBackend
    try:
        be = VLLMBackend(model_path, dtype=dtype, seed=seed, options=options)
        conn.send(("ready", {"max_model_len": be.max_model_len, "model_info": be.model_info(),
                             "prefix_consistent": be.prefix_consistent, "path": be.path}))
    except Exception as e:  # noqa: BLE001 - reported to the parent, which raises it
        conn.send(("error", f"{type(e).__name__}: {e}"))
        return
    while True:
        msg = conn.recv()
        if msg is None:
            be.close()
            conn.send(("closed", None))
            return
        reqs, sampling = msg
        conn.send(("out", be.generate(reqs, sampling)))


class VLLMDataParallel:
    """`Backend` over several vllm engine replicas (module doc)."""

    name = "vllm"
    independent_samples = True

    def __init__(self, model_path: str, dtype: str = "bfloat16", seed: int = 0, options: VLLMOptions | None = None):
        from transformers import AutoTokenizer

        from ..models import resolve_model
        from .vllm import refuse_bridge
        refuse_bridge(model_path)
        self.options = options or VLLMOptions()
        n, tp = self.options.data_parallel_size, self.options.tensor_parallel_size
        one = dataclasses.replace(self.options, data_parallel_size=1)
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        gpus = visible.split(",") if visible else None
        try:
            import torch
            if gpus is None and torch.cuda.is_available():
                gpus = [str(i) for i in range(torch.cuda.device_count())]
        except ImportError:
            pass
        if gpus is not None and len(gpus) < n * tp:
            from ..config import ConfigError
            raise ConfigError(f"vllm: data_parallel_size {n} x tensor_parallel_size {tp} needs {n * tp} GPUs, "
                              f"{len(gpus)} are visible")
        path = resolve_model(model_path, seed=seed)
        ctx = mp.get_context("spawn")
        self.workers = []
        for i in range(n):
            parent, child = ctx.Pipe()
            devices = ",".join(gpus[i * tp:(i + 1) * tp]) if gpus is not None else None
            proc = ctx.Process(target=_replica, args=(child, path, dtype, seed, one, devices))  # not daemonic: it starts vLLM's own processes
            proc.start()
            self.workers.append((proc, parent))
        infos = [self._recv(c) for _, c in self.workers]
        self.max_model_len = min(i["max_model_len"] for i in infos)
        self._model_info = infos[0]["model_info"]
        self.prefix_consistent = all(i["prefix_consistent"] for i in infos)
        self.path = infos[0]["path"]
        self.tokenizer = AutoTokenizer.from_pretrained(self.path)

    def _recv(self, conn):
        kind, value = conn.recv()
        if kind == "error":
            self.close()
            raise RuntimeError(f"a vllm replica failed to start: {value}")
        return value

    def encode(self, text: str) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def decode(self, token_ids) -> str:
        return self.tokenizer.decode(list(token_ids), skip_special_tokens=True)

    def generate(self, requests: Sequence[Request], sampling: SamplingConfig,
                 progress: bool = False) -> list[list[Sample]]:
        reqs = list(requests)
        total, n = sum(r.n for r in reqs), len(self.workers)
        shares, cur, acc = [], [], 0
        for r in reqs:  # contiguous shares of about total / n samples each
            cur.append(r)
            acc += r.n
            if acc >= total * (len(shares) + 1) / n and len(shares) < n - 1:
                shares.append(cur)
                cur = []
        shares.append(cur)
        busy = [(conn, share) for (_, conn), share in zip(self.workers, shares) if share]
        for conn, share in busy:
            conn.send((share, sampling))
        out: list[list[Sample]] = []
        for conn, _ in busy:
            out += self._recv(conn)
        self.last_prompt_ids = [self.encode(r.prompt) for r in reqs]
        return out

    def model_info(self) -> dict:
        return dict(self._model_info)

    def close(self) -> None:
        """Stop every replica (each shuts its engine down first)."""
        for proc, conn in getattr(self, "workers", []):
            try:
                if proc.is_alive():
                    conn.send(None)
                    conn.recv()
            except (EOFError, OSError, BrokenPipeError):
                pass
            proc.join(timeout=60)
            if proc.is_alive():
                proc.terminate()
        self.workers = []
