#!/usr/bin/env bash
# Issue 20's control for the grid's two CPUs: the grid's baselines (seeds 0-2) ran on an earlier
# machine, the TD variants on a later one, so a paired difference also holds the CPUs' different
# rounding. This reruns `random` (no scoring: only the training and evaluation arithmetic differ)
# for seeds 0-2 at IR 1, 10 and 100 with the grid's exact configuration on *this* CPU, into a
# sibling run directory, and benchmarks/cpu_control.py pairs it with the grid's stored `random`:
# a mean difference away from zero would be a systematic CPU effect, its spread the noise.
#
#   bash benchmarks/cpu_control.sh [GRID_DIR] [OUT_DIR]
#       (defaults benchmarks/results/grid, benchmarks/results/grid-cpu-control)
#
# 9 runs; resumable. Environment overrides: TIDAL (the command), JOBS (default 1).
set -euo pipefail
cd "$(dirname "$0")/.."
GRID=${1:-benchmarks/results/grid}
OUT=${2:-benchmarks/results/grid-cpu-control}
TIDAL=${TIDAL:-.venv/bin/tidal}
JOBS=${JOBS:-1}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-$JOBS}  # one torch thread per worker, as the grid was made
$TIDAL run --preset quick --dataset fashion-mnist --imbalance 1 10 100 --seeds 0 1 2 --methods random \
    --jobs "$JOBS" --out "$OUT" --quiet --device cpu
${PYTHON:-.venv/bin/python} benchmarks/cpu_control.py "$GRID" "$OUT"
