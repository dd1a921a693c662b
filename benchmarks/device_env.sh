# Sourced by the benchmarks/device_*.sh scripts on a lent GPU machine (bash, repository
# root): installs the carried wheels (pydantic and its needs, which the machine's image
# lacks; ../shared/peers/README.md) and sets what every run there needs. A script that
# wants another data root or thread count sets CLUE_DATA_DIR / OMP_NUM_THREADS first.
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
export CLUE_DATA_DIR=${CLUE_DATA_DIR:-$PWD/.gpudata} OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
# NVLink multicast stays off (KINDS.md: it can take a shared host's GPUs down).
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
nvidia-smi --query-gpu=index,name,memory.total --format=csv,noheader
