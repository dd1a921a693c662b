#!/usr/bin/env bash
# Run several benchmark sweeps at once on a lent GPU machine (see docs/results.md).
#
#   benchmarks/device_sweeps.sh SWEEPS_FILE
#
# Each non-comment line of SWEEPS_FILE is `NAME SCRIPT [ARGUMENTS...]`, for example
#   history_all benchmarks/seeds_table.py recipes/ml30_zero.yaml --jobs 6 --markdown docs/results/x.md
# Shell quoting works inside a line. A NAME that starts with `@` is a summary step: it
# runs after every sweep has ended, in file order. Every other sweep starts at once and runs for at most
# $SWEEP_BUDGET_S seconds (finished runs are kept; an unfinished sweep's table is built
# from the runs that finished). Logs go to $OUT/NAME.log; the run metrics (no weights)
# and docs/results come back as $OUT/results.tar.gz.
set -u
source benchmarks/device_env.sh
budget=${SWEEP_BUDGET_S:-540}
started=$(date +%s)
set -f  # recipe overrides such as [{"kind":"crop"}] are not file patterns
lines=()
after=()
while IFS= read -r line || [ -n "$line" ]; do
    case "$line" in "" | "#"*) continue ;; esac
    eval "set -- $line"
    name=$1; shift
    case "$name" in "@"*) after+=("$line"); continue ;; esac
    lines+=("$line")
    timeout "$budget" python3 "$@" > "$OUT/$name.log" 2>&1 &
done < "$1"
wait
echo "all sweeps: $(( $(date +%s) - started )) s wall"
for line in "${after[@]}"; do
    eval "set -- $line"
    name=${1#@}; shift
    python3 "$@" > "$OUT/$name.log" 2>&1 || echo "$name: summary step failed"
done
for line in "${lines[@]}"; do
    eval "set -- $line"
    name=$1; shift
    # Build the table again from whatever finished (a sweep cut off by the budget wrote none).
    if ! grep -q "all runs:" "$OUT/$name.log"; then
        echo "$name: cut off at ${budget} s; summarising the finished runs"
        python3 "$@" --summarize-only >> "$OUT/$name.log" 2>&1
    fi
    grep -E "FAILED|all runs:" "$OUT/$name.log" | tail -n 5
done
tar czf "$OUT/results.tar.gz" --exclude='*.safetensors' runs docs/results
