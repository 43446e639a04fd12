"""The default generation backend: transformers models sampled by `spiral_bench.sampling.Sampler`.

`HFBackend(model, tokenizer, device=None, dtype=None)` takes a loaded model + tokenizer (or use
`HFBackend.from_pretrained(name_or_path, dtype=..., device=...)`, which goes through
`spiral_bench.models.load_model`, so tiny presets, local paths and hub ids all work).
`generate(requests, sampling, progress=False)` returns, per request, its n `Sample`s; sample j of a
request is drawn with seed `sample_seed(request.seed, j)` (Gumbel-max with per-sample
counter-based noise), so results do not depend on batching. Log-probs follow the convention
documented in `spiral_bench.sampling` (log_softmax(logits / T) at the chosen token, no top-k/top-p
renormalisation). `encode(text)` gives a prompt's token ids as the sampler encodes them, and
`last_prompt_ids` those of the last call's prompts (the vllm backend has both too).

A model with a Bridge (spiral_bench.bridge) is sampled in lockstep by
`spiral_bench.bridge_decode.BridgeSampler`: a request's n samples are generated together and
depend on each other, so the backend then says `independent_samples = False` (True for the
P-Match control, a per-row MLP) (pooled n-choose-k
estimators refuse its pools, spiral_bench.estimators); otherwise `independent_samples = True`.
"""
from __future__ import annotations

from typing import Sequence

import torch

from ..bridge import is_bridged, samples_independent
from ..models import load_model, model_info, to_dtype
from ..sampling import Sampler
from .base import Request, Sample, SamplingConfig


class HFBackend:
    """`Backend` over a transformers causal LM (CPU fp32/bf16, CUDA bf16)."""

    name = "hf"
    # Sample j's token t is drawn from noise keyed by (seed_j, t) only, so a trace generated with
    # budget L is exactly the first L tokens of the same trace with a larger budget: the sweep
    # draws one pool at the largest max-token level and cuts it for the smaller ones.
    prefix_consistent = True

    def __init__(self, model, tokenizer, device: str | torch.device | None = None,
                 dtype: str | torch.dtype | None = None):
        if dtype is not None:
            model = model.to(to_dtype(dtype))
        if device is not None:
            model = model.to(device)
        self.model, self.tokenizer = model.eval(), tokenizer
        if is_bridged(model):
            from ..bridge_decode import BridgeSampler
            self.sampler = BridgeSampler(model, tokenizer)
            self.independent_samples = samples_independent(model)  # True for the P-Match control
        else:
            self.sampler = Sampler(model, tokenizer)
            self.independent_samples = True
        self.last_prompt_ids: list[list[int]] = []  # the prompt ids of the last generate call

    def encode(self, text: str) -> list[int]:
        """Prompt token ids, as the sampler encodes a prompt (no special tokens added)."""
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    @classmethod
    def from_pretrained(cls, name_or_path: str, dtype: str = "float32", device: str = "cpu",
                        seed: int = 0) -> "HFBackend":
        model, tok = load_model(name_or_path, dtype=dtype, device=device, seed=seed)
        return cls(model, tok)

    def generate(self, requests: Sequence[Request], sampling: SamplingConfig,
                 progress: bool = False) -> list[list[Sample]]:
        was_training = self.model.training
        self.model.eval()
        self.last_prompt_ids = [self.encode(r.prompt) for r in requests]
        try:
            return self.sampler.generate(requests, sampling, progress=progress)
        finally:
            self.model.train(was_training)

    def model_info(self) -> dict:
        return model_info(self.model)
