#!/usr/bin/env bash
# Issue 20: Figure 2's AUROC for the TD variants' scores, beside the paper's TiDAL, on one CPU.
# For IR 10 and 100, seed 0, 3,000 long-tailed FashionMNIST samples at the quick preset's training:
#   - tidal-entropy: snapshot, actual TD, predicted TD (tidal-entropy/-margin, and the weights of
#     tidal-diverse-*) and calibrated predicted TD (tidal-calibrated-*) scores;
#   - tidal-detached-entropy: the same scores of a module trained behind a stop-gradient
#     (tidal-detached-*).
# Into its own directory (default benchmarks/results/td_variants_figure2), not the grid's: the
# grid's stored analysis was made on another CPU and an analysis of the same name replaces it.
#
#   bash benchmarks/td_variants_figure2.sh [OUT_DIR]
#
# 4 trainings of 3,000 samples x 40 epochs; files already there are kept.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-benchmarks/results/td_variants_figure2}
TIDAL=${TIDAL:-.venv/bin/tidal}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
for ir in 10 100; do
    for method in tidal-entropy tidal-detached-entropy; do
        suffix=$([ "$method" = tidal-entropy ] && echo "" || echo "_$method")
        [ -f "$OUT/analysis/scores_fashion-mnist_ir${ir}_seed0${suffix}.npz" ] ||
            $TIDAL analyze-scores --dataset fashion-mnist --imbalance "$ir" --seed 0 --method "$method" \
                --out "$OUT" --quiet --device cpu
    done
done
$TIDAL report "$OUT"
