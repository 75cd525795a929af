"""seaborn figures of a table: a line over a (log) axis for 1-D sweeps, grouped bars for method
comparisons, a heatmap of per-class IoU; the paper's numbers are overlaid where they exist."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from unisemi.ablation.rows import selected_rows
from unisemi.ablation.spec import Spec


def _pyplot():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def plot_table(spec: Spec, df: pd.DataFrame, summary: pd.DataFrame, out_dir: Path) -> Path | None:
    sel = selected_rows(spec, df)
    if not len(sel):
        return None
    kind = (spec.raw.get("plot") or {}).get("kind", "bars")
    path = (_line if kind == "line" else _bars)(spec, sel, summary, out_dir)
    if spec.raw.get("per_class"):
        _heatmap(spec, sel, out_dir)
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


def _line(spec, sel, summary, out_dir: Path) -> Path:
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
    fig.tight_layout()
    path = out_dir / "plot.png"
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _bars(spec, sel, summary, out_dir: Path) -> Path:
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
    fig.tight_layout()
    path = out_dir / "plot.png"
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


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
        fig.tight_layout()
        fig.savefig(out_dir / f"per_class_{dkey}.png", dpi=120)
        plt.close(fig)
