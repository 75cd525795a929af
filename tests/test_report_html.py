"""The HTML report from stored rows: the index, a table's page and the numbers behind its figures.

The rows are written through the real store API by tests/report_rows.py with values that follow
a rule, so every expected number here is worked out by hand from that rule. One test runs a real
2-trial table through `python ablations/run.py` to see that the runner writes its page."""
import json
import math
import shutil

import numpy as np
import pandas as pd
import pytest

from conftest import tiny_spec
from report_rows import CLASSES, html_tables, write_rows
from unisemi import cli as unisemi_cli
from unisemi.ablation import cli, figures, site
from unisemi.ablation.report import table_parts
from unisemi.ablation.rows import selected_rows
from unisemi.ablation.spec import expand, load_spec
from unisemi.ablation.store import TableStore, rows_root

EXTRA_LEVEL = {"c": {"set": {"optim.lr": 0.01, "optim.weight_decay": 0.001}}}


@pytest.fixture(scope="module")
def tables(tmp_path_factory):
    """A results folder with two tables: 'tiny' (3 cells x 2 seeds, seed 1 of cell c never
    finished) and 'other' (2 cells x 1 seed, complete), plus an empty partition folder. Read
    only: a test that adds rows works on a copy (`copied`)."""
    tmp_path = tmp_path_factory.mktemp("report")
    specs = {name: load_spec(str(tiny_spec(tmp_path / "specs", name=name, cells=cells, seeds=seeds,
                                           extra_levels=extra)))
             for name, cells, seeds, extra in (("tiny", ("a", "b", "c"), 2, EXTRA_LEVEL),
                                               ("other", ("a", "b"), 1, None))}
    results = tmp_path / "results"
    trials = {name: expand(spec)[0] for name, spec in specs.items()}
    unfinished = next(t.key for t in trials["tiny"] if t.cell_id == "variant=c" and t.seed == 1)
    write_rows(results, specs["tiny"], trials["tiny"], skip={unfinished})
    write_rows(results, specs["other"], trials["other"])
    (rows_root(results) / "suite=contrastive" / "table=empty").mkdir(parents=True)
    for name, spec in specs.items():
        assert cli.main([str(spec.path), "--results", str(results), "--report-only"]) == 0
    return specs, trials, results


@pytest.fixture
def copied(tables, tmp_path):
    specs, trials, results = tables
    shutil.copytree(results, tmp_path / "results")
    return specs, trials, tmp_path / "results"


def _page(results, table):
    return html_tables((site.page_path(results, "contrastive", table)).read_text())


def test_the_index_lists_exactly_the_tables_with_rows_with_status_and_cost(tables):
    specs, trials, results = tables
    index = html_tables((site.report_root(results) / "index.html").read_text())["tables"]
    head, body = index[0], {r[0]: dict(zip(index[0], r)) for r in index[1:]}
    assert head[:5] == ["table", "title", "status", "trials", "device-seconds"]
    assert set(body) == {"contrastive/tiny", "contrastive/other"}
    # each finished trial: 2 evaluations x 2 s wall on one device, the cost of the latest row
    assert body["contrastive/tiny"]["status"] == "5 of 6 trials"
    assert body["contrastive/tiny"]["trials"] == "5 / 6"
    assert body["contrastive/tiny"]["device-seconds"] == "20.0"
    assert body["contrastive/other"]["status"] == "complete"
    assert body["contrastive/other"]["device-seconds"] == "8.0"
    assert body["contrastive/tiny"]["last row (UTC)"] == "2026-12-01T10:00:01+00:00"


def test_a_run_of_one_table_renders_the_missing_page_of_another_but_not_its_table_files(copied):
    specs, _, results = copied
    shutil.rmtree(results / "tables" / "contrastive" / "other")
    site.page_path(results, "contrastive", "other").unlink()
    assert cli.main([str(specs["tiny"].path), "--results", str(results), "--report-only"]) == 0
    assert site.page_path(results, "contrastive", "other").exists()
    assert not (results / "tables" / "contrastive" / "other").exists()
    assert "table.md" not in site.page_path(results, "contrastive", "other").read_text()


def test_a_failed_trial_is_counted_in_the_status(copied):
    specs, trials, results = copied
    store = TableStore(results, "contrastive", "other")
    t = trials["other"][1]
    store.merge(t.key, [dict(run_id="r2", profile="laptop", trial=t.key, cell=t.cell_id, cell_json=json.dumps(t.cell),
                             seed=t.seed, split_seed=t.split_seed, domain="city", domain_key="main",
                             iteration=-1, is_final=True, is_best=False, status="error", error="boom",
                             config_json=json.dumps(t.config), time_utc="2026-12-01T11:00:00+00:00")])
    meta = site.rebuild_page(results, "contrastive", "other", log=lambda *a: None)
    assert (meta["status"], meta["ok"], meta["failed"]) == ("1 of 2 trials, 1 failed", 1, 1)


def test_the_page_shows_the_tables_cells_paper_and_delta_as_table_md_does(tables):
    specs, trials, results = tables
    rows = _page(results, "tiny")["results"]
    assert rows[0] == ["variant", "miou"] and rows[1] == ["ours", "paper", "Δ"]
    shown = {r[0]: r[1:] for r in rows[2:]}
    # cell a: seeds 0 and 1 give 40 and 41, the paper 50; b 42 and 43 against 51; c only 44, against 54.
    # b - a is +2 at both seeds: paired, no seed noise is left in the difference (p = 0, the mark)
    assert shown["a"] == ["40.5 ± 0.7 (n=2)", "50.0", "-9.5"]
    assert shown["b"] == ["42.5 ± 0.7 (n=2) *", "51.0", "-8.5"]
    assert shown["c"] == ["44.0 (n=1 of 2)†", "54.0", "-10.0"]
    md = (results / "tables" / "contrastive" / "tiny" / "table.md").read_text()
    for label, (ours, paper, delta) in shown.items():
        md_row = next(line for line in md.splitlines() if line.startswith(f"| {label} |"))
        cells = [c.strip().replace("**", "").replace("\\*", "") for c in md_row.strip("|").split("|")]
        assert cells[1:] == [ours.replace(" *", ""), paper, delta]
    notes = site.page_path(results, "contrastive", "tiny").read_text()
    assert "variant=c: 1 of 2 trials (1 without a final row)" in notes
    assert "against the baseline (variant=a) in the same column, Holm-adjusted over the table&#39;s 1 comparison" in notes
    assert "(paired t: variant=b)" in notes      # c shares one seed with a: no test


# a spreads 5 per seed; b = a + (1, 3, 2) and c = a + (4.1, 3.9, 4.0) at seeds 0, 1, 2
NOISY = {"variant=a": (40.0, 45.0, 50.0), "variant=b": (41.0, 48.0, 52.0), "variant=c": (44.1, 48.9, 54.0)}


def test_the_significance_mark_follows_the_paired_test_and_bold_shows_ties(tmp_path):
    from scipy import stats
    spec = load_spec(str(tiny_spec(tmp_path / "specs", cells=("a", "b", "c"), seeds=3)))
    trials, pending = expand(spec)
    write_rows(tmp_path / "r", spec, trials, value=lambda cid, seed: NOISY[cid][seed])
    df = TableStore(tmp_path / "r", spec.suite, spec.name).read()
    _, summary, notes = table_parts(spec, df, trials, pending, "laptop")
    by = summary.set_index("cell")
    a, b, c = (np.array(NOISY[f"variant={x}"]) for x in "abc")
    # paired against a: c's difference (4 +- 0.1) is far outside its noise, b's (2 +- 1) is not
    p_b, p_c = stats.ttest_rel(b, a).pvalue, stats.ttest_rel(c, a).pvalue
    assert by.loc["variant=c", "p_value"] == pytest.approx(p_c) and p_c < 0.001
    assert by.loc["variant=b", "p_value"] == pytest.approx(p_b) and p_b > 0.05
    assert by.loc["variant=c", "p_holm"] == pytest.approx(2 * p_c)       # Holm: the smaller p times 2
    assert by.loc["variant=b", "p_holm"] == pytest.approx(p_b)
    assert stats.ttest_ind(c, a, equal_var=False).pvalue > 0.3          # unpaired, c would be noise
    assert (by.loc["variant=c", "diff"], by.loc["variant=c", "n_pairs"]) == (pytest.approx(4.0), 3)
    half = stats.t.ppf(0.975, 2) * 0.1 / math.sqrt(3)
    assert (by.loc["variant=c", "diff_lo"], by.loc["variant=c", "diff_hi"]) == (
        pytest.approx(4 - half), pytest.approx(4 + half))
    view = site.table_view(spec, summary)
    marks = {r["label"]: (r["entries"][0]["sig"], r["entries"][0]["bold"]) for r in view["rows"]}
    # top c: b - c = -2 +- 1.1 is not significantly below (a tie, both bold); a - c = -4 +- 0.1 is
    assert marks == {"a": (False, False), "b": (False, True), "c": (True, True)}
    html = site.page_path(tmp_path / "r", spec.suite, spec.name)
    site.write_page(tmp_path / "r", spec.suite, spec.name, df, trials, pending, "laptop", spec)
    shown = {r[0]: r[1] for r in html_tables(html.read_text())["results"][2:]}
    assert shown == {"a": "45.0 ± 5.0 (n=3)", "b": "47.0 ± 5.6 (n=3)", "c": "49.0 ± 5.0 (n=3) *"}
    text = " ".join(notes)
    assert "Holm-adjusted over the table's 2 comparison(s)" in text and "(paired t: variant=b, variant=c)" in text


def test_a_two_domain_trial_costs_once_on_the_page_and_in_the_footnote(tmp_path):
    spec = load_spec(str(tiny_spec(tmp_path / "specs", seeds=1, domains={"main": "city", "far": "town"})))
    trials, pending = expand(spec)
    write_rows(tmp_path / "r", spec, trials)
    df = TableStore(tmp_path / "r", spec.suite, spec.name).read()
    assert len(df[df["is_final"]]) == 4                  # 2 trials x 2 domains
    meta = site.write_page(tmp_path / "r", spec.suite, spec.name, df, trials, pending, "laptop", spec)
    assert meta["device_s"] == pytest.approx(8.0)         # 2 trials x 4 s, not 4 rows x 4 s
    _, _, notes = table_parts(spec, df, trials, pending, "laptop")
    assert "Cost: 0.002 device-hours over 2 trials" in " ".join(notes)


def test_the_config_diff_lists_exactly_the_keys_each_cell_overrides(tables):
    specs, trials, results = tables
    cells = _page(results, "tiny")["config-cells"][1:]
    listed, cell = {}, None
    for label, key, value, preset in cells:
        cell = label or cell                  # a cell's name is on its first key's row only
        listed.setdefault(cell, {})[key] = (value, preset)
    # supervised_city's lr is 0.1, its weight decay 5e-4; the tiny profile's own keys are the preset's
    assert listed == {"variant=a": {"optim.lr": ("0.01", "0.1")},
                      "variant=b": {"optim.lr": ("0.02", "0.1")},
                      "variant=c": {"optim.lr": ("0.01", "0.1"), "optim.weight_decay": ("0.001", "0.0005")}}
    assert "config-common" not in _page(results, "tiny")


def test_a_key_every_cell_sets_alike_is_listed_once_for_every_cell(tables):
    specs, _, _ = tables
    spec = specs["tiny"]
    trials, _ = expand(spec, overrides={"train": {"iterations": 9}})
    common, per_cell = site.config_diffs(site.preset_config(spec, "laptop"), site.cell_configs(trials, pd.DataFrame()))
    assert common == [("train.iterations", "9", "6")]
    assert {c: [k for k, _, _ in keys] for c, keys in per_cell.items()} == {
        "variant=a": ["optim.lr"], "variant=b": ["optim.lr"], "variant=c": ["optim.lr", "optim.weight_decay"]}


def _selected(tables):
    specs, trials, results = tables
    spec = specs["tiny"]
    df = TableStore(results, spec.suite, spec.name).read()
    return spec, df, selected_rows(spec, df)


def test_the_class_heatmap_is_each_cell_minus_its_baseline_cell(tables):
    spec, _, sel = _selected(tables)
    order = ["variant=a", "variant=b", "variant=c"]
    frame = figures.class_delta_frame(sel, "main", {"variant": "a"}, list(spec.axes), order)
    assert list(frame.index) == order and list(frame.columns) == CLASSES
    # class j of cell i at seed s has IoU 10 j + i + s: a averages 10 j + 0.5, b 10 j + 1.5 (its
    # 'sky' is null), c has seed 0 only: 10 j + 2
    np.testing.assert_allclose(frame.loc["variant=a"], [0.0] * 5)
    np.testing.assert_allclose(frame.loc["variant=b"].iloc[:4], [1.0] * 4)
    assert math.isnan(frame.loc["variant=b", "sky"])
    np.testing.assert_allclose(frame.loc["variant=c"], [1.5] * 5)
    absolute = figures.class_frame(sel, "main", order)
    np.testing.assert_allclose(absolute.loc["variant=a"], [0.5, 10.5, 20.5, 30.5, 40.5])


def test_learning_curves_are_the_mean_and_std_over_trials_at_every_evaluation(tables):
    spec, df, _ = _selected(tables)
    curves = figures.curve_frame(df, "miou", ["variant=a", "variant=b", "variant=c"])
    a = curves[curves["cell"] == "variant=a"]
    assert a["iteration"].tolist() == [3, 6]
    np.testing.assert_allclose(a["mean"], [20.25, 40.5])         # (40 + 41) / 2, halfway at iteration 3
    np.testing.assert_allclose(a["std"], [0.5 / math.sqrt(2), 1 / math.sqrt(2)])
    c = curves[curves["cell"] == "variant=c"]
    assert c["n"].tolist() == [1, 1] and c["std"].isna().all()


def test_spread_and_cost_per_cell_come_from_each_trials_rows(tables):
    spec, df, sel = _selected(tables)
    order = ["variant=a", "variant=b", "variant=c"]
    spread = figures.spread_frame(sel, "miou", order)
    assert spread[["cell", "seed", "value"]].values.tolist() == [
        ["variant=a", 0, 40.0], ["variant=a", 1, 41.0], ["variant=b", 0, 42.0], ["variant=b", 1, 43.0],
        ["variant=c", 0, 44.0]]
    cost = figures.cost_frame(df, order).set_index("cell")
    assert cost["trials"].tolist() == [2, 2, 1]
    np.testing.assert_allclose(cost["device_s"], [8.0, 8.0, 4.0])
    np.testing.assert_allclose(cost["train_s"], [2.0, 2.0, 2.0])     # half of the latest wall (4 s)


def test_every_figure_the_page_names_is_beside_it(tables):
    specs, _, results = tables
    html = site.page_path(results, "contrastive", "tiny").read_text()
    folder = site.assets_dir(results, "contrastive", "tiny")
    names = {p.name for p in folder.glob("*.png")}
    # the laptop profile's plot.png is the relative view, the absolute one beside it
    assert names == {"plot.png", "plot_absolute.png", "curves.png", "classes_main.png", "spread.png"}
    assert html.index('src="tiny/plot.png"') < html.index('src="tiny/plot_absolute.png"')
    for name in names:
        assert f'src="tiny/{name}"' in html
    for link in ("table.md", "table.tex", "table.csv"):
        assert f'href="../../tables/contrastive/tiny/{link}"' in html


def test_report_rebuilds_every_page_and_a_table_without_a_spec_gets_a_rows_only_page(copied, capsys):
    specs, _, results = copied
    store = TableStore(results, "search", "space")
    store.merge("t0", [dict(run_id="r", profile="search", trial="t0", cell="optim.lr=0.01",
                            cell_json='{"optim.lr": 0.01}', seed=0, split_seed=0, domain="city",
                            domain_key="main", iteration=6, is_final=True, is_best=True, status="ok",
                            miou=33.0, class_names=["x"], class_iou=[33.0], wall_s=3.0, device_hours=3 / 3600,
                            config_json="{}", time_utc="2026-12-01T12:00:00+00:00")])
    site.page_path(results, "contrastive", "tiny").unlink()
    assert unisemi_cli.main(["report", "--results", str(results)]) == 0
    assert "wrote 3 table page(s)" in capsys.readouterr().out
    assert site.page_path(results, "contrastive", "tiny").exists()
    page = html_tables(site.page_path(results, "search", "space").read_text())
    assert "results" not in page and "config-cells" not in page
    assert page["costs"][1][:3] == ["optim.lr=0.01", "1", "3.0"]
    index = html_tables((site.report_root(results) / "index.html").read_text())["tables"]
    assert {r[0] for r in index[1:]} == {"contrastive/tiny", "contrastive/other", "search/space"}


def test_a_results_folder_without_rows_is_one_line(tmp_path, capsys):
    assert unisemi_cli.main(["report", "--results", str(tmp_path / "none")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert err.startswith(f"error: {tmp_path / 'none' / 'rows'}: no stored rows, nothing to report")


def test_the_runner_writes_its_tables_page_and_report_only_rewrites_it(tmp_path, ray_local):
    spec_path = tiny_spec(tmp_path / "specs", name="run2", seeds=1)
    results = tmp_path / "results"
    assert cli.main([str(spec_path), "--results", str(results)]) == 0
    page = site.page_path(results, "contrastive", "run2")
    rows = html_tables(page.read_text())
    csv = pd.read_csv(results / "tables" / "contrastive" / "run2" / "table.csv")
    shown = {r[0]: r[1] for r in rows["results"][2:]}
    for line in csv.itertuples():
        assert shown[line.cell.split("=")[1]].startswith(f"{line.mean:.1f} (n=1)")
    assert {r[0] for r in rows["costs"][1:]} == {"variant=a", "variant=b"}
    # what the trials stored: the launcher's choices (threads) are not differences of a cell
    assert [r[:3] for r in rows["config-cells"][1:]] == [["variant=a", "optim.lr", "0.01"],
                                                         ["variant=b", "optim.lr", "0.02"]]
    assert "config-common" not in rows
    meta = json.loads((site.assets_dir(results, "contrastive", "run2") / site.META).read_text())
    assert meta["status"] == "complete" and meta["device_s"] > 0
    page.unlink()
    assert cli.main([str(spec_path), "--results", str(results), "--report-only"]) == 0
    assert html_tables(page.read_text())["results"] == rows["results"]


def test_a_ratio_to_table_shows_both_percentages_as_table_md_does(tmp_path):
    path = tiny_spec(tmp_path / "specs", cells=("a", "b"), seeds=2)
    path.write_text(path.read_text() + "ratio_to: {variant: a}\n")
    spec = load_spec(str(path))
    trials, pending = expand(spec)
    write_rows(tmp_path / "r", spec, trials)
    df = TableStore(tmp_path / "r", spec.suite, spec.name).read()
    site.write_page(tmp_path / "r", spec.suite, spec.name, df, trials, pending, "laptop", spec)
    rows = html_tables(site.page_path(tmp_path / "r", spec.suite, spec.name).read_text())["results"]
    assert rows[1] == ["ours", "paper", "Δ", "% of a ours", "% of a paper"]
    shown = {r[0]: r[1:] for r in rows[2:]}
    # a: 40.5 (paper 50), b: 42.5 (paper 51): b is 104.9% of a, and 102.0% in the paper
    assert shown["a"][3:] == ["100.0%", "100.0%"]
    assert shown["b"][3:] == ["104.9%", "102.0%"]


def test_the_relative_view_is_each_cells_paired_percent_change_from_its_baseline(tmp_path):
    from scipy import stats
    from unisemi.ablation.plots import plot_files, relative_frame
    spec = load_spec(str(tiny_spec(tmp_path / "specs", cells=("a", "b", "c"), seeds=3)))
    trials, pending = expand(spec)
    write_rows(tmp_path / "r", spec, trials, value=lambda cid, seed: NOISY[cid][seed])
    df = TableStore(tmp_path / "r", spec.suite, spec.name).read()
    _, summary, _ = table_parts(spec, df, trials, pending, "laptop")
    frame = relative_frame(spec, summary).set_index("cell")
    change = 100 * (np.array(NOISY["variant=b"]) / np.array(NOISY["variant=a"]) - 1)   # 2.5, 6.67, 4.0
    half = stats.t.ppf(0.975, 2) * change.std(ddof=1) / math.sqrt(3)
    b = frame.loc["variant=b"]
    assert (b["ours"], b["lo"], b["hi"]) == (pytest.approx(change.mean()), pytest.approx(change.mean() - half),
                                             pytest.approx(change.mean() + half))
    assert b["paper"] == pytest.approx(2.0) and frame.loc["variant=c", "paper"] == pytest.approx(8.0)  # 51, 54 vs 50
    assert tuple(frame.loc["variant=a", ["ours", "lo", "hi", "paper"]]) == (0.0, 0.0, 0.0, 0.0)
    assert plot_files(spec, "laptop") == {"relative": "plot.png", "absolute": "plot_absolute.png"}
    assert plot_files(spec, "paper") == {"absolute": "plot.png", "relative": "plot_relative.png"}
    spec.raw.pop("baseline")
    assert plot_files(spec, "laptop") == {"absolute": "plot.png"}
