"""Per-setting statistics computed from stored results only.

For each (dataset, imbalance) setting and method: test accuracy per cycle and the relative
improvement over random per cycle (the paper's Figures 3-5: ``100 * (acc_method -
acc_random) / acc_random`` for each seed that has both, then mean and 95% CI across seeds),
one-number summaries per method (mean relative improvement over the cycles after the first,
which all methods share because the initial labeled set depends on the seed only; and the
normalised area under the accuracy-vs-labels curve), the class make-up of what each method
selected, and the wall time per cycle.

Every interval is the Student-t interval across seeds clipped to the range its quantity can
take (``LIMITS``): accuracy and area in [0, 100] %, relative improvement >= -100 %, tail
samples selected in a round in [0, the round's budget].
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np

import math
from collections.abc import Mapping, Sequence

from tidal.metrics import tail_classes
from tidal.report.stats import area_under_curve, mean_interval
from tidal.results import CycleRecord

__all__ = ["LIMITS", "REFERENCE", "Curve", "Overall", "SettingSummary", "Timing", "class_labels", "near_chance",
           "summarize"]

REFERENCE = "random"  # the method every other is compared with
NAN = float("nan")
# The attainable range of each quantity with an interval; intervals are clipped to it.
LIMITS: dict[str, tuple[float, float]] = {
    "accuracy": (0.0, 100.0),  # test accuracy (%)
    "relative": (-100.0, math.inf),  # relative improvement over random (%): -100 when the method scores 0
    "auc": (0.0, 100.0),  # area under accuracy (%), divided by the label range (%)
}


# When a cycle's training looks failed (near_chance): a model that learned nothing predicts 1/C for
# every class, a training loss of ln C, and scores about 1/C.
CHANCE_LOSS = 0.9  # final training loss >= CHANCE_LOSS * ln C counts as "near ln C"
CHANCE_ACCURACY = 0.1  # accuracy <= 1/C + CHANCE_ACCURACY * (1 - 1/C) counts as "near chance" (C=10: 19%)


def near_chance(final_loss: float | None, accuracy: float | None, num_classes: int) -> str | None:
    """Why a cycle's (or labelling round's) model looks like it learned nothing, or None: its final
    training loss near ln C (:data:`CHANCE_LOSS`), its test accuracy near chance 1/C
    (:data:`CHANCE_ACCURACY`). ``accuracy`` in [0, 1]; None or NaN values are not judged."""
    if num_classes < 2:
        return None
    why = []
    ln_c = math.log(num_classes)
    if final_loss is not None and math.isfinite(final_loss) and final_loss >= CHANCE_LOSS * ln_c:
        why.append(f"final training loss {final_loss:.2f} near ln {num_classes} = {ln_c:.2f}")
    chance = 1.0 / num_classes
    if accuracy is not None and math.isfinite(accuracy) and accuracy <= chance + CHANCE_ACCURACY * (1 - chance):
        why.append(f"accuracy {100 * accuracy:.1f}% near chance = {100 * chance:.1f}%")
    return " and ".join(why) or None


@dataclass
class Curve:
    """A statistic per cycle, across seeds."""

    mean: list[float]  # mean across seeds (NaN where no seed has the cycle)
    lo: list[float]  # lower end of the clipped confidence interval (NaN with fewer than 2 seeds)
    hi: list[float]  # upper end of the clipped confidence interval (NaN with fewer than 2 seeds)
    n: list[int]  # number of seeds behind each point


@dataclass
class Overall:
    """One-number summaries of a method in a setting, each as (mean, CI low, CI high) across seeds."""

    relative: tuple[float, float, float]  # mean relative improvement over random (%) over cycles 2..K (NaN: no random)
    auc: tuple[float, float, float]  # area under accuracy (%) vs labels, divided by the label range (%)
    seeds: int  # seeds with every cycle stored (the ones behind ``auc``)


@dataclass
class Timing:
    """Wall time of a method's cycles, in seconds."""

    train: float  # mean training time per cycle
    score: float  # mean scoring (selection) time per cycle
    eval: float  # mean test-set evaluation time per cycle
    per_cycle: list[float]  # mean total (train + score + eval) per cycle index, across seeds
    per_run: float  # mean over complete seeds of the summed time of all cycles


@dataclass
class SettingSummary:
    """Everything the report shows about one (dataset, imbalance) setting."""

    dataset: str
    imbalance: float
    n_labeled: list[int]  # labeled-set size per cycle
    methods: list[str]  # random first, then alphabetical
    num_classes: int
    tail: list[int]  # the tail half of the classes (class C-1 is the rarest under long-tail sampling)
    confidence: float  # of every interval, e.g. 0.95
    class_names: list[str] = field(default_factory=list)  # name of each class index ("class 3" when not stored)
    accuracy: dict[str, Curve] = field(default_factory=dict)  # test accuracy (%)
    relative: dict[str, Curve] = field(default_factory=dict)  # improvement over random (%); empty without random
    overall: dict[str, Overall] = field(default_factory=dict)
    tail_selected: dict[str, Curve] = field(default_factory=dict)  # per selection round: tail samples picked
    budgets: list[int] = field(default_factory=list)  # per selection round: samples labeled (labeled-set growth)
    selected: dict[str, list[float]] = field(default_factory=dict)  # per selection round: samples picked (mean)
    final_counts: dict[str, list[float]] = field(default_factory=dict)  # labeled per class at the last cycle (mean)
    timing: dict[str, Timing] = field(default_factory=dict)
    best: str | None = None  # method with the highest mean area under the accuracy curve
    cycles: int = 0  # cycles a finished run has (the configured number; else the most stored)
    near_chance: list[str] = field(default_factory=list)  # "method seed S cycle C: why", per cycle near chance

    @property
    def in_progress(self) -> bool:
        """No run of the setting has every cycle yet: the one-number summaries are still empty."""
        return len(self.n_labeled) < self.cycles

    @property
    def slug(self) -> str:
        """A file-name-safe name of the setting, e.g. ``fashion-mnist-ir10``."""
        return f"{self.dataset}-ir{self.imbalance:g}".replace("/", "-").replace(" ", "-")


def class_labels(num_classes: int, names: Sequence[str] | None = None) -> list[str]:
    """``names`` when there is one per class, else ``class 0``, ``class 1``, ... (a database
    written before class names were stored)."""
    if names is not None and len(names) == num_classes:
        return [str(n) for n in names]
    return [f"class {c}" for c in range(num_classes)]


def _interval(values: list[float], confidence: float, limits: tuple[float, float]) -> tuple[float, float, float]:
    return mean_interval(values, confidence, *limits) if values else (NAN, NAN, NAN)


def _curve(per_cycle: list[list[float]], confidence: float, limits: list[tuple[float, float]]) -> Curve:
    stats = [_interval(v, confidence, lim) for v, lim in zip(per_cycle, limits)]
    return Curve([m for m, _, _ in stats], [lo for _, lo, _ in stats], [hi for _, _, hi in stats],
                 [len(v) for v in per_cycle])


def _relative(acc: float, ref: float) -> float:
    """Relative improvement (%) of accuracy ``acc`` over ``ref``; NaN when random scored 0."""
    return 100.0 * (acc - ref) / ref if ref > 0 else NAN


def _summarize_setting(recs: list[CycleRecord], confidence: float, expected: int | None,
                       names: Sequence[str] | None) -> SettingSummary:
    by: dict[str, dict[int, dict[int, CycleRecord]]] = defaultdict(lambda: defaultdict(dict))  # method->seed->cycle
    sizes: dict[int, int] = {}
    for r in recs:
        by[r.method][r.seed][r.cycle] = r
        sizes.setdefault(r.cycle, r.n_labeled)
    cycles = sorted(sizes)
    methods = sorted(by, key=lambda m: (m != REFERENCE, m))
    num_classes = len(recs[0].class_counts)
    s = SettingSummary(recs[0].dataset, recs[0].imbalance, [sizes[c] for c in cycles], methods, num_classes,
                       tail_classes(num_classes), confidence, class_labels(num_classes, names),
                       cycles=max(expected or 0, len(cycles)))
    s.budgets = [b - a for a, b in zip(s.n_labeled[:-1], s.n_labeled[1:])]
    per_cycle = [LIMITS["accuracy"]] * len(cycles)
    acc = {m: {seed: {c: 100.0 * r.accuracy for c, r in cs.items()} for seed, cs in by[m].items()} for m in methods}
    ref = acc.get(REFERENCE)
    for m in methods:
        s.accuracy[m] = _curve([[a[c] for a in acc[m].values() if c in a] for c in cycles], confidence, per_cycle)
        complete = [seed for seed, a in acc[m].items() if not s.in_progress and all(c in a for c in cycles)]
        aucs = [area_under_curve(s.n_labeled, [acc[m][seed][c] for c in cycles]) for seed in complete]
        rel_overall = (NAN, NAN, NAN)
        if ref is not None:
            rel = {seed: {c: _relative(a[c], ref[seed][c]) for c in a if c in ref[seed]}
                   for seed, a in acc[m].items() if seed in ref}
            s.relative[m] = _curve([[r[c] for r in rel.values() if c in r] for c in cycles], confidence,
                                   [LIMITS["relative"]] * len(cycles))
            later = cycles[1:] or cycles  # cycle 1 is the shared random initial set
            paired = [float(np.mean([rel[seed][c] for c in later])) for seed in complete
                      if seed in rel and all(c in rel[seed] for c in later)]
            rel_overall = _interval(paired, confidence, LIMITS["relative"])
        s.overall[m] = Overall(rel_overall, _interval(aucs, confidence, LIMITS["auc"]), len(complete))
        _class_makeup(s, m, by[m], cycles)
        _timing(s, m, by[m], cycles, complete)
    for r in sorted(recs, key=lambda r: (r.method, r.seed, r.cycle)):
        why = near_chance(r.final_loss, r.accuracy, num_classes)
        if why:
            s.near_chance.append(f"{r.method} seed {r.seed} cycle {r.cycle + 1}: {why}")
    ranked = [m for m in methods if s.overall[m].auc[0] == s.overall[m].auc[0]]  # drop NaN
    s.best = max(ranked, key=lambda m: s.overall[m].auc[0]) if ranked else None
    return s


def _class_makeup(s: SettingSummary, m: str, seeds: dict[int, dict[int, CycleRecord]], cycles: list[int]) -> None:
    """What was labeled at the end of cycle c = class counts of cycle c+1 minus those of cycle c."""
    tail, picked = [], []
    for c, nxt in zip(cycles[:-1], cycles[1:]):
        diffs = [np.subtract(cs[nxt].class_counts, cs[c].class_counts)
                 for cs in seeds.values() if c in cs and nxt in cs]
        tail.append([float(d[s.tail].sum()) for d in diffs])
        picked.append(float(np.mean([d.sum() for d in diffs])) if diffs else NAN)
    s.tail_selected[m] = _curve(tail, s.confidence, [(0.0, float(b)) for b in s.budgets])
    s.selected[m] = picked
    last = [cs[cycles[-1]].class_counts for cs in seeds.values() if cycles[-1] in cs]
    s.final_counts[m] = np.mean(last, axis=0).tolist() if last else [NAN] * s.num_classes


def _timing(s: SettingSummary, m: str, seeds: dict[int, dict[int, CycleRecord]], cycles: list[int],
            complete: list[int]) -> None:
    def total(r: CycleRecord) -> float:
        return r.train_seconds + r.score_seconds + r.eval_seconds

    rs = [r for cs in seeds.values() for r in cs.values()]
    per_cycle = [[total(cs[c]) for cs in seeds.values() if c in cs] for c in cycles]
    runs = [sum(total(r) for r in seeds[seed].values()) for seed in complete]
    s.timing[m] = Timing(
        train=float(np.mean([r.train_seconds for r in rs])),
        score=float(np.mean([r.score_seconds for r in rs])),
        eval=float(np.mean([r.eval_seconds for r in rs])),
        per_cycle=[float(np.mean(v)) if v else NAN for v in per_cycle],
        per_run=float(np.mean(runs)) if runs else NAN,
    )


def summarize(records: list[CycleRecord], confidence: float = 0.95, cycles: int | None = None,
              class_names: Mapping[str, Sequence[str]] | None = None) -> list[SettingSummary]:
    """One ``SettingSummary`` per (dataset, imbalance), in sorted order.

    ``cycles``: the number of cycles of a finished run (the experiment's ``al.cycles``). Only
    seeds with that many cycles count in the one-number summaries, so a setting whose runs are
    all still going reports none yet; without it, the most cycles stored in the setting count.
    ``class_names``: dataset -> the name of each class (``ResultStore.class_names()``); a
    dataset without them gets ``class 0``, ``class 1``, ...
    """
    by_setting: dict[tuple[str, float], list[CycleRecord]] = defaultdict(list)
    for r in records:
        by_setting[(r.dataset, r.imbalance)].append(r)
    names = class_names or {}
    return [_summarize_setting(recs, confidence, cycles, names.get(key[0])) for key, recs in sorted(by_setting.items())]
