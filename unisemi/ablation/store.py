"""The results store: a Parquet dataset under results/suite=<suite>/table=<table>/.

One file per trial (named by the trial key), rewritten atomically (temporary file + rename) each
time the trial reports. Rows are merged on (iteration, domain), so a retried trial or a resumed run
rewrites the same rows instead of adding new ones: the store key is (table, cell, seed, split,
iteration, domain), and a reader never sees a half-written file.

A file that cannot be read anyway (truncated by a copy, emptied by a full disk) is never a
traceback and never deleted: it is moved to <root>/_damaged/suite=S/table=T/<name>.<UTC time>, one
line is logged, and its trial counts as not run, so `--resume` runs it again. (pyarrow skips
paths starting with `_` or `.`, so neither `_damaged/` nor the lock file is read as results.)
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
    "weights_hash": pa.string(), "stages_json": pa.string(),
}
SCHEMA = pa.schema(list(COLUMNS.items()))
FAILED = ("nan", "error")   # statuses of a failed trial's marker row (iteration -1)
DAMAGED_DIR = "_damaged"


class StoreError(RuntimeError):
    """A results folder that cannot be used; the message names the path and what was expected."""


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr)


def check_results_dir(root: str | Path, writable: bool = True) -> None:
    """Stop with one line, before anything runs, when `root` is a file or (when a run or a report
    will write there) cannot be written: the first existing folder on its path must be writable."""
    root = Path(root)
    if root.exists() and not root.is_dir():
        raise StoreError(f"--results {root}: is a file, expected a folder for the results dataset")
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
        self.dir = self.root / f"suite={suite}" / f"table={table}"
        self.log = log
        self.damaged: list[Path] = []     # where this store set damaged files aside

    def trial_file(self, trial_key: str) -> Path:
        return self.dir / f"trial-{trial_key}.parquet"

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
        """One trial file's rows; None when it is absent or damaged (then it is set aside)."""
        if not path.exists():
            return None
        try:
            # Reindexed so files written before a column was added still merge and finalize.
            return pq.read_table(path).to_pandas().reindex(columns=list(COLUMNS))
        except FileNotFoundError:      # set aside by another reader meanwhile
            return None
        except (pa.ArrowException, OSError, ValueError) as exc:
            self._set_aside(path, exc)
            return None

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
        table = pa.Table.from_pandas(frame, schema=SCHEMA, preserve_index=False)
        atomic_write(self.trial_file(trial_key), lambda tmp: pq.write_table(table, tmp))

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
