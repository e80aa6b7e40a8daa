"""l2optim.conversions: closed forms, round trips, the ridge oracle, and bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest
from _profiles import examples
from hypothesis import given, settings
from hypothesis import strategies as st
from strategies import regressions, ridge, sgd_affine_map, weight_decays

from l2optim import conversions

SCALINGS = ["lr", "schedule", "corrected", "none"]
positive = st.floats(1e-4, 1e2)
fractions = st.just(0.0) | st.floats(0.0, 0.99)
counts = st.integers(1, 10**6)


@st.composite
def batches(draw: st.DrawFn) -> dict:
    """batch_size ≤ n_samples."""
    n_samples = draw(counts)
    return {"batch_size": draw(st.integers(1, n_samples)), "n_samples": n_samples}


# -- closed forms ----------------------------------------------------------------------


@settings(max_examples=examples(50))
@given(weight_decay=positive, lr=positive, lr_ref=positive, momentum=fractions,
       dampening=fractions)
def test_coupled_from_decoupled_formula_per_scaling(weight_decay, lr, lr_ref, momentum,
                                                    dampening):
    """λ_c = s·λ·(1 − μ)/(lr·(1 − d)) with s = lr, lr/lr_ref, 1 (d ignored if μ = 0)."""
    ratio = (1 - momentum) / (1 - dampening) if momentum else 1.0
    expected = {
        "lr": weight_decay * ratio,
        "schedule": weight_decay * ratio / lr_ref,
        "none": weight_decay * ratio / lr,
    }
    for scaling, value in expected.items():
        got = conversions.coupled_from_decoupled(
            weight_decay, lr=lr, lr_ref=lr_ref, momentum=momentum,
            dampening=dampening, weight_decay_scaling=scaling,
        )
        assert got == pytest.approx(value, rel=1e-12)


def test_plain_sgd_with_lr_scaling_is_the_identity():
    assert conversions.coupled_from_decoupled(0.37, lr=0.05) == 0.37
    assert conversions.decoupled_from_coupled(0.37, lr=0.05) == 0.37


def test_lr_ref_defaults_to_lr():
    assert conversions.coupled_from_decoupled(
        0.2, lr=0.5, weight_decay_scaling="schedule"
    ) == conversions.coupled_from_decoupled(0.2, lr=0.5, weight_decay_scaling="none")


@pytest.mark.parametrize(
    "convert", [conversions.coupled_from_decoupled, conversions.decoupled_from_coupled]
)
def test_initial_lr_is_the_deprecated_name_of_lr_ref(convert):
    settings_ = {"lr": 0.05, "momentum": 0.9, "weight_decay_scaling": "schedule"}
    with pytest.warns(DeprecationWarning, match="initial_lr is deprecated.*pass lr_ref"):
        old = convert(0.2, initial_lr=0.1, **settings_)
    assert old == convert(0.2, lr_ref=0.1, **settings_)
    with pytest.raises(TypeError, match="give lr_ref only"):
        convert(0.2, lr_ref=0.1, initial_lr=0.1, **settings_)


def test_published_values():
    # Loshchilov & Hutter's AdamW λ = 0.025 at α = 1e-3 is torch's weight_decay = 25.
    assert conversions.torch_from_paper(0.025, lr=1e-3) == pytest.approx(25.0)
    # λ_norm = 0.05 over 100 epochs of CIFAR-10 (50 000 images) at batch 128.
    assert conversions.weight_decay_from_normalized(
        0.05, batch_size=128, n_samples=50_000, n_epochs=100
    ) == pytest.approx(0.05 * math.sqrt(128 / 5e6))
    # AdamW at η = 1e-3, λ = 0.1: τ_iter = 10 000 steps; at N/b = 1000 steps an epoch, 10.
    assert conversions.adamw_timescale(0.1, lr=1e-3).iterations == pytest.approx(1e4)
    assert conversions.adamw_timescale(
        0.1, lr=1e-3, batch_size=50, n_samples=50_000
    ).epochs == pytest.approx(10.0)


# -- round trips -----------------------------------------------------------------------


@settings(max_examples=examples(100))
@given(weight_decay=st.floats(0.0, 1e3), lr=positive, lr_ref=positive,
       momentum=fractions, dampening=fractions, scaling=st.sampled_from(SCALINGS))
def test_coupled_decoupled_round_trip(weight_decay, lr, lr_ref, momentum, dampening,
                                      scaling):
    settings_ = {"lr": lr, "lr_ref": lr_ref, "momentum": momentum,
                 "dampening": dampening, "weight_decay_scaling": scaling}
    there = conversions.coupled_from_decoupled(weight_decay, **settings_)
    back = conversions.decoupled_from_coupled(there, **settings_)
    assert back == pytest.approx(weight_decay, rel=1e-12, abs=1e-300)


@settings(max_examples=examples(100))
@given(weight_decay=st.floats(0.0, 1e3), lr=positive)
def test_torch_paper_round_trip(weight_decay, lr):
    torch_value = conversions.torch_from_paper(weight_decay, lr=lr)
    assert conversions.paper_from_torch(torch_value, lr=lr) == pytest.approx(weight_decay,
                                                                             rel=1e-12)


@settings(max_examples=examples(100))
@given(weight_decay=st.floats(0.0, 1e3), batch=batches(), n_epochs=st.floats(0.1, 1e3))
def test_normalized_round_trip(weight_decay, batch, n_epochs):
    norm = conversions.normalized_weight_decay(weight_decay, n_epochs=n_epochs, **batch)
    back = conversions.weight_decay_from_normalized(norm, n_epochs=n_epochs, **batch)
    assert back == pytest.approx(weight_decay, rel=1e-12)


@settings(max_examples=examples(100))
@given(weight_decay=st.floats(1e-6, 1e3), lr=positive, batch=st.none() | batches())
def test_timescale_round_trip(weight_decay, lr, batch):
    tau = conversions.adamw_timescale(weight_decay, lr=lr, **(batch or {}))
    back = conversions.weight_decay_from_timescale(lr=lr, iterations=tau.iterations)
    assert back == pytest.approx(weight_decay, rel=1e-12)
    if batch is not None:
        back = conversions.weight_decay_from_timescale(lr=lr, epochs=tau.epochs, **batch)
        assert back == pytest.approx(weight_decay, rel=1e-12)


@settings(max_examples=examples(30))
@given(weight_decay=positive, lr=positive, batch=batches())
def test_timescale_in_epochs_is_iterations_times_batch_fraction(weight_decay, lr, batch):
    iterations = conversions.adamw_timescale(weight_decay, lr=lr).iterations
    epochs = conversions.adamw_timescale(weight_decay, lr=lr, **batch).epochs
    assert epochs == pytest.approx(iterations * batch["batch_size"] / batch["n_samples"])


# -- the fixed point of decoupled SGD is ridge at the converted λ ------------------------


@settings(max_examples=examples(60))
@given(
    problem=regressions(),
    weight_decay=weight_decays(),
    lr=st.floats(1e-3, 1.0),
    lr_factor=st.floats(0.1, 1.0),
    momentum=st.floats(0.0, 0.95),
    dampening=st.floats(0.0, 0.9),
    nesterov=st.booleans(),
    scaling=st.sampled_from(SCALINGS),
)
def test_fixed_point_of_decoupled_sgd_is_ridge(
    problem, weight_decay, lr, lr_factor, momentum, dampening, nesterov, scaling
):
    """Solve z = Mz + k for torch's SGD with decoupled decay; compare with closed-form ridge.

    No optimizer runs here: the fixed point is exact whether or not SGD would reach it.
    """
    if nesterov:
        dampening = 0.0  # torch's Nesterov requires it
    lr_ref = lr / lr_factor
    scale = {"lr": lr, "schedule": lr_factor, "corrected": lr * lr_factor, "none": 1.0}[scaling]
    weight_decay = min(weight_decay, 0.99 / scale)  # torch refuses a factor 1 − s·λ <= 0
    M, k = sgd_affine_map(problem, lr=lr, shrink=scale * weight_decay, momentum=momentum,
                          dampening=dampening, nesterov=nesterov)
    state = np.linalg.solve(np.eye(len(k)) - M, k)
    size = len(k) // 2

    coupled = conversions.coupled_from_decoupled(
        weight_decay, lr=lr, lr_ref=lr_ref, momentum=momentum,
        dampening=dampening, weight_decay_scaling=scaling,
    )
    w_star, b_star = ridge(problem, coupled)
    expected = np.append(w_star, b_star)[:size]
    np.testing.assert_allclose(state[:size], expected, rtol=1e-7, atol=1e-9)


# -- bad input -------------------------------------------------------------------------

BAD_INPUT = [
    (conversions.coupled_from_decoupled, (-1.0,), {"lr": 0.1}, "weight_decay must be >= 0"),
    (conversions.coupled_from_decoupled, (1.0,), {"lr": 0.0}, "lr must be > 0"),
    (conversions.coupled_from_decoupled, (1.0,), {"lr": 0.1, "momentum": 1.0},
     r"momentum must be in \[0, 1\)"),
    (conversions.decoupled_from_coupled, (1.0,), {"lr": 0.1, "dampening": -0.1},
     r"dampening must be in \[0, 1\)"),
    (conversions.decoupled_from_coupled, (1.0,), {"lr": 0.1, "lr_ref": -1.0},
     "lr_ref must be > 0"),
    (conversions.decoupled_from_coupled, (1.0,), {"lr": 0.1, "weight_decay_scaling": "epoch"},
     "weight_decay_scaling.*'lr', 'schedule', 'corrected', 'none'"),
    (conversions.torch_from_paper, (float("nan"),), {"lr": 0.1}, "weight_decay must be finite"),
    (conversions.paper_from_torch, (0.1,), {"lr": float("inf")}, "lr must be finite"),
    (conversions.normalized_weight_decay, (0.1,),
     {"batch_size": 0, "n_samples": 10, "n_epochs": 1},
     r"batch_size must be an integer in \[1, n_samples=10\], got 0"),
    (conversions.weight_decay_from_normalized, (0.1,),
     {"batch_size": 20, "n_samples": 10, "n_epochs": 1},
     r"batch_size must be an integer in \[1, n_samples=10\], got 20"),
    (conversions.weight_decay_from_normalized, (0.1,),
     {"batch_size": 2, "n_samples": 10, "n_epochs": 0}, "n_epochs must be > 0"),
    (conversions.adamw_timescale, (0.0,), {"lr": 0.1}, "weight_decay must be > 0"),
    (conversions.adamw_timescale, (0.1,), {"lr": 0.1, "batch_size": 4},
     "batch_size and n_samples go together"),
    (conversions.weight_decay_from_timescale, (), {"lr": 0.1, "iterations": -2.0},
     "iterations must be > 0"),
]


@pytest.mark.parametrize("function,args,kwargs,message", BAD_INPUT)
def test_bad_input_names_the_argument_and_range(function, args, kwargs, message):
    with pytest.raises(ValueError, match=message):
        function(*args, **kwargs)


@pytest.mark.parametrize("value", ["0.1", None, 1.5])
def test_counts_must_be_integers(value):
    with pytest.raises(TypeError, match=r"batch_size must be an integer in \[1, n_samples=10\]"):
        conversions.normalized_weight_decay(0.1, batch_size=value, n_samples=10, n_epochs=1)


def test_public_names():
    assert sorted(conversions.__all__) == sorted(
        name for name in vars(conversions) if callable(getattr(conversions, name))
        and not name.startswith("_") and getattr(conversions, name).__module__
        == conversions.__name__
    )


# -- where lr cancels, it is not asked for -----------------------------------------------


@settings(max_examples=50)
@given(weight_decay=positive, lr=positive, lr_ref=positive, momentum=fractions,
       dampening=fractions)
def test_lr_is_optional_exactly_where_it_cancels(weight_decay, lr, lr_ref, momentum,
                                                 dampening):
    shape = {"momentum": momentum, "dampening": dampening}
    for convert in (conversions.coupled_from_decoupled, conversions.decoupled_from_coupled):
        # "lr": s = lr cancels.
        assert convert(weight_decay, **shape) == pytest.approx(
            convert(weight_decay, lr=lr, **shape), rel=1e-12)
        # "schedule" with the schedule's start given: s = lr/lr_ref, lr cancels.
        schedule = {**shape, "weight_decay_scaling": "schedule", "lr_ref": lr_ref}
        assert convert(weight_decay, **schedule) == pytest.approx(
            convert(weight_decay, lr=lr, **schedule), rel=1e-12)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"weight_decay_scaling": "none"}, "lr is needed with weight_decay_scaling='none'"),
        ({"weight_decay_scaling": "schedule"}, "lr is needed with weight_decay_scaling='schedule'"
         " unless lr_ref is given"),
    ],
)
def test_lr_is_asked_for_where_it_does_not_cancel(kwargs, message):
    for convert in (conversions.coupled_from_decoupled, conversions.decoupled_from_coupled):
        with pytest.raises(TypeError, match=message):
            convert(0.1, momentum=0.9, **kwargs)


# -- the time scale says its unit ------------------------------------------------------------


def test_timescale_names_its_units():
    tau = conversions.adamw_timescale(0.1, lr=1e-3, batch_size=256, n_samples=50_000)
    assert isinstance(tau, conversions.Timescale)
    assert tau.iterations == pytest.approx(1e4)
    assert tau.epochs == pytest.approx(1e4 * 256 / 50_000)  # 51.2 epochs, 10 000 steps
    steps_only = conversions.adamw_timescale(0.1, lr=1e-3)
    assert steps_only.iterations == pytest.approx(1e4) and steps_only.epochs is None
    with pytest.raises(AttributeError):
        tau.iterations = 1.0  # frozen
    assert conversions.weight_decay_from_timescale(
        lr=1e-3, epochs=tau.epochs, batch_size=256, n_samples=50_000
    ) == pytest.approx(0.1)
    assert conversions.weight_decay_from_timescale(lr=1e-3, iterations=1e4) == pytest.approx(0.1)
    with pytest.raises(TypeError, match="exactly one of iterations or epochs"):
        conversions.weight_decay_from_timescale(lr=1e-3, iterations=1e4, epochs=3.0)
    with pytest.raises(TypeError, match="epochs needs batch_size and n_samples"):
        conversions.weight_decay_from_timescale(lr=1e-3, epochs=3.0)


# -- moving λ to another run at the same time scale --------------------------------------


@st.composite
def training_runs(draw: st.DrawFn) -> conversions.TrainingRun:
    batch = draw(batches())
    return conversions.TrainingRun(lr=draw(positive), steps=draw(counts), **batch)


@settings(max_examples=examples(100))
@given(weight_decay=positive, source=training_runs(), target=training_runs())
def test_transfer_keeps_the_timescale_it_names(weight_decay, source, target):
    def timescale(lam, run):
        return conversions.adamw_timescale(
            lam, lr=run.lr, batch_size=run.batch_size, n_samples=run.n_samples
        )

    moved = conversions.transfer_weight_decay(weight_decay, source=source, target=target)
    assert timescale(moved, target).epochs == pytest.approx(
        timescale(weight_decay, source).epochs, rel=1e-12
    )
    moved = conversions.transfer_weight_decay(
        weight_decay, source=source, target=target, keep="iterations"
    )
    assert timescale(moved, target).iterations == pytest.approx(
        timescale(weight_decay, source).iterations, rel=1e-12
    )
    moved = conversions.transfer_weight_decay(
        weight_decay, source=source, target=target, keep="run_fraction"
    )
    assert timescale(moved, target).iterations / target.steps == pytest.approx(
        timescale(weight_decay, source).iterations / source.steps, rel=1e-12
    )
    # And back.
    back = conversions.transfer_weight_decay(moved, source=target, target=source, keep="run_fraction")
    assert back == pytest.approx(weight_decay, rel=1e-12)


def test_transfer_refuses_what_it_cannot_read():
    bare = conversions.TrainingRun(lr=1e-3)
    full = conversions.TrainingRun(lr=1e-3, batch_size=32, n_samples=1000, steps=500)
    with pytest.raises(TypeError, match="keep='epochs' needs batch_size and n_samples of both"):
        conversions.transfer_weight_decay(0.1, source=full, target=bare)
    with pytest.raises(TypeError, match="keep='run_fraction' needs steps of both"):
        conversions.transfer_weight_decay(0.1, source=bare, target=full, keep="run_fraction")
    with pytest.raises(ValueError, match="keep must be one of 'epochs', 'iterations', 'run_fraction', got 'steps'"):
        conversions.transfer_weight_decay(0.1, source=full, target=full, keep="steps")
    with pytest.raises(TypeError, match="target must be a TrainingRun, got dict"):
        conversions.transfer_weight_decay(0.1, source=full, target={"lr": 1e-3})
    with pytest.raises(ValueError, match="lr must be > 0"):
        conversions.TrainingRun(lr=0.0)
    with pytest.raises(ValueError, match=r"batch_size must be an integer in \[1, n_samples=10\], got 20"):
        conversions.TrainingRun(lr=1e-3, batch_size=20, n_samples=10)
    assert conversions.transfer_weight_decay(0.1, source=bare, target=bare, keep="iterations") == 0.1
