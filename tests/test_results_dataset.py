"""The results folder as a dataset: pandas, pyarrow.dataset, duckdb and polars each open
results/rows/ in one call with the documented schema, on a store written by a real tiny table run;
and a store of the earlier layout is migrated by `python ablations/run.py --migrate-results`."""
import json
import shutil

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conftest import tiny_spec
from unisemi.ablation import cli
from unisemi.ablation.lock import LOCK_NAME, TableLock
from unisemi.ablation.runner import run_table
from unisemi.ablation.spec import load_spec
from unisemi.ablation.store import COLUMNS, SCHEMA, StoreError, TableStore, rows_root

EXTRA = "pip install -e '.[results]' (the optional extra for the duckdb and polars readers)"
# {(suite, table): rows} of the fixture's store: 2 trials x 2 evaluations, and one hand-written row
EXPECTED = {("contrastive", "table1"): 4, ("search", "tiny_sup"): 1}


def _row(trial, miou):
    return dict(run_id="r", profile="search", trial=trial, cell="lr=0.01", cell_json="{}", seed=0,
                split_seed=0, domain="city", domain_key="main", iteration=6, is_final=True, is_best=True,
                status="ok", miou=miou, class_names=["a", "b"], class_iou=[miou, float("nan")])


@pytest.fixture(scope="module")
def results(tmp_path_factory, ray_local):
    """A results folder as a user ends up with it: a real 2-trial table run with its tables and
    plot and Ray's state, a row of a second suite, a damaged file set aside, a lock file."""
    root = tmp_path_factory.mktemp("dataset")
    spec = load_spec(str(tiny_spec(root / "specs", seeds=1)))
    res = run_table(spec, results_dir=root / "results", log=lambda *a: None)
    assert res["ran"] == 2 and res["failed"] == 0
    results = root / "results"
    assert cli.main([str(spec.path), "--results", str(results), "--report-only"]) == 0
    TableStore(results, "search", "tiny_sup").merge("t0", [_row("t0", 40.0)])
    broken = TableStore(results, "contrastive", "broken", log=lambda *a: None)
    broken.trial_file("k").parent.mkdir(parents=True)
    broken.trial_file("k").write_bytes(b"PAR1 truncated")
    assert not len(broken.read()) and len(broken.damaged) == 1           # set aside in _damaged/
    return spec, results


def _check_rows(suites, tables, miou, iteration, class_iou):
    """The values every reader must return, as plain Python lists."""
    pairs = list(zip(suites, tables))
    assert {p: pairs.count(p) for p in set(pairs)} == EXPECTED
    assert all(isinstance(v, float) for v in miou) and all(0.0 <= v <= 100.0 for v in miou)
    assert all(isinstance(v, int) for v in iteration) and sorted(set(iteration)) == [3, 6]
    assert sorted({len(v) for v in class_iou}) == [2, 19]
    # a class absent from both truth and prediction has no IoU: null (NaN in pandas)
    assert all(isinstance(x, float) or x is None for v in class_iou for x in v)
    assert all(isinstance(v[0], float) for v in class_iou)


def test_rows_hold_only_parquet_files_and_everything_else_lives_beside_them(results):
    spec, root = results
    assert {p.name for p in root.iterdir()} == {"rows", "tables", "report", "ray", "locks", "tmp", "_damaged",
                                                "checkpoints"}     # the driver's pointers to each unfinished trial's checkpoint
    files = [p for p in rows_root(root).rglob("*") if p.is_file()]
    assert len(files) == 3 and all(p.suffix == ".parquet" and p.name.startswith("trial-") for p in files)
    assert (root / "tables" / "contrastive" / "table1" / "plot.png").stat().st_size > 1000
    assert (root / "locks" / "suite=contrastive" / "table=table1" / LOCK_NAME).exists()
    assert len(list((root / "_damaged" / "suite=contrastive" / "table=broken").iterdir())) == 1
    assert not list((root / "tmp").iterdir())          # every atomic write finished
    for path in files:                                  # partition columns only in the folder names
        assert not {"suite", "table"} & set(pq.read_schema(path).names)


def test_pandas_reads_the_whole_store_in_one_call(results):
    import pandas as pd
    spec, root = results
    with TableLock(TableStore(root, spec.suite, spec.name).lock_dir):     # a runner holding the table
        df = pd.read_parquet(rows_root(root))
    assert list(df.columns) == list(COLUMNS)
    assert str(df["miou"].dtype) == "float64" and str(df["iteration"].dtype) == "int64"
    _check_rows(df["suite"].astype(str).tolist(), df["table"].astype(str).tolist(), df["miou"].tolist(),
                df["iteration"].tolist(), [[None if x != x else float(x) for x in v] for v in df["class_iou"]])


def test_pyarrow_dataset_reads_the_whole_store_with_the_documented_schema(results):
    import pyarrow.dataset as ds
    spec, root = results
    dataset = ds.dataset(rows_root(root), partitioning="hive")
    assert dataset.schema.equals(SCHEMA, check_metadata=False), dataset.schema
    t = dataset.to_table()
    _check_rows(t["suite"].to_pylist(), t["table"].to_pylist(), t["miou"].to_pylist(),
                t["iteration"].to_pylist(), t["class_iou"].to_pylist())


def test_duckdb_reads_the_whole_store_with_the_documented_schema(results):
    duckdb = pytest.importorskip("duckdb", reason=f"duckdb is not installed: {EXTRA}")
    spec, root = results
    rel = duckdb.read_parquet(f"{rows_root(root)}/**/*.parquet", hive_partitioning=True)
    want = duckdb.from_arrow(SCHEMA.empty_table())
    assert rel.columns == list(COLUMNS) and [str(t) for t in rel.types] == [str(t) for t in want.types]
    types = dict(zip(rel.columns, map(str, rel.types)))
    assert (types["miou"], types["iteration"], types["class_iou"], types["suite"]) == (
        "DOUBLE", "BIGINT", "DOUBLE[]", "VARCHAR")
    t = rel.arrow()
    t = t.read_all() if hasattr(t, "read_all") else t       # a RecordBatchReader in duckdb >= 1.4
    _check_rows(t["suite"].to_pylist(), t["table"].to_pylist(), t["miou"].to_pylist(),
                t["iteration"].to_pylist(), t["class_iou"].to_pylist())


def test_polars_reads_the_whole_store_with_the_documented_schema(results):
    pl = pytest.importorskip("polars", reason=f"polars is not installed: {EXTRA}")
    spec, root = results
    lf = pl.scan_parquet(rows_root(root), hive_partitioning=True)
    assert lf.collect_schema() == pl.from_arrow(SCHEMA.empty_table()).schema
    assert lf.collect_schema()["class_iou"] == pl.List(pl.Float64)
    df = lf.collect()
    _check_rows(df["suite"].to_list(), df["table"].to_list(), df["miou"].to_list(),
                df["iteration"].to_list(), df["class_iou"].to_list())


def test_a_write_in_progress_puts_no_temporary_file_in_rows(tmp_path, monkeypatch):
    """A writer killed mid-write leaves its temporary file behind: it must not be in rows/, where
    polars would refuse the folder and other tools would try to read it."""
    import unisemi.ablation.store as storemod
    store = TableStore(tmp_path, "s", "t")
    seen = []
    real = storemod.pq.write_table

    def spy(table, where):
        seen.append((where, sorted(p.name for p in rows_root(tmp_path).rglob("*") if p.is_file())))
        real(table, where)

    monkeypatch.setattr(storemod.pq, "write_table", spy)
    store.merge("k", [_row("k", 1.0)])
    store.merge("k", [_row("k", 2.0) | {"iteration": 9}])
    assert [w.parent for w, _ in seen] == [tmp_path / "tmp"] * 2
    assert [names for _, names in seen] == [[], ["trial-k.parquet"]]
    df = store.read()
    assert df["miou"].tolist() == [1.0, 2.0] and set(df["suite"]) == {"s"} and set(df["table"]) == {"t"}
    with pytest.raises(StoreError, match=r"rows with table \['u'\], expected t"):
        store.merge("k", [_row("k", 3.0) | {"table": "u"}])


# --- the earlier layout --------------------------------------------------------------------------

def old_layout(results, dest):
    """`results` rewritten as the earlier code wrote it: rows at dest/suite=S/table=T/ with the
    partition columns inside each file, Ray's state in _ray/, an empty lock file per table. One
    file lacks the two newest columns, as files written before they were added do. Returns the
    rows as the migration must keep them."""
    import pandas as pd
    expected = []
    for i, path in enumerate(sorted(rows_root(results).glob("suite=*/table=*/trial-*.parquet"))):
        suite, table = (p.name.split("=", 1)[1] for p in (path.parent.parent, path.parent))
        frame = TableStore(results, suite, table).read_trial(path.stem[len("trial-"):])
        out = dest / path.parent.parent.name / path.parent.name / path.name
        out.parent.mkdir(parents=True, exist_ok=True)
        table_ = pa.Table.from_pandas(frame, schema=SCHEMA, preserve_index=False)
        if i == 0:
            table_ = table_.drop_columns(["weights_hash", "stages_json"])
            frame = frame.assign(**{c: pd.Series(None, index=frame.index, dtype=frame[c].dtype)
                                    for c in ("weights_hash", "stages_json")})
        pq.write_table(table_, out)
        (out.parent / LOCK_NAME).write_text("")
        expected.append(frame)
    (dest / "_ray" / "some-run").mkdir(parents=True)
    (dest / "_ray" / "some-run" / "experiment_state.json").write_text(json.dumps({"trials": []}))
    shutil.copytree(results / "tables", dest / "tables")
    return _sorted(pd.concat(expected, ignore_index=True))


def _sorted(df):
    return df.sort_values(["suite", "table", "trial", "iteration", "domain"]).reset_index(drop=True)


def _all_rows(root):
    import pandas as pd
    frames = [TableStore(root, s, t).read() for s, t in EXPECTED]
    return _sorted(pd.concat(frames, ignore_index=True))


def test_a_store_of_the_earlier_layout_is_refused_with_the_migrate_command(results, tmp_path, capsys):
    spec, root = results
    old = tmp_path / "old"
    old_layout(root, old)
    for args in (["--report-only"], ["--resume"], ["--dry-run"]):
        assert cli.main([str(spec.path), "--results", str(old), *args]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "holds 3 trial file(s) in the earlier layout" in err
        assert f"python ablations/run.py --migrate-results --results {old}" in err
    with pytest.raises(StoreError, match="earlier layout"):
        run_table(spec, results_dir=old, resume=True, log=lambda *a: None)


def test_migrate_moves_the_earlier_layout_keeping_every_row_once(results, tmp_path, capsys):
    import pandas as pd
    import pyarrow.dataset as ds
    spec, root = results
    old = tmp_path / "old"
    expected = old_layout(root, old)
    damaged = old / "suite=contrastive" / "table=table9" / "trial-x.parquet"
    damaged.parent.mkdir()
    damaged.write_bytes(b"PAR1 cut short")
    assert cli.main(["--migrate-results", "--results", str(old)]) == 0
    out = capsys.readouterr()
    assert "moved 3 trial file(s) of 3 table(s)" in out.out and "set 1 unreadable file(s) aside" in out.out
    assert f"damaged trial file {damaged}" in out.out
    assert {p.name for p in old.iterdir()} == {"rows", "tables", "ray", "locks", "tmp", "_damaged"}
    assert (old / "ray" / "some-run" / "experiment_state.json").exists()
    assert _all_rows(old).equals(expected)
    # every file now has the current schema, so the readers see one schema over the whole store
    assert ds.dataset(rows_root(old), partitioning="hive").schema.equals(SCHEMA, check_metadata=False)
    assert len(pd.read_parquet(rows_root(old))) == len(expected) == sum(EXPECTED.values())
    assert cli.main([str(spec.path), "--results", str(old), "--report-only"]) == 0
    capsys.readouterr()
    assert cli.main(["--migrate-results", "--results", str(old)]) == 0       # a second time: no-op
    assert "nothing to migrate" in capsys.readouterr().out and _all_rows(old).equals(expected)


def test_migrate_refuses_when_both_layouts_hold_a_trial_file_with_other_rows(results, tmp_path, capsys):
    spec, root = results
    old = tmp_path / "old"
    old_layout(root, old)
    TableStore(old, "search", "tiny_sup").merge("t0", [_row("t0", 99.0)])   # the new layout's t0
    before = {p: p.read_bytes() for p in old.rglob("*.parquet")}
    assert cli.main(["--migrate-results", "--results", str(old)]) == 2
    err = capsys.readouterr().err
    new = rows_root(old) / "suite=search" / "table=tiny_sup" / "trial-t0.parquet"
    assert err.count("\n") == 1 and f"{old / 'suite=search' / 'table=tiny_sup' / 'trial-t0.parquet'} and {new}" in err
    assert "nothing was moved" in err
    assert {p: p.read_bytes() for p in old.rglob("*.parquet")} == before
    assert (old / "_ray").exists() and not (old / "ray").exists()


def test_an_interrupted_migration_is_finished_without_duplicating_rows(results, tmp_path, capsys):
    """Killed after writing a new file but before removing its old one: both hold the same rows."""
    spec, root = results
    old = tmp_path / "old"
    expected = old_layout(root, old)
    keep = old / "suite=search" / "table=tiny_sup" / "trial-t0.parquet"
    copy = keep.read_bytes()
    assert cli.main(["--migrate-results", "--results", str(old)]) == 0
    keep.parent.mkdir(parents=True)
    keep.write_bytes(copy)
    capsys.readouterr()
    assert cli.main(["--migrate-results", "--results", str(old)]) == 0
    assert "removed 1 old copies already migrated" in capsys.readouterr().out
    assert not keep.exists() and not keep.parent.exists()
    assert _all_rows(old).equals(expected)
