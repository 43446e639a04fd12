"""Independent stages of a run at once: a small dependency scheduler over worker processes.

`run_jobs(jobs, workers, threads)` runs every `Job` once its `deps` are done. With `workers == 1`
each job runs in this process, in order, exactly as a plain loop would (progress bars shown). With
`workers > 1` jobs run in a pool of `workers` spawned processes, each job with `threads` torch
threads, the most expensive ready job first (`cost`); `local` jobs (cheap bookkeeping such as the
matched-compute gate) run in this process as soon as their deps are done. A worker prints no
progress bar of its own (several would garble one terminal): `on_start`/`on_done` report stages
as they start and finish.

Why processes: the tiny CPU models are too small to keep two cores busy from one process. Measured
on the 2-core machine (`benchmarks/bench_parallel.py`, BENCHMARKS.md): one SFT step with 2 torch
threads takes 0.157 s, and two 1-thread processes side by side 0.217 s each, so two jobs at once
do 1.44x the work of one job with both threads. On a busy machine the gap is far larger (a
2-thread process waits on its second thread: 0.95 s per step there against 0.23 s per 1-thread
process, one run of the same script).

Results are bit-reproducible for the same `threads` (float reductions may differ between thread
counts). If a job fails, no new job starts, the running ones finish (their work is saved and a
rerun resumes it) and the first error is raised.
"""
from __future__ import annotations

import dataclasses
import multiprocessing
import os
import resource
import sys
import time
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from typing import Any, Callable


@dataclasses.dataclass
class Job:
    """One stage: `fn(**kwargs)` (a module-level function, so a worker can import it)."""

    name: str
    fn: Callable[..., Any]
    kwargs: dict = dataclasses.field(default_factory=dict)
    deps: tuple[str, ...] = ()
    cost: float = 1.0          # expected seconds (relative): the costliest ready job starts first
    local: bool = False        # run in this process (bookkeeping), never in a worker


def peak_rss_mb() -> float:
    """This process's peak resident memory so far, MB (ru_maxrss)."""
    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kb / 1024 if sys.platform != "darwin" else kb / 2**20


def _call(fn, kwargs: dict, threads: int | None) -> tuple[Any, float, float]:
    """Run one job (in a worker or here): (result, wall seconds, peak RSS MB of the process)."""
    if threads:
        import torch
        torch.set_num_threads(threads)
    t0 = time.perf_counter()
    res = fn(**kwargs)
    return res, time.perf_counter() - t0, peak_rss_mb()


def _reraise(e: BaseException):
    raise e


def _init_worker() -> None:
    from transformers.utils import logging as hf_logging
    hf_logging.disable_progress_bar()
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def default_workers(device: str, backend: str = "hf", n_jobs: int = 2) -> int:
    """Worker processes when the user does not say: one per CPU core (at most 4, each loads its own
    model) for tiny-model work on the CPU with the hf backend; else 1 (a GPU or a vLLM engine is
    shared, not split)."""
    if device != "cpu" or backend != "hf":
        return 1
    return max(1, min(os.cpu_count() or 1, 4, n_jobs))


def run_jobs(jobs: list[Job], workers: int = 1, threads: int | None = None,
             on_start: Callable[[Job], None] | None = None,
             on_done: Callable[[Job, Any, float, float], None] | None = None,
             on_error: Callable[[Job, BaseException], None] | None = None) -> dict[str, Any]:
    """Run `jobs` respecting deps; returns {name: result}. `on_done(job, result, seconds, peak_rss_mb)`
    runs in this process as each job finishes (in finishing order); `on_error(job, exc)` when one fails.
    workers == 1: in-process, in list order (deps must come first)."""
    names = [j.name for j in jobs]
    if len(set(names)) != len(names):
        raise ValueError(f"duplicate job names in {names}")
    unknown = {d for j in jobs for d in j.deps} - set(names)
    if unknown:
        raise ValueError(f"jobs depend on unknown jobs {sorted(unknown)}")
    on_start = on_start or (lambda j: None)
    on_done = on_done or (lambda j, r, s, m: None)
    results: dict[str, Any] = {}

    def settle(j: Job, outcome) -> None:
        """Report a job's end: outcome() returns (result, seconds, rss) or raises the job's error."""
        try:
            r, s, m = outcome()
        except BaseException as e:
            if on_error:
                on_error(j, e)
            raise
        results[j.name] = r
        on_done(j, r, s, m)

    def run_here(j: Job, threads_: int | None) -> None:
        on_start(j)
        settle(j, lambda: _call(j.fn, j.kwargs, threads_))

    if workers <= 1:
        for j in jobs:
            if any(d not in results for d in j.deps):
                raise ValueError(f"job {j.name!r} comes before its deps {j.deps}")
            run_here(j, None)
        return results

    pending = list(jobs)
    running: dict[Future, Job] = {}
    ctx = multiprocessing.get_context("spawn")   # fork after torch threads started is unsafe
    with ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_init_worker) as pool:
        try:
            while pending or running:
                ready = [j for j in pending if all(d in results for d in j.deps)]
                local = [j for j in ready if j.local]
                if local:
                    for j in local:
                        pending.remove(j)
                        run_here(j, None)
                    continue
                for j in sorted(ready, key=lambda j: -j.cost)[:max(0, workers - len(running))]:
                    pending.remove(j)
                    on_start(j)
                    running[pool.submit(_call, j.fn, j.kwargs, threads)] = j
                if not running:
                    raise ValueError(f"jobs {[j.name for j in pending]} wait on each other (a dependency cycle)")
                finished, _ = wait(running, return_when=FIRST_COMPLETED)
                for fut in finished:
                    settle(running.pop(fut), fut.result)
        except BaseException as err:
            if running:
                print(f"waiting for {len(running)} running stage(s) to finish (their work is kept): "
                      f"{', '.join(j.name for j in running.values())}", file=sys.stderr, flush=True)
            pool.shutdown(wait=True, cancel_futures=True)
            for fut, j in running.items():      # each still-running job is reported, done or failed
                try:
                    settle(j, (lambda: _reraise(err)) if fut.cancelled() else fut.result)
                except BaseException:
                    pass                        # the first error is the one raised
            raise
    return results
