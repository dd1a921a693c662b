#!/usr/bin/env bash
# The transfer study of issue 18 on one lent GPU, inside one call (at most 600 s):
#
#   benchmarks/device_transfer.sh STOP_SECONDS
#       benchmarks/transfer.py at 1,000,000 synthetic users (TRANSFER_USERS), seeds 0 1 2
#       (TRANSFER_SEEDS): the data is generated once under runs/transfer_data (the first
#       call, about 45 s) and reused by its fingerprint on later calls.
#   CLUE_STUDY=ml1m benchmarks/device_transfer.sh STOP_SECONDS
#       benchmarks/label_efficiency.py on ML-1M again (the carried .gpudata): the CLUE
#       pre-training as the recipes now hold it (the fix) and its untrained encoder, on every
#       task including the cold-start cells (recipes/table2/coldrec{3,5}_*.yaml).
#   CLUE_STUDY=both benchmarks/device_transfer.sh STOP_SECONDS
#       both side by side (the ML-1M runs are small).
#
# LABEL_TASKS narrows the ML-1M tasks (e.g. "occupation coldrec3 coldrec5"); LABEL_MODES
# and TRANSFER_MODES choose the fine-tuning modes (full probe lpft full_lr01).
# TRANSFER_METHODS and LABEL_METHODS choose the methods (defaults below: the fix, its
# untrained encoder, CLUEZero and the bag; the Transformer pre-trainings of the paper's
# form cost most of a call at 1M users). TRANSFER_FRACTIONS, TRANSFER_MODES and
# TRANSFER_TASKS narrow the 1M-user grid (default: all of benchmarks/transfer.py's), in
# the order given, which is the order the runs start in.
#
# No run starts after STOP_SECONDS - 90 s; at STOP_SECONDS the runs still going get
# SIGTERM, which makes each save its state and stop, and the next call on the same warm
# machine resumes them (runs/ and the data stay there; nothing under runs/ is carried).
# Repeat the call until the log says no run was left. Every call ends by packing
# docs/results and the runs' small files (no weights) into $OUT/results.tar.gz.
# Set CLUE_MPS=1 to put the processes under CUDA MPS (checked first; off if it fails).
set -u
stop=${1:-540}
study=${CLUE_STUDY:-transfer}
case "$study" in
    transfer | ml1m | both) ;;
    *) echo "CLUE_STUDY=$study: use transfer (the default), ml1m or both" >&2; exit 2 ;;
esac
source benchmarks/device_env.sh
started=$(date +%s)

if [ "${CLUE_MPS:-0}" = 1 ]; then
    start_mps
fi

left=$(( stop - 90 - ($(date +%s) - started) ))
( sleep $(( stop - ($(date +%s) - started) )); pkill -TERM -f "clue_fw (run|data synth)" ) &
stopper=$!
runs=()
if [ "$study" != transfer ]; then
    # shellcheck disable=SC2086  # LABEL_METHODS is a list
    python3 benchmarks/label_efficiency.py --methods ${LABEL_METHODS:-clue item_mean} \
        ${LABEL_TASKS:+--tasks $LABEL_TASKS} ${LABEL_MODES:+--modes $LABEL_MODES} \
        --runs-dir runs/label_efficiency_fixed --jobs "${LABEL_JOBS:-10}" --gpus 1 \
        --deadline "$left" > "$OUT/label_efficiency.log" 2>&1 &
    label=$!
    runs+=(runs/label_efficiency_fixed)
fi
if [ "$study" != ml1m ]; then
    # shellcheck disable=SC2086  # TRANSFER_SEEDS and TRANSFER_METHODS are lists
    python3 benchmarks/transfer.py --users "${TRANSFER_USERS:-1000000}" \
        --data-root runs/transfer_data --runs-dir runs/transfer --seeds ${TRANSFER_SEEDS:-0 1 2} \
        --methods ${TRANSFER_METHODS:-clue item_mean zero bag} \
        ${TRANSFER_FRACTIONS:+--fractions $TRANSFER_FRACTIONS} \
        ${TRANSFER_MODES:+--modes $TRANSFER_MODES} ${TRANSFER_TASKS:+--tasks $TRANSFER_TASKS} \
        --jobs "${TRANSFER_JOBS:-6}" --gpus 1 --deadline "$left" \
        --note "${TRANSFER_NOTE:-}" > "$OUT/transfer.log" 2>&1
    runs+=(runs/transfer)
fi
[ "$study" = transfer ] || wait "$label"
kill "$stopper" 2>/dev/null
echo "$study: $(( $(date +%s) - started )) s wall"
grep -hE "FAILED|all runs:|not started|generating|reusing" "$OUT"/*.log | sort | uniq -c | head -n 40
find "${runs[@]}" -name '*.stderr.log' -size +0 -print0 2>/dev/null \
    | xargs -0 -r grep -l -E "Error|Traceback" | head -n 5 | while read -r f; do
        echo "== $f"; tail -n 5 "$f"; done
# What comes back (at most 16 MiB a file): each run's recipe, history, metrics and log,
# the sweep records; no weights and no data (a later call on the same machine finds them).
find "${runs[@]}" \( -name metrics.json -o -name history.csv -o -name recipe.yaml \
    -o -name '*.stderr.log' -o -name sweeps.json -o -name machine.json \) > /tmp/keep.txt 2>/dev/null
tar czf "$OUT/results.tar.gz" -T /tmp/keep.txt docs/results
