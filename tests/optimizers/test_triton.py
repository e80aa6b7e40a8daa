"""The Triton kernels (l2optim/_triton) against torch.optim's single-tensor steps.

Without a GPU the kernels run in Triton's interpreter on CPU tensors, with small blocks
and chunks so that every path (full blocks, masked tails, tensors split over several
programs) runs on small tensors; on a CUDA machine the same tests run the compiled kernels
with their real sizes (see benchmarks/optimizers/cuda_check.sh).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
import torch
from torch.optim.adam import adam as torch_adam
from torch.optim.rmsprop import rmsprop as torch_rmsprop
from torch.optim.sgd import sgd as torch_sgd

from l2optim.optimizers import _rule

CUDA = torch.cuda.is_available()


def _import_kernels() -> Any:
    """Define the kernels, interpreted when there is no GPU.

    Triton reads TRITON_INTERPRET when a kernel is defined, and again while it runs one;
    it is set here for the definition and by a fixture for each test of this module, so
    nothing else in the test session runs under it.
    """
    saved = os.environ.get("TRITON_INTERPRET")
    if not CUDA:
        os.environ["TRITON_INTERPRET"] = "1"
    try:
        pytest.importorskip(
            "triton", reason="triton is not installed (the test extra has it on Linux x86_64)"
        )
        from l2optim.optimizers._triton import _tables

        return _tables.kernels()
    finally:
        if saved is None:
            os.environ.pop("TRITON_INTERPRET", None)
        else:
            os.environ["TRITON_INTERPRET"] = saved


_kernels = _import_kernels()

from l2optim.optimizers import _triton  # noqa: E402
from l2optim.optimizers._triton import _tables  # noqa: E402

if not _kernels.INTERPRETED and not CUDA:
    pytest.skip("compiled Triton kernels need a CUDA device", allow_module_level=True)

DEVICE = "cpu" if _kernels.INTERPRETED else "cuda"


@pytest.fixture(autouse=True)
def small_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Interpreted, blocks of 16 and chunks of 3 blocks: every path on tiny tensors."""
    if _kernels.INTERPRETED:
        monkeypatch.setenv("TRITON_INTERPRET", "1")
        monkeypatch.setattr(_tables, "BLOCK", 16)
        monkeypatch.setattr(_tables, "CHUNK", 48)
        monkeypatch.setattr(_tables, "STEP_BLOCK", 8)


def sizes() -> list[int]:
    """One element, a few, a block and a bit, and a tensor over two chunks."""
    return [1, 7, _tables.BLOCK + 3, _tables.CHUNK + _tables.BLOCK + 5]


def make_params(
    dtype: torch.dtype = torch.float32, seed: int = 0, shapes: list | None = None
) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Parameters of the given sizes (default: 7 elements) and a transposed one (dense,
    not contiguous), with gradients. The arithmetic of a mode needs no more; sizes and
    layouts have tests of their own."""
    generator = torch.Generator().manual_seed(seed)
    params, grads = [], []
    for n in shapes or [7]:
        params.append(torch.randn(n, generator=generator, dtype=torch.float64))
        grads.append(torch.randn(n, generator=generator, dtype=torch.float64))
    params.append(torch.randn(9, 5, generator=generator, dtype=torch.float64).t())
    grads.append(torch.randn(9, 5, generator=generator, dtype=torch.float64).t())
    to = {"device": DEVICE, "dtype": dtype}
    return [p.to(**to) for p in params], [g.to(**to) for g in grads]


def new_grads(params: list[torch.Tensor], seed: int) -> list[torch.Tensor]:
    """Gradients laid out like their parameters, as autograd lays them out."""
    generator = torch.Generator().manual_seed(1000 + seed)
    return [
        torch.empty_like(p).copy_(torch.randn(p.shape, generator=generator, dtype=torch.float64))
        for p in params
    ]


def clone(states: list[dict]) -> list[dict]:
    return [{k: v.clone() for k, v in s.items()} for s in states]


# -- the three families, each with its kernel and torch's reference ---------------------


@dataclass
class Family:
    name: str
    torch_class: type
    hyper: dict[str, Any]
    ours: Callable[..., None]
    reference: Callable[..., None]
    # fills in what a parameter's state lacks (SGD's buffers are made by its step)
    fill_state: Callable[[torch.Tensor, dict, dict], None]
    class_kwargs: Callable[[dict], dict] = field(default=lambda h: h)

    def states(self, params: list[torch.Tensor]) -> list[dict]:
        states: list[dict] = [{} for _ in params]
        for p, s in zip(params, states, strict=True):
            self.fill_state(p, s, self.hyper)
        return states


def _sgd_ours(params, grads, states, hyper, **runtime):
    buffers = [s.get("momentum_buffer") for s in states]
    _triton.sgd_step(params, grads, buffers, **hyper, **runtime)
    for s, b in zip(states, buffers, strict=True):
        if b is not None:
            s["momentum_buffer"] = b


def _sgd_reference(params, grads, states, hyper, lr):
    buffers = [s.get("momentum_buffer") for s in states]
    torch_sgd(params, grads, buffers, foreach=False, lr=lr, **hyper)
    for s, b in zip(states, buffers, strict=True):
        if b is not None:
            s["momentum_buffer"] = b


def _adam_lists(states, hyper):
    keys = ["exp_avg", "exp_avg_sq", "max_exp_avg_sq", "step"]
    return [[s[k] for s in states] if k in states[0] else [] for k in keys]


def _adam_ours(params, grads, states, hyper, **runtime):
    _triton.adam_step(params, grads, *_adam_lists(states, hyper), **hyper, **runtime)


def _adam_reference(params, grads, states, hyper, lr):
    torch_adam(params, grads, *_adam_lists(states, hyper), foreach=False, lr=lr, **hyper)


def _rmsprop_lists(states):
    keys = ["square_avg", "grad_avg", "momentum_buffer", "step"]
    return [[s[k] for s in states] if k in states[0] else [] for k in keys]


def _rmsprop_ours(params, grads, states, hyper, **runtime):
    _triton.rmsprop_step(params, grads, *_rmsprop_lists(states), **hyper, **runtime)


def _rmsprop_reference(params, grads, states, hyper, lr):
    torch_rmsprop(params, grads, *_rmsprop_lists(states), foreach=False, lr=lr, **hyper)


def sgd(**hyper: Any) -> Family:
    full = {"weight_decay": 0.0, "momentum": 0.0, "dampening": 0.0, "nesterov": False}
    full.update({"maximize": False, **hyper})
    return Family("sgd", torch.optim.SGD, full, _sgd_ours, _sgd_reference, lambda p, s, h: None)


def adam(**hyper: Any) -> Family:
    full = {"amsgrad": False, "beta1": 0.9, "beta2": 0.999, "weight_decay": 0.0, "eps": 1e-8}
    full.update({"maximize": False, **hyper})

    def state(p, s, h):
        _triton.init_adam_state(p, s, amsgrad=h["amsgrad"])

    def class_kwargs(h):
        kwargs = {k: v for k, v in h.items() if k not in ("beta1", "beta2")}
        return {**kwargs, "betas": (h["beta1"], h["beta2"])}

    return Family("adam", torch.optim.Adam, full, _adam_ours, _adam_reference, state, class_kwargs)


def rmsprop(**hyper: Any) -> Family:
    full = {"alpha": 0.99, "eps": 1e-8, "weight_decay": 0.0, "momentum": 0.0, "centered": False}
    full.update({"maximize": False, **hyper})

    def state(p, s, h):
        _triton.init_rmsprop_state(p, s, momentum=h["momentum"], centered=h["centered"])

    return Family("rmsprop", torch.optim.RMSprop, full, _rmsprop_ours, _rmsprop_reference, state)


# (family, decoupled decay: None or (scaling, λ), learning rate as a tensor?)
MODES = [
    pytest.param(sgd(weight_decay=0.1), None, False, id="sgd-coupled"),
    pytest.param(sgd(momentum=0.9), None, True, id="sgd-momentum"),
    pytest.param(
        sgd(momentum=0.9, nesterov=True, maximize=True, weight_decay=0.05),
        None,
        False,
        id="sgd-nesterov-maximize-coupled",
    ),
    pytest.param(sgd(momentum=0.8, dampening=0.3), ("lr", 0.2), True, id="sgd-dampening-decoupled"),
    pytest.param(
        sgd(momentum=0.9, nesterov=True), ("schedule", 0.1), False, id="sgd-nesterov-schedule"
    ),
    pytest.param(sgd(maximize=True), ("none", 0.01), True, id="sgd-maximize-decoupled-none"),
    pytest.param(adam(), None, False, id="adam"),
    pytest.param(adam(amsgrad=True, weight_decay=0.1), None, True, id="adam-amsgrad-coupled"),
    pytest.param(adam(maximize=True, weight_decay=0.1), None, False, id="adam-maximize-coupled"),
    pytest.param(adam(maximize=True), ("lr", 0.1), True, id="adamw-maximize"),
    pytest.param(
        adam(amsgrad=True, beta1=0.5, beta2=0.9), ("schedule", 0.2), False, id="adamw-amsgrad"
    ),
    pytest.param(adam(), ("none", 0.01), True, id="adamw-none"),
    pytest.param(rmsprop(), None, False, id="rmsprop"),
    pytest.param(rmsprop(centered=True, weight_decay=0.1), None, True, id="rmsprop-centered"),
    pytest.param(rmsprop(momentum=0.5, maximize=True), None, False, id="rmsprop-momentum-max"),
    pytest.param(
        rmsprop(centered=True, momentum=0.5, maximize=True, weight_decay=0.1, alpha=0.9),
        None,
        True,
        id="rmsprop-centered-momentum-maximize-coupled",
    ),
    pytest.param(rmsprop(momentum=0.5), ("lr", 0.2), False, id="rmsprop-momentum-decoupled"),
    pytest.param(rmsprop(centered=True), ("schedule", 0.1), True, id="rmsprop-centered-schedule"),
    pytest.param(rmsprop(maximize=True), ("none", 0.01), False, id="rmsprop-maximize-none"),
]

LRS = [0.05, 0.02, 0.08, 0.01]
LR_REF = 0.05


def decay_factor(decay: tuple | None, lr: Any) -> Any:
    """1 − s·λ as l2optim's classes compute it (a tensor when lr is one)."""
    if decay is None:
        return None
    scaling, weight_decay = decay
    return _rule.decoupled_factor(_rule.decay_scale(scaling, lr, LR_REF), weight_decay)


def reference_step(family, params, grads, states, lr, decay, grad_scale=None) -> None:
    """torch's single-tensor step, after decoupled decay (p ← p·factor)."""
    if grad_scale is not None:
        grads = [g / grad_scale for g in grads]
    factor = decay_factor(decay, lr)
    if factor is not None:
        for p in params:
            p.mul_(factor)
    family.reference(params, grads, states, family.hyper, lr)


def our_step(family, params, grads, states, lr, decay, **flags) -> None:
    factor = decay_factor(decay, lr)
    family.ours(params, grads, states, family.hyper, lr=lr, decay_factor=factor, **flags)


def assert_same(ours: list[torch.Tensor], theirs: list[torch.Tensor], **tolerance) -> None:
    for a, b in zip(ours, theirs, strict=True):
        torch.testing.assert_close(a, b, **tolerance)


def assert_same_states(ours: list[dict], theirs: list[dict], **tolerance) -> None:
    for a, b in zip(ours, theirs, strict=True):
        assert a.keys() == b.keys()
        for key in a:
            # torch keeps a non-fused step on the CPU; here it lives with the parameter
            torch.testing.assert_close(a[key], b[key], check_device=False, **tolerance)


def as_lr(value: float, tensor: bool) -> Any:
    return torch.tensor(value, device=DEVICE) if tensor else value


# -- every mode, against torch ---------------------------------------------------------


@pytest.mark.parametrize(("family", "decay", "tensor_lr"), MODES)
def test_matches_torch_single_tensor(family: Family, decay, tensor_lr: bool) -> None:
    params, grads = make_params()
    ref_params = [p.clone() for p in params]
    states, ref_states = family.states(params), family.states(ref_params)
    for step, lr in enumerate(LRS[:3]):
        grads = new_grads(params, step)
        our_step(family, params, grads, states, as_lr(lr, tensor_lr), decay)
        reference_step(family, ref_params, grads, ref_states, lr, decay)
        assert_same(params, ref_params)
        assert_same_states(states, ref_states)


def test_adamw_matches_torch_adamw() -> None:
    """decay_factor = 1 − lr·λ is torch's own decoupled Adam, through torch's code path."""
    family = adam(amsgrad=True)
    params, _ = make_params()
    ref_params = [p.clone() for p in params]
    states, ref_states = family.states(params), family.states(ref_params)
    for step, lr in enumerate(LRS):
        grads = new_grads(params, step)
        family.ours(params, grads, states, family.hyper, lr=lr, decay_factor=1 - lr * 0.1)
        hyper = {**family.hyper, "weight_decay": 0.1}
        torch_adam(
            ref_params, grads, *_adam_lists(ref_states, hyper), foreach=False, lr=lr,
            decoupled_weight_decay=True, **hyper,
        )  # fmt: skip
        assert_same(params, ref_params)


def test_adam_bias_correction_after_many_steps() -> None:
    """At step 3000 β₂ᵗ still matters; float32 powers of β would be off by 1e-4."""
    family = adam(beta2=0.9999)
    params, grads = make_params(shapes=[5])
    ref_params = [p.clone() for p in params]
    states, ref_states = family.states(params), family.states(ref_params)
    for s in (*states, *ref_states):
        s["step"].fill_(3000)
    our_step(family, params, grads, states, 0.1, None)
    reference_step(family, ref_params, grads, ref_states, 0.1, None)
    assert_same(params, ref_params, rtol=0, atol=1e-6)


# -- dtypes ----------------------------------------------------------------------------

LOW_PRECISION = {torch.bfloat16: 2.0**-8, torch.float16: 2.0**-11}


def rounded_reference(family, params, grads, states, lr, decay) -> None:
    """torch's step computed in float32 from the stored values, stored back rounded."""
    dtype = params[0].dtype
    wide = [p.float() for p in params]
    wide_states = [{k: v.float() if v.dtype == dtype else v for k, v in s.items()} for s in states]
    reference_step(family, wide, [g.float() for g in grads], wide_states, lr, decay)
    for p, w in zip(params, wide, strict=True):
        p.copy_(w)
    for s, w in zip(states, wide_states, strict=True):
        for k in w:
            if k in s:
                s[k].copy_(w[k])
            else:
                s[k] = w[k].to(dtype)


@pytest.mark.parametrize(
    ("family", "decay"),
    [
        pytest.param(sgd(momentum=0.9, dampening=0.1, nesterov=False), ("lr", 0.1), id="sgd"),
        pytest.param(adam(amsgrad=True, weight_decay=0.1), None, id="adam"),
        pytest.param(rmsprop(centered=True, momentum=0.5), ("lr", 0.1), id="rmsprop"),
    ],
)
def test_mixed_dtypes_in_one_call(family: Family, decay) -> None:
    """float32, bfloat16, float16 and float64 parameters in one call: one launch per dtype,
    each computed in float32 (float64 for float64) and stored once, as torch's fused do."""
    dtypes = [torch.float32, torch.bfloat16, torch.float16, torch.float64]
    groups = [make_params(dtype, seed=i) for i, dtype in enumerate(dtypes)]
    params = [p for ps, _ in groups for p in ps]
    ref_params = [p.clone() for p in params]
    states, ref_states = family.states(params), family.states(ref_params)
    kernel = f"{family.name}_kernel"
    for step, lr in enumerate(LRS[:2]):
        grads = new_grads(params, step)
        before = _tables.launches[kernel]
        our_step(family, params, grads, states, lr, decay)
        assert _tables.launches[kernel] - before == len(dtypes)
        for dtype in dtypes:
            index = [i for i, p in enumerate(params) if p.dtype == dtype]
            step_of_dtype = rounded_reference if dtype in LOW_PRECISION else reference_step
            step_of_dtype(
                family,
                *([xs[i] for i in index] for xs in (ref_params, grads, ref_states)),
                lr,
                decay,
            )
    for p, r, s, rs in zip(params, ref_params, states, ref_states, strict=True):
        if p.dtype in LOW_PRECISION:
            # One rounding of a float32 result: at most one unit in the last place apart.
            tolerance = {"rtol": 2 * LOW_PRECISION[p.dtype], "atol": 1e-5}
        elif p.dtype == torch.float64:
            tolerance = {"rtol": 1e-12, "atol": 1e-12}
        else:
            tolerance = {}
        torch.testing.assert_close(p, r, **tolerance)
        for key in s:
            torch.testing.assert_close(s[key], rs[key], **tolerance)


# -- sizes, many tensors, and memory next to them --------------------------------------

FAMILIES = [
    pytest.param(sgd(momentum=0.9, dampening=0.2, weight_decay=0.1), id="sgd"),
    pytest.param(adam(amsgrad=True), id="adam"),
    pytest.param(rmsprop(centered=True, momentum=0.5), id="rmsprop"),
]


@pytest.mark.parametrize("family", FAMILIES)
def test_odd_sizes_blocks_and_chunks(family: Family) -> None:
    """1 and 7 elements, a block and a tail, a tensor over two programs, a transposed one."""
    params, _ = make_params(shapes=sizes())
    ref_params = [p.clone() for p in params]
    states, ref_states = family.states(params), family.states(ref_params)
    for step, lr in enumerate(LRS[:2]):
        grads = new_grads(params, step)
        our_step(family, params, grads, states, lr, ("lr", 0.1))
        reference_step(family, ref_params, grads, ref_states, lr, ("lr", 0.1))
    assert_same(params, ref_params)
    assert_same_states(states, ref_states)


def test_many_tiny_tensors_take_one_launch() -> None:
    family = sgd(momentum=0.9)
    generator = torch.Generator().manual_seed(3)
    shapes = torch.randint(1, 40, (200,), generator=generator).tolist()
    params, _ = make_params(shapes=shapes)
    ref_params = [p.clone() for p in params]
    states, ref_states = family.states(params), family.states(ref_params)
    for step in range(1):
        grads = new_grads(params, step)
        before = dict(_tables.launches)
        our_step(family, params, grads, states, 0.01, ("lr", 0.1))
        assert _tables.launches["sgd_kernel"] - before.get("sgd_kernel", 0) == 1
        reference_step(family, ref_params, grads, ref_states, 0.01, ("lr", 0.1))
    assert_same(params, ref_params)
    assert_same_states(states, ref_states)


@pytest.mark.parametrize("family", FAMILIES)
def test_memory_around_the_tensors_is_never_touched(family: Family) -> None:
    """Parameters that are views into one flat buffer at odd offsets (unaligned), with
    elements in between that belong to no parameter given: those stay bit for bit."""
    flat = torch.randn(4 * _tables.CHUNK, device=DEVICE)
    original = flat.clone()
    bounds = [(1, 6), (9, 9 + _tables.BLOCK + 1), (_tables.BLOCK + 13, 2 * _tables.CHUNK + 3)]
    params = [flat[a:b] for a, b in bounds]
    states = family.states(params)
    for step in range(2):
        our_step(family, params, new_grads(params, step), states, 0.1, ("lr", 0.1))
    touched = torch.zeros_like(flat, dtype=torch.bool)
    for a, b in bounds:
        touched[a:b] = True
    assert torch.equal(flat[~touched], original[~touched])
    assert not torch.equal(flat[touched], original[touched])


@pytest.mark.parametrize("family", FAMILIES)
def test_tensors_moved_between_steps_are_followed(family: Family) -> None:
    """Launch plans are kept by address: a parameter or state tensor given new memory, or
    a parameter dropping out of the call, makes a new plan (with new checks)."""
    params, _ = make_params()
    ref_params = [p.clone() for p in params]
    states, ref_states = family.states(params), family.states(ref_params)
    for step, lr in enumerate(LRS[:3]):
        if step == 1:
            params[0] = params[0].clone()
            for key in states[1]:
                states[1][key] = states[1][key].clone()
        n = len(params) - (step == 2)  # the last parameter has no gradient on step 2
        grads = new_grads(params, step)[:n]
        our_step(family, params[:n], grads, states[:n], lr, ("lr", 0.1))
        reference_step(family, ref_params[:n], grads, ref_states[:n], lr, ("lr", 0.1))
        assert_same(params, ref_params)
        assert_same_states(states, ref_states)


# -- GradScaler: the scale and the overflow flag ---------------------------------------


@pytest.mark.parametrize(("family", "decay", "tensor_lr"), MODES[1::3])
@pytest.mark.parametrize("scale", [1024.0, 3.0])
def test_grad_scale_divides_the_gradient(family, decay, tensor_lr, scale: float) -> None:
    params, _ = make_params()
    ref_params = [p.clone() for p in params]
    states, ref_states = family.states(params), family.states(ref_params)
    grad_scale = torch.tensor([scale], device=DEVICE)
    for step, lr in enumerate(LRS[:2]):
        grads = [g * scale for g in new_grads(params, step)]
        our_step(family, params, grads, states, as_lr(lr, tensor_lr), decay, grad_scale=grad_scale)
        reference_step(family, ref_params, grads, ref_states, lr, decay, grad_scale=scale)
        assert_same(params, ref_params)
        assert_same_states(states, ref_states)


def overflow(shape: tuple = (1,), value: float = 1.0) -> torch.Tensor:
    return torch.full(shape, value, device=DEVICE)


OVERFLOW_MODES = [
    m
    for m in MODES
    if m.id
    in (
        "sgd-momentum",
        "sgd-dampening-decoupled",
        "sgd-nesterov-schedule",
        "adam-amsgrad-coupled",
        "adamw-maximize",
        "rmsprop-centered",
        "rmsprop-momentum-decoupled",
        "rmsprop-centered-momentum-maximize-coupled",
    )
]


@pytest.mark.parametrize(("family", "decay", "tensor_lr"), OVERFLOW_MODES)
def test_overflow_skips_the_step_entirely(family: Family, decay, tensor_lr: bool) -> None:
    """found_inf = 1 on the first step and mid-training: parameters, every state tensor and
    the step counters stay bit for bit; the steps that run match torch's, which never saw
    the skipped ones (its first momentum step included: buf ← g, undamped)."""
    params, _ = make_params()
    ref_params = [p.clone() for p in params]
    states, ref_states = family.states(params), family.states(ref_params)
    skipped = {0, 1, 3}
    for step, lr in enumerate(LRS + [0.03]):
        grads = new_grads(params, step)
        if step in skipped:
            before, before_states = [p.clone() for p in params], clone(states)
            found_inf = overflow(() if step == 1 else (1,))
            our_step(
                family, params, grads, states, as_lr(lr, tensor_lr), decay, found_inf=found_inf
            )
            for p, b in zip(params, before, strict=True):
                assert torch.equal(p, b)
            for s, b in zip(states, before_states, strict=True):
                for key in b:
                    assert torch.equal(s[key], b[key]), key
            # SGD makes its momentum buffers on the first step, skipped or not: zeros,
            # which its next step must not mistake for a buffer already updated.
            assert set(states[0]) - set(before_states[0]) <= {"momentum_buffer"}
            for s in states:
                if "momentum_buffer" in s and "momentum_buffer" not in before_states[0]:
                    assert not s["momentum_buffer"].any()
            continue
        no_overflow = overflow(value=0.0)
        our_step(family, params, grads, states, as_lr(lr, tensor_lr), decay, found_inf=no_overflow)
        reference_step(family, ref_params, grads, ref_states, lr, decay)
        assert_same(params, ref_params)
        assert_same_states(states, ref_states)


def test_first_momentum_step_after_skips_is_undamped_in_every_call() -> None:
    """Buffers made on a skipped step keep their 'first update to come' mark across calls,
    however many steps are skipped, and lose it once their first update has run."""
    family = sgd(momentum=0.9, dampening=0.5)
    params, _ = make_params(shapes=[7])
    ref_params = [p.clone() for p in params]
    states, ref_states = family.states(params), family.states(ref_params)
    for step in range(3):
        our_step(family, params, new_grads(params, step), states, 0.1, None, found_inf=overflow())
    for step in range(3, 6):
        grads = new_grads(params, step)
        our_step(family, params, grads, states, 0.1, None, found_inf=overflow(value=0.0))
        reference_step(family, ref_params, grads, ref_states, 0.1, None)
        assert_same(params, ref_params)
        assert_same_states(states, ref_states)


# -- schedules never recompile ---------------------------------------------------------


def kernel_specializations(name: str) -> set:
    return {s for s in _tables.specializations if s[0] == name}


@pytest.mark.parametrize(
    "family",
    [sgd(momentum=0.9), adam(), rmsprop(momentum=0.5)],
    ids=["sgd", "adam", "rmsprop"],
)
@pytest.mark.parametrize("tensor_lr", [False, True], ids=["float-lr", "tensor-lr"])
def test_a_schedule_never_recompiles(family: Family, tensor_lr: bool) -> None:
    """lr, the decoupled factor and the momentum (as OneCycleLR cycles it) change every
    step: one launch per step, and no specialisation beyond the first step's."""
    family = Family(**{**family.__dict__, "hyper": dict(family.hyper)})
    name = f"{family.name}_kernel"
    params, _ = make_params(shapes=[5])
    states = family.states(params)
    lr = torch.tensor(0.1, device=DEVICE) if tensor_lr else 0.1
    launches = _tables.launches[name]
    for step in range(5):
        value = 0.1 * 0.7**step
        if tensor_lr:
            lr.fill_(value)
        else:
            lr = value
        if "momentum" in family.hyper:
            family.hyper["momentum"] = 0.9 - 0.05 * step
        if "beta1" in family.hyper:
            family.hyper["beta1"] = 0.9 - 0.05 * step
        our_step(family, params, new_grads(params, step), states, lr, ("schedule", 0.1))
        if step == 0:
            first = kernel_specializations(name)
            compiled = _tables.compiled_variants(name)
    assert _tables.launches[name] - launches == 5
    assert kernel_specializations(name) == first
    # Compiled (on a GPU), Triton's own cache agrees.
    assert _tables.compiled_variants(name) == compiled


def test_recorded_specializations_are_what_triton_compiles(monkeypatch) -> None:
    """What Triton compiles apart (a tensor lr, a scale given or not, unaligned views) is
    recorded apart; compiled, the new records are Triton's new binaries."""
    family = sgd(momentum=0.9)
    params, _ = make_params(shapes=[5])
    unaligned = [torch.zeros(9, device=DEVICE)[1:6]]
    states, unaligned_states = family.states(params), family.states(unaligned)
    seen = set(_tables.specializations)
    monkeypatch.setattr(_tables, "specializations", set())
    compiled = _tables.compiled_variants("sgd_kernel")
    our_step(family, params, new_grads(params, 0), states, 0.1, None)
    our_step(family, params, new_grads(params, 1), states, torch.tensor(0.1, device=DEVICE), None)
    scale = torch.tensor([2.0], device=DEVICE)
    our_step(family, params, new_grads(params, 2), states, 0.1, None, grad_scale=scale)
    our_step(family, unaligned, new_grads(unaligned, 3), unaligned_states, 0.1, None)
    recorded = kernel_specializations("sgd_kernel")
    assert len(recorded) == 4
    if compiled is not None:
        assert _tables.compiled_variants("sgd_kernel") - compiled == len(recorded - seen)


# -- the state torch expects -----------------------------------------------------------

CHECKPOINT_MODES = [
    pytest.param(sgd(momentum=0.9, dampening=0.1, weight_decay=0.1), id="sgd"),
    pytest.param(adam(amsgrad=True, weight_decay=0.1, maximize=True), id="adam-amsgrad"),
    pytest.param(rmsprop(centered=True, momentum=0.5, weight_decay=0.1), id="rmsprop"),
]


def torch_optimizer(family: Family, params: list[torch.Tensor]) -> torch.optim.Optimizer:
    return family.torch_class(params, lr=0.05, foreach=False, **family.class_kwargs(family.hyper))


@pytest.mark.parametrize("family", CHECKPOINT_MODES)
def test_state_loads_into_torch_and_continues(family: Family) -> None:
    params, _ = make_params()
    states = family.states(params)
    for step in range(3):
        our_step(family, params, new_grads(params, step), states, 0.05, None)
    theirs = [p.clone().requires_grad_() for p in params]
    opt = torch_optimizer(family, theirs)
    checkpoint = opt.state_dict()
    checkpoint["state"] = dict(enumerate(clone(states)))
    opt.load_state_dict(checkpoint)
    for step in range(3, 5):
        grads = new_grads(params, step)
        our_step(family, params, grads, states, 0.05, None)
        for p, g in zip(theirs, grads, strict=True):
            p.grad = g
        opt.step()
    assert_same(params, [p.detach() for p in theirs])
    assert_same_states(states, [opt.state[p] for p in theirs])


@pytest.mark.parametrize("family", CHECKPOINT_MODES)
def test_torch_state_continues_here(family: Family) -> None:
    params, _ = make_params()
    theirs = [p.clone().requires_grad_() for p in params]
    opt = torch_optimizer(family, theirs)
    for step in range(3):
        for p, g in zip(theirs, new_grads(params, step), strict=True):
            p.grad = g
        opt.step()
    ours = [p.detach().clone() for p in theirs]
    states = clone([opt.state[p] for p in theirs])
    for p, s in zip(ours, states, strict=True):
        family.fill_state(p, s, family.hyper)  # moves torch's CPU step to the device
    for step in range(3, 5):
        grads = new_grads(params, step)
        our_step(family, ours, grads, states, 0.05, None)
        for p, g in zip(theirs, grads, strict=True):
            p.grad = g
        opt.step()
    assert_same(ours, [p.detach() for p in theirs])
    assert_same_states(states, [opt.state[p] for p in theirs])


# -- what the kernels accept, and bad input --------------------------------------------


def test_supports() -> None:
    p = torch.zeros(3, device=DEVICE)
    assert _triton.available()
    assert _triton.supports([p, torch.zeros(2, 2, device=DEVICE).t()])
    assert _triton.supports([p.to(torch.bfloat16), p.double(), p.half()])
    assert not _triton.supports([])
    assert not _triton.supports([torch.zeros(3, dtype=torch.int64, device=DEVICE)])
    assert not _triton.supports([torch.zeros(3, dtype=torch.complex64, device=DEVICE)])
    assert not _triton.supports([torch.zeros(4, 4, device=DEVICE)[:, ::2]])  # not dense
    assert not _triton.supports([torch.zeros(3, device="meta")])
    with_sparse_grad = torch.zeros(3, device=DEVICE, requires_grad=True)
    with_sparse_grad.grad = torch.zeros(3, device=DEVICE).to_sparse()
    assert not _triton.supports([with_sparse_grad])


def test_bad_input_changes_nothing() -> None:
    """A bad tensor in the second dtype group is found before the first group's launch."""
    family = adam()
    params, grads = make_params(shapes=[7])
    params += [params[0].double()]
    grads += [grads[0].double()]
    states = family.states(params)
    before, before_states = [p.clone() for p in params], clone(states)
    lists = _adam_lists(states, family.hyper)
    bad_steps = [*lists[3][:-1], torch.zeros(2, device=DEVICE)]
    with pytest.raises(ValueError, match=r"state_steps\[2\] must be a one-element"):
        _triton.adam_step(params, grads, lists[0], lists[1], [], bad_steps, lr=0.1, **family.hyper)
    bad_avgs = [*lists[1][:-1], torch.zeros(3, device=DEVICE, dtype=torch.float64)]
    with pytest.raises(ValueError, match=r"exp_avg_sqs\[2\] must be a tensor with the shape"):
        _triton.adam_step(params, grads, lists[0], bad_avgs, [], lists[3], lr=0.1, **family.hyper)
    with pytest.raises(ValueError, match=r"exp_avgs has 2 entries; expected one per parameter"):
        _triton.adam_step(
            params, grads, lists[0][:2], lists[1], [], lists[3], lr=0.1, **family.hyper
        )
    with pytest.raises(ValueError, match=r"grads\[1\] must be a dense tensor"):
        _triton.sgd_step(params, [grads[0], grads[2], grads[1]], [None] * 3, lr=0.1)
    with pytest.raises(ValueError, match=r"params: the Triton kernels need"):
        _triton.sgd_step([p.long() for p in params], grads, [None] * 3, lr=0.1)
    with pytest.raises(ValueError, match=r"lr must be a number or a one-element tensor"):
        _triton.sgd_step(params, grads, [None] * 3, lr=torch.ones(2, device=DEVICE))
    for p, b in zip(params, before, strict=True):
        assert torch.equal(p, b)
    assert_same_states(states, before_states, rtol=0, atol=0)


def test_importing_l2optim_does_not_import_triton() -> None:
    code = "import sys, l2optim, l2optim.optimizers._triton; assert 'triton' not in sys.modules, sorted(sys.modules)"
    subprocess.run([sys.executable, "-c", code], check=True)


# -- compiled for a GPU, without one ---------------------------------------------------

_COMPILE_FOR_H100 = """
import json, re, time
import triton, triton.language as tl
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource
from l2optim.optimizers._triton import _kernels, _tables

pointers = {"table": "*i64", "lr_ptr": "*fp32", "factor_ptr": "*fp32",
            "grad_scale_ptr": "*fp32", "found_inf_ptr": "*fp32", "addresses": "*i64"}
report = {}
for name, dtype, constants in [
    ("sgd_kernel", tl.float32, {"MOMENTUM": True, "NESTEROV": True, "MAXIMIZE": True, "ROW": 6}),
    ("adam_kernel", tl.float32, {"STEP": tl.float32, "AMSGRAD": True, "MAXIMIZE": False, "ROW": 8}),
    ("rmsprop_kernel", tl.float32, {"CENTERED": True, "MOMENTUM": True, "MAXIMIZE": False,
                                    "ROW": 7}),
    ("sgd_kernel", tl.bfloat16, {"MOMENTUM": True, "NESTEROV": False, "MAXIMIZE": False,
                                 "ROW": 6}),
]:
    kernel = getattr(_kernels, name)
    constants = {**constants, "DTYPE": dtype, "COMPUTE": tl.float32, "ALIGNED": True,
                 "BLOCK": _tables.BLOCK}
    signature = {a: "constexpr" if a in constants else pointers.get(a, "fp64")
                 for a in kernel.arg_names}
    start = time.perf_counter()
    compiled = triton.compile(
        ASTSource(kernel, signature, constexprs=constants,
                  attrs={(0,): [["tt.divisibility", 16]]}),
        target=GPUTarget("cuda", 90, 32),
        options={"num_warps": _tables.NUM_WARPS, "enable_fp_fusion": True},
    )
    ptx = compiled.asm["ptx"]
    report[f"{name} {dtype}"] = {
        "seconds": time.perf_counter() - start,
        "vector_loads": len(re.findall(r"ld\\.global[.a-z0-9]*\\.v4", ptx)),
        "approximate": len(re.findall(r"(div|sqrt|rcp)\\.(approx|full)", ptx)),
    }
print(json.dumps(report))
"""


def test_kernels_compile_for_an_h100_with_vector_loads_and_exact_division(tmp_path) -> None:
    """The compiled path (not the interpreter's): Triton builds each kernel for sm_90 with
    its own ptxas, no GPU needed. Aligned tensors get 16-byte loads; divisions and square
    roots round to nearest as torch's do."""
    pytest.importorskip("triton.backends.nvidia", reason="triton without its NVIDIA backend")
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env.update(TRITON_CACHE_DIR=str(tmp_path), PYTHONPATH=os.pathsep.join(sys.path))
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(_COMPILE_FOR_H100)],
        env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.splitlines()[-1])
    # 16-byte loads for each stream read: param, grad and the state tensors
    streams = {"sgd_kernel": 3, "adam_kernel": 5, "rmsprop_kernel": 5}
    for name, facts in report.items():
        assert facts["vector_loads"] >= streams[name.split()[0]], (name, facts)
        assert facts["approximate"] == 0, (name, facts)
    # seconds of compilation per kernel, shown with -s
    print({name: round(facts["seconds"], 2) for name, facts in report.items()})


# -- the optimizer classes with fused=True and the kernels switched on -------------------

CLASS_MODES = [
    ("SGD", {"momentum": 0.9, "nesterov": True}, False),
    ("SGDW", {"momentum": 0.9, "dampening": 0.2, "weight_decay_scaling": "schedule"}, True),
    ("Adam", {"amsgrad": True}, False),
    ("AdamW", {"maximize": True}, True),
    ("AdamW", {"weight_decay_scaling": "corrected"}, True),
    ("RMSprop", {"centered": True, "momentum": 0.5}, False),
    ("RMSpropW", {"momentum": 0.5, "weight_decay_scaling": "none"}, True),
]


def _class_run(
    name: str,
    hyper: dict,
    steps: int,
    skips: tuple[bool, ...] = (),
    decay_schedule: bool = False,
    **impl,
):
    """``steps`` steps under a schedule (of λ too with ``decay_schedule``); the steps
    ``skips`` marks overflow under GradScaler."""
    import l2optim

    generator = torch.Generator().manual_seed(0)
    params = [
        torch.nn.Parameter(torch.randn(shape, generator=generator).to(DEVICE))
        for shape in [(5, 7), (33,), (1,)]
    ]
    optimizer = getattr(l2optim, name)(params, lr=0.01, weight_decay=0.1, **hyper, **impl)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, 1, 0.7)
    if decay_schedule:
        scheduler = torch.optim.lr_scheduler.ChainedScheduler(
            [scheduler, l2optim.CosineWeightDecay(optimizer, 0.4, total_steps=3)]
        )
    scaler = torch.amp.GradScaler(DEVICE, init_scale=2.0**8) if skips else None
    if scaler is not None:
        scaler.scale(torch.zeros((), device=DEVICE))
    good = 0
    for skip in skips or (False,) * steps:
        grads = new_grads(params, seed=good)
        scale = scaler.get_scale() if scaler is not None else 1.0
        for p, g in zip(params, grads, strict=True):
            p.grad = g * scale
        if skip:
            params[0].grad.view(-1)[0] = float("inf")
        if scaler is None:
            optimizer.step()
        else:
            scaler.step(optimizer)
            scaler.update()
        if not skip:
            scheduler.step()
            good += 1
    return params, optimizer


@pytest.mark.parametrize(("name", "hyper", "decoupled"), CLASS_MODES, ids=lambda v: str(v))
def test_fused_classes_run_the_kernel_when_switched_on(name, hyper, decoupled, monkeypatch):
    monkeypatch.setenv("L2OPTIM_TRITON_KERNELS", "1")
    before = sum(_tables.launches.values())
    ours, optimizer = _class_run(name, hyper, 3, fused=True)
    assert sum(_tables.launches.values()) > before
    monkeypatch.delenv("L2OPTIM_TRITON_KERNELS")
    reference, ref_optimizer = _class_run(name, hyper, 3, foreach=False)
    assert_same(ours, reference, rtol=1e-5, atol=1e-6)
    for p, r in zip(ours, reference, strict=True):
        assert optimizer.state[p].keys() == ref_optimizer.state[r].keys()


@pytest.mark.parametrize(("name", "hyper", "decoupled"), CLASS_MODES[1::2], ids=lambda v: str(v))
def test_kernel_classes_follow_a_weight_decay_schedule(name, hyper, decoupled, monkeypatch):
    monkeypatch.setenv("L2OPTIM_TRITON_KERNELS", "1")
    before = sum(_tables.launches.values())
    ours, _ = _class_run(name, hyper, 4, decay_schedule=True, fused=True)
    assert sum(_tables.launches.values()) > before
    monkeypatch.delenv("L2OPTIM_TRITON_KERNELS")
    reference, _ = _class_run(name, hyper, 4, decay_schedule=True, foreach=False)
    unscheduled, _ = _class_run(name, hyper, 4, foreach=False)
    assert_same(ours, reference, rtol=1e-5, atol=1e-6)
    assert not torch.allclose(reference[0], unscheduled[0], rtol=1e-4, atol=0)


@pytest.mark.parametrize(("name", "hyper", "decoupled"), CLASS_MODES[::2], ids=lambda v: str(v))
def test_kernel_classes_skip_overflowed_first_steps(name, hyper, decoupled, monkeypatch):
    """GradScaler hands the kernel its flag; skipped first steps leave no trace."""
    monkeypatch.setenv("L2OPTIM_TRITON_KERNELS", "1")
    pattern = (True, True, False, True, False, False)
    ours, _ = _class_run(name, hyper, 0, skips=pattern, fused=True)
    monkeypatch.delenv("L2OPTIM_TRITON_KERNELS")
    reference, _ = _class_run(name, hyper, pattern.count(False), foreach=False)
    assert_same(ours, reference, rtol=1e-5, atol=1e-6)


def test_the_kernels_are_off_by_default(monkeypatch):
    monkeypatch.delenv("L2OPTIM_TRITON_KERNELS", raising=False)
    before = sum(_tables.launches.values())
    _class_run("Adam", {}, 2, fused=True)
    assert sum(_tables.launches.values()) == before


@pytest.mark.parametrize("rule", ["cautious", "reference"])
def test_rules_the_kernels_lack_are_refused_by_name(rule, monkeypatch):
    """Cautious decay and decay towards a reference have no kernel: an error, not another rule."""
    import l2optim

    monkeypatch.setenv("L2OPTIM_TRITON_KERNELS", "1")
    params = [torch.nn.Parameter(torch.randn(5, 7).to(DEVICE))]
    optimizer = l2optim.AdamW(
        params, lr=0.01, weight_decay=0.1, fused=True, cautious_weight_decay=rule == "cautious"
    )
    if rule == "reference":
        optimizer.decay_towards()
    params[0].grad = torch.ones_like(params[0])
    before = params[0].detach().clone()
    with pytest.raises(ValueError, match="with fused=True: this update runs in one pass"):
        optimizer.step()
    assert torch.equal(params[0], before)
