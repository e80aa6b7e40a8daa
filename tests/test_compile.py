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
