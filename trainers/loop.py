"""The RL loop shared by GRPO and SPIRAL: config, optimizer, schedule, data order, rollouts ->
update, metrics, checkpoint/resume and data-parallel training. The methods (grpo.py, spiral.py,
shaping.py: grsp, lcpo) only say how to roll out a prompt and how to set advantages (`METHODS` registry).

One step s:
1. prompts: the next `prompts_per_step` indices of the train split in a seeded order
   (permutation of epoch e = shuffle(range(train_problems), derive_seed(seed, "order", e))),
   identical for both methods; with dynamic sampling, prompts whose traces all have advantage 0
   are skipped and refilled from the same stream (at most `dynamic_max_rounds` rounds).
2. rollouts: METHODS[method](run, problems, s) on the current weights (eval mode, no grad), through
   `rollout_backend` (hf: this process's sampler; vllm: a colocated engine synced before the step,
   trainers/rollout_engine.py; `sync_seconds`, `rollout_seconds`, `update_seconds` are logged); every
   request's seed is derive_seed(seed, s, problem id, role, subset) and sample j of it gets
   sample_seed(that, j). Rewards by task.reward; advantages from rl_core.ADVANTAGES.
3. update: teacher-forced log-probs with grad (rl_core.per_token_logprobs), loss from the losses
   registry with old_logprobs = the sampler's log-probs (on-policy: ratio = 1 up to numerics;
   `ratio_max_dev` = max |ratio - 1| and `logprob_gap` = mean |sampler - trainer| over the pass's tokens
   are logged; `tis_cap` > 0: truncated importance sampling, rollout_engine.old_and_advantages), one
   AdamW step after clipping the global grad norm.
   With `skip_zero_advantage` and no KL term, traces whose advantage is exactly 0 are left out of
   the pass (their term of the loss and its gradient are exactly 0; the normalisers B and N below
   still count them), which is most of SPIRAL's traces and none of the maths.
   `search_entropy` = sum over search traces and tokens of the sampler's entropy of
   softmax(logits / T) / search tokens (the sampling policy = the current policy, on-policy).
   The completions of one prompt (and role) are packed behind a single copy of it while the row
   stays within `pack_max_tokens` (rl_core.packed_logprobs: block-causal mask, the log-probs of
   unpacked rows), and each micro-batch is cut further into length buckets
   (`rl_core.length_buckets`) so that the padded teacher-forced pass does little work on padding.
   Micro-batches and ranks add up to the full-batch loss: each chunk's loss is scaled so that
   sum over chunks = the loss of the whole global batch (dapo: num_items = global completion
   tokens; grpo / dr_grpo: chunk loss x chunk rows / global rows); gradients are summed over
   ranks (DDP or FSDP2, trainers/distributed.py), so 1 process and W processes take the same step.
Data parallel: launched by torchrun (WORLD_SIZE > 1) the loop initialises torch.distributed (gloo
on CPU, nccl on GPU); rank r rolls out prompts j of each round with j % W == r; the policy is
trained under DDP (LoRA) or FSDP2 (full fine-tuning), see trainers/distributed.py; only rank 0
writes files.

Run folder: config.yaml, metrics.jsonl (one row per step: `METRIC_FIELDS`, then the method's), checkpoint/
(model + tokenizer via save_pretrained, or with LoRA (`lora.r` > 0, trainers/lora.py) only the
adapter tensors; trainer_state.pt: optimizer, scheduler, RNG, step, data cursor), final/ (the final
model; with LoRA the adapters merged into a plain transformers model). Directories are written to
a temp dir and swapped in with os.replace; a run started again with the same command resumes from checkpoint/ (metrics rows
after it are dropped and redone) and gives bit-identical weights on CPU.
"""
from __future__ import annotations

import dataclasses
import json
import os
import random
import shutil
import tempfile
import time
import warnings
from pathlib import Path
from typing import Callable

import torch
import yaml

from spiral_bench.backends.base import Request, Sample, SamplingConfig, derive_seed
from spiral_bench.config import ConfigError, to_dict
from spiral_bench.fileio import read_jsonl, swap_dir, write_atomic
from spiral_bench.trainers import distributed, lora, rl_core, rollout_engine, step_metrics, update
from spiral_bench.trainers.step_metrics import METRIC_FIELDS
from spiral_bench.trainers.train_config import TrainConfig
from spiral_bench.trainers.sft import SFTConfig, ensure_sft_base

METHODS: dict[str, Callable] = {}
METHOD_METRICS: dict[str, tuple[Callable, Callable]] = {}
METHOD_SETUP: dict[str, Callable] = {}  # method -> fn(run), before the optimizer (bridge_rl: add the Bridge)  # method -> (sums(cfg) -> names, summary(cfg, sums) -> row)


def register_method(name: str, sums: Callable | None = None, summary: Callable | None = None):
    """`@register_method("grpo")` makes fn(run, problems, step) -> list[PromptRollout] a method. Its own metrics:
    it adds to run.method_sums[k], k in sums(cfg); summed over ranks, summary(cfg, sums) joins the row."""
    def deco(fn):
        METHODS[name] = fn
        if sums is not None:
            METHOD_METRICS[name] = (sums, summary)
        return fn
    return deco


@dataclasses.dataclass
class Trace:
    """One sampled trace: its prompt ids, the sample, reward, advantage, role, and whether it is in the loss."""
    prompt_ids: list[int]
    sample: Sample
    reward: float
    role: int
    advantage: float = 0.0
    keep: bool = True


@dataclasses.dataclass
class PromptRollout:
    """Every trace sampled for one training prompt (search and, for SPIRAL, aggregation)."""
    problem: object
    traces: list[Trace]

    @property
    def informative(self) -> bool:
        return any(t.keep and t.advantage != 0.0 for t in self.traces)


_all_reduce, _barrier = distributed.all_reduce, distributed.barrier
init_distributed = distributed.init_distributed


# ------------------------------------------------------------------------ files
def read_metrics(run_dir: str | os.PathLike) -> list[dict]:
    """Rows of a run's metrics.jsonl (a torn last line is ignored)."""
    p = Path(run_dir) / "metrics.jsonl"
    return read_jsonl(p) if p.exists() else []


def init_model_path(cfg: TrainConfig, progress: bool = True) -> str:
    """Where the starting policy comes from: the cached SFT base (model '') or cfg.model resolved."""
    from spiral_bench.models import resolve_model
    if cfg.model:
        return resolve_model(cfg.model, seed=cfg.sft.init_seed)
    return str(ensure_sft_base(sft_config_for(cfg), progress=progress))


def sft_config_for(cfg: TrainConfig) -> SFTConfig:
    """The run's SFT config with the run's task (so --task changes both)."""
    return dataclasses.replace(cfg.sft, task=cfg.task, task_options=dict(cfg.task_options))


# ------------------------------------------------------------------------ the run
class Run:
    """State of one RL run; methods use `generate`, `encode`, `seed`, `traces`, `set_advantages`."""

    def __init__(self, cfg: TrainConfig, out_dir: Path, progress: bool = True, init_path: str | None = None):
        from transformers import get_scheduler

        from spiral_bench.models import load_model
        from spiral_bench.sampling import Sampler
        from spiral_bench.tasks import get_task

        self.cfg, self.out = cfg, out_dir
        self.rank, self.world, self.device = init_distributed(cfg.device)
        self.is_main = self.rank == 0
        if init_path is not None:  # the caller resolved the starting policy (e.g. an SFT base in its cache)
            self.init_path = str(init_path)
        else:  # rank 0 builds the SFT base if needed, the others then find it cached
            if self.is_main:
                self.init_path = init_model_path(cfg, progress)
            _barrier()
            if not self.is_main:
                self.init_path = init_model_path(cfg, False)
        self.task = get_task(cfg.task, **cfg.task_options)
        self.problems = self.task.problems("train", n=cfg.train_problems)
        ckpt = out_dir / "checkpoint"
        old = out_dir / ".checkpoint.old"
        if self.is_main and not ckpt.exists() and old.exists():  # crashed between the two renames
            os.replace(old, ckpt)
        _barrier()
        state = None
        if (ckpt / "trainer_state.pt").is_file():
            state = torch.load(ckpt / "trainer_state.pt", weights_only=False)
        if cfg.lora.r:  # frozen starting weights + adapters (from the checkpoint when resuming)
            base, self.tok = load_model(self.init_path, cfg.dtype, self.device)
            self.model = lora.apply_lora(base, cfg.lora, seed=derive_seed(cfg.seed, "lora"))
            if state:
                lora.load_adapter(self.model, ckpt)
        else:
            self.model, self.tok = load_model(str(ckpt) if state else self.init_path, cfg.dtype, self.device)
        self.ref_model = None
        if cfg.loss.beta > 0:
            self.ref_model = load_model(self.init_path, cfg.dtype, self.device)[0].requires_grad_(False)
        self.par = distributed.Parallel(self.model, cfg.distributed, cfg.lora.r, self.world, self.device, cfg.bf16,
                                        cfg.gradient_checkpointing)
        self.sampler = Sampler(lora.sampling_model(self.par.plain), self.tok)
        self.rollout = rollout_engine.make(self)  # hf: this sampler; vllm: a colocated engine synced every step
        self.whole_groups, self.opt_groups = False, None  # bridge_rl: a group's traces share every forward; lr groups
        METHOD_SETUP.get(cfg.method, lambda run: None)(self)  # bridge_rl: adds the Bridge, a lockstep sampler
        self.opt = torch.optim.AdamW(self.opt_groups or [p for p in self.model.parameters() if p.requires_grad], lr=cfg.lr,
                                     betas=tuple(cfg.betas), weight_decay=cfg.weight_decay,
                                     fused=self.device.split(":")[0] in ("cpu", "cuda"))  # one kernel, same maths
        name = {"constant": "constant_with_warmup"}.get(cfg.schedule, cfg.schedule)
        self.sched = get_scheduler(name, self.opt, num_warmup_steps=cfg.warmup_steps,
                                   num_training_steps=cfg.steps)
        self.step, self.cursor, self.total_generated, self.elapsed = 0, 0, 0, 0.0
        if state:
            self.par.load_optimizer_state(self.opt, state["optimizer"])
            self.sched.load_state_dict(state["scheduler"])
            self.step, self.cursor = state["step"], state["cursor"]
            self.total_generated, self.elapsed = state["total_generated"], state["elapsed"]
            torch.set_rng_state(state["rng"]["torch"])
            random.setstate(state["rng"]["python"])
        self.resumed_from = self.step
        from spiral_bench.sampling import _bool_mask_dict
        self.pack = cfg.pack_max_tokens > 0 and _bool_mask_dict(self.model, torch.ones(1, 1, 1, 1, dtype=torch.bool)) \
            is not None
        self._ids: dict[str, list[int]] = {}

    # --- used by the methods ------------------------------------------------------------
    def seed(self, step: int, pid: str, role: str, subset: int = 0) -> int:
        return derive_seed(self.cfg.seed, step, pid, role, subset)

    def encode(self, prompt: str) -> list[int]:
        if prompt not in self._ids:
            self._ids[prompt] = self.tok(prompt, add_special_tokens=False)["input_ids"]
        return self._ids[prompt]

    def generate(self, requests: list[Request], max_new_tokens: int) -> list[list[Sample]]:
        sc = SamplingConfig(temperature=self.cfg.temperature, max_new_tokens=max_new_tokens,
                            batch_size=self.cfg.sample_batch_size)
        self.model.eval()
        return self.rollout.generate(requests, sc)

    def traces(self, problem, prompt: str, samples: list[Sample], role: int) -> list[Trace]:
        ids = self.encode(prompt)
        return [Trace(ids, s, float(self.task.reward(problem, s.text)), role) for s in samples]

    def set_advantages(self, traces: list[Trace], adv: torch.Tensor, keep: torch.Tensor | None = None) -> None:
        """Write advantages [len(traces)] (after length control, if L_target is set) and keep flags."""
        adv = adv.flatten().float()
        if self.cfg.L_target is not None:
            lengths = torch.tensor([t.sample.completion_tokens for t in traces])
            adv = rl_core.ADVANTAGES["length_control"](adv, lengths, self.cfg.L_target)
        for i, t in enumerate(traces):
            t.advantage = float(adv[i])
            t.keep = True if keep is None else bool(keep.flatten()[i])

    # --- one step -----------------------------------------------------------------------
    def _take(self, n: int) -> list[int]:
        out = []
        N = len(self.problems)
        for c in range(self.cursor, self.cursor + n):
            epoch, i = divmod(c, N)
            if not hasattr(self, "_order") or self._order[0] != epoch:
                order = list(range(N))
                random.Random(derive_seed(self.cfg.seed, "order", epoch)).shuffle(order)
                self._order = (epoch, order)
            out.append(self._order[1][i])
        self.cursor += n
        return out

    def _rollouts(self, step: int) -> tuple[list[PromptRollout], list[PromptRollout], int]:
        """(all local rollouts, local rollouts used in the loss, prompts sampled globally)."""
        cfg, rolls_all, used, n_used, sampled = self.cfg, [], [], 0, 0
        rounds = cfg.dynamic_max_rounds if cfg.dynamic_sampling else 1
        for _ in range(rounds):
            need = cfg.prompts_per_step - n_used
            if need <= 0:
                break
            idx = self._take(need)
            sampled += need
            mine = [j for j in range(need) if j % self.world == self.rank]
            rolls = METHODS[cfg.method](self, [self.problems[idx[j]] for j in mine], step) if mine else []
            rolls_all += rolls
            if not cfg.dynamic_sampling:
                used, n_used = rolls, need
                break
            flags = torch.zeros(need, dtype=torch.float64)
            for j, r in zip(mine, rolls):
                flags[j] = float(r.informative)
            _all_reduce(flags)
            used += [r for r in rolls if r.informative]
            n_used += int(flags.sum())
        return rolls_all, used, sampled

    def _update(self, used: list[PromptRollout]) -> dict:
        cfg, lc = self.cfg, self.cfg.loss
        traces = [t for r in used for t in r.traces if t.keep]
        glob = _all_reduce(torch.tensor([len(traces), sum(t.sample.completion_tokens for t in traces)],
                                        dtype=torch.float64))
        B, N = float(glob[0]), float(glob[1])  # the loss normaliser counts every kept trace
        if cfg.skip_zero_advantage and lc.beta == 0 and not self.whole_groups:  # exact zero policy gradient: no pass needed
            traces = [t for t in traces if t.advantage != 0.0]
        self.model.train()
        loss_sum = 0.0
        ratio_dev, gap = torch.zeros(1, dtype=torch.float64), torch.zeros(2, dtype=torch.float64)
        batches = update.forward_batches(traces, self.pack, cfg.pack_max_tokens, cfg.micro_batch_size,
                                         cfg.max_tokens_per_microbatch, self.whole_groups)
        n = self.par.n_passes(len(batches))  # equal on every rank (distributed.py)
        for i, units in enumerate(batches + [None] * (n - len(batches))):
            with self.par.pass_context(last=i == n - 1):
                if units is None:
                    self.par.dummy_pass()
                    continue
                chunk = [t for u in units for t in u]
                batch = rl_core.build_rollout_batch(
                    [t.prompt_ids for t in chunk], [t.sample.token_ids for t in chunk], self.tok.pad_token_id,
                    [t.sample.logprobs for t in chunk], [t.reward for t in chunk], [t.advantage for t in chunk],
                    [t.role for t in chunk]).to(self.device)
                lp = update.teacher_forced(self.par.train_model, units, batch, self.pack, self.tok.pad_token_id,
                                           cfg.temperature).float()
                ref = None
                if self.ref_model is not None:
                    with torch.no_grad():
                        ref = update.teacher_forced(self.ref_model, units, batch, self.pack, self.tok.pad_token_id,
                                                    cfg.temperature)
                old, adv, g = rollout_engine.old_and_advantages(lp.detach(), batch.old_logprobs, batch.advantages,
                                                                batch.completion_mask, cfg.tis_cap)
                gap += g
                loss, _ = rl_core.compute_loss(lp, old, adv, batch.completion_mask, ref, lc, num_items=N)
                if lc.loss_agg != "dapo":
                    loss = loss * (len(chunk) / B)
                (loss * self.par.loss_scale).backward()
            loss_sum += float(loss.detach())
            m = batch.completion_mask.bool()
            dev = (torch.exp(lp.detach() - batch.old_logprobs) - 1).abs()[m]
            if dev.numel():
                ratio_dev = torch.maximum(ratio_dev, dev.max().double().cpu().view(1))
        params = [p for p in self.model.parameters() if p.requires_grad]
        norm = self.par.clip_grad_norm(params, cfg.grad_clip if cfg.grad_clip > 0 else float("inf"))
        lr = self.sched.get_last_lr()[0]
        if B > 0:  # no trace in the loss anywhere (e.g. all dropped): no optimizer step
            self.opt.step()
            self.par.after_step()
        with warnings.catch_warnings():  # the schedule counts steps, with or without an optimizer step
            warnings.filterwarnings("ignore", message="Detected call of `lr_scheduler.step", category=UserWarning)
            self.sched.step()
        self.opt.zero_grad(set_to_none=True)
        red = _all_reduce(torch.tensor([loss_sum], dtype=torch.float64))
        return {"loss": float(red[0]), "lr": lr, "grad_norm": float(norm),
                "ratio_max_dev": float(_all_reduce(ratio_dev, "max")[0]), "logprob_gap": step_metrics.ratio(*_all_reduce(gap))}

    def train_step(self) -> dict:
        """Run step self.step + 1 and return its metrics row (global over ranks)."""
        t0 = time.perf_counter()
        step = self.step + 1
        extra = METHOD_METRICS.get(self.cfg.method, (lambda c: (), lambda c, s: {}))
        self.method_sums = dict.fromkeys(extra[0](self.cfg), 0.0)
        self.rollout.sync(self.par.plain, step)
        t1 = time.perf_counter()
        rolls, used, sampled = self._rollouts(step)
        t2 = time.perf_counter()
        acc = step_metrics.rollout_sums(rolls, used)
        v = _all_reduce(torch.tensor(acc + list(self.method_sums.values()), dtype=torch.float64))
        sums = dict(zip(self.method_sums, v[step_metrics.N_SUMS:].tolist()))
        t3 = time.perf_counter()
        upd = self._update(used)
        upd.update(sync_seconds=t1 - t0, rollout_seconds=t2 - t1, update_seconds=time.perf_counter() - t3)
        roll = step_metrics.rollout_row(v, sampled)
        self.total_generated += roll["generated_tokens"]
        row = {"step": step, **upd, **roll, "total_generated_tokens": self.total_generated}
        self.step = step
        sec = time.perf_counter() - t0
        self.elapsed += sec
        row.update(seconds=sec, elapsed=self.elapsed)
        return {**{k: row[k] for k in METRIC_FIELDS}, **extra[1](self.cfg, sums)}

    # --- files --------------------------------------------------------------------------
    def save_checkpoint(self) -> None:
        from spiral_bench.models import save
        opt_state = self.par.optimizer_state_dict(self.opt)  # FSDP: gathered to rank 0 (every rank calls)
        if self.is_main:
            tmp = Path(tempfile.mkdtemp(prefix=".checkpoint-", dir=self.out))
            if self.cfg.lora.r:  # the adapters only: the frozen weights are the starting checkpoint's
                lora.save_adapter(self.par.plain, tmp)
                self.tok.save_pretrained(tmp)
            else:
                save(self.par.plain, self.tok, tmp)
            torch.save({"step": self.step, "cursor": self.cursor, "optimizer": opt_state,
                        "scheduler": self.sched.state_dict(), "total_generated": self.total_generated,
                        "elapsed": self.elapsed,
                        "rng": {"torch": torch.get_rng_state(), "python": random.getstate()}},
                       tmp / "trainer_state.pt")
            swap_dir(tmp, self.out / "checkpoint")
        _barrier()

    def save_final(self) -> Path:
        from spiral_bench.models import save
        if self.is_main:
            tmp = Path(tempfile.mkdtemp(prefix=".final-", dir=self.out))
            # LoRA: W + (alpha / r) B A merged into a plain model (training is over)
            save(self.par.plain.merge_and_unload() if self.cfg.lora.r else self.par.plain, self.tok, tmp)
            swap_dir(tmp, self.out / "final")
        _barrier()
        return self.out / "final"


def _prepare_dir(cfg: TrainConfig, out: Path, is_main: bool) -> None:
    """Write config.yaml, or check that an existing run folder holds the same config."""
    text = yaml.safe_dump(to_dict(cfg), sort_keys=True)
    p = out / "config.yaml"
    if p.exists():
        old = yaml.safe_load(p.read_text())
        new = yaml.safe_load(text)
        diff = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
        if diff:
            raise ConfigError(f"run folder {out} holds a run with a different config (keys {diff}); "
                              "use another --out or the same config to resume")
    elif is_main:
        out.mkdir(parents=True, exist_ok=True)
        write_atomic(p, text)


def train(cfg: TrainConfig, out_dir: str | os.PathLike, progress: bool = True,
          init_path: str | os.PathLike | None = None) -> Path:
    """Train cfg.method (sft | grpo | spiral | grsp | lcpo) into out_dir; resumes a killed run; returns out_dir/final.
    init_path: the starting policy when the caller has resolved it (cfg.model '' = an SFT base cached
    elsewhere than $SPIRAL_BENCH_CACHE); config.yaml keeps cfg as given, so the run folder does not
    depend on where that cache is."""
    from spiral_bench.trainers import bridge_rl, grpo, shaping, spiral  # noqa: F401  (register the methods)
    bridge_rl.register()

    out = Path(out_dir)
    rank = int(os.environ.get("RANK", "0"))
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)
    if cfg.method == "sft":  # single-process: under torchrun only rank 0 trains
        if rank != 0:
            return out / "final"
        _prepare_dir(cfg, out, True)
        path = ensure_sft_base(sft_config_for(cfg), progress=progress)
        if rank == 0 and not (out / "final").exists():
            tmp = Path(tempfile.mkdtemp(prefix=".final-", dir=out))
            shutil.copytree(path, tmp, dirs_exist_ok=True)
            swap_dir(tmp, out / "final")
        return out / "final"
    _prepare_dir(cfg, out, rank == 0)
    run = Run(cfg, out, progress, init_path=None if init_path is None else str(init_path))
    if run.is_main:
        rows = [r for r in read_metrics(out) if r.get("step", 0) <= run.step]
        write_atomic(out / "metrics.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
        if run.step:
            print(f"resuming from step {run.step} ({out / 'checkpoint'})", flush=True)
    if run.step >= cfg.steps and (out / "final" / "config.json").exists():
        run.rollout.close()
        return out / "final"
    bar = None
    if progress and run.is_main:
        from tqdm.auto import tqdm
        bar = tqdm(total=cfg.steps, initial=run.step, desc=cfg.method, unit="step")
    with open(out / "metrics.jsonl", "a") if run.is_main else open(os.devnull, "w") as mf:
        while run.step < cfg.steps:
            row = run.train_step()
            mf.write(json.dumps(row) + "\n")
            mf.flush()
            if run.step % cfg.checkpoint_every == 0 or run.step == cfg.steps:
                run.save_checkpoint()
            if bar is not None:
                bar.update(1)
                bar.set_postfix(reward=f"{row['search_reward']:.2f}", loss=f"{row['loss']:.3f}")
    if bar is not None:
        bar.close()
    run.rollout.close()
    return run.save_final()


def _main(argv=None) -> None:
    """python -m spiral_bench.trainers.loop --method M [--config FILE] [--out DIR] [key=value ...]"""
    import argparse

    from spiral_bench.trainers.train_config import make_config
    ap = argparse.ArgumentParser(description="Train sft / grpo / spiral (library entry point of `spiral-bench train`).")
    ap.add_argument("--method", default=None)
    ap.add_argument("--config", default=None, help="YAML file or preset name (default train_tiny)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--no-progress", action="store_true")
    ap.add_argument("overrides", nargs="*", help="key=value overrides (dotted keys for nested sections)")
    a = ap.parse_args(argv)
    from spiral_bench.config import parse_override
    cfg = make_config(a.method, a.config, dict(parse_override(o) for o in a.overrides))
    print(train(cfg, a.out, progress=not a.no_progress))


if __name__ == "__main__":  # run the canonical module, so grpo/spiral register into its METHODS
    from spiral_bench.trainers.loop import _main as _canonical_main
    _canonical_main()
