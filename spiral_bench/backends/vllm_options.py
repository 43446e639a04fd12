"""vLLM engine options (`VLLMOptions`), named as vLLM's own engine arguments, and their checks.

The dataclass imports nothing from vllm, so configs, YAML files and the CLI can hold and validate
it in any environment; `check_engine_args` (needs vllm) refuses an engine option vLLM does not
know, and `check_lora` refuses a LoRA adapter whose tensors do not fit the base model, both before
an engine starts. `add_cli_flags(parser)` adds the flags shared by `eval`, `run` and `sample`;
`from_args(args)` reads them back into a `VLLMOptions`.

Past one node: `data_parallel_size` places several engine replicas on the GPUs of one node; to use
more nodes, either give vLLM's Ray executor a tensor/pipeline-parallel group that spans them
(`--engine-arg distributed_executor_backend=ray` inside a running Ray cluster), or run one
`spiral-bench eval` per checkpoint on each node (the cell stores are per label and can be merged
by copying `cells/<label>/` into one folder and running `analyze` on it).
"""
from __future__ import annotations

import dataclasses
import difflib
import json
from pathlib import Path

from ..config import ConfigError, build, option, parse_override


@dataclasses.dataclass(frozen=True)
class VLLMOptions:
    """Options of the vllm backend; each is the `vllm.LLM` / `EngineArgs` argument of that name."""

    tensor_parallel_size: int = option(1, min=1, help="GPUs one engine's weights are split over")
    data_parallel_size: int = option(1, min=1, help="engine replicas over the GPUs of one node "
                                     "(tensor_parallel_size x data_parallel_size GPUs in all)")
    max_model_len: int | None = option(None, min=1, help="context length (prompt + generated tokens); "
                                       "None: the model's own. Checked against the grid before sampling")
    gpu_memory_utilization: float = option(0.9, min=0.01, max=1.0, help="fraction of GPU memory the engine "
                                           "may take (weights + KV cache)")
    enable_prefix_caching: bool = option(True, help="share the KV blocks of a common prompt prefix")
    lora: str | None = option(None, help="LoRA adapter folder (adapter_config.json + weights) applied to "
                              "the base model with vllm's LoRARequest; None: the checkpoint as is (merged)")
    max_lora_rank: int | None = option(None, min=1, help="enable_lora's max_lora_rank; None: the adapter's r")
    engine_args: dict = option(default_factory=dict, help="any other vllm EngineArgs field (name: value), "
                               "checked against vllm's EngineArgs before the engine starts")

    def llm_kwargs(self) -> dict:
        """Keyword arguments for one `vllm.LLM` (the LoRA ones only when an adapter is given);
        data_parallel_size is not one: `vllm_dp.VLLMDataParallel` starts that many engines."""
        kw = {"tensor_parallel_size": self.tensor_parallel_size,
              "gpu_memory_utilization": self.gpu_memory_utilization,
              "enable_prefix_caching": self.enable_prefix_caching}
        if self.max_model_len is not None:
            kw["max_model_len"] = self.max_model_len
        if self.lora is not None:
            kw["enable_lora"] = True
            kw["max_lora_rank"] = self.max_lora_rank or engine_lora_rank(adapter_rank(self.lora))
        own = {f.name for f in dataclasses.fields(self)} | {"enable_lora"}
        clash = sorted(own & set(self.engine_args))
        if clash:
            raise ConfigError(f"vllm.engine_args: {clash} have their own option; set them there")
        return {**kw, **self.engine_args}


def check_engine_args(kwargs: dict) -> None:
    """ConfigError naming any key vLLM's EngineArgs does not have (with a close match)."""
    from vllm.engine.arg_utils import EngineArgs

    known = {f.name for f in dataclasses.fields(EngineArgs)} | {"seed", "dtype", "model"}
    for key in kwargs:
        if key not in known:
            hint = difflib.get_close_matches(key, sorted(known), n=1)
            extra = f" (did you mean {hint[0]!r}?)" if hint else ""
            raise ConfigError(f"vllm engine option {key!r} is not one of vLLM's EngineArgs{extra}")


VLLM_LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)   # the values vLLM's LoRAConfig.max_lora_rank takes


def engine_lora_rank(r: int) -> int:
    """vLLM's max_lora_rank for adapters of rank r: the smallest value it accepts that is >= r (it
    serves any adapter of rank <= max_lora_rank; r = 4 -> 8)."""
    for v in VLLM_LORA_RANKS:
        if v >= r:
            return v
    raise ConfigError(f"LoRA rank {r} exceeds vLLM's largest max_lora_rank {VLLM_LORA_RANKS[-1]}")


def adapter_rank(path: str) -> int:
    """The rank r of a PEFT LoRA adapter folder (its adapter_config.json)."""
    cfg = _adapter_config(path)
    return int(cfg.get("r", 8))


def _adapter_config(path: str) -> dict:
    p = Path(path) / "adapter_config.json"
    if not p.is_file():
        raise ConfigError(f"vllm.lora: {path} is not a LoRA adapter folder (no adapter_config.json)")
    return json.loads(p.read_text())


def check_lora(path: str, base_config) -> None:
    """ConfigError unless every LoRA tensor of the adapter at `path` fits the base model whose
    transformers config is `base_config` (the adapter's input/output sizes must be sizes of the
    base model's projections), so a mismatched adapter is refused before the engine loads it."""
    cfg = _adapter_config(path)
    files = sorted(Path(path).glob("adapter_model*.safetensors"))
    if not files:
        raise ConfigError(f"vllm.lora: {path} has no adapter_model.safetensors")
    from safetensors import safe_open

    d = int(base_config.hidden_size)
    heads = int(base_config.num_attention_heads)
    kv = int(getattr(base_config, "num_key_value_heads", heads) or heads)
    hd = int(getattr(base_config, "head_dim", None) or d // heads)
    sizes = {d, heads * hd, kv * hd, int(getattr(base_config, "intermediate_size", 4 * d)),
             int(base_config.vocab_size)}
    r = int(cfg.get("r", 0))
    for f in files:
        with safe_open(str(f), "pt") as fh:
            for name in fh.keys():
                shape = tuple(fh.get_slice(name).get_shape())
                if "lora_A" in name and (len(shape) != 2 or shape[1] not in sizes or (r and shape[0] != r)):
                    raise ConfigError(f"vllm.lora: {path} does not match the base model: {name} has shape "
                                      f"{shape}, the base model's projection sizes are {sorted(sizes)} "
                                      f"(adapter base: {cfg.get('base_model_name_or_path')!r})")
                if "lora_B" in name and (len(shape) != 2 or shape[0] not in sizes):
                    raise ConfigError(f"vllm.lora: {path} does not match the base model: {name} has shape "
                                      f"{shape}, the base model's projection sizes are {sorted(sizes)} "
                                      f"(adapter base: {cfg.get('base_model_name_or_path')!r})")


def add_cli_flags(p) -> None:
    """The vllm backend's flags (`eval`, `run`, `sample`); each is ignored by the hf backend."""
    g = p.add_argument_group("vllm backend (vLLM's engine arguments)")
    g.add_argument("--tensor-parallel-size", type=int, default=None, help="GPUs per engine (default 1)")
    g.add_argument("--data-parallel-size", type=int, default=None, help="engine replicas on one node (default 1)")
    g.add_argument("--max-model-len", type=int, default=None, help="context length (default: the model's)")
    g.add_argument("--gpu-memory-utilization", type=float, default=None, help="GPU memory fraction (default 0.9)")
    g.add_argument("--no-prefix-caching", action="store_true", help="turn vLLM's prefix caching off")
    g.add_argument("--lora", default=None, metavar="DIR", help="LoRA adapter folder applied to the checkpoint")
    g.add_argument("--max-lora-rank", type=int, default=None, help="default: the adapter's rank")
    g.add_argument("--engine-arg", action="append", metavar="KEY=VALUE",
                   help="any other vLLM EngineArgs field, e.g. enforce_eager=true")


def from_args(args) -> VLLMOptions:
    """The VLLMOptions the vllm flags of a parsed command line give (strictly validated)."""
    d = {k: getattr(args, k) for k in ("tensor_parallel_size", "data_parallel_size", "max_model_len",
                                       "gpu_memory_utilization", "lora", "max_lora_rank")
         if getattr(args, k, None) is not None}
    if getattr(args, "no_prefix_caching", False):
        d["enable_prefix_caching"] = False
    if getattr(args, "engine_arg", None):
        d["engine_args"] = dict(parse_override(a) for a in args.engine_arg)
    return build(VLLMOptions, d, prefix="vllm.")
