"""summarize() and the tables against statistics recomputed by hand from the synthetic run."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
from scipy import stats as sps

from tidal.report import summarize
from tidal.report.tables import accuracy_table, classes_table, overview_table, relative_table, timing_table
from tidal.results import DB_NAME, ResultStore


def scipy_ci(values: list[float]) -> tuple[float, float]:
    """Mean and half-width of the 95% Student-t interval, straight from scipy."""
    x = np.asarray(values)
    if np.ptp(x) == 0:
        return float(x.mean()), 0.0  # scipy answers NaN for a zero-width interval
    lo, hi = sps.t.interval(0.95, x.size - 1, loc=x.mean(), scale=sps.sem(x))
    return float(x.mean()), float(hi - lo) / 2


def scipy_interval(values: list[float], low: float = -math.inf, high: float = math.inf) -> tuple[float, float, float]:
    """scipy's interval as (mean, low end, high end), clipped to [low, high]."""
    mean, half = scipy_ci(values)
    return mean, max(mean - half, low), min(mean + half, high)


def relative(synth, method: str, seed: int, cycle: int) -> float:
    ref = synth.accuracy("random", seed, cycle)
    return 100.0 * (synth.accuracy(method, seed, cycle) - ref) / ref


def area(synth, method: str, seed: int) -> float:
    """Area under accuracy (%) vs labels 100..250, divided by the range 150."""
    return float(np.trapezoid([100 * synth.accuracy(method, seed, c) for c in range(4)], synth.N_LABELED)) / 150.0


@pytest.fixture(scope="module")
def summary(synth, tmp_path_factory):
    path = synth.build_run(tmp_path_factory.mktemp("summary"))
    with ResultStore(path / DB_NAME) as store:
        (s,) = summarize(store.records())
    return s


def test_relative_curves_equal_hand_computation(synth, summary):
    assert summary.n_labeled == list(synth.N_LABELED)
    assert summary.methods == ["random", "entropy", "margin", "tidal-entropy"]
    for m in synth.METHODS:
        for c in range(4):
            mean, lo, hi = scipy_interval([relative(synth, m, seed, c) for seed in synth.SEEDS], low=-100.0)
            assert summary.relative[m].mean[c] == pytest.approx(mean, abs=1e-9)
            assert summary.relative[m].lo[c] == pytest.approx(lo, rel=1e-9, abs=1e-9)
            assert summary.relative[m].hi[c] == pytest.approx(hi, rel=1e-9, abs=1e-9)
    # one point by hand: seed 0 at 150 labels, tidal-entropy 0.64 vs random 0.60
    assert relative(synth, "tidal-entropy", 0, 1) == pytest.approx(100 * 0.04 / 0.60)


def test_overall_relative_and_area_equal_hand_computation(synth, summary):
    for m in synth.METHODS:
        o = summary.overall[m]
        assert o.seeds == 3
        assert o.auc == pytest.approx(scipy_interval([area(synth, m, seed) for seed in synth.SEEDS], 0, 100), rel=1e-9)
        if m != "random":
            per_seed = [np.mean([relative(synth, m, seed, c) for c in (1, 2, 3)]) for seed in synth.SEEDS]
            assert o.relative == pytest.approx(scipy_interval(per_seed, low=-100.0), rel=1e-9)
    # random's area for seed 0 by hand: (55 + 63 + 68) * 50 / 150 = 62.0
    assert area(synth, "random", 0) == pytest.approx(62.0)
    assert summary.best == "tidal-entropy"


def test_overview_table_bolds_the_best_method_with_hand_values(synth, summary):
    md = overview_table(summary).to_markdown()
    per_seed = [np.mean([relative(synth, "tidal-entropy", s, c) for c in (1, 2, 3)]) for s in synth.SEEDS]
    mean, lo, hi = scipy_interval(per_seed)
    auc_mean, auc_lo, auc_hi = scipy_interval([area(synth, "tidal-entropy", s) for s in synth.SEEDS])
    assert (f"| **tidal-entropy** | **3** | **{mean:+.2f} [{lo:+.2f}, {hi:+.2f}]** | "
            f"**{auc_mean:.2f} [{auc_lo:.2f}, {auc_hi:.2f}]** |") in md
    assert sum("**" in line for line in md.splitlines()[3:]) == 1  # only the best row is bold
    assert "| random | 3 | (reference) |" in md
    assert "averaged over cycles 2-4 (cycle 1 is the shared random initial set)" in overview_table(summary).caption


def test_class_makeup_and_timing(synth, summary):
    for m in synth.METHODS:
        mean, lo, hi = scipy_interval([synth.tail_selected(m, seed) for seed in synth.SEEDS], 0, 50)
        assert summary.tail_selected[m].mean == pytest.approx([mean] * 3)
        assert summary.tail_selected[m].lo == pytest.approx([lo] * 3, rel=1e-9)
        assert summary.tail_selected[m].hi == pytest.approx([hi] * 3, rel=1e-9)
        assert summary.selected[m] == [50.0, 50.0, 50.0]
        assert sum(summary.final_counts[m]) == pytest.approx(250.0)
    assert summary.tail == [5, 6, 7, 8, 9]
    t = summary.timing["tidal-entropy"]
    assert (t.train, t.score, t.eval) == pytest.approx((13.5, 1.5, 0.5))  # train 12..15 s; score 2 s in 3 of 4 cycles
    assert t.per_cycle == pytest.approx([14.5, 15.5, 16.5, 15.5])
    assert t.per_run == pytest.approx(62.0)
    # tidal-entropy picks 35 + seed of 50 from the tail: 36 of 50 on average = 72.0 %
    row = next(r for r in classes_table(summary).rows if r[0] == "tidal-entropy")
    assert row[1:5] == ["36.0 [33.5, 38.5]"] * 3 + ["72.0"]  # 36 ± t_{0.975,2} * 1 / sqrt(3) = 36 ± 2.48
    row = next(r for r in timing_table(summary).rows if r[0] == "tidal-entropy")
    assert row[1:] == ["13.5", "1.5", "0.5", "15.5", "62"]


def test_incomplete_seed_counts_per_cycle_but_not_overall(synth, tmp_path):
    extra = [synth.make_record("random", 3, 0), synth.make_record("random", 3, 1)]  # a seed still running
    with ResultStore(synth.build_run(tmp_path / "run", extra) / DB_NAME) as store:
        (s,) = summarize(store.records())
    assert s.accuracy["random"].n == [4, 4, 3, 3]
    assert s.overall["random"].seeds == 3
    assert s.overall["random"].auc == pytest.approx(scipy_interval([area(synth, "random", sd) for sd in synth.SEEDS]))


def test_setting_without_random_and_single_seed(synth, tmp_path):
    extra = [synth.make_record("tidal-entropy", 0, c, imbalance=1.0) for c in range(4)]
    with ResultStore(synth.build_run(tmp_path / "run", extra) / DB_NAME) as store:
        balanced, _ = summarize(store.records())
    assert balanced.imbalance == 1.0 and balanced.relative == {}
    assert math.isnan(balanced.overall["tidal-entropy"].relative[0])
    assert math.isnan(balanced.accuracy["tidal-entropy"].lo[0])  # one seed: no interval
    assert balanced.overall["tidal-entropy"].auc[0] == pytest.approx(area(synth, "tidal-entropy", 0))
    assert "[" not in overview_table(balanced).to_markdown().splitlines()[-1]


def test_setting_whose_runs_are_all_unfinished_reports_no_summary_yet(synth, tmp_path):
    extra = [synth.make_record(m, 0, c, imbalance=100.0) for m in ("random", "entropy") for c in range(2)]
    with ResultStore(synth.build_run(tmp_path / "run", extra) / DB_NAME) as store:
        records = store.records()
    finished, unfinished = summarize(records, cycles=4)  # sorted: IR 10, then IR 100
    assert unfinished.imbalance == 100.0 and unfinished.in_progress and unfinished.cycles == 4
    assert unfinished.overall["entropy"].seeds == 0 and math.isnan(unfinished.overall["entropy"].auc[0])
    assert math.isnan(unfinished.overall["entropy"].relative[0]) and unfinished.best is None
    assert unfinished.accuracy["entropy"].n == [1, 1]  # the per-cycle curves still show what is stored
    assert "In progress: 2 of 4 cycles stored" in overview_table(unfinished).caption
    assert not finished.in_progress and finished.overall["entropy"].seeds == 3
    _, legacy = summarize(records)  # no expected count: the most cycles stored in the setting
    assert not legacy.in_progress and legacy.overall["entropy"].seeds == 1


def test_two_cycle_caption_names_the_one_later_cycle(synth, tmp_path):
    extra = [synth.make_record(m, 0, c, imbalance=100.0) for m in ("random", "entropy") for c in range(2)]
    with ResultStore(synth.build_run(tmp_path / "run", extra) / DB_NAME) as store:
        _, two = summarize(store.records())
    assert "averaged over cycle 2 (cycle 1" in overview_table(two).caption


def _wild_records(synth) -> list:
    """IR 100, cycles of 100 and 150 labels (a budget of 50), seeds 0-2, seeds far apart:
    random scores 90/95/100 %; entropy 99/100/90 % and picks 0, 0, 50 tail samples;
    margin scores 0/0/50 %, so its improvement over random is -100, -100, -50 %."""
    import dataclasses

    acc = {"random": (0.90, 0.95, 1.00), "entropy": (0.99, 1.00, 0.90), "margin": (0.0, 0.0, 0.5)}
    out = []
    for m, accs in acc.items():
        for seed, a in enumerate(accs):
            tail = (0, 0, 50)[seed] if m == "entropy" else 25
            for cycle in (0, 1):
                counts = [10 + cycle * ((tail if c >= 5 else 50 - tail) // 5) for c in range(10)]
                out.append(dataclasses.replace(synth.make_record(m, seed, cycle, imbalance=100.0), accuracy=a,
                                               class_counts=counts))
    return out


def test_intervals_stay_inside_the_attainable_range(synth):
    (s,) = summarize(_wild_records(synth))
    # entropy's tail picks 0, 0, 50: the t-interval 16.67 ± 71.71 is clipped to [0, 50], the round's budget
    assert (s.tail_selected["entropy"].lo[0], s.tail_selected["entropy"].hi[0]) == (0.0, 50.0)
    row = next(r for r in classes_table(s).rows if r[0] == "entropy")
    assert row[1] == "16.7 [0.0, 50.0]"
    # entropy's accuracy 99, 100, 90 %: 96.33 ± 13.68 is clipped to at most 100 %
    mean, lo, hi = scipy_interval([99.0, 100.0, 90.0], 0.0, 100.0)
    assert hi == 100.0 and s.accuracy["entropy"].hi[0] == 100.0
    assert s.accuracy["entropy"].lo[0] == pytest.approx(lo) and s.accuracy["entropy"].mean[0] == pytest.approx(mean)
    # margin: -100, -100, -50 % improvement: -83.3 ± 71.7 is clipped at -100 %; its accuracy at 0 %
    assert s.relative["margin"].lo[1] == -100.0 and s.overall["margin"].relative[1] == -100.0
    assert s.accuracy["margin"].lo[0] == 0.0 and s.overall["margin"].auc[1] == 0.0
    for table, low, high in [(accuracy_table(s), 0, 100), (classes_table(s), 0, 50), (relative_table(s), -100, 1e9),
                             (overview_table(s), -100, 100)]:
        ends = [float(x) for cell in (c for r in table.rows for c in r) for x in re.findall(r"[-+]?\d+\.\d+", cell)
                if "[" in cell]
        assert ends and low <= min(ends) and max(ends) <= high, table.caption
        assert "clipped to the attainable range" in table.caption and "±" not in table.to_markdown()
    assert "(0-50, the round's budget)" in classes_table(s).caption


def test_class_names_label_the_tail_and_fall_back_to_indices(synth):
    names = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
    records = [synth.make_record(m, seed, c) for m in synth.METHODS for seed in synth.SEEDS for c in range(4)]
    (named,) = summarize(records, class_names={"fashion-mnist": names})
    assert named.class_names == names
    assert "(Sandal, Shirt, Sneaker, Bag, Ankle boot: 5 of 10 classes)" in classes_table(named).caption
    (old,) = summarize(records)  # a database without stored names
    assert old.class_names == [f"class {c}" for c in range(10)]
    assert "(class 5, class 6, class 7, class 8, class 9: 5 of 10 classes)" in classes_table(old).caption
    (wrong,) = summarize(records, class_names={"fashion-mnist": names[:3]})  # not one per class: not used
    assert wrong.class_names == old.class_names


def test_near_chance_thresholds():
    """Issue 21 case 22: loss >= 0.9 ln C, or accuracy within a tenth of the way from 1/C to 100%."""
    from tidal.report.summary import near_chance

    assert near_chance(2.30, 0.10, 10) == ("final training loss 2.30 near ln 10 = 2.30 and accuracy 10.0% near "
                                           "chance = 10.0%")
    assert near_chance(0.9 * math.log(10), 0.5, 10) == "final training loss 2.07 near ln 10 = 2.30"
    assert near_chance(2.0, 0.19, 10) == "accuracy 19.0% near chance = 10.0%"  # 0.1 + 0.1 x 0.9
    assert near_chance(2.0, 0.20, 10) is None and near_chance(0.6, 0.56, 2) is None
    assert near_chance(0.63, 0.8, 2) == "final training loss 0.63 near ln 2 = 0.69"
    assert near_chance(None, None, 10) is None and near_chance(float("nan"), float("nan"), 10) is None
    assert near_chance(5.0, 0.0, 1) is None  # one class: nothing to judge
