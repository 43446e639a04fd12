"""Claim verdicts from an analysis: one row per published claim (`stats.load_claims()`), its type,
measured value and CI, the share of bootstrap replicates where the estimate is a lower bound
(censored) or defined (valid), the verdict (`verdicts.verdict`, whose table of rules the README and
the report print) and whether it is provisional; the plain-text verdict table of the terminal.

A row is provisional when the comparison rests on ONE training run of the method (or of a trained
baseline): its interval then leaves out training variance (`seed_stats.PROVISIONAL_NOTE`), which
is at least as large as problem sampling in RL results; with two or more runs per method the CI
comes from the two-level bootstrap (runs, then problems), so "reproduced" and "real but smaller"
need it to exclude the no-effect value with the training variance included.
"""
from __future__ import annotations

import math

import pandas as pd

from . import stats, verdicts
from .seed_stats import PROVISIONAL_NOTE, is_provisional

PAPER_SETUP = "Qwen3-4B-Instruct-2507 with LoRA, SPIRAL vs GRPO"
NOTE_SEP = " | "                             # between the segments of a verdict row's note
BRIDGE_METHODS = ("bridge", "pmatch")  # runs whose claims are the Bridge rows (`method: bridge`) only
BENCHMARK_TASKS = {"AIME 2025": ("aime25",)}   # claim benchmark -> task names that are that benchmark
VERDICT_COLUMNS = ["claim", "description", "type", "published", "unit", "source", "benchmark", "method", "baseline",
                   "measured", "ci_lo", "ci_hi", "censored", "censored_fraction", "valid_fraction", "verdict",
                   "train_runs", "provisional", "note"]


def find_comparison(analysis: dict, method: str, baseline: str, family: str) -> dict | None:
    for c in analysis.get("comparisons", []):
        if (c["method"], c["baseline"], c["family"]) == (method, baseline, family):
            return c
    return None


def _rsa_matched(comp: dict | None) -> dict | None:
    """The matched rsa gap at the largest max_tokens, then the largest T."""
    if not comp or not comp.get("matched"):
        return None
    key = lambda g: (int(g["cell"].split("|L")[1].split("|")[0]), int(g["cell"].split("|T")[1].split("|")[0]))  # noqa: E731
    return max(comp["matched"], key=key)


def claim_rows(analysis: dict, claims: list[dict], claim_method: str | None = None) -> list[dict]:
    """One verdict row per published claim, from an analysis dict. A claim naming its method pair
    (`method`, `baseline` in published.yaml, e.g. grsp vs grpo) gets a row only when the run has both.

    multiplier_max / pass@k: the "up to" pass@k coverage multiplier of claim_method vs baseline;
    rel_pct_at_max_compute: the relative gap at the largest common compute of the two "all
    primitives" frontiers (deployable families); abs_points / RSA: the matched-cell gap in RSA
    population accuracy (pass@1) at the largest max_tokens and T; seq_abs_points / abs_points_pass1:
    the pass@1 gap at the largest max_tokens (GRSP, Bridge); gain_ratio_pass1: that gap's gain ratio
    over the base (`stats.gain_ratio`; undefined -> "inconclusive"). Verdicts from `verdicts.verdict`
    with the claim's type and no-effect value; a multiplier whose estimate is a lower bound (censored
    point estimate, or more than `verdicts.CENSORED_SHARE_MAX` of the replicates) has an open upper
    end; "not measured" when the quantity is missing.
    """
    run_base = analysis.get("baseline")
    methods = analysis.get("methods", [])
    others = [m for m in methods if m != run_base]
    run_meth = claim_method or (others[0] if others else None)
    ctx = analysis.get("context", {})
    where = f"task {ctx['task']!r}" if ctx.get("task") else "this run's task"
    unit = analysis.get("compute_col", "generated_tokens")
    runs = analysis.get("train_runs") or {}
    rows = []
    for c in claims:
        if not (c.get("method") or c.get("baseline")) and run_meth in BRIDGE_METHODS:
            continue        # SPIRAL's claims (no method pair named) are not checked on a Bridge run
        meth, base = c.get("method") or run_meth, c.get("baseline") or run_base   # the pair this claim compares
        absent = [m for m in (meth, base) if m is not None and m not in methods]
        if absent and (c.get("method") or c.get("baseline")):
            continue        # a claim about a method pair this run does not have (GRSP's in a SPIRAL run)
        if absent:
            meth, base = (None if meth in absent else meth), (None if base in absent else base)
        provisional = meth is not None and base is not None and is_provisional(
            runs, meth, base, tuple(analysis.get("fixed_checkpoints") or ("base",)))
        row = {"claim": c["id"], "description": c["description"], "type": c.get("type", "point"),
               "published": c["value"], "unit": c["unit"],
               "source": c["source"], "benchmark": c["benchmark"], "method": meth, "baseline": base,
               "measured": None, "ci_lo": None, "ci_hi": None, "censored": False, "censored_fraction": None,
               "valid_fraction": None, "verdict": "not measured",
               "train_runs": {m: int(runs.get(m, 1)) for m in (meth, base) if m is not None},
               "provisional": provisional}
        notes = [f"measured on {where} ({analysis.get('n_problems')} problems) with this run's models"]
        if ctx.get("task") in BENCHMARK_TASKS.get(c["benchmark"], ()):
            notes.append(f"the benchmark of the published figure; the paper's setup ({c.get('setup', PAPER_SETUP)}) may still "
                         f"differ from this run's models")
        else:
            notes.append(f"the published figures are for other benchmarks (each row's benchmark) and another "
                         f"setup ({c.get('setup', PAPER_SETUP)}): these rows check the direction and size of the effect here, "
                         f"not the published numbers")     # the same words on every such row: said once
        n_context = len(notes)
        est, censored, undefined, open_end = None, False, False, False
        if absent:
            notes.append(f"this run has no {' or '.join(absent)} to compare")
        elif meth is None or base is None:
            notes.append("no baseline to compare with")
        elif c["statistic"] in ("seq_abs_points", "abs_points_pass1", "gain_ratio_pass1"):
            seq = (find_comparison(analysis, meth, base, "sequential") or {}).get("matched") or []
            if seq:
                g = max(seq, key=lambda x: x["max_tokens"])
                notes.append(f"single-trace accuracy (pass@1) at max tokens {g['max_tokens']}: "
                             f"{100 * g['method_mean']:.1f}% vs {100 * g['baseline_mean']:.1f}%")
                if c["statistic"] != "gain_ratio_pass1":
                    est = g["abs_points"]
                elif g.get("gain_ratio"):
                    est, undefined = _gain_ratio(g["gain_ratio"], meth, base, notes)
                else:
                    notes.append("the gain ratio needs the starting checkpoint ('base') swept in the same store")
                if meth in BRIDGE_METHODS:
                    notes.append(f"{meth}'s pass@1 is one sample decoded alone (width 1, its direct estimator); "
                                 f"the paper's may average samples decoded together (width not stated in our "
                                 f"sources); benchmarks/bench_bridge.py measures both (acc@1, acc@4)")
        elif c["statistic"] in ("tpc_rel_pct", "segments_rel_pct"):
            notes.append("measured from the sweep's saved samples by the report (section Sequential efficiency), "
                         "not in analysis.json")
        elif c["statistic"] == "multiplier_max":
            comp = find_comparison(analysis, meth, base, c["metric"])
            if comp:
                est, censored = comp["multiplier_max"], bool(comp["multiplier_max"]["censored"])
                share = est.get("censored_fraction") or 0.0
                open_end = censored or share > verdicts.CENSORED_SHARE_MAX
                notes.append(f"compute = {unit}; " + stats.MAX_WARNING)
                if open_end:
                    notes.append(f"a lower bound in {100 * share:.0f}% of the bootstrap replicates"
                                 f"{' and in the point estimate' if censored else ''} (the baseline never reaches "
                                 f"the level within the grid, or the method reaches it at its cheapest point): the "
                                 f"CI's upper end is open, so only its lower end is judged")
        elif c["statistic"] == "rel_pct_at_max_compute":
            comp = find_comparison(analysis, meth, base, "all")
            if comp and comp["gap"]["at_max_compute"]:
                g = comp["gap"]["at_max_compute"]
                est = g["rel_pct"]
                notes.append(f"our reading: relative accuracy gap at the largest common {unit} "
                             f"({g['compute']:.4g}) of the envelopes over maj@k / aggregate / rsa / rsa_maj "
                             f"(pass@k left out: oracle selection)")
        elif c["statistic"] == "abs_points":
            g = _rsa_matched(find_comparison(analysis, meth, base, "rsa"))
            if g:
                est = g["abs_points"]
                notes.append(f"matched cell {g['cell']} (largest max tokens, then largest T): RSA population "
                             f"accuracy {100 * g['method_mean']:.1f}% vs {100 * g['baseline_mean']:.1f}%")
        else:
            notes.append(f"statistic {c['statistic']!r} is not mapped to a measurement")
        if est is not None and est.get("value") is not None:
            lo, hi = est["ci"]
            row.update(measured=est["value"], ci_lo=lo, ci_hi=hi, censored=censored or open_end,
                       censored_fraction=est.get("censored_fraction"), valid_fraction=est.get("valid_fraction"),
                       verdict=judge(c, lo, hi, open_end))
            if row["verdict"] == "inconclusive" and not open_end:
                notes.append("the CI is undefined or contains both the no-effect and the published value"
                             if row["type"] != "bound" else "the CI contains the bound")
        elif undefined:
            row["verdict"] = "inconclusive"
        elif meth is not None and base is not None and len(notes) == n_context and not absent:
            notes.append("the needed cells are not in the store (or are undefined)")
        if provisional:
            notes.append(f"provisional: {PROVISIONAL_NOTE}")
        row["note"] = NOTE_SEP.join(notes)
        rows.append(row)
    return rows




def judge(claim: dict, lo, hi, open_end: bool = False) -> str:
    """The verdict label of a measured CI [lo, hi] against one published claim (`verdicts.verdict`)."""
    return verdicts.verdict([lo, hi], claim["value"], claim["direction"], claim.get("type", "point"),
                            claim.get("null_value"), open_end)


def _gain_ratio(gr: dict, meth: str, base: str, notes: list) -> tuple[dict | None, bool]:
    """(estimate or None, undefined) of a matched gap's `gain_ratio` entry; its gains go into notes."""
    mg, bg = gr["method_gain"], gr["baseline_gain"]
    pt = lambda v: "n/a" if v is None else f"{v:+.1f}"  # noqa: E731
    txt = lambda g: f"{pt(g['value'])} pts [{pt(g['ci'][0])}, {pt(g['ci'][1])}]"  # noqa: E731
    notes.append(f"pass@1 gain over {gr['reference']}: {meth} {txt(mg)}, {base} {txt(bg)}")
    if gr.get("defined"):
        return {"value": gr["value"], "ci": gr["ci"]}, False
    hi = bg["ci"][1]
    if hi is not None and math.isfinite(hi) and hi < 0:
        notes.append(f"the ratio is undefined: {base} LOST pass@1 against {gr['reference']} (its gain's CI lies "
                     f"below 0), and a ratio of two losses is not a gain ratio; compare the two gains directly")
    else:
        notes.append(f"the ratio is undefined: {base}'s own gain has a CI reaching 0, so the ratio's interval is "
                     f"unbounded")
    return None, True


def verdict_table(analysis: dict) -> pd.DataFrame:
    """The claims rows of an analysis as a DataFrame (VERDICT_COLUMNS)."""
    return pd.DataFrame(analysis.get("claims", []), columns=VERDICT_COLUMNS)


def _num(x, unit: str) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "n/a"
    return f"{x:.2f}x" if unit == "multiplier" else f"{x:+.1f}%" if unit == "percent" else f"{x:+.1f} pts"


def runs_text(row) -> str:
    """'3 vs 3' training runs of the method vs the baseline, '(provisional)' added for one run."""
    tr = row.get("train_runs") if isinstance(row, dict) else getattr(row, "train_runs", None)
    prov = row.get("provisional") if isinstance(row, dict) else getattr(row, "provisional", False)
    text = " vs ".join(str(v) for v in (tr or {}).values()) or "n/a"
    return f"{text} (provisional)" if prov else text


def interval_text(analysis: dict) -> str:
    """How this analysis's intervals were made, in one sentence."""
    boot = analysis.get("bootstrap") or {}
    runs = analysis.get("train_runs") or {}
    head = f"{boot.get('B')} paired bootstrap resamples over {analysis.get('n_problems')} problems"
    if boot.get("resampled") == "training runs, then problems":
        per = ", ".join(f"{m} {r}" for m, r in runs.items())
        return (f"{head} and, within each method, its training runs ({per}): the two-level bootstrap, so "
                f"the intervals include training variance")
    return f"{head}, one training run per method ({PROVISIONAL_NOTE})"


def format_verdicts(analysis: dict) -> str:
    """A plain-text verdict table for the terminal, then the rules of the labels used and the notes
    (each distinct note once)."""
    t = verdict_table(analysis)
    head = f"Claims vs measured ({analysis.get('compute_col')}; {interval_text(analysis)})"
    lines = [head, f"{'claim':32s} {'type':>8s} {'published':>10s} {'measured':>10s} {'95% CI':>24s} {'runs':>18s}"
                   f"  verdict"]
    for r in t.itertuples(index=False):
        meas = ("≥ " if r.censored else "") + _num(r.measured, r.unit)
        ci = f"[{_num(r.ci_lo, r.unit)}, {_num(r.ci_hi, r.unit)}{'+' if r.censored else ''}]" \
            if r.measured is not None else ""
        lines.append(f"{r.claim:32s} {str(r.type).replace('_', ' '):>8s} {_num(r.published, r.unit):>10s} {meas:>10s} "
                     f"{ci:>24s} {runs_text(r):>18s}  {r.verdict}")
    if len(t):
        lines.append(f"method {t.method.iloc[0]} vs baseline {t.baseline.iloc[0]}; '+' after a CI: its upper end is "
                     f"open (a lower bound). Verdicts (the CI against the published and the no-effect value):")
        used = set(t.verdict)
        lines += [f"  {label}: {rule}" for label, _, rule in verdicts.RULES if label in used]
        lines.append("Notes:")
        seen: set = set()
        for r in t.itertuples(index=False):      # each distinct note segment once
            for seg in str(r.note).split(NOTE_SEP):
                if seg not in seen:
                    seen.add(seg)
                    lines.append(f"  [{r.claim}] {seg}")
    return "\n".join(lines)
