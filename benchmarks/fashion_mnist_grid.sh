#!/usr/bin/env bash
# Reproduces the README's "Results" section: the quick preset on FashionMNIST at imbalance
# ratios 1, 10 and 100, TiDAL (entropy, margin) against random and every baseline of the
# paper (snapshot entropy and margin, BALD, Core-Set, Learning Loss, CAL, VAAL, TA-VAAL),
# 3 seeds, plus the paper's Figure 2 and Figure 7 analyses, then the report.
#
#   bash benchmarks/fashion_mnist_grid.sh [OUT_DIR]   (default benchmarks/results/grid)
#
# The default run directory is tracked by git: its results.sqlite holds every finished
# cycle, so the grid can be stopped at any moment (Ctrl-C, kill -9, the end of a work
# session) and the same command, on this or another machine, continues where it stopped.
# About 4 hours of a 2-core x86_64 CPU in all (99 runs of 267-434 s each on one core, measured).
#
# JOBS worker processes (default 2) with one torch thread each train the runs, seed by seed
# (seed 0 of every setting and method first), so a partial grid holds whole seeds. One
# thread per run whatever JOBS is: the numbers stay the same on a machine with more cores.
# Environment overrides: TIDAL (the command), JOBS, METHODS (e.g. add badge least-confidence
# tidal-exact tidal-margin-self; methods may join an existing run directory).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-benchmarks/results/grid}
TIDAL=${TIDAL:-.venv/bin/tidal}
JOBS=${JOBS:-2}
METHODS=${METHODS:-"random tidal-entropy tidal-margin entropy margin bald coreset lloss cal vaal ta-vaal"}
export OMP_NUM_THREADS=$JOBS  # torch threads // jobs = 1 thread per worker

$TIDAL run --preset quick --dataset fashion-mnist --imbalance 1 10 100 --methods $METHODS --seeds 0 1 2 \
    --jobs "$JOBS" --out "$OUT" --quiet --device cpu

export OMP_NUM_THREADS=1
# Figure 7 needs per-epoch test inference (--track-td), so it gets its own run directory.
$TIDAL run --methods tidal-entropy --imbalance 10 --seeds 0 --cycles 1 --initial 2000 --track-td \
    --out "$OUT-fig7" --quiet --device cpu
# Figure 2, once per imbalance ratio (an analysis already stored is kept).
for ir in 10 100; do
    [ -f "$OUT/analysis/scores_fashion-mnist_ir${ir}_seed0.npz" ] ||
        $TIDAL analyze-scores --dataset fashion-mnist --imbalance "$ir" --seed 0 --out "$OUT" --quiet
done
$TIDAL report "$OUT"
