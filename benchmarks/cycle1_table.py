"""Cycle-1 accuracy per method, paired against reference methods (issue 20's reading).

The first cycle of every method trains on the same seeded random initial set, so its accuracy
says what the training objective alone does: TiDAL's KL term (Eq. 9) reaches the backbone,
the ``tidal-detached-*`` module's does not, and ``random``/``entropy``/... train on
cross-entropy alone. For each (dataset, imbalance) of a run directory: a row per method of
``--methods`` with the seeds stored, the mean cycle-1 test accuracy (%), and, for each method
of ``--refs``, the paired difference method − ref (pp) over the seeds both ran: the mean and,
from two seeds on, the 95% t-interval (:func:`tidal.report.paired.diff_stats`). Prints markdown
and saves it (``--save``).

    python benchmarks/cycle1_table.py benchmarks/results/grid --methods random tidal-entropy \\
        tidal-detached-entropy --refs random tidal-entropy [--save FILE]
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from pathlib import Path

from common import diff_text, show

from tidal.results import DB_NAME, ResultStore


def first_cycles(run_dir: Path) -> dict[tuple[str, float], dict[str, dict[int, float]]]:
    """``{(dataset, imbalance): {method: {seed: cycle-1 accuracy in %}}}`` of ``run_dir``'s store."""
    out: dict[tuple[str, float], dict[str, dict[int, float]]] = defaultdict(lambda: defaultdict(dict))
    with ResultStore(run_dir / DB_NAME, readonly=True) as store:
        for r in store.records(cycle=0):
            out[(r.dataset, r.imbalance)][r.method][r.seed] = 100 * r.accuracy
    return out


def _diff(acc: dict[int, float], ref: dict[int, float]) -> str:
    seeds = sorted(set(acc) & set(ref))
    return diff_text([acc[s] - ref[s] for s in seeds]) if seeds else "–"


def table(run_dir: Path, methods: list[str], refs: list[str]) -> str:
    out = []
    for (dataset, ir), by in sorted(first_cycles(run_dir).items()):
        present = [m for m in methods if m in by]
        if not present:
            continue
        out += [f"{dataset}, IR {ir:g}: cycle-1 test accuracy (%), and method − ref (pp), mean [95% t-interval] "
                "(paired seeds)", "",
                "| method | seeds | cycle-1 accuracy (%) | " + " | ".join(f"− {r}" for r in refs) + " |",
                "|---|---|---:|" + "---:|" * len(refs)]
        for m in present:
            acc = by[m]
            mean = sum(acc.values()) / len(acc)
            cells = [_diff(acc, by.get(r, {})) if r != m else "·" for r in refs]
            out.append(f"| {m} | {' '.join(map(str, sorted(acc)))} | {mean:.2f} | " + " | ".join(cells) + " |")
        out.append("")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run_dir", type=Path)
    ap.add_argument("--methods", nargs="+", required=True)
    ap.add_argument("--refs", nargs="+", required=True, help="methods to pair every row against")
    ap.add_argument("--save", type=Path)
    args = ap.parse_args(argv)
    if not (args.run_dir / DB_NAME).is_file():
        ap.error(f"{args.run_dir / DB_NAME} does not exist; give a run directory of `tidal run`")
    show(table(args.run_dir, args.methods, args.refs), args.save,
         f"python benchmarks/cycle1_table.py {args.run_dir} --methods {' '.join(args.methods)} "
         f"--refs {' '.join(args.refs)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
