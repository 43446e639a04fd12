"""GRPO (the baseline), as a rollout method of the shared loop (trainers/loop.py).

Per prompt x: G = `group_size` traces y_1..y_G ~ pi(.|x) with L = `max_new_tokens`, all from one
request whose seed is derive_seed(seed, step, problem id, "search", 0) (sample j: sample_seed(., j);
SPIRAL's search traces use the same seeds, so both methods see common random numbers);
rewards r_j = task.reward; advantages (rl_core.grpo)
    A_j = r_j - mean(r)            [/ (std(r) + 1e-4) if scale_std]
then length control if L_target is set. Everything else (loss, optimizer, data order) is the loop's.
"""
from __future__ import annotations

import torch

from spiral_bench.backends.base import Request
from spiral_bench.trainers import rl_core
from spiral_bench.trainers.loop import PromptRollout, register_method


@register_method("grpo")
def rollout(run, problems, step: int) -> list[PromptRollout]:
    cfg = run.cfg
    reqs = [Request(run.task.prompt(p), n=cfg.group_size, seed=run.seed(step, p.id, "search"))
            for p in problems]
    out = []
    for p, req, samples in zip(problems, reqs, run.generate(reqs, cfg.max_new_tokens)):
        traces = run.traces(p, req.prompt, samples, rl_core.SEARCH)
        r = torch.tensor([t.reward for t in traces])
        run.set_advantages(traces, rl_core.ADVANTAGES["grpo"](r, scale_std=cfg.scale_std))
        out.append(PromptRollout(p, traces))
    return out
