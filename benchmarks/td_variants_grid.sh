#!/usr/bin/env bash
# Issue 20's experiment: the TD variants against every baseline, judged by paired statistics.
# The quick preset on FashionMNIST at imbalance ratios 1, 10 and 100, into the committed grid's
# run directory (benchmarks/results/grid, seeds 0-2 of the paper's methods already there), in
# the order that gives a paired reading soonest:
#   1. seeds 0-2 of the six TD variants (tidal-detached-*, tidal-calibrated-*, tidal-diverse-*,
#      the latter at the β that benchmarks/td_variants_tuning.sh chose on IR 10 seeds 0-1,
#      now StrategyConfig.diverse_prefilter's default): 54 runs, each paired with the grid's
#      seeds 0-2 of every baseline;
#   2. seeds 0-4 of badge, seeds 3-4 of random, entropy, margin, tidal-entropy, tidal-margin,
#      coreset and the six variants: 87 runs;
#   3. seeds 0-4 of tidal-detached-diverse-entropy, the variant added after stage 1's first seeds
#      suggested it (docs/methods.md): 15 runs;
# then `tidal report`, whose "Paired comparisons" section is the deliverable.
#
#   bash benchmarks/td_variants_grid.sh [OUT_DIR]   (default benchmarks/results/grid)
#
# 156 runs, 152 to train: the 4 tuning runs at the chosen β (IR 10, seeds 0-1) are copied in from
# benchmarks/results/td_tuning/beta-10 (benchmarks/copy_runs.py; the default OUT only). A variant's
# quick-preset run took about 10 minutes per worker on this project's 2-core Xeon with JOBS=2
# (benchmarks/td_variants_tuning.sh: 12 runs in 62 min beside a test suite), so about 12 hours.
# Resumable: results.sqlite holds every
# finished cycle, so stop it at any moment and the same command continues where it stopped.
# Runs are handed out seed by seed, so a partial grid holds whole seeds.
# Environment overrides: TIDAL (the command), JOBS (default 2; one torch thread per worker).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-benchmarks/results/grid}
TIDAL=${TIDAL:-.venv/bin/tidal}
JOBS=${JOBS:-2}
export OMP_NUM_THREADS=$JOBS  # torch threads // jobs = 1 thread per worker, as the grid was made
COMMON=(--preset quick --dataset fashion-mnist --imbalance 1 10 100 --jobs "$JOBS" --out "$OUT" --quiet --device cpu)

if [ "$OUT" = benchmarks/results/grid ]; then
    ${PYTHON:-.venv/bin/python} benchmarks/copy_runs.py benchmarks/results/td_tuning/beta-10 "$OUT" \
        --methods tidal-diverse-entropy tidal-diverse-margin --imbalances 10 --seeds 0 1
fi
VARIANTS=(tidal-detached-entropy tidal-detached-margin tidal-calibrated-entropy tidal-calibrated-margin
          tidal-diverse-entropy tidal-diverse-margin)
$TIDAL run "${COMMON[@]}" --seeds 0 1 2 --methods "${VARIANTS[@]}"
$TIDAL run "${COMMON[@]}" --seeds 0 1 2 3 4 --methods badge random entropy margin tidal-entropy tidal-margin coreset \
    "${VARIANTS[@]}"
$TIDAL run "${COMMON[@]}" --seeds 0 1 2 3 4 --methods tidal-detached-diverse-entropy
$TIDAL report "$OUT"
