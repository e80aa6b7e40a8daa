"""differentiable=True: the step is part of the autograd graph, decay included.

Oracle: torch.autograd.gradcheck, the analytic Jacobian of the weights after two steps with
respect to the initial weights and the lr against central finite differences, in float64.
Every decay rule that l2optim applies itself (coupled L2 through with_weight_decay or
towards a reference, cautious decay) has to be in the graph like the base's own decay.
"""

from __future__ import annotations

import pytest
import torch

import l2optim

WEIGHTS = [0.8, -1.3, 2.1, -0.4]
# Gradients of the two steps, constant: the graph runs through the weights and lr only.
# Signs mixed against the weights', so cautious decay keeps some coordinates and not others.
GRADS = [[1.0, 0.7, -1.2, -0.9], [0.6, -0.5, 0.4, -1.1]]

CASES = {
    "SGD, coupled (torch's decay)": (l2optim.SGD, {}, None),
    "SGD, decoupled": (l2optim.SGDW, {}, None),
    "SGD, decoupled, cautious": (l2optim.SGDW, {"cautious_weight_decay": True}, None),
    "SGD, coupled towards a reference": (l2optim.SGD, {}, "reference"),
    "SGD, decoupled towards a reference": (l2optim.SGDW, {}, "reference"),
    "AdamW, cautious": (l2optim.AdamW, {"cautious_weight_decay": True}, None),
    "Adam, coupled towards a reference": (l2optim.Adam, {}, "reference"),
    "with_weight_decay(SGD), coupled": (
        l2optim.with_weight_decay(torch.optim.SGD), {}, None),
    "with_weight_decay(Adagrad), coupled": (
        l2optim.with_weight_decay(torch.optim.Adagrad), {}, None),
}
# torch's differentiable Adagrad takes no tensor lr: the Jacobian is taken in w₀ alone.
FLOAT_LR = {"with_weight_decay(Adagrad), coupled"}


def _two_steps(cls, hyper, reference):
    def run(w0: torch.Tensor, lr: torch.Tensor | float = 0.05) -> torch.Tensor:
        w = w0.clone()
        optimizer = cls([w], lr=lr, weight_decay=0.3, differentiable=True, **hyper)
        if reference is not None:
            optimizer.decay_towards([torch.full_like(w0, 0.25)])
        for grad in GRADS:
            w.grad = torch.tensor(grad, dtype=torch.float64)
            optimizer.step()
        return w

    return run


@pytest.mark.parametrize("case", list(CASES))
def test_the_gradient_through_the_step_matches_finite_differences(case: str) -> None:
    cls, hyper, reference = CASES[case]
    w0 = torch.tensor(WEIGHTS, dtype=torch.float64, requires_grad=True)
    lr = torch.tensor(0.05, dtype=torch.float64, requires_grad=True)
    inputs = (w0,) if case in FLOAT_LR else (w0, lr)
    assert torch.autograd.gradcheck(_two_steps(cls, hyper, reference), inputs, eps=1e-6)
