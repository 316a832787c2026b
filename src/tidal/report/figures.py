"""Figures of one (dataset, imbalance) setting, drawn from its ``SettingSummary`` (stored results only).

* ``relative``: relative accuracy improvement over random per cycle, mean and CI shaded
  across seeds (the paper's Figures 3-5), one panel per method (small multiples);
* ``accuracy``: absolute test accuracy per cycle with CI (the paper's appendix D), one panel
  per method against random;
* ``ablation``: TiDAL's TD-based scores against the snapshot scores they replace (Figure 6);
* ``classes``: tail-class samples selected per round and the final labeled count of each
  class (by name), as two colour tables with the numbers written in;
* ``timing``: wall time per cycle split into training, scoring and evaluation.

Figures 2 and 7 are drawn from arrays by ``tidal.report.td_figures`` (re-exported here), fed
by ``tidal.report.analyses`` from the ``td_tracking`` rows and ``analysis/*.npz`` files.
Every shaded band is the Student-t interval clipped to the attainable range (see
``tidal.report.summary.LIMITS``); legends sit outside the axes or in the panel titles.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from tidal.report.style import method_color, new_figure, save_figure
from tidal.report.summary import REFERENCE, Curve, SettingSummary
from tidal.report.tables import budget_text, ci_caption, tail_names
from tidal.report.td_figures import plot_score_distributions, plot_td_prediction_kl

__all__ = [
    "ABLATION",
    "plot_ablation",
    "plot_accuracy",
    "plot_classes",
    "plot_relative",
    "plot_score_distributions",
    "plot_td_prediction_kl",
    "plot_timing",
    "write_setting_figures",
]

# Figure 6: TiDAL's TD-based scores (solid) and the snapshot scores they stand in for (dashed).
ABLATION: dict[str, str] = {
    "tidal-entropy": r"tidal-entropy: $\bar{H}(\tilde{p}_m)$",
    "tidal-margin": r"tidal-margin: $\bar{M}(\tilde{p}_m)$",
    "tidal-exact": r"tidal-exact: $\bar{H}(\bar{p})$",
    "tidal-margin-self": r"tidal-margin-self: $\bar{M}(\tilde{p}_m)$ at argmax $\tilde{p}_m$",
    "entropy": r"entropy: $H(p)$",
    "margin": r"margin: $M(p)$",
}
_SNAPSHOT = ("entropy", "margin")
_FAMILY = {"tidal-entropy": "entropy", "tidal-exact": "entropy", "entropy": "entropy",  # Figure 6's panels
           "tidal-margin": "margin", "tidal-margin-self": "margin", "margin": "margin"}


def _title(s: SettingSummary, what: str) -> str:
    return f"{s.dataset}, imbalance ratio {s.imbalance:g}: {what}"


def _band(ax, x: list[float], c: Curve, method: str, label: str | None = None, linestyle: str = "-",
          color: str | None = None) -> None:
    """A mean curve with markers and its clipped CI shaded (nothing shaded where there is a single seed)."""
    color = color or method_color(method)
    ax.plot(x, c.mean, marker="o", markersize=4, color=color, linestyle=linestyle, label=label or method,
            linewidth=2.2 if method.startswith("tidal") else 1.6)
    ax.fill_between(x, np.asarray(c.lo, dtype=float), np.asarray(c.hi, dtype=float), color=color, alpha=0.18,
                    linewidth=0)


def _legend_outside(ax, handles: list | None = None) -> None:
    """The legend to the right of the axes, off the data."""
    if handles or ax.get_legend_handles_labels()[0]:
        ax.legend(handles=handles, fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0)


def _finish(ax, title: str, ylabel: str, xlabel: str = "labeled samples", handles: list | None = None) -> None:
    ax.set_title(title, fontsize=11)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.set_axisbelow(True)  # grid lines behind bars and bands
    _legend_outside(ax, handles)


def _panels(methods: list[str]) -> tuple[Any, list]:
    """Small multiples: one panel per method, up to 4 a row, every panel on the same x and y axes."""
    ncols = max(1, min(4, len(methods)))  # no method but random: one empty panel says so
    nrows = max(1, math.ceil(len(methods) / ncols))
    fig, axes = new_figure(ncols=ncols, nrows=nrows, width=3.4, height=2.7, share=True)
    axes = list(np.atleast_1d(axes).ravel())
    for i, ax in enumerate(axes):
        if i >= len(methods):
            ax.set_visible(False)
        elif i + ncols >= len(methods):  # nothing drawn below: this panel shows the x tick labels
            ax.xaxis.set_tick_params(labelbottom=True)
        ax.grid(alpha=0.3)
    return fig, axes[:len(methods)]


def _panel_title(ax, method: str) -> None:
    """The method's name, in its colour, as the panel's title: the legend stays off the data."""
    ax.set_title(method, fontsize=10, color=method_color(method), fontweight="bold")


def plot_relative(s: SettingSummary, path: str | Path) -> Path:
    """Figures 3-5 as small multiples: per method, its mean relative improvement over random (%)
    per cycle with the clipped CI shaded, against random's 0 line (grey, dashed)."""
    methods = [m for m in s.methods if m != REFERENCE]
    fig, axes = _panels(methods)
    if not methods:
        fig.axes[0].set_visible(True)
        fig.axes[0].text(0.5, 0.5, "only random ran: nothing to compare", ha="center", va="center",
                         transform=fig.axes[0].transAxes)
    for ax, m in zip(axes, methods):
        ax.axhline(0.0, color=method_color(REFERENCE), linestyle="--", linewidth=1.2)
        _band(ax, s.n_labeled, s.relative[m], m)
        _panel_title(ax, m)
    fig.supxlabel("labeled samples", fontsize=10)
    fig.supylabel("relative accuracy improvement over random (%)", fontsize=10)
    fig.suptitle(_title(s, "improvement over random (grey dashed line: random)"), fontsize=12)
    return save_figure(fig, path)


def _has_reference(s: SettingSummary) -> bool:
    """Random and at least one other method: the accuracy panels draw random in each."""
    return REFERENCE in s.methods and len(s.methods) > 1


def plot_accuracy(s: SettingSummary, path: str | Path) -> Path:
    """Small multiples: per method, its test accuracy (%) per cycle with the clipped CI shaded,
    against random's (grey, dashed) when the setting has random runs."""
    has_ref = _has_reference(s)
    methods = [m for m in s.methods if m != REFERENCE] if has_ref else list(s.methods)
    fig, axes = _panels(methods)
    for ax, m in zip(axes, methods):
        if has_ref:
            _band(ax, s.n_labeled, s.accuracy[REFERENCE], REFERENCE, linestyle="--", color="#888888")
        _band(ax, s.n_labeled, s.accuracy[m], m)
        _panel_title(ax, m)
    fig.supxlabel("labeled samples", fontsize=10)
    fig.supylabel("test accuracy (%)", fontsize=10)
    fig.suptitle(_title(s, "test accuracy" + (" (grey dashed: random)" if has_ref else "")), fontsize=12)
    return save_figure(fig, path)


def ablation_methods(s: SettingSummary) -> list[str]:
    """The Figure 6 methods this setting has; empty unless it has a TiDAL and a snapshot method."""
    present = [m for m in ABLATION if m in s.methods]
    has_tidal = any(m.startswith("tidal") for m in present)
    return present if has_tidal and any(m in _SNAPSHOT for m in present) else []


def plot_ablation(s: SettingSummary, path: str | Path) -> Path | None:
    """Figure 6, one panel per estimator (entropy, margin): TiDAL's TD-based scores (solid) against
    the snapshot score they replace (dashed); None when the setting lacks either kind."""
    methods = ablation_methods(s)
    if not methods:
        return None
    families = [[m for m in methods if _FAMILY[m] == f] for f in _SNAPSHOT]
    families = [f for f in families if f]
    fig, axes = new_figure(ncols=len(families), width=5.2, height=3.8, share=True)
    curves, ylabel = (s.relative, "rel. improvement over random (%)") if s.relative else \
        (s.accuracy, "test accuracy (%)")
    for ax, family in zip(np.atleast_1d(axes), families):
        if s.relative:
            ax.axhline(0.0, color=method_color(REFERENCE), linestyle="--", linewidth=1.2, label=REFERENCE)
        for m in family:
            _band(ax, s.n_labeled, curves[m], m, ABLATION[m], "--" if m in _SNAPSHOT else "-")
        ax.grid(alpha=0.3)
        ax.set_title(f"{_FAMILY[family[0]]}: TD (solid) vs. snapshot (dashed)", fontsize=10)
        ax.set_xlabel("labeled samples")
        ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.18), ncols=2)  # below the axes
    np.atleast_1d(axes)[0].set_ylabel(ylabel)
    fig.suptitle(_title(s, "TD-based vs. model-snapshot scores"), fontsize=12)
    return save_figure(fig, path)


def _heatmap(ax, values: np.ndarray, rows: list[str], cols: list[str], norm: Any, cmap: str,
             cells: list[list[str]]) -> Any:
    """``values`` [rows, cols] as coloured cells (NaN blank), each with its text from ``cells``."""
    image = ax.imshow(np.ma.masked_invalid(values), aspect="auto", cmap=cmap, norm=norm)
    ax.set_yticks(range(len(rows)), rows)
    ax.set_xticks(range(len(cols)), cols, rotation=35, ha="right")
    for i, row in enumerate(cells):
        for j, text in enumerate(row):
            v = values[i, j]
            dark = v == v and norm(v) > 0.6  # white text on the dark end of the colour map
            ax.text(j, i, text, ha="center", va="center", fontsize=7, color="white" if dark else "black")
    for label in ax.get_yticklabels():
        label.set_color(method_color(label.get_text()))
    return image


def plot_classes(s: SettingSummary, path: str | Path) -> Path:
    """Two tables of colour (rows: methods): tail-half samples selected per round, as a share of
    the round's budget (left); labeled samples per class, by class name, at the end (right)."""
    from matplotlib.colors import LogNorm, Normalize
    from matplotlib.patches import Rectangle
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    rounds = [f"{a}→{b}" for a, b in zip(s.n_labeled[:-1], s.n_labeled[1:])]
    height = 0.32 * len(s.methods) + 1.6
    fig, (left, right) = new_figure(ncols=2, width=6.0, height=height,
                                    width_ratios=[max(len(rounds), 2), max(s.num_classes, 2)])
    if rounds:
        share = np.array([[x / b for x, b in zip(s.tail_selected[m].mean, s.budgets)] for m in s.methods])
        cells = [[_count_cell(c.mean[r], c.lo[r], c.hi[r]) for r in range(len(rounds))]
                 for c in (s.tail_selected[m] for m in s.methods)]
        image = _heatmap(left, share, s.methods, rounds, Normalize(0.0, 1.0), "Oranges", cells)
        fig.colorbar(image, ax=left, label="share of the round's budget", shrink=0.8)
    else:
        left.text(0.5, 0.5, "a single cycle: nothing selected", ha="center", transform=left.transAxes)
    left.set_title(f"tail-half samples selected per round\nmean [{100 * s.confidence:g}% CI] across seeds",
                   fontsize=10)
    left.set_xlabel("labeled samples before→after the round")
    counts = np.array([s.final_counts[m] for m in s.methods], dtype=float)
    positive = counts[np.isfinite(counts) & (counts > 0)]
    log = positive.size > 0 and positive.max() >= 10 * positive.min()  # long tails read better on a log scale
    norm = LogNorm(positive.min(), positive.max()) if log else Normalize(0.0, positive.max() if positive.size else 1.0)
    cells = [[_count_cell(v) for v in row] for row in counts]
    values = np.where(counts > 0, counts, np.nan) if log else counts
    image = _heatmap(right, values, s.methods, s.class_names, norm, "Blues", cells)
    bar = fig.colorbar(image, ax=right, label="labeled samples" + (" (log scale)" if log else ""), shrink=0.8)
    if log:  # plain numbers at 1, 2, 5 x 10^k instead of 6 x 10^1
        bar.ax.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
        bar.ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        bar.ax.yaxis.set_minor_formatter(NullFormatter())
    if s.tail:
        right.add_patch(Rectangle((s.tail[0] - 0.5, -0.5), len(s.tail), len(s.methods), fill=False,
                                  edgecolor="#d62728", linewidth=2.0))
    right.set_title(f"labeled samples per class at {s.n_labeled[-1]} labels, mean across seeds\n"
                    "tail half boxed in red", fontsize=10)
    fig.suptitle(_title(s, "class make-up of the selections"), fontsize=12)
    return save_figure(fig, path)


def _count_cell(mean: float, lo: float = math.nan, hi: float = math.nan) -> str:
    if mean != mean:
        return "–"
    return f"{mean:.0f}" if lo != lo else f"{mean:.0f}\n[{lo:.0f}, {hi:.0f}]"


def plot_timing(s: SettingSummary, path: str | Path) -> Path:
    """Stacked bars of seconds per cycle by phase (left) and total seconds per cycle (right)."""
    from matplotlib.patches import Patch

    fig, (left, right) = new_figure(ncols=2, width=5.6)
    x = np.arange(len(s.methods))
    keys = []
    phases = [("train", {}, 1.0), ("score", {"hatch": "//"}, 0.6), ("eval", {"hatch": ".."}, 0.35)]
    bottom = np.zeros(len(s.methods))
    for phase, style, alpha in phases:
        heights = np.array([getattr(s.timing[m], phase) for m in s.methods])
        left.bar(x, heights, bottom=bottom, color=[method_color(m) for m in s.methods], alpha=alpha,
                 edgecolor="black", linewidth=0.6, **style)
        keys.append(Patch(facecolor="#bbbbbb", alpha=alpha, edgecolor="black", label=phase, **style))
        bottom += heights
    left.set_xticks(x, s.methods, rotation=30, ha="right")
    _finish(left, "mean time per cycle by phase", "wall time per cycle (s)", "method", handles=keys)
    for m in s.methods:
        right.plot(s.n_labeled, s.timing[m].per_cycle, marker="o", markersize=4, color=method_color(m), label=m)
    _finish(right, "total time per cycle", "wall time per cycle (s)")
    fig.suptitle(_title(s, "wall time"), fontsize=12)
    return save_figure(fig, path)


def write_setting_figures(s: SettingSummary, out_dir: str | Path) -> dict[str, tuple[Path, str]]:
    """Draw every figure this setting supports into ``out_dir``.

    Returns kind -> (path, caption) for the kinds drawn: ``relative`` (needs random runs),
    ``accuracy``, ``ablation`` (needs a TiDAL and a snapshot method), ``classes``, ``timing``.
    """
    out_dir = Path(out_dir)
    made: dict[str, tuple[Path, str]] = {}
    panels = "one panel per method, every panel on the same axes"
    if s.relative:
        made["relative"] = (plot_relative(s, out_dir / f"{s.slug}-relative.png"),
                            f"Relative accuracy improvement over random per cycle, {panels}, random the dashed zero "
                            f"line: {ci_caption(s.confidence, '>= -100 %', shaded=True)} "
                            "(cf. the paper's Figures 3-5).")
    made["accuracy"] = (plot_accuracy(s, out_dir / f"{s.slug}-accuracy.png"),
                        f"Test accuracy per cycle, {panels}"
                        + (", random in grey dashed in each" if _has_reference(s) else "")
                        + f": {ci_caption(s.confidence, '0-100 %', shaded=True)}.")
    ablation = plot_ablation(s, out_dir / f"{s.slug}-ablation.png")
    if ablation is not None:
        attainable = ">= -100 %" if s.relative else "0-100 %"
        made["ablation"] = (ablation, "Ablation: TD-based scores (solid) vs. model-snapshot scores (dashed): "
                                      f"{ci_caption(s.confidence, attainable, shaded=True)} "
                                      "(cf. the paper's Figure 6).")
    made["classes"] = (plot_classes(s, out_dir / f"{s.slug}-classes.png"),
                       f"Left: samples from the tail half of the classes ({tail_names(s)}) selected per round, "
                       f"{ci_caption(s.confidence, budget_text(s))}, coloured by their share of the round's budget. "
                       "Right: labeled samples of each class in the final labeled set, mean across seeds, the tail "
                       "half boxed.")
    made["timing"] = (plot_timing(s, out_dir / f"{s.slug}-timing.png"),
                      "Wall time per cycle by phase (mean across seeds and cycles), and the total per cycle.")
    return made
