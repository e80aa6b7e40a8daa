"""What the framework tests share: data, a tiny model, the optimizers, and the oracles."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

import l2optim

#: The l2optim optimizers each framework resumes, with settings that give them state
#: (momentum, moments), one with the scaling that follows the schedule, one with
#: cautious and corrected decay.
OPTIMIZERS: dict[str, tuple[type[torch.optim.Optimizer], dict]] = {
    "SGDW": (l2optim.SGDW, {"lr": 0.1, "momentum": 0.9, "weight_decay": 0.05}),
    "AdamW": (l2optim.AdamW, {"lr": 0.01, "weight_decay": 0.05}),
    "RMSpropW": (
        l2optim.RMSpropW,
        {"lr": 0.01, "momentum": 0.5, "weight_decay": 0.05, "weight_decay_scaling": "schedule"},
    ),
    # The newer rules, set as a user sets them: constructor arguments.
    "AdamW-cautious-corrected": (
        l2optim.AdamW,
        {"lr": 0.01, "weight_decay": 0.05, "cautious_weight_decay": True,
         "weight_decay_scaling": "corrected"},
    ),
}


def regression_data(n: int = 64, features: int = 4, seed: int = 0) -> tuple[Tensor, Tensor]:
    """A noisy linear target, float32."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(n, features, generator=generator)
    w = torch.randn(features, 1, generator=generator)
    return x, x @ w + 0.1 * torch.randn(n, 1, generator=generator)


def mlp(seed: int = 0, features: int = 4, hidden: int = 16) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(features, hidden), nn.Tanh(), nn.Linear(hidden, 1))


def assert_bit_exact(actual: Iterable[Tensor], expected: Iterable[Tensor]) -> None:
    actual, expected = list(actual), list(expected)
    assert len(actual) == len(expected)
    for i, (a, e) in enumerate(zip(actual, expected, strict=True)):
        assert torch.equal(a, e), f"tensor {i} differs by {(a - e).abs().max().item():.3g}"


@dataclass
class RecordedStep:
    """One optimizer step of a one-group optimizer as a framework ran it."""

    lr: float
    before: list[Tensor]
    grads: list[Tensor]
    after: list[Tensor] = field(default_factory=list)


def check_sgdw_schedule_scaling(
    steps: list[RecordedStep], *, lr_ref: float, weight_decay: float, momentum: float
) -> None:
    """Each step is p ← p·(1 − (lr/lr_ref)·λ) − lr·b, b ← μ·b + g (b = g at first).

    The reference follows the recorded gradients and learning rates with its own momentum
    buffer, so whatever a framework or scheduler did to the group's ``initial_lr``, the
    decay must follow lr/lr_ref with lr_ref the learning rate the group was created with.
    """
    assert steps, "no optimizer step was recorded"
    buffers: list[Tensor] | None = None
    for index, step in enumerate(steps):
        if buffers is None or momentum == 0:
            buffers = [g.clone() for g in step.grads]
        else:
            buffers = [momentum * b + g for b, g in zip(buffers, step.grads, strict=True)]
        factor = 1 - step.lr / lr_ref * weight_decay
        for p, b, after in zip(step.before, buffers, step.after, strict=True):
            torch.testing.assert_close(
                after,
                p * factor - step.lr * b,
                rtol=1e-5,
                atol=1e-6,
                msg=lambda m, i=index: f"step {i}: {m}",
            )
