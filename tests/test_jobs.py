"""jobs.run_jobs: stages run once their deps are done, in worker processes or in this process;
a failing job stops new ones, lets running ones finish, and raises its error."""
import os
import time
from pathlib import Path

import pytest

from spiral_bench.jobs import Job, default_workers, run_jobs


def _write(path: str, text: str, wait: float = 0.0, needs: tuple = ()) -> int:
    """Write `text` to path after `wait` s, failing if a file it needs is missing; returns its pid."""
    time.sleep(wait)
    for n in needs:
        if not Path(n).is_file():
            raise AssertionError(f"{n} missing: a dependency did not run first")
    Path(path).write_text(text)
    return os.getpid()


def _fail(msg: str) -> None:
    raise RuntimeError(msg)


def test_deps_are_respected_in_workers_and_results_come_back(tmp_path):
    a, b, c = (str(tmp_path / n) for n in "abc")
    order = []
    jobs = [Job("c", _write, dict(path=c, text="c", needs=(a, b)), deps=("a", "b")),
            Job("a", _write, dict(path=a, text="a", wait=0.3)),
            Job("b", _write, dict(path=b, text="b")),
            Job("gate", _write, dict(path=str(tmp_path / "g"), text="g", needs=(a,)), deps=("a",), local=True)]
    res = run_jobs(jobs, workers=2, threads=1, on_start=lambda j: order.append(("start", j.name)),
                   on_done=lambda j, r, s, m: order.append(("done", j.name)))
    assert set(res) == {"a", "b", "c", "gate"}
    assert res["gate"] == os.getpid() and {res["a"], res["b"], res["c"]}.isdisjoint({os.getpid()})
    assert order.index(("done", "a")) < order.index(("start", "c")) > order.index(("done", "b"))
    assert order.index(("done", "a")) < order.index(("start", "gate"))
    assert Path(c).read_text() == "c"


def test_serial_runs_in_this_process_in_list_order(tmp_path):
    a, b = str(tmp_path / "a"), str(tmp_path / "b")
    res = run_jobs([Job("a", _write, dict(path=a, text="a")), Job("b", _write, dict(path=b, text="b", needs=(a,)),
                                                                  deps=("a",))], workers=1)
    assert res == {"a": os.getpid(), "b": os.getpid()}
    with pytest.raises(ValueError, match="before its deps"):
        run_jobs([Job("b", _write, dict(path=b, text="b"), deps=("a",)), Job("a", _write, dict(path=a, text="a"))])


def test_a_failing_worker_job_raises_lets_the_running_one_finish_and_starts_nothing_new(tmp_path, capsys):
    slow, after = str(tmp_path / "slow"), str(tmp_path / "after")
    failed, done = [], []
    jobs = [Job("slow", _write, dict(path=slow, text="s", wait=1.5), cost=3),
            Job("bad", _fail, dict(msg="boom"), cost=2),
            Job("after", _write, dict(path=after, text="x"), deps=("bad",))]
    with pytest.raises(RuntimeError, match="boom"):
        run_jobs(jobs, workers=2, threads=1, on_error=lambda j, e: failed.append(j.name),
                 on_done=lambda j, r, s, m: done.append(j.name))
    assert failed == ["bad"] and done == ["slow"]   # the running job's end is still reported
    assert Path(slow).read_text() == "s"          # the running job finished (its work is kept)
    assert not Path(after).exists()               # nothing new started after the failure
    assert "waiting for 1 running stage(s) to finish" in capsys.readouterr().err


def test_bad_graphs_are_refused():
    with pytest.raises(ValueError, match="unknown"):
        run_jobs([Job("a", _fail, dict(msg=""), deps=("z",))], workers=2)
    with pytest.raises(ValueError, match="duplicate"):
        run_jobs([Job("a", _fail, dict(msg="")), Job("a", _fail, dict(msg=""))], workers=2)
    with pytest.raises(ValueError, match="cycle"):
        run_jobs([Job("a", _fail, dict(msg=""), deps=("b",)), Job("b", _fail, dict(msg=""), deps=("a",))], workers=2)


def test_default_workers():
    assert default_workers("cuda") == 1 and default_workers("cpu", "vllm") == 1
    assert default_workers("cpu", "hf", n_jobs=1) == 1
    assert 1 <= default_workers("cpu", "hf", n_jobs=100) <= min(4, os.cpu_count() or 1)
