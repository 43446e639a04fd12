"""Benchmark: learning signal by learning rate. Trains each `method,key=value,...` combo for STEPS
steps from the cached SFT base (preset train_tiny + overrides) and evaluates the base and every
final policy on 300 held-out problems (8 samples at T=1: single-trace accuracy, pass@8, and one
aggregation trace reading 4 of them). Prints one line per run: seconds, generated tokens per
prompt, and the evaluation.

    python benchmarks/bench_lr.py OUT_DIR STEPS grpo,lr=2e-4 spiral,lr=2e-4 grpo,lr=5e-5 ...
"""
import os
os.environ.setdefault("HF_HUB_OFFLINE", "1")
import sys, time, json
from spiral_bench.trainers.train_config import make_config
from spiral_bench.trainers.loop import train, read_metrics, init_model_path
from spiral_bench.trainers.sft import evaluate_policy
from spiral_bench.models import load_model
from spiral_bench.tasks import get_task
from spiral_bench.config import parse_override
out = sys.argv[1]; steps = int(sys.argv[2]); combos = sys.argv[3:]
task = get_task("arithmetic", n_ops=2, modulus=100)
test = task.problems("test", n=300)
def ev(path):
    m, t = load_model(path); return evaluate_policy(m, t, task, test, n_samples=8, n_candidates=4, max_new_tokens=48, seed=12345)
print("base", ev(init_model_path(make_config("grpo"))), flush=True)
for c in combos:
    parts = c.split(",")
    method = parts[0]; ov = dict(parse_override(x) for x in parts[1:]); ov["steps"] = steps
    cfg = make_config(method, overrides=ov)
    t = time.time(); final = train(cfg, f"{out}/{c}", progress=False); dt = time.time() - t
    rows = read_metrics(f"{out}/{c}")
    tpp = sum(r["generated_tokens"] for r in rows) / sum(r["prompts_sampled"] for r in rows)
    print(c, f"{dt:.0f}s tok/prompt={tpp:.0f}", {k: round(v, 3) for k, v in ev(final).items()}, flush=True)
