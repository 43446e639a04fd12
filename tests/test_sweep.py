"""Budget grids, pooled sweep and the resumable cell store, with the scripted fake policy."""
import itertools
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fakes import CrashError, FakeTask, ScriptedBackend, random_policy
from spiral_bench.backends.base import SamplingConfig
from spiral_bench.config import ConfigError
from spiral_bench.scaffolds import aggregate, parallel, rsa
from spiral_bench.sweep import (CELL_COLUMNS, BudgetGrid, grid_cells, load_cells, load_grid, replicate_seed,
                                run_sweep, trace_counts, truncate_sample)

GOLD = ["7", "3", "5", "1", "4", "9"]


def make(delay=0.0, crash=None):
    task = FakeTask(GOLD)
    pol = random_policy(0.45, {f"q{i}": g for i, g in enumerate(GOLD)}, n_wrong=3, pad_max=12)
    return task, task.problems(), ScriptedBackend(pol, delay=delay, crash_after_calls=crash)


# ------------------------------------------------------------------------------- grids
def test_presets_load_and_hand_counts():
    for name in ("smoke", "default", "paper"):
        assert load_grid(name).name == name
    g = load_grid("smoke")
    assert g.pool_size == 4 and len(grid_cells(g)) == 2 * (3 + 3 + 1 + 4)
    # per L: pass 1+2+4, maj 1+2+4, aggregate 2+1, rsa (4+4) + (4+8); pooled 4 + 1 + 4*2
    assert trace_counts(g) == {"naive_traces": 2 * 37, "pooled_traces": 2 * 13,
                               "naive_budget": 37 * 16 + 37 * 24, "pooled_budget": 13 * 16 + 13 * 24}
    d = load_grid("default")
    assert d.pool_size == 16 and d.parallel == tuple(range(1, 17))
    p = load_grid("paper")
    assert p.pool_size == 64 and max(next(a for a in p.aggregative if a.kind == "rsa").steps) == 10


@pytest.mark.parametrize("text,field", [
    ("sequential: [32]\nparalel: [1]\n", "paralel"),
    ("parallel: [1, 0]\n", "parallel: 0"),
    ("parallel: [2, 2]\n", "parallel"),
    ("aggregative: [{kind: vote}]\n", "aggregative[0].kind"),
    ("aggregative: [{kind: rsa, population: 2, subset: 3}]\n", "subset"),
    ("aggregative: [{kind: aggregate, set_size: 4, n: [2]}]\n", "n"),
    ("aggregative: [{kind: rsa, stepz: [1]}]\n", "aggregative[0].'stepz'"),
    ("sequential: 32\n", "sequential"),
])
def test_bad_grid_names_the_field(tmp_path, text, field):
    f = tmp_path / "g.yaml"
    f.write_text(text)
    with pytest.raises(ConfigError) as e:
        load_grid(f)
    assert field in str(e.value)


def test_unknown_preset():
    with pytest.raises(ConfigError, match="smoke"):
        load_grid("smok")


# ------------------------------------------------------------------------------- sweep
def brute_pass(r, k):
    return np.mean([max(s) for s in itertools.combinations(r, k)])


def brute_maj(keys, r, k):
    vals = []
    for idx in itertools.combinations(range(len(keys)), k):
        c = Counter(keys[i] for i in idx if keys[i] is not None)
        if not c:
            vals.append(0.0)
            continue
        top = max(c.values())
        tied = [a for a in c if c[a] == top]
        acc = {a: np.mean([r[i] for i in range(len(keys)) if keys[i] == a]) for a in tied}
        vals.append(np.mean([acc[a] for a in tied]))
    return np.mean(vals)


@pytest.fixture(scope="module")
def full(tmp_path_factory):
    out = tmp_path_factory.mktemp("full")
    task, probs, be = make()
    df = run_sweep(be, task, probs, "smoke", "m1", out, seed=4, progress=False)
    return out, df, be


def test_pooled_cells_match_brute_force(full):
    out, df, be = full
    assert list(df.columns) == CELL_COLUMNS and len(df) == 22 * 6
    assert len(be.calls) == 2 * (1 + 1 + 2)                       # per L: pool, aggregate, 2 rsa steps
    for L in (16, 24):
        pool = pd.read_parquet(out / "work" / "m1" / f"pool_L{L}_r0.parquet")
        for pid, g in pool.groupby("problem_id"):
            g = g.sort_values("j")
            r, keys = list(g["reward"]), [k if isinstance(k, str) else None for k in g["key"]]
            for k in (1, 2, 4):
                row = df[(df.max_tokens == L) & (df.k == k) & (df.problem_id == pid)]
                got = dict(zip(row.family, row.correct))
                assert got["pass@k"] == pytest.approx(brute_pass(r, k))
                assert got["maj@k"] == pytest.approx(brute_maj(keys, r, k))
                gen = row.generated_tokens.iloc[0]
                assert gen == pytest.approx(np.mean([sum(s) for s in itertools.combinations(g["completion_tokens"], k)]))
                assert row.max_token_budget.iloc[0] == k * L and row.prompt_tokens.iloc[0] == len(f"Q q{pid[1:]}\n")
    assert 0 < df[df.family == "pass@k"].correct.mean() < 1       # the fake policy is neither perfect nor useless


def test_sampled_cells_equal_direct_scaffold_runs(full):
    out, df, _ = full
    task, probs, _ = make()
    rs = replicate_seed(4, 0)
    for L in (16, 24):
        samp = SamplingConfig(max_new_tokens=L)
        cell = df[(df.max_tokens == L)].set_index(["family", "k", "steps", "problem_id"])
        cols = ["correct", "prompt_tokens", "generated_tokens", "max_token_budget", "flops"]

        def check(fam, k, T, recs, field="correct"):
            for rec in recs:
                got = cell.loc[(fam, k, T, rec.problem_id), cols].tolist()
                c = rec.compute
                want = [getattr(rec, field) if field else None, c.prompt_tokens, c.generated_tokens,
                        c.max_token_budget, c.flops]
                assert got == pytest.approx(want)

        check("aggregate", 2, 1, aggregate(ScriptedBackend(make()[2].policy), task, probs, samp, n=2, set_size=2, seed=rs))
        check("pass@k", 4, 0, parallel(ScriptedBackend(make()[2].policy), task, probs, samp, n=4, seed=rs))
        for T in (1, 2):
            recs = rsa(ScriptedBackend(make()[2].policy), task, probs, samp, population=4, subset=2, steps=T, seed=rs)
            check("rsa", 4, T, recs, "correct")
            check("rsa_maj", 4, T, recs, "majority_correct")


def test_finished_sweep_reruns_without_sampling(full):
    out, df, _ = full
    task, probs, be = make()
    again = run_sweep(be, task, probs, "smoke", "m1", out, seed=4, progress=False)
    assert be.calls == [] and again.equals(df)
    with pytest.raises(ValueError, match="seed"):
        run_sweep(be, task, probs, "smoke", "m1", out, seed=5, progress=False)
    assert load_cells(out).equals(pd.read_parquet(out / "cells.parquet"))


@pytest.mark.parametrize("crash", [1, 2, 3, 5, 7])
def test_resume_after_crash_equals_uninterrupted(full, tmp_path, crash):
    _, ref, ref_be = full
    task, probs, be = make(crash=crash)
    with pytest.raises(CrashError):
        run_sweep(be, task, probs, "smoke", "m1", tmp_path, seed=4, progress=False)
    task, probs, be2 = make()
    got = run_sweep(be2, task, probs, "smoke", "m1", tmp_path, seed=4, progress=False)
    pd.testing.assert_frame_equal(got, ref, check_exact=True)
    # nothing finished was sampled twice: the two runs made exactly the uninterrupted run's calls
    assert len(be.calls) + len(be2.calls) == len(ref_be.calls)
    assert be.generated_tokens + be2.generated_tokens == ref_be.generated_tokens


def test_resume_after_sigkill_equals_uninterrupted(full, tmp_path):
    _, ref, _ = full
    script = tmp_path / "run.py"
    script.write_text(
        "import sys\n"
        f"sys.path.insert(0, {str(Path(__file__).parent)!r})\n"
        "import test_sweep\n"
        "task, probs, be = test_sweep.make(delay=0.25)\n"
        f"test_sweep.run_sweep(be, task, probs, 'smoke', 'm1', {str(tmp_path / 'out')!r}, seed=4, progress=False)\n")
    proc = subprocess.Popen([sys.executable, str(script)], env=dict(os.environ))
    cells = tmp_path / "out" / "cells" / "m1"
    deadline = time.time() + 60
    while time.time() < deadline and len(list(cells.glob("*.parquet"))) < 8:
        assert proc.poll() is None, "the sweep ended before it could be killed"
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    n_done = len(list(cells.glob("*.parquet")))
    assert 8 <= n_done < 22
    task, probs, be = make()
    got = run_sweep(be, task, probs, "smoke", "m1", tmp_path / "out", seed=4, progress=False)
    pd.testing.assert_frame_equal(got, ref, check_exact=True)
    assert len(be.calls) < 8                                       # the finished pool and cells were not redone


def test_two_methods_share_a_store(full, tmp_path):
    _, ref, _ = full
    task, probs, be = make()
    grid = BudgetGrid(sequential=(6,), parallel=(1, 3))
    a = run_sweep(be, task, probs, grid, "base", tmp_path, seed=1, progress=False)
    b = run_sweep(be, task, probs, grid, "tuned", tmp_path, seed=1, progress=False)
    both = pd.read_parquet(tmp_path / "cells.parquet")
    assert sorted(both.method.unique()) == ["base", "tuned"] and len(both) == len(a) + len(b) == 2 * 2 * 6
    assert len(be.calls) == 2                                      # one pool per method
    with pytest.raises(ValueError, match="method"):
        run_sweep(be, task, probs, grid, "../x", tmp_path, progress=False)


# ------------------------------------------------------------------- prefix pooling (sequential axis)
class PrefixFake(ScriptedBackend):
    """The scripted fake cuts each trace to its budget, so it is prefix-consistent by construction."""

    prefix_consistent = True

    def decode(self, ids):
        return "".join(map(chr, ids))


def make_prefix(crash=None, delay=0.0):
    task, probs, be = make()
    return task, probs, PrefixFake(be.policy, crash_after_calls=crash, delay=delay)


def test_truncate_sample_rules():
    dec = lambda ids: "".join(map(chr, ids))  # noqa: E731
    ids = [ord(c) for c in "abc\ndef"]
    assert truncate_sample(ids, "abc\ndef", "stop", 7, dec) == ("abc\ndef", 7, "stop")      # n <= L: as is
    assert truncate_sample(ids, "abc\ndef", "length", 9, dec) == ("abc\ndef", 7, "length")
    assert truncate_sample(ids, "abc\ndef", "stop", 5, dec) == ("abc\nd", 5, "length")      # cut, no stop
    assert truncate_sample(ids, "abc\ndef", "stop", 5, dec, ("\n",)) == ("abc\n", 5, "stop")  # stop applied again
    assert truncate_sample(ids, "abc\ndef", "stop", 2, dec, ("\n",)) == ("ab", 2, "length")


def test_prefix_trace_counts():
    g = load_grid("smoke")
    # pool once at L_max = 24 (4 traces), then per L: aggregate 1 + rsa 4*2
    assert trace_counts(g, prefix_pool=True) == {"naive_traces": 2 * 37, "pooled_traces": 4 + 2 * 9,
                                                 "naive_budget": 37 * 16 + 37 * 24,
                                                 "pooled_budget": 4 * 24 + 9 * 16 + 9 * 24}


@pytest.fixture(scope="module")
def pooled_full(tmp_path_factory):
    out = tmp_path_factory.mktemp("pooled")
    task, probs, be = make_prefix()
    df = run_sweep(be, task, probs, "smoke", "m1", out, seed=4, progress=False)
    return out, df, be


def test_prefix_pooled_sweep_equals_per_level_sweep(full, pooled_full):
    _, ref, ref_be = full
    out, got, be = pooled_full
    pd.testing.assert_frame_equal(got, ref, check_exact=True)    # every cell as if sampled at its own L
    assert len(be.calls) == 1 + 2 * (1 + 2)                        # one pool, then per L: aggregate, 2 rsa steps
    assert [r.max_new_tokens for r in be.calls[0]] == [24] * 6
    assert be.generated_tokens < ref_be.generated_tokens
    assert not (out / "work" / "m1" / "pool_L16_r0.parquet").exists()
    assert "token_ids" in pd.read_parquet(out / "work" / "m1" / "pool_L24_r0.parquet").columns
    # some traces really were cut (the check is not vacuous)
    pool16 = pd.read_parquet(full[0] / "work" / "m1" / "pool_L16_r0.parquet")
    assert (pool16.finish_reason == "length").any() and (pool16.finish_reason == "stop").any()


@pytest.mark.parametrize("crash", [1, 2, 4])
def test_prefix_pooled_resume_equals_uninterrupted(pooled_full, tmp_path, crash):
    _, ref, ref_be = pooled_full
    task, probs, be = make_prefix(crash=crash)
    with pytest.raises(CrashError):
        run_sweep(be, task, probs, "smoke", "m1", tmp_path, seed=4, progress=False)
    task, probs, be2 = make_prefix()
    got = run_sweep(be2, task, probs, "smoke", "m1", tmp_path, seed=4, progress=False)
    pd.testing.assert_frame_equal(got, ref, check_exact=True)
    assert len(be.calls) + len(be2.calls) == len(ref_be.calls)
    assert be.generated_tokens + be2.generated_tokens == ref_be.generated_tokens


def test_prefix_mode_is_part_of_the_manifest(pooled_full):
    out, _, _ = pooled_full
    task, probs, be = make()                                      # not prefix-consistent
    with pytest.raises(ValueError, match="prefix_pool"):
        run_sweep(be, task, probs, "smoke", "m1", out, seed=4, progress=False)


def test_non_independent_backend_gets_one_group_per_width(tmp_path):
    """A Bridge-like backend (independent_samples False): per L, exactly one request of n = w per
    problem and width w (seeds per width); cells score the width-w group itself (estimator direct)."""
    from fakes import is_aggregation
    from spiral_bench.sweep_direct import group_seed
    task, problems, backend = make()
    backend.independent_samples = False       # e.g. the hf backend on a Bridge model
    df = run_sweep(backend, task, problems, "smoke", "bridge", tmp_path, seed=3, progress=False)
    assert set(df.estimator) == {"direct"} and len(df) == 22 * 6
    search = [c for c in backend.calls if not is_aggregation(c[0].prompt)]
    assert len(search) == 2 * 3                                   # L in (16, 24) x widths (1, 2, 4)
    rs = replicate_seed(3, 0)
    for calls, L in ((search[:3], 16), (search[3:], 24)):
        for call, w in zip(calls, (1, 2, 4)):
            assert [(r.n, r.seed, r.max_new_tokens) for r in call] == [(w, group_seed(rs, w, p.id), L) for p in problems]
    for L in (16, 24):
        for w in (1, 2, 4):
            g = pd.read_parquet(tmp_path / "work" / "bridge" / f"group_w{w}_L{L}_r0.parquet")
            for pid, gp in g.groupby("problem_id"):
                gp = gp.sort_values("j")
                r, keys = list(gp["reward"]), [k if isinstance(k, str) else None for k in gp["key"]]
                row = df[(df.max_tokens == L) & (df.k == w) & (df.problem_id == pid)]
                got = dict(zip(row.family, row.correct))
                assert got["pass@k"] == max(r) and got["maj@k"] == pytest.approx(brute_maj(keys, r, w))
                assert set(row[row.family.isin(["pass@k", "maj@k"])].pool_size) == {w}
                assert row.generated_tokens.iloc[0] == gp["completion_tokens"].sum()
    n = len(backend.calls)
    again = run_sweep(backend, task, problems, "smoke", "bridge", tmp_path, seed=3, progress=False)
    assert len(backend.calls) == n and again.equals(df)           # resumed from the stored groups
    backend.independent_samples = True
    plain = run_sweep(backend, task, problems, "smoke", "plain", tmp_path, progress=False)
    assert set(plain.estimator) == {"pooled"}
    assert set(load_cells(tmp_path).groupby("method").estimator.first().items()) == {("bridge", "direct"),
                                                                                      ("plain", "pooled")}
    from spiral_bench.evaluate import analyze_cells
    a = analyze_cells(load_cells(tmp_path), ["bridge", "plain"], "plain", B=50)
    assert a["estimators"] == {"bridge": ["direct"], "plain": ["pooled"]}   # the report prints it
