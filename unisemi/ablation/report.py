"""Tables from the store: table.md, table.tex, table.csv (+ per-class tables) beside the paper.

Each cell is the mean +- sample std over the trials of that cell and n. When both the seed and
the labelled split vary, the spread is split in two: the seed std (pooled within splits) and the
split std (of the per-split means).

Significance (paired.py): seed s gives every cell of a table the same split, initialisation and
data order, so a cell is compared with the spec's baseline cell of its column on the per-pair
differences (paired t; Welch's test only where the two share no (seed, split) pair); the table's
baseline comparisons are one family, Holm-adjusted; `*` marks an adjusted p < 0.05 with a
difference the table can print (|d| >= RESOLUTION). Bold: the cells of a column not significantly
below its top mean (paired against the top, Holm over the column), when that is not every cell:
two bold cells are a tie, no bold means the whole column ties.

A table is built only from the rows of the current expansion's trials (rows.py): rows of another
config or profile in the same folder are counted in a footnote, never averaged in. A cell with
fewer finished trials than the expansion has shows `n=k of m` and a dagger, named in a footnote.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from unisemi.ablation import claims as claims_mod, paired
from unisemi.ablation.rows import describe_set_aside, in_expansion, retries_note, selected_rows, set_aside, trial_states
from unisemi.ablation.spec import Spec, cell_id, expand
from unisemi.atomic import atomic_write_text

INCOMPLETE = "†"          # marks a cell with fewer finished trials than the expansion has
RESOLUTION = paired.RESOLUTION    # a difference below half the printed digit is never a finding


def trial_counts(trials, df: pd.DataFrame) -> dict:
    """{(cell id, domain key): {'expected', 'failed', 'missing'}} over the expansion's trials."""
    states = trial_states(df, trials)
    out: dict = {}
    for t in trials:
        for dkey in t.domain_keys:
            c = out.setdefault((t.cell_id, dkey), {"expected": 0, "failed": 0, "missing": 0})
            c["expected"] += 1
            if states[t.key] != "ok":
                c[states[t.key]] += 1
    return out


def summarize(spec: Spec, df: pd.DataFrame, trials=None) -> pd.DataFrame:
    """Tidy summary: one line per (cell, domain key) with mean, std, n, seed/split std, paper, p.
    With the expansion's `trials`, only their rows count, and each line says how many trials it
    should have (`n_expected`) and how many failed or have no final row."""
    if trials is not None:
        df = in_expansion(df, trials)
    counts = trial_counts(trials, df) if trials is not None else {}
    sel = selected_rows(spec, df)
    metric = spec.metric
    lines = []
    baseline = {str(k): str(v) for k, v in (spec.raw.get("baseline") or {}).items()}
    groups = {}
    if len(sel):
        for (cell, dkey), g in sel.groupby(["cell", "domain_key"], sort=False):
            groups[(cell, dkey)] = g
    for cell in spec.cells():
        cid = cell_id(cell)
        for dkey in spec.domains:
            g = groups.get((cid, dkey))
            vals = g[metric].to_numpy(float) if g is not None else np.array([])
            line = {"cell": cid, **{f"axis:{a}": str(v) for a, v in cell.items()}, "domain": dkey,
                    "n": len(vals), "mean": float(vals.mean()) if len(vals) else math.nan,
                    "std": float(vals.std(ddof=1)) if len(vals) > 1 else math.nan,
                    "seed_std": math.nan, "split_std": math.nan,
                    "paper": spec.paper_value(cell, dkey)}
            c = counts.get((cid, dkey), {})
            line.update(n_expected=c.get("expected"), n_failed=c.get("failed", 0),
                        n_missing=c.get("missing", 0))
            if g is not None and g["split_seed"].nunique() > 1 and (g["seed"] != g["split_seed"]).any():
                within = [s[metric].var(ddof=1) for _, s in g.groupby("split_seed") if len(s) > 1]
                if within:
                    line["seed_std"] = float(math.sqrt(np.mean(within)))
                line["split_std"] = float(g.groupby("split_seed")[metric].mean().std(ddof=1))
            line["delta"] = line["mean"] - line["paper"] if line["paper"] is not None else math.nan
            line["values"] = vals.tolist()
            line["pairs"] = cell_pairs(g, metric) if g is not None else {}
            line["git_revs"] = (sorted(set(g["git_rev"].dropna())) if g is not None and "git_rev" in g else [])
            lines.append(line)
    out = pd.DataFrame(lines)
    for col in COMPARISON_COLUMNS:
        out[col] = math.nan
    out["test"] = None
    if baseline:
        _against_baseline(spec, out, baseline)
    if spec.raw.get("ratio_to"):
        _ratios(spec, out, {str(k): str(v) for k, v in spec.raw["ratio_to"].items()})
    return out


def _ratios(spec: Spec, out: pd.DataFrame, ref: dict) -> None:
    """`ratio_to: {axis: level}`: each cell's mean (and the paper's number) as a percentage of the
    cell with that level in the same column and domain (the transfer paper's "% of fully supervised")."""
    out["ratio"], out["paper_ratio"] = math.nan, math.nan
    for i, line in out.iterrows():
        sel = out[out["domain"] == line["domain"]]
        for a in spec.axes:
            sel = sel[sel[f"axis:{a}"] == ref.get(a, line[f"axis:{a}"])]
        if not len(sel):
            continue
        r = sel.iloc[0]
        if r["mean"] and not math.isnan(r["mean"]):
            out.at[i, "ratio"] = 100.0 * line["mean"] / r["mean"]
        if line["paper"] is not None and r["paper"]:
            out.at[i, "paper_ratio"] = 100.0 * line["paper"] / r["paper"]


# what summarize() says of each cell against its baseline: the difference (cell - baseline), its
# 95% interval, the pairs it rests on, the differences' sd, p and Holm's p over the table
COMPARISON_COLUMNS = ("diff", "diff_lo", "diff_hi", "n_pairs", "diff_sd", "p_value", "p_holm")


def cell_pairs(g: pd.DataFrame, metric: str) -> dict:
    """{(seed, split): value} of a cell's selected rows (one per trial and domain)."""
    split_ids = g["split_id"] if "split_id" in g else [None] * len(g)
    return {paired.pair_key(s, sid, ss): float(v)
            for s, sid, ss, v in zip(g["seed"], split_ids, g["split_seed"], g[metric])}


def _against_baseline(spec: Spec, out: pd.DataFrame, baseline: dict) -> None:
    """Each cell against the baseline cell of its column and domain (paired.compare), then Holm
    over every comparison of the table."""
    axis_cols = [f"axis:{a}" for a in spec.axes]
    for i, line in out.iterrows():
        ref = out
        for a in spec.axes:
            want = baseline.get(a, line[f"axis:{a}"])
            ref = ref[ref[f"axis:{a}"] == want]
        ref = ref[ref["domain"] == line["domain"]]
        if not len(ref) or all(ref.iloc[0][c] == line[c] for c in axis_cols):
            continue
        res = paired.compare(line["pairs"], ref.iloc[0]["pairs"])
        if res["test"] is None:
            continue
        out.at[i, "test"] = res["test"]
        for col, key in (("diff", "mean"), ("diff_lo", "lo"), ("diff_hi", "hi"), ("n_pairs", "n"),
                         ("diff_sd", "sd"), ("p_value", "p")):
            out.at[i, col] = res[key]
    out["p_holm"] = paired.holm(out["p_value"].to_numpy(float))


def significant(p_holm, diff) -> bool:
    """An adjusted p below ALPHA on a difference the table can print."""
    return (not _isnan(p_holm) and p_holm < paired.ALPHA and not _isnan(diff)
            and abs(diff) >= RESOLUTION)


def best_set(sub: pd.DataFrame) -> set:
    """The cells of one column (and domain) not significantly below its top mean: each other
    measured cell against the top (paired.compare), Holm over the column's comparisons. The top
    is picked after the fact, so the test is two-sided. Empty for fewer than two measured cells
    (a column of one has no best) and when it is every measured cell (all tie: nothing to bold)."""
    measured = sub[(sub["n"] > 0) & sub["mean"].notna()]
    if len(measured) < 2:
        return set()
    top = measured.loc[measured["mean"].idxmax()]
    others = measured[measured["cell"] != top["cell"]]
    results = [paired.compare(o["pairs"], top["pairs"]) for _, o in others.iterrows()]
    adjusted = paired.holm([r["p"] for r in results])
    below = {o["cell"] for (_, o), r, p in zip(others.iterrows(), results, adjusted)
             if significant(p, r["mean"]) and r["mean"] < 0}
    tied = set(measured["cell"]) - below
    return set() if tied == set(measured["cell"]) else tied


def _incomplete(n, expected) -> bool:
    return expected is not None and not _isnan(expected) and n < expected


def _isnan(x) -> bool:
    return isinstance(x, float) and math.isnan(x)


def _fmt(mean, std, n, sig=False, bold=False, tex=False, expected=None) -> str:
    short = _incomplete(n, expected)
    mark = (r"$^\dagger$" if tex else INCOMPLETE) if short else ""
    count = f"(n={n} of {int(expected)})" if short else f"(n={n})"
    if n == 0 or math.isnan(mean):
        if tex:
            return "--" + mark
        return "–" + (f" {count}{mark}" if short else "")
    pm = r" $\pm$ " if tex else " ± "
    body = f"{mean:.1f}" + (f"{pm}{std:.1f}" if not math.isnan(std) else "")
    if bold:
        body = rf"\textbf{{{body}}}" if tex else f"**{body}**"
    star = ("$^*$" if tex else "\\*") if sig else ""
    return f"{body}{star} {count}{mark}" if not tex else f"{body}{star}{mark}"


def _num(x, signed=False) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    return f"{x:+.1f}" if signed else f"{x:.1f}"


def build_grid(spec: Spec, summary: pd.DataFrame):
    """(row labels, column headers, cells) in the paper's layout; each column group of the layout
    axis x domain has three sub-columns: ours, paper, delta."""
    layout = spec.layout
    rows_axis, cols_axis = layout["rows"], layout["columns"]
    other = [a for a in spec.axes if a not in (rows_axis, cols_axis)]
    row_keys = []
    for cell in spec.cells():
        rk = tuple([str(cell[rows_axis])] + [f"{a}={cell[a]}" for a in other])
        if rk not in row_keys:
            row_keys.append(rk)
    col_levels = [str(c) for c in spec.axes[cols_axis]] if cols_axis else [None]
    groups = [(c, d) for c in col_levels for d in spec.domains]
    best = {}
    for c, d in groups:
        sub = summary[(summary["domain"] == d) & ((summary[f"axis:{cols_axis}"] == c) if cols_axis else True)]
        best[(c, d)] = best_set(sub)
    cells = {}
    for rk in row_keys:
        for c, d in groups:
            sel = summary[(summary["domain"] == d) & (summary[f"axis:{rows_axis}"] == rk[0])]
            if cols_axis:
                sel = sel[sel[f"axis:{cols_axis}"] == c]
            for part in rk[1:]:
                a, v = part.split("=", 1)
                sel = sel[sel[f"axis:{a}"] == v]
            cells[(rk, c, d)] = sel.iloc[0] if len(sel) else None
    return row_keys, groups, cells, best


def _header_name(c, d, spec) -> str:
    parts = [p for p in (c, d if len(spec.domains) > 1 else None) if p]
    return " ".join(parts) if parts else spec.metric


def markdown(spec: Spec, summary: pd.DataFrame, footnotes: list[str]) -> str:
    row_keys, groups, cells, best = build_grid(spec, summary)
    rows_axis = spec.layout["rows"]
    head = [rows_axis]
    ref = _ratio_name(spec)
    for c, d in groups:
        name = _header_name(c, d, spec)
        head += [f"{name} ours", f"{name} paper", f"{name} Δ"]
        if ref:
            head += [f"{name} % of {ref} ours", f"{name} % of {ref} paper"]
    lines = [f"### {spec.suite}/{spec.name}: {spec.title}", "",
             "| " + " | ".join(head) + " |", "|" + "|".join(["---"] * len(head)) + "|"]
    for label, out in _body_rows(spec, row_keys, groups, cells, best, tex=False):
        lines.append("| " + " | ".join([label] + out) + " |")
    lines += [""] + [f"{i + 1}. {f}" for i, f in enumerate(footnotes)]
    return "\n".join(lines) + "\n"


def grid_entries(spec, row_keys, groups, cells, best):
    """(row label, [entry per column group]) for every row of the layout; an entry is None for an
    empty grid position, else {'line': summary line, 'bold': in its column's best set (best_set),
    'sig': significant against the baseline (Holm)}. The Markdown, LaTeX and HTML tables all format these."""
    for rk in row_keys:
        label = rk[0] + (f" ({', '.join(rk[1:])})" if len(rk) > 1 else "")
        out = []
        for c, d in groups:
            line = cells[(rk, c, d)]
            if line is None:
                out.append(None)
                continue
            is_best = line["cell"] in best.get((c, d), set())
            sig = significant(line["p_holm"], line["diff"])
            out.append({"line": line, "bold": bool(is_best), "sig": bool(sig)})
        yield _row_label(spec, spec.layout["rows"], rk[0], label), out


def _body_rows(spec, row_keys, groups, cells, best, tex: bool):
    """(row label, [ours, paper, delta] per column group) for every row of the layout."""
    dash = "--" if tex else "–"
    ratio = bool(spec.raw.get("ratio_to"))
    for label, entries in grid_entries(spec, row_keys, groups, cells, best):
        out = []
        for e in entries:
            if e is None:
                out += [dash] * (5 if ratio else 3)
                continue
            line = e["line"]
            out += [_fmt(line["mean"], line["std"], line["n"], e["sig"], e["bold"], tex=tex,
                         expected=line.get("n_expected")),
                    _num(line["paper"]).replace("–", dash), _num(line["delta"], True).replace("–", dash)]
            if ratio:
                out += [_pct(line.get("ratio"), tex), _pct(line.get("paper_ratio"), tex)]
        yield label, out


def _pct(x, tex: bool) -> str:
    text = _num(x)
    if text == "–":
        return "--" if tex else text
    return text + (r"\%" if tex else "%")


def _ratio_name(spec: Spec) -> str | None:
    ref = spec.raw.get("ratio_to") or {}
    return ", ".join(str(v) for v in ref.values()) or None


def _row_label(spec, axis, level, default) -> str:
    body = spec.level(axis, level) if level in spec.axes[axis] else {}
    return (body or {}).get("label", default)


def latex(spec: Spec, summary: pd.DataFrame, footnotes: list[str]) -> str:
    row_keys, groups, cells, best = build_grid(spec, summary)
    rows_axis = spec.layout["rows"]
    esc = lambda s: str(s).replace("_", r"\_").replace("%", r"\%").replace(INCOMPLETE, r"$^\dagger$")  # noqa: E731
    per = 5 if spec.raw.get("ratio_to") else 3
    cols = "l" + "r" * per * len(groups)
    lines = [r"\begin{table}[t]", r"\centering", r"\small", rf"\begin{{tabular}}{{{cols}}}", r"\toprule"]
    top = [""] + [rf"\multicolumn{{{per}}}{{c}}{{{esc(_header_name(c, d, spec))}}}" for c, d in groups]
    lines.append(" & ".join(top) + r" \\")
    sub = "ours & paper & $\\Delta$" + (" & \\% ours & \\% paper" if per == 5 else "")
    lines.append(" & ".join([esc(rows_axis)] + [sub] * len(groups)) + r" \\")
    lines.append(r"\midrule")
    for label, out in _body_rows(spec, row_keys, groups, cells, best, tex=True):
        lines.append(" & ".join([esc(label)] + out) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}",
              rf"\caption{{{esc(spec.suite + '/' + spec.name)}: {esc(spec.title)}. "
              + " ".join(esc(f) for f in footnotes) + "}", r"\end{table}"]
    return "\n".join(lines) + "\n"


def per_class_markdown(spec: Spec, df: pd.DataFrame) -> str | None:
    """Mean per-class IoU per (cell, domain) over the selected evaluations."""
    sel = selected_rows(spec, df)
    if not len(sel):
        return None
    blocks = [f"### {spec.suite}/{spec.name}: per-class IoU ({spec.evaluation} evaluation, mean over trials)", ""]
    for dkey, g in sel.groupby("domain_key", sort=False):
        names = list(g.iloc[0]["class_names"])
        blocks += [f"**{dkey}**", "", "| cell | " + " | ".join(names) + " | mIoU |",
                   "|" + "|".join(["---"] * (len(names) + 2)) + "|"]
        marked_any = False
        for cell, c in g.groupby("cell", sort=False):
            iou = np.nanmean(np.stack([np.asarray(v, float) for v in c["class_iou"]]), axis=0)
            marked = _marked_classes(spec, cell)
            marked_any |= bool(marked)
            blocks.append(f"| {cell} | " + " | ".join(f"[{_num(float(v))}]" if n in marked else _num(float(v))
                                                       for n, v in zip(names, iou))
                          + f" | {c['miou'].mean():.1f} |")
        blocks.append("")
        if marked_any:
            blocks += ["[x]: a class of the level's `marked_classes` (transfer: a strong category, "
                       "pixel-labelled; the paper greys these).", ""]
    return "\n".join(blocks)


def _marked_classes(spec: Spec, cid: str) -> set:
    """The class names the levels of a cell mark (`marked_classes:` of a level)."""
    out = set()
    for part in cid.split(","):
        axis, _, level = part.partition("=")
        if axis in spec.axes and level in spec.axes[axis]:
            out |= set((spec.level(axis, level) or {}).get("marked_classes") or [])
    return out


def precision(summary: pd.DataFrame, columns: list | None = None) -> dict | None:
    """Seed spread of a table and the smallest difference between two cells it resolves.
    Unpaired: the half-width of a two-sided 95% t interval for a difference of means, with the
    pooled per-cell standard deviation and the median n (the precision goal of the laptop profile).
    Paired: the half-width of the paired t interval (paired.resolvable) with the pooled sd of the
    per-pair differences of every two cells of a column and domain that share two or more pairs,
    and the median number of pairs; None where no two cells share pairs. `columns` are the summary
    columns that make a column of the table (the layout's column axis; none: the whole domain)."""
    from scipy import stats
    ok = summary[(summary["n"] >= 2) & summary["std"].notna()]
    if not len(ok):
        return None
    n = int(ok["n"].median())
    pooled = float(np.sqrt((ok["std"] ** 2).mean()))
    t = float(stats.t.ppf(0.975, 2 * (n - 1)))
    out = {"median_std": float(ok["std"].median()), "pooled_std": pooled, "n": n,
           "resolvable": t * pooled * math.sqrt(2.0 / n), "paired_sd": math.nan, "paired_n": 0,
           "paired_resolvable": math.nan}
    variances, counts = [], []
    for _, col in ok.groupby(["domain", *(columns or [])], sort=False):
        lines = list(col.itertuples())
        for i, a in enumerate(lines):
            for b in lines[i + 1:]:
                x, y = paired.paired_values(a.pairs, b.pairs)
                if len(x) >= 2:
                    variances.append(float(np.var(x - y, ddof=1)))
                    counts.append(len(x))
    if variances:
        sd, m = float(np.sqrt(np.mean(variances))), int(np.median(counts))
        out.update(paired_sd=sd, paired_n=m, paired_resolvable=paired.resolvable(sd, m))
    return out


def significance_note(spec: Spec, summary: pd.DataFrame) -> str:
    """Which test each `*` uses, and the Holm family it was corrected in."""
    base = ", ".join(f"{k}={v}" for k, v in spec.raw["baseline"].items())
    tests = summary["test"].dropna()
    k = len(tests)
    by = {name: sorted(summary.loc[summary["test"] == name, "cell"].unique()) for name in ("paired t", "Welch")}
    uses = "; ".join(f"{name}: {', '.join(cells)}" for name, cells in by.items() if cells) or "no cell tested"
    return (f"\\* p < 0.05 against the baseline ({base}) in the same column, Holm-adjusted over the table's "
            f"{k} comparison(s), on a difference of at least {RESOLUTION} mIoU: a paired t-test on the "
            f"per-(seed, split) differences where the two cells share seeds and splits, Welch's t-test where "
            f"they share none ({uses}).")


def incomplete_note(spec: Spec, summary: pd.DataFrame) -> str | None:
    """The footnote naming every cell with fewer finished trials than the expansion has."""
    if "n_expected" not in summary:
        return None
    parts = []
    for line in summary.itertuples():
        if not _incomplete(line.n, line.n_expected):
            continue
        where = line.cell + (f" {line.domain}" if len(spec.domains) > 1 else "")
        why = [f"{k} {what}" for k, what in ((line.n_missing, "without a final row"),
                                             (line.n_failed, "failed")) if k]
        parts.append(f"{where}: {line.n} of {int(line.n_expected)} trials" + (f" ({', '.join(why)})" if why else ""))
    if not parts:
        return None
    return (f"{INCOMPLETE} Incomplete (a trial interrupted, still running or failed; rerun with --resume): "
            + "; ".join(parts) + ".")


def footnotes_for(spec: Spec, df: pd.DataFrame, pending: dict, profile: str | None,
                  summary: pd.DataFrame | None = None, ignored: dict | None = None) -> list[str]:
    """The table's footnotes; `df` should already be the current expansion's rows, `ignored` the
    count of the stored rows left out (rows.set_aside)."""
    sel = selected_rows(spec, df)
    notes = [f"Shows the {'final' if spec.evaluation == 'final' else 'best-on-validation'} evaluation of "
             f"each trial; mean ± sample std over trials, n = trials per cell. Bold: the cells not significantly "
             f"below the top mean of their column (paired, Holm); a tie bolds every tied cell, a column "
             f"where all tie has no bold."]
    profiles = sorted(set(df["profile"].dropna())) if len(df) else []
    prof = profile or (profiles[0] if profiles else "laptop")
    notes.append(f"Profile: {prof}" + (" (the embedded synthetic world: compare trends, not absolute "
                                       "values, with the paper)" if prof == "laptop" else ""))
    column = spec.layout["columns"]
    prec = precision(summary, [f"axis:{column}"] if column else []) if summary is not None else None
    if prec:
        text = (f"Precision: median seed std {prec['median_std']:.2f} mIoU over cells (pooled "
                f"{prec['pooled_std']:.2f}); unpaired, with n = {prec['n']} per cell, a difference between "
                f"two cells below {prec['resolvable']:.1f} mIoU is within seed noise (95%, two-sided)")
        if prec["paired_n"]:
            text += (f"; paired by seed and split (sd of the per-pair differences {prec['paired_sd']:.2f}, "
                     f"{prec['paired_n']} pairs), the table resolves differences above "
                     f"{prec['paired_resolvable']:.2f} mIoU")
        notes.append(text + ".")
    if spec.raw.get("baseline") and summary is not None:
        notes.append(significance_note(spec, summary))
    if len(df):
        fin = df[df["is_final"]]
        failed = fin[fin["status"] != "ok"]
        if len(failed):
            reasons = "; ".join(f"{r.cell} seed {r.seed}: {r.status} ({(r.error or '')[:80]})"
                                for r in failed.itertuples())
            notes.append(f"{len(failed)} failed trial(s), excluded: {reasons}")
    for note in (incomplete_note(spec, summary) if summary is not None else None,
                 describe_set_aside(ignored or {}), retries_note(df)):
        if note:
            notes.append(note)
    by_reason: dict = {}
    for cid, reason in pending.items():
        by_reason.setdefault(reason, []).append(cid)
    for reason, cids in by_reason.items():
        notes.append(f"Not run yet, {reason}: {'; '.join(cids)}.")
    if len(sel):
        wall = df[df["is_final"] & (df["status"] == "ok")]
        # A trial of several domains has one final row per domain, each with the trial's whole cost.
        hours = wall.drop_duplicates("trial")["device_hours"].sum()
        revs = ", ".join(sorted(set(wall["git_rev"].dropna())))
        notes.append(f"Cost: {hours:.3f} device-hours over {wall['trial'].nunique()} trials; git {revs}.")
    notes += [str(f) for f in spec.raw.get("footnotes") or []]
    if prof == "paper":                 # the recipe card's chosen differences, each with its reason
        from unisemi.ablation.recipe import departure_notes
        notes += departure_notes(spec)
    return notes


def table_parts(spec: Spec, df: pd.DataFrame, trials, pending: dict, profile: str):
    """(rows of the expansion, summary, footnotes): what table.md and the HTML page both show."""
    current = in_expansion(df, trials)
    summary = summarize(spec, current, trials)
    notes = footnotes_for(spec, current, pending or {}, profile, summary, set_aside(df, trials, profile))
    return current, summary, notes


def table_claims(spec: Spec, summary: pd.DataFrame, profile: str) -> list[dict]:
    """The verdict on each of the spec's claims whose cells have rows (claims.py)."""
    found = claims_mod.parse_claims(spec.path, spec.raw, spec.paper_value)
    return claims_mod.claim_rows(spec, found, summary, profile)


def _after(text: str) -> str:
    return "\n" + text if text else ""


def write_outputs(spec: Spec, df: pd.DataFrame, out_dir: Path, pending: dict | None = None,
                  profile: str | None = None, trials=None) -> dict:
    """Write table.md/.tex/.csv (+ per-class table, plot) from the rows of `trials` only: the
    current expansion (default: the spec as written, at `profile`). `df` may hold every row of
    the folder; the others are left out and counted in a footnote."""
    profile = profile or "laptop"
    if trials is None:
        trials, pending_now = expand(spec, profile)
        pending = pending_now if pending is None else pending
    current, summary, notes = table_parts(spec, df, trials, pending, profile)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {}
    verdicts = table_claims(spec, summary, profile)
    for name, text in (("table.md", markdown(spec, summary, notes) + _after(claims_mod.markdown(verdicts, profile))),
                       ("table.tex", latex(spec, summary, notes) + _after(claims_mod.latex(verdicts, profile)))):
        paths[name] = atomic_write_text(out_dir / name, text)
    if spec.raw.get("claims"):
        paths["claims.csv"] = atomic_write_text(out_dir / "claims.csv", claims_mod.csv_text(verdicts))
    csv = summary.drop(columns=["values", "pairs", "git_revs"]).copy()
    paths["table.csv"] = atomic_write_text(out_dir / "table.csv", csv.to_csv(index=False))
    if spec.raw.get("per_class"):
        text = per_class_markdown(spec, current)
        if text:
            paths["per_class.md"] = atomic_write_text(out_dir / "per_class.md", text)
    from unisemi.ablation.plots import plot_table
    plot = plot_table(spec, current, summary, out_dir, profile)
    if plot is not None:
        paths["plot"] = plot
    return paths
