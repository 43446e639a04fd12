"""Data-parallel training for the RL loop: torch.distributed set-up, the policy wrapped for the
chosen strategy, the collective parts of an update step, and full state dicts for saving.

Launched by torchrun (WORLD_SIZE > 1; one node or many) the loop initialises torch.distributed
(gloo on CPU, nccl on GPU). Rank r rolls out prompts j with j % W == r (how a rank samples, hf
sampler or a vLLM engine, is not this module's concern: it only keeps a plain full-weight model,
`Parallel.plain`, up to date after each step), then every rank runs the update on its own traces:

- `ddp` (the default with LoRA): torch DistributedDataParallel; the policy is replicated and the
  gradients all-reduced in the last backward of the step (earlier micro-batches run under
  `no_sync`, so one all-reduce per step).
- `fsdp` (the default for full fine-tuning): FSDP2 (`torch.distributed.fsdp.fully_shard`) on every
  decoder layer (the model's `_no_split_modules`) and on the root: parameters, gradients and AdamW
  state are sharded over ranks, each layer's weights all-gathered for its forward and backward and
  its gradients reduce-scattered in every backward. Rollouts need the full weights on every rank:
  `Parallel.plain` is an unsharded copy of the policy, refreshed from the full state dict after each
  optimizer step (one all-gather per step; on GPUs one extra copy of the weights per rank, which
  is the memory an unsharded sampler needs anyway). LoRA under fsdp is refused: the adapters are
  small and the frozen base is shared, so ddp is what fits.
- one process (W = 1): the plain model, no wrapper.

The maths equal one process: the loop scales each micro-batch's loss so that the sum over
micro-batches and ranks is the loss of the global batch; DDP and FSDP average gradients over the W
ranks, so `Parallel.loss_scale` = W turns their mean back into that sum (exact for W a power of two).
Every rank runs the same number of forward/backward passes (`n_passes`: the largest local count;
a rank with fewer runs zero-loss passes on one token), since FSDP all-gathers in every forward and
DDP reduces in the last backward. `bf16` is mixed precision over float32 weights (FSDP2's
MixedPrecisionPolicy, bf16 compute and float32 gradient reduction; torch.autocast otherwise);
`gradient_checkpointing` is transformers' activation checkpointing of every decoder layer
(non-reentrant, which also works under DDP and FSDP2).

Checkpoints: `full_state_dict` / `optimizer_state_dict` gather full tensors to rank 0
(torch.distributed.checkpoint.state_dict with full_state_dict=True, cpu_offload=True); under FSDP
the optimizer state is keyed by parameter name and `load_optimizer_state` shards it again, so a
resumed FSDP run continues as if it had not stopped.

Why torchrun + DDP/FSDP2 and not `accelerate launch`: the loop already owns its micro-batching,
loss normalisation and rank split of prompts, which accelerate's Accelerator would wrap without
changing; FSDP2 and DDP are the torch APIs accelerate itself calls, and using them directly keeps
one launcher (torchrun, as for single-node and multi-node jobs) and no accelerate config file. A
multi-node job is `torchrun --nnodes N --node_rank I --rdzv-endpoint HOST:PORT ...`.
"""
from __future__ import annotations

import contextlib
import copy
import os

import torch

STRATEGIES = ("auto", "ddp", "fsdp")


# ------------------------------------------------------------------------ process group
def dist():
    """torch.distributed when a process group is initialised, else None."""
    import torch.distributed as d
    return d if d.is_available() and d.is_initialized() else None


def all_reduce(t: torch.Tensor, op: str = "sum") -> torch.Tensor:
    """In-place sum (or max) over ranks; unchanged in one process."""
    d = dist()
    if d is not None:
        d.all_reduce(t, op=d.ReduceOp.SUM if op == "sum" else d.ReduceOp.MAX)
    return t


def barrier() -> None:
    if dist() is not None:
        dist().barrier()


def init_distributed(device: str) -> tuple[int, int, str]:
    """(rank, world, device): init torch.distributed under torchrun (gloo on CPU, nccl on GPU)."""
    import torch.distributed as d
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not d.is_initialized():
        d.init_process_group("nccl" if device.startswith("cuda") else "gloo")
    rank = d.get_rank() if d.is_initialized() else 0
    if device.startswith("cuda") and world > 1:
        device = f"cuda:{int(os.environ.get('LOCAL_RANK', rank))}"
        torch.cuda.set_device(device)
    return rank, world, device


def resolve_strategy(strategy: str, lora_r: int, world: int) -> str:
    """'none' in one process; 'auto' -> 'ddp' with LoRA (lora_r > 0), 'fsdp' for full fine-tuning."""
    if strategy not in STRATEGIES:
        raise ValueError(f"distributed: {strategy!r} is not one of {STRATEGIES}")
    if world <= 1:
        return "none"
    if strategy == "auto":
        return "ddp" if lora_r else "fsdp"
    return strategy


def enable_gradient_checkpointing(model) -> None:
    """transformers' activation checkpointing on every decoder layer, non-reentrant (the variant that
    works under DDP and FSDP2); `activation_checkpointing_enable` from transformers 5.24 on, the
    older name `gradient_checkpointing_enable` before."""
    if hasattr(model, "activation_checkpointing_enable"):
        model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})


# ------------------------------------------------------------------------ the wrapped policy
class Parallel:
    """The policy as trained (`train_model`: DDP / FSDP2 / plain) and as read by samplers and saves
    (`plain`: the unwrapped model; under FSDP an unsharded copy refreshed by `after_step`)."""

    def __init__(self, model, strategy: str, lora_r: int, world: int, device: str, bf16: bool = False,
                 gradient_checkpointing: bool = False):
        from spiral_bench.trainers import lora
        self.kind = resolve_strategy(strategy, lora_r, world)
        self.world, self.device, self.bf16 = world, device, bf16
        self.module = model
        if gradient_checkpointing:
            enable_gradient_checkpointing(lora.sampling_model(model))
        self.plain, self.train_model = model, model
        if self.kind == "ddp":
            from torch.nn.parallel import DistributedDataParallel
            ids = [torch.device(device).index] if device.startswith("cuda") else None
            self.train_model = DistributedDataParallel(model, device_ids=ids, broadcast_buffers=False)
        elif self.kind == "fsdp":
            from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard
            self.plain = copy.deepcopy(model).requires_grad_(False)
            mp = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32) if bf16 \
                else MixedPrecisionPolicy()
            blocks = set(getattr(model, "_no_split_modules", None) or ())
            for m in list(model.modules()):
                if type(m).__name__ in blocks:
                    fully_shard(m, mp_policy=mp)
            fully_shard(model, mp_policy=mp)

    @property
    def loss_scale(self) -> float:
        """DDP and FSDP average gradients over ranks; the loop's losses add up over ranks."""
        return float(self.world) if self.kind in ("ddp", "fsdp") else 1.0

    def n_passes(self, local: int) -> int:
        """Forward/backward passes every rank runs this step: the largest local count."""
        if self.kind == "none":
            return local
        return int(all_reduce(torch.tensor([local], dtype=torch.float64), "max")[0])

    @contextlib.contextmanager
    def pass_context(self, last: bool):
        """Around one micro-batch's forward and backward: DDP's no_sync unless `last`; autocast bf16."""
        with contextlib.ExitStack() as st:
            if self.kind == "ddp" and not last:
                st.enter_context(self.train_model.no_sync())
            if self.bf16 and self.kind != "fsdp":
                st.enter_context(torch.autocast(torch.device(self.device).type, dtype=torch.bfloat16))
            yield

    def dummy_pass(self) -> None:
        """A zero-loss forward/backward on one token (keeps the ranks' collectives in step)."""
        ids = torch.zeros((1, 1), dtype=torch.long, device=self.device)
        (self.train_model(input_ids=ids, use_cache=False).logits.float().sum() * 0.0).backward()

    def clip_grad_norm(self, params, max_norm: float) -> float:
        """Global gradient norm (before clipping); clips to max_norm (inf: none)."""
        norm = torch.nn.utils.clip_grad_norm_(params, max_norm)
        return float(norm.full_tensor() if hasattr(norm, "full_tensor") else norm)

    def after_step(self) -> None:
        """Refresh the unsharded copy the samplers read (FSDP; a collective on every rank)."""
        if self.kind == "fsdp":
            self.plain.load_state_dict(self.full_state_dict(everywhere=True))

    # --- state dicts ------------------------------------------------------------------------
    def full_state_dict(self, everywhere: bool = False) -> dict:
        """The model's full state dict (FSDP: gathered; on rank 0 only and in CPU memory unless
        `everywhere`); a collective under FSDP."""
        if self.kind != "fsdp":
            return self.module.state_dict()
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict
        return get_model_state_dict(self.module, options=StateDictOptions(full_state_dict=True,
                                                                          cpu_offload=not everywhere))

    def optimizer_state_dict(self, opt) -> dict:
        """The optimizer's state for trainer_state.pt (FSDP: full tensors keyed by parameter name,
        gathered to rank 0; a collective)."""
        if self.kind != "fsdp":
            return opt.state_dict()
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict
        return get_optimizer_state_dict(self.module, opt, options=StateDictOptions(full_state_dict=True,
                                                                                   cpu_offload=True))

    def load_optimizer_state(self, opt, state: dict) -> None:
        """Load what `optimizer_state_dict` wrote (every rank holds the full dict read from disk). A
        state keyed by position (one process, DDP) is renamed for FSDP, one keyed by name (FSDP) is
        loaded into a plain model: a checkpoint resumes under any strategy."""
        keyed_by_name = any(isinstance(k, str) for k in state.get("state", {}))
        if self.kind == "fsdp" and not keyed_by_name and state.get("state"):
            names = [n for n, p in self.module.named_parameters() if p.requires_grad]  # the optimizer's order
            state = {"state": {names[i]: v for i, v in state["state"].items()},
                     "param_groups": [{**g, "params": [names[i] for i in g["params"]]} for g in state["param_groups"]]}
            keyed_by_name = True
        if keyed_by_name:
            from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict
            set_optimizer_state_dict(self.module, opt, state, options=StateDictOptions(full_state_dict=True))
        else:
            opt.load_state_dict(state)
