"""Bridge GRPO (arXiv 2510.01143) and its P-Match control as methods of the shared RL loop.

Starting policy: the run's starting checkpoint (the SFT base) + a fresh zero-initialised Bridge
(`spiral_bench.bridge.add_bridge`, `bridge.param_fraction` of the base's parameters; method
`pmatch`: the equal-parameter per-row MLP, BridgeConfig(kind="pmatch")), so at step 0 both
return exactly the base's logits. A resumed run reads its Bridge from checkpoint/.

Rollout (methods `bridge`, `pmatch`): exactly GRPO's (trainers/grpo.py: one request of
G = `group_size` samples per prompt, same seeds, A_j = r_j - mean(r) [/ (std(r) + 1e-4)]), but
sampled in lockstep by `bridge_decode.BridgeSampler`, so the GRPO group IS the bridged set of
width G. Each trace is tagged `group` = (step, problem id, call), the unit of the update.

Update (trainers/update.py, `whole_groups`): the G traces of a group are always in the same
teacher-forced forward (never packed, never split by micro-batch or length bucket, none left out
for a zero advantage: a sibling's tokens change the others' log-probs), and a bridged model's
log-probs come from one group pass
    logp = rl_core.per_token_logprobs(model, ...) inside group_context(model, group, alive_from_mask)
which equals the lockstep sampler's log-probs (tests/test_bridge.py), so ratio = 1 on-policy.
Loss, optimizer, schedule: the loop's (all parameters train, Bridge included); with `bridge.lr` > 0
the added weights are their own AdamW parameter group at that peak lr (same schedule), since the
zero-initialised W_O moves slowly at a base model's lr.

Optional warm-up (`bridge.warmup_steps` > 0, before RL step 1, not on resume): on the first
`warmup_problems` train problems, `warmup_samples` lockstep samples each from the starting policy;
keep the correct ones, drop problems with <= 1 correct, and train ONLY the Bridge weights
(AdamW, lr `warmup_lr`) for warmup_steps steps, step i on the kept groups i mod n (each group's
correct traces batched together as one group), loss = mean over their completion tokens of
-log p (group pass). The warm-up's samples are not counted in total_generated_tokens.
Matched compute: G and max_new_tokens are GRPO's (TrainConfig budget G x L, GROUP_METHODS).
"""
from __future__ import annotations

import dataclasses

import torch

from spiral_bench.backends.base import Request
from spiral_bench.config import option


@dataclasses.dataclass(frozen=True)
class BridgeTrainConfig:
    """Bridge / P-Match blocks added to the starting policy, and the optional Bridge-only warm-up."""

    param_fraction: float = option(0.04, min=0.0, max=1.0, help="added parameters as a fraction of the base "
                                   "model's (the paper adds 2.8-5.1%)")
    num_heads: int = option(2, min=1, help="attention heads of each Bridge block")
    warmup_steps: int = option(0, min=0, help="Bridge-only warm-up steps on correct groups before RL (0 = off)")
    warmup_problems: int = option(32, min=1, help="warm-up: train problems sampled")
    warmup_samples: int = option(8, min=2, help="warm-up: samples per problem (correct ones kept, >= 2 needed)")
    warmup_lr: float = option(1e-3, min=0.0, help="warm-up: AdamW learning rate of the Bridge weights")
    lr: float = option(0.0, min=0.0, help="RL: AdamW learning rate of the added (Bridge / P-Match) weights, "
                       "scheduled like the run's lr (0 = the run's lr)")


def setup(run) -> None:
    """Called by Run.__init__ before the optimizer: add the Bridge (unless resumed), sample in
    lockstep, update whole groups, warm up (not on resume)."""
    from spiral_bench.bridge import BridgeConfig, add_bridge, get_bridge, is_bridged
    from spiral_bench.bridge_decode import BridgeSampler

    from spiral_bench.config import ConfigError
    from spiral_bench.trainers.rollout_engine import HFRollout

    cfg = run.cfg
    b = cfg.bridge
    if run.world > 1:  # the Bridge is added after the model is wrapped for DDP / FSDP
        raise ConfigError(f"method {cfg.method}: trains in one process (torchrun with {run.world} processes)")
    if not is_bridged(run.model):
        add_bridge(run.model, BridgeConfig(param_fraction=b.param_fraction, num_heads=b.num_heads,
                                           kind="pmatch" if cfg.method == "pmatch" else "bridge"))
    run.sampler = BridgeSampler(run.model, run.tok)
    run.rollout = HFRollout(run.sampler)  # lockstep rollouts (TrainConfig refuses rollout_backend vllm)
    run.whole_groups = True  # update.forward_batches: whole groups, one trace per unit (no packing)
    if b.lr:  # the added weights: their own parameter group (loop.Run builds AdamW from run.opt_groups)
        added = [p for p in get_bridge(run.model).parameters() if p.requires_grad]
        ids = {id(p) for p in added}
        rest = [p for p in run.model.parameters() if p.requires_grad and id(p) not in ids]
        run.opt_groups = [{"params": rest}, {"params": added, "lr": b.lr}]
    resumed = (run.out / "checkpoint" / "trainer_state.pt").is_file()
    if b.warmup_steps and not resumed:
        warm_up(run)


def warm_up(run) -> list[float]:
    """The Bridge-only warm-up (module doc); returns the loss of every step."""
    from spiral_bench.trainers import rl_core

    from spiral_bench.bridge import get_bridge
    from spiral_bench.bridge_decode import group_token_logprobs

    cfg, b = run.cfg, run.cfg.bridge
    probs = run.problems[: b.warmup_problems]
    reqs = [Request(run.task.prompt(p), n=b.warmup_samples, seed=run.seed(0, p.id, "bridge_warmup")) for p in probs]
    groups = []
    for p, req, samples in zip(probs, reqs, run.generate(reqs, cfg.max_new_tokens)):
        good = [s for s in samples if float(run.task.reward(p, s.text)) >= 1.0]
        if len(good) > 1:
            groups.append((run.tok(req.prompt, add_special_tokens=False)["input_ids"], good))
    if not groups:
        print("bridge warm-up: no problem with 2 or more correct samples; skipped", flush=True)
        return []
    params = list(get_bridge(run.model).parameters())
    frozen = [p for p in run.model.parameters() if p.requires_grad and all(p is not q for q in params)]
    for p in frozen:
        p.requires_grad_(False)
    opt = torch.optim.AdamW(params, lr=b.warmup_lr)
    losses = []
    run.model.train()
    try:
        for i in range(b.warmup_steps):
            ids, good = groups[i % len(groups)]
            batch = rl_core.build_rollout_batch([ids] * len(good), [s.token_ids for s in good],
                                                run.tok.pad_token_id).to(run.device)
            P = batch.prompt_width
            lp = group_token_logprobs(run.model, batch.input_ids, batch.attention_mask, P,
                                      torch.zeros(len(good), dtype=torch.long, device=run.device), cfg.temperature)
            m = batch.completion_mask[:, P:].float()
            loss = -(lp * m).sum() / m.sum().clamp(min=1)
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            losses.append(float(loss.detach()))
    finally:
        for p in frozen:
            p.requires_grad_(True)
    return losses


def _rollout(run, problems, step: int):
    from spiral_bench.trainers import rl_core
    from spiral_bench.trainers.loop import PromptRollout

    cfg = run.cfg
    reqs = [Request(run.task.prompt(p), n=cfg.group_size, seed=run.seed(step, p.id, "search")) for p in problems]
    run._bridge_calls = getattr(run, "_bridge_calls", 0) + 1
    out = []
    for p, req, samples in zip(problems, reqs, run.generate(reqs, cfg.max_new_tokens)):
        traces = run.traces(p, req.prompt, samples, rl_core.SEARCH)
        for t in traces:
            t.group = (step, p.id, run._bridge_calls)
        r = torch.tensor([t.reward for t in traces])
        run.set_advantages(traces, rl_core.ADVANTAGES["grpo"](r, scale_std=cfg.scale_std))
        out.append(PromptRollout(p, traces))
    return out


def register() -> None:
    """Register `bridge` and `pmatch` in the loop's METHODS and SETUP (idempotent)."""
    from spiral_bench.trainers import loop

    for name in ("bridge", "pmatch"):
        loop.register_method(name)(_rollout)
        loop.METHOD_SETUP[name] = setup

