"""Trainers: SFT cache and data, the shared RL loop (metrics, micro-batch/rank scaling, resume after
kill -9, torchrun with 2 processes), and the matched-compute check.

The RL tests use a random-init tiny model and a toy task ("toy7": reward 1 iff the completion
contains the character '7'), so rewards vary inside a group from the first step and every step
really moves the weights.
"""
from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from spiral_bench.config import ConfigError, build
from spiral_bench.tasks.base import register
from spiral_bench.trainers import loop, sft
from spiral_bench.trainers.train_config import PairingError, TrainConfig, check_pairing, make_config

TESTS = Path(__file__).resolve().parent
sys.path.insert(0, str(TESTS))
from fakes import FakeTask, Toy7  # noqa: E402


class HalfFlat(Toy7):
    """Even problems reward every trace 1 (advantage 0 everywhere: uninformative), odd ones as toy7."""
    name = "halfflat"

    def reward(self, problem, completion):
        return 1.0 if int(problem.id[1:]) % 2 == 0 else super().reward(problem, completion)


register("halfflat")(HalfFlat)


class Parity(Toy7):
    """Reward 1 when the completion's first character has an even code point: about half the traces."""
    name = "parity"

    def reward(self, problem, completion):
        return float(bool(completion) and ord(completion[0]) % 2 == 0)


register("parity")(Parity)

BASE = {"task": "toy7", "task_options": {"n": 16}, "model": "tiny-1m", "train_problems": 16, "steps": 2,
        "prompts_per_step": 2, "group_size": 4, "max_new_tokens": 10, "spiral_max_new_tokens": 10,
        "n1": 4, "k": 3, "subset_size": 2, "n2": 2, "lr": 1e-3, "checkpoint_every": 2, "micro_batch_size": 0}

LAUNCHER = textwrap.dedent("""
    import json, sys, time
    sys.path.insert(0, {tests!r})
    from fakes import FakeTask
    from spiral_bench.config import build
    from spiral_bench.tasks.base import register
    from spiral_bench.trainers.loop import train
    from spiral_bench.trainers.train_config import TrainConfig

    class Toy7(FakeTask):
        "toy7, slowed down."
        name = "toy7"
        def reward(self, problem, completion):
            time.sleep(float(sys.argv[3]))  # slows the run down so the test can kill it mid-way
            return float("7" in completion)

    register("toy7")(Toy7)
    if len(sys.argv) > 4:  # stop (exit 3) right after the checkpoint of step argv[4] is written
        from spiral_bench.trainers import loop
        real = loop.Run.save_checkpoint
        def save_and_stop(self):
            real(self)
            if self.step == int(sys.argv[4]):
                raise SystemExit(3)
        loop.Run.save_checkpoint = save_and_stop
    if __name__ == "__main__":  # a vLLM rollout engine may spawn processes that import this file
        train(build(TrainConfig, json.loads(sys.argv[1])), sys.argv[2], progress=False)
""")


@pytest.fixture(autouse=True)
def _cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("SPIRAL_BENCH_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


def cfg_of(**kw) -> TrainConfig:
    return build(TrainConfig, {**BASE, **kw})


def weights(d: Path) -> dict:
    return load_file(str(d / "model.safetensors"))


# ------------------------------------------------------------------------------------- SFT
def test_corrupt_trace_changes_one_literal():
    rng = random.Random(0)
    gold = "37+58=95;95*3=85;85-12=73;#73"
    for _ in range(200):
        bad = sft.corrupt_trace(gold, rng)
        assert bad != gold and len(bad.split(";")) == len(gold.split(";"))
        diff = [(a, b) for a, b in zip(gold.split(";"), bad.split(";")) if a != b]
        assert len(diff) == 1  # exactly one step or the final answer changed


def test_sft_batch_masks_prompt_and_appends_eos():
    from spiral_bench.models import build_char_tokenizer
    tok = build_char_tokenizer()
    b = sft._batch(tok, [("12+3=", "15#15"), ("1=", "1")], "cpu")
    ids, labels = b["input_ids"], b["labels"]
    assert labels[0, :5].eq(-100).all() and labels[0, 5:11].tolist() == ids[0, 5:11].tolist()
    assert ids[0, 10] == tok.eos_token_id and labels[1, 3] == tok.eos_token_id and labels[1, 4:].eq(-100).all()
    assert tok.decode(ids[0, 5:10]) == "15#15"


def test_sft_cache_hit_by_config_hash(tmp_path, monkeypatch):
    calls = []
    real = sft.train_sft
    monkeypatch.setattr(sft, "train_sft", lambda cfg, out, progress=True: calls.append(cfg) or real(cfg, out, False))
    cfg = build(sft.SFTConfig, {"steps": 2, "batch_size": 4, "train_problems": 20, "eval_problems": 2,
                                "eval_samples": 2, "max_new_tokens": 8})
    p1 = sft.ensure_sft_base(cfg, cache_dir=tmp_path)
    p2 = sft.ensure_sft_base(cfg, cache_dir=tmp_path)
    assert p1 == p2 == tmp_path / sft.config_hash(cfg) and len(calls) == 1
    assert (p1 / "model.safetensors").is_file() and (p1 / "tokenizer.json").is_file()
    m = json.loads((p1 / "sft_metrics.json").read_text())
    assert set(m["eval"]) >= {"single", "pass@2", "aggregate"}
    p3 = sft.ensure_sft_base(build(sft.SFTConfig, {**sft.to_dict(cfg), "seed": 1}), cache_dir=tmp_path)
    assert p3 != p1 and len(calls) == 2
    assert sorted(x.name for x in tmp_path.iterdir()) == sorted([p1.name, p3.name])  # no temp dirs left


def test_sft_step_is_the_full_batch_gradient_on_any_thread_count(tmp_path):
    """The search and aggregation batches are differentiated separately (side by side on two Python
    threads when torch has 2 threads) and added: the weights equal one backward over the mean loss of
    both batches (up to float rounding), and are bit-identical with 1 and 2 torch threads."""
    cfg = build(sft.SFTConfig, {"steps": 3, "batch_size": 8, "train_problems": 20, "eval_problems": 0,
                                "warmup_steps": 0, "grad_clip": 0.0})
    threads = torch.get_num_threads()
    try:
        for n in (2, 1):
            torch.set_num_threads(n)
            sft.train_sft(cfg, tmp_path / f"t{n}", progress=False)
    finally:
        torch.set_num_threads(threads)
    w = {n: load_file(str(tmp_path / f"t{n}" / "model.safetensors")) for n in (2, 1)}
    assert w[1].keys() == w[2].keys() and all(torch.equal(w[1][k], w[2][k]) for k in w[1])
    # reference: the same steps by one backward pass over the concatenated loss
    from spiral_bench.models import load_model
    from spiral_bench.tasks import get_task
    from transformers import get_scheduler
    task = get_task(cfg.task, **cfg.task_options)
    problems = task.problems("train", n=cfg.train_problems)
    model, tok = load_model(cfg.model, dtype=cfg.dtype, device=cfg.device, seed=cfg.init_seed)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = get_scheduler("cosine", opt, num_warmup_steps=0, num_training_steps=cfg.steps)
    for step in range(cfg.steps):
        parts = [sft._nll_sum(model, sft._batch(tok, pairs, "cpu")) for pairs in sft._examples(task, problems, cfg, step)]
        (sum(l for l, _ in parts) / sum(n for _, n in parts)).backward()
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
    ref, init = model.state_dict(), load_model(cfg.model, seed=cfg.init_seed)[0].state_dict()
    for k, v in w[1].items():
        torch.testing.assert_close(v, ref[k], rtol=1e-4, atol=1e-5)
    assert any(not torch.equal(w[1][k], init[k]) for k in w[1])       # the steps moved the weights


# ------------------------------------------------------------------------------------- RL loop
def test_metrics_rows_complete_and_same_prompts_for_both_methods(tmp_path, monkeypatch):
    seen = {}
    for method in ("grpo", "spiral"):
        import spiral_bench.trainers.grpo  # noqa: F401  (registers)
        import spiral_bench.trainers.spiral  # noqa: F401
        real = loop.METHODS[method]

        def rec(run, problems, step, real=real, method=method):
            seen.setdefault(method, []).append((step, [p.id for p in problems]))
            return real(run, problems, step)
        monkeypatch.setitem(loop.METHODS, method, rec)
        out = loop.train(cfg_of(method=method), tmp_path / method, progress=False)
        rows = loop.read_metrics(tmp_path / method)
        assert [r["step"] for r in rows] == [1, 2] and (out / "model.safetensors").is_file()
        for r in rows:
            assert tuple(r) == loop.METRIC_FIELDS
            assert r["ratio_max_dev"] < 1e-4  # on-policy: ratio = 1 up to numerics
            assert r["prompts_sampled"] == 2 and r["seconds"] > 0
            n_s, n_a = (8, 0) if method == "grpo" else (8, 12)   # G*P vs N1*P, K*N2*P
            assert (r["n_search_traces"], r["n_agg_traces"], r["n_loss_traces"]) == (n_s, n_a, n_s + n_a)
            gen = r["search_len"] * n_s + (r["agg_len"] * n_a if n_a else 0)
            assert r["generated_tokens"] == pytest.approx(gen) and r["generated_tokens_per_prompt"] == gen / 2
            assert (r["agg_reward"] is None) == (method == "grpo")
            assert r["search_entropy"] > 0 and 0 <= r["adv_frac_zero"] <= 1
        assert rows[1]["total_generated_tokens"] == rows[0]["generated_tokens"] + rows[1]["generated_tokens"]
    assert seen["grpo"] == seen["spiral"]  # identical data order
    pairing = check_pairing(tmp_path / "grpo", tmp_path / "spiral", allow=True)
    assert pairing["a"] == pytest.approx(sum(r["generated_tokens"] for r in loop.read_metrics(tmp_path / "grpo")) / 4)


@pytest.mark.parametrize("loss_agg", ["dapo", "grpo"])
def test_micro_batches_add_up_to_the_full_batch(tmp_path, loss_agg):
    """Chunked backward (the path ranks use too) = one backward over the whole batch."""
    res = []
    for mb in (0, 3):
        out = loop.train(cfg_of(method="spiral", steps=1, micro_batch_size=mb, loss={"loss_agg": loss_agg}),
                         tmp_path / f"mb{mb}", progress=False)
        res.append((loop.read_metrics(out.parent)[0], weights(out)))
    (r0, w0), (r1, w1) = res
    assert r0["loss"] == pytest.approx(r1["loss"], abs=1e-6) and r0["grad_norm"] == pytest.approx(r1["grad_norm"], rel=1e-5)
    assert r0["grad_norm"] > 0
    for k in w0:
        # Adam divides by |g|: where g ~ 1e-8 float noise moves the update, so compare to 10% of a step (lr 1e-3)
        torch.testing.assert_close(w0[k], w1[k], atol=1e-4, rtol=0)


@pytest.mark.parametrize("loss_agg", ["dapo", "grpo"])
def test_skipping_zero_advantage_traces_changes_nothing(tmp_path, loss_agg):
    """Zero-advantage traces have an exactly zero policy gradient (no KL): leaving them out of the
    update pass gives the same loss, gradient norm and weights, and SPIRAL does have such traces."""
    res = []
    for skip in (False, True):
        out = loop.train(cfg_of(method="spiral", steps=1, skip_zero_advantage=skip, loss={"loss_agg": loss_agg}),
                         tmp_path / f"skip{skip}", progress=False)
        res.append((loop.read_metrics(out.parent)[0], weights(out)))
    (r0, w0), (r1, w1) = res
    assert 0 < r0["adv_frac_zero"] < 1 and r0["grad_norm"] > 0
    assert r0["loss"] == pytest.approx(r1["loss"], abs=1e-6) and r0["grad_norm"] == pytest.approx(r1["grad_norm"], rel=1e-5)
    assert r0["search_entropy"] == r1["search_entropy"]
    for k in w0:
        torch.testing.assert_close(w0[k], w1[k], atol=1e-4, rtol=0)  # as above: Adam on ~1e-8 gradients


def test_init_path_keeps_the_run_folder_cache_independent(tmp_path):
    """`spiral-bench run` passes the SFT base's path (it lives in a cache that may move): the run folder
    records model '' and the same command resumes when the base sits elsewhere."""
    from spiral_bench.models import resolve_model
    src = Path(resolve_model("tiny-1m"))
    moved = tmp_path / "elsewhere"
    shutil.copytree(src, moved)
    out = loop.train(cfg_of(method="grpo", model=""), tmp_path / "run", progress=False, init_path=src)
    assert yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())["model"] == ""
    again = loop.train(cfg_of(method="grpo", model=""), tmp_path / "run", progress=False, init_path=moved)
    assert again == out and len(loop.read_metrics(tmp_path / "run")) == 2


def test_dynamic_sampling_skips_uninformative_prompts_and_refills(tmp_path):
    used = []
    real = loop.Run._update
    def spy(self, rolls):
        used.append([r.problem.id for r in rolls])
        return real(self, rolls)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(loop.Run, "_update", spy)
        loop.train(cfg_of(method="grpo", task="halfflat", prompts_per_step=2, steps=2, dynamic_sampling=True,
                          dynamic_max_rounds=6, temperature=3.0), tmp_path / "dyn", progress=False)
    rows = loop.read_metrics(tmp_path / "dyn")
    for r, ids in zip(rows, used):
        assert all(int(i[1:]) % 2 == 1 for i in ids)                 # flat (even) prompts never reach the loss
        assert r["prompts_used"] == len(ids) and r["prompts_sampled"] >= r["prompts_used"]
        assert r["n_loss_traces"] == 4 * len(ids) and r["n_search_traces"] == 4 * r["prompts_sampled"]
    assert sum(r["prompts_used"] for r in rows) >= 2
    assert sum(r["prompts_sampled"] for r in rows) > sum(r["prompts_used"] for r in rows)  # some were skipped


@pytest.mark.parametrize("uncovered", ["drop", "force"])
def test_spiral_uncovered_modes_in_the_loop(tmp_path, uncovered):
    """n1 = 4, k = 1, subset 2: two search traces per prompt are in no subset. drop leaves them out of the
    loss; force draws subsets that cover every trace (k = 2 x 2 = n1)."""
    k = 1 if uncovered == "drop" else 2
    loop.train(cfg_of(method="spiral", k=k, uncovered=uncovered, steps=1), tmp_path / uncovered, progress=False)
    r = loop.read_metrics(tmp_path / uncovered)[0]
    n_search, n_agg = 4 * 2, k * 2 * 2
    assert (r["n_search_traces"], r["n_agg_traces"]) == (n_search, n_agg)
    expected = (n_search - 2 * 2 + n_agg) if uncovered == "drop" else (n_search + n_agg)
    assert r["n_loss_traces"] == expected


def test_lora_trains_adapters_only_merges_into_final_and_resumes_exactly(tmp_path):
    """lora.r > 0: only the targeted linear weights change (final/ = W + (alpha/r) B A merged into a
    plain model), checkpoints hold the adapters, and a run stopped after step 1 and started again
    ends with the same weights as an uninterrupted run."""
    from spiral_bench.models import resolve_model
    cfg = cfg_of(method="grpo", steps=2, checkpoint_every=1, temperature=2.0, lr=1e-2,
                 lora={"r": 4, "targets": ["q_proj", "v_proj", "down_proj"]})
    full = loop.train(cfg, tmp_path / "full", progress=False)
    rows = loop.read_metrics(tmp_path / "full")
    assert any(r["grad_norm"] > 0 for r in rows)
    init = load_file(str(Path(resolve_model("tiny-1m")) / "model.safetensors"))
    w = weights(full)
    assert set(w) == set(init)                                 # a plain transformers model
    changed = {k for k in w if not torch.equal(w[k], init[k])}
    assert changed and all(k.endswith(("q_proj.weight", "v_proj.weight", "down_proj.weight")) for k in changed)
    ckpt = sorted(p.name for p in (tmp_path / "full" / "checkpoint").iterdir())
    assert "adapter.safetensors" in ckpt and "model.safetensors" not in ckpt

    calls = {"n": 0}
    real = loop.Run.save_checkpoint
    def stop_after_first(self):
        real(self)
        calls["n"] += 1
        raise KeyboardInterrupt
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(loop.Run, "save_checkpoint", stop_after_first)
        with pytest.raises(KeyboardInterrupt):
            loop.train(cfg, tmp_path / "resumed", progress=False)
    assert calls["n"] == 1 and len(loop.read_metrics(tmp_path / "resumed")) == 1
    resumed = loop.train(cfg, tmp_path / "resumed", progress=False)
    wr = weights(resumed)
    assert all(torch.equal(w[k], wr[k]) for k in w)


@pytest.mark.parametrize("method", ["grpo", "spiral"])
def test_packed_update_equals_one_row_per_trace(tmp_path, method):
    """Packing each prompt's completions behind one copy of it (pack_max_tokens) takes the same step
    as one row per trace: loss, grad norm and weights; and it does pack (fewer rows than traces)."""
    rows_seen = []
    real = loop.rl_core.packed_logprobs
    def spy(model, packs, *a, **k):
        rows_seen.append((len(packs), sum(len(cs) for _, cs in packs)))
        return real(model, packs, *a, **k)
    res = []
    for pack in (0, 64):
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(loop.rl_core, "packed_logprobs", spy)
            out = loop.train(cfg_of(method=method, task="parity", steps=1, pack_max_tokens=pack),
                             tmp_path / f"p{pack}", progress=False)
        res.append((loop.read_metrics(out.parent)[0], weights(out)))
    (r0, w0), (r1, w1) = res
    assert rows_seen and sum(r for r, _ in rows_seen) < sum(n for _, n in rows_seen)
    assert r0["grad_norm"] > 0 and r0["loss"] == pytest.approx(r1["loss"], abs=1e-6)
    assert r0["grad_norm"] == pytest.approx(r1["grad_norm"], rel=1e-4)
    for k in w0:
        torch.testing.assert_close(w0[k], w1[k], atol=1e-4, rtol=0)  # Adam on ~1e-8 gradients, as above


def test_lora_init_is_seeded_and_leaves_the_global_stream_alone():
    """apply_lora draws A from its own seed: the same adapters whatever the global RNG state, and the
    global stream continues as if nothing had been drawn (the resume test cannot see this when
    nothing else in the process uses the global stream)."""
    from spiral_bench.models import build_tiny
    from spiral_bench.trainers.lora import LoraSettings, apply_lora
    settings = LoraSettings(r=4)

    def adapters(global_seed):
        torch.manual_seed(global_seed)
        m = apply_lora(build_tiny("tiny-1m", seed=0)[0], settings, seed=5)
        after = torch.rand(3)
        torch.manual_seed(global_seed)
        build_tiny("tiny-1m", seed=0)
        return {k: v for k, v in m.named_parameters() if "lora_A" in k}, after, torch.rand(3)

    a1, after1, untouched1 = adapters(1)
    a2, _, _ = adapters(2)
    assert a1 and all(torch.equal(a1[k], a2[k]) for k in a1)
    assert torch.equal(after1, untouched1)


def _env():
    return {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}


def test_resume_after_kill9_gives_identical_weights(tmp_path):
    script = tmp_path / "launch.py"
    script.write_text(LAUNCHER.format(tests=str(TESTS)))
    cfg = json.dumps({**BASE, "method": "spiral", "steps": 6, "checkpoint_every": 2})
    ref, run = tmp_path / "ref", tmp_path / "run"
    p_ref = subprocess.Popen([sys.executable, str(script), cfg, str(ref), "0"], env=_env(),
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # uninterrupted, concurrently
    p = subprocess.Popen([sys.executable, str(script), cfg, str(run), "0.03"], env=_env(),
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not (run / "checkpoint" / "trainer_state.pt").exists() and time.time() < deadline and p.poll() is None:
        time.sleep(0.05)
    assert p.poll() is None, f"the run to be killed exited by itself with status {p.returncode}"
    os.kill(p.pid, signal.SIGKILL)
    p.wait()
    assert not (run / "final").exists(), "the run finished before it was killed"
    killed_at = torch.load(run / "checkpoint" / "trainer_state.pt", weights_only=False)["step"]
    assert 2 <= killed_at < 6
    assert p_ref.wait() == 0, p_ref.stderr.read()[-2000:]
    done = subprocess.run([sys.executable, str(script), cfg, str(run), "0"], env=_env(), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"resuming from step {killed_at}" in done.stdout
    assert [r["step"] for r in loop.read_metrics(run)] == [1, 2, 3, 4, 5, 6]
    a, b = weights(ref / "final"), weights(run / "final")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    init = load_file(str(Path(loop.init_model_path(cfg_of())) / "model.safetensors"))
    assert any(not torch.equal(a[k], init[k]) for k in a)  # training moved the weights
    assert [r["loss"] for r in loop.read_metrics(ref)] == [r["loss"] for r in loop.read_metrics(run)]


def torchrun(script: Path, cfg: dict, out: Path, *extra: str) -> subprocess.CompletedProcess:
    """`torchrun --standalone --nproc_per_node=2 script cfg out 0 [extra]` on 2 CPU processes (gloo)."""
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                           str(script), json.dumps(cfg), str(out), "0", *extra], env=_env(),
                          capture_output=True, text=True)


def train_one_and_two_processes(tmp_path: Path, cfg: dict) -> tuple[list, list]:
    """Train `cfg` in one process into tmp_path/one and under torchrun with 2 CPU processes into
    tmp_path/two; returns both runs' metrics rows."""
    script = tmp_path / "launch.py"
    script.write_text(LAUNCHER.format(tests=str(TESTS)))
    subprocess.run([sys.executable, str(script), json.dumps(cfg), str(tmp_path / "one"), "0"], check=True,
                   env=_env(), capture_output=True)
    two = torchrun(script, cfg, tmp_path / "two")
    assert two.returncode == 0, two.stderr[-3000:]
    return loop.read_metrics(tmp_path / "one"), loop.read_metrics(tmp_path / "two")


@pytest.mark.slow
def test_torchrun_two_processes_match_one(tmp_path):
    """Same global batch on 1 and 2 CPU processes: loss curves agree within 1e-4 (absolute)."""
    r1, r2 = train_one_and_two_processes(tmp_path, {**BASE, "method": "spiral", "steps": 3, "prompts_per_step": 4,
                                                    "micro_batch_size": 16})
    assert len(r1) == len(r2) == 3
    print("max |loss(1 proc) - loss(2 procs)| =", max(abs(a["loss"] - b["loss"]) for a, b in zip(r1, r2)))
    for a, b in zip(r1, r2):
        assert a["generated_tokens"] == b["generated_tokens"] and a["n_loss_traces"] == b["n_loss_traces"]
        assert a["loss"] == pytest.approx(b["loss"], abs=1e-4)
        assert a["grad_norm"] == pytest.approx(b["grad_norm"], rel=1e-3)
    assert any(abs(r["loss"]) > 1e-3 for r in r1)


# ------------------------------------------------------------------------------------- pairing
def test_check_pairing_refuses_unmatched_and_accepts_paper():
    g = make_config("grpo", overrides={"group_size": 12, "max_new_tokens": 100, "matched_by": "budget"})
    s = make_config("spiral", overrides={"n1": 8, "k": 4, "n2": 4, "max_new_tokens": 100,
                                         "spiral_max_new_tokens": 100, "matched_by": "budget"})
    with pytest.raises(PairingError) as e:
        check_pairing(g, s)
    assert "1200" in str(e.value) and "2400" in str(e.value)
    assert check_pairing(g, s, allow=True)["matched"] is False
    L = 8192
    pg = make_config("grpo", "train_paper", {"max_new_tokens": L})
    ps = make_config("spiral", "train_paper", {"spiral_max_new_tokens": L // 2})
    r = check_pairing(pg, ps)
    assert r["matched_by"] == "budget" and r["matched"] and r["a"] == r["b"] == 12 * L
    r = check_pairing(pg, make_config("spiral", "train_paper", {"spiral_max_new_tokens": int(L / 2 * 1.05)}))
    assert r["matched"]  # 5% apart is within the 10% tolerance


def _fake_run(d: Path, cfg: TrainConfig, gen_per_prompt: list[float], prompts: int = 4) -> Path:
    """A run folder with cfg's config.yaml and metrics rows of the given generated tokens per prompt."""
    from spiral_bench.config import to_dict
    d.mkdir(parents=True)
    (d / "config.yaml").write_text(yaml.safe_dump(to_dict(cfg)))
    (d / "metrics.jsonl").write_text("".join(json.dumps({"step": i + 1, "prompts_sampled": prompts,
                                                         "generated_tokens": g * prompts}) + "\n"
                                             for i, g in enumerate(gen_per_prompt)))
    return d


def test_pairing_compares_like_with_like(tmp_path):
    """The repo's own train_tiny pair (matched_by generated: budgets 1440 vs 1152, generated tokens
    matched) passes; a paper-shaped pair (budgets equal, generated tokens 20% apart) passes under
    budget and is refused under generated, the message showing both measures; before training a
    generated-matched pair is deferred, a budget-matched one is decided."""
    g, s = make_config("grpo"), make_config("spiral")
    assert (g.matched_by, s.matched_by) == ("generated", "generated")
    rg, rs = _fake_run(tmp_path / "g", g, [640, 650]), _fake_run(tmp_path / "s", s, [655, 650])
    r = check_pairing(rs, rg)
    assert r["matched"] and r["a"] == pytest.approx(652.5)
    assert (r["budget"]["a"], r["budget"]["b"]) == (24 * 48, 30 * 48)
    deferred = check_pairing(s, rg)          # `train --pair-with` before training: nothing to compare yet
    assert deferred["matched"] is None and deferred["budget"] is not None and deferred["generated"] is None

    pg, ps = make_config("grpo", "train_paper"), make_config("spiral", "train_paper")
    pgr = _fake_run(tmp_path / "pg", pg, [5000.0, 5000.0])
    psr = _fake_run(tmp_path / "ps", ps, [4000.0, 4000.0])
    r = check_pairing(psr, pgr)
    assert r["matched_by"] == "budget" and r["matched"] and r["generated"]["relative_difference"] == pytest.approx(0.2)
    with pytest.raises(PairingError) as e:
        check_pairing(psr, pgr, matched_by="generated")
    msg = str(e.value)
    assert "4000 vs 5000" in msg and "98304 vs 98304" in msg and "20.0%" in msg
    with pytest.raises(ConfigError, match="different measures"):
        check_pairing(psr, rg)
