"""Figure 2: ablation of MulSupCon_CLD on Scene and PASCAL across the six metrics.

Full CLD against w/o α, w/o β and w/o all, one panel per dataset, bars = mean over seeds, error
bars = sample standard deviation. The paper prints no numbers for this figure, so only ours are
plotted. A dataset without results gets an empty panel that says why; synthetic data is stamped
SYNTHETIC on the figure.
"""

from __future__ import annotations

import os
from typing import Iterable

import pandas as pd

from ..atomic import atomic_path, write_text
from ..pipeline import plan
from . import layouts
from .format import SYNTHETIC, mark_figure
from .tables import compute_cells


def figure2_frame(runs: pd.DataFrame, ablations: Iterable[str] = plan.ABLATIONS,
                  allow_mixed: bool = False) -> pd.DataFrame:
    """One row per bar: dataset, variant (``row``), metric, ours_mean, ours_std, n, status, note; a
    bar never combines runs that computed differently (:mod:`.homogeneity`; ``allow_mixed``)."""
    return compute_cells(layouts.figure2_cells(tuple(ablations)), runs, None, tolerance=0.0, allow_mixed=allow_mixed)


def plot_figure2(frame: pd.DataFrame, outputs: Iterable[str | os.PathLike]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.patches
    import matplotlib.pyplot as plt
    import seaborn as sns

    sns.set_theme(style="whitegrid", context="notebook")
    variants = list(dict.fromkeys(frame["row"]))
    colors = dict(zip(variants, sns.color_palette("colorblind", len(variants))))
    synthetic = bool(frame.loc[frame["status"] == "ok", "synthetic"].astype(bool).any())
    fig, axes = plt.subplots(1, len(plan.FIGURE2_DATASETS), figsize=(13, 4.6), sharey=False)
    width = 0.8 / max(len(variants), 1)
    legend_labels: dict[str, str] = {}
    for ax, ds, title in zip(axes, plan.FIGURE2_DATASETS, layouts.FIGURE2_TITLES):
        part = frame[frame["dataset"] == ds]
        ok = part[part["status"] == "ok"]
        ax.set_title(title + (f" ({SYNTHETIC})" if ok["synthetic"].astype(bool).any() else ""))
        ax.set_xticks(range(len(plan.METRICS)), plan.METRICS)
        ax.set_xlim(-0.6, len(plan.METRICS) - 0.4)
        if ok.empty:
            reason = part["note"].iloc[0] if len(part) else "no runs"
            ax.text(0.5, 0.5, "no results:\n" + _wrap(reason), ha="center", va="center", transform=ax.transAxes,
                    fontsize=9, color="dimgray")
            ax.set_yticks([])
            ax.grid(False)
            continue
        for i, variant in enumerate(variants):
            v = part[part["row"] == variant].set_index("metric").reindex(list(plan.METRICS))
            xs = [m + (i - (len(variants) - 1) / 2) * width for m in range(len(plan.METRICS))]
            ax.bar(xs, v["ours_mean"], width, yerr=v["ours_std"].fillna(0.0), capsize=2, color=colors[variant],
                   edgecolor="white", linewidth=0.5)
        lo = (ok["ours_mean"] - ok["ours_std"].fillna(0.0)).min()
        hi = (ok["ours_mean"] + ok["ours_std"].fillna(0.0)).max()
        pad = max(0.02, 0.1 * (hi - lo))
        ax.set_ylim(max(0.0, lo - pad), min(1.0, hi + pad) if hi < 1.0 else hi + pad)
        ax.set_ylabel("score (↑)")
        for i, variant in enumerate(variants):
            n = part.loc[part["row"] == variant, "n"].max()
            legend_labels[variant] = f"{variant} (n={int(n)})" if n == n else variant
    handles = [matplotlib.patches.Patch(color=colors[v], label=legend_labels.get(v, v)) for v in variants]
    fig.legend(handles=handles, loc="lower center", ncol=len(variants), frameon=False)
    suptitle = mark_figure(fig, "Figure 2 (regenerated): ablation of MulSupCon_CLD (mean ± std over seeds)",
                           synthetic)
    fig.suptitle(suptitle, color="red" if synthetic else "black")
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    for out in outputs:
        suffix = os.path.splitext(str(out))[1]
        with atomic_path(out) as tmp:
            fig.savefig(tmp, dpi=150, format=suffix.lstrip("."))
    plt.close(fig)


def _wrap(text: str, width: int = 50) -> str:
    import textwrap

    return "\n".join(textwrap.wrap(text, width)[:6])


def write_figure2(runs: pd.DataFrame, out_png: str, out_pdf: str, out_csv: str | None = None,
                  ablations: Iterable[str] = plan.ABLATIONS, allow_mixed: bool = False) -> pd.DataFrame:
    frame = figure2_frame(runs, ablations, allow_mixed)
    plot_figure2(frame, [out_png, out_pdf])
    if out_csv:
        cols = ["dataset", "row", "ablation", "metric", "status", "ours_mean", "ours_std", "n", "seeds",
                "synthetic", "scale", "note", "mixed", "cpu_note"]
        write_text(out_csv, frame[cols].rename(columns={"row": "variant"}).to_csv(index=False))
    return frame
