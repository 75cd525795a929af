"""Hyperparameter search (Optuna TPE + ASHA on Ray Tune) at tiny scale, on the shared local Ray."""
import json

import pytest
import yaml

from conftest import TINY
from unisemi import cli
from unisemi.ablation.search import SEARCH_DIR, SearchError, load_space, preview

BOUNDS = {"optim.lr": (1e-3, 1e-1), "optim.weight_decay": (0.0, 1e-3)}


def write_space(path, **changes):
    space = {
        "title": "tiny search", "preset": "supervised_city",
        "set": {k: v for k, v in TINY.items() if k != "data.batch_size"},
        "space": {"optim.lr": {"type": "loguniform", "low": 1e-3, "high": 1e-1},
                  "optim.weight_decay": {"type": "uniform", "low": 0.0, "high": 1e-3},
                  "data.batch_size": {"type": "choice", "values": [2, 4]}},
        "samples": 3, "seed": 7,
    }
    for k, v in changes.items():
        if v is None:
            space.pop(k)
        else:
            space[k] = v
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(space, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def searched(ray_local, tmp_path_factory):
    """One 3-sample search through the CLI; later tests read its store and leaderboard."""
    root = tmp_path_factory.mktemp("search")
    path = write_space(root / "tiny_sup.yaml")
    rc = cli.main(["tune", str(path), "--results", str(root / "results"), "--max-concurrent", "2"])
    return path, root, rc


def stored(root):
    from unisemi.ablation.store import TableStore
    return TableStore(root / "results", "search", "tiny_sup").read()


def test_a_search_stores_rows_for_each_sampled_trial_within_the_bounds(searched):
    path, root, rc = searched
    assert rc == 0
    df = stored(root)
    assert df["trial"].nunique() == 3 and set(df["suite"]) == {"search"}
    final = df[df["is_final"]]
    assert len(final) == 3 and set(final["status"]) == {"ok"}
    # ASHA may stop a trial after its first evaluation (iteration 3); none runs past 6
    assert set(df["iteration"]) <= {3, 6} and 6 in set(final["iteration"])
    cells = [json.loads(c) for c in final["cell_json"]]
    for c in cells:
        for k, (lo, hi) in BOUNDS.items():
            assert lo <= c[k] <= hi
        assert c["data.batch_size"] in (2, 4)
        # the sampled values are what the trial trained with
    for c, cfg in zip(cells, final["config_json"]):
        cfg = json.loads(cfg)
        assert cfg["optim"]["lr"] == c["optim.lr"] and cfg["data"]["batch_size"] == c["data.batch_size"]
        assert cfg["train"]["iterations"] == 6 and cfg["model"]["width"] == 8
    assert len({c["optim.lr"] for c in cells}) == 3


def test_the_same_seed_samples_the_same_values(searched):
    path, root, rc = searched
    space = load_space(str(path))
    first, again = preview(space, 3), preview(space, 3)
    assert first == again
    assert preview(space, 3, seed=8) != first
    # the search itself drew exactly the seeded sampler's first three proposals
    ran = sorted(json.dumps(json.loads(c), sort_keys=True) for c in stored(root).drop_duplicates("trial")["cell_json"])
    assert ran == sorted(json.dumps(p, sort_keys=True) for p in first)


def test_leaderboard_is_written_best_first(searched, capsys):
    path, root, rc = searched
    out_dir = root / "results" / "tables" / "search" / "tiny_sup"
    import pandas as pd
    board = pd.read_csv(out_dir / "leaderboard.csv")
    assert list(board["rank"]) == [1, 2, 3] and board["trial"].nunique() == 3
    full = board[~board["stopped_early"]]
    assert list(full["miou_mean"]) == sorted(full["miou_mean"], reverse=True)
    assert not board.iloc[0]["stopped_early"]
    md = (out_dir / "leaderboard.md").read_text()
    assert "| rank | trial | optim.lr |" in md and md.count("\n| ") >= 4


def test_rerun_into_the_same_results_refuses(searched, capsys):
    path, root, rc = searched
    assert cli.main(["tune", str(path), "--results", str(root / "results")]) == 2
    assert "already holds a search of tiny_sup" in capsys.readouterr().err


@pytest.mark.parametrize("changes, message", [
    ({"sampels": 3}, "unknown key 'sampels' (did you mean 'samples'?)"),
    ({"space": {"optim.lrr": {"type": "loguniform", "low": 1e-3, "high": 1e-1}}},
     "key 'space.optim.lrr': unknown config key (did you mean 'optim.lr'?)"),
    ({"space": {"optim.lr": {"type": "logunifrom", "low": 1e-3, "high": 1e-1}}},
     "key 'space.optim.lr.type': 'logunifrom' is not a distribution type (did you mean 'loguniform'?)"),
    ({"space": {"optim.lr": {"type": "uniform", "low": 0.1, "high": 0.01}}},
     "key 'space.optim.lr': low 0.1 >= high 0.01; expected low < high"),
    ({"space": {"optim.lr": {"type": "loguniform", "low": 0.0, "high": 0.1}}},
     "key 'space.optim.lr.low': 0.0 is not valid for loguniform"),
    ({"space": {"optim.lr": {"type": "uniform", "low": 1e-3, "hihg": 1e-1}}},
     "unknown key 'space.optim.lr.hihg' (did you mean 'high'?)"),
    ({"space": {"data.batch_size": {"type": "choice", "values": [4, "big"]}}},
     "key 'space.data.batch_size': value 'big' does not give a valid config"),
    ({"space": {"optim.lr": {"type": "uniform", "low": -1.0, "high": 0.1}}},
     "key 'space.optim.lr': value -1.0 does not give a valid config"),
    ({"space": {"train.iterations": {"type": "int", "low": 3, "high": 9}}},
     "key 'space.train.iterations': cannot be searched"),
    ({"set": {"train.iteratons": 6}}, "key 'set.train.iteratons': unknown config key (did you mean 'train.iterations'?)"),
    ({"preset": "supervised_ctiy"}, "key 'preset': config 'supervised_ctiy': no such file or preset"),
    ({"space": {}}, "key 'space': expected a non-empty mapping"),
    ({"metric": "miou"}, "key 'metric': 'miou' is not reported by trials"),
    ({"title": None}, "key 'title': missing"),
])
def test_bad_space_files_give_one_line_errors(tmp_path, changes, message):
    path = write_space(tmp_path / "bad.yaml", **changes)
    with pytest.raises(SearchError) as info:
        load_space(str(path))
    text = str(info.value)
    assert text.startswith(str(path)) and message in text and "\n" not in text


def test_cli_reports_a_bad_space_on_one_line_and_dry_run_previews(tmp_path, capsys):
    bad = write_space(tmp_path / "bad.yaml", space={"optim.lr": {"type": "normal", "low": 0, "high": 1}})
    assert cli.main(["tune", str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "'normal' is not a distribution type" in err and "\n" not in err
    assert cli.main(["tune", str(write_space(tmp_path / "ok.yaml")), "--dry-run"]) == 0
    assert "0: optim.lr=" in capsys.readouterr().out
    assert cli.main(["tune", "no_such_space"]) == 2
    assert "search space file not found" in capsys.readouterr().err


def test_shipped_supervised_space_is_valid():
    space = load_space("supervised")
    assert space.evaluations() == 6 and set(space.space) == {"optim.lr", "optim.weight_decay", "data.batch_size"}


SHIPPED = sorted(SEARCH_DIR.glob("*.yaml"))


def test_the_shipped_spaces_are_found():
    assert {"contrastive", "supervised"} <= {p.stem for p in SHIPPED}


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_every_shipped_space_loads_parses_and_gives_valid_configs(path):
    """Each file under search_spaces/: known keys, distributions Optuna accepts with the file's
    bounds, a valid base config, and sampled points that build valid configs."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    from unisemi.ablation.search import optuna_space
    from unisemi.ablation.spec import dotted_to_nested
    from unisemi.config import _merge, all_keys, build_config

    space = load_space(str(path))
    raw = yaml.safe_load(path.read_text())
    assert set(space.space) == set(raw["space"]) and set(space.space) <= set(all_keys())
    base = build_config(space.base)
    assert space.evaluations() >= 1 and base.train.iterations == raw.get("set", {}).get(
        "train.iterations", base.train.iterations)
    for key, dist in optuna_space(space).items():
        d = raw["space"][key]
        if d["type"] == "choice":
            assert isinstance(dist, CategoricalDistribution) and list(dist.choices) == d["values"]
        else:
            assert isinstance(dist, IntDistribution if d["type"] == "int" else FloatDistribution)
            assert (dist.low, dist.high) == (d["low"], d["high"])
            assert getattr(dist, "log", False) == (d["type"] == "loguniform")
    for point in preview(space, 3):
        assert set(point) == set(space.space)
        cfg = build_config(_merge(space.base, dotted_to_nested(point)))
        for key, value in point.items():
            got = cfg
            for part in key.split("."):
                got = getattr(got, part)
            assert got == value


def test_a_search_asking_for_gpus_the_cluster_lacks_fails_at_once(ray_local, tmp_path, capsys):
    path = write_space(tmp_path / "gpu.yaml")
    rc = cli.main(["tune", str(path), "--results", str(tmp_path / "results"), "--gpus-per-trial", "1"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err.startswith("error: each trial asks for {CPU: 1, GPU: 1} (in-process fit)")
    assert "has 1 node with {CPU: 2, GPU: 0} in all" in err and "\n" not in err
    assert not (tmp_path / "results" / "rows" / "suite=search").exists()


@pytest.mark.slow
def test_a_search_whose_trials_error_exits_3_after_writing_its_leaderboard(ray_local, tmp_path, capsys):
    # A checkpoint folder under a file passes validation and fails at the first evaluation.
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    path = write_space(tmp_path / "broken.yaml", samples=2,
                       set={**{k: v for k, v in TINY.items() if k != "data.batch_size"},
                            "train.out_dir": str(blocker / "runs")})
    results = tmp_path / "results"
    assert cli.main(["tune", str(path), "--results", str(results), "--max-concurrent", "2"]) == 3
    assert capsys.readouterr().err.splitlines()[-1] == (
        "error: 2 of 2 trial(s) errored or have no final row; the leaderboard holds what finished")
    board = (results / "tables" / "search" / "broken" / "leaderboard.csv").read_text()
    assert board.count(",error,") == 2
