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


def _train(model: nn.Module, optimizer: torch.optim.Optimizer) -> list[float]:
    generator = torch.Generator().manual_seed(1)
    x, y = torch.randn(16, 4, generator=generator), torch.randn(16, 1, generator=generator)
    losses = []
    for _ in range(STEPS):
        optimizer.zero_grad()
        loss = nn.functional.mse_loss(model(x), y)
        loss.backward()
        optimizer.step()
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
