"""``with_weight_decay``: both forms for optimizers l2optim does not define.

Coupled decay must equal the base class's own (coupled L2) ``weight_decay``; decoupled
decay must equal the rule of docs/conventions.md ("The update rules") written out around
the base update with λ = 0.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch
from _configs import NO_GRAD, gradient, initial_params, lr_factor, run
from torch import nn

import l2optim


class SignDescent(torch.optim.Optimizer):
    """p ← p − lr·sign(g): a small optimizer with no weight_decay of its own."""

    def __init__(self, params: Any, lr: float = 0.01) -> None:
        super().__init__(params, {"lr": lr})

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    p.add_(p.grad.sign(), alpha=-group["lr"])


TORCH_BASES = {
    "Adagrad": (torch.optim.Adagrad, {"lr": 0.1}),
    "Adamax": (torch.optim.Adamax, {"lr": 0.01}),
    "NAdam": (torch.optim.NAdam, {"lr": 0.01}),
}
BASES = {**TORCH_BASES, "SignDescent": (SignDescent, {"lr": 0.01})}


def _groups(params: list[nn.Parameter], weight_decay: float) -> list[dict[str, Any]]:
    return [
        {"params": params[:1], "weight_decay": weight_decay},
        {"params": params[1:], "weight_decay": 2 * weight_decay},
    ]


@pytest.mark.parametrize(
    "options", [{"foreach": False}, {"foreach": True}, {"maximize": True}], ids=str
)
@pytest.mark.parametrize("name", TORCH_BASES)
def test_coupled_is_the_base_classs_own_decay(name: str, options: dict[str, Any]) -> None:
    base, hyper = TORCH_BASES[name]
    wrapped = l2optim.with_weight_decay(base)
    params0 = initial_params(torch.float64)
    ours, _ = run(lambda p: wrapped(_groups(p, 0.1), **hyper, **options), params0)
    theirs, _ = run(lambda p: base(_groups(p, 0.1), **hyper, **options), params0)
    for a, b in zip(ours, theirs, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-14)
    assert not torch.equal(ours[0], run(lambda p: base(p, **hyper), params0)[0][0])


def _reference_decoupled(base: type, hyper: dict[str, Any], scaling: str, weight_decay: float):
    """The base with λ = 0, and p ← p·(1 − s_t·λ) on parameters with a gradient before each step."""
    params = [nn.Parameter(p) for p in initial_params(torch.float64)]
    optimizer = base(_groups(params, 0.0), **hyper)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, 2, 0.5)
    decays = [weight_decay, 2 * weight_decay, 2 * weight_decay]
    for step in range(4):
        lr = hyper["lr"] * lr_factor(step)
        s = {"lr": lr, "schedule": lr_factor(step), "none": 1.0}[scaling]
        for i, p in enumerate(params):
            p.grad = None if i == NO_GRAD else gradient(p.detach(), step, i)
        with torch.no_grad():
            for i, p in enumerate(params):
                if i != NO_GRAD:
                    p.mul_(1 - s * decays[i])
        optimizer.step()
        scheduler.step()
    return params


@pytest.mark.parametrize("scaling", ["lr", "schedule", "none"])
@pytest.mark.parametrize("name", BASES)
def test_decoupled_is_the_reference_rule(name: str, scaling: str) -> None:
    base, hyper = BASES[name]
    weight_decay = 0.05 / hyper["lr"] if scaling == "lr" else 0.05
    wrapped = l2optim.with_weight_decay(base)
    params0 = initial_params(torch.float64)
    ours, _ = run(
        lambda p: wrapped(
            _groups(p, weight_decay),
            **hyper,
            decoupled_weight_decay=True,
            weight_decay_scaling=scaling,
        ),
        params0,
        schedule=True,
    )
    expected = _reference_decoupled(base, hyper, scaling, weight_decay)
    for a, b in zip(ours, expected, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-14)
    assert torch.equal(ours[NO_GRAD].detach(), params0[NO_GRAD])


def test_decoupled_nadam_is_torchs_decoupled_nadam() -> None:
    wrapped = l2optim.with_weight_decay(torch.optim.NAdam)
    params0 = initial_params(torch.float64)
    ours, _ = run(
        lambda p: wrapped(p, lr=0.01, weight_decay=2.0, decoupled_weight_decay=True), params0
    )
    theirs, _ = run(
        lambda p: torch.optim.NAdam(p, lr=0.01, weight_decay=2.0, decoupled_weight_decay=True),
        params0,
    )
    for a, b in zip(ours, theirs, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("decoupled", [False, True])
def test_small_optimizer_gets_both_forms(decoupled: bool) -> None:
    lr, weight_decay = 0.01, 1.0
    SignDescentW = l2optim.with_weight_decay(SignDescent)
    params0 = initial_params(torch.float64)
    ours, _ = run(
        lambda p: SignDescentW(
            p, lr=lr, weight_decay=weight_decay, decoupled_weight_decay=decoupled
        ),
        params0,
    )
    expected = [p.clone() for p in params0]
    for step in range(4):
        for i, p in enumerate(expected):
            if i == NO_GRAD:
                continue
            g = gradient(p, step, i)
            if decoupled:
                expected[i] = p * (1 - lr * weight_decay) - lr * g.sign()
            else:
                expected[i] = p - lr * (g + weight_decay * p).sign()
    for a, b in zip(ours, expected, strict=True):
        torch.testing.assert_close(a.detach(), b, rtol=1e-12, atol=1e-14)


def test_wrapped_class_is_a_subclass_with_our_settings() -> None:
    AdagradW = l2optim.with_weight_decay(torch.optim.Adagrad)
    optimizer = AdagradW(
        [nn.Parameter(torch.zeros(2))], weight_decay=0.1, decoupled_weight_decay=True
    )
    assert isinstance(optimizer, torch.optim.Adagrad)
    assert AdagradW.__name__ == "Adagrad"
    group = optimizer.state_dict()["param_groups"][0]
    assert group["decoupled_weight_decay"] is True and group["weight_decay_scaling"] == "lr"


@pytest.mark.parametrize("not_an_optimizer", [int, torch.optim.LBFGS, "SGD"], ids=str)
def test_refuses_what_it_cannot_wrap(not_an_optimizer: Any) -> None:
    with pytest.raises(TypeError):
        l2optim.with_weight_decay(not_an_optimizer)


@pytest.mark.parametrize("weight_decay", [-1.0, float("nan")])
@pytest.mark.parametrize("name", BASES)
def test_bad_decay_is_refused(name: str, weight_decay: float) -> None:
    base, hyper = BASES[name]
    with pytest.raises(ValueError, match="weight_decay"):
        l2optim.with_weight_decay(base)(
            [nn.Parameter(torch.zeros(2))],
            **hyper,
            weight_decay=weight_decay,
            decoupled_weight_decay=True,
        )
    with pytest.raises(ValueError, match="weight_decay_scaling"):
        l2optim.with_weight_decay(base)(
            [nn.Parameter(torch.zeros(2))], **hyper, weight_decay=0.1, weight_decay_scaling="none"
        )
