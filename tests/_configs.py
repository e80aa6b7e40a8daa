"""The configuration table and the plain reference rule shared by the optimizer tests.

The reference updates are written here from the formulas, with ordinary tensor ops and
no torch.optim code, so that they are an independent oracle for the decoupled form.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

import l2optim

#: name -> (l2optim class, torch.optim class of the same name)
CLASSES: dict[str, tuple[type, type]] = {
    "SGD": (l2optim.SGD, torch.optim.SGD),
    "Adam": (l2optim.Adam, torch.optim.Adam),
    "RMSprop": (l2optim.RMSprop, torch.optim.RMSprop),
}

#: Hyperparameters per optimizer, as broad as torch's own optimizer tests. ``tensor_lr``
#: asks for the learning rate as a 0-d tensor.
HYPERPARAMETERS: dict[str, list[dict[str, Any]]] = {
    "SGD": [
        {},
        {"lr": 0.1},
        {"lr": 0.1, "tensor_lr": True},
        {"lr": 0.1, "momentum": 0.9},
        {"lr": 0.1, "momentum": 0.9, "dampening": 0.3},
        {"lr": 0.1, "momentum": 0.9, "nesterov": True},
        {"lr": 0.1, "momentum": 0.9, "maximize": True},
        {"lr": 0.05, "momentum": 0.5, "nesterov": True, "maximize": True, "tensor_lr": True},
    ],
    "Adam": [
        {},
        {"lr": 0.01, "betas": (0.8, 0.99), "eps": 1e-6},
        {"lr": 0.01, "amsgrad": True},
        {"lr": 0.01, "maximize": True},
        {"lr": 0.01, "tensor_lr": True},
        {"lr": 0.01, "amsgrad": True, "maximize": True, "tensor_lr": True},
    ],
    "RMSprop": [
        {},
        {"lr": 0.01, "alpha": 0.9},
        {"lr": 0.01, "centered": True},
        {"lr": 0.01, "momentum": 0.9},
        {"lr": 0.01, "centered": True, "momentum": 0.5, "maximize": True},
        {"lr": 0.01, "eps": 1e-4, "tensor_lr": True},
    ],
}

#: Implementation choices: torch's three, and none given (l2optim then picks).
IMPLEMENTATIONS: dict[str, dict[str, bool]] = {
    "single": {"foreach": False},
    "foreach": {"foreach": True},
    "fused": {"fused": True},
    "default": {},
}

SCALINGS = ("lr", "schedule", "corrected", "none")


@dataclass(frozen=True)
class Config:
    """One row of the table: an optimizer, its hyperparameters and an implementation."""

    name: str
    hyper: dict[str, Any] = field(hash=False)
    implementation: str

    @property
    def ours(self) -> type:
        return CLASSES[self.name][0]

    @property
    def theirs(self) -> type:
        return CLASSES[self.name][1]

    def kwargs(self, **extra: Any) -> dict[str, Any]:
        """Constructor arguments, with a fresh tensor for a tensor lr (schedulers write to it)."""
        kwargs = {k: v for k, v in self.hyper.items() if k != "tensor_lr"}
        if self.hyper.get("tensor_lr"):
            # float64, so that the reference rule sees the very same value.
            kwargs["lr"] = torch.tensor(kwargs["lr"], dtype=torch.float64)
        return {**kwargs, **IMPLEMENTATIONS[self.implementation], **extra}

    def __str__(self) -> str:
        hyper = ",".join(f"{k}={v}" for k, v in self.hyper.items()) or "defaults"
        return f"{self.name}[{hyper}]-{self.implementation}"


def _torch_accepts(name: str, hyper: dict[str, Any], implementation: str) -> bool:
    # torch's foreach Adam refuses a tensor lr unless capturable, which CPU lacks.
    return not (name == "Adam" and hyper.get("tensor_lr") and implementation == "foreach")


CONFIGS: list[Config] = [
    Config(name, hyper, implementation)
    for name, table in HYPERPARAMETERS.items()
    for hyper in table
    for implementation in IMPLEMENTATIONS
    if _torch_accepts(name, hyper, implementation)
]


def torch_twins(config: Config) -> list[tuple[dict[str, Any], bool]]:
    """torch.optim arguments to compare a coupled run with, and whether bit-exactly.

    With neither ``foreach`` nor ``fused`` given, l2optim runs what torch's default runs
    for tensors this small (tests/optimizers/test_implementation.py covers the cases where it picks
    torch's fused kernel). torch has no fused RMSprop: l2optim's is compared with the
    single-tensor loop.
    """
    has_fused = config.name != "RMSprop"
    if config.implementation == "fused" and not has_fused:
        return [({"foreach": False}, False)]
    return [(IMPLEMENTATIONS[config.implementation], True)]


# -- a small problem with several groups ---------------------------------------------

SHAPES = [(3, 4), (4,), (2,)]
#: Index of the parameter that never gets a gradient (it must never move).
NO_GRAD = 2


def initial_params(dtype: torch.dtype = torch.float32, seed: int = 0) -> list[Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return [
        torch.randn(shape, generator=generator, dtype=torch.float64).to(dtype) for shape in SHAPES
    ]


def gradient(p: Tensor, step: int, index: int) -> Tensor:
    """A gradient that depends on the parameter, so that trajectories feed back."""
    offset = torch.linspace(-1, 1, p.numel(), dtype=torch.float64, device=p.device).reshape(p.shape)
    return (torch.sin((step + 1) * p.double()) + (index + 1) * offset).to(p.dtype)


def as_float(x: Any) -> float:
    return float(x) if isinstance(x, Tensor) else x


def param_groups(params: list[nn.Parameter], lr: Any, weight_decay: float) -> list[dict[str, Any]]:
    """Two groups with different λ and lr; the second holds the parameter without a gradient."""
    second_lr = 2 * lr if isinstance(lr, Tensor) else 2 * as_float(lr)
    return [
        {"params": [params[0]], "weight_decay": weight_decay},
        {"params": params[1:], "weight_decay": 3 * weight_decay, "lr": second_lr},
    ]


def lr_factor(step: int) -> float:
    """The schedule of ``StepLR(step_size=2, gamma=0.5)``, written out."""
    return 0.5 ** (step // 2)


def run(
    make_optimizer: Callable[[list[nn.Parameter]], torch.optim.Optimizer],
    params0: list[Tensor],
    steps: int = 4,
    schedule: bool = False,
) -> tuple[list[nn.Parameter], torch.optim.Optimizer]:
    """Train copies of ``params0`` for ``steps`` steps; the last parameter gets no gradient."""
    params = [nn.Parameter(p.clone()) for p in params0]
    optimizer = make_optimizer(params)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, 2, 0.5) if schedule else None
    for step in range(steps):
        take_steps(optimizer, params, step)
        if scheduler is not None:
            scheduler.step()
    return params, optimizer


def take_steps(optimizer: torch.optim.Optimizer, params: list[nn.Parameter], step: int) -> None:
    for i, p in enumerate(params):
        p.grad = None if i == NO_GRAD else gradient(p.detach(), step, i)
    optimizer.step()


# -- the reference rule ----------------------------------------------------------------


def sgd_update(
    p, g, state, t, lr, l2, *, momentum=0, dampening=0, nesterov=False, maximize=False, **_
):
    g = -g if maximize else g
    g = g + l2 * p
    if momentum != 0:
        buf = state.get("buf")
        buf = g.clone() if buf is None else momentum * buf + (1 - dampening) * g
        state["buf"] = buf
        g = g + momentum * buf if nesterov else buf
    return p - lr * g


def adam_update(
    p, g, state, t, lr, l2, *, betas=(0.9, 0.999), eps=1e-8, amsgrad=False, maximize=False, **_
):
    g = -g if maximize else g
    g = g + l2 * p
    beta1, beta2 = betas
    m = beta1 * state.get("m", torch.zeros_like(p)) + (1 - beta1) * g
    v = beta2 * state.get("v", torch.zeros_like(p)) + (1 - beta2) * g * g
    state["m"], state["v"] = m, v
    if amsgrad:
        v = torch.maximum(state.get("v_max", torch.zeros_like(p)), v)
        state["v_max"] = v
    m_hat = m / (1 - beta1**t)
    v_hat = v / (1 - beta2**t)
    return p - lr * m_hat / (v_hat.sqrt() + eps)


def rmsprop_update(
    p, g, state, t, lr, l2, *, alpha=0.99, eps=1e-8, momentum=0, centered=False, maximize=False, **_
):
    g = -g if maximize else g
    g = g + l2 * p
    square_avg = alpha * state.get("square_avg", torch.zeros_like(p)) + (1 - alpha) * g * g
    state["square_avg"] = square_avg
    if centered:
        grad_avg = alpha * state.get("grad_avg", torch.zeros_like(p)) + (1 - alpha) * g
        state["grad_avg"] = grad_avg
        denom = (square_avg - grad_avg * grad_avg).sqrt() + eps
    else:
        denom = square_avg.sqrt() + eps
    if momentum > 0:
        buf = momentum * state.get("buf", torch.zeros_like(p)) + g / denom
        state["buf"] = buf
        return p - lr * buf
    return p - lr * g / denom


REFERENCE_UPDATES = {"SGD": sgd_update, "Adam": adam_update, "RMSprop": rmsprop_update}

_HYPER_KEYS = (
    "momentum",
    "dampening",
    "nesterov",
    "maximize",
    "betas",
    "eps",
    "amsgrad",
    "alpha",
    "centered",
)


def reference_run(
    name: str,
    groups: list[dict[str, Any]],
    params0: list[Tensor],
    *,
    decoupled: bool,
    scaling: str = "lr",
    steps: int = 4,
    schedule: bool = False,
) -> list[Tensor]:
    """The update rule (docs/conventions.md, "The update rules") as a plain loop.

    ``groups`` are the filled-in param groups of a torch optimizer, read only for their
    hyperparameters; ``params0`` are in the order the groups hold them.
    """
    update = REFERENCE_UPDATES[name]
    params = [p.clone() for p in params0]
    states: list[dict[str, Tensor]] = [{} for _ in params]
    positions = _positions(groups)
    for step in range(steps):
        factor = lr_factor(step) if schedule else 1.0
        for group, indices in zip(groups, positions, strict=True):
            initial_lr = as_float(group["lr"])
            lr = initial_lr * factor
            weight_decay = as_float(group["weight_decay"])
            hyper = {k: _hyper_value(group[k]) for k in _HYPER_KEYS if k in group}
            for i in indices:
                if i == NO_GRAD:
                    continue
                p = params[i]
                g = gradient(p, step, i)
                if decoupled:
                    s = {
                        "lr": lr,
                        "schedule": lr / initial_lr,
                        "corrected": lr * lr / initial_lr,
                        "none": 1.0,
                    }[scaling]
                    p = p * (1 - s * weight_decay)
                params[i] = update(
                    p, g, states[i], step + 1, lr, 0.0 if decoupled else weight_decay, **hyper
                )
    return params


def _hyper_value(value: Any) -> Any:
    if isinstance(value, tuple):
        return tuple(as_float(v) for v in value)
    return value


def _positions(groups: list[dict[str, Any]]) -> list[list[int]]:
    positions, start = [], 0
    for group in groups:
        positions.append(list(range(start, start + len(group["params"]))))
        start += len(group["params"])
    return positions


def assert_same(
    actual: list[Tensor],
    expected: list[Tensor],
    exact: bool,
    rtol: float = 1e-5,
    atol: float = 1e-7,
) -> None:
    for i, (a, e) in enumerate(zip(actual, expected, strict=True)):
        a, e = a.detach(), e.detach()
        if exact:
            assert torch.equal(a, e), (
                f"param {i} differs: max |diff| {(a - e).abs().max().item():.3g}"
            )
        else:
            torch.testing.assert_close(
                a, e, rtol=rtol, atol=atol, msg=lambda m, i=i: f"param {i}: {m}"
            )


def tensors_equal(a: Any, b: Any) -> bool:
    """Equality of nested state (dicts, lists, tensors bit for bit), as in a state_dict."""
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and torch.equal(a, b)
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(tensors_equal(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(tensors_equal(x, y) for x, y in zip(a, b, strict=True))
    return a == b
