"""One training step's metrics row (metrics.jsonl): the rollout sums each rank adds up, and the row
built from their all-reduced totals, so every rank writes the same global numbers.

Sums (`rollout_sums`, a list of N_SUMS floats, summed over ranks):
  [0:5]   search traces: count, reward, correct (reward >= 1), completion tokens, truncated
  [5:10]  aggregation traces: the same five
  [10:14] traces kept for the loss: count, sum A, sum A^2, count with A == 0
  [14]    prompts used in the update;  [15] generated tokens (every trace);  [16] search entropy sum
Row (`rollout_row`): means are ratios of sums (None when the count is 0); adv_std is the population
standard deviation sqrt(max(0, sum A^2 / n - mean^2)); search_entropy is per search token.
"""
from __future__ import annotations

from spiral_bench.trainers import rl_core

N_SUMS = 17
METRIC_FIELDS = (
    "step", "loss", "lr", "grad_norm",
    "search_reward", "search_acc", "search_len", "search_truncated", "search_entropy",
    "agg_reward", "agg_acc", "agg_len", "agg_truncated",
    "adv_mean", "adv_std", "adv_frac_zero", "n_search_traces", "n_agg_traces", "n_loss_traces",
    "prompts_sampled", "prompts_used", "generated_tokens", "generated_tokens_per_prompt",
    "total_generated_tokens", "ratio_max_dev", "logprob_gap", "sync_seconds", "rollout_seconds", "update_seconds",
    "seconds", "elapsed")


def ratio(a, b):
    """a / b as a float, None when b is 0."""
    return None if float(b) == 0 else float(a) / float(b)


def rollout_sums(rolls, used) -> list[float]:
    """This rank's sums (module doc) over every sampled PromptRollout and the used ones."""
    acc = [0.0] * N_SUMS
    for r in rolls:
        for t in r.traces:
            o = 0 if t.role == rl_core.SEARCH else 5
            for i, x in enumerate((1, t.reward, float(t.reward >= 1.0), t.sample.completion_tokens,
                                   float(t.sample.truncated))):
                acc[o + i] += x
            acc[15] += t.sample.completion_tokens
            if t.role == rl_core.SEARCH:
                acc[16] += t.sample.entropy
    for r in used:
        for t in r.traces:
            if t.keep:
                for i, x in enumerate((1, t.advantage, t.advantage ** 2, float(t.advantage == 0.0))):
                    acc[10 + i] += x
    acc[14] = len(used)
    return acc


def rollout_row(v, sampled: int) -> dict:
    """The rollout fields of a metrics row from the all-reduced sums v (N_SUMS,) and the prompts
    sampled (the loop adds the run's total_generated_tokens)."""
    gen, n_adv, mean = int(v[15]), float(v[10]), ratio(v[11], v[10])
    return {"search_reward": ratio(v[1], v[0]), "search_acc": ratio(v[2], v[0]), "search_len": ratio(v[3], v[0]),
            "search_truncated": ratio(v[4], v[0]), "search_entropy": ratio(v[16], v[3]),
            "agg_reward": ratio(v[6], v[5]), "agg_acc": ratio(v[7], v[5]), "agg_len": ratio(v[8], v[5]),
            "agg_truncated": ratio(v[9], v[5]),
            "adv_mean": mean, "adv_std": None if mean is None else max(0.0, float(v[12]) / n_adv - mean ** 2) ** 0.5,
            "adv_frac_zero": ratio(v[13], v[10]), "n_search_traces": int(v[0]), "n_agg_traces": int(v[5]),
            "n_loss_traces": int(v[10]), "prompts_sampled": sampled, "prompts_used": int(v[14]),
            "generated_tokens": gen, "generated_tokens_per_prompt": gen / max(1, sampled)}
