#!/usr/bin/env bash
# Measure data-parallel scaling on a lent 2-GPU machine (nvidia-h200-x2):
#
#   bash benchmarks/device_ddp.sh [benchmarks/ddp.py arguments]
#
# Runs benchmarks/ddp.py (1M x 1M synthetic CLUE pre-training and fine-tuning epochs,
# ML-1M ml50_dropout end to end, evaluation of the same weights in 1 and 2 processes;
# docs/results/ddp.md) within $DDP_BUDGET_S seconds (default 440), each stage with its
# own timeout (a second call can finish the rest: `--stages small,eval --out
# docs/results/ddp_small`). Needs the wheels in .whl/ and ML-1M in .gpudata/ml-1m
# (carried); writes the synthetic file to runs/ddp_data/synth/. Brings back, in $OUT: ddp.md, ddp.json,
# ddp.log and ddp.tar.gz (results, run logs, histories, metrics; no weights).
set -u
started=$(date +%s)
# The data root lives under runs/ (ignored, so it stays on a warm machine between calls):
# a carried .gpudata replaces the folder of that name at every call, which removed the
# synthetic file the first call had generated there.
mkdir -p runs/ddp_data
ln -sfn "$PWD/.gpudata/ml-1m" runs/ddp_data/ml-1m
export CLUE_DATA_DIR=$PWD/runs/ddp_data CLUE_DIST_TIMEOUT=300
source benchmarks/device_env.sh
unset OMP_NUM_THREADS  # benchmarks/ddp.py sets each stage's own (--omp-threads)
budget=${DDP_BUDGET_S:-440}
# The script stops starting stages when its budget is spent; timeout is the backstop.
timeout -k 10 $((budget + 30)) python3 benchmarks/ddp.py --budget-s "$budget" "$@" \
    > "$OUT/ddp.log" 2>&1
echo "benchmarks/ddp.py: exit $?, $(( $(date +%s) - started )) s since start"
tail -n 30 "$OUT/ddp.log"
cp docs/results/ddp*.md docs/results/ddp*.json "$OUT/" 2>/dev/null
tar czf "$OUT/ddp.tar.gz" --exclude='*.safetensors' docs/results/ddp* runs/ddp 2>/dev/null
echo "all: $(( $(date +%s) - started )) s"
