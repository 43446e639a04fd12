"""Benchmark: Bridge vs RL only (GRPO) vs P-Match from the same SFT base at matched compute
(issue 18). Trains `grpo`, `bridge` and `pmatch` for STEPS steps with the same overrides (preset
train_tiny + `--set key=value ...`: same group size G = the bridged width, max_new_tokens,
prompts per step, lr; `bridge.*` keys reach only the two methods with added weights), `--seeds R`
training runs per method (seeds 0 .. R-1, all from the same cached SFT base), then evaluates the
base and every final policy on `--problems` held-out test problems, at every width w in
`--widths`: ONE group of w samples per problem (one request of n = w, seed
`sweep_direct.group_seed(seed, w, problem)`, the same for every policy; the Bridge decodes it in
lockstep, the others sample it independently), T = 1. Per method, run and width:
    acc@w  = mean over problems of the group's mean reward   (per-sample accuracy, "pass@1" at width w)
    pass@w = mean over problems of max_j r_j                 (the group's indicator, no n-choose-k)
    maj@w  = mean over problems of the group's majority vote (ties averaged)
    all@w  = mean over problems of min_j r_j                 (every sample of the group correct)
Means over runs and problems, 95% percentile CIs from ONE two-level bootstrap
(spiral_bench.seed_stats.TwoLevelBootstrap, 2,000 replicates: each method's training runs, then
problems shared by all methods and widths), so the intervals include training variance. The
pass@1 gain ratio over the base (`spiral_bench.stats.gain_ratio`)
    ratio = (acc_bridge - acc_base) / (acc_rl - acc_base)
(and P-Match's) is computed on every replicate, at width 1 and at the training width; it is
reported as undefined when RL only's own gain has a CI reaching 0 (the ratio's confidence set is
then unbounded). The paper's figure is 5.85 / 4.20 = 1.39 (DS-Qwen-7B, mean over 7 benchmarks).

    python benchmarks/bench_bridge.py OUT_DIR STEPS [--set group_size=4 prompts_per_step=128 ...]
        [--seeds 3] [--problems 1000] [--widths 1 2 4 8 16] [--threads 2]
"""
from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402


def evaluate(path, task, problems, widths, L: int, seed: int) -> dict:
    """{w: (acc [P], pass [P], maj [P], all [P])} for one checkpoint (Bridge checkpoints decode in lockstep)."""
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
        acc, pas, maj, every = [], [], [], []
        for p, group in zip(problems, be.generate(reqs, sc)):
            r = np.array([float(task.reward(p, s.text)) for s in group])
            keys = [task.canonical(task.extract(s.text)) for s in group]
            acc.append(r.mean())
            pas.append(r.max())
            every.append(r.min())
            maj.append(float(maj_at_k_single(keys, r, [w], method="exact")[0]))  # k = n: the group's own vote
        out[w] = tuple(np.asarray(x) for x in (acc, pas, maj, every))
    return out


METRICS = ("acc", "pass", "maj", "all")


def main(argv=None) -> None:
    from spiral_bench.bridge import bridge_params
    from spiral_bench.config import parse_override
    from spiral_bench.models import load_model
    from spiral_bench.seed_stats import TwoLevelBootstrap
    from spiral_bench.stats import gain_ratio, percentile_ci
    from spiral_bench.tasks import get_task
    from spiral_bench.trainers.loop import init_model_path, read_metrics, train
    from spiral_bench.trainers.train_config import make_config

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("out")
    ap.add_argument("steps", type=int)
    ap.add_argument("--set", nargs="*", default=["group_size=4", "prompts_per_step=128"],
                    help="train_tiny overrides shared by the three methods (bridge.* keys: bridge and pmatch only)")
    ap.add_argument("--seeds", type=int, default=1, help="training runs per method (seeds 0 .. R-1)")
    ap.add_argument("--problems", type=int, default=1000)
    ap.add_argument("--widths", type=int, nargs="+", default=[1, 2, 4, 8, 16])
    ap.add_argument("--seed", type=int, default=12345, help="evaluation sampling seed")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    a = ap.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    shared = dict(parse_override(x) for x in a.set)
    shared["steps"] = a.steps
    plain = {k: v for k, v in shared.items() if not k.startswith("bridge.")}
    base_cfg = make_config("grpo", overrides=plain)
    task = get_task(base_cfg.task, **base_cfg.task_options)
    test = task.problems("test", n=a.problems)
    L, G = base_cfg.max_new_tokens, base_cfg.group_size
    paths = {"base": [init_model_path(base_cfg)]}
    for m, label in (("grpo", "rl_only"), ("pmatch", "pmatch"), ("bridge", "bridge")):
        paths[label] = []
        for r in range(a.seeds):
            ov = {**(plain if m == "grpo" else shared), "seed": r}
            t = time.time()
            paths[label].append(train(make_config(m, overrides=ov), f"{a.out}/{label}_s{r}", progress=False))
            rows = read_metrics(f"{a.out}/{label}_s{r}")
            tpp = sum(x["generated_tokens"] for x in rows) / sum(x["prompts_sampled"] for x in rows)
            extra = bridge_params(load_model(paths[label][-1])[0])
            print(f"train {label} seed {r}: steps={a.steps} G={G} L={L} train_s={time.time() - t:.0f} "
                  f"tok/prompt={tpp:.1f} added_params={extra} first/last reward={rows[0]['search_reward']:.3f}/"
                  f"{rows[-1]['search_reward']:.3f}", flush=True)
    vals = {}                                 # label -> (R, P, W, 4): acc, pass, maj, all
    for label, ps in paths.items():
        t = time.time()
        runs = [evaluate(p, task, test, a.widths, L, a.seed) for p in ps]
        vals[label] = np.stack([np.stack([np.stack(e[w], axis=-1) for w in a.widths], axis=1) for e in runs])
        per = " ".join(f"s{r}: acc@1={vals[label][r, :, 0, 0].mean():.3f}" for r in range(len(ps)))
        print(f"eval {label}: {time.time() - t:.0f} s  {per}", flush=True)
    boot = TwoLevelBootstrap(len(test), {k: v.shape[0] for k, v in vals.items()}, B=2000, seed=0)
    reps = {k: boot.means(k, v) for k, v in vals.items()}          # (B, W, 4)
    point = {k: v.mean(axis=(0, 1)) for k, v in vals.items()}      # (W, 4)
    print(f"\n{a.problems} held-out problems, one group of w per problem, {a.seeds} training run(s) per method; "
          f"mean [95% CI, two-level bootstrap]")
    print("method   metric " + " ".join(f"{'w=' + str(w):>22}" for w in a.widths))
    for label in vals:
        for i, name in enumerate(METRICS):
            ci = percentile_ci(reps[label][..., i], 0.95)
            cells = [f"{point[label][j, i]:.3f} [{ci[0, j]:.3f},{ci[1, j]:.3f}]" for j in range(len(a.widths))]
            print(f"{label:8s} {name + '@w':6s} " + " ".join(f"{c:>22}" for c in cells))
    print("\npass@1 (acc@w) gain over the base, and gain ratio vs RL only (paper: Bridge 5.85 / 4.20 = 1.39x)")
    for w in dict.fromkeys(w for w in (1, G) if w in a.widths):
        j = a.widths.index(w)
        gr = {m: gain_ratio(point[m][j, 0], point["rl_only"][j, 0], point["base"][j, 0],
                            reps[m][:, j, 0], reps["rl_only"][:, j, 0], reps["base"][:, j, 0]) for m in ("bridge", "pmatch")}
        g_rl = gr["bridge"]["baseline_gain"]                       # RL only's gain over the base, with its CI
        print(f"w={w:<2d} rl_only gain={g_rl['value']:+.4f} [{g_rl['ci'][0]:+.4f}, {g_rl['ci'][1]:+.4f}]")
        for m, g in gr.items():
            ratio = (f"ratio={g['value']:.2f} [{g['ci'][0]:.2f}, {g['ci'][1]:.2f}]" if g["defined"]
                     else "ratio undefined (RL only's gain CI reaches 0)")
            d = percentile_ci(reps[m][:, j, 0] - reps["rl_only"][:, j, 0], 0.95)
            print(f"w={w:<2d} {m:7s} gain={g['method_gain']['value']:+.4f} [{g['method_gain']['ci'][0]:+.4f}, "
                  f"{g['method_gain']['ci'][1]:+.4f}] {ratio}  vs rl_only "
                  f"{point[m][j, 0] - point['rl_only'][j, 0]:+.4f} [{d[0]:+.4f}, {d[1]:+.4f}]")
    print("\nwidth w vs width 1 (maj@w - maj@1), and Bridge - P-Match at each width (pass@w, maj@w, all@w)")
    for m in vals:
        ci = percentile_ci(reps[m][..., 2] - reps[m][:, :1, 2], 0.95)
        print(f"{m:8s} maj@w - maj@1: " + " ".join(
            f"w={w}: {point[m][j, 2] - point[m][0, 2]:+.3f} [{ci[0, j]:+.3f},{ci[1, j]:+.3f}]"
            for j, w in enumerate(a.widths) if j))
    for i, name in ((1, "pass"), (2, "maj"), (3, "all")):
        ci = percentile_ci(reps["bridge"][..., i] - reps["pmatch"][..., i], 0.95)
        print(f"bridge - pmatch {name}@w: " + " ".join(
            f"w={w}: {point['bridge'][j, i] - point['pmatch'][j, i]:+.3f} [{ci[0, j]:+.3f},{ci[1, j]:+.3f}]"
            for j, w in enumerate(a.widths)))


if __name__ == "__main__":
    main()
