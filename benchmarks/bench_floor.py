"""Benchmark: how fast could an exact fp32 sampler be on this machine, for bench_sampler's n = 16
setting (tiny-1m, 16 prompts x 16 samples = 256 rows, ~12-token prompts, 128 new tokens), and
where does ours spend its time? The numbers behind issue 3's open 2.0x target.

Floor (a lower bound for any exact fp32 decode of this workload, from this machine's own speeds):
    linear_s    = 128 steps x sum over the step's matmuls of F.linear's best time at that shape
                  (the MKL kernels everyone calls; 4 layers x [qkv, o, gate|up, down] + lm head)
    attention_s = sum over steps t of 4 layers x 2 (K, V) x 256 rows x heads x (P + t + 1) x
                  head_dim x 4 bytes / streaming read bandwidth (best of `x.sum()` over 256 MB)
    floor_s     = linear_s + attention_s       (no softmax, norms, rope, sampling: all free)
Measured: `model.generate` and our `Sampler` (best of `--repeats`, alternating), and a torch
profile of ours split into linear layers (aten::mm), attention matmuls (aten::bmm) and the rest.
Prints `max_speedup_vs_hf_at_floor=<hf_s / floor_s>`: the ratio that a sampler running at the
floor would reach against `model.generate`.

    python benchmarks/bench_floor.py --threads 2
"""
from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from bench_sampler import best_times, prompts
from spiral_bench.backends.base import Request, SamplingConfig
from spiral_bench.models import build_tiny
from spiral_bench.sampling import Sampler


def best(fn, repeats: int = 20) -> float:
    fn()
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return min(ts)


def stream_gbs() -> float:
    x = torch.ones(64 * 2 ** 20)  # 256 MB, far beyond the caches
    return x.numel() * 4 / best(lambda: x.sum(), 5) / 1e9


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    model, tok = build_tiny("tiny-1m", seed=0)
    cfg = model.config
    ps = prompts(16)
    n, new = 16, 128
    B = len(ps) * n
    P = max(len(tok(p, add_special_tokens=False)["input_ids"]) for p in ps)
    C, I, V, D = cfg.hidden_size, cfg.intermediate_size, cfg.vocab_size, cfg.head_dim
    H, Hk, NL = cfg.num_attention_heads, cfg.num_key_value_heads, cfg.num_hidden_layers

    shapes = [(C, (H + 2 * Hk) * D), (H * D, C), (C, 2 * I), (I, C)] * NL + [(C, V)]
    per_shape = {}
    for cin, cout in set(shapes):
        x, w = torch.randn(B, cin), torch.randn(cout, cin)
        per_shape[(cin, cout)] = best(lambda: F.linear(x, w), 50)
    linear_s = new * sum(per_shape[s] for s in shapes)
    gflop = new * sum(2 * B * cin * cout for cin, cout in shapes) / 1e9
    bw = stream_gbs()
    kv_bytes = sum(NL * 2 * B * Hk * (P + t + 1) * D * 4 for t in range(new))
    attention_s = kv_bytes / bw / 1e9
    floor_s = linear_s + attention_s

    sampler = Sampler(model, tok)
    sampler.eos = torch.tensor([-1])
    reqs = [Request(p, n=n, seed=i) for i, p in enumerate(ps)]
    sc = SamplingConfig(temperature=1.0, max_new_tokens=new, batch_size=B)
    enc = tok(ps, return_tensors="pt", padding=True, add_special_tokens=False)

    def hf():
        with torch.inference_mode():
            model.generate(**enc, do_sample=True, temperature=1.0, top_k=0, top_p=1.0, max_new_tokens=new,
                           min_new_tokens=new, num_return_sequences=n, pad_token_id=tok.pad_token_id)

    hf_s, ours_s = best_times([hf, lambda: sampler.generate(reqs, sc)], a.repeats)
    with torch.profiler.profile() as prof:
        sampler.generate(reqs, sc)
    self_s = {e.key: e.self_cpu_time_total / 1e6 for e in prof.key_averages()}
    total = sum(self_s.values())
    mm, bmm = self_s.get("aten::mm", 0.0), self_s.get("aten::bmm", 0.0)

    print(f"setting: tiny-1m fp32, {B} rows ({len(ps)} prompts x n={n}), prompt {P} tokens, {new} new tokens, "
          f"{a.threads} threads")
    print(f"machine: streaming read {bw:.1f} GB/s; linear layers at the step's shapes "
          f"{gflop / linear_s:.0f} GFLOP/s ({gflop:.1f} GFLOP over the run)")
    print(f"floor:   linear {linear_s:.3f} s + attention {attention_s:.3f} s ({kv_bytes / 1e9:.1f} GB of K/V) "
          f"= {floor_s:.3f} s")
    print(f"ours:    {ours_s:.3f} s; profile (share of {total:.3f} s): linear {mm / total:.0%}, "
          f"attention matmuls {bmm / total:.0%}, other ops {(total - mm - bmm) / total:.0%}")
    print(f"hf:      {hf_s:.3f} s (generate); ours is {hf_s / ours_s:.2f}x; 2.0x needs <= {hf_s / 2:.3f} s")
    print(f"ours_over_floor={ours_s / floor_s:.2f}")
    print(f"max_speedup_vs_hf_at_floor={hf_s / floor_s:.2f}")


if __name__ == "__main__":
    main()
