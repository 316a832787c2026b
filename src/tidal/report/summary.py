"""Summary tables computed from stored results only.

Relative improvement of a method over random at a cycle (the paper's Figures 3-5) is
``100 * (acc_method - acc_random) / acc_random`` for each seed that has both, then averaged
over seeds.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import numpy as np

from tidal.results import CycleRecord

__all__ = ["SettingSummary", "summarize", "format_markdown"]

REFERENCE = "random"


@dataclass
class SettingSummary:
    """Per-method statistics of one (dataset, imbalance) setting."""

    dataset: str
    imbalance: float
    n_labeled: list[int]  # labeled-set size per cycle (from the first method's first seed)
    accuracy: dict[str, list[float]]  # method -> mean test accuracy (%) per cycle
    accuracy_std: dict[str, list[float]]  # method -> std across seeds (%) per cycle
    seeds: dict[str, int]  # method -> number of seeds with every cycle stored
    relative: dict[str, list[float]]  # method -> mean relative improvement over random (%) per cycle


def summarize(records: list[CycleRecord]) -> list[SettingSummary]:
    """Group records by setting, method and cycle; only complete cycles of a seed count."""
    by_setting: dict[tuple[str, float], list[CycleRecord]] = defaultdict(list)
    for r in records:
        by_setting[(r.dataset, r.imbalance)].append(r)
    summaries = []
    for (dataset, imbalance), recs in sorted(by_setting.items()):
        acc: dict[str, dict[int, dict[int, float]]] = defaultdict(lambda: defaultdict(dict))  # method->cycle->seed
        sizes: dict[int, int] = {}
        for r in recs:
            acc[r.method][r.cycle][r.seed] = 100.0 * r.accuracy
            sizes.setdefault(r.cycle, r.n_labeled)
        cycles = sorted(sizes)
        methods = sorted(acc, key=lambda m: (m != REFERENCE, m))
        s = SettingSummary(dataset, imbalance, [sizes[c] for c in cycles], {}, {}, {}, {})
        for m in methods:
            per_cycle = [acc[m].get(c, {}) for c in cycles]
            s.accuracy[m] = [float(np.mean(list(v.values()))) if v else float("nan") for v in per_cycle]
            s.accuracy_std[m] = [float(np.std(list(v.values()))) if v else float("nan") for v in per_cycle]
            s.seeds[m] = len(per_cycle[-1]) if per_cycle else 0
            if REFERENCE in acc:
                rel = []
                for c in cycles:
                    ref = acc[REFERENCE].get(c, {})
                    pairs = [(a, ref[seed]) for seed, a in acc[m].get(c, {}).items() if seed in ref]
                    rel.append(float(np.mean([100.0 * (a - b) / b for a, b in pairs])) if pairs else float("nan"))
                s.relative[m] = rel
        summaries.append(s)
    return summaries


def _fmt(x: float, digits: int = 2, signed: bool = False) -> str:
    if x != x:  # NaN
        return "–"
    return f"{x:+.{digits}f}" if signed else f"{x:.{digits}f}"


def format_markdown(summaries: list[SettingSummary]) -> str:
    """Markdown tables: mean accuracy per cycle and relative improvement over random."""
    lines: list[str] = []
    for s in summaries:
        lines.append(f"### {s.dataset}, imbalance ratio {s.imbalance:g}")
        lines.append("")
        head = "| method | seeds | " + " | ".join(f"{n}" for n in s.n_labeled) + " |"
        rule = "|---|---:|" + "---:|" * len(s.n_labeled)
        lines += ["Mean test accuracy (%) by number of labeled samples:", "", head, rule]
        for m, row in s.accuracy.items():
            lines.append(f"| {m} | {s.seeds[m]} | " + " | ".join(_fmt(v) for v in row) + " |")
        lines.append("")
        if s.relative:
            lines += ["Relative accuracy improvement over random (%), mean over seeds; "
                      "the last column averages the cycles after the first:", ""]
            lines.append("| method | " + " | ".join(f"{n}" for n in s.n_labeled) + " | mean |")
            lines.append("|---|" + "---:|" * (len(s.n_labeled) + 1))
            for m, row in s.relative.items():
                if m == REFERENCE:
                    continue
                tail = [v for v in row[1:] if v == v]
                mean = float(np.mean(tail)) if tail else float("nan")
                lines.append(f"| {m} | " + " | ".join(_fmt(v, signed=True) for v in row) + f" | "
                             f"{_fmt(mean, signed=True)} |")
            lines.append("")
        else:
            lines += ["(no `random` runs in this setting, so no relative improvement)", ""]
    return "\n".join(lines)
