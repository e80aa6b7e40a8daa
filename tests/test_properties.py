r"""Both forms of weight decay against closed forms, full batch, float64.

The loss is (1/2n)‖Xw + b − y‖² + (λ/2)‖w‖², the intercept b undecayed. Oracles live in
``strategies``: ridge, least squares in a box (scipy), the largest stable step and the
affine map of SGD on this quadratic. Every optimizer comes from l2optim.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pytest
import torch
from hypothesis import Phase, assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from strategies import (
    Regression,
    box_kkt_residual,
    box_least_squares,
    max_stable_lr,
    regressions,
    ridge,
    sgd_affine_map,
    spectral_radius,
    weight_decays,
)

import l2optim
from l2optim import conversions

MakeOptimizer = Callable[[list[dict]], torch.optim.Optimizer]

# Training runs of thousands of steps: a failure is reported as found, not shrunk for minutes.
NO_SHRINK = [Phase.explicit, Phase.reuse, Phase.generate]


# -- training on a regression problem --------------------------------------------------


def _linear_model(problem: Regression) -> torch.nn.Linear:
    model = torch.nn.Linear(
        problem.n_features, 1, bias=problem.fit_intercept, dtype=torch.float64
    )
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.zero_()
    return model


def _fit(
    problem: Regression,
    make_optimizer: MakeOptimizer,
    weight_decay: float,
    steps: int,
    *,
    final_lr_factor: float = 1.0,
) -> tuple[np.ndarray, float]:
    """Full-batch training of a zero-initialised Linear, bias exempt via ``decay_groups``.

    The lr decays exponentially by ``final_lr_factor`` over the run. Gradients are the
    closed form (1/n)Xᵀr and mean(r): the same numbers as autograd, at a fraction of its
    cost, which keeps thousands of steps per example affordable.
    """
    model = _linear_model(problem)
    optimizer = make_optimizer(l2optim.decay_groups(model, weight_decay))
    schedule = torch.optim.lr_scheduler.ExponentialLR(optimizer, final_lr_factor ** (1 / steps))
    X, y = torch.from_numpy(problem.X), torch.from_numpy(problem.y)
    for _ in range(steps):
        with torch.no_grad():
            residual = model(X).squeeze(1) - y
            model.weight.grad = (residual @ X / problem.n_samples).unsqueeze(0)
            if model.bias is not None:
                model.bias.grad = residual.mean().reshape(1)
        optimizer.step()
        schedule.step()
    bias = float(model.bias.detach()) if model.bias is not None else 0.0
    return model.weight.detach().numpy()[0].copy(), bias


def _distance(w: np.ndarray, b: float, w_ref: np.ndarray, b_ref: float) -> float:
    """max-norm distance between (w, b) and (w_ref, b_ref)."""
    return float(np.max(np.abs(np.append(w - w_ref, b - b_ref))))


def _steps_to(tolerance: float, rate: float) -> int:
    """Steps for an error contracting by ``rate`` per step to fall by ``tolerance``.

    Doubled, plus a margin, for the transient growth of non-normal momentum maps.
    """
    rate = max(rate, 1e-12)  # 0 when one step lands on the answer (one feature, lr = 1/h)
    return 2 * math.ceil(math.log(tolerance) / math.log(rate)) + 50


# -- 1. coupled SGD, Adam and RMSprop converge to ridge ---------------------------------

SGD_TOLERANCE = 1e-7  # relative to max(1, ‖θ*‖∞); the steps are chosen for 1e-10
MAX_SGD_STEPS = 3000


@st.composite
def sgd_settings(draw: st.DrawFn, kind: str) -> dict:
    """momentum, dampening and nesterov for ``kind`` in plain / momentum / nesterov."""
    if kind == "plain":
        return {"momentum": 0.0, "dampening": 0.0, "nesterov": False}
    momentum = draw(st.floats(0.1, 0.9))
    dampening = draw(st.floats(0.0, 0.5)) if kind == "momentum" else 0.0
    return {"momentum": momentum, "dampening": dampening, "nesterov": kind == "nesterov"}


def _sgd_steps(M: np.ndarray) -> int:
    rate = spectral_radius(M)
    assume(rate < 0.99)
    steps = _steps_to(1e-10, rate)
    assume(steps <= MAX_SGD_STEPS)
    return steps


@pytest.mark.parametrize("kind", ["plain", "momentum", "nesterov"])
@settings(max_examples=10, phases=NO_SHRINK)
@given(data=st.data(), problem=regressions(), weight_decay=weight_decays())
def test_coupled_sgd_converges_to_ridge(data, kind, problem, weight_decay):
    """lr is a drawn fraction of the data's step bound 2(1 + μ)/(L + λ), on (1 − d)·lr."""
    options = data.draw(sgd_settings(kind))
    fraction = data.draw(st.floats(0.5, 0.95))
    damped = 1 - options["dampening"]
    lr = fraction * max_stable_lr(problem, weight_decay, options["momentum"], options["nesterov"])
    lr /= damped
    M, _ = sgd_affine_map(problem, lr=lr, coupled=weight_decay, **options)
    steps = _sgd_steps(M)

    w, b = _fit(problem, lambda g: l2optim.SGD(g, lr=lr, **options), weight_decay, steps)

    w_star, b_star = ridge(problem, weight_decay)
    scale = max(1.0, float(np.max(np.abs(np.append(w_star, b_star)))))
    assert _distance(w, b, w_star, b_star) <= SGD_TOLERANCE * scale


@settings(max_examples=8)
@given(
    problem=regressions(fit_intercept=False),
    weight_decay=weight_decays(),
    fraction=st.floats(0.5, 0.95),
)
def test_gradient_descent_step_bound_is_sharp(problem, weight_decay, fraction):
    """At fraction·2/(L + λ) gradient descent converges; at (2 − fraction)·2/(L + λ) it diverges.

    The start is ridge's w* plus the top eigenvector of XᵀX/n, the mode the bound is about:
    it contracts by |1 − lr·(L + λ)| per step, 1 − 2·fraction or 3 − 2·fraction.
    """
    bound = max_stable_lr(problem, weight_decay)
    w_star, _ = ridge(problem, weight_decay)
    top_mode = np.linalg.eigh(problem.X.T @ problem.X)[1][:, -1]
    X, y = torch.from_numpy(problem.X), torch.from_numpy(problem.y)

    def distance_after(lr: float, steps: int = 200) -> float:
        w = torch.tensor(w_star + top_mode)
        optimizer = l2optim.SGD([w], lr=lr, weight_decay=weight_decay)
        for _ in range(steps):
            w.grad = X.T @ (X @ w - y) / problem.n_samples
            optimizer.step()
        return float(np.linalg.norm(w.numpy() - w_star))

    assert distance_after(fraction * bound) <= 1e-6  # 0.9**200 ≈ 7e-10 at worst
    assert distance_after((2 - fraction) * bound) >= 1e6  # 1.1**200 ≈ 2e8 at least


@settings(max_examples=30)
@given(
    problem=regressions(),
    weight_decay=weight_decays(),
    momentum=st.floats(0.0, 0.95),
    nesterov=st.booleans(),
)
def test_step_bound_is_where_the_sgd_map_stops_contracting(
    problem, weight_decay, momentum, nesterov
):
    """The bounds in closed form against the spectral radius of torch's SGD map.

    The map is the one the convergence properties check against l2optim.SGD.
    """
    bound = max_stable_lr(problem, weight_decay, momentum, nesterov)

    def radius(lr: float) -> float:
        M, _ = sgd_affine_map(
            problem, lr=lr, coupled=weight_decay, momentum=momentum, nesterov=nesterov
        )
        return spectral_radius(M)

    assert radius(0.999 * bound) < 1 < radius(1.001 * bound)


ADAPTIVE_TOLERANCE = 1e-4  # relative to max(1, ‖θ*‖∞); observed ≤ 1e-5 at these settings
ADAPTIVE_STEPS = 1200
ADAPTIVE_FINAL_LR = 1e-4  # the lr decays exponentially to this fraction of its start
COUPLED_ADAPTIVE = {
    "adam": lambda g: l2optim.Adam(g, lr=0.1),
    # AMSGrad's steps are bounded by the largest √v seen, early and large: it needs a larger
    # start to arrive before the schedule ends (at lr=0.1 a target of scale 9 fell short).
    "adam-amsgrad": lambda g: l2optim.Adam(g, lr=0.3, amsgrad=True),
    "rmsprop": lambda g: l2optim.RMSprop(g, lr=0.1),
    "rmsprop-centered": lambda g: l2optim.RMSprop(g, lr=0.1, centered=True),
    "rmsprop-momentum": lambda g: l2optim.RMSprop(g, lr=0.01, momentum=0.9),
}


@pytest.mark.parametrize("name", list(COUPLED_ADAPTIVE))
@settings(max_examples=8, phases=NO_SHRINK)
@given(problem=regressions(), weight_decay=weight_decays())
def test_coupled_adaptive_converges_to_ridge(name, problem, weight_decay):
    w, b = _fit(
        problem,
        COUPLED_ADAPTIVE[name],
        weight_decay,
        ADAPTIVE_STEPS,
        final_lr_factor=ADAPTIVE_FINAL_LR,
    )
    w_star, b_star = ridge(problem, weight_decay)
    scale = max(1.0, float(np.max(np.abs(np.append(w_star, b_star)))))
    assert _distance(w, b, w_star, b_star) <= ADAPTIVE_TOLERANCE * scale


# -- 2. decoupled SGD ------------------------------------------------------------------


@settings(max_examples=15)
@given(
    problem=regressions(),
    weight_decay=weight_decays(max_exponent=0.0),
    lr=st.floats(0.01, 0.5),
    decay_per_step=st.floats(0.8, 1.0),
)
def test_decoupled_sgd_without_momentum_is_coupled_step_for_step(
    problem, weight_decay, lr, decay_per_step
):
    """Plain tensors, the intercept in a weight_decay=0 group, torch.optim.SGD the oracle."""
    X, y = torch.from_numpy(problem.X), torch.from_numpy(problem.y)

    def trajectory(optimizer_class, **kwargs) -> list[torch.Tensor]:
        w = torch.zeros(problem.n_features, dtype=torch.float64)
        b = torch.zeros((), dtype=torch.float64)
        groups = [{"params": [w]}, {"params": [b], "weight_decay": 0.0}]
        optimizer = optimizer_class(groups, lr=lr, weight_decay=weight_decay, **kwargs)
        schedule = torch.optim.lr_scheduler.ExponentialLR(optimizer, decay_per_step)
        path = []
        for _ in range(25):
            residual = X @ w + b - y if problem.fit_intercept else X @ w - y
            w.grad = X.T @ residual / problem.n_samples
            b.grad = residual.mean() if problem.fit_intercept else torch.zeros_like(b)
            optimizer.step()
            schedule.step()
            path.append(w.clone())
        return path

    decoupled = trajectory(l2optim.SGD, decoupled_weight_decay=True)
    coupled = trajectory(torch.optim.SGD)
    for ours, theirs in zip(decoupled, coupled, strict=True):
        torch.testing.assert_close(ours, theirs, rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize("scaling", ["lr", "schedule", "none"])
@settings(max_examples=8, phases=NO_SHRINK)
@given(
    data=st.data(),
    kind=st.sampled_from(["plain", "momentum", "nesterov"]),
    problem=regressions(),
    ridge_weight_decay=weight_decays(),
)
def test_decoupled_sgd_reaches_ridge_at_converted_weight_decay(
    data, scaling, kind, problem, ridge_weight_decay
):
    """The decoupled λ from ``decoupled_from_coupled`` lands on ridge at the coupled λ.

    ``"schedule"`` runs at a constant lr that is a drawn fraction of the initial lr (a
    ConstantLR scheduler that never ends), so s = lr/initial_lr is not 1.
    """
    options = data.draw(sgd_settings(kind))
    fraction = data.draw(st.floats(0.5, 0.95))
    lr_factor = data.draw(st.floats(0.2, 0.9)) if scaling == "schedule" else 1.0
    damped = 1 - options["dampening"]
    lr = fraction * max_stable_lr(
        problem, ridge_weight_decay, options["momentum"], options["nesterov"]
    )
    lr /= damped
    initial_lr = lr / lr_factor
    weight_decay = conversions.decoupled_from_coupled(
        ridge_weight_decay,
        lr=lr,
        initial_lr=initial_lr,
        weight_decay_scaling=scaling,
        momentum=options["momentum"],
        dampening=options["dampening"],
    )
    scale = {"lr": lr, "schedule": lr_factor, "none": 1.0}[scaling]
    assume(scale * weight_decay < 0.9)  # the optimizer refuses 1 − s·λ <= 0
    M, _ = sgd_affine_map(problem, lr=lr, shrink=scale * weight_decay, **options)
    steps = _sgd_steps(M)

    def make_optimizer(groups: list[dict]) -> torch.optim.Optimizer:
        optimizer = l2optim.SGD(
            groups,
            lr=initial_lr,
            decoupled_weight_decay=True,
            weight_decay_scaling=scaling,
            **options,
        )
        # Holds lr at lr_factor·initial_lr for the whole run; records initial_lr.
        torch.optim.lr_scheduler.ConstantLR(optimizer, factor=lr_factor, total_iters=10**9)
        return optimizer

    w, b = _fit(problem, make_optimizer, weight_decay, steps)

    w_star, b_star = ridge(problem, ridge_weight_decay)
    scale_of_answer = max(1.0, float(np.max(np.abs(np.append(w_star, b_star)))))
    assert _distance(w, b, w_star, b_star) <= SGD_TOLERANCE * scale_of_answer


# -- 3. decoupled Adam and RMSprop converge into the box -------------------------------

BOX_STEPS = 3000
BOX_FINAL_LR = 1e-3
BOX_TOLERANCE = 0.1  # distance to the box solution, in units of the radius 1/λ
BOX_OVERSHOOT = 0.02  # allowed ‖w‖∞ beyond the radius, in units of the radius
BOX_KKT_TOLERANCE = 0.1  # projected gradient, relative to max(1, ‖∇ at 0‖∞)
DECOUPLED_ADAPTIVE = {
    # (optimizer, the box radius times λ): the momentum buffer of RMSprop sums
    # 1/(1 − μ) normalised gradients, so its box is (1 − μ)⁻¹ times wider. Centered
    # RMSprop has no box: ṽ = v − ḡ² → 0 as the gradient settles, so g/√ṽ is unbounded.
    "adamw": (lambda g: l2optim.AdamW(g, lr=0.1, betas=(0.9, 0.99)), 1.0),
    "rmspropw": (lambda g: l2optim.RMSpropW(g, lr=0.1), 1.0),
    "rmspropw-momentum": (lambda g: l2optim.RMSpropW(g, lr=0.02, momentum=0.5), 2.0),
}


@pytest.mark.parametrize("name", list(DECOUPLED_ADAPTIVE))
@settings(max_examples=8, phases=NO_SHRINK)
@given(problem=regressions(), tightness=st.floats(1.5, 4.0))
def test_decoupled_adaptive_converges_into_the_box(name, problem, tightness):
    """λ puts the least-squares solution ``tightness`` times outside the box.

    Tolerances are loose and stated above: convergence into the box is slow.
    """
    make_optimizer, radius_times_decay = DECOUPLED_ADAPTIVE[name]
    w_ls, _ = ridge(problem, 0.0)
    radius = float(np.max(np.abs(w_ls))) / tightness
    weight_decay = radius_times_decay / radius
    w_box, b_box = box_least_squares(problem, radius)
    w_ridge, b_ridge = ridge(problem, weight_decay)
    # Far enough apart that being near one means being away from the other.
    assume(_distance(w_box, b_box, w_ridge, b_ridge) > 3 * BOX_TOLERANCE * radius)
    assume(0.1 * weight_decay < 1)  # the optimizer refuses 1 − lr·λ <= 0

    w, b = _fit(problem, make_optimizer, weight_decay, BOX_STEPS, final_lr_factor=BOX_FINAL_LR)

    assert np.max(np.abs(w)) <= radius * (1 + BOX_OVERSHOOT)
    assert _distance(w, b, w_box, b_box) <= BOX_TOLERANCE * radius
    assert _distance(w, b, w_ridge, b_ridge) > 2 * BOX_TOLERANCE * radius
    gradient_scale = max(1.0, float(np.max(np.abs(problem.gradient(np.zeros_like(w), 0.0)[0]))))
    assert box_kkt_residual(problem, w, b, radius) <= BOX_KKT_TOLERANCE * gradient_scale


# -- 4. the first step, exactly --------------------------------------------------------

FIRST_STEP_CASES = [
    ("sgd", {}),
    ("sgd", {"momentum": 0.9, "dampening": 0.5}),
    ("sgd", {"momentum": 0.9, "nesterov": True}),
    ("adam", {}),
    ("adam", {"amsgrad": True}),
    ("rmsprop", {}),
    ("rmsprop", {"centered": True}),
    ("rmsprop", {"momentum": 0.9}),
]
OPTIMIZER_CLASSES = {"sgd": l2optim.SGD, "adam": l2optim.Adam, "rmsprop": l2optim.RMSprop}
FORMS = [("coupled", "lr"), ("decoupled", "lr"), ("decoupled", "schedule"), ("decoupled", "none")]


def _expected_first_step(
    name: str, options: dict, w: np.ndarray, g: np.ndarray, lr: float, coupled: float
) -> np.ndarray:
    """The base update of the first step for gradient g (with λ·w already added if coupled).

    SGD's first buffer is g itself, undamped; Adam's bias corrections make m̂ = g and
    v̂ = g²; RMSprop's v = (1 − α)g², less ((1 − α)g)² when centered.
    """
    direction = g + coupled * w
    eps = 1e-8
    if name == "sgd":
        return -lr * (1 + options.get("momentum", 0.0) * options.get("nesterov", False)) * direction
    if name == "adam":
        return -lr * direction / (np.abs(direction) + eps)
    alpha = 0.99
    second_moment = (1 - alpha) * direction**2
    if options.get("centered"):
        second_moment = second_moment - ((1 - alpha) * direction) ** 2
    return -lr * direction / (np.sqrt(second_moment) + eps)


@pytest.mark.parametrize("form,scaling", FORMS)
@pytest.mark.parametrize("name,options", FIRST_STEP_CASES)
@settings(max_examples=10)
@given(
    w=hnp.arrays(np.float64, 6, elements=st.floats(-3, 3)),
    g=hnp.arrays(np.float64, 6, elements=st.floats(-3, 3)),
    lr=st.floats(1e-3, 0.5),
    weight_decay=weight_decays(max_exponent=0.0),
    initial_lr=st.floats(0.5, 2.0),
)
def test_first_step_is_exact(name, options, form, scaling, w, g, lr, weight_decay, initial_lr):
    """Coupled: base(g + λw). Decoupled: −s·λ·w + base(g), s = lr, lr/initial_lr or 1."""
    decoupled = form == "decoupled"
    scale = {"lr": lr, "schedule": lr / initial_lr, "none": 1.0}[scaling]
    assume(not decoupled or scale * weight_decay < 1)
    parameter = torch.tensor(w)
    parameter.grad = torch.tensor(g)
    # "schedule" reads the group's own reference lr, lr_ref.
    group = {"params": [parameter], "lr_ref": initial_lr}
    optimizer = OPTIMIZER_CLASSES[name](
        [group],
        lr=lr,
        weight_decay=weight_decay,
        decoupled_weight_decay=decoupled,
        weight_decay_scaling=scaling,
        **options,
    )
    optimizer.step()

    if decoupled:
        expected = -scale * weight_decay * w + _expected_first_step(name, options, w, g, lr, 0.0)
    else:
        expected = _expected_first_step(name, options, w, g, lr, weight_decay)
    np.testing.assert_allclose(parameter.numpy() - w, expected, rtol=1e-9, atol=1e-12)
    np.testing.assert_array_equal(parameter.grad.numpy(), g)  # the user's gradient is untouched
