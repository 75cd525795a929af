"""The results store: a Parquet dataset under results/suite=<suite>/table=<table>/.

One file per trial (named by the trial key), rewritten atomically (temporary file + rename) each
time the trial reports. Rows are merged on (iteration, domain), so a retried trial or a resumed run
rewrites the same rows instead of adding new ones: the store key is (table, cell, seed, split,
iteration, domain), and a reader never sees a half-written file.
"""
from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

# Row schema (README "Results schema" documents each column).
COLUMNS = {
    "run_id": pa.string(), "suite": pa.string(), "table": pa.string(), "profile": pa.string(),
    "trial": pa.string(), "cell": pa.string(), "cell_json": pa.string(),
    "seed": pa.int64(), "split_seed": pa.int64(), "split_id": pa.string(), "split_hash": pa.string(),
    "n_labelled": pa.int64(), "domain": pa.string(), "domain_key": pa.string(),
    "iteration": pa.int64(), "resumed_from": pa.int64(), "is_final": pa.bool_(), "is_best": pa.bool_(),
    "status": pa.string(), "error": pa.string(),
    "miou": pa.float64(), "pixel_acc": pa.float64(),
    "class_names": pa.list_(pa.string()), "class_iou": pa.list_(pa.float64()),
    "loss_json": pa.string(),
    "wall_s": pa.float64(), "launch_s": pa.float64(), "setup_s": pa.float64(), "data_s": pa.float64(),
    "train_s": pa.float64(), "eval_s": pa.float64(), "device_hours": pa.float64(),
    "device": pa.string(), "node": pa.string(), "workers": pa.int64(), "git_rev": pa.string(),
    "config_hash": pa.string(), "config_json": pa.string(), "time_utc": pa.string(),
    "weights_hash": pa.string(),
}
SCHEMA = pa.schema(list(COLUMNS.items()))
FAILED = ("nan", "error")   # statuses of a failed trial's marker row (iteration -1)


class TableStore:
    def __init__(self, root: str | Path, suite: str, table: str):
        self.root = Path(root)
        self.suite, self.table = suite, table
        self.dir = self.root / f"suite={suite}" / f"table={table}"

    def trial_file(self, trial_key: str) -> Path:
        return self.dir / f"trial-{trial_key}.parquet"

    def exists(self) -> bool:
        return self.dir.exists() and any(self.dir.glob("trial-*.parquet"))

    def read_trial(self, trial_key: str) -> pd.DataFrame:
        path = self.trial_file(trial_key)
        # Reindexed so files written before a column was added still merge and finalize.
        return pq.read_table(path).to_pandas().reindex(columns=list(COLUMNS)) if path.exists() else _empty()

    def read(self) -> pd.DataFrame:
        files = sorted(self.dir.glob("trial-*.parquet")) if self.dir.exists() else []
        if not files:
            return _empty()
        return pd.concat([pq.read_table(f).to_pandas().reindex(columns=list(COLUMNS)) for f in files],
                         ignore_index=True)

    def merge(self, trial_key: str, rows: list[dict]) -> None:
        """Upsert a trial's rows on (iteration, domain)."""
        old = self.read_trial(trial_key)
        new = pd.DataFrame([_complete(r) for r in rows], columns=list(COLUMNS))
        if len(new) and (new["status"] == "ok").any():
            old = old[old["status"] == "ok"]          # a retried trial replaces its failure marker
        both = pd.concat([old, new], ignore_index=True) if len(old) else new
        both = both.drop_duplicates(subset=["iteration", "domain"], keep="last")
        both = both.sort_values(["iteration", "domain"], kind="stable").reset_index(drop=True)
        self._write(trial_key, both)

    def finalize(self, trial_key: str) -> None:
        """Mark a finished trial's last evaluation as final and its best-on-val one as best
        (the highest mIoU summed over the trial's domains, earliest on ties)."""
        df = self.read_trial(trial_key)
        ok = df[df["status"] == "ok"]
        if not len(ok):
            return
        by_it = ok.groupby("iteration")["miou"].sum()
        df["is_final"] = (df["status"] == "ok") & (df["iteration"] == by_it.index.max())
        df["is_best"] = (df["status"] == "ok") & (df["iteration"] == by_it.idxmax())
        self._write(trial_key, df)

    def _write(self, trial_key: str, frame: pd.DataFrame) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        path = self.trial_file(trial_key)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        table = pa.Table.from_pandas(frame, schema=SCHEMA, preserve_index=False)
        pq.write_table(table, tmp)
        os.replace(tmp, path)

    def final_rows(self) -> pd.DataFrame:
        df = self.read()
        return df[df["is_final"]] if len(df) else df

    def completed(self, retry_errors: bool = True) -> set[str]:
        """Trial keys that need no more work: finished, or failed with a non-finite loss (a rerun
        would fail the same way). Errored trials count as not done when `retry_errors`."""
        fin = self.final_rows()
        if not len(fin):
            return set()
        keep = fin["status"] == "ok"
        keep |= fin["status"] == "nan"
        if not retry_errors:
            keep |= fin["status"] == "error"
        return set(fin.loc[keep, "trial"])


def _complete(row: dict) -> dict:
    out = {k: None for k in COLUMNS}
    unknown = set(row) - set(COLUMNS)
    if unknown:
        raise KeyError(f"result row has columns outside the schema: {sorted(unknown)}")
    out.update(row)
    return out


def _empty() -> pd.DataFrame:
    return SCHEMA.empty_table().to_pandas()
