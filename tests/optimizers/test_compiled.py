"""The compiled step (l2optim/optimizers/_compiled.py) that ``fused=True`` runs where torch has no kernel."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch._dynamo.utils import counters

import l2optim
from l2optim.optimizers import _compiled

# Inductor's kernels themselves, not only the traced steps (tests/conftest.py).
pytestmark = pytest.mark.inductor

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])

# Modes torch has no fused kernel for; ``fused=True`` compiles them.
COMPILED_MODES = [
    pytest.param(
        l2optim.SGD,
        {"momentum": 0.9, "nesterov": True, "decoupled_weight_decay": True},
        id="sgd-nesterov-decoupled",
    ),
    pytest.param(
        l2optim.SGD,
        {
            "momentum": 0.8,
            "dampening": 0.1,
            "decoupled_weight_decay": True,
            "weight_decay_scaling": "schedule",
        },
        id="sgd-dampening-decoupled-schedule",
    ),
    pytest.param(l2optim.RMSprop, {}, id="rmsprop-coupled"),
    pytest.param(
        l2optim.RMSprop,
        {"centered": True, "momentum": 0.5, "maximize": True},
        id="rmsprop-centered-momentum-maximize-coupled",
    ),
    pytest.param(l2optim.RMSprop, {"decoupled_weight_decay": True}, id="rmsprop-decoupled"),
    pytest.param(
        l2optim.RMSprop,
        {
            "momentum": 0.5,
            "centered": True,
            "decoupled_weight_decay": True,
            "weight_decay_scaling": "none",
        },
        id="rmsprop-centered-momentum-decoupled-none",
    ),
]


def make_params(device: str, dtype: torch.dtype = torch.float32) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    shapes = [(7, 3), (5,), (2, 2, 2)]
    return [
        torch.randn(s, generator=generator, dtype=dtype).to(device).requires_grad_() for s in shapes
    ]


def train(cls, kwargs, device, steps=5, dtype=torch.float32, **impl):
    """Run ``steps`` steps with fixed gradients and a learning-rate schedule."""
    params = make_params(device, dtype)
    optimizer = cls(params, lr=0.01, weight_decay=0.1, **kwargs, **impl)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda t: 0.8**t)
    generator = torch.Generator().manual_seed(1)
    for _ in range(steps):
        for p in params:
            p.grad = torch.randn(p.shape, generator=generator, dtype=dtype).to(device)
        optimizer.step()
        schedule.step()
    return params, optimizer


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize(("cls", "kwargs"), COMPILED_MODES)
def test_compiled_step_equals_the_unfused_step(cls, kwargs, device):
    reference, ref_opt = train(cls, kwargs, device, foreach=False)
    fused, fused_opt = train(cls, kwargs, device, fused=True)
    for r, f in zip(reference, fused, strict=True):
        torch.testing.assert_close(f, r, rtol=1e-5, atol=1e-6)
    # Same state as torch keeps for the same maths: same keys, same shapes, same values.
    for p_ref, p_fused in zip(reference, fused, strict=True):
        ref_state, fused_state = ref_opt.state[p_ref], fused_opt.state[p_fused]
        assert ref_state.keys() == fused_state.keys()
        for key in ref_state:
            torch.testing.assert_close(
                fused_state[key].to(ref_state[key].device), ref_state[key], rtol=1e-5, atol=1e-6
            )


def test_compiled_step_is_not_recompiled_by_a_schedule():
    train(l2optim.RMSprop, {}, "cpu", steps=2, fused=True)  # compiled for this layout
    graphs = counters["stats"]["unique_graphs"]
    train(l2optim.RMSprop, {}, "cpu", steps=6, fused=True)  # lr changes every step
    assert counters["stats"]["unique_graphs"] == graphs


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize(("cls", "kwargs"), COMPILED_MODES[:1] + COMPILED_MODES[2:3])
def test_compiled_step_skips_a_step_with_an_overflow(cls, kwargs, device):
    params, optimizer = train(cls, kwargs, device, steps=2, fused=True)
    assert optimizer._step_supports_amp_scaling
    before_params = [p.detach().clone() for p in params]
    before_state = {k: v.clone() for p in params for k, v in optimizer.state[p].items()}
    for p in params:
        p.grad = torch.full_like(p, float("inf"))
    optimizer.grad_scale = torch.tensor(1024.0, device=device)
    optimizer.found_inf = torch.tensor(1.0, device=device)
    optimizer.step()
    for p, b in zip(params, before_params, strict=True):
        assert torch.equal(p.detach(), b)
    after_state = {k: v for p in params for k, v in optimizer.state[p].items()}
    assert all(torch.equal(after_state[k], v) for k, v in before_state.items())


@pytest.mark.parametrize("device", DEVICES)
def test_compiled_step_unscales_the_gradients(device):
    # GradScaler hands a fused step scaled gradients and the scale: g/scale must be used.
    kwargs = {"momentum": 0.9, "decoupled_weight_decay": True}
    params, optimizer = train(l2optim.SGD, kwargs, device, steps=1, fused=True)
    twins, reference = train(l2optim.SGD, kwargs, device, steps=1, foreach=False)
    generator = torch.Generator().manual_seed(2)
    for p, t in zip(params, twins, strict=True):
        g = torch.randn(p.shape, generator=generator).to(device)
        p.grad, t.grad = g * 512, g
    optimizer.grad_scale = torch.tensor(512.0, device=device)
    optimizer.found_inf = torch.tensor(0.0, device=device)
    optimizer.step()
    reference.step()
    for p, t in zip(params, twins, strict=True):
        torch.testing.assert_close(p, t, rtol=1e-5, atol=1e-6)


def test_compilation_failure_falls_back_with_one_warning(monkeypatch):
    def broken_compile(fn, **kwargs):
        def run(*args, **kw):
            raise RuntimeError("no compiler here")

        return run

    monkeypatch.setattr(torch, "compile", broken_compile)
    monkeypatch.setattr(_compiled, "_by_configuration", {})
    monkeypatch.setattr(_compiled, "_compile_failed", set())
    kwargs = {"centered": True}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fused, _ = train(l2optim.RMSprop, kwargs, "cpu", fused=True)
    assert len([w for w in caught if "fused=True" in str(w.message)]) == 1
    reference, _ = train(l2optim.RMSprop, kwargs, "cpu", foreach=False)
    for r, f in zip(reference, fused, strict=True):
        torch.testing.assert_close(f, r)


def test_fused_rejects_what_torch_rejects():
    with pytest.raises(RuntimeError, match="differentiable"):
        l2optim.RMSprop(make_params("cpu"), fused=True, differentiable=True)
    with pytest.raises(RuntimeError, match="cannot be `True` together"):
        l2optim.RMSprop(make_params("cpu"), fused=True, foreach=True)
    optimizer = l2optim.RMSprop(
        [torch.randn(3, dtype=torch.complex64, requires_grad=True)], fused=True
    )
    optimizer.param_groups[0]["params"][0].grad = torch.ones(3, dtype=torch.complex64)
    with pytest.raises(RuntimeError, match="fused=True"):
        optimizer.step()


def test_fused_rmsprop_state_dict_round_trips_through_torch():
    params, optimizer = train(l2optim.RMSprop, {"momentum": 0.5}, "cpu", steps=2, fused=True)
    torch_optimizer = torch.optim.RMSprop(params, lr=0.01, momentum=0.5, weight_decay=0.1)
    torch_optimizer.load_state_dict(optimizer.state_dict())
    back = l2optim.RMSprop(params, lr=0.01)
    back.load_state_dict(torch_optimizer.state_dict())
    assert back.param_groups[0]["fused"] is True
