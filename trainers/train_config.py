"""TrainConfig (one frozen dataclass for sft / grpo / spiral / grsp / lcpo runs), YAML presets, and the
matched-compute check between a GRPO and a SPIRAL run.

Presets live in `spiral_bench/presets/<name>.yaml` (`train_tiny`: CPU default; `train_paper`:
the paper's pairing on Qwen3-4B-Instruct-2507). `make_config(method, config, overrides)` starts
from the `train_tiny` preset (or the given preset name / YAML file), applies dotted-key overrides
and the method, and validates strictly.

Training budget per prompt, in max new tokens (the paper's convention):
    GRPO:   G x L                       (group_size x max_new_tokens; also grsp and lcpo)
    SPIRAL: (N1 + K x N2) x L_s         (L_s = spiral_max_new_tokens, default max_new_tokens)
Paper: 12 x 8192 = (8 + 4 x 4) x 4096 = 98,304 tokens per prompt.
Generated tokens per prompt: sum of generated_tokens / sum of prompts_sampled over metrics.jsonl
(totals, not a mean of per-step ratios). `matched_by` (a TrainConfig field; each preset states
its own: train_paper `budget`, train_tiny `generated`) picks the measure a pair must match;
`check_pairing(a, b)` compares it, raising `PairingError` with both measures in the message when
the two differ by more than `tolerance` relative to the larger one, unless `allow`. The budget is
known before training, so a budget-matched pair is checked before any compute is spent; the
generated tokens only after. Neither measure counts prompt tokens (prefill: SPIRAL's aggregation
prompts hold K candidates) or the update pass.
"""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any, Mapping

import yaml

from spiral_bench.backends.vllm_options import VLLMOptions
from spiral_bench.config import ConfigError, build, load_yaml, merge, option
from spiral_bench.trainers.grsp import GRSPConfig, LCPOConfig
from spiral_bench.trainers.bridge_rl import BridgeTrainConfig
from spiral_bench.trainers.lora import LoraSettings
from spiral_bench.trainers.losses import RLLossConfig
from spiral_bench.trainers.sft import SFTConfig

PRESET_DIR = Path(__file__).resolve().parents[1] / "spiral_bench" / "presets"
try:  # installed layout: spiral_bench/presets next to the spiral_bench package
    import spiral_bench as _sb
    PRESET_DIR = Path(_sb.__file__).resolve().parent / "presets"
except Exception:  # pragma: no cover
    pass


METHOD_CHOICES = ("sft", "grpo", "spiral", "grsp", "lcpo", "bridge", "pmatch")
GROUP_METHODS = ("grpo", "grsp", "lcpo", "bridge", "pmatch")  # G traces per prompt from one request: budget G x L


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """One training run: SFT warm start, GRPO or SPIRAL (shared loop, see trainers/loop.py)."""

    method: str = option("grpo", choices=METHOD_CHOICES, help="training method (grsp, lcpo: GRPO's rollout with "
                         "a length-shaped reward, trainers/grsp.py)")
    task: str = option("arithmetic", help="task name (spiral-bench tasks list)")
    task_options: dict = option(default_factory=dict, help="options of `task` (arithmetic: n_ops, modulus, ...; "
                                "train_tiny sets n_ops 2, modulus 100); a preset's options are dropped when "
                                "`task` is changed to another task without new options")
    model: str = option("", help="starting policy: '' = the cached SFT base built from `sft` with this task; "
                                 "else a tiny preset, a local path or a hub id")
    sft: SFTConfig = option(default_factory=SFTConfig, help="SFT warm start (method sft, or model '')")
    dtype: str = option("float32", choices=("float32", "bfloat16"), help="parameter dtype")
    device: str = option("cpu", help="torch device: cpu or cuda (under torchrun: cuda:LOCAL_RANK)")
    seed: int = option(0, min=0, help="run seed: data order, sampling seeds, subsets")
    steps: int = option(40, min=1, help="optimizer steps (one per batch of prompts)")
    prompts_per_step: int = option(8, min=1, help="training prompts per step (global, over all ranks)")
    train_problems: int = option(10000, min=1, help="size of the train split the prompts are drawn from")
    lr: float = option(2e-4, min=0.0, help="peak AdamW learning rate (paper: 2e-5 with LoRA on 4B; the "
                                           "tiny full-finetune default is higher, see BENCHMARKS.md)")
    warmup_steps: int = option(0, min=0, help="linear warmup steps")
    schedule: str = option("constant", choices=("constant", "linear", "cosine"),
                           help="learning-rate schedule after warmup")
    betas: tuple[float, ...] = option((0.9, 0.999), min=0.0, max=1.0, help="AdamW betas (two numbers)")
    weight_decay: float = option(0.0, min=0.0, help="AdamW decoupled weight decay")
    grad_clip: float = option(1.0, min=0.0, help="max global gradient norm (0 = off)")
    temperature: float = option(1.0, min=1e-6, help="sampling temperature of rollouts (paper: 1.0)")
    max_new_tokens: int = option(64, min=1, help="L: max new tokens of a GRPO trace (and of SPIRAL's if "
                                                 "spiral_max_new_tokens is null)")
    spiral_max_new_tokens: int | None = option(None, min=1, help="L_s: max new tokens of SPIRAL's search "
                                                                 "and aggregation traces (paper: L/2)")
    group_size: int = option(24, min=1, help="GRPO G: samples per prompt")
    matched_by: str = option("generated", choices=("budget", "generated"),
                             help="what a GRPO/SPIRAL pair must match (within the tolerance): 'budget' = max-token "
                                  "budget per prompt, G x L vs (N1 + K x N2) x L_s (the paper's convention; checked "
                                  "before training), 'generated' = generated tokens per prompt as logged (checked "
                                  "after training); both are recorded either way")
    scale_std: bool = option(True, help="GRPO: divide advantages by the group std + 1e-4")
    n1: int = option(8, min=1, help="SPIRAL N1: search traces per prompt")
    k: int = option(4, min=1, help="SPIRAL K: distinct subsets per prompt")
    subset_size: int = option(4, min=1, help="SPIRAL n: search traces shown per subset")
    n2: int = option(4, min=1, help="SPIRAL N2: aggregation traces per subset")
    uncovered: str = option("zero", choices=("zero", "drop", "force"),
                            help="search traces in no subset: zero = advantage 0 in the loss (default), "
                                 "drop = left out of the loss, force = subsets cover every trace")
    candidate_order: str = option("random", choices=("random", "index"),
                                  help="order of the candidates in an aggregation prompt")
    L_target: int | None = option(None, min=1, help="length control: positive advantage -> 0 for outputs "
                                                    "longer than this (null = off)")
    grsp: GRSPConfig = option(default_factory=GRSPConfig, help="method grsp: segment-level length penalty "
                                                                "(segmentation, clusters, weights, lambda)")
    lcpo: LCPOConfig = option(default_factory=LCPOConfig, help="method lcpo: token-level length reward (L1's LCPO)")
    bridge: BridgeTrainConfig = option(default_factory=BridgeTrainConfig, help="methods bridge / pmatch: the "
                                       "Bridge (or P-Match MLP) added to the starting policy, optional warm-up")
    dynamic_sampling: bool = option(False, help="skip prompts whose advantages are all zero and refill")
    dynamic_max_rounds: int = option(4, min=1, help="dynamic sampling: most sampling rounds per step")
    loss: RLLossConfig = option(default_factory=RLLossConfig, help="policy-gradient loss")
    lora: LoraSettings = option(default_factory=LoraSettings, help="LoRA adapters (r = 0: train all weights)")
    skip_zero_advantage: bool = option(True, help="leave traces with advantage exactly 0 out of the update pass "
                                                   "when there is no KL term (their policy-gradient is exactly 0; "
                                                   "they still count in the loss normaliser), same step, less work")
    pack_max_tokens: int = option(256, min=0, help="update pass: completions of one prompt are packed behind a single "
                                                   "copy of it (block-causal mask) while the row stays within this many "
                                                   "tokens; 0 = one row per trace. Same log-probs, less work for short "
                                                   "traces; long traces (> this) get a row each")
    micro_batch_size: int = option(64, min=0, help="traces per forward/backward (0 = all at once)")
    max_tokens_per_microbatch: int = option(0, min=0, help="update pass: at most this many tokens, padding "
                                                           "included (rows x width), per forward/backward on top of "
                                                           "micro_batch_size; a longer single row gets a pass of its "
                                                           "own (0 = no token limit)")
    distributed: str = option("auto", choices=("auto", "ddp", "fsdp"),
                              help="under torchrun (WORLD_SIZE > 1): ddp = DistributedDataParallel (replicated weights), "
                                   "fsdp = FSDP2 fully_shard per decoder layer (weights, gradients and optimizer state "
                                   "sharded; full fine-tuning only, lora.r = 0); auto = ddp with LoRA, fsdp without. "
                                   "Ignored in one process (trainers/distributed.py)")
    bf16: bool = option(False, help="bf16 mixed precision: float32 weights and optimizer, bf16 forward/backward "
                                    "(FSDP2 MixedPrecisionPolicy with float32 gradient reduction; torch.autocast "
                                    "otherwise); needs dtype float32. Runs on CPU too (slowly: for tests)")
    gradient_checkpointing: bool = option(False, help="recompute each decoder layer's activations in the backward "
                                                      "(transformers activation checkpointing, non-reentrant): "
                                                      "less memory, about one more forward; same gradients")
    sample_batch_size: int = option(256, min=1, help="sequences decoded together by the sampler")
    rollout_backend: str = option("hf", choices=("hf", "vllm"),
                                  help="engine of the rollouts: hf (the live policy in this process) or vllm (a vLLM "
                                       "engine colocated with the trainer, synced every step: LoRA adapters through "
                                       "LoRARequest, full weights by an in-place reload; trainers/rollout_engine.py)")
    tis_cap: float = option(0.0, min=0.0, help="truncated importance sampling against the rollout engine's numerics: "
                                               "0 = off (old log-probs = the engine's); C > 0: old = the trainer's "
                                               "recomputed log-probs and each token's loss x min(exp(trainer - engine), "
                                               "C) (trainers/rollout_engine.py)")
    vllm: VLLMOptions = option(default_factory=VLLMOptions,
                               help="rollout_backend vllm: the engine's options (vLLM's engine arguments; colocated "
                                    "with the trainer, so set gpu_memory_utilization well below 0.9: train_paper "
                                    "has 0.3; lora is set by the trainer)")
    checkpoint_every: int = option(10, min=1, help="write checkpoint/ every this many steps")

    def validate(self) -> None:
        if self.vllm.lora is not None:
            raise ConfigError("vllm.lora: the trainer serves its own adapters (lora.r > 0); leave vllm.lora unset")
        if len(self.betas) != 2:
            raise ConfigError(f"betas: {list(self.betas)} must be two numbers")
        if self.distributed == "fsdp" and self.lora.r:
            raise ConfigError("distributed: fsdp shards full fine-tuning (lora.r = 0); with LoRA (lora.r = "
                              f"{self.lora.r}) the adapters are small and the frozen base is shared: use ddp or auto")
        if self.bf16 and self.dtype != "float32":
            raise ConfigError(f"bf16: mixed precision keeps float32 weights and needs dtype float32, not {self.dtype!r} "
                              "(dtype bfloat16 trains bf16 weights without float32 master copies)")
        if self.method in ("bridge", "pmatch") and self.lora.r:
            raise ConfigError(f"method {self.method}: LoRA (lora.r > 0) is not supported with a Bridge")
        if self.method in ("bridge", "pmatch") and self.rollout_backend != "hf":
            raise ConfigError(f"method {self.method}: rollouts must use rollout_backend hf (lockstep decoding of "
                              f"the bridged group); vLLM cannot run a Bridge (got {self.rollout_backend!r})")
        if self.method == "spiral":
            import math
            if self.subset_size > self.n1:
                raise ConfigError(f"subset_size: {self.subset_size} > n1 = {self.n1}")
            if self.k > math.comb(self.n1, self.subset_size):
                raise ConfigError(f"k: {self.k} distinct subsets of size {self.subset_size} from n1 = {self.n1} "
                                  "do not exist")
            if self.uncovered == "force" and self.k * self.subset_size < self.n1:
                raise ConfigError(f"uncovered: 'force' needs k * subset_size >= n1 ({self.k}*{self.subset_size} "
                                  f"< {self.n1})")

    def omitted_keys(self) -> tuple[str, ...]:
        """Keys left out of config.yaml / config_hash when at their defaults: grsp, lcpo and bridge (unused
        by the method), the parallelism knobs and the rollout-engine fields (so runs keep the hashes and
        folders they had before these existed; the maths do not depend on them)."""
        unused = tuple(k for k, cls in (("grsp", GRSPConfig), ("lcpo", LCPOConfig), ("bridge", BridgeTrainConfig))
                       if self.method not in ((k,) if k != "bridge" else ("bridge", "pmatch"))
                       and getattr(self, k) == cls())
        names = ("distributed", "bf16", "gradient_checkpointing", "max_tokens_per_microbatch",
                 "rollout_backend", "tis_cap", "vllm")
        defaults = {f.name: f.default_factory() if f.default is dataclasses.MISSING else f.default
                    for f in dataclasses.fields(self) if f.name in names}
        return unused + tuple(k for k, v in defaults.items() if getattr(self, k) == v)

    @property
    def spiral_L(self) -> int:
        return self.spiral_max_new_tokens or self.max_new_tokens


def preset_path(name: str) -> Path:
    p = PRESET_DIR / f"{name}.yaml"
    if not p.is_file():
        known = sorted(x.stem for x in PRESET_DIR.glob("*.yaml"))
        raise ConfigError(f"unknown preset {name!r}; known: {known}")
    return p


def make_config(method: str | None = None, config: str | os.PathLike | None = None,
                overrides: Mapping[str, Any] | None = None) -> TrainConfig:
    """TrainConfig from a preset name or YAML file (default preset `train_tiny`) + overrides + method."""
    src = config or "train_tiny"
    path = Path(src) if (os.sep in str(src) or str(src).endswith((".yaml", ".yml"))) else preset_path(str(src))
    ov = dict(overrides or {})
    if method is not None:
        ov["method"] = method
    cfg = load_yaml(TrainConfig, path, ov)
    # a preset's task options belong to the preset's task: another task gets only the options given with it
    if cfg.task != load_yaml(TrainConfig, path).task:
        given = dict(ov.get("task_options") or {})
        given.update({k.split(".", 1)[1]: v for k, v in ov.items() if k.startswith("task_options.")})
        cfg = dataclasses.replace(cfg, task_options=given)
    return cfg


# ------------------------------------------------------------------------ matched compute
class PairingError(ValueError):
    """Two runs' training compute per prompt (on their matched_by measure) differ by more than the tolerance."""


def budget_tokens_per_prompt(cfg: TrainConfig) -> int:
    """Max-token budget per prompt: grpo / grsp / lcpo G x L, spiral (N1 + K x N2) x L_s, sft 0."""
    if cfg.method in GROUP_METHODS:
        return cfg.group_size * cfg.max_new_tokens
    if cfg.method == "spiral":
        return (cfg.n1 + cfg.k * cfg.n2) * cfg.spiral_L
    return 0


def _config_of(run: TrainConfig | str | os.PathLike) -> tuple[TrainConfig, Path | None]:
    if isinstance(run, TrainConfig):
        return run, None
    d = Path(run)
    if not (d / "config.yaml").is_file():
        raise FileNotFoundError(f"{d} is not a run folder (no config.yaml)")
    return build(TrainConfig, merge(yaml.safe_load((d / "config.yaml").read_text()) or {}, {})), d


def compute_per_prompt(run: TrainConfig | str | os.PathLike) -> dict:
    """Both measures of a run's training compute per prompt: {"budget": G x L or (N1 + K x N2) x L_s,
    "generated": sum of generated_tokens / sum of prompts_sampled over metrics.jsonl (None for a config
    or a run with no steps yet), "steps": steps logged, "what": a label}. Neither counts prompt
    tokens (prefill) or the update pass."""
    cfg, d = _config_of(run)
    gen, steps = None, 0
    if d is not None:
        from spiral_bench.trainers.loop import read_metrics
        rows = read_metrics(d)
        prompts, steps = sum(r["prompts_sampled"] for r in rows), len(rows)
        gen = sum(r["generated_tokens"] for r in rows) / prompts if prompts else None
    return {"budget": float(budget_tokens_per_prompt(cfg)), "generated": gen, "steps": steps,
            "what": f"{cfg.method} " + (f"run {d}" if d is not None else "config"), "matched_by": cfg.matched_by}


def tokens_per_prompt(run: TrainConfig | str | os.PathLike) -> tuple[float, str]:
    """(figure, what it is): the generated tokens per prompt a run logged, else its budget."""
    c = compute_per_prompt(run)
    if c["generated"] is not None:
        return c["generated"], f"{c['what']} generated tokens per prompt over {c['steps']} steps"
    return c["budget"], f"{c['what']} max-token budget per prompt"


MEASURES = {"budget": "max-token budget per prompt", "generated": "generated tokens per prompt"}


def check_pairing(run_a, run_b, tolerance: float = 0.10, allow: bool = False, matched_by: str | None = None) -> dict:
    """Compare two runs' training compute per prompt on `matched_by` (default: the runs' own setting,
    which must agree): refuse (PairingError, both measures in the message) when the two differ by
    more than `tolerance` relative to the larger, unless `allow`. Runs: folders or configs. When the
    measure is 'generated' and a side has not trained yet, the check is deferred ("matched": None).
    Returns {"matched_by", "a", "b" (the gating figures), "a_what", "b_what", "relative_difference",
    "matched", "budget": {a, b, relative_difference}, "generated": {...} or None}."""
    ca, cb = compute_per_prompt(run_a), compute_per_prompt(run_b)
    if matched_by is None:
        if ca["matched_by"] != cb["matched_by"]:
            raise ConfigError(f"the two runs are matched by different measures ({ca['what']}: {ca['matched_by']}, "
                              f"{cb['what']}: {cb['matched_by']}); set matched_by the same for both")
        matched_by = ca["matched_by"]
    if matched_by not in MEASURES:
        raise ConfigError(f"matched_by must be one of {sorted(MEASURES)}, not {matched_by!r}")

    def rel(x, y):
        return abs(x - y) / max(x, y) if max(x, y) > 0 else 0.0

    both = {m: ({"a": ca[m], "b": cb[m], "relative_difference": rel(ca[m], cb[m])}
                if ca[m] is not None and cb[m] is not None else None) for m in MEASURES}
    rep = {"matched_by": matched_by, "a_what": ca["what"], "b_what": cb["what"], "tolerance": tolerance, **both}
    g = both[matched_by]
    if g is None:
        return {**rep, "a": None, "b": None, "relative_difference": None, "matched": None}
    rep.update(a=g["a"], b=g["b"], relative_difference=g["relative_difference"],
               matched=g["relative_difference"] <= tolerance)
    if not rep["matched"] and not allow:
        raise PairingError(f"training compute is not matched by {MEASURES[matched_by]} (matched_by: {matched_by}): "
                           f"{ca['what']} = {g['a']:g} vs {cb['what']} = {g['b']:g} (differ by "
                           f"{g['relative_difference']:.1%} > tolerance {tolerance:.0%}); {pairing_text(rep)}. "
                           "Match them or allow unmatched runs explicitly (--allow-unmatched)")
    return rep


def pairing_text(rep: dict) -> str:
    """Both measures of a pairing report in one line."""
    parts = []
    for m, name in MEASURES.items():
        x = rep.get(m)
        parts.append(f"{name} {x['a']:.0f} vs {x['b']:.0f} ({x['relative_difference']:.1%})" if x else
                     f"{name} not yet known")
    return "; ".join(parts)
