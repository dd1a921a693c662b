#!/usr/bin/env bash
# The quality studies of docs/results.md on a lent GPU machine, inside one call:
#
#   benchmarks/device_quality.sh STOP_SECONDS
#
# runs benchmarks/quality.py (ML-1M and Beauty), benchmarks/clue_strength.py and
# benchmarks/label_efficiency.py side by side over every GPU. No run starts after
# STOP_SECONDS - 90 s; at STOP_SECONDS the runs still going get SIGTERM, which makes
# each save its state and stop, and the next call on the same machine resumes them
# (the runs stay under runs/). Every call ends by packing docs/results,
# the generated recipes and the runs' small files (no weights) into $OUT/results.tar.gz.
# Set CLUE_MPS=1 to put the processes under CUDA MPS (checked first; off if it fails).
set -u
stop=${1:-480}
source benchmarks/device_env.sh
started=$(date +%s)

if [ "${CLUE_MPS:-0}" = 1 ]; then
    start_mps
fi

left=$(( stop - 90 - ($(date +%s) - started) ))
( sleep $(( stop - ($(date +%s) - started) )); pkill -TERM -f "clue_fw run" ) &
stopper=$!
python3 benchmarks/quality.py ml1m beauty --jobs "${QUALITY_JOBS:-14}" --deadline "$left" \
    > "$OUT/quality.log" 2>&1 &
studies=($!)
python3 benchmarks/clue_strength.py --seeds 0 1 --jobs "${STRENGTH_JOBS:-6}" \
    --deadline "$left" > "$OUT/clue_strength.log" 2>&1 &
studies+=($!)
python3 benchmarks/label_efficiency.py --jobs "${LABEL_JOBS:-10}" --deadline "$left" \
    > "$OUT/label_efficiency.log" 2>&1 &
studies+=($!)
wait "${studies[@]}"
kill "$stopper" 2>/dev/null
echo "all studies: $(( $(date +%s) - started )) s wall"
grep -hE "FAILED|all runs:|not started" "$OUT"/*.log | sort | uniq -c | head -n 40
find runs -name '*.stderr.log' -size +0 -print0 2>/dev/null \
    | xargs -0 -r grep -l -E "Error|Traceback" | head -n 5 | while read -r f; do
        echo "== $f"; tail -n 5 "$f"; done
# What comes back (at most 16 MiB a file): each run's recipe, history, metrics and log;
# no weights (a later call on the same machine still finds them under runs/).
find runs/quality runs/clue_strength runs/label_efficiency \( -name metrics.json \
    -o -name history.csv -o -name recipe.yaml -o -name '*.stderr.log' \) > /tmp/keep.txt 2>/dev/null
tar czf "$OUT/results.tar.gz" -T /tmp/keep.txt docs/results recipes
