"""Corrected decay, ``weight_decay_scaling="corrected"``: s_t = lr_t² / lr_ref.

The rule is docs/conventions.md's ("The update rules"). Two oracles: at a constant lr it
is the ``"lr"`` scaling with λ·lr/lr_ref, and with zero gradients (every base update then
a no-op) a weight ends at p₀·∏(1 − λ·lr_t²/lr_ref) under any schedule. The paths a step
can take (loop, foreach, torch's fused kernels, the compiled one-pass update) run each;
the compiled ``opt.step``, the Triton kernels and the stacked training of the λ race have
a "corrected" case in their own test modules.
"""

from __future__ import annotations

import pytest
import torch
from _paths import IMPLEMENTATIONS, cases, small_params

import l2optim
from l2optim import conversions

AdagradW = l2optim.with_weight_decay(torch.optim.Adagrad)

# (class, hyperparameters, implementations it takes): every family and with_weight_decay.
CLASSES = [
    (l2optim.SGDW, {"momentum": 0.9}, ["loop", "foreach", "fused"]),
    (l2optim.SGDW, {}, ["loop", "foreach", "fused"]),
    (l2optim.AdamW, {}, ["loop", "foreach", "fused"]),
    (l2optim.AdamW, {"amsgrad": True}, ["loop", "foreach"]),
    (l2optim.RMSpropW, {"momentum": 0.5}, ["loop", "foreach", "fused"]),
    (AdagradW, {}, ["loop", "foreach"]),
]
CASES = cases(CLASSES)

# Powers of two: s·λ is the same number under both scalings, so the runs are bit-equal.
LR, LR_REF, LAMBDA = 2.0**-4, 2.0**-2, 2.0**-3


def _params() -> list[torch.nn.Parameter]:
    return small_params(shapes=((6, 5), (5,), (3, 2, 2)))


def _run(cls, hyper, implementation, *, scaling, weight_decay, lr_ref=LR_REF, grads="random",
         schedule=False, steps=6):
    params = _params()
    optimizer = cls(
        params,
        lr=LR,
        weight_decay=weight_decay,
        decoupled_weight_decay=True,
        weight_decay_scaling=scaling,
        **hyper,
        **IMPLEMENTATIONS[implementation],
    )
    for group in optimizer.param_groups:
        group["lr_ref"] = lr_ref
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, 1, 0.5) if schedule else None
    generator = torch.Generator().manual_seed(1)
    for _ in range(steps):
        for p in params:
            p.grad = (
                torch.randn(p.shape, generator=generator)
                if grads == "random"
                else torch.zeros_like(p)
            )
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
    return params


@pytest.mark.parametrize(("cls", "hyper", "implementation"), CASES)
def test_at_a_constant_lr_it_is_the_lr_scaling_with_lambda_times_lr_over_lr_ref(
    cls, hyper, implementation
):
    corrected = _run(cls, hyper, implementation, scaling="corrected", weight_decay=LAMBDA)
    as_lr = _run(cls, hyper, implementation, scaling="lr", weight_decay=LAMBDA * LR / LR_REF)
    plain = _run(cls, hyper, implementation, scaling="lr", weight_decay=0.0)
    for a, b, c in zip(corrected, as_lr, plain, strict=True):
        assert torch.equal(a, b)
        assert not torch.equal(a, c)  # the decay did something


@pytest.mark.parametrize(("cls", "hyper", "implementation"), CASES)
def test_under_a_schedule_each_step_decays_by_lr_squared_over_lr_ref(cls, hyper, implementation):
    steps = 6
    ours = _run(
        cls, hyper, implementation, scaling="corrected", weight_decay=LAMBDA, grads="zero",
        schedule=True, steps=steps,
    )
    # StepLR halves the lr after every step.
    factor = 1.0
    for t in range(steps):
        lr = LR * 0.5**t
        factor *= 1 - LAMBDA * lr * lr / LR_REF
    for p, p0 in zip(ours, _params(), strict=True):
        torch.testing.assert_close(p.detach(), p0.detach() * factor, rtol=1e-6, atol=0)


def test_it_needs_the_decoupled_form_and_a_usable_lr_ref():
    with pytest.raises(ValueError, match="weight_decay_scaling='corrected' needs decoupled"):
        l2optim.SGD(_params(), lr=0.1, weight_decay=0.1, weight_decay_scaling="corrected")
    params = _params()
    optimizer = l2optim.AdamW(params, lr=0.1, weight_decay_scaling="corrected")
    optimizer.param_groups[0]["lr_ref"] = 0.0
    for p in params:
        p.grad = torch.ones_like(p)
    before = [p.detach().clone() for p in params]
    with pytest.raises(ValueError, match=r"Invalid lr_ref in param group 0 value: 0\.0"):
        optimizer.step()
    assert all(torch.equal(p, b) for p, b in zip(params, before, strict=True))


def test_torch_state_gives_todays_equivalent_only_when_asked():
    optimizer = l2optim.AdamW(_params(), lr=LR, weight_decay=LAMBDA, weight_decay_scaling="corrected")
    optimizer.param_groups[0]["lr_ref"] = LR_REF
    with pytest.raises(ValueError, match="param group 0: no exact torch.optim equivalent"):
        l2optim.to_torch_state_dict(optimizer)
    state = l2optim.to_torch_state_dict(optimizer, approximate=True)
    assert state["param_groups"][0]["weight_decay"] == LAMBDA * LR / LR_REF


def test_conversions_read_lr_and_lr_ref():
    # s = lr²/lr_ref: λ_c = λ·lr·(1 − μ)/(lr_ref·(1 − d)).
    coupled = conversions.coupled_from_decoupled(
        LAMBDA, lr=LR, lr_ref=LR_REF, momentum=0.5, weight_decay_scaling="corrected"
    )
    assert coupled == pytest.approx(LAMBDA * LR * 0.5 / LR_REF, rel=1e-15)
    with pytest.raises(TypeError, match="lr is needed with weight_decay_scaling='corrected'"):
        conversions.coupled_from_decoupled(LAMBDA, lr_ref=LR_REF, weight_decay_scaling="corrected")
