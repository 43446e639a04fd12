"""Benchmark: learning signal by training setting. Trains each `method,key=value,...` combo for
STEPS steps from the cached SFT base (preset train_tiny + overrides) and evaluates the base and
every final policy on `--problems` held-out problems (8 samples each at T = 1: single-trace
accuracy = mean reward of a sample, pass@8, and one aggregation trace reading 4 of them).
Per run it prints train seconds, generated tokens per prompt, the three accuracies, and the
paired difference to the base with a 95% bootstrap CI over problems (2,000 resamples,
`spiral_bench.stats.paired_bootstrap`; same problems and evaluation seeds for every policy).

    python benchmarks/bench_lr.py OUT_DIR STEPS grpo,lr=1e-4,prompts_per_step=32 spiral,lr=1e-4 ...
        [--problems 1000] [--threads 2]
"""
from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402


def main(argv=None) -> None:
    from spiral_bench.config import parse_override
    from spiral_bench.models import load_model
    from spiral_bench.stats import paired_bootstrap
    from spiral_bench.tasks import get_task
    from spiral_bench.trainers.loop import init_model_path, read_metrics, train
    from spiral_bench.trainers.sft import evaluate_policy
    from spiral_bench.trainers.train_config import make_config

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("out")
    ap.add_argument("steps", type=int)
    ap.add_argument("combos", nargs="+", help="method,key=value,... (train_tiny overrides)")
    ap.add_argument("--problems", type=int, default=1000)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    a = ap.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    base_cfg = make_config("grpo")
    task = get_task(base_cfg.task, **base_cfg.task_options)
    test = task.problems("test", n=a.problems)

    def ev(path):
        m, t = load_model(path)
        return evaluate_policy(m, t, task, test, n_samples=8, n_candidates=4, max_new_tokens=48,
                               seed=12345, per_problem=True)

    def fmt(res):
        return f"single={res['single']:.3f} pass@8={res['pass@8']:.3f} aggregate={res['aggregate']:.3f}"

    base = ev(init_model_path(base_cfg))
    print(f"base ({a.problems} problems): {fmt(base)}", flush=True)
    for c in a.combos:
        method, *parts = c.split(",")
        ov = dict(parse_override(x) for x in parts)
        ov["steps"] = a.steps
        cfg = make_config(method, overrides=ov)
        t = time.time()
        final = train(cfg, f"{a.out}/{c}", progress=False)
        dt = time.time() - t
        rows = read_metrics(f"{a.out}/{c}")
        tpp = sum(r["generated_tokens"] for r in rows) / sum(r["prompts_sampled"] for r in rows)
        res = ev(final)
        deltas = []
        for k in ("single", "aggregate"):
            b = paired_bootstrap({"base": np.array(base["per_problem"][k])[:, None],
                                  "run": np.array(res["per_problem"][k])[:, None]})
            d = b["run"]["reps"][:, 0] - b["base"]["reps"][:, 0]
            lo, hi = np.percentile(d, [2.5, 97.5])
            deltas.append(f"d_{k}={res[k] - base[k]:+.3f} [{lo:+.3f}, {hi:+.3f}]")
        print(f"{c} steps={a.steps} train_s={dt:.0f} tok/prompt={tpp:.0f} {fmt(res)} " + " ".join(deltas), flush=True)


if __name__ == "__main__":
    main()
