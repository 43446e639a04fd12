"""Wall time of the paired bootstrap: 2,000 resamples over 500 problems x 50 cells (target < 10 s).

Times `spiral_bench.stats.PairedBootstrap` (draw the shared (B, P) count matrix, then replicate
means of a (P, C) matrix) plus the percentile CIs of every cell, on synthetic 0/1 values.
Also times one full `compare` (multipliers and gaps on all 2,000 replicates) of two 25-cell
curves. Prints `bootstrap_seconds_2000x500x50=<s>` last. Usage: python benchmarks/bench_bootstrap.py
"""
import time

import numpy as np

from spiral_bench.stats import PairedBootstrap, compare, percentile_ci

B, P, C = 2000, 500, 50


def main() -> None:
    rng = np.random.default_rng(0)
    values = (rng.random((P, C)) < rng.random(C)).astype(np.float64)
    best = float("inf")
    for _ in range(3):  # best of three: the machine is shared
        t0 = time.perf_counter()
        boot = PairedBootstrap(P, B=B, seed=0)
        reps = boot.means(values)
        ci = percentile_ci(reps)
        best = min(best, time.perf_counter() - t0)
    assert reps.shape == (B, C) and ci.shape == (2, C)
    print(f"replicates {reps.shape}, mean CI width {float(np.mean(ci[1] - ci[0])):.4f}")
    # the same 50 cells read as two methods' 25-point curves: multipliers and gaps on every replicate
    comp = np.tile(np.arange(1, 26, dtype=np.float64), (P, 1))
    acc = np.sort(values.reshape(P, 2, 25), axis=2)
    t0 = time.perf_counter()
    res = compare(boot, acc[:, 0], comp, acc[:, 1], comp)
    print(f"compare_seconds_2000x500x25v25={time.perf_counter() - t0:.3f} "
          f"(multiplier_max {res['multiplier_max']['value']:.2f})")
    print(f"bootstrap_seconds_2000x500x50={best:.3f}")


if __name__ == "__main__":
    main()
