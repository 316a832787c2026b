"""A compact paired table from a run directory's ``paired.csv`` (written by ``tidal report``).

One table per (dataset, imbalance): a row per method of ``--rows``, a column per method of
``--cols``; each cell is the paired difference row − column of the area under the accuracy
curve (pp, mean over the seeds both ran, :mod:`tidal.report.paired`), with its 95% t-interval
when there are at least two seeds and the number of seeds; **bold** when the interval lies
above zero (a win); – where the pair did not run. The last column counts the wins among the
pairs that ran. Prints markdown and saves it (``--save``).

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


def _cell(row: dict[str, str]) -> tuple[str, bool]:
    mean, lo, hi = (float(row[k]) if row[k] not in ("", "nan") else math.nan for k in ("auc_mean", "auc_lo", "auc_hi"))
    n = len(row["seeds"].split())
    win = not math.isnan(lo) and lo > 0
    text = f"{mean:+.2f}" + ("" if math.isnan(lo) else f" [{lo:+.2f}, {hi:+.2f}]") + f" ({n})"
    return (f"**{text}**" if win else text), win


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
        out.append("")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run_dir", type=Path)
    ap.add_argument("--rows", nargs="+", required=True)
    ap.add_argument("--cols", nargs="+", required=True)
    ap.add_argument("--save", type=Path)
    args = ap.parse_args(argv)
    text = tables(args.run_dir / "paired.csv", args.rows, args.cols)
    print(text)
    if args.save:
        args.save.write_text(f"`python benchmarks/paired_table.py {args.run_dir} --rows {' '.join(args.rows)} "
                             f"--cols {' '.join(args.cols)}`\n\n{text}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
