"""GRSP and LCPO (trainers/grsp.py, trainers/shaping.py): hand-computed segmentation, clusters, weights,
penalty, shaped reward and advantage (numbers worked out in the comments), then the methods in the
shared loop: `spiral-bench train --method grsp` at smoke size logs its metrics, and with lambda = 0
GRSP takes exactly GRPO's steps on the same rollouts.
"""
from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from spiral_bench.config import ConfigError, build
from spiral_bench.trainers import grsp, loop
from spiral_bench.trainers.grsp import GRSPConfig
from spiral_bench.trainers.train_config import TrainConfig, budget_tokens_per_prompt, make_config

TESTS = Path(__file__).resolve().parent
sys.path.insert(0, str(TESTS))
from fakes import Toy7  # noqa: E402,F401 (registers task toy7)

approx = pytest.approx


# ------------------------------------------------------------------------------------- segmentation
def test_delimiter_segments_of_an_arithmetic_trace():
    # char tokens + EOS (decodes to ""): "37+58=95;" 9 | "95*3=85;" 8 | "#85" + EOS 3 + 1
    pieces = list("37+58=95;95*3=85;#85") + [""]
    assert grsp.segment_delimiters(pieces, [";"]) == [9, 8, 4]
    # multi-character tokens: cut after the token holding the ';' -> "12","+3","=15;" | "15","*2=","30;" | "#30"
    assert grsp.segment_delimiters(["12", "+3", "=15;", "15", "*2=", "30;", "#30"], [";"]) == [3, 3, 1]
    # a delimiter split over tokens ends in the token holding its last character: one segment "a\n\nb"
    assert grsp.segment_delimiters(["a", "\n", "\nb"], ["\n\n"]) == [3]
    # "1;" | "2;" | "\n" is blank -> merged into "2;\n"
    assert grsp.segment_delimiters(list("1;2;\n"), [";"]) == [2, 3]


def test_delimiter_edge_cases_empty_blank_single():
    assert grsp.segment_delimiters([], [";"]) == []            # empty completion: 0 segments
    assert grsp.segment_delimiters([""], [";"]) == []          # only EOS: blank, 0 segments
    assert grsp.segment_delimiters(list("#7"), [";"]) == [2]   # no delimiter: one segment
    assert grsp.segment_delimiters(list(";;x"), [";"]) == [1, 1, 1]  # ";" | ";" | "x": a bare delimiter is a segment


def test_keyword_segments():
    pieces = ["Add", " 2", ".", " Wait", ",", " so", " 4", ".", " Sooner", " Hmm"]
    # cut before " Wait" (token 3) and " Hmm" (token 9); lowercase " so" and "So" glued in "Sooner" do not cut:
    # [0, 3) = 3, [3, 9) = 6, [9, 10) = 1
    assert grsp.segment_keywords(pieces, ["Wait", "So", "Hmm"]) == [3, 6, 1]
    assert grsp.segment_keywords(["So", " 1"], ["So"]) == [2]      # a keyword at the start cuts nothing
    assert grsp.segment_keywords(["x", " Let", " me", " check"], ["Let me check"]) == [1, 3]
    assert grsp.segment_keywords([], ["Wait"]) == []
    # default list: "Wait" and "Alternatively" open segments
    assert grsp.segment_keywords(["a", " Wait", " b", " Alternatively", " c"], grsp.DEFAULT_KEYWORDS) == [1, 2, 2]


def test_confidence_segments():
    lp = [-0.1, -3.0, -0.2, -0.5, -2.5, -4.0, -0.1]
    # below -2 at t = 1, 4, 5 -> [0,1) 1 | [1,4) 3 | [4,5) 1 | [5,7) 2
    assert grsp.segment_confidence(lp, -2.0) == [1, 3, 1, 2]
    # local minima only: t=1 (-3 <= -0.1, -0.2) yes; t=4 (-2.5 > -4.0) no; t=5 (-4 <= -2.5, -0.1) yes
    assert grsp.segment_confidence(lp, -2.0, local_min=True) == [1, 4, 2]
    assert grsp.segment_confidence([-5.0, -0.1], -2.0) == [2]    # token 0 never cuts
    assert grsp.segment_confidence([], -2.0) == []
    # the dispatcher picks the log-probs for confidence and the texts otherwise
    cfg = GRSPConfig(segmentation="confidence", logprob_threshold=-2.0)
    assert grsp.segment(list("abcdefg"), lp, cfg) == [1, 3, 1, 2]
    assert grsp.segment(list("a;b"), [0.0] * 3, GRSPConfig()) == [2, 1]


# ------------------------------------------------------------------------------------- clusters, weights
def test_quantile_edges_and_assignment():
    # n = 10, positions q (n - 1): 1/3 * 9 = 3 -> x[3] = 4, 2/3 * 9 = 6 -> x[6] = 7
    assert grsp.quantile_edges(list(range(1, 11)), 3) == approx([4.0, 7.0])
    # [2, 4, 10, 12], K = 4: positions 0.75, 1.5, 2.25 -> 2 + 0.75*2 = 3.5, (4 + 10)/2 = 7, 10 + 0.25*2 = 10.5
    assert grsp.quantile_edges([12, 2, 10, 4], 4) == approx([3.5, 7.0, 10.5])
    assert grsp.quantile_edges([5, 9], 1) == []
    with pytest.raises(ValueError):
        grsp.quantile_edges([], 3)
    # cluster = #{edges <= len}: an edge value goes to the upper cluster
    assert grsp.assign_clusters([1, 4, 5, 7, 100], [4, 7]) == [0, 1, 1, 2, 2]
    # [9, 8, 4] with edges [4, 8.5] -> clusters 2, 1, 1; [3] -> 0; [] -> nothing
    n = grsp.cluster_counts([[9, 8, 4], [3], []], [4, 8.5])
    assert n.tolist() == [[0, 2, 1], [1, 0, 0], [0, 0, 0]]


def test_cluster_weights():
    assert grsp.cluster_weights(3).tolist() == approx([3 / 6, 2 / 6, 1 / 6])          # descending (paper)
    assert grsp.cluster_weights(3, "ascending").tolist() == approx([1 / 6, 2 / 6, 3 / 6])
    assert grsp.cluster_weights(4, "uniform").tolist() == approx([0.25] * 4)
    assert grsp.cluster_weights(1).tolist() == [1.0]
    with pytest.raises(ValueError):
        grsp.cluster_weights(3, "sideways")


# ------------------------------------------------------------------------------------- penalty, advantage
N3 = torch.tensor([[2.0, 1.0], [0.0, 1.0], [1.0, 1.0]])   # G = 3 responses, K = 2 clusters
W2 = grsp.cluster_weights(2)                               # descending [2/3, 1/3]


def test_zscore_and_penalty_forms():
    # column 0: 2, 0, 1 -> mean 1, unbiased std sqrt((1 + 1 + 0) / 2) = 1 -> z = 1, -1, 0
    # column 1: all 1 -> std 0 -> z = 0 (no NaN, eps 0)
    z = grsp.group_zscore(N3, eps=0.0)
    assert z.tolist() == [[1.0, 0.0], [-1.0, 0.0], [0.0, 0.0]]
    # per_cluster: P = 2/3 * z0 + 1/3 * z1 = [2/3, -2/3, 0]
    assert grsp.grsp_penalty(N3, W2, "per_cluster", eps=0.0).tolist() == approx([2 / 3, -2 / 3, 0.0])
    # with eps 1e-4: 2/3 / (1 + 1e-4)
    assert grsp.grsp_penalty(N3, W2, eps=1e-4)[0].item() == approx(2 / 3 / 1.0001, rel=1e-9)
    # weighted_count: sum_k w_k n_k = [5/3, 1/3, 1] -> mean 1, std sqrt((4/9 + 4/9) / 2) = 2/3 -> z = [1, -1, 0]
    assert grsp.grsp_penalty(N3, W2, "weighted_count", eps=0.0).tolist() == approx([1.0, -1.0, 0.0])
    # members = first two: column 0 is 2, 0 -> mean 1, std sqrt(2) -> z = +-1/sqrt(2); column 1: 1, 1 -> 0;
    # P = 2/3 * [0.7071, -0.7071] and 0 for the non-member
    P = grsp.grsp_penalty(N3, W2, eps=0.0, members=torch.tensor([True, True, False]))
    assert P.tolist() == approx([2 / 3 / math.sqrt(2), -2 / 3 / math.sqrt(2), 0.0])


def test_shaped_reward_and_advantages_hand_computed():
    cfg = GRSPConfig(penalty_coef=0.3, eps=0.0, baseline="rloo")
    r = torch.tensor([1.0, 1.0, 0.0])
    segs = [[2, 2, 9], [9], [2, 9]]   # edges [5]: counts [[2,1],[0,1],[1,1]] = N3
    P, shaped, n = grsp.grsp_shape(r, segs, [5.0], cfg)
    assert n.tolist() == N3.tolist()
    # r~ = r - 0.3 P = [1 - 0.2, 1 + 0.2, 0] = [0.8, 1.2, 0]
    assert shaped.tolist() == approx([0.8, 1.2, 0.0])
    # rloo: G/(G-1) (r~ - mean) = 1.5 * ([0.8, 1.2, 0] - 2/3) = [0.2, 0.8, -1.0]
    assert grsp.advantage(shaped, "rloo").tolist() == approx([0.2, 0.8, -1.0], abs=1e-6)
    # leave-one-out by hand: 0.8 - (1.2 + 0)/2 = 0.2
    assert grsp.rloo(shaped)[0].item() == approx(0.8 - 0.6)
    # grpo: deviations [2/15, 8/15, -2/3], unbiased std sqrt((4 + 64 + 100) / 225 / 2) = sqrt(0.37333) = 0.611010
    std = math.sqrt((4 + 64 + 100) / 225 / 2)
    assert grsp.advantage(shaped, "grpo").tolist() == approx([d / (std + 1e-4) for d in (2 / 15, 8 / 15, -2 / 3)],
                                                            rel=1e-5)
    assert grsp.advantage(shaped, "grpo", scale_std=False).tolist() == approx([2 / 15, 8 / 15, -2 / 3], rel=1e-5)
    # correct_only: only responses 0 and 1 are compared -> P = +-(2/3)/sqrt(2) = +-0.4714, response 2 untouched
    P2, shaped2, _ = grsp.grsp_shape(r, segs, [5.0], GRSPConfig(penalty_coef=0.3, eps=0.0, correct_only=True))
    assert shaped2.tolist() == approx([1 - 0.3 * 0.471405, 1 + 0.3 * 0.471405, 0.0], rel=1e-5)


def test_single_segments_weights_direction():
    # one segment each, edges [10]: n = [[1,0],[1,0],[0,1]]
    # column 0: 1, 1, 0 -> mean 2/3, std sqrt((1/9 + 1/9 + 4/9) / 2) = sqrt(1/3) -> z = [.57735, .57735, -1.1547]
    # column 1: 0, 0, 1 -> z = [-.57735, -.57735, 1.1547]
    # descending [2/3, 1/3]: P = [2/3*.57735 - 1/3*.57735, .., -2/3*1.1547 + 1/3*1.1547] = [.19245, .19245, -.3849]
    cfg = GRSPConfig(penalty_coef=1.0, eps=0.0)
    P, _, _ = grsp.grsp_shape(torch.ones(3), [[5], [5], [20]], [10.0], cfg)
    assert P.tolist() == approx([0.19245, 0.19245, -0.3849], abs=1e-4)
    # ascending [1/3, 2/3] turns it round: the long segment is now penalised most
    Pa, _, _ = grsp.grsp_shape(torch.ones(3), [[5], [5], [20]], [10.0],
                               GRSPConfig(penalty_coef=1.0, eps=0.0, weights="ascending"))
    assert Pa.tolist() == approx([-0.19245, -0.19245, 0.3849], abs=1e-4)


def test_edge_cases_equal_counts_empty_and_group_of_one():
    r = torch.tensor([1.0, 0.0, 1.0, 0.0])
    cfg = GRSPConfig(penalty_coef=0.5)
    # all-equal counts: every z is 0 (std 0), no NaN, advantages are GRPO's
    P, shaped, _ = grsp.grsp_shape(r, [[3, 9]] * 4, [5.0], cfg)
    assert P.tolist() == [0.0] * 4 and not torch.isnan(shaped).any()
    # r - mean = +-0.5, unbiased std sqrt(4 * 0.25 / 3) = 1/sqrt(3) -> A = +-0.5 / (0.57735 + 1e-4) = +-0.86588
    assert grsp.advantage(shaped).tolist() == approx([0.5 / (1 / math.sqrt(3) + 1e-4) * s for s in (1, -1, 1, -1)])
    from spiral_bench.trainers import rl_core
    assert torch.equal(grsp.advantage(shaped), rl_core.grpo(r))
    # empty completions: 0 segments everywhere -> P = 0; empty next to non-empty -> the empty one is below the mean
    P, _, n = grsp.grsp_shape(r, [[], [], [], []], [5.0], cfg)
    assert P.tolist() == [0.0] * 4 and n.sum() == 0
    P, _, _ = grsp.grsp_shape(torch.ones(2), [[], [3]], [5.0], GRSPConfig(eps=0.0))
    # column 0: 0, 1 -> mean .5, std sqrt(.5) -> z = -+.7071; column 1: 0, 0 -> 0; P = 2/3 * z
    assert P.tolist() == approx([-2 / 3 / math.sqrt(2), 2 / 3 / math.sqrt(2)])
    # group of one: no z-score (P = 0), advantage 0 under both baselines
    P, shaped, _ = grsp.grsp_shape(torch.tensor([1.0]), [[2, 3, 9]], [5.0], cfg)
    assert P.tolist() == [0.0] and grsp.advantage(shaped).tolist() == [0.0]
    assert grsp.advantage(shaped, "rloo").tolist() == [0.0]
    # correct_only with a single correct response: nothing to compare -> P = 0
    P, _, _ = grsp.grsp_shape(torch.tensor([1.0, 0.0]), [[2], [9, 9]], [5.0], GRSPConfig(correct_only=True))
    assert P.tolist() == [0.0, 0.0]


def test_lambda_zero_gives_grpo_advantages():
    r = torch.tensor([1.0, 0.0, 0.0, 1.0, 1.0])
    segs = [[1], [2, 8, 8], [], [5, 5], [9]]
    _, shaped, _ = grsp.grsp_shape(r, segs, [4.0], GRSPConfig(penalty_coef=0.0))
    from spiral_bench.trainers import rl_core
    assert torch.equal(grsp.advantage(shaped), rl_core.grpo(r))
    _, shaped, _ = grsp.grsp_shape(r, segs, [4.0], GRSPConfig(penalty_coef=0.2))
    assert not torch.equal(grsp.advantage(shaped), rl_core.grpo(r))


def test_lcpo_reward_forms():
    c, n = torch.tensor([1.0, 1.0, 0.0]), torch.tensor([10.0, 30.0, 20.0])
    # exact: c - 0.01 |20 - n| = [1 - .1, 1 - .1, 0 - 0]
    assert grsp.lcpo_reward(c, n, 20, 0.01).tolist() == approx([0.9, 0.9, 0.0])
    # max: c * clip(0.01 (20 - n) + 0.5, 0, 1) = [.6, .4, 0 * .5]
    assert grsp.lcpo_reward(c, n, 20, 0.01, 0.5, "max").tolist() == approx([0.6, 0.4, 0.0])
    # clipped: 0.1 * (20 - 0) + 0.5 = 2.5 -> 1; 0.1 * (20 - 40) + .5 < 0 -> 0
    assert grsp.lcpo_reward(torch.ones(2), torch.tensor([0.0, 40.0]), 20, 0.1, 0.5, "max").tolist() == [1.0, 0.0]


def test_config_fields_validate_and_methods_accepted():
    cfg = make_config("grsp", None, {"grsp.num_clusters": 2, "grsp.cluster_edges": [6], "grsp.baseline": "rloo"})
    assert cfg.method == "grsp" and cfg.grsp.cluster_edges == (6.0,) and cfg.grsp.baseline == "rloo"
    assert budget_tokens_per_prompt(cfg) == cfg.group_size * cfg.max_new_tokens
    assert make_config("lcpo").method == "lcpo"
    with pytest.raises(ConfigError):
        make_config("grsp", None, {"grsp.cluster_edges": [6]})          # K = 3 needs 2 edges
    with pytest.raises(ConfigError):
        make_config("grsp", None, {"grsp.cluster_edges": [9, 6]})       # not ascending
    with pytest.raises(ConfigError):
        make_config("grsp", None, {"grsp.weights": "sideways"})
    for f in dataclasses_fields(GRSPConfig) + dataclasses_fields(grsp.LCPOConfig):
        assert f.metadata["help"], f.name


def dataclasses_fields(cls):
    import dataclasses
    return list(dataclasses.fields(cls))


# ------------------------------------------------------------------------------------- in the loop
BASE = {"task": "toy7", "task_options": {"n": 16}, "model": "tiny-1m", "train_problems": 16, "steps": 2,
        "prompts_per_step": 2, "group_size": 4, "max_new_tokens": 10, "lr": 1e-3, "checkpoint_every": 2,
        "micro_batch_size": 0}


@pytest.fixture(autouse=True)
def _cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("SPIRAL_BENCH_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


def _train(tmp_path, name, **kw):
    loop.train(build(TrainConfig, {**BASE, **kw}), tmp_path / name, progress=False)
    return loop.read_metrics(tmp_path / name), load_file(str(tmp_path / name / "final" / "model.safetensors"))


def test_lambda_zero_grsp_takes_grpos_steps_in_the_loop(tmp_path):
    # the random tiny model writes many spaces / vowels: these delimiters give several segments per trace
    seg = {"delimiters": [" ", "e", "a"]}
    rows_g, w_g = _train(tmp_path, "grpo", method="grpo")
    rows_0, w_0 = _train(tmp_path, "grsp0", method="grsp", grsp={**seg, "penalty_coef": 0.0})
    rows_1, w_1 = _train(tmp_path, "grsp1", method="grsp", grsp={**seg, "penalty_coef": 1.0})
    for a, b in zip(rows_g, rows_0):
        for k in ("search_reward", "adv_mean", "adv_std", "loss", "grad_norm", "generated_tokens"):
            assert a[k] == b[k], k
    assert all(torch.equal(w_g[k], w_0[k]) for k in w_g)       # same rollouts, same advantages -> same weights
    assert rows_1[0]["grsp_segments_per_response"] > 1            # there was something to penalise ...
    assert rows_1[0]["grsp_penalty_abs_mean"] > 0
    assert any(not torch.equal(w_g[k], w_1[k]) for k in w_g)      # ... and lambda = 1 changes the step


def test_lcpo_runs_and_logs(tmp_path):
    rows, _ = _train(tmp_path, "lcpo", method="lcpo", lcpo={"alpha": 0.05, "target_tokens": 0})
    assert [r["step"] for r in rows] == [1, 2]
    for r in rows:
        assert r["lcpo_target_tokens"] == 0
        # shaped = c - 0.05 n  per trace, so mean shaped = search_reward - 0.05 search_len
        assert r["lcpo_shaped_reward"] == approx(r["search_reward"] - 0.05 * r["search_len"])


def test_cli_train_grsp_two_steps_logs_grsp_metrics(tmp_path):
    from conftest import SMOKE_TRAIN_FLAGS
    from spiral_bench.cli import main
    out = tmp_path / "grsp"
    assert main(["train", "--method", "grsp", "--out", str(out), *SMOKE_TRAIN_FLAGS]) == 0
    rows = loop.read_metrics(out)
    assert [r["step"] for r in rows] == [1, 2]
    saved = json.loads((out / "grsp_edges.json").read_text())
    lengths = [int(L) for L, c in saved["segment_lengths"].items() for _ in range(c)]
    assert len(lengths) > 0 and saved["step"] == 1
    assert saved["edges"] == approx(grsp.quantile_edges(lengths, 3))   # edges: the step-1 quantiles
    for r in rows:
        assert r["grsp_edges"] == approx(saved["edges"])                  # fixed for the run
        assert r["grsp_segments_per_response"] > 0 and r["grsp_segment_len"] > 0
        assert sum(r["grsp_cluster_segments_per_response"]) == approx(r["grsp_segments_per_response"])
        assert r["grsp_penalty_abs_mean"] >= 0 and r["grsp_penalty_mean"] is not None
        assert r["n_search_traces"] == 2 * 24
        # segments x mean segment length = all generated tokens of non-blank traces (<= generated tokens)
        seg_tokens = r["grsp_segments_per_response"] * r["grsp_segment_len"] * r["n_search_traces"]
        assert seg_tokens <= r["generated_tokens"] + 1e-6
    assert rows[0]["grsp_edges"] is not None


def test_edges_fixed_at_first_call_saved_and_read_back_on_resume(tmp_path):
    from types import SimpleNamespace

    from spiral_bench.trainers import shaping
    cfg = build(TrainConfig, {**BASE, "method": "grsp"})

    def fake_run():
        return SimpleNamespace(cfg=cfg, out=tmp_path, is_main=True, method_sums={})
    run = fake_run()
    assert shaping._edges(run, [[], []], step=1) is None                  # no segment yet: not fixed
    assert not (tmp_path / shaping.EDGES_FILE).exists()
    # lengths 1..10 -> quantiles 1/3, 2/3 = [4, 7]; lengths above max_new_tokens (10) fall in the top bin
    assert shaping._edges(run, [list(range(1, 6)), list(range(6, 11))], step=2) == approx([4.0, 7.0])
    assert shaping._edges(run, [[50, 50, 50]], step=3) == approx([4.0, 7.0])   # fixed for the run
    saved = json.loads((tmp_path / shaping.EDGES_FILE).read_text())
    assert saved["edges"] == approx([4.0, 7.0]) and saved["step"] == 2 and saved["segment_lengths"]["10"] == 1
    resumed = fake_run()                                                  # a resumed run reads them back
    assert shaping._edges(resumed, [[1, 1, 1]], step=5) == approx([4.0, 7.0])
    given = SimpleNamespace(cfg=build(TrainConfig, {**BASE, "method": "grsp", "grsp": {"cluster_edges": [2, 3]}}),
                            out=tmp_path / "nowhere", is_main=True)
    assert shaping._edges(given, [[1, 1, 1]], step=1) == [2.0, 3.0]        # given edges win, nothing written


def test_cli_method_choices_match_the_config():
    from spiral_bench.cli import build_parser
    from spiral_bench.trainers.train_config import METHOD_CHOICES
    sub = next(a for a in build_parser()._actions if a.dest == "command" or getattr(a, "choices", None)
               and "train" in (a.choices or {}))
    train = sub.choices["train"]
    method = next(a for a in train._actions if a.dest == "method")
    assert tuple(method.choices) == METHOD_CHOICES


def test_grpo_and_spiral_configs_keep_their_hash_and_config_yaml():
    from spiral_bench.config import config_hash, to_dict
    for m in ("grpo", "spiral"):
        d = to_dict(make_config(m))
        assert "grsp" not in d and "lcpo" not in d                       # as before grsp existed
        assert build(TrainConfig, d) == make_config(m)
    d = to_dict(make_config("grsp"))
    assert d["grsp"]["weights"] == "descending" and "lcpo" not in d     # a grsp run records its section
    tuned = make_config("grpo", None, {"grsp.penalty_coef": 0.5})        # a non-default section is kept
    assert to_dict(tuned)["grsp"]["penalty_coef"] == 0.5
    assert config_hash(tuned) != config_hash(make_config("grpo"))


def test_apply_to_advantage_keeps_lambdas_scale():
    r = torch.tensor([0.0, 0.0, 0.0])
    segs = [[2, 2, 9], [9], [2, 9]]   # edges [5] -> n = N3 -> P = [2/3, -2/3, 0] (eps 0)
    cfg = GRSPConfig(penalty_coef=0.3, eps=0.0)
    P, shaped, _ = grsp.grsp_shape(r, segs, [5.0], cfg)
    # equal rewards, apply_to reward: r~ = -0.3 P = [-.2, .2, 0], std .2 -> A = [-.2, .2, 0] / (.2 + 1e-4): lambda cancels
    assert grsp.grsp_advantage(r, shaped, P, cfg).tolist() == approx([-0.2 / 0.2001, 0.2 / 0.2001, 0.0], rel=1e-5)
    # apply_to advantage: A(r) = 0 -> A = -0.3 P = [-.2, .2, 0]
    adv = grsp.grsp_advantage(r, shaped, P, GRSPConfig(penalty_coef=0.3, eps=0.0, apply_to="advantage"))
    assert adv.tolist() == approx([-0.2, 0.2, 0.0], rel=1e-6)
    # rewards [1, 1, 0]: A(r) = [1/3, 1/3, -2/3] / (std 0.57735 + 1e-4) = [.57725, .57725, -1.1545]; minus 0.3 P
    r = torch.tensor([1.0, 1.0, 0.0])
    a = 1 / 3 / (1 / math.sqrt(3) + 1e-4)
    adv = grsp.grsp_advantage(r, r - 0.3 * P, P, GRSPConfig(penalty_coef=0.3, eps=0.0, apply_to="advantage"))
    assert adv.tolist() == approx([a - 0.2, a + 0.2, -2 * a], rel=1e-5)


@pytest.mark.slow
def test_torchrun_two_processes_fix_the_same_edges_as_one(tmp_path):
    """Data parallel: the step-1 edges come from the segment-length histogram summed over ranks, so 1 and 2
    processes fix the same edges, log the same GRSP metrics and take the same steps (loss within 1e-4)."""
    from test_trainers import train_one_and_two_processes
    r1, r2 = train_one_and_two_processes(tmp_path, {**BASE, "task": "toy7", "method": "grsp", "steps": 2,
                                                    "prompts_per_step": 4,
                                                    "grsp": {"delimiters": [" ", "e", "a"], "penalty_coef": 0.5}})
    assert len(r1) == len(r2) == 2
    e1 = json.loads((tmp_path / "one" / "grsp_edges.json").read_text())
    assert e1 == json.loads((tmp_path / "two" / "grsp_edges.json").read_text())
    for a, b in zip(r1, r2):
        assert a["grsp_edges"] == b["grsp_edges"] == approx(e1["edges"])
        for k in ("grsp_segments_per_response", "grsp_penalty_abs_mean", "grsp_shaped_reward"):
            assert a[k] == approx(b[k], abs=1e-9), k
        assert a["grsp_cluster_segments_per_response"] == approx(b["grsp_cluster_segments_per_response"])
        assert a["loss"] == approx(b["loss"], abs=1e-4)
