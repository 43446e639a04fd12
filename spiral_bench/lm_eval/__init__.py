"""lm-evaluation-harness integration: task YAMLs, hooks, and the `spiral` model type.

Both directions (lm-eval 0.4.x):
- spiral-bench's tasks in lm-eval: the YAMLs in this folder (`spiral_arithmetic`, `spiral_countdown`,
  `spiral_gsm8k`, `spiral_math500`, `spiral_aime24`, `spiral_aime25`, each also `_k8`; tags
  `spiral` and `spiral_k8`) are found through `--include_path $(spiral-bench lm-eval-path)` or
  `task_manager()`; data and scoring come from `hooks.py`.
- lm-eval's tasks through spiral-bench's scaffolds: importing this package registers the lm-eval
  model type `spiral` (`model.SpiralLM`); `run_cli(argv)` (`spiral-bench lm-eval ARGS...`) runs
  lm-eval's own CLI with that model type registered and our include path added.

API:
    include_path() -> str                    the folder holding the task YAMLs
    task_manager(extra_include=None, **kw)    lm_eval.tasks.TaskManager including it (validated)
    validate_tasks(path=None, strict=True)    {task name: YAML file}; SpiralTaskError names both
    sample_tasks(n, folder=None) -> str        write spiral_<task>_k<n> YAMLs (n samples per problem)
    cli_path(samples=None) -> int             body of `spiral-bench lm-eval-path [--samples N]`
    run_cli(argv) -> int                      body of `spiral-bench lm-eval ARGS...`

lm-eval skips a YAML it cannot load and later says only "Tasks not found"; `task_manager()` and
`run_cli` load our YAMLs first with lm-eval's own loader and raise SpiralTaskError naming the task
and the file, and `run_cli` checks the data directory of every requested dataset task up front.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from .hooks import SpiralTaskError, check_data
from . import model as _model  # noqa: F401  registers the `spiral` lm-eval model type

__all__ = ["SpiralTaskError", "include_path", "task_manager", "validate_tasks", "sample_tasks", "cli_path",
           "run_cli"]

_HERE = Path(__file__).resolve().parent
_REQUIRED = ("custom_dataset", "process_results", "generation_kwargs", "dataset_kwargs")


def include_path() -> str:
    """Absolute path of the folder holding the `spiral_*` task YAMLs (for --include_path)."""
    return str(_HERE)


def _task_yamls(path: Path):
    return sorted(p for p in path.rglob("*.yaml")
                  if not p.name.startswith("_") and "__pycache__" not in p.parts)


def _load(p: Path) -> dict:
    from lm_eval.tasks._yaml_loader import load_yaml
    return load_yaml(p, resolve_func=True)


def validate_tasks(path: str | os.PathLike | None = None, strict: bool = True) -> dict[str, str]:
    """Load every task YAML under `path` (default: ours) with lm-eval's loader, `!function`s
    resolved. Returns {task name: file}. strict (our folder): a file that fails to load, is not
    named after its task, or lacks custom_dataset / process_results / generation_kwargs with
    max_gen_toks and until raises SpiralTaskError naming the task and the file."""
    root = Path(path) if path is not None else _HERE
    found: dict[str, str] = {}
    for p in _task_yamls(root):
        try:
            cfg = _load(p)
        except Exception as e:  # noqa: BLE001 - reported with the task and the file
            if strict:
                raise SpiralTaskError(f"lm-eval task {p.stem!r}: cannot load {p}: {type(e).__name__}: {e}") from e
            continue
        name = cfg.get("task") if isinstance(cfg, dict) else None
        if not isinstance(name, str):
            if strict:
                raise SpiralTaskError(f"lm-eval task {p.stem!r}: {p} has no `task:` name")
            continue
        found[name] = str(p)
        if not strict:
            continue
        if name != p.stem:
            raise SpiralTaskError(f"lm-eval task {name!r}: defined in {p}, expected a file named {name}.yaml")
        missing = [k for k in _REQUIRED if not cfg.get(k)]
        gk = cfg.get("generation_kwargs") or {}
        missing += [f"generation_kwargs.{k}" for k in ("max_gen_toks", "until") if k not in gk]
        if not callable(cfg.get("custom_dataset")) or not callable(cfg.get("process_results")):
            missing.append("custom_dataset/process_results as !function")
        if missing:
            raise SpiralTaskError(f"lm-eval task {name!r}: {p} lacks {', '.join(missing)}")
    return found


def task_manager(extra_include=None, **kwargs):
    """A `lm_eval.tasks.TaskManager` that includes our task folder (validated first) and
    `extra_include` (a path or list of paths); kwargs go to TaskManager (e.g. metadata)."""
    from lm_eval.tasks import TaskManager
    validate_tasks()
    extra = [] if extra_include is None else (
        list(extra_include) if isinstance(extra_include, (list, tuple)) else [extra_include])
    return TaskManager(include_path=[include_path(), *map(str, extra)], **kwargs)


def sample_tasks(n: int, folder: str | os.PathLike | None = None) -> str:
    """Write one task YAML `spiral_<task>_k<n>` per `_k8` task (same data, prompts, stop strings,
    token budget and temperature; repeats n, a take_first_k k=n filter, metrics exact_match per
    sample, pass@1, pass@n, maj@n; tag spiral_k<n>) into `folder` (default
    $SPIRAL_BENCH_CACHE/lm_eval_tasks/k<n>, else ~/.cache/spiral_bench/lm_eval_tasks/k<n>).
    Each includes our `_spiral_k8.yaml` by absolute path. Returns the folder (for --include_path)."""
    import yaml

    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise SpiralTaskError(f"number of samples must be an integer >= 1, got {n!r}")
    if folder is None:
        root = os.environ.get("SPIRAL_BENCH_CACHE") or os.path.join(Path.home(), ".cache", "spiral_bench")
        folder = os.path.join(root, "lm_eval_tasks", f"k{n}")
    os.makedirs(folder, exist_ok=True)
    for name, file in validate_tasks().items():
        if not name.endswith("_k8"):
            continue
        with open(file, encoding="utf-8") as f:
            cfg = yaml.safe_load(f)  # task YAMLs hold no !function tags (those live in _spiral_*.yaml)
        new = f"{name[:-3]}_k{n}"
        dk = {**cfg["dataset_kwargs"], "spiral_name": new}
        metrics = [("exact_match", "!function spiral_bench.lm_eval.hooks.mean_of_samples")] + [
            (m, "mean") for m in dict.fromkeys(["pass@1", f"pass@{n}", f"maj@{n}"])]
        text = "\n".join([
            f"# {new}: {name} with {n} samples per problem (written by spiral_bench.lm_eval.sample_tasks)",
            f"include: {json.dumps(os.path.join(include_path(), '_spiral_k8.yaml'))}",
            f"task: {new}", f"tag: spiral_k{n}", f"repeats: {n}",
            "filter_list:", "  - name: all", "    filter:", "      - function: take_first_k", f"        k: {n}",
            "metric_list:", *[f"  - {{metric: {json.dumps(m)}, aggregation: {a}, higher_is_better: true}}"
                              for m, a in metrics],
            f"dataset_kwargs: {json.dumps(dk)}", f"generation_kwargs: {json.dumps(cfg['generation_kwargs'])}", ""])
        tmp = os.path.join(folder, f".{new}.yaml.tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, os.path.join(folder, f"{new}.yaml"))
    validate_tasks(folder)
    return str(folder)


def cli_path(samples: int | None = None) -> int:
    """`spiral-bench lm-eval-path [--samples N]`: print the include path (with --samples, the folder
    of the spiral_<task>_k<N> tasks written by `sample_tasks`)."""
    try:
        print(include_path() if samples is None else sample_tasks(samples))
    except SpiralTaskError as e:
        print(f"spiral-bench lm-eval-path: error: {e}", file=sys.stderr)
        return 2
    return 0


# ------------------------------------------------------------------------------------ CLI
def _our_tasks() -> tuple[dict[str, dict], dict[str, list[str]]]:
    """{task: cfg} of our YAMLs and {tag: [tasks]}."""
    cfgs: dict[str, dict] = {}
    tags: dict[str, list[str]] = {}
    for name, file in validate_tasks().items():
        cfg = _load(Path(file))
        cfgs[name] = cfg
        tag = cfg.get("tag") or []
        for t in [tag] if isinstance(tag, str) else tag:
            tags.setdefault(t, []).append(name)
    return cfgs, tags


def _broken_yamls(paths) -> dict[str, str]:
    """{file: error} for YAMLs under the user's include paths that lm-eval would skip."""
    bad: dict[str, str] = {}
    for root in paths:
        if not Path(root).is_dir():
            continue
        for p in _task_yamls(Path(root)):
            try:
                _load(p)
            except Exception as e:  # noqa: BLE001
                bad[str(p)] = f"{type(e).__name__}: {e}"
    return bad


def precheck(tasks: list[str], user_paths: list[str], data_dir: str | None = None) -> None:
    """Before lm-eval runs: our YAMLs load, requested spiral_* tasks exist, their data is there,
    and a requested task that only a broken YAML of the user's include path could define is
    reported with that file. Raises SpiralTaskError."""
    ours, tags = _our_tasks()
    user_tasks = set()
    for root in user_paths:
        if Path(root).is_dir():
            for name, file in validate_tasks(root, strict=False).items():
                tag = _load(Path(file)).get("tag") or []
                user_tasks |= {name, *([tag] if isinstance(tag, str) else tag)}  # tasks and tags
    bad = _broken_yamls(user_paths)
    for name in tasks:
        if name.endswith(".yaml") or Path(name).is_dir():
            continue
        for t in tags.get(name, [name]):
            if t in user_tasks:
                continue
            if t in ours:
                dk = ours[t].get("dataset_kwargs") or {}
                check_data(t, dk.get("spiral_task", ""), dk.get("spiral_split", "test"), data_dir,
                           os.path.join(include_path(), f"{t}.yaml"))
                continue
            suspects = [f for f in bad if Path(f).stem == t or _mentions(f, t)]
            if suspects:
                raise SpiralTaskError(f"lm-eval task {t!r}: its YAML failed to load: "
                                      + "; ".join(f"{f}: {bad[f]}" for f in suspects))
            if t.startswith("spiral_"):
                raise SpiralTaskError(f"lm-eval task {t!r}: no such task in {include_path()} "
                                      f"(known: {', '.join(sorted(ours))})")


def _mentions(file: str, name: str) -> bool:
    try:
        text = Path(file).read_text(errors="replace")
    except OSError:
        return False
    return any(line.split(":", 1)[-1].strip().strip("'\"") == name
               for line in text.splitlines() if line.strip().startswith("task:"))


def run_cli(argv: list[str]) -> int:
    """`spiral-bench lm-eval ARGS...`: lm-eval's own CLI (same flags and subcommands: run, ls,
    validate; no subcommand means run) with our task folder added to --include_path and the
    `spiral` model type registered. Returns the exit status (2 for a SpiralTaskError)."""
    from lm_eval._cli import HarnessCLI
    from lm_eval.utils import setup_logging

    setup_logging()
    cli = HarnessCLI()
    saved = sys.argv
    sys.argv = ["lm-eval", *map(str, argv)]
    try:
        args = cli.parse_args()  # lm-eval's parser, including its legacy "insert run" rule
    except SystemExit as e:
        return int(e.code or 0) if not isinstance(e.code, str) else 2
    finally:
        sys.argv = saved
    if hasattr(args, "include_path"):
        user = [args.include_path] if args.include_path else []
        try:
            if getattr(args, "command", None) in ("run", "validate") and getattr(args, "tasks", None):
                tasks = args.tasks if isinstance(args.tasks, list) else str(args.tasks).split(",")
                tasks = [t for item in tasks for t in str(item).split(",") if t]
                meta = getattr(args, "metadata", None) or {}
                precheck(tasks, user, meta.get("spiral_data_dir") if isinstance(meta, dict) else None)
            else:
                validate_tasks()
        except SpiralTaskError as e:
            print(f"spiral-bench lm-eval: error: {e}", file=sys.stderr)
            return 2
        args.include_path = [include_path(), *user]
    try:
        cli.execute(args)
    except SystemExit as e:
        return int(e.code or 0) if not isinstance(e.code, str) else 2
    return 0
