"""LoRA for the RL trainers (peft), as in the paper (rank 32 on Qwen3-4B): the policy is
    W_eff = W + (alpha / r) * B A      for every targeted linear layer (W frozen, A, B trained),
B initialised to 0 so step 0 is the starting checkpoint. `LoraSettings.r = 0` (the default)
trains all weights instead.

- `apply_lora(model, settings)`: wrap a transformers model with peft adapters (only A, B train).
- `sampling_model(model)`: the transformers model the sampler should read (adapters injected;
  the sampler's fused decode step uses W_eff, see `spiral_bench.fast_decode.effective_weight`).
- `save_adapter` / `load_adapter`: the adapter tensors of a checkpoint (bit-exact resume).
- `final/` holds the merged plain transformers model (`merge_and_unload`, in the loop's save_final),
  so evaluation needs no peft.
"""
from __future__ import annotations

import dataclasses
import os
import warnings
from pathlib import Path

from spiral_bench.config import ConfigError, option

ADAPTER_FILE = "adapter.safetensors"


@dataclasses.dataclass(frozen=True)
class LoraSettings:
    r: int = option(0, min=0, help="LoRA rank; 0 = full fine-tuning (all weights train). Paper: 32")
    alpha: float = option(64.0, min=0.0, help="LoRA alpha: the update is (alpha / r) * B A")
    dropout: float = option(0.0, min=0.0, max=1.0, help="dropout on the LoRA input (training forward only)")
    targets: tuple[str, ...] = option(("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"),
                                      help="names of the linear layers that get adapters")

    def validate(self) -> None:
        if self.r and not self.targets:
            raise ConfigError("lora.targets: at least one layer name is needed when lora.r > 0")


def apply_lora(model, settings: LoraSettings, seed: int = 0):
    """peft model with adapters on `settings.targets` (only the adapters require grad). A's random
    init is drawn from a generator seeded by `seed` (the global torch stream is left untouched), so
    the adapters do not depend on what the process ran before."""
    import torch
    try:
        from peft import LoraConfig, get_peft_model
    except ImportError as e:  # pragma: no cover - peft is a dependency
        raise ImportError("lora.r > 0 needs peft: pip install peft") from e
    cfg = LoraConfig(r=settings.r, lora_alpha=settings.alpha, lora_dropout=settings.dropout,
                     target_modules=list(settings.targets), bias="none", task_type="CAUSAL_LM")
    with torch.random.fork_rng(devices=list(range(torch.cuda.device_count()))), warnings.catch_warnings():
        # peft (<= 0.21) reads `model.is_gradient_checkpointing`, deprecated in transformers 5.x
        # (FutureWarning): peft's call, not ours, and nothing to change on our side
        warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated", category=FutureWarning)
        torch.manual_seed(seed)
        return get_peft_model(model, cfg)


def is_peft(model) -> bool:
    return hasattr(model, "get_base_model") and hasattr(model, "peft_config")


def sampling_model(model):
    return model.get_base_model() if is_peft(model) else model


def save_adapter(model, directory: str | os.PathLike) -> None:
    from peft import get_peft_model_state_dict
    from safetensors.torch import save_file
    sd = {k: v.detach().contiguous() for k, v in get_peft_model_state_dict(model).items()}
    save_file(sd, str(Path(directory) / ADAPTER_FILE))


def load_adapter(model, directory: str | os.PathLike) -> None:
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file
    res = set_peft_model_state_dict(model, load_file(str(Path(directory) / ADAPTER_FILE)))
    bad = [k for k in getattr(res, "unexpected_keys", []) if "lora_" in k]
    if bad:
        raise ValueError(f"checkpoint {directory} has adapter tensors this model lacks: {bad[:3]}")

