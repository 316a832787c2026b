"""The statistics of the report, as plain functions of numpy arrays.

* ``mean_ci``: mean and the half-width of its Student-t confidence interval across seeds
  (the paper's "average accuracy and 95% confidence interval with three trials", §5.1);
  ``mean_interval``: the same interval as (mean, low, high), clipped to the range the
  quantity can take (accuracy in [0, 100] %, a count in [0, budget], ...): with three seeds a
  t-interval is ±2.48 standard errors and otherwise runs past what is possible.
* ``kl_divergence``: row-wise KL(p || q) of probability vectors (Figure 7).
* ``area_under_curve``: trapezoid area under accuracy vs. number of labels, divided by the
  label range, so it reads as a mean accuracy over the budget.

scipy (a dependency of the package) is imported inside the functions that use it, so
importing this module stays cheap.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["area_under_curve", "kl_divergence", "mean_ci", "mean_interval", "t_quantile"]


def t_quantile(q: float, df: float) -> float:
    """The ``q`` quantile of Student's t with ``df`` degrees of freedom (``scipy.stats.t.ppf``), 0.5 <= q < 1."""
    if not 0.5 <= q < 1:
        raise ValueError(f"q={q} must be in [0.5, 1)")
    if df < 1:
        raise ValueError(f"df={df} must be >= 1 (at least two values)")
    from scipy import stats

    return float(stats.t.ppf(q, df))


def mean_ci(values: np.ndarray | list[float], confidence: float = 0.95) -> tuple[float, float]:
    """Mean of ``values`` (shape ``[n]``, one per seed) and the half-width of its CI.

    The half-width is ``t_{(1+confidence)/2, n-1} * s / sqrt(n)`` with ``s`` the sample
    standard deviation (ddof=1), so ``mean ± half`` is the Student-t interval
    ``scipy.stats.t.interval(confidence, n-1, loc=mean, scale=s/sqrt(n))``. With one value the
    interval is undefined and the half-width is NaN. The interval is not clipped: see
    :func:`mean_interval`.
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


def mean_interval(values: np.ndarray | list[float], confidence: float = 0.95, low: float = -math.inf,
                  high: float = math.inf) -> tuple[float, float, float]:
    """``(mean, lo, hi)``: the Student-t interval of :func:`mean_ci` clipped to ``[low, high]``,
    the range the quantity can take. ``lo`` and ``hi`` are NaN with a single value."""
    if not low <= high:
        raise ValueError(f"low={low} must be <= high={high}")
    mean, half = mean_ci(values, confidence)
    if half != half:
        return mean, math.nan, math.nan
    return mean, max(mean - half, low), min(mean + half, high)


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
