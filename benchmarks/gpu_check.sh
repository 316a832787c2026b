#!/usr/bin/env bash
# The GPU check: one prepared script for a visit to a CUDA machine, sized to finish well within
# 8 minutes on one H100-class GPU (each step has its own time limit: 4 + 3.7 minutes). It needs nothing from
# the network: the repository, a Python with torch (CUDA build) and tidal's dependencies, and
# the four FashionMNIST .gz files in $TIDAL_DATA or /usr/share/datasets/fashion-mnist.
#
#   bash benchmarks/gpu_check.sh                 # PYTHON defaults to .venv/bin/python, else python3
#   PYTHON=/path/to/venv/bin/python TIDAL_DATA=/data/fmnist bash benchmarks/gpu_check.sh
#   SMALL=1 DEVICE=cpu bash benchmarks/gpu_check.sh   # the same steps on a CPU: a dry run (3 min 13 s on 2 cores)
#
# 1. the CUDA tests: every test with "cuda" in its name (pytest -k cuda), skipped without a GPU;
# 2. benchmarks/gpu_throughput.py: training and scoring throughput at the paper's width 64,
#    TiDAL against plain training and against entropy scoring, float32 against bf16, and
#    several runs sharing the GPU.
# Everything lands in benchmarks/results/gpu/ (OUT overrides): the test log, nvidia-smi, the
# tables (train-cuda.md, score-cuda.md, share-cuda.md) and their log. Exit status: non-zero
# when a step failed; the steps after it still run.
set -uo pipefail
cd "$(dirname "$0")/.."
if [ -z "${PYTHON:-}" ]; then
    if [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
DEVICE=${DEVICE:-cuda}
OUT=${OUT:-benchmarks/results/gpu}
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"  # this checkout's tidal, whatever the venv holds
mkdir -p "$OUT"

data=""
for d in "${TIDAL_DATA:-}" /usr/share/datasets/fashion-mnist; do
    if [ -n "$d" ] && [ -f "$d/train-images-idx3-ubyte.gz" ] && [ -f "$d/t10k-labels-idx1-ubyte.gz" ]; then
        data=$d; break
    fi
done
if [ -z "$data" ]; then
    echo "gpu_check: FashionMNIST not found; set TIDAL_DATA to a folder with the four .gz files" >&2
    exit 2
fi
export TIDAL_DATA=$data

status=0
"$PYTHON" - "$DEVICE" <<'EOF' || exit 2
import sys, torch
device = sys.argv[1]
print(f"torch {torch.__version__}, CUDA {torch.version.cuda}, GPUs: "
      + (", ".join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())) or "none"))
if device.startswith("cuda") and not torch.cuda.is_available():
    sys.exit("gpu_check: torch sees no CUDA device; run with DEVICE=cpu SMALL=1 for a dry run")
EOF
command -v nvidia-smi >/dev/null && nvidia-smi > "$OUT/nvidia-smi.txt" 2>&1

echo "== 1/2 CUDA tests (pytest -k cuda)"
timeout 240 "$PYTHON" -m pytest -q -rs -k cuda -p no:cacheprovider tests 2>&1 | tee "$OUT/cuda-tests.txt"
rc=${PIPESTATUS[0]}
[ "$rc" = 0 ] || { echo "gpu_check: the CUDA tests failed (exit $rc)"; status=1; }

echo "== 2/2 throughput (benchmarks/gpu_throughput.py)"
args=(--device "$DEVICE" --out "$OUT")
[ -n "${SMALL:-}" ] && args+=(--small)
timeout 220 "$PYTHON" benchmarks/gpu_throughput.py "${args[@]}" 2>&1 | tee "$OUT/throughput-log-$DEVICE.txt"
rc=${PIPESTATUS[0]}
[ "$rc" = 0 ] || { echo "gpu_check: the throughput benchmark failed (exit $rc)"; status=1; }

echo "gpu_check: done (status $status); results in $OUT"
exit $status
