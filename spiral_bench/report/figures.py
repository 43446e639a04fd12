"""Report figures (matplotlib Agg backend, seaborn style), drawn from saved files only.

Each function takes already-loaded data (an `analysis.json` dict or training metrics rows), writes
one small PNG (dpi 100) into `out_dir` and returns its path, or None when there is nothing to draw
(the caller lists that under "Missing"). Nothing is recomputed: every number plotted is a number
stored in analysis.json / metrics.jsonl.

- `accuracy_vs_compute`: one panel per scaffold family (pass@k, maj@k, aggregate, rsa, rsa_maj)
  plus the "all primitives" frontier; x = mean compute per problem (log), y = accuracy. Every grid
  point is a dot; the family's monotone envelope (points with on_frontier) is a line with its 95%
  bootstrap CI band (the stored per-point percentile CI); with several training runs per method,
  each run's own monotone curve is drawn faintly behind it (the points' stored per-run means).
- `multiplier_curve`: m(a) = C_baseline(a) / C_method(a) at the method's accuracy levels, one panel
  per family, CI band from the stored CIs; censored levels (baseline never reaches a, so m is a
  lower bound) drawn as up-triangles; m = 1 dashed.
- `sequential_axis`: pass@1 vs max new tokens (single trace) with CI bands.
- `training_curves`: per training step, per method: reward, search / aggregation accuracy,
  search-trace token entropy, lengths, generated tokens per prompt, and a bar panel of the mean
  generated tokens per prompt per method (the matched-compute audit).
"""
from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import seaborn as sns  # noqa: E402
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter  # noqa: E402

DPI = 100
FAMILY_ORDER = ("pass@k", "maj@k", "aggregate", "rsa", "rsa_maj")
FAMILY_TITLES = {"pass@k": "parallel: pass@k (oracle)", "maj@k": "parallel: majority vote",
                 "aggregate": "model aggregation", "rsa": "RSA steps (population acc.)",
                 "rsa_maj": "RSA steps + majority", "all": "all primitives (deployable envelope)"}
TRAIN_PANELS = (("search_reward", "reward (search traces)"), ("search_acc", "search accuracy"),
                ("agg_acc", "aggregation accuracy"), ("search_entropy", "search-trace token entropy"),
                ("search_len", "search length (tokens)"), ("agg_len", "aggregation length (tokens)"),
                ("generated_tokens_per_prompt", "generated tokens / prompt"))
_KNOWN = ("spiral", "grpo", "base")


def colors(methods) -> dict:
    """A stable colour per method label (spiral, grpo, base first, then the rest in order)."""
    pal = sns.color_palette("colorblind", 10)
    order = [m for m in _KNOWN] + [m for m in methods if m not in _KNOWN]
    return {m: pal[i % len(pal)] for i, m in enumerate(order)}


def _f(x) -> float:
    return float(x) if x is not None else math.nan


def _grid(n: int, w: float = 3.6, h: float = 2.8, ncols: int = 3):
    sns.set_theme(style="whitegrid", context="paper")
    ncols = max(1, min(ncols, n))
    nrows = math.ceil(n / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(w * ncols, h * nrows), squeeze=False)
    axes = axes.ravel()
    for ax in axes[n:]:
        ax.set_visible(False)
    return fig, axes[:n]


def _save(fig, out_dir, name: str) -> Path:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / name
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


def _logx(ax, base: int = 10, axis: str = "x") -> None:
    """Log axis with plain tick labels at 1, 2, 5 x 10^n (or powers of 2) and no minor labels."""
    getattr(ax, f"set_{axis}scale")("log", base=base)
    a = getattr(ax, f"{axis}axis")
    a.set_major_locator(LogLocator(base=base, subs=(1.0, 2.0, 5.0) if base == 10 else (1.0,)))
    a.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    a.set_minor_formatter(NullFormatter())


def _widen(ax, xs, factor: float = 2.0) -> None:
    """On a log x axis whose points span less than `factor`x (e.g. one aggregation setting per
    method), show [min / factor, max x factor] so the ticks are round numbers, not a crowd of decimals."""
    xs = [x for x in xs if np.isfinite(x) and x > 0]
    if xs and max(xs) / min(xs) < factor:
        ax.set_xlim(min(xs) / factor, max(xs) * factor)


def _note(ax, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, fontsize=8, color="0.4", wrap=True)


def _band(ax, x, mean, lo, hi, color, label, marker="o", dodge: float = 1.0):
    """Line + CI band; a single point gets an error bar instead, its x multiplied by `dodge` so that
    methods at the same compute stay apart."""
    x, mean, lo, hi = (np.asarray(v, dtype=float) for v in (x, mean, lo, hi))
    ok = np.isfinite(lo) & np.isfinite(hi)
    if len(x) == 1:
        x = x * dodge
    ax.plot(x, mean, marker=marker, ms=3, lw=1.5, color=color, label=label)
    if ok.sum() == 1 and len(x) == 1:  # a band needs two points: show the CI as an error bar
        ax.errorbar(x, mean, yerr=np.vstack([mean - lo, hi - mean]), color=color, capsize=3, lw=1)
    elif ok.any():
        ax.fill_between(x[ok], lo[ok], hi[ok], color=color, alpha=0.2, lw=0)


# ------------------------------------------------------------------------------ accuracy vs compute
def _run_lines(ax, pts, color) -> None:
    """Each training run's own monotone curve, faint, behind the pooled one (points with "runs")."""
    ids = sorted({r["train_run"] for p in pts for r in p.get("runs") or []})
    for rid in ids:
        xy = sorted((r["compute"], r["accuracy"]) for p in pts for r in p.get("runs") or [] if r["train_run"] == rid)
        if xy:
            x, y = zip(*xy)
            ax.plot(x, np.maximum.accumulate(y), lw=0.8, alpha=0.3, color=color, zorder=1)


def accuracy_vs_compute(analysis: dict, out_dir, name: str = "accuracy_vs_compute.png") -> Path | None:
    """Accuracy vs compute per method for each family present (module doc)."""
    curves, methods = analysis.get("curves") or {}, analysis.get("methods") or list(analysis.get("curves") or {})
    fams = [f for f in FAMILY_ORDER if any(curves.get(m, {}).get(f) for m in methods)]
    if any((analysis.get("frontier") or {}).get(m) for m in methods):
        fams.append("all")
    if not fams:
        return None
    col = colors(methods)
    unit = analysis.get("compute_col", "compute")
    fig, axes = _grid(len(fams))
    for ax, fam in zip(axes, fams):
        xs = []
        for i, m in enumerate(methods):
            if fam == "all":
                env = (analysis.get("frontier") or {}).get(m, {}).get("points", [])
                pts = env
            else:
                pts = curves.get(m, {}).get(fam, [])
                env = [p for p in pts if p.get("on_frontier")]
            if not pts:
                continue
            xs += [p["compute"]["mean"] for p in pts]
            _run_lines(ax, pts, col[m])
            ax.scatter([p["compute"]["mean"] for p in pts], [p["accuracy"]["mean"] for p in pts],
                       s=10, color=col[m], alpha=0.45, lw=0)
            env = sorted(env, key=lambda p: p["compute"]["mean"])
            _band(ax, [p["compute"]["mean"] for p in env], [p["accuracy"]["mean"] for p in env],
                  [_f(p["accuracy"]["ci"][0]) for p in env], [_f(p["accuracy"]["ci"][1]) for p in env],
                  col[m], m, dodge=1 + 0.06 * (i - (len(methods) - 1) / 2))
        _logx(ax)
        _widen(ax, xs)
        ax.set_title(FAMILY_TITLES.get(fam, fam), fontsize=9)
        ax.set_xlabel(f"{unit} per problem (log)", fontsize=8)
        ax.set_ylabel("accuracy", fontsize=8)
        ax.legend(fontsize=7, loc="best")
    fig.suptitle("Accuracy vs inference compute (line: monotone envelope, band: 95% bootstrap CI)", fontsize=10)
    return _save(fig, out_dir, name)


# ------------------------------------------------------------------------------ multipliers
def multiplier_curve(analysis: dict, out_dir, name: str = "multipliers.png") -> Path | None:
    """m(a) vs accuracy level per family with CI band; censored levels marked (module doc)."""
    comps = [c for c in analysis.get("comparisons") or [] if c.get("multipliers") is not None]
    if not comps:
        return None
    fams = [f for f in FAMILY_ORDER + ("all",) if any(c["family"] == f for c in comps)]
    col = colors(analysis.get("methods") or [])
    fig, axes = _grid(len(fams))
    for ax, fam in zip(axes, fams):
        drawn, cen_label = False, "censored (lower bound)"
        for c in (c for c in comps if c["family"] == fam):
            pts = [p for p in c["multipliers"] if p.get("value") is not None and math.isfinite(_f(p["value"]))]
            if not pts:
                continue
            drawn = True
            lv = [p["level"] for p in pts]
            _band(ax, lv, [p["value"] for p in pts], [_f(p["ci"][0]) for p in pts], [_f(p["ci"][1]) for p in pts],
                  col.get(c["method"], "C0"), f"{c['method']} vs {c['baseline']}")
            cen = [p for p in pts if p.get("censored")]
            if cen:
                ax.scatter([p["level"] for p in cen], [p["value"] for p in cen], marker="^", s=40, zorder=3,
                           facecolor="none", edgecolor="k", lw=1, label=cen_label)
                cen_label = None
        ax.axhline(1.0, ls="--", lw=0.8, color="0.4")
        if drawn:
            _logx(ax, axis="y")
            ax.legend(fontsize=7, loc="best")
        else:
            _note(ax, "m(a) undefined at every level\n(baseline never below the method's levels,\n"
                      "or the method reaches none)")
        ax.set_title(FAMILY_TITLES.get(fam, fam), fontsize=9)
        ax.set_xlabel("accuracy level a", fontsize=8)
        ax.set_ylabel("m(a) = C_base(a) / C_method(a)", fontsize=8)
    fig.suptitle("Scaling-efficiency multiplier (band: 95% CI; triangles: censored, a lower bound)", fontsize=10)
    return _save(fig, out_dir, name)


# ------------------------------------------------------------------------------ sequential axis
def sequential_axis(analysis: dict, out_dir, name: str = "sequential.png") -> Path | None:
    """pass@1 vs max new tokens (single trace) per method with CI bands."""
    seq = {m: pts for m, pts in (analysis.get("sequential") or {}).items() if pts}
    if not seq:
        return None
    col = colors(list(seq))
    fig, (ax,) = _grid(1, w=4.8, h=3.2)
    for m, pts in seq.items():
        _band(ax, [p["max_tokens"] for p in pts], [p["accuracy"]["mean"] for p in pts],
              [_f(p["accuracy"]["ci"][0]) for p in pts], [_f(p["accuracy"]["ci"][1]) for p in pts], col[m], m)
    _logx(ax, 2)
    ax.set_xlabel("max new tokens per trace (log2)", fontsize=8)
    ax.set_ylabel("accuracy, one trace (pass@1)", fontsize=8)
    ax.set_title("Sequential axis (band: 95% bootstrap CI)", fontsize=9)
    ax.legend(fontsize=7)
    return _save(fig, out_dir, name)


# ------------------------------------------------------------------------------ training curves
def _series(rows: list[dict], key: str) -> tuple[np.ndarray, np.ndarray]:
    x = np.array([_f(r.get("step")) for r in rows])
    y = np.array([_f(r.get(key)) for r in rows])
    return x, y


def training_curves(train: dict, out_dir, name: str = "training.png") -> Path | None:
    """train: {method: metrics rows (dicts with METRIC_FIELDS)}; one panel per metric + the audit bars."""
    train = {m: rows for m, rows in train.items() if rows}
    if not train:
        return None
    col = colors(list(train))
    fig, axes = _grid(len(TRAIN_PANELS) + 1, w=3.3, h=2.5, ncols=4)
    for ax, (key, title) in zip(axes, TRAIN_PANELS):
        drawn = False
        for m, rows in train.items():
            x, y = _series(rows, key)
            if np.isfinite(y).any():
                ax.plot(x, y, marker="o" if len(x) < 20 else None, ms=3, lw=1.3, color=col[m], label=m)
                drawn = True
        if drawn:
            ax.legend(fontsize=7)
        else:
            _note(ax, "not logged")
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("step", fontsize=8)
    ax = axes[-1]
    means = {}
    for m, rows in train.items():
        y = _series(rows, "generated_tokens_per_prompt")[1]
        if np.isfinite(y).any():
            means[m] = float(np.nanmean(y))
    if means:
        ax.bar(list(means), list(means.values()), color=[col[m] for m in means])
        for i, v in enumerate(means.values()):
            ax.text(i, v, f"{v:.0f}", ha="center", va="bottom", fontsize=8)
    else:
        _note(ax, "not logged")
    ax.set_title("matched compute: mean tokens / prompt", fontsize=9)
    fig.suptitle("Training curves per method", fontsize=10)
    return _save(fig, out_dir, name)
