"""RL core: the rollout batch, the advantage registry, subset sampling and teacher-forced log-probs.

Everything here is a pure torch function (no model inside, except `per_token_logprobs`, which
only runs the model it is given). The losses live in `spiral_bench.trainers.losses` and are
re-exported here (`LOSSES`, `get_loss`, `RLLossConfig`, `compute_loss`).

Batch layout (the same as TRL's GRPOTrainer): every row is ``[pad.. prompt | completion ..pad]``,
prompts LEFT-padded to a common width P, completions RIGHT-padded to a common width C, T = P + C.
Per-token tensors ([B, T]) are aligned with `input_ids`: entry t is log p(input_ids[t] |
input_ids[:t]) and is 0 wherever `completion_mask` is 0.

Advantages (one scalar per trace):
- grpo:               A_j = r_j - mean_g(r)            [/ (std_g(r) + eps) if scale_std]
                      std is the UNBIASED (Bessel, n-1) group std and eps = 1e-4, as in TRL 1.16
                      (`nanstd(...)` then `/ (std + 1e-4)`); a group of one has std 0 -> A = 0.
- spiral_search:      subsets G_1..G_K of the N1 search traces, N2 aggregation rewards per subset:
                      f_i = mean_z r(z in G_i),  b = mean_i f_i,
                      A_j = mean_{i : j in G_i} (f_i - b)    for a trace in at least one subset;
                      a trace in no subset: "zero" -> A_j = 0 (kept in the loss), "drop" -> A_j = 0
                      and keep_mask[j] = False (remove it from the loss with RolloutBatch.select),
                      "force" -> coverage is a property of the sampling (sample_subsets(...,
                      force_cover=True)); an uncovered trace is then an error.
- spiral_aggregation: A_{i,z} = r_{i,z} - f_i  (centred inside its own subset).
- length_control:     A_j <- 0 where A_j > 0 and length_j > L_target (negatives are kept).
"""
from __future__ import annotations

import dataclasses
import itertools
import math
from typing import Callable, Sequence

import torch

from spiral_bench.trainers.losses import LOSSES, RLLossConfig, aggregate, compute_loss, get_loss  # noqa: F401

SEARCH, AGGREGATION = 0, 1  # values of RolloutBatch.roles
UNCOVERED_MODES = ("zero", "drop", "force")


# --------------------------------------------------------------------------- rollout batch
@dataclasses.dataclass
class RolloutBatch:
    """B sampled traces, padded as ``[pad.. prompt | completion ..pad]`` (prompts left, completions right).

    input_ids       LongTensor [B, T]   prompt + completion token ids (pad id where masked)
    attention_mask  LongTensor [B, T]   1 on real prompt and completion tokens
    completion_mask LongTensor [B, T]   1 on generated tokens only (columns >= prompt_width)
    old_logprobs    FloatTensor [B, T] | None  sampling log-probs on completion positions, 0 elsewhere
                    (None: on-policy, the loss uses the current log-probs detached)
    rewards         FloatTensor [B]     verifier reward of each trace
    advantages      FloatTensor [B]     one advantage per trace
    roles           LongTensor [B]      0 = search trace, 1 = aggregation trace
    group_ids       LongTensor [B]      which prompt (GRPO group / SPIRAL prompt) a trace belongs to
    prompt_width    int                 P: completion tokens start at column P
    """

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    completion_mask: torch.Tensor
    old_logprobs: torch.Tensor | None
    rewards: torch.Tensor
    advantages: torch.Tensor
    roles: torch.Tensor
    group_ids: torch.Tensor
    prompt_width: int

    def __len__(self) -> int:
        return self.input_ids.shape[0]

    @property
    def completion_lengths(self) -> torch.Tensor:
        """LongTensor [B]: generated tokens per trace."""
        return self.completion_mask.sum(-1)

    def _map(self, fn: Callable[[torch.Tensor], torch.Tensor]) -> "RolloutBatch":
        kw = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        for k, v in kw.items():
            if isinstance(v, torch.Tensor):
                kw[k] = fn(v)
        return RolloutBatch(**kw)

    def to(self, device: torch.device | str) -> "RolloutBatch":
        return self._map(lambda t: t.to(device))

    def select(self, rows: torch.Tensor | Sequence[int]) -> "RolloutBatch":
        """Keep rows given by a bool mask [B] or an index list (e.g. drop uncovered search traces)."""
        idx = torch.as_tensor(rows)
        if idx.dtype == torch.bool:
            idx = idx.nonzero().squeeze(-1)
        return self._map(lambda t: t[idx.to(t.device)])

    def trl_inputs(self) -> dict[str, torch.Tensor]:
        """The batch in TRL 1.16 GRPOTrainer's `_compute_loss` input format (prompt/completion split)."""
        P = self.prompt_width
        out = {"prompt_ids": self.input_ids[:, :P], "prompt_mask": self.attention_mask[:, :P],
               "completion_ids": self.input_ids[:, P:], "completion_mask": self.completion_mask[:, P:],
               "advantages": self.advantages, "num_items_in_batch": self.completion_mask.sum()}
        if self.old_logprobs is not None:
            out["old_per_token_logps"] = self.old_logprobs[:, P:]
        return out


def build_rollout_batch(prompt_ids: Sequence[Sequence[int]], completion_ids: Sequence[Sequence[int]],
                        pad_id: int, sampling_logprobs: Sequence[Sequence[float]] | None = None,
                        rewards: Sequence[float] | torch.Tensor | None = None,
                        advantages: Sequence[float] | torch.Tensor | None = None,
                        roles: Sequence[int] | torch.Tensor | None = None,
                        group_ids: Sequence[int] | torch.Tensor | None = None) -> RolloutBatch:
    """Pad B (prompt, completion) token lists into a RolloutBatch (prompts left-, completions right-padded).

    sampling_logprobs[b] must have len(completion_ids[b]) entries (log-prob of each generated token
    under the sampling policy); None -> old_logprobs None (on-policy). Missing rewards/advantages
    default to 0, roles to SEARCH, group_ids to 0..B-1. Every prompt needs at least one token.
    """
    B = len(prompt_ids)
    if len(completion_ids) != B:
        raise ValueError(f"{B} prompts but {len(completion_ids)} completions")
    if any(len(p) == 0 for p in prompt_ids):
        raise ValueError("every prompt needs at least one token (the first completion token is predicted from it)")
    P = max(len(p) for p in prompt_ids)
    C = max((len(c) for c in completion_ids), default=0)
    ids = torch.full((B, P + C), pad_id, dtype=torch.long)
    attn = torch.zeros((B, P + C), dtype=torch.long)
    cmask = torch.zeros((B, P + C), dtype=torch.long)
    old = None if sampling_logprobs is None else torch.zeros((B, P + C), dtype=torch.float32)
    if sampling_logprobs is not None and len(sampling_logprobs) != B:
        raise ValueError(f"{B} completions but {len(sampling_logprobs)} sampling log-prob lists")
    for b, (p, c) in enumerate(zip(prompt_ids, completion_ids)):
        ids[b, P - len(p):P] = torch.as_tensor(list(p), dtype=torch.long)
        attn[b, P - len(p):P] = 1
        if len(c):
            ids[b, P:P + len(c)] = torch.as_tensor(list(c), dtype=torch.long)
            attn[b, P:P + len(c)] = 1
            cmask[b, P:P + len(c)] = 1
        if old is not None:
            if len(sampling_logprobs[b]) != len(c):
                raise ValueError(f"row {b}: {len(c)} completion tokens but {len(sampling_logprobs[b])} log-probs")
            if len(c):
                old[b, P:P + len(c)] = torch.as_tensor(list(sampling_logprobs[b]), dtype=torch.float32)

    def vec(x, default, dtype):
        t = default if x is None else torch.as_tensor(x, dtype=dtype)
        if t.shape != (B,):
            raise ValueError(f"expected {B} values, got shape {tuple(t.shape)}")
        return t.to(dtype)

    return RolloutBatch(ids, attn, cmask, old,
                        vec(rewards, torch.zeros(B), torch.float32),
                        vec(advantages, torch.zeros(B), torch.float32),
                        vec(roles, torch.full((B,), SEARCH), torch.long),
                        vec(group_ids, torch.arange(B), torch.long), P)


# --------------------------------------------------------------------------- advantages
def grpo(rewards: torch.Tensor, scale_std: bool = True, eps: float = 1e-4) -> torch.Tensor:
    """GRPO group advantage. rewards [G] or [P, G] (groups on the last dim) -> same shape.

    A = r - mean(r); if scale_std, A /= (std(r, unbiased) + eps). A group of size 1 has std 0
    (TRL's convention), so its advantage is 0.
    """
    r = rewards.float()
    adv = r - r.mean(-1, keepdim=True)
    if scale_std:
        std = r.std(-1, keepdim=True) if r.shape[-1] > 1 else torch.zeros_like(r[..., :1])
        adv = adv / (std + eps)
    return adv


def _membership(subsets: torch.Tensor, n_search: int) -> torch.Tensor:
    """subsets [..., K, n] -> float membership M [..., K, N1] (M[i, j] = 1 iff trace j in G_i)."""
    if subsets.dtype not in (torch.int32, torch.int64):
        raise TypeError(f"subsets must be an integer tensor, got {subsets.dtype}")
    if subsets.numel() and (subsets.min() < 0 or subsets.max() >= n_search):
        raise ValueError(f"subset indices must lie in [0, {n_search}), got {subsets.min().item()}..{subsets.max().item()}")
    M = torch.nn.functional.one_hot(subsets.long(), n_search).sum(-2)
    if (M > 1).any():
        raise ValueError("a subset contains the same search trace twice")
    return M.float()


def spiral_search(subsets: torch.Tensor, agg_rewards: torch.Tensor, n_search: int,
                  uncovered: str = "zero") -> tuple[torch.Tensor, torch.Tensor]:
    """SPIRAL marginal set advantage of the search traces.

    subsets [..., K, n] (search-trace indices), agg_rewards [..., K, N2] -> (adv [..., N1], keep [..., N1] bool).
    f_i = mean(agg_rewards[i]); b = mean_i f_i; adv_j = sum_i M_ij (f_i - b) / sum_i M_ij for covered j.
    Uncovered j: adv 0; keep False only for uncovered="drop"; uncovered="force" raises (see module doc).
    """
    if uncovered not in UNCOVERED_MODES:
        raise ValueError(f"uncovered={uncovered!r}; choose one of {list(UNCOVERED_MODES)}")
    if subsets.shape[:-1] != agg_rewards.shape[:-1]:
        raise ValueError(f"subsets {tuple(subsets.shape)} and agg_rewards {tuple(agg_rewards.shape)} disagree on [..., K]")
    M = _membership(subsets.to(agg_rewards.device), n_search)  # [..., K, N1]
    f = agg_rewards.float().mean(-1)                            # [..., K]
    d = f - f.mean(-1, keepdim=True)                            # f_i - b
    count = M.sum(-2)                                           # [..., N1]
    adv = (M * d.unsqueeze(-1)).sum(-2) / count.clamp(min=1)
    covered = count > 0
    if uncovered == "force" and not bool(covered.all()):
        missing = (~covered).nonzero().tolist()
        raise ValueError(f"uncovered='force' but search traces {missing} are in no subset; "
                         "sample subsets with sample_subsets(..., force_cover=True)")
    keep = covered if uncovered == "drop" else torch.ones_like(covered)
    return adv, keep


def spiral_aggregation(agg_rewards: torch.Tensor) -> torch.Tensor:
    """Aggregation-trace advantage r - f_i within its own subset. agg_rewards [..., K, N2] -> [..., K, N2]."""
    r = agg_rewards.float()
    return r - r.mean(-1, keepdim=True)


def length_control(adv: torch.Tensor, lengths: torch.Tensor, L_target: int | float) -> torch.Tensor:
    """adv [B], lengths [B] -> adv [B] with positive entries set to 0 where length > L_target."""
    return torch.where((adv > 0) & (lengths.to(adv.device) > L_target), torch.zeros_like(adv), adv)


ADVANTAGES: dict[str, Callable] = {
    "grpo": grpo,
    "spiral_search": spiral_search,
    "spiral_aggregation": spiral_aggregation,
    "length_control": length_control,
}


def get_advantage(name: str) -> Callable:
    try:
        return ADVANTAGES[name]
    except KeyError:
        raise KeyError(f"unknown advantage {name!r}; known: {sorted(ADVANTAGES)}") from None


# --------------------------------------------------------------------------- subset sampling
_ENUMERATE_LIMIT = 200_000  # enumerate all C(N1, n) subsets below this, else rejection-sample


def sample_subsets(n_search: int, K: int, n: int, generator: torch.Generator | None = None,
                   force_cover: bool = False) -> torch.Tensor:
    """Draw K distinct (as sets) subsets of size n of range(n_search) -> LongTensor [K, n], rows sorted.

    Without force_cover the K subsets are uniform without replacement among the C(N1, n) subsets.
    With force_cover every trace lands in at least one subset: a random permutation is cut into
    ceil(N1/n) blocks (the last topped up with random other traces; each block owns a trace no
    other block has, so they are distinct) and the other K - ceil(N1/n) subsets are drawn
    uniformly among the rest. Row order is shuffled. Raises ValueError when K > C(N1, n), or
    when force_cover and K * n < N1.
    """
    if not (1 <= n <= n_search) or K < 1:
        raise ValueError(f"need 1 <= n <= n_search and K >= 1, got n_search={n_search}, K={K}, n={n}")
    total = math.comb(n_search, n)
    if K > total:
        raise ValueError(f"cannot draw K={K} distinct subsets of size n={n} from {n_search} traces: "
                         f"only C({n_search},{n})={total} exist")
    if force_cover and K * n < n_search:
        raise ValueError(f"force_cover impossible: K*n = {K}*{n} = {K * n} < {n_search} search traces")
    g = generator

    def randperm(m: int) -> list[int]:
        return torch.randperm(m, generator=g).tolist()

    chosen: list[tuple[int, ...]] = []
    if force_cover:
        perm = randperm(n_search)
        for s in range(0, n_search, n):
            block = perm[s:s + n]
            if len(block) < n:
                others = [t for t in perm if t not in block]
                block = block + [others[i] for i in randperm(len(others))[:n - len(block)]]
            chosen.append(tuple(sorted(block)))
    seen = set(chosen)
    need = K - len(chosen)
    if need > 0 and total <= _ENUMERATE_LIMIT:
        rest = [c for c in itertools.combinations(range(n_search), n) if c not in seen]
        chosen += [rest[i] for i in randperm(len(rest))[:need]]
    else:
        while len(chosen) < K:  # C(N1, n) is huge here, so collisions are rare
            c = tuple(sorted(randperm(n_search)[:n]))
            if c not in seen:
                seen.add(c)
                chosen.append(c)
    out = torch.tensor(chosen, dtype=torch.long)
    return out[torch.randperm(K, generator=g)]


def length_buckets(prompt_lens: Sequence[int], completion_lens: Sequence[int],
                   overhead: int = 256) -> list[list[int]]:
    """Cut B traces into padded sub-batches for the teacher-forced pass: indices sorted by
    (completion, prompt) length, cut into consecutive groups minimising
        sum_groups rows x (max prompt + max completion) + overhead
    (padded tokens of the pass plus a per-pass cost in token units; exact DP, O(B^2)).
    Returns lists of indices into the inputs; every index appears once."""
    order = sorted(range(len(prompt_lens)), key=lambda i: (completion_lens[i], prompt_lens[i], i))
    n = len(order)
    best, cut = [0.0] + [float("inf")] * n, [0] * (n + 1)
    for j in range(1, n + 1):
        mp = mc = 0
        for i in range(j - 1, -1, -1):
            mp, mc = max(mp, prompt_lens[order[i]]), max(mc, completion_lens[order[i]])
            c = best[i] + (j - i) * (mp + mc) + overhead
            if c < best[j]:
                best[j], cut[j] = c, i
    groups, j = [], n
    while j > 0:
        groups.append(order[cut[j]:j])
        j = cut[j]
    return groups[::-1]


# --------------------------------------------------------------------------- teacher forcing
def per_token_logprobs(model: torch.nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                       completion_mask: torch.Tensor, temperature: float = 1.0,
                       return_entropy: bool = False):
    """Teacher-forced log-probs of the completion tokens under `model` (a transformers causal LM).

    input_ids, attention_mask, completion_mask [B, T] -> logprobs [B, T] (entry t = log softmax(
    logits_{t-1} / temperature)[input_ids[t]], 0 where completion_mask is 0), and with
    return_entropy also the entropy [B, T] of that next-token distribution (0 off the mask).
    Position ids are cumsum(attention_mask) - 1, as in HF generation with left padding. Only the
    logits of columns >= (first completion column - 1) are computed (`logits_to_keep`).
    """
    B, T = input_ids.shape
    cols = completion_mask.any(0).nonzero()
    if cols.numel() == 0:
        z = torch.zeros((B, T), device=input_ids.device)
        return (z, z.clone()) if return_entropy else z
    c0 = max(int(cols[0]), 1)
    keep = T - c0 + 1
    position_ids = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)
    logits = model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                   logits_to_keep=keep, use_cache=False).logits[:, :-1].float() / temperature  # [B, T-c0, V]
    logp_all = torch.log_softmax(logits, dim=-1)
    target = input_ids[:, c0:]
    lp = logp_all.gather(-1, target.unsqueeze(-1)).squeeze(-1)                           # [B, T-c0]
    mask = completion_mask[:, c0:].bool()
    out = torch.zeros((B, T), dtype=lp.dtype, device=lp.device)
    out[:, c0:] = lp.masked_fill(~mask, 0.0)
    if not return_entropy:
        return out
    ent = -(logp_all.exp() * logp_all).sum(-1).masked_fill(~mask, 0.0)
    ent_out = torch.zeros_like(out)
    ent_out[:, c0:] = ent
    return out, ent_out


def packed_logprobs(model: torch.nn.Module, packs: Sequence[tuple[Sequence[int], Sequence[Sequence[int]]]],
                    pad_id: int, temperature: float = 1.0) -> list[torch.Tensor]:
    """Teacher-forced log-probs of completions that share a prompt, each prompt run once per pack.

    packs: R pairs (prompt ids, [completion ids c_1..c_k]). Row r = [prompt | c_1 | ... | c_k | pad];
    position ids 0..P-1 on the prompt and P..P+|c_j|-1 on every c_j; token t of c_j attends to the
    prompt and to c_j[:t] (block-causal mask), so each completion sees exactly the context of its own
    unpacked row. log p(c_j[0]) = log_softmax(logits[P-1] / T)[c_j[0]], log p(c_j[t]) from the
    position of c_j[t-1]. Returns one 1-D tensor [|c_j|] per completion, in pack order (differentiable).
    Needs 'sdpa' or 'eager' attention (a ready 4-D mask); raises ValueError otherwise.
    """
    from spiral_bench.sampling import _bool_mask_dict

    dev = next(model.parameters()).device
    rows = [len(p) + sum(len(c) for c in cs) for p, cs in packs]
    R, T = len(packs), max(rows)
    ids = torch.full((R, T), pad_id, dtype=torch.long)
    pos = torch.zeros((R, T), dtype=torch.long)
    seg = torch.full((R, T), -1, dtype=torch.long)
    src, tgt, sizes = [], [], []
    for r, (p, cs) in enumerate(packs):
        P = len(p)
        ids[r, :P], pos[r, :P], seg[r, :P] = torch.as_tensor(list(p)), torch.arange(P), 0
        o = P
        for j, c in enumerate(cs, 1):
            n = len(c)
            ids[r, o:o + n], pos[r, o:o + n], seg[r, o:o + n] = torch.as_tensor(list(c)), torch.arange(P, P + n), j
            src += [r * T + x for x in [P - 1, *range(o, o + n - 1)][:n]]
            tgt += list(c)
            sizes.append(n)
            o += n
    q = torch.arange(T)
    allowed = ((q[None, :] <= q[:, None])[None] & ((seg[:, None, :] == 0) | (seg[:, None, :] == seg[:, :, None]))
               & (seg >= 0)[:, None, :]) | torch.eye(T, dtype=torch.bool)[None]               # [R, T, T]
    masks = _bool_mask_dict(getattr(model, "module", model), allowed[:, None].to(dev))  # DDP: its module
    if masks is None:
        raise ValueError("packed_logprobs needs a model with 'sdpa' or 'eager' attention and full-attention layers")
    logits = model(input_ids=ids.to(dev), attention_mask=masks, position_ids=pos.to(dev), use_cache=False).logits
    z = logits.reshape(R * T, -1)[torch.as_tensor(src, device=dev)].float() / temperature
    lp = torch.log_softmax(z, dim=-1).gather(-1, torch.as_tensor(tgt, device=dev)[:, None])[:, 0]
    return list(lp.split(sizes))
