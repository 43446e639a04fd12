"""Optional vLLM backend (`pip install spiral-bench[vllm]`, in its own environment: vllm 0.33 pins
torch 2.14 and transformers<5.21, so it cannot share the CPU default's environment).

`VLLMBackend(model_path, dtype="bfloat16", **llm_kwargs)` wraps `vllm.LLM`, imported lazily in
the constructor; if vllm is missing it raises ImportError saying how to install it.

Seeds and batch independence: vLLM's `SamplingParams(seed=...)` gives one random stream per
*request*, and the n samples of a request (`n=...`) share that stream. To keep the property that
sample j depends only on `sample_seed(request.seed, j)` and not on the batch, each sample is sent
as its own vLLM request with `n=1, seed=sample_seed(request.seed, j)` (vLLM's prefix caching still
shares the prompt's KV blocks between them). Per-token log-probs come from `logprobs=0`
(the chosen token's log-prob; vLLM reports the raw model distribution by default, which equals
this package's convention only at T=1 -- set `logprobs_mode="processed_logprobs"` in
`llm_kwargs` for temperature-scaled values; exact equality with the hf backend is not promised).
Untested here (no vllm in the CPU environment); only the missing-extra error is tested.
"""
from __future__ import annotations

from typing import Sequence

from .base import Request, Sample, SamplingConfig, sample_seed

INSTALL_HINT = ("the vllm backend needs vLLM: `pip install spiral-bench[vllm]` in its own "
                "environment (vllm 0.33 pins torch==2.14 and transformers<5.21, so it cannot share "
                "the CPU default's environment)")


class VLLMBackend:
    """`Backend` over `vllm.LLM` (GPU)."""

    name = "vllm"

    def __init__(self, model_path: str, dtype: str = "bfloat16", seed: int = 0, **llm_kwargs):
        try:
            import vllm
        except ImportError as e:
            raise ImportError(INSTALL_HINT) from e
        from ..models import resolve_model

        self._vllm = vllm
        self.path = resolve_model(model_path, seed=seed)
        self.llm = vllm.LLM(model=self.path, dtype=dtype, seed=seed, **llm_kwargs)
        self.tokenizer = self.llm.get_tokenizer()

    def generate(self, requests: Sequence[Request], sampling: SamplingConfig,
                 progress: bool = False) -> list[list[Sample]]:
        SamplingParams = self._vllm.SamplingParams
        prompts, params, where = [], [], []
        for i, r in enumerate(requests):
            for j in range(r.n):
                prompts.append(r.prompt)
                params.append(SamplingParams(
                    n=1, seed=sample_seed(r.seed, j),
                    max_tokens=r.max_new_tokens or sampling.max_new_tokens,
                    temperature=sampling.temperature, top_p=sampling.top_p,
                    top_k=sampling.top_k if sampling.top_k > 0 else -1,
                    stop=list(sampling.stop), include_stop_str_in_output=True, logprobs=0))
                where.append((i, j))
        outs = self.llm.generate(prompts, params, use_tqdm=progress)
        res: list[list[Sample | None]] = [[None] * r.n for r in requests]
        for (i, j), o in zip(where, outs):
            c = o.outputs[0]
            ids = list(c.token_ids)
            lps = [float(d[t].logprob) if d and t in d else float("nan")
                   for t, d in zip(ids, c.logprobs or [None] * len(ids))]
            res[i][j] = Sample(text=c.text, token_ids=ids, logprobs=lps,
                               prompt_tokens=len(o.prompt_token_ids), completion_tokens=len(ids),
                               finish_reason="length" if c.finish_reason == "length" else "stop")
        return res  # type: ignore[return-value]

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
