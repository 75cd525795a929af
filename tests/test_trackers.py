"""--tracker: one tiny 2-trial table logged to TensorBoard and MLflow through Ray Tune's callbacks,
read back with each tracker's own reader."""
import builtins
import math

import pytest

from conftest import tiny_spec
from unisemi.ablation import cli, trackers
from unisemi.ablation.runner import run_table
from unisemi.ablation.spec import load_spec
from unisemi.ablation.trackers import TrackerError, check_trackers, trial_metrics

pytestmark = pytest.mark.usefixtures("ray_local")

EVALUATIONS = 2             # the tiny profile: 6 iterations, evaluated every 3


@pytest.fixture(scope="module")
def tracked(tmp_path_factory):
    """Cells a and b x 1 seed, run once with both trackers. (One cell x 2 seeds would do as well,
    but tiny_spec's paper entries name cell b, and a paper entry must name a cell.)"""
    pytest.importorskip("tensorboardX")
    pytest.importorskip("mlflow")
    root = tmp_path_factory.mktemp("trackers")
    spec = load_spec(str(tiny_spec(root / "specs", seeds=1)))
    res = run_table(spec, results_dir=root / "results", trackers=["tensorboard", "mlflow"],
                    log=lambda *a: None)
    assert res["ran"] == 2 and res["failed"] == 0
    return root / "results", res


def test_tensorboard_has_a_miou_series_per_trial(tracked):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    results, res = tracked
    runs = sorted(p.parent for p in (results / "trackers" / "tensorboard").rglob("events.out.tfevents.*"))
    assert len(set(runs)) == 2
    assert sorted(p.name.split("_seed")[0] for p in runs) == ["variant_a", "variant_b"]
    for run in runs:
        acc = EventAccumulator(str(run)).Reload()
        tags = acc.Tags()["scalars"]
        series = acc.Scalars("ray/tune/miou/city")
        # one point per evaluation, stepped by training iteration
        assert [e.step for e in series] == [3, 6]
        assert all(0.0 <= e.value <= 100.0 for e in series)
        assert "ray/tune/miou_mean" in tags and any(t.startswith("ray/tune/loss/") for t in tags)
        assert not any(" " in t for t in tags)


def test_mlflow_has_one_run_per_trial_with_cell_seed_and_miou_history(tracked):
    import mlflow
    from mlflow import MlflowClient

    results, res = tracked
    uri = trackers.mlflow_uri(results)
    assert (results / "trackers" / "mlflow" / "mlflow.db").is_file()
    mlflow.set_tracking_uri(uri)
    runs = mlflow.search_runs(experiment_names=["contrastive/table1"], output_format="list")
    assert len(runs) == 2
    assert sorted(r.data.params["cell"] for r in runs) == ["variant=a", "variant=b"]
    stored = res["store"].read()
    for run in runs:
        params, tags = run.data.params, run.data.tags
        assert tags["cell"] == params["cell"] == f"variant={params['level.variant']}"
        assert params["seed"] == tags["seed"] == "0" and params["config.train.iterations"] == "6"
        assert params["config.optim.lr"] == ("0.01" if params["level.variant"] == "a" else "0.02")
        assert tags["table"] == "table1" and run.info.status == "FINISHED"
        history = MlflowClient(uri).get_metric_history(run.info.run_id, "miou/city")
        rows = stored[(stored["trial"] == params["trial"])].sort_values("iteration")
        assert [m.step for m in sorted(history, key=lambda m: m.step)] == [3, 6]
        # the tracker's numbers are the store's numbers
        assert [m.value for m in sorted(history, key=lambda m: m.step)] == pytest.approx(list(rows["miou"]))


def test_tracker_files_stay_out_of_the_rows_dataset(tracked):
    results, _ = tracked
    assert {p.suffix for p in (results / "rows").rglob("*") if p.is_file()} == {".parquet"}


def test_nested_and_non_scalar_results_are_flattened():
    record = {"iteration": 3, "miou_mean": 40.0, "miou_sum": 40.0, "lr": 0.01, "lrs": [0.01, 0.1],
              "domains": {"city": {"miou": 40.0, "pixel_acc": 80.0, "iou": {"traffic light": math.nan}}},
              "loss": {"sup": 1.5, "note": "x"}, "splits": {"city": {"split_id": "s"}}, "stages": {}}
    out = trial_metrics({"iteration": 3, "miou_mean": 40.0, "record": record, "config": {"trial": "k"},
                         "device": "cpu", "training_iteration": 1})
    assert "record" not in out and "config" not in out
    assert out["miou/city"] == 40.0 and out["timesteps_total"] == 3 and out["loss/sup"] == 1.5
    assert "iou/city/traffic_light" in out and "loss/note" not in out and "lrs" not in out
    # a failure report has no record: passed through as it is
    assert trial_metrics({"iteration": -1, "failed": "nan"}) == {"iteration": -1, "failed": "nan"}


def test_a_missing_tracker_package_names_the_extra_before_ray_starts(monkeypatch, tmp_path, capsys):
    real = builtins.__import__

    def no_mlflow(name, *args, **kwargs):
        if name.split(".")[0] == "mlflow":
            raise ImportError("No module named 'mlflow'")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_mlflow)
    monkeypatch.delitem(__import__("sys").modules, "mlflow", raising=False)
    with pytest.raises(TrackerError, match=r"^--tracker mlflow needs the mlflow package.*pip install 'unisemi\[mlflow\]'$"):
        check_trackers(["tensorboard", "mlflow"])
    # the table runner refuses it before writing anything or starting Ray
    spec_path = tiny_spec(tmp_path / "specs", seeds=1)
    launched = []
    monkeypatch.setattr("unisemi.ablation.runner._launch", lambda *a, **k: launched.append(1))
    assert cli.main([str(spec_path), "--results", str(tmp_path / "results"), "--tracker", "mlflow"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: --tracker mlflow needs the mlflow package, which is not installed: "
                   "pip install 'unisemi[mlflow]'"]
    assert not launched and not (tmp_path / "results" / "rows").exists()


def test_trackers_are_checked_once_each_in_order():
    assert check_trackers(["tensorboard", "tensorboard"]) == ["tensorboard"]
    with pytest.raises(TrackerError, match="unknown tracker"):
        check_trackers(["comet"])
    assert set(trackers.TRACKERS) == {"tensorboard", "mlflow", "wandb"}


def test_a_search_through_the_tune_command_logs_each_sampled_trial(tmp_path):
    """The search names its trials by the sampled values (its cell), from the same payload as its rows."""
    pytest.importorskip("mlflow")
    import mlflow

    from test_search import write_space
    from unisemi import cli as unisemi_cli

    path = write_space(tmp_path / "tiny_sup.yaml", samples=2)
    results = tmp_path / "results"
    assert unisemi_cli.main(["tune", str(path), "--results", str(results), "--tracker", "mlflow"]) == 0
    mlflow.set_tracking_uri(trackers.mlflow_uri(results))
    runs = mlflow.search_runs(experiment_names=["search/tiny_sup"], output_format="list")
    stored = {r.trial: r for r in __import__("pandas").read_parquet(results / "rows").itertuples()}
    assert len(runs) == 2
    for run in runs:
        params = run.data.params
        row = stored[params["trial"]]
        assert params["cell"] == row.cell and params["seed"] == str(row.seed)
        assert float(params["config.optim.lr"]) == pytest.approx(float(params["level.optim.lr"]))
        assert run.data.metrics["miou_mean"] >= 0.0


def test_wandb_is_offline_unless_the_user_chose(monkeypatch):
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    assert trackers.wandb_mode() == "offline"
    monkeypatch.setenv("WANDB_API_KEY", "set-by-the-user")
    assert trackers.wandb_mode() == "online"
    monkeypatch.setenv("WANDB_MODE", "disabled")
    assert trackers.wandb_mode() == "disabled"
