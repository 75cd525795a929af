"""Ablation specs, the results store and the table report, without Ray."""
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from conftest import tiny_spec
from unisemi.ablation import report, spec as specmod
from unisemi.ablation.spec import SpecError, expand, load_spec
from unisemi.ablation.store import TableStore

REFERENCE = Path(__file__).resolve().parents[2] / "shared" / "papers" / "reference_tables.yaml"


def _edit(path, fn):
    raw = yaml.safe_load(path.read_text())
    fn(raw)
    path.write_text(yaml.safe_dump(raw, sort_keys=False))


def test_bare_table_name_resolves_to_the_contrastive_suite(tmp_path, monkeypatch):
    tiny_spec(tmp_path, name="table6")
    monkeypatch.setattr(specmod, "ABLATIONS_DIR", tmp_path)
    suite, table, path = specmod.resolve("table6")
    assert (suite, table, path) == ("contrastive", "table6", tmp_path / "contrastive" / "table6.yaml")


def test_unknown_table_lists_close_matches(tmp_path, monkeypatch):
    tiny_spec(tmp_path, name="table6")
    monkeypatch.setattr(specmod, "ABLATIONS_DIR", tmp_path)
    with pytest.raises(SpecError, match=r"unknown table 'table9'.*contrastive/table6"):
        specmod.resolve("table9")


@pytest.mark.parametrize("edit, message", [
    (lambda r: r.update(colums=1), r"unknown key 'colums'"),
    (lambda r: r["axes"].update(variant={}), r"key 'axes.variant': empty grid"),
    (lambda r: r.update(seeds=0), r"key 'seeds': 0 is not valid, expected >= 1"),
    (lambda r: r.update(seeds="two"), r"key 'seeds': expected a count"),
    (lambda r: r["axes"]["variant"]["a"].update(sett={}), r"unknown key 'axes.variant.a.sett'.*did you mean 'set'"),
    (lambda r: r.update(layout={"rows": "nope"}), r"key 'layout.rows': 'nope' is not an axis"),
    (lambda r: r.update(evaluation="last"), r"key 'evaluation': 'last' is not valid"),
])
def test_bad_spec_is_one_line_naming_file_and_key(tmp_path, edit, message):
    p = tiny_spec(tmp_path)
    _edit(p, edit)
    with pytest.raises(SpecError, match=message) as err:
        load_spec(str(p))
    assert str(p) in str(err.value) and "\n" not in str(err.value)


def test_bad_config_value_in_a_cell_names_the_cell(tmp_path):
    p = tiny_spec(tmp_path)
    _edit(p, lambda r: r["axes"]["variant"]["b"].update({"set": {"optim.lrr": 0.1}}))
    with pytest.raises(SpecError, match=r"cell variant=b.*unknown key 'optim.lrr'"):
        expand(load_spec(str(p)))


def test_expand_gives_cells_times_seeds_with_stable_distinct_keys(tmp_path):
    s = load_spec(str(tiny_spec(tmp_path, seeds=3)))
    trials, pending = expand(s)
    assert pending == {}
    assert len(trials) == 2 * 3 and len({t.key for t in trials}) == 6
    assert {(t.cell_id, t.seed) for t in trials} == {(f"variant={c}", k) for c in "ab" for k in range(3)}
    t = next(t for t in trials if t.cell_id == "variant=b" and t.seed == 2)
    assert t.config["optim"]["lr"] == 0.02 and t.config["train"]["seed"] == 2
    assert t.config["data"]["split_seed"] == 2 and t.config["train"]["iterations"] == 6
    assert [x.key for x in expand(s)[0]] == [x.key for x in trials]          # stable
    assert len(expand(s, seeds=1)[0]) == 2


def test_per_domain_levels_split_a_cell_into_one_trial_per_domain(tmp_path):
    p = tiny_spec(tmp_path, domains={"cs": "city", "cvd": "town"},
                  extra_levels={"solo": {"set": {"method": "supervised"}, "per_domain": True}})
    trials, _ = expand(load_spec(str(p)), seeds=1)
    solo = [t for t in trials if t.cell_id == "variant=solo"]
    assert sorted(t.config["data"]["domains"] for t in solo) == [["city"], ["town"]]
    joint = [t for t in trials if t.cell_id == "variant=a"]
    assert len(joint) == 1 and joint[0].config["data"]["domains"] == ["city", "town"]


def test_cells_of_unimplemented_methods_are_pending_not_errors(tmp_path):
    # `ass` and `transfer` were the example until they were built; `wssl` is not built
    p = tiny_spec(tmp_path, extra_levels={"future": {"set": {"method": "wssl", "wssl.alpha": 1}}})
    trials, pending = expand(load_spec(str(p)), seeds=1)
    assert pending == {"variant=future": "method 'wssl' is not implemented yet"}
    assert len(trials) == 2


def test_explicit_splits_multiply_trials(tmp_path):
    p = tiny_spec(tmp_path, seeds=2)
    _edit(p, lambda r: r.update(splits=[10, 11, 12]))
    trials, _ = expand(load_spec(str(p)))
    assert len(trials) == 2 * 2 * 3
    assert {t.config["data"]["split_seed"] for t in trials} == {10, 11, 12}


def _row(trial="t1", it=3, domain="city", miou=10.0, status="ok", **kw):
    base = dict(run_id="r", suite="contrastive", table="table1", profile="laptop", trial=trial,
                cell="variant=a", cell_json=json.dumps({"variant": "a"}), seed=0, split_seed=0,
                domain=domain, domain_key="main", iteration=it, is_final=False, is_best=False,
                status=status, miou=miou, class_names=["x", "y"], class_iou=[miou, miou],
                workers=0, wall_s=1.0, device_hours=1 / 3600, git_rev="abc123")
    base.update(kw)
    return base


def test_store_merge_is_idempotent_and_finalize_marks_final_and_best(tmp_path):
    st = TableStore(tmp_path, "contrastive", "table1")
    st.merge("t1", [_row(it=3, miou=30.0)])
    st.merge("t1", [_row(it=6, miou=20.0)])
    st.merge("t1", [_row(it=3, miou=30.0)])            # a retry re-reports iteration 3
    df = st.read()
    assert sorted(df["iteration"]) == [3, 6]
    st.finalize("t1")
    df = st.read().set_index("iteration")
    assert bool(df.loc[6, "is_final"]) and not bool(df.loc[3, "is_final"])
    assert bool(df.loc[3, "is_best"]) and not bool(df.loc[6, "is_best"])
    assert st.completed() == {"t1"}
    assert not list(st.dir.glob(".*tmp"))               # no temporary files left behind


def test_store_failure_marker_is_replaced_when_a_retry_succeeds(tmp_path):
    st = TableStore(tmp_path, "contrastive", "table1")
    st.merge("t1", [_row(it=-1, status="error", is_final=True, error="boom", miou=None)])
    assert st.completed() == set() and st.completed(retry_errors=False) == {"t1"}
    st.merge("t1", [_row(it=3)])
    assert list(st.read()["status"]) == ["ok"]


def test_store_rejects_columns_outside_the_schema(tmp_path):
    with pytest.raises(KeyError, match="outside the schema"):
        TableStore(tmp_path, "s", "t").merge("t1", [_row(bogus=1)])


def _frame(values):
    """Final rows for cells a/b: values = {cell: [(seed, split_seed, miou), ...]}."""
    rows = []
    for cell, vals in values.items():
        for seed, split, miou in vals:
            rows.append(_row(trial=f"{cell}{seed}{split}", cell=f"variant={cell}",
                             cell_json=json.dumps({"variant": cell}), seed=seed, split_seed=split,
                             miou=miou, is_final=True, is_best=True))
    st = pd.DataFrame(rows)
    return st


def test_summary_mean_std_paper_delta_and_the_test_against_baseline(tmp_path):
    from scipy import stats
    s = load_spec(str(tiny_spec(tmp_path)))
    df = _frame({"a": [(0, 0, 10.0), (1, 1, 12.0), (2, 2, 14.0)], "b": [(0, 0, 20.0), (1, 1, 21.0)]})
    out = report.summarize(s, df).set_index("cell")
    assert out.loc["variant=a", "mean"] == 12.0 and out.loc["variant=a", "std"] == 2.0
    assert out.loc["variant=a", "n"] == 3 and out.loc["variant=b", "n"] == 2
    assert out.loc["variant=b", "paper"] == 51.0 and out.loc["variant=b", "delta"] == pytest.approx(20.5 - 51.0)
    # b shares seeds 0 and 1 (and their splits) with a: paired on those two
    expected = stats.ttest_rel([20.0, 21.0], [10.0, 12.0]).pvalue
    assert out.loc["variant=b", "p_value"] == pytest.approx(expected) and out.loc["variant=b", "test"] == "paired t"
    assert math.isnan(out.loc["variant=a", "p_value"])            # the baseline itself
    # seeds of b that a never ran: Welch's test on the two samples
    apart = report.summarize(s, _frame({"a": [(0, 0, 10.0), (1, 1, 12.0), (2, 2, 14.0)],
                                        "b": [(5, 5, 20.0), (6, 6, 21.0)]})).set_index("cell")
    expected = stats.ttest_ind([20.0, 21.0], [10.0, 12.0, 14.0], equal_var=False).pvalue
    assert apart.loc["variant=b", "p_value"] == pytest.approx(expected) and apart.loc["variant=b", "test"] == "Welch"
    md = report.markdown(s, report.summarize(s, df), ["note one"])
    assert "**20.5 ± 0.7**" in md and "12.0 ± 2.0 (n=3)" in md and "1. note one" in md


def test_seed_and_split_spread_are_reported_apart(tmp_path):
    s = load_spec(str(tiny_spec(tmp_path)))
    # two splits x two seeds: split means 11 and 21 (split std 7.07), within-split std 1.41
    df = _frame({"a": [(0, 10, 10.0), (1, 10, 12.0), (0, 11, 20.0), (1, 11, 22.0)]})
    line = report.summarize(s, df).set_index("cell").loc["variant=a"]
    assert line["split_std"] == pytest.approx(np.std([11.0, 21.0], ddof=1))
    assert line["seed_std"] == pytest.approx(np.std([10.0, 12.0], ddof=1))


@pytest.mark.skipif(not REFERENCE.exists(), reason="../shared/papers not beside the checkout")
def test_paper_numbers_in_specs_match_the_reference_file():
    ref = yaml.safe_load(REFERENCE.read_text())
    checked = 0
    for suite, table, path in specmod.all_specs():
        s = load_spec(str(path))
        where = ref
        for part in s.raw["reference"].split("."):
            where = where[part]
        cols = where.get("columns")
        rows_axis = s.layout["rows"]
        for key, by_row in where.items():                              # e.g. cs_miou: {row: value}
            if key.endswith("_miou") and isinstance(by_row, dict):
                for row, value in by_row.items():
                    assert s.paper_value({rows_axis: row}, key[:-5]) == value, (path, key, row)
                    checked += 1
        if "miou" in where and isinstance(where["miou"], list):       # a 1-D sweep
            for level, value in zip(s.axes[rows_axis], where["miou"]):
                assert float(level) == float(cols[list(s.axes[rows_axis]).index(level)])
                assert s.paper_value({rows_axis: level}, s.domains[0]) == value, (path, level)
                checked += 1
            continue
        for row, numbers in (where.get("rows") or {}).items():
            if not isinstance(numbers, list):                          # one number per row
                assert s.paper_value({rows_axis: row}, s.domains[0]) == numbers, (path, row)
                checked += 1
                continue
            col_axis = s.layout["columns"]
            if isinstance(cols, dict):                                 # {N50: [cs, cvd], ...}
                flat = [(g, d) for g in cols for d in cols[g]]
            elif col_axis and all(str(c) in s.axes[col_axis] for c in cols):   # columns = levels
                flat = [(c, s.domains[0]) for c in cols]
            else:                                                      # columns = domains
                flat = [(None, d) for d in cols]
            for (g, d), value in zip(flat, numbers):
                cell = {s.layout["rows"]: row}
                if g:
                    cell[s.layout["columns"]] = g
                assert s.paper_value(cell, d) == value, (path, row, g, d)
                checked += 1
    assert checked > 0


def test_paper_profile_resolves_to_the_real_dataset_and_rejects_unknown_names(tmp_path):
    trials, _ = expand(load_spec("table6"), profile="paper")
    assert {tuple(t.config["data"]["domains"]) for t in trials} == {("cityscapes",)}
    # the COCO-initialised DeepLabv2 of the paper's Table 6 caption, in its Caffe layout
    assert {t.config["model"]["encoder"] for t in trials} == {"deeplabv2_resnet101"}
    assert {t.config["model"]["pretrained"] for t in trials} == {"coco-deeplabv2-resnet101"}
    import yaml
    path = tiny_spec(tmp_path)
    raw = yaml.safe_load(path.read_text())
    raw["profiles"]["paper"] = {"domains": {"main": "citiscapes"}}
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(SpecError, match=r"'citiscapes'.*known: .*cityscapes"):
        expand(load_spec(str(path)), profile="paper")


def test_precision_footnote_reports_the_resolvable_difference(tmp_path):
    from scipy import stats
    s = load_spec(str(tiny_spec(tmp_path)))
    df = _frame({"a": [(0, 0, 10.0), (1, 1, 12.0)], "b": [(0, 0, 20.0), (1, 1, 24.0)]})
    summary = report.summarize(s, df)
    p = report.precision(summary)
    pooled = math.sqrt((2.0 + 8.0) / 2)                # variances 2 and 8
    assert p["pooled_std"] == pytest.approx(pooled) and p["n"] == 2
    assert p["resolvable"] == pytest.approx(stats.t.ppf(0.975, 2) * pooled)
    # paired: b - a is 10 and 12 at seeds 0 and 1, sd sqrt(2), 2 pairs: t(0.975, 1) sqrt(2) / sqrt(2)
    assert p["paired_sd"] == pytest.approx(math.sqrt(2)) and p["paired_n"] == 2
    assert p["paired_resolvable"] == pytest.approx(stats.t.ppf(0.975, 1))
    notes = report.footnotes_for(s, df, {}, "laptop", summary)
    assert any(n.startswith("Precision: median seed std") and "the table resolves differences above 12.71 mIoU" in n
               for n in notes)


def test_only_restricts_the_cells_and_rejects_unknown_levels(tmp_path):
    from unisemi.ablation.spec import parse_only
    s = load_spec(str(tiny_spec(tmp_path, seeds=2)))
    trials, _ = expand(s, only=parse_only(["variant=b"]))
    assert {t.cell_id for t in trials} == {"variant=b"} and len(trials) == 2
    with pytest.raises(SpecError, match="--only variant=z: not a level of 'variant'"):
        expand(s, only=parse_only(["variant=z"]))
    with pytest.raises(SpecError, match="expected AXIS=LEVEL"):
        parse_only(["variant"])


SHIPPED = specmod.all_specs()


def _paper_node(s, cell, domain):
    """The raw YAML node under `paper:` for a cell and domain, walked as Spec.paper_value walks it
    but without its number filter, so a string or list there is seen instead of read as null."""
    node = s.raw.get("paper")
    for axis in (s.layout["rows"], s.layout["columns"]):
        if axis is not None and isinstance(node, dict):
            node = node.get(str(cell[axis]))
    return node.get(domain) if isinstance(node, dict) else node


@pytest.mark.parametrize("path", [p for _, _, p in SHIPPED], ids=[f"{s}/{t}" for s, t, _ in SHIPPED])
def test_every_shipped_spec_expands_on_both_profiles(path):
    """Needs only the checkout (not ../shared): every table under ablations/ loads, every trial's
    config validates, keys are unique, and the paper's numbers are numbers."""
    from unisemi.ablation.spec import cell_id
    from unisemi.config import build_config
    from unisemi.data import known_domains
    s = load_spec(str(path))
    trials, pending = expand(s, "laptop")
    assert trials and len({t.key for t in trials}) == len(trials)
    for t in trials:
        build_config(t.config, f"{path} {t.cell_id}")            # the dict a Ray worker gets validates
        assert set(t.domain_keys) <= set(s.domains) and t.config["data"]["domains"]
    subset = s.raw["profiles"]["laptop"].get("only") or {}            # the laptop's row subset
    assert {t.cell_id for t in trials} | set(pending) == {
        cell_id(c) for c in s.cells() if all(str(c[a]) in levels for a, levels in subset.items())}
    rows_levels = {str(level) for level in s.axes[s.layout["rows"]]}
    assert set(map(str, s.raw.get("paper") or {})) <= rows_levels, "paper: keys must be row levels"
    for cell in s.cells():
        for domain in s.domains:
            node = _paper_node(s, cell, domain)
            assert node is None or (isinstance(node, (int, float)) and not isinstance(node, bool)), \
                (cell, domain, node)
    assert any(s.paper_value(c, d) is not None for c in s.cells() for d in s.domains)
    paper = (s.raw.get("profiles") or {}).get("paper")
    if paper:   # the paper profile names real datasets, and its configs validate without the data
        assert set(paper["domains"].values()) <= set(known_domains())
        trials, _ = expand(s, "paper")
        for t in trials:
            build_config(t.config, f"{path} {t.cell_id} (paper)")


def test_a_level_setting_another_methods_key_is_an_error_naming_key_method_and_cell(tmp_path):
    from conftest import tiny_spec
    path = tiny_spec(tmp_path, extra_levels={"c": {"set": {"contrastive.lambda_contr": 1.0}}})
    with pytest.raises(SpecError) as err:
        expand(load_spec(str(path)))
    msg = str(err.value)
    assert "cell variant=c runs method 'supervised'" in msg and "'contrastive.lambda_contr'" in msg
    assert "\n" not in msg


def test_paper_only_levels_are_pending_with_their_reason_and_never_run(tmp_path):
    from conftest import tiny_spec
    path = tiny_spec(tmp_path, extra_levels={"c": {"paper_only": "Someone et al. 2020"}})
    trials, pending = expand(load_spec(str(path)))
    assert {t.cell_id for t in trials} == {"variant=a", "variant=b"}
    assert pending == {"variant=c": "paper-only reference row (Someone et al. 2020): the paper's number, never run here"}
    t2, p2 = expand(load_spec("contrastive/table2"))
    assert len(p2) == 24 and all(r.startswith("paper-only reference row") for r in p2.values())


def test_a_paper_entry_for_a_cell_that_does_not_exist_is_an_error_listing_the_levels(tmp_path):
    from conftest import tiny_spec
    path = tiny_spec(tmp_path)
    raw = yaml.safe_load(path.read_text())
    raw["paper"]["c"] = {"main": 52.0}
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(SpecError, match=r"paper.c.*not a level of the 'variant' axis \(levels: a, b\)"):
        load_spec(str(path))


def test_an_unquoted_numeric_paper_key_finds_its_level(tmp_path):
    from conftest import tiny_spec
    path = tiny_spec(tmp_path, cells=("1", "2"), baseline=False)
    raw = yaml.safe_load(path.read_text())
    raw["paper"] = {1: {"main": 50.0}, 2: {"main": 51.0}}      # what `1:` unquoted gives
    path.write_text(yaml.safe_dump(raw))
    assert "\n  1:" in path.read_text()
    spec = load_spec(str(path))
    assert spec.paper_value({"variant": "1"}, "main") == 50.0
    assert spec.paper_value({"variant": "2"}, "main") == 51.0


def test_a_paper_value_that_is_not_a_number_is_an_error(tmp_path):
    from conftest import tiny_spec
    path = tiny_spec(tmp_path)
    raw = yaml.safe_load(path.read_text())
    raw["paper"]["a"] = {"main": "50.0%"}
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(SpecError, match=r"paper.a.main.*expected a number or null, got '50.0%'"):
        load_spec(str(path))


def test_a_profile_swaps_the_stand_in_source_for_its_dataset():
    paper, _ = expand(load_spec("contrastive/table4"), profile="paper")
    laptop, _ = expand(load_spec("contrastive/table4"), profile="laptop")
    adapted = [t for t in paper if t.cell["method"] == "ours_adaptation"]
    assert adapted and {t.config["contrastive"]["source_domain"] for t in adapted} == {"gta5"}
    assert {t.config["ass"]["source_domain"] for t in paper if t.cell["method"] == "ass"} == {"gta5"}
    assert {t.config["contrastive"]["source_domain"] for t in laptop
            if t.cell["method"] == "ours_adaptation"} == {"game"}


def _two_axis_spec(tmp_path, **extra):
    """tiny_spec with a second axis (n: n8, n16) and `extra` merged into the spec's top level
    (a `laptop_only` entry goes to profiles.laptop.only)."""
    from conftest import tiny_spec
    path = tiny_spec(tmp_path, cells=("a", "b", "c"), seeds=1)
    raw = yaml.safe_load(path.read_text())
    raw["axes"]["n"] = {"n8": {"set": {"data.n_labelled": 8}}, "n16": {"set": {"data.n_labelled": 16}}}
    raw["layout"]["columns"] = "n"
    raw["paper"] = {"a": {"n8": {"main": 50.0}}}
    if "laptop_only" in extra:
        raw["profiles"]["laptop"]["only"] = extra.pop("laptop_only")
    raw.update(extra)
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def test_a_profile_only_runs_its_subset_and_the_command_line_only_replaces_it_per_axis(tmp_path):
    from unisemi.ablation.spec import parse_only
    s = load_spec(str(_two_axis_spec(tmp_path, laptop_only={"variant": ["a", "c"], "n": "n8"})))
    cells = lambda trials: sorted(t.cell_id for t in trials)        # noqa: E731
    trials, pending = expand(s, "laptop")
    assert cells(trials) == ["variant=a,n=n8", "variant=c,n=n8"] and pending == {}
    # --only n=n16 replaces the profile's n, keeps its variant subset
    trials, _ = expand(s, "laptop", only=parse_only(["n=n16"]))
    assert cells(trials) == ["variant=a,n=n16", "variant=c,n=n16"]
    # --only variant=b runs the row the profile leaves out
    trials, _ = expand(s, "laptop", only=parse_only(["variant=b", "n=n8", "n=n16"]))
    assert cells(trials) == ["variant=b,n=n16", "variant=b,n=n8"]


@pytest.mark.parametrize("only, message", [
    ({"size": ["s"]}, r"key 'profiles.laptop.only.size': 'size' is not an axis \(axes: variant, n\)"),
    ({"n": ["n32"]}, r"key 'profiles.laptop.only.n': 'n32' is not a level of the 'n' axis \(levels: n8, n16\)"),
    ({"n": []}, r"key 'profiles.laptop.only.n': an empty list of levels would run nothing"),
    (["n8"], r"key 'profiles.laptop.only': expected a mapping of axis -> levels"),
])
def test_a_bad_profile_only_names_the_key_and_the_valid_choices(tmp_path, only, message):
    path = _two_axis_spec(tmp_path, laptop_only=only)
    with pytest.raises(SpecError, match=message) as err:
        load_spec(str(path))
    assert str(path) in str(err.value)


def test_not_run_cells_are_pending_with_their_reason_and_match_partial_cells(tmp_path):
    why = "nothing to train on at n8"
    s = load_spec(str(_two_axis_spec(tmp_path, not_run=[
        {"cell": {"variant": "a", "n": "n8"}, "why": why},
        {"cell": {"variant": "c"}, "why": "every n of c"}])))
    trials, pending = expand(s, "laptop")
    assert pending == {"variant=a,n=n8": f"not runnable ({why})",
                       "variant=c,n=n8": "not runnable (every n of c)",
                       "variant=c,n=n16": "not runnable (every n of c)"}
    assert sorted(t.cell_id for t in trials) == ["variant=a,n=n16", "variant=b,n=n16", "variant=b,n=n8"]


@pytest.mark.parametrize("entries, message", [
    ([{"cell": {"variant": "z"}, "why": "x"}], r"key 'not_run\[0\].cell.variant': 'z' is not a level"),
    ([{"cell": {"size": "s"}, "why": "x"}], r"key 'not_run\[0\].cell.size': 'size' is not an axis"),
    ([{"cell": {"variant": "a"}}], r"key 'not_run\[0\].why': expected the reason as text"),
    ([{"cell": {"variant": "a"}, "why": "x", "note": 1}], r"unknown key 'not_run\[0\].note'"),
    ({"variant": "a"}, r"key 'not_run': expected a list"),
])
def test_a_bad_not_run_entry_names_its_key(tmp_path, entries, message):
    with pytest.raises(SpecError, match=message):
        load_spec(str(_two_axis_spec(tmp_path, not_run=entries)))


@pytest.mark.skipif(not REFERENCE.exists(), reason="../shared/papers not beside the checkout")
def test_ass_table2_numbers_match_the_reference_sweeps():
    """ass.table2 is nested {variant: {#City: {lambda: mIoU}}}, a shape the generic check skips."""
    ref = yaml.safe_load(REFERENCE.read_text())["ass"]["table2"]
    s = load_spec("ass/table2")
    checked = 0
    for variant in ("fcsa", "csa"):
        for city, by_lambda in ref[variant].items():
            for lam, value in by_lambda.items():
                assert s.paper_value({"sweep": f"{variant}_{city}", "lambda_sadv": str(lam)}, "cs") == value
                checked += 1
    assert checked == 12
    # every cell with a paper number runs somewhere (laptop or --only), none without one does
    from unisemi.ablation.spec import cell_id
    _, pending = expand(s, "laptop", only={"sweep": {"fcsa_c100", "fcsa_c500", "csa_c500"}})
    for cell in s.cells():
        assert (s.paper_value(cell, "cs") is None) == (cell_id(cell) in pending), cell
