#!/usr/bin/env bash
# Run Table II sweeps on a lent GPU machine (see docs/results.md).
#   benchmarks/device_table2.sh NAME [table2.py arguments] [-- NAME [arguments] ...]
# runs each sweep (runs/NAME, concurrently with the others) for at most
# $TABLE2_BUDGET_S seconds, then packs metrics and logs into $OUT/runs.tar.gz and
# each sweep's tables into $OUT/NAME.md.
set -u
source benchmarks/device_env.sh
budget=${TABLE2_BUDGET_S:-540}
set -f  # recipe overrides such as [{"kind":"crop"}] are not file patterns
sweeps=()
current=()
for arg in "$@" --; do
    if [ "$arg" = "--" ]; then
        [ ${#current[@]} -gt 0 ] && sweeps+=("${current[*]}")
        current=()
    else
        current+=("$arg")
    fi
done
for sweep in "${sweeps[@]}"; do
    set -- $sweep
    name=$1; shift
    timeout "$budget" python3 benchmarks/table2.py --runs-dir "runs/$name" "$@" \
        > "$OUT/$name.log" 2>&1 &
done
wait
for sweep in "${sweeps[@]}"; do
    set -- $sweep
    name=$1; shift
    python3 benchmarks/table2.py --runs-dir "runs/$name" --summarize-only \
        --markdown "$OUT/$name.md" "$@" > /dev/null
    tail -n 40 "$OUT/$name.log"
done
tar czf "$OUT/runs.tar.gz" --exclude='*.safetensors' runs
