"""Fused one-token decode step for Qwen3-family models and shared-prompt attention, used by the
hf sampler (`spiral_bench.sampling.Sampler`) when the model supports them.

`_FastDecode`: the transformers Qwen3 forward for one new token per row with fewer, larger ops
(formula in its docstring); `_SharedPrefix`: decode attention that reads each distinct prompt's
keys/values once for all rows sampled from it:
    s = [q K_pre[gid]^T | q K_gen^T] + mask,  p = softmax(s),  o = p[:, :P] V_pre[gid] + p[:, P:] V_gen
Both give the model's numbers up to float rounding (tests/test_sampling.py compares tokens and
log-probs with the plain path and with independent teacher forcing). `effective_weight` reads
peft LoRA layers as W + (alpha / r) B A, so a policy trained with adapters is sampled as trained.
"""
from __future__ import annotations

import torch


def effective_weight(linear) -> torch.Tensor:
    """The weight a linear layer applies: `weight` of an nn.Linear; for a peft LoRA layer
    W + sum over active adapters of (alpha / r) B A (unless merged or disabled), computed without
    touching the model (merging in place and back would drift W by float rounding)."""
    base = getattr(linear, "base_layer", None)
    if base is None:
        return linear.weight
    w = base.weight
    if getattr(linear, "merged", False) or getattr(linear, "disable_adapters", False):
        return w
    for name in linear.active_adapters:
        if name in linear.lora_A:
            w = w + linear.get_delta_weight(name).to(w.dtype)
    return w


class _FastDecode:
    """One decode step (one new token per row) for Qwen3-family models: the transformers forward's
    maths with fewer, larger ops. Per layer:
        h = rms(x) * w_in;  [q|k|v] = h Wqkv (one matmul)
        [q|k] = rms_D([q|k]) * [s * w_qnorm | w_knorm]    (q and k heads normalised together;
                                                          s = head_dim^-0.5 folded into q's weight)
        [q|k] = [q|k] * cos + roll([q|k], D/2) * sin'      (sin' = [-sin_1 | sin_2]: roll(x) * sin'
                                                          = rotate_half(x) * sin exactly; one rope
                                                          for q and k; cos/sin tabulated per batch)
        o = softmax(q K^T + mask) V                       (grouped-query heads folded, no K/V copy)
        x += o Wo;  x += (silu(g) * u) Wd  with [g|u] = rms(x) w_post Wgu (one matmul)
    K/V go into `PreallocCache`. The only differences to the model's forward are float rounding
    (the scale folded before rope, fused matmuls). Used only when `supports(model)`."""

    @staticmethod
    def supports(model) -> bool:
        cfg = model.config
        if getattr(model, "bridge", None) is not None:
            return False  # a Bridge (spiral_bench.bridge) runs in the layers' forward hooks
        if any(any(getattr(m, "use_dora", {}).values()) for m in model.modules()
               if hasattr(m, "base_layer")):
            return False  # DoRA rescales columns: not a plain W + BA
        base = getattr(model, "model", None)
        rope = getattr(getattr(base, "rotary_emb", None), "rope_type", "default")
        return (getattr(cfg, "model_type", None) == "qwen3" and not getattr(cfg, "attention_bias", False)
                and getattr(cfg, "hidden_act", None) == "silu" and base is not None
                and hasattr(base, "rotary_emb") and rope == "default" and hasattr(model, "lm_head")
                and getattr(model.lm_head, "bias", None) is None
                and not getattr(cfg, "final_logit_softcapping", None))

    def __init__(self, model, max_len: int):
        base, cfg = model.model, model.config
        H, Hk = cfg.num_attention_heads, cfg.num_key_value_heads
        self.hd = D = cfg.head_dim or cfg.hidden_size // H
        self.H, self.Hk, self.eps = H, Hk, cfg.rms_norm_eps
        self.embed, self.norm, self.head = base.embed_tokens.weight, base.norm.weight, model.lm_head.weight
        self.layers = []
        for ly in base.layers:
            a, m = ly.self_attn, ly.mlp
            wqk = torch.cat([(a.q_norm.weight * D ** -0.5).expand(H, D), a.k_norm.weight.expand(Hk, D)])
            w = effective_weight
            self.layers.append((ly.input_layernorm.weight,
                                torch.cat([w(a.q_proj), w(a.k_proj), w(a.v_proj)]), wqk,
                                w(a.o_proj), ly.post_attention_layernorm.weight,
                                torch.cat([w(m.gate_proj), w(m.up_proj)]), w(m.down_proj)))
        pos = torch.arange(max_len, device=self.embed.device)[None]
        cos, sin = base.rotary_emb(self.embed[None, :1], pos)                  # [1, L, D] each
        self.cos = cos[0]
        self.sin = torch.cat([-sin[0, :, :D // 2], sin[0, :, D // 2:]], dim=-1)

    def _rms(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        """Qwen3RMSNorm: w * (x / sqrt(mean(x^2) + eps)), computed in float32 (one fused op in
        fp32, bitwise equal to the module)."""
        if x.dtype == torch.float32 and w.dtype == torch.float32:
            if w.dim() == 1:
                return torch.nn.functional.rms_norm(x, w.shape, w, self.eps)
            return w * torch.nn.functional.rms_norm(x, x.shape[-1:], None, self.eps)
        xf = x.float()
        return w * (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)).to(x.dtype)

    def __call__(self, tok: torch.Tensor, pos: torch.Tensor, cache: "PreallocCache",
                 mask: torch.Tensor, prefix: "_SharedPrefix | None" = None) -> torch.Tensor:
        """tok, pos [B] int64, mask additive [B, 1, 1, K] -> logits [B, V] of the next token.
        With `prefix`, `cache` holds only the generated tokens and the prompt keys/values are
        read once per distinct prompt (`_SharedPrefix.attend`); mask then covers [prompt | generated]."""
        F = torch.nn.functional
        b, H, Hk, D = tok.shape[0], self.H, self.Hk, self.hd
        x = F.embedding(tok, self.embed)                                      # [B, C]
        cos, sin = self.cos[pos][:, None], self.sin[pos][:, None]             # [B, 1, D]
        for i, (w1, wqkv, wqk, wo, w2, wgu, wd) in enumerate(self.layers):
            qkv = F.linear(self._rms(x, w1), wqkv).view(b, -1, D)            # [B, H + 2Hk, D]
            qk = self._rms(qkv[:, :H + Hk], wqk)
            qk = qk * cos + torch.roll(qk, D // 2, -1) * sin
            key, value = cache.layers[i].update(qk[:, H:, None], qkv[:, H + Hk:, None])  # [B, Hk, K, D]
            q = qk[:, :H].reshape(b, Hk, H // Hk, D)
            if prefix is None:
                s = torch.matmul(q, key.transpose(-1, -2)) + mask
                o = torch.matmul(torch.softmax(s, -1, dtype=torch.float32).to(value.dtype), value)
            else:
                o = prefix.attend(i, q, key, value, mask)                      # [B, Hk, H/Hk, D]
            x = x + F.linear(o.reshape(b, H * D), wo)
            g, u = F.linear(self._rms(x, w2), wgu).chunk(2, dim=-1)
            x = x + F.linear(F.silu(g) * u, wd)
        return F.linear(self._rms(x, self.norm), self.head)


class _SharedPrefix:
    """Attention to a prompt shared by several rows, reading its keys/values once per prompt.

    keys/values[layer]: [U, Hk, P, D] (U distinct prompts, left-padded to P); row r of the batch
    reads prompt gid[r]. Rows are laid out in a padded group grid [U, m] (m = largest group,
    slot = rank of the row inside its group), so the prompt part of attention is one matmul per
    prompt over all of its rows' queries:
        s = [q K_pre[gid]^T | q K_gen^T] + mask,  p = softmax(s),
        o = p[:, :P] V_pre[gid] + p[:, P:] V_gen
    the same numbers as attending to a fanned-out cache, up to float summation order."""

    def __init__(self, keys: list, values: list, gid: torch.Tensor):
        self.keys, self.values = keys, values
        self.set_rows(gid)

    def set_rows(self, gid: torch.Tensor) -> None:
        """gid [B] int64: the prompt of each active row (after compaction: the remaining rows)."""
        U = self.keys[0].shape[0]
        counts = torch.bincount(gid, minlength=U)
        self.m = max(1, int(counts.max()))
        start = torch.cumsum(counts, 0) - counts
        order = torch.argsort(gid, stable=True)
        slot = torch.empty_like(gid)
        slot[order] = torch.arange(len(gid), device=gid.device) - start[gid[order]]
        self.flat = gid * self.m + slot                                        # [B] in [0, U*m)
        self.identity = bool(len(gid) == U * self.m and torch.equal(self.flat, torch.arange(
            len(gid), device=gid.device)))

    def _to_groups(self, x: torch.Tensor) -> torch.Tensor:
        """[B, Hk, g, X] rows -> [U, Hk, m*g, X] (padded slots are 0)."""
        B, Hk, g, X = x.shape
        U = self.keys[0].shape[0]
        if not self.identity:
            x = x.new_zeros(U * self.m, Hk, g, X).index_copy_(0, self.flat, x)
        return x.reshape(U, self.m, Hk, g, X).transpose(1, 2).reshape(U, Hk, self.m * g, X)

    def _to_rows(self, y: torch.Tensor, g: int) -> torch.Tensor:
        """[U, Hk, m*g, X] -> [B, Hk, g, X]."""
        U, Hk, _, X = y.shape
        y = y.view(U, Hk, self.m, g, X).transpose(1, 2).reshape(U * self.m, Hk, g, X)
        return y if self.identity else y.index_select(0, self.flat)

    def attend(self, layer: int, q, k_gen, v_gen, mask):
        """q [B, Hk, g, D], k_gen/v_gen [B, Hk, T, D], mask [B, 1, 1, P + T] -> o [B, Hk, g, D]."""
        kp, vp = self.keys[layer], self.values[layer]
        P, g = kp.shape[2], q.shape[2]
        s_pre = self._to_rows(torch.matmul(self._to_groups(q), kp.transpose(-1, -2)), g)
        s = torch.cat([s_pre, torch.matmul(q, k_gen.transpose(-1, -2))], dim=-1) + mask
        p = torch.softmax(s, -1, dtype=torch.float32).to(v_gen.dtype)
        o_pre = self._to_rows(torch.matmul(self._to_groups(p[..., :P]), vp), g)
        return o_pre + torch.matmul(p[..., P:], v_gen)
