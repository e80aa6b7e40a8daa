"""Mixed precision: torch.amp.GradScaler on CPU with every mode and implementation.

A step that GradScaler skips for an inf/NaN gradient must leave every parameter and
every piece of optimizer state as it was; on the fused path the optimizer is called
with ``grad_scale``/``found_inf`` and has to skip by itself, decay included.
"""

from __future__ import annotations

import copy

import pytest
import torch
from _configs import IMPLEMENTATIONS, tensors_equal
from torch import nn

import l2optim

# Adagrad through with_weight_decay: a fused base whose decay l2optim applies itself,
# so the decay has to honour grad_scale and found_inf on its own.
CLASSES = {
    "SGD": l2optim.SGD,
    "Adam": l2optim.Adam,
    "RMSprop": l2optim.RMSprop,
    "Adagrad": l2optim.with_weight_decay(torch.optim.Adagrad),
}
HYPER = {
    "SGD": {"lr": 0.1, "momentum": 0.9},
    "Adam": {"lr": 0.01},
    "RMSprop": {"lr": 0.01},
    "Adagrad": {"lr": 0.1},
}
MODES = [(name, decoupled) for name in CLASSES for decoupled in (False, True)]
SCALE = 2.0**10  # a power of two: scaling and unscaling are exact


def _model(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 2))


def _optimizer(model: nn.Module, name: str, decoupled: bool, implementation: str):
    return CLASSES[name](
        model.parameters(),
        weight_decay=0.1,
        decoupled_weight_decay=decoupled,
        **HYPER[name],
        **IMPLEMENTATIONS[implementation],
    )


def _data(seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(16, 4, generator=generator), torch.randn(16, 2, generator=generator)


def _scaled_step(model, optimizer, scaler, x, y, autocast_dtype=None, spoil=None) -> None:
    optimizer.zero_grad()
    with torch.autocast("cpu", dtype=autocast_dtype, enabled=autocast_dtype is not None):
        loss = nn.functional.mse_loss(model(x).float(), y)
    scaler.scale(loss).backward()
    if spoil is not None:
        # One bad element in one gradient is enough for GradScaler to skip the step.
        next(model.parameters()).grad.view(-1)[0] = spoil
    scaler.step(optimizer)
    scaler.update()


@pytest.mark.parametrize("bad", [float("inf"), float("nan")], ids=["inf", "nan"])
@pytest.mark.parametrize("implementation", ["single", "foreach", "fused"])
@pytest.mark.parametrize("name, decoupled", MODES, ids=lambda v: str(v))
def test_skipped_step_changes_nothing(
    name: str, decoupled: bool, implementation: str, bad: float
) -> None:
    model = _model()
    optimizer = _optimizer(model, name, decoupled, implementation)
    if implementation == "fused":
        # GradScaler then calls the step with grad_scale/found_inf instead of skipping it.
        assert optimizer._step_supports_amp_scaling
    scaler = torch.amp.GradScaler("cpu", init_scale=SCALE)
    x, y = _data()
    _scaled_step(model, optimizer, scaler, x, y)  # state exists from here on

    params_before = [p.detach().clone() for p in model.parameters()]
    state_before = copy.deepcopy(optimizer.state_dict())
    _scaled_step(model, optimizer, scaler, x, y, spoil=bad)

    assert scaler.get_scale() == SCALE / 2, "GradScaler did not see the bad gradient"
    for before, p in zip(params_before, model.parameters(), strict=True):
        assert torch.equal(before, p.detach())
    assert tensors_equal(optimizer.state_dict(), state_before)


@pytest.mark.parametrize("name, decoupled", MODES, ids=lambda v: str(v))
def test_skipped_step_under_autocast(name: str, decoupled: bool) -> None:
    """bf16 autocast on float32 parameters; a NaN in the batch makes every gradient NaN."""
    model = _model()
    optimizer = _optimizer(model, name, decoupled, "default")
    scaler = torch.amp.GradScaler("cpu", init_scale=SCALE)
    x, y = _data()
    _scaled_step(model, optimizer, scaler, x, y, autocast_dtype=torch.bfloat16)
    params_before = [p.detach().clone() for p in model.parameters()]
    state_before = copy.deepcopy(optimizer.state_dict())

    x_bad = x.clone()
    x_bad[0, 0] = float("nan")
    _scaled_step(model, optimizer, scaler, x_bad, y, autocast_dtype=torch.bfloat16)

    assert scaler.get_scale() == SCALE / 2
    for before, p in zip(params_before, model.parameters(), strict=True):
        assert p.dtype == torch.float32 and torch.equal(before, p.detach())
    assert tensors_equal(optimizer.state_dict(), state_before)


@pytest.mark.parametrize("implementation", ["single", "foreach", "fused"])
@pytest.mark.parametrize("name, decoupled", MODES, ids=lambda v: str(v))
def test_scaled_steps_equal_unscaled_steps(name: str, decoupled: bool, implementation: str) -> None:
    scaled_model, plain_model = _model(), _model()
    scaled = _optimizer(scaled_model, name, decoupled, implementation)
    plain = _optimizer(plain_model, name, decoupled, implementation)
    scaler = torch.amp.GradScaler("cpu", init_scale=SCALE)
    for seed in range(3):
        x, y = _data(seed)
        _scaled_step(scaled_model, scaled, scaler, x, y)
        plain.zero_grad()
        nn.functional.mse_loss(plain_model(x), y).backward()
        plain.step()
    assert scaler.get_scale() == SCALE
    for a, b in zip(scaled_model.parameters(), plain_model.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)
