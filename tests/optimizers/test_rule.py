"""The decay rule on lists of tensors (l2optim.optimizers._rule), against plain arithmetic."""

from __future__ import annotations

import math

import pytest
import torch
from _profiles import examples
from hypothesis import given, settings
from hypothesis import strategies as st

from l2optim.optimizers import _rule

finite = st.floats(-10, 10, allow_nan=False, width=64)
values = st.lists(finite, min_size=1, max_size=6)
weight_decays = st.floats(0, 10, allow_nan=False)
learning_rates = st.floats(1e-6, 1.0)


def _tensors(xs: list[float], dtype: torch.dtype = torch.float64) -> list[torch.Tensor]:
    """One tensor per value and a longer one, so that lists hold several shapes."""
    return [torch.tensor([x], dtype=dtype) for x in xs] + [torch.tensor(xs, dtype=dtype)]


@settings(max_examples=examples(50))
@given(xs=values, factor=st.floats(0.0, 1.0), foreach=st.booleans())
def test_shrink_multiplies_every_tensor(xs: list[float], factor: float, foreach: bool) -> None:
    params = _tensors(xs)
    expected = [p * factor for p in params]
    _rule.shrink(params, factor, foreach=foreach)
    for p, e in zip(params, expected, strict=True):
        assert torch.equal(p, e)


@pytest.mark.parametrize("foreach", [False, True])
def test_shrink_groups_mixed_dtypes(foreach: bool) -> None:
    params = [torch.ones(2, dtype=torch.float32), torch.ones(3, dtype=torch.float64)]
    _rule.shrink(params, torch.tensor(0.5, dtype=torch.float64), foreach=foreach)
    assert [p.dtype for p in params] == [torch.float32, torch.float64]
    assert all(torch.equal(p, torch.full_like(p, 0.5)) for p in params)


@settings(max_examples=examples(50))
@given(xs=values, factor=st.floats(0.0, 1.0), foreach=st.booleans())
def test_shrink_by_a_number_keeps_each_dtype(xs: list[float], factor: float, foreach: bool):
    """A number multiplies a list of mixed dtypes in one call, as it does each dtype's."""
    dtypes = (torch.float32, torch.float64, torch.bfloat16, torch.float16)
    params = [t for dtype in dtypes for t in _tensors(xs, dtype)]
    expected = []
    for dtype in dtypes:
        alone = _tensors(xs, dtype)  # one dtype: torch's own call
        if foreach:
            torch._foreach_mul_(alone, factor)
        else:
            alone = [p * factor for p in alone]
        expected += alone
    _rule.shrink(params, factor, foreach=foreach)
    for p, e in zip(params, expected, strict=True):
        assert p.dtype == e.dtype and torch.equal(p, e)


@pytest.mark.parametrize("shape", [(), (1,)], ids=str)
@pytest.mark.parametrize("foreach", [False, True])
@pytest.mark.parametrize("overflow, expected", [(1.0, 1.0), (0.0, 0.75)])
def test_shrink_obeys_found_inf(
    foreach: bool, overflow: float, expected: float, shape: tuple[int, ...]
) -> None:
    """GradScaler's flag makes the decay a no-op, bit for bit, without a host sync."""
    params = _tensors([1.0, -3.0, 1e-30])
    before = [p.clone() for p in params]
    found_inf = torch.full(shape, overflow)
    _rule.shrink(params, 0.75, found_inf=found_inf, foreach=foreach)
    for p, b in zip(params, before, strict=True):
        assert torch.equal(p, b * expected)


def test_shrink_of_nothing_is_nothing() -> None:
    _rule.shrink([], 0.5)


@settings(max_examples=examples(50))
@given(
    gs=values,
    weight_decay=weight_decays,
    maximize=st.booleans(),
    foreach=st.booleans(),
    scale=st.sampled_from([None, 1.0, 2.0**16]),
)
def test_coupled_decay_adds_the_penalty_gradient(
    gs: list[float], weight_decay: float, maximize: bool, foreach: bool, scale: float | None
) -> None:
    grads = _tensors(gs)
    params = [torch.linspace(-1, 1, g.numel(), dtype=torch.float64) for g in grads]
    grads_before = [g.clone() for g in grads]
    grad_scale = None if scale is None else torch.tensor(scale, dtype=torch.float64)
    new = _rule.add_coupled_decay(
        grads, params, weight_decay, maximize=maximize, grad_scale=grad_scale, foreach=foreach
    )
    # maximize ascends −g: the penalty enters with the opposite sign and still pulls to 0.
    sign = -1 if maximize else 1
    for n, g, p in zip(new, grads_before, params, strict=True):
        torch.testing.assert_close(n, g + sign * (scale or 1.0) * weight_decay * p)
    for g, b in zip(grads, grads_before, strict=True):
        assert torch.equal(g, b)


def test_coupled_decay_keeps_positions_across_dtypes() -> None:
    grads = [
        torch.zeros(1, dtype=torch.float32),
        torch.zeros(1, dtype=torch.float64),
        torch.zeros(1),
    ]
    params = [torch.tensor([1.0]), torch.tensor([2.0], dtype=torch.float64), torch.tensor([3.0])]
    new = _rule.add_coupled_decay(grads, params, 0.5)
    assert [float(g) for g in new] == [0.5, 1.0, 1.5]
    assert [g.dtype for g in new] == [torch.float32, torch.float64, torch.float32]


@given(lr=learning_rates, lr_ref=learning_rates, weight_decay=weight_decays)
def test_scales_and_factor(lr: float, lr_ref: float, weight_decay: float) -> None:
    assert _rule.decay_scale("lr", lr, lr_ref) == lr
    assert _rule.decay_scale("schedule", lr, lr_ref) == lr / lr_ref
    assert _rule.decay_scale("none", lr, lr_ref) == 1.0
    assert _rule.decoupled_factor(lr, weight_decay) == 1 - lr * weight_decay


@pytest.mark.parametrize("lr_ref", [None, 0.0, -1.0, float("inf"), float("nan")], ids=str)
def test_schedule_scaling_needs_a_reference_lr(lr_ref: float | None) -> None:
    with pytest.raises(ValueError, match=r"Invalid lr_ref value: .* \(must be a finite number > 0\)"):
        _rule.decay_scale("schedule", 0.1, lr_ref)


@pytest.mark.parametrize("weight_decay", [0, 0.0, 1e-4, 3, torch.tensor(0.1)], ids=str)
def test_valid_weight_decay_passes(weight_decay: float) -> None:
    _rule.check_weight_decay("weight_decay", weight_decay)


@pytest.mark.parametrize(
    "weight_decay", [-1e-9, math.nan, math.inf, -math.inf, torch.tensor(-0.1)], ids=str
)
def test_invalid_weight_decay_is_named(weight_decay: object) -> None:
    with pytest.raises(ValueError, match=r"Invalid weight_decay in group 3 value.*>= 0"):
        _rule.check_weight_decay("weight_decay in group 3", weight_decay)


@pytest.mark.parametrize("weight_decay", ["0.1", None, True, [0.1]], ids=str)
def test_weight_decay_of_the_wrong_type_is_a_type_error(weight_decay: object) -> None:
    with pytest.raises(TypeError, match=r"weight_decay in group 3 must be a real number"):
        _rule.check_weight_decay("weight_decay in group 3", weight_decay)


def test_scaling_values() -> None:
    for scaling in _rule.WEIGHT_DECAY_SCALINGS:
        _rule.check_weight_decay_scaling(scaling, decoupled=True)
    _rule.check_weight_decay_scaling("lr", decoupled=False)
    with pytest.raises(ValueError, match="allowed values are 'lr', 'schedule', 'corrected', 'none'"):
        _rule.check_weight_decay_scaling("step", decoupled=True)
    with pytest.raises(ValueError, match="needs decoupled_weight_decay=True"):
        _rule.check_weight_decay_scaling("none", decoupled=False)
