"""Benchmark: one GRPO training step of spiral-bench's loop against TRL 1.16's GRPOTrainer (CPU).

Same tiny model (`--model sft`, the default: the cached SFT base of preset train_tiny, so rewards
and advantages are those of a real run; `--model random`: random-init `tiny-1m`, whose rewards are
all 0), same char tokenizer, same arithmetic prompts, same group size G, prompts per step P and
max new tokens L, temperature 1.0, fp32, no KL (beta = 0), loss `dapo`, one optimizer step per generation batch. A step = sampling
P x G completions + rewards + advantages + teacher-forced forward/backward + AdamW.
Each side is built first (not timed), then `--steps` steps are timed; the per-step time is the
mean. TRL runs offline with a local model dir, a local tokenizer, the task's reward function and
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
    ap.add_argument("--steps", type=int, default=3)
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
    n_prompts = a.prompts * a.steps
    problems = task.problems("train", n=n_prompts)
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

        # --- TRL ---------------------------------------------------------------------------
        def reward(prompts, completions, **_):
            return [task.reward(by_prompt[p], c) for p, c in zip(prompts, completions)]

        args = GRPOConfig(output_dir=str(Path(tmp) / "trl"), report_to=[], use_cpu=True, bf16=False,
                          num_generations=a.group, per_device_train_batch_size=a.prompts * a.group,
                          steps_per_generation=1, max_completion_length=a.max_new_tokens, max_steps=a.steps,
                          temperature=1.0, beta=0.0, loss_type="dapo", learning_rate=1e-4, save_strategy="no",
                          logging_steps=1, disable_tqdm=True, shuffle_dataset=False, seed=0)
        trainer = GRPOTrainer(model=str(model_dir), reward_funcs=reward, args=args, processing_class=tok,
                              train_dataset=Dataset.from_dict({"prompt": [task.prompt(p) for p in problems]}))
        t0 = time.perf_counter()
        trainer.train()
        trl_s = (time.perf_counter() - t0) / a.steps

        # --- ours --------------------------------------------------------------------------
        variants = {"default": {}, "no_skip": {"skip_zero_advantage": False}, "no_pack": {"pack_max_tokens": 0},
                    "neither": {"skip_zero_advantage": False, "pack_max_tokens": 0}}
        runs, secs, rows_of = {}, {}, {}
        for name, ov in variants.items():
            cfg = build(TrainConfig, {"method": "grpo", "task": "arithmetic",
                                      "task_options": {"n_ops": 2, "modulus": 100},
                                      "model": str(model_dir), "train_problems": n_prompts, "steps": a.steps,
                                      "prompts_per_step": a.prompts, "group_size": a.group,
                                      "max_new_tokens": a.max_new_tokens, "lr": 1e-4, "micro_batch_size": 0,
                                      "loss": {"loss_agg": "dapo", "beta": 0.0}, **ov})
            runs[name], secs[name], rows_of[name] = Run(cfg, Path(tmp) / name, progress=False), 0.0, []
        for _ in range(a.steps):  # variants alternate step by step: machine noise hits all alike
            for name, run in runs.items():
                t0 = time.perf_counter()
                rows_of[name].append(run.train_step())
                secs[name] += time.perf_counter() - t0
    per = {k: v / a.steps for k, v in secs.items()}
    ours_s, rows = per["default"], rows_of["default"]
    toks = sum(r["generated_tokens"] for r in rows)
    zero = sum(r["adv_frac_zero"] * r["n_loss_traces"] for r in rows) / sum(r["n_loss_traces"] for r in rows)
    print(f"setting: P={a.prompts} prompts x G={a.group} samples, max_new_tokens={a.max_new_tokens}, "
          f"tiny-1m ({a.model}) fp32, {a.threads} threads, mean of {a.steps} steps")
    print(f"ours: {ours_s:.3f} s/step ({toks / a.steps:.0f} generated tokens/step, "
          f"{zero:.0%} of traces with advantage 0 skip the update pass, prompts packed once per group)")
    for name, what in (("no_skip", "without skipping zero-advantage traces"), ("no_pack", "without packing"),
                       ("neither", "without either (the same work as TRL)")):
        print(f"ours {what}: {per[name]:.3f} s/step (speedup {trl_s / per[name]:.2f})")
    print(f"trl_grpo: {trl_s:.3f} s/step")
    print(f"speedup_vs_trl_grpo={trl_s / ours_s:.2f}")


if __name__ == "__main__":
    main()
