"""A compact paired table from a run directory's ``paired.csv`` (written by ``tidal report``).

One table per (dataset, imbalance): a row per method of ``--rows``, a column per method of
``--cols``; each cell is the paired difference row − column of the area under the accuracy
curve (pp, mean over the seeds both ran, :mod:`tidal.report.paired`), with its 95% t-interval
when there are at least two seeds and the number of seeds; **bold** when the interval lies
above zero (a win); – where the pair did not run. The last column counts the wins among the
pairs that ran. Under each table, the verdict the README's reading needs: the row methods
whose interval lies above zero against every column (all pairs run), each with its smallest
difference (the column it beats by least); when there is none, the row method closest to it
(most wins, then the largest smallest difference) and that difference. Prints markdown and
saves it (``--save``).

    python benchmarks/paired_table.py benchmarks/results/grid --rows tidal-diverse-entropy ... \\
        --cols random entropy margin tidal-entropy tidal-margin coreset [--save FILE]
"""

from __future__ import annotations

import argparse
import csv
import math
import sys
from collections import defaultdict
from pathlib import Path

from common import show


def _cell(row: dict[str, str]) -> tuple[str, bool]:
    mean, lo, hi = _mean_lo_hi(row)
    n = len(row["seeds"].split())
    win = not math.isnan(lo) and lo > 0
    text = f"{mean:+.2f}" + ("" if math.isnan(lo) else f" [{lo:+.2f}, {hi:+.2f}]") + f" ({n})"
    return (f"**{text}**" if win else text), win


def _mean_lo_hi(row: dict[str, str]) -> tuple[float, float, float]:
    return tuple(float(row[k]) if row[k] not in ("", "nan") else math.nan for k in ("auc_mean", "auc_lo", "auc_hi"))


def verdict(pairs: dict[tuple[str, str], dict[str, str]], rows: list[str], cols: list[str]) -> str:
    """One line: which of ``rows`` beat every one of ``cols`` (interval above zero, every pair run), by how much."""
    ranked = []  # (method, wins, beats every column, least mean, its column, its cell text)
    for m in rows:
        ran = [(c, pairs[(m, c)]) for c in cols if (m, c) in pairs]
        if not ran:
            continue
        wins = sum(_cell(r)[1] for _, r in ran)
        least_col, least = min(ran, key=lambda cr: _mean_lo_hi(cr[1])[0])
        ranked.append((m, wins, len(ran) == len(cols) and wins == len(cols), _mean_lo_hi(least)[0], least_col,
                       _cell(least)[0]))
    if not ranked:
        return ""
    winners = [f"{m}, by {text} at the least (against {c})" for m, _, every, _, c, text in ranked if every]
    if winners:
        return "Beats every column: " + "; ".join(winners) + "."
    m, wins, _, _, c, text = max(ranked, key=lambda t: (t[1], t[3]))
    return (f"Beats every column: none. Closest: {m}, above zero against {wins} of {len(cols)}; its smallest "
            f"difference is {text} (against {c}).")


def tables(paired_csv: Path, rows: list[str], cols: list[str]) -> str:
    by = defaultdict(dict)
    with open(paired_csv, newline="") as f:
        for r in csv.DictReader(f):
            by[(r["dataset"], float(r["imbalance"]))][(r["a"], r["b"])] = r
    out = []
    for (dataset, ir), pairs in sorted(by.items()):
        present = [m for m in rows if any(a == m for a, _ in pairs)]
        if not present:
            continue
        out += [f"{dataset}, IR {ir:g}: area difference row − column, pp, mean [95% t-interval] (seeds)", "",
                "| method | " + " | ".join(cols) + " | wins |", "|---|" + "---:|" * (len(cols) + 1)]
        for m in present:
            cells, wins, compared = [], 0, 0
            for c in cols:
                r = pairs.get((m, c))
                if r is None:
                    cells.append("–")
                    continue
                text, win = _cell(r)
                cells.append(text)
                wins, compared = wins + win, compared + 1
            out.append(f"| {m} | " + " | ".join(cells) + f" | {wins}/{compared} |")
        out += ["", verdict(pairs, present, cols), ""]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run_dir", type=Path)
    ap.add_argument("--rows", nargs="+", required=True)
    ap.add_argument("--cols", nargs="+", required=True)
    ap.add_argument("--save", type=Path)
    args = ap.parse_args(argv)
    show(tables(args.run_dir / "paired.csv", args.rows, args.cols), args.save,
         f"python benchmarks/paired_table.py {args.run_dir} --rows {' '.join(args.rows)} --cols {' '.join(args.cols)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
