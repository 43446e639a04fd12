"""Benchmark: GRSP vs GRPO from the same SFT base at matched compute (issue 17), paired on held-out
problems, plus GRSP's ascending-weights ablation.

1. The SFT base of preset train_tiny with arithmetic `recheck_prob` p (its traces write a step twice
   with probability p: redundant re-checks for a length penalty to remove). The re-check share
   (`tasks.arithmetic.recheck_share`) is printed for the SFT data (gold traces of 2,000 training
   problems) and for traces SAMPLED from the SFT base on the held-out problems.
2. GRPO, GRSP (descending weights, the paper's) and GRSP with ascending weights, trained for
   `--steps` steps from that base with the same seed, prompts per step and group size G, so each
   step draws the same G x L rollout budget (matched compute; their logged generated tokens per
   prompt are printed, and step 1 samples identical traces: common random numbers).
3. Each policy (and the SFT base) samples `--samples` traces per problem at T = 1 and L_max =
   max_new_tokens on `--problems` held-out problems, with the same seeds for every policy.
   `spiral_bench.efficiency` gives, per max-token budget b (a sample cut at b keeps its answer only if
   it stopped within b tokens): accuracy, tokens per correct answer; paired bootstrap CIs over
   problems (2,000 resamples) of the accuracy difference (points) and the tokens-per-correct ratio
   against GRPO; segments per response (the GRSP run's segmentation and cluster edges, fixed at its
   first step) with the ratio's CI, mean segment length, share of segments per cluster, re-check share.
   For the ablation: the lowest training search accuracy over steps 2.. (a collapse shows here) and
   the last step's.

    python benchmarks/bench_grsp.py OUT_DIR [--steps 30] [--problems 1000] [--samples 4]
        [--recheck-prob 0.3] [--penalty-coef 0.1] [--budgets 16,20,24,32,48] [--threads 2] [--set k=v ...]
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402


def _fmt_ci(e: dict, digits: int = 3, pct: bool = False) -> str:
    lo, hi = e["ci"]
    if pct:
        return f"{e['value']:+.1f} [{lo:+.1f}, {hi:+.1f}]"
    return f"{e['value']:.{digits}f} [{lo:.{digits}f}, {hi:.{digits}f}]"


def main(argv=None) -> None:
    from spiral_bench import efficiency as eff
    from spiral_bench.backends.base import Request, SamplingConfig, derive_seed
    from spiral_bench.config import parse_override
    from spiral_bench.models import load_model
    from spiral_bench.sampling import Sampler
    from spiral_bench.tasks import get_task
    from spiral_bench.tasks.arithmetic import recheck_share
    from spiral_bench.trainers import grsp
    from spiral_bench.trainers.loop import init_model_path, read_metrics, train
    from spiral_bench.trainers.train_config import make_config

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("out")
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--problems", type=int, default=1000)
    ap.add_argument("--samples", type=int, default=4, help="samples per held-out problem at T = 1")
    ap.add_argument("--recheck-prob", type=float, default=0.3, help="arithmetic recheck_prob of the SFT traces")
    ap.add_argument("--penalty-coef", type=float, default=0.1, help="grsp.penalty_coef (lambda)")
    ap.add_argument("--budgets", default="16,20,24,32,48", help="max-token budgets (the largest = max_new_tokens)")
    ap.add_argument("--methods", default="grpo,grsp,grsp_ascending", help="subset of grpo,grsp,grsp_ascending")
    ap.add_argument("--set", action="append", default=[], help="extra train_tiny override key=value (all runs)")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    ap.add_argument("--B", type=int, default=2000, help="bootstrap resamples")
    a = ap.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    budgets = sorted(int(x) for x in a.budgets.split(","))
    common = {"task_options.recheck_prob": a.recheck_prob, "steps": a.steps, "max_new_tokens": budgets[-1],
              **dict(parse_override(x) for x in a.set)}
    variants = {"grpo": ("grpo", {}),
                "grsp": ("grsp", {"grsp.penalty_coef": a.penalty_coef}),
                "grsp_ascending": ("grsp", {"grsp.penalty_coef": a.penalty_coef, "grsp.weights": "ascending"})}
    chosen = a.methods.split(",")
    base_cfg = make_config("grpo", overrides=common)
    task = get_task(base_cfg.task, **base_cfg.task_options)
    test = task.problems("test", n=a.problems)
    gcfg = make_config("grsp", overrides=common).grsp
    print(f"setup: train_tiny, arithmetic {base_cfg.task_options}, steps={a.steps} prompts/step="
          f"{base_cfg.prompts_per_step} G={base_cfg.group_size} L={base_cfg.max_new_tokens} lr={base_cfg.lr}; "
          f"lambda={a.penalty_coef}; eval {a.problems} held-out problems x {a.samples} samples, T=1", flush=True)
    sft_share = recheck_share([task.gold_trace(p) for p in task.problems("train", n=2000)])

    def sample(path):
        model, tok = load_model(path)
        model.eval()
        sampler = Sampler(model, tok)
        out = sampler.generate([Request(task.prompt(p), n=a.samples, seed=derive_seed(12345, "bench_grsp", p.id))
                                for p in test], SamplingConfig(temperature=1.0, max_new_tokens=budgets[-1]))
        strs = sampler.token_strings()
        R = np.array([[task.reward(p, s.text) for s in ss] for p, ss in zip(test, out)])
        N = np.array([[s.completion_tokens for s in ss] for ss in out])
        segs = [eff.segment_samples([[strs[i] if 0 <= i < len(strs) else "" for i in s.token_ids] for s in ss], gcfg)
                for ss in out]
        texts = [s.text for ss in out for s in ss]
        return {"R": R, "N": N, "segs": segs, "recheck": recheck_share(texts)}

    t = time.time()
    res = {"base": sample(init_model_path(base_cfg, progress=False))}
    print(f"SFT base ready + sampled in {time.time() - t:.0f} s; re-check share of steps: SFT data "
          f"{sft_share:.3f}, traces sampled from the SFT base {res['base']['recheck']:.3f}", flush=True)
    train_info = {}
    for name in chosen:
        method, ov = variants[name]
        cfg = make_config(method, overrides={**common, **ov})
        t = time.time()
        final = train(cfg, f"{a.out}/{name}", progress=False)
        dt = time.time() - t
        rows = read_metrics(f"{a.out}/{name}")
        tpp = sum(r["generated_tokens"] for r in rows) / sum(r["prompts_sampled"] for r in rows)
        acc = [r["search_acc"] for r in rows]
        train_info[name] = {"train_s": dt, "tok_per_prompt": tpp, "acc_min": min(acc[1:] or acc), "acc_last": acc[-1],
                            "acc_first": acc[0]}
        res[name] = sample(final)
        print(f"trained {name}: {dt:.0f} s, logged generated tokens/prompt {tpp:.0f}, training search_acc "
              f"step1 {acc[0]:.3f} min(2..) {train_info[name]['acc_min']:.3f} last {acc[-1]:.3f}", flush=True)
        top = eff.budget_table(res[name]["R"], res[name]["N"], budgets)[-1]
        line = (f"  held-out at L_max: acc {top['accuracy']:.3f}, tokens/correct {top['tokens_per_correct']:.1f}, "
                f"segments/response {np.mean([len(x) for per in res[name]['segs'] for x in per]):.2f}, "
                f"re-check share {res[name]['recheck']:.3f}")
        if name != "grpo" and "grpo" in res:
            c = eff.compare_budgets((res[name]["R"], res[name]["N"]), (res["grpo"]["R"], res["grpo"]["N"]),
                                    budgets[-1:], B=a.B)[0]
            line += f"; vs grpo d_acc {_fmt_ci(c['d_acc_points'], pct=True)} pts, tokens/correct ratio {_fmt_ci(c['tpc_ratio'])}"
        print(line, flush=True)
    edges_file = f"{a.out}/grsp/grsp_edges.json"
    edges = json.loads(Path(edges_file).read_text())["edges"] if os.path.isfile(edges_file) else grsp.quantile_edges(
        [x for per in res["base"]["segs"] for s in per for x in s], gcfg.num_clusters)
    print(f"\ncluster edges (tokens, from the GRSP run's first step): {[round(e, 2) for e in edges]}")
    print("\nper policy at L_max: acc | tokens/correct | segments/response | mean segment len | "
          "segments per cluster (short..long) | share per cluster | re-check share")
    for name, r in res.items():
        tab = eff.budget_table(r["R"], r["N"], budgets)[-1]
        s = eff.segment_summary([x for per in r["segs"] for x in per], edges)
        print(f"  {name:15s} {tab['accuracy']:.3f} | {tab['tokens_per_correct']:.1f} | "
              f"{s['segments_per_response']:.2f} | {s['mean_segment_len']:.2f} | "
              f"{' '.join(f'{v:.2f}' for v in s['per_cluster'])} | {' '.join(f'{v:.2f}' for v in s['cluster_share'])}"
              f" | {r['recheck']:.3f}")
    if "grpo" not in res:
        return
    g = res["grpo"]
    for name in [n for n in chosen if n != "grpo"] + ["base"]:
        r = res[name]
        print(f"\n{name} vs grpo (paired over {a.problems} problems, 95% CI, B={a.B}):")
        for row in eff.compare_budgets((r["R"], r["N"]), (g["R"], g["N"]), budgets, B=a.B):
            print(f"  budget {row['budget']:3d}: acc {row['method']['accuracy']:.3f} vs {row['baseline']['accuracy']:.3f}"
                  f"  d_acc {_fmt_ci(row['d_acc_points'], pct=True)} pts | tokens/correct "
                  f"{row['method']['tokens_per_correct']:.1f} vs {row['baseline']['tokens_per_correct']:.1f}"
                  f"  ratio {_fmt_ci(row['tpc_ratio'])}")
        sr = eff.compare_segments(r["segs"], g["segs"], B=a.B)
        print(f"  segments/response ratio {_fmt_ci(sr)}")
    if "grsp" in res:
        top = eff.compare_budgets((res["grsp"]["R"], res["grsp"]["N"]), (g["R"], g["N"]), budgets, B=a.B)[-1]
        down = top["tpc_ratio"]["ci"][1] < 1.0
        within = top["d_acc_points"]["value"] >= -2.0
        print(f"\nGRSP direction at L_max (tokens per correct down with CI below 1, accuracy within 2 points): "
              f"tokens {'down' if down else 'NOT down'} ({top['tpc_ratio']['value']:.3f}), accuracy "
              f"{top['d_acc_points']['value']:+.1f} pts -> {'reproduces' if down and within else 'does NOT reproduce'}")


if __name__ == "__main__":
    main()
