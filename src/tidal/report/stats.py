"""The statistics of the report, as plain functions of numpy arrays.

* ``mean_ci``: mean and the half-width of its Student-t confidence interval across seeds
  (the paper's "average accuracy and 95% confidence interval with three trials", §5.1).
* ``auroc``: how well a score tells positives (e.g. tail-class samples) from negatives
  (Figure 2), by ranks, with ties given their average rank.
* ``kl_divergence``: row-wise KL(p || q) of probability vectors (Figure 7).
* ``area_under_curve``: trapezoid area under accuracy vs. number of labels, divided by the
  label range, so it reads as a mean accuracy over the budget.

scipy is optional (the ``report`` extra): ``t_quantile`` uses ``scipy.stats.t`` when it is
installed and otherwise inverts the exact closed-form CDF of Student's t for integer degrees
of freedom (Abramowitz & Stegun 26.7.3-4) by bisection.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["area_under_curve", "auroc", "kl_divergence", "mean_ci", "t_quantile"]


def _t_central_mass(t: float, df: int) -> float:
    """P(|T| < t) for Student's t with integer ``df`` >= 1 (A&S 26.7.3 odd df, 26.7.4 even df)."""
    theta = math.atan(t / math.sqrt(df))
    s, c = math.sin(theta), math.cos(theta)
    if df % 2 == 1:
        if df == 1:
            return 2.0 * theta / math.pi
        term, total = c, c  # cos θ (2/3 cos²θ) (4/5 cos²θ) ... up to cos^(df-2) θ
        for k in range(2, df - 1, 2):
            term *= k / (k + 1) * c * c
            total += term
        return 2.0 / math.pi * (theta + s * total)
    term, total = 1.0, 1.0  # 1 + 1/2 cos²θ + (1·3)/(2·4) cos⁴θ + ... up to cos^(df-2) θ
    for k in range(1, df - 2, 2):
        term *= k / (k + 1) * c * c
        total += term
    return s * total


def t_quantile(q: float, df: int) -> float:
    """The ``q`` quantile of Student's t with ``df`` degrees of freedom, for 0.5 <= q < 1.

    Uses ``scipy.stats.t.ppf`` when scipy is installed; otherwise (integer ``df`` only)
    bisects the exact CDF, to about 1e-12.
    """
    if not 0.5 <= q < 1:
        raise ValueError(f"q={q} must be in [0.5, 1)")
    if df < 1:
        raise ValueError(f"df={df} must be >= 1 (at least two values)")
    try:
        from scipy import stats
    except ImportError:
        return _t_quantile_exact(q, int(df))
    return float(stats.t.ppf(q, df))


def _t_quantile_exact(q: float, df: int) -> float:
    target = 2.0 * q - 1.0  # central mass between -t and t
    lo, hi = 0.0, math.pi / 2  # bisect on θ = atan(t / sqrt(df)), where the mass is monotone
    for _ in range(100):
        mid = 0.5 * (lo + hi)
        if _t_central_mass(math.tan(mid) * math.sqrt(df), df) < target:
            lo = mid
        else:
            hi = mid
    return math.tan(0.5 * (lo + hi)) * math.sqrt(df)


def mean_ci(values: np.ndarray | list[float], confidence: float = 0.95) -> tuple[float, float]:
    """Mean of ``values`` (shape ``[n]``, one per seed) and the half-width of its CI.

    The half-width is ``t_{(1+confidence)/2, n-1} * s / sqrt(n)`` with ``s`` the sample
    standard deviation (ddof=1), so ``mean ± half`` is the Student-t interval, as
    ``scipy.stats.t.interval(confidence, n-1, loc=mean, scale=s/sqrt(n))``. With one value the
    interval is undefined and the half-width is NaN.
    """
    x = np.asarray(values, dtype=float).ravel()
    if x.size == 0:
        raise ValueError("mean_ci needs at least one value; got an empty array")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence={confidence} must be in (0, 1), e.g. 0.95")
    mean = float(x.mean())
    if x.size == 1:
        return mean, float("nan")
    sem = float(x.std(ddof=1)) / math.sqrt(x.size)
    return mean, t_quantile(0.5 + confidence / 2, x.size - 1) * sem


def _average_ranks(x: np.ndarray) -> np.ndarray:
    """1-based ranks of ``x`` ``[n]``; tied values all get the mean of the ranks they span."""
    order = np.argsort(x, kind="mergesort")
    sorted_x = x[order]
    starts = np.flatnonzero(np.r_[True, sorted_x[1:] != sorted_x[:-1]])  # first position of each tie group
    ends = np.r_[starts[1:], x.size]  # one past the last
    mean_rank = (starts + 1 + ends) / 2.0  # mean of the 1-based ranks starts+1 .. ends
    ranks = np.empty(x.size)
    ranks[order] = np.repeat(mean_rank, ends - starts)
    return ranks


def auroc(scores: np.ndarray | list[float], is_positive: np.ndarray | list[bool]) -> float:
    """Area under the ROC curve of ``scores`` ``[n]`` for telling ``is_positive`` ``[n]`` apart.

    Equals P(score of a random positive > score of a random negative) + 0.5 P(equal), computed
    from the Mann-Whitney U statistic on average ranks: ``(R_pos - n_pos (n_pos + 1) / 2) /
    (n_pos n_neg)``. 1 = positives always score higher, 0.5 = chance.
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
    rank_sum = float(_average_ranks(s)[pos].sum())
    return (rank_sum - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg)


def kl_divergence(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Row-wise KL(p || q) = sum_c p_c log(p_c / q_c), in nats, for ``p``, ``q`` of shape ``[n, C]``.

    Terms with ``p_c = 0`` are 0 (0 log 0 = 0); a term with ``p_c > 0`` and ``q_c = 0`` is
    infinite. A single distribution ``[C]`` gives a ``[1]`` array. Returns ``[n]``.
    """
    p = np.atleast_2d(np.asarray(p, dtype=float))
    q = np.atleast_2d(np.asarray(q, dtype=float))
    if p.shape != q.shape:
        raise ValueError(f"p has shape {p.shape} but q has shape {q.shape}")
    terms = np.zeros_like(p)
    nz = p > 0
    with np.errstate(divide="ignore"):
        terms[nz] = p[nz] * (np.log(p[nz]) - np.log(q[nz]))
    return terms.sum(axis=1)


def area_under_curve(x: np.ndarray | list[float], y: np.ndarray | list[float]) -> float:
    """Trapezoid area under ``y`` over ``x`` (both ``[n]``, ``x`` increasing) divided by ``x[-1] - x[0]``.

    For accuracy vs. number of labeled samples this is the mean accuracy over the labeling
    budget, in the units of ``y``. A single point returns ``y[0]``.
    """
    xs = np.asarray(x, dtype=float).ravel()
    ys = np.asarray(y, dtype=float).ravel()
    if xs.shape != ys.shape or xs.size == 0:
        raise ValueError(f"x ({xs.size} values) and y ({ys.size} values) must be non-empty and of equal length")
    if xs.size == 1:
        return float(ys[0])
    if not (np.diff(xs) > 0).all():
        raise ValueError(f"x must be strictly increasing; got {xs.tolist()}")
    area = float(np.sum((xs[1:] - xs[:-1]) * (ys[1:] + ys[:-1]) / 2.0))
    return area / float(xs[-1] - xs[0])
