"""Which stored rows a table is built from.

One results folder can hold rows that are not this table instance: trials run with another config
(a `--set` changed between runs), another data profile (a laptop and a paper run of one table),
cells or seeds not asked for now, or keys of an older key scheme. A table is built only from the
rows whose trial key is in the current expansion (`spec.expand` with the same profile, `--set` and
`--seeds`); the others are counted so the table and the log can say how many were left out.

Both the report and the plots select through here (and neither imports the other for it).
"""
from __future__ import annotations

import pandas as pd

OTHER_PROFILE = "of another profile"
OTHER_CONFIG = "run with another config (or an older key scheme)"
NOT_ASKED = "of cells, seeds or splits not in this run"
REASONS = (OTHER_CONFIG, NOT_ASKED, OTHER_PROFILE)          # the order they are reported in


def selected_rows(spec, df: pd.DataFrame) -> pd.DataFrame:
    """The evaluation a table shows (final or best-on-val) of every successful trial."""
    if not len(df):
        return df
    flag = "is_final" if spec.evaluation == "final" else "is_best"
    return df[(df["status"] == "ok") & df[flag]].copy()


def in_expansion(df: pd.DataFrame, trials) -> pd.DataFrame:
    """The rows of the given trials only (by trial key)."""
    if not len(df):
        return df
    return df[df["trial"].isin({t.key for t in trials})]


def trial_slot(trial, profile: str) -> tuple:
    """What a trial is a measurement of, its config aside: (cell, seed, split, domains, profile).
    Two trials with one slot and different keys ran the same cell with different settings."""
    return (trial.cell_id, int(trial.seed), int(trial.split_seed), tuple(sorted(trial.domain_keys)), profile)


def stored_slots(df: pd.DataFrame) -> pd.DataFrame:
    """One line per stored trial key: its slot and its stored config (JSON, or None)."""
    if not len(df):
        return pd.DataFrame(columns=["trial", "slot", "profile", "config_json"])
    out = []
    for key, g in df.groupby("trial", sort=False):
        # ok rows carry one domain key each; a failure marker joins them with commas
        domains = sorted({d for v in g["domain_key"].dropna() for d in str(v).split(",")})
        first = g.iloc[0]
        out.append({"trial": key, "profile": first["profile"], "config_json": first["config_json"],
                    "slot": (first["cell"], int(first["seed"]), int(first["split_seed"]), tuple(domains),
                             first["profile"])})
    return pd.DataFrame(out)


def set_aside(df: pd.DataFrame, trials, profile: str) -> dict:
    """{reason: (rows, trials)} for the stored rows a table of this expansion leaves out."""
    if not len(df):
        return {}
    keys = {t.key for t in trials}
    slots = {trial_slot(t, profile) for t in trials}
    outside = stored_slots(df[~df["trial"].isin(keys)])
    counts: dict = {}
    rows_per_trial = df.groupby("trial").size()
    for line in outside.itertuples():
        if line.profile != profile:
            reason = OTHER_PROFILE
        elif line.slot in slots:
            reason = OTHER_CONFIG
        else:
            reason = NOT_ASKED
        n_rows, n_trials = counts.get(reason, (0, 0))
        counts[reason] = (n_rows + int(rows_per_trial[line.trial]), n_trials + 1)
    return counts


def describe_set_aside(counts: dict, lead: str = "Not shown") -> str | None:
    """'Not shown: 4 stored row(s) of 2 trial(s) run with another config ...', or None."""
    if not counts:
        return None
    parts = [f"{counts[r][0]} stored row(s) of {counts[r][1]} trial(s) {r}" for r in REASONS if r in counts]
    return f"{lead}: " + "; ".join(parts) + "."


def trial_states(df: pd.DataFrame, trials) -> dict:
    """{trial key: 'ok' | 'failed' | 'missing'}: missing = no final row yet (interrupted, still
    running, never started)."""
    fin = df[df["is_final"]] if len(df) else df
    status = {}
    for key, g in (fin.groupby("trial") if len(fin) else ()):
        status[key] = "ok" if (g["status"] == "ok").all() else "failed"
    return {t.key: status.get(t.key, "missing") for t in trials}


def retries_note(df: pd.DataFrame) -> str | None:
    """'1 trial(s) retried 1 time(s) after a lost node or an error, each from its last checkpoint;
    about 3 s of work recomputed.' from the final rows' counts, or None without retries."""
    if not len(df) or "retries" not in df:
        return None
    fin = df[df["is_final"]].drop_duplicates("trial")        # one row per trial, its last run's counts
    retried = fin[fin["retries"].fillna(0) > 0]
    if not len(retried):
        return None
    return (f"{len(retried)} trial(s) retried {int(retried['retries'].sum())} time(s) after a lost node or an "
            f"error, each from its last checkpoint; about {float(retried['lost_s'].fillna(0).sum()):.0f} s of "
            f"work recomputed.")
