"""Paired comparisons of methods: per-seed differences on the same initial labeled set.

Two methods run with the same seed on the same (dataset, imbalance) start from the same random
initial labeled set, so their difference on that seed is free of the seed-to-seed spread that
makes the unpaired intervals of the summary wide. For every ordered pair (A, B) in a setting
and every seed both ran to the end, this module computes, in percentage points (pp, higher =
better for A):

* ``auc``: the difference of the **area under the accuracy curve**, ``AUC(A) - AUC(B)``, where
  ``AUC`` is :func:`tidal.report.stats.area_under_curve`: the trapezoid area under test accuracy
  (%) over labeled-set sizes, divided by the span from the first to the last size, i.e. the
  mean accuracy over the labeling budget (the same number as the summary's area column);
* ``final``: the difference of the test accuracy at the last cycle.

Over the paired seeds each difference gets (:class:`DiffStats`): its mean and 95% Student-t
interval (``t_{0.975, n-1} s / sqrt(n)``, none with one seed), a sign count (wins / ties /
losses, a tie being ``|d| < tie_tolerance``, 0.1 pp by default) and a two-sided Wilcoxon
signed-rank p-value when there are at least :data:`MIN_WILCOXON` seeds. The **verdict** of a
difference reads its interval: ``W`` above zero, ``L`` below zero, ``T`` straddling it (or
touching it), ``–`` without an interval (one seed).

A seed compares only when both runs are **complete** (every cycle of the setting), have the
**same labeled-set sizes** and, where the records store them, the **same initial labeled set**.
Every (A, B, seed) that does not compare is listed in ``PairedSetting.skipped`` with the reason;
nothing is dropped silently.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np

from tidal.report.stats import area_under_curve, mean_interval
from tidal.results import CycleRecord

__all__ = ["MIN_WILCOXON", "TIE_TOLERANCE", "DiffStats", "Pair", "PairedSetting", "Skipped", "diff_stats",
           "paired_comparisons", "paired_rows", "verdict"]

TIE_TOLERANCE = 0.1  # pp: a per-seed difference with |d| < this counts as a tie in the sign count
MIN_WILCOXON = 5  # fewest paired seeds for a Wilcoxon p-value (at n = 5 the smallest two-sided p is 2/32)
DIFF_LIMIT = 100.0  # pp: a difference of two accuracies lies in [-100, 100]; intervals are clipped to it


@dataclass
class DiffStats:
    """One paired difference (A - B, in pp) over the seeds both methods ran."""

    values: list[float]  # per paired seed, in the order of ``Pair.seeds``
    mean: float
    lo: float  # lower end of the t-interval, clipped to [-100, 100]; NaN with one seed
    hi: float  # upper end; NaN with one seed
    wins: int  # seeds with d >= tie tolerance
    ties: int  # seeds with |d| < tie tolerance
    losses: int  # seeds with d <= -tie tolerance
    wilcoxon_p: float | None  # two-sided signed-rank p-value; None with fewer than MIN_WILCOXON seeds

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def verdict(self) -> str:
        """``W`` (interval above 0), ``L`` (below 0), ``T`` (straddles or touches 0), ``–`` (one seed)."""
        return verdict(self.lo, self.hi)


@dataclass
class Pair:
    """Method ``a`` against method ``b`` on the seeds both ran to the end (differences are A - B)."""

    a: str
    b: str
    seeds: list[int]
    auc: DiffStats  # area under the accuracy curve (mean accuracy over the budget), pp
    final: DiffStats  # test accuracy at the last cycle, pp


@dataclass
class Skipped:
    """A seed of a pair that does not compare, and why."""

    a: str
    b: str
    seed: int
    reason: str


@dataclass
class PairedSetting:
    """Every ordered pair of one (dataset, imbalance) setting."""

    dataset: str
    imbalance: float
    methods: list[str]  # in the summary's order (random first, then alphabetical)
    n_labeled: list[int]  # labeled-set size per cycle of a complete run
    pairs: dict[tuple[str, str], Pair] = field(default_factory=dict)  # (a, b) -> Pair, both orders; >= 1 seed
    skipped: list[Skipped] = field(default_factory=list)  # both orders, like ``pairs``
    tie_tolerance: float = TIE_TOLERANCE
    confidence: float = 0.95

    def pair(self, a: str, b: str) -> Pair | None:
        """A against B, or None when no seed of theirs compares."""
        return self.pairs.get((a, b))


def verdict(lo: float, hi: float) -> str:
    """The reading of an interval of a difference A - B: ``W`` when it lies above zero, ``L``
    below zero, ``T`` when it contains zero, ``–`` when there is none (NaN: one seed)."""
    if lo != lo or hi != hi:
        return "–"
    if lo > 0:
        return "W"
    if hi < 0:
        return "L"
    return "T"


def _wilcoxon(d: np.ndarray) -> float:
    """Two-sided Wilcoxon signed-rank p-value of ``d`` (zero differences dropped, scipy's default);
    1.0 when every difference is zero (no evidence of any direction)."""
    if not np.any(d != 0):
        return 1.0
    from scipy import stats

    return float(stats.wilcoxon(d, alternative="two-sided").pvalue)


def diff_stats(values: list[float], confidence: float = 0.95, tie_tolerance: float = TIE_TOLERANCE,
               min_wilcoxon: int = MIN_WILCOXON) -> DiffStats:
    """The over-seeds statistics of paired differences ``values`` (``[n]``, pp, n >= 1)."""
    d = np.asarray(values, dtype=float)
    if d.size == 0:
        raise ValueError("diff_stats needs at least one paired difference; got none")
    mean, lo, hi = mean_interval(d, confidence, -DIFF_LIMIT, DIFF_LIMIT)
    wins = int(np.sum(d >= tie_tolerance))
    losses = int(np.sum(d <= -tie_tolerance))
    p = _wilcoxon(d) if d.size >= min_wilcoxon else None
    return DiffStats([float(x) for x in d], mean, lo, hi, wins, d.size - wins - losses, losses, p)


def _runs(recs: list[CycleRecord]) -> dict[str, dict[int, dict[int, CycleRecord]]]:
    by: dict[str, dict[int, dict[int, CycleRecord]]] = defaultdict(lambda: defaultdict(dict))
    for r in recs:
        by[r.method][r.seed][r.cycle] = r
    return by


def _why_not(a: str, b: str, run_a: dict[int, CycleRecord] | None, run_b: dict[int, CycleRecord] | None,
             cycles: int) -> str | None:
    """Why seed runs ``run_a`` and ``run_b`` (cycle -> record) do not compare, or None when they do."""
    for name, run in ((a, run_a), (b, run_b)):
        if run is None:
            return f"no {name} run"
    for name, run in ((a, run_a), (b, run_b)):
        if sorted(run) != list(range(cycles)):
            return f"{name} incomplete ({len(run)} of {cycles} cycles)"
    sizes_a = [run_a[c].n_labeled for c in range(cycles)]
    sizes_b = [run_b[c].n_labeled for c in range(cycles)]
    if sizes_a != sizes_b:
        return f"labeled-set sizes differ ({a}: {sizes_a}, {b}: {sizes_b})"
    first_a, first_b = run_a[0].labeled, run_b[0].labeled
    if first_a and first_b and sorted(first_a) != sorted(first_b):
        return "different initial labeled sets"
    return None


def _setting(recs: list[CycleRecord], expected: int | None, confidence: float, tie_tolerance: float,
             min_wilcoxon: int) -> PairedSetting:
    by = _runs(recs)
    cycles = max(expected or 0, 1 + max(r.cycle for r in recs))
    methods = sorted(by, key=lambda m: (m != "random", m))
    out = PairedSetting(recs[0].dataset, recs[0].imbalance, methods, [], tie_tolerance=tie_tolerance,
                        confidence=confidence)
    for a in methods:
        for b in methods:
            if a == b:
                continue
            seeds, auc, final = [], [], []
            for seed in sorted(set(by[a]) | set(by[b])):
                run_a, run_b = by[a].get(seed), by[b].get(seed)
                why = _why_not(a, b, run_a, run_b, cycles)
                if why is not None:
                    out.skipped.append(Skipped(a, b, seed, why))
                    continue
                sizes = [run_a[c].n_labeled for c in range(cycles)]
                acc_a = [100.0 * run_a[c].accuracy for c in range(cycles)]
                acc_b = [100.0 * run_b[c].accuracy for c in range(cycles)]
                seeds.append(seed)
                auc.append(area_under_curve(sizes, acc_a) - area_under_curve(sizes, acc_b))
                final.append(acc_a[-1] - acc_b[-1])
                out.n_labeled = out.n_labeled or sizes
            if seeds:
                out.pairs[(a, b)] = Pair(a, b, seeds, diff_stats(auc, confidence, tie_tolerance, min_wilcoxon),
                                         diff_stats(final, confidence, tie_tolerance, min_wilcoxon))
    return out


def paired_comparisons(records: list[CycleRecord], cycles: int | None = None, confidence: float = 0.95,
                       tie_tolerance: float = TIE_TOLERANCE, min_wilcoxon: int = MIN_WILCOXON) -> list[PairedSetting]:
    """One :class:`PairedSetting` per (dataset, imbalance), in sorted order.

    ``cycles``: the number of cycles of a finished run (the experiment's ``al.cycles``); a run
    compares only with all of them; without it, the most cycles stored in the setting.
    ``tie_tolerance`` (pp, >= 0): per-seed differences with ``|d| <`` it are ties in the sign
    count. ``min_wilcoxon``: fewest paired seeds for a Wilcoxon p-value.
    """
    if not 0 < confidence < 1:
        raise ValueError(f"confidence={confidence} must be in (0, 1), e.g. 0.95")
    if not (tie_tolerance >= 0 and math.isfinite(tie_tolerance)):
        raise ValueError(f"tie_tolerance={tie_tolerance} must be a finite number of points >= 0, e.g. 0.1")
    by_setting: dict[tuple[str, float], list[CycleRecord]] = defaultdict(list)
    for r in records:
        by_setting[(r.dataset, r.imbalance)].append(r)
    return [_setting(recs, cycles, confidence, tie_tolerance, min_wilcoxon) for _, recs in sorted(by_setting.items())]


def paired_rows(settings: list[PairedSetting]) -> list[dict[str, object]]:
    """One flat row per (setting, A, B) that compares, both orders, for ``paired.csv``: the
    seeds, then per quantity (``auc``, ``final``) mean, lo, hi (empty with one seed), verdict,
    wins, ties, losses and the Wilcoxon p (empty below ``MIN_WILCOXON`` seeds)."""
    rows = []
    for ps in settings:
        for (a, b), pair in ps.pairs.items():
            row: dict[str, object] = {"dataset": ps.dataset, "imbalance": ps.imbalance, "a": a, "b": b,
                                      "seeds": " ".join(str(x) for x in pair.seeds)}
            for key in ("auc", "final"):
                d: DiffStats = getattr(pair, key)
                row.update({f"{key}_mean": d.mean, f"{key}_lo": "" if d.lo != d.lo else d.lo,
                            f"{key}_hi": "" if d.hi != d.hi else d.hi, f"{key}_verdict": d.verdict,
                            f"{key}_wins": d.wins, f"{key}_ties": d.ties, f"{key}_losses": d.losses,
                            f"{key}_wilcoxon_p": "" if d.wilcoxon_p is None else d.wilcoxon_p})
            rows.append(row)
    return rows
