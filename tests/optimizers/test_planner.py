"""The step planner, a pure function: plain param-group dicts and the families' records in,
the plan of one step out."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch

from l2optim.optimizers import _adam, _rmsprop, _sgd
from l2optim.optimizers._implementation import GroupTensors
from l2optim.optimizers._planner import BaseRecord, default_implementation, plan_group

SMALL = GroupTensors(fused_by_default=False, plain=True, foreach_by_default=True)
LARGE = GroupTensors(fused_by_default=True, plain=True, foreach_by_default=False)
WRAPPED = GroupTensors(fused_by_default=False, plain=False, foreach_by_default=False)
ANY_OTHER = BaseRecord()  # with_weight_decay's base: its weight_decay is shown 0


@dataclass
class Facts:
    tensors: GroupTensors = SMALL
    state_on_param_device: bool = True
    triton_kernel_runs: bool = False
    compiling: bool = False


def group(**entries) -> dict:
    defaults = {
        "params": [], "lr": 0.1, "weight_decay": 0.01, "momentum": 0.0, "dampening": 0.0,
        "nesterov": False, "betas": (0.9, 0.999), "foreach": None, "fused": None,
        "differentiable": False, "decoupled_weight_decay": False,
        "weight_decay_scaling": "lr", "lr_ref": 0.1,
    }
    return {**defaults, **entries}


def test_coupled_decay_stays_in_a_base_whose_decay_is_coupled():
    plan = plan_group(0, group(), _sgd.BASE, Facts())
    assert plan.coupled is None and plan.factor is None and not plan.own_update
    assert plan.base_view == {"foreach": True} and not plan.reads_lr


def test_a_base_whose_decay_means_something_else_is_shown_zero_and_decayed_here():
    plan = plan_group(0, group(), ANY_OTHER, Facts())
    assert plan.coupled == 0.01 and plan.base_view == {"weight_decay": 0.0}
    plan = plan_group(0, group(decoupled_weight_decay=True), ANY_OTHER, Facts())
    assert plan.factor == pytest.approx(1 - 0.1 * 0.01) and plan.base_view == {"weight_decay": 0.0}


@pytest.mark.parametrize(
    ("scaling", "expected"), [("lr", 0.01), ("schedule", 0.01 / 0.05), ("none", 0.01 / 0.1)]
)
def test_decoupled_sgd_without_momentum_is_coupled_sgd_at_lambda_s_over_lr(scaling, expected):
    entries = group(decoupled_weight_decay=True, weight_decay_scaling=scaling, lr_ref=0.05)
    plan = plan_group(0, entries, _sgd.BASE, Facts())
    assert plan.factor is None and plan.base_view["weight_decay"] == pytest.approx(expected)


def test_decoupled_sgd_with_momentum_shrinks_here_and_shows_the_base_zero():
    entries = group(decoupled_weight_decay=True, momentum=0.9)
    plan = plan_group(0, entries, _sgd.BASE, Facts())
    assert plan.factor == pytest.approx(1 - 0.1 * 0.01) and plan.scale == 0.1
    assert plan.base_view == {"foreach": True, "weight_decay": 0.0} and plan.decay_foreach


def test_decoupled_adam_runs_in_torchs_kernels_with_lambda_s_over_lr():
    entries = group(decoupled_weight_decay=True, weight_decay_scaling="none")
    plan = plan_group(0, entries, _adam.BASE, Facts())
    assert plan.factor is None and plan.base_view["weight_decay"] == pytest.approx(0.01 / 0.1)


def test_decoupled_rmsprop_shrinks_here():
    plan = plan_group(0, group(decoupled_weight_decay=True), _rmsprop.BASE, Facts())
    assert plan.factor == pytest.approx(0.999) and plan.base_view["weight_decay"] == 0.0


def test_no_decay_plans_nothing_around_the_base():
    plan = plan_group(0, group(weight_decay=0, decoupled_weight_decay=True), _sgd.BASE, Facts())
    assert (plan.coupled, plan.factor, plan.base_view, plan.reads_lr) == (
        None, None, {"foreach": True}, False
    )


def test_a_sign_flipping_decay_is_refused_with_its_numbers():
    entries = group(decoupled_weight_decay=True, momentum=0.9, weight_decay=20.0)
    with pytest.raises(ValueError, match=r"in param group 3 .* = -1 <= 0 with s = lr = 0\.1"):
        plan_group(3, entries, _sgd.BASE, Facts())


@pytest.mark.parametrize(
    ("base", "entries", "own"),
    [
        (_rmsprop.BASE, {}, True),  # torch has no fused RMSprop
        (_sgd.BASE, {"decoupled_weight_decay": True, "momentum": 0.9}, True),
        (_sgd.BASE, {"momentum": 0.9}, False),  # torch's fused SGD does coupled decay
        (_adam.BASE, {"decoupled_weight_decay": True}, False),  # torch's fused AdamW
    ],
)
def test_fused_true_runs_a_one_pass_update_where_torch_has_no_kernel(base, entries, own):
    plan = plan_group(0, group(fused=True, **entries), base, Facts())
    assert plan.own_update is own
    assert plan_group(0, group(fused=True, **entries), base, Facts(triton_kernel_runs=True)).own_update


@pytest.mark.parametrize(
    ("base", "entries", "facts", "expected"),
    [
        (_sgd.BASE, {}, Facts(tensors=LARGE), {"fused": True}),
        (_sgd.BASE, {}, Facts(), {"foreach": True}),
        (_sgd.BASE, {"nesterov": True, "momentum": 0.9}, Facts(), {}),  # foreach differs
        (_adam.BASE, {}, Facts(tensors=LARGE), {"fused": True}),
        (_adam.BASE, {}, Facts(tensors=LARGE, state_on_param_device=False), {}),
        (_adam.BASE, {"lr": torch.tensor(0.1)}, Facts(), {}),  # foreach refuses a tensor lr
        (_rmsprop.BASE, {}, Facts(tensors=LARGE), {}),  # no fused kernel in torch
        (_sgd.BASE, {"foreach": False}, Facts(tensors=LARGE), {}),  # the user chose
        (_sgd.BASE, {}, Facts(tensors=LARGE, compiling=True), {}),  # traced: torch's default
        (ANY_OTHER, {}, Facts(tensors=LARGE), {}),
    ],
)
def test_the_default_implementation(base, entries, facts, expected):
    assert default_implementation(group(**entries), base, facts) == expected


@pytest.mark.parametrize(
    ("entries", "facts", "foreach"),
    [
        ({}, Facts(), True),
        ({"foreach": False}, Facts(), False),
        ({}, Facts(tensors=WRAPPED), False),  # a DTensor, say
        ({}, Facts(compiling=True), False),
        ({"differentiable": True}, Facts(), False),
    ],
)
def test_the_decay_applied_here_runs_on_foreach_kernels_where_it_can(entries, facts, foreach):
    entries = group(decoupled_weight_decay=True, momentum=0.9, **entries)
    assert plan_group(0, entries, _sgd.BASE, facts).decay_foreach is foreach


def test_a_fused_sgd_step_that_creates_buffers_reads_the_overflow_flag_on_the_host():
    p = torch.nn.Parameter(torch.zeros(2))
    p.grad = torch.ones(2)
    entries = group(params=[p], momentum=0.9)
    assert _sgd.BASE.overflow_read_on_host(entries, {"fused": True}, {})
    assert not _sgd.BASE.overflow_read_on_host(entries, {"fused": True}, {p: {"momentum_buffer": p}})
    assert not _sgd.BASE.overflow_read_on_host(entries, {}, {})
