#!/usr/bin/env bash
# The GPU check's one command (see benchmarks/gpu_check/prepare.py and docs/benchmarks.md). On the GPU machine:
#   bash benchmarks/gpu_check/run.sh            (the device tool's `run`, carrying .gpu-check/wheels and .gpu-check/cache)
# Here, as its CPU rehearsal (make gpu-check-dry): PYTHON, WHEELS, SITE, CACHE and OUT point at the rehearsal's own.
# Installs the carried wheels with --no-index (nothing is downloaded), then runs check.py; everything it prints
# goes to $OUT/gpu-check.log too, and its results to $OUT/gpu-check.json.
set -uo pipefail
cd "$(dirname "$0")/../.."
PYTHON=${PYTHON:-python3}
WHEELS=${WHEELS:-.gpu-check/wheels}
SITE=${SITE:-/tmp/retrain-gpu-check-site}
OUT=${OUT:-.gpu-check/out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1
check() {
    echo "gpu-check: installing $(ls "$WHEELS"/*.whl | wc -l) carried wheels from $WHEELS into $SITE (--no-index)"
    "$PYTHON" -m pip install --quiet --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" \
        "$WHEELS"/*.whl || { echo "gpu-check: the carried wheels did not install"; return 1; }
    PYTHONPATH="$SITE:$PWD" RETRAIN_CACHE=${CACHE:-$PWD/.gpu-check/cache} \
        "$PYTHON" benchmarks/gpu_check/check.py --out "$OUT" --site "$SITE" --manifest "$WHEELS/manifest.json"
}
# tee in the pipeline (not a process substitution): the script ends only when the log is complete
check 2>&1 | tee "$OUT/gpu-check.log"
exit "${PIPESTATUS[0]}"
