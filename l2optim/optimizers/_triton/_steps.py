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

Two things to know. A first SGD step that GradScaler skips still leaves (zero) buffers
in the list, since only the device knows it was skipped; the next steps here treat them
as not yet updated (buf ← g), but a checkpoint saved before that next step would show
torch a zero buffer, whose first update torch damps (identical when dampening is 0).
And a step is planned once for the addresses and sizes of its tensors: while they stay
the same, the checks made when the plan was built are trusted.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor
from torch.utils.weak import WeakIdKeyDictionary

from l2optim.optimizers._triton import _tables

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
    module = sys.modules.get("l2optim.optimizers._triton._kernels")
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


def _state_check(
    params: Sequence[Tensor],
    grads: Sequence[Tensor],
    lists: dict[str, Sequence[Tensor]],
    state_steps: Sequence[Tensor],
) -> Callable[[], None]:
    """The full check of a step's tensors, run when its launch plan is first built."""

    def check() -> None:
        _check_params(params, grads)
        for name, values in lists.items():
            _check_state(name, params, values)
        _check_steps(params, state_steps)

    return check


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


def _tl_dtype(dtype: torch.dtype) -> Any:
    tl = importlib.import_module("triton.language")
    return {
        torch.float16: tl.float16,
        torch.bfloat16: tl.bfloat16,
        torch.float32: tl.float32,
        torch.float64: tl.float64,
    }[dtype]


@dataclass
class _Group:
    """One launch: the tensors of one device, dtype (and step dtype), in a device table."""

    device: torch.device
    table: Tensor
    rows: int
    constants: dict[str, Any]
    # The step counters' addresses on the device, for advance_steps_kernel.
    steps: Tensor | None = None
    step_count: int = 0
    step_constants: dict[str, Any] = field(default_factory=dict)


# Launch plans by the addresses and sizes of everything a call updates: a step whose
# tensors are where they were skips the checks and the tables (the usual case; the
# gradients too keep their memory through the caching allocator). A tensor moved or
# resized has a new address or size, so a new plan, checked anew.
_PLANS_KEPT = 64
_plans: OrderedDict[tuple, list[_Group]] = OrderedDict()


def _addresses(tensors: Sequence[Tensor] | None) -> tuple[int, ...] | None:
    return None if tensors is None else tuple(map(Tensor.data_ptr, tensors))


def _plan(
    key: tuple,
    check: Callable[[], None],
    params: Sequence[Tensor],
    columns: Sequence[Sequence[Tensor] | None],
    steps: Sequence[Tensor] | None = None,
    steps_in_table: bool = False,
    flags: Sequence[int] | None = None,
) -> list[_Group]:
    """The launches for one call, from the cache or checked and built now.

    ``columns``: the tensor lists after params (grads, state; None for a column this
    configuration leaves out); ``flags``: SGD's 'first update' flag addresses (None: no
    such column; an empty list: none pending, the constant 0 of each device).
    """
    key = (key, _tables.CHUNK, _tables.BLOCK, tuple(map(Tensor.numel, params)))
    plan = _plans.get(key)
    if plan is not None:
        _plans.move_to_end(key)
        return plan
    check()
    positions: dict[tuple, list[int]] = {}
    for i, p in enumerate(params):
        positions.setdefault((p.device, p.dtype, steps and steps[i].dtype), []).append(i)
    plan = []
    for (device, dtype, step_dtype), index in positions.items():
        addresses = [[p.data_ptr() for p in _pick(params, index)]] + [
            [0] * len(index) if c is None else [t.data_ptr() for t in _pick(c, index)]
            for c in columns
        ]
        aligned = all(a % 16 == 0 for column in addresses for a in column)
        if flags is not None:
            addresses.append(
                _pick(flags, index) if flags else [_flag_address(device, False)] * len(index)
            )
        step_addresses = None if steps is None else [s.data_ptr() for s in _pick(steps, index)]
        if steps_in_table:
            addresses.append(step_addresses)
        table = _tables.chunk_table(addresses, [params[i].numel() for i in index], device)
        constants = {
            "DTYPE": _tl_dtype(dtype),
            "COMPUTE": _tl_dtype(torch.float64 if dtype == torch.float64 else torch.float32),
            "ALIGNED": aligned,
            "ROW": 2 + len(addresses),
            "BLOCK": _tables.BLOCK,
        }
        group = _Group(device, table, table.shape[0], constants)
        if steps is not None:
            group.steps = _tables.address_list(step_addresses, device)
            group.step_count = len(index)
            group.step_constants = {"STEP": _tl_dtype(step_dtype), "BLOCK": _tables.STEP_BLOCK}
            if steps_in_table:
                constants["STEP"] = group.step_constants["STEP"]
        plan.append(group)
    _plans[key] = plan
    if len(_plans) > _PLANS_KEPT:
        _plans.popitem(last=False)
    return plan


def _launch(
    name: str,
    plan: list[_Group],
    *,
    lr: Number,
    decay_factor: Number | None,
    numbers: Sequence[float],
    constants: dict[str, Any],
    grad_scale: Tensor | None,
    found_inf: Tensor | None,
) -> None:
    """Each group's launch (after advancing its step counters, if it has any)."""
    for group in plan:
        overflow = _flag(found_inf, group.device)
        if group.steps is not None:
            _tables.launch(
                "advance_steps_kernel",
                -(-group.step_count // _tables.STEP_BLOCK),
                [group.steps, group.step_count, overflow],
                group.step_constants,
                unspecialized=(1,),
            )
        arguments = [
            group.table,
            *_number(lr, group.device, 0.0),
            *_number(decay_factor, group.device, 1.0),
            *numbers,
            _flag(grad_scale, group.device),
            overflow,
        ]
        _tables.launch(name, group.rows, arguments, {**group.constants, **constants})


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
    missing: list[int],
    found_inf: Tensor | None,
    dampening: float,
) -> tuple[list[int], set[_PendingFirstSteps]]:
    """Make the missing buffers; return each buffer's flag address and the batches in use."""
    for i in missing:
        buffers[i] = torch.zeros_like(params[i], memory_format=torch.preserve_format)
    if missing and found_inf is not None and dampening != 0:
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
    dampening_ = _float(dampening, "dampening")
    numbers = [_float(weight_decay, "weight_decay"), momentum_, 1.0 - dampening_]
    _check_number(lr, "lr")
    _check_number(decay_factor, "decay_factor")
    _check_lists(params, grads=grads)
    if momentum_ != 0:
        _check_lists(params, momentum_buffers=momentum_buffers)
    if not params:
        return

    def check() -> None:
        _check_params(params, grads)
        if momentum_ != 0:
            _check_state("momentum_buffers", params, momentum_buffers)  # type: ignore[arg-type]

    flags: list[int] | None = None
    batches: set[_PendingFirstSteps] = set()
    if momentum_ != 0:
        missing = [i for i, b in enumerate(momentum_buffers) if b is None]
        if missing:
            # Checked before any buffer is made: bad input changes nothing.
            _check_params(params, grads)
            _check_state(
                "momentum_buffers",
                [params[i] for i, b in enumerate(momentum_buffers) if b is not None],
                [b for b in momentum_buffers if b is not None],  # type: ignore[misc]
            )
        flags = []
        if missing or _pending:
            flags, batches = _first_flags(momentum_buffers, params, missing, found_inf, dampening_)
    plan = _plan(
        ("sgd", _addresses(params), _addresses(grads),
         _addresses(momentum_buffers) if momentum_ != 0 else None,  # type: ignore[arg-type]
         None if flags is None else tuple(flags)),
        check,
        params,
        [grads, momentum_buffers if momentum_ != 0 else None],  # type: ignore[list-item]
        flags=flags,
    )  # fmt: skip
    _launch(
        "sgd_kernel",
        plan,
        lr=lr,
        decay_factor=decay_factor,
        numbers=numbers,
        constants={
            "MOMENTUM": momentum_ != 0,
            "NESTEROV": bool(nesterov),
            "MAXIMIZE": bool(maximize),
        },
        grad_scale=grad_scale,
        found_inf=found_inf,
    )
    for batch in batches:
        batch.after_step(_flag(found_inf, batch.flags.device))


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
    numbers = [
        _float(weight_decay, "weight_decay"),
        _float(beta1, "beta1"),
        _float(beta2, "beta2"),
        _float(eps, "eps"),
    ]
    lists = {"exp_avgs": exp_avgs, "exp_avg_sqs": exp_avg_sqs}
    if amsgrad:
        lists["max_exp_avg_sqs"] = max_exp_avg_sqs
    _check_lists(params, grads=grads, state_steps=state_steps, **lists)
    if not params:
        return

    check = _state_check(params, grads, lists, state_steps)

    maxima = max_exp_avg_sqs if amsgrad else None
    plan = _plan(
        ("adam", *map(_addresses, (params, grads, exp_avgs, exp_avg_sqs, maxima, state_steps))),
        check,
        params,
        [grads, exp_avgs, exp_avg_sqs, maxima],
        steps=state_steps,
        steps_in_table=True,
    )
    _launch(
        "adam_kernel",
        plan,
        lr=lr,
        decay_factor=decay_factor,
        numbers=numbers,
        constants={"AMSGRAD": bool(amsgrad), "MAXIMIZE": bool(maximize)},
        grad_scale=grad_scale,
        found_inf=found_inf,
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
    numbers = [
        _float(weight_decay, "weight_decay"),
        _float(alpha, "alpha"),
        _float(eps, "eps"),
        momentum_,
    ]
    _check_number(lr, "lr")
    _check_number(decay_factor, "decay_factor")
    lists: dict[str, Sequence[Tensor]] = {"square_avgs": square_avgs}
    if centered:
        lists["grad_avgs"] = grad_avgs
    if momentum_ > 0:
        lists["momentum_buffers"] = momentum_buffers
    _check_lists(params, grads=grads, state_steps=state_steps, **lists)
    if not params:
        return

    check = _state_check(params, grads, lists, state_steps)

    columns = [grads, square_avgs, lists.get("grad_avgs"), lists.get("momentum_buffers")]
    plan = _plan(
        ("rmsprop", _addresses(params), *map(_addresses, columns), _addresses(state_steps)),
        check,
        params,
        columns,
        steps=state_steps,
    )
    _launch(
        "rmsprop_kernel",
        plan,
        lr=lr,
        decay_factor=decay_factor,
        numbers=numbers,
        constants={
            "CENTERED": bool(centered),
            "MOMENTUM": momentum_ > 0,
            "MAXIMIZE": bool(maximize),
        },
        grad_scale=grad_scale,
        found_inf=found_inf,
    )
