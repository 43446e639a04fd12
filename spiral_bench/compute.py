"""Compute accounting for scaffolds and sweep cells: prompt tokens, generated tokens, the
max-token budget and a FLOPs estimate. Every scaffold record and every cell row reports all four.

Conventions (one `Request` = one prompt sampled n times):

- prompt_tokens: prefill tokens, counted ONCE per request (the sampler prefills each distinct
  prompt once and fans its KV cache out to the n samples), P per request.
- generated_tokens: sum of completion tokens G_j over all samples of all requests.
- max_token_budget: sum of max_new_tokens over every trace (search traces and aggregation traces
  of every layer): n * L per request (the paper's Figure 8 convention).
- flops (forward pass only, Kaplan et al. 2020 convention), for a request with prompt length P
  and samples of lengths G_1..G_n, with N = non-embedding parameters, l = n_layers, d = d_attn
  (query heads x head dim; model_info's `d_attn`, d_model where a backend does not give it):

      dense  = 2 * N * (P + sum_j G_j)
      attn   = A(0, P) + sum_j A(P, P + G_j)
      A(s, e) = sum_{i=s+1}^{e} 2 * l * i * d  =  l * d * (e * (e + 1) - s * (s + 1))

  i.e. the token at (1-based) position i attends to a context of i tokens and costs
  2 * n_layers * context_len * d_attn attention FLOPs; the shared prompt is processed once.
  flops = dense + attn.

THE compute of a k-sample cell (pass@k / maj@k of problem p; one convention for `eval`, `run`
and `analyze`): the k samples share one prompt of P_p tokens, prefilled once; from a pool of n
samples of p with completion lengths G_p1..G_pn (k <= n), the cell's figures are the
expectation over the k-subsets drawn uniformly without replacement (`expected_subset_tokens`,
`expected_subset_compute`):

      prompt_tokens    = P_p                               (once, not k times)
      generated_tokens = (k / n) * sum_j G_pj              (= k * mean_j G_pj)
      max_token_budget = k * L
      flops            = F(P_p, []) + (k / n) * (F(P_p, [G_p1..G_pn]) - F(P_p, []))

with F = `request_compute(...).flops`. Aggregation and RSA cells add the compute of every
aggregation request (its own prompt once, plus its traces) to that of their candidates. The
accuracy-vs-compute axis of the statistics (multipliers, gaps) is one of these columns,
per problem, averaged over problems: generated_tokens by default in `eval` and `run`
(`evaluate.analyze_cells(compute_col=...)`: generated_tokens, max_token_budget or flops), and
generated_tokens in `analyze` (which has token counts only; with no completion_tokens its axis is
the sample count k). So the prompt is never multiplied by k: it enters the prompt_tokens column and
the FLOPs once per cell, and the default axis not at all.

`floor_compute` is the one floor both analyses put under per-problem compute before a log axis.
"""
from __future__ import annotations

import dataclasses
from typing import Mapping, Sequence

import numpy as np

INFO_KEYS = ("n_params_nonembedding", "n_layers", "d_model")
LOG_FLOOR = 1e-9   # per-problem compute is floored at LOG_FLOOR * the largest compute


@dataclasses.dataclass(frozen=True)
class Compute:
    """The four compute figures of a record or cell (floats: pooled cells hold expectations)."""

    prompt_tokens: float = 0.0
    generated_tokens: float = 0.0
    max_token_budget: float = 0.0
    flops: float = 0.0

    def __add__(self, other: "Compute") -> "Compute":
        return Compute(*(a + b for a, b in zip(dataclasses.astuple(self), dataclasses.astuple(other))))

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)

    @staticmethod
    def total(items) -> "Compute":
        out = Compute()
        for c in items:
            out = out + c
        return out


def _info(info: Mapping) -> tuple[float, float, float]:
    missing = [k for k in INFO_KEYS if k not in info]
    if missing:
        raise ValueError(f"model_info() lacks {missing}; FLOPs accounting needs {list(INFO_KEYS)}")
    return (float(info["n_params_nonembedding"]), float(info["n_layers"]),
            float(info.get("d_attn") or info["d_model"]))


def attention_flops(start: int, end: int, n_layers: float, d_attn: float) -> float:
    """sum_{i=start+1}^{end} 2 * n_layers * i * d_attn (positions start+1..end, 1-based)."""
    return n_layers * d_attn * (end * (end + 1) - start * (start + 1))


def request_compute(prompt_tokens: int, completion_tokens: Sequence[int], max_new_tokens: int,
                    info: Mapping) -> Compute:
    """Compute of one request: prompt of P tokens prefilled once, samples of G_j tokens (see module doc)."""
    n_ne, n_layers, d = _info(info)
    P, G = int(prompt_tokens), [int(g) for g in completion_tokens]
    dense = 2.0 * n_ne * (P + sum(G))
    attn = attention_flops(0, P, n_layers, d) + sum(attention_flops(P, P + g, n_layers, d) for g in G)
    return Compute(float(P), float(sum(G)), float(len(G) * max_new_tokens), dense + attn)


def expected_subset_tokens(prompt_tokens: float, completion_tokens: Sequence[int], k: int) -> tuple[float, float]:
    """(prompt_tokens, generated_tokens) of a k-sample cell drawn from the n given samples (the
    expectation over k-subsets drawn uniformly without replacement): (P, (k / n) * sum_j G_j).

    The prompt is shared by the k samples and counted once (see the module doc).
    """
    n = len(completion_tokens)
    if not 1 <= k <= n:
        raise ValueError(f"k={k} must be in [1, {n}]")
    return float(prompt_tokens), (k / n) * float(sum(completion_tokens))


def expected_subset_compute(prompt_tokens: int, completion_tokens: Sequence[int], k: int,
                            max_new_tokens: int, info: Mapping) -> Compute:
    """E[compute] of k samples drawn uniformly without replacement from the n given ones.

    Prompt once; generated tokens (`expected_subset_tokens`), budget and per-sample FLOPs scale as
    k/n of the pool's sum:
    E = request_compute(P, []) + (k/n) * (request_compute(P, G) - request_compute(P, [])).
    """
    prompt, generated = expected_subset_tokens(prompt_tokens, completion_tokens, k)
    n = len(completion_tokens)
    base = request_compute(prompt_tokens, [], max_new_tokens, info)
    full = request_compute(prompt_tokens, completion_tokens, max_new_tokens, info)
    f = k / n
    return Compute(prompt, generated, float(k * max_new_tokens), base.flops + f * (full.flops - base.flops))


def floor_compute(compute, top: float) -> np.ndarray:
    """Per-problem compute floored at LOG_FLOOR * top (top: the largest compute of the analysis;
    1e-9 when top <= 0), so that a log axis stays finite where a problem used no tokens."""
    return np.maximum(np.asarray(compute, dtype=np.float64), LOG_FLOOR * top if top > 0 else LOG_FLOOR)
