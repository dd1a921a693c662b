#!/usr/bin/env bash
# The speed table of the speed issue on one lent GPU, in calls of at most 600 s:
#
#   benchmarks/device_speed.sh ml1m     # ML-1M measures, then RecBole 1.2.1 SASRec (~300 s)
#   benchmarks/device_speed.sh synth    # the 1M users x 1M items measures
#   benchmarks/device_speed.sh serving  # embed / recommend / neighbours at 1M x 1M
#                                       # (benchmarks/serving.py; resumes on a warm machine)
#
# Carry .whl (pydantic), .gpudata (ML-1M) and .peer: RecBole's wheels (.peer/wheels,
# ../shared/peers/README.md says which) and ../shared/peers/{recbole_run,to_atomic}.py
# copied beside them. Each call writes $OUT/speed_<part>.{json,md} (or $OUT/serving.*);
# merge the speed ones with the
# CPU row on the development machine:
#   python benchmarks/speed.py --render speed_synth.json \
#       --keep docs/results/speed.json speed_ml1m.json --out docs/results/speed --note "..."
set -u
part=${1:-ml1m}
source benchmarks/device_env.sh
export CLUE_PEERS_DIR=$PWD/.peer
case "$part" in
    ml1m)
        if [ -d .peer/wheels ]; then
            python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/peer-site \
                .peer/wheels/*.whl || exit 1
            export PYTHONPATH=$PYTHONPATH:/tmp/peer-site
        fi
        python3 benchmarks/speed.py --only eval_ml1m,pretrain_epoch_ml1m,time_to_quality_ml1m,recbole \
            --budget-s 240 --out "$OUT/speed_ml1m" ;;
    synth)
        python3 benchmarks/speed.py --only synth_eval,synth_epochs --budget-s 200 \
            --out "$OUT/speed_synth" ;;
    serving)
        python3 benchmarks/serving.py --out "$OUT/serving" ;;
    *) echo "device_speed.sh $part: use ml1m, synth or serving" >&2; exit 2 ;;
esac
