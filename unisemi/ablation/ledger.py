"""The store as a ledger of what was run: stop a run that would mix two configs in one table.

A trial key includes the profile and the hash of the resolved config with the seeds aside
(spec.trial_key), so a trial run with other settings is never taken for done. What is left to
decide is what to do when the folder holds the same measurement (cell, seed, split, domains,
profile) under another config, e.g. `--resume --set train.iterations=60` over a 40-iteration run:
running the new trials beside the old ones would leave a folder whose two halves answer different
questions. We stop before Ray starts instead, naming each differing key with both values; the
user picks another --results folder, or reports the stored run with its own settings.
"""
from __future__ import annotations

import json

from unisemi.ablation.rows import stored_slots, trial_slot
from unisemi.ablation.spec import seeds_aside

# Keys whose stored value is the launcher's choice, not the spec's: `train.threads: 0` means "one
# thread per CPU slot", and the runner stores the number it picked. Compared only when set.
LAUNCHER_FILLED = {"train.threads": 0}


class ConfigChanged(RuntimeError):
    """The store holds this table's trials under another config; the message names the keys."""


def flatten(config: dict, prefix: str = "") -> dict:
    """{'train': {'iterations': 40}} -> {'train.iterations': 40}."""
    out = {}
    for key, value in config.items():
        if isinstance(value, dict) and value:
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def config_diff(stored: dict, now: dict) -> list[tuple[str, object, object]]:
    """[(dotted key, stored value, current value)] where two resolved configs differ, seeds aside."""
    a, b = flatten(seeds_aside(stored)), flatten(seeds_aside(now))
    missing = object()
    out = []
    for key in sorted(set(a) | set(b)):
        old, new = a.get(key, missing), b.get(key, missing)
        if key in LAUNCHER_FILLED and new == LAUNCHER_FILLED[key]:
            continue
        if old != new:
            out.append((key, "(absent)" if old is missing else old, "(absent)" if new is missing else new))
    return out


def changed_keys(df, trials, profile: str) -> dict:
    """{dotted key: ({stored values}, {current values})} over the stored trials that measured a
    slot of `trials` (same cell, seed, split, domains and profile) under another config."""
    current = {trial_slot(t, profile): t for t in trials}
    keys = {t.key for t in trials}
    changed: dict = {}
    for line in stored_slots(df[~df["trial"].isin(keys)] if len(df) else df).itertuples():
        t = current.get(line.slot)
        if t is None or not isinstance(line.config_json, str):
            continue
        for key, old, new in config_diff(json.loads(line.config_json), t.config):
            olds, news = changed.setdefault(key, (set(), set()))
            olds.add(json.dumps(old, default=str))
            news.add(json.dumps(new, default=str))
    return changed


def check_same_config(df, trials, profile: str, where) -> None:
    """Raise ConfigChanged (one line) when `df` holds any slot of `trials` under another config."""
    changed = changed_keys(df, trials, profile)
    if not changed:
        return
    shown = [f"{key} {'/'.join(sorted(olds))} (stored) vs {'/'.join(sorted(news))} (now)"
             for key, (olds, news) in sorted(changed.items())]
    more = f" and {len(shown) - 5} more key(s)" if len(shown) > 5 else ""
    raise ConfigChanged(f"{where} holds trials of this table run with a different config: "
                        f"{', '.join(shown[:5])}{more}; use another --results folder, or --report-only "
                        f"with the stored settings")
