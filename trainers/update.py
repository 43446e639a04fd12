"""The update pass's batching: which traces share a teacher-forced forward, and their log-probs.

- `forward_batches(traces, pack, pack_max_tokens, micro_batch_size, max_tokens=0)`: lists of *units*
  per forward. A unit is the traces that share one copy of their prompt: with packing, consecutive
  completions (shortest first) of one prompt and role while prompt + completions <= pack_max_tokens;
  without, one trace. A batch holds one role, at most micro_batch_size traces (0 = no limit) and,
  with max_tokens > 0, at most max_tokens padded tokens, `padded_tokens(units, pack)` = rows x width
  (width: the longest row when packed, max prompt + max completion otherwise; a single unit over
  the budget gets a batch of its own); it is then cut into length buckets (rl_core.length_buckets:
  row lengths when packed, prompt / completion widths otherwise), which only lowers that count.
- `teacher_forced(model, units, batch, pack, pad_id, temperature)`: log-probs [B, P + C] in the
  RolloutBatch layout of the units' traces (rl_core.packed_logprobs when some unit holds several
  traces, else rl_core.per_token_logprobs, e.g. for long traces that each fill a row). The loss is
  a sum over traces, so the grouping changes no result beyond float summation order
  (tests/test_trainers.py).
- whole_groups (Bridge, trainers/bridge_rl.py): every trace is its own unit (no packing), and the
  traces of one group (`.group`, else (role, prompt)) are never split: a batch holds whole groups
  up to micro_batch_size traces (a larger group gets a batch of its own), no length buckets.
  `teacher_forced` of a model whose Bridge couples rows runs the padded pass inside
  group_context(model, group ids of the rows, bridge_decode.alive_from_mask(attention_mask)).
Traces are duck-typed: `.role`, `.prompt_ids`, `.sample.token_ids`, `.sample.completion_tokens`.
"""
from __future__ import annotations

import torch
from spiral_bench.trainers import rl_core


def padded_tokens(units: list[list], pack: bool) -> int:
    """Tokens (padding included) of one forward over `units`: rows x width."""
    if not units:
        return 0
    if pack:
        return len(units) * max(len(u[0].prompt_ids) + sum(t.sample.completion_tokens for t in u) for u in units)
    return len(units) * (max(len(u[0].prompt_ids) for u in units) + max(u[0].sample.completion_tokens for u in units))


def forward_batches(traces: list, pack: bool, pack_max_tokens: int, micro_batch_size: int,
                    max_tokens: int = 0, whole_groups: bool = False) -> list[list[list]]:
    if whole_groups:   # a Bridge model: a group's traces share every forward (max_tokens does not split them)
        return _group_batches(traces, micro_batch_size)
    groups: dict[tuple, list] = {}
    for t in traces:
        groups.setdefault((t.role, tuple(t.prompt_ids)), []).append(t)
    units = []
    for (_, prompt), ts in groups.items():
        cur, size = [], len(prompt)
        for t in sorted(ts, key=lambda t: t.sample.completion_tokens):
            n = t.sample.completion_tokens
            if cur and (not pack or size + n > pack_max_tokens):
                units.append(cur)
                cur, size = [], len(prompt)
            cur.append(t)
            size += n
        units.append(cur)

    def row(u):
        return len(u[0].prompt_ids) + sum(t.sample.completion_tokens for t in u)

    units.sort(key=lambda u: (u[0].role, len(u[0].prompt_ids), row(u)))
    mb = micro_batch_size or max(1, len(traces))
    batches, cur = [], []
    for u in units:
        if cur and (sum(map(len, cur)) + len(u) > mb or cur[0][0].role != u[0].role
                    or (max_tokens and padded_tokens(cur + [u], pack) > max_tokens)):
            batches.append(cur)
            cur = []
        cur.append(u)
    if cur:
        batches.append(cur)
    if pack:
        cuts = (rl_core.length_buckets([row(u) for u in b], [0] * len(b)) for b in batches)
    else:
        cuts = (rl_core.length_buckets([len(u[0].prompt_ids) for u in b], [u[0].sample.completion_tokens for u in b])
                for b in batches)
    return [[b[i] for i in g] for b, gs in zip(batches, cuts) for g in gs]


def group_key(t) -> tuple:
    """The Bridge group of a trace: `.group` if set, else (role, prompt ids)."""
    g = getattr(t, "group", None)
    return ("g", g) if g is not None else ("p", t.role, tuple(t.prompt_ids))


def _group_batches(traces: list, micro_batch_size: int) -> list[list[list]]:
    groups: dict[tuple, list] = {}
    for t in traces:
        groups.setdefault(group_key(t), []).append(t)
    mb = micro_batch_size or max(1, len(traces))
    batches, cur = [], []
    for ts in groups.values():
        if cur and sum(map(len, cur)) + len(ts) > mb:
            batches.append(cur)
            cur = []
        cur += [[t] for t in ts]
    if cur:
        batches.append(cur)
    return batches


def teacher_forced(model, units: list[list], batch: rl_core.RolloutBatch, pack: bool, pad_id: int,
                   temperature: float) -> torch.Tensor:
    from spiral_bench.bridge import group_context, samples_independent

    if not samples_independent(model):  # a Bridge: one pass over whole groups with their masks
        from spiral_bench.bridge_decode import alive_from_mask
        ids = {}
        group = torch.tensor([ids.setdefault(group_key(t), len(ids)) for u in units for t in u],
                             device=batch.input_ids.device)
        with group_context(model, group, alive_from_mask(batch.attention_mask)):
            return rl_core.per_token_logprobs(model, batch.input_ids, batch.attention_mask, batch.completion_mask,
                                              temperature)
    if not pack or all(len(u) == 1 for u in units):  # nothing shared: the plain padded pass
        return rl_core.per_token_logprobs(model, batch.input_ids, batch.attention_mask, batch.completion_mask,
                                          temperature)
    lps = rl_core.packed_logprobs(model, [(u[0].prompt_ids, [t.sample.token_ids for t in u]) for u in units],
                                  pad_id, temperature)
    body = torch.nn.utils.rnn.pad_sequence(lps, batch_first=True)                      # [B, C]
    B, T = batch.input_ids.shape
    P = batch.prompt_width
    return torch.cat([body.new_zeros(B, P), body, body.new_zeros(B, T - P - body.shape[1])], dim=1)
