"""The main job, `spiral-bench run`: base model -> GRPO and SPIRAL training -> budget-grid sweep of
every checkpoint -> statistics -> report, in one resumable run folder.

Stages (each resumes after a kill, because each underlying step does):
1. `base`: the starting checkpoint. `model: tiny` (or a tiny preset name) = the shared SFT base,
   trained once and cached by the hash of its config (`trainers.sft.ensure_sft_base`); any other
   model (a local path or hub id) is used as given.
2. `train_<method>` for the requested method(s) (comma-separated: spiral, grpo, grsp, lcpo) and,
   unless `baseline: false`, the matched GRPO baseline; with `train_seeds: N > 1`, N independent runs per method from the same base, run i
   with TrainConfig.seed = seed + i (data order, sampling and LoRA init all follow it), staged and
   linked as `<method>` (i = 0) and `<method>-run<i>`. Training runs live in
   `<out>/train/<method>-<config hash>/` (shared by every run under the same results root, so an
   identical config is trained once and reused); the run folder links to them as `train/<label>`.
   Matched compute (`check_pairing`, `tolerance`, on the training config's `matched_by`: the
   max-token budget per prompt, checked before training, or the logged generated tokens per
   prompt, checked after) for every run i of each compared method against run i of grpo: refused
   unless `allow_unmatched`; the manifest's "pairing"/"pairings" hold both measures.
3. `sweep_<label>` for labels base, grpo, spiral (and grpo-run<i>, spiral-run<i>):
   `evaluate.sweep_checkpoint` into the run's cell store (finished cells are skipped); run i is
   swept with seed + i and its cells carry train_run = i under the method's own name.
   Stages 2-3 form a dependency graph (a sweep needs its training run and the matched-compute
   gates of its pairs; sweep_base needs only the base) run by `jobs.run_jobs`: on the CPU
   `jobs` worker processes at once (default one per core, at most 4), each with cores / jobs torch
   threads; `jobs=1` runs them in this process in the order listed. The manifest lists every stage
   up front ("pending") and records the execution ("workers", "threads_per_worker", "wall_seconds").
4. `analysis`: `evaluate.analyze_cells` -> analysis.json, the two-level bootstrap over the runs
   (`seed_stats`). Baseline "grpo" when both methods ran (claims checked on spiral vs grpo), else
   "base". With one run per method the verdicts are marked provisional.
5. `report`: `report.write_report` -> report.html, report.md, figures/.

Run folder `<out>/<method>-<task>-<grid>-<hash8>/` (hash of the RunConfig, so the same command
finds the same folder and resumes it): run.yaml (the RunConfig), manifest.json (schema
`spiral-bench/run/1`: versions, git commit, hardware, seeds, config hashes, data file hashes,
models, pairing, per-stage status / wall seconds / peak RSS, reproduce commands), base/
(sft_metrics.json), train/<method> (links), the sweep (cells/, cells.parquet, work/, manifests/),
analysis.json, report.*. Stage seconds add up over attempts (a resumed stage counts both);
peak_rss_mb is the process's peak resident memory so far (ru_maxrss) when the stage ends.
"""
from __future__ import annotations

import dataclasses
import json
import os
import shlex
import time
from pathlib import Path

import yaml

from .backends.vllm_options import VLLMOptions
from .config import ConfigError, build, config_hash, option, to_dict
from .jobs import peak_rss_mb
from .manifest import Manifest, data_files, git_info, hardware, now, versions

SCHEMA = "spiral-bench/run/1"
RUN_METHODS = ("spiral", "grpo", "grsp", "lcpo", "bridge", "pmatch")


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """One `spiral-bench run`: what to train, from which base, and how to sweep it."""

    method: str = option("spiral", help="method(s) to train, comma-separated: spiral, grpo, grsp, lcpo, bridge, "
                                        "pmatch (Bridge's equal-parameter control), or both "
                                        "(= spiral); every method but grpo also trains the GRPO baseline "
                                        "unless baseline=false, and is matched against it")
    budget_grid: str = option("default", help="budget grid: preset (smoke, default, paper) or YAML path")
    task: str | None = option(None, help="task; None = the training config's task (train_tiny: arithmetic)")
    task_options: dict = option(default_factory=dict, help="task options (e.g. n_ops, data_dir) over the "
                                                           "training config's")
    model: str = option("tiny", help="'tiny' = the cached SFT base of the training config; a tiny preset "
                                     "(tiny-1m, tiny-5m, tiny-20m) = an SFT base of that size; else a path or hub id")
    train_config: str = option("train_tiny", help="training preset (train_tiny, train_paper) or YAML path")
    train_overrides: dict = option(default_factory=dict, help="TrainConfig overrides (dotted keys: sft.steps)")
    steps: int | None = option(None, min=1, help="RL steps of each method (None = the training config's)")
    seed: int = option(0, min=0, help="seed of training, sweep and bootstrap")
    baseline: bool = option(True, help="also train the matched GRPO baseline")
    tolerance: float = option(0.10, min=0.0, help="matched-compute tolerance on generated tokens per prompt")
    allow_unmatched: bool = option(False, help="compare runs whose training compute is not matched")
    backend: str = option("hf", choices=("hf", "vllm"), help="generation backend of the sweep (vllm: GPU, own env)")
    device: str = option("cpu", help="cpu or cuda: the sweep's device, and training's unless cpu (then the "
                                     "training config's device)")
    dtype: str = option("float32", choices=("float32", "bfloat16"), help="dtype of sampling in the sweep")
    bootstrap: int = option(2000, min=10, help="paired bootstrap resamples")
    chat_template: str = option("auto", help="sweep prompts through the model's chat template: auto (when "
                                "the tokenizer has one), none, or a Jinja template file")
    system_prompt: str | None = option(None, help="system message of the chat template (None: none)")
    vllm: VLLMOptions = option(default_factory=VLLMOptions, help="vllm backend engine options")
    train_seeds: int = option(3, min=1, help="independent training runs per method (seeds seed, seed+1, ...); "
                                             "the intervals resample them (two-level bootstrap); 1 = provisional "
                                             "verdicts")

    def __post_init__(self):
        self.methods()          # validates `method`

    def methods(self) -> list[str]:
        """The RL methods this run trains, the GRPO baseline first ("spiral,grsp" -> grpo, spiral, grsp)."""
        names = [m.strip() for m in self.method.split(",") if m.strip()]
        names = [x for m in names for x in (("spiral", "grpo") if m == "both" else (m,))]
        bad = [m for m in names if m not in RUN_METHODS]
        if bad or not names or len(set(names)) != len(names):
            raise ConfigError(f"method: {self.method!r}: give one or more of {list(RUN_METHODS)} (or both), "
                              "comma-separated, each once")
        if self.baseline and names != ["grpo"] and "grpo" not in names:
            names = ["grpo", *names]
        return sorted(names, key=lambda m: m != "grpo")

    def compared(self) -> list[str]:
        """The methods matched and compared against GRPO (every trained method but grpo, when grpo trains)."""
        ms = self.methods()
        return [m for m in ms if m != "grpo"] if "grpo" in ms else []


def run_hash(cfg: RunConfig, n: int = 12) -> str:
    """config_hash of the RunConfig, the fields added later left out at the value runs made before
    them had (train_seeds 1; chat_template, system_prompt, vllm at their defaults), so such a run
    keeps its folder."""
    d, default = to_dict(cfg), to_dict(RunConfig())
    for key, old in (("train_seeds", 1), ("chat_template", default["chat_template"]),
                     ("system_prompt", default["system_prompt"]), ("vllm", default["vllm"])):
        if d.get(key) == old:
            del d[key]
    return config_hash(d, n)


def engine_options_of(cfg: RunConfig) -> dict:
    """The sweep's engine options of a run (each sweep stage gets them; `cmd_run` also wraps
    `run_pipeline` in `evaluate.engine_options`)."""
    return {"chat_template": cfg.chat_template, "system_prompt": cfg.system_prompt, "vllm": cfg.vllm}


def vllm_flags(opts: VLLMOptions) -> list[str]:
    """The `spiral-bench run` flags that give these vllm options."""
    d, out = VLLMOptions(), []
    for f in ("tensor_parallel_size", "data_parallel_size", "max_model_len", "gpu_memory_utilization",
              "lora", "max_lora_rank"):
        if getattr(opts, f) != getattr(d, f):
            out += ["--" + f.replace("_", "-"), str(getattr(opts, f))]
    if not opts.enable_prefix_caching:
        out.append("--no-prefix-caching")
    out += [a for k, v in sorted(opts.engine_args.items()) for a in ("--engine-arg", f"{k}={json.dumps(v)}")]
    return out


def run_label(method: str, run: int) -> str:
    """Label of a method's training run (stage names, train/ links, cell-store folders): the method
    itself for run 0, else <method>-run<i> (as `sweep.store_label`)."""
    return method if run == 0 else f"{method}-run{run}"


def run_labels(method: str, n: int) -> list[str]:
    """Labels of a method's n training runs."""
    return [run_label(method, i) for i in range(n)]


def run_dir_for(cfg: RunConfig, out: str | os.PathLike) -> Path:
    task = next(iter(train_configs(cfg).values())).task
    return Path(out) / f"{cfg.method.replace(',', '+')}-{task}-{Path(cfg.budget_grid).stem}-{run_hash(cfg, 8)}"


def load_run_config(run_dir: str | os.PathLike) -> RunConfig:
    p = Path(run_dir) / "run.yaml"
    if not p.is_file():
        raise FileNotFoundError(f"{run_dir} is not a spiral-bench run folder (no run.yaml)")
    return build(RunConfig, yaml.safe_load(p.read_text()) or {})


def command_for(cfg: RunConfig, out: str | os.PathLike) -> str:
    """The `spiral-bench run` command line that makes exactly this RunConfig."""
    d = RunConfig()
    args = ["spiral-bench", "run", "--method", cfg.method, "--budget-grid", cfg.budget_grid]
    if cfg.task:
        args += ["--task", cfg.task]
    for k, v in sorted(cfg.task_options.items()):
        args += ["--opt", f"{k}={json.dumps(v) if not isinstance(v, str) else v}"]
    flags = {"model": "--model", "train_config": "--config", "steps": "--steps", "seed": "--seed",
             "tolerance": "--tolerance", "backend": "--backend", "device": "--device", "dtype": "--dtype",
             "bootstrap": "--bootstrap", "train_seeds": "--train-seeds", "chat_template": "--chat-template",
             "system_prompt": "--system-prompt"}
    for f, flag in flags.items():
        if getattr(cfg, f) != getattr(d, f):
            args += [flag, str(getattr(cfg, f))]
    for k, v in sorted(cfg.train_overrides.items()):
        args += ["--set", f"{k}={json.dumps(v) if not isinstance(v, str) else v}"]
    args += vllm_flags(cfg.vllm)
    if not cfg.baseline:
        args.append("--no-baseline")
    if cfg.allow_unmatched:
        args.append("--allow-unmatched")
    return shlex.join(args + ["--out", str(out)])


def _link(target: Path, link: Path) -> None:
    """link -> target (relative symlink), replacing an old link."""
    link.parent.mkdir(parents=True, exist_ok=True)
    if link.is_symlink() or link.exists():
        if link.is_symlink() and Path(os.readlink(link)) == Path(os.path.relpath(target, link.parent)):
            return
        link.unlink()
    link.symlink_to(os.path.relpath(target, link.parent), target_is_directory=True)


# ------------------------------------------------------------------------ the pipeline
def train_configs(cfg: RunConfig, run: int = 0) -> dict:
    """{method: TrainConfig} of the RL runs, from the training preset + overrides + the run's flags;
    training run `run` (0 .. train_seeds-1) has seed cfg.seed + run. With vLLM rollouts
    (rollout_backend vllm) the run's max_model_len, enable_prefix_caching and engine_args, where set,
    reach the rollout engine too (`--set vllm.KEY=VALUE` sets the rollout engine's own)."""
    from .models import is_tiny
    from .trainers.train_config import make_config

    ov = dict(cfg.train_overrides)
    if cfg.task:
        ov["task"] = cfg.task
    if cfg.task_options:
        ov["task_options"] = {**make_config(None, cfg.train_config, ov).task_options, **cfg.task_options}
    if cfg.model != "tiny":
        if is_tiny(cfg.model):
            ov.update({"model": "", "sft.model": cfg.model})
        else:
            ov["model"] = cfg.model
    if cfg.steps is not None:
        ov["steps"] = cfg.steps
    if cfg.device != "cpu":
        ov.setdefault("device", cfg.device)
    ov["seed"] = cfg.seed + run
    if make_config(None, cfg.train_config, ov).rollout_backend == "vllm":  # the run's engine options, where set
        default = VLLMOptions()
        for k in ("max_model_len", "enable_prefix_caching", "engine_args"):
            if getattr(cfg.vllm, k) != getattr(default, k):
                ov.setdefault(f"vllm.{k}", getattr(cfg.vllm, k))
    return {m: make_config(m, cfg.train_config, ov) for m in cfg.methods()}


def run_pipeline(cfg: RunConfig, out: str | os.PathLike = "results", progress: bool = True,
                 cache_dir: str | os.PathLike | None = None, run_dir: str | os.PathLike | None = None,
                 jobs: int | None = None) -> dict:
    """Run (or resume) every stage; returns the manifest. run_dir defaults to `run_dir_for(cfg, out)`;
    cache_dir: where the SFT base is cached (default $SPIRAL_BENCH_CACHE or ~/.cache/spiral_bench);
    jobs: worker processes for the trainings and sweeps (`jobs.run_jobs`; None = `default_workers`:
    one per core, at most 4, on the CPU; 1 = everything in this process). An execution choice, not
    part of the run's config or folder; the manifest records it ("execution")."""
    from . import evaluate as ev
    from .sweep import load_cells, load_grid, select_problems
    from .tasks import get_task
    from .tasks.graders import reset_grader_errors
    from transformers.utils import logging as hf_logging

    from .trainers.loop import sft_config_for, train
    from .trainers.sft import ensure_sft_base
    from .jobs import Job, default_workers, run_jobs
    from .tasks.grade_errors import add_errors

    hf_logging.disable_progress_bar()                   # our stages have their own bars
    out = Path(out)
    rd = Path(run_dir) if run_dir else run_dir_for(cfg, out)
    tcfgs = train_configs(cfg)                             # validates everything before any work
    runs = [tcfgs] + [train_configs(cfg, i) for i in range(1, cfg.train_seeds)]   # runs[i][method]
    if cfg.compared():           # a budget-matched pair is refused before any compute is spent
        from .trainers.train_config import check_pairing
        for r in runs:
            for m in cfg.compared():
                try:
                    check_pairing(r[m], r["grpo"], tolerance=cfg.tolerance, allow=cfg.allow_unmatched)
                except ValueError as e:
                    raise ConfigError(str(e)) from None
    grid = load_grid(cfg.budget_grid)
    first = next(iter(tcfgs.values()))
    task = get_task(first.task, **first.task_options)
    rd.mkdir(parents=True, exist_ok=True)
    p = rd / "run.yaml"
    text = yaml.safe_dump(to_dict(cfg), sort_keys=True)
    if p.is_file() and build(RunConfig, yaml.safe_load(p.read_text()) or {}) != cfg:
        raise ConfigError(f"{rd} holds a run with a different config (run.yaml); use another --out")
    p.write_text(text)
    sft_cfg = None if first.model else sft_config_for(first)
    git, vers = git_info(), versions()
    man = Manifest(rd / "manifest.json", {
        "schema": SCHEMA, "run": to_dict(cfg), "run_hash": run_hash(cfg), "run_dir": str(rd),
        "command": command_for(cfg, out),
        "reproduce": _reproduce_commands(cfg, out, rd, git, vers), "git": git, "versions": vers,
        "hardware": hardware(cfg.device),
        "seeds": {"run": cfg.seed, "train": cfg.seed, "sweep": cfg.seed, "bootstrap": cfg.seed,
                  "sft_init": first.sft.init_seed, "sft_data": first.sft.seed,
                  **({"train_runs": {f"run{i}": cfg.seed + i for i in range(cfg.train_seeds)}}
                     if cfg.train_seeds > 1 else {})},
        "config_hashes": {"run": run_hash(cfg), "grid": config_hash(grid),
                          **({"sft": config_hash(sft_cfg)} if sft_cfg else {}),
                          **{run_label(m, i): config_hash(c) for i, r in enumerate(runs) for m, c in r.items()}},
        "task": {"name": task.name, "options": first.task_options}, "data_files": data_files(task),
        "grid": to_dict(grid), "models": {}, "pairing": None})
    models = man.data["models"]

    with man.stage("base"):
        if sft_cfg is not None:
            base = ensure_sft_base(sft_cfg, cache_dir=cache_dir, progress=progress)
            sm = Path(base) / "sft_metrics.json"
            if sm.is_file():
                (rd / "base").mkdir(exist_ok=True)
                (rd / "base" / "sft_metrics.json").write_text(sm.read_text())
                _print_base(json.loads(sm.read_text()))
        else:
            from .models import resolve_model
            base = resolve_model(first.model)
        models["base"] = str(base)
    problems = select_problems(task, grid, seed=0)
    labels = ["base", *tcfgs]
    reset_grader_errors()
    n_jobs = 1 + len(tcfgs) * cfg.train_seeds
    workers = jobs if jobs else default_workers(cfg.device, cfg.backend, n_jobs)
    threads = max(1, (os.cpu_count() or 1) // workers) if workers > 1 else None
    man.data["execution"] = {"workers": workers, "threads_per_worker": threads or torch_threads()}
    par = workers > 1
    stages: list[Job] = []                                # trainings, matched-compute gates, sweeps
    for m in tcfgs:
        for i, lab in enumerate(run_labels(m, cfg.train_seeds)):
            tc = runs[i][m]
            tdir = out / "train" / f"{m}-{config_hash(tc)}"
            stages.append(Job(f"train_{lab}", train, dict(cfg=tc, out_dir=tdir, progress=progress and not par,
                                                          init_path=None if tc.model else base), cost=2.0))
    gates: dict[str, tuple] = {}                          # label -> its matched-compute gates
    for m in cfg.compared():
        for i, (lab, gr) in enumerate(zip(run_labels(m, cfg.train_seeds), run_labels("grpo", cfg.train_seeds))):
            name = f"matched_{m}_{i}"
            gates[lab], gates[gr] = (name,), gates.get(gr, ()) + (name,)
            stages.append(Job(name, _check_matched, dict(rd=rd, a=lab, b=gr, cfg=cfg, out=out),
                              deps=(f"train_{lab}", f"train_{gr}"), local=True))
    sweep_args = dict(task=task, problems=problems, grid=grid, out_dir=rd, device=cfg.device, dtype=cfg.dtype,
                      progress=progress and not par, backend=cfg.backend, **engine_options_of(cfg))
    stages.append(Job("sweep_base", _sweep_stage, dict(path=base, label="base", seed=cfg.seed, train_run=0,
                                                      **sweep_args)))
    for m in tcfgs:
        for i, lab in enumerate(run_labels(m, cfg.train_seeds)):
            deps = (f"train_{lab}",) + gates.get(lab, ())
            stages.append(Job(f"sweep_{lab}", _sweep_stage, dict(path=None, label=m, seed=cfg.seed + i, train_run=i,
                                                                **sweep_args), deps=deps))
    if par:
        print(f"== {sum(not j.local for j in stages)} stages on {workers} worker processes x {threads} torch "
              f"thread(s) each (--jobs)", flush=True)
    pairs: dict[str, dict] = {}

    def started(j: Job) -> None:
        if j.name.startswith("sweep_") and j.kwargs["path"] is None:    # its checkpoint is known now
            j.kwargs["path"] = models[j.name[len("sweep_"):]]
        if not j.local:
            man.start(j.name, quiet=par)

    def done(j: Job, res, seconds: float, rss: float) -> None:
        if j.local:
            pairs[j.name] = {"method": j.kwargs["a"], "baseline": j.kwargs["b"], **res}
            return
        man.finish(j.name, seconds, rss, "done", announce=par)
        if bar is not None:
            bar.update(1)
        if j.name.startswith("train_"):
            lab = j.name[len("train_"):]
            models[lab] = str(res)
            _link(Path(j.kwargs["out_dir"]), rd / "train" / lab)
        elif j.name.startswith("sweep_"):
            add_errors(res)

    def failed(j: Job, e: BaseException) -> None:
        if not j.local:
            man.finish(j.name, 0.0, peak_rss_mb(), "failed", announce=par)

    for j in stages:                  # every stage listed up front, in this order, until it runs
        if not j.local:
            man.data["stages"].setdefault(j.name, {"seconds": 0.0, "status": "pending"})
    t0, bar = time.perf_counter(), None
    if par and progress:                  # workers draw no bars: one bar over the stages instead
        from tqdm.auto import tqdm
        bar = tqdm(total=sum(not j.local for j in stages), desc="trainings and sweeps", unit="stage")
        man.echo = bar.write
    try:
        run_jobs(stages, workers, threads, started, done, failed)
    finally:
        if bar is not None:
            bar.close()
            man.echo = lambda line: print(line, flush=True)
    man.data["execution"]["wall_seconds"] = round(time.perf_counter() - t0, 2)
    if pairs:
        order = [j.name for j in stages if j.local]            # method by method, run by run
        man.data["pairing"] = pairs[order[0]]
        if len(pairs) > 1:
            man.data["pairings"] = [pairs[n] for n in order]
    with man.stage("analysis"):
        baseline = "grpo" if cfg.compared() else "base"
        context = {"task": task.name, "grid": grid.name, "seed": cfg.seed, "checkpoints": dict(models),
                   "split": "test"}
        analysis = ev.analyze_cells(load_cells(rd), labels, baseline, B=cfg.bootstrap, seed=cfg.seed,
                                    claim_method=next((m for m in ("spiral", "bridge") if m in tcfgs), None), context=context)
        man.data["grader_errors"] = ev.note_grader_errors(analysis, rd)
        ev.write_analysis(analysis, rd)
    man.data["finished"] = now()
    man.save()
    with man.stage("report"):
        from .report import write_report
        res = write_report([rd])
        man.data["report"] = {"html": str(res["html"]), "md": str(res["md"]),
                              "figures": [str(f) for f in res["figures"]], "seconds": res["seconds"],
                              "missing": [m for ms in res["missing"].values() for m in ms]}
    man.save()
    print(ev.format_verdicts(analysis))
    print(f"report: {rd / 'report.html'}")
    return man.data


def _sweep_stage(path, label: str, task, problems, grid, out_dir, seed: int, device: str, dtype: str,
                 progress: bool, backend: str, train_run: int, **engine_opts) -> dict:
    """One sweep stage (in a worker or here): the checkpoint's cells; returns its grader errors.
    engine_opts: chat_template, system_prompt, vllm (passed explicitly: a worker process does not
    see this process's `evaluate.engine_options`)."""
    from . import evaluate as ev
    from .tasks.graders import grader_errors, reset_grader_errors

    reset_grader_errors()
    ev.sweep_checkpoint(path, label, task, problems, grid, out_dir, seed=seed, device=device, dtype=dtype,
                        progress=progress, backend=backend, train_run=train_run, **engine_opts)
    errs = grader_errors()
    reset_grader_errors()
    return errs


def _check_matched(rd: Path, a: str, b: str, cfg: RunConfig, out: Path) -> dict:
    """The matched-compute gate of training run pair (a = the compared method's run, b = grpo's): the pairing report, or
    ConfigError when unmatched (unless cfg.allow_unmatched)."""
    from .trainers.train_config import check_pairing, pairing_text

    try:
        rep = check_pairing(rd / "train" / a, rd / "train" / b, tolerance=cfg.tolerance, allow=cfg.allow_unmatched)
    except ValueError as e:
        raise ConfigError(f"{e}. The trained runs are kept under {out / 'train'}: the same command with "
                          "--allow-unmatched reuses them") from None
    print(f"matched compute, {a} vs {b} (matched_by {rep['matched_by']}, tolerance {cfg.tolerance:.0%}): "
          f"{pairing_text(rep)}", flush=True)
    return rep


def torch_threads() -> int:
    import torch
    return torch.get_num_threads()


def _print_base(sm: dict) -> None:
    ev = sm.get("eval") or {}
    keys = [k for k in ev if k == "single" or k.startswith("pass@") or k == "aggregate"]
    if keys:
        print(f"SFT base on {ev.get('problems')} held-out problems: "
              + ", ".join(f"{k}={ev[k]:.3f}" for k in keys), flush=True)


def _reproduce_commands(cfg: RunConfig, out, rd: Path, git: dict, versions: dict) -> list[str]:
    cmds = [f"git checkout {git['commit']}"] if git.get("commit") else []
    cmds.append(f"pip install torch=={versions.get('torch', '').split('+')[0]} && pip install -e .")
    cmds.append(command_for(cfg, out))
    cmds.append(f"spiral-bench report {shlex.quote(str(rd))}")
    return cmds
