r"""Both forms of weight decay against closed forms, full batch, float64.

The loss is (1/2n)‖Xw + b − y‖² + (λ/2)‖w‖², the intercept b undecayed. Oracles live in
``strategies``: ridge, least squares in a box (scipy), the largest stable step and the
affine map of SGD on this quadratic. Every optimizer comes from l2optim.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pytest
import torch
from _profiles import examples
from hypothesis import Phase, given, note, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from strategies import (
    BoxProblem,
    Regression,
    box_distance_bound,
    box_least_squares,
    box_problems,
    max_stable_lr,
    regressions,
    ridge,
    ridge_distance_bound,
    ridge_hessian,
    sgd_affine_map,
    spectral_radius,
    weight_decays,
)

import l2optim
from l2optim import conversions

MakeOptimizer = Callable[[list[dict]], torch.optim.Optimizer]
DistanceBound = Callable[[np.ndarray, float], float]

# Training runs of thousands of steps: a failure is reported as found, not shrunk for minutes.
NO_SHRINK = [Phase.explicit, Phase.reuse, Phase.generate]
CHECK_EVERY = 10  # steps between two evaluations of the certificate


# -- training on a regression problem until it is certified -----------------------------


@dataclass(frozen=True)
class Training:
    """Where a run ended: weights, intercept, steps taken and the certified distance there."""

    w: np.ndarray
    b: float
    steps: int
    bound: float


def _linear_model(problem: Regression) -> torch.nn.Linear:
    model = torch.nn.Linear(
        problem.n_features, 1, bias=problem.fit_intercept, dtype=torch.float64
    )
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.zero_()
    return model


def _train(
    problem: Regression,
    make_optimizer: MakeOptimizer,
    weight_decay: float,
    *,
    bound: DistanceBound,
    target: float,
    budget: int,
    lr_decay: float = 1.0,
) -> Training:
    """Full-batch training of a zero-initialised Linear, bias exempt via ``decay_groups``.

    Stops as soon as ``bound(w, b)``, a certified distance to the answer, is at most
    ``target``, or after ``budget`` steps. The lr is multiplied by ``lr_decay`` each
    step. Gradients are the closed form (1/n)Xᵀr and mean(r): the same numbers as
    autograd, at a fraction of its cost.
    """
    model = _linear_model(problem)
    optimizer = make_optimizer(l2optim.decay_groups(model, weight_decay))
    schedule = torch.optim.lr_scheduler.ExponentialLR(optimizer, lr_decay)
    X, y = torch.from_numpy(problem.X), torch.from_numpy(problem.y)
    distance, step = math.inf, 0
    while step < budget and distance > target:
        with torch.no_grad():
            residual = model(X).squeeze(1) - y
            model.weight.grad = (residual @ X / problem.n_samples).unsqueeze(0)
            if model.bias is not None:
                model.bias.grad = residual.mean().reshape(1)
        optimizer.step()
        schedule.step()
        step += 1
        if step % CHECK_EVERY == 0 or step == budget:
            w, b = _weights(model)
            distance = bound(w, b)
    w, b = _weights(model)
    return Training(w=w, b=b, steps=step, bound=distance)


def _weights(model: torch.nn.Linear) -> tuple[np.ndarray, float]:
    bias = float(model.bias.detach()) if model.bias is not None else 0.0
    return model.weight.detach().numpy()[0].copy(), bias


def _ridge_bound(problem: Regression, weight_decay: float) -> DistanceBound:
    """‖θ − θ*‖₂ ≤ ‖∇F(θ)‖/μ for the ridge loss F at ``weight_decay``."""
    smallest = float(np.linalg.eigvalsh(ridge_hessian(problem, weight_decay))[0])
    return lambda w, b: ridge_distance_bound(problem, weight_decay, w, b, smallest)


def _distance(w: np.ndarray, b: float, w_ref: np.ndarray, b_ref: float) -> float:
    """max-norm distance between (w, b) and (w_ref, b_ref)."""
    return float(np.max(np.abs(np.append(w - w_ref, b - b_ref))))


def _scale(w: np.ndarray, b: float) -> float:
    """max(1, ‖θ‖∞): the unit of the relative tolerances."""
    return max(1.0, float(np.max(np.abs(np.append(w, b)))))


def _steps_to(tolerance: float, rate: float) -> int:
    """Steps for an error contracting by ``rate`` per step to fall by ``tolerance``.

    Doubled, plus a margin, for the transient growth of non-normal momentum maps.
    """
    rate = max(rate, 1e-12)  # 0 when one step lands on the answer (one feature, lr = 1/h)
    return 2 * math.ceil(math.log(tolerance) / math.log(rate)) + 50


# -- 1. coupled SGD, Adam and RMSprop converge to ridge ---------------------------------

SGD_TOLERANCE = 1e-7  # certified ‖θ − θ*‖₂, relative to max(1, ‖θ*‖∞)
# The budget is the steps for the error of SGD's affine map to contract by 1e-10 (its
# spectral radius, doubled for transients): 3 decades to spare over the tolerance, which
# covers the certificate's factor of at most cond(H) ≤ 110. Strategy bounds (cond(AᵀA/n)
# ≤ 10, λ ≤ 10, lr ≥ half the step bound, momentum ≤ 0.9) keep it below this:
MAX_SGD_STEPS = 6000


@st.composite
def sgd_settings(draw: st.DrawFn, kind: str) -> dict:
    """momentum, dampening and nesterov for ``kind`` in plain / momentum / nesterov."""
    if kind == "plain":
        return {"momentum": 0.0, "dampening": 0.0, "nesterov": False}
    momentum = draw(st.floats(0.1, 0.9))
    dampening = draw(st.floats(0.0, 0.5)) if kind == "momentum" else 0.0
    return {"momentum": momentum, "dampening": dampening, "nesterov": kind == "nesterov"}


def _sgd_budget(M: np.ndarray) -> int:
    """Steps for SGD's map M to contract by 1e-10; the strategies keep it bounded."""
    rate = spectral_radius(M)
    assert rate < 1, f"spectral radius {rate}: the drawn lr is not stable"
    budget = _steps_to(1e-10, rate)
    assert budget <= MAX_SGD_STEPS, f"rate {rate}: the strategy drew a slower problem"
    return budget


def _stable_edge(map_at: Callable[[float], np.ndarray]) -> float:
    """The lr where the spectral radius of ``map_at(lr)`` crosses 1, by bisection in log lr.

    The radius is below 1 for small lr > 0 (the map tends to the identity less a
    contraction) and above it for large lr.
    """
    low, high = 1e-6, 1e3
    for _ in range(60):
        middle = math.sqrt(low * high)
        low, high = (middle, high) if spectral_radius(map_at(middle)) < 1 else (low, middle)
    return low


@pytest.mark.parametrize("kind", ["plain", "momentum", "nesterov"])
@settings(max_examples=examples(10), phases=NO_SHRINK)
@given(data=st.data(), problem=regressions(), weight_decay=weight_decays())
def test_coupled_sgd_converges_to_ridge(data, kind, problem, weight_decay):
    """lr is a drawn fraction of the data's step bound 2(1 + μ)/(L + λ), on (1 − d)·lr."""
    options = data.draw(sgd_settings(kind))
    fraction = data.draw(st.floats(0.5, 0.95))
    damped = 1 - options["dampening"]
    lr = fraction * max_stable_lr(problem, weight_decay, options["momentum"], options["nesterov"])
    lr /= damped
    M, _ = sgd_affine_map(problem, lr=lr, coupled=weight_decay, **options)
    w_star, b_star = ridge(problem, weight_decay)
    target = SGD_TOLERANCE * _scale(w_star, b_star)

    run = _train(
        problem,
        lambda g: l2optim.SGD(g, lr=lr, **options),
        weight_decay,
        bound=_ridge_bound(problem, weight_decay),
        target=target,
        budget=_sgd_budget(M),
    )

    assert run.bound <= target, f"not certified after {run.steps} steps"
    assert _distance(run.w, run.b, w_star, b_star) <= target  # the closed form agrees


@settings(max_examples=examples(8))
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


@settings(max_examples=examples(30))
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


# Adam and RMSprop move each coordinate by about lr per step, whatever the gradient's
# scale: the lr is a fraction of max(1, ‖θ*‖∞) so that the work does not depend on the
# answer's size, and decays by ADAPTIVE_LR_DECAY per step so that the iterates settle.
ADAPTIVE_TOLERANCE = 1e-8  # certified ‖θ − θ*‖₂, relative to max(1, ‖θ*‖∞)
ADAPTIVE_LR_DECAY = 0.995
# A cap on the work, past which the lr has fallen 1e-4-fold: runs stop when certified.
ADAPTIVE_BUDGET = 1600
COUPLED_ADAPTIVE = {  # (optimizer for an lr, lr in units of max(1, ‖θ*‖∞))
    "adam": (lambda g, lr: l2optim.Adam(g, lr=lr), 0.1),
    "adam-amsgrad": (lambda g, lr: l2optim.Adam(g, lr=lr, amsgrad=True), 0.1),
    "rmsprop": (lambda g, lr: l2optim.RMSprop(g, lr=lr), 0.1),
    "rmsprop-centered": (lambda g, lr: l2optim.RMSprop(g, lr=lr, centered=True), 0.1),
    # The buffer sums 1/(1 − μ) = 10 normalised steps: a tenth of the lr.
    "rmsprop-momentum": (lambda g, lr: l2optim.RMSprop(g, lr=lr, momentum=0.9), 0.01),
}


@pytest.mark.parametrize("name", list(COUPLED_ADAPTIVE))
@settings(max_examples=examples(8), phases=NO_SHRINK)
@given(problem=regressions(), weight_decay=weight_decays())
def test_coupled_adaptive_converges_to_ridge(name, problem, weight_decay):
    make_optimizer, lr = COUPLED_ADAPTIVE[name]
    w_star, b_star = ridge(problem, weight_decay)
    scale = _scale(w_star, b_star)

    run = _train(
        problem,
        lambda groups: make_optimizer(groups, lr * scale),
        weight_decay,
        bound=_ridge_bound(problem, weight_decay),
        target=ADAPTIVE_TOLERANCE * scale,
        budget=ADAPTIVE_BUDGET,
        lr_decay=ADAPTIVE_LR_DECAY,
    )

    assert run.bound <= ADAPTIVE_TOLERANCE * scale, f"not certified after {run.steps} steps"
    assert _distance(run.w, run.b, w_star, b_star) <= ADAPTIVE_TOLERANCE * scale


# -- 2. decoupled SGD ------------------------------------------------------------------


@settings(max_examples=examples(15))
@given(
    problem=regressions(),
    weight_decay=weight_decays(max_exponent=0.0),
    lr=st.floats(0.01, 0.5),
    decay_per_step=st.floats(0.8, 1.0),
)
def test_decoupled_sgd_without_momentum_is_coupled_step_for_step(
    problem, weight_decay, lr, decay_per_step
):
    """Plain tensors, the intercept in a weight_decay=0 group, torch.optim.SGD the oracle.

    The lr stays below the step bound 2/(L + λ): there the map is a contraction, so the two
    roundings (w·(1 − lr·λ) − lr·g against w − lr·(g + λ·w)) differ by a few ulps a step
    and do not grow. Above it the difference grows with the iterates' unstable mode, as
    any rounding difference would.
    """
    lr = min(lr, 0.95 * max_stable_lr(problem, weight_decay))
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
    size = max(1.0, max(float(w.abs().max()) for w in coupled))
    for ours, theirs in zip(decoupled, coupled, strict=True):
        torch.testing.assert_close(ours, theirs, rtol=0.0, atol=1e-12 * size)


@pytest.mark.parametrize("scaling", ["lr", "schedule", "none"])
@settings(max_examples=examples(8), phases=NO_SHRINK)
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
    ConstantLR scheduler that never ends), so s = lr/initial_lr is not 1. The per-step
    shrink s·λ = λ_c·lr·(1 − d)/(1 − μ) must stay below 1 (the optimizer refuses more):
    the lr is lowered to keep it at most 0.9.
    """
    options = data.draw(sgd_settings(kind))
    fraction = data.draw(st.floats(0.5, 0.95))
    lr_factor = data.draw(st.floats(0.2, 0.9)) if scaling == "schedule" else 1.0
    # Every scaling shrinks by s·λ = λ_c·lr·(1 − d)/(1 − μ) per step at the converted λ.
    shrink_per_lr = ridge_weight_decay * (1 - options["dampening"]) / (1 - options["momentum"])

    def decoupled_map(lr: float) -> np.ndarray:
        return sgd_affine_map(problem, lr=lr, shrink=shrink_per_lr * lr, **options)[0]

    # Decoupled momentum SGD is stable on another range of lr than coupled: its edge by
    # bisection, and at most the lr that shrinks by 0.9 (the optimizer refuses >= 1).
    lr = fraction * min(_stable_edge(decoupled_map), 0.9 / shrink_per_lr)
    initial_lr = lr / lr_factor
    weight_decay = conversions.decoupled_from_coupled(
        ridge_weight_decay,
        lr=lr,
        lr_ref=initial_lr,
        weight_decay_scaling=scaling,
        momentum=options["momentum"],
        dampening=options["dampening"],
    )
    scale = {"lr": lr, "schedule": lr_factor, "none": 1.0}[scaling]
    assert scale * weight_decay == pytest.approx(shrink_per_lr * lr, rel=1e-12)
    w_star, b_star = ridge(problem, ridge_weight_decay)
    target = SGD_TOLERANCE * _scale(w_star, b_star)

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

    run = _train(
        problem,
        make_optimizer,
        weight_decay,
        bound=_ridge_bound(problem, ridge_weight_decay),
        target=target,
        budget=_sgd_budget(decoupled_map(lr)),
    )

    assert run.bound <= target, f"not certified after {run.steps} steps"
    assert _distance(run.w, run.b, w_star, b_star) <= target


# -- 3. decoupled Adam and RMSprop converge into the box -------------------------------

# Certified ‖θ − θ_box‖₂ (the projected-gradient bound, up to 1 + 2·cond(AᵀA/n) ≤ 21
# times the residual), in units of the radius r. Convergence into the box is slow: the
# coordinates inside it settle only as fast as the second-moment average forgets the
# early gradients (β₂ = α = 0.9 here, for short runs), and RMSprop's only as fast as its
# lr falls; the drawn margins (interior coordinates within 0.6·r, multipliers ≥ 0.1·L·r)
# keep every problem away from the degenerate cases that settle slower still.
# RMSpropW's iterates settle a little off the box solution (a drawn example stalled at a
# certified 1.7e-3·r, 1e-4·r in fact): the target is ten times that bound.
BOX_TOLERANCE = 1e-2
BOX_LR_DECAY = 0.997
# A cap on the work, past which the lr has fallen 1e-8-fold: runs stop when certified.
BOX_BUDGET = 6000
DECOUPLED_ADAPTIVE = {
    # (optimizer for an lr, lr in units of r, the box radius times λ): the momentum
    # buffer of RMSprop sums 1/(1 − μ) normalised gradients, so its box is (1 − μ)⁻¹
    # times wider. Centered RMSprop has no box: ṽ = v − ḡ² → 0 as the gradient settles,
    # so g/√ṽ is unbounded. The lr makes the first steps shrink w by lr·λ = 0.5 or 0.4.
    "adamw": (lambda g, lr: l2optim.AdamW(g, lr=lr, betas=(0.9, 0.9)), 0.5, 1.0),
    "rmspropw": (lambda g, lr: l2optim.RMSpropW(g, lr=lr, alpha=0.9), 0.5, 1.0),
    "rmspropw-momentum": (
        lambda g, lr: l2optim.RMSpropW(g, lr=lr, alpha=0.9, momentum=0.5),
        0.2,
        2.0,
    ),
}


@pytest.mark.parametrize("name", list(DECOUPLED_ADAPTIVE))
@settings(max_examples=examples(8), phases=NO_SHRINK)
@given(box=box_problems())
def test_decoupled_adaptive_converges_into_the_box(name, box: BoxProblem):
    """λ = (radius times λ)/r puts the box of the drawn problem where the optimizer's is.

    The run stops when the projected-gradient certificate puts it within BOX_TOLERANCE·r
    of the box solution; scipy's bounded least squares and the drawn solution agree.
    The box solution has coordinates on the boundary, so it is not least squares, and
    ridge at any λ shrinks every coordinate instead of clipping some.
    """
    make_optimizer, lr, radius_times_decay = DECOUPLED_ADAPTIVE[name]
    problem, radius = box.regression, box.radius
    eigenvalues = np.linalg.eigvalsh(problem.data_hessian())
    curvature = (float(eigenvalues[0]), float(eigenvalues[-1]))
    target = BOX_TOLERANCE * radius

    run = _train(
        problem,
        lambda groups: make_optimizer(groups, lr * radius),
        radius_times_decay / radius,
        bound=lambda w, b: box_distance_bound(problem, w, b, radius, curvature),
        target=target,
        budget=BOX_BUDGET,
        lr_decay=BOX_LR_DECAY,
    )

    note(f"steps={run.steps}, certified distance={run.bound / radius:.2e}·r")
    assert run.bound <= target, f"not certified after {run.steps} steps"
    assert _distance(run.w, run.b, box.w, box.b) <= target
    w_scipy, b_scipy = box_least_squares(problem, radius)
    assert _distance(w_scipy, b_scipy, box.w, box.b) <= 1e-9 * radius
    assert np.max(np.abs(run.w)) <= radius + target


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
FORMS = [
    ("coupled", "lr"),
    ("decoupled", "lr"),
    ("decoupled", "schedule"),
    ("decoupled", "corrected"),
    ("decoupled", "none"),
]


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
@settings(max_examples=examples(10))
@given(
    w=hnp.arrays(np.float64, 6, elements=st.floats(-3, 3)),
    g=hnp.arrays(np.float64, 6, elements=st.floats(-3, 3)),
    lr=st.floats(1e-3, 0.5),
    weight_decay=weight_decays(max_exponent=0.0),
    initial_lr=st.floats(0.5, 2.0),
)
def test_first_step_is_exact(name, options, form, scaling, w, g, lr, weight_decay, initial_lr):
    """Coupled: base(g + λw). Decoupled: −s·λ·w + base(g), s = lr, lr/initial_lr,
    lr²/initial_lr or 1."""
    decoupled = form == "decoupled"
    scale = {
        "lr": lr,
        "schedule": lr / initial_lr,
        "corrected": lr * lr / initial_lr,
        "none": 1.0,
    }[scaling]
    if decoupled:  # the optimizer refuses a shrink factor 1 − s·λ <= 0
        weight_decay = min(weight_decay, 0.99 / scale)
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
