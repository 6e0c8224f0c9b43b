"""``paper_tables/delta.png`` (+ pdf): where our numbers agree with the paper's, at a glance.

One panel per metric; one line per configuration with both our result and a paper value (Tables 2
and 3 print different metrics of the same runs: one line; a grid cell keeps its table, as its paper
value differs from Table 2's), labelled with its seed count: Δ = our mean − the paper's value (the dot) with our mean's 95% confidence interval shifted
the same way (the bar), so the paper's point is the vertical line at 0. Colour = where the paper's
value lies against our interval (``consistent``, ``ours lower``, ``ours higher``; grey with one seed).
Tables 6 and 8 print the grids of Tables 5 and 7 again and are left out. The cells are those of
:mod:`.diff` (one implementation).
"""

from __future__ import annotations

import math

import os
from typing import Iterable

import pandas as pd

from ..atomic import atomic_path
from ..pipeline import plan
from . import layouts
from .diff import diff_cells
from .format import mark_figure
from .tables import TableFrames

#: the grids printed twice: Table 6 re-arranges Table 5, Table 8 re-arranges Table 7
REPEATS = ("6", "8")
PALETTE = {"consistent": "#0072B2", "ours lower": "#D55E00", "ours higher": "#009E73", "one seed": "#999999"}


def delta_frame(runs: pd.DataFrame, paper: pd.DataFrame | None = None,
                frames: TableFrames | None = None, allow_mixed: bool = False) -> pd.DataFrame:
    """Cells with our result and a paper value: label, metric, Δ, Δ interval, agreement (``frames``:
    the command's table frames, when it has them; the tolerance flag is not used here)."""
    frames = TableFrames(runs, paper, allow_mixed=allow_mixed) if frames is None else frames
    tables = tuple(t for t in plan.TABLE_IDS if t not in REPEATS)
    frame = diff_cells(frames, tables)
    frame = frame[(frame["status"] == "ok") & frame["paper"].notna()].copy()
    base = pd.Series([_label(r) for r in frame.itertuples()], index=frame.index)
    n = frame["n"].groupby(base).agg(lambda x: f"n={int(x.min())}" if x.min() == x.max()
                                     else f"n={int(x.min())}–{int(x.max())}")
    frame["label"] = base + " (" + base.map(n) + ")"
    frame["lo"] = frame["ci_low"] - frame["paper"]
    frame["hi"] = frame["ci_high"] - frame["paper"]
    frame["agreement"] = frame["paper_vs_ci"].replace("", "one seed").fillna("one seed")
    return frame


def _label(r) -> str:
    """``Yeast MulSupCon`` (Tables 2–4: one configuration), ``T5 Scene CLD α=0.1 β=1``."""
    dataset = layouts.DATASET_TITLE.get(r.dataset, r.dataset)
    if r.panel:  # grid cell
        return f"T{r.table} {dataset} CLD α={plan.fmt_num(r.alpha)} β={plan.fmt_num(r.beta)}"
    return f"{dataset} {r.row}"


def plot_delta(frame: pd.DataFrame, outputs: Iterable[str | os.PathLike]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import seaborn as sns

    sns.set_theme(style="whitegrid", context="notebook")
    labels = list(dict.fromkeys(frame["label"]))
    height = max(3.0, 0.28 * len(labels) + 1.8)
    fig, axes = plt.subplots(1, len(plan.METRICS), figsize=(3.0 * len(plan.METRICS) + 3, height), sharey=True,
                             squeeze=False)
    axes = axes[0]
    synthetic = bool(frame["synthetic"].astype(bool).any()) if len(frame) else False
    if frame.empty:
        for ax in axes:
            ax.set_yticks([])
        fig.text(0.5, 0.5, "no cell has both our result and a paper value", ha="center", va="center",
                 fontsize=14, color="dimgray")
    ypos = {lbl: i for i, lbl in enumerate(labels)}
    for ax, metric in zip(axes, plan.METRICS):
        part = frame[frame["metric"] == metric]
        ax.axvline(0.0, color="black", linewidth=1)
        ax.set_title(metric)
        ax.set_xlabel("ours − paper")
        if part.empty:
            continue
        # panels have their own x scale: say so, in the metric's units (fractions, not %)
        # nan-aware: a cell of one seed has no interval (its bar is not drawn, its dot is)
        width = float(pd.concat([part["hi"], part["lo"], part["diff"]]).abs().max(skipna=True))
        width = width if math.isfinite(width) and width > 0 else 0.01
        ax.set_xlim(-1.1 * width, 1.1 * width)
        ax.set_title(f"{metric}  (x: ±{1.1 * width:.3g}, own scale)", fontsize=10)
        y = part["label"].map(ypos)
        ax.hlines(y, part["lo"], part["hi"], colors=[PALETTE[a] for a in part["agreement"]], linewidth=2)
        sns.scatterplot(x=part["diff"].to_numpy(), y=y.to_numpy(), hue=part["agreement"].to_numpy(),
                        palette=PALETTE, hue_order=list(PALETTE), ax=ax, s=30, legend=False, zorder=3)
    if labels:
        axes[0].set_yticks(range(len(labels)), labels, fontsize=8)
        axes[0].set_ylim(len(labels) - 0.5, -0.5)
    handles = [matplotlib.lines.Line2D([], [], color=c, marker="o", label=k) for k, c in PALETTE.items()]
    top = 1 - 1.1 / height  # room for the title and, under it, the legend
    fig.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, top + 0.75 / height), ncol=len(PALETTE),
               frameon=False, title="paper's value vs our 95% CI")
    title = mark_figure(fig, "Ours − paper per cell: dot = Δ of the means, bar = our 95% CI shifted by the "
                             "paper's value", synthetic)
    fig.suptitle(title, color="red" if synthetic else "black")
    fig.tight_layout(rect=(0, 0, 1, top))
    for out in outputs:
        with atomic_path(out) as tmp:
            fig.savefig(tmp, dpi=120, format=os.path.splitext(str(out))[1].lstrip("."))
    plt.close(fig)


def write_delta(runs: pd.DataFrame, out_png: str | os.PathLike, out_pdf: str | os.PathLike,
                paper: pd.DataFrame | None = None, frames: TableFrames | None = None,
                allow_mixed: bool = False) -> pd.DataFrame:
    frame = delta_frame(runs, paper, frames, allow_mixed)
    plot_delta(frame, [out_png, out_pdf])
    return frame
