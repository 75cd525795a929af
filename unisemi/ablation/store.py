"""The results store: one Parquet dataset under results/rows/, partitioned suite=<suite>/table=<table>/.

Layout of a results folder (README "Results schema"):

    results/rows/suite=S/table=T/trial-<key>.parquet   the rows: Parquet files and nothing else
    results/tables/S/T/                                 table.md/.tex/.csv and plots (report.py)
    results/ray/                                        Ray Tune's own state and logs (default --storage)
    results/checkpoints/suite=S/table=T/<key>.txt       where a running trial's last checkpoint is (--resume)
    results/locks/suite=S/table=T/.runner.lock          one runner per table (lock.py)
    results/tmp/                                        temporary files of atomic writes
    results/_damaged/suite=S/table=T/                   unreadable trial files, set aside

`rows/` holds only finished Parquet files so that pandas, pyarrow.dataset, duckdb and polars each
open it in one call: the lock and the temporary files live beside it, not inside (polars refuses a
folder holding files of another kind, and a writer killed mid-write would leave its temporary file
behind). The partition columns `suite` and `table` are not stored inside the files, only in the
folder names: every reader then takes them from the path, and no reader sees two types for one
column (pyarrow infers a partition column as dictionary, a column stored as string conflicts).
TableStore puts them back when it reads a single file.

One file per trial (named by the trial key), rewritten atomically (temporary file + rename) each
time the trial reports. Rows are merged on (iteration, domain), so a retried trial or a resumed run
rewrites the same rows instead of adding new ones: the store key is (table, cell, seed, split,
iteration, domain), and a reader never sees a half-written file.

A file that cannot be read anyway (truncated by a copy, emptied by a full disk) is never a
traceback and never deleted: it is moved to <root>/_damaged/suite=S/table=T/<name>.<UTC time>, one
line is logged, and its trial counts as not run, so `--resume` runs it again.

Stores of the earlier layout (rows directly under results/suite=S/table=T/, with the partition
columns inside each file) are refused with one line pointing at `--migrate-results` (migrate.py).
"""
from __future__ import annotations

import datetime
import os
import shutil
import sys
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from unisemi.atomic import atomic_write

# Row schema (README "Results schema" documents each column), in the order every reader of the
# dataset returns it: the file's columns, then the partition columns taken from the path.
COLUMNS = {
    "run_id": pa.string(), "profile": pa.string(),
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
    "weights_hash": pa.string(), "stages_json": pa.string(),
    "checkpoints": pa.string(), "retries": pa.int64(), "lost_s": pa.float64(),
    "suite": pa.string(), "table": pa.string(),
}
PARTITIONS = ("suite", "table")             # in the folder names only, never inside a file
SCHEMA = pa.schema(list(COLUMNS.items()))
FILE_SCHEMA = pa.schema([(k, t) for k, t in COLUMNS.items() if k not in PARTITIONS])
FAILED = ("nan", "error")   # statuses of a failed trial's marker row (iteration -1)

ROWS_DIR = "rows"
RAY_DIR = "ray"
LOCKS_DIR = "locks"
CHECKPOINTS_DIR = "checkpoints"
TMP_DIR = "tmp"
DAMAGED_DIR = "_damaged"
OLD_LAYOUT = "suite=*/table=*/trial-*.parquet"      # rows of the earlier layout, under the root


def rows_root(results: str | Path) -> Path:
    """The folder to hand to a Parquet reader: every row of every table, and nothing else."""
    return Path(results) / ROWS_DIR


def ray_storage(results: str | Path) -> Path:
    """Where Ray Tune keeps its experiment state (absolute: Tune requires it)."""
    return Path(results).resolve() / RAY_DIR


def old_layout_files(results: str | Path) -> list[Path]:
    return sorted(Path(results).glob(OLD_LAYOUT))


class StoreError(RuntimeError):
    """A results folder that cannot be used; the message names the path and what was expected."""


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr)


def check_results_dir(root: str | Path, writable: bool = True) -> None:
    """Stop with one line, before anything runs, when `root` is a file, holds rows of the earlier
    layout (a run would not see them and would run their trials again), or (when a run or a report
    will write there) cannot be written: the first existing folder on its path must be writable."""
    root = Path(root)
    if root.exists() and not root.is_dir():
        raise StoreError(f"--results {root}: is a file, expected a folder for the results dataset")
    old = old_layout_files(root)
    if old:
        raise StoreError(f"--results {root}: holds {len(old)} trial file(s) in the earlier layout "
                         f"({old[0].parent}), expected them under {rows_root(root)}; move them with "
                         f"python ablations/run.py --migrate-results --results {root}")
    if not writable:
        return
    existing = root
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise StoreError(f"--results {root}: {existing} is a file, expected a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise StoreError(f"--results {root}: no write permission on {existing}; "
                         f"pass a writable --results folder")


class TableStore:
    def __init__(self, root: str | Path, suite: str, table: str, log=_stderr):
        self.root = Path(root)
        self.suite, self.table = suite, table
        self.dir = rows_root(self.root) / f"suite={suite}" / f"table={table}"
        self.lock_dir = self.root / LOCKS_DIR / f"suite={suite}" / f"table={table}"
        self.log = log
        self.damaged: list[Path] = []     # where this store set damaged files aside

    def trial_file(self, trial_key: str) -> Path:
        return self.dir / f"trial-{trial_key}.parquet"

    def pointer_file(self, trial_key: str) -> Path:
        return self.root / CHECKPOINTS_DIR / f"suite={self.suite}" / f"table={self.table}" / f"{trial_key}.txt"

    def save_pointer(self, trial_key: str, uri: str) -> None:
        """Remember where a trial's latest checkpoint is (in the run's storage), so that `--resume`
        after a killed driver continues the trial from there instead of iteration 0."""
        atomic_write(self.pointer_file(trial_key), lambda tmp: Path(tmp).write_text(uri), tmp_dir=self.root / TMP_DIR)

    def pointer(self, trial_key: str) -> str | None:
        try:
            return self.pointer_file(trial_key).read_text().strip() or None
        except OSError:
            return None

    def drop_pointer(self, trial_key: str) -> None:
        self.pointer_file(trial_key).unlink(missing_ok=True)

    def exists(self) -> bool:
        return self.dir.exists() and any(self.dir.glob("trial-*.parquet"))

    def read_trial(self, trial_key: str) -> pd.DataFrame:
        frame = self._read_file(self.trial_file(trial_key))
        return _empty() if frame is None else frame

    def read(self) -> pd.DataFrame:
        files = sorted(self.dir.glob("trial-*.parquet")) if self.dir.exists() else []
        frames = [f for f in (self._read_file(path) for path in files) if f is not None]
        return pd.concat(frames, ignore_index=True) if frames else _empty()

    def _read_file(self, path: Path) -> pd.DataFrame | None:
        """One trial file's rows, with the partition columns of this store; None when it is absent
        or damaged (then it is set aside). Also reads a file of the earlier layout, which holds
        the partition columns itself (they must then name this store's suite and table)."""
        if not path.exists():
            return None
        try:
            frame = pq.read_table(path).to_pandas()
        except FileNotFoundError:      # set aside by another reader meanwhile
            return None
        except (pa.ArrowException, OSError, ValueError) as exc:
            self._set_aside(path, exc)
            return None
        for col, want in zip(PARTITIONS, (self.suite, self.table)):
            if col in frame and len(frame) and not (frame[col] == want).all():
                found = sorted(set(frame[col].dropna().astype(str)) - {want})
                raise StoreError(f"{path}: column {col} holds {', '.join(found) or 'nulls'}, expected "
                                 f"{want} as its folder name says")
            frame[col] = want
        # Reindexed so files written before a column was added still merge and finalize.
        return frame.reindex(columns=list(COLUMNS))

    def _set_aside(self, path: Path, exc: Exception) -> None:
        """Move a damaged file to _damaged/ (never delete data) and say so in one line."""
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:120]
        stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%S.%fZ")
        dest = self.root / DAMAGED_DIR / f"suite={self.suite}" / f"table={self.table}" / f"{path.name}.{stamp}"
        try:
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(str(path), dest)
        except OSError as move_exc:
            self.log(f"damaged trial file {path} ({reason}): left in place, could not move it to "
                     f"{dest.parent} ({move_exc.strerror or move_exc}); its rows are skipped")
            return
        self.damaged.append(dest)
        self.log(f"damaged trial file {path} ({reason}): moved to {dest}; "
                 f"its trial counts as not run and reruns on --resume")

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
        table = self._file_table(frame)
        atomic_write(self.trial_file(trial_key), lambda tmp: pq.write_table(table, tmp),
                     tmp_dir=self.root / TMP_DIR)

    def _file_table(self, frame: pd.DataFrame) -> pa.Table:
        """The rows as stored in a file: the partition columns left to the path (they must be this
        store's, or empty: a row of another table would be filed under this one)."""
        for col, want in zip(PARTITIONS, (self.suite, self.table)):
            if col in frame:
                values = set(frame[col].dropna())
                if values - {want}:
                    raise StoreError(f"{self.dir}: rows with {col} {sorted(values - {want})}, "
                                     f"expected {want}")
        frame = frame.reindex(columns=FILE_SCHEMA.names)
        return pa.Table.from_pandas(frame, schema=FILE_SCHEMA, preserve_index=False)

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
