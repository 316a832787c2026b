"""The report's paired-comparison tables and section, built from a :class:`PairedSetting`.

* :func:`versus_table`: wins / ties / losses against each baseline. Rows: methods; columns:
  every method of the setting as a baseline; cell ``W +1.23``: the verdict of the 95% interval
  of the paired area difference (row - column; ``W`` above zero, ``T`` straddling, ``L`` below,
  ``–`` one seed) and its mean in pp; a last column counts the row's W-T-L.
* :func:`pairs_table`: one row per unordered pair, the better method (higher mean paired area
  difference) first: area and final-accuracy differences with intervals, sign counts and
  Wilcoxon p-values.
* :func:`skipped_table`: every (pair, seeds) that does not compare, with the reason.
* :func:`add_paired_section`: the three tables and the forest plot in a report section.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from tidal.report.document import Document
from tidal.report.paired import DiffStats, Pair, PairedSetting
from tidal.report.tables import Table, format_interval

__all__ = ["add_paired_section", "diff_cell", "pairs_table", "sign_cell", "skipped_table", "versus_table",
           "wilcoxon_cell"]


def diff_cell(d: DiffStats) -> str:
    """``+1.23 [0.40, 2.06]``; with one seed the mean and ``(1 seed: no interval)``."""
    text = format_interval(d.mean, d.lo, d.hi, signed=True)
    return text + " (1 seed: no interval)" if d.n == 1 else text


def sign_cell(d: DiffStats) -> str:
    """Seeds won / tied / lost, e.g. ``3/0/0``."""
    return f"{d.wins}/{d.ties}/{d.losses}"


def wilcoxon_cell(d: DiffStats, min_n: int) -> str:
    """The p-value with 3 decimals, or why there is none."""
    return f"{d.wilcoxon_p:.3f}" if d.wilcoxon_p is not None else f"n too small ({d.n} < {min_n})"


def _order(ps: PairedSetting) -> dict[str, int]:
    return {m: i for i, m in enumerate(ps.methods)}


def versus_table(ps: PairedSetting) -> Table:
    """Rows: methods; columns: baselines; cell: verdict of the paired area difference and its mean."""
    rows = []
    for a in ps.methods:
        row, count = [a], {"W": 0, "T": 0, "L": 0}
        for b in ps.methods:
            pair = ps.pair(a, b)
            if a == b:
                row.append("·")
            elif pair is None:
                row.append("skipped")
            else:
                v = pair.auc.verdict
                count[v] = count.get(v, 0) + 1
                row.append(f"{v} {pair.auc.mean:+.2f}")
        row.append(f"{count['W']}-{count['T']}-{count['L']}")
        rows.append(row)
    caption = (f"Wins / ties / losses against each baseline: the row method minus the column method in area under "
               f"the accuracy curve (mean accuracy over the budget, pp), paired by seed. W: its "
               f"{100 * ps.confidence:g}% t-interval over seeds lies above zero; L: below zero; T: it contains zero; "
               "–: one seed, no interval; skipped: no seed compares (see the skipped runs). The number is the mean "
               "paired difference; the last column counts the row's W-T-L.")
    return Table(["method"] + [f"vs {b}" for b in ps.methods] + ["W-T-L"], rows, caption)


def _oriented(ps: PairedSetting) -> list[Pair]:
    """Each unordered pair once, the method with the higher mean paired area difference first."""
    order = _order(ps)
    out = []
    for (a, b), pair in ps.pairs.items():
        if order[a] > order[b]:
            continue
        out.append(pair if pair.auc.mean >= 0 else ps.pairs[(b, a)])
    return sorted(out, key=lambda p: (order[p.a], order[p.b]))


def pairs_table(ps: PairedSetting, min_wilcoxon: int) -> Table:
    """Every unordered pair: paired differences in area and final accuracy, with their statistics."""
    rows = [[p.a, p.b, str(len(p.seeds)), diff_cell(p.auc), sign_cell(p.auc), wilcoxon_cell(p.auc, min_wilcoxon),
             diff_cell(p.final), sign_cell(p.final), wilcoxon_cell(p.final, min_wilcoxon)]
            for p in _oriented(ps)]
    last = ps.n_labeled[-1] if ps.n_labeled else "the last cycle's"
    caption = (f"Paired differences A - B over the seeds both ran (same seed = same initial labeled set), in pp, A "
               f"the method with the higher mean area difference: area under the accuracy curve (trapezoid over "
               f"labeled-set sizes divided by their span) and test accuracy at {last} labels; mean "
               f"[{100 * ps.confidence:g}% Student-t CI] over seeds; seeds won/tied/lost by A (tie: |d| < "
               f"{ps.tie_tolerance:g} pp); two-sided Wilcoxon signed-rank p (from {min_wilcoxon} seeds).")
    return Table(["A", "B", "seeds", "area diff (pp)", "area W/T/L", "area Wilcoxon p", "final diff (pp)",
                  "final W/T/L", "final Wilcoxon p"], rows, caption)


def skipped_table(ps: PairedSetting) -> Table | None:
    """Each unordered pair and reason with the seeds it skips; None when every run compares."""
    order = _order(ps)
    grouped: dict[tuple[str, str, str], list[int]] = defaultdict(list)
    for s in ps.skipped:
        if order[s.a] < order[s.b]:
            grouped[(s.a, s.b, s.reason)].append(s.seed)
    if not grouped:
        return None
    rows = [[a, b, ", ".join(str(x) for x in sorted(seeds)), reason]
            for (a, b, reason), seeds in sorted(grouped.items(), key=lambda kv: (order[kv[0][0]], order[kv[0][1]]))]
    return Table(["A", "B", "seeds skipped", "reason"], rows,
                 "Runs left out of the paired comparisons: a seed compares only when both methods ran every cycle of "
                 "the setting with the same labeled-set sizes and the same initial labeled set.")


def add_paired_section(doc: Document, ps: PairedSetting, reference: str, figure: tuple[Path, str] | None,
                       min_wilcoxon: int) -> Table:
    """The paired-comparison subsection of a setting; returns the W/T/L table (for the printed summary)."""
    doc.heading(3, "Paired comparisons")
    doc.paragraph("Each method against each other on the same seeds (the same initial labeled set): per seed the "
                  "difference in area under the accuracy curve and in final accuracy, then its mean, "
                  f"{100 * ps.confidence:g}% t-interval, sign count and Wilcoxon p over seeds. Pairing removes the "
                  "seed-to-seed spread that widens the intervals of the tables above.")
    versus = versus_table(ps)
    doc.table(versus)
    if figure is not None:
        doc.figure(*figure)
    elif reference not in ps.methods:
        doc.paragraph(f"No forest plot: this setting has no `{reference}` runs to compare with.")
    if ps.pairs:
        doc.table(pairs_table(ps, min_wilcoxon))
    else:
        doc.paragraph("No pair of methods has a seed that compares.")
    skipped = skipped_table(ps)
    if skipped is None:
        doc.paragraph("Every run compares: no seed was skipped.")
    else:
        doc.table(skipped)
    return versus
