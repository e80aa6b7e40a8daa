"""Multi-tensor launches: the table of chunks a kernel walks, built once per layout.

A launch updates every tensor of one (device, dtype) at once. Its table has one row per
chunk of ``CHUNK`` elements of one tensor: the chunk's first and end element, then one
address per column (parameter, gradient, state). The grid has one program per row, so
one launch covers any number of tensors of any sizes.

The table lives on the device; the steps keep it while the addresses stay the same (see
``_steps``). Building it costs a few tensor operations on the host and one asynchronous
copy, never a synchronisation.

Every launch is recorded with the specialisation Triton compiles it for (its constexprs,
the types and 16-byte alignment of its pointers, the integers it specialises on): the
number of distinct specialisations of a kernel is the number of compilations it costs,
which the tests check stays 1 while a schedule changes the learning rate.
"""

from __future__ import annotations

import importlib
from collections import Counter
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

__all__ = [
    "BLOCK",
    "CHUNK",
    "NUM_WARPS",
    "kernels",
    "launch",
    "launches",
    "specializations",
]

#: Elements a program handles per iteration (one vectorised load per tensor and thread).
BLOCK = 1024
#: Elements of one tensor that one program updates: a multiple of BLOCK.
CHUNK = 32 * BLOCK
#: Warps per program.
NUM_WARPS = 4
#: Step counters one program of ``advance_steps_kernel`` advances.
STEP_BLOCK = 128

#: Launches so far, per kernel name.
launches: Counter[str] = Counter()
#: Every (kernel name, specialisation) launched so far.
specializations: set[tuple] = set()


def kernels() -> Any:
    """The kernels module (imports triton on first use)."""
    return importlib.import_module("l2optim.optimizers._triton._kernels")


def _to_device(rows: Tensor, device: torch.device) -> Tensor:
    if device.type == "cpu":
        return rows
    # From pinned memory the copy is asynchronous; the caching host allocator keeps the
    # source alive until the copy is done.
    return rows.pin_memory().to(device, non_blocking=True)


def chunk_table(
    columns: Sequence[Sequence[int]], numels: Sequence[int], device: torch.device
) -> Tensor:
    """The int64 table [start, stop, *addresses] with one row per chunk, on ``device``.

    ``columns[k][i]`` is the k-th address of tensor i; tensors of no elements get no row.
    """
    numel = torch.tensor(numels, dtype=torch.int64)
    addresses = torch.tensor(list(zip(*columns, strict=True)), dtype=torch.int64)
    addresses = addresses.reshape(len(numels), len(columns))
    chunks = (numel + CHUNK - 1) // CHUNK
    tensor = torch.repeat_interleave(torch.arange(len(numels)), chunks)
    first_chunk = torch.cumsum(chunks, 0) - chunks
    start = (torch.arange(len(tensor)) - first_chunk[tensor]) * CHUNK
    stop = torch.minimum(start + CHUNK, numel[tensor])
    rows = torch.cat([start[:, None], stop[:, None], addresses[tensor]], dim=1).contiguous()
    return _to_device(rows, device)


def address_list(addresses: Sequence[int], device: torch.device) -> Tensor:
    """A device int64 tensor of ``addresses`` (e.g. the step counters)."""
    return _to_device(torch.tensor(addresses, dtype=torch.int64), device)


def _specialization(arguments: Sequence[Any], constants: dict[str, Any]) -> tuple:
    """What Triton keys its compiled kernels on, for these arguments.

    Pointers by element type and 16-byte alignment, integers by being 1 or a multiple of
    16, floats (declared float64) and None by kind alone; constexprs by value.
    """
    kinds: list[Any] = []
    for value in arguments:
        if isinstance(value, Tensor):
            kinds.append(("pointer", value.dtype, value.data_ptr() % 16 == 0))
        elif isinstance(value, bool) or value is None:
            kinds.append(value)
        elif isinstance(value, int):
            kinds.append(("int", value == 1, value % 16 == 0))
        elif isinstance(value, float):
            kinds.append("float")
        else:
            raise TypeError(f"unexpected kernel argument {value!r}")
    return tuple(kinds), tuple(sorted((k, str(v)) for k, v in constants.items()))


def launch(
    name: str,
    grid: int,
    arguments: Sequence[Any],
    constants: dict[str, Any],
    *,
    unspecialized: Sequence[int] = (),
) -> None:
    """Launch kernel ``name`` on ``grid`` programs (none when ``grid`` is 0) and record it.

    ``unspecialized``: positions of integer arguments the kernel does not specialise on.
    """
    if grid == 0:
        return
    recorded = [0 if i in unspecialized else a for i, a in enumerate(arguments)]
    specializations.add((name, _specialization(recorded, constants)))
    launches[name] += 1
    kernel = getattr(kernels(), name)
    # enable_fp_fusion given explicitly: multiply-adds fuse, as in torch's CUDA kernels.
    kernel[(grid,)](*arguments, **constants, num_warps=NUM_WARPS, enable_fp_fusion=True)


def compiled_variants(name: str) -> int | None:
    """How many binaries Triton has compiled for kernel ``name`` (None when interpreted)."""
    kernel = getattr(kernels(), name)
    caches = getattr(kernel, "device_caches", None)  # {device: (binaries by key, ...)}
    if isinstance(caches, dict):
        return sum(len(cache[0]) for cache in caches.values())
    caches = getattr(kernel, "cache", None)  # older Triton: {device: binaries by key}
    if isinstance(caches, dict):
        return sum(len(cache) for cache in caches.values())
    return None
