#!/usr/bin/env bash
# Reproduces the README's "Results" section: the quick preset on FashionMNIST at imbalance
# ratios 1, 10 and 100, TiDAL (entropy, margin) against random, snapshot entropy/margin,
# Learning Loss and Core-Set, 3 seeds, plus the paper's Figure 2 and Figure 7 analyses.
# About 2.5 hours on a 2-core CPU.
#
#   bash benchmarks/fashion_mnist_grid.sh [OUT_DIR]      (default runs/grid)
#   METHODS="..." bash benchmarks/fashion_mnist_grid.sh  (other methods; they may join an existing OUT_DIR)
#
# Two processes with one torch thread each share the run directory: they split the work by
# imbalance ratio, so no (setting, method, seed) is trained twice. Killed at any point, the
# same command continues where it stopped.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-runs/grid}
TIDAL=${TIDAL:-.venv/bin/tidal}
# The README's grid; every baseline: METHODS="$(.venv/bin/tidal methods | cut -d' ' -f1 | tr '\n' ' ')"
METHODS=${METHODS:-"tidal-entropy tidal-margin random entropy margin lloss coreset"}
export OMP_NUM_THREADS=1

$TIDAL run --preset quick --dataset fashion-mnist --imbalance 1 10 --methods $METHODS --seeds 0 1 2 \
    --out "$OUT" --quiet --device cpu &
$TIDAL run --preset quick --dataset fashion-mnist --imbalance 100 --methods $METHODS --seeds 0 1 2 \
    --out "$OUT" --quiet --device cpu &
wait

# Figure 7 needs per-epoch test inference (--track-td), so it gets its own small run directory.
$TIDAL run --methods tidal-entropy --imbalance 10 --seeds 0 --cycles 1 --initial 2000 --track-td \
    --out "$OUT-fig7" --quiet --device cpu
unset OMP_NUM_THREADS  # Figure 2 ran with torch's default threads
$TIDAL analyze-scores --dataset fashion-mnist --imbalance 10 --seed 0 --out "$OUT" --quiet
$TIDAL analyze-scores --dataset fashion-mnist --imbalance 100 --seed 0 --out "$OUT" --quiet
$TIDAL report "$OUT"
