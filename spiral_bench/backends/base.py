"""The generation-backend interface shared by the hf sampler, vllm and scripted test policies.

A backend takes a list of `Request`s (a prompt, how many samples, a base seed, a token budget)
and returns, per request, a list of `Sample`s. Sample j of a request is drawn with the seed
`sample_seed(request.seed, j)`, so results do not depend on how requests were batched.
"""
from __future__ import annotations

import dataclasses
import hashlib
from typing import Protocol, Sequence

from ..config import option


@dataclasses.dataclass(frozen=True)
class SamplingConfig:
    """How traces are sampled (shared by training rollouts and evaluation)."""

    temperature: float = option(1.0, help="Softmax temperature; 0 means greedy.", min=0.0)
    top_p: float = option(1.0, help="Nucleus sampling mass (1.0 = off).", min=0.0, max=1.0)
    top_k: int = option(0, help="Keep only the k most likely tokens (0 = off).", min=0)
    max_new_tokens: int = option(64, help="Generated-token budget per trace.", min=1)
    stop: tuple[str, ...] = option((), help="Stop strings; generation ends after the first one "
                                           "appears (EOS always stops).")
    batch_size: int = option(256, help="Most sequences decoded together in one batch.", min=1)


@dataclasses.dataclass(frozen=True)
class Request:
    """n samples of one prompt; `seed` is the base seed (sample j uses sample_seed(seed, j))."""

    prompt: str
    n: int = 1
    seed: int = 0
    max_new_tokens: int | None = None  # None: the SamplingConfig's


@dataclasses.dataclass
class Sample:
    """One generated trace and its accounting."""

    text: str                    # decoded completion (without the prompt, cut after a stop string)
    token_ids: list[int]         # generated token ids
    logprobs: list[float]        # log pi(token | prefix) under the sampling distribution's model
    prompt_tokens: int           # prefill length
    completion_tokens: int       # = len(token_ids)
    finish_reason: str           # "stop" (EOS or a stop string) or "length"
    entropy: float = 0.0         # sum over generated tokens of the sampling distribution's entropy
                                 # (nats; hf sampler; 0.0 where a backend does not report it)

    @property
    def truncated(self) -> bool:
        return self.finish_reason == "length"


class Backend(Protocol):
    """What scaffolds and trainers need from a generation engine."""

    def generate(self, requests: Sequence[Request], sampling: SamplingConfig,
                 progress: bool = False) -> list[list[Sample]]: ...

    def model_info(self) -> dict:
        """{'n_params_nonembedding', 'n_layers', 'd_model', 'n_params'} for FLOPs accounting."""
        ...


def derive_seed(*parts: object) -> int:
    """A 63-bit seed from any parts (run seed, step, problem id, sample index): stable across runs."""
    h = hashlib.blake2b(repr(parts).encode(), digest_size=8).digest()
    return int.from_bytes(h, "little") & ((1 << 63) - 1)


def sample_seed(seed: int, j: int) -> int:
    """Seed of sample j of a request whose base seed is `seed`."""
    return derive_seed("sample", seed, j)
