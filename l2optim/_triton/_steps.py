"""SGD, Adam and RMSprop steps as one-pass multi-tensor Triton kernels (functional core).

Each step takes what an optimizer class has for one param group, in torch.optim's
functional layout: lists of parameters that have a gradient, their gradients and state
tensors, and the group's hyperparameters. For each (device, dtype) it launches one kernel
that reads every tensor once and writes the parameters and state once (Adam and RMSprop
launch one more, tiny, to advance their step counters).

Decay, in the order torch's update applies it: ``decay_factor`` (decoupled decay,
p ← p·decay_factor, before the base update) and ``weight_decay`` (coupled L2,
g ← g + λ·p after the gradient's sign is flipped for ``maximize``). ``grad_scale`` and
``found_inf`` are GradScaler's: the gradient is divided by the scale, and a non-zero
``found_inf`` leaves parameters and all state, step counters included, untouched; both
are read on the device, without a host synchronisation.

State has torch's names, shapes and dtypes (state dicts move between this path and
torch.optim's): the caller creates it with :func:`init_adam_state` /
:func:`init_rmsprop_state` (or torch's own ``_init_group`` in a fused group), and SGD's
momentum buffers are created by :func:`sgd_step` itself where the list holds ``None``,
as torch's functional ``sgd`` does.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor
from torch.utils.weak import WeakIdKeyDictionary

from l2optim._triton import _tables

__all__ = [
    "adam_step",
    "available",
    "init_adam_state",
    "init_rmsprop_state",
    "interpreted",
    "rmsprop_step",
    "sgd_step",
    "supports",
]

Number = float | Tensor

_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
_STEP_DTYPES = (torch.float32, torch.float64)


# -- can the kernels run? --------------------------------------------------------------


def available() -> bool:
    """Whether triton can be imported (it is only imported when a kernel first runs)."""
    return "triton" in sys.modules or importlib.util.find_spec("triton") is not None


def interpreted() -> bool:
    """Whether the kernels run in Triton's interpreter (on CPU tensors) rather than compiled.

    Triton decides when the kernels are defined, on first use, from ``TRITON_INTERPRET``.
    """
    module = sys.modules.get("l2optim._triton._kernels")
    if module is not None:
        return module.INTERPRETED
    return os.environ.get("TRITON_INTERPRET", "0").lower() in ("1", "true", "yes", "on", "y")


def _dense(t: Tensor) -> bool:
    """Whether the elements of ``t`` fill its memory exactly (any order of dimensions)."""
    if t.is_contiguous():
        return True
    expected = 1
    for size, stride in sorted(
        ((n, s) for n, s in zip(t.shape, t.stride(), strict=True) if n != 1), key=lambda d: d[1]
    ):
        if stride != expected:
            return False
        expected *= size
    return True


def _kernel_device(device: torch.device) -> bool:
    return device.type == ("cpu" if interpreted() else "cuda")


def supports(params: Sequence[Tensor]) -> bool:
    """Whether the kernels accept ``params`` and their gradients.

    Plain dense tensors of float16, bfloat16, float32 or float64 on a CUDA device (on the
    CPU when the kernels are interpreted), with gradients, where present, of the same
    dtype, device and memory layout; not sparse, complex, or a tensor subclass.
    """
    if not available() or not params:
        return False
    for p in params:
        if type(p) not in (Tensor, torch.nn.Parameter) or p.is_sparse:
            return False
        if p.dtype not in _DTYPES or not _kernel_device(p.device) or not _dense(p):
            return False
        g = p.grad
        if g is not None and (type(g) is not Tensor or g.is_sparse or not _same_layout(g, p)):
            return False
    return True


def _same_layout(t: Tensor, p: Tensor) -> bool:
    return (
        t.shape == p.shape
        and t.dtype == p.dtype
        and t.device == p.device
        and (t.stride() == p.stride() or (t.is_contiguous() and p.is_contiguous()))
        and _dense(t)
    )


# -- checks (every one before anything changes) ----------------------------------------


def _check_lists(params: Sequence[Tensor], **lists: Sequence[Any]) -> None:
    for name, values in lists.items():
        if len(values) != len(params):
            raise ValueError(
                f"{name} has {len(values)} entries; expected one per parameter ({len(params)})"
            )


def _check_params(params: Sequence[Tensor], grads: Sequence[Tensor]) -> None:
    if not supports(params):
        raise ValueError(
            "params: the Triton kernels need plain dense float16/bfloat16/float32/float64 "
            f"tensors on {'the CPU (interpreted)' if interpreted() else 'CUDA devices'}; "
            f"got {sorted({(str(p.dtype), str(p.device)) for p in params})}"
        )
    for i, (p, g) in enumerate(zip(params, grads, strict=True)):
        if not isinstance(g, Tensor) or not _same_layout(g, p) or g.is_sparse:
            raise ValueError(
                f"grads[{i}] must be a dense tensor with the shape, dtype, device and strides "
                f"of params[{i}] ({tuple(p.shape)}, {p.dtype}, {p.device}); got "
                f"{_describe(g)}"
            )


def _check_state(name: str, params: Sequence[Tensor], states: Sequence[Tensor]) -> None:
    for i, (p, s) in enumerate(zip(params, states, strict=True)):
        if not isinstance(s, Tensor) or not _same_layout(s, p):
            raise ValueError(
                f"{name}[{i}] must be a tensor with the shape, dtype, device and strides of "
                f"params[{i}] ({tuple(p.shape)}, {p.dtype}, {p.device}); got {_describe(s)}"
            )


def _check_steps(params: Sequence[Tensor], steps: Sequence[Tensor]) -> None:
    for i, (p, s) in enumerate(zip(params, steps, strict=True)):
        if (
            not isinstance(s, Tensor)
            or s.numel() != 1
            or s.dtype not in _STEP_DTYPES
            or s.device != p.device
        ):
            raise ValueError(
                f"state_steps[{i}] must be a one-element float32 or float64 tensor on "
                f"{p.device}, the device of params[{i}] (init_adam_state and "
                f"init_rmsprop_state put it there); got {_describe(s)}"
            )


def _describe(t: Any) -> str:
    if not isinstance(t, Tensor):
        return repr(t)
    return f"{type(t).__name__}{tuple(t.shape)} {t.dtype} on {t.device}, strides {t.stride()}"


# -- runtime numbers -------------------------------------------------------------------


def _number(value: Number | None, device: torch.device, default: float) -> tuple:
    """(float, None) or (0.0, one-element tensor on ``device``) for kernel argument pairs.

    A tensor on the parameters' device is read by the kernel, without synchronising; one
    on the CPU is read here, which costs nothing.
    """
    if value is None:
        return default, None
    if isinstance(value, Tensor):
        if value.device == device:
            return 0.0, value
        if value.device.type == "cpu":
            return float(value), None
        return 0.0, value.to(device, non_blocking=True)
    return float(value), None


def _check_number(value: Number | None, name: str) -> None:
    if isinstance(value, Tensor) and value.numel() != 1:
        raise ValueError(f"{name} must be a number or a one-element tensor; got {value!r}")


def _flag(value: Tensor | None, device: torch.device) -> Tensor | None:
    """GradScaler's scale or overflow flag on ``device``."""
    if value is None or value.device == device:
        return value
    return value.to(device, non_blocking=True)


def _float(value: Number, name: str) -> float:
    """A hyperparameter the kernel takes as a number (a device tensor costs one sync)."""
    _check_number(value, name)
    return float(value)


# -- launching -------------------------------------------------------------------------


def _by_device_and_dtype(params: Sequence[Tensor], steps: Sequence[Tensor] | None = None):
    """Positions of ``params`` grouped by (device, dtype, step dtype): one launch each."""
    groups: dict[tuple, list[int]] = {}
    for i, p in enumerate(params):
        key = (p.device, p.dtype, None if steps is None else steps[i].dtype)
        groups.setdefault(key, []).append(i)
    return groups.items()


def _tl_dtype(dtype: torch.dtype) -> Any:
    tl = importlib.import_module("triton.language")
    return {
        torch.float16: tl.float16,
        torch.bfloat16: tl.bfloat16,
        torch.float32: tl.float32,
        torch.float64: tl.float64,
    }[dtype]


def _run(
    name: str,
    device: torch.device,
    dtype: torch.dtype,
    tensors: Sequence[Sequence[Tensor | None]],
    extra: Sequence[Sequence[int]],
    arguments: Sequence[Any],
    constants: dict[str, Any],
) -> None:
    """One launch of kernel ``name`` over the tensors of one device and dtype.

    ``tensors``: the table's tensor columns (param, grad, state; None where a column is
    unused by this configuration); ``extra``: further columns of raw addresses.
    """
    columns = [[0 if t is None else t.data_ptr() for t in column] for column in tensors]
    aligned = all(a % 16 == 0 for column in columns for a in column)
    numels = [t.numel() for t in tensors[0]]
    table = _tables.chunk_table([*columns, *extra], numels, device)
    tl_dtype = _tl_dtype(dtype)
    compute = _tl_dtype(torch.float64 if dtype == torch.float64 else torch.float32)
    _tables.launch(
        name,
        table.shape[0],
        [table, *arguments],
        {
            "DTYPE": tl_dtype,
            "COMPUTE": compute,
            "ALIGNED": aligned,
            **constants,
            "ROW": 2 + len(tensors) + len(extra),
            "BLOCK": _tables.BLOCK,
        },
    )


def _advance_steps(steps: Sequence[Tensor], device: torch.device, found_inf: Tensor | None):
    """step ← step + 1 for every counter, on the device, unless ``found_inf`` is set."""
    for dtype in {s.dtype for s in steps}:
        addresses = [s.data_ptr() for s in steps if s.dtype == dtype]
        table = _tables.address_list(addresses, device)
        _tables.launch(
            "advance_steps_kernel",
            -(-len(addresses) // _tables.STEP_BLOCK),
            [table, len(addresses), found_inf],
            {"STEP": _tl_dtype(dtype), "BLOCK": _tables.STEP_BLOCK},
            unspecialized=(1,),
        )


def _pick(values: Sequence[Any], indices: Sequence[int]) -> list[Any]:
    return [values[i] for i in indices]


# -- SGD -------------------------------------------------------------------------------

# Addresses of constant 'first step' flags (0.0, 1.0), one pair per device.
_constant_flags: dict[torch.device, Tensor] = {}


def _flag_address(device: torch.device, first: bool) -> int:
    flags = _constant_flags.get(device)
    if flags is None:
        flags = _constant_flags[device] = torch.tensor([0.0, 1.0], device=device)
    return flags.data_ptr() + 4 * int(first)


class _PendingFirstSteps:
    """Momentum buffers made on a step GradScaler may skip: is their first update to come?

    torch's first update sets buf ← g, later ones buf ← μ·buf + (1 − d)·g. A buffer
    made for a step whose overflow flag is only known on the device cannot be left out
    of the state, so a device flag per buffer (1 until its first update happens) tells
    later steps which rule to apply. With dampening 0 both rules agree on a zero buffer
    and no flag is kept.
    """

    def __init__(self, count: int, device: torch.device) -> None:
        self.flags = torch.ones(count, device=device)
        self._host: Tensor | None = None
        self._copied: Any = None

    def address(self, index: int) -> int:
        return self.flags.data_ptr() + 4 * index

    def after_step(self, found_inf: Tensor | None) -> None:
        """Clear the flags of a step that ran; keep them when it was skipped."""
        if found_inf is None:
            self.flags.zero_()
        else:
            self.flags.mul_(found_inf.reshape(-1)[0])
        if self.flags.device.type == "cuda":
            if self._host is None:
                self._host = torch.empty(self.flags.shape, pin_memory=True)
            self._host.copy_(self.flags, non_blocking=True)
            self._copied = torch.cuda.Event()
            self._copied.record()

    def settled(self) -> bool:
        """Whether every first update has happened, as far as is known without waiting."""
        if self.flags.device.type != "cuda":
            return not bool(self.flags.any())
        if self._copied is None or not self._copied.query():
            return False
        return not bool(self._host.any())


# buffer → (its batch of flags, its index there), while its first update may be to come.
_pending: WeakIdKeyDictionary = WeakIdKeyDictionary()


def _first_flags(
    buffers: list[Tensor | None],
    params: Sequence[Tensor],
    found_inf: Tensor | None,
    dampening: float,
) -> tuple[list[int], set[_PendingFirstSteps]]:
    """Make the missing buffers; return each buffer's flag address and the batches in use."""
    missing = [i for i, b in enumerate(buffers) if b is None]
    for i in missing:
        buffers[i] = torch.zeros_like(params[i], memory_format=torch.preserve_format)
    track = found_inf is not None and dampening != 0
    if track and missing:
        batch = _PendingFirstSteps(len(missing), params[missing[0]].device)
        for k, i in enumerate(missing):
            _pending[buffers[i]] = (batch, k)
    missing_set = set(missing)
    addresses: list[int] = []
    settled: dict[_PendingFirstSteps, bool] = {}
    for i, buf in enumerate(buffers):
        entry = _pending.get(buf)
        if entry is not None:
            batch, k = entry
            if batch not in settled:
                settled[batch] = batch.settled()
            if not settled[batch]:
                addresses.append(batch.address(k))
                continue
            del _pending[buf]
        addresses.append(_flag_address(params[i].device, i in missing_set))
    return addresses, {batch for batch, done in settled.items() if not done}


def sgd_step(
    params: list[Tensor],
    grads: list[Tensor],
    momentum_buffers: list[Tensor | None],
    *,
    lr: Number,
    weight_decay: Number = 0.0,
    momentum: Number = 0.0,
    dampening: Number = 0.0,
    nesterov: bool = False,
    maximize: bool = False,
    decay_factor: Number | None = None,
    grad_scale: Tensor | None = None,
    found_inf: Tensor | None = None,
) -> None:
    """One SGD step (torch's arithmetic) over every tensor, one launch per device and dtype.

    Where ``momentum_buffers`` holds None, the buffer is created and put in the list (the
    caller stores it as ``state["momentum_buffer"]``); its first update copies the
    gradient, as torch's does, even after first steps that GradScaler skipped. With
    momentum 0 the list is not used and may be empty.
    """
    momentum_ = _float(momentum, "momentum")
    _check_number(lr, "lr")
    _check_number(decay_factor, "decay_factor")
    _check_lists(params, grads=grads)
    if momentum_ != 0:
        _check_lists(params, momentum_buffers=momentum_buffers)
    if not params:
        return
    _check_params(params, grads)
    if momentum_ != 0:
        present = [i for i, b in enumerate(momentum_buffers) if b is not None]
        _check_state(
            "momentum_buffers",
            _pick(params, present),
            _pick(momentum_buffers, present),  # type: ignore[arg-type]
        )
    dampening_ = _float(dampening, "dampening")
    weight_decay_ = _float(weight_decay, "weight_decay")
    for (device, dtype, _), index in _by_device_and_dtype(params):
        p, g = _pick(params, index), _pick(grads, index)
        scale, overflow = _flag(grad_scale, device), _flag(found_inf, device)
        lr_pair = _number(lr, device, 0.0)
        factor_pair = _number(decay_factor, device, 1.0)
        bufs: list[Tensor | None] = [None] * len(index)
        flags: list[int] = [0] * len(index)
        batches: set[_PendingFirstSteps] = set()
        if momentum_ != 0:
            bufs = _pick(momentum_buffers, index)
            flags, batches = _first_flags(bufs, p, overflow, dampening_)
            for i, b in zip(index, bufs, strict=True):
                momentum_buffers[i] = b
        _run(
            "sgd_kernel",
            device,
            dtype,
            [p, g, bufs],
            [flags],
            [*lr_pair, *factor_pair, weight_decay_, momentum_, 1.0 - dampening_, scale, overflow],
            {"MOMENTUM": momentum_ != 0, "NESTEROV": bool(nesterov), "MAXIMIZE": bool(maximize)},
        )
        for batch in batches:
            batch.after_step(overflow)


# -- Adam ------------------------------------------------------------------------------


def init_adam_state(param: Tensor, state: dict[str, Any], *, amsgrad: bool) -> None:
    """Fill in what is missing of one parameter's Adam state, in torch's layout.

    ``step`` (a 0-d float32 tensor), ``exp_avg``, ``exp_avg_sq`` and, with ``amsgrad``,
    ``max_exp_avg_sq``, zeros like ``param``; the step lives on the parameter's device,
    as torch's fused and capturable Adam keep it (a step loaded onto the CPU is moved).
    """
    _init_step(param, state)
    for key in ("exp_avg", "exp_avg_sq", *(("max_exp_avg_sq",) if amsgrad else ())):
        if key not in state:
            state[key] = torch.zeros_like(param, memory_format=torch.preserve_format)


def _init_step(param: Tensor, state: dict[str, Any]) -> None:
    step = state.get("step")
    if step is None:
        state["step"] = torch.zeros((), dtype=torch.float32, device=param.device)
    elif isinstance(step, Tensor) and step.device != param.device:
        state["step"] = step.to(param.device)
    elif not isinstance(step, Tensor):
        # Checkpoints from old torch versions keep the step as a number.
        state["step"] = torch.tensor(float(step), dtype=torch.float32, device=param.device)


def adam_step(
    params: list[Tensor],
    grads: list[Tensor],
    exp_avgs: list[Tensor],
    exp_avg_sqs: list[Tensor],
    max_exp_avg_sqs: list[Tensor],
    state_steps: list[Tensor],
    *,
    amsgrad: bool,
    beta1: Number,
    beta2: Number,
    lr: Number,
    weight_decay: Number = 0.0,
    eps: Number = 1e-8,
    maximize: bool = False,
    decay_factor: Number | None = None,
    grad_scale: Tensor | None = None,
    found_inf: Tensor | None = None,
) -> None:
    """One Adam step (torch's arithmetic, bias corrections from each tensor's own step).

    torch's AdamW is ``weight_decay=0`` with ``decay_factor=1 − lr·λ``. ``state_steps``
    must be on the parameters' devices (:func:`init_adam_state`).
    """
    _check_number(lr, "lr")
    _check_number(decay_factor, "decay_factor")
    lists = {"exp_avgs": exp_avgs, "exp_avg_sqs": exp_avg_sqs, "state_steps": state_steps}
    if amsgrad:
        lists["max_exp_avg_sqs"] = max_exp_avg_sqs
    _check_lists(params, grads=grads, **lists)
    if not params:
        return
    _check_params(params, grads)
    for name in ("exp_avgs", "exp_avg_sqs", *(("max_exp_avg_sqs",) if amsgrad else ())):
        _check_state(name, params, lists[name])
    _check_steps(params, state_steps)
    numbers = [
        _float(weight_decay, "weight_decay"),
        _float(beta1, "beta1"),
        _float(beta2, "beta2"),
        _float(eps, "eps"),
    ]
    for (device, dtype, step_dtype), index in _by_device_and_dtype(params, state_steps):
        steps = _pick(state_steps, index)
        overflow = _flag(found_inf, device)
        _advance_steps(steps, device, overflow)
        maxima = _pick(max_exp_avg_sqs, index) if amsgrad else [None] * len(index)
        _run(
            "adam_kernel",
            device,
            dtype,
            [
                _pick(params, index),
                _pick(grads, index),
                _pick(exp_avgs, index),
                _pick(exp_avg_sqs, index),
                maxima,
            ],
            [[s.data_ptr() for s in steps]],
            [
                *_number(lr, device, 0.0),
                *_number(decay_factor, device, 1.0),
                *numbers,
                _flag(grad_scale, device),
                overflow,
            ],
            {"STEP": _tl_dtype(step_dtype), "AMSGRAD": bool(amsgrad), "MAXIMIZE": bool(maximize)},
        )


# -- RMSprop ---------------------------------------------------------------------------


def init_rmsprop_state(
    param: Tensor, state: dict[str, Any], *, momentum: float, centered: bool
) -> None:
    """Fill in what is missing of one parameter's RMSprop state, in torch's layout.

    ``step`` (a 0-d float32 tensor on the parameter's device: the kernel advances it),
    ``square_avg``, and ``momentum_buffer`` (momentum > 0) and ``grad_avg`` (centered),
    zeros like ``param``.
    """
    _init_step(param, state)
    keys = ["square_avg"]
    if momentum > 0:
        keys.append("momentum_buffer")
    if centered:
        keys.append("grad_avg")
    for key in keys:
        if key not in state:
            state[key] = torch.zeros_like(param, memory_format=torch.preserve_format)


def rmsprop_step(
    params: list[Tensor],
    grads: list[Tensor],
    square_avgs: list[Tensor],
    grad_avgs: list[Tensor],
    momentum_buffers: list[Tensor],
    state_steps: list[Tensor],
    *,
    lr: Number,
    alpha: Number = 0.99,
    eps: Number = 1e-8,
    weight_decay: Number = 0.0,
    momentum: Number = 0.0,
    centered: bool = False,
    maximize: bool = False,
    decay_factor: Number | None = None,
    grad_scale: Tensor | None = None,
    found_inf: Tensor | None = None,
) -> None:
    """One RMSprop step (torch's arithmetic). ``grad_avgs`` is used when ``centered``,
    ``momentum_buffers`` when momentum > 0 (each may be empty otherwise)."""
    momentum_ = _float(momentum, "momentum")
    _check_number(lr, "lr")
    _check_number(decay_factor, "decay_factor")
    lists: dict[str, Sequence[Tensor]] = {"square_avgs": square_avgs, "state_steps": state_steps}
    if centered:
        lists["grad_avgs"] = grad_avgs
    if momentum_ > 0:
        lists["momentum_buffers"] = momentum_buffers
    _check_lists(params, grads=grads, **lists)
    if not params:
        return
    _check_params(params, grads)
    for name, values in lists.items():
        if name != "state_steps":
            _check_state(name, params, values)
    _check_steps(params, state_steps)
    numbers = [
        _float(weight_decay, "weight_decay"),
        _float(alpha, "alpha"),
        _float(eps, "eps"),
        momentum_,
    ]
    for (device, dtype, _), index in _by_device_and_dtype(params, state_steps):
        overflow = _flag(found_inf, device)
        _advance_steps(_pick(state_steps, index), device, overflow)
        unused = [None] * len(index)
        _run(
            "rmsprop_kernel",
            device,
            dtype,
            [
                _pick(params, index),
                _pick(grads, index),
                _pick(square_avgs, index),
                _pick(grad_avgs, index) if centered else unused,
                _pick(momentum_buffers, index) if momentum_ > 0 else unused,
            ],
            [],
            [
                *_number(lr, device, 0.0),
                *_number(decay_factor, device, 1.0),
                *numbers,
                _flag(grad_scale, device),
                overflow,
            ],
            {"CENTERED": bool(centered), "MOMENTUM": momentum_ > 0, "MAXIMIZE": bool(maximize)},
        )
