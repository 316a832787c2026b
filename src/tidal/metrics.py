"""Measures the library computes and the report shows, below both (``tidal.analysis`` and ``tidal.report``).

* ``auroc``: how well a score tells positives (e.g. tail-class samples) from negatives
  (Figure 2): the Mann-Whitney U statistic of ``scipy.stats`` over ``n_pos n_neg``.
* ``tail_classes``: the rare half of the classes under long-tail sampling.

scipy is imported inside ``auroc``, so importing this module stays cheap.
"""

from __future__ import annotations

import numpy as np

__all__ = ["auroc", "tail_classes"]


def auroc(scores: np.ndarray | list[float], is_positive: np.ndarray | list[bool]) -> float:
    """Area under the ROC curve of ``scores`` ``[n]`` for telling ``is_positive`` ``[n]`` apart.

    Equals P(score of a random positive > score of a random negative) + 0.5 P(equal): the
    Mann-Whitney U statistic of the positives (``scipy.stats.mannwhitneyu``, ties at their
    average rank) divided by ``n_pos n_neg``. 1 = positives always score higher, 0.5 = chance.
    """
    s = np.asarray(scores, dtype=float).ravel()
    pos = np.asarray(is_positive, dtype=bool).ravel()
    if s.shape != pos.shape:
        raise ValueError(f"scores has {s.size} values but is_positive has {pos.size}")
    n_pos = int(pos.sum())
    n_neg = s.size - n_pos
    if n_pos == 0 or n_neg == 0:
        raise ValueError(f"auroc needs positives and negatives; got {n_pos} positive and {n_neg} negative")
    if not np.isfinite(s).all():
        raise ValueError("scores contain NaN or infinite values")
    from scipy import stats

    u = stats.mannwhitneyu(s[pos], s[~pos], alternative="two-sided", method="asymptotic").statistic
    return float(u) / (n_pos * n_neg)


def tail_classes(num_classes: int) -> list[int]:
    """The last ``num_classes // 2`` class indices: the rare half under long-tail sampling."""
    return list(range(num_classes - num_classes // 2, num_classes))
