"""What the driver checks before Ray starts any trial, so that a run that cannot work stops at once
with one line per problem instead of failing in every trial, retried, an hour in.

- The code's revision (provenance.py): a source tree without `.git` needs `UNISEMI_GIT_REV`.
- The dataset roots of the trials' real domains: `$UNISEMI_DATA` itself (a file or a looping link
  is named as such), then each root and its train split listed through its source, as the trial's
  first step does (`python -m unisemi data check` without the decoding), with the published count
  where `data.check_counts` is on.
- The pretrained weights of the trials' configs: a published name resolves under
  `$UNISEMI_WEIGHTS`, a path must be a readable file, and the file must fill the encoder (read
  once on the driver). (`synthetic` is built by the runner.)
- The cluster address: a `host:port` that refuses a TCP connection is one line (Ray itself would
  retry for minutes); connection and token errors of `ray.init` become one line too
  (`unreachable_text`, used by ray_session).

The storage (--storage) is checked after Ray has started, where the node count is known
(storage.check_storage, called by the runner).
"""
from __future__ import annotations

import os
import socket
from pathlib import Path

from unisemi.ablation.provenance import git_revision

PROBE_TIMEOUT_S = 5.0
TOKEN_FILE = "~/.ray/unisemi_cluster_token"        # where cluster.yaml puts the cluster's token


class PreflightError(ValueError):
    """Problems found before the run; the message holds one line per problem."""

    def __init__(self, problems: list[str]):
        self.problems = list(problems)
        # The CLI prints "error: <message>": every problem gets its own "error:" line.
        super().__init__("\nerror: ".join(self.problems))


class RayUnreachable(ConnectionError):
    """The Ray cluster cannot be joined (address, network or authentication); one line."""


def check_run(trials, address: str | None = None) -> str:
    """A table's trials (`t.config` each): see check_configs."""
    return check_configs([t.config for t in trials], address)


def check_configs(configs, address: str | None = None) -> str:
    """Raise PreflightError (every problem, one line each) or RayUnreachable; return the revision
    the rows will record. `configs`: the config dicts the trials will run."""
    from unisemi.ablation.provenance import ProvenanceError

    problems = []
    try:
        rev = git_revision()
    except ProvenanceError as exc:
        problems.append(str(exc))
        rev = None
    problems += dataset_problems(configs) + weights_problems(configs)
    if problems:
        raise PreflightError(problems)
    probe_address(address)
    return rev


# ----------------------------------------------------------------------------------------------
# datasets

def _what_path_is(path: Path) -> str | None:
    """Why `path` cannot be a folder to read from, or None if it is one."""
    if path.is_dir():
        return None
    if path.is_symlink() and not path.exists():
        return "is a symlink loop or a broken symlink"
    return "is a file" if path.exists() else "does not exist"


def dataset_problems(configs, env=None) -> list[str]:
    """One line per unusable dataset root among `configs` (each a trial's config dict)."""
    from unisemi.config import build_config
    from unisemi.data import real
    from unisemi.data.sources import get_source
    from unisemi.data.sources.errors import SourceError

    env = os.environ if env is None else env
    problems, seen = [], set()
    for values in configs:
        data = build_config(values, "preflight").data
        for name in (d for d in data.domains if d in real.DATASETS):
            ds = real.DATASETS[name]
            if name not in (data.roots or {}):
                base = (env.get("UNISEMI_DATA") or "").strip()
                if not base:
                    line = (f"{name}: no dataset root: set UNISEMI_DATA to the folder holding {ds.folder}/ "
                            f"(or data.roots.{name})")
                    if line not in problems:
                        problems.append(line)
                    continue
                why = _what_path_is(Path(base).expanduser())
                if why:
                    line = f"UNISEMI_DATA={base} {why} (expected the folder holding the datasets, e.g. {ds.folder}/)"
                    if line not in problems:
                        problems.append(line)
                    continue
                root = Path(base).expanduser() / ds.folder
            else:
                root = Path(data.roots[name]).expanduser()
            key = (name, str(root), data.check_counts)
            if key in seen:
                continue
            seen.add(key)
            try:
                pairs = get_source(ds.source).list_pairs(root, ds.train)
            except SourceError as exc:
                problems.append(f"{exc} (python -m unisemi data check {ds.source} {root})")
                continue
            expected = getattr(get_source(ds.source), "EXPECTED", {}).get(ds.train)
            if data.check_counts and expected is not None and len(pairs) != expected:
                problems.append(f"{name}: {len(pairs)} image/label pairs in the {ds.train} split under {root}, "
                                f"expected {expected} (python -m unisemi data check {ds.source} {root} lists "
                                f"what is missing; data.check_counts=false trains on a subset on purpose)")
    return problems


# ----------------------------------------------------------------------------------------------
# pretrained weights

def _first_line(text) -> str:
    # torch.load's errors run to several lines of advice; the first names the file and the fault
    return next((ln.strip() for ln in str(text).splitlines() if ln.strip()), str(text))


def weights_problems(configs) -> list[str]:
    """One line per pretrained weights file that is missing, unreadable, or does not fill the
    config's encoder (models.loading.weights_problem: the file read, the encoder built on the meta
    device, so a wrong or partial file stops here and not in every trial)."""
    from unisemi.models.loading import source_for, weights_problem

    problems, seen = [], set()
    for values in configs:
        model = values.get("model", {})
        value = str(model.get("pretrained", "none") or "none").strip()
        encoder = str(model.get("encoder", ""))
        width, partial = int(model.get("width", 32) or 32), bool(model.get("pretrained_partial", False))
        if value.lower() in ("", "none", "synthetic") or (value, encoder, width, partial) in seen:
            continue
        seen.add((value, encoder, width, partial))
        try:
            path = Path(source_for(value, encoder).path)      # a published name under $UNISEMI_WEIGHTS
        except (ValueError, FileNotFoundError) as exc:
            problems.append(f"model.pretrained={value}: {_first_line(exc)}")
            continue
        why = None if path.is_file() else (
            "is a folder" if path.is_dir() else
            "is a symlink loop or a broken symlink" if path.is_symlink() else "does not exist")
        if why is None:
            try:
                with open(path, "rb") as fh:
                    fh.read(1)
            except OSError as exc:
                why = f"cannot be read ({exc.strerror or exc})"
        if why:
            problems.append(f"model.pretrained={value}: {path} {why} (expected a local weights file; "
                            f"nothing is downloaded)")
            continue
        line = weights_problem(value, encoder, width, partial)
        if line:
            problems.append(f"model.pretrained={value}: {_first_line(line)}")
    return problems


# ----------------------------------------------------------------------------------------------
# the cluster

def _host_port(address: str) -> tuple[str, int] | None:
    """(host, port) of an explicit `host:port` or `ray://host:port` address; None for 'auto',
    'local' or anything else Ray resolves itself."""
    text = address.strip()
    if text.startswith("ray://"):
        text = text[len("ray://"):]
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or "/" in text:
        return None
    return host.strip("[]"), int(port)


def probe_address(address: str | None, timeout: float = PROBE_TIMEOUT_S) -> None:
    """Raise RayUnreachable if an explicit address does not accept a TCP connection."""
    target = _host_port(address) if address else None
    if target is None:
        return
    try:
        socket.create_connection(target, timeout=timeout).close()
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise RayUnreachable(
            f"--address {address}: no Ray head answers there ({reason}); check the address (the head's "
            f"host:port, 6379 unless `ray start --head --port` says otherwise; `auto` on a node of the "
            f"cluster) and that the head is running (`ray status` on it)") from None


def _chain(exc: BaseException):
    while exc is not None:
        yield exc
        exc = exc.__cause__ or exc.__context__


def unreachable_text(exc: BaseException, address: str, env=None) -> str:
    """One line for an error of `ray.init(address=...)`: what failed and what to check."""
    env = os.environ if env is None else env
    auth = any(type(e).__name__ == "AuthenticationError" or "InvalidAuthToken" in str(e) for e in _chain(exc))
    mode = env.get("RAY_AUTH_MODE")
    path = env.get("RAY_AUTH_TOKEN_PATH")
    if auth:
        if (mode or "").lower() != "token":
            why = (f"RAY_AUTH_MODE is {mode or 'unset'}, so no token was sent (with an explicit address "
                   f"Ray does not turn it on by itself, even if ~/.ray/auth_token exists)")
        elif "no authentication token was found" in str(exc):
            why = f"RAY_AUTH_MODE=token but no token was found (RAY_AUTH_TOKEN_PATH={path or 'unset'})"
        else:
            why = (f"the token it sent was refused (RAY_AUTH_TOKEN_PATH={path or 'unset'}"
                   f"{', RAY_AUTH_TOKEN is set' if env.get('RAY_AUTH_TOKEN') else ''}): it is not the cluster's")
        return (f"the Ray cluster at {address} requires token authentication and refused this driver: {why}; "
                f"export RAY_AUTH_MODE=token and RAY_AUTH_TOKEN_PATH=<the cluster's token file> "
                f"(cluster.yaml copies it to {TOKEN_FILE} on every node)")
    last = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
    return (f"cannot join a Ray cluster at {address}: {last}; check --address (the head's host:port, or "
            f"`auto` on a node of the cluster) and that the head is running (`ray status` on it)")
