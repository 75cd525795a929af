"""The numbers behind the HTML report's figures, and the figures (seaborn on matplotlib's Agg).

Each figure has a `*_frame` function that builds the data frame it draws, so tests check the
numbers and the page can print them as a table too; the `draw_*` functions only plot a frame.
All frames take the rows of one table instance (report.table_parts), never the whole folder.
"""
from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from unisemi.ablation.plots import _pyplot, plot_files, plot_table
from unisemi.ablation.rows import selected_rows
from unisemi.ablation.spec import Spec, cell_id

TIME_PARTS = ("launch_s", "setup_s", "data_s", "train_s", "eval_s")


def _ordered(cells, order) -> list:
    """`cells` in the spec's order, then any the spec does not know (a search's sampled cells)."""
    known = [c for c in order if c in set(cells)]
    return known + sorted(set(cells) - set(known))


def curve_frame(rows: pd.DataFrame, metric: str, order=()) -> pd.DataFrame:
    """Learning curves: mean, sample std and n of `metric` over the trials of each
    (cell, domain key, iteration), from every stored evaluation of the successful trials."""
    ok = rows[rows["status"] == "ok"] if len(rows) else rows
    cols = ["cell", "domain_key", "iteration", "mean", "std", "n"]
    if not len(ok):
        return pd.DataFrame(columns=cols)
    out = (ok.groupby(["cell", "domain_key", "iteration"])[metric]
           .agg(mean="mean", std="std", n="count").reset_index())
    rank = {c: i for i, c in enumerate(_ordered(out["cell"].unique(), order))}
    out = out.assign(rank=out["cell"].map(rank)).sort_values(["domain_key", "rank", "iteration"])
    return out[cols].reset_index(drop=True)


def baseline_cell(cell_json: str, baseline: dict, axes) -> str:
    """The cell an entry is compared with: its own levels with the spec's baseline levels put in."""
    cell = json.loads(cell_json)
    cell.update({a: str(v) for a, v in baseline.items()})
    return cell_id({a: cell[a] for a in axes})


def class_frame(sel: pd.DataFrame, domain_key: str, order=()) -> pd.DataFrame:
    """Mean IoU per class (columns) of each cell (rows) over its trials' selected evaluations; a
    class absent from both truth and prediction (null) is left out of that mean."""
    g = sel[sel["domain_key"] == domain_key]
    names = list(g.iloc[0]["class_names"])
    means = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)      # a class null in every trial: NaN
        for cell, c in g.groupby("cell"):
            iou = np.stack([np.asarray(v, float) for v in c["class_iou"]])
            means[cell] = np.nanmean(iou, axis=0)
    frame = pd.DataFrame(means, index=names).T
    return frame.loc[_ordered(frame.index, order)]


def class_delta_frame(sel: pd.DataFrame, domain_key: str, baseline: dict, axes, order=()) -> pd.DataFrame:
    """Per-class IoU of each cell minus that of its baseline cell (baseline_cell), in IoU points;
    a row is NaN where its baseline cell has no rows."""
    absolute = class_frame(sel, domain_key, order)
    json_of = sel.drop_duplicates("cell").set_index("cell")["cell_json"]
    rows = {}
    for cell in absolute.index:
        ref = baseline_cell(json_of[cell], baseline, axes)
        rows[cell] = (absolute.loc[cell] - absolute.loc[ref]) if ref in absolute.index else np.nan
    return pd.DataFrame(rows, index=absolute.columns).T.loc[absolute.index]


def spread_frame(sel: pd.DataFrame, metric: str, order=()) -> pd.DataFrame:
    """One line per trial and domain: the value a table cell averages, with its seed and split,
    cells in the spec's order."""
    cols = ["cell", "domain_key", "seed", "split_seed", "value"]
    if not len(sel):
        return pd.DataFrame(columns=cols)
    rank = {c: i for i, c in enumerate(_ordered(sel["cell"].unique(), order))}
    out = sel.assign(value=sel[metric], rank=sel["cell"].map(rank)).sort_values(["rank", "seed", "split_seed"])
    return out[cols].reset_index(drop=True)


def trial_costs(rows: pd.DataFrame) -> pd.DataFrame:
    """One line per trial: its device-seconds and time split at its latest row. The cost columns
    are cumulative ("seconds so far") and repeated on each domain's row, so a trial's cost is
    that of one latest row, never a sum over its rows."""
    timed = rows.dropna(subset=["wall_s"]) if len(rows) else rows
    cols = ["trial", "cell", "device_s", "wall_s", *TIME_PARTS]
    if not len(timed):
        return pd.DataFrame(columns=cols)
    last = timed.sort_values("wall_s").drop_duplicates("trial", keep="last")
    return last.assign(device_s=last["device_hours"] * 3600.0)[cols].reset_index(drop=True)


def cost_frame(rows: pd.DataFrame, order=()) -> pd.DataFrame:
    """Per cell: trials with a cost, total device-seconds, and the mean time split per trial."""
    per_trial = trial_costs(rows)
    if not len(per_trial):
        return pd.DataFrame(columns=["cell", "trials", "device_s", "wall_s", *TIME_PARTS])
    g = per_trial.groupby("cell")
    out = g[["wall_s", *TIME_PARTS]].mean()
    out.insert(0, "device_s", g["device_s"].sum())
    out.insert(0, "trials", g.size())
    return out.loc[_ordered(out.index, order)].reset_index()


def _clear_figures(folder: Path) -> None:
    """Figures of an earlier render (a domain or section that has no rows any more) would stay
    beside the page and look current."""
    for old in folder.glob("*.png"):
        old.unlink()


def draw_figures(spec: Spec | None, current: pd.DataFrame, summary, folder: Path, metric: str, order,
                 profile: str | None = None) -> dict:
    """Every figure of a page, written into `folder` (earlier ones removed): {section: [(file
    name, caption)]}. Without a spec, the final evaluations stand in for the selected ones."""
    folder.mkdir(parents=True, exist_ok=True)
    _clear_figures(folder)
    out: dict = {"plot": [], "curves": [], "classes": [], "spread": []}
    sel = selected_rows(spec, current) if spec is not None else _final_ok(current)
    if spec is not None and summary is not None and len(sel):
        if plot_table(spec, current, summary, folder, profile) is not None:
            captions = {"absolute": "ours (mean ± sd over trials) beside the paper's numbers",
                        "relative": "each cell as the % change from the baseline cell of its column, ours "
                                    "(paired 95% interval) and the paper's, each against its own baseline"}
            out["plot"] += [(name, captions[view]) for view, name in
                            sorted(plot_files(spec, profile).items(), key=lambda kv: kv[1] != "plot.png")]
    curves = curve_frame(current, metric, order)
    if len(curves):
        draw_curves(curves, metric, folder / "curves.png")
        out["curves"].append(("curves.png", f"{metric} at every stored evaluation; band: ± one std over trials"))
    baseline = {str(k): str(v) for k, v in ((spec.raw.get("baseline") or {}) if spec else {}).items()}
    for dkey in dict.fromkeys(sel["domain_key"]) if len(sel) else ():
        if baseline:
            frame = class_delta_frame(sel, dkey, baseline, list(spec.axes), order)
            what = "IoU minus the baseline cell's (" + ", ".join(f"{a}={v}" for a, v in baseline.items()) + ")"
        else:
            frame, what = class_frame(sel, dkey, order), "IoU (no baseline cell in the spec)"
        name = f"classes_{dkey}.png"
        draw_classes(frame, f"{dkey}: per-class {what}", folder / name, delta=bool(baseline))
        out["classes"].append((name, f"{dkey}: per-class {what}, mean over trials"))
    spread = spread_frame(sel, metric, order)
    if len(spread):
        draw_spread(spread, metric, folder / "spread.png")
        out["spread"].append(("spread.png", "each trial's value in the table, per cell"))
    return out


def _final_ok(rows: pd.DataFrame) -> pd.DataFrame:
    return rows[rows["is_final"] & (rows["status"] == "ok")] if len(rows) else rows


def _save(fig, path: Path) -> Path:
    plt = _pyplot()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def draw_curves(curves: pd.DataFrame, metric: str, path: Path) -> Path:
    """One panel per domain: a line per cell (mean over trials), its band mean ± std."""
    import seaborn as sns
    plt = _pyplot()
    domains = list(dict.fromkeys(curves["domain_key"]))
    cells = list(dict.fromkeys(curves["cell"]))
    colors = dict(zip(cells, sns.color_palette("viridis", len(cells))))
    fig, axes = plt.subplots(1, len(domains), figsize=(5.5 * len(domains) + 1.5, 3.6), squeeze=False)
    for ax, dkey in zip(axes[0], domains):
        for cell, c in curves[curves["domain_key"] == dkey].groupby("cell", sort=False):
            ax.plot(c["iteration"], c["mean"], marker="o", ms=3, color=colors[cell], label=cell)
            std = c["std"].fillna(0.0)
            ax.fill_between(c["iteration"], c["mean"] - std, c["mean"] + std, color=colors[cell], alpha=0.2)
        ax.set_xlabel("iteration")
        ax.set_ylabel(f"{metric} (%)")
        ax.set_title(f"{dkey}: mean ± std over trials", fontsize=9)
    axes[0][-1].legend(fontsize=7, loc="center left", bbox_to_anchor=(1.02, 0.5))
    return _save(fig, path)


def draw_classes(frame: pd.DataFrame, title: str, path: Path, delta: bool) -> Path:
    """Cells x classes heatmap: the difference to the baseline cell (diverging, centred on 0) or,
    without a baseline, the IoU itself."""
    import seaborn as sns
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(0.5 * frame.shape[1] + 3.5, 0.42 * frame.shape[0] + 2.0))
    shown = frame.astype(float)
    if delta:
        lim = float(np.nanmax(np.abs(shown.to_numpy()))) if np.isfinite(shown.to_numpy()).any() else 1.0
        sns.heatmap(shown, annot=True, fmt="+.1f", cmap="RdBu", center=0.0, vmin=-max(lim, 1e-6),
                    vmax=max(lim, 1e-6), ax=ax, cbar_kws={"label": "IoU points vs baseline"},
                    annot_kws={"fontsize": 6})
    else:
        sns.heatmap(shown, annot=True, fmt=".0f", cmap="viridis", vmin=0, vmax=100, ax=ax,
                    cbar_kws={"label": "IoU (%)"}, annot_kws={"fontsize": 6})
    ax.set_title(title, fontsize=9)
    ax.set_ylabel("")
    return _save(fig, path)


def draw_spread(spread: pd.DataFrame, metric: str, path: Path) -> Path:
    """One panel per domain: a box per cell over its trials, each trial a point coloured by its
    labelled split when splits vary, else by seed."""
    import seaborn as sns
    plt = _pyplot()
    domains = list(dict.fromkeys(spread["domain_key"]))
    # As report.summarize: the split is a factor of its own only where it varies apart from the seed.
    apart = spread["split_seed"].nunique() > 1 and (spread["seed"] != spread["split_seed"]).any()
    by = "split_seed" if apart else "seed"
    data = spread.assign(**{by: spread[by].astype(str)})
    cells = list(dict.fromkeys(data["cell"]))
    fig, axes = plt.subplots(1, len(domains), figsize=(max(5.0, 0.8 * len(cells) + 2.5) * len(domains), 3.8),
                             squeeze=False)
    for ax, dkey in zip(axes[0], domains):
        d = data[data["domain_key"] == dkey]
        sns.boxplot(data=d, x="cell", y="value", order=cells, color="0.9", fliersize=0, ax=ax)
        sns.stripplot(data=d, x="cell", y="value", order=cells, hue=by, ax=ax, size=5, jitter=0.15)
        ax.set_xlabel("")
        ax.set_ylabel(f"{metric} (%)")
        ax.set_title(f"{dkey}: one point per trial ({by.replace('_', ' ')})", fontsize=9)
        ax.tick_params(axis="x", labelrotation=30, labelsize=7)
        ax.legend(fontsize=7, title=by.replace("_", " "), title_fontsize=7)
    return _save(fig, path)
