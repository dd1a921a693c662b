# Sourced by the benchmarks/device_*.sh scripts on a lent GPU machine (bash, repository
# root): installs the carried wheels (pydantic and its needs, which the machine's image
# lacks; ../shared/peers/README.md) and sets what every run there needs. A script that
# wants another data root or thread count sets CLUE_DATA_DIR / OMP_NUM_THREADS first.
# Once per machine and set of wheels: a second script sourced beside a running one must not
# rewrite the packages under its feet.
wheels_marker=/tmp/site/.installed-$(ls .whl | md5sum | cut -c1-12)
if [ ! -f "$wheels_marker" ]; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .whl/*.whl || exit 1
    touch "$wheels_marker"
fi
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
export CLUE_DATA_DIR=${CLUE_DATA_DIR:-$PWD/.gpudata} OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
# NVLink multicast stays off (KINDS.md: it can take a shared host's GPUs down).
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
nvidia-smi --query-gpu=index,name,memory.total --format=csv,noheader
