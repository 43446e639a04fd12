"""Length-shaped GRPO rollouts of the shared loop: `grsp` (segment-level, GRSP) and `lcpo` (token-level,
L1's LCPO). The maths, with the exact formulas, is in trainers/grsp.py.

Both sample exactly as GRPO (trainers/grpo.py): per prompt one request of G = `group_size` traces
with seed derive_seed(seed, step, problem id, "search", 0), so GRPO, GRSP and LCPO see the same
traces at step 1 (common random numbers). Then, per prompt group:
    grsp: segments of each trace (grsp.segment on the sampler's per-token texts and log-probs),
          n [G, K] segments per length cluster, P = penalty, r~ = r - lambda P,
          A = grpo(r~) or rloo(r~)   (grsp.baseline; or A(r) - lambda P with grsp.apply_to advantage);
          lambda = 0 gives GRPO's advantages exactly.
    lcpo: r~ = lcpo_reward(r >= 1, generated tokens), A = grpo(r~) or rloo(r~).
then `set_advantages` (length control if L_target is set, as for GRPO).

Cluster edges: `grsp.cluster_edges` if given; else the quantiles k/K of the segment lengths of the
first rollout call (step 1: the warm-up policy), summed over ranks as a histogram of lengths
0..max_new_tokens (so every rank gets the same edges; every rank must have a prompt in step 1's
first round, i.e. prompts_per_step >= world size). They are written to <run>/grsp_edges.json
({"edges", "step", "source", "segment_lengths"}) and read back on resume; if step 1 has no segment
at all, the edges are fixed at the first call that has some (until then every count is 0, P = 0).

Metrics appended to each row (trainers/loop.py METHOD_METRICS), over the step's traces:
    grsp_segments_per_response, grsp_segment_len (mean tokens per segment),
    grsp_cluster_segments_per_response [K], grsp_penalty_mean (mean lambda P),
    grsp_penalty_abs_mean (mean |lambda P|), grsp_shaped_reward (mean r~), grsp_edges [K - 1]
    lcpo_shaped_reward (mean r~), lcpo_target_tokens.
"""
from __future__ import annotations

import json

import torch

from spiral_bench.backends.base import Request
from spiral_bench.fileio import write_atomic
from spiral_bench.trainers import grsp, rl_core
from spiral_bench.trainers.loop import PromptRollout, _all_reduce, register_method

EDGES_FILE = "grsp_edges.json"


def _add(run, key: str, value: float) -> None:
    sums = getattr(run, "method_sums", None)
    if sums is not None and key in sums:
        sums[key] += float(value)


def _sample(run, problems, step: int):
    """[(problem, traces)] exactly as GRPO samples them."""
    cfg = run.cfg
    reqs = [Request(run.task.prompt(p), n=cfg.group_size, seed=run.seed(step, p.id, "search")) for p in problems]
    return [(p, run.traces(p, req.prompt, samples, rl_core.SEARCH))
            for p, req, samples in zip(problems, reqs, run.generate(reqs, cfg.max_new_tokens))]


# --------------------------------------------------------------------------- grsp
def _grsp_sums(cfg) -> list[str]:
    K = cfg.grsp.num_clusters
    return ["responses", "segments", "segment_tokens", "penalty", "penalty_abs", "shaped",
            *[f"cluster{k}" for k in range(K)], *[f"edge{k}" for k in range(K - 1)], "edge_ranks"]


def _grsp_summary(cfg, s: dict) -> dict:
    K, n = cfg.grsp.num_clusters, s["responses"]

    def per(x):
        return None if n == 0 else x / n
    ranks = s["edge_ranks"]
    return {"grsp_segments_per_response": per(s["segments"]),
            "grsp_segment_len": None if s["segments"] == 0 else s["segment_tokens"] / s["segments"],
            "grsp_cluster_segments_per_response": [per(s[f"cluster{k}"]) for k in range(K)],
            "grsp_penalty_mean": per(s["penalty"]), "grsp_penalty_abs_mean": per(s["penalty_abs"]),
            "grsp_shaped_reward": per(s["shaped"]),
            "grsp_edges": None if ranks == 0 else [s[f"edge{k}"] / ranks for k in range(K - 1)]}


def _edges(run, segments: list[list[int]], step: int) -> list[float] | None:
    """The run's cluster edges [K - 1], fixed at the first call that sees segments (module doc)."""
    g = run.cfg.grsp
    if getattr(run, "grsp_edges", None) is not None:
        return run.grsp_edges
    if g.cluster_edges is not None:
        run.grsp_edges = [float(e) for e in g.cluster_edges]
        return run.grsp_edges
    path = run.out / EDGES_FILE
    if path.is_file():  # resumed run: the edges fixed at its first step
        run.grsp_edges = [float(e) for e in json.loads(path.read_text())["edges"]]
        return run.grsp_edges
    L = run.cfg.max_new_tokens
    hist = torch.zeros(L + 1, dtype=torch.float64)
    for v in (x for segs in segments for x in segs):
        hist[min(v, L)] += 1
    hist = _all_reduce(hist)
    if hist.sum() == 0:
        return None
    lengths = torch.repeat_interleave(torch.arange(L + 1), hist.long()).tolist()
    run.grsp_edges = grsp.quantile_edges(lengths, g.num_clusters)
    if run.is_main:
        write_atomic(path, json.dumps({"edges": run.grsp_edges, "step": step, "source": "quantiles",
                                       "segment_lengths": {str(i): int(c) for i, c in enumerate(hist) if c}}) + "\n")
    return run.grsp_edges


@register_method("grsp", sums=_grsp_sums, summary=_grsp_summary)
def rollout_grsp(run, problems, step: int) -> list[PromptRollout]:
    cfg, g = run.cfg, run.cfg.grsp
    groups = _sample(run, problems, step)
    strs = run.sampler.token_strings()
    segs = [[grsp.segment([strs[i] if 0 <= i < len(strs) else "" for i in t.sample.token_ids],
                          t.sample.logprobs, g) for t in traces] for _, traces in groups]
    edges = _edges(run, [s for group in segs for s in group], step)
    out = []
    for (p, traces), seg in zip(groups, segs):
        r = torch.tensor([t.reward for t in traces], dtype=torch.float64)
        if edges is None:  # no segment seen yet: nothing to penalise
            P, shaped = torch.zeros_like(r), r
            n = torch.zeros(len(traces), g.num_clusters, dtype=torch.float64)
        else:
            P, shaped, n = grsp.grsp_shape(r, seg, edges, g)
        run.set_advantages(traces, grsp.grsp_advantage(r, shaped, P, g, cfg.scale_std))
        out.append(PromptRollout(p, traces))
        for key, v in (("responses", len(traces)), ("segments", float(n.sum())),
                       ("segment_tokens", sum(map(sum, seg))), ("penalty", float(g.penalty_coef * P.sum())),
                       ("penalty_abs", float(g.penalty_coef * P.abs().sum())), ("shaped", float(shaped.sum())),
                       *[(f"cluster{k}", float(n[:, k].sum())) for k in range(n.shape[1])]):
            _add(run, key, v)
    if edges is not None and getattr(run, "method_sums", {}).get("edge_ranks", 1) == 0:
        for k, e in enumerate(edges):  # each rank adds its (equal) edges once per step; the summary divides
            _add(run, f"edge{k}", e)
        _add(run, "edge_ranks", 1)
    return out


# --------------------------------------------------------------------------- lcpo
def lcpo_target(cfg) -> int:
    """n_gold: lcpo.target_tokens, or max_new_tokens // 2 when null."""
    return cfg.lcpo.target_tokens if cfg.lcpo.target_tokens is not None else cfg.max_new_tokens // 2


@register_method("lcpo", sums=lambda cfg: ["responses", "shaped"],
                 summary=lambda cfg, s: {"lcpo_shaped_reward": None if s["responses"] == 0 else s["shaped"] / s["responses"],
                                         "lcpo_target_tokens": lcpo_target(cfg)})
def rollout_lcpo(run, problems, step: int) -> list[PromptRollout]:
    cfg, c = run.cfg, run.cfg.lcpo
    out = []
    for p, traces in _sample(run, problems, step):
        correct = torch.tensor([float(t.reward >= 1.0) for t in traces])
        lengths = torch.tensor([t.sample.completion_tokens for t in traces])
        shaped = grsp.lcpo_reward(correct, lengths, lcpo_target(cfg), c.alpha, c.delta, c.form)
        run.set_advantages(traces, grsp.advantage(shaped, c.baseline, cfg.scale_std))
        out.append(PromptRollout(p, traces))
        _add(run, "responses", len(traces))
        _add(run, "shaped", float(shaped.sum()))
    return out
