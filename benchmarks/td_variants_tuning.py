"""Issue 20's tuning table: tidal-diverse-*'s pre-filter β on IR 10, seeds 0-1, and the choice.

Reads ``OUT/beta-B/results.sqlite`` for every ``B`` (made by ``benchmarks/td_variants_tuning.sh``),
prints and saves (``OUT/tuning.md``) one row per (β, method, seed) with the area under the
accuracy curve (pp: the mean test accuracy over the labeling budget,
:func:`tidal.report.stats.area_under_curve`) and the final accuracy, beside the paper's TiDAL of
the same flavour on the same seed where the committed grid holds it (``--grid``); then the mean
area per β over both variants and both seeds, and the β with the largest mean: the choice. Only
complete runs count (every cycle of the quick preset).

    python benchmarks/td_variants_tuning.py [OUT] [--grid benchmarks/results/grid]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from common import run_curves

from tidal.results import DB_NAME

IMBALANCE, SEEDS = 10.0, (0, 1)


def curves(run_dir: Path, methods: tuple[str, ...]) -> dict[tuple[str, int], tuple[float, float]]:
    """(method, seed) -> (area in pp, final accuracy in %) of the complete IR 10 runs in ``run_dir``."""
    if not (run_dir / DB_NAME).exists():
        return {}
    _, runs = run_curves(run_dir, imbalance=IMBALANCE)
    return {(m, seed): (area, final) for (_, m, _, seed), (area, _, final) in runs.items()
            if m in methods and seed in SEEDS}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out", nargs="?", default="benchmarks/results/td_tuning")
    ap.add_argument("--grid", default="benchmarks/results/grid", help="run directory with the paper's TiDAL")
    args = ap.parse_args(argv)
    out = Path(args.out)
    betas = sorted((float(p.name.split("-", 1)[1]), p) for p in out.glob("beta-*") if p.is_dir())
    variants = ("tidal-diverse-entropy", "tidal-diverse-margin")
    paper = curves(Path(args.grid), ("tidal-entropy", "tidal-margin"))
    lines = ["| β | method | seed | area (pp) | final (%) | area − paper TiDAL, same seed (pp) |",
             "|---:|---|---:|---:|---:|---:|"]
    means = {}
    for beta, path in betas:
        got = curves(path, variants)
        for (method, seed), (area, final) in sorted(got.items()):
            ref = paper.get((method.replace("diverse-", ""), seed))
            vs = f"{area - ref[0]:+.2f}" if ref else "–"
            lines.append(f"| {beta:g} | {method} | {seed} | {area:.2f} | {final:.2f} | {vs} |")
        if len(got) == len(variants) * len(SEEDS):
            means[beta] = float(np.mean([a for a, _ in got.values()]))
    lines += ["", "| β | mean area, both variants × seeds 0-1 (pp) |", "|---:|---:|"]
    lines += [f"| {b:g} | {m:.2f} |" for b, m in means.items()]
    missing = [f"{b:g}" for b, _ in betas if b not in means]
    if missing:
        lines.append(f"\nIncomplete (not compared): β = {', '.join(missing)}.")
    if means:
        best = max(means, key=means.get)
        lines.append(f"\nChoice: β = {best:g} (largest mean area), the default of StrategyConfig.diverse_prefilter.")
    text = "\n".join(lines)
    print(text)
    (out / "tuning.md").write_text(f"# tidal-diverse-* pre-filter β, IR 10, seeds 0-1 (issue 20)\n\n"
                                   f"`python benchmarks/td_variants_tuning.py {args.out}`\n\n{text}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
