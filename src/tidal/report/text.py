"""The plain text the command line prints about stored results: aligned columns, a run's summary.

Like the rest of the report these read only the stored results; ``tidal.cli`` (and ``tidal
status``) print them.
"""

from __future__ import annotations

import math
from pathlib import Path

from tidal.report.summary import summarize
from tidal.results import DB_NAME, ResultStore

__all__ = ["aligned", "run_summary", "saved_cycles"]


def saved_cycles(out: str | None) -> str:
    """What an interrupted run left on disk, in words."""
    if out is None or not (Path(out) / DB_NAME).is_file():
        return "nothing was saved yet"
    try:
        with ResultStore(Path(out) / DB_NAME, readonly=True) as store:
            counts = store.cycle_counts()
    except Exception:  # noqa: BLE001 - unreadable now: say so rather than fail while stopping
        return f"the finished cycles are saved in {Path(out) / DB_NAME}"
    return (f"{sum(counts.values())} finished cycles of {len(counts)} (method, seed) runs are saved in "
            f"{Path(out) / DB_NAME}")


def _number(x: float, signed: bool = False) -> str:
    return "-" if not math.isfinite(x) else (f"{x:+.2f}" if signed else f"{x:.2f}")


def aligned(rows: list[list[str]]) -> list[str]:
    """Rows as lines of columns padded to one width, the first column left-aligned, the others right."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))).rstrip()
            for r in rows]


def run_summary(out: str | Path) -> str:
    """Per (dataset, imbalance) setting, a short aligned table of every method: seeds, final test
    accuracy, relative improvement over random (when random ran) at the last cycle and averaged over
    cycles 2..K, and area under the accuracy curve: the report's numbers (tidal.report.summary), each
    column named after its definition; then a warning for every cycle that ended near chance."""
    with ResultStore(Path(out) / DB_NAME, readonly=True) as store:
        records, config = store.records(), store.config()
    blocks = []
    for s in summarize(records, cycles=config.al.cycles if config else None):
        has_random = bool(s.relative)
        k = len(s.n_labeled)
        later = "cycle 2" if k == 2 else (f"cycles 2-{k}" if k > 2 else "cycle 1")
        head = (["method", "seeds", "final acc. (%)"]
                + ([f"vs random at cycle {k} (%)", f"vs random, mean of {later} (%)"] if has_random else [])
                + ["area (%)"])
        rows = [head]
        for m in s.methods:
            o = s.overall[m]
            rel = ((["(reference)", "(reference)"] if m == "random" else
                    [_number(s.relative[m].mean[-1], signed=True), _number(o.relative[0], signed=True)])
                   if has_random else [])
            rows.append([m + (" *" if m == s.best else ""), str(s.accuracy[m].n[-1]),
                         _number(s.accuracy[m].mean[-1])] + rel + [_number(o.auc[0])])
        title = (f"{s.dataset}, imbalance {s.imbalance:g}: cycle {k} of {s.cycles}, "
                 f"{s.n_labeled[-1]} labeled")
        lines = [title, *("  " + line for line in aligned(rows))]
        if s.near_chance:
            shown = s.near_chance[:3] + ([f"... ({len(s.near_chance) - 3} more in the report)"]
                                         if len(s.near_chance) > 3 else [])
            lines.append(f"  warning: {len(s.near_chance)} cycle(s) ended near chance, the model learned (almost) "
                         "nothing; the training settings may not fit this data (README, \"Presets\"):")
            lines += [f"    - {w}" for w in shown]
        blocks.append("\n".join(lines))
    note = ("Means across seeds, as in the report. vs random: relative improvement over random in %, "
            "100 x (acc - acc_random) / acc_random\nper seed, at the last cycle and averaged over the cycles after "
            "the shared random initial set (the report's overview);\nthe average can disagree in sign with the "
            "final accuracy and the area when one cycle is far off. area: under accuracy vs labeled\n"
            "samples; *: the highest area. The report gives confidence intervals and per-cycle numbers.")
    return "\n\n".join(blocks + [note])
