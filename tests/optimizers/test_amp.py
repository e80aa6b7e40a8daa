"""Mixed precision: torch.amp.GradScaler on CPU with every mode and implementation.

A step that GradScaler skips for an inf/NaN gradient must leave every parameter and
every piece of optimizer state as it was; on the fused path the optimizer is called
with ``grad_scale``/``found_inf`` and has to skip by itself, decay included.
"""

from __future__ import annotations

import copy
import functools

import pytest
import torch
from _configs import (
    CONFIGS,
    IMPLEMENTATIONS,
    NO_GRAD,
    Config,
    gradient,
    initial_params,
    param_groups,
    tensors_equal,
)
from torch import nn

import l2optim
from l2optim._compat import step_unscales

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
BASES = {"Adagrad": torch.optim.Adagrad}  # the torch classes under with_weight_decay
MODES = [(name, decoupled) for name in CLASSES for decoupled in (False, True)]
SCALE = 2.0**10  # a power of two: scaling and unscaling are exact


def _model(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 2))


def _optimizer(model: nn.Module, name: str, decoupled: bool, implementation: str, **extra):
    return CLASSES[name](
        model.parameters(),
        weight_decay=0.1,
        decoupled_weight_decay=decoupled,
        **HYPER[name],
        **IMPLEMENTATIONS[implementation],
        **extra,
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


def _check_a_skipped_second_step(model: nn.Module, optimizer, bad: float) -> None:
    """One good scaled step (state exists from here on), then one GradScaler skips for a
    ``bad`` gradient: every parameter and every piece of state must be as it was."""
    scaler = torch.amp.GradScaler("cpu", init_scale=SCALE)
    x, y = _data()
    _scaled_step(model, optimizer, scaler, x, y)
    params_before = [p.detach().clone() for p in model.parameters()]
    state_before = copy.deepcopy(optimizer.state_dict())
    _scaled_step(model, optimizer, scaler, x, y, spoil=bad)

    assert scaler.get_scale() == SCALE / 2, "GradScaler did not see the bad gradient"
    for before, p in zip(params_before, model.parameters(), strict=True):
        assert torch.equal(before, p.detach())
    assert tensors_equal(optimizer.state_dict(), state_before)


@pytest.mark.parametrize("bad", [float("inf"), float("nan")], ids=["inf", "nan"])
@pytest.mark.parametrize("implementation", ["single", "foreach", "fused"])
@pytest.mark.parametrize("name, decoupled", MODES, ids=lambda v: str(v))
def test_skipped_step_changes_nothing(
    name: str, decoupled: bool, implementation: str, bad: float
) -> None:
    model = _model()
    optimizer = _optimizer(model, name, decoupled, implementation)
    if implementation == "fused":
        # GradScaler then calls the step with grad_scale/found_inf instead of skipping it:
        # always for l2optim's own classes, and for a with_weight_decay base exactly when
        # torch's class asks for it (torch 2.7's fused Adagrad does not: GradScaler then
        # unscales and skips by itself).
        torch_class = BASES.get(name)
        expected = torch_class is None or step_unscales(
            torch_class([nn.Parameter(torch.zeros(1))], fused=True)
        )
        assert step_unscales(optimizer) == expected
    _check_a_skipped_second_step(model, optimizer, bad)


# Cautious decay is a decoupled rule; decay towards a reference has both forms.
OTHER_RULES = [(name, True, "cautious") for name in CLASSES] + [
    (name, decoupled, "towards_reference") for name, decoupled in MODES
]


@pytest.mark.parametrize("implementation", ["single", "foreach", "fused"])
@pytest.mark.parametrize("name, decoupled, rule", OTHER_RULES, ids=lambda v: str(v))
def test_skipped_step_changes_nothing_under_the_other_decay_rules(
    name: str, decoupled: bool, rule: str, implementation: str
) -> None:
    """Cautious decay and decay towards a reference skip with the step, fused included."""
    model = _model()
    extra = {"cautious_weight_decay": True} if rule == "cautious" else {}
    optimizer = _optimizer(model, name, decoupled, implementation, **extra)
    if rule == "towards_reference":
        # References away from the weights, so that a decay step would move them.
        optimizer.decay_towards([p.detach() + 1.0 for p in model.parameters()])
    if implementation == "fused" and (name == "RMSprop" or (name == "SGD" and decoupled)):
        # These fused steps are one compiled pass without these rules: refused by name
        # (coupled SGD's is torch's fused SGD, which takes the reference's gradient).
        scaler = torch.amp.GradScaler("cpu", init_scale=SCALE)
        with pytest.raises(ValueError, match="with fused=True: this update runs in one pass"):
            _scaled_step(model, optimizer, scaler, *_data())
        return
    _check_a_skipped_second_step(model, optimizer, float("inf"))


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


# -- skipped steps before the state exists ------------------------------------------------
#
# fp16 training starts with a scale (2^16) that overflows, so GradScaler skips the very
# first steps, before any optimizer state exists. Whatever the implementation, the run
# must end where the single-tensor path ends when it is shown only the steps that were
# not skipped.

#: True where GradScaler sees an overflow: two skips first, one in mid-training, two in a row.
SKIP_PATTERN = (True, True, False, False, True, False, True, True, False, False)


def _scaled_gradient_steps(optimizer, params, scaler, pattern) -> None:
    """Hand the optimizer scaled gradients through ``scaler``, spoiling the steps ``pattern`` marks."""
    # GradScaler starts its scale lazily, at the first scale()
    scaler.scale(torch.zeros((), device=params[0].device))
    good = 0
    for skip in pattern:
        scale = scaler.get_scale()
        for i, p in enumerate(params):
            p.grad = None if i == NO_GRAD else gradient(p.detach(), good, i) * scale
        if skip:
            params[0].grad.view(-1)[0] = float("inf")
        scaler.step(optimizer)
        scaler.update()
        good += not skip


@pytest.mark.parametrize("decoupled", [False, True], ids=["coupled", "decoupled"])
@pytest.mark.parametrize("config", CONFIGS, ids=str)
def test_skipped_first_steps_end_where_the_single_tensor_path_ends(
    config: Config, decoupled: bool
) -> None:
    params0 = initial_params(torch.float32)
    make = functools.partial(_grouped_optimizer, config, decoupled)

    params = [nn.Parameter(p.clone()) for p in params0]
    optimizer = make(params, **config.kwargs())
    # Powers of two: scaling and unscaling are exact, so only the skips can differ.
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**8, growth_interval=1000)
    _scaled_gradient_steps(optimizer, params, scaler, SKIP_PATTERN)

    single_kwargs = {k: v for k, v in config.kwargs().items() if k not in ("foreach", "fused")}
    reference = [nn.Parameter(p.clone()) for p in params0]
    reference_optimizer = make(reference, **single_kwargs, foreach=False)
    _plain_steps(reference_optimizer, reference, SKIP_PATTERN.count(False))

    assert scaler.get_scale() == 2.0**8 / 2 ** SKIP_PATTERN.count(True)
    for i, (p, r) in enumerate(zip(params, reference, strict=True)):
        torch.testing.assert_close(p, r, rtol=1e-5, atol=1e-6, msg=lambda m, i=i: f"param {i}: {m}")
        assert optimizer.state[p].keys() == reference_optimizer.state[r].keys()
        for key, value in reference_optimizer.state[r].items():
            torch.testing.assert_close(optimizer.state[p][key], value, rtol=1e-5, atol=1e-6)


def _plain_steps(optimizer, params, steps: int) -> None:
    """The steps that were not skipped, without GradScaler: what the run must end at."""
    for step in range(steps):
        for i, p in enumerate(params):
            p.grad = None if i == NO_GRAD else gradient(p.detach(), step, i)
        optimizer.step()


def _grouped_optimizer(config: Config, decoupled: bool, params, **kwargs):
    lr = kwargs.pop("lr", 0.01)
    return config.ours(
        param_groups(params, lr, 0.1), lr=lr, decoupled_weight_decay=decoupled, **kwargs
    )


CUDA_CASES = [
    (cls, impl)
    for cls in (l2optim.SGD, l2optim.SGDW, l2optim.Adam, l2optim.AdamW, l2optim.RMSpropW)
    for impl in ({}, {"fused": True})
]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize(("cls", "impl"), CUDA_CASES, ids=lambda v: getattr(v, "__name__", str(v)))
def test_skipped_first_steps_on_cuda(cls, impl) -> None:
    """The issue's scenario on the device where torch's fused SGD kernel runs by default."""
    hyper = {"lr": 0.1, "weight_decay": 0.5}
    if issubclass(cls, torch.optim.SGD):
        hyper["momentum"] = 0.9
    params0 = [p.cuda() for p in initial_params(torch.float32)]
    params = [nn.Parameter(p.clone()) for p in params0]
    optimizer = cls(params, **hyper, **impl)
    scaler = torch.amp.GradScaler("cuda", init_scale=2.0**8, growth_interval=1000)
    _scaled_gradient_steps(optimizer, params, scaler, SKIP_PATTERN)
    reference = [nn.Parameter(p.clone()) for p in params0]
    _plain_steps(cls(reference, **hyper, foreach=False), reference, SKIP_PATTERN.count(False))
    for p, r in zip(params, reference, strict=True):
        torch.testing.assert_close(p, r, rtol=1e-5, atol=1e-6)
