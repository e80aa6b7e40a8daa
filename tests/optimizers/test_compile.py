"""torch.compile: a compiled model trained with an l2optim optimizer matches eager.

One real Inductor compile runs (the default backend); the remaining cases use the
``"eager"`` backend, which still traces the model with Dynamo but skips code
generation, to keep the suite quick on two cores.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

import l2optim

STEPS = 3


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 1))


def _train(model: nn.Module, optimizer: torch.optim.Optimizer, step=None) -> list[float]:
    generator = torch.Generator().manual_seed(1)
    x, y = torch.randn(16, 4, generator=generator), torch.randn(16, 1, generator=generator)
    losses = []
    for _ in range(STEPS):
        optimizer.zero_grad()
        loss = nn.functional.mse_loss(model(x), y)
        loss.backward()
        (optimizer.step if step is None else step)()
        losses.append(loss.item())
    return losses


@pytest.mark.timeout(300)
@pytest.mark.parametrize(
    "backend, name, decoupled",
    [
        ("inductor", "SGD", True),
        ("eager", "Adam", False),
        ("eager", "AdamW", True),
        ("eager", "RMSprop", True),
    ],
)
def test_compiled_model_trains_like_eager(backend: str, name: str, decoupled: bool) -> None:
    torch._dynamo.reset()
    hyper = {"lr": 0.05, "weight_decay": 0.1, "decoupled_weight_decay": decoupled}
    if name == "SGD":
        hyper["momentum"] = 0.9

    eager = _model()
    eager_losses = _train(eager, getattr(l2optim, name)(eager.parameters(), **hyper))

    module = _model()
    compiled = torch.compile(module, backend=backend)
    compiled_losses = _train(compiled, getattr(l2optim, name)(module.parameters(), **hyper))

    assert compiled_losses == pytest.approx(eager_losses, rel=1e-5)
    for a, b in zip(module.parameters(), eager.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    assert not torch.equal(module[0].weight, _model()[0].weight)


# -- torch.compile(optimizer.step) -------------------------------------------------------

DEFAULTS = [
    ("SGD", {"lr": 0.05, "momentum": 0.9, "weight_decay": 0.1}),
    ("SGDW", {"lr": 0.05, "momentum": 0.9, "weight_decay": 0.1}),
    ("SGDW", {"lr": 0.05, "weight_decay": 0.1, "weight_decay_scaling": "schedule"}),
    ("Adam", {"lr": 0.05, "weight_decay": 0.1}),
    ("AdamW", {"lr": 0.05, "weight_decay": 0.1, "weight_decay_scaling": "none"}),
    ("RMSprop", {"lr": 0.01, "weight_decay": 0.1}),
    ("RMSpropW", {"lr": 0.01, "weight_decay": 0.1, "momentum": 0.5}),
]


@pytest.mark.parametrize(("name", "hyper"), DEFAULTS, ids=lambda v: v if isinstance(v, str) else "")
def test_compiled_step_is_one_graph_and_equals_eager(name: str, hyper: dict) -> None:
    """torch's recommended ``torch.compile(opt.step)``: one graph, as for torch's own step."""
    eager_model, compiled_model = _model(), _model()
    eager = getattr(l2optim, name)(eager_model.parameters(), **hyper)
    optimizer = getattr(l2optim, name)(compiled_model.parameters(), **hyper)
    torch._dynamo.reset()
    _train(compiled_model, optimizer)  # state exists: the compiled step is the steady one
    _train(eager_model, eager)
    explained = torch._dynamo.explain(optimizer.step)()
    assert (explained.graph_count, explained.graph_break_count) == (1, 0), explained.break_reasons
    # explain ran one step; the eager twin takes the same one.
    eager.step()
    compiled_step = torch.compile(optimizer.step, backend="eager")
    eager_losses = _train(eager_model, eager)
    # Traced, torch's Adam keeps its bias corrections in float32 tensors where eager uses
    # Python floats: agreement to float32 rounding, not bit for bit.
    assert _train(compiled_model, optimizer, step=compiled_step) == pytest.approx(
        eager_losses, rel=1e-5
    )
    for a, b in zip(compiled_model.parameters(), eager_model.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


# -- what users combine with a compiled step ---------------------------------------------
# torch's "compiling the optimizer" recipe: ``torch.compile(opt.step)`` with an lr
# scheduler (a new lr every step) and a compiled model, or with GradScaler handing the
# step over. Each runs 24 steps and must end where eager ends, with the param groups
# eager has (a traced step must not leave Dynamo's view of them behind).

LONG_STEPS = 24

CLASSES = [
    ("SGD", {"lr": 0.05, "momentum": 0.9, "weight_decay": 0.05}),
    ("SGDW", {"lr": 0.05, "momentum": 0.9, "weight_decay": 0.05}),
    ("SGDW", {"lr": 0.05, "weight_decay": 0.05, "weight_decay_scaling": "schedule"}),
    ("Adam", {"lr": 0.02, "weight_decay": 0.05}),
    ("AdamW", {"lr": 0.02, "weight_decay": 0.05}),
    ("AdamW", {"lr": 0.02, "weight_decay": 0.05, "weight_decay_scaling": "none"}),
    ("RMSprop", {"lr": 0.01, "weight_decay": 0.05}),
    ("RMSpropW", {"lr": 0.01, "weight_decay": 0.05, "momentum": 0.5}),
    # Updates that run in l2optim's own one-pass step rather than in torch's.
    ("SGDW", {"lr": 0.05, "momentum": 0.9, "weight_decay": 0.05, "fused": True,
              "weight_decay_scaling": "corrected"}),
    ("RMSprop", {"lr": 0.01, "weight_decay": 0.05, "fused": True}),
    ("AdagradW", {"lr": 0.05, "weight_decay": 0.05, "decoupled_weight_decay": True}),
]


def _case_id(value):
    if isinstance(value, str):
        return value
    return ",".join(f"{k}={v}" for k, v in value.items() if k not in ("lr", "weight_decay"))


def _optimizer(name: str, model: nn.Module, hyper: dict) -> torch.optim.Optimizer:
    cls = (
        l2optim.with_weight_decay(torch.optim.Adagrad)
        if name == "AdagradW"
        else getattr(l2optim, name)
    )
    return cls(l2optim.decay_groups(model, hyper["weight_decay"]), **hyper)


def _user_loop(name: str, hyper: dict, *, compiled_model: bool, compiled_step: bool, scaler: bool):
    """A user's loop: a LambdaLR schedule, optionally a compiled model and GradScaler."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(8, 32), nn.Tanh(), nn.Linear(32, 1))
    generator = torch.Generator().manual_seed(1)
    x, y = torch.randn(64, 8, generator=generator), 10 * torch.randn(64, generator=generator)
    model = torch.compile(net, backend="eager") if compiled_model else net
    optimizer = _optimizer(name, net, hyper)
    schedule = l2optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1.0 / (1 + 0.05 * s))
    if compiled_step:
        # After the scheduler, which wraps the step it finds: GradScaler calls this one.
        optimizer.step = torch.compile(optimizer.step, backend="eager")
    # A scale that overflows float32 gradients: GradScaler skips the first steps.
    grad_scaler = torch.amp.GradScaler("cpu", init_scale=2.0**127) if scaler else None
    for _ in range(LONG_STEPS):
        optimizer.zero_grad()
        loss = nn.functional.mse_loss(model(x).squeeze(-1), y)
        if grad_scaler is None:
            loss.backward()
            optimizer.step()
        else:
            grad_scaler.scale(loss).backward()
            grad_scaler.step(optimizer)
            grad_scaler.update()
        schedule.step()
    if grad_scaler is not None:
        assert grad_scaler.get_scale() < 2.0**127  # steps were skipped
    return net, optimizer


def _groups_without_params(optimizer: torch.optim.Optimizer) -> list[dict]:
    return [{k: v for k, v in g.items() if k != "params"} for g in optimizer.param_groups]


@pytest.mark.timeout(300)
# GradScaler skips the first steps, and the schedule moves on regardless, as it should.
@pytest.mark.filterwarnings("ignore:Detected call of `lr_scheduler.step\\(\\)` before")
@pytest.mark.parametrize(
    "compiled_model, scaler", [(False, False), (True, False), (False, True)],
    ids=["schedule", "schedule-compiled-model", "schedule-gradscaler"],
)
@pytest.mark.parametrize(("name", "hyper"), CLASSES, ids=_case_id)
def test_compiled_step_with_a_scheduler_equals_eager(name, hyper, compiled_model, scaler) -> None:
    torch._dynamo.reset()
    eager_net, eager = _user_loop(
        name, hyper, compiled_model=False, compiled_step=False, scaler=scaler
    )
    net, optimizer = _user_loop(
        name, hyper, compiled_model=compiled_model, compiled_step=True, scaler=scaler
    )
    # Traced, Adam's bias corrections are float32 tensors (Python floats eagerly): over 24
    # steps its weights drift apart by a few 1e-6. A decay step missed or taken twice
    # moves them by lr·λ·|p| ≈ 1e-3.
    for a, b in zip(net.parameters(), eager_net.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    assert _groups_without_params(optimizer) == _groups_without_params(eager)
    # The optimizer carries on eagerly (a validation step, a resumed run) where it stopped.
    type(optimizer).step(optimizer)
