"""The HTML report: results/report/index.html and one static page per table, from the stored rows.

    results/report/index.html                  every claim with a verdict, then every table with rows:
                                               status, cost, last row's date
    results/report/claims.csv                  the index's claims, one row each (claims.CSV_COLUMNS)
    results/report/<suite>/<table>.html        the table as in table.md, and the figures below
    results/report/<suite>/<table>/*.png       the page's figures, beside it (no network needed)
    results/report/<suite>/<table>/page.json   what the index shows for the table, and its spec

A page shows one table instance, the rows of one expansion (report.table_parts): the runner and
`--report-only` pass theirs; a rebuild (`python -m unisemi report`) takes the spec as written at
the profile of the newest row, or, when that expansion holds none of the stored trials (the run
used --set or --seeds), the stored trials of that profile themselves. A table whose spec cannot be
found (a search, a spec outside ablations/) gets a page without the table, plot and config diff.
"""
from __future__ import annotations

import datetime
import json
import os
from pathlib import Path

import pandas as pd

from unisemi.ablation import claims as claims_mod, figures
from unisemi.ablation.ledger import config_diff
from unisemi.ablation.report import (_fmt, _header_name, _num, _pct, _ratio_name, build_grid, grid_entries,
                                     table_claims, table_parts, write_outputs)
from unisemi.ablation.rows import in_expansion, trial_states
from unisemi.ablation.spec import SpecError, Spec, Trial, cell_id, expand, load_spec, preset_values
from unisemi.ablation.store import TableStore, rows_root
from unisemi.atomic import atomic_write_text
from unisemi.config import ConfigError, _merge, build_config, to_dict

REPORT_DIR = "report"
META = "page.json"
CLAIMS_CSV = "claims.csv"      # every claim of every table with rows, beside index.html


class ReportError(ValueError):
    """Nothing to report, or a page that cannot be built; the message names the folder."""


def report_root(results) -> Path:
    return Path(results) / REPORT_DIR


def page_path(results, suite: str, table: str) -> Path:
    return report_root(results) / suite / f"{table}.html"


def assets_dir(results, suite: str, table: str) -> Path:
    return report_root(results) / suite / table


def stored_tables(results) -> list[tuple[str, str]]:
    """(suite, table) of every partition of the store that holds a trial file."""
    root = rows_root(results)
    found = []
    for folder in sorted(root.glob("suite=*/table=*")):
        if any(folder.glob("trial-*.parquet")):
            found.append((folder.parent.name.split("=", 1)[1], folder.name.split("=", 1)[1]))
    return found


# --- which trials a page shows ------------------------------------------------------------------

def stored_trials(df: pd.DataFrame) -> list[Trial]:
    """The trials of stored rows, rebuilt from the rows' own columns (their config as it ran)."""
    out = []
    for key, g in df.groupby("trial", sort=False):
        ok = g[g["status"] == "ok"]
        first = (ok if len(ok) else g).iloc[0]
        pairs = (zip(ok["domain"], ok["domain_key"]) if len(ok)
                 else zip(str(first["domain"]).split(","), str(first["domain_key"]).split(",")))
        domain_map = dict(pairs)
        config = json.loads(first["config_json"]) if isinstance(first["config_json"], str) else {}
        out.append(Trial(key=key, cell=json.loads(first["cell_json"] or "{}"), cell_id=first["cell"],
                         seed=int(first["seed"]), split_seed=int(first["split_seed"]),
                         domain_keys=tuple(dict.fromkeys(domain_map.values())), domain_map=domain_map,
                         config=config, config_hash=first["config_hash"]))
    return out


def newest_profile(df: pd.DataFrame) -> str:
    return str(df.sort_values("time_utc", na_position="first").iloc[-1]["profile"])


def infer_expansion(spec: Spec | None, df: pd.DataFrame):
    """(trials, pending, profile) a rebuild shows for a table's stored rows (module docstring)."""
    profile = newest_profile(df)
    mine = df[df["profile"] == profile]
    if spec is not None:
        try:
            trials, pending = expand(spec, profile)
        except (SpecError, ConfigError):
            trials, pending = [], {}
        if {t.key for t in trials} & set(mine["trial"]):
            return trials, pending, profile
        return stored_trials(mine), pending, profile
    return stored_trials(mine), {}, profile


def status_of(current: pd.DataFrame, trials) -> dict:
    """Counts of the expansion's trials by state, and the index's wording of them."""
    states = list(trial_states(current, trials).values())
    ok, failed, missing = (states.count(s) for s in ("ok", "failed", "missing"))
    text = "complete" if ok == len(states) else f"{ok} of {len(states)} trials"
    if failed:
        text += f", {failed} failed"
    return {"ok": ok, "failed": failed, "missing": missing, "expected": len(states), "text": text}


# --- the sections of a page ---------------------------------------------------------------------

def table_view(spec: Spec, summary: pd.DataFrame) -> dict:
    """The generated table as the template draws it: one entry per (row, column group)."""
    row_keys, groups, cells, best = build_grid(spec, summary)
    rows = []
    for label, entries in grid_entries(spec, row_keys, groups, cells, best):
        shown = []
        for e in entries:
            if e is None:
                shown.append(None)
                continue
            line = e["line"]
            shown.append({"ours": _fmt(line["mean"], line["std"], line["n"], expected=line.get("n_expected")),
                          "bold": e["bold"], "sig": e["sig"], "paper": _num(line["paper"]),
                          "delta": _num(line["delta"], signed=True),
                          "ratio": _pct(line.get("ratio"), tex=False),
                          "paper_ratio": _pct(line.get("paper_ratio"), tex=False)})
        rows.append({"label": label, "entries": shown})
    # `ratio_to:` specs (transfer/table2) add "% of <reference>" for ours and the paper, as table.md does
    return {"axis": spec.layout["rows"], "groups": [_header_name(c, d, spec) for c, d in groups], "rows": rows,
            "ratio_to": _ratio_name(spec)}


def preset_config(spec: Spec, profile: str) -> dict:
    """What every cell of the profile starts from, with the keys expand() sets for every trial."""
    prof = (spec.raw.get("profiles") or {})[profile]
    datasets = [prof["domains"][k] for k in spec.domains]
    values = _merge(preset_values(spec, prof), {"data": {"domains": datasets}, "train": {"progress": False}})
    return to_dict(build_config(values, f"{spec.path}: preset {spec.raw['preset']}"))


def _show(value) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def config_diffs(base: dict, configs: dict) -> tuple[list, dict]:
    """(keys every cell sets alike, {cell: keys of that cell}), each key as (key, cell value,
    preset value), for `configs` {cell: [resolved configs of its trials]}; seeds aside. A key
    whose values differ between a cell's trials (a per-domain cell's datasets) lists them all."""
    per_cell = {}
    for cell, cfgs in configs.items():
        keys: dict = {}
        for cfg in cfgs:
            for key, value, preset in config_diff(cfg, base):
                keys.setdefault(key, ([], preset))[0].append(_show(value))
        per_cell[cell] = {k: (" / ".join(dict.fromkeys(v)), _show(p)) for k, (v, p) in keys.items()}
    shared = set.intersection(*(set(d.items()) for d in per_cell.values())) if len(per_cell) > 1 else set()
    common = sorted((k, v, p) for k, (v, p) in shared)
    cells = {c: sorted((k, v, p) for k, (v, p) in d.items() if (k, (v, p)) not in shared) for c, d in per_cell.items()}
    return common, cells


def cell_configs(trials, current: pd.DataFrame) -> dict:
    """{cell: [config of each trial]}: as stored (what really ran), else as expanded."""
    stored = current.drop_duplicates("trial").set_index("trial")["config_json"] if len(current) else {}
    out: dict = {}
    for t in trials:
        text = stored.get(t.key) if len(current) else None
        out.setdefault(t.cell_id, []).append(json.loads(text) if isinstance(text, str) else t.config)
    return out


# --- pages --------------------------------------------------------------------------------------

def _env():
    from jinja2 import Environment, PackageLoader, StrictUndefined
    # Autoescape everything: cell labels, config values and error messages come from user files.
    return Environment(loader=PackageLoader("unisemi.ablation", "templates"), autoescape=True,
                       undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)


def _links(results, suite: str, table: str) -> list[tuple[str, str]]:
    """(name, href relative to the page) of the table files the runner wrote, where they exist."""
    tables = Path(results) / "tables" / suite / table
    page_dir = page_path(results, suite, table).parent
    names = ("table.md", "table.tex", "table.csv", "per_class.md")
    return [(n, os.path.relpath(tables / n, page_dir)) for n in names if (tables / n).exists()]


def _footnote(text: str) -> str:
    # report.footnotes_for writes Markdown, where a literal asterisk is escaped.
    return text.replace("\\*", "*")


def _spread_lines(summary) -> list[dict]:
    if summary is None:
        return []
    out = []
    for line in summary.to_dict("records"):
        out.append({"cell": line["cell"], "domain": line["domain"], "n": line["n"], "std": _num(line["std"]),
                    "seed_std": _num(line["seed_std"]), "split_std": _num(line["split_std"]),
                    "trial_values": ", ".join(f"{v:.1f}" for v in line["values"])})
    return out


def _cost_lines(current, order) -> list[dict]:
    costs = figures.cost_frame(current, order)
    return [{"cell": r.cell, "trials": int(r.trials), "device_s": f"{r.device_s:.1f}", "wall_s": f"{r.wall_s:.1f}",
             "parts": [f"{getattr(r, p):.1f}" if pd.notna(getattr(r, p)) else "–" for p in figures.TIME_PARTS]}
            for r in costs.itertuples()]


def write_page(results, suite: str, table: str, df: pd.DataFrame, trials, pending: dict, profile: str,
               spec: Spec | None = None) -> dict:
    """Render one table's page and figures from `df` (the folder's rows) restricted to `trials`;
    returns what the index shows for it (also written to page.json beside the figures)."""
    if spec is not None:
        current, summary, notes = table_parts(spec, df, trials, pending, profile)
        metric, order, title = spec.metric, _cell_ids(spec), spec.title
    else:
        current, summary, notes = in_expansion(df, trials), None, []
        metric, order, title = "miou", [], f"{suite}/{table} (no spec found: rows only)"
    verdicts = table_claims(spec, summary, profile) if spec is not None else []
    folder = assets_dir(results, suite, table)
    figs = figures.draw_figures(spec, current, summary, folder, metric, order, profile)
    counts = status_of(current, trials)
    cost = figures.trial_costs(current)["device_s"].sum() if len(current) else 0.0
    meta = {"suite": suite, "table": table, "title": title, "status": counts.pop("text"), **counts,
            "device_s": float(cost), "last": str(current["time_utc"].max()) if len(current) else "",
            "profile": profile, "href": f"{suite}/{table}.html",
            "spec": str(Path(spec.path).resolve()) if spec is not None else None,
            "claims": [{**row, **claims_mod.shown(row)} for row in verdicts]}
    common, per_cell = (config_diffs(preset_config(spec, profile), cell_configs(trials, current))
                        if spec is not None else ([], {}))
    html = _env().get_template("table.html.j2").render(
        meta=meta, table=table_view(spec, summary) if spec is not None else None, asset=table,
        notes=[_footnote(n) for n in notes], figures=figs, links=_links(results, suite, table),
        preset=spec.raw["preset"] if spec is not None else None, common=common, per_cell=per_cell,
        pending=pending, spread=_spread_lines(summary), costs=_cost_lines(current, order),
        time_parts=[p[:-2] for p in figures.TIME_PARTS], generated=_now(), claims=meta["claims"])
    atomic_write_text(page_path(results, suite, table), html)
    atomic_write_text(folder / META, json.dumps(meta, indent=1))
    return meta


def _cell_ids(spec: Spec) -> list[str]:
    return [cell_id(c) for c in spec.cells()]


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def find_spec(results, suite: str, table: str, df: pd.DataFrame) -> Spec | None:
    """The spec of stored rows: the one the last page of the table was rendered from, else
    ablations/<suite>/<table>.yaml; None when neither exists or its cells are not the stored ones."""
    meta = assets_dir(results, suite, table) / META
    recorded = json.loads(meta.read_text()).get("spec") if meta.exists() else None
    for name in ([recorded] if recorded and Path(recorded).exists() else []) + [f"{suite}/{table}"]:
        try:
            spec = load_spec(name)
        except (SpecError, ConfigError):
            continue
        if (spec.suite, spec.name) == (suite, table) and set(df["cell"]) & set(_cell_ids(spec)):
            return spec
    return None


def rebuild_page(results, suite: str, table: str, log=print, outputs: bool = True) -> dict:
    """Rewrite a table's page from the stored rows, and with `outputs` its table.md/.tex/.csv and plot."""
    df = TableStore(results, suite, table, log=log).read()
    spec = find_spec(results, suite, table, df)
    trials, pending, profile = infer_expansion(spec, df)
    if spec is not None and outputs:
        write_outputs(spec, df, Path(results) / "tables" / suite / table, pending, profile, trials=trials)
    return write_page(results, suite, table, df, trials, pending, profile, spec)


def tables_with_rows(results) -> list:
    """(suite, table) of every table in the store, or the one-line error when it holds none."""
    tables = stored_tables(results)
    if not tables:
        raise ReportError(f"{rows_root(results)}: no stored rows, nothing to report "
                          f"(run a table first: python ablations/run.py table6 --results {results})")
    return tables


def write_index(results, log=print) -> Path:
    """results/report/index.html over every table with rows; a table without a page yet (rows from
    before the report existed) gets its page rendered first, but not its table files: a run of
    one table leaves the outputs of the others as they are."""
    tables = tables_with_rows(results)
    metas = []
    for suite, table in tables:
        meta = assets_dir(results, suite, table) / META
        metas.append(json.loads(meta.read_text()) if meta.exists() and page_path(results, suite, table).exists()
                     else rebuild_page(results, suite, table, log, outputs=False))
    rows = [c for m in metas for c in m.get("claims") or []]
    atomic_write_text(report_root(results) / CLAIMS_CSV, claims_mod.csv_text(rows))
    html = _env().get_template("index.html.j2").render(tables=metas, generated=_now(), claims=rows,
                                                       claims_csv=CLAIMS_CSV,
                                                       total_s=sum(m["device_s"] for m in metas))
    return atomic_write_text(report_root(results) / "index.html", html)


def all_claims(results, log=print) -> list[dict]:
    """The verdict on every claim of every stored table whose spec is found, from its rows (the
    expansion a rebuild shows: infer_expansion); nothing is written."""
    out = []
    for suite, table in tables_with_rows(results):
        df = TableStore(results, suite, table, log=log).read()
        spec = find_spec(results, suite, table, df)
        if spec is None or not spec.raw.get("claims"):
            continue
        trials, pending, profile = infer_expansion(spec, df)
        _, summary, _ = table_parts(spec, df, trials, pending, profile)
        out += table_claims(spec, summary, profile)
    return out


def claims_text(rows: list[dict]) -> str:
    """The verdicts as plain text, one line per claim (python -m unisemi claims)."""
    if not rows:
        return "no claim of a stored table has rows (specs list their claims under claims:)"
    lines = []
    for r in rows:
        s = claims_mod.shown(r)
        lines.append(f"{r['suite']}/{r['table']}  {r['claim']} ({r['comparison']}, {r['profile']}): ours "
                     f"{s['ours']}, paper {s['paper']}: {s['verdict_text']}")
    return "\n".join(lines)


def build_site(results, log=print) -> list[Path]:
    """Rebuild every table's page and the index; returns the pages and the index written."""
    tables = tables_with_rows(results)
    pages = []
    for suite, table in tables:
        rebuild_page(results, suite, table, log)
        pages.append(page_path(results, suite, table))
    return pages + [write_index(results, log)]
