"""Batched, exact, batch-independent sampling for any transformers causal LM (the `hf` backend).

Algorithm (per batch of at most `batch_size` sequences, requests sorted by prompt length):
1. Shared-prefix prefill: every *distinct* prompt of the batch is run once (left padded to the
   longest, explicit position ids, a hand-built causal+padding mask) into `PreallocCache`, a
   transformers `Cache` allocated once per layer. The prompt goes in chunks of
   `prefill_chunk_tokens` (1024) query positions, chunk [c0, c1) attending to keys [0, c1) with
   fused attention (torch's scaled_dot_product_attention), so neither the mask ([U, 1, C, c1])
   nor the attention scores are quadratic in the prompt: peak memory grows linearly with it
   (tests/test_long_prompts.py). With the fused Qwen3 step (`_FastDecode`) the
   prompt K/V stay one copy per distinct prompt and decode attention reads them once for all of
   that prompt's samples (`_SharedPrefix`: one matmul per prompt over its rows' queries), when the
   batch's prompts are at least `share_prefix_min_tokens` (32) long (shorter ones cost more in
   extra ops than they save); the generated tokens' K/V go into a second cache
   [B, H, max_new_tokens, D]. Otherwise the prompt
   K/V rows and last logits are fanned out (index_select) to the n samples of that prompt.
2. Decoding: all sequences advance together, one token per step, copying K/V in place into the
   cache (no per-step re-allocation, attention reads only the filled part); the additive mask is
   a pre-allocated [B, L] tensor with one column switched on per step, passed as a ready 4-D
   mask; position ids = prompt length + step. For models with 'sdpa'/'eager' attention and only
   full-attention layers, attention is plain matmul attention (`decode_attention`, grouped-query
   heads folded without copying K/V); other models fall back to transformers' own masks and
   kernels. Finished rows are compacted away once half of the batch is done.
3. Token choice (Gumbel-max with counter-based noise, one random stream per sample):
       z = logits / T, restricted by top-k / top-p (others set to -inf),
       token = argmax_v (z_v + g_v),   g_v = -log(-log(u_v)),
       u_v = hash(sample_seed, step, v) in (0, 1)   (splitmix64 in int64 torch ops),
   which samples exactly from softmax(z) over the kept tokens. The noise depends only on the
   sample's own seed, the step and the vocabulary index, so a sample's tokens do not depend on
   which other requests share its batch (up to floating-point differences in the logits).
   T = 0 is greedy: token = argmax_v logits_v.
4. Log-prob of every generated token (the convention of TRL's GRPO, which trainers recompute by
   teacher forcing with `token_logprobs`):
       logprob_t = log_softmax(logits_t / T)[token_t]   with T the sampling temperature
   (T = 1 when greedy), *without* the top-k / top-p renormalisation.
5. A sample ends with finish_reason "stop" at an EOS token (kept in token_ids) or when a stop
   string appears in its text (the token that completes it is kept; `text` is cut right after
   the first stop string), and "length" when it has used its max_new_tokens budget.
"""
from __future__ import annotations

import inspect
from typing import Sequence

import torch
from transformers.cache_utils import Cache, CacheLayerMixin

from .backends.base import Request, Sample, SamplingConfig, sample_seed
from .fast_decode import _FastDecode, _SharedPrefix

_M1 = 0xBF58476D1CE4E5B9 - (1 << 64)   # splitmix64 constants as signed int64
_M2 = 0x94D049BB133111EB - (1 << 64)
_G1 = 0x9E3779B97F4A7C15 - (1 << 64)
_G2 = 0xD1B54A32D192ED03 - (1 << 64)


def _srl(x: torch.Tensor, k: int) -> torch.Tensor:
    """Logical right shift of int64 (torch's >> is arithmetic)."""
    return (x >> k) & ((1 << (64 - k)) - 1)


def _mix(x: torch.Tensor) -> torch.Tensor:
    """splitmix64 finaliser on int64 tensors (multiplication wraps mod 2^64)."""
    x = x ^ _srl(x, 30)
    x = x * _M1
    x = x ^ _srl(x, 27)
    x = x * _M2
    return x ^ _srl(x, 31)


def hash_uniform(seeds: torch.Tensor, step, vocab: int) -> torch.Tensor:
    """u[b, v] = uniform in (0, 1) from hash(seeds[b], step, v).  seeds: [B] int64 -> [B, V] float32."""
    v = torch.arange(vocab, device=seeds.device, dtype=torch.int64) * _G2
    if torch.is_tensor(step):
        base = _mix(seeds + (step.to(torch.int64) + 1) * _G1)
    else:  # wrap the Python int into int64 range before torch sees it
        base = _mix(seeds + ((((int(step) + 1) * _G1) + (1 << 63)) % (1 << 64) - (1 << 63)))
    bits = _srl(_mix(base[:, None] ^ v[None, :]), 40)  # top 24 bits
    return (bits.to(torch.float32) + 0.5) * (1.0 / (1 << 24))


def filter_logits(z: torch.Tensor, top_k: int = 0, top_p: float = 1.0) -> torch.Tensor:
    """Set to -inf the logits outside the top-k and outside the smallest top-p nucleus. z: [B, V]."""
    if top_k and 0 < top_k < z.shape[-1]:
        kth = torch.topk(z, top_k, dim=-1).values[:, -1:]
        z = z.masked_fill(z < kth, float("-inf"))
    if top_p < 1.0:
        sz, idx = torch.sort(z, dim=-1, descending=True)
        p = torch.softmax(sz, dim=-1)
        remove = (torch.cumsum(p, dim=-1) - p) > top_p  # mass strictly before this token > top_p
        remove[:, 0] = False
        z = z.masked_fill(torch.zeros_like(remove).scatter(-1, idx, remove), float("-inf"))
    return z


def select_tokens(logits: torch.Tensor, seeds: torch.Tensor, step: int, temperature: float,
                  top_k: int = 0, top_p: float = 1.0, entropy: bool = False):
    """(tokens [B] int64, logprobs [B] float32) from logits [B, V] and per-row seeds [B] int64;
    with entropy=True also the entropy [B] of softmax(logits / T) (before top-k / top-p).

    logprob = log_softmax(logits / T)[token] (T = 1 if greedy), no top-k/top-p renormalisation.
    """
    logits = logits.float()
    t = temperature if temperature > 0 else 1.0
    logp = torch.log_softmax(logits / t, dim=-1)
    if temperature <= 0:
        tokens = torch.argmax(logits, dim=-1)
    else:
        z = filter_logits(logp, top_k, top_p)  # log_softmax is a shift of logits/T: same argmax
        u = hash_uniform(seeds, step, logits.shape[-1])
        tokens = torch.argmax(z - torch.log(-torch.log(u)), dim=-1)
    lp = logp.gather(-1, tokens[:, None])[:, 0]
    if entropy:
        return tokens, lp, -(logp.exp() * logp).sum(-1)
    return tokens, lp


def cache_kwarg(model) -> str:
    """Name of the KV-cache argument of `model`'s forward: "cache" from transformers 5.24 on (where
    `past_key_values` is deprecated, to be removed in 5.40), else "past_key_values"."""
    params = inspect.signature(type(model).forward).parameters
    return "cache" if "cache" in params else "past_key_values"


def cut_at_stop(text: str, stops: Sequence[str]) -> tuple[str, bool]:
    """(text cut right after the earliest-ending stop string, whether one was found)."""
    ends = [i + len(s) for s in stops if s and (i := text.find(s)) >= 0]
    return (text[:min(ends)], True) if ends else (text, False)


def decode_attention(module, query, key, value, attention_mask, scaling, dropout=0.0, **kwargs):
    """The sampler's attention (registered as transformers attention "spiral_decode").

    query [B, H, Q, D], key/value [B, Hkv, K, D], attention_mask additive float [B, 1, Q, K] or None.
    out = softmax(q k^T * scaling + mask) v, returned as [B, Q, H, D]. For Q = 1 (decode) plain
    matmuls, grouped-query heads folded into the query axis instead of repeating K/V (no copy of the
    cache); for Q > 1 (a prefill chunk) torch's fused scaled_dot_product_attention.
    """
    b, h, q, d = query.shape
    hk = key.shape[1]
    g = h // hk
    if q > 1:  # prefill chunk: fused kernel, no [B, H, Q, K] float32 score tensor kept
        o = torch.nn.functional.scaled_dot_product_attention(
            query, key, value, attn_mask=attention_mask, scale=scaling, enable_gqa=g > 1)
        return o.transpose(1, 2), None
    if g > 1:  # fold grouped-query heads into the query axis
        query = query.reshape(b, hk, g, d)
    s = torch.matmul(query * scaling, key.transpose(-1, -2))
    if attention_mask is not None:
        s = s + attention_mask
    o = torch.matmul(torch.softmax(s, dim=-1, dtype=torch.float32).to(value.dtype), value)
    return o.reshape(b, h, q, -1).transpose(1, 2), None


_ATTN = "spiral_decode"
PREFILL_CHUNK_TOKENS = 1024  # prompt tokens per prefill chunk (Sampler's prefill_chunk_tokens)


def _register_attention() -> None:
    from transformers import AttentionInterface
    AttentionInterface.register(_ATTN, decode_attention)


_register_attention()


class _use_decode_attention:
    """Context manager: switch a model with 'sdpa'/'eager' attention and only full-attention layers
    to `decode_attention` (restored on exit); `self.active` says whether it did."""

    def __init__(self, model, enabled: bool = True):
        cfg = model.config
        types = set(getattr(cfg, "layer_types", None) or ["full_attention"])
        self.cfg, self.old = cfg, getattr(cfg, "_attn_implementation", None)
        self.active = enabled and self.old in ("sdpa", "eager") and types == {"full_attention"}

    def __enter__(self):
        if self.active:
            self.cfg._attn_implementation = _ATTN
        return self

    def __exit__(self, *exc):
        if self.active:
            self.cfg._attn_implementation = self.old


def _bool_mask_dict(model, allowed: torch.Tensor):
    """HF-compatible ready masks for the teacher-forced pass (sdpa: bool, eager: additive), or None.

    allowed: [B, 1, Q, K] bool, True = may attend.
    """
    cfg = model.config
    impl = getattr(cfg, "_attn_implementation", None)
    if set(getattr(cfg, "layer_types", None) or ["full_attention"]) != {"full_attention"}:
        return None
    if impl == "sdpa":
        return {"full_attention": allowed}
    if impl == "eager":
        dtype = next(model.parameters()).dtype
        return {"full_attention": torch.zeros(allowed.shape, dtype=dtype, device=allowed.device)
                .masked_fill(~allowed, torch.finfo(dtype).min)}
    return None


def token_logprobs(model, input_ids: torch.Tensor, attention_mask: torch.Tensor, n_prompt: int,
                   temperature: float = 1.0) -> torch.Tensor:
    """Teacher-forced log-probs of the completion tokens (differentiable; used by trainers).

    input_ids, attention_mask: [B, T] = [left-padded prompt (n_prompt columns) | completion
    (right-padded)], attention_mask 0 on both kinds of padding.
    Returns [B, T - n_prompt] float32: log_softmax(logits / T)[token] for every completion column
    (T = 1 if temperature == 0), 0.0 where attention_mask is 0. Same convention as the sampler.
    """
    mask = attention_mask.bool()
    pos = (mask.long().cumsum(-1) - 1).clamp(min=0)
    q = torch.arange(input_ids.shape[1], device=input_ids.device)
    allowed = (q[None, :] <= q[:, None])[None] & mask[:, None, :]
    allowed = (allowed | torch.eye(len(q), dtype=torch.bool, device=q.device)[None])[:, None]
    masks = _bool_mask_dict(model, allowed)
    logits = model(input_ids=input_ids, attention_mask=masks if masks is not None else attention_mask,
                   position_ids=pos, use_cache=False).logits[:, n_prompt - 1:-1].float()
    t = temperature if temperature > 0 else 1.0
    lp = torch.log_softmax(logits / t, dim=-1).gather(-1, input_ids[:, n_prompt:, None])[..., 0]
    return lp * mask[:, n_prompt:]


def left_padded(prompts: list, pad: int, device) -> tuple[torch.Tensor, ...]:
    """U prompts (token-id lists) left-padded to P = the longest: ids [U, P] (pad before each
    prompt), plen [U], valid [U, P] bool (a prompt token), pos [U, P] position ids (0 at a prompt's
    first token; 0 on padding)."""
    plen = torch.tensor([len(p) for p in prompts], device=device)
    P = int(plen.max())
    ids = torch.full((len(prompts), P), pad, dtype=torch.long, device=device)
    for i, p in enumerate(prompts):
        if p:
            ids[i, P - len(p):] = torch.tensor(p, device=device)
    valid = torch.arange(P, device=device)[None, :] >= (P - plen)[:, None]
    return ids, plen, valid, (valid.long().cumsum(-1) - 1).clamp(min=0)


def decode_buffers(B: int, max_new: int, pad: int, device) -> tuple[torch.Tensor, ...]:
    """The per-row outputs a decode loop fills: tokens [B, max_new] (pad), log-probs and entropies
    [B, max_new] (fp32 zeros), length [B] (0), stopped [B] (False)."""
    return (torch.full((B, max_new), pad, dtype=torch.long, device=device),
            torch.zeros(B, max_new, dtype=torch.float32, device=device),
            torch.zeros(B, max_new, dtype=torch.float32, device=device),
            torch.zeros(B, dtype=torch.long, device=device), torch.zeros(B, dtype=torch.bool, device=device))


class PreallocLayer(CacheLayerMixin):
    """A KV cache layer allocated once at [B, H, max_len, D]; `update` copies the new K/V into
    place and returns views of the filled part only (so attention reads no empty slots)."""

    is_compileable = False
    is_sliding = False

    def __init__(self, max_len: int):
        super().__init__()
        self.max_len, self.filled = max_len, 0

    def lazy_initialization(self, key_states, value_states) -> None:
        b, h, _, d = key_states.shape
        self.dtype, self.device = key_states.dtype, key_states.device
        self.keys = key_states.new_zeros(b, h, self.max_len, d)
        self.values = value_states.new_zeros(b, h, self.max_len, value_states.shape[-1])
        self.is_initialized = True

    def update(self, key_states, value_states, *args, **kwargs):
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        c, n = self.filled, key_states.shape[-2]
        self.keys[:, :, c:c + n].copy_(key_states)
        self.values[:, :, c:c + n].copy_(value_states)
        self.filled = c + n
        return self.keys[:, :, :c + n], self.values[:, :, :c + n]

    def get_mask_sizes(self, query_length: int) -> tuple[int, int]:
        return self.filled + query_length, 0

    def get_seq_length(self) -> int:
        return self.filled

    def get_max_length(self) -> int:
        return self.max_len

    def select_rows(self, idx: torch.Tensor) -> None:
        """Keep (and repeat) batch rows: idx [B'] int64. Only the filled slots are copied."""
        if not self.is_initialized:  # nothing written yet: the first update sets the batch size
            return
        c = self.filled
        for name in ("keys", "values"):
            old = getattr(self, name)
            new = old.new_empty((len(idx),) + tuple(old.shape[1:]))
            torch.index_select(old[:, :, :c], 0, idx, out=new[:, :, :c])
            setattr(self, name, new)


class PreallocCache(Cache):
    """One `PreallocLayer` per decoder layer."""

    def __init__(self, n_layers: int, max_len: int):
        super().__init__(layers=[PreallocLayer(max_len) for _ in range(n_layers)])

    def select_rows(self, idx: torch.Tensor) -> None:
        for layer in self.layers:
            layer.select_rows(idx)


class _Unit:
    """One sequence to sample: request index, sample index, seed, prompt ids, budget."""
    __slots__ = ("req", "j", "seed", "prompt", "budget")

    def __init__(self, req, j, seed, prompt, budget):
        self.req, self.j, self.seed, self.prompt, self.budget = req, j, seed, prompt, budget


class Sampler:
    """Batched sampler over a transformers causal LM; see the module docstring for the algorithm."""

    def __init__(self, model, tokenizer, fast_masks: bool = True, fast_decode: bool = True,
                 share_prefix: bool = True, share_prefix_min_tokens: int = 32,
                 prefill_chunk_tokens: int = PREFILL_CHUNK_TOKENS):
        self.model, self.tok = model, tokenizer
        self.prefill_chunk = prefill_chunk_tokens  # <= 0: the whole prompt in one chunk
        # shared-prompt attention pays from ~32-token prompts on (BENCHMARKS.md, bench_sampler --prefix-table)
        self.share_prefix, self.share_min = share_prefix, share_prefix_min_tokens
        self.fast_decode = fast_decode and _FastDecode.supports(model)
        self.device = next(model.parameters()).device
        self.dtype = next(model.parameters()).dtype
        eos = set()
        for e in (tokenizer.eos_token_id, getattr(model.generation_config, "eos_token_id", None)):
            eos.update(e if isinstance(e, (list, tuple)) else ([] if e is None else [e]))
        self.eos = torch.tensor(sorted(eos) or [-1], device=self.device)
        self.pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        self.fast_masks = fast_masks
        self.cache_kw = cache_kwarg(model)
        self._strs: list[str] | None = None

    def token_strings(self) -> list[str]:
        """Decoded text of every single token id (used to detect stop strings incrementally)."""
        if self._strs is None:
            n = max(len(self.tok), self.model.get_output_embeddings().weight.shape[0])
            self._strs = [self.tok.decode([i], skip_special_tokens=True) if i < len(self.tok) else ""
                          for i in range(n)]
        return self._strs

    def generate(self, requests: Sequence[Request], sampling: SamplingConfig,
                 progress: bool = False) -> list[list[Sample]]:
        prompts = [self.tok(r.prompt, add_special_tokens=False)["input_ids"] for r in requests]
        units = [_Unit(i, j, sample_seed(r.seed, j), prompts[i],
                       r.max_new_tokens if r.max_new_tokens is not None else sampling.max_new_tokens)
                 for i, r in enumerate(requests) for j in range(r.n)]
        units.sort(key=lambda u: (len(u.prompt), u.prompt, u.req, u.j))  # equal prompts side by side
        out: list[list[Sample | None]] = [[None] * r.n for r in requests]
        bar = None
        if progress:
            from tqdm.auto import tqdm
            bar = tqdm(total=len(units), desc="sampling", unit="seq")
        bs = sampling.batch_size
        with torch.inference_mode():
            for s in range(0, len(units), bs):
                chunk = units[s:s + bs]
                for u, smp in zip(chunk, self._batch(chunk, sampling)):
                    out[u.req][u.j] = smp
                if bar is not None:
                    bar.update(len(chunk))
        if bar is not None:
            bar.close()
        return out  # type: ignore[return-value]

    def _batch(self, units: list[_Unit], sc: SamplingConfig) -> list[Sample]:
        dev, model = self.device, self.model
        keys: dict[tuple, int] = {}
        rep = [keys.setdefault(tuple(u.prompt), len(keys)) for u in units]
        distinct = list(keys)
        ids, plen, valid, pos = left_padded(distinct, self.pad, dev)
        P, B = int(plen.max()), len(units)
        budgets = torch.tensor([u.budget for u in units], device=dev)
        max_new = int(budgets.max())
        L = P + max_new
        cfg = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
        with _use_decode_attention(model, self.fast_masks) as attn:
            fast = attn.active and self.fast_decode
            share = fast and self.share_prefix and P >= self.share_min
            cache = PreallocCache(cfg.num_hidden_layers, P if share else L)
            if attn.active:  # decode mask: additive [U, L], one column switched on per step
                kvm = torch.full((len(distinct), L), float("-inf"), dtype=self.dtype, device=dev)
                kvm[:, :P].masked_fill_(valid, 0.0)
                on = 0.0
            else:  # let transformers build masks from a 2-D 0/1 mask
                kvm = torch.zeros(len(distinct), L, dtype=torch.long, device=dev)
                kvm[:, :P] = valid
                on = 1
            logits = self._prefill(ids, valid, pos, cache, attn.active)
            # shared-prefix sampling: the fast step reads each prompt's K/V once for all of its
            # samples (_SharedPrefix); otherwise the prompt cache is fanned out to the samples
            r = torch.tensor(rep, device=dev)
            step, prefix, gid = None, None, r
            if fast:
                step = _FastDecode(model, L)
            if share:
                prefix = _SharedPrefix([ly.keys for ly in cache.layers], [ly.values for ly in cache.layers], r)
                cache = PreallocCache(cfg.num_hidden_layers, max_new)
            else:
                cache.select_rows(r)
            logits, kvm, next_pos = logits[r], kvm[r], plen[r]
            seeds = torch.tensor([u.seed for u in units], dtype=torch.int64, device=dev)
            tokens, logps, ents, length, stopped = decode_buffers(B, max_new, self.pad, dev)
            rows = torch.arange(B, device=dev)       # active row -> unit index
            done, budget = torch.zeros(B, dtype=torch.bool, device=dev), budgets
            stops = tuple(x for x in sc.stop if x)
            strs = self.token_strings() if stops else None
            texts, window = [""] * B, max((len(x) for x in stops), default=0) + 16
            check = 1 if dev.type == "cpu" else 8
            compacted = False
            for t in range(max_new):
                tok, lp, ent = select_tokens(logits, seeds, t, sc.temperature, sc.top_k, sc.top_p, True)
                if compacted:
                    tokens[rows, t], logps[rows, t], ents[rows, t] = tok, lp, ent
                else:
                    tokens[:, t], logps[:, t], ents[:, t] = tok, lp, ent
                hit = torch.isin(tok, self.eos)
                if stops:
                    for i, (ui, ti) in enumerate(zip(rows.tolist(), tok.tolist())):
                        texts[ui] = (texts[ui] + strs[ti])[-window:]
                        if any(x in texts[ui] for x in stops):
                            hit[i] = True
                newly = ~done & (hit | (budget <= t + 1))
                self._record(length, stopped, rows, newly, hit, t + 1)
                done |= newly
                if t + 1 == max_new:
                    break
                if t % check == check - 1 or t == 0:
                    n_done = int(done.sum())
                    if n_done == len(rows):
                        break
                    if n_done * 2 >= len(rows) and len(rows) >= 8:  # drop finished rows
                        keep = torch.nonzero(~done)[:, 0]
                        cache.select_rows(keep)
                        if prefix is not None:
                            gid = gid[keep]
                            prefix.set_rows(gid)
                        rows, kvm, next_pos, tok = rows[keep], kvm[keep], next_pos[keep], tok[keep]
                        seeds, budget, done = seeds[keep], budget[keep], done[keep]
                        compacted = True
                kvm[:, P + t] = on
                m = kvm[:, :P + t + 1]
                if step is not None:
                    logits = step(tok, next_pos + t, cache, m[:, None, None, :], prefix)
                    continue
                logits = model(input_ids=tok[:, None],
                               attention_mask={"full_attention": m[:, None, None, :]} if attn.active else m,
                               position_ids=(next_pos + t)[:, None], **{self.cache_kw: cache},
                               use_cache=True).logits[:, -1]
        return self._finish(units, tokens, logps, ents, length, stopped, stops)

    def _prefill(self, ids, valid, pos, cache, ready_masks: bool) -> torch.Tensor:
        """Chunked prefill of the left-padded prompts ids [U, P] into `cache`; logits [U, V] of the
        last prompt position. Chunk [c0, c1) attends to keys [0, c1): with ready masks an additive
        [U, 1, c1 - c0, c1] mask (causal and padding; pad query rows attend to themselves, so no
        row is empty), else transformers builds it from the 2-D mask valid[:, :c1]."""
        P, dev = ids.shape[1], ids.device
        C = self.prefill_chunk if self.prefill_chunk > 0 else P
        for c0 in range(0, P, C) if P else [0]:   # (all-empty prompts: one empty forward, as before)
            c1 = min(P, c0 + C)
            if ready_masks:
                q, k = torch.arange(c0, c1, device=dev)[:, None], torch.arange(c1, device=dev)[None, :]
                allowed = ((k <= q)[None] & valid[:, None, :c1]) | (k == q)[None]     # [U, c, c1]
                mask = {"full_attention": self._additive(allowed[:, None])}
            else:
                mask = valid[:, :c1].long()
            out = self.model(input_ids=ids[:, c0:c1], attention_mask=mask, position_ids=pos[:, c0:c1],
                             **{self.cache_kw: cache}, use_cache=True, logits_to_keep=1)
        return out.logits[:, -1]

    def _additive(self, allowed: torch.Tensor) -> torch.Tensor:
        return torch.zeros(allowed.shape, dtype=self.dtype, device=allowed.device).masked_fill_(
            ~allowed, float("-inf"))

    @staticmethod
    def _record(length, stopped, rows, newly, hit, n) -> None:
        """For rows that just finished: length = n, stopped = hit (EOS / stop string)."""
        length[rows] = torch.where(newly, n, length[rows])
        stopped[rows] = torch.where(newly, hit, stopped[rows])

    def _finish(self, units, tokens, logps, ents, length, stopped, stops) -> list[Sample]:
        res = []
        toks, lps = tokens.cpu().tolist(), logps.cpu().tolist()
        steps = torch.arange(tokens.shape[1], device=tokens.device)[None, :]
        ent = (ents * (steps < length[:, None])).sum(-1).cpu().tolist()
        for i, u in enumerate(units):
            n = int(length[i])
            ids = toks[i][:n]
            text, found = cut_at_stop(self.tok.decode(ids, skip_special_tokens=True), stops)
            res.append(Sample(text=text, token_ids=ids, logprobs=lps[i][:n],
                              prompt_tokens=len(u.prompt), completion_tokens=n,
                              finish_reason="stop" if bool(stopped[i]) else "length", entropy=ent[i]))
        return res
