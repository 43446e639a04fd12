"""Supervised warm start: train a tiny model from scratch on solver-written traces of both roles.

The SFT base is the shared starting checkpoint of GRPO and SPIRAL. Every step draws
`batch_size` train problems (seeded by (seed, step)); a share `agg_fraction` of them become
aggregation examples, the rest search examples:

- search:      prompt = task.prompt(p),                           target = task.gold_trace(p) + EOS
- aggregation: prompt = task.aggregation_prompt(p, candidates),   target = task.gold_aggregation_trace(p, candidates) + EOS
  with `n_candidates` candidates, each the gold trace corrupted with probability `corrupt_prob`
  by `corrupt_trace` (one integer literal of the trace changed: the final answer, or a step value),
  so the aggregation role has to check and recompute rather than copy.

Loss: token-level cross-entropy on the target tokens only (prompt and padding masked),
    L = sum_{target tokens t} -log p(y_t | y_<t) / (number of target tokens in the batch).
Optimiser AdamW with linear warmup then cosine decay (transformers.get_scheduler).
The search and aggregation batches of a step are differentiated separately (one
`torch.autograd.grad` each, on two Python threads with half the torch threads each on the CPU;
kernels release the GIL) and their gradients added in that order, so the result does not depend
on the thread count. On the 2-core machine a step takes 0.139 s against 0.157 s for one backward
over both batches with 2 torch threads (1.13x; `benchmarks/bench_parallel.py`, BENCHMARKS.md).

The result is cached under `<cache>/sft/<config_hash>/` (`<cache>` = $SPIRAL_BENCH_CACHE or
~/.cache/spiral_bench), written atomically (temp dir + os.replace): model + tokenizer
(save_pretrained), `sft_config.yaml`, and `sft_metrics.json` (loss curve, minutes, and the
held-out evaluation: single-trace accuracy at T=1, pass@n, aggregated accuracy).
"""
from __future__ import annotations

import dataclasses
import json
import os
import random
import re
import shutil
import tempfile
from concurrent.futures import ThreadPoolExecutor
import time
from pathlib import Path

import torch
import yaml

from spiral_bench.backends.base import Request, SamplingConfig, derive_seed
from spiral_bench.config import config_hash, option, to_dict

_INT = re.compile(r"-?\d{1,30}")


@dataclasses.dataclass(frozen=True)
class SFTConfig:
    """Supervised warm start of a tiny model on solver-written search and aggregation traces."""

    task: str = option("arithmetic", help="procedural task with gold_trace / gold_aggregation_trace")
    task_options: dict = option(default_factory=lambda: {"n_ops": 2, "modulus": 100},
                                help="options passed to the task (arithmetic: n_ops, modulus, ...)")
    model: str = option("tiny-1m", help="starting model: a tiny preset (random init), a path or a hub id")
    init_seed: int = option(0, help="seed of the tiny model's random initialisation", min=0)
    steps: int = option(1500, help="optimizer steps", min=0)
    batch_size: int = option(32, help="examples per step (search + aggregation)", min=1)
    lr: float = option(3e-3, help="peak AdamW learning rate", min=0.0)
    warmup_steps: int = option(50, help="linear warmup steps", min=0)
    weight_decay: float = option(0.01, help="AdamW decoupled weight decay", min=0.0)
    grad_clip: float = option(1.0, help="max global gradient norm (0 = off)", min=0.0)
    agg_fraction: float = option(0.25, help="share of each batch that are aggregation examples", min=0.0, max=1.0)
    n_candidates: int = option(4, help="candidates shown in an aggregation example (SPIRAL's n)", min=1)
    corrupt_prob: float = option(0.5, help="probability that a shown candidate is a corrupted gold trace",
                                 min=0.0, max=1.0)
    train_problems: int = option(10000, help="size of the train split drawn from", min=1)
    seed: int = option(0, help="seed of the data order and corruptions", min=0)
    dtype: str = option("float32", help="parameter dtype", choices=("float32", "bfloat16"))
    device: str = option("cpu", help="torch device (cpu, cuda, cuda:0, ...)")
    eval_problems: int = option(200, help="held-out test problems evaluated at the end (0 = skip)", min=0)
    eval_samples: int = option(8, help="T=1 samples per evaluated problem (pass@n uses all of them)", min=1)
    max_new_tokens: int = option(64, help="generation budget of the evaluation traces", min=1)


def corrupt_trace(trace: str, rng: random.Random) -> str:
    """A wrong version of `trace`: one integer literal changed to a different value.

    With probability 1/2 the last literal (the final answer) is changed, else a uniformly chosen
    literal (a step value). The new value differs from the old one and keeps its sign and digit
    count when possible. A trace without integers is returned with "?" appended.
    """
    spans = [m.span() for m in _INT.finditer(trace)]
    if not spans:
        return trace + "?"
    s, e = spans[-1] if rng.random() < 0.5 else spans[rng.randrange(len(spans))]
    old = int(trace[s:e])
    digits = len(str(abs(old)))
    lo, hi = (0 if digits == 1 else 10 ** (digits - 1)), 10 ** digits - 1
    new = old
    while new == old:
        new = rng.randint(lo, hi) * (-1 if old < 0 else 1)
    return trace[:s] + str(new) + trace[e:]


def cache_root() -> Path:
    env = os.environ.get("SPIRAL_BENCH_CACHE")
    return (Path(env) if env else Path.home() / ".cache" / "spiral_bench") / "sft"


def sft_dir(cfg: SFTConfig, cache_dir: str | os.PathLike | None = None) -> Path:
    """Where the SFT base of `cfg` is (or will be) cached: <root>/<config_hash(cfg)>."""
    return (Path(cache_dir) if cache_dir is not None else cache_root()) / config_hash(cfg)


def _examples(task, problems, cfg: SFTConfig, step: int) -> tuple[list, list]:
    """(search (prompt, target) pairs, aggregation pairs) of one step; targets end without EOS."""
    rng = random.Random(derive_seed(cfg.seed, "sft", step))
    n_agg = round(cfg.batch_size * cfg.agg_fraction)
    search, agg = [], []
    for b in range(cfg.batch_size):
        p = problems[rng.randrange(len(problems))]
        gold = task.gold_trace(p)
        if b < n_agg:
            cands = [corrupt_trace(gold, rng) if rng.random() < cfg.corrupt_prob else gold
                     for _ in range(cfg.n_candidates)]
            agg.append((task.aggregation_prompt(p, cands), task.gold_aggregation_trace(p, cands)))
        else:
            search.append((task.prompt(p), gold))
    return search, agg


def _batch(tok, pairs, device) -> dict:
    """Right-padded input_ids / attention_mask / labels (-100 off the target+EOS tokens)."""
    rows = []
    for prompt, target in pairs:
        p = tok(prompt, add_special_tokens=False)["input_ids"]
        t = tok(target, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
        rows.append((p + t, [-100] * len(p) + t))
    T = max(len(r[0]) for r in rows)
    ids = torch.full((len(rows), T), tok.pad_token_id, dtype=torch.long)
    labels = torch.full((len(rows), T), -100, dtype=torch.long)
    attn = torch.zeros((len(rows), T), dtype=torch.long)
    for i, (x, y) in enumerate(rows):
        ids[i, :len(x)] = torch.tensor(x)
        labels[i, :len(y)] = torch.tensor(y)
        attn[i, :len(x)] = 1
    return {"input_ids": ids.to(device), "attention_mask": attn.to(device), "labels": labels.to(device)}


def _n_targets(batch) -> int:
    return int((batch["labels"][:, 1:] != -100).sum())


def _part_grads(model, params, batch, n_tok: int) -> tuple[float, tuple]:
    """(loss share, gradients) of one batch's sum of target NLL / n_tok (the step's target tokens)."""
    nll, _ = _nll_sum(model, batch)
    loss = nll / max(1, n_tok)
    return float(loss.detach()), torch.autograd.grad(loss, params, allow_unused=True)


def _sum_grads(grads: list, p: torch.Tensor) -> torch.Tensor:
    """The step's gradient of parameter p: the batches' gradients added in batch order."""
    out = None
    for g in grads:
        if g is not None:
            out = g if out is None else out + g
    return out if out is not None else torch.zeros_like(p)


def _nll_sum(model, batch) -> tuple[torch.Tensor, int]:
    """Sum of target-token NLL and the number of target tokens (labels shifted by one)."""
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, :-1].float()
    labels = batch["labels"][:, 1:]
    loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1),
                                             ignore_index=-100, reduction="sum")
    return loss, int((labels != -100).sum())


@torch.no_grad()
def evaluate_policy(model, tok, task, problems, n_samples: int = 8, n_candidates: int = 4,
                    max_new_tokens: int = 64, temperature: float = 1.0, seed: int = 0,
                    per_problem: bool = False) -> dict:
    """Held-out accuracy of a policy (T = `temperature`) from one pool of n_samples traces per problem.

    single    = mean over problems and samples of r (the expected single-trace accuracy);
    pass@n    = mean over problems of max_j r_j;
    aggregate = mean reward of one aggregation trace per problem reading its first n_candidates
                samples (task.aggregation_prompt), i.e. the aggregated accuracy of the policy.
    per_problem: also return "per_problem": {"single": [P], "aggregate": [P]} (lists of floats,
    the problem-level values the means above average; for paired bootstraps).
    """
    from spiral_bench.sampling import Sampler

    was_training = model.training
    model.eval()
    sampler = Sampler(model, tok)
    sc = SamplingConfig(temperature=temperature, max_new_tokens=max_new_tokens)
    out = sampler.generate([Request(task.prompt(p), n=n_samples, seed=derive_seed(seed, "eval", "search", p.id))
                            for p in problems], sc)
    r = torch.tensor([[task.reward(p, s.text) for s in ss] for p, ss in zip(problems, out)])
    res = {"problems": len(problems), "single": float(r.mean()), f"pass@{n_samples}": float(r.max(1).values.mean())}
    k = min(n_candidates, n_samples)
    agg = sampler.generate([Request(task.aggregation_prompt(p, [s.text for s in ss[:k]],
                                                            [s.finish_reason == "length" for s in ss[:k]]),
                                    n=1, seed=derive_seed(seed, "eval", "aggregation", p.id))
                            for p, ss in zip(problems, out)], sc)
    agg_r = [float(task.reward(p, a[0].text)) for p, a in zip(problems, agg)]
    res["aggregate"] = sum(agg_r) / max(1, len(problems))
    res["mean_length"] = sum(s.completion_tokens for ss in out for s in ss) / max(1, r.numel())
    if per_problem:
        res["per_problem"] = {"single": r.float().mean(1).tolist(), "aggregate": agg_r}
    model.train(was_training)
    return res


def train_sft(cfg: SFTConfig, out_dir: str | os.PathLike, progress: bool = True) -> dict:
    """Train from cfg.model on the solver traces; save model + tokenizer into out_dir. Returns metrics."""
    from transformers import get_scheduler

    from spiral_bench.models import load_model
    from spiral_bench.tasks import get_task

    task = get_task(cfg.task, **cfg.task_options)
    problems = task.problems("train", n=cfg.train_problems)
    model, tok = load_model(cfg.model, dtype=cfg.dtype, device=cfg.device, seed=cfg.init_seed)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = get_scheduler("cosine", opt, num_warmup_steps=cfg.warmup_steps, num_training_steps=max(1, cfg.steps))
    bar = None
    if progress:
        from tqdm.auto import tqdm
        bar = tqdm(total=cfg.steps, desc="sft", unit="step")
    params = [p for p in model.parameters() if p.requires_grad]
    threads = torch.get_num_threads()
    side = min(2, threads) if cfg.device == "cpu" else 1        # the two batches side by side on the CPU
    pool = ThreadPoolExecutor(side) if side > 1 else None
    t0, curve, tokens = time.perf_counter(), [], 0
    try:
        if pool is not None:
            torch.set_num_threads(max(1, threads // side))
        for step in range(cfg.steps):
            search, agg = _examples(task, problems, cfg, step)
            batches = [_batch(tok, pairs, cfg.device) for pairs in (search, agg) if pairs]
            n_tok = sum(_n_targets(b) for b in batches)
            parts = list((pool.map if pool else map)(lambda b: _part_grads(model, params, b, n_tok), batches))
            for i, p in enumerate(params):            # summed in batch order: the same on any thread count
                p.grad = _sum_grads([g[i] for _, g in parts], p)
            if cfg.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
            opt.step()
            sched.step()
            opt.zero_grad(set_to_none=True)
            total = sum(l for l, _ in parts)
            tokens += n_tok
            if step % 50 == 0 or step == cfg.steps - 1:
                curve.append({"step": step + 1, "loss": total, "seconds": time.perf_counter() - t0})
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{total:.3f}")
    finally:
        torch.set_num_threads(threads)
        if pool is not None:
            pool.shutdown()
    if bar is not None:
        bar.close()
    train_s = time.perf_counter() - t0
    model.eval()
    metrics = {"train_minutes": train_s / 60, "target_tokens": tokens, "loss_curve": curve,
               "final_loss": curve[-1]["loss"] if curve else None}
    if cfg.eval_problems:
        t1 = time.perf_counter()
        test = task.problems("test", n=cfg.eval_problems)
        metrics["eval"] = evaluate_policy(model, tok, task, test, cfg.eval_samples, cfg.n_candidates,
                                          cfg.max_new_tokens, seed=cfg.seed)
        metrics["eval_minutes"] = (time.perf_counter() - t1) / 60
    from spiral_bench.models import save
    save(model, tok, out_dir)
    Path(out_dir, "sft_config.yaml").write_text(yaml.safe_dump(to_dict(cfg), sort_keys=True))
    Path(out_dir, "sft_metrics.json").write_text(json.dumps(metrics, indent=1))
    return metrics


def ensure_sft_base(cfg: SFTConfig, cache_dir: str | os.PathLike | None = None, progress: bool = True) -> Path:
    """The cached SFT base for `cfg` (trained on a cache miss, written atomically); returns its path."""
    target = sft_dir(cfg, cache_dir)
    if (target / "sft_metrics.json").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        train_sft(cfg, tmp, progress=progress)
        try:
            os.replace(tmp, target)
        except OSError:  # another process finished first: keep theirs
            if not (target / "sft_metrics.json").is_file():
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def _main(argv=None) -> None:
    import argparse

    from spiral_bench.config import build, parse_override
    ap = argparse.ArgumentParser(description="Train (or fetch from cache) an SFT base and print its metrics.")
    ap.add_argument("overrides", nargs="*", help="key=value SFTConfig overrides")
    a = ap.parse_args(argv)
    cfg = build(SFTConfig, dict(parse_override(o) for o in a.overrides))
    path = ensure_sft_base(cfg)
    m = json.loads((path / "sft_metrics.json").read_text())
    m.pop("loss_curve", None)
    print(path)
    print(json.dumps(m, indent=1))


if __name__ == "__main__":
    _main()
