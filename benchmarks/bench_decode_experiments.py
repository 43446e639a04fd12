"""Experiments behind issue 3's open 2.0x target: two ways to speed up the fused decode step that
were tried and not kept, reproducible here (numbers in BENCHMARKS.md, "What stands between").

--compile: `torch.compile(dynamic=True)` of the whole fused Qwen3 decode step (`_FastDecode`,
           attention, norms, rope, MLP, one graph) against eager, 128 decode steps of `--rows` rows
           (tiny-1m, 12-token prompt; compile time printed separately).
--kernel:  a hand-written AVX2 decode attention (C++, built with torch.utils.cpp_extension; head_dim
           32 only), per (row, kv head): write k_t, v_t at slot n-1, then
               s_j = q . K_j + mask_j,  p = softmax(s),  o = sum_j p_j V_j   (j < n)
           reading K and V once, against the step's torch path (copy into the cache, matmul, softmax,
           matmul) on the same buffers, 256 rows x 4 heads, n = 20 / 76 / 140 of a 140-slot cache.

    python benchmarks/bench_decode_experiments.py --threads 2 --compile --kernel
"""
from __future__ import annotations

import argparse
import time

import torch

from bench_floor import best
from spiral_bench.fast_decode import _FastDecode
from spiral_bench.models import build_tiny
from spiral_bench.sampling import PreallocCache

KERNEL = r"""
#include <torch/extension.h>
#include <ATen/Parallel.h>
#include <immintrin.h>
#include <ATen/cpu/vec/vec.h>
#include <ATen/cpu/vec/functional.h>
#include <vector>
#include <limits>

static inline float hsum(__m256 a) {
  __m128 lo = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
  lo = _mm_add_ps(lo, _mm_movehl_ps(lo, lo));
  lo = _mm_add_ss(lo, _mm_shuffle_ps(lo, lo, 1));
  return _mm_cvtss_f32(lo);
}

torch::Tensor decode_attn(torch::Tensor q, torch::Tensor kc, torch::Tensor vc, torch::Tensor kn,
                          torch::Tensor vn, torch::Tensor mask, int64_t n) {
  const int64_t B = q.size(0), H = q.size(1), D = q.size(2), Hk = kc.size(1), L = kc.size(2);
  TORCH_CHECK(D == 32);
  const int64_t g = H / Hk;
  q = q.contiguous(); kn = kn.contiguous(); vn = vn.contiguous();
  auto o = torch::empty({B, H, D}, q.options());
  const float *qp = q.data_ptr<float>(), *knp = kn.data_ptr<float>(), *vnp = vn.data_ptr<float>();
  const float *mp = mask.data_ptr<float>();
  const int64_t ms = mask.stride(0), mcs = mask.stride(1);
  float *kp = kc.data_ptr<float>(), *vp = vc.data_ptr<float>(), *op = o.data_ptr<float>();
  at::parallel_for(0, B * Hk, 1, [&](int64_t begin, int64_t end) {
    std::vector<float> s(n + 8);
    for (int64_t bh = begin; bh < end; ++bh) {
      const int64_t b = bh / Hk;
      float *K = kp + bh * L * D, *V = vp + bh * L * D;
      std::copy(knp + bh * D, knp + (bh + 1) * D, K + (n - 1) * D);
      std::copy(vnp + bh * D, vnp + (bh + 1) * D, V + (n - 1) * D);
      for (int64_t h = 0; h < g; ++h) {
        const float *qh = qp + (bh * g + h) * D;
        const __m256 q0 = _mm256_loadu_ps(qh), q1 = _mm256_loadu_ps(qh + 8), q2 = _mm256_loadu_ps(qh + 16), q3 = _mm256_loadu_ps(qh + 24);
        float *sh = s.data();
        float mx = -std::numeric_limits<float>::infinity();
        for (int64_t j = 0; j < n; ++j) {
          const float *kj = K + j * D;
          __m256 a0 = _mm256_mul_ps(q0, _mm256_loadu_ps(kj));
          __m256 a1 = _mm256_mul_ps(q1, _mm256_loadu_ps(kj + 8));
          a0 = _mm256_fmadd_ps(q2, _mm256_loadu_ps(kj + 16), a0);
          a1 = _mm256_fmadd_ps(q3, _mm256_loadu_ps(kj + 24), a1);
          float t = hsum(_mm256_add_ps(a0, a1)) + mp[b * ms + j * mcs];
          sh[j] = t;
          mx = t > mx ? t : mx;
        }
        using Vec = at::vec::Vectorized<float>;
        at::vec::map([mx](Vec x) { return (x - Vec(mx)).exp(); }, sh, sh, n);
        float sum = 0.f;
        for (int64_t j = 0; j < n; ++j) sum += sh[j];
        __m256 o0 = _mm256_setzero_ps(), o1 = o0, o2 = o0, o3 = o0;
        for (int64_t j = 0; j < n; ++j) {
          const __m256 p = _mm256_set1_ps(sh[j]);
          const float *vj = V + j * D;
          o0 = _mm256_fmadd_ps(p, _mm256_loadu_ps(vj), o0);
          o1 = _mm256_fmadd_ps(p, _mm256_loadu_ps(vj + 8), o1);
          o2 = _mm256_fmadd_ps(p, _mm256_loadu_ps(vj + 16), o2);
          o3 = _mm256_fmadd_ps(p, _mm256_loadu_ps(vj + 24), o3);
        }
        const __m256 inv = _mm256_set1_ps(1.f / sum);
        float *oh = op + (bh * g + h) * D;
        _mm256_storeu_ps(oh, _mm256_mul_ps(o0, inv)); _mm256_storeu_ps(oh + 8, _mm256_mul_ps(o1, inv));
        _mm256_storeu_ps(oh + 16, _mm256_mul_ps(o2, inv)); _mm256_storeu_ps(oh + 24, _mm256_mul_ps(o3, inv));
      }
    }
  });
  return o;
}

TORCH_LIBRARY(spiral_decode, m) { m.def("decode_attn", decode_attn); }
"""


def compile_experiment(rows: int, prompt: int = 12, new: int = 128) -> None:
    model, _ = build_tiny("tiny-1m", seed=0)
    cfg = model.config
    L, Hk, D = prompt + new, cfg.num_key_value_heads, cfg.head_dim
    step = _FastDecode(model, L)

    def decode(fn) -> float:
        cache = PreallocCache(cfg.num_hidden_layers, L)
        for ly in cache.layers:
            ly.lazy_initialization(torch.zeros(rows, Hk, 1, D), torch.zeros(rows, Hk, 1, D))
            ly.filled = prompt
        mask, tok = torch.zeros(rows, L), torch.randint(0, cfg.vocab_size, (rows,))
        t0 = time.perf_counter()
        with torch.inference_mode():
            for t in range(new - 1):
                fn(tok, torch.full((rows,), prompt + t), cache, mask[:, None, None, :prompt + t + 1])
        return time.perf_counter() - t0

    compiled = torch.compile(step.__call__, dynamic=True)
    t0 = time.perf_counter()
    decode(compiled)
    first = time.perf_counter() - t0
    eager = min(decode(step) for _ in range(3))
    comp = min(decode(compiled) for _ in range(3))
    print(f"compile: {rows} rows x {new - 1} steps: eager {eager:.3f} s, compiled {comp:.3f} s "
          f"(eager/compiled {eager / comp:.2f}); first compiled run incl. compilation {first:.1f} s")


def kernel_experiment() -> None:
    from torch.utils.cpp_extension import load_inline
    t0 = time.perf_counter()
    load_inline("spiral_decode_attn", cpp_sources=KERNEL, is_python_module=False,
                extra_cflags=["-O3", "-march=native", "-DCPU_CAPABILITY_AVX2", "-DCPU_CAPABILITY=AVX2"])
    print(f"kernel: built in {time.perf_counter() - t0:.1f} s")
    B, H, D, L = 256, 4, 32, 140

    for n in (20, 76, 140):
        kb, vb = torch.randn(B, H, L, D), torch.randn(B, H, L, D)
        q, kn, vn = torch.randn(B, H, 1, D), torch.randn(B, H, 1, D), torch.randn(B, H, 1, D)
        mask = torch.zeros(B, L)
        mask[:, :3] = float("-inf")
        m = mask[:, :n]

        def torch_path():
            kb[:, :, n - 1:n].copy_(kn)
            vb[:, :, n - 1:n].copy_(vn)
            s = torch.matmul(q, kb[:, :, :n].transpose(-1, -2)) + m[:, None, None]
            return torch.matmul(torch.softmax(s, -1), vb[:, :, :n])[:, :, 0]

        def kernel():
            return torch.ops.spiral_decode.decode_attn(q[:, :, 0], kb, vb, kn[:, :, 0], vn[:, :, 0], m, n)

        err = float((torch_path() - kernel()).abs().max())
        tt, tk = best(torch_path, 50), best(kernel, 50)
        gb = 2 * B * H * n * D * 4 / 1e9
        print(f"kernel: n={n:>3}: torch {tt * 1e3:.3f} ms ({gb / tt:.0f} GB/s), hand-written {tk * 1e3:.3f} ms "
              f"({gb / tk:.0f} GB/s), torch/kernel {tt / tk:.2f}, max |diff| {err:.1e}")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rows", type=int, default=256)
    ap.add_argument("--compile", action="store_true")
    ap.add_argument("--kernel", action="store_true")
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    if a.kernel:
        kernel_experiment()
    if a.compile:
        compile_experiment(a.rows)


if __name__ == "__main__":
    main()
