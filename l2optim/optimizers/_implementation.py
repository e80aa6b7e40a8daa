"""Which implementation runs a step when the user chose none.

torch's default constructor never picks its fused kernels, though a step is memory-bound
and the fused kernels read and write each tensor once. l2optim picks one where it is
measured to help (``benchmarks/optimizers/step_time.py``), without changing what the optimizer
shows the world: the param groups keep ``foreach=None, fused=None`` and GradScaler still
unscales and skips by itself, exactly as for torch's default constructor. The choice is
made per step from the parameters alone, so a pickled, copied or reloaded optimizer
makes the same choice and continues bit for bit.

* CUDA: the fused kernel.
* CPU: the fused kernel only when every tensor is large. torch's CPU kernels split work
  over threads per tensor; its per-op loop (the CPU default) keeps small tensors on the
  calling thread, while the fused kernel opens a parallel region for every tensor, which
  on a busy machine costs milliseconds per tensor.
* CPU, every tensor small (float32 or float64): torch's multi-tensor (foreach) update, where
  it is the loop's arithmetic bit for bit. For small tensors the loop's Python calls cost
  more than the sums; from a few thousand elements on, the loop, which finishes each
  tensor while it is in cache, is the faster (the foreach update sweeps every tensor once
  per operation). In float16 and bfloat16 the two round differently.
* Anything else: torch's own default.

``fused=True`` asks for a fused kernel. Where torch has none, l2optim runs a compiled one
(``l2optim.optimizers._compiled``); its own Triton kernels (``l2optim.optimizers._triton``) run instead when
switched on with the environment variable ``L2OPTIM_TRITON_KERNELS=1``. They are off by
default: on a GPU they have been measured for one layout only (100 tensors of 1M
parameters on an H200, faster than torch's fused kernels; docs/performance.md), and the
default waits for the layouts of many small tensors (``benchmarks/optimizers/cuda_check.sh``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from l2optim import _compat

__all__ = [
    "CPU_FOREACH_MAX_NUMEL",
    "CPU_FUSED_MIN_NUMEL",
    "GroupTensors",
    "fused_kernel_supports",
    "prefers_fused_kernel",
    "triton_kernel_runs",
]

#: The switch for l2optim's Triton kernels under ``fused=True``.
TRITON_SWITCH = "L2OPTIM_TRITON_KERNELS"

#: Elements a CPU tensor needs before the fused kernel beats torch's per-op loop, idle or
#: on a contended machine; twice the size at which torch's element-wise ops go parallel.
CPU_FUSED_MIN_NUMEL = 1 << 16
#: Elements up to which a CPU tensor's step is quicker on foreach kernels than in torch's
#: per-tensor loop: the crossover lies between 2,048 and 8,192 for SGD, Adam and RMSprop
#: on a 2-core machine (``benchmarks/optimizers/foreach_crossover.py``).
CPU_FOREACH_MAX_NUMEL = 1 << 12
#: The dtypes whose foreach updates round exactly as the per-tensor loop does.
_FOREACH_EXACT_DTYPES = (torch.float32, torch.float64)


def fused_kernel_supports(params: Sequence[Tensor]) -> bool:
    """Whether torch's fused kernels accept every tensor in ``params``.

    Plain dense floating-point tensors on a supported device; not complex, sparse, or a
    tensor subclass such as DTensor (some fused kernels have no sharding rule for it).
    """
    devices = _compat.fused_kernel_devices()
    return bool(params) and all(
        type(p) in (Tensor, torch.nn.Parameter)
        and p.device.type in devices
        and torch.is_floating_point(p)
        and not p.is_sparse
        for p in params
    )


def prefers_fused_kernel(params: Sequence[Tensor]) -> bool:
    """Whether a group of ``params`` whose user chose no implementation runs fused."""
    # The cheap test first: it runs every step, and most small models stop here.
    on_fast_path = all(p.device.type == "cuda" for p in params) or all(
        p.device.type == "cpu" and p.numel() >= CPU_FUSED_MIN_NUMEL for p in params
    )
    return on_fast_path and fused_kernel_supports(params)


@dataclass(frozen=True)
class GroupTensors:
    """What the tensors of one param group allow; worked out once per list of parameters.

    An optimizer step runs for every batch: on a small model, looking at each tensor
    again every step would cost more than the update itself.
    """

    #: torch's fused kernel runs the group when the user chose no implementation.
    fused_by_default: bool
    #: Every tensor is a plain tensor, so foreach kernels take them all.
    plain: bool
    #: Small float32/float64 CPU tensors: a foreach update is quicker than the loop's, with
    #: the same numbers (see the module's docstring).
    foreach_by_default: bool

    @classmethod
    def of(cls, params: Sequence[Tensor]) -> GroupTensors:
        plain = all(type(p) in (Tensor, torch.nn.Parameter) for p in params)
        return cls(
            fused_by_default=prefers_fused_kernel(params),
            plain=plain,
            foreach_by_default=plain
            and bool(params)
            and all(
                p.device.type == "cpu"
                and p.dtype in _FOREACH_EXACT_DTYPES
                and p.numel() <= CPU_FOREACH_MAX_NUMEL
                for p in params
            ),
        )


def triton_kernel_runs(params: Sequence[Tensor]) -> bool:
    """Whether ``fused=True`` runs l2optim's Triton kernel for these tensors."""
    if os.environ.get(TRITON_SWITCH, "0") != "1":
        return False
    from l2optim.optimizers import _triton

    return _triton.available() and _triton.supports(params)
