"""The `spiral-bench` command line: one subcommand per job, each a thin wrapper over the library.

    spiral-bench tasks list
    spiral-bench tasks show TASK [--n N] [--split S] [--data-dir DIR] [--opt key=value ...]
    spiral-bench sample --task T --model M [--n N] [--max-new-tokens L] ...
    spiral-bench analyze FILE.jsonl --out DIR

Heavy imports (torch, transformers) happen inside the subcommand that needs them, so
`spiral-bench --help` is fast. Errors a user can fix (bad config, unknown task, missing files)
print one line `error: ...` and exit with status 2, never a traceback.
"""
from __future__ import annotations

import argparse
import json
import sys

from .config import ConfigError, parse_override


def _task_options(pairs: list[str] | None, data_dir: str | None = None) -> dict:
    opts = dict(parse_override(p) for p in (pairs or []))
    if data_dir:
        opts["data_dir"] = data_dir
    return opts


def cmd_tasks(args) -> int:
    from spiral_bench.tasks import get_task, list_tasks

    if args.tasks_cmd == "list":
        for name in list_tasks():
            t = get_task(name)
            kind = "procedural" if t.procedural else "dataset"
            print(f"{name:12s} {kind:10s} {(t.__doc__ or '').strip().splitlines()[0]}")
        return 0
    task = get_task(args.task, **_task_options(args.opt, args.data_dir))
    for p in task.problems(args.split, n=args.n, seed=args.seed):
        print(f"=== {p.id}")
        print(f"prompt:    {task.prompt(p)!r}")
        print(f"reference: {task.reference(p)}")
        if task.procedural:
            trace = task.gold_trace(p)
            print(f"gold trace: {trace!r}  (reward {task.reward(p, trace):.0f})")
    return 0


def cmd_analyze(args) -> int:
    from .analyze import analyze_file

    summary = analyze_file(args.file, args.out, B=args.bootstrap, seed=args.seed)
    for method, m in summary["methods"].items():
        ks = sorted(m["pass@k"], key=int)
        row = ", ".join(f"pass@{k}={m['pass@k'][k]['mean']:.3f}" for k in (ks[0], ks[-1]))
        print(f"{method}: {m['n_problems']} problems, {row}")
    for c in summary["comparisons"]:
        mm = c["multiplier_max"]
        if mm["value"] is not None:
            lb = ">=" if mm["censored"] else "="
            print(f"{c['method']} vs {c['baseline']} ({c['metric']}): multiplier_max {lb} "
                  f"{mm['value']:.2f} [{mm['ci'][0]}, {mm['ci'][1]}]")
    print(f"wrote {args.out}/summary.json")
    return 0


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="spiral-bench",
        description="Train SPIRAL and GRPO side by side and measure them across sequential, "
                    "parallel and aggregative inference compute.")
    sub = ap.add_subparsers(dest="cmd", required=True)

    t = sub.add_parser("tasks", help="list task families or show problems, prompts and gold answers")
    tsub = t.add_subparsers(dest="tasks_cmd", required=True)
    tsub.add_parser("list", help="list registered tasks")
    show = tsub.add_parser("show", help="print problems, prompts, gold answers (and gold traces)")
    show.add_argument("task")
    show.add_argument("--n", type=int, default=3, help="number of problems (default 3)")
    show.add_argument("--split", default="test")
    show.add_argument("--seed", type=int, default=0)
    show.add_argument("--data-dir", default=None, help="local data folder (layout of shared/data); "
                      "default $SPIRAL_BENCH_DATA, else the hub")
    show.add_argument("--opt", action="append", metavar="KEY=VALUE", help="task option, e.g. n_ops=3")
    t.set_defaults(func=cmd_tasks)

    a = sub.add_parser("analyze", help="pass@k, maj@k, multipliers with bootstrap CIs from a samples "
                       "JSONL made by any engine")
    a.add_argument("file", help="JSONL: problem_id, sample_id, correct, [method, answer, "
                   "prompt_tokens, completion_tokens]")
    a.add_argument("--out", required=True, help="output folder (summary.json)")
    a.add_argument("--bootstrap", type=int, default=2000, help="bootstrap resamples (default 2000)")
    a.add_argument("--seed", type=int, default=0)
    a.set_defaults(func=cmd_analyze)
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args) or 0
    except (ConfigError, ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
