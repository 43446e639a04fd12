"""Config errors name the key, the value and what is allowed; good values round-trip."""
import dataclasses

import pytest

from spiral_bench.backends.base import SamplingConfig
from spiral_bench.config import ConfigError, build, config_hash, load_yaml, option, to_dict


@dataclasses.dataclass(frozen=True)
class Inner:
    lr: float = option(1e-3, help="learning rate", min=0.0)


@dataclasses.dataclass(frozen=True)
class Outer:
    method: str = option("grpo", help="which method", choices=("grpo", "spiral"))
    steps: int = option(10, help="steps", min=1, max=1000)
    sizes: tuple[int, ...] = option((1, 2), help="sizes", min=1)
    inner: Inner = option(default_factory=Inner, help="nested")


def test_unknown_key_names_key_and_suggests():
    with pytest.raises(ConfigError) as e:
        build(SamplingConfig, {"max_new_token": 5})
    msg = str(e.value)
    assert "'max_new_token'" in msg and "did you mean 'max_new_tokens'" in msg and "5" in msg


def test_bad_type_names_key_and_value():
    with pytest.raises(ConfigError) as e:
        build(SamplingConfig, {"top_k": "ten"})
    assert "top_k" in str(e.value) and "'ten'" in str(e.value) and "integer" in str(e.value)
    with pytest.raises(ConfigError, match="top_k"):
        build(SamplingConfig, {"top_k": True})  # bool is not an int


def test_out_of_range_names_key_value_and_bound():
    with pytest.raises(ConfigError) as e:
        build(SamplingConfig, {"top_p": 1.5})
    assert "top_p" in str(e.value) and "1.5" in str(e.value) and "<= 1.0" in str(e.value)
    with pytest.raises(ConfigError, match=r"sizes\[?.*0"):
        build(Outer, {"sizes": [3, 0]})


def test_choices_suggest_close_match():
    with pytest.raises(ConfigError) as e:
        build(Outer, {"method": "spirl"})
    assert "method" in str(e.value) and "did you mean 'spiral'" in str(e.value)


def test_nested_errors_use_dotted_path(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("inner:\n  lr: -1\n")
    with pytest.raises(ConfigError, match=r"inner\.lr"):
        load_yaml(Outer, p)
    p.write_text("inner:\n  lrr: 1\n")
    with pytest.raises(ConfigError, match=r"inner\.'lrr'|'lrr'"):
        load_yaml(Outer, p)


def test_yaml_and_overrides_and_hash(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("method: spiral\nsizes: [4, 8]\n")
    cfg = load_yaml(Outer, p, {"inner.lr": 0.5, "steps": 3})
    assert cfg == Outer(method="spiral", steps=3, sizes=(4, 8), inner=Inner(lr=0.5))
    assert to_dict(cfg) == {"method": "spiral", "steps": 3, "sizes": [4, 8], "inner": {"lr": 0.5}}
    assert config_hash(cfg) == config_hash(build(Outer, to_dict(cfg)))
    assert config_hash(cfg) != config_hash(Outer())


def test_every_field_has_help():
    for f in dataclasses.fields(SamplingConfig):
        assert f.metadata.get("help"), f.name


def test_override_floats_in_python_spelling():
    """YAML 1.1 reads '3e-4' as a string; `--set lr=3e-4` must still be a number."""
    from spiral_bench.config import parse_override
    assert parse_override("lr=3e-4") == ("lr", 3e-4)
    assert parse_override("lr=1E5") == ("lr", 1e5)
    assert parse_override("lr=2.5e-3") == ("lr", 2.5e-3)
    assert parse_override("task=e5") == ("task", "e5")
    assert parse_override("task=inf") == ("task", "inf")
    assert parse_override("n=3") == ("n", 3)


def test_a_presets_task_options_stay_with_its_task():
    from spiral_bench.trainers.train_config import make_config
    assert make_config(None, "train_tiny").task_options == {"n_ops": 2, "modulus": 100}
    assert make_config(None, "train_tiny", {"task": "arithmetic"}).task_options == {"n_ops": 2, "modulus": 100}
    assert make_config(None, "train_tiny", {"task": "gsm8k"}).task_options == {}          # not n_ops into gsm8k
    assert make_config(None, "train_tiny", {"task": "countdown", "task_options.n_numbers": 4}).task_options == {
        "n_numbers": 4}   # only the options given with the new task
    assert make_config(None, "train_tiny", {"task": "countdown", "task_options": {"use_all": True}}).task_options == {
        "use_all": True}
    assert make_config(None, "train_paper", {"task": "gsm8k"}).task_options == {}


def test_eval_uses_the_task_options_a_checkpoint_was_trained_with(tmp_path):
    import yaml
    from spiral_bench.cli import eval_task_options
    from spiral_bench.config import ConfigError
    a, b = tmp_path / "a", tmp_path / "run" / "final"
    a.mkdir(), b.mkdir(parents=True)
    (a / "sft_config.yaml").write_text(yaml.safe_dump({"task": "arithmetic", "task_options": {"n_ops": 2, "modulus": 100}}))
    (b.parent / "config.yaml").write_text(yaml.safe_dump({"task": "arithmetic", "task_options": {"n_ops": 3}}))
    opts, src = eval_task_options("arithmetic", {"m": str(a)}, {})
    assert opts == {"n_ops": 2, "modulus": 100} and str(a / "sft_config.yaml") in src
    assert eval_task_options("arithmetic", {"m": str(a)}, {"n_ops": 4})[0] == {"n_ops": 4, "modulus": 100}
    assert eval_task_options("countdown", {"m": str(a)}, {})[0] == {}           # trained on another task
    assert eval_task_options("arithmetic", {"m": "tiny-1m"}, {})[0] == {}         # not a spiral-bench checkpoint
    with pytest.raises(ConfigError, match=r"different task options for \['n_ops'\]"):
        eval_task_options("arithmetic", {"m": str(a), "b": str(b)}, {})
    assert eval_task_options("arithmetic", {"m": str(a), "b": str(b)}, {"n_ops": 2})[0] == {"n_ops": 2, "modulus": 100}
