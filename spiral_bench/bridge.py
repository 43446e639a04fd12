"""Bridge (arXiv 2510.01143): attention across the parallel sequences of one prompt, added to any
transformers causal LM after every feed-forward block.

Placement and formula (per decoder layer l, on the layer's output h [B, S, D], i.e. the residual
stream right after the feed-forward block's residual add):
    x = rms(h) * w_norm                                  (the block's own pre-norm, float32 rms)
    q, k, v = x W_q, x W_k, x W_v                        ([B, S, H, d], H heads of d = bridge_dim / H)
    a[s, h, b, b'] = q[b, s, h] . k[b', s, h] / sqrt(d)  (same position s only, across rows b')
    allowed[s, b, b'] = (group[b] == group[b'] and alive[b', s]) or b == b'
    out[b, s] = concat_h( sum_b' softmax_b'(a masked to allowed)[s, h, b, b'] v[b', s, h] ) W_O
    h <- h + out
`group` [B] says which rows are sequences of the same prompt (other prompts' rows are masked
out) and `alive` [B, S] which rows take part at each position (padding and sequences that have
already finished are masked out; a row always sees itself, so no softmax row is empty). There is
no position encoding across rows: the block is permutation-invariant over a group and works at
any group width (width 1 = the row's own value). W_O is zero-initialised, so an untrained Bridge
returns exactly the base model's logits. It is Markovian: only the current position's features
are shared, so it needs no cache of its own.

Size: per layer 4 * D * bridge_dim + D parameters (q, k, v, o and the norm weight). With
`bridge_dim = 0` the width is chosen from `param_fraction` of the base model's parameters:
    bridge_dim = round((param_fraction * N_base / L - D) / (4 D))  rounded to a multiple of H.
Tiny presets at the default 0.04 (tests/test_bridge.py::test_param_counts):
tiny-1m bridge_dim 20 (+41,472 on 1,062,912: 3.90%), tiny-5m 34 (+210,432 on 5,141,376: 4.09%),
tiny-20m 54 (+833,280 on 20,691,648: 4.03%).

Use: `add_bridge(model, BridgeConfig())` registers `model.bridge` (a `BridgeStack`, so its
parameters move, train and count with the model) and one forward hook per decoder layer. Every
forward of a bridged model must run inside `group_context(model, group, alive)`; without one the
hook raises (the plain sampler would silently sample the sequences independently).
P-Match (the paper's equal-parameter control, `BridgeConfig(kind="pmatch")`): in the same places a
per-row MLP with no exchange between rows,
    out[b, s] = gelu(x[b, s] W_up) W_down,   W_up [D, 2 bridge_dim], W_down [2 bridge_dim, D] zero-init
so it has exactly the Bridge's 4 * D * bridge_dim + D parameters per layer and its samples stay
independent (`samples_independent(model)`); it needs no group context.

`save_bridge` / `load_bridge` write and read `bridge_config.json` + `bridge.safetensors` beside a
save_pretrained checkpoint (`models.save` and `models.load_model` call them); `is_bridged(path or
model)` says whether a checkpoint or model carries one.
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
from pathlib import Path

import torch
from torch import nn

from .config import ConfigError, option

CONFIG_FILE, WEIGHTS_FILE = "bridge_config.json", "bridge.safetensors"


@dataclasses.dataclass(frozen=True)
class BridgeConfig:
    """Size of the Bridge blocks added to a model."""

    param_fraction: float = option(0.04, help="Added parameters as a fraction of the base model's "
                                   "(the paper adds 2.8-5.1%); used when bridge_dim is 0.", min=0.0, max=1.0)
    bridge_dim: int = option(0, help="Width of the q/k/v projections (0 = from param_fraction).", min=0)
    num_heads: int = option(2, help="Attention heads of each Bridge block.", min=1)
    rms_norm_eps: float = option(1e-6, help="Epsilon of the Bridge's own pre-norm.", min=0.0)
    kind: str = option("bridge", choices=("bridge", "pmatch"), help="bridge: attention across a prompt's "
                       "samples; pmatch: the equal-parameter per-row MLP control (no cross-row exchange).")


def _decoder_layers(model) -> nn.ModuleList:
    base = model.get_decoder() if hasattr(model, "get_decoder") else getattr(model, "model", None)
    layers = getattr(base, "layers", None)
    if layers is None:
        raise ConfigError(f"cannot find the decoder layers of {type(model).__name__} "
                          "(expected model.get_decoder().layers)")
    return layers


def _text_config(model):
    cfg = model.config
    return cfg.get_text_config() if hasattr(cfg, "get_text_config") else cfg


def resolve_dim(cfg: BridgeConfig, n_base: int, n_layers: int, d_model: int) -> int:
    """bridge_dim, or the width giving about `param_fraction` * n_base added parameters."""
    h = cfg.num_heads
    if cfg.bridge_dim:
        if cfg.bridge_dim % h:
            raise ConfigError(f"bridge_dim {cfg.bridge_dim} is not a multiple of num_heads {h}")
        return cfg.bridge_dim
    d = (cfg.param_fraction * n_base / n_layers - d_model) / (4 * d_model)
    return max(h, round(d / h) * h)


class BridgeBlock(nn.Module):
    """One Bridge block (formula in the module docstring); forward(h, group, alive) -> out [B, S, D]."""

    def __init__(self, d_model: int, bridge_dim: int, num_heads: int, eps: float = 1e-6):
        super().__init__()
        if bridge_dim % num_heads:
            raise ConfigError(f"bridge_dim {bridge_dim} is not a multiple of num_heads {num_heads}")
        self.h, self.d, self.eps = num_heads, bridge_dim // num_heads, eps
        self.norm_weight = nn.Parameter(torch.ones(d_model))
        self.q = nn.Linear(d_model, bridge_dim, bias=False)
        self.k = nn.Linear(d_model, bridge_dim, bias=False)
        self.v = nn.Linear(d_model, bridge_dim, bias=False)
        self.o = nn.Linear(bridge_dim, d_model, bias=False)
        nn.init.zeros_(self.o.weight)  # an untrained Bridge adds exactly 0

    def forward(self, h: torch.Tensor, group: torch.Tensor, alive: torch.Tensor) -> torch.Tensor:
        """h [B, S, D], group [B] int, alive [B, S] bool -> the Bridge output [B, S, D]."""
        B, S, _ = h.shape
        xf = h.float()
        x = (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)).to(h.dtype) * self.norm_weight
        v = self.v(x).view(B, S, self.h, self.d)
        if len(torch.unique(group)) == B:  # every row its own group: softmax over one entry = 1
            return self.o(v.reshape(B, S, -1))
        q = self.q(x).view(B, S, self.h, self.d).permute(1, 2, 0, 3)         # [S, H, B, d]
        k = self.k(x).view(B, S, self.h, self.d).permute(1, 2, 0, 3)
        a = torch.matmul(q, k.transpose(-1, -2)).float() / math.sqrt(self.d)   # [S, H, B, B']
        same = group[:, None] == group[None, :]                                # [B, B']
        allowed = (same[None] & alive.t()[:, None, :]) | torch.eye(B, dtype=torch.bool, device=h.device)[None]
        p = torch.softmax(a.masked_fill(~allowed[:, None], float("-inf")), dim=-1).to(v.dtype)
        out = torch.matmul(p, v.permute(1, 2, 0, 3))                           # [S, H, B, d]
        return self.o(out.permute(2, 0, 1, 3).reshape(B, S, -1))


class PMatchBlock(nn.Module):
    """The P-Match control (module docstring): a pre-norm per-row MLP with the Bridge's parameter count."""

    def __init__(self, d_model: int, bridge_dim: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.norm_weight = nn.Parameter(torch.ones(d_model))
        self.up = nn.Linear(d_model, 2 * bridge_dim, bias=False)
        self.down = nn.Linear(2 * bridge_dim, d_model, bias=False)
        nn.init.zeros_(self.down.weight)  # adds exactly 0 until trained

    def forward(self, h: torch.Tensor, group=None, alive=None) -> torch.Tensor:
        """h [B, S, D] -> [B, S, D]; group and alive are ignored (rows never exchange anything)."""
        xf = h.float()
        x = (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)).to(h.dtype) * self.norm_weight
        return self.down(torch.nn.functional.gelu(self.up(x)))


class BridgeStack(nn.Module):
    """The Bridge blocks of a model (one per decoder layer), its config and the group context."""

    def __init__(self, cfg: BridgeConfig, d_model: int, n_layers: int, bridge_dim: int):
        super().__init__()
        self.cfg, self.bridge_dim = cfg, bridge_dim
        self.blocks = nn.ModuleList(
            PMatchBlock(d_model, bridge_dim, cfg.rms_norm_eps) if cfg.kind == "pmatch"
            else BridgeBlock(d_model, bridge_dim, cfg.num_heads, cfg.rms_norm_eps) for _ in range(n_layers))
        self.ctx: tuple[torch.Tensor, torch.Tensor] | None = None
        self.handles: list = []

    def hook(self, i: int):
        def fn(module, args, output):
            h = output[0] if isinstance(output, tuple) else output
            if self.cfg.kind == "pmatch":  # per row: no group context needed
                h = h + self.blocks[i](h)
                return (h,) + tuple(output[1:]) if isinstance(output, tuple) else h
            if self.ctx is None:
                raise RuntimeError("a Bridge model was run without a group context: wrap the forward in "
                                   "spiral_bench.bridge.group_context(model, group, alive) (the hf backend "
                                   "samples Bridge models with spiral_bench.bridge_decode.BridgeSampler)")
            group, alive = self.ctx
            if alive is None:
                alive = torch.ones(h.shape[:2], dtype=torch.bool, device=h.device)
            if alive.shape != h.shape[:2] or group.shape != h.shape[:1]:
                raise ValueError(f"group context (group {tuple(group.shape)}, alive {tuple(alive.shape)}) "
                                 f"does not match the hidden states {tuple(h.shape[:2])}")
            h = h + self.blocks[i](h, group, alive)
            return (h,) + tuple(output[1:]) if isinstance(output, tuple) else h
        return fn


def add_bridge(model, cfg: BridgeConfig | None = None, bridge_dim: int | None = None) -> BridgeStack:
    """Add a zero-initialised Bridge after every decoder layer's feed-forward block of `model`
    (in place; `model.bridge`); returns the stack. bridge_dim overrides the sizing rule."""
    cfg = cfg or BridgeConfig()
    if getattr(model, "bridge", None) is not None:
        raise ConfigError("this model already has a Bridge")
    layers, tc = _decoder_layers(model), _text_config(model)
    n_base = sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())
    d = bridge_dim or resolve_dim(cfg, n_base, len(layers), int(tc.hidden_size))
    ref = next(model.parameters())
    stack = BridgeStack(cfg, int(tc.hidden_size), len(layers), d).to(device=ref.device, dtype=ref.dtype)
    model.bridge = stack
    stack.handles = [layer.register_forward_hook(stack.hook(i)) for i, layer in enumerate(layers)]
    return stack


def get_bridge(model) -> BridgeStack | None:
    b = getattr(model, "bridge", None)
    return b if isinstance(b, BridgeStack) else None


def is_bridged(model_or_path) -> bool:
    """Whether a model carries a Bridge, or a checkpoint directory holds one (bridge_config.json)."""
    if isinstance(model_or_path, (str, os.PathLike)):
        return (Path(model_or_path) / CONFIG_FILE).is_file()
    return get_bridge(model_or_path) is not None


def samples_independent(model) -> bool:
    """False for a model whose Bridge couples a request's samples (kind bridge); True without a
    Bridge or with the P-Match control."""
    b = get_bridge(model)
    return b is None or b.cfg.kind == "pmatch"


def bridge_params(model) -> int:
    """Number of parameters the Bridge adds (0 without one)."""
    b = get_bridge(model)
    return 0 if b is None else sum(p.numel() for p in b.parameters())


@contextlib.contextmanager
def group_context(model, group: torch.Tensor, alive: torch.Tensor | None):
    """Run forwards of a bridged model with rows grouped by `group` [B] and `alive` [B, S] bool
    (None: every position of every row alive)."""
    b = get_bridge(model)
    if b is None:
        raise ConfigError("group_context needs a model with a Bridge (spiral_bench.bridge.add_bridge)")
    old, b.ctx = b.ctx, (group, None if alive is None else alive.bool())
    try:
        yield b
    finally:
        b.ctx = old


def save_bridge(model, directory: str | os.PathLike) -> None:
    """bridge_config.json + bridge.safetensors of a bridged model into `directory`."""
    from safetensors.torch import save_file

    b = get_bridge(model)
    directory = Path(directory)
    cfg = {**dataclasses.asdict(b.cfg), "bridge_dim": b.bridge_dim, "n_layers": len(b.blocks)}
    (directory / CONFIG_FILE).write_text(json.dumps(cfg, indent=1) + "\n")
    save_file({k: v.detach().contiguous().cpu() for k, v in b.state_dict().items()}, str(directory / WEIGHTS_FILE))


def load_bridge(model, directory: str | os.PathLike) -> BridgeStack:
    """Add the Bridge saved in `directory` to `model` (a freshly loaded base) and load its weights."""
    from safetensors.torch import load_file

    directory = Path(directory)
    raw = json.loads((directory / CONFIG_FILE).read_text())
    n_layers, dim = raw.pop("n_layers"), raw["bridge_dim"]
    if n_layers != len(_decoder_layers(model)):
        raise ConfigError(f"{directory / CONFIG_FILE}: {n_layers} Bridge blocks but the model has "
                          f"{len(_decoder_layers(model))} decoder layers")
    stack = add_bridge(model, BridgeConfig(**raw), bridge_dim=dim)
    ref = next(model.parameters())
    state = {k: v.to(device=ref.device, dtype=ref.dtype) for k, v in load_file(str(directory / WEIGHTS_FILE)).items()}
    stack.load_state_dict(state, strict=True)
    return stack


@contextlib.contextmanager
def without_bridge(model):
    """Temporarily detach `model.bridge` from the module tree (save_pretrained then writes the base)."""
    b = model._modules.pop("bridge", None)
    try:
        yield b
    finally:
        if b is not None:
            model._modules["bridge"] = b
