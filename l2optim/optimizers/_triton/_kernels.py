"""The Triton kernels: one program per chunk of one tensor, for SGD, Adam and RMSprop.

Every kernel walks a table with one row per chunk (see ``_tables``): the chunk's first and
last element, then the addresses of the tensors it updates (parameter, gradient, state).
A program loads its row, turns the addresses into typed pointers, and streams its chunk in
blocks: full blocks without a mask (vectorised loads when the addresses are aligned), the
last one masked.

What may change from one step to the next is a runtime argument, never a ``constexpr``:
the learning rate and the decoupled factor (a number, or a 0-d tensor read on the device),
λ, the betas, momentum and dampening, the gradient scale and the overflow flag. Numbers
arrive as float64 and each update is computed in float32 (float64 for float64 tensors),
as torch's fused kernels do; divisions and square roots round to nearest, as torch's do.

Importing this module imports triton and defines the kernels, for the interpreter when
``TRITON_INTERPRET=1`` is set at that moment (Triton reads it again while they run).
"""

from __future__ import annotations

import triton
import triton.language as tl

__all__ = ["INTERPRETED", "adam_kernel", "advance_steps_kernel", "rmsprop_kernel", "sgd_kernel"]

# -- shared pieces ---------------------------------------------------------------------


# An optional pointer comes with a constexpr saying whether it was given (``ptr is not None``
# in the kernel itself): inside a helper, a pointer left out is no longer ``None``.


@triton.jit
def _proceed(found_inf_ptr, GIVEN: tl.constexpr):
    """False when GradScaler found an overflow: the step leaves everything as it was."""
    if GIVEN:
        return tl.load(found_inf_ptr) == 0
    return True


@triton.jit
def _chunk(table, ROW: tl.constexpr, BLOCK: tl.constexpr):
    """This program's row of the table, and the first and end element of its chunk."""
    row = table + tl.program_id(0).to(tl.int64) * ROW
    # Chunks start at multiples of the chunk size, itself a multiple of BLOCK.
    start = tl.multiple_of(tl.load(row), BLOCK)
    stop = tl.load(row + 1)
    return row, start, stop


@triton.jit
def _pointer(row, column: tl.constexpr, DTYPE: tl.constexpr, ALIGNED: tl.constexpr):
    """The address in ``column`` of the row as a pointer to DTYPE."""
    pointer = tl.load(row + column).to(tl.pointer_type(DTYPE))
    if ALIGNED:
        # Checked on the host: every address of this launch is a multiple of 16 bytes.
        pointer = tl.multiple_of(pointer, 16)
    return pointer


# A number argument becomes a float64 scalar with tl.full((), value, tl.float64): compiled
# it is one already, interpreted it arrives as a Python float.


@triton.jit
def _number(value, pointer, GIVEN: tl.constexpr):
    """A hyperparameter as float64: the number given, or the 0-d tensor behind ``pointer``."""
    if GIVEN:
        return tl.load(pointer).to(tl.float64)
    return tl.full((), value, tl.float64)


@triton.jit
def _prologue(
    table, lr, lr_ptr, factor, factor_ptr, weight_decay, LR_GIVEN: tl.constexpr,
    FACTOR_GIVEN: tl.constexpr, DTYPE: tl.constexpr, COMPUTE: tl.constexpr,
    ALIGNED: tl.constexpr, ROW: tl.constexpr, BLOCK: tl.constexpr,
):  # fmt: skip
    """What every kernel starts with: its chunk, parameter and gradient, and the numbers
    every update uses (lr in float64, the decoupled factor and λ in COMPUTE)."""
    row, start, stop = _chunk(table, ROW, BLOCK)
    param = _pointer(row, 2, DTYPE, ALIGNED)
    grad = _pointer(row, 3, DTYPE, ALIGNED)
    lr_ = _number(lr, lr_ptr, LR_GIVEN)
    factor_ = _number(factor, factor_ptr, FACTOR_GIVEN).to(COMPUTE)
    weight_decay_ = tl.full((), weight_decay, tl.float64).to(COMPUTE)
    return row, start, stop, param, grad, lr_, factor_, weight_decay_


@triton.jit
def _div(x, y):
    # fp32 '/' compiles to an approximate division on NVIDIA GPUs; float64 '/' is exact.
    if x.dtype == tl.float32:
        return tl.div_rn(x, y)
    return x / y


@triton.jit
def _sqrt(x):
    if x.dtype == tl.float32:
        return tl.sqrt_rn(x)
    return tl.sqrt(x)


@triton.jit
def _store(pointer, idx, value, mask):
    """Store a computed value in the pointer's dtype, rounded to nearest (ties to even).

    bfloat16 is rounded here, on the bits: Triton's interpreter would truncate.
    """
    if pointer.dtype.element_ty == tl.bfloat16:
        bits = value.to(tl.uint32, bitcast=True)
        rounded = bits + 0x7FFF + ((bits >> 16) & 1)
        # A NaN stays a (quiet) NaN rather than carrying into the sign or infinity.
        rounded = tl.where(value != value, bits | 0x400000, rounded)
        stored = (rounded >> 16).to(tl.uint16).to(tl.bfloat16, bitcast=True)
    else:
        stored = value.to(pointer.dtype.element_ty)
    tl.store(pointer + idx, stored, mask=mask)


@triton.jit
def _lerp(start, end, weight):
    """torch.lerp's formula, so that moving averages round as torch's do."""
    return tl.where(
        tl.abs(weight) < 0.5, start + weight * (end - start), end - (end - start) * (1 - weight)
    )


@triton.jit
def _gradient(
    param, grad, idx, mask, grad_scale_ptr, factor, weight_decay, COMPUTE: tl.constexpr,
    SCALED: tl.constexpr, MAXIMIZE: tl.constexpr,
):  # fmt: skip
    """The parameter after decoupled decay, and the gradient the base update sees.

    In torch's order: unscale (GradScaler), negate (maximize), then coupled L2 with the
    parameter (g ← g + λ·p); the decoupled factor p ← p·(1 − s·λ) comes first of all.
    """
    p = tl.load(param + idx, mask=mask).to(COMPUTE)
    g = tl.load(grad + idx, mask=mask).to(COMPUTE)
    if SCALED:
        g = _div(g, tl.load(grad_scale_ptr).to(COMPUTE))
    if MAXIMIZE:
        g = -g
    p = p * factor
    # A zero λ adds nothing, not even 0·inf.
    g = tl.where(weight_decay != 0, g + weight_decay * p, g)
    return p, g


@triton.jit
def _powers(beta1, beta2, exponent):
    """(beta1**exponent, beta2**exponent) in float64, for an integer exponent ≥ 0."""
    power1 = tl.full((), 1.0, tl.float64)
    power2 = tl.full((), 1.0, tl.float64)
    while exponent > 0:
        odd = (exponent & 1) != 0
        power1 = tl.where(odd, power1 * beta1, power1)
        power2 = tl.where(odd, power2 * beta2, power2)
        beta1 = beta1 * beta1
        beta2 = beta2 * beta2
        exponent = exponent >> 1
    return power1, power2


# -- SGD -------------------------------------------------------------------------------


@triton.jit
def _sgd_block(
    param, grad, buf, idx, mask, first, lr, factor, weight_decay, momentum, keep, grad_scale_ptr,
    COMPUTE: tl.constexpr, SCALED: tl.constexpr, MOMENTUM: tl.constexpr, NESTEROV: tl.constexpr,
    MAXIMIZE: tl.constexpr,
):  # fmt: skip
    p, g = _gradient(
        param, grad, idx, mask, grad_scale_ptr, factor, weight_decay, COMPUTE, SCALED, MAXIMIZE
    )
    if MOMENTUM:
        b = tl.load(buf + idx, mask=mask).to(COMPUTE)
        # torch's first step copies the gradient (no dampening): buf ← g.
        b = tl.where(first, g, b * momentum + keep * g)
        _store(buf, idx, b, mask)
        if NESTEROV:
            g = g + momentum * b
        else:
            g = b
    p = p + (-lr) * g
    _store(param, idx, p, mask)


@triton.jit
def sgd_kernel(
    table,
    lr: tl.float64,
    lr_ptr,
    factor: tl.float64,
    factor_ptr,
    weight_decay: tl.float64,
    momentum: tl.float64,
    one_minus_dampening: tl.float64,
    grad_scale_ptr,
    found_inf_ptr,
    DTYPE: tl.constexpr,
    COMPUTE: tl.constexpr,
    ALIGNED: tl.constexpr,
    MOMENTUM: tl.constexpr,
    NESTEROV: tl.constexpr,
    MAXIMIZE: tl.constexpr,
    ROW: tl.constexpr,
    BLOCK: tl.constexpr,
):
    """Row: start, stop, param, grad, momentum_buffer, address of the float32 'first' flag."""
    SCALED: tl.constexpr = grad_scale_ptr is not None
    if _proceed(found_inf_ptr, found_inf_ptr is not None):
        row, start, stop, param, grad, lr_, factor_, weight_decay_ = _prologue(
            table, lr, lr_ptr, factor, factor_ptr, weight_decay, lr_ptr is not None,
            factor_ptr is not None, DTYPE, COMPUTE, ALIGNED, ROW, BLOCK,
        )  # fmt: skip
        lr_ = lr_.to(COMPUTE)
        buf = param
        first = False
        if MOMENTUM:
            buf = _pointer(row, 4, DTYPE, ALIGNED)
            first = tl.load(tl.load(row + 5).to(tl.pointer_type(tl.float32))) != 0
        momentum_ = tl.full((), momentum, tl.float64).to(COMPUTE)
        keep = tl.full((), one_minus_dampening, tl.float64).to(COMPUTE)
        offsets = tl.arange(0, BLOCK)
        for off in tl.range(start, stop, BLOCK):
            if off + BLOCK <= stop:
                _sgd_block(
                    param, grad, buf, off + offsets, None, first, lr_, factor_, weight_decay_,
                    momentum_, keep, grad_scale_ptr,
                    COMPUTE, SCALED, MOMENTUM, NESTEROV, MAXIMIZE,
                )  # fmt: skip
            else:
                _sgd_block(
                    param, grad, buf, off + offsets, off + offsets < stop, first, lr_, factor_,
                    weight_decay_, momentum_, keep, grad_scale_ptr,
                    COMPUTE, SCALED, MOMENTUM, NESTEROV, MAXIMIZE,
                )  # fmt: skip


# -- Adam ------------------------------------------------------------------------------


@triton.jit
def _adam_block(
    param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq, idx, mask, step_size, bc2_sqrt, w1,
    beta2, w2, eps, factor, weight_decay, grad_scale_ptr,
    COMPUTE: tl.constexpr, SCALED: tl.constexpr, AMSGRAD: tl.constexpr, MAXIMIZE: tl.constexpr,
):  # fmt: skip
    p, g = _gradient(
        param, grad, idx, mask, grad_scale_ptr, factor, weight_decay, COMPUTE, SCALED, MAXIMIZE
    )
    m = _lerp(tl.load(exp_avg + idx, mask=mask).to(COMPUTE), g, w1)
    v = tl.load(exp_avg_sq + idx, mask=mask).to(COMPUTE) * beta2 + w2 * (g * g)
    _store(exp_avg, idx, m, mask)
    _store(exp_avg_sq, idx, v, mask)
    if AMSGRAD:
        v = tl.maximum(
            tl.load(max_exp_avg_sq + idx, mask=mask).to(COMPUTE),
            v,
            propagate_nan=tl.PropagateNan.ALL,
        )
        _store(max_exp_avg_sq, idx, v, mask)
    denom = _div(_sqrt(v), bc2_sqrt) + eps
    p = p + (-step_size) * _div(m, denom)
    _store(param, idx, p, mask)


@triton.jit
def adam_kernel(
    table,
    lr: tl.float64,
    lr_ptr,
    factor: tl.float64,
    factor_ptr,
    weight_decay: tl.float64,
    beta1: tl.float64,
    beta2: tl.float64,
    eps: tl.float64,
    grad_scale_ptr,
    found_inf_ptr,
    DTYPE: tl.constexpr,
    COMPUTE: tl.constexpr,
    STEP: tl.constexpr,
    ALIGNED: tl.constexpr,
    AMSGRAD: tl.constexpr,
    MAXIMIZE: tl.constexpr,
    ROW: tl.constexpr,
    BLOCK: tl.constexpr,
):
    """Row: start, stop, param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq, step.

    The step counter has already been advanced (``advance_steps_kernel``).
    """
    SCALED: tl.constexpr = grad_scale_ptr is not None
    if _proceed(found_inf_ptr, found_inf_ptr is not None):
        row, start, stop, param, grad, lr_, factor_, weight_decay_ = _prologue(
            table, lr, lr_ptr, factor, factor_ptr, weight_decay, lr_ptr is not None,
            factor_ptr is not None, DTYPE, COMPUTE, ALIGNED, ROW, BLOCK,
        )  # fmt: skip
        exp_avg = _pointer(row, 4, DTYPE, ALIGNED)
        exp_avg_sq = _pointer(row, 5, DTYPE, ALIGNED)
        max_exp_avg_sq = exp_avg_sq
        if AMSGRAD:
            max_exp_avg_sq = _pointer(row, 6, DTYPE, ALIGNED)
        step = tl.load(tl.load(row + 7).to(tl.pointer_type(STEP))).to(tl.int32)
        # torch's bias corrections, in float64 as torch computes them from a float step.
        beta1_ = tl.full((), beta1, tl.float64)
        beta2_ = tl.full((), beta2, tl.float64)
        power1, power2 = _powers(beta1_, beta2_, step)
        step_size = (lr_ / (1 - power1)).to(COMPUTE)
        bc2_sqrt = tl.sqrt(1 - power2).to(COMPUTE)
        w1 = (1 - beta1_).to(COMPUTE)
        w2 = (1 - beta2_).to(COMPUTE)
        beta2_ = beta2_.to(COMPUTE)
        eps_ = tl.full((), eps, tl.float64).to(COMPUTE)
        offsets = tl.arange(0, BLOCK)
        for off in tl.range(start, stop, BLOCK):
            if off + BLOCK <= stop:
                _adam_block(
                    param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq, off + offsets, None,
                    step_size, bc2_sqrt, w1, beta2_, w2, eps_, factor_, weight_decay_,
                    grad_scale_ptr, COMPUTE, SCALED, AMSGRAD, MAXIMIZE,
                )  # fmt: skip
            else:
                _adam_block(
                    param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq, off + offsets,
                    off + offsets < stop, step_size, bc2_sqrt, w1, beta2_, w2, eps_, factor_,
                    weight_decay_, grad_scale_ptr, COMPUTE, SCALED, AMSGRAD, MAXIMIZE,
                )  # fmt: skip


# -- RMSprop ---------------------------------------------------------------------------


@triton.jit
def _rmsprop_block(
    param, grad, square_avg, grad_avg, buf, idx, mask, lr, alpha, w, eps, momentum, factor,
    weight_decay, grad_scale_ptr, COMPUTE: tl.constexpr, SCALED: tl.constexpr,
    CENTERED: tl.constexpr, MOMENTUM: tl.constexpr, MAXIMIZE: tl.constexpr,
):  # fmt: skip
    p, g = _gradient(
        param, grad, idx, mask, grad_scale_ptr, factor, weight_decay, COMPUTE, SCALED, MAXIMIZE
    )
    v = tl.load(square_avg + idx, mask=mask).to(COMPUTE) * alpha + w * (g * g)
    _store(square_avg, idx, v, mask)
    if CENTERED:
        mean = _lerp(tl.load(grad_avg + idx, mask=mask).to(COMPUTE), g, w)
        _store(grad_avg, idx, mean, mask)
        v = v + (-1.0) * (mean * mean)
    avg = _sqrt(v) + eps
    if MOMENTUM:
        b = tl.load(buf + idx, mask=mask).to(COMPUTE) * momentum + _div(g, avg)
        _store(buf, idx, b, mask)
        p = p + (-lr) * b
    else:
        p = p + (-lr) * _div(g, avg)
    _store(param, idx, p, mask)


@triton.jit
def rmsprop_kernel(
    table,
    lr: tl.float64,
    lr_ptr,
    factor: tl.float64,
    factor_ptr,
    weight_decay: tl.float64,
    alpha: tl.float64,
    eps: tl.float64,
    momentum: tl.float64,
    grad_scale_ptr,
    found_inf_ptr,
    DTYPE: tl.constexpr,
    COMPUTE: tl.constexpr,
    ALIGNED: tl.constexpr,
    CENTERED: tl.constexpr,
    MOMENTUM: tl.constexpr,
    MAXIMIZE: tl.constexpr,
    ROW: tl.constexpr,
    BLOCK: tl.constexpr,
):
    """Row: start, stop, param, grad, square_avg, grad_avg, momentum_buffer."""
    SCALED: tl.constexpr = grad_scale_ptr is not None
    if _proceed(found_inf_ptr, found_inf_ptr is not None):
        row, start, stop, param, grad, lr_, factor_, weight_decay_ = _prologue(
            table, lr, lr_ptr, factor, factor_ptr, weight_decay, lr_ptr is not None,
            factor_ptr is not None, DTYPE, COMPUTE, ALIGNED, ROW, BLOCK,
        )  # fmt: skip
        lr_ = lr_.to(COMPUTE)
        square_avg = _pointer(row, 4, DTYPE, ALIGNED)
        grad_avg = square_avg
        buf = square_avg
        if CENTERED:
            grad_avg = _pointer(row, 5, DTYPE, ALIGNED)
        if MOMENTUM:
            buf = _pointer(row, 6, DTYPE, ALIGNED)
        alpha_ = tl.full((), alpha, tl.float64)
        w = (1 - alpha_).to(COMPUTE)
        alpha_ = alpha_.to(COMPUTE)
        eps_ = tl.full((), eps, tl.float64).to(COMPUTE)
        momentum_ = tl.full((), momentum, tl.float64).to(COMPUTE)
        offsets = tl.arange(0, BLOCK)
        for off in tl.range(start, stop, BLOCK):
            if off + BLOCK <= stop:
                _rmsprop_block(
                    param, grad, square_avg, grad_avg, buf, off + offsets, None, lr_, alpha_, w,
                    eps_, momentum_, factor_, weight_decay_, grad_scale_ptr,
                    COMPUTE, SCALED, CENTERED, MOMENTUM, MAXIMIZE,
                )  # fmt: skip
            else:
                _rmsprop_block(
                    param, grad, square_avg, grad_avg, buf, off + offsets, off + offsets < stop,
                    lr_, alpha_, w, eps_, momentum_, factor_, weight_decay_, grad_scale_ptr,
                    COMPUTE, SCALED, CENTERED, MOMENTUM, MAXIMIZE,
                )  # fmt: skip


# -- step counters ---------------------------------------------------------------------


@triton.jit(do_not_specialize=["count"])
def advance_steps_kernel(addresses, count, found_inf_ptr, STEP: tl.constexpr, BLOCK: tl.constexpr):
    """step ← step + 1 for each step tensor listed in ``addresses``, unless an overflow.

    A launch of its own: within the update kernel, a chunk could read a counter that
    another chunk of the same tensor has already advanced.
    """
    if _proceed(found_inf_ptr, found_inf_ptr is not None):
        index = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
        mask = index < count
        steps = tl.load(addresses + index, mask=mask, other=0).to(tl.pointer_type(STEP))
        tl.store(steps, tl.load(steps, mask=mask) + 1, mask=mask)


#: Whether these kernels run in Triton's interpreter (on CPU tensors) instead of compiled.
INTERPRETED = not isinstance(sgd_kernel, triton.runtime.JITFunction)
