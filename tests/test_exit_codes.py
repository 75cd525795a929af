"""A run whose trials fail exits non-zero after writing what it could; a fixed-size cluster that
lost the node a pending trial needs says so every minute."""
from types import SimpleNamespace

import pandas as pd
import pytest

from conftest import tiny_spec
from unisemi.ablation import cli


def test_the_exit_code_counts_errored_and_missing_trials_but_not_a_diverged_one(capsys):
    trials = [SimpleNamespace(key=k, cell_id=f"variant={k}", seed=0) for k in "abcde"]
    final = pd.DataFrame({"trial": ["a", "b", "c", "z"], "status": ["ok", "nan", "error", "error"]})
    store = SimpleNamespace(final_rows=lambda: final)
    res = {"store": store, "trials": trials, "missing": ["d", "e"]}
    # z errored but is not a trial of this table (another profile's row): not counted
    assert cli.unfinished(res) == ["variant=c seed 0", "variant=d seed 0", "variant=e seed 0"]
    assert cli._finish([]) == cli.EXIT_OK and capsys.readouterr().err == ""
    assert cli._finish(cli.unfinished(res) + ["variant=f seed 1"]) == cli.EXIT_TRIALS_FAILED
    assert capsys.readouterr().err == (
        "error: 4 trial(s) errored or have no final row (variant=c seed 0, variant=d seed 0, variant=e seed 0 "
        "and 1 more); the rows, table and page hold what finished; --resume retries exactly these\n")
    empty = {"store": SimpleNamespace(final_rows=lambda: pd.DataFrame()), "trials": trials[:1], "missing": []}
    assert cli.unfinished(empty) == []


@pytest.mark.slow
def test_errored_trials_exit_3_after_the_rows_table_and_page_are_written(tmp_path, ray_local, capsys):
    # A checkpoint folder under a file passes validation and the preflight, and fails at the
    # trial's first evaluation (iteration 3 of 6), every attempt.
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    spec = tiny_spec(tmp_path / "specs", cells=("a",), seeds=1, baseline=False,
                     extra_levels={"broken": {"set": {"train.out_dir": str(blocker / "runs")}}})
    results = tmp_path / "results"
    rc = cli.main([str(spec), "--results", str(results), "--max-failures", "0"])
    err = capsys.readouterr().err
    assert rc == cli.EXIT_TRIALS_FAILED == 3
    assert err.splitlines()[-1] == ("error: 1 trial(s) errored or have no final row (variant=broken seed 0); the rows, "
                                    "table and page hold what finished; --resume retries exactly these")
    out = results / "tables" / "contrastive" / "table1"
    md = (out / "table.md").read_text()
    assert "1 failed trial(s), excluded: variant=broken seed 0: error" in md
    from unisemi.ablation import site
    assert site.page_path(results, "contrastive", "table1").exists()
    from unisemi.ablation.store import TableStore
    final = TableStore(results, "contrastive", "table1").final_rows().set_index("cell")
    assert final.loc["variant=a", "status"] == "ok" and final.loc["variant=broken", "status"] == "error"
    # --report-only rewrites the outputs and does not judge the run again
    assert cli.main([str(spec), "--results", str(results), "--report-only"]) == cli.EXIT_OK


@pytest.mark.slow
def test_a_run_whose_trials_all_finish_exits_0(tmp_path, ray_local, capsys):
    spec = tiny_spec(tmp_path / "specs", cells=("a",), seeds=1, baseline=False)
    assert cli.main([str(spec), "--results", str(tmp_path / "results")]) == cli.EXIT_OK
    assert "error:" not in capsys.readouterr().err


class _Trial:
    def __init__(self, status):
        self.status = status


def _reporter(growth, live):
    pytest.importorskip("ray")
    from unisemi.ablation import ray_session
    lines, now = [], [0.0]
    request = ray_session.trial_resources(0, 1.0, 1.0)          # in-process: {CPU: 1, GPU: 1}
    cb = ray_session.pending_reporter(request, growth, lines.append, every_s=60.0,
                                      clock=lambda: now[0], nodes=lambda: live[0])
    return cb, lines, now


def test_a_fixed_cluster_that_lost_its_gpu_node_says_so_every_minute_with_what_is_asked_and_what_exists():
    gpu_node = {"CPU": 8.0, "GPU": 1.0}
    head = {"CPU": 0.0, "memory": 1e9}
    live = [[head, gpu_node]]
    cb, lines, now = _reporter(None, live)
    waiting = [_Trial("PENDING"), _Trial("RUNNING")]
    for t in (30.0, 60.0, 90.0):             # pending while the GPU node lives: a queue, not a problem
        now[0] = t
        cb.on_step_end(0, waiting)
    assert lines == []
    live[0] = [head]                         # the GPU node is gone
    counts = []
    for t in (120.0, 150.0, 179.0, 180.0, 240.0):
        now[0] = t
        cb.on_step_end(0, waiting)
        counts.append(len(lines))
    assert counts == [1, 1, 1, 2, 3]         # a minute after the last check, then every minute
    expected = ("1 trial pending that no node can take: each trial asks for {CPU: 1, GPU: 1} (in-process fit), "
                "every worker on one node, but this fixed-size Ray cluster now has 1 node with {CPU: 0, GPU: 0} "
                "in all, at most {CPU: 0, GPU: 0} on one node (a node it had is gone?); waiting for a node that "
                "fits to join")
    assert lines == [expected] * 3


def test_no_pending_trial_resets_the_minute_and_autoscaling_clusters_are_told_as_before():
    from unisemi.ablation.ray_session import Growth
    live = [[{"CPU": 0.0}]]
    cb, lines, now = _reporter(None, live)
    now[0] = 100.0
    cb.on_step_end(0, [_Trial("RUNNING")])           # nothing pending: the clock restarts here
    now[0] = 150.0
    cb.on_step_end(0, [_Trial("PENDING")])
    assert lines == []
    now[0] = 160.0
    cb.on_step_end(0, [_Trial("PENDING"), _Trial("PENDING")])
    assert lines and lines[-1].startswith("2 trials pending that no node can take")
    growth = Growth({"worker_gpu": ({"CPU": 8.0, "GPU": 1.0}, 4)})
    cb, lines, now = _reporter(growth, live)
    now[0] = 60.0
    cb.on_step_end(0, [_Trial("PENDING")])
    assert lines[-1].startswith("waiting for the autoscaler: 1 trial pending;")
