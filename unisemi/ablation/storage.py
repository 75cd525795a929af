"""Where Ray keeps experiment state and trial checkpoints (`--storage`), and the check, before any
trial starts, that every node reaches it.

The rows never live here: the driver writes them under --results. Ray's storage holds Tune's
experiment state and every trial's checkpoints, and it is written by the node a trial runs on. On a
cluster it must therefore be one place that every node sees: a cloud URI (`s3://`, `gs://`, read
through pyarrow's filesystems, as Ray does) or a folder mounted on every node (NFS, EFS, Lustre).
A folder on the head alone fails only at a trial's first checkpoint (Ray: "Unable to set up cluster
storage"), possibly an hour in; `check_storage` finds it before anything runs.

How a head-local folder is told from a shared mount: the driver writes a marker file with a random
token into the folder, and a tiny task pinned to each other alive node (NodeAffinitySchedulingStrategy,
0 CPUs, so a busy or CPU-less node still runs it) reads it back. A node that does not find the token
sees another folder under that path. No guess from mount tables or filesystem types, and no
declaration the user could get wrong.
"""
from __future__ import annotations

import os
import uuid
from pathlib import Path
from urllib.parse import urlsplit

from unisemi.ablation.store import ray_storage

ENV = "UNISEMI_STORAGE"
# pyarrow filesystems Ray resolves a storage URI with (pyarrow.fs.FileSystem.from_uri).
URI_SCHEMES = ("s3", "gs", "gcs", "hdfs", "viewfs", "abfs", "abfss")
MARKER_PREFIX = ".unisemi-storage-probe-"
PROBE_TIMEOUT_S = 60.0
FIX = "pass --storage s3://... or a path mounted on every node"


class StorageError(RuntimeError):
    """Storage that the trials could not use; the message says what to pass instead."""


def resolve(storage: str | None, results_dir: str | Path) -> str:
    """The storage of a run: `--storage`, else $UNISEMI_STORAGE, else <results>/ray (the single
    machine default). A folder is made absolute (Ray requires it); a URI is kept as given."""
    value = (storage or os.environ.get(ENV) or "").strip()
    if not value:
        return str(ray_storage(results_dir))
    scheme = urlsplit(value).scheme
    if scheme == "file":
        return str(Path(urlsplit(value).path).resolve())
    if "://" in value:
        if scheme not in URI_SCHEMES:
            raise StorageError(f"--storage {value}: unknown scheme '{scheme}://', expected one of "
                               f"{', '.join(s + '://' for s in URI_SCHEMES)} or a folder")
        return value
    return str(Path(value).expanduser().resolve())


def is_uri(storage: str) -> bool:
    return "://" in storage


def join(storage: str, *parts: str) -> str:
    """`storage` with path parts appended, a URI's query string (?endpoint_override=...) kept last."""
    base, sep, query = storage.partition("?")
    path = "/".join([base.rstrip("/"), *(p.strip("/") for p in parts if p)])
    return path + (sep + query if sep else "")


def uri_of(storage: str, storage_fs_path: str, fs_path: str) -> str:
    """`fs_path` (a path inside Ray's storage filesystem, as Ray's StorageContext and Checkpoint
    give it) as a location under `storage` that any node can open."""
    rel = os.path.relpath(fs_path, storage_fs_path)
    return join(storage, rel) if rel != "." else storage


def _read_marker(path: str) -> str | None:
    try:
        return Path(path).read_text()
    except OSError:
        return None


def check_storage(storage: str, nodes: list[dict] | None = None, timeout_s: float = PROBE_TIMEOUT_S) -> str:
    """Raise StorageError (one line) if some alive Ray node other than the driver's does not see the
    folder `storage`; returns how it was decided ('uri', 'one node', 'shared by N nodes').
    `nodes`: `ray.nodes()` entries (default: asked of the connected Ray). A URI is not probed: every
    node reaches it through its own client (credentials are the user's, as for Ray)."""
    if is_uri(storage):
        return "uri"
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    nodes = ray.nodes() if nodes is None else nodes
    here = ray.get_runtime_context().get_node_id()
    others = [n for n in nodes if n.get("Alive") and n["NodeID"] != here]
    if not others:
        return "one node"
    folder = Path(storage)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        token = uuid.uuid4().hex
        marker = folder / f"{MARKER_PREFIX}{token}"
        marker.write_text(token)
    except OSError as exc:
        raise StorageError(f"--storage {storage}: cannot write there ({exc.strerror or exc}); {FIX}") from None
    try:
        read = ray.remote(num_cpus=0, max_retries=0)(_read_marker)
        refs = {n["NodeManagerAddress"] + " " + n["NodeID"][:8]: read.options(
            scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False)).remote(str(marker))
            for n in others}
        ready, waiting = ray.wait(list(refs.values()), num_returns=len(refs), timeout=timeout_s)
        for ref in waiting:
            ray.cancel(ref, force=True)
        blind = [name for name, ref in refs.items() if ref in ready and ray.get(ref) != token]
        silent = [name for name, ref in refs.items() if ref in waiting]
    finally:
        marker.unlink(missing_ok=True)
    if blind:
        raise StorageError(f"--storage {storage}: a folder on the driver's node that node(s) {', '.join(blind)} "
                           f"do not see (trial checkpoints would fail there); {FIX}")
    if silent:
        raise StorageError(f"--storage {storage}: node(s) {', '.join(silent)} did not answer the storage probe "
                           f"in {timeout_s:.0f} s; check them, or {FIX}")
    return f"shared by {len(others) + 1} nodes"
