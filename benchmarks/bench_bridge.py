"""Benchmark: Bridge vs RL only (GRPO) vs P-Match from the same SFT base at matched compute
(issue 18). Trains `grpo`, `bridge` and `pmatch` for STEPS steps with the same overrides (preset
train_tiny + `--set key=value ...`: same group size G = the bridged width, max_new_tokens,
prompts per step, lr), then evaluates the base and the three final policies on `--problems`
held-out test problems, at every width w in `--widths`: ONE group of w samples per problem
(one request of n = w, seed `sweep_direct.group_seed(seed, w, problem)`; the Bridge decodes it in
lockstep, the others sample it independently), T = 1. Per method and width:
    acc@w  = mean over problems of the group's mean reward   (per-sample accuracy, "pass@1" at width w)
    pass@w = mean over problems of max_j r_j                 (the group's indicator, no n-choose-k)
    maj@w  = mean over problems of the group's majority vote (ties averaged)
with 95% percentile CIs from ONE paired bootstrap over problems (spiral_bench.stats.PairedBootstrap,
2,000 resamples) shared by all methods and widths. The pass@1 gain ratio over the base
    ratio = (acc_bridge - acc_base) / (acc_rl - acc_base)
(and P-Match's) is computed on every bootstrap replicate, at width 1 and at the training width;
the paper's figure is 5.85 / 4.20 = 1.39 (DS-Qwen-7B, mean over 7 benchmarks).

    python benchmarks/bench_bridge.py OUT_DIR STEPS [--set group_size=4 prompts_per_step=64 ...]
        [--problems 300] [--widths 1 2 4 8 16] [--threads 2]
"""
from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402


def evaluate(path, task, problems, widths, L: int, seed: int) -> dict:
    """{w: (acc [P], pass [P], maj [P])} for one checkpoint (Bridge checkpoints decode in lockstep)."""
    from spiral_bench.backends.base import Request, SamplingConfig
    from spiral_bench.backends.hf import HFBackend
    from spiral_bench.estimators import maj_at_k_single
    from spiral_bench.sweep_direct import group_seed

    from spiral_bench.models import load_model

    be = HFBackend(*load_model(str(path)))
    sc = SamplingConfig(temperature=1.0, max_new_tokens=L, batch_size=256)
    out = {}
    for w in widths:
        reqs = [Request(task.prompt(p), n=w, seed=group_seed(seed, w, p.id), max_new_tokens=L) for p in problems]
        acc, pas, maj = [], [], []
        for p, group in zip(problems, be.generate(reqs, sc)):
            r = np.array([float(task.reward(p, s.text)) for s in group])
            keys = [task.canonical(task.extract(s.text)) for s in group]
            acc.append(r.mean())
            pas.append(r.max())
            maj.append(float(maj_at_k_single(keys, r, [w], method="exact")[0]))  # k = n: the group's own vote
        out[w] = tuple(np.asarray(x) for x in (acc, pas, maj))
    return out


def main(argv=None) -> None:
    from spiral_bench.bridge import bridge_params
    from spiral_bench.config import parse_override
    from spiral_bench.models import load_model
    from spiral_bench.stats import PairedBootstrap, percentile_ci
    from spiral_bench.tasks import get_task
    from spiral_bench.trainers.loop import init_model_path, read_metrics, train
    from spiral_bench.trainers.train_config import make_config

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("out")
    ap.add_argument("steps", type=int)
    ap.add_argument("--set", nargs="*", default=["group_size=4", "prompts_per_step=64"],
                    help="train_tiny overrides shared by the three methods")
    ap.add_argument("--bridge-set", nargs="*", default=[], help="extra overrides of the bridge run only "
                    "(e.g. bridge.warmup_steps=50)")
    ap.add_argument("--problems", type=int, default=300)
    ap.add_argument("--widths", type=int, nargs="+", default=[1, 2, 4, 8, 16])
    ap.add_argument("--seed", type=int, default=12345)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    a = ap.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    shared = dict(parse_override(x) for x in a.set)
    shared["steps"] = a.steps
    base_cfg = make_config("grpo", overrides=shared)
    task = get_task(base_cfg.task, **base_cfg.task_options)
    test = task.problems("test", n=a.problems)
    L, G = base_cfg.max_new_tokens, base_cfg.group_size
    paths = {"base": init_model_path(base_cfg)}
    for m, label in (("grpo", "rl_only"), ("pmatch", "pmatch"), ("bridge", "bridge")):
        ov = {**shared, **(dict(parse_override(x) for x in a.bridge_set) if m == "bridge" else {})}
        t = time.time()
        paths[label] = train(make_config(m, overrides=ov), f"{a.out}/{label}", progress=False)
        rows = read_metrics(f"{a.out}/{label}")
        tpp = sum(r["generated_tokens"] for r in rows) / sum(r["prompts_sampled"] for r in rows)
        extra = bridge_params(load_model(paths[label])[0])
        print(f"train {label}: steps={a.steps} G={G} L={L} train_s={time.time() - t:.0f} tok/prompt={tpp:.1f} "
              f"added_params={extra} last_reward={rows[-1]['search_reward']:.3f}", flush=True)
    res = {}
    for label, path in paths.items():
        t = time.time()
        res[label] = evaluate(path, task, test, a.widths, L, a.seed)
        print(f"eval {label}: {time.time() - t:.0f} s", flush=True)
    boot = PairedBootstrap(len(test), B=2000, seed=0)
    print(f"\n{a.problems} held-out problems, one group of w per problem; mean [95% CI]")
    print("method   metric " + " ".join(f"{'w=' + str(w):>22}" for w in a.widths))
    reps = {}
    for label in paths:
        for i, name in enumerate(("acc", "pass", "maj")):
            vals = np.stack([res[label][w][i] for w in a.widths], axis=1)  # (P, W)
            bm = boot.means(vals)
            reps[(label, name)] = bm
            ci = percentile_ci(bm, 0.95)
            cells = [f"{vals[:, j].mean():.3f} [{ci[0, j]:.3f},{ci[1, j]:.3f}]" for j in range(len(a.widths))]
            print(f"{label:8s} {name + '@w':6s} " + " ".join(f"{c:>22}" for c in cells))
    print("\npass@1 (acc@w) gain over the base, and gain ratio vs RL only (paper: Bridge 5.85 / 4.20 = 1.39x)")
    ws = [w for w in (1, G) if w in a.widths]
    for w in dict.fromkeys(ws):
        j = a.widths.index(w)
        base = reps[("base", "acc")][:, j]
        mean = {m: float(np.stack([res[m][w][0]]).mean()) for m in paths}
        g_rl = reps[("rl_only", "acc")][:, j] - base
        for m in ("bridge", "pmatch"):
            g = reps[(m, "acc")][:, j] - base
            with np.errstate(divide="ignore", invalid="ignore"):
                ratio = g / g_rl
            lo, hi = np.nanpercentile(ratio, [2.5, 97.5])
            point = (mean[m] - mean["base"]) / (mean["rl_only"] - mean["base"]) if mean["rl_only"] != mean["base"] \
                else float("nan")
            dlo, dhi = np.percentile(reps[(m, "acc")][:, j] - reps[("rl_only", "acc")][:, j], [2.5, 97.5])
            print(f"w={w:<2d} {m:7s} gain={mean[m] - mean['base']:+.4f} rl_gain={mean['rl_only'] - mean['base']:+.4f} "
                  f"ratio={point:.2f} [{lo:.2f}, {hi:.2f}]  vs rl_only {mean[m] - mean['rl_only']:+.4f} "
                  f"[{dlo:+.4f}, {dhi:+.4f}]")
    for m in paths:
        d = reps[(m, "maj")] - reps[(m, "maj")][:, :1]
        ci = percentile_ci(d, 0.95)
        print(f"{m:8s} maj@w - maj@1: " + " ".join(
            f"w={w}: {float(np.mean([res[m][w][2] for _ in [0]]) - res[m][a.widths[0]][2].mean()):+.3f} "
            f"[{ci[0, j]:+.3f},{ci[1, j]:+.3f}]" for j, w in enumerate(a.widths) if j))


if __name__ == "__main__":
    main()
