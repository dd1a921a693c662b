#!/usr/bin/env bash
# The CLUE paper's sequential-recommendation table (issue 23) on one lent GPU, inside one
# call (at most 600 s):
#
#   benchmarks/device_paper_table.sh [STOP_SECONDS]          (default 540)
#
# runs `benchmarks/seeds_table.py --table paper`: GRU4Rec, Caser, the self-attentive model
# (SASRec), CLUEZero, PeterRec (masked item), S3-Rec (ML-1M genres as item attributes) and
# CLUE on MovieLens-1M at max length 30 and 50, and S3-Rec, CLUE and CLUEZero on Beauty
# (left out, with a line saying so, when $CLUE_DATA_DIR/Beauty/Beauty.txt is not there),
# seeds 0 1 2, PAPER_JOBS (default 14) runs at once on the GPU under CUDA MPS (checked
# first, off if it fails; CLUE_MPS=0 leaves it off). PAPER_DATASETS (default
# "ml30 ml50 beauty50") and PAPER_SEEDS (default "0 1 2") narrow it, in the order given.
#
# The clue-s3rec plugin (plugins/clue-s3rec) is made visible to every run without
# installing anything: its source goes on PYTHONPATH and an entry-point record into
# /tmp/site, where device_env.sh puts the carried wheels.
#
# No run starts after STOP_SECONDS - 90 s; at STOP_SECONDS the sweep's process group gets
# SIGTERM, which makes each run save its state and stop, and the next call on the same warm
# machine resumes them (runs/paper stays there; nothing under runs/ is carried). Repeat the
# call until the log says every run has finished. Every call ends by writing the table from the
# runs that finished (docs/results/seqrec_paper.md and .json) and packing it, with each
# run's recipe, history, metrics and log (no weights), into $OUT/results.tar.gz.
set -u
stop=${1:-540}
source benchmarks/device_env.sh
started=$(date +%s)

record=/tmp/site/clue_s3rec-0.1.0.dist-info
mkdir -p "$record"
printf 'Metadata-Version: 2.1\nName: clue-s3rec\nVersion: 0.1.0\n' > "$record/METADATA"
printf '[clue_fw]\ns3rec = clue_s3rec\n' > "$record/entry_points.txt"
export PYTHONPATH=$PYTHONPATH:$PWD/plugins/clue-s3rec
if [ "${CLUE_MPS:-1}" = 1 ]; then
    start_mps
fi

datasets=${PAPER_DATASETS:-ml30 ml50 beauty50}
seeds=${PAPER_SEEDS:-0 1 2}
markdown=docs/results/seqrec_paper.md
left=$(( stop - 90 - ($(date +%s) - started) ))
# Its own session and process group: SIGTERM at the stop reaches the sweep and its runs only.
# shellcheck disable=SC2086  # datasets and seeds are lists
setsid python3 benchmarks/seeds_table.py --table paper --datasets $datasets --seeds $seeds \
    --jobs "${PAPER_JOBS:-14}" --gpus 1 --runs-dir runs/paper --deadline "$left" \
    --markdown "$markdown" > "$OUT/paper.log" 2>&1 &
sweep=$!
( sleep $(( stop - ($(date +%s) - started) )); kill -TERM -- -"$sweep" ) > /dev/null 2>&1 &
stopper=$!
wait "$sweep"
pkill -P "$stopper" 2>/dev/null  # its sleep
kill "$stopper" 2>/dev/null
for _ in $(seq 30); do  # runs that got SIGTERM may still be saving their checkpoints
    ps -o stat= -g "$sweep" 2> /dev/null | grep -q '^[^Z]' || break  # none left but zombies
    sleep 1
done
echo "paper table: $(( $(date +%s) - started )) s wall"
# The table of what finished (a sweep stopped at STOP_SECONDS wrote none).
# shellcheck disable=SC2086
python3 benchmarks/seeds_table.py --table paper --datasets $datasets --seeds $seeds \
    --runs-dir runs/paper --summarize-only --markdown "$markdown" > "$OUT/table.log" 2>&1 \
    || echo "summary failed: see table.log"
grep -hE "FAILED|all runs:|not started|left out" "$OUT/paper.log" | head -n 40
grep -h "runs that can run here have finished" "$OUT/table.log"
head -n 30 "$markdown" 2>/dev/null
find runs/paper -name '*.stderr.log' -size +0 -print0 2>/dev/null \
    | xargs -0 -r grep -l -E "Error|Traceback" | head -n 5 | while read -r f; do
        echo "== $f"; tail -n 5 "$f"; done
find runs/paper \( -name metrics.json -o -name history.csv -o -name recipe.yaml \
    -o -name run.log -o -name '*.stderr.log' \) > /tmp/keep.txt 2>/dev/null
tar czf "$OUT/results.tar.gz" -T /tmp/keep.txt "$markdown" "${markdown%.md}.json"
