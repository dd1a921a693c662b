#!/usr/bin/env bash
# The collapse lab (benchmarks/collapse_lab.py) on one lent GPU: about 25 variants at once, 20
# full epochs each, on ML-1M carried as .gpudata/ml-1m; results to $OUT/lab.jsonl.
# Usage (one 600 s call each):
#   benchmarks/device_collapse_lab.sh diagnosis   the candidate causes (docs/results/collapse_lab.md)
#   benchmarks/device_collapse_lab.sh fix         views that link a user's items (collapse_fix.md)
source benchmarks/device_env.sh
export LAB_DATA=$PWD/.gpudata
mkdir -p /tmp/lab
DEADLINE=${DEADLINE:-540}
run() { name=$1; shift; timeout $DEADLINE python3 benchmarks/collapse_lab.py --device cuda --out /tmp/lab/$name.jsonl --tag $name "$@" > /tmp/lab/$name.log 2>&1 & }
E="--epochs 20 --eval_every 5"
set_name=${1:-diagnosis}
if [ "$set_name" = diagnosis ]; then
    run base $E
    run mlm $E --obj none --mlm_w 1
    run simsiam_mlm $E --mlm_w 1
    run vc_mlm $E --mlm_w 1 --var_w 1 --cov_w 1
    run nce_mlm $E --obj infonce --tau 0.2 --mlm_w 1
    run nce_mlm_mask $E --obj infonce --tau 0.2 --mlm_w 1 --view mask --rho 0.3
    run vc11 $E --var_w 1 --cov_w 1
    run vc101 $E --var_w 1 --cov_w 0.1
    run c1 $E --cov_w 1
    run vc11mask $E --var_w 1 --cov_w 1 --view mask --rho 0.3
    run ncecrop5 $E --obj infonce --tau 0.2 --view crop_keep --rho 0.5
    run ncemask5 $E --obj infonce --tau 0.2 --view mask --rho 0.5
    run ncemask5mean $E --obj infonce --tau 0.2 --view mask --rho 0.5 --rep mean
    run crop5 $E --view crop_keep --rho 0.5
    run vc11crop5 $E --var_w 1 --cov_w 1 --view crop_keep --rho 0.5
    run mean $E --rep mean
    run mask3 $E --view mask --rho 0.3
    run mask6 $E --view mask --rho 0.6
    run vic $E --obj vicreg
    run vicmask $E --obj vicreg --view mask --rho 0.3
    run nce $E --obj infonce --tau 0.2
    run nce05 $E --obj infonce --tau 0.05
    run ncemask $E --obj infonce --tau 0.2 --view mask --rho 0.3
    run ncemean $E --obj infonce --tau 0.2 --rep mean
    run meanmask $E --rep mean --view mask --rho 0.3
elif [ "$set_name" = fix ]; then
    NCE="--obj infonce --tau 0.2"
    run ncesplit $E $NCE --pair split
    run ncesplitmean $E $NCE --pair split --rep mean
    run ncesplitemb $E $NCE --pair split --rep emb
    run ncesplitmean_t1 $E --obj infonce --tau 0.1 --pair split --rep mean
    run ncesplit_d0 $E $NCE --pair split --dropout 0.0
    run ncesplitmean_d0 $E $NCE --pair split --rep mean --dropout 0.0
    run simsiamsplit_d0 $E --pair split --dropout 0.0
    run ncesplit_mlm_d0 $E $NCE --pair split --mlm_w 1 --dropout 0.0
    run ncesplitmean_d1 $E $NCE --pair split --rep mean --dropout 0.1
    run ncesplit_d1 $E $NCE --pair split --dropout 0.1
    run ncesplit_d2 $E $NCE --pair split --dropout 0.2
    run ncesplitmean_mlm $E $NCE --pair split --rep mean --mlm_w 1
    run ncesplit_mlm $E $NCE --pair split --mlm_w 1
    run ncesplit_mlm_d2 $E $NCE --pair split --mlm_w 1 --dropout 0.2
    run ncesubmean $E $NCE --pair subsample --rep mean
    run ncesub $E $NCE --pair subsample
    run ncesplitmean_b1024 $E $NCE --pair split --rep mean --batch 1024 --lr 0.002
    run ncesplit_vc $E $NCE --pair split --var_w 1 --cov_w 1
    run simsiamsplit $E --pair split
    run simsiamsplitmean $E --pair split --rep mean
    run simsiamsplit_mlm $E --pair split --mlm_w 1
    run simsiamsplit_d2 $E --pair split --dropout 0.2
    run simsiamsub $E --pair subsample
    run vicsplit $E --obj vicreg --pair split
    run vicsplitmean $E --obj vicreg --pair split --rep mean
    run mlm_d2 $E --obj none --mlm_w 1 --dropout 0.2
    run mlm_r5d2 $E --obj none --mlm_w 1 --mlm_rho 0.5 --dropout 0.2
    run ncesplitemb_t1 $E --obj infonce --tau 0.1 --pair split --rep emb
else
    echo "usage: benchmarks/device_collapse_lab.sh diagnosis|fix" >&2; exit 2
fi
sleep 20; nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv
wait
cat /tmp/lab/*.jsonl > $OUT/lab.jsonl
tail -n 3 /tmp/lab/*.log > $OUT/logs.txt
