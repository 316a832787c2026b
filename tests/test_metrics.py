"""tidal.metrics: AUROC against hand-computed answers and the Mann-Whitney U statistic."""

import numpy as np
import pytest
from scipy import stats as sps

from tidal.metrics import auroc


def test_auroc_by_hand():
    # positives 0.35 and 0.8, negatives 0.1 and 0.4: of the 4 pairs, 3 rank the positive higher
    assert auroc([0.1, 0.4, 0.35, 0.8], [False, False, True, True]) == 0.75
    # ties count one half: pos {2, 3} vs neg {1, 2}: (1 + 0.5 + 1 + 1) / 4
    assert auroc([1, 2, 2, 3], [False, True, False, True]) == 0.875
    assert auroc([5, 5, 5, 5], [True, False, True, False]) == 0.5
    assert auroc([0.0, 1.0], [False, True]) == 1.0
    assert auroc([0.0, 1.0], [True, False]) == 0.0


def test_auroc_equals_pairwise_definition_and_mann_whitney():
    rng = np.random.default_rng(0)
    scores = rng.integers(0, 6, size=40).astype(float)  # many ties
    pos = rng.random(40) < 0.4
    p, n = scores[pos], scores[~pos]
    pairwise = ((p[:, None] > n[None, :]).sum() + 0.5 * (p[:, None] == n[None, :]).sum()) / (p.size * n.size)
    assert auroc(scores, pos) == pytest.approx(pairwise, rel=1e-12)
    u = sps.mannwhitneyu(p, n).statistic
    assert auroc(scores, pos) == pytest.approx(u / (p.size * n.size), rel=1e-12)


def test_auroc_errors():
    with pytest.raises(ValueError, match="0 positive"):
        auroc([0.1, 0.2], [False, False])
    with pytest.raises(ValueError, match="3 values"):
        auroc([0.1, 0.2, 0.3], [True, False])
    with pytest.raises(ValueError, match="NaN"):
        auroc([0.1, float("nan")], [True, False])
