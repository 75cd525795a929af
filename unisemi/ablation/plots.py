"""seaborn figures of a table: a line over a (log) axis for 1-D sweeps, grouped bars for method
comparisons, a heatmap of per-class IoU; the paper's numbers are overlaid where they exist.

The relative view: each cell as the % change from the baseline cell of its column and domain, ours
and the paper's each against its own baseline, with our paired 95% interval as a band or whisker.
A laptop table (about 17 mIoU against the paper's 59) compares trends, not values, and on one
absolute axis its curve is a flat line at the bottom: on the laptop profile plot.png is the relative
view and plot_absolute.png the absolute one; elsewhere plot.png is absolute and plot_relative.png
relative. A spec without a baseline has the absolute view only."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from unisemi.ablation import paired
from unisemi.ablation.rows import selected_rows
from unisemi.ablation.spec import Spec


def _pyplot():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


RELATIVE_DEFAULT = ("laptop",)     # profiles whose plot.png is the relative view


def plot_files(spec: Spec, profile: str | None) -> dict:
    """{view: file name} of a table's plots: 'absolute' always, 'relative' with a baseline; the
    profile's default view is plot.png."""
    if not spec.raw.get("baseline"):
        return {"absolute": "plot.png"}
    if profile in RELATIVE_DEFAULT:
        return {"relative": "plot.png", "absolute": "plot_absolute.png"}
    return {"absolute": "plot.png", "relative": "plot_relative.png"}


def plot_table(spec: Spec, df: pd.DataFrame, summary: pd.DataFrame, out_dir: Path,
               profile: str | None = None) -> Path | None:
    """Draw the table's plots (plot_files) into out_dir; returns plot.png, or None without rows."""
    sel = selected_rows(spec, df)
    if not len(sel):
        return None
    kind = (spec.raw.get("plot") or {}).get("kind", "bars")
    files = plot_files(spec, profile)
    (_line if kind == "line" else _bars)(spec, sel, summary, out_dir / files["absolute"])
    if "relative" in files:
        _relative(spec, relative_frame(spec, summary), out_dir / files["relative"], kind)
    if spec.raw.get("per_class"):
        _heatmap(spec, sel, out_dir)
    return out_dir / "plot.png"


def relative_frame(spec: Spec, summary: pd.DataFrame) -> pd.DataFrame:
    """One line per cell with a measured baseline cell in its column and domain: `ours` the mean
    % change from it over the shared (seed, split) pairs (100 (cell / baseline - 1) per pair) with
    its paired 95% interval `lo`, `hi` (none below two pairs: then the change of the means), and
    `paper` the paper's % change from its own baseline number."""
    baseline = {str(k): str(v) for k, v in (spec.raw.get("baseline") or {}).items()}
    axes = list(spec.axes)
    lines = summary.to_dict("records")
    out = []
    for line in lines:
        want = {a: baseline.get(a, line[f"axis:{a}"]) for a in axes}
        ref = next((r for r in lines if r["domain"] == line["domain"]
                    and all(r[f"axis:{a}"] == want[a] for a in axes)), None)
        if ref is None or not line["n"] or not ref["n"] or not ref["mean"]:
            continue
        x, y = paired.paired_values(line["pairs"], ref["pairs"])
        if len(x) >= 2 and np.all(y != 0):
            res = paired.paired(100.0 * (x / y - 1.0))
            ours, lo, hi = res["mean"], res["lo"], res["hi"]
        else:
            ours, lo, hi = 100.0 * (line["mean"] / ref["mean"] - 1.0), np.nan, np.nan
        paper_rel = (100.0 * (line["paper"] / ref["paper"] - 1.0)
                     if line["paper"] is not None and ref["paper"] and not pd.isna(line["paper"]) else np.nan)
        out.append({"cell": line["cell"], "domain": line["domain"],
                    **{f"axis:{a}": line[f"axis:{a}"] for a in axes},
                    "ours": ours, "lo": lo, "hi": hi, "paper": paper_rel})
    return pd.DataFrame(out, columns=["cell", "domain", *[f"axis:{a}" for a in axes], "ours", "lo", "hi", "paper"])


def _relative(spec, frame: pd.DataFrame, path: Path, kind: str) -> Path:
    """The relative view: a line over the plotted axis with our interval as a band (kind line),
    else one point per cell with our interval as a whisker, grouped by column and domain."""
    plt = _pyplot()
    opts = spec.raw.get("plot") or {}
    fig, ax = plt.subplots(figsize=(6.4, 3.8) if kind == "line" else (max(5.5, 0.5 * len(frame) + 2.5), 4.0))
    ax.axhline(0.0, color="0.6", lw=0.8)
    if kind == "line":
        axis = opts.get("axis") or spec.layout["rows"]
        xs = _axis_values(spec, axis)
        for dkey, d in frame.groupby("domain", sort=False):
            d = d.assign(x=[xs[v] for v in d[f"axis:{axis}"]]).sort_values("x")
            name = f" {dkey}" if len(spec.domains) > 1 else ""
            ax.plot(d["x"], d["ours"], "o-", label=f"ours{name} (paired 95% band)")
            ax.fill_between(d["x"], d["lo"], d["hi"], alpha=0.25)
            if d["paper"].notna().any():
                ax.plot(d["x"], d["paper"], "--s", color="k", ms=4, lw=1, label=f"paper{name}")
        if opts.get("log", False):
            ax.set_xscale("log")
        ax.set_xlabel(axis)
    else:
        rows_axis, cols_axis = spec.layout["rows"], spec.layout["columns"]
        labels = [(f"{r[f'axis:{cols_axis}']} " if cols_axis else "") + (f"{r['domain']} " if len(spec.domains) > 1 else "")
                  + str(r[f"axis:{rows_axis}"]) for r in frame.to_dict("records")]
        pos = np.arange(len(frame))
        err = np.vstack([frame["ours"] - frame["lo"], frame["hi"] - frame["ours"]])
        ax.errorbar(pos, frame["ours"], yerr=np.nan_to_num(err), fmt="o", capsize=3, label="ours (paired 95% interval)")
        ax.plot(pos, frame["paper"], "k_", ms=14, mew=2, label="paper")
        ax.set_xticks(pos, labels, rotation=45, ha="right", fontsize=7)
    base = ", ".join(f"{k}={v}" for k, v in (spec.raw.get("baseline") or {}).items())
    ax.set_ylabel(f"% change of {spec.metric} from {base}")
    ax.set_title(f"{spec.suite}/{spec.name}: relative to the baseline, ours and the paper's", fontsize=9)
    ax.legend(fontsize=7)
    return _save(plt, fig, path)


def _save(plt, fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)       # pyplot keeps every open figure; a report writes dozens
    return path


def _axis_values(spec: Spec, axis: str) -> dict:
    """Level name -> x position; `plot.x` maps levels to numbers, else the level names are parsed."""
    given = (spec.raw.get("plot") or {}).get("x") or {}
    out = {}
    for i, level in enumerate(spec.axes[axis]):
        try:
            out[str(level)] = float(given.get(level, level))
        except (TypeError, ValueError):
            out[str(level)] = float(i)
    return out


def _line(spec, sel, summary, path: Path) -> Path:
    import seaborn as sns
    plt = _pyplot()
    opts = spec.raw.get("plot") or {}
    axis = opts.get("axis") or spec.layout["rows"]
    xs = _axis_values(spec, axis)
    data = sel.assign(x=[xs[str(__import__("json").loads(c)[axis])] for c in sel["cell_json"]])
    fig, ax = plt.subplots(figsize=(6, 3.6))
    sns.lineplot(data=data, x="x", y=spec.metric, hue="domain_key" if len(spec.domains) > 1 else None,
                 marker="o", errorbar="sd", ax=ax, label=None if len(spec.domains) > 1 else "ours (mean ± sd)")
    paper = summary.dropna(subset=["paper"])
    if len(paper):
        px = [xs[v] for v in paper[f"axis:{axis}"]]
        ax.plot(px, paper["paper"], "k--s", ms=4, lw=1, label="paper")
    if opts.get("log", False):
        ax.set_xscale("log")
    ax.set_xlabel(axis)
    ax.set_ylabel(f"{spec.metric} (%)")
    ax.set_title(f"{spec.suite}/{spec.name}: {spec.title}", fontsize=9)
    ax.legend(fontsize=8)
    return _save(plt, fig, path)


def _bars(spec, sel, summary, path: Path) -> Path:
    import seaborn as sns
    plt = _pyplot()
    import json
    rows_axis, cols_axis = spec.layout["rows"], spec.layout["columns"]
    cells = [json.loads(c) for c in sel["cell_json"]]
    group = [(str(c[cols_axis]) + " " if cols_axis else "") + d for c, d in zip(cells, sel["domain_key"])]
    data = sel.assign(group=group, row=[str(c[rows_axis]) for c in cells])
    levels = [str(c) for c in spec.axes[cols_axis]] if cols_axis else [None]
    order = [g for g in ((f"{c} " if c else "") + d for c in levels for d in spec.domains) if g in set(group)]
    hue_order = [str(r) for r in spec.axes[rows_axis] if str(r) in set(data["row"])]
    fig, ax = plt.subplots(figsize=(max(5, 1.2 * len(order) + 2), 3.8))
    sns.barplot(data=data, x="group", y=spec.metric, hue="row", order=order, hue_order=hue_order,
                errorbar="sd", ax=ax)
    # Paper values: black markers at the centre of the matching bar.
    width = 0.8 / max(1, len(hue_order))
    for _, line in summary.dropna(subset=["paper"]).iterrows():
        g = (line[f"axis:{cols_axis}"] + " " if cols_axis else "") + line["domain"]
        r = line[f"axis:{rows_axis}"]
        if g in order and r in hue_order:
            x = order.index(g) - 0.4 + width * (hue_order.index(r) + 0.5)
            ax.plot([x], [line["paper"]], "k_", ms=14, mew=2)
    ax.plot([], [], "k_", ms=10, mew=2, label="paper")
    ax.set_xlabel("")
    ax.set_ylabel(f"{spec.metric} (%)")
    ax.set_title(f"{spec.suite}/{spec.name}: {spec.title}", fontsize=9)
    ax.legend(fontsize=7, ncol=2)
    return _save(plt, fig, path)


def _heatmap(spec, sel, out_dir: Path) -> None:
    import seaborn as sns
    plt = _pyplot()
    for dkey, g in sel.groupby("domain_key", sort=False):
        names = list(g.iloc[0]["class_names"])
        rows = {cell: np.nanmean(np.stack([np.asarray(v, float) for v in c["class_iou"]]), axis=0)
                for cell, c in g.groupby("cell", sort=False)}
        frame = pd.DataFrame(rows, index=names).T
        fig, ax = plt.subplots(figsize=(0.45 * len(names) + 3, 0.4 * len(rows) + 1.8))
        sns.heatmap(frame, annot=True, fmt=".0f", cmap="viridis", vmin=0, vmax=100, ax=ax,
                    cbar_kws={"label": "IoU (%)"}, annot_kws={"fontsize": 6})
        ax.set_title(f"{spec.suite}/{spec.name}: per-class IoU, {dkey}", fontsize=9)
        _save(plt, fig, out_dir / f"per_class_{dkey}.png")
