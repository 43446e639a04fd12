"""Read lm-eval's `--log_samples` files (`samples_<task>_<date>.jsonl`, lm-eval 0.4.x) as the
per-sample records `spiral-bench analyze` works on, keeping lm-eval's own scoring.

What lm-eval writes (lm_eval/evaluator.py, loggers/evaluation_tracker.py): one JSON object per
(document, filter) with doc_id, doc, target, arguments, resps (per request: the raw responses of
its `repeats`), filtered_resps (per request: what the filter kept, one string, or a list of
strings when the filter keeps several repeats, e.g. take_first_k), filter (its name), metrics
(the metric names) and each metric's value for the document (what the task's process_results
returned). A generate_until task has one request per document.

Mapping, per line, for the metric M (default `exact_match`, lm-eval's name for the single-sample
metric of its math tasks; nothing is re-graded):
    responses R = filtered_resps[0]            (one string counts as one response; a line whose
                                                requests are not one generation, e.g. multiple
                                                choice, is one response scored as a whole)
    v = line[M]:  a list of len(R) numbers     -> v_i scores response i (spiral_* tasks log this);
                  a number and len(R) == 1     -> it scores the one response;
                  a number, len(R) = n > 1 and M is pass@1 (a per-document metric of n repeats,
                      as lm-eval's self-consistency tasks and our older spiral_*_k8 tasks log it)
                                               -> c = n v is the document's exact count of correct
                      responses (pass@1 = c / n): n samples, c of them correct, no answers (which
                      ones were correct is not logged; pass@k of n samples depends on c alone);
                  anything else                -> an error naming the line.
When M is the default exact_match and a line has none but has pass@1, pass@1 is used as above (said
in the summary's warnings).
    record: problem_id = str(doc_id), sample_id = i, correct = v_i (bool or number in [0, 1]),
            method = the task (from the file name) or "default", followed by "/<filter>" when the
            file holds several filters (each filter is then analysed as a method of its own);
            answer (for maj@k) = canonical(extract(R_i)) by the spiral-bench task of a spiral_*
            doc, the keys that task's maj@n votes over; other tasks give no answer (no maj@k).
lm-eval logs no token counts, so compute is the number of samples.

With rescore=True (`analyze --rescore`), for tasks whose filter reduces the repeats to one
response (e.g. majority vote) or that log one number per document: R = resps[0] (the raw
repeats) and v_i = the task's own filter pipeline and process_results applied to repeat i alone
(`rescorer`), so every repeat is a sample, scored by lm-eval's code.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

LM_EVAL_KEYS = ("doc_id", "filtered_resps", "filter")
DEFAULT_METRIC = "exact_match"


def is_lm_eval_samples(path) -> bool:
    """Whether the first non-blank line of `path` is an lm-eval logged sample."""
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError:
                    return False
                return isinstance(obj, dict) and all(k in obj for k in LM_EVAL_KEYS)
    return False


def task_of(path) -> str | None:
    """The task of lm-eval's file name samples_<task>_<date>.jsonl (the date has no '_'), or None."""
    m = re.fullmatch(r"samples_(.+)_[^_]+", Path(path).stem)
    return m.group(1) if m else None


def _number(v) -> bool:
    return isinstance(v, (bool, int, float))


COUNT_METRIC = "pass@1"   # a per-document metric of n repeats that gives the exact correct count (c = n pass@1)


def read_lm_eval_samples(path, metric: str = DEFAULT_METRIC, rescore: bool = False, include_paths=(),
                         notes: list | None = None) -> tuple[list[tuple[int, dict]], list[tuple[int, str]]]:
    """([(line_number, record)], [(line_number, error)]) for an lm-eval samples file (module
    docstring); with `rescore`, every raw repeat is scored by the lm-eval task itself (`rescorer`).
    `notes` (a list) receives what the reading decided for the reader (e.g. pass@1 as counts)."""
    notes = [] if notes is None else notes
    lines: list[tuple[int, dict]] = []
    errors: list[tuple[int, str]] = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                errors.append((n, f"not valid JSON ({e.msg} at column {e.colno})"))
                continue
            missing = [k for k in LM_EVAL_KEYS if not isinstance(obj, dict) or k not in obj]
            if missing:
                errors.append((n, f"not an lm-eval logged sample: lacks {', '.join(missing)}"))
                continue
            lines.append((n, obj))
    filters = sorted({str(o["filter"]) for _, o in lines})
    base = task_of(path) or "default"
    records: list[tuple[int, dict]] = []
    score = rescorer(task_of(path), metric, include_paths) if rescore and lines else None
    for n, o in lines:
        if score is not None:
            raw = o.get("resps")
            raw = raw[0] if isinstance(raw, list) and len(raw) == 1 and isinstance(raw[0], list) else None
            if not raw or not all(isinstance(r, str) for r in raw):
                errors.append((n, "--rescore needs the generated repeats of one request in resps"))
                continue
            try:
                o = {**o, "filtered_resps": [raw], metric: score(o["doc"], o["filter"], raw)}
            except Exception as e:  # noqa: BLE001 - reported with the line
                errors.append((n, f"--rescore: the task's filter {o['filter']!r} / process_results failed on one "
                                  f"repeat: {type(e).__name__}: {e}"))
                continue
        fr = o["filtered_resps"]
        if not isinstance(fr, list) or not fr:
            errors.append((n, f"filtered_resps must be a list of requests' responses, got {fr!r:.80}"))
            continue
        # generated responses kept for the doc's one request; else (loglikelihood requests, one
        # per choice) the line is one sample scored as a whole
        gen = len(fr) == 1 and (isinstance(fr[0], str) or (isinstance(fr[0], list) and fr[0]
                                                           and all(isinstance(x, str) for x in fr[0])))
        resps = ([fr[0]] if isinstance(fr[0], str) else fr[0]) if gen else [fr]
        m = metric
        if m not in o and m == DEFAULT_METRIC and COUNT_METRIC in o and score is None:
            m = COUNT_METRIC
            if not any(COUNT_METRIC in x for x in notes):
                notes.append(f"no {DEFAULT_METRIC!r} logged: the per-document {COUNT_METRIC} x n repeats gives each "
                             f"document's exact correct count (pass@k depends on it alone; no maj@k)")
        if m not in o:
            have = [k for k in o.get("metrics", []) if k in o]
            errors.append((n, f"no metric {metric!r} on this line (lm-eval logged {have}); choose one with --metric"))
            continue
        v = o[m]
        count = None
        if isinstance(v, list) and len(v) == len(resps) and all(_number(x) for x in v):
            values = v
        elif _number(v) and len(resps) == 1:
            values = [v]
        elif _number(v) and m == COUNT_METRIC and len(resps) > 1:
            c = float(v) * len(resps)
            if abs(c - round(c)) > 1e-6 or not 0 <= round(c) <= len(resps):
                errors.append((n, f"{m} = {v!r} is not a count of {len(resps)} responses divided by {len(resps)}"))
                continue
            count = int(round(c))
            values = [1.0 if i < count else 0.0 for i in range(len(resps))]
        else:
            shape = f"a list of {len(v)}" if isinstance(v, list) else repr(v)
            errors.append((n, f"{metric} is {shape} for {len(resps)} response(s) of filter {o['filter']!r}: "
                              f"need one value per response (a per-sample list, or one response per line)"))
            continue
        method = base if len(filters) == 1 else f"{base}/{o['filter']}"
        answers = _spiral_answers(o.get("doc"), resps) if gen and count is None else None
        for i, c in enumerate(values):
            rec = {"problem_id": str(o["doc_id"]), "sample_id": i, "correct": c, "method": method}
            if answers is not None:
                rec["answer"] = answers[i]
            records.append((n, rec))
    return records, errors


def _spiral_answers(doc, resps: list[str]) -> list[str | None] | None:
    """Answer keys canonical(extract(response)) of a spiral_* task's doc (the keys its maj@n votes
    over), or None for other tasks (then analyze computes no maj@k)."""
    if not (isinstance(doc, dict) and doc.get("spiral_task") and "id" in doc and "meta" in doc):
        return None
    from spiral_bench.lm_eval.hooks import doc_problem
    task, _ = doc_problem(doc)
    keys = [task.canonical(task.extract(r)) for r in resps]
    return [None if k is None else str(k) for k in keys]


def rescorer(task: str | None, metric: str, include_paths=()):
    """score(doc, filter_name, repeats) -> the lm-eval task's `metric` for each raw repeat, by the
    task's own filter pipeline of that name and process_results. When the pipeline applied to all n
    repeats at once keeps all n (e.g. take_first_k with k = repeats) and process_results returns a
    list of n values (one per response), those are the scores; otherwise each repeat is scored alone
    (pipeline on [[repeat]], then process_results(doc, [filtered])). The task is loaded by lm-eval's
    TaskManager (our tasks, `include_paths`, lm-eval's own), so its dataset must be reachable. A
    filter that reduces several responses to one (majority over k) cannot score one repeat: its
    lines are errors."""
    if not task:
        raise ValueError("--rescore: the task name comes from lm-eval's file name samples_<task>_<date>.jsonl")
    from spiral_bench.lm_eval import task_manager
    loaded = task_manager(extra_include=list(include_paths) or None).load([task])["tasks"]
    if task not in loaded:
        raise ValueError(f"--rescore: lm-eval has no task {task!r} (add its folder with --include-path)")
    t = loaded[task]
    pipelines = {f.name: f for f in t._filters}

    def run(doc, filter_name, responses):
        resps = [list(responses)]
        for make in pipelines[filter_name].filters:
            resps = list(make().apply(resps, [doc]))
        return resps[0]

    def one(doc, filter_name, response):
        value = t.process_results(doc, [run(doc, filter_name, [response])])[metric]
        return value[0] if isinstance(value, list) and len(value) == 1 else value

    def score(doc, filter_name, repeats):
        try:
            kept = run(doc, filter_name, repeats)
        except Exception:  # noqa: BLE001 - a filter that cannot take all repeats: score them one by one
            kept = None
        if isinstance(kept, list) and len(kept) == len(repeats) and len(repeats) > 1:
            value = t.process_results(doc, [kept]).get(metric)
            if isinstance(value, list) and len(value) == len(repeats):
                return value
        return [one(doc, filter_name, r) for r in repeats]
    return score
