#!/usr/bin/env bash
# Issue 20's one tuning step: the only hyper-parameter of the TD variants that is not fitted on the
# data is tidal-diverse-*'s pre-filter β (StrategyConfig.diverse_prefilter: draws among the ⌈β·k⌉
# most TD-uncertain candidates). It is chosen here on IR 10, seeds 0-1 only, and then left alone:
#   β = 3, 10 (the provisional default) and 20 (⌈20·500⌉ = the whole 10,000-candidate subset:
#   plain TD-weighted k-means++), each into its own run directory OUT/beta-B;
# then `python benchmarks/td_variants_tuning.py OUT` prints and saves the table and the choice
# (largest mean area under the accuracy curve over both variants and both seeds).
# tidal-detached-* and tidal-calibrated-* have nothing to choose (the detached module has no
# parameter of its own; the calibration temperature is fitted on each cycle's labeled record).
#
#   bash benchmarks/td_variants_tuning.sh [OUT_DIR]   (default benchmarks/results/td_tuning)
#
# 12 quick-preset runs, about 40 minutes with JOBS=2 on this project's 2-core Xeon. Resumable.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-benchmarks/results/td_tuning}
TIDAL=${TIDAL:-.venv/bin/tidal}
JOBS=${JOBS:-2}
export OMP_NUM_THREADS=$JOBS  # one torch thread per worker, as the grid was made
for beta in 3 10 20; do
    $TIDAL run --preset quick --dataset fashion-mnist --imbalance 10 --seeds 0 1 --jobs "$JOBS" --quiet \
        --device cpu --methods tidal-diverse-entropy tidal-diverse-margin --diverse-prefilter "$beta" \
        --out "$OUT/beta-$beta"
done
${PYTHON:-.venv/bin/python} benchmarks/td_variants_tuning.py "$OUT"
