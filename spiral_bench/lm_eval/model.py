"""The `spiral` lm-eval model type: any HF causal LM run through a spiral-bench scaffold.

    lm-eval run --model spiral \
        --model_args pretrained=PATH,scaffold=rsa,population=8,subset=4,steps=2,seed=0 ...
(through `spiral-bench lm-eval ...`, which registers this class; lm-eval 0.4.13 has no plugin hook).

Model args (`SpiralModelConfig`, strict: an unknown key is an error naming it):
pretrained (local path, hub id, or a tiny preset such as `tiny`), scaffold (single, parallel,
majority, aggregate, rsa) with its sizes n, set_size, population, subset, steps, template, seed
(`spiral_bench.scaffolds.ScaffoldConfig`), task (see below), dtype, device, gen_batch_size
(sequences decoded together; lm-eval's own --batch_size is ignored), temperature (overrides the
request's), default_max_gen_toks (used only when a request has no max_gen_toks).

The model is served by `spiral_bench.evaluate.make_backend` (the hf backend `spiral-bench eval`
uses); `SpiralLM.with_backend(backend, **model_args)` wraps any other spiral-bench backend.

How a `generate_until` request runs:
- sampling (`SamplingConfig`) from the request's gen_kwargs: max_new_tokens = max_gen_toks,
  stop = until, temperature = model_args temperature, else 0 when do_sample is false, else the
  request's temperature (1.0 if absent); top_p / top_k when given.
- the Task the scaffold uses to extract, vote and write aggregation prompts: for docs of our
  `spiral_*` tasks (columns spiral_task / spiral_options / id / question / answer / meta, see
  hooks.py) the spiral-bench task and Problem are rebuilt from the doc, so problem ids, and with
  them every derived seed, equal spiral-bench's own; for any other lm-eval task the model_args
  `task=NAME` names the spiral-bench task whose extract/canonical/aggregation prompt are used
  (problem id "<lm-eval task>/<doc_id>", no gold answer, so `parallel` is refused there).
- the prompt of every trace is the request's context (lm-eval's text, chat template and few-shot
  included); aggregation prompts put that context where the task's template has {question}.
  For our tasks without few-shot or chat template the context equals task.prompt(problem).
- requests are grouped by (lm-eval task, repeat index, sampling config) and each group is ONE
  `run_scaffold` call (batched across problems). lm-eval clones a request `repeats` times;
  repeat r of a doc runs with scaffold seed `seed` for r = 0 and `derive_seed(seed, "lm_eval_repeat", r)`
  for r > 0, so the 8 repeats of a `_k8` task are independent runs and repeat 0 equals
  spiral-bench's run with the same seed.
- the text returned to lm-eval (cut before the first `until` string, lm-eval's convention) is the
  scaffold's final answer trace: single -> the trace; parallel -> the first trace with the highest
  reward; majority -> the first trace carrying the winning answer; aggregate -> the aggregation
  trace; rsa -> the first member of the final population carrying the final majority answer.
  So lm-eval's score equals the ScaffoldRecord's `correct` for single/parallel/majority/aggregate
  and its `majority_correct` for rsa (population accuracy, RSA's pass@1, is not one text).
Log-likelihood requests raise NotImplementedError: this model type only generates.
"""
from __future__ import annotations

import dataclasses
import json
import logging
from collections import Counter
from typing import Any

import lm_eval.models  # noqa: F401  lm-eval's own models first: it imports them only while its registry is empty
from lm_eval.api.model import LM
from lm_eval.api.registry import register_model

from spiral_bench.backends.base import SamplingConfig, derive_seed
from spiral_bench.config import ConfigError, build, option
from spiral_bench.scaffolds import SCAFFOLD_NAMES, ScaffoldConfig, run_scaffold

ONLY_GENERATES = ("the `spiral` lm-eval model type only generates (generate_until tasks); it cannot "
                  "score {kind} requests. Use --model hf for log-likelihood / multiple-choice tasks.")
_SCAFFOLD_KEYS = ("n", "set_size", "population", "subset", "steps", "template", "seed")
_IGNORED_LM_EVAL_KEYS = ("batch_size", "max_batch_size", "trust_remote_code")


@dataclasses.dataclass(frozen=True)
class SpiralModelConfig:
    """model_args of `--model spiral`."""

    pretrained: str | None = option(None, help="Model: local directory, hub id, or tiny preset (tiny, "
                                          "tiny-1m, ...); required unless built with `with_backend`.")
    scaffold: str = option("single", help="Scaffold run for every generate_until request.",
                           choices=SCAFFOLD_NAMES)
    n: int = option(1, help="parallel/majority/aggregate: search traces per problem.", min=1)
    set_size: int = option(4, help="aggregate: candidates shown to the aggregation trace.", min=1)
    population: int = option(8, help="rsa: population size N.", min=1)
    subset: int = option(4, help="rsa: candidates K per aggregation.", min=1)
    steps: int = option(1, help="rsa: aggregation steps T.", min=0)
    template: str | None = option(None, help="Aggregation prompt template; None = the task's.")
    seed: int = option(0, help="Scaffold run seed (repeat r > 0 of a doc derives its own).")
    task: str | None = option(None, help="spiral-bench task for extraction/aggregation of non-spiral "
                                         "lm-eval tasks (spiral_* docs carry their own).")
    dtype: str = option("float32", help="Model dtype: float32, bfloat16, float16.")
    device: str | None = option(None, help="torch device; None: cuda if available, else cpu.")
    gen_batch_size: int = option(256, help="Sequences decoded together.", min=1)
    temperature: float | None = option(None, help="Overrides the request's temperature when set.", min=0.0)
    default_max_gen_toks: int = option(256, help="Token budget when a request gives no max_gen_toks.",
                                       min=1)

    def scaffold_config(self) -> ScaffoldConfig:
        return build(ScaffoldConfig, {"name": self.scaffold,
                                      **{k: getattr(self, k) for k in _SCAFFOLD_KEYS}})


class ContextTask:
    """A task seen through lm-eval: prompt(problem) is the request's context; everything else
    (extract, canonical, reward, templates, aggregation_prompt's logic) is the wrapped task's."""

    def __init__(self, task, contexts: dict[str, str]):
        self._task, self._contexts = task, contexts

    def __getattr__(self, name: str):
        return getattr(self._task, name)

    def prompt(self, problem) -> str:
        return self._contexts[problem.id]

    def aggregation_prompt(self, problem, candidates, truncated=None, template=None) -> str:
        # the wrapped class's method, with `self.prompt` answering the context
        return type(self._task).aggregation_prompt(self, problem, candidates, truncated, template)


class LastCall:
    """Backend wrapper keeping the outputs of the latest `generate` call (the final layer)."""

    def __init__(self, backend):
        self.backend, self.last = backend, None

    def generate(self, requests, sampling, progress: bool = False):
        self.last = self.backend.generate(requests, sampling, progress=progress)
        return self.last

    def model_info(self) -> dict:
        return self.backend.model_info()


def cut_at_until(text: str, until) -> str:
    """lm-eval's convention: the text before the first occurrence of any stop string."""
    cut = len(text)
    for s in until or ():
        k = text.find(s) if s else -1
        if k >= 0:
            cut = min(cut, k)
    return text[:cut]


def final_trace_index(scaffold: str, task, record, n_final: int) -> int:
    """Index, in the final layer, of the trace whose text stands for the scaffold's answer."""
    last = record.steps[-1] if record.steps else {}
    if scaffold == "parallel":
        rewards = last.get("rewards") or [0.0] * n_final
        return max(range(len(rewards)), key=lambda j: (rewards[j], -j))
    if scaffold in ("majority", "rsa") and record.answer is not None:
        key = task.canonical(record.answer)
        for j, a in enumerate(last.get("answers") or []):
            if a is not None and task.canonical(a) == key:
                return j
    return 0


def sampling_from_gen_kwargs(gen_kwargs: dict, cfg: SpiralModelConfig) -> SamplingConfig:
    """SamplingConfig of one request (rules in the module docstring); unknown keys are ignored."""
    g = dict(gen_kwargs or {})
    until = g.get("until") or []
    until = [until] if isinstance(until, str) else list(until)
    if cfg.temperature is not None:
        temperature = cfg.temperature
    elif g.get("do_sample") is False:
        temperature = 0.0
    else:
        temperature = float(g.get("temperature", 1.0 if g.get("do_sample") else 0.0))
    spec: dict[str, Any] = {"temperature": temperature, "stop": tuple(until),
                            "max_new_tokens": int(g.get("max_gen_toks") or cfg.default_max_gen_toks),
                            "batch_size": cfg.gen_batch_size}
    if g.get("top_p") is not None:
        spec["top_p"] = float(g["top_p"])
    if g.get("top_k") is not None:
        spec["top_k"] = int(g["top_k"])
    return build(SamplingConfig, spec)


def make_backend(pretrained: str, device: str, dtype: str):
    """The hf backend `spiral-bench eval` uses (`spiral_bench.evaluate.make_backend`: the
    backends factory when present, else `sampling.Sampler` over `models.load_model`)."""
    from spiral_bench.evaluate import make_backend as eval_backend
    from spiral_bench.models import resolve_model
    return eval_backend(resolve_model(pretrained), device=device, dtype=dtype)


@register_model("spiral")
class SpiralLM(LM):
    """lm-eval model type `spiral` (see the module docstring)."""

    def __init__(self, **model_args):
        super().__init__()
        self._configure(model_args)
        if self.cfg.pretrained is None:
            raise ConfigError("--model spiral needs model_args pretrained=PATH (a local model directory, "
                              "hub id or tiny preset)")
        import torch

        device = self.cfg.device or ("cuda" if torch.cuda.is_available() else "cpu")
        if device.startswith("cuda") and not torch.cuda.is_available():
            # lm-eval's CLI passes --device (default cuda) to every model; fall back like `hf` does
            logging.getLogger(__name__).warning("device %r is not available; using cpu", device)
            device = "cpu"
        self.backend = make_backend(self.cfg.pretrained, device, self.cfg.dtype)
        self._tokenizer = getattr(self.backend, "tokenizer", None)
        self._device = device

    @classmethod
    def with_backend(cls, backend, tokenizer=None, **model_args) -> "SpiralLM":
        """A `spiral` LM over any spiral-bench backend (vllm, a scripted test policy, ...), for
        `lm_eval.simple_evaluate(model=SpiralLM.with_backend(b, scaffold="rsa", ...), ...)`."""
        self = cls.__new__(cls)
        LM.__init__(self)
        self._configure(model_args)
        self._tokenizer, self.backend, self._device = tokenizer, backend, "cpu"
        return self

    def _configure(self, model_args: dict) -> None:
        args = {k: v for k, v in model_args.items() if k not in _IGNORED_LM_EVAL_KEYS}
        for k in ("pretrained", "task", "device", "dtype", "template"):
            if args.get(k) is not None:
                args[k] = str(args[k])
        self.cfg = build(SpiralModelConfig, args, prefix="model_args.")
        self.scaffold_cfg = self.cfg.scaffold_config()
        if self.cfg.task is not None:
            from spiral_bench.lm_eval.hooks import get_spiral_task
            self._fallback_task = get_spiral_task(self.cfg.task)
        else:
            self._fallback_task = None

    # ------------------------------------------------------------------ lm-eval interface
    def loglikelihood(self, requests, disable_tqdm: bool = False):
        raise NotImplementedError(ONLY_GENERATES.format(kind="loglikelihood"))

    def loglikelihood_rolling(self, requests, disable_tqdm: bool = False):
        raise NotImplementedError(ONLY_GENERATES.format(kind="loglikelihood_rolling"))

    @property
    def device(self):
        return self._device

    @property
    def tokenizer(self):
        """The model's tokenizer (for chat templates), loaded on first use if the backend has none."""
        if self._tokenizer is None and self.cfg.pretrained is not None:
            from transformers import AutoTokenizer

            from spiral_bench.models import resolve_model
            self._tokenizer = AutoTokenizer.from_pretrained(resolve_model(self.cfg.pretrained))
        return self._tokenizer

    @property
    def tokenizer_name(self) -> str:
        return str(getattr(self.tokenizer, "name_or_path", "spiral")).replace("/", "__")

    def chat_template(self, chat_template: bool | str = False) -> str | None:
        return getattr(self.tokenizer, "chat_template", None) or ""

    def apply_chat_template(self, chat_history: list[dict[str, str]], add_generation_prompt: bool = True) -> str:
        return self.tokenizer.apply_chat_template(
            chat_history, tokenize=False, add_generation_prompt=add_generation_prompt,
            continue_final_message=not add_generation_prompt)

    def _task_and_problem(self, req):
        """(task, task key, Problem) of a request (rules in the module docstring)."""
        from spiral_bench.lm_eval.hooks import doc_problem
        from spiral_bench.tasks.base import Problem
        doc = req.doc if isinstance(req.doc, dict) else {}
        if doc.get("spiral_task") and "id" in doc:
            task, problem = doc_problem(doc)
            return task, (doc["spiral_task"], doc.get("spiral_options") or "{}"), problem
        if self._fallback_task is None:
            raise ConfigError(
                f"lm-eval task {req.task_name!r} is not a spiral_* task: pass model_args task=NAME "
                f"(a spiral-bench task: arithmetic, countdown, gsm8k, math500, aime24, aime25) so the "
                f"{self.cfg.scaffold!r} scaffold can extract and aggregate its answers")
        if self.cfg.scaffold == "parallel":
            raise ConfigError(f"scaffold 'parallel' picks the trace with the highest reward and needs gold "
                              f"answers; lm-eval task {req.task_name!r} does not give them to the model")
        pid = f"{req.task_name}/{req.doc_id}" + (f"/{req.idx}" if req.idx else "")
        return self._fallback_task, (self.cfg.task, "{}"), Problem(pid, req.args[0], "")

    def generate_until(self, requests, disable_tqdm: bool = False) -> list[str]:
        out: list[str | None] = [None] * len(requests)
        seen: Counter = Counter()
        groups: dict[tuple, list] = {}
        tasks: dict[tuple, Any] = {}
        for i, req in enumerate(requests):
            context, gen_kwargs = req.args[0], (req.args[1] if len(req.args) > 1 else {})
            r = seen[(req.task_name, req.doc_id, req.idx)]
            seen[(req.task_name, req.doc_id, req.idx)] += 1
            task, tkey, problem = self._task_and_problem(req)
            sampling = sampling_from_gen_kwargs(gen_kwargs, self.cfg)
            until = tuple(sampling.stop)
            key = (req.task_name, r, tkey, sampling)
            tasks[key] = task
            groups.setdefault(key, []).append((i, problem, context, until, gen_kwargs))
        for key, items in groups.items():
            task_name, r, _, sampling = key
            ids = [p.id for _, p, _, _, _ in items]
            if len(set(ids)) != len(ids):
                raise ValueError(f"lm-eval task {task_name!r}: duplicate problem ids in one batch: "
                                 f"{[k for k, c in Counter(ids).items() if c > 1][:3]}")
            seed = self.scaffold_cfg.seed if r == 0 else derive_seed(self.scaffold_cfg.seed, "lm_eval_repeat", r)
            scfg = dataclasses.replace(self.scaffold_cfg, seed=seed)
            view = ContextTask(tasks[key], {p.id: ctx for _, p, ctx, _, _ in items})
            rec = LastCall(self.backend)
            problems = [p for _, p, _, _, _ in items]
            records = run_scaffold(scfg, rec, view, problems, sampling, progress=not disable_tqdm)
            flat = [s for req_samples in rec.last for s in req_samples]
            per = len(flat) // len(problems)
            for b, ((i, _, ctx, until, gen_kwargs), record) in enumerate(zip(items, records)):
                pool = flat[b * per:(b + 1) * per]
                j = final_trace_index(scfg.name, view, record, len(pool))
                text = cut_at_until(pool[j].text, until)
                out[i] = text
                self.cache_hook.add_partial("generate_until", (ctx, gen_kwargs), text)
        return out  # type: ignore[return-value]

    def get_model_info(self) -> dict:
        return {"spiral_model_args": json.loads(json.dumps(dataclasses.asdict(self.cfg), default=str))}
