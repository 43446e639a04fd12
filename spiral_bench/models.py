"""Load any causal LM + tokenizer by path or hub id, and build the offline `tiny` preset family.

- `load_model(name_or_path, dtype="float32", device="cpu")` -> (model, tokenizer) with the
  transformers Auto classes (plus the Bridge of a checkpoint saved with one: spiral_bench.bridge);
  `name_or_path` may also be a tiny preset name (`tiny`, `tiny-1m`, `tiny-5m`, `tiny-20m`), which
  is built once and cached on disk (see `resolve_model`), so the tiny model and a real model go
  through exactly the same loading code.
- `build_tiny(name, seed)` -> (model, tokenizer): a randomly initialised Qwen3 decoder from a
  transformers config (about 1M / 5M / 20M parameters) and a character-level tokenizer built
  with `tokenizers` and wrapped in `PreTrainedTokenizerFast` (left padding, saved with the
  tokenizer so it survives save_pretrained). Vocabulary: <pad>, <eos>, <bos>, <unk>, then
  "\\n", "\\t" and every printable ASCII character (codes 32..126), one token each.
- `resolve_model(spec, cache_dir=None, seed=0)`: a tiny preset name -> the directory of its
  cached build (`$SPIRAL_BENCH_CACHE` or `~/.cache/spiral_bench/models`, sub-folder
  `<name>-seed<seed>`, written atomically); anything else is returned unchanged (a local path
  or a hub id).
- `model_info(model)` -> {n_params, n_params_nonembedding, n_layers, d_model, d_attn, vocab_size}.
  Non-embedding parameters = all parameters minus the input embedding matrix and an untied
  output head (Kaplan et al.'s N, used by compute.py for FLOPs = 2 N tokens + attention).
"""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import torch

TINY_PRESETS: dict[str, dict] = {
    # name: Qwen3 decoder shape (the parameter count is printed by model_info)
    "tiny-1m": dict(hidden_size=128, intermediate_size=512, num_hidden_layers=4,
                    num_attention_heads=4, num_key_value_heads=4, head_dim=32),
    "tiny-5m": dict(hidden_size=256, intermediate_size=768, num_hidden_layers=6,
                    num_attention_heads=8, num_key_value_heads=8, head_dim=32),
    "tiny-20m": dict(hidden_size=384, intermediate_size=1280, num_hidden_layers=10,
                     num_attention_heads=8, num_key_value_heads=8, head_dim=48),
}
TINY_ALIASES = {"tiny": "tiny-1m"}
MAX_POSITIONS = 1024
SPECIAL_TOKENS = ["<pad>", "<eos>", "<bos>", "<unk>"]
CHARS = ["\n", "\t"] + [chr(c) for c in range(32, 127)]

_DTYPES = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16,
           "bf16": torch.bfloat16, "float16": torch.float16, "fp16": torch.float16}


def to_dtype(dtype: str | torch.dtype) -> torch.dtype:
    """'float32' / 'bf16' / torch.dtype -> torch.dtype (ValueError naming the allowed names)."""
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype not in _DTYPES:
        raise ValueError(f"dtype {dtype!r} is not one of {sorted(_DTYPES)}")
    return _DTYPES[dtype]


def is_tiny(spec: str) -> bool:
    return str(spec) in TINY_PRESETS or str(spec) in TINY_ALIASES


def build_char_tokenizer():
    """Character-level `PreTrainedTokenizerFast`: one token per character, left padding."""
    from tokenizers import Tokenizer, decoders, models
    from transformers import PreTrainedTokenizerFast

    vocab = {t: i for i, t in enumerate(SPECIAL_TOKENS + CHARS)}
    # BPE with no merges splits the input into single characters; unknown characters -> <unk>.
    core = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="<unk>"))
    core.add_special_tokens(SPECIAL_TOKENS)
    core.decoder = decoders.Fuse()  # concatenate tokens without spaces
    return PreTrainedTokenizerFast(
        tokenizer_object=core, pad_token="<pad>", eos_token="<eos>", bos_token="<bos>",
        unk_token="<unk>", padding_side="left", clean_up_tokenization_spaces=False)


def build_tiny(name: str = "tiny", seed: int = 0):
    """A randomly initialised tiny Qwen3 model and its char tokenizer; same seed -> same weights."""
    from transformers import AutoModelForCausalLM, Qwen3Config

    key = TINY_ALIASES.get(name, name)
    if key not in TINY_PRESETS:
        raise ValueError(f"unknown tiny preset {name!r}; choose one of "
                         f"{sorted(TINY_PRESETS) + sorted(TINY_ALIASES)}")
    tok = build_char_tokenizer()
    config = Qwen3Config(
        vocab_size=len(tok), max_position_embeddings=MAX_POSITIONS, tie_word_embeddings=True,
        pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id,
        bos_token_id=tok.bos_token_id, rope_theta=10000.0, **TINY_PRESETS[key])
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.generation_config.pad_token_id = tok.pad_token_id
    model.generation_config.eos_token_id = tok.eos_token_id
    return model.eval(), tok


def save(model, tokenizer, directory: str | os.PathLike) -> Path:
    """save_pretrained both into `directory` (created if needed); a Bridge (spiral_bench.bridge)
    goes beside the base weights as bridge_config.json + bridge.safetensors."""
    from .bridge import is_bridged, save_bridge, without_bridge

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    with without_bridge(model):
        model.save_pretrained(directory)
    if is_bridged(model):
        save_bridge(model, directory)
    tokenizer.save_pretrained(directory)
    return directory


def default_cache_dir() -> Path:
    env = os.environ.get("SPIRAL_BENCH_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "spiral_bench" / "models"


def resolve_model(spec: str | os.PathLike, cache_dir: str | os.PathLike | None = None,
                  seed: int = 0) -> str:
    """A tiny preset name -> path of its cached build (built on first use); else `spec` unchanged."""
    spec = str(spec)
    if not is_tiny(spec):
        return spec
    key = TINY_ALIASES.get(spec, spec)
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    target = root / f"{key}-seed{seed}"
    if (target / "config.json").is_file() and (target / "tokenizer.json").is_file():
        return str(target)
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{key}-", dir=root))
    try:
        model, tok = build_tiny(key, seed)
        save(model, tok, tmp)
        try:
            os.replace(tmp, target)  # atomic; fails if another process got there first
        except OSError:
            if not (target / "config.json").is_file():
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return str(target)


def load_model(name_or_path: str | os.PathLike, dtype: str | torch.dtype = "float32",
               device: str | torch.device = "cpu", seed: int = 0, cache_dir=None):
    """(model in eval mode on `device`, tokenizer with left padding) for a path, hub id or tiny preset."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch_dtype = to_dtype(dtype)
    path = resolve_model(name_or_path, cache_dir=cache_dir, seed=seed)
    offline = os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False")
    try:
        tok = AutoTokenizer.from_pretrained(path, padding_side="left")
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch_dtype)
    except (OSError, ValueError) as e:
        where = "a local directory" if Path(path).exists() else "not a local directory"
        raise FileNotFoundError(
            f"cannot load model {str(name_or_path)!r} (resolved to {path!r}, {where}"
            f"{'; HF_HUB_OFFLINE=1 so the hub was not asked' if offline else ''}): {e}") from e
    if tok.pad_token_id is None:  # many real models ship without one; padding needs it
        tok.pad_token = tok.eos_token
    tok.padding_side = "left"
    from .bridge import is_bridged, load_bridge
    if is_bridged(path):  # a Bridge checkpoint: the base weights plus bridge.safetensors
        load_bridge(model, path)
    return model.to(device).eval(), tok


def model_info(model) -> dict:
    """Sizes for FLOPs accounting: n_params, n_params_nonembedding, n_layers, d_model, d_attn, vocab_size."""
    cfg = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    params = {id(p): p for p in model.parameters()}  # tied weights counted once
    n = sum(p.numel() for p in params.values())
    emb_ids = {id(model.get_input_embeddings().weight)}
    out = model.get_output_embeddings()
    if out is not None:
        emb_ids.add(id(out.weight))
    n_emb = sum(params[i].numel() for i in emb_ids if i in params)
    return {"n_params": n, "n_params_nonembedding": n - n_emb,
            "n_layers": int(cfg.num_hidden_layers), "d_model": int(cfg.hidden_size),
            "d_attn": d_attn(cfg), "vocab_size": int(cfg.vocab_size)}


def d_attn(cfg) -> int:
    """Width of the attention (query heads x head dim), the d_attn of the attention FLOPs term:
    it differs from hidden_size in Qwen3 (Qwen3-4B: 32 x 128 = 4096 vs 2560)."""
    heads = int(cfg.num_attention_heads)
    return heads * int(getattr(cfg, "head_dim", None) or cfg.hidden_size // heads)
