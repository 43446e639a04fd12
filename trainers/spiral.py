"""SPIRAL (arXiv 2606.23595), as a rollout method of the shared loop (trainers/loop.py).

Per prompt x (one shared policy plays both roles; L_s = spiral_max_new_tokens or max_new_tokens):
1. N1 search traces y_1..y_N1 ~ pi(.|x), request seed derive_seed(seed, step, pid, "search", 0)
   (the same seeds as GRPO's first N1 traces);
2. K distinct subsets G_1..G_K of size n (rl_core.sample_subsets, generator seeded by
   derive_seed(seed, step, pid, "subsets", 0); force_cover when uncovered = "force");
3. per subset i, N2 aggregation traces z ~ pi(.|task.aggregation_prompt(x, G_i)), candidates in a
   seeded random order (or index order), request seed derive_seed(seed, step, pid, "aggregation", i);
   rewards r(z) = task.reward;
4. f_i = mean_z r(z), b = mean_i f_i; search advantage A_j = mean_{i: j in G_i} (f_i - b)
   (rl_core.spiral_search; uncovered traces: zero / drop / force); aggregation advantage
   A_z = r(z) - f_i (rl_core.spiral_aggregation); length control if L_target is set;
5. the loop makes one policy-gradient update over all search and aggregation tokens.
"""
from __future__ import annotations

import torch

from spiral_bench.backends.base import Request
from spiral_bench.trainers import rl_core
from spiral_bench.trainers.loop import PromptRollout, register_method


@register_method("spiral")
def rollout(run, problems, step: int) -> list[PromptRollout]:
    cfg, task, L = run.cfg, run.task, run.cfg.spiral_L
    reqs = [Request(task.prompt(p), n=cfg.n1, seed=run.seed(step, p.id, "search")) for p in problems]
    search = run.generate(reqs, L)
    subsets, agg_reqs = [], []
    for p, samples in zip(problems, search):
        g = torch.Generator().manual_seed(run.seed(step, p.id, "subsets"))
        sub = rl_core.sample_subsets(cfg.n1, cfg.k, cfg.subset_size, g, force_cover=cfg.uncovered == "force")
        subsets.append(sub)
        for i, row in enumerate(sub.tolist()):
            if cfg.candidate_order == "random":
                row = [row[j] for j in torch.randperm(len(row), generator=g).tolist()]
            shown = [samples[j] for j in row]
            prompt = task.aggregation_prompt(p, [s.text for s in shown], [s.truncated for s in shown])
            agg_reqs.append(Request(prompt, n=cfg.n2, seed=run.seed(step, p.id, "aggregation", i)))
    aggs = run.generate(agg_reqs, L)
    out = []
    for b, p in enumerate(problems):
        s_tr = run.traces(p, reqs[b].prompt, search[b], rl_core.SEARCH)
        a_tr = [t for i in range(cfg.k) for t in
                run.traces(p, agg_reqs[b * cfg.k + i].prompt, aggs[b * cfg.k + i], rl_core.AGGREGATION)]
        r_agg = torch.tensor([t.reward for t in a_tr]).view(cfg.k, cfg.n2)
        adv, keep = rl_core.ADVANTAGES["spiral_search"](subsets[b], r_agg, cfg.n1, cfg.uncovered)
        run.set_advantages(s_tr, adv, keep)
        run.set_advantages(a_tr, rl_core.ADVANTAGES["spiral_aggregation"](r_agg))
        out.append(PromptRollout(p, s_tr + a_tr))
    return out
