"""Lockstep sampling and the teacher-forced group pass for Bridge models (spiral_bench.bridge).

A request's n samples are one *group*: its rows advance together, one position per step, so at
every step the Bridge sees the group's sequences at the same position. `BridgeSampler` is the hf
sampler (`spiral_bench.sampling.Sampler`: same token choice, log-prob convention, stop strings,
budgets and `Sample`s) with its own batch loop:
1. Batches hold whole groups (requests sorted by prompt length, packed up to `batch_size` rows;
   a group wider than `batch_size` gets a batch of its own).
2. Prefill once per group (the rows of a group share the prompt, so their hidden states are
   equal at every prompt position and the Bridge attention over them returns each row's own
   value: the prefill runs with one row per group), then the prompt cache is fanned out to the
   group's n rows.
3. Decode step t feeds every row's token t - 1 with the group context
       group[b] = the request of row b,   alive[b] = row b has not finished
   (a row is finished once it has produced its last token: EOS, a stop string or its budget).
   Finished rows keep being fed (their logits are ignored) but the Bridge masks them out of every
   other row's attention; no row is compacted away, so the batch shape stays fixed. The loop ends
   when every row has finished. No fused decode step and no shared-prefix attention.
`group_token_logprobs` is the teacher-forced pass of whole groups with the same masks: position s
of row b is alive iff it is a real token (attention_mask 1) before the row's last token. The
lockstep log-probs equal it (tests/test_bridge.py).

Seeds: sample j of a request still draws its Gumbel noise from sample_seed(request.seed, j), so a
group is reproducible and does not depend on other groups in its batch (the Bridge masks other
prompts out). But the samples of a group are NOT independent: sample j's tokens depend on its
siblings' histories, hence on the group width n and on every sibling's seed; sample j of a group
of 4 is not sample j of a group of 8. A trace drawn with budget L is still the first L tokens of
the same group drawn with a larger budget (the rows' histories and the alive masks agree up to L).
"""
from __future__ import annotations

from collections.abc import Sequence

import torch

from .backends.base import Request, Sample, SamplingConfig, sample_seed
from .bridge import group_context, is_bridged
from .config import ConfigError
from .sampling import (
    PreallocCache,
    Sampler,
    _Unit,
    _use_decode_attention,
    decode_buffers,
    left_padded,
    select_tokens,
    token_logprobs,
)


def alive_from_mask(attention_mask: torch.Tensor) -> torch.Tensor:
    """alive [B, T] bool: attention_mask is 1 and the column is before the row's last real token.
    attention_mask: [B, T] 0/1 (left-padded prompt | right-padded completion)."""
    m = attention_mask.bool()
    cols = torch.arange(m.shape[1], device=m.device)
    last = torch.where(m, cols, -1).max(dim=1).values
    return m & (cols[None, :] < last[:, None])


def group_token_logprobs(model, input_ids: torch.Tensor, attention_mask: torch.Tensor, n_prompt: int,
                         group: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """`sampling.token_logprobs` of a bridged model over whole groups: rows with equal group [B]
    ids are one group (same prompt, so the same left padding), alive from `alive_from_mask`.
    Returns [B, T - n_prompt] float32 (0.0 on padding); differentiable."""
    with group_context(model, group, alive_from_mask(attention_mask)):
        return token_logprobs(model, input_ids, attention_mask, n_prompt, temperature)


def group_logits(model, input_ids: torch.Tensor, attention_mask: torch.Tensor, group: torch.Tensor,
                 **kwargs) -> torch.Tensor:
    """Logits [B, T, V] of a plain transformers forward over whole groups (alive from the mask)."""
    with group_context(model, group, alive_from_mask(attention_mask)):
        return model(input_ids=input_ids, attention_mask=attention_mask, **kwargs).logits


class BridgeSampler(Sampler):
    """Lockstep sampler for a bridged transformers causal LM (see the module docstring)."""

    independent_samples = False

    def __init__(self, model, tokenizer, fast_masks: bool = True,
                 prefill_chunk_tokens: int | None = None):
        if not is_bridged(model):
            raise ConfigError("BridgeSampler needs a model with a Bridge (spiral_bench.bridge.add_bridge)")
        kw = {} if prefill_chunk_tokens is None else {"prefill_chunk_tokens": prefill_chunk_tokens}
        super().__init__(model, tokenizer, fast_masks=fast_masks, fast_decode=False, share_prefix=False, **kw)

    def generate(self, requests: Sequence[Request], sampling: SamplingConfig,
                 progress: bool = False) -> list[list[Sample]]:
        prompts = [self.tok(r.prompt, add_special_tokens=False)["input_ids"] for r in requests]
        order = sorted(range(len(requests)), key=lambda i: (len(prompts[i]), i))
        batches, cur = [], []
        for i in order:
            if cur and sum(requests[j].n for j in cur) + requests[i].n > sampling.batch_size:
                batches.append(cur)
                cur = []
            cur.append(i)
        if cur:
            batches.append(cur)
        out: list[list[Sample]] = [[] for _ in requests]
        bar = None
        if progress:
            from tqdm.auto import tqdm
            bar = tqdm(total=sum(r.n for r in requests), desc="sampling (lockstep)", unit="seq")
        with torch.inference_mode():
            for batch in batches:
                units = [_Unit(i, j, sample_seed(requests[i].seed, j), prompts[i],
                               requests[i].max_new_tokens if requests[i].max_new_tokens is not None
                               else sampling.max_new_tokens)
                         for i in batch for j in range(requests[i].n)]
                for u, smp in zip(units, self._lockstep(units, batch, sampling)):
                    out[u.req].append(smp)
                if bar is not None:
                    bar.update(len(units))
        if bar is not None:
            bar.close()
        return out

    def _lockstep(self, units: list[_Unit], batch: list[int], sc: SamplingConfig) -> list[Sample]:
        dev, model = self.device, self.model
        gidx = {req: g for g, req in enumerate(batch)}
        r = torch.tensor([gidx[u.req] for u in units], device=dev)      # row -> group
        first = {}
        for u in units:
            first.setdefault(u.req, u.prompt)
        distinct = [first[req] for req in batch]
        ids, plen, valid, pos = left_padded(distinct, self.pad, dev)            # [U, P]
        P, B, U = int(plen.max()), len(units), len(distinct)
        budget = torch.tensor([u.budget for u in units], device=dev)
        max_new = int(budget.max())
        L = P + max_new
        cfg = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
        with _use_decode_attention(model, self.fast_masks) as attn:
            cache = PreallocCache(cfg.num_hidden_layers, L)
            if attn.active:
                kvm = torch.full((U, L), float("-inf"), dtype=self.dtype, device=dev)
                kvm[:, :P].masked_fill_(valid, 0.0)
                on = 0.0
            else:
                kvm = torch.zeros(U, L, dtype=torch.long, device=dev)
                kvm[:, :P] = valid
                on = 1
            with group_context(model, torch.arange(U, device=dev), None):  # one row per group
                logits = self._prefill(ids, valid, pos, cache, attn.active)
            cache.select_rows(r)
            logits, kvm, next_pos = logits[r], kvm[r], plen[r]
            seeds = torch.tensor([u.seed for u in units], dtype=torch.int64, device=dev)
            tokens, logps, ents, length, stopped = decode_buffers(B, max_new, self.pad, dev)
            done = torch.zeros(B, dtype=torch.bool, device=dev)
            rows = torch.arange(B, device=dev)
            stops = tuple(x for x in sc.stop if x)
            strs = self.token_strings() if stops else None
            texts, window = [""] * B, max((len(x) for x in stops), default=0) + 16
            for t in range(max_new):
                tok, lp, ent = select_tokens(logits, seeds, t, sc.temperature, sc.top_k, sc.top_p, True)
                tokens[:, t], logps[:, t], ents[:, t] = tok, lp, ent
                hit = torch.isin(tok, self.eos)
                if stops:
                    for i, ti in enumerate(tok.tolist()):
                        if not bool(done[i]):
                            texts[i] = (texts[i] + strs[ti])[-window:]
                            if any(x in texts[i] for x in stops):
                                hit[i] = True
                newly = ~done & (hit | (budget <= t + 1))
                self._record(length, stopped, rows, newly, hit, t + 1)
                done |= newly
                if t + 1 == max_new or bool(done.all()):
                    break
                kvm[:, P + t] = on
                m = kvm[:, :P + t + 1]
                with group_context(model, r, ~done[:, None]):
                    logits = model(input_ids=tok[:, None],
                                   attention_mask={"full_attention": m[:, None, None, :]} if attn.active else m,
                                   position_ids=(next_pos + t)[:, None], **{self.cache_kw: cache},
                                   use_cache=True).logits[:, -1]
        return self._finish(units, tokens, logps, ents, length, stopped, stops)
