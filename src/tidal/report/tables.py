"""The report's tables, built once from a ``SettingSummary`` and rendered as Markdown or HTML.

Every interval prints as ``mean [low, high]`` (:func:`format_interval`): the Student-t
interval across seeds clipped to the quantity's attainable range, which each caption names.
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field

from tidal.report.summary import REFERENCE, Curve, SettingSummary

__all__ = [
    "Table",
    "accuracy_table",
    "classes_table",
    "budget_text",
    "ci_caption",
    "format_interval",
    "format_markdown",
    "overview_table",
    "relative_table",
    "tail_names",
    "timing_table",
]


@dataclass
class Table:
    """A table of preformatted cells; rows listed in ``bold`` are emphasised (e.g. the best method)."""

    header: list[str]
    rows: list[list[str]]
    caption: str = ""  # one sentence saying what the numbers are, with units
    bold: set[int] = field(default_factory=set)  # row numbers to render in bold

    def to_markdown(self) -> str:
        lines = [self.caption, ""] if self.caption else []
        lines.append("| " + " | ".join(self.header) + " |")
        lines.append("|---|" + "---:|" * (len(self.header) - 1))
        for i, row in enumerate(self.rows):
            cells = [f"**{c}**" if i in self.bold and c else c for c in row]
            lines.append("| " + " | ".join(cells) + " |")
        return "\n".join(lines) + "\n"

    def to_html(self) -> str:
        out = ["<table>"]
        if self.caption:
            out.append(f"<caption>{html.escape(self.caption)}</caption>")
        out.append("<tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in self.header) + "</tr>")
        for i, row in enumerate(self.rows):
            cells = [html.escape(c) for c in row]
            if i in self.bold:
                cells = [f"<strong>{c}</strong>" for c in cells]
            cls = ' class="best"' if i in self.bold else ""
            out.append(f"<tr{cls}>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
        out.append("</table>")
        return "\n".join(out) + "\n"


def _num(x: float, digits: int = 2, signed: bool = False) -> str:
    if x != x:  # NaN
        return "–"
    return f"{x:+.{digits}f}" if signed else f"{x:.{digits}f}"


def format_interval(mean: float, lo: float, hi: float, digits: int = 2, signed: bool = False) -> str:
    """``mean [lo, hi]``, e.g. ``214.67 [0.00, 500.00]``; only the mean when the interval is
    undefined (a single seed); ``–`` when there is no value."""
    if mean != mean:
        return "–"
    if lo != lo:
        return _num(mean, digits, signed)
    return f"{_num(mean, digits, signed)} [{_num(lo, digits, signed)}, {_num(hi, digits, signed)}]"


def _curve_cells(c: Curve, signed: bool = False, digits: int = 2) -> list[str]:
    return [format_interval(m, lo, hi, digits, signed) for m, lo, hi in zip(c.mean, c.lo, c.hi)]


def _pct(confidence: float) -> str:
    return f"{100 * confidence:g}%"


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:]


def tail_names(s: SettingSummary) -> str:
    """The tail half of the classes by name, e.g. ``Sandal, Shirt, Sneaker, Bag, Ankle boot: 5 of 10 classes``."""
    if not s.tail:
        return "none"
    return f"{', '.join(s.class_names[c] for c in s.tail)}: {len(s.tail)} of {s.num_classes} classes"


def budget_text(s: SettingSummary) -> str:
    """The attainable range of a round's tail picks, for captions: ``0-50, the round's budget``."""
    if not s.budgets:
        return "0 to the round's budget"
    if len(set(s.budgets)) == 1:
        return f"0-{s.budgets[0]}, the round's budget"
    return "0 to each round's budget: " + ", ".join(str(b) for b in s.budgets)


def ci_caption(confidence: float, attainable: str, shaded: bool = False) -> str:
    """The words every table (and, ``shaded``, every figure) with intervals uses, e.g.
    ``ci_caption(0.95, "0-100 %")``."""
    what = (f"mean across seeds (line) and {_pct(confidence)} CI (shaded)" if shaded else
            f"mean [{_pct(confidence)} CI] across seeds")
    return f"{what}, the Student-t interval clipped to the attainable range ({attainable})"


def overview_table(s: SettingSummary) -> Table:
    """Per method: mean relative improvement over random and area under the accuracy curve, with CIs."""
    rows, bold = [], set()
    for i, m in enumerate(s.methods):
        o = s.overall[m]
        rel = "(reference)" if m == REFERENCE else format_interval(*o.relative, signed=True)
        rows.append([m, str(o.seeds), rel, format_interval(*o.auc)])
        if m == s.best:
            bold.add(i)
    if s.in_progress:
        how = (f"In progress: {len(s.n_labeled)} of {s.cycles} cycles stored so far; the one-number summaries "
               "wait for a run with every cycle.")
    elif len(s.n_labeled) > 1:
        later = "cycle 2" if len(s.n_labeled) == 2 else f"cycles 2-{len(s.n_labeled)}"
        how = (f"Relative improvement: over random, averaged over {later} (cycle 1 is the shared "
               f"random initial set). Area: under test accuracy (%) vs labeled samples ({s.n_labeled[0]}-"
               f"{s.n_labeled[-1]}), divided by the label range.")
    else:
        how = "Only cycle 1 is stored so far: both columns describe its accuracy alone."
    caption = (f"{_sentence(ci_caption(s.confidence, 'relative improvement >= -100 %, area 0-100 %'))}. {how} "
               "Bold: the highest area.")
    return Table(["method", "seeds", "rel. improvement (%)", "area under accuracy (%)"], rows, caption, bold)


def accuracy_table(s: SettingSummary) -> Table:
    rows = [[m] + _curve_cells(s.accuracy[m]) for m in s.methods]
    return Table(["method"] + [str(n) for n in s.n_labeled], rows,
                 f"Test accuracy (%) by number of labeled samples: {ci_caption(s.confidence, '0-100 %')}.")


def relative_table(s: SettingSummary) -> Table | None:
    """None when the setting has no random runs."""
    if not s.relative:
        return None
    rows = [[m] + _curve_cells(s.relative[m], signed=True) for m in s.methods if m != REFERENCE]
    return Table(["method"] + [str(n) for n in s.n_labeled], rows,
                 f"Relative accuracy improvement over random (%) by number of labeled samples: "
                 f"{ci_caption(s.confidence, '>= -100 %')}.")


def classes_table(s: SettingSummary) -> Table:
    """Tail-half samples picked per selection round, their share, and the final labeled set's balance."""
    rounds = [f"{n}→{m}" for n, m in zip(s.n_labeled[:-1], s.n_labeled[1:])]
    rows = []
    for m in s.methods:
        picked = [x for x in s.selected[m] if x == x]
        tail = [x for x in s.tail_selected[m].mean if x == x]
        share = 100.0 * sum(tail) / sum(picked) if picked and sum(picked) > 0 else float("nan")
        final = s.final_counts[m]
        total = sum(final)
        final_share = 100.0 * sum(final[c] for c in s.tail) / total if total > 0 else float("nan")
        if any(c != c for c in final):  # the method has not reached the last cycle yet
            ratio_cell = "–"
        else:
            ratio_cell = _num(max(final) / min(final), 2) if min(final) > 0 else "∞"
        rows.append([m] + _curve_cells(s.tail_selected[m], digits=1)
                    + [_num(share, 1), _num(final_share, 1), ratio_cell])
    caption = (f"Samples from the tail half of the classes ({tail_names(s)}) selected in each round "
               f"(labeled-set size before→after): {ci_caption(s.confidence, budget_text(s))}; their share of all "
               "selected samples; the tail share of the final labeled set; and its largest/smallest class ratio.")
    return Table(["method"] + rounds + ["tail share of selected (%)", "tail share of labeled set (%)",
                                         "labeled max/min"], rows, caption)


def timing_table(s: SettingSummary) -> Table:
    rows = []
    for m in s.methods:
        t = s.timing[m]
        rows.append([m, _num(t.train, 1), _num(t.score, 1), _num(t.eval, 1), _num(t.train + t.score + t.eval, 1),
                     _num(t.per_run, 0)])
    return Table(["method", "train (s)", "score (s)", "eval (s)", "total (s)", "whole run (s)"], rows,
                 "Wall time per cycle in seconds, mean over seeds and cycles; whole run: all cycles of one seed.")


def format_markdown(summaries: list[SettingSummary]) -> str:
    """The summary printed by ``tidal report``: per setting, the overview and the per-cycle tables."""
    parts = []
    for s in summaries:
        parts += [f"### {s.dataset}, imbalance ratio {s.imbalance:g}", "", overview_table(s).to_markdown(),
                  accuracy_table(s).to_markdown()]
        rel = relative_table(s)
        parts.append(rel.to_markdown() if rel else "(no `random` runs in this setting, so no relative improvement)\n")
    return "\n".join(parts)
