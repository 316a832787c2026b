"""The forest plot of paired differences against a reference method, per setting.

Two panels, one row per method (sorted by its mean paired area difference, the best on top):
left, the paired difference in area under the accuracy curve (method - reference, pp); right,
in final accuracy. Each row draws the mean (a square), its Student-t interval (a bar; none with
a single seed) and every seed's own difference (small dots), against a dashed zero line: a bar
wholly right of zero is a win over the reference, wholly left a loss. matplotlib is imported
by ``tidal.report.style.new_figure`` when drawing.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tidal.report.paired import Pair, PairedSetting
from tidal.report.style import method_color, new_figure, save_figure

__all__ = ["forest_caption", "forest_rows", "plot_forest"]


def forest_rows(ps: PairedSetting, reference: str) -> list[Pair]:
    """Each method's pair against ``reference`` (method - reference), best mean area difference first."""
    pairs = [ps.pair(m, reference) for m in ps.methods if m != reference]
    return sorted((p for p in pairs if p is not None), key=lambda p: (-p.auc.mean, p.a))


def forest_caption(ps: PairedSetting, reference: str) -> str:
    return (f"Paired differences against {reference} (method - {reference}, pp) over the seeds both ran: area under "
            f"the accuracy curve (left) and final accuracy (right); square: mean, bar: {100 * ps.confidence:g}% "
            "Student-t interval (none with one seed), dots: the single seeds. A bar wholly right of the dashed zero "
            f"line is a win over {reference}, wholly left a loss.")


def plot_forest(ps: PairedSetting, reference: str, path: str | Path) -> Path | None:
    """Draw the forest plot into ``path``; None when no method pairs with ``reference`` here."""
    rows = forest_rows(ps, reference)
    if not rows:
        return None
    fig, axes = new_figure(ncols=2, width=4.6, height=0.42 * len(rows) + 1.4, share=False)
    y = np.arange(len(rows))[::-1]  # the best on top
    for ax, key, label in ((axes[0], "auc", "area under accuracy difference (pp)"),
                           (axes[1], "final", "final accuracy difference (pp)")):
        ax.axvline(0.0, color=method_color(reference), linestyle="--", linewidth=1.2)
        for yi, p in zip(y, rows):
            d = getattr(p, key)
            color = method_color(p.a)
            if d.lo == d.lo:
                ax.plot([d.lo, d.hi], [yi, yi], color=color, linewidth=2.2, solid_capstyle="butt")
            ax.plot([d.mean], [yi], marker="s", markersize=7, color=color, linestyle="none")
            ax.plot(d.values, [yi] * len(d.values), marker="o", markersize=3, color="black", alpha=0.55,
                    linestyle="none")
        ax.set_yticks(y, [f"{p.a} (n={len(p.seeds)})" for p in rows])
        for tick, p in zip(ax.get_yticklabels(), rows):
            tick.set_color(method_color(p.a))
        ax.set_xlabel(label)
        ax.grid(alpha=0.3, axis="x")
        ax.set_axisbelow(True)
    axes[1].tick_params(labelleft=False)  # the same rows as the left panel, named there
    axes[0].set_title("area under the accuracy curve", fontsize=10)
    axes[1].set_title(f"final accuracy ({ps.n_labeled[-1]} labels)" if ps.n_labeled else "final accuracy",
                      fontsize=10)
    fig.suptitle(f"{ps.dataset}, imbalance ratio {ps.imbalance:g}: paired difference vs {reference}", fontsize=12)
    return save_figure(fig, path)
