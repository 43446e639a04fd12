"""Benchmark: how to spend 2 CPU cores on the tiny model. Times SFT steps of the default SFT base
(tiny-1m, 24 search + 8 aggregation examples per step) three ways, side by side in one run:

- `one_process_2_threads`: one backward over both batches, torch with 2 threads (the old SFT step);
- `side_by_side_2x1`: the two batches differentiated on two Python threads, 1 torch thread each,
  gradients added (`trainers/sft.py` today);
- `two_processes_1_thread`: two processes at once, each doing the old step with 1 thread
  (what `spiral-bench run --jobs 2` does with trainings and sweeps); throughput counts both.

Prints seconds per step of each and the speed-ups over the first; last lines
`sft_side_by_side_speedup=<r>` and `two_processes_throughput_ratio=<r>`.

    python benchmarks/bench_parallel.py [--steps 40] [--rounds 3]
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def _setup():
    from spiral_bench.models import load_model
    from spiral_bench.tasks import get_task
    from spiral_bench.trainers import sft
    import torch

    cfg = sft.SFTConfig(task="arithmetic", task_options={"n_ops": 2, "modulus": 100})
    task = get_task(cfg.task, **cfg.task_options)
    problems = task.problems("train", n=cfg.train_problems)
    model, tok = load_model("tiny-1m", dtype="float32", device="cpu", seed=0)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    batches = [[sft._batch(tok, pairs, "cpu") for pairs in sft._examples(task, problems, cfg, s)] for s in range(8)]
    return sft, model, opt, batches


def _seconds_per_step(step, batches, n: int) -> float:
    """Mean seconds of `step` over n steps, after 3 warm-up steps."""
    for i in range(3):
        step(batches[i % 8])
    t0 = time.perf_counter()
    for i in range(n):
        step(batches[i % 8])
    return (time.perf_counter() - t0) / n


def old_steps(n: int, threads: int) -> float:
    """Seconds per old SFT step (one backward over both batches) with `threads` torch threads."""
    import torch
    sft, model, opt, batches = _setup()
    torch.set_num_threads(threads)

    def step(bs):
        parts = [sft._nll_sum(model, b) for b in bs]
        (sum(l for l, _ in parts) / sum(k for _, k in parts)).backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    return _seconds_per_step(step, batches, n)


def side_by_side_steps(n: int) -> float:
    """Seconds per SFT step as trainers/sft.py does it with 2 cores (2 Python threads x 1 torch thread)."""
    import torch
    sft, model, opt, batches = _setup()
    params = [p for p in model.parameters()]
    torch.set_num_threads(1)
    pool = ThreadPoolExecutor(2)

    def step(bs):
        n_tok = sum(sft._n_targets(b) for b in bs)
        parts = list(pool.map(lambda b: sft._part_grads(model, params, b, n_tok), bs))
        for i, p in enumerate(params):
            p.grad = sft._sum_grads([g[i] for _, g in parts], p)
        opt.step()
        opt.zero_grad(set_to_none=True)
    return _seconds_per_step(step, batches, n)


def two_processes(n: int) -> float:
    """Seconds per step of each of two 1-thread processes running at once (mean of the two)."""
    code = f"import sys; sys.path.insert(0, {os.path.dirname(__file__)!r}); import bench_parallel as b; " \
           f"print(b.old_steps({n}, 1))"
    procs = [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [float(p.communicate()[0].strip().splitlines()[-1]) for p in procs]
    return sum(outs) / 2


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args(argv)
    print(f"{os.cpu_count()} CPUs; {a.steps} SFT steps per measurement, {a.rounds} rounds (median)")
    res: dict[str, list[float]] = {"one_process_2_threads": [], "side_by_side_2x1": [], "two_processes_1_thread": []}
    for _ in range(a.rounds):
        res["one_process_2_threads"].append(old_steps(a.steps, 2))
        res["side_by_side_2x1"].append(side_by_side_steps(a.steps))
        res["two_processes_1_thread"].append(two_processes(a.steps))
    med = {k: sorted(v)[len(v) // 2] for k, v in res.items()}
    for k, v in res.items():
        print(f"{k:24s} s/step {med[k]:.4f}  (rounds: {', '.join(f'{x:.4f}' for x in v)})")
    print(f"sft_side_by_side_speedup={med['one_process_2_threads'] / med['side_by_side_2x1']:.2f}")
    print(f"two_processes_throughput_ratio={2 * med['one_process_2_threads'] / med['two_processes_1_thread']:.2f}")


if __name__ == "__main__":
    main()
