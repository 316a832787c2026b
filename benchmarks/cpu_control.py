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
import math
import sys
from pathlib import Path

from tidal.report.paired import diff_stats
from tidal.report.stats import area_under_curve
from tidal.results import DB_NAME, ResultStore


def curves(run_dir: Path, method: str) -> tuple[object, dict[tuple[float, int], tuple[float, float, float]]]:
    """``(identity, {(imbalance, seed): (area pp, cycle-1 %, final %)})`` of the complete runs of ``method``."""
    out = {}
    with ResultStore(run_dir / DB_NAME, readonly=True) as store:
        config = store.config()
        runs: dict[tuple[float, int], list] = {}
        for r in store.records(method=method):
            runs.setdefault((r.imbalance, r.seed), []).append(r)
        for key, recs in runs.items():
            if len(recs) != config.al.cycles:
                continue
            recs.sort(key=lambda r: r.cycle)
            acc = [100 * r.accuracy for r in recs]
            out[key] = (area_under_curve([r.n_labeled for r in recs], acc), acc[0], acc[-1])
    return config.identity(), out


def _stat(values: list[float]) -> str:
    d = diff_stats(values)
    return f"{d.mean:+.2f}" + ("" if math.isnan(d.lo) else f" [{d.lo:+.2f}, {d.hi:+.2f}]")


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
        lines.append(f"| {ir:g} | {' '.join(map(str, seeds))} | {_stat(diffs[0])} | {_stat(diffs[1])} | "
                     f"{_stat(diffs[2])} | {per_seed} |")
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
    text = table(args.grid, args.control, args.method)
    print(text)
    (args.control / "cpu_control.md").write_text(
        f"`python benchmarks/cpu_control.py {args.grid} {args.control}`\n\n{text}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
