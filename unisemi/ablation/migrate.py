"""`python ablations/run.py --migrate-results [--results DIR]`: move a store of the earlier layout
(results/suite=S/table=T/trial-*.parquet, partition columns inside each file, Ray state in
results/_ray) into the current one (results/rows/suite=S/table=T/, results/ray; store.py).

Per trial file: its rows are read, checked against the folder's suite and table, written to the
new path atomically (temporary file + rename, without the partition columns and with every
column of the current schema), and only then is the old file removed. A crash between the two
leaves the same rows at both paths, never at neither; a second run finds the copies identical and
removes the old one. Readers of the dataset read `rows/` only, so they never see a row twice.

Before anything moves, every old file is checked: when the new layout already holds a trial file
of the same name with other rows, nothing is migrated and one line names both paths (which one is
right is the user's call). Each table is migrated holding its runner lock, old and new, so no
runner writes to it meanwhile. An old file that cannot be read is set aside in _damaged/, as any
reader of the store does.
"""
from __future__ import annotations

import os
from pathlib import Path

from unisemi.ablation.lock import LOCK_NAME, TableLock
from unisemi.ablation.store import RAY_DIR, StoreError, TableStore, old_layout_files, rows_root

OLD_RAY_DIR = "_ray"


def _table_of(path: Path) -> tuple[str, str]:
    """(suite, table) from .../suite=S/table=T/trial-<key>.parquet."""
    suite, table = path.parent.parent.name, path.parent.name
    return suite.split("=", 1)[1], table.split("=", 1)[1]


def migrate(results: str | Path, log=print) -> dict:
    """Move every old-layout trial file of `results` into rows/; returns counts of what happened.
    Raises StoreError (one line) when a trial file is in both layouts with different rows."""
    root = Path(results)
    if not root.is_dir():
        raise StoreError(f"--results {root}: not a folder, expected a results folder to migrate")
    if rows_root(root).exists() and not rows_root(root).is_dir():
        raise StoreError(f"{rows_root(root)}: is a file, expected the folder of the rows dataset")
    old = old_layout_files(root)
    by_table: dict[tuple[str, str], list[Path]] = {}
    for path in old:
        by_table.setdefault(_table_of(path), []).append(path)

    # Every conflict is found before anything moves, so a refusal leaves the folder as it was.
    plans: dict[tuple[str, str], list] = {}     # per table: (old path, trial key)
    for (suite, table), paths in by_table.items():
        store = TableStore(root, suite, table, log=log)
        for path in paths:
            key = path.name[len("trial-"):-len(".parquet")]
            if _already_there(store, path, key, root) is not None:
                plans.setdefault((suite, table), []).append((path, key))

    moved = finished = 0
    for (suite, table), paths in by_table.items():
        store = TableStore(root, suite, table, log=log)
        old_dir = paths[0].parent
        with TableLock(old_dir, log), TableLock(store.lock_dir, log):
            for path, key in plans.get((suite, table), []):
                # Checked again under the locks: a runner of the old code may have rewritten it since.
                same = _already_there(store, path, key, root)
                if same is None:
                    continue
                if same:
                    finished += 1
                else:
                    store._write(key, store._read_file(path))
                    moved += 1
                path.unlink()                   # only now: the rows are at the new path
        _remove_if_empty(old_dir, log)

    ray = _move_ray_state(root, log)
    damaged = len(old) - moved - finished
    log(f"{root}: moved {moved} trial file(s) of {len(by_table)} table(s) into {rows_root(root)}"
        + (f"; removed {finished} old copies already migrated" if finished else "")
        + (f"; set {damaged} unreadable file(s) aside in _damaged/" if damaged else "")
        + (f"; moved Ray's state to {root / RAY_DIR}" if ray else "")
        + ("" if old or ray else " (nothing to migrate)"))
    return {"moved": moved, "finished": finished, "damaged": damaged, "tables": len(by_table), "ray": ray}


def _already_there(store: TableStore, path: Path, key: str, root: Path) -> bool | None:
    """Whether the new layout already holds this old file's rows (an interrupted migration); None
    when the old file is unreadable (now set aside in _damaged/). Raises StoreError when the new
    layout holds the trial with other rows."""
    rows = store._read_file(path)
    if rows is None:
        return None
    new = store.trial_file(key)
    there = store._read_file(new) if new.exists() else None
    if there is None:
        return False
    # Compared as stored, so a column the old file lacked (null either way) is no difference.
    if store._file_table(there).to_pandas().equals(store._file_table(rows).to_pandas()):
        return True
    raise StoreError(f"cannot migrate {root}: {path} and {new} both hold trial {key} with different "
                     f"rows, expected one of them; move the one to drop out of {root} and run "
                     f"--migrate-results again (nothing was moved)")


def _remove_if_empty(old_dir: Path, log) -> None:
    """Drop the old table folder (and its suite folder) once only the released lock file is left.
    Anything else in it (a killed writer's temporary file) is the user's to look at: kept, named."""
    lock = old_dir / LOCK_NAME
    if lock.exists() and not lock.read_text().strip():
        lock.unlink()
    left = sorted(p.name for p in old_dir.iterdir())
    if left:
        log(f"left {old_dir} in place: it still holds {', '.join(left[:3])}"
            + (f" and {len(left) - 3} more" if len(left) > 3 else "") + " (not trial files)")
        return
    old_dir.rmdir()
    if not any(old_dir.parent.iterdir()):
        old_dir.parent.rmdir()


def _move_ray_state(root: Path, log) -> bool:
    """results/_ray -> results/ray. Tune's state there is only read by the run that wrote it (the
    store is the ledger), so a rename is all it takes; with both present, _ray is left alone."""
    old, new = root / OLD_RAY_DIR, root / RAY_DIR
    if not old.is_dir():
        return False
    if new.exists():
        log(f"left {old} in place: {new} exists too (Ray's logs of earlier runs; remove it when done)")
        return False
    os.rename(old, new)
    return True
