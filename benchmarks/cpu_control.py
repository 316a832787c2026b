"""The grid's CPU control (issue 20): one method rerun on this CPU, paired with the stored runs.

``GRID`` and ``CONTROL`` are run directories of the same experiment (the same
``ExperimentConfig.identity()``, else refused) that both hold ``--method`` (default ``random``)
for the same seeds, made on different CPUs. Same code, same seeds, same initial sets: any
difference is the two CPUs' floating-point arithmetic (and, for a method that scores, the
selections that follow from it). Per imbalance: the paired difference control − grid of the
area under the accuracy curve (pp, :func:`tidal.report.stats.area_under_curve`), of the cycle-1
accuracy and of the final accuracy, each as the mean [95% t-interval] over seeds
(:func:`tidal.report.paired.diff_stats`), and the per-seed area differences. An interval that
excludes zero is a systematic CPU effect; the spread is the noise it adds to every cross-CPU
pair. Prints markdown and saves it (``CONTROL/cpu_control.md``). Only complete runs count.

    python benchmarks/cpu_control.py benchmarks/results/grid benchmarks/results/grid-cpu-control
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from common import diff_text, run_curves, show

from tidal.results import DB_NAME


def curves(run_dir: Path, method: str) -> tuple[object, dict[tuple[float, int], tuple[float, float, float]]]:
    """``(identity, {(imbalance, seed): (area pp, cycle-1 %, final %)})`` of the complete runs of ``method``."""
    config, runs = run_curves(run_dir, method=method)
    return config.identity(), {(ir, seed): v for (_, _, ir, seed), v in runs.items()}


def table(grid: Path, control: Path, method: str = "random") -> str:
    id_grid, a = curves(grid, method)
    id_control, b = curves(control, method)
    if id_grid != id_control:
        raise ValueError(f"{grid} and {control} hold different experiments (configurations differ); "
                         "the control must rerun the grid's exact configuration")
    lines = [f"{method}: {control} − {grid}, paired by seed (pp): mean [95% t-interval]", "",
             "| IR | seeds | area | cycle-1 accuracy | final accuracy | area per seed |",
             "|---:|---|---:|---:|---:|---|"]
    for ir in sorted({ir for ir, _ in b}):
        seeds = sorted(s for i, s in b if i == ir and (i, s) in a)
        if not seeds:
            continue
        diffs = [[b[(ir, s)][j] - a[(ir, s)][j] for s in seeds] for j in range(3)]
        per_seed = ", ".join(f"{s}: {d:+.2f}" for s, d in zip(seeds, diffs[0]))
        stats = " | ".join(diff_text(d, count=False) for d in diffs)
        lines.append(f"| {ir:g} | {' '.join(map(str, seeds))} | {stats} | {per_seed} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("grid", type=Path)
    ap.add_argument("control", type=Path)
    ap.add_argument("--method", default="random")
    args = ap.parse_args(argv)
    for d in (args.grid, args.control):
        if not (d / DB_NAME).is_file():
            ap.error(f"{d / DB_NAME} does not exist; give run directories of `tidal run`")
    show(table(args.grid, args.control, args.method), args.control / "cpu_control.md",
         f"python benchmarks/cpu_control.py {args.grid} {args.control}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
