#!/usr/bin/env bash
# The speed table of the speed issue on one lent GPU, in calls of at most 600 s:
#
#   benchmarks/device_speed.sh ml1m     # ML-1M measures, then RecBole 1.2.1 SASRec (~300 s)
#   benchmarks/device_speed.sh synth    # the 1M users x 1M items measures
#   benchmarks/device_speed.sh serving  # embed / recommend / neighbours at 1M x 1M
#                                       # (benchmarks/serving.py; resumes on a warm machine)
#   benchmarks/device_speed.sh eval100k # 100,000 users x 1M items: each ranking lever alone
#   benchmarks/device_speed.sh evalall  # all 1M users x 1M items: each ranking lever alone
#   benchmarks/device_speed.sh compile  # synth_1m epochs with torch.compile
#   benchmarks/device_speed.sh levers-ml1m  # ML-1M evaluation and epoch with each lever
#
# Levers (benchmarks/speed_levers.py): NAME@blocks=N (finetune.head.item_block),
# NAME@bf16 (finetune.head.score_precision), NAME@batch=N (finetune.eval.batch_size),
# NAME@compile (train.compile in both stages); the table's levers column says which were
# on, and each evaluation with levers is checked against the one without.
#
# Carry .whl (pydantic), .gpudata (ML-1M) and .peer: RecBole's wheels (.peer/wheels,
# ../shared/peers/README.md says which) and ../shared/peers/{recbole_run,to_atomic}.py
# copied beside them. Each call writes $OUT/speed_<part>.{json,md} (or $OUT/serving.*);
# merge the speed ones with the
# CPU row on the development machine:
#   python benchmarks/speed.py --render speed_synth.json \
#       --keep docs/results/speed.json speed_ml1m.json --out docs/results/speed --note "..."
# (--keep also takes speed_eval100k.json, speed_evalall.json, speed_compile.json...).
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
    eval100k)
        python3 benchmarks/speed.py --budget-s 500 --out "$OUT/speed_eval100k" --only \
synth_eval,synth_eval@blocks=65536,synth_eval@blocks=262144,synth_eval@bf16,\
synth_eval@blocks=65536+bf16,synth_eval@blocks=65536+batch=4096 ;;
    evalall)
        python3 benchmarks/speed.py --budget-s 480 --out "$OUT/speed_evalall" --only \
synth_eval_all,synth_eval_all@blocks=65536,synth_eval_all@bf16,synth_eval_all@blocks=65536+bf16 ;;
    compile)
        python3 benchmarks/speed.py --only synth_epochs@compile --budget-s 200 \
            --out "$OUT/speed_compile" ;;
    levers-ml1m)
        python3 benchmarks/speed.py --budget-s 400 --out "$OUT/speed_levers_ml1m" --only \
eval_ml1m,eval_ml1m@blocks=1024,eval_ml1m@bf16,pretrain_epoch_ml1m@compile ;;
    *) echo "device_speed.sh $part: use ml1m, synth, serving, eval100k, evalall, compile or levers-ml1m" >&2
       exit 2 ;;
esac
