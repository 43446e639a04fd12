"""Benchmark: learning signal of GRPO and SPIRAL from the shared SFT base on the default
procedural task (preset `train_tiny`: arithmetic, 2 ops mod 100, tiny-1m), on CPU.

1. the SFT base (cached by config hash; trained on a miss);
2. GRPO and SPIRAL, `--steps` steps each from that base, same seed, data order and lr; the
   training compute is checked with check_pairing (generated tokens per prompt, 10%) and both
   figures are printed (a mismatch is reported, not fatal);
3. held-out evaluation (test split, `--eval-problems` problems, T = 1, 8 samples each) of the base
   and both final policies: single-trace accuracy (mean reward of a sample), pass@8, and aggregated
   accuracy (one aggregation trace reading 4 of the samples).
Expected: GRPO raises single-trace accuracy; SPIRAL raises aggregated accuracy.

    python benchmarks/bench_learning.py --threads 2 [--steps 30] [--out results/bench_learning]
"""
from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--eval-problems", type=int, default=300)
    ap.add_argument("--out", default="results/bench_learning")
    ap.add_argument("overrides", nargs="*", help="key=value TrainConfig overrides for both runs")
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    from spiral_bench.config import parse_override
    from spiral_bench.models import load_model
    from spiral_bench.tasks import get_task
    from spiral_bench.trainers.loop import init_model_path, read_metrics, train
    from spiral_bench.trainers.sft import evaluate_policy
    from spiral_bench.trainers.train_config import check_pairing, make_config

    ov = {"steps": a.steps, **dict(parse_override(o) for o in a.overrides)}
    cfgs = {m: make_config(m, overrides=ov) for m in ("grpo", "spiral")}
    task = get_task(cfgs["grpo"].task, **cfgs["grpo"].task_options)
    test = task.problems("test", n=a.eval_problems)
    t0 = time.perf_counter()
    base = init_model_path(cfgs["grpo"])
    print(f"SFT base: {base} (ready in {time.perf_counter() - t0:.0f} s)")

    def evaluate(path):
        model, tok = load_model(path)
        return evaluate_policy(model, tok, task, test, n_samples=8, n_candidates=4,
                               max_new_tokens=cfgs["grpo"].max_new_tokens, seed=12345)

    res = {"sft base": evaluate(base)}
    minutes = {}
    for m, cfg in cfgs.items():
        t1 = time.perf_counter()
        final = train(cfg, Path(a.out) / m, progress=True)
        minutes[m] = (time.perf_counter() - t1) / 60
        res[m] = evaluate(str(final))
    pair = check_pairing(Path(a.out) / "grpo", Path(a.out) / "spiral", allow=True)
    print(f"task {cfgs['grpo'].task} {cfgs['grpo'].task_options}, {a.eval_problems} held-out problems, T=1")
    for m in cfgs:
        rows = read_metrics(Path(a.out) / m)
        print(f"{m}: {len(rows)} steps in {minutes[m]:.1f} min, generated tokens per prompt "
              f"{sum(r['generated_tokens'] for r in rows) / max(1, sum(r['prompts_sampled'] for r in rows)):.0f}, "
              f"train search reward {rows[0]['search_reward']:.3f} -> {rows[-1]['search_reward']:.3f}"
              + (f", train agg reward {rows[0]['agg_reward']:.3f} -> {rows[-1]['agg_reward']:.3f}" if m == "spiral" else ""))
    print(f"pairing: grpo {pair['a']:.0f} vs spiral {pair['b']:.0f} generated tokens per prompt, "
          f"differ by {pair['relative_difference']:.1%} ({'matched' if pair['matched'] else 'NOT matched'} at 10%)")
    print(f"{'policy':10s} {'single':>8s} {'pass@8':>8s} {'aggregate':>10s}")
    for name, r in res.items():
        print(f"{name:10s} {r['single']:8.3f} {r['pass@8']:8.3f} {r['aggregate']:10.3f}")
    b = res["sft base"]
    print(f"grpo_single_delta={res['grpo']['single'] - b['single']:+.3f}")
    print(f"spiral_aggregate_delta={res['spiral']['aggregate'] - b['aggregate']:+.3f}")


if __name__ == "__main__":
    main()
