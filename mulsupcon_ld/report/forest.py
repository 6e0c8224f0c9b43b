"""``claims.png`` (+ pdf): every tested claim's a − b with its 95% CI, the paper's Δ, the verdict.

One panel per kind of claim (in registry order), one line per claim with a test: the dot is our
difference of the means, the bar its unadjusted 95% CI, the black diamond the paper's printed Δ
(none for Figure 2 and our own questions) with, just below, its 95% interval as one run of our
spread (k = 1, the interval the exclusion test allows the paper: ``paper_ci_low``/``paper_ci_high``
of :mod:`.verdicts`), the colour the adjusted verdict. Panels have their own x scale, stated in
their titles; the vertical line is 0 (no difference).
"""

from __future__ import annotations

import os
from typing import Iterable

import pandas as pd

from ..atomic import atomic_path
from . import layouts

#: colour-blind-safe (Okabe–Ito), one per verdict a tested claim can get
PALETTE = {"holds": "#009E73", "reversed": "#D55E00", "paper effect excluded": "#E69F00",
           "printed Δ not reproduced": "#CC79A7", "inconclusive": "#0072B2", "untestable": "#999999"}
#: how far below its claim's line the paper's k = 1 interval is drawn
PAPER_OFFSET = 0.3


def forest_frame(claims: pd.DataFrame) -> pd.DataFrame:
    """The claims with a difference to draw, with a short ``label``."""
    shown = claims[claims["verdict"].isin(list(PALETTE)) & claims["diff"].notna()].copy()
    shown["label"] = [f"{r['claim_id']} {layouts.DATASET_TITLE.get(r['dataset'], r['dataset'])} {r['metric']}: "
                      f"{r['a']} vs {r['b']} (n={r['n_a']}/{r['n_b']})" for r in shown.to_dict("records")]
    return shown


def plot_forest(claims: pd.DataFrame, outputs: Iterable[str | os.PathLike]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    frame = forest_frame(claims)
    kinds = list(dict.fromkeys(frame["kind"])) or ["(no tested claim)"]
    sizes = [max(1, int((frame["kind"] == k).sum())) for k in kinds]
    height = 0.2 * sum(sizes) + 0.9 * len(kinds) + 1.9
    fig, axes = plt.subplots(len(kinds), 1, figsize=(11, height), squeeze=False,
                             gridspec_kw={"height_ratios": [s + 3 for s in sizes]})
    for ax, kind in zip(axes[:, 0], kinds):
        part = frame[frame["kind"] == kind].reset_index(drop=True)
        ax.axvline(0.0, color="black", linewidth=0.8)
        if part.empty:
            ax.text(0.5, 0.5, "no claim has runs on both sides", ha="center", va="center", transform=ax.transAxes)
            ax.set_yticks([])
            continue
        y = part.index.to_numpy()
        colours = [PALETTE[v] for v in part["verdict"]]
        ax.hlines(y, part["ci_low"], part["ci_high"], colors=colours, linewidth=1.8)
        ax.scatter(part["diff"], y, c=colours, s=18, zorder=3)
        ax.hlines(y + PAPER_OFFSET, part["paper_ci_low"], part["paper_ci_high"], colors="black", linewidth=0.8,
                  linestyles="dotted")
        ax.scatter(part["paper_diff"], y, marker="D", s=16, facecolors="none", edgecolors="black", zorder=4)
        ax.set_yticks(y, part["label"], fontsize=6)
        ax.set_ylim(len(part) - 0.5, -0.5)
        low, high = ax.get_xlim()
        ax.set_title(f"{kind} ({len(part)} tested; x: {low:+.3g} to {high:+.3g}, own scale)", fontsize=9,
                     loc="left")
        ax.tick_params(axis="x", labelsize=7)
        ax.grid(axis="x", alpha=0.3)
    axes[-1, 0].set_xlabel("a − b (metric units); bar: unadjusted 95% CI")
    handles = [Line2D([], [], color=c, marker="o", label=v) for v, c in PALETTE.items()]
    handles.append(Line2D([], [], color="black", marker="D", markerfacecolor="none", linestyle="", label="paper Δ"))
    handles.append(Line2D([], [], color="black", linewidth=0.8, linestyle="dotted",
                          label="paper Δ ± 95% as one run of ours (k = 1)"))
    top = 1 - 1.4 / height
    fig.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, 1 - 0.4 / height),
               ncol=(len(handles) + 1) // 2,
               frameon=False, fontsize=8, title="verdict (one 5% budget per family, families fixed by the registry)",
               title_fontsize=8)
    fig.suptitle("The paper's claims on our runs: a − b per claim", fontsize=11, y=1 - 0.1 / height)
    fig.tight_layout(rect=(0, 0, 1, top))
    for out in outputs:
        with atomic_path(out) as tmp:
            fig.savefig(tmp, dpi=130, format=os.path.splitext(str(out))[1].lstrip("."))
    plt.close(fig)
