"""Frozen dataclass configs: one per concern, every field with help text, strict loading.

A config class is a frozen dataclass whose fields are declared with `option(...)`, which
records the help text and the allowed values or range in the field's metadata. `build(cls,
mapping)` turns a plain dict (from YAML or CLI flags) into an instance and raises
`ConfigError` naming the key, the value and what is allowed when

- a key is unknown (with a close-match suggestion, e.g. "did you mean 'max_new_tokens'?"),
- a value has the wrong type (bool is not an int; an int is accepted for a float),
- a value is out of range or not one of the allowed choices.

Nested configs (a field whose type is another config dataclass) are built recursively and
errors name the dotted path (`sampling.temperature`). `load_yaml(cls, path, overrides)` reads
a YAML file and applies `key=value` / dotted-key overrides on top; `to_dict` and
`config_hash` give a stable serialisation and a short hash used to cache runs by config.
"""
from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
import re
import types
import typing
from pathlib import Path
from typing import Any, Mapping

import yaml


class ConfigError(ValueError):
    """A bad config key or value; the message names the key, the value and what is allowed."""


def option(default: Any = dataclasses.MISSING, *, help: str, choices: tuple | None = None,
           min: float | None = None, max: float | None = None, default_factory: Any = dataclasses.MISSING):
    """A dataclass field with help text and validation metadata (choices, inclusive min/max)."""
    meta = {"help": help, "choices": choices, "min": min, "max": max}
    if default_factory is not dataclasses.MISSING:
        return dataclasses.field(default_factory=default_factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _check_type(key: str, value: Any, tp: Any) -> Any:
    """Return `value` coerced to `tp` where lossless (int -> float, list -> tuple), else raise."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _check_type(key, value, arg)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(f"{key}: {value!r} is not a valid {_type_name(tp)}")
    if origin is typing.Literal:
        allowed = typing.get_args(tp)
        if value not in allowed:
            raise ConfigError(f"{key}: {value!r} is not allowed; choose one of {list(allowed)}")
        return value
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list, got {type(value).__name__} {value!r}")
        args = [a for a in typing.get_args(tp) if a is not Ellipsis]
        inner = args[0] if args else Any
        return tuple(_check_type(f"{key}[{i}]", v, inner) for i, v in enumerate(value))
    if origin is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{key}: expected a mapping, got {type(value).__name__} {value!r}")
        return dict(value)
    if tp is Any:
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true/false, got {type(value).__name__} {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected an integer, got {type(value).__name__} {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key}: expected a number, got {type(value).__name__} {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected a string, got {type(value).__name__} {value!r}")
        return value
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, Mapping):
            raise ConfigError(f"{key}: expected a mapping for {tp.__name__}, got {value!r}")
        return build(tp, value, prefix=f"{key}.")
    if isinstance(tp, type) and not isinstance(value, tp):
        raise ConfigError(f"{key}: expected {tp.__name__}, got {type(value).__name__} {value!r}")
    return value


def _check_range(key: str, value: Any, meta: Mapping) -> None:
    choices, lo, hi = meta.get("choices"), meta.get("min"), meta.get("max")
    values = value if isinstance(value, tuple) else (value,)
    for v in values:
        if v is None:
            continue
        if choices is not None and v not in choices:
            hint = difflib.get_close_matches(str(v), [str(c) for c in choices], n=1)
            extra = f" (did you mean {hint[0]!r}?)" if hint else ""
            raise ConfigError(f"{key}: {v!r} is not allowed; choose one of {list(choices)}{extra}")
        if lo is not None and v < lo:
            raise ConfigError(f"{key}: {v!r} is out of range; must be >= {lo}")
        if hi is not None and v > hi:
            raise ConfigError(f"{key}: {v!r} is out of range; must be <= {hi}")


def build(cls: type, mapping: Mapping[str, Any] | None = None, prefix: str = ""):
    """Build a config dataclass from a mapping, validating every key and value (see module doc)."""
    mapping = dict(mapping or {})
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    for key in mapping:
        if key not in fields:
            hint = difflib.get_close_matches(key, list(fields), n=1)
            extra = f"; did you mean {prefix}{hint[0]!r}?" if hint else ""
            raise ConfigError(f"unknown key {prefix}{key!r} in {cls.__name__} (value {mapping[key]!r}){extra} "
                              f"Known keys: {', '.join(fields)}")
    kwargs = {}
    for name, f in fields.items():
        if name not in mapping:
            continue
        value = _check_type(prefix + name, mapping[name], hints[name])
        _check_range(prefix + name, value, f.metadata)
        kwargs[name] = value
    obj = cls(**kwargs)
    for name, f in fields.items():  # defaults are validated too (catches bad presets)
        if name not in mapping:
            _check_range(prefix + name, getattr(obj, name), f.metadata)
    validate = getattr(obj, "validate", None)
    if callable(validate):
        validate()
    return obj


_EXP_FLOAT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")


def parse_override(text: str) -> tuple[str, Any]:
    """'a.b=3' -> ('a.b', 3): the value is parsed as YAML (numbers, true/false, lists), and a plain
    string that is a float in Python's spelling ('3e-4', which YAML 1.1 leaves a string) is a float."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} must look like key=value")
    key, raw = text.split("=", 1)
    value = yaml.safe_load(raw) if raw.strip() else ""
    if isinstance(value, str) and _EXP_FLOAT.fullmatch(value):
        value = float(value)
    return key.strip(), value


def merge(base: Mapping, overrides: Mapping[str, Any]) -> dict:
    """Apply dotted-key overrides ({'sampling.temperature': 0.7}) onto a nested dict."""
    out = json.loads(json.dumps(base, default=_jsonable))
    for key, value in overrides.items():
        node = out
        parts = key.split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {key!r}: {p!r} is not a section")
        node[parts[-1]] = value
    return out


def load_yaml(cls: type, path: str | Path | None = None, overrides: Mapping[str, Any] | None = None):
    """Read a YAML config (if given), apply overrides, and build `cls` strictly."""
    data: dict = {}
    if path is not None:
        p = Path(path)
        if not p.exists():
            raise ConfigError(f"config file not found: {p}")
        try:
            data = yaml.safe_load(p.read_text()) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f"{p}: not valid YAML: {e}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{p}: the top level must be a mapping, got {type(data).__name__}")
    return build(cls, merge(data, overrides or {}))


def _jsonable(o: Any):
    if dataclasses.is_dataclass(o):
        return to_dict(o)
    if isinstance(o, Path):
        return str(o)
    if isinstance(o, tuple):
        return list(o)
    raise TypeError(f"not serialisable: {type(o).__name__}")


def to_dict(cfg: Any) -> dict:
    """A JSON/YAML-ready dict of a config (tuples become lists, nested configs dicts). A config with an
    `omitted_keys()` method leaves those top-level keys out (e.g. a section at its default that the
    config does not use, so adding such a section keeps old hashes and run folders valid)."""
    d = json.loads(json.dumps(dataclasses.asdict(cfg), default=_jsonable))
    for k in getattr(cfg, "omitted_keys", lambda: ())():
        d.pop(k, None)
    return d


def config_hash(cfg: Any, n: int = 12) -> str:
    """Short stable hash of a config's content (sorted-key JSON, sha256)."""
    blob = json.dumps(to_dict(cfg) if dataclasses.is_dataclass(cfg) else cfg, sort_keys=True, default=_jsonable)
    return hashlib.sha256(blob.encode()).hexdigest()[:n]


def describe(cls: type) -> str:
    """Help text for every field of a config class (used by `--help` and the README)."""
    lines = [f"{cls.__name__}:"]
    for f in dataclasses.fields(cls):
        default = f.default if f.default is not dataclasses.MISSING else "(factory)"
        lines.append(f"  {f.name} = {default!r}: {f.metadata.get('help', '')}")
    return "\n".join(lines)


# The files in which a checkpoint made by spiral-bench records the task it was trained on:
# the SFT base keeps sft_config.yaml beside its weights; a training run keeps config.yaml in the
# run folder, one level above its final/ and checkpoint/.
TASK_CONFIG_FILES = ("sft_config.yaml", "../config.yaml")


def saved_task(checkpoint: str | Path) -> tuple[str, dict, Path] | None:
    """(task name, task options, the file they came from) of a checkpoint made by `train`/`run`,
    or None for any other model folder, tiny preset or hub id."""
    for rel in TASK_CONFIG_FILES:
        p = Path(checkpoint) / rel
        if Path(checkpoint).is_dir() and p.is_file():
            d = yaml.safe_load(p.read_text()) or {}
            if isinstance(d, dict) and isinstance(d.get("task"), str):
                return d["task"], dict(d.get("task_options") or {}), p.resolve()
    return None
