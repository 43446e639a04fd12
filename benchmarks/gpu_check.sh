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
# Knobs (environment): MODEL (tiny-20m), DTYPE (bfloat16), DEVICE (cuda), OUT (gpu_check_out),
# SMALL=1 (CPU smoke sizes: how tests/CI check that this script runs, with the vllm-cpu build).
set -euo pipefail
MODEL=${MODEL:-tiny-20m}
DTYPE=${DTYPE:-bfloat16}
DEVICE=${DEVICE:-cuda}
OUT=${OUT:-gpu_check_out}
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1
if [[ "${SMALL:-0}" == 1 ]]; then
  SIZES=(--prompts 4 --samples 4 --tokens 32 --repeats 1); GRID=smoke
else
  SIZES=(--prompts 64 --samples 16 --tokens 512 --repeats 3); GRID=default
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
