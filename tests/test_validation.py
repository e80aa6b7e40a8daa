"""One policy for bad arguments across the λ side: TypeError for a wrong type, ValueError
for a bad value, and a message that names the argument, the value and the allowed range."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
from torch import nn

import l2optim
from l2optim import _validation, conversions


def quadratic(lam: float) -> float:
    return (math.log10(lam) + 3) ** 2


X = np.random.default_rng(0).normal(size=(12, 3))
Y = X.sum(axis=1)

# (call, exception, what the message must contain): each mistake in every module of the
# λ side, the same mistake raising the same type wherever it is made.
CASES = [
    # A count of the wrong type.
    (lambda: l2optim.kfold_splits(10, 2.5), TypeError, "folds must be an integer in [2, n_samples=10], got 2.5"),
    (lambda: l2optim.kfold_splits(10, True), TypeError, "folds must be an integer in [2, n_samples=10], got True"),
    (
        lambda: conversions.normalized_weight_decay(
            0.1, batch_size="3", n_samples=10, n_epochs=1
        ),
        TypeError,
        "batch_size must be an integer in [1, n_samples=10], got '3'",
    ),
    (
        lambda: l2optim.FoldTrainer(nn.Linear(3, 1), X, Y, epochs=2.5),
        TypeError,
        "epochs must be an integer >= 1, got 2.5",
    ),
    (
        lambda: l2optim.select_lambda(quadratic, n_grid=5.5, progress=False),
        TypeError,
        "n_grid must be an integer >= 3, got 5.5",
    ),
    (lambda: l2optim.ridge_cv(X, Y, cv=True), TypeError, "cv must be"),
    # A count out of range.
    (
        lambda: l2optim.kfold_splits(10, 11),
        ValueError,
        "folds must be an integer in [2, n_samples=10], got 11",
    ),
    (
        lambda: l2optim.FoldTrainer(nn.Linear(3, 1), X, Y, epochs=0),
        ValueError,
        "epochs must be an integer >= 1, got 0",
    ),
    (
        lambda: conversions.normalized_weight_decay(0.1, batch_size=0, n_samples=10, n_epochs=1),
        ValueError,
        "batch_size must be an integer in [1, n_samples=10], got 0",
    ),
    (
        lambda: l2optim.select_lambda(quadratic, n_grid=2, progress=False),
        ValueError,
        "n_grid must be an integer >= 3, got 2",
    ),
    (lambda: l2optim.ridge_cv(X, Y, cv=13), ValueError, "cv must be"),
    # A real number of the wrong type, or out of range.
    (lambda: conversions.paper_from_torch("0.1", lr=0.1), TypeError,
     "weight_decay must be a real number, got '0.1'"),
    (lambda: conversions.paper_from_torch(-0.1, lr=0.1), ValueError,
     "weight_decay must be >= 0, got -0.1"),
    (lambda: l2optim.select_lambda(quadratic, xtol="big", progress=False), TypeError,
     "xtol must be a real number, got 'big'"),
    (lambda: l2optim.select_lambda(quadratic, xtol=0.0, progress=False), ValueError,
     "xtol must be > 0, got 0.0"),
    # Bounds.
    (lambda: l2optim.select_lambda(quadratic, bounds="ab", progress=False), TypeError,
     "bounds must be two real numbers (lo, hi)"),
    (lambda: l2optim.select_lambda(quadratic, bounds=(1.0, 0.1), progress=False), ValueError,
     "bounds must satisfy 0 < lo < hi < inf, got (1.0, 0.1)"),
    (lambda: l2optim.ridge_cv(X, Y, bounds=(0.0, 1.0)), ValueError,
     "bounds must satisfy 0 < lo < hi < inf, got (0.0, 1.0)"),
    # Flags, callables, arrays.
    (lambda: l2optim.ridge_cv(X, Y, fit_intercept="yes"), TypeError,
     "fit_intercept must be True or False, got 'yes'"),
    (lambda: l2optim.ridge_cv(X, Y, lambdas=["a"]), TypeError, "lambdas must be"),
    (lambda: l2optim.kfold_objective(None, 10), TypeError, "fit_score must be callable"),
    (lambda: l2optim.FoldTrainer("linear", X, Y), TypeError, "model_factory must be"),
]


@pytest.mark.parametrize(("call", "error", "message"), CASES)
def test_one_exception_type_per_kind_of_mistake(call, error, message):
    with pytest.raises(error) as raised:
        call()
    assert type(raised.value) is error  # not a subclass standing in for the other kind
    assert message in str(raised.value)


def test_counts_accept_integers_of_any_kind_and_whole_floats():
    assert _validation.check_count("n", np.int64(3), low=1) == 3
    assert _validation.check_count("n", 3.0, low=1) == 3
    assert type(_validation.check_count("n", np.int32(3), low=1)) is int


def test_real_checks_return_floats_and_name_the_range():
    assert _validation.check_non_negative("x", 0) == 0.0
    assert _validation.check_positive("x", np.float32(2.5)) == 2.5
    assert _validation.check_fraction("momentum", 0.0) == 0.0
    with pytest.raises(ValueError, match=r"momentum must be in \[0, 1\), got 1.0"):
        _validation.check_fraction("momentum", 1.0)
    with pytest.raises(ValueError, match="lr must be finite, got inf"):
        _validation.check_positive("lr", math.inf)
    with pytest.raises(TypeError, match="lr must be a real number, got True"):
        _validation.check_positive("lr", True)
    with pytest.raises(TypeError, match="lr must be a real number, got None"):
        _validation.check_real("lr", None)


@pytest.mark.parametrize(
    ("kwargs", "value", "message"),
    [
        ({"low": 1, "low_open": True}, 1.0, "eta must be > 1, got 1.0"),
        ({"low": 0, "high": 1, "low_open": True}, 0, "eta must be in (0, 1], got 0"),
        ({"low": 0, "high": 1, "high_open": True}, 1, "eta must be in [0, 1), got 1"),
        ({"high": 2}, 3.5, "eta must be <= 2, got 3.5"),
    ],
)
def test_an_interval_names_its_ends(kwargs, value, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        _validation.check_interval("eta", value, **kwargs)
    with pytest.raises(TypeError, match="eta must be a real number"):
        _validation.check_interval("eta", "1", **kwargs)


def test_the_race_and_the_optimizer_checks_go_through_the_one_layer():
    trainer = l2optim.FoldTrainer(nn.Linear(3, 1), X, Y, epochs=2)
    with pytest.raises(ValueError, match=re.escape("first_fraction must be in (0, 1], got 1.5")):
        l2optim.select_lambda_fast(trainer, first_fraction=1.5)
    with pytest.raises(ValueError, match=re.escape("eta must be > 1, got 1")):
        l2optim.select_lambda_fast(trainer, eta=1)
    for make in (lambda: l2optim.with_weight_decay(nn.Linear),
                 lambda: l2optim.FoldTrainer(nn.Linear(3, 1), X, Y, optimizer=object)):
        with pytest.raises(TypeError, match="must be a torch.optim.Optimizer subclass"):
            make()
    with pytest.raises(ValueError, match="lambdas contains NaN or infinite values"):
        l2optim.ridge_cv(X, Y, lambdas=[0.1, math.inf])
