"""tidal.report.stats against hand-computed answers and scipy."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps

from tidal.report.stats import area_under_curve, kl_divergence, mean_ci, mean_interval, t_quantile


def test_mean_ci_by_hand():
    # values 1, 2, 3: mean 2, sample std 1, t_{0.975, 2} = 4.302652729911275
    mean, half = mean_ci([1.0, 2.0, 3.0])
    assert mean == 2.0
    assert half == pytest.approx(4.302652729911275 / math.sqrt(3), rel=1e-9)


@pytest.mark.parametrize("values", [[0.61, 0.64, 0.66], [1.0, 4.0, 2.5, 3.5, 0.5], [10.0, 10.5]])
@pytest.mark.parametrize("confidence", [0.9, 0.95, 0.99])
def test_mean_ci_equals_scipy_interval(values, confidence):
    x = np.asarray(values)
    lo, hi = sps.t.interval(confidence, x.size - 1, loc=x.mean(), scale=sps.sem(x))
    mean, half = mean_ci(x, confidence)
    assert mean - half == pytest.approx(lo, rel=1e-10)
    assert mean + half == pytest.approx(hi, rel=1e-10)


def test_mean_ci_edges():
    mean, half = mean_ci([0.7])
    assert mean == 0.7 and math.isnan(half)  # one seed: no interval
    assert mean_ci([2.0, 2.0, 2.0]) == (2.0, 0.0)
    with pytest.raises(ValueError, match="at least one value"):
        mean_ci([])
    with pytest.raises(ValueError, match="confidence=95"):
        mean_ci([1.0, 2.0], confidence=95)


def test_t_quantile_by_hand():
    assert t_quantile(0.975, 1) == pytest.approx(12.706204736174705, rel=1e-9)  # tan(0.475 pi)
    assert t_quantile(0.975, 2) == pytest.approx(4.302652729911275, rel=1e-9)  # 2*sqrt(2)*0.95/sqrt(1-0.95^2)
    with pytest.raises(ValueError, match="df=0"):
        t_quantile(0.975, 0)


def test_mean_interval_is_the_t_interval_clipped_to_the_attainable_range():
    # values 0, 0, 50: mean 50/3, s = 50/sqrt(3), half = t_{0.975,2} * s / sqrt(3) = 4.3027 * 50/3 = 71.71
    mean, lo, hi = mean_interval([0.0, 0.0, 50.0], low=0.0, high=50.0)
    assert mean == pytest.approx(50 / 3) and (lo, hi) == (0.0, 50.0)
    mean, lo, hi = mean_interval([0.0, 0.0, 50.0])  # no limits: the plain t-interval
    half = 4.302652729911275 * 50 / 3
    assert (lo, hi) == pytest.approx((50 / 3 - half, 50 / 3 + half), rel=1e-9)
    mean, lo, hi = mean_interval([60.0, 61.0, 62.0], low=0.0, high=100.0)  # inside: unchanged
    assert (lo, hi) == pytest.approx((61 - 4.302652729911275 / math.sqrt(3), 61 + 4.302652729911275 / math.sqrt(3)))
    mean, lo, hi = mean_interval([99.0], low=0.0, high=100.0)
    assert mean == 99.0 and math.isnan(lo) and math.isnan(hi)
    with pytest.raises(ValueError, match="low=1"):
        mean_interval([1.0, 2.0], low=1.0, high=0.0)


def test_kl_divergence_by_hand():
    p = np.array([[0.5, 0.5], [1.0, 0.0], [0.2, 0.8]])
    q = np.array([[0.25, 0.75], [0.5, 0.5], [0.2, 0.8]])
    expected = [0.5 * math.log(2) + 0.5 * math.log(0.5 / 0.75), math.log(2), 0.0]  # row 2: 0 log 0 = 0
    np.testing.assert_allclose(kl_divergence(p, q), expected, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(kl_divergence(p, q), sps.entropy(p, q, axis=1), rtol=1e-12, atol=1e-15)
    assert kl_divergence([0.5, 0.5], [1.0, 0.0])[0] == math.inf
    assert kl_divergence([0.3, 0.7], [0.3, 0.7]).shape == (1,)
    with pytest.raises(ValueError, match="shape"):
        kl_divergence(np.ones((2, 3)) / 3, np.ones((2, 2)) / 2)


def test_area_under_curve_by_hand():
    # trapezoids: [0, 1] area 1, [1, 3] area 4; divided by the range 3
    assert area_under_curve([0, 1, 3], [0, 2, 2]) == pytest.approx(5 / 3)
    assert area_under_curve([100, 150, 250], [60.0, 60.0, 60.0]) == pytest.approx(60.0)
    assert area_under_curve([100], [55.0]) == 55.0
    x, y = np.array([1.0, 2.0, 4.0, 8.0]), np.array([0.3, 0.5, 0.6, 0.65])
    assert area_under_curve(x, y) == pytest.approx(np.trapezoid(y, x) / 7.0)
    with pytest.raises(ValueError, match="strictly increasing"):
        area_under_curve([1, 1, 2], [0, 1, 2])
    with pytest.raises(ValueError, match="equal length"):
        area_under_curve([1, 2], [0.5])
