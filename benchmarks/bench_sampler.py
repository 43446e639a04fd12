"""Benchmark: spiral-bench's sampler (shared-prefix, static cache, per-sample Gumbel streams)
against transformers `model.generate` on the same tiny model and prompts (CPU).

Setting: 16 distinct arithmetic prompts (~12 characters), n = 1, 4, 16 samples per prompt
(HF: num_return_sequences=n), 128 new tokens, temperature 1.0, EOS ignored by both
(HF: min_new_tokens=max_new_tokens; ours: the EOS set is emptied), one batch per setting.
Throughput = generated tokens / seconds (best of `--repeats` runs per side after one warm-up
each, the two sides alternating run by run so that machine noise hits both alike); seconds are wall time, or process CPU time with `--clock cpu` (use with --threads 1 on a busy machine).
Prints one row per setting and the final line `speedup_vs_hf_generate_n16=<ratio>`.
`--prefix-table` instead compares our sampler with shared-prompt decode attention (the default)
against the same sampler fanning the prompt cache out to every sample (`share_prefix=False`), on
longer random prompts like SPIRAL's aggregation prompts; tokens must be identical.

    python benchmarks/bench_sampler.py --threads 2 [--model tiny-1m] [--dtype float32] [--clock cpu]
"""
from __future__ import annotations

import argparse
import random
import time

import torch

from spiral_bench.backends.base import Request, SamplingConfig
from spiral_bench.models import build_tiny, to_dtype
from spiral_bench.sampling import Sampler


def prompts(k: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return [f"{rng.randint(10, 99)}+{rng.randint(10, 99)}*{rng.randint(2, 9)}-{rng.randint(1, 9)}=?"
            for _ in range(k)]


def best_times(fns, repeats: int, clock=time.perf_counter) -> list[float]:
    """Best time of each function over `repeats` rounds; each round runs every function once."""
    for fn in fns:
        fn()  # warm-up
    ts = [[] for _ in fns]
    for _ in range(repeats):
        for t, fn in zip(ts, fns):
            t0 = clock()
            fn()
            t.append(clock() - t0)
    return [min(t) for t in ts]


def prefix_table(model, tok, repeats: int) -> None:
    rng = random.Random(0)
    print(f"{'prompt':>6} {'n':>3} {'seqs':>5} {'new':>4} {'fanout_s':>9} {'shared_s':>9} {'ratio':>6} identical")
    for plen, n, k, new in ((12, 16, 16, 128), (60, 8, 32, 64), (100, 4, 64, 32), (100, 16, 16, 32)):
        ps = ["".join(rng.choice("0123456789+-*=;#|") for _ in range(plen)) for _ in range(k)]
        reqs = [Request(p, n=n, seed=i) for i, p in enumerate(ps)]
        sc = SamplingConfig(temperature=1.0, max_new_tokens=new, batch_size=k * n)
        fan, shared = Sampler(model, tok, share_prefix=False), Sampler(model, tok, share_prefix_min_tokens=0)
        fan.eos = shared.eos = torch.tensor([-1])
        a, b = fan.generate(reqs, sc), shared.generate(reqs, sc)
        same = sum(x.token_ids == y.token_ids for ra, rb in zip(a, b) for x, y in zip(ra, rb))
        t_fan, t_shared = best_times([lambda: fan.generate(reqs, sc), lambda: shared.generate(reqs, sc)], repeats)
        print(f"{plen:>6} {n:>3} {k * n:>5} {new:>4} {t_fan:>9.3f} {t_shared:>9.3f} {t_fan / t_shared:>6.2f} "
              f"{same}/{k * n}")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="tiny-1m")
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--prompts", type=int, default=16)
    ap.add_argument("--ns", default="1,4,16")
    ap.add_argument("--new-tokens", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                    help="wall: perf_counter; cpu: process CPU time (robust on a shared machine, "
                         "meaningful with --threads 1)")
    ap.add_argument("--prefix-table", action="store_true", help="shared-prompt attention vs fan-out instead")
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    model, tok = build_tiny(a.model, seed=0)
    model = model.to(to_dtype(a.dtype))
    if a.prefix_table:
        return prefix_table(model, tok, a.repeats)
    ps = prompts(a.prompts)
    sampler = Sampler(model, tok)
    sampler.eos = torch.tensor([-1])  # ignore EOS, like min_new_tokens on the HF side
    print(f"model={a.model} dtype={a.dtype} threads={a.threads} prompts={len(ps)} "
          f"new_tokens={a.new_tokens} clock={a.clock} prompt_chars~{sum(map(len, ps)) / len(ps):.0f}")
    print(f"{'n':>3} {'seqs':>5} {'hf_tok/s':>10} {'ours_tok/s':>11} {'ratio':>6}")
    ratio = {}
    for n in [int(x) for x in a.ns.split(",")]:
        total = len(ps) * n * a.new_tokens
        enc = tok(ps, return_tensors="pt", padding=True, add_special_tokens=False)

        def hf():
            with torch.inference_mode():
                torch.manual_seed(0)
                out = model.generate(**enc, do_sample=True, temperature=1.0, top_k=0, top_p=1.0,
                                     max_new_tokens=a.new_tokens, min_new_tokens=a.new_tokens,
                                     num_return_sequences=n, pad_token_id=tok.pad_token_id)
            assert out.shape == (len(ps) * n, enc["input_ids"].shape[1] + a.new_tokens)

        sc = SamplingConfig(temperature=1.0, max_new_tokens=a.new_tokens, batch_size=len(ps) * n)
        reqs = [Request(p, n=n, seed=i) for i, p in enumerate(ps)]

        def ours():
            out = sampler.generate(reqs, sc)
            assert all(s.completion_tokens == a.new_tokens for ss in out for s in ss)

        clock = time.perf_counter if a.clock == "wall" else time.process_time
        t_hf, t_ours = best_times([hf, ours], a.repeats, clock)
        ratio[n] = t_hf / t_ours
        print(f"{n:>3} {len(ps) * n:>5} {total / t_hf:>10.0f} {total / t_ours:>11.0f} {ratio[n]:>6.2f}")
    if 16 in ratio:
        print(f"speedup_vs_hf_generate_n16={ratio[16]:.2f}")


if __name__ == "__main__":
    main()
