"""Benchmark: one GRPO training step of spiral-bench's loop against TRL 1.16's GRPOTrainer (CPU).

Same tiny model (`--model sft`, the default: the cached SFT base of preset train_tiny, so rewards
and advantages are those of a real run; `--model random`: random-init `tiny-1m`, whose rewards are
all 0), same char tokenizer, same arithmetic prompts, same group size G, prompts per step P and
max new tokens L, temperature 1.0, fp32, no KL (beta = 0), loss `dapo`, one optimizer step per generation batch. A step = sampling
P x G completions + rewards + advantages + teacher-forced forward/backward + AdamW.
Timing: `--rounds` rounds; in each, a fresh TRL trainer (built untimed) and our runs each take
`--steps` timed steps on that round's prompts, the side that goes first alternating by round; a
round's ratio is TRL's mean step time over ours, and the result is the median over rounds (this
machine's speed drifts by 10-30% over minutes). TRL runs offline with a local model dir, a local tokenizer, the task's reward function and
a tiny in-memory `datasets.Dataset`. Ours runs in four variants that alternate step by step:
the default (traces with advantage exactly 0 have a zero gradient and skip the update pass,
`skip_zero_advantage`; each group's prompt is run once with its completions packed behind it,
`pack_max_tokens`), without one or the other, and without both (the same work as TRL). Prints
the per-step times, the share of zero-advantage traces, then `speedup_vs_trl_grpo=<ratio>` for
the default.

    python benchmarks/bench_train_step.py --threads 2 [--prompts 8 --group 8 --max-new-tokens 64]
"""
from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
import warnings
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--prompts", type=int, default=8)
    ap.add_argument("--group", type=int, default=8)
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--steps", type=int, default=3, help="timed steps per side and round")
    ap.add_argument("--rounds", type=int, default=3, help="rounds; the result is the median of the per-round ratios")
    ap.add_argument("--model", choices=("sft", "random"), default="sft")
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    warnings.filterwarnings("ignore")
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    from spiral_bench.config import build
    from spiral_bench.models import build_tiny, save
    from spiral_bench.tasks import get_task
    from spiral_bench.trainers import grpo  # noqa: F401  (registers the method)
    from spiral_bench.trainers.loop import Run
    from spiral_bench.trainers.train_config import TrainConfig

    task = get_task("arithmetic", n_ops=2, modulus=100)
    per_round = a.prompts * a.steps
    problems = task.problems("train", n=per_round * a.rounds)
    by_prompt = {task.prompt(p): p for p in problems}
    with tempfile.TemporaryDirectory() as tmp:
        if a.model == "sft":
            from spiral_bench.trainers.loop import init_model_path
            from spiral_bench.trainers.train_config import make_config
            model_dir = Path(init_model_path(make_config("grpo")))
        else:
            model_dir = Path(tmp) / "model"
            model, tok = build_tiny("tiny-1m", seed=0)
            save(model, tok, model_dir)
        from spiral_bench.models import load_model
        tok = load_model(str(model_dir))[1]

        def reward(prompts, completions, **_):
            return [task.reward(by_prompt[p], c) for p, c in zip(prompts, completions)]

        def trl_round(r: int) -> float:
            """A fresh TRL GRPOTrainer (built untimed) trains `steps` steps on round r's prompts."""
            args = GRPOConfig(output_dir=str(Path(tmp) / f"trl{r}"), report_to=[], use_cpu=True, bf16=False,
                              num_generations=a.group, per_device_train_batch_size=a.prompts * a.group,
                              steps_per_generation=1, max_completion_length=a.max_new_tokens, max_steps=a.steps,
                              temperature=1.0, beta=0.0, loss_type="dapo", learning_rate=1e-4, save_strategy="no",
                              logging_steps=1, disable_tqdm=True, shuffle_dataset=False, seed=0)
            data = Dataset.from_dict({"prompt": [task.prompt(p) for p in problems[r * per_round:(r + 1) * per_round]]})
            trainer = GRPOTrainer(model=str(model_dir), reward_funcs=reward, args=args, processing_class=tok,
                                  train_dataset=data)
            t0 = time.perf_counter()
            trainer.train()
            return (time.perf_counter() - t0) / a.steps

        variants = {"default": {}, "no_skip": {"skip_zero_advantage": False}, "no_pack": {"pack_max_tokens": 0},
                    "neither": {"skip_zero_advantage": False, "pack_max_tokens": 0}}
        runs, rows_of = {}, {k: [] for k in variants}
        for name, ov in variants.items():
            cfg = build(TrainConfig, {"method": "grpo", "task": "arithmetic",
                                      "task_options": {"n_ops": 2, "modulus": 100},
                                      "model": str(model_dir), "train_problems": len(problems),
                                      "steps": a.steps * a.rounds, "prompts_per_step": a.prompts,
                                      "group_size": a.group, "max_new_tokens": a.max_new_tokens, "lr": 1e-4,
                                      "micro_batch_size": 0, "loss": {"loss_agg": "dapo", "beta": 0.0}, **ov})
            runs[name] = Run(cfg, Path(tmp) / name, progress=False)

        def ours_round() -> dict:
            """`steps` steps of every variant, the variants alternating step by step."""
            secs = dict.fromkeys(runs, 0.0)
            for _ in range(a.steps):
                for name, run in runs.items():
                    t0 = time.perf_counter()
                    rows_of[name].append(run.train_step())
                    secs[name] += time.perf_counter() - t0
            return {k: v / a.steps for k, v in secs.items()}

        print(f"setting: P={a.prompts} prompts x G={a.group} samples, max_new_tokens={a.max_new_tokens}, "
              f"tiny-1m ({a.model}) fp32, {a.threads} threads, {a.rounds} rounds of {a.steps} steps per side")
        trl, ours = [], []
        for r in range(a.rounds):  # the sides alternate which goes first, round by round
            if r % 2 == 0:
                trl.append(trl_round(r))
                ours.append(ours_round())
            else:
                ours.append(ours_round())
                trl.append(trl_round(r))
            print(f"round {r}: trl_grpo {trl[-1]:.3f} s/step, ours {ours[-1]['default']:.3f} s/step, "
                  f"ratio {trl[-1] / ours[-1]['default']:.2f}", flush=True)
    rows = rows_of["default"]
    zero = sum(r["adv_frac_zero"] * r["n_loss_traces"] for r in rows) / sum(r["n_loss_traces"] for r in rows)
    toks = sum(r["generated_tokens"] for r in rows) / len(rows)
    med = lambda xs: float(statistics.median(xs))
    print(f"ours: {med([o['default'] for o in ours]):.3f} s/step, median of rounds ({toks:.0f} generated "
          f"tokens/step, {zero:.0%} of traces with advantage 0 skip the update pass, prompts packed once per group)")
    for name, what in (("no_skip", "without skipping zero-advantage traces"), ("no_pack", "without packing"),
                       ("neither", "without either (the same work as TRL)")):
        ratio = med([t / o[name] for t, o in zip(trl, ours)])
        print(f"ours {what}: {med([o[name] for o in ours]):.3f} s/step (speedup {ratio:.2f})")
    print(f"trl_grpo: {med(trl):.3f} s/step, median of rounds")
    print(f"speedup_vs_trl_grpo={med([t / o['default'] for t, o in zip(trl, ours)]):.2f}")


if __name__ == "__main__":
    main()
