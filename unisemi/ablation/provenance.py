"""Which code a run ran: the git revision and a hash of the uncommitted diff, recorded in every row.

`git_rev` is `<12 hex>` for a clean checkout and `<12 hex>-dirty-<12 hex>` with uncommitted
changes to tracked files, the second part the sha256 of `git diff HEAD --binary` (staged and
unstaged together; untracked files are not code the checkout knows of and are left out). Two
runs with the same string ran the same tracked files.

A run that does not start in a git checkout cannot ask git: `ray job submit --working-dir .`
uploads the checkout without `.git`, and `cluster.yaml`'s sync leaves it out too. There the value
comes from `$UNISEMI_GIT_REV`, which `python -m unisemi submit` (submit.py) computes in the
launching checkout and hands to the job through its runtime environment. A copy of the source
tree (it has `pyproject.toml` and `ablations/`) with neither `.git` nor the variable is refused
with one line before anything runs, and so is a `.git` that git cannot read (git missing, a broken
copy): rows never say `unknown` for code that came from a checkout.
An installed package outside any source tree has no revision to give; its rows say `unknown`.
"""
from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path

ENV = "UNISEMI_GIT_REV"
UNKNOWN = "unknown"
# The source tree this code was imported from (the uploaded copy, in a Ray job).
ROOT = Path(__file__).resolve().parents[2]


class ProvenanceError(ValueError):
    """The revision cannot be known; the message says how to supply it."""


def _git(root: Path, *args: str) -> subprocess.CompletedProcess:
    # Read-only questions about the checkout this code runs from: trusted even when another user
    # owns it (a CI container, a shared install; git would refuse it as "dubious ownership"), with
    # nothing of its config run (no fsmonitor hook, no external diff or textconv driver).
    safe = ["-c", f"safe.directory={root}", "-c", "core.fsmonitor=false"]
    return subprocess.run(["git", *safe, *args], cwd=root, capture_output=True, timeout=30)


def _read_git(root: Path) -> tuple[str | None, str]:
    """(revision string, "") or (None, why git could not give one)."""
    try:
        head = _git(root, "rev-parse", "--short=12", "HEAD")
        diff = _git(root, "diff", "HEAD", "--binary", "--no-color", "--no-ext-diff", "--no-textconv")
    except (OSError, subprocess.SubprocessError) as exc:
        return None, f"git did not run: {exc}"
    rev = head.stdout.decode().strip()
    for step in (head, diff):
        if step.returncode != 0 or not rev:
            lines = step.stderr.decode(errors="replace").strip().splitlines()
            return None, lines[0] if lines else f"git exited {step.returncode}"
    if not diff.stdout:
        return rev, ""
    return f"{rev}-dirty-{hashlib.sha256(diff.stdout).hexdigest()[:12]}", ""


def from_git(root: str | Path) -> str | None:
    """`<rev>` or `<rev>-dirty-<diff hash>` of the checkout at `root`; None if it is not one
    (or git cannot read it)."""
    root = Path(root)
    if not (root / ".git").exists():      # a folder inside some other repository is not this code's
        return None
    return _read_git(root)[0]


def is_source_tree(root: str | Path) -> bool:
    """A copy of this repository's files (a job upload, a sync, an unpacked archive)."""
    root = Path(root)
    return (root / "pyproject.toml").is_file() and (root / "ablations").is_dir()


def git_revision(root: str | Path | None = None, env=None) -> str:
    """The revision every row of this run records. The checkout's own git first (it is the code
    that runs), then `$UNISEMI_GIT_REV` from where the run was launched. Raises ProvenanceError
    for a source tree without either."""
    root = Path(root) if root is not None else ROOT
    env = os.environ if env is None else env
    rev, why = _read_git(root) if (root / ".git").exists() else (None, "")
    if rev:
        return rev
    given = (env.get(ENV) or "").strip()
    if given:
        return given
    if why:
        raise ProvenanceError(f"{root}: git cannot tell which revision this checkout is ({why}); make git "
                              f"work there, or set {ENV} to the revision")
    if is_source_tree(root):
        raise ProvenanceError(
            f"{root} is a copy of the source tree without .git, so its git revision is unknown (a "
            f"`ray job submit --working-dir` upload leaves .git behind): submit with `python -m unisemi "
            f"submit -- ...` from the checkout, which records it, or set {ENV} to the revision")
    return UNKNOWN
