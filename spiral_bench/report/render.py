"""`write_report(run_dirs, out_dir)`: report.html (one self-contained file), report.md and
figures/*.png from saved run folders only (no model call, no sample redrawn or regraded).

Content per run, in this order: summary; the verdict table (claim, published value and source,
measured value with 95% CI, verdict, notes); accuracy vs compute per scaffold family; the
multiplier m(a) with its CI band and censored levels, plus the comparison table; the sequential
axis; for runs with grsp or lcpo the sequential-efficiency view (report/sequential.py); training curves and the matched-compute audit (generated tokens per prompt per method), the
SFT base's evaluation; the manifest (versions, git commit, seeds, hardware, config and data
hashes, stage wall times, the exact reproduce commands, run.yaml); analysis warnings; "Missing"
(what is absent or unfinished; a partial run never fails the report).

The report is built once as a list of neutral blocks (heading, paragraph, table, image, code,
list) and rendered twice: HTML (inline CSS, figures as base64 data URIs, no script, no external
resource) and Markdown (figures linked relative to the report). Both files are written
atomically (temp file + os.replace).
"""
from __future__ import annotations

import base64
import datetime
import html
import math
import os
import re
import time
from pathlib import Path

import yaml

from . import figures as F
from . import sequential as SEQ
from ..fileio import write_atomic
from .runfiles import RunFiles, load_run

BOOTSTRAP_TEXT = ("Intervals: each bootstrap replicate resamples, within each method, its training runs "
                  "with replacement, then the problems with replacement (one resampling shared by every "
                  "method and cell, so comparisons stay paired); replicate mean = sum_r V[r]/R sum_p W[p]/P "
                  "x[r, p]; curves, multipliers and gaps are recomputed on every replicate and the 95% CI "
                  "is the 2.5-97.5 percentile range. With one training run per method this is the problem "
                  "bootstrap alone and the verdicts are provisional.")

# the compute convention of `spiral_bench.compute`, as the report states it under "Accuracy vs compute"
COMPUTE_CONVENTION = ("Compute of a k-sample cell (pass@k, maj@k), per problem: its prompt counted once (its k "
                      "samples share one prefilled prompt) and the generated tokens of its k samples (k/n of its "
                      "pool of n samples' total), aggregation and RSA cells adding each aggregation prompt once and "
                      "its traces; the x axis here is {unit} (flops include the prompt once, generated_tokens and "
                      "max_token_budget leave it out), by the same rule in `eval`, `run` and `analyze`.")

CSS = """body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:2em auto;
max-width:1200px;padding:0 1em;color:#222;line-height:1.4}
h1{border-bottom:2px solid #444}h2{border-bottom:1px solid #aaa;margin-top:2em}
table{border-collapse:collapse;margin:.5em 0 1em;font-size:.85em}
th,td{border:1px solid #ccc;padding:3px 7px;text-align:left;vertical-align:top}th{background:#f0f0f0}
tr:nth-child(even) td{background:#fafafa}img{max-width:100%;border:1px solid #ddd;margin:.5em 0}
pre{background:#f6f6f6;border:1px solid #ddd;padding:.6em;overflow-x:auto;font-size:.85em}
.missing{background:#fff4e0;border-left:4px solid #e0a000;padding:.4em 1em}
.v-reproduced,.v-larger-than-claimed,.v-within-bound{color:#17702f;font-weight:bold}
.v-real-but-smaller{color:#3d6b00;font-weight:bold}
.v-no-effect-found,.v-opposite-direction,.v-outside-bound{color:#b00020;font-weight:bold}
.v-inconclusive{color:#8a6d00;font-weight:bold}.v-not-measured{color:#777}
figcaption{font-size:.85em;color:#555}"""


# ------------------------------------------------------------------------------ formatting
def fmt(x, digits: int = 4) -> str:
    """A number for a table: None / non-finite -> 'n/a', floats with `digits` significant digits."""
    if x is None:
        return "n/a"
    if isinstance(x, bool):
        return str(x)
    if isinstance(x, int):
        return str(x)
    if isinstance(x, float):
        return f"{x:.{digits}g}" if math.isfinite(x) else "n/a"
    return str(x)


def _est(e: dict | None, digits: int = 3, suffix: str = "") -> str:
    """'value [lo, hi]' from {"value"/"mean", "ci"}."""
    if not e:
        return "n/a"
    v = e.get("value", e.get("mean"))
    if v is None:
        return "n/a"
    lo, hi = (e.get("ci") or [None, None])[:2]
    return f"{fmt(v, digits)}{suffix} [{fmt(lo, digits)}, {fmt(hi, digits)}]"


def _nan(x) -> float | None:
    return None if x is None or (isinstance(x, float) and not math.isfinite(x)) else float(x)


def _slug(s: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", s).strip("_") or "run"


def _kv(d: dict | None) -> list[list[str]]:
    return [[str(k), fmt(v) if not isinstance(v, (dict, list)) else yaml.safe_dump(v, default_flow_style=True).strip()]
            for k, v in (d or {}).items()]


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in (d or {}).items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        elif not isinstance(v, list):
            out[f"{prefix}{k}"] = v
    return out


# ------------------------------------------------------------------------------ sections
def _verdicts(a: dict) -> list:
    from spiral_bench.claims import NOTE_SEP, _num, interval_text, runs_text, verdict_table

    t = verdict_table(a)
    if t.empty:
        return [("p", "No claim rows in the analysis.")]
    rows = []
    for r in t.itertuples(index=False):
        has = r.measured is not None and math.isfinite(float(r.measured))
        meas = ("≥ " if r.censored else "") + _num(float(r.measured), r.unit) if has else "n/a"
        ci = f"[{_num(_nan(r.ci_lo), r.unit)}, {_num(_nan(r.ci_hi), r.unit)}{'+' if r.censored else ''}]" \
            if has else ""
        shares = (f"{_pct(r.censored_fraction)} / {_pct(r.valid_fraction)}"
                  if r.censored_fraction is not None or r.valid_fraction is not None else "")
        rows.append([r.claim, r.description, str(r.type).replace("_", " "), _num(r.published, r.unit),
                     f"{r.source}; benchmark: {r.benchmark}", f"{r.method} vs {r.baseline}", meas, ci, shares,
                     runs_text(r), r.verdict])
    # a note segment every row shares is said once, above the per-row notes
    segs = [[x for x in str(r.note).split(NOTE_SEP) if x] for r in t.itertuples(index=False)]
    common = [x for x in segs[0] if all(x in sg for sg in segs)] if len(segs) > 1 else []
    notes, seen = [], set(common)
    for r, sg in zip(t.itertuples(index=False), segs):
        for seg in sg:
            if seg not in seen:
                seen.add(seg)
                notes.append(f"[{r.claim}] {seg}")
    cols = ["claim", "description", "type", "published", "source", "compared", "measured", "95% CI",
            "censored / valid replicates", "training runs", "verdict"]
    from spiral_bench.verdicts import RULES
    out = [("p", f"Measured with {interval_text(a)} (compute unit: {a.get('compute_col')}). A verdict compares the "
                 f"CI with the published value and the no-effect value (rules below); '+' after a CI: its upper "
                 f"end is open (a lower bound). {BOOTSTRAP_TEXT}"),
           ("table", cols, rows),
           ("table", ["verdict", "claim types", "rule (95% CI of the measured value)"], [list(r) for r in RULES])]
    if common:
        out.append(("p", "Every row: " + "; ".join(common) + "."))
    return out + [("ul", notes)] + _variance_split(a)


def _variance_split(a: dict) -> list:
    """Between-run vs between-problem share of each key gap's bootstrap variance (two-level analyses)."""
    rows = []
    for c in a.get("comparisons") or []:
        who = f"{c['method']} vs {c['baseline']}"
        for name, vs in (c.get("variance_split") or {}).items():
            rows.append([who, c["family"], name, vs])
        for g in c.get("matched") or []:
            if g.get("variance_split"):
                rows.append([who, c["family"], f"matched gap {g['cell']}", g["variance_split"]])
    if not rows:
        return []
    table = [[w, f, n, fmt(vs.get("share_runs"), 3), fmt(vs.get("share_problems"), 3),
              fmt(vs.get("runs_needed")) if vs.get("runs_needed") is not None else "n/a"]
             for w, f, n, vs in rows]
    return [("h", 4, "Variance split: training runs vs problems"),
            ("p", "Share of each statistic's bootstrap variance that comes from resampling training runs only "
                  "vs problems only; runs needed: training runs per method at which the 95% CI would exclude "
                  "the no-effect value at the observed effect (n/a: not reachable by more runs alone, or no "
                  "effect size to aim at)."),
            ("table", ["comparison", "family", "statistic", "between-run share", "between-problem share",
                       "runs needed"], table)]


def _comparisons(a: dict) -> list:
    rows = []
    for c in a.get("comparisons") or []:
        if c.get("family") == "sequential" or "multiplier_max" not in c:
            continue
        mm, gap = c["multiplier_max"], c.get("gap") or {}
        at = gap.get("at_max_compute") or {}
        rows.append([f"{c['method']} vs {c['baseline']}", c["family"],
                     ("≥ " if mm.get("censored") else "") + _est(mm, suffix="x"), fmt(mm.get("level"), 3),
                     _est(gap.get("abs_points_max"), suffix=" pts"),
                     f"{_est(at.get('rel_pct'), suffix='%')} at {fmt(at.get('compute'))}" if at else "n/a"])
    if not rows:
        return [("p", "No method-vs-baseline comparison in the analysis.")]
    cols = ["comparison", "family", "up-to multiplier [95% CI]", "at accuracy", "max gap at equal compute",
            "relative gap at the largest common compute"]
    from spiral_bench.stats import MAX_WARNING
    return [("table", cols, rows), ("p", MAX_WARNING)]


def _sequential_table(a: dict) -> list:
    seq = a.get("sequential") or {}
    Ls = sorted({p["max_tokens"] for pts in seq.values() for p in pts})
    if not Ls:
        return []
    rows = [[str(L)] + [_est(next((p["accuracy"] for p in seq[m] if p["max_tokens"] == L), None)) for m in seq]
            for L in Ls]
    return [("table", ["max tokens"] + [f"{m} pass@1 [95% CI]" for m in seq], rows)]


def _budget(cfg: dict | None) -> float | None:
    """Max-token budget per prompt of a saved training config (train_config.budget_tokens_per_prompt)."""
    if not cfg:
        return None
    try:
        from ..trainers.train_config import TrainConfig, budget_tokens_per_prompt
        from ..config import build
        return float(budget_tokens_per_prompt(build(TrainConfig, cfg)))
    except Exception:          # an old or foreign config: the column reads n/a
        return None


def _training_tables(run: RunFiles) -> list:
    out = []
    if run.train:
        rows, ref = [], None
        for m, t in run.train.items():
            ms = t["metrics"]
            prompts = sum(r.get("prompts_sampled") or 0 for r in ms)
            gen = sum(r.get("generated_tokens") or 0 for r in ms) / prompts if prompts else None
            ref = gen if ref is None else ref      # totals, as check_pairing computes them
            budget = _budget(t.get("config"))
            last = ms[-1] if ms else {}
            rows.append([m, str(len(ms)), fmt(budget), fmt(gen), fmt(last.get("total_generated_tokens")),
                         fmt(gen / ref if gen and ref else None, 3), fmt(last.get("search_acc"), 3),
                         fmt(last.get("agg_acc"), 3), fmt(last.get("elapsed"), 3)])
        by = sorted({str((t.get("config") or {}).get("matched_by", "generated")) for t in run.train.values()})
        out += [("p", "Matched-compute audit, per training run: the max-token budget per prompt (G x L for "
                      "GRPO, (N1 + K x N2) x L_s for SPIRAL) and the generated tokens per prompt (all generated "
                      "tokens / all prompts sampled, the quantity the pairing check uses; ratio to the first "
                      f"run listed). Pairs are matched by: {', '.join(by)}. Neither measure counts the prompt "
                      "tokens (prefill; SPIRAL's aggregation prompts hold K candidate traces) or the update "
                      "pass (forward + backward over the generated tokens)."),
                ("table", ["run", "steps logged", "budget / prompt", "generated / prompt", "total generated tokens",
                           "ratio", "final search acc", "final agg acc", "train seconds"], rows)]
    if run.sft:
        flat = {k: v for k, v in _flat(run.sft).items()}
        out += [("h", 4, "SFT base (shared starting checkpoint)"), ("table", ["metric", "value"], _kv(flat))]
    return out


def _manifest(run: RunFiles) -> list:
    m = run.manifest
    out = []
    if m:
        git = m.get("git") or {}
        head = {"schema": m.get("schema"), "command": m.get("command"), "run_hash": m.get("run_hash"),
                "git commit": git.get("commit"), "git dirty": git.get("dirty"),
                "started": m.get("started"), "finished": m.get("finished")}
        out += [("table", ["field", "value"], _kv(head)),
                ("h", 4, "Reproduce"), ("pre", "\n".join(m.get("reproduce") or ["(no commands recorded)"]))]
        for key, title in (("seeds", "Seeds"), ("hardware", "Hardware"), ("versions", "Package versions"),
                           ("config_hashes", "Config hashes"), ("task", "Task"), ("grid", "Budget grid"),
                           ("models", "Models"), ("pairing", "Matched-compute check (training)")):
            if m.get(key):
                out += [("h", 4, title), ("table", ["name", "value"], _kv(m[key]))]
        if m.get("data_files"):
            out += [("h", 4, "Data files"), ("table", ["path", "sha256"], [[k, str(v)] for k, v in m["data_files"].items()])]
        elif "data_files" in m:
            out += [("h", 4, "Data files"), ("p", "None: the task reads no local data file (procedural).")]
        st = m.get("stages") or {}
        if st:
            rows = [[k, str(v.get("status")), fmt(v.get("seconds"), 4), fmt(v.get("peak_rss_mb"), 4)]
                    for k, v in st.items()]
            total = sum(v.get("seconds") or 0 for v in st.values())
            rows.append(["total", "", fmt(float(total), 4), ""])
            out += [("h", 4, "Stages (wall time)"), ("table", ["stage", "status", "seconds", "peak RSS (MB)"], rows)]
    else:
        out.append(("p", "No manifest.json: versions, git commit, hardware, hashes and reproduce commands are unknown."))
    if run.config:
        out += [("h", 4, "run.yaml"), ("pre", yaml.safe_dump(run.config, sort_keys=False).strip())]
    return out


def _efficiency(run: RunFiles) -> dict | None:
    """The sequential-efficiency view (report/sequential.py) of a run with grsp or lcpo; fills its claim rows."""
    try:
        view = SEQ.compute(run, B=int((run.config or {}).get("bootstrap") or 2000))
    except Exception as e:  # a view that cannot be computed must not lose the rest of the report
        run.missing.append(f"sequential efficiency: {type(e).__name__}: {e}")
        return None
    SEQ.fill_claims(run.analysis, view)
    return view


def run_blocks(run: RunFiles, fig_dir: Path, prefix: str = "") -> tuple[list, list]:
    """The blocks of one run's report and the figure paths written (see module doc)."""
    a, cfg, b, figs = run.analysis, run.config or {}, [], []

    def fig(fn, data, name, caption):
        try:
            p = fn(data, fig_dir, f"{prefix}{name}") if data is not None else None
        except Exception as e:  # a figure that cannot be drawn must not lose the rest of the report
            run.missing.append(f"figure {name}: {type(e).__name__}: {e}")
            p = None
        if p is None:
            if data is not None:
                run.missing.append(f"figure {name}: nothing to draw ({caption.lower()})")
            return [("p", f"Not available: {caption.lower()} needs data this run does not have (see Missing).")]
        figs.append(p)
        return [("img", p, caption)]

    ctx = (a or {}).get("context") or {}
    man_task = ((run.manifest or {}).get("task") or {}).get("name")
    steps = cfg.get("steps") or next((t["config"].get("steps") for t in run.train.values()
                                      if isinstance(t.get("config"), dict) and t["config"].get("steps")), None)
    summary = {"folder": str(run.path), "task": cfg.get("task") or ctx.get("task") or man_task,
               "model": cfg.get("model"), "grid": cfg.get("budget_grid", ctx.get("grid")), "training steps": steps,
               "training runs per method": ", ".join(f"{m} {n}" for m, n in ((a or {}).get("train_runs") or {}).items())
               or None,
               "pass@k / maj@k estimator per method": ", ".join(
                   f"{m} {'+'.join(e)}" for m, e in ((a or {}).get("estimators") or {}).items()) or None,
               "seed": cfg.get("seed"), "methods evaluated": ", ".join((a or {}).get("methods") or []) or None,
               "baseline": (a or {}).get("baseline"), "analysis": run.analysis_source or "none"}
    b += [("h", 2, f"Run {run.name}"), ("table", ["", ""], [[k, fmt(v)] for k, v in summary.items()])]
    if run.missing:
        b.append(("p", f"{len(run.missing)} part(s) of this run are missing or unfinished: see Missing at the end."))
    view = _efficiency(run)      # before the verdicts: it fills the GRSP rows measured from samples
    b.append(("h", 3, "Verdicts"))
    b += _verdicts(a) if a else [("p", "No analysis: no verdicts (see Missing).")]
    b.append(("h", 3, "Accuracy vs compute"))
    if a:
        b.append(("p", COMPUTE_CONVENTION.format(unit=a.get("compute_col", "generated_tokens"))))
    b += fig(F.accuracy_vs_compute, a, "accuracy_vs_compute.png", "Accuracy vs compute per scaffold family")
    b.append(("h", 3, "Scaling-efficiency multiplier m(a)"))
    b += fig(F.multiplier_curve, a if a and a.get("comparisons") else None, "multipliers.png",
             "The multiplier m(a) against the baseline")
    if a:
        b += _comparisons(a)
    b.append(("h", 3, "Sequential axis"))
    b += fig(F.sequential_axis, a, "sequential.png", "Accuracy vs max new tokens, single trace")
    if a:
        b += _sequential_table(a)
    if view is not None:
        b.append(("h", 3, "Sequential efficiency"))
        b += fig(SEQ.figure, view, "sequential_efficiency.png",
                 "Accuracy and tokens per correct answer by max tokens; segments per response by length cluster")
        b += SEQ.blocks(view)
    b.append(("h", 3, "Training"))
    b += fig(F.training_curves, {m: t["metrics"] for m, t in run.train.items()} or None, "training.png",
             "Training curves per method")
    b += _training_tables(run)
    b.append(("h", 3, "Manifest"))
    b += _manifest(run)
    if a and a.get("warnings"):
        b += [("h", 3, "Analysis warnings"), ("ul", list(a["warnings"]))]
    b.append(("h", 3, "Missing"))
    b.append(("missing", list(run.missing)) if run.missing else ("p", "Nothing missing: every part of the run is present."))
    return b, figs


# ------------------------------------------------------------------------------ renderers
def _md_cell(s) -> str:
    return str(s).replace("|", "\\|").replace("\n", " ")


def to_markdown(blocks: list, out_dir: Path) -> str:
    lines = []
    for blk in blocks:
        kind = blk[0]
        if kind == "h":
            lines += ["#" * blk[1] + " " + blk[2], ""]
        elif kind == "p":
            lines += [blk[1], ""]
        elif kind == "table":
            cols, rows = blk[1], blk[2]
            lines += ["| " + " | ".join(_md_cell(c) for c in cols) + " |", "|" + "---|" * len(cols)]
            lines += ["| " + " | ".join(_md_cell(c) for c in r) + " |" for r in rows] + [""]
        elif kind == "img":
            rel = os.path.relpath(blk[1], out_dir).replace(os.sep, "/")
            lines += [f"![{blk[2]}]({rel})", "", f"*{blk[2]}*", ""]
        elif kind == "pre":
            lines += ["```", blk[1], "```", ""]
        elif kind in ("ul", "missing"):
            lines += [f"- {x}" for x in blk[1]] + [""]
    return "\n".join(lines)


def _pct(x) -> str:
    return "n/a" if x is None or not math.isfinite(float(x)) else f"{100 * float(x):.0f}%"


def _verdict_class(s: str) -> str:
    from spiral_bench.verdicts import LABELS
    return f' class="v-{s.replace(" ", "-")}"' if s in LABELS else ""


def to_html(blocks: list, title: str) -> str:
    e = html.escape
    body = []
    for blk in blocks:
        kind = blk[0]
        if kind == "h":
            body.append(f"<h{blk[1]}>{e(blk[2])}</h{blk[1]}>")
        elif kind == "p":
            body.append(f"<p>{e(blk[1])}</p>")
        elif kind == "table":
            head = "".join(f"<th>{e(str(c))}</th>" for c in blk[1])
            rows = "".join("<tr>" + "".join(f"<td{_verdict_class(str(c))}>{e(str(c))}</td>" for c in r) + "</tr>"
                           for r in blk[2])
            body.append(f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>")
        elif kind == "img":
            data = base64.b64encode(Path(blk[1]).read_bytes()).decode("ascii")
            body.append(f'<figure><img src="data:image/png;base64,{data}" alt="{e(blk[2])}">'
                        f"<figcaption>{e(blk[2])}</figcaption></figure>")
        elif kind == "pre":
            body.append(f"<pre>{e(blk[1])}</pre>")
        elif kind == "ul":
            body.append("<ul>" + "".join(f"<li>{e(x)}</li>" for x in blk[1]) + "</ul>")
        elif kind == "missing":
            body.append('<div class="missing"><ul>' + "".join(f"<li>{e(x)}</li>" for x in blk[1]) + "</ul></div>")
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{e(title)}</title>'
            f"<style>{CSS}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")



def write_report(run_dirs, out_dir=None) -> dict:
    """Write report.html, report.md and figures/*.png for one or more run folders.

    run_dirs: a path or a list of paths (one section per run, in order); out_dir: where the report
    goes (default the first run folder). Returns {"html", "md": paths, "figures": [paths],
    "missing": {run folder: [what is missing]}, "seconds": wall time}.
    Raises FileNotFoundError for a run folder that does not exist; anything absent inside one is
    listed under Missing instead.
    """
    t0 = time.perf_counter()
    dirs = [Path(run_dirs)] if isinstance(run_dirs, (str, os.PathLike)) else [Path(d) for d in run_dirs]
    if not dirs:
        raise ValueError("write_report needs at least one run folder")
    runs = [load_run(d) for d in dirs]
    out = Path(out_dir) if out_dir is not None else dirs[0]
    fig_dir = out / "figures"
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    title = "spiral-bench report: " + ", ".join(r.name for r in runs)
    blocks = [("h", 1, title),
              ("p", f"Generated {now} from saved files only (no model call, no sample redrawn). "
                    f"{len(runs)} run(s): " + ", ".join(str(r.path) for r in runs) + ".")]
    figs, missing = [], {}
    for i, r in enumerate(runs):
        prefix = "" if len(runs) == 1 else f"{i + 1}-{_slug(r.name)}-"
        b, f = run_blocks(r, fig_dir, prefix)
        blocks += b
        figs += f
        missing[str(r.path)] = list(r.missing)
    html_path, md_path = out / "report.html", out / "report.md"
    write_atomic(html_path, to_html(blocks, title))
    write_atomic(md_path, to_markdown(blocks, out))
    return {"html": html_path, "md": md_path, "figures": figs, "missing": missing,
            "seconds": time.perf_counter() - t0}
