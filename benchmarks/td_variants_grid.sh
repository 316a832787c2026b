#!/usr/bin/env bash
# Issue 20's experiment: the TD variants against every baseline, judged by paired statistics.
# The quick preset on FashionMNIST at imbalance ratios 1, 10 and 100, into the committed grid's
# run directory (benchmarks/results/grid, seeds 0-2 of the paper's methods already there):
#   - seeds 3 and 4 for random, entropy, margin, tidal-entropy, tidal-margin and coreset;
#   - seeds 0-4 for badge and the six TD variants (tidal-detached-*, tidal-calibrated-*,
#     tidal-diverse-*), at the provisional defaults their docstrings state;
# then `tidal report`, whose "Paired comparisons" section is the deliverable.
#
#   bash benchmarks/td_variants_grid.sh [OUT_DIR]   (default benchmarks/results/grid)
#
# 147 runs; at the 267-434 s a quick-preset run took on one core of this project's 2-core Xeon
# (fashion_mnist_grid.sh), about 7 hours with JOBS=2. Resumable: results.sqlite holds every
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

$TIDAL run "${COMMON[@]}" --methods random entropy margin tidal-entropy tidal-margin coreset --seeds 3 4
$TIDAL run "${COMMON[@]}" --seeds 0 1 2 3 4 --methods badge \
    tidal-detached-entropy tidal-detached-margin tidal-calibrated-entropy tidal-calibrated-margin \
    tidal-diverse-entropy tidal-diverse-margin
$TIDAL report "$OUT"
