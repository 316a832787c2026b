"""Paired comparisons (tidal.report.paired) against differences computed by hand.

A toy setting with labeled-set sizes 100, 200, 400 (uneven, so the trapezoid area differs from
the plain mean over cycles): area = (50 (y0 + y1) + 100 (y1 + y2)) / 300 = (y0 + 3 y1 + 2 y2) / 6.
Random scores (50 + s, 60 + s, 70 + s) % on seed s; every other method adds DELTA[method][s]
per cycle (cycle 0 is the shared initial set), so the paired area difference against random
is (3 d1 + 2 d2) / 6 and the final one d2. t quantiles are the printed table values.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from tidal.report.paired import TIE_TOLERANCE, diff_stats, paired_comparisons, verdict
from tidal.report.paired_tables import pairs_table, skipped_table, versus_table
from tidal.results import CycleRecord

SIZES = (100, 200, 400)
DELTA = {  # method -> seed -> added accuracy (pp) per cycle
    "alpha": {0: (0, 2, 4), 1: (0, 1, 1), 2: (0, -3, 3), 3: (0, 0.02, 0.01), 4: (0, 2, 2), 5: (0, 0.5, 5)},
    "beta": {0: (0, 1, 1), 1: (0, 2, 2), 2: (0, 3, 0), 3: (0, 1, 1)},  # seed 3 stops after cycle 2
    "gamma": {0: (0, 4, -2)},  # a single seed
    "delta": {0: (0, 1, 1), 1: (0, 1, 1)},  # seed 0: another initial set; seed 1: other sizes
}
# Hand-computed (3 d1 + 2 d2) / 6 and d2 against random.
AUC_ALPHA = [14 / 6, 5 / 6, -3 / 6, 0.08 / 6, 10 / 6, 11.5 / 6]
FINAL_ALPHA = [4, 1, 3, 0.01, 2, 5]
AUC_BETA = [5 / 6, 10 / 6, 9 / 6]
FINAL_BETA = [1, 2, 0]
T975 = {1: 12.7062047, 2: 4.30265273, 5: 2.57058184}  # Student-t 0.975 quantiles by degrees of freedom


def _record(method: str, seed: int, cycle: int, acc: float, sizes=SIZES, first=range(100)) -> CycleRecord:
    n = sizes[cycle]
    return CycleRecord("toy", 10.0, method, seed, cycle, n, acc / 100.0, [n // 2, n - n // 2],
                       list(first) + list(range(1000, 1000 + n - 100)), [], [], 1.0, 0.0, 0.1, 0.2, 1.0)


def toy_records() -> list[CycleRecord]:
    recs = [_record("random", s, c, 50 + 10 * c + s) for s in range(6) for c in range(3)]
    for method, seeds in DELTA.items():
        for s, d in seeds.items():
            cycles = 2 if (method, s) == ("beta", 3) else 3
            sizes = (100, 250, 400) if (method, s) == ("delta", 1) else SIZES
            first = range(1, 101) if (method, s) == ("delta", 0) else range(100)
            recs += [_record(method, s, c, 50 + 10 * c + s + d[c], sizes, first) for c in range(cycles)]
    return recs


@pytest.fixture(scope="module")
def toy():
    (ps,) = paired_comparisons(toy_records())
    return ps


def _half(values: list[float]) -> float:
    """Hand t-interval half-width: t_{0.975, n-1} s / sqrt(n)."""
    return T975[len(values) - 1] * float(np.std(values, ddof=1)) / math.sqrt(len(values))


def test_per_seed_differences_are_trapezoid_areas_and_final_accuracies(toy):
    pair = toy.pair("alpha", "random")
    assert pair.seeds == [0, 1, 2, 3, 4, 5]
    assert pair.auc.values == pytest.approx(AUC_ALPHA, abs=1e-9)
    assert pair.final.values == pytest.approx(FINAL_ALPHA, abs=1e-9)
    back = toy.pair("random", "alpha")  # the other order: the same numbers, negated
    assert back.auc.values == pytest.approx([-x for x in AUC_ALPHA], abs=1e-9)
    assert toy.n_labeled == list(SIZES)


def test_mean_interval_sign_count_and_wilcoxon_by_hand(toy):
    auc = toy.pair("alpha", "random").auc
    mean = sum(AUC_ALPHA) / 6
    assert auc.mean == pytest.approx(37.58 / 36)
    assert (auc.lo, auc.hi) == pytest.approx((mean - _half(AUC_ALPHA), mean + _half(AUC_ALPHA)), rel=1e-6)
    assert auc.lo < 0 < auc.hi and auc.verdict == "T"  # 4 seeds won, yet the interval straddles zero
    assert (auc.wins, auc.ties, auc.losses) == (4, 1, 1)  # seed 3's 0.013 pp is a tie (< 0.1)
    # |d| ranks 1..6, the one negative difference has rank 2: P(W- <= 2) = #{{}, {1}, {2}} / 2^6, two-sided x2
    assert auc.wilcoxon_p == pytest.approx(6 / 64)
    final = toy.pair("alpha", "random").final
    assert (final.wins, final.ties, final.losses) == (5, 1, 0)
    assert final.wilcoxon_p == pytest.approx(2 / 64)  # all six positive: the smallest exact p
    assert final.mean == pytest.approx(15.01 / 6)


def test_three_seeds_interval_above_zero_is_a_win_and_wilcoxon_needs_five(toy):
    pair = toy.pair("beta", "random")
    assert pair.seeds == [0, 1, 2]
    assert pair.auc.values == pytest.approx(AUC_BETA)
    mean = 24 / 18
    assert pair.auc.mean == pytest.approx(mean)
    assert (pair.auc.lo, pair.auc.hi) == pytest.approx((mean - _half(AUC_BETA), mean + _half(AUC_BETA)), rel=1e-6)
    assert pair.auc.lo == pytest.approx(0.23790, abs=1e-4) and pair.auc.verdict == "W"
    assert toy.pair("random", "beta").auc.verdict == "L"
    assert pair.auc.wilcoxon_p is None and pair.final.wilcoxon_p is None
    assert (pair.final.wins, pair.final.ties, pair.final.losses) == (2, 1, 0)


def test_pairs_between_two_non_reference_methods(toy):
    pair = toy.pair("alpha", "beta")
    assert pair.seeds == [0, 1, 2]  # beta's seed 3 is incomplete, 4 and 5 it never ran
    expected = [a - b for a, b in zip(AUC_ALPHA, AUC_BETA)]
    assert pair.auc.values == pytest.approx(expected, abs=1e-9)
    assert pair.final.values == pytest.approx([3, -1, 3], abs=1e-9)


def test_single_seed_has_no_interval_and_says_so(toy):
    pair = toy.pair("gamma", "random")
    assert pair.seeds == [0] and pair.auc.values == pytest.approx([8 / 6])
    assert math.isnan(pair.auc.lo) and math.isnan(pair.auc.hi) and pair.auc.verdict == "–"
    table = pairs_table(toy, 5).to_markdown()
    row = next(line for line in table.splitlines() if line.startswith("| gamma | random |"))
    assert "+1.33 (1 seed: no interval)" in row and "nan" not in table.lower()
    assert "n too small (1 < 5)" in row


def test_unpaired_runs_are_skipped_with_reasons_never_dropped(toy):
    reasons = {(s.a, s.b, s.seed): s.reason for s in toy.skipped}
    assert reasons[("beta", "random", 3)] == "beta incomplete (2 of 3 cycles)"
    assert reasons[("beta", "random", 4)] == "no beta run"
    assert reasons[("random", "gamma", 5)] == "no gamma run"
    assert reasons[("delta", "random", 0)] == "different initial labeled sets"
    assert reasons[("delta", "random", 1)].startswith("labeled-set sizes differ (delta: [100, 250, 400]")
    assert toy.pair("delta", "random") is None  # no seed compares
    # every (ordered pair, seed) is either paired or skipped
    seeds = {"random": set(range(6))} | {m: set(d) for m, d in DELTA.items()}
    for a in toy.methods:
        for b in toy.methods:
            if a != b:
                paired = set(toy.pair(a, b).seeds) if toy.pair(a, b) else set()
                skipped = {s.seed for s in toy.skipped if (s.a, s.b) == (a, b)}
                assert paired | skipped == seeds[a] | seeds[b] and not paired & skipped
    table = skipped_table(toy).to_markdown()
    assert "| random | beta | 4, 5 | no beta run |" in table
    assert "| random | delta | 0 | different initial labeled sets |" in table


def test_versus_table_cells(toy):
    table = versus_table(toy)
    assert table.header == ["method", "vs random", "vs alpha", "vs beta", "vs delta", "vs gamma", "W-T-L"]
    rows = {row[0]: row[1:] for row in table.rows}
    assert rows["beta"][0] == "W +1.33" and rows["random"][2] == "L -1.33"
    assert rows["alpha"][0] == "T +1.04" and rows["alpha"][1] == "·"
    assert rows["random"][3] == "skipped" and rows["gamma"][0] == "– +1.33"
    assert rows["random"][-1] == "0-1-1"  # T vs alpha, L vs beta; the single-seed and skipped pairs count nowhere


@pytest.mark.parametrize("lo,hi,expected", [(0.1, 2.0, "W"), (-2.0, -0.1, "L"), (-1.0, 1.0, "T"), (0.0, 1.0, "T"),
                                            (float("nan"), float("nan"), "–")])
def test_verdict_reads_the_interval(lo, hi, expected):
    assert verdict(lo, hi) == expected


def test_diff_stats_tie_tolerance_and_all_zero_differences():
    d = diff_stats([0.05, -0.05, 0.2, -0.2, 0.0])
    assert (d.wins, d.ties, d.losses) == (1, 3, 1) and TIE_TOLERANCE == 0.1
    assert diff_stats([0.0] * 5).wilcoxon_p == 1.0
    with pytest.raises(ValueError, match="at least one"):
        diff_stats([])
    with pytest.raises(ValueError, match="tie_tolerance=-1"):
        paired_comparisons(toy_records(), tie_tolerance=-1)
