"""Stages: the cached products of earlier fits that a run builds on.

A stage is a folder of files (label embeddings, a pretrained encoder, generated label maps) that
is a pure function of its recipe: a JSON-able dict of everything that determines it (configs,
versions, seeds). The recipe's hash names it, `$UNISEMI_CACHE/stages/<name>-<hash>/` holds it, a
file lock lets exactly one process build it while the others wait and then reuse it, and the
folder appears by one rename, so a half-built stage is never read. On a cluster,
`$UNISEMI_CACHE` must be shared storage. Every result row names the stages its run used by hash.

    python -m unisemi stages list
    python -m unisemi stages rebuild <name>-<hash>

Methods receive a `Stages` handle in `build` and never import the training loop: the handle's
`fit` is the loop itself, injected by `train.fit`.
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

RECIPE_FILE = "recipe.json"


class StageError(ValueError):
    """A stage that cannot be found, read or rebuilt; the message is one line for the user."""


def cache_dir() -> Path:
    return Path(os.environ.get("UNISEMI_CACHE", Path.home() / ".cache" / "unisemi"))


def stage_hash(recipe: dict) -> str:
    text = json.dumps(recipe, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def stage_dir(name: str, recipe: dict) -> Path:
    return cache_dir() / "stages" / f"{name}-{stage_hash(recipe)}"


@contextlib.contextmanager
def _locked(lock: Path):
    lock.parent.mkdir(parents=True, exist_ok=True)
    with open(lock, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)      # released by the kernel when the holder dies
        yield


def stage(name: str, recipe: dict, build: Callable[[Path], None], force: bool = False) -> Path:
    """The folder of stage `name` for `recipe`, built by `build(folder)` if it does not exist yet.

    `build` writes its files into an empty temporary folder; the folder is renamed into place
    with the recipe beside the files, so its presence means the stage is complete."""
    target = stage_dir(name, recipe)
    with _locked(target.with_name(f".{target.name}.lock")):
        if target.exists() and not force:
            return target
        tmp = target.with_name(f".{target.name}.{os.getpid()}.building")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        try:
            t0 = time.perf_counter()
            build(tmp)
            meta = {"name": name, "hash": stage_hash(recipe), "recipe": recipe,
                    "built_s": time.perf_counter() - t0,
                    "time_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
            (tmp / RECIPE_FILE).write_text(json.dumps(meta, sort_keys=True, indent=1, default=str))
            if target.exists():                         # force: the old product goes only now
                shutil.rmtree(target)
            os.replace(tmp, target)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return target


@dataclass
class Stages:
    """What a method's `build` may ask for. `resolve(overrides)` is the trial's config with
    `overrides` merged on top, as a plain dict (the recipe of an earlier fit); `fit(values)` runs
    the training loop on such a dict and returns its result. `used` collects {name: hash} of the
    stages this run read; the loop copies it into every evaluation record."""
    resolve: Callable[[dict], dict]
    fit: Callable[[dict], dict]
    used: dict = field(default_factory=dict)

    def get(self, name: str, recipe: dict, build: Callable[[Path], None], label: str = "") -> Path:
        """The stage's folder, built if missing; recorded under `label` (default: its name),
        e.g. one label per domain when a method uses one stage of a kind per domain."""
        path = stage(name, recipe, build)
        self.used[label or name] = stage_hash(recipe)
        return path


def list_stages() -> list[dict]:
    """Every complete stage in the cache, from its recipe file."""
    root = cache_dir() / "stages"
    out = []
    for d in sorted(root.glob("*")) if root.exists() else []:
        if d.name.startswith(".") or not (d / RECIPE_FILE).exists():
            continue
        meta = json.loads((d / RECIPE_FILE).read_text())
        size = sum(f.stat().st_size for f in d.rglob("*") if f.is_file())
        out.append({"id": d.name, "name": meta["name"], "hash": meta["hash"], "bytes": size,
                    "built_s": meta.get("built_s"), "time_utc": meta.get("time_utc"), "path": str(d)})
    return out


def read_recipe(stage_id: str) -> dict:
    path = cache_dir() / "stages" / stage_id / RECIPE_FILE
    if not path.exists():
        known = ", ".join(s["id"] for s in list_stages()) or "none"
        raise StageError(f"stage '{stage_id}': not in {cache_dir() / 'stages'} (cached: {known})")
    return json.loads(path.read_text())


def load_weights(module, folder: Path, filename: str, what: str):
    """`module` with the state dict a stage saved in folder/filename, in eval mode; an unreadable
    file is one error naming the stage and the command that rebuilds it."""
    import torch
    try:
        module.load_state_dict(torch.load(Path(folder) / filename, map_location="cpu")["state_dict"])
    except Exception as exc:  # noqa: BLE001 - any unreadable file names the stage to rebuild
        raise RuntimeError(f"{folder}: unreadable {what} stage ({exc.__class__.__name__}); rebuild it "
                           f"with: python -m unisemi stages rebuild {Path(folder).name}") from None
    return module.eval()
