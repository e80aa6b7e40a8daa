#!/usr/bin/env bash
# On a CUDA machine, in at most 400 s of stages (about five minutes): the Triton kernels'
# tests compiled (not interpreted) and the CUDA cases of the fused-step tests, then step
# times at 100M parameters for every kernel mode and for l2optim's optimizers, and a few
# other launch shapes. Prints everything.
#
#   bash benchmarks/cuda_check.sh            (from the repository root or anywhere)
#
# Each stage has a time limit (400 s in all, plus start-up); a stage that fails
# or runs out of time is reported at the end and the next one still runs.
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" CI=true PYTHONUNBUFFERED=1
unset TRITON_INTERPRET
# An empty Triton cache: the first steps below pay the real compilation.
TRITON_CACHE_DIR="$(mktemp -d)"
export TRITON_CACHE_DIR

failed=()
stage() {
    local limit=$1 name=$2
    shift 2
    echo
    echo "== $name (limit ${limit}s): $*"
    local start=$SECONDS
    timeout "$limit" "$@"
    local status=$?
    echo "== $name: exit $status after $((SECONDS - start))s"
    [ "$status" -eq 0 ] || failed+=("$name (exit $status)")
}

nvidia-smi --query-gpu=name,memory.total,clocks.max.memory --format=csv || true
python -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__, torch.cuda.get_device_name())"

stage 110 "kernel tests, compiled" \
    python -m pytest tests/test_triton.py -q -p no:cacheprovider --durations=10
stage 50 "fused-step tests on CUDA" \
    python -m pytest tests/test_fused.py -q -p no:cacheprovider -k cuda
# Every kernel mode at 100M float32 parameters in 100 tensors, against torch's fused and
# foreach steps and the floor; first two steps with compilation; recompilations after.
stage 90 "kernel modes, 100M parameters" \
    python benchmarks/step_time.py --device cuda --layouts huge --repeats 10 --tables kernels
# Other launch shapes (BLOCK,CHUNK,WARPS) for three modes, to tune the defaults.
stage 50 "launch shapes, 100M parameters" bash -c '
    for config in 2048,32768,8 1024,65536,4 4096,65536,8; do
        python benchmarks/step_time.py --device cuda --layouts huge --repeats 5 \
            --tables kernels --kernel-modes sgd-momentum,adamw,rmsprop-centered-momentum \
            --kernel-config "$config"
    done'
# l2optim's classes with the kernel column (compiled fused=True steps compile first).
stage 100 "l2optim against torch, 100M parameters" \
    python benchmarks/step_time.py --device cuda --layouts huge --repeats 10 --tables classes

echo
if [ "${#failed[@]}" -eq 0 ]; then
    echo "cuda_check: every stage passed"
else
    printf 'cuda_check: failed: %s\n' "${failed[@]}"
    exit 1
fi
