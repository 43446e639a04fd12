"""Prompt texts from files, and chat templates for instruct models, the same for every backend.

- `read_prompt(name)`: the text of `spiral_bench/prompts/<name>` (package data; one file per
  prompt: `math_instruction.txt`, the dataset tasks' `\\boxed{}` instruction;
  `dataset_aggregation.txt`, their aggregation template after the paper's: audit each candidate,
  use only its visible text, then one solution after a "Final Solution" marker;
  `tiny_chat_template.jinja`, an optional chat template for the tiny models, so this path is
  tested without a real instruct model).
- `resolve_chat_template(tokenizer, mode)`: `mode` is "auto" (the tokenizer's own template when it
  has one, else none), "none" (raw prompts) or a path to a Jinja template file; returns the
  template text or None.
- `ChatPrompts(backend, tokenizer, mode, system_prompt)`: a `Backend` that renders every request's
  prompt (task and aggregation prompts alike) as one user message, after an optional system
  message, with `apply_chat_template(..., add_generation_prompt=True, tokenize=False)`, and
  passes it on; with no template it passes the raw prompt. Everything else (`prefix_consistent`,
  `decode`, `model_info`, `close`, ...) is the wrapped backend's. `chat_info()` is what the sweep
  manifest records: the mode, the template's sha256 and the system prompt.
- `with_chat(backend, mode, system_prompt)`: `ChatPrompts` around a backend with a `tokenizer`,
  or the backend itself when no template applies and no system prompt is given.
"""
from __future__ import annotations

import dataclasses
import hashlib
from importlib import resources
from pathlib import Path
from typing import Sequence

from .config import ConfigError

CHAT_MODES = ("auto", "none")


def read_prompt(name: str) -> str:
    """The text of the packaged prompt file `name` (trailing newline removed)."""
    return resources.files("spiral_bench").joinpath("prompts", name).read_text(encoding="utf-8").rstrip("\n")


def tiny_chat_template_path() -> str:
    """Path of the packaged chat template for the tiny models (`--chat-template PATH`)."""
    return str(resources.files("spiral_bench").joinpath("prompts", "tiny_chat_template.jinja"))


def resolve_chat_template(tokenizer, mode: str = "auto") -> str | None:
    """The chat template text `mode` selects for `tokenizer`, or None for raw prompts."""
    if mode == "none":
        return None
    if mode == "auto":
        return getattr(tokenizer, "chat_template", None) or None
    p = Path(mode)
    if not p.is_file():
        raise ConfigError(f"chat_template: {mode!r} is neither 'auto', 'none' nor a template file")
    return p.read_text(encoding="utf-8")


class ChatPrompts:
    """A backend whose prompts are rendered through a chat template first (module doc)."""

    def __init__(self, backend, tokenizer, mode: str = "auto", system_prompt: str | None = None):
        self.inner, self.tokenizer, self.mode = backend, tokenizer, mode
        self.template = resolve_chat_template(tokenizer, mode)
        self.system_prompt = system_prompt
        if system_prompt and self.template is None:
            raise ConfigError(f"system_prompt needs a chat template; chat_template={mode!r} gives none "
                              "for this model (use a template file)")

    def render(self, prompt: str) -> str:
        if self.template is None:
            return prompt
        msgs = ([{"role": "system", "content": self.system_prompt}] if self.system_prompt else [])
        msgs.append({"role": "user", "content": prompt})
        return self.tokenizer.apply_chat_template(msgs, chat_template=self.template, tokenize=False,
                                                  add_generation_prompt=True)

    def generate(self, requests: Sequence, sampling, progress: bool = False):
        rendered = {p: self.render(p) for p in dict.fromkeys(r.prompt for r in requests)}
        reqs = [dataclasses.replace(r, prompt=rendered[r.prompt]) for r in requests]
        return self.inner.generate(reqs, sampling, progress=progress)

    def chat_info(self) -> dict:
        sha = hashlib.sha256(self.template.encode()).hexdigest()[:16] if self.template else None
        return {"chat_template": self.mode, "chat_template_sha256": sha, "system_prompt": self.system_prompt}

    def __getattr__(self, name):  # everything else is the wrapped backend's
        return getattr(self.__dict__["inner"], name)


def with_chat(backend, mode: str = "auto", system_prompt: str | None = None):
    """`backend` with its prompts rendered through the chat template `mode` selects (module doc)."""
    tok = getattr(backend, "tokenizer", None)
    if tok is None or (mode == "none" and not system_prompt):
        return backend
    wrapped = ChatPrompts(backend, tok, mode, system_prompt)
    return wrapped if wrapped.template is not None else backend
