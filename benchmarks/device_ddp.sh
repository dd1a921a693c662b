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
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl || exit 1
# The data root lives under runs/ (ignored, so it stays on a warm machine between calls):
# a carried .gpudata replaces the folder of that name at every call, which removed the
# synthetic file the first call had generated there.
mkdir -p runs/ddp_data
ln -sfn "$PWD/.gpudata/ml-1m" runs/ddp_data/ml-1m
export PYTHONPATH=/tmp/site:$PWD CLUE_DATA_DIR=$PWD/runs/ddp_data PYTHONUNBUFFERED=1
export NCCL_NVLS_ENABLE=0 CLUE_DIST_TIMEOUT=300
nvidia-smi --query-gpu=index,name,memory.total --format=csv,noheader
budget=${DDP_BUDGET_S:-440}
# The script stops starting stages when its budget is spent; timeout is the backstop.
timeout -k 10 $((budget + 30)) python3 benchmarks/ddp.py --budget-s "$budget" "$@" \
    > "$OUT/ddp.log" 2>&1
echo "benchmarks/ddp.py: exit $?, $(( $(date +%s) - started )) s since start"
tail -n 30 "$OUT/ddp.log"
cp docs/results/ddp*.md docs/results/ddp*.json "$OUT/" 2>/dev/null
tar czf "$OUT/ddp.tar.gz" --exclude='*.safetensors' docs/results/ddp* runs/ddp 2>/dev/null
echo "all: $(( $(date +%s) - started )) s"
