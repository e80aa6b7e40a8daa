#!/usr/bin/env bash
# On a CUDA machine, in at most 560 s of stages (under ten minutes): the Triton kernels'
# tests compiled (not interpreted) and the CUDA cases of the fused-step, AMP and trainer
# tests, then step times at 100M parameters for every kernel mode and for l2optim's
# optimizers, and a few other launch shapes. Prints everything.
#
#   bash benchmarks/optimizers/cuda_check.sh            (from the repository root or anywhere)
#   PYTHON=/path/to/python3 bash benchmarks/optimizers/cuda_check.sh
#
# Each stage has a time limit (560 s in all, plus start-up), sized from a run on an H200:
# the compiled fused=True steps of the classes table take 16-65 s each to compile. A
# stage that fails or runs out of time is reported at the end and the next one still runs.
set -uo pipefail
cd "$(dirname "$0")/../.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" CI=true PYTHONUNBUFFERED=1
# The interpreter that holds the CUDA build of torch (not always the first python on PATH).
export PYTHON="${PYTHON:-python}"
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
"$PYTHON" -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__, torch.cuda.get_device_name())"

stage 80 "kernel tests, compiled" \
    "$PYTHON" -m pytest tests/optimizers/test_triton.py -q -p no:cacheprovider --durations=10
stage 120 "fused-step, AMP and trainer tests on CUDA" \
    "$PYTHON" -m pytest tests/optimizers/test_compiled.py tests/optimizers/test_amp.py tests/selection/test_trainer.py -q \
    -p no:cacheprovider -k cuda
# Every kernel mode at 100M float32 parameters in 100 tensors, against torch's fused and
# foreach steps and the floor; first two steps with compilation; recompilations after.
stage 60 "kernel modes, 100M parameters" \
    "$PYTHON" benchmarks/optimizers/step_time.py --device cuda --layouts huge --repeats 10 --tables kernels
# Other launch shapes (BLOCK,CHUNK,WARPS) for three modes, to tune the defaults.
stage 60 "launch shapes, 100M parameters" bash -c '
    for config in 2048,32768,8 1024,65536,4 4096,65536,8; do
        "$PYTHON" benchmarks/optimizers/step_time.py --device cuda --layouts huge --repeats 5 \
            --tables kernels --kernel-modes sgd-momentum,adamw,rmsprop-centered-momentum \
            --kernel-config "$config"
    done'
# l2optim's classes with the kernel column (compiled fused=True steps compile first).
stage 240 "l2optim against torch, 100M parameters" \
    "$PYTHON" benchmarks/optimizers/step_time.py --device cuda --layouts huge --repeats 10 --tables classes

echo
if [ "${#failed[@]}" -eq 0 ]; then
    echo "cuda_check: every stage passed"
else
    printf 'cuda_check: failed: %s\n' "${failed[@]}"
    exit 1
fi
