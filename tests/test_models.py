"""Tiny preset: builds offline at the advertised sizes, saves/reloads exactly through the same
code path as real models, caches deterministically, and fails clearly on a missing model."""
import string

import pytest
import torch

from spiral_bench.models import (CHARS, build_tiny, load_model, model_info, resolve_model, save)


@pytest.mark.parametrize("name,lo,hi", [("tiny-1m", 0.8e6, 1.3e6), ("tiny-5m", 4e6, 6.5e6),
                                        ("tiny-20m", 16e6, 25e6)])
def test_tiny_sizes(name, lo, hi):
    model, tok = build_tiny(name)
    info = model_info(model)
    assert lo <= info["n_params"] <= hi
    cfg = model.config
    # tied embeddings: the only embedding matrix is vocab x d_model
    assert info["n_params"] - info["n_params_nonembedding"] == cfg.vocab_size * cfg.hidden_size
    assert info["n_params"] == sum(p.numel() for p in model.parameters())
    assert (info["n_layers"], info["d_model"]) == (cfg.num_hidden_layers, cfg.hidden_size)
    assert info["d_attn"] == model.model.layers[0].self_attn.q_proj.out_features
    assert cfg.max_position_embeddings >= 1024 and cfg.vocab_size == len(tok)


def test_tiny_alias_and_seed():
    a, _ = build_tiny("tiny", seed=3)
    b, _ = build_tiny("tiny-1m", seed=3)
    c, _ = build_tiny("tiny-1m", seed=4)
    wa, wb, wc = (m.model.layers[0].mlp.up_proj.weight for m in (a, b, c))
    assert torch.equal(wa, wb) and not torch.equal(wa, wc)
    with pytest.raises(ValueError, match="tiny-1m"):
        build_tiny("tiny-3m")


def test_save_reload_identical(tmp_path):
    model, tok = build_tiny("tiny-1m", seed=1)
    save(model, tok, tmp_path / "m")
    model2, tok2 = load_model(tmp_path / "m")
    text = string.printable.replace("\r", "").replace("\x0b", "").replace("\x0c", "")
    ids = tok(text, add_special_tokens=False)["input_ids"]
    assert len(ids) == len(text)                       # one token per character
    assert tok2(text, add_special_tokens=False)["input_ids"] == ids
    assert tok2.decode(ids) == text and tok.decode(ids) == text
    for ch in CHARS:                                   # every character round-trips alone
        assert tok2.decode(tok2(ch, add_special_tokens=False)["input_ids"]) == ch
    assert tok2.padding_side == "left"
    batch = tok2(["12", "1234"], padding=True, return_tensors="pt")
    assert batch["attention_mask"].tolist() == [[0, 0, 1, 1], [1, 1, 1, 1]]
    x = torch.tensor([ids])
    with torch.no_grad():
        assert torch.equal(model(x).logits, model2(x).logits)


def test_resolve_caches_deterministically(tmp_path):
    p1 = resolve_model("tiny", cache_dir=tmp_path, seed=7)
    assert p1.endswith("tiny-1m-seed7")
    mtime = (tmp_path / "tiny-1m-seed7" / "config.json").stat().st_mtime_ns
    assert resolve_model("tiny-1m", cache_dir=tmp_path, seed=7) == p1      # reused, not rebuilt
    assert (tmp_path / "tiny-1m-seed7" / "config.json").stat().st_mtime_ns == mtime
    loaded, _ = load_model("tiny", cache_dir=tmp_path, seed=7)
    built, _ = build_tiny("tiny-1m", seed=7)
    for (n, p), (_, q) in zip(loaded.named_parameters(), built.named_parameters()):
        assert torch.equal(p, q), n
    assert resolve_model("some/hub-id") == "some/hub-id"
    assert [p.name for p in tmp_path.iterdir()] == ["tiny-1m-seed7"]  # no temp dirs left


def test_missing_model_offline_error(tmp_path):
    missing = tmp_path / "no-such-model"
    with pytest.raises(FileNotFoundError, match="no-such-model"):
        load_model(missing)
    with pytest.raises(FileNotFoundError, match="nobody/absent-model"):
        load_model("nobody/absent-model")


def test_load_dtype(tmp_path):
    model, tok = build_tiny("tiny-1m")
    save(model, tok, tmp_path)
    m16, _ = load_model(tmp_path, dtype="bfloat16")
    assert next(m16.parameters()).dtype == torch.bfloat16
    with pytest.raises(ValueError, match="float32"):
        load_model(tmp_path, dtype="float8")


def test_d_attn_is_query_width_not_hidden_size():
    """Qwen3-4B's shape (32 heads x 128 = 4096 vs hidden 2560): the attention FLOPs term uses 4096."""
    from transformers import Qwen3Config
    from spiral_bench.compute import request_compute
    from spiral_bench.models import d_attn
    cfg = Qwen3Config(hidden_size=2560, num_attention_heads=32, num_key_value_heads=8, head_dim=128,
                      num_hidden_layers=36)
    assert d_attn(cfg) == 4096
    info = {"n_params_nonembedding": 0, "n_layers": 36, "d_model": 2560, "d_attn": d_attn(cfg)}
    assert request_compute(0, [8192], 8192, info).flops == 36 * 4096 * 8192 * 8193
