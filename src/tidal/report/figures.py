"""Figures of one (dataset, imbalance) setting, drawn from its ``SettingSummary`` (stored results only).

* ``relative``: relative accuracy improvement over random per cycle, mean and CI shaded
  across seeds (the paper's Figures 3-5);
* ``accuracy``: absolute test accuracy per cycle with CI (the paper's appendix D);
* ``ablation``: TiDAL's TD-based scores against the snapshot scores they replace (Figure 6);
* ``classes``: tail-class samples selected per round and the final labeled class counts;
* ``timing``: wall time per cycle split into training, scoring and evaluation.

Figures 2 and 7 are drawn from arrays by ``tidal.report.td_figures`` (re-exported here), fed
by ``tidal.report.analyses`` from the ``td_tracking`` rows and ``analysis/*.npz`` files.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tidal.report.style import method_color, new_figure, save_figure
from tidal.report.summary import REFERENCE, Curve, SettingSummary
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


def _title(s: SettingSummary, what: str) -> str:
    return f"{s.dataset}, imbalance ratio {s.imbalance:g}: {what}"


def _band(ax, x: list[float], c: Curve, method: str, label: str | None = None, linestyle: str = "-") -> None:
    """A mean curve with markers and its CI shaded (nothing shaded where there is a single seed)."""
    mean, half = np.asarray(c.mean), np.asarray(c.half)
    color = method_color(method)
    ax.plot(x, mean, marker="o", markersize=4, color=color, linestyle=linestyle, label=label or method,
            linewidth=2.2 if method.startswith("tidal") else 1.6)
    ax.fill_between(x, mean - half, mean + half, color=color, alpha=0.18, linewidth=0)


def _finish(ax, title: str, ylabel: str, xlabel: str = "labeled samples", handles: list | None = None) -> None:
    ax.set_title(title, fontsize=11)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.set_axisbelow(True)  # grid lines behind bars and bands
    if handles:
        ax.legend(handles=handles, fontsize=8)
    elif ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)


def plot_relative(s: SettingSummary, path: str | Path) -> Path:
    """Figures 3-5: mean relative improvement over random (%) per cycle with the CI shaded."""
    fig, ax = new_figure()
    ax.axhline(0.0, color=method_color(REFERENCE), linestyle="--", linewidth=1.2, label=REFERENCE)
    for m in s.methods:
        if m != REFERENCE:
            _band(ax, s.n_labeled, s.relative[m], m)
    _finish(ax, _title(s, "improvement over random"), "relative accuracy improvement over random (%)")
    return save_figure(fig, path)


def plot_accuracy(s: SettingSummary, path: str | Path) -> Path:
    """Test accuracy (%) per cycle with the CI shaded."""
    fig, ax = new_figure()
    for m in s.methods:
        _band(ax, s.n_labeled, s.accuracy[m], m)
    _finish(ax, _title(s, "test accuracy"), "test accuracy (%)")
    return save_figure(fig, path)


def ablation_methods(s: SettingSummary) -> list[str]:
    """The Figure 6 methods this setting has; empty unless it has a TiDAL and a snapshot method."""
    present = [m for m in ABLATION if m in s.methods]
    has_tidal = any(m.startswith("tidal") for m in present)
    return present if has_tidal and any(m in _SNAPSHOT for m in present) else []


def plot_ablation(s: SettingSummary, path: str | Path) -> Path | None:
    """Figure 6: TD-based against snapshot-based scores (None when the setting lacks either)."""
    methods = ablation_methods(s)
    if not methods:
        return None
    fig, ax = new_figure()
    curves, ylabel = (s.relative, "relative accuracy improvement over random (%)") if s.relative else \
        (s.accuracy, "test accuracy (%)")
    if s.relative:
        ax.axhline(0.0, color=method_color(REFERENCE), linestyle="--", linewidth=1.2, label=REFERENCE)
    for m in methods:
        _band(ax, s.n_labeled, curves[m], m, ABLATION[m], "--" if m in _SNAPSHOT else "-")
    _finish(ax, _title(s, "TD (solid) vs. model snapshot (dashed)"), ylabel)
    return save_figure(fig, path)


def plot_classes(s: SettingSummary, path: str | Path) -> Path:
    """Tail-half samples selected per round (left) and labeled samples per class at the end (right)."""
    fig, (left, right) = new_figure(ncols=2, width=5.6)
    before = s.n_labeled[:-1]
    for m in s.methods:
        if before:
            _band(left, before, s.tail_selected[m], m)
        right.plot(range(s.num_classes), s.final_counts[m], marker="o", markersize=4, color=method_color(m), label=m)
    tail = f"classes {s.tail[0]}-{s.tail[-1]}" if s.tail else "no tail"
    if not before:
        left.text(0.5, 0.5, "a single cycle: nothing selected", ha="center", transform=left.transAxes)
    _finish(left, f"tail-half samples selected ({tail})", "samples selected from tail classes",
            "labeled samples before the selection")
    if s.tail:
        right.axvspan(s.tail[0] - 0.5, s.tail[-1] + 0.5, color="#999999", alpha=0.12, label="tail half")
    counts = np.asarray([s.final_counts[m] for m in s.methods], dtype=float)
    if np.nanmin(counts) > 0 and np.nanmax(counts) / np.nanmin(counts) >= 10:  # long tails read better on a log axis
        from matplotlib.ticker import ScalarFormatter

        right.set_yscale("log")
        right.yaxis.set_major_formatter(ScalarFormatter())
    _finish(right, f"labeled set at {s.n_labeled[-1]} labels", "labeled samples per class", "class index")
    fig.suptitle(_title(s, "class make-up of the selections"), fontsize=12)
    return save_figure(fig, path)


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
    ci = f"{100 * s.confidence:g}% CI across seeds shaded"
    made: dict[str, tuple[Path, str]] = {}
    if s.relative:
        made["relative"] = (plot_relative(s, out_dir / f"{s.slug}-relative.png"),
                            f"Relative accuracy improvement over random per cycle; {ci} (cf. the paper's Figures 3-5).")
    made["accuracy"] = (plot_accuracy(s, out_dir / f"{s.slug}-accuracy.png"), f"Test accuracy per cycle; {ci}.")
    ablation = plot_ablation(s, out_dir / f"{s.slug}-ablation.png")
    if ablation is not None:
        made["ablation"] = (ablation, f"Ablation: TD-based scores (solid) vs. model-snapshot scores (dashed); {ci} "
                                      "(cf. the paper's Figure 6).")
    made["classes"] = (plot_classes(s, out_dir / f"{s.slug}-classes.png"),
                       "Samples from the tail half of the classes selected per round (mean across seeds, CI shaded), "
                       "and labeled samples per class in the final labeled set (mean across seeds).")
    made["timing"] = (plot_timing(s, out_dir / f"{s.slug}-timing.png"),
                      "Wall time per cycle by phase (mean across seeds and cycles), and the total per cycle.")
    return made
