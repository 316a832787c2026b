"""Figures 2 and 7 of the paper, drawn from arrays (``tidal.report.analyses`` feeds them what a run stores).

* ``plot_td_prediction_kl`` (Figure 7): per epoch, the test-set mean of KL(p̄(T) || p̃_m(t))
  (the TD prediction module) and KL(p̄(T) || p(t)) (the model snapshot), where p̄(T) is the
  actual TD at the end of training.
* ``plot_score_distributions`` (Figure 2): density of each uncertainty score (snapshot H, M;
  TD-based H̄, M̄) for head- and tail-class samples, with the score's AUROC at telling tail from
  head. Densities use ``scipy.stats.gaussian_kde`` when scipy is installed, else histograms.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from tidal.metrics import auroc
from tidal.report.style import method_color, new_figure, save_figure

__all__ = ["plot_score_distributions", "plot_td_prediction_kl"]

_HEAD, _TAIL = "#1f77b4", "#d62728"  # head / tail classes, in every panel


def plot_td_prediction_kl(epochs: np.ndarray, kl_module: np.ndarray, kl_snapshot: np.ndarray,
                          path: str | Path, title: str | None = None) -> Path:
    """Figure 7: mean KL divergence (nats) to the actual TD per epoch, ``[E]`` arrays each;
    ``title`` replaces the generic one (e.g. to name the setting and method)."""
    epochs, kl_module, kl_snapshot = (np.asarray(a, dtype=float).ravel() for a in (epochs, kl_module, kl_snapshot))
    if not epochs.size == kl_module.size == kl_snapshot.size > 0:
        raise ValueError(f"epochs ({epochs.size}), kl_module ({kl_module.size}) and kl_snapshot "
                         f"({kl_snapshot.size}) must be non-empty and of equal length")
    fig, ax = new_figure()
    ax.plot(epochs, kl_module, marker="o", markersize=3, color=method_color("tidal-entropy"), linewidth=2,
            label=r"predicted TD: KL($\bar{p}^{(T)} \,\|\, \tilde{p}_m^{(t)}$)")
    ax.plot(epochs, kl_snapshot, marker="s", markersize=3, color=method_color("entropy"), linewidth=2,
            linestyle="--", label=r"model snapshot: KL($\bar{p}^{(T)} \,\|\, p^{(t)}$)")
    ax.set_title(title or "How well the TD prediction module approximates the actual TD", fontsize=11)
    ax.set_xlabel("epoch")
    ax.xaxis.get_major_locator().set_params(integer=True)  # epochs are whole numbers
    ax.set_ylabel("KL divergence, test-set mean (nats)")
    if min(kl_module.min(), kl_snapshot.min()) > 0:  # early epochs can be 100x the rest: log scale
        ax.set_yscale("log")
        ax.set_ylabel("KL divergence, test-set mean (nats, log scale)")
    ax.grid(alpha=0.3)
    fig.legend(fontsize=9, loc="outside lower center", ncols=2)  # below the axes, off the data
    return save_figure(fig, path)


def _density(ax, values: np.ndarray, grid: np.ndarray, color: str, label: str) -> None:
    """Gaussian KDE of ``values`` on ``grid``, or a density histogram without scipy / for constant data."""
    try:
        from scipy.stats import gaussian_kde

        density = gaussian_kde(values)(grid) if values.size > 1 and values.std() > 0 else None
    except (ImportError, np.linalg.LinAlgError):
        density = None
    if density is None:
        ax.hist(values, bins=30, range=(grid[0], grid[-1]), density=True, color=color, alpha=0.35, label=label)
        return
    ax.plot(grid, density, color=color, linewidth=2, label=label)
    ax.fill_between(grid, density, color=color, alpha=0.15, linewidth=0)


def plot_score_distributions(scores_by_name: dict[str, np.ndarray], is_tail: np.ndarray, path: str | Path) -> Path:
    """Figure 2: one panel per score (``[n]`` each, higher = more uncertain); ``is_tail`` ``[n]`` bool.

    Each panel shows the densities of head and tail samples; its title gives the AUROC of the
    score at telling tail from head (1 = every tail sample scores higher; 0.5 = no better than
    chance); one legend below the panels names the colours.
    """
    is_tail = np.asarray(is_tail, dtype=bool).ravel()
    if not scores_by_name:
        raise ValueError("scores_by_name is empty; pass e.g. {'H': ..., 'M': ..., 'H-bar': ..., 'M-bar': ...}")
    if is_tail.all() or not is_tail.any():
        raise ValueError(f"is_tail must mark some samples as tail and some as head; it has {int(is_tail.sum())} "
                         f"tail of {is_tail.size}")
    n = len(scores_by_name)
    ncols = n if n <= 3 else 2
    nrows = math.ceil(n / ncols)
    fig, axes = new_figure(ncols=ncols, nrows=nrows, width=4.6, height=3.4)
    axes = np.atleast_1d(axes).ravel()
    for ax, (name, values) in zip(axes, scores_by_name.items()):
        v = np.asarray(values, dtype=float).ravel()
        if v.size != is_tail.size:
            raise ValueError(f"score {name!r} has {v.size} values but is_tail has {is_tail.size}")
        lo, hi = float(v.min()), float(v.max())
        pad = 0.05 * (hi - lo) if hi > lo else 0.5
        grid = np.linspace(lo - pad, hi + pad, 200)
        area = auroc(v, is_tail)
        _density(ax, v[~is_tail], grid, _HEAD, f"head classes ({int((~is_tail).sum())} samples)")
        _density(ax, v[is_tail], grid, _TAIL, f"tail classes ({int(is_tail.sum())} samples)")
        ax.set_title(f"{name}: AUROC tail vs head {area:.3f}", fontsize=11)
        ax.set_xlabel(f"{name} (higher = more uncertain)")
        ax.set_ylabel("density")
        ax.grid(alpha=0.3)
    for ax in axes[n:]:
        ax.set_visible(False)
    fig.legend(*axes[0].get_legend_handles_labels(), fontsize=9, loc="outside lower center", ncols=2)
    fig.suptitle("Score distributions of head- and tail-class samples", fontsize=12)
    return save_figure(fig, path)
