"""``torch.compile(optimizer.step)``, as torch's tutorial and compiled training loops do it.

A default-constructed l2optim optimizer must compile to one graph with no break, as
torch.optim's own optimizers do, and take the same steps as it does eagerly. The
``"eager"`` backend keeps Dynamo's tracing (where graph breaks happen) without code
generation, which would only add compile time here.
"""

from __future__ import annotations

import pytest
import torch
from _training import mlp

import l2optim

CONSTRUCTORS = {
    "SGD": lambda p: l2optim.SGD(p, lr=0.1, momentum=0.9, weight_decay=0.05),
    "SGDW": lambda p: l2optim.SGDW(p, lr=0.1, momentum=0.9, weight_decay=0.05),
    "Adam": lambda p: l2optim.Adam(p, lr=0.01, weight_decay=0.05),
    "AdamW": lambda p: l2optim.AdamW(p, lr=0.01, weight_decay=0.05),
    "RMSprop": lambda p: l2optim.RMSprop(p, lr=0.01, weight_decay=0.05),
    "RMSpropW": lambda p: l2optim.RMSpropW(p, lr=0.01, weight_decay=0.05),
    # The oracle for the graph count: what torch's own class gives.
    "torch.optim.AdamW": lambda p: torch.optim.AdamW(p, lr=0.01, weight_decay=0.05),
}
STEPS = 3


def gradients(model: torch.nn.Module, step: int) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(step)
    return [torch.randn(p.shape, generator=generator) for p in model.parameters()]


@pytest.mark.parametrize("name", list(CONSTRUCTORS))
def test_compiled_step_is_one_graph_and_steps_like_eager(name: str) -> None:
    torch._dynamo.reset()
    eager_model, compiled_model = mlp(), mlp()
    eager = CONSTRUCTORS[name](eager_model.parameters())
    optimizer = CONSTRUCTORS[name](compiled_model.parameters())
    compiled_step = torch.compile(optimizer.step, backend="eager")
    for step in range(STEPS):
        for model in (eager_model, compiled_model):
            for p, g in zip(model.parameters(), gradients(model, step), strict=True):
                p.grad = g
        eager.step()
        if step == 0:
            optimizer.step()  # creates the state; the steady state is what is compiled
        elif step == 1:
            explanation = torch._dynamo.explain(optimizer.step)()
            counts = (explanation.graph_count, explanation.graph_break_count)
            assert counts == (1, 0), f"(graphs, breaks) = {counts}: {explanation.break_reasons}"
        else:
            compiled_step()
        # torch.optim.AdamW's own compiled step differs from its eager one by as much.
        for p, q in zip(compiled_model.parameters(), eager_model.parameters(), strict=True):
            torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6)
