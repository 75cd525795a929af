"""The ablation runner end to end at tiny scale, on one shared local Ray instance."""
import json

import pytest

from conftest import tiny_spec
from unisemi.ablation import cli
from unisemi.ablation.report import write_outputs
from unisemi.ablation.runner import RunnerError, run_table
from unisemi.ablation.spec import load_spec
from unisemi.ablation.store import TableStore
from unisemi.train import fit

pytestmark = pytest.mark.usefixtures("ray_local")


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A 2 cells x 2 seeds table run once; later tests read and extend it."""
    root = tmp_path_factory.mktemp("ablation")
    spec = load_spec(str(tiny_spec(root / "specs")))
    res = run_table(spec, results_dir=root / "results", log=lambda *a: None)
    return spec, root, res


def test_every_cell_and_seed_runs_once_with_one_final_row(finished):
    spec, root, res = finished
    df = res["store"].read()
    assert res["ran"] == 4 and res["missing"] == [] and res["failed"] == 0
    # two evaluations (iterations 3 and 6) per trial, one domain
    assert sorted(df.groupby("trial").size()) == [2, 2, 2, 2]
    final = df[df["is_final"]]
    assert sorted(zip(final["cell"], final["seed"])) == [
        ("variant=a", 0), ("variant=a", 1), ("variant=b", 0), ("variant=b", 1)]
    assert set(final["iteration"]) == {6} and df["is_best"].sum() == 4
    assert set(df["resumed_from"]) == {0}
    row = final.iloc[0]
    assert row["git_rev"] and row["config_hash"] and row["split_hash"] and row["node"]
    assert row["wall_s"] > 0 and row["device_hours"] == pytest.approx(row["wall_s"] / 3600)
    parts = [row[k] for k in ("launch_s", "setup_s", "data_s", "train_s", "eval_s")]
    assert all(p >= 0 for p in parts) and row["wall_s"] == pytest.approx(sum(parts))
    assert len(row["class_iou"]) == 19 and json.loads(row["config_json"])["train"]["iterations"] == 6


def test_stored_numbers_equal_a_plain_fit_of_the_same_config(finished):
    spec, root, res = finished
    trial = next(t for t in res["trials"] if t.cell_id == "variant=b" and t.seed == 1)
    from unisemi.config import build_config
    expected = fit(build_config(trial.config))["final"]["domains"]["city"]["miou"]
    stored = res["store"].read_trial(trial.key)
    assert stored[stored["is_final"]]["miou"].item() == pytest.approx(expected, abs=1e-9)


def test_rerun_without_resume_refuses_and_resume_runs_nothing_new(finished):
    spec, root, res = finished
    before = res["store"].read().sort_values(["trial", "iteration"]).reset_index(drop=True)
    with pytest.raises(RunnerError, match="already holds results.*--resume"):
        run_table(spec, results_dir=root / "results", log=lambda *a: None)
    again = run_table(spec, results_dir=root / "results", resume=True, log=lambda *a: None)
    assert again["ran"] == 0 and again["skipped"] == 4
    after = again["store"].read().sort_values(["trial", "iteration"]).reset_index(drop=True)
    assert after.equals(before)


def test_a_truncated_trial_file_is_set_aside_and_its_trial_reruns_on_resume(finished, tmp_path):
    import shutil
    spec, root, res = finished
    results = tmp_path / "results"
    shutil.copytree(root / "results", results, ignore=shutil.ignore_patterns("ray", "tables"))
    victim = next(t for t in res["trials"] if t.cell_id == "variant=a" and t.seed == 1)
    path = TableStore(results, spec.suite, spec.name).trial_file(victim.key)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    logs = []
    again = run_table(spec, results_dir=results, resume=True, log=logs.append)
    assert again["ran"] == 1 and again["missing"] == [] and again["failed"] == 0
    [kept] = (results / "_damaged" / "suite=contrastive" / "table=table1").iterdir()
    assert kept.name.startswith(path.name + ".") and kept.read_bytes() == data[: len(data) // 2]
    assert any(f"damaged trial file {path}" in line for line in logs)
    df = again["store"].read()
    final = df[df["is_final"]]
    assert len(final) == 4 and (final["trial"] == victim.key).sum() == 1
    assert sorted(df[df["trial"] == victim.key]["iteration"]) == [3, 6]


def test_resume_with_nothing_stored_is_an_error(tmp_path):
    spec = load_spec(str(tiny_spec(tmp_path / "specs")))
    with pytest.raises(RunnerError, match="--resume: nothing stored"):
        run_table(spec, results_dir=tmp_path / "results", resume=True)


def test_outputs_are_written_with_paper_column_and_footnotes(finished):
    spec, root, res = finished
    paths = write_outputs(spec, res["store"].read(), root / "out", {}, "laptop")
    md = paths["table.md"].read_text()
    assert "| variant | ours | paper | Δ |" in md.replace("miou ", "")
    assert "(n=2)" in md and "50.0" in md and "Welch" in md and "a tiny table for tests" in md
    assert r"\begin{tabular}" in paths["table.tex"].read_text()
    csv = paths["table.csv"].read_text().splitlines()
    assert csv[0].startswith("cell,axis:variant,domain,n,mean,std") and len(csv) == 3
    assert paths["plot"].stat().st_size > 1000


def test_a_failed_trial_is_retried_from_its_checkpoint_and_matches_the_clean_run(finished, tmp_path):
    spec, root, res = finished
    faulty = load_spec(str(tiny_spec(tmp_path / "specs", cells=("b",), seeds=1, baseline=False)))
    marker = tmp_path / "fault-fired"
    out = run_table(faulty, results_dir=tmp_path / "results", log=lambda *a: None,
                    inject_fault={"after_iteration": 3, "marker": str(marker)})
    assert marker.exists(), "the fault was not injected"
    df = out["store"].read()
    assert sorted(df["iteration"]) == [3, 6] and df["is_final"].sum() == 1
    assert df[df["is_final"]]["resumed_from"].item() == 3       # not restarted from scratch
    # resumed from the iteration-3 checkpoint, the numbers equal the uninterrupted trial's
    clean = res["store"].read()
    clean = clean[(clean["cell"] == "variant=b") & (clean["seed"] == 0)].sort_values("iteration")
    assert list(df.sort_values("iteration")["miou"]) == pytest.approx(list(clean["miou"]), abs=1e-9)


def test_a_nan_trial_is_marked_failed_and_counted_in_the_footnote(tmp_path):
    p = tiny_spec(tmp_path / "specs", cells=("a",), seeds=1, baseline=False,
                  extra_levels={"diverge": {"set": {"optim.lr": 1.0e30}}})
    spec = load_spec(str(p))
    out = run_table(spec, results_dir=tmp_path / "results", log=lambda *a: None)
    final = out["store"].final_rows().set_index("cell")
    assert final.loc["variant=diverge", "status"] == "nan"
    assert "non-finite loss" in final.loc["variant=diverge", "error"]
    assert final.loc["variant=a", "status"] == "ok" and out["failed"] == 1
    md = write_outputs(spec, out["store"].read(), tmp_path / "out")["table.md"].read_text()
    assert "1 failed trial(s), excluded: variant=diverge seed 0: nan" in md


def test_cli_report_only_and_dry_run(finished, capsys):
    spec, root, res = finished
    assert cli.main([str(spec.path), "--results", str(root / "results"), "--report-only"]) == 0
    assert (root / "results" / "tables" / "contrastive" / "table1" / "table.md").exists()
    # With stored trials of the same configs, the estimate comes from their time split, no probe.
    assert cli.main([str(spec.path), "--results", str(root / "results"), "--dry-run", "--seeds", "3"]) == 0
    out = capsys.readouterr().out
    assert "2 cells x 3 seeds = 6 trials to run" in out and "device-hours" in out
    assert "finished trials with the same config (6 trials)" in out and "probe" not in out
    assert "stored time split per trial (mean): launch" in out
    assert cli.main([str(spec.path), "--results", str(root / "results"), "--dry-run", "--seeds", "3",
                     "--resume"]) == 0
    assert "= 2 trials to run" in capsys.readouterr().out
    # Nothing stored: one short calibration run per distinct config.
    assert cli.main([str(spec.path), "--results", str(root / "empty"), "--dry-run"]) == 0
    assert "a 20-iteration probe run (4 trials)" in capsys.readouterr().out
    assert cli.main([str(spec.path), "--seeds", "0"]) == 2
    assert "--seeds 0: expected >= 1" in capsys.readouterr().err


def test_estimate_probes_once_per_config_and_packs_longest_first():
    from types import SimpleNamespace

    from unisemi.ablation.runner import estimate, makespan
    from unisemi.ablation.spec import config_identity as cost_key
    cfg = lambda lr, seed: {"train": {"seed": seed, "iterations": 9}, "data": {"split_seed": seed}, "optim": {"lr": lr}}
    trials = [SimpleNamespace(config=cfg(lr, seed)) for lr in (0.1, 0.2, 0.3) for seed in (0, 1)]
    assert cost_key(cfg(0.1, 0)) == cost_key(cfg(0.1, 5)) != cost_key(cfg(0.2, 0))
    stored = {cost_key(cfg(0.3, 0)): {"launch_s": 1.0, "setup_s": 2.0, "data_s": 0.0, "train_s": 5.0, "eval_s": 2.0}}
    probed = []
    seconds, sources, split = estimate(trials, stored, lambda t: probed.append(t) or 20.0 * t.config["optim"]["lr"])
    assert len(probed) == 2 and sources == {"stored": 2, "probe": 4}
    assert seconds == pytest.approx([2, 2, 4, 4, 10, 10])
    assert split == stored[cost_key(cfg(0.3, 0))]
    assert makespan(seconds, 2) == pytest.approx(16) and makespan([5, 4, 3, 3, 3], 2) == pytest.approx(10)


def test_missing_pretrained_caches_are_built_once_per_model_config_before_the_trials(tmp_path, monkeypatch):
    from types import SimpleNamespace

    import unisemi.pretrain as pretrain
    from unisemi.ablation.runner import prepare_pretrained
    from unisemi.config import load_config, to_dict
    monkeypatch.setenv("UNISEMI_CACHE", str(tmp_path))
    calls = []

    def fake_build(model_cfg, config=None):
        path = pretrain.cache_path(pretrain.config_for(model_cfg))
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"weights")
        calls.append(model_cfg.width)
        return path

    monkeypatch.setattr(pretrain, "ensure_pretrained", fake_build)
    config = lambda width, init, seed: to_dict(load_config(  # noqa: E731
        "supervised_city", [f"model.width={width}", f"model.pretrained={init}", f"train.seed={seed}"]))
    trials = [SimpleNamespace(key=f"t{i}", config=config(w, init, s))
              for i, (w, init, s) in enumerate([(8, "synthetic", 0), (8, "synthetic", 1),
                                                (16, "synthetic", 0), (8, "none", 0)])]
    built = prepare_pretrained(trials, log=lambda *a: None)
    assert calls == [8, 16] and len(built) == 2 and all(p.exists() for p in built)
    assert prepare_pretrained(trials, log=lambda *a: None) == [] and calls == [8, 16]
