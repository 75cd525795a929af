"""The results ledger without Ray: trial identity, config changes, reports per expansion, the
runner lock and damaged files. Every run_table call here must stop before Ray starts (`_launch`
is replaced by a recorder), so these tests take seconds."""
import hashlib
import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from conftest import TINY, tiny_spec
from unisemi.ablation import cli, runner
from unisemi.ablation.ledger import ConfigChanged, config_diff
from unisemi.ablation.lock import LOCK_NAME, LockHeld, TableLock
from unisemi.ablation.report import write_outputs
from unisemi.ablation.runner import run_table
from unisemi.ablation.spec import config_identity, expand, load_spec
from unisemi.ablation.store import StoreError, TableStore, check_results_dir

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def spec(tmp_path):
    """The tiny 2 cells x 2 seeds spec, with a 'paper' profile on the same synthetic domain (so it
    expands without real data): identical configs, a different table instance."""
    p = tiny_spec(tmp_path / "specs")
    raw = yaml.safe_load(p.read_text())
    raw["profiles"]["paper"] = {"domains": {"main": "city"}, "set": dict(TINY)}
    p.write_text(yaml.safe_dump(raw, sort_keys=False))
    return load_spec(str(p))


@pytest.fixture
def launched(monkeypatch):
    """Records the trials a run would launch, instead of starting Ray."""
    calls = []
    monkeypatch.setattr(runner, "_launch", lambda spec, todo, *a: calls.append([t.key for t in todo]))
    return calls


def store_rows(store, trials, miou=10.0, final=True, profile="laptop", key=None):
    """One evaluation row per trial, as the runner writes it (config_json, cell, seed, ...)."""
    for t in trials:
        k = key(t) if key else t.key
        store.merge(k, [dict(
            run_id="r", suite=store.suite, table=store.table, profile=profile, trial=k, cell=t.cell_id,
            cell_json=json.dumps(t.cell), seed=t.seed, split_seed=t.split_seed, domain="city",
            domain_key="main", iteration=6, is_final=final, is_best=final, status="ok", miou=miou,
            class_names=["x"], class_iou=[miou], workers=0, git_rev="abc123", config_hash=t.config_hash,
            config_json=json.dumps(t.config, sort_keys=True), wall_s=1.0, device_hours=1 / 3600,
            launch_s=0.1, setup_s=0.1, data_s=0.1, train_s=0.5, eval_s=0.2)])


def run_cli(spec, results, *args):
    return cli.main([str(spec.path), "--results", str(results), *args])


# --- trial identity ----------------------------------------------------------------------------

def test_trial_key_holds_profile_and_config_with_seeds_aside(spec):
    base, _ = expand(spec)
    longer, _ = expand(spec, overrides={"train": {"iterations": 60}})
    paper, _ = expand(spec, profile="paper")
    assert not {t.key for t in base} & {t.key for t in longer}          # another budget, other keys
    assert not {t.key for t in base} & {t.key for t in paper}           # same config, other profile
    assert [t.config for t in base] == [t.config for t in paper]
    a0, a1 = [t for t in base if t.cell_id == "variant=a"]
    assert a0.key != a1.key and config_identity(a0.config) == config_identity(a1.config)


def test_config_diff_names_dotted_keys_and_skips_seeds_and_the_launchers_thread_choice():
    stored = {"train": {"iterations": 40, "seed": 0, "threads": 1}, "data": {"split_seed": 0}}
    now = {"train": {"iterations": 60, "seed": 1, "threads": 0}, "data": {"split_seed": 1}}
    assert config_diff(stored, now) == [("train.iterations", 40, 60)]
    now["train"]["threads"] = 2                       # set on purpose: a real difference
    assert ("train.threads", 1, 2) in config_diff(stored, now)


# --- resume with a changed config -------------------------------------------------------------

def test_resume_with_a_changed_iteration_budget_stops_naming_the_key_and_both_values(spec, tmp_path, launched, capsys):
    store = TableStore(tmp_path / "results", spec.suite, spec.name)
    store_rows(store, expand(spec)[0])
    before = store.read()
    with pytest.raises(ConfigChanged, match=r"holds trials of this table run with a different config: "
                                            r"train\.iterations 6 \(stored\) vs 60 \(now\); use another --results"):
        run_table(spec, results_dir=tmp_path / "results", resume=True,
                  overrides={"train": {"iterations": 60}}, log=lambda *a: None)
    assert launched == []
    assert run_cli(spec, tmp_path / "results", "--resume", "--set", "train.iterations=60") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "train.iterations 6 (stored) vs 60 (now)" in err and str(store.dir) in err
    assert store.read().equals(before)                                   # nothing written


def test_resume_with_the_same_config_runs_only_the_missing_trials(spec, tmp_path, launched):
    trials, _ = expand(spec)
    store = TableStore(tmp_path / "results", spec.suite, spec.name)
    store_rows(store, trials[:3])
    run_table(spec, results_dir=tmp_path / "results", resume=True, log=lambda *a: None)
    assert launched == [[trials[3].key]]


def test_rows_of_another_profile_never_block_a_run(spec, tmp_path, launched):
    store = TableStore(tmp_path / "results", spec.suite, spec.name)
    store_rows(store, expand(spec, profile="paper")[0], profile="paper")
    logs = []
    run_table(spec, results_dir=tmp_path / "results", log=logs.append)     # no --resume needed
    assert len(launched) == 1 and len(launched[0]) == 4
    assert any("4 stored row(s) of 4 trial(s) of another profile" in line for line in logs)


# --- reports select by the current expansion ----------------------------------------------------

def test_a_report_over_two_configs_and_two_profiles_shows_only_the_current_rows(spec, tmp_path, capsys):
    store = TableStore(tmp_path / "results", spec.suite, spec.name)
    store_rows(store, expand(spec)[0], miou=10.0)
    store_rows(store, expand(spec, overrides={"train": {"iterations": 60}})[0], miou=30.0)
    store_rows(store, expand(spec, profile="paper")[0], miou=70.0, profile="paper")
    md = write_outputs(spec, store.read(), tmp_path / "out", profile="laptop",
                       trials=expand(spec, overrides={"train": {"iterations": 60}})[0])["table.md"].read_text()
    md = md.replace("**", "")                                           # bold: the column's best
    assert "30.0 ± 0.0 (n=2)" in md and "10.0" not in md and "70.0" not in md
    assert ("Not shown: 4 stored row(s) of 4 trial(s) run with another config (or an older key scheme); "
            "4 stored row(s) of 4 trial(s) of another profile.") in md
    # the CLI: --report-only with the stored settings picks the 6-iteration rows
    assert run_cli(spec, tmp_path / "results", "--report-only") == 0
    out = capsys.readouterr()
    # every cell at 10.0: the column ties, so nothing is bold
    assert "| 10.0 ± 0.0 (n=2) |" in out.out and "**" not in out.out and "30.0" not in out.out
    assert "not in this table: 4 stored row(s) of 4 trial(s) run with another config" in out.err
    assert run_cli(spec, tmp_path / "results", "--report-only", "--profile", "paper") == 0
    assert "| 70.0 ± 0.0 (n=2) |" in capsys.readouterr().out


def test_a_cell_with_an_unfinished_trial_is_marked_n_of_expected(spec, tmp_path):
    trials, _ = expand(spec)
    store = TableStore(tmp_path / "results", spec.suite, spec.name)
    store_rows(store, [t for t in trials if (t.cell_id, t.seed) != ("variant=a", 1)])
    store_rows(store, [t for t in trials if (t.cell_id, t.seed) == ("variant=a", 1)], final=False)
    paths = write_outputs(spec, store.read(), tmp_path / "out", profile="laptop", trials=trials)
    md = paths["table.md"].read_text().replace("**", "")
    assert "10.0 (n=1 of 2)†" in md and "10.0 ± 0.0 (n=2)" in md
    assert ("† Incomplete (a trial interrupted, still running or failed; rerun with --resume): "
            "variant=a: 1 of 2 trials (1 without a final row).") in md
    assert r"$^\dagger$" in paths["table.tex"].read_text()
    csv = paths["table.csv"].read_text().splitlines()
    assert "n_expected" in csv[0] and "n_missing" in csv[0]


def test_rows_of_the_previous_key_scheme_are_readable_and_counted(spec, tmp_path, launched, capsys):
    def old_key(t):                     # before the profile and config joined the key
        ident = json.dumps([spec.suite, spec.name, t.cell_id, t.seed, t.split_seed, list(t.domain_keys)],
                           sort_keys=True)
        return hashlib.sha1(ident.encode()).hexdigest()[:16]
    trials, _ = expand(spec)
    store = TableStore(tmp_path / "results", spec.suite, spec.name)
    store_rows(store, trials, key=old_key)
    assert run_cli(spec, tmp_path / "results", "--report-only") == 0
    out = capsys.readouterr()
    assert "4 stored row(s) of 4 trial(s) run with another config (or an older key scheme)" in out.out
    assert "(n=0 of 2)†" in out.out
    # same settings under old keys: not a config change, the trials simply run again
    run_table(spec, results_dir=tmp_path / "results", resume=True, log=lambda *a: None)
    assert len(launched[0]) == 4


# --- one runner per table ---------------------------------------------------------------------

HOLDER = textwrap.dedent("""
    import os, sys
    from unisemi.ablation.lock import TableLock
    lock = TableLock(sys.argv[1], log=print).acquire()
    print("held", flush=True)
    if sys.argv[2] == "exit":
        os._exit(0)                     # dies holding it: no release, as a killed driver
    sys.stdin.read()                    # holds it until the test closes stdin
""")


def _holder(folder, mode):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(folder), mode], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True, env=env)
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_a_second_runner_stops_at_once_naming_the_lock_holder(spec, tmp_path, launched, capsys):
    store = TableStore(tmp_path / "results", spec.suite, spec.name)
    proc = _holder(store.lock_dir, "hold")
    try:
        with pytest.raises(LockHeld, match=rf"being run by pid {proc.pid} on host {socket.gethostname()} "
                                           r"\(started \d{4}-\d\d-\d\dT"):
            run_table(spec, results_dir=tmp_path / "results", log=lambda *a: None)
        assert launched == []
        assert run_cli(spec, tmp_path / "results") == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and f"pid {proc.pid}" in err
        # reading needs no lock: a report and a dry run still work while the holder runs
        store_rows(store, expand(spec)[0])
        assert run_cli(spec, tmp_path / "results", "--report-only") == 0
        assert run_cli(spec, tmp_path / "results", "--dry-run") == 0
    finally:
        proc.stdin.close()
        proc.wait(timeout=30)
    run_table(spec, results_dir=tmp_path / "results", resume=True, log=lambda *a: None)   # free again


def test_a_stale_lock_left_by_an_exited_process_is_taken_over(tmp_path):
    proc = _holder(tmp_path, "exit")
    proc.wait(timeout=30)
    assert json.loads((tmp_path / LOCK_NAME).read_text())["pid"] == proc.pid
    logs = []
    with TableLock(tmp_path, log=logs.append):
        assert json.loads((tmp_path / LOCK_NAME).read_text())["pid"] == os.getpid()
        assert logs == [f"took over the stale lock {tmp_path / LOCK_NAME} of pid {proc.pid} on host "
                        f"{socket.gethostname()} (started {logs[0].split('(started ')[1]}"]
        with pytest.raises(LockHeld, match=f"pid {os.getpid()}"):
            TableLock(tmp_path).acquire()          # a second open file description conflicts too
    assert (tmp_path / LOCK_NAME).read_text() == ""                     # released cleanly
    logs.clear()
    TableLock(tmp_path, log=logs.append).acquire().release()
    assert logs == []                                                   # an empty file is not stale


# --- damaged files and unusable results paths -------------------------------------------------

def test_truncated_and_empty_trial_files_are_set_aside_named_and_kept(spec, tmp_path, capsys):
    trials, _ = expand(spec)
    logs = []
    store = TableStore(tmp_path / "results", spec.suite, spec.name, log=logs.append)
    store_rows(store, trials)
    truncated, empty = store.trial_file(trials[0].key), store.trial_file(trials[2].key)   # a/0, b/0
    data = truncated.read_bytes()[:100]
    truncated.write_bytes(data)
    empty.write_bytes(b"")
    df = store.read()
    assert set(df["trial"]) == {trials[1].key, trials[3].key}
    assert not truncated.exists() and not empty.exists()
    damaged = tmp_path / "results" / "_damaged" / "suite=contrastive" / "table=table1"
    kept = sorted(damaged.iterdir())
    assert [p.name.rsplit(".", 2)[0] for p in kept] == sorted([empty.name, truncated.name])
    assert {p.read_bytes() for p in kept} == {data, b""}                # moved, not deleted
    assert len(logs) == 2 and all("damaged trial file" in line and "reruns on --resume" in line for line in logs)
    assert str(truncated) in " ".join(logs)
    # --report-only and --dry-run go on with the readable rows (one line each, no traceback)
    truncated.write_bytes(data)
    assert run_cli(spec, tmp_path / "results", "--report-only") == 0
    out = capsys.readouterr()
    assert "(n=1 of 2)†" in out.out and f"damaged trial file {truncated}" in out.err
    truncated.write_bytes(data)
    assert run_cli(spec, tmp_path / "results", "--dry-run", "--resume") == 0
    out = capsys.readouterr()
    assert "= 2 trials to run" in out.out and "Traceback" not in out.err and len(list(damaged.iterdir())) == 4


def test_a_damaged_file_reruns_its_trial_on_resume(spec, tmp_path, launched):
    trials, _ = expand(spec)
    store = TableStore(tmp_path / "results", spec.suite, spec.name)
    store_rows(store, trials)
    store.trial_file(trials[2].key).write_bytes(b"PAR1 not really")
    run_table(spec, results_dir=tmp_path / "results", resume=True, log=lambda *a: None)
    assert launched == [[trials[2].key]]


def test_a_results_path_that_is_a_file_is_one_line_error_before_anything_runs(spec, tmp_path, launched, capsys):
    path = tmp_path / "results"
    path.write_text("not a folder")
    for args in ([], ["--resume"], ["--report-only"], ["--dry-run"]):
        assert run_cli(spec, path, *args) == 2, args
        err = capsys.readouterr().err
        assert err == f"error: --results {path}: is a file, expected a folder for the results dataset\n"
    with pytest.raises(StoreError, match="is a file"):
        run_table(spec, results_dir=path / "sub")
    assert launched == [] and path.read_text() == "not a folder"


def test_a_results_folder_without_write_permission_is_one_line_error(spec, tmp_path, launched, monkeypatch, capsys):
    import unisemi.ablation.store as storemod
    (tmp_path / "results").mkdir()
    # Tests run as root, who may write anywhere: the check asks os.access, so ask it to say no.
    monkeypatch.setattr(storemod.os, "access", lambda p, mode: Path(p) != tmp_path / "results")
    assert run_cli(spec, tmp_path / "results") == 2
    assert capsys.readouterr().err == (f"error: --results {tmp_path / 'results'}: no write permission on "
                                       f"{tmp_path / 'results'}; pass a writable --results folder\n")
    with pytest.raises(StoreError, match="no write permission on"):
        check_results_dir(tmp_path / "results" / "new" / "deeper")
    check_results_dir(tmp_path / "results", writable=False)             # a dry run only reads
    assert launched == []


def test_a_read_only_results_folder_is_refused_where_the_os_enforces_it(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        if os.access(ro, os.W_OK):
            pytest.skip("running as root: mode 555 does not stop root writing (see the os.access test)")
        with pytest.raises(StoreError, match="no write permission on"):
            check_results_dir(ro / "results")
    finally:
        ro.chmod(0o755)


def test_ablations_run_py_prints_one_line_and_exits_nonzero_on_a_file_as_results(spec, tmp_path):
    path = tmp_path / "results"
    path.write_text("x")
    out = subprocess.run([sys.executable, str(ROOT / "ablations" / "run.py"), str(spec.path), "--results",
                          str(path)], capture_output=True, text=True, timeout=300)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert out.stderr.strip().splitlines() == [f"error: --results {path}: is a file, expected a folder "
                                               f"for the results dataset"]


def test_bold_marks_the_best_of_two_or_more_cells_only(spec, tmp_path):
    trials, _ = expand(spec)
    store = TableStore(tmp_path / "results", spec.suite, spec.name)
    store_rows(store, [t for t in trials if t.cell_id == "variant=a"])
    body = [line for line in write_outputs(spec, store.read(), tmp_path / "one", profile="laptop",
                                           trials=trials)["table.md"].read_text().splitlines()
            if line.startswith("| ")]
    assert body and not any("**" in line for line in body)        # one measured cell: no "best"
    store_rows(store, [t for t in trials if t.cell_id != "variant=a"], miou=20.0)
    md = write_outputs(spec, store.read(), tmp_path / "two", profile="laptop", trials=trials)["table.md"].read_text()
    # b - a is +10 at both seeds: paired, b is the column's best and significant against a
    assert "**20.0 ± 0.0**\\* (n=2)" in md and "**10.0" not in md
