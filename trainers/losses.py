"""Policy-gradient losses (registry `LOSSES`) and their aggregation over tokens, as pure functions.

Every loss has the signature
    loss_fn(logprobs [B, T], old_logprobs [B, T] | None, advantages [B], completion_mask [B, T],
            ref_logprobs [B, T] | None, config: RLLossConfig, num_items=None) -> (loss scalar, metrics)
where logprobs carries the gradient and the per-token tensors are aligned with the batch's
input_ids (see rl_core). old_logprobs None means on-policy: old = logprobs.detach().

Per-token ratio   w_t = exp(logp_t - old_t)                       (ratio_level="token")
              or  w   = exp(sum_t m_t (logp_t - old_t) / max(1, sum_t m_t))   (GSPO, "sequence", one per row)
clipped (PPO/GRPO, DAPO clip-higher):
    l_t = -min(w A, clip(w, 1 - eps_low, 1 + eps_high) A)   (w first capped at delta if delta is set)
is_reinforce (importance-sampled REINFORCE, no clipping):
    is_truncation None:  l_t = -w A                          (gradient w A grad logp, through the ratio)
    is_truncation c:     l_t = -min(w, c).detach() A logp_t  (truncated IS weight, gradient min(w,c) A grad logp)
KL to a frozen reference (k3): kl_t = exp(ref_t - logp_t) - (ref_t - logp_t) - 1;  l_t += beta kl_t,
    or with kl_bias_correction l_t += beta w kl_t (w differentiable: the unbiased reverse-KL gradient off-policy,
    TRL 1.16's default use_bias_correction_kl=True).
Aggregation of l over the completion mask m (B rows):
    grpo:    mean_b [ sum_t m l / max(1, sum_t m) ]
    dr_grpo: sum m l / (B * max_completion_length)          (TRL: per_token_loss.size(0) * max_completion_length)
    dapo:    sum m l / num_items, num_items = sum m by default (TRL: num_items_in_batch, the tokens of the
             whole generation batch; pass a global count for data-parallel training)
These reproduce TRL 1.16 GRPOTrainer._compute_loss (loss_type grpo / dr_grpo / dapo, one process,
no gradient accumulation) exactly; see tests/test_rl_core.py.
"""
from __future__ import annotations

import dataclasses
from typing import Callable

import torch

from spiral_bench.config import ConfigError, option

LOSS_AGGS = ("grpo", "dr_grpo", "dapo")


@dataclasses.dataclass(frozen=True)
class RLLossConfig:
    surrogate: str = option("clipped", choices=("clipped", "is_reinforce"),
                            help="policy-gradient surrogate: 'clipped' (PPO/GRPO ratio clipping) or "
                                 "'is_reinforce' (importance-sampled REINFORCE, no clipping)")
    ratio_level: str = option("token", choices=("token", "sequence"),
                              help="importance ratio per token, or one per sequence = exp(mean token log-ratio) (GSPO)")
    eps_low: float = option(0.2, min=0.0, max=1.0, help="clip the ratio below at 1 - eps_low (TRL epsilon)")
    eps_high: float = option(0.2, min=0.0, help="clip the ratio above at 1 + eps_high (DAPO clip-higher uses 0.28)")
    delta: float | None = option(None, min=1.0, help="optional two-sided clipping: cap the unclipped ratio at delta "
                                                      "(TRL delta); null = off")
    is_truncation: float | None = option(None, min=0.0, help="is_reinforce only: null = loss -ratio*A; a number c = "
                                                              "loss -min(ratio, c).detach()*A*logp (truncated IS)")
    beta: float = option(0.0, min=0.0, help="coefficient of the k3 KL penalty to the frozen reference (0 = no KL, "
                                            "no reference model needed)")
    kl_bias_correction: bool = option(False, help="multiply the k3 KL term by the (unclipped, differentiable) "
                                                  "importance ratio, as TRL 1.16 does by default "
                                                  "(use_bias_correction_kl); changes the KL gradient even on-policy")
    loss_agg: str = option("dapo", choices=LOSS_AGGS,
                           help="token aggregation: grpo (mean per sequence, then over sequences), dr_grpo (sum / "
                                "(B * max_completion_length)), dapo (sum / number of completion tokens); TRL 1.16's "
                                "default is dapo")
    max_completion_length: int | None = option(None, min=1, help="the constant of dr_grpo's denominator (the "
                                                                   "sampler's max new tokens); required for dr_grpo")

    def validate(self) -> None:
        if self.loss_agg == "dr_grpo" and self.max_completion_length is None:
            raise ConfigError("loss_agg: 'dr_grpo' needs max_completion_length (the sampler's max new tokens)")


def importance_log_ratio(logprobs: torch.Tensor, old_logprobs: torch.Tensor, mask: torch.Tensor,
                         level: str) -> torch.Tensor:
    """log w: [B, T] for level 'token', [B, 1] (masked mean of the token log-ratios) for 'sequence'."""
    log_ratio = logprobs - old_logprobs
    if level == "token":
        return log_ratio
    if level == "sequence":
        return ((log_ratio * mask).sum(-1) / mask.sum(-1).clamp(min=1.0)).unsqueeze(-1)
    raise ValueError(f"ratio_level={level!r}; choose 'token' or 'sequence'")


def aggregate(per_token: torch.Tensor, mask: torch.Tensor, loss_agg: str,
              max_completion_length: int | None = None, num_items: torch.Tensor | float | None = None) -> torch.Tensor:
    """Reduce a per-token loss [B, T] (or [B, 1], broadcast) over mask [B, T] to a scalar (module doc)."""
    masked = per_token * mask
    if loss_agg == "grpo":
        return (masked.sum(-1) / mask.sum(-1).clamp(min=1.0)).mean()
    if loss_agg == "dr_grpo":
        if max_completion_length is None:
            raise ValueError("dr_grpo needs max_completion_length")
        return masked.sum() / (per_token.shape[0] * max_completion_length)
    if loss_agg == "dapo":
        denom = mask.sum() if num_items is None else torch.as_tensor(num_items, dtype=masked.dtype)
        return masked.sum() / denom.clamp(min=1.0)
    raise ValueError(f"loss_agg={loss_agg!r}; choose one of {list(LOSS_AGGS)}")


def _prepare(logprobs, old_logprobs, advantages, completion_mask, config):
    mask = completion_mask.to(logprobs.dtype)
    old = logprobs.detach() if old_logprobs is None else old_logprobs.to(logprobs.dtype)
    adv = advantages.to(logprobs.dtype)
    adv = adv.unsqueeze(-1) if adv.dim() == 1 else adv  # [B, 1] (or per-token [B, T])
    log_w = importance_log_ratio(logprobs, old, mask, config.ratio_level)
    return mask, adv, log_w


def _masked_mean(x: torch.Tensor, mask: torch.Tensor) -> float:
    if x.shape[-1] == 1:  # one value per sequence
        return float(x.detach().mean())
    return float((x.detach() * mask).sum() / mask.sum().clamp(min=1.0))


def _finish(per_token, w, logprobs, ref_logprobs, mask, config, num_items, metrics):
    if config.beta != 0.0:
        if ref_logprobs is None:
            raise ValueError("beta > 0 needs ref_logprobs from the frozen reference model")
        diff = ref_logprobs.to(logprobs.dtype) - logprobs
        kl = torch.exp(diff) - diff - 1.0
        metrics["kl"] = _masked_mean(kl, mask)
        per_token = per_token + config.beta * (kl * w if config.kl_bias_correction else kl)
    loss = aggregate(per_token, mask, config.loss_agg, config.max_completion_length, num_items)
    return loss, metrics


def clipped_surrogate(logprobs: torch.Tensor, old_logprobs: torch.Tensor | None, advantages: torch.Tensor,
                      completion_mask: torch.Tensor, ref_logprobs: torch.Tensor | None, config: RLLossConfig,
                      num_items: torch.Tensor | float | None = None) -> tuple[torch.Tensor, dict]:
    """PPO/GRPO clipped-ratio surrogate (token or GSPO sequence ratio). Shapes in the module doc."""
    mask, adv, log_w = _prepare(logprobs, old_logprobs, advantages, completion_mask, config)
    w = torch.exp(log_w)
    w_clip = torch.clamp(w, 1 - config.eps_low, 1 + config.eps_high)
    w_unclipped = w if config.delta is None else torch.clamp(w, max=config.delta)
    per_token = -torch.min(w_unclipped * adv, w_clip * adv)
    low = ((w < 1 - config.eps_low) & (adv < 0)).float()
    high = ((w > 1 + config.eps_high) & (adv > 0)).float()
    metrics = {"ratio_mean": _masked_mean(w, mask), "clip_low": _masked_mean(low, mask),
               "clip_high": _masked_mean(high, mask), "clip_region": _masked_mean(low + high, mask)}
    return _finish(per_token, w, logprobs, ref_logprobs, mask, config, num_items, metrics)


def is_reinforce(logprobs: torch.Tensor, old_logprobs: torch.Tensor | None, advantages: torch.Tensor,
                 completion_mask: torch.Tensor, ref_logprobs: torch.Tensor | None, config: RLLossConfig,
                 num_items: torch.Tensor | float | None = None) -> tuple[torch.Tensor, dict]:
    """Importance-sampled REINFORCE: -w A, or -min(w, c).detach() A logp with truncation c. Module doc."""
    mask, adv, log_w = _prepare(logprobs, old_logprobs, advantages, completion_mask, config)
    w = torch.exp(log_w)
    metrics = {"ratio_mean": _masked_mean(w, mask)}
    if config.is_truncation is None:
        per_token = -w * adv
    else:
        c = config.is_truncation
        metrics["is_truncated"] = _masked_mean((w > c).float(), mask)
        per_token = -torch.clamp(w, max=c).detach() * adv * logprobs
    return _finish(per_token, w, logprobs, ref_logprobs, mask, config, num_items, metrics)


LOSSES: dict[str, Callable] = {"clipped": clipped_surrogate, "is_reinforce": is_reinforce}


def get_loss(name: str) -> Callable:
    try:
        return LOSSES[name]
    except KeyError:
        raise KeyError(f"unknown loss {name!r}; known: {sorted(LOSSES)}") from None


def compute_loss(logprobs: torch.Tensor, old_logprobs: torch.Tensor | None, advantages: torch.Tensor,
                 completion_mask: torch.Tensor, ref_logprobs: torch.Tensor | None, config: RLLossConfig,
                 num_items: torch.Tensor | float | None = None) -> tuple[torch.Tensor, dict]:
    """Dispatch to LOSSES[config.surrogate]; same arguments and result as the loss functions."""
    return get_loss(config.surrogate)(logprobs, old_logprobs, advantages, completion_mask, ref_logprobs,
                                      config, num_items)
