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

# Put this script's CUDA processes under CUDA MPS, so that many small runs share the GPU
# well; checked by two tiny processes first, and left off (with a line saying so) if it fails.
start_mps() {
    export CUDA_MPS_PIPE_DIRECTORY=/tmp/mps CUDA_MPS_LOG_DIRECTORY=/tmp/mps-log
    mkdir -p /tmp/mps /tmp/mps-log
    nvidia-cuda-mps-control -d 2>/dev/null || true
    local probe='import torch; x = torch.randn(256, 256, device="cuda"); print((x @ x).sum().item() != 0)'
    if timeout 60 python3 -c "$probe" >/dev/null 2>&1 && timeout 60 python3 -c "$probe" >/dev/null 2>&1; then
        echo "CUDA MPS: on"
    else
        echo "CUDA MPS: failed its check, off"
        echo quit | nvidia-cuda-mps-control 2>/dev/null
        unset CUDA_MPS_PIPE_DIRECTORY CUDA_MPS_LOG_DIRECTORY
    fi
}
