"""GRSP (Group Relative Segment Penalization, arXiv 2510.09535) and an LCPO token-length reward:
their configs and the pure maths (no model here; the rollouts are in trainers/shaping.py).

No official code exists; what is known of GRSP and what is our reconstruction is in the shared
BASELINES.md, section 1. Every open choice is a field of `GRSPConfig` / `LCPOConfig`.

Segmentation of one completion (token texts p_1..p_T, sampler log-probs l_1..l_T) into segments,
each a run of consecutive tokens; a segment's length is its token count:
- delimiters: a segment ends after the token holding the last character of a delimiter
  occurrence (arithmetic traces: `37+58=95;95*3=85;#85` -> `37+58=95;` `95*3=85;` `#85`);
- keywords:   a segment starts at the token holding the first character of a keyword occurrence
  (a keyword that begins / ends with a letter must not be glued to another letter there);
- confidence: a segment starts at token t > 1 where l_t < `logprob_threshold` (with
  `local_min`, also l_t <= l_{t-1} and l_t <= l_{t+1}: a local minimum of the log-probability).
Segments whose text is blank (only whitespace / EOS, which decodes to "") are merged into the
segment before them (the first into the one after); an empty or blank completion has 0 segments.

Clusters (K = `num_clusters`, edges e_1 <= ... <= e_{K-1}, fixed for the whole run):
    e_k = Q(k / K) of the segment lengths of the first step's rollouts (the warm-up policy),
          Q = linear-interpolation quantile (torch.quantile), unless `cluster_edges` is given;
    cluster(len) = #{k : e_k <= len}  (0-based: len < e_1 -> 0, e_{K-1} <= len -> K-1).
Counts n_ik = segments of response i in cluster k: [G, K] for a group of G responses.
Weights w [K], normalised to sum 1: descending w_k = (K - k + 1) / (K (K + 1) / 2), k = 1..K
(short clusters weigh most: the paper's default), ascending = reversed (the paper's ablation),
uniform w_k = 1 / K.
Penalty of response i in its group (std = unbiased, over the members; eps = `eps`):
    z(x)_i = (x_i - mean_j x_j) / (std_j x_j + eps),  z = 0 where std = 0 or fewer than 2 members;
    per_cluster:     P_i = sum_k w_k z(n_.k)_i
    weighted_count:  P_i = z(sum_k w_k n_.k)_i
With `correct_only`, the members are the correct responses (r_i >= 1) and P_i = 0 for the rest.
Shaped reward and advantage (G responses to one prompt, lambda = `penalty_coef`):
    r~_i = r_i - lambda P_i
    grpo: A_i = (r~_i - mean_j r~_j) [/ (std_j r~_j + 1e-4) if scale_std]   (rl_core.grpo)
    rloo: A_i = r~_i - mean_{j != i} r~_j = G / (G - 1) (r~_i - mean_j r~_j);  G = 1 -> A = 0
With lambda = 0, r~ = r and the grpo advantage is GRPO's exactly.
Caveat: under grpo with scale_std, a group whose rewards are all equal has r~ = const - lambda P, so
A = -P / std(P): lambda cancels and the penalty alone gets unit-scale advantages. `apply_to:
advantage` is the alternative that keeps lambda's scale: A_i = A(r)_i - lambda P_i.

LCPO (L1, Aggarwal & Welleck 2025, arXiv 2503.04697), one of GRSP's token-level baselines, with
correct c_i in {0, 1}, n_i = generated tokens, n_gold = `target_tokens`:
    exact: r_i = c_i - alpha |n_gold - n_i|
    max:   r_i = c_i clip(alpha (n_gold - n_i) + delta, 0, 1)
then the same grpo / rloo advantage. L1 writes a per-prompt n_gold into the prompt; here the
prompts are the task's own, so n_gold is one number per run (a plain length budget).
"""
from __future__ import annotations

import bisect
import dataclasses
import re
from typing import Sequence

import torch

from spiral_bench.config import ConfigError, option
from spiral_bench.trainers import rl_core

# Reflection / transition words that open a new reasoning step in R1-style traces. The paper's list
# was not recovered (BASELINES.md: "Wait", "Alternatively" are guesses); these are the usual ones.
DEFAULT_KEYWORDS = ("Wait", "Alternatively", "But", "However", "Hmm", "Let me check", "Let me verify",
                    "Actually", "So", "Double-check")


@dataclasses.dataclass(frozen=True)
class GRSPConfig:
    """GRSP reward shaping (method grsp); formulas in trainers/grsp.py."""

    segmentation: str = option("delimiters", choices=("delimiters", "keywords", "confidence"),
                               help="how a completion is cut into segments: delimiters = after each delimiter "
                                    "(procedural tasks: the arithmetic step separator ';'), keywords = before "
                                    "each keyword (natural-language maths; the paper's default), confidence = "
                                    "before each token whose sampler log-prob is below logprob_threshold")
    delimiters: tuple[str, ...] = option((";", "\n"), help="segmentation delimiters: a segment ends after each "
                                                            "occurrence (arithmetic: ';' between steps)")
    keywords: tuple[str, ...] = option(DEFAULT_KEYWORDS, help="segmentation keywords: a segment starts at each "
                                                              "occurrence (case-sensitive, whole words)")
    logprob_threshold: float = option(-2.0, help="segmentation confidence: a segment starts at a token whose "
                                                 "sampler log-prob is below this")
    local_min: bool = option(False, help="segmentation confidence: also require a local minimum of the log-prob "
                                         "(<= both neighbours), as the paper describes it")
    num_clusters: int = option(3, min=1, help="K: segment-length clusters")
    cluster_edges: tuple[float, ...] | None = option(None, help="the K - 1 cluster edges in tokens (ascending); "
                                                                "null = the quantiles k/K of the first step's "
                                                                "segment lengths (saved in grsp_edges.json)")
    weights: str = option("descending", choices=("descending", "ascending", "uniform"),
                          help="cluster weights: descending = short segments penalised most (paper), "
                               "ascending = the paper's ablation, uniform = 1/K each")
    penalty_coef: float = option(0.1, min=0.0, help="lambda: shaped reward r - lambda * P")
    penalty_form: str = option("per_cluster", choices=("per_cluster", "weighted_count"),
                               help="per_cluster: P = sum_k w_k z(n_k); weighted_count: P = z(sum_k w_k n_k)")
    correct_only: bool = option(False, help="z-scores over the group's correct responses only; the others get P = 0")
    baseline: str = option("grpo", choices=("grpo", "rloo"),
                           help="advantage of the shaped reward: grpo (group mean, / std if scale_std) or rloo "
                                "(leave-one-out mean, REINFORCE-style)")
    eps: float = option(1e-4, min=0.0, help="z-score denominator std + eps")
    apply_to: str = option("reward", choices=("reward", "advantage"),
                           help="reward: A = A(r - lambda P) (BASELINES.md's reconstruction; with scale_std a group "
                                "of equal rewards gets A = -P / std(P), lambda cancels); advantage: A = A(r) - lambda P")

    def validate(self) -> None:
        e = self.cluster_edges
        if e is not None and (len(e) != self.num_clusters - 1 or list(e) != sorted(e)):
            raise ConfigError(f"grsp.cluster_edges: {list(e)} must be {self.num_clusters - 1} ascending numbers "
                              f"(num_clusters - 1)")
        if self.segmentation == "delimiters" and not any(self.delimiters):
            raise ConfigError("grsp.delimiters: give at least one non-empty delimiter")
        if self.segmentation == "keywords" and not any(self.keywords):
            raise ConfigError("grsp.keywords: give at least one non-empty keyword")


@dataclasses.dataclass(frozen=True)
class LCPOConfig:
    """LCPO token-length reward (method lcpo, L1 arXiv 2503.04697); formulas in trainers/grsp.py."""

    form: str = option("exact", choices=("exact", "max"),
                       help="exact: r = c - alpha |n_gold - n|; max: r = c * clip(alpha (n_gold - n) + delta, 0, 1)")
    target_tokens: int | None = option(None, min=0, help="n_gold: target generated tokens (null = max_new_tokens // 2)")
    alpha: float = option(0.0003, min=0.0, help="alpha: reward per token off the target (L1: 0.0003)")
    delta: float = option(0.5, help="delta: the max form's offset (L1: 0.5)")
    baseline: str = option("grpo", choices=("grpo", "rloo"), help="advantage of the shaped reward (as grsp.baseline)")


# --------------------------------------------------------------------------- segmentation
def _lengths(pieces: Sequence[str], cuts: set[int]) -> list[int]:
    """Segment lengths [S] of T tokens cut before each index in cuts (0 < c < T), blank segments merged."""
    T = len(pieces)
    edges = [0, *sorted(c for c in cuts if 0 < c < T), T]
    out, carry = [], 0
    for a, b in zip(edges, edges[1:]):
        if not "".join(pieces[a:b]).strip():
            if out:
                out[-1] += b - a
            else:
                carry += b - a
            continue
        out.append(b - a + carry)
        carry = 0
    return out


def _char_token(pieces: Sequence[str]) -> list[int]:
    """[len(text)]: the token index of every character of "".join(pieces)."""
    return [t for t, p in enumerate(pieces) for _ in p]


def segment_delimiters(pieces: Sequence[str], delimiters: Sequence[str]) -> list[int]:
    """pieces [T] token texts -> segment lengths [S] (tokens; sum = T when S > 0): cut after the token
    holding the last character of each delimiter occurrence (longest delimiter first at a position)."""
    delims = sorted((d for d in delimiters if d), key=len, reverse=True)
    text, owner = "".join(pieces), _char_token(pieces)
    cuts = {owner[m.end() - 1] + 1 for m in re.finditer("|".join(map(re.escape, delims)), text)} if delims else set()
    return _lengths(pieces, cuts)


def _keyword_regex(keywords: Sequence[str]) -> str:
    """keywords [W] -> one regex alternation (longest first), letter-guarded at alphabetic ends; '' if none."""
    parts = []
    for k in sorted((k for k in keywords if k), key=len, reverse=True):
        parts.append(("(?<![A-Za-z])" if k[0].isalpha() else "") + re.escape(k) +
                     ("(?![A-Za-z])" if k[-1].isalpha() else ""))
    return "|".join(parts)


def segment_keywords(pieces: Sequence[str], keywords: Sequence[str]) -> list[int]:
    """pieces [T] -> segment lengths [S]: cut before the token holding the first character of each
    keyword occurrence (not glued to a letter on an alphabetic end)."""
    text, owner = "".join(pieces), _char_token(pieces)
    pat = _keyword_regex(keywords)
    cuts = {owner[m.start()] for m in re.finditer(pat, text)} if pat else set()
    return _lengths(pieces, cuts)


def segment_confidence(logprobs: Sequence[float], threshold: float, local_min: bool = False,
                       pieces: Sequence[str] | None = None) -> list[int]:
    """logprobs [T] (sampler log-probs) -> segment lengths [S]: cut before token t >= 1 (0-based) with
    l_t < threshold (and, with local_min, l_t <= l_{t-1} and l_t <= l_{t+1} where it exists).
    pieces [T] (optional) lets blank segments merge; without them every token counts as text."""
    T = len(logprobs)
    cuts = set()
    for t in range(1, T):
        lt = logprobs[t]
        if lt < threshold and (not local_min or (lt <= logprobs[t - 1] and (t + 1 == T or lt <= logprobs[t + 1]))):
            cuts.add(t)
    return _lengths(list(pieces) if pieces is not None else ["x"] * T, cuts)


def segment(pieces: Sequence[str], logprobs: Sequence[float], cfg: GRSPConfig) -> list[int]:
    """One completion's segment lengths [S] by cfg.segmentation (pieces [T], logprobs [T])."""
    if cfg.segmentation == "delimiters":
        return segment_delimiters(pieces, cfg.delimiters)
    if cfg.segmentation == "keywords":
        return segment_keywords(pieces, cfg.keywords)
    return segment_confidence(logprobs, cfg.logprob_threshold, cfg.local_min, pieces)


# --------------------------------------------------------------------------- clusters and weights
def quantile_edges(lengths: Sequence[float], K: int) -> list[float]:
    """Segment lengths [N] (N >= 1) -> edges [K - 1]: e_k = linear-interpolation quantile k / K."""
    if not len(lengths):
        raise ValueError("quantile_edges: no segment lengths")
    if K <= 1:
        return []
    x = torch.tensor([float(v) for v in lengths], dtype=torch.float64)
    q = torch.tensor([k / K for k in range(1, K)], dtype=torch.float64)
    return [float(v) for v in torch.quantile(x, q)]


def assign_clusters(lengths: Sequence[float], edges: Sequence[float]) -> list[int]:
    """Segment lengths [S] -> cluster indices [S] in 0..K-1: #{k : e_k <= len}."""
    return [bisect.bisect_right(list(edges), v) for v in lengths]


def cluster_counts(segments: Sequence[Sequence[float]], edges: Sequence[float]) -> torch.Tensor:
    """segments: G lists of segment lengths -> n [G, K] float (K = len(edges) + 1): segments per cluster."""
    K = len(edges) + 1
    n = torch.zeros(len(segments), K, dtype=torch.float64)
    for i, segs in enumerate(segments):
        for k in assign_clusters(segs, edges):
            n[i, k] += 1
    return n


def cluster_weights(K: int, order: str = "descending") -> torch.Tensor:
    """w [K], sum 1: descending (K, K-1, .., 1) / (K (K+1) / 2), ascending reversed, uniform 1 / K."""
    if order == "uniform":
        return torch.full((K,), 1.0 / K, dtype=torch.float64)
    w = torch.arange(K, 0, -1, dtype=torch.float64) / (K * (K + 1) / 2)
    if order == "ascending":
        return w.flip(0)
    if order != "descending":
        raise ValueError(f"weights order {order!r}; choose descending, ascending or uniform")
    return w


# --------------------------------------------------------------------------- penalty and advantage
def group_zscore(x: torch.Tensor, eps: float = 1e-4, members: torch.Tensor | None = None) -> torch.Tensor:
    """x [G] or [G, K] (responses on dim 0), members [G] bool (default all) -> z, same shape:
    (x - mean) / (std_unbiased + eps) over the members; 0 for non-members, for a column whose std is 0,
    and when fewer than 2 members."""
    x = x.double()
    m = torch.ones(x.shape[0], dtype=torch.bool) if members is None else members.bool().flatten()
    z = torch.zeros_like(x)
    if int(m.sum()) < 2:
        return z
    xm = x[m]
    mean, std = xm.mean(0, keepdim=True), xm.std(0, keepdim=True)
    zm = torch.where(std > 0, (xm - mean) / (std + eps), torch.zeros_like(xm))
    z[m] = zm
    return z


def grsp_penalty(counts: torch.Tensor, weights: torch.Tensor, form: str = "per_cluster", eps: float = 1e-4,
                 members: torch.Tensor | None = None) -> torch.Tensor:
    """counts n [G, K], weights w [K], members [G] bool -> P [G] (module doc: per_cluster / weighted_count)."""
    n, w = counts.double(), weights.double()
    if form == "per_cluster":
        return (group_zscore(n, eps, members) * w).sum(-1)
    if form == "weighted_count":
        return group_zscore((n * w).sum(-1), eps, members)
    raise ValueError(f"penalty form {form!r}; choose per_cluster or weighted_count")


def rloo(rewards: torch.Tensor) -> torch.Tensor:
    """Leave-one-out advantage. rewards [G] -> [G]: r_i - mean_{j != i} r_j = G/(G-1) (r_i - mean r); G = 1 -> 0."""
    r = rewards.double()
    G = r.shape[-1]
    if G < 2:
        return torch.zeros_like(r)
    return (r - r.mean(-1, keepdim=True)) * G / (G - 1)


def advantage(shaped: torch.Tensor, baseline: str = "grpo", scale_std: bool = True) -> torch.Tensor:
    """Shaped rewards r~ [G] -> advantages [G] float32: grpo = rl_core.grpo(r~, scale_std), rloo = rloo(r~)."""
    if baseline == "grpo":
        return rl_core.grpo(shaped.float(), scale_std=scale_std)
    if baseline == "rloo":
        return rloo(shaped).float()
    raise ValueError(f"baseline {baseline!r}; choose grpo or rloo")


def grsp_shape(rewards: torch.Tensor, segments: Sequence[Sequence[float]], edges: Sequence[float],
               cfg: GRSPConfig) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One group: rewards r [G], segments (G lists of segment lengths), edges [K - 1] ->
    (P [G] penalty, r~ = r - lambda P [G] float64, counts n [G, K])."""
    r = rewards.double().flatten()
    n = cluster_counts(segments, edges)
    w = cluster_weights(n.shape[1], cfg.weights)
    members = r >= 1.0 if cfg.correct_only else None
    P = grsp_penalty(n, w, cfg.penalty_form, cfg.eps, members)
    return P, r - cfg.penalty_coef * P, n


def grsp_advantage(rewards: torch.Tensor, shaped: torch.Tensor, P: torch.Tensor, cfg: GRSPConfig,
                   scale_std: bool = True) -> torch.Tensor:
    """rewards r [G], shaped r~ [G], P [G] -> advantages [G] float32: apply_to reward = A(r~),
    advantage = A(r) - lambda P (A = cfg.baseline's advantage)."""
    if cfg.apply_to == "advantage":
        return (advantage(rewards, cfg.baseline, scale_std).double() - cfg.penalty_coef * P).float()
    return advantage(shaped, cfg.baseline, scale_std)


def lcpo_reward(correct: torch.Tensor, lengths: torch.Tensor, target: float, alpha: float, delta: float = 0.5,
                form: str = "exact") -> torch.Tensor:
    """correct c [G] (0/1), lengths n [G] tokens -> r [G] float64: exact c - alpha |target - n|,
    max c * clip(alpha (target - n) + delta, 0, 1)."""
    c, n = correct.double(), lengths.double()
    if form == "exact":
        return c - alpha * (target - n).abs()
    if form == "max":
        return c * (alpha * (target - n) + delta).clamp(0.0, 1.0)
    raise ValueError(f"lcpo form {form!r}; choose exact or max")
