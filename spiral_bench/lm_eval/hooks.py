"""lm-eval hooks of the `spiral_*` task YAMLs: the dataset builder and the scorers.

Referenced from the YAMLs as `!function spiral_bench.lm_eval.hooks.<name>` (an ordinary import,
so one module instance and one task cache serve every YAML).

`load_dataset(**kwargs)` (lm-eval's `custom_dataset`): lm-eval calls it with the task's
`metadata` (which includes the run's model_args and `--metadata`) merged with its
`dataset_kwargs`. We read only the `spiral_*` keys of `dataset_kwargs`:
    spiral_name     the lm-eval task name (for error messages; the YAML is <include path>/<name>.yaml)
    spiral_task     the spiral-bench task (`spiral_bench.tasks.get_task` name)
    spiral_options  dict of task options (default {})
    spiral_split    problem split (default "test");  spiral_n: how many (None = the task's default)
    spiral_seed     `problems(seed=...)` (default 0: file order for dataset tasks)
and, from `--metadata`, `spiral_data_dir` (else $SPIRAL_BENCH_DATA) for the dataset tasks
(gsm8k, math500, aime24, aime25) that need `requires_data`. It returns a `datasets.DatasetDict`
{split: rows}, one row per problem: id, question, answer, prompt (= task.prompt(problem), the
lm-eval `doc_to_text`), meta (JSON of problem.meta), spiral_task, spiral_options (JSON).
The `spiral` lm-eval model type rebuilds the Problem and Task from these columns.

Scoring (rewards r_i = task.reward(problem, completion_i) in [0, 1], keys
a_i = task.canonical(task.extract(completion_i)), None = no answer). The single-sample metric is
named `exact_match`, as in lm-eval's math tasks:
- `process_results(doc, [completion])` -> {"exact_match": r}
- `process_results_samples(doc, [[c_1..c_n]])` (repeats n, a filter keeping all n; any n >= 1) ->
    exact_match = [r_1, ..., r_n]  (one value per sample, in repeat order; aggregated over docs
                                    by `mean_of_samples`: the mean over all samples = pass@1)
    pass@1 = mean_i r_i;  pass@n = max_i r_i (both `estimators.pass_at_k_pool`, exact over subsets);
    maj@n = plurality vote over the a_i, ties split uniformly (`estimators.maj_at_k_single`,
    the expectation over the tie draw; an answer scores the mean r_i of its samples).
  `process_results_k8` is the same with n = 8 required.
Every metric lies in [0, 1]; lm-eval averages pass@1, pass@n and maj@n over documents.
`spiral-bench analyze` reads the per-sample exact_match lists of lm-eval's --log_samples files.
"""
from __future__ import annotations

import functools
import json
import os
from pathlib import Path

HERE = Path(__file__).resolve().parent
DATA_ENV = "SPIRAL_BENCH_DATA"


class SpiralTaskError(ValueError):
    """A `spiral_*` lm-eval task cannot be built; the message names the task and the file."""


def yaml_path(name: str | None, root: str | os.PathLike | None = None) -> str:
    """Where the YAML of lm-eval task `name` lives (our convention: <root>/<name>.yaml)."""
    return str(Path(root or HERE) / f"{name or 'spiral_<task>'}.yaml")


@functools.lru_cache(maxsize=64)
def _task(name: str, options_json: str):
    from spiral_bench.tasks import get_task
    return get_task(name, **json.loads(options_json))


def get_spiral_task(name: str, options: dict | None = None):
    """The spiral-bench Task (cached per name and options)."""
    return _task(name, json.dumps(options or {}, sort_keys=True))


def data_file(spiral_task: str, split: str, data_dir: str) -> str | None:
    """The file a dataset task reads for `split` under `data_dir`, or None (procedural task)."""
    from spiral_bench.tasks.base import _REGISTRY
    cls = _REGISTRY.get(spiral_task)
    files = getattr(cls, "files", None) or {}
    return os.path.join(data_dir, files[split]) if split in files else None


def requires_data(spiral_task: str) -> bool:
    from spiral_bench.tasks.base import _REGISTRY
    return bool(getattr(_REGISTRY.get(spiral_task), "files", None))


def check_data(name: str, spiral_task: str, split: str = "test", data_dir: str | None = None,
               yaml_file: str | None = None) -> str | None:
    """The data directory a dataset task will read (None for procedural tasks); raises
    SpiralTaskError naming the lm-eval task, its YAML and the missing folder or file."""
    if not requires_data(spiral_task):
        return None
    yaml_file = yaml_file or yaml_path(name)
    data_dir = data_dir or os.environ.get(DATA_ENV) or None
    if data_dir is None:
        raise SpiralTaskError(
            f"lm-eval task {name!r} ({yaml_file}): no spiral-bench data directory: set ${DATA_ENV} "
            f"(or pass --metadata spiral_data_dir=DIR) to a data folder laid out as spiral-bench's "
            "README.md, 'Data', describes")
    path = data_file(spiral_task, split, data_dir)
    if not os.path.isdir(data_dir):
        raise SpiralTaskError(f"lm-eval task {name!r} ({yaml_file}): data directory {data_dir} does not "
                              f"exist (it should hold {path})")
    if path is not None and not os.path.isfile(path):
        raise SpiralTaskError(f"lm-eval task {name!r} ({yaml_file}): data file {path} not found "
                              f"(data directory {data_dir})")
    return data_dir


def problem_rows(spiral_task: str, options: dict | None = None, split: str = "test",
                 n: int | None = None, seed: int = 0) -> list[dict]:
    """One lm-eval doc per problem (the columns listed in the module docstring)."""
    task = get_spiral_task(spiral_task, options)
    opts = json.dumps(options or {}, sort_keys=True)
    return [{"id": p.id, "question": p.question, "answer": p.answer, "prompt": task.prompt(p),
             "meta": json.dumps(p.meta, sort_keys=True, default=str), "spiral_task": spiral_task,
             "spiral_options": opts} for p in task.problems(split, n=n, seed=seed)]


def load_dataset(spiral_task: str | None = None, spiral_name: str | None = None,
                 spiral_options: dict | None = None, spiral_split: str = "test",
                 spiral_n: int | None = None, spiral_seed: int = 0,
                 spiral_data_dir: str | None = None, **_ignored):
    """lm-eval `custom_dataset` hook: a DatasetDict {spiral_split: problem rows}."""
    import datasets

    name = spiral_name or f"spiral_{spiral_task}"
    yaml_file = yaml_path(name)
    if not spiral_task:
        raise SpiralTaskError(f"lm-eval task {name!r} ({yaml_file}): dataset_kwargs lacks spiral_task")
    options = dict(spiral_options or {})
    data_dir = check_data(name, spiral_task, spiral_split, spiral_data_dir, yaml_file)
    if data_dir is not None:
        options.setdefault("data_dir", data_dir)
    try:
        rows = problem_rows(spiral_task, options, spiral_split, spiral_n, spiral_seed)
    except (FileNotFoundError, ValueError) as e:
        raise SpiralTaskError(f"lm-eval task {name!r} ({yaml_file}): {e}") from e
    return datasets.DatasetDict({spiral_split: datasets.Dataset.from_list(rows)})


# ------------------------------------------------------------------------------ scoring
def doc_problem(doc: dict):
    """(Task, Problem) of an lm-eval doc built by `load_dataset`."""
    from spiral_bench.tasks.base import Problem
    options = json.loads(doc.get("spiral_options") or "{}")
    task = get_spiral_task(doc["spiral_task"], options)
    meta = json.loads(doc["meta"]) if doc.get("meta") else {}
    return task, Problem(doc["id"], doc["question"], doc["answer"], meta)


def score(doc: dict, completions: list[str]) -> tuple[list[float], list[str | None]]:
    """Rewards and majority-vote keys of completions of one doc."""
    task, problem = doc_problem(doc)
    rewards = [float(task.reward(problem, c)) for c in completions]
    keys = [task.canonical(task.extract(c)) for c in completions]
    return rewards, keys


def process_results(doc: dict, results: list) -> dict:
    """One completion per doc: {"exact_match": reward}."""
    rewards, _ = score(doc, [results[0]])
    return {"exact_match": rewards[0]}


def pool_metrics(rewards: list[float], keys: list, k: int) -> dict:
    """pass@1, pass@k, maj@k of one pool of n >= k samples (see the module docstring)."""
    import numpy as np

    from spiral_bench.estimators import maj_at_k_single, pass_at_k_pool
    ks = sorted({1, k})
    passes = pass_at_k_pool(np.asarray([rewards], dtype=float), ks)[0]
    out = {f"pass@{kk}": float(v) for kk, v in zip(ks, passes)}
    out[f"maj@{k}"] = float(maj_at_k_single(keys, rewards, k)[0])
    return out


def process_results_samples(doc: dict, results: list) -> dict:
    """results = [[c_1..c_n]] (repeats n, a filter keeping all n): exact_match per sample, pass@1,
    pass@n, maj@n (module docstring)."""
    completions = results[0]
    if isinstance(completions, str):
        raise SpiralTaskError(f"lm-eval task for doc {doc.get('id')!r}: process_results_samples needs all "
                              f"repeats of a doc (a take_first_k filter with k = repeats), got one string")
    rewards, keys = score(doc, list(completions))
    return {"exact_match": rewards, **pool_metrics(rewards, keys, len(rewards))}


def process_results_k8(doc: dict, results: list) -> dict:
    """results = [[c_1..c_8]] (repeats 8, `take_first_k` k=8): exact_match per sample, pass@1,
    pass@8, maj@8."""
    completions = results[0]
    if isinstance(completions, str) or len(completions) != 8:
        got = 1 if isinstance(completions, str) else len(completions)
        raise SpiralTaskError(f"lm-eval task for doc {doc.get('id')!r}: process_results_k8 needs the 8 "
                              f"repeats of a doc (repeats: 8 and a take_first_k k=8 filter), got {got}")
    return process_results_samples(doc, results)


def mean_of_samples(items: list) -> float:
    """lm-eval aggregation of per-doc lists of per-sample values: the mean over all samples."""
    flat = [float(v) for item in items for v in (item if isinstance(item, (list, tuple)) else [item])]
    return sum(flat) / len(flat) if flat else float("nan")
