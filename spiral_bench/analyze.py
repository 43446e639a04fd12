"""`spiral-bench analyze FILE.jsonl --out DIR`: pooled estimates and paired comparisons from samples
made by any engine.

Input: lm-eval's `--log_samples` file (samples_<task>_<date>.jsonl; its per-sample metric values,
`exact_match` unless `metric` says otherwise, are the scores; `spiral_bench.lm_eval_samples` gives
the mapping), or one JSON object per line (blank lines are skipped; every other line is data):
  problem_id (str, required), sample_id (int, required), correct (bool or number in [0, 1],
  required), method (str, default "default"), answer (str or null = abstain; used for maj@k),
  prompt_tokens, completion_tokens (ints >= 0), group (str or int: samples of one problem with the
  same group were decoded together, e.g. a Bridge group or any interdependent sampler).
Samples decoded together are not independent draws, so the pooled subset estimators do not apply to
them (`spiral_bench.estimators`, "Independence"): a method whose lines carry `group` (all of them, in
groups of one size w per method) is measured directly at its groups' width, k in {1, w}: pass@1 =
mean correct of its samples, pass@w = mean over groups of "any sample correct", maj@w = mean over
groups of the group's majority vote (the width-direct estimators of the cell store; the summary
names the method's estimator). Without `group` every sample of a problem is an independent draw.
Validation collects every bad line and raises one `AnalyzeInputError` (a ValueError) listing
them by line number; nothing is dropped. Also errors: a repeated (method, problem_id, sample_id);
a token field present on some lines but not others (compute must be in one unit); `answer`
present on some lines of a method but not others (give null to abstain); methods that do not
share the same problems (comparisons are paired by problem). Unknown keys are ignored and named
in the summary's "warnings".

Per method: pools of n_p samples for each problem p; k = 1 .. min_p n_p. pass@k and maj@k per
problem from `spiral_bench.estimators` (exact over all k-subsets), means over problems with
percentile CIs from one paired bootstrap over problems (B replicates, seeded) shared by all
methods. Compute of a k-sample cell for problem p follows the one convention of
`spiral_bench.compute` (the function the cell store of `eval` and `run` uses,
`compute.expected_subset_tokens`): prompt_tokens = P_p ONCE (the mean of p's samples' prompt_tokens;
the k samples share the prompt) and generated_tokens = (k / n_p) * sum of p's completion_tokens.
The compute axis ("compute_unit") is generated_tokens, the default axis of `eval` and `run`, so
the same samples give the same compute at every k and the same multipliers in both; without
completion_tokens it is the sample count k ("samples"). Per-problem compute is floored as in
`eval` (`compute.floor_compute`); a method whose samples all have 0 completion tokens is an error.
Per method the summary gives "compute@k" (mean over problems, on the axis) and, when
prompt_tokens are given, "prompt_tokens@k" (the same at every k: the prompt is charged once).
Comparisons: for every ordered pair (method, baseline) of distinct methods, on the pass@k curves
(compute, accuracy): the "up to" multiplier with CI and censoring flag, multipliers at the
method's levels and the accuracy gap at equal compute (`spiral_bench.stats.compare`).
Output DIR/summary.json, written atomically (temp file + os.replace); non-finite numbers as null.
"""
from __future__ import annotations

import json
import math
from collections import defaultdict
from pathlib import Path

import numpy as np

from spiral_bench.compute import expected_subset_tokens, floor_compute
from spiral_bench.estimators import maj_at_k, pass_at_k_pool
from spiral_bench.fileio import write_json
from spiral_bench.lm_eval_samples import DEFAULT_METRIC, is_lm_eval_samples, read_lm_eval_samples
from spiral_bench.stats import PairedBootstrap, compare, percentile_ci

KNOWN = {"problem_id", "sample_id", "correct", "method", "answer", "prompt_tokens", "completion_tokens", "group"}
TOKEN_KEYS = ("prompt_tokens", "completion_tokens")


class AnalyzeInputError(ValueError):
    """Bad input lines; `.errors` is the list of (line_number, message)."""

    def __init__(self, path, errors: list[tuple[int, str]]):
        self.errors = errors
        body = "\n".join(f"  line {n}: {m}" if n else f"  {m}" for n, m in errors)
        super().__init__(f"{path}: {len(errors)} problem(s) in the input:\n{body}")


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _check(obj) -> list[str]:
    """Messages for one parsed line (empty if it is valid)."""
    if not isinstance(obj, dict):
        return [f"expected a JSON object, got {type(obj).__name__}"]
    errs = []
    for key in ("problem_id", "sample_id", "correct"):
        if key not in obj:
            errs.append(f"missing required key {key!r}")
    if "problem_id" in obj and not isinstance(obj["problem_id"], str):
        errs.append(f"problem_id must be a string, got {obj['problem_id']!r}")
    if "sample_id" in obj and not _is_int(obj["sample_id"]):
        errs.append(f"sample_id must be an integer, got {obj['sample_id']!r}")
    if "correct" in obj:
        c = obj["correct"]
        if not (isinstance(c, bool) or (isinstance(c, (int, float)) and math.isfinite(c) and 0 <= c <= 1)):
            errs.append(f"correct must be a bool or a number in [0, 1], got {c!r}")
    if "method" in obj and not (isinstance(obj["method"], str) and obj["method"]):
        errs.append(f"method must be a non-empty string, got {obj['method']!r}")
    if "group" in obj and not (isinstance(obj["group"], str) or _is_int(obj["group"])):
        errs.append(f"group must be a string or an integer, got {obj['group']!r}")
    if "answer" in obj and not (obj["answer"] is None or isinstance(obj["answer"], str)):
        errs.append(f"answer must be a string or null, got {obj['answer']!r}")
    for key in TOKEN_KEYS:
        if key in obj and not (_is_int(obj[key]) and obj[key] >= 0):
            errs.append(f"{key} must be an integer >= 0, got {obj[key]!r}")
    return errs


def _parse(path) -> tuple[list[tuple[int, object]], list[tuple[int, str]]]:
    """([(line_number, parsed object)], [(line_number, error)]) of a JSONL file."""
    objs, errors = [], []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                objs.append((n, json.loads(line)))
            except json.JSONDecodeError as e:
                errors.append((n, f"not valid JSON ({e.msg} at column {e.colno})"))
    return objs, errors


def read_samples(path, metric: str = DEFAULT_METRIC, rescore: bool = False,
                 include_paths=()) -> tuple[list[tuple[int, dict]], list[str]]:
    """Parse and validate FILE.jsonl (our format, or lm-eval's --log_samples file, scored by its
    `metric`) -> ([(line_number, record)], warnings); raises AnalyzeInputError listing every bad line."""
    rows: list[tuple[int, dict]] = []
    unknown: dict[str, int] = {}
    lm_eval = is_lm_eval_samples(path)
    notes: list[str] = []
    objs, errors = read_lm_eval_samples(path, metric, rescore, include_paths, notes) if lm_eval else _parse(path)
    for n, obj in objs:
        msgs = _check(obj)
        errors.extend((n, m) for m in msgs)
        if msgs:
            continue
        for key in obj.keys() - KNOWN:
            unknown.setdefault(key, n)
        rows.append((n, obj))
    if not rows and not errors:
        errors.append((0, "no samples in the file"))
    seen: dict[tuple, int] = {}
    for n, obj in rows:
        key = (obj.get("method", "default"), obj["problem_id"], obj["sample_id"])
        if key in seen:
            errors.append((n, f"repeats method {key[0]!r}, problem_id {key[1]!r}, sample_id {key[2]} "
                              f"of line {seen[key]}"))
        else:
            seen[key] = n
    for key in TOKEN_KEYS:  # one compute unit for the whole file
        has = [n for n, o in rows if key in o]
        if has and len(has) != len(rows):
            errors.extend((n, f"lacks {key!r}, which other lines give (compute must be in one unit)")
                          for n, o in rows if key not in o)
    by_method: dict[str, list[tuple[int, dict]]] = defaultdict(list)
    for n, o in rows:
        by_method[o.get("method", "default")].append((n, o))
    for m, rs in by_method.items():
        if any("answer" in o for _, o in rs) and not all("answer" in o for _, o in rs):
            errors.extend((n, f"lacks 'answer', which other lines of method {m!r} give (use null to abstain)")
                          for n, o in rs if "answer" not in o)
        if any("group" in o for _, o in rs):
            errors.extend(_group_errors(m, rs))
    if len(by_method) > 1:
        probs = {m: {o["problem_id"] for _, o in rs} for m, rs in by_method.items()}
        every = set().union(*probs.values())
        for m in sorted(probs):
            lack = sorted(every - probs[m])
            if lack:
                errors.append((0, f"method {m!r} has no samples for problem(s) {lack} that other methods "
                                  f"have (comparisons are paired by problem)"))
    if errors:
        raise AnalyzeInputError(path, sorted(errors, key=lambda e: e[0]))
    warnings = notes + [f"unknown key {k!r} ignored (first on line {n})" for k, n in sorted(unknown.items())]
    return rows, warnings


def _group_errors(method: str, rs: list[tuple[int, dict]]) -> list[tuple[int, str]]:
    """A method that declares groups: every line has one, and every group has the same size."""
    errs = [(n, f"lacks 'group', which other lines of method {method!r} give (samples decoded together "
                f"cannot be mixed with independent ones)") for n, o in rs if "group" not in o]
    sizes: dict[tuple, list[int]] = defaultdict(list)
    for n, o in rs:
        if "group" in o:
            sizes[(o["problem_id"], o["group"])].append(n)
    widths = {len(v) for v in sizes.values()}
    if len(widths) > 1:
        errs.append((0, f"method {method!r}: groups of unequal sizes {sorted(widths)}; samples decoded together "
                        f"are scored at their group's width, one width per method"))
    return errs


def _grouped(ps: list[list[dict]]) -> tuple[list[list[list[dict]]], int]:
    """Per problem its groups (lists of samples), and the groups' width w."""
    out = []
    for s in ps:
        g: dict = defaultdict(list)
        for o in s:
            g[o["group"]].append(o)
        out.append(list(g.values()))
    return out, len(out[0][0])


def _direct_scores(groups: list[list[list[dict]]], ks: np.ndarray, seed: int, with_answers: bool):
    """Width-direct pass@k and maj@k (P, K) for k in {1, w}: pass@1 = mean correct, pass@w = mean over
    groups of max correct; maj@1 / maj@w from each group's own pool (maj@w: the group's vote)."""
    pk = np.zeros((len(groups), len(ks)))
    mk = np.zeros((len(groups), len(ks))) if with_answers else None
    for i, gs in enumerate(groups):
        corr = [[float(o["correct"]) for o in g] for g in gs]
        for j, k in enumerate(ks):
            pk[i, j] = np.mean([np.mean(c) if k == 1 else max(c) for c in corr])
        if with_answers:
            mk[i] = maj_at_k([[o["answer"] for o in g] for g in gs], corr, ks, seed=seed).mean(axis=0)
    return pk, mk


def _clean(x):
    """JSON-safe: numpy scalars -> Python, non-finite floats -> None."""
    if isinstance(x, dict):
        return {k: _clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_clean(v) for v in x]
    if isinstance(x, (np.floating, float)):
        return float(x) if math.isfinite(x) else None
    if isinstance(x, np.integer):
        return int(x)
    if isinstance(x, np.bool_):
        return bool(x)
    return x


def _cell_tokens(ps: list[list[dict]], ks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per problem and k: (prompt_tokens, generated_tokens) of the k-sample cell, each (P, K), by
    `compute.expected_subset_tokens` (prompt once, k/n of the pool's generated tokens)."""
    prompt, gen = np.zeros((len(ps), len(ks))), np.zeros((len(ps), len(ks)))
    for i, s in enumerate(ps):
        P = float(np.mean([o.get("prompt_tokens", 0) for o in s]))
        G = [o.get("completion_tokens", 0) for o in s]
        for j, k in enumerate(ks):
            prompt[i, j], gen[i, j] = expected_subset_tokens(P, G, int(k))
    return prompt, gen


def analyze_file(path, out_dir, B: int = 2000, seed: int = 0, level: float = 0.95,
                 metric: str = DEFAULT_METRIC, rescore: bool = False, include_paths=()) -> dict:
    """Analyse FILE.jsonl, write out_dir/summary.json atomically and return the summary dict
    (`metric`: the per-sample metric of an lm-eval samples file; `rescore`: score its raw repeats
    with the lm-eval task, found also under `include_paths`)."""
    rows, warnings = read_samples(path, metric, rescore, include_paths)
    has_gen, has_prompt = "completion_tokens" in rows[0][1], "prompt_tokens" in rows[0][1]
    unit = "generated_tokens" if has_gen else "samples"
    pools: dict[str, dict[str, list[dict]]] = defaultdict(lambda: defaultdict(list))
    for _, o in rows:
        pools[o.get("method", "default")][o["problem_id"]].append(o)
    methods = sorted(pools)
    problems = sorted(pools[methods[0]])
    boot = PairedBootstrap(len(problems), B=B, seed=seed)
    summary: dict = {"methods": {}, "comparisons": [], "compute_unit": unit,
                     "bootstrap": {"B": B, "seed": seed, "level": level, "resampled": "problems",
                                   "paired": "one resampling shared by all methods"},
                     "input": {"path": str(path), "samples": len(rows), "n_problems": len(problems),
                               "format": "lm-eval log_samples" if is_lm_eval_samples(path) else "jsonl",
                               **({"metric": metric, "rescored": rescore} if is_lm_eval_samples(path) else {})},
                     "warnings": warnings}
    curves = {}
    for m in methods:
        ps = [sorted(pools[m][p], key=lambda o: o["sample_id"]) for p in problems]
        sizes = np.array([len(s) for s in ps])
        grouped = "group" in ps[0][0]
        if grouped:       # decoded together: measured at the groups' width only
            groups, w = _grouped(ps)
            ks = np.unique([1, w])
            pk, mk = _direct_scores(groups, ks, seed, "answer" in ps[0][0])
            K = int(w)
        else:
            K = int(sizes.min())
            ks = np.arange(1, K + 1)
            corr = np.full((len(ps), int(sizes.max())), np.nan)
            for i, s in enumerate(ps):
                corr[i, : len(s)] = [float(o["correct"]) for o in s]
            pk = pass_at_k_pool(corr, ks)  # (P, K)
        prompt, gen = _cell_tokens(ps, ks)
        comp = gen if has_gen else np.broadcast_to(ks.astype(np.float64), (len(ps), K)).copy()  # (P, K)
        if not (comp.mean(axis=0) > 0).all():
            raise AnalyzeInputError(path, [(0, f"method {m!r}: every sample has completion_tokens 0; "
                                               f"compute must be > 0")])
        block = {"n_problems": len(problems), "n_samples_min": int(sizes.min()), "n_samples_max": int(sizes.max()),
                 "estimator": (f"direct: groups of {K} samples decoded together, k in {ks.tolist()}" if grouped
                               else "pooled: independent samples, every k-subset"),
                 "pass@k": _table(pk, boot, ks, level), "maj@k": {}}
        if has_prompt:
            block["prompt_tokens@k"] = {str(k): float(c) for k, c in zip(ks, prompt.mean(axis=0))}
        if "answer" in ps[0][0] and grouped:
            block["maj@k"] = _table(mk, boot, ks, level)
        elif "answer" in ps[0][0]:
            mk = maj_at_k([[o["answer"] for o in s] for s in ps], [[float(o["correct"]) for o in s] for s in ps],
                          ks, seed=seed)
            block["maj@k"] = _table(mk, boot, ks, level)
        else:
            warnings.append(f"method {m!r}: no 'answer' field, so maj@k is not computed")
        summary["methods"][m] = block
        curves[m] = (pk, comp)
    top = max(float(c.max()) for _, c in curves.values())
    for m in methods:
        pk, comp = curves[m]
        curves[m] = (pk, floor_compute(comp, top))
        ks = [int(k) for k in summary["methods"][m]["pass@k"]]
        summary["methods"][m]["compute@k"] = {str(k): float(c) for k, c in zip(ks, curves[m][1].mean(axis=0))}
    for a in methods:
        for b in methods:
            if a == b:
                continue
            res = compare(boot, curves[a][0], curves[a][1], curves[b][0], curves[b][1], level=level)
            summary["comparisons"].append({"method": a, "baseline": b, "metric": "pass@k",
                                           "compute_unit": unit, **res})
    summary = _clean(summary)
    write_json(Path(out_dir) / "summary.json", summary, indent=2, allow_nan=False)
    return summary


def _table(vals: np.ndarray, boot: PairedBootstrap, ks: np.ndarray, level: float) -> dict:
    """{"<k>": {"mean", "ci"}} from per-problem values (P, K) with the shared bootstrap."""
    ci = percentile_ci(boot.means(vals), level)
    mean = vals.mean(axis=0)
    return {str(int(k)): {"mean": float(mean[i]), "ci": [float(ci[0, i]), float(ci[1, i])]}
            for i, k in enumerate(ks)}
