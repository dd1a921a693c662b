#!/usr/bin/env bash
# The pre-training studies of issue 18 on a lent GPU machine, inside one call:
#
#   benchmarks/device_collapse.sh STOP_SECONDS
#
# runs benchmarks/collapse.py (every pre-training variant of the collapse study, Fig. 6
# and 7) and benchmarks/sensitivity.py (Fig. 5: view strengths at MovieLens30) side by side
# on the GPU(s). No run starts after STOP_SECONDS - 90 s; at STOP_SECONDS the runs still
# going get SIGTERM, which makes each save its state and stop, and the next call on the
# same warm machine resumes them (the runs stay under runs/). Every call ends by packing the
# runs' small files and the pre-trained encoders (about 1 MB each) into
# $OUT/runs.tar.gz; `collapse.py summarize` and `sensitivity.py summarize` then run on any
# machine. Set CLUE_MPS=0 to leave CUDA MPS off.
set -u
stop=${1:-540}
source benchmarks/device_env.sh
started=$(date +%s)

if [ "${CLUE_MPS:-1}" = 1 ]; then
    start_mps
fi

left=$(( stop - 90 - ($(date +%s) - started) ))
( sleep $(( stop - ($(date +%s) - started) )); pkill -TERM -f "clue_fw run" ) &
stopper=$!
python3 benchmarks/collapse.py run --jobs "${COLLAPSE_JOBS:-8}" --seeds ${COLLAPSE_SEEDS:-0} \
    --deadline "$left" > "$OUT/collapse.log" 2>&1 &
studies=($!)
if [ "${SENSITIVITY:-1}" = 1 ]; then
    python3 benchmarks/sensitivity.py run --jobs "${SENSITIVITY_JOBS:-21}" --deadline "$left" \
        > "$OUT/sensitivity.log" 2>&1 &
    studies+=($!)
fi
wait "${studies[@]}"
kill "$stopper" 2>/dev/null
echo "studies: $(( $(date +%s) - started )) s wall"
grep -hE "FAILED|all runs:|not started" "$OUT"/*.log | sort | uniq -c | head -n 40
find runs/collapse runs/sensitivity \( -name metrics.json -o -name history.csv \
    -o -name recipe.yaml -o -name run.log -o -name '*.stderr.log' -o -name encoder.safetensors \
    -o -name identity.json \) > /tmp/keep.txt 2>/dev/null
tar czf "$OUT/runs.tar.gz" -T /tmp/keep.txt
ls -la "$OUT"
