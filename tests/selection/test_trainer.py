"""FoldTrainer against closed-form ridge at the same λ, and its divergence, determinism and errors."""

from __future__ import annotations

import functools
import math

import numpy as np
import pytest
import torch
from _profiles import examples
from _torch_threads import one_torch_thread  # noqa: F401 (autouse fixture)
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import l2optim
from l2optim import FoldTrainer, kfold_splits

N_SAMPLES, N_FEATURES = 60, 3
RNG = np.random.default_rng(0)
X = RNG.normal(size=(N_SAMPLES, N_FEATURES))
Y = X @ np.array([1.0, -2.0, 0.5]) + 1.0 + 0.3 * RNG.normal(size=N_SAMPLES)
TRAIN, TEST = kfold_splits(N_SAMPLES, 3)[0]
LINEAR = functools.partial(nn.Linear, N_FEATURES, 1)


def ridge_test_predictions(lam: float) -> np.ndarray:
    """Predictions on TEST of min (1/2m)‖Xw + b − y‖² + (λ/2)‖w‖² on TRAIN (b unpenalised)."""
    x_mean, y_mean = X[TRAIN].mean(0), Y[TRAIN].mean()
    xc, yc = X[TRAIN] - x_mean, Y[TRAIN] - y_mean
    m = len(TRAIN)
    w = np.linalg.solve(xc.T @ xc / m + lam * np.eye(N_FEATURES), xc.T @ yc / m)
    return X[TEST] @ w + (y_mean - x_mean @ w)


def ridge_validation_mse(lam: float) -> float:
    """Validation MSE of ridge at the library's λ, trained on TRAIN."""
    return float(np.mean((ridge_test_predictions(lam) - Y[TEST]) ** 2))


def full_batch_trainer(optimizer, epochs: int = 1000, **kwargs) -> FoldTrainer:
    lr = kwargs.pop("lr")
    momentum = kwargs.pop("momentum", None)
    optimizer_kwargs = {"lr": lr} if momentum is None else {"lr": lr, "momentum": momentum}
    return FoldTrainer(
        LINEAR,
        X,
        Y,
        optimizer=optimizer,
        optimizer_kwargs=optimizer_kwargs,
        epochs=epochs,
        **kwargs,
    )


# Coupled decay λ on the default loss, half the mean squared error (gradient
# Xᵀ(Xw − y)/m + λw), is ridge at the same λ. Full batch and many epochs: converged to
# float64 precision.
@settings(max_examples=examples(6))
@given(
    lam=st.floats(1e-3, 3.0),
    setup=st.sampled_from(
        [(l2optim.SGD, 0.1, 0.9), (l2optim.SGD, 0.3, None), (l2optim.Adam, 0.05, None)]
    ),
)
def test_coupled_decay_reaches_closed_form_ridge(lam, setup):
    optimizer, lr, momentum = setup
    trainer = full_batch_trainer(optimizer, lr=lr, momentum=momentum)
    assert trainer(lam, TRAIN, TEST) == pytest.approx(ridge_validation_mse(lam), rel=1e-7)


def test_a_custom_loss_trains_and_scores():
    # nn.MSELoss is twice the default loss: coupled λ on it is ridge at λ/2, and with no
    # score given, the validation number is that loss too.
    lam = 0.4
    trainer = full_batch_trainer(l2optim.SGD, epochs=300, lr=0.2, loss=nn.MSELoss())
    assert trainer(lam, TRAIN, TEST) == pytest.approx(ridge_validation_mse(lam / 2), rel=1e-7)


def test_the_score_is_separate_from_the_training_loss():
    lam = 0.4
    trainer = full_batch_trainer(l2optim.SGD, epochs=300, lr=0.2, score=nn.L1Loss())
    mean_absolute_error = np.mean(np.abs(ridge_test_predictions(lam) - Y[TEST]))
    assert trainer(lam, TRAIN, TEST) == pytest.approx(mean_absolute_error, rel=1e-7)


# Eight features, forty rows, a weak signal: the 4-fold CV curve of ridge has its minimum
# well inside (0.03, 3).
SHRINK_RNG = np.random.default_rng(2)
SHRINK_X = SHRINK_RNG.normal(size=(40, 8))
SHRINK_Y = SHRINK_X @ (0.3 * SHRINK_RNG.normal(size=8)) + SHRINK_RNG.normal(size=40)


def test_trainer_search_and_ridge_cv_agree_on_the_curve_and_on_lambda():
    trainer = FoldTrainer(
        functools.partial(nn.Linear, 8, 1),
        SHRINK_X,
        SHRINK_Y,
        optimizer_kwargs={"lr": 0.35},
        epochs=100,
    )
    # Contiguous folds, as ridge_cv's k-fold.
    objective = l2optim.kfold_objective(trainer, 40, folds=4, shuffle=False)
    search = l2optim.select_lambda(
        objective, bounds=(0.03, 3.0), n_grid=5, xtol=0.05, progress=False
    )
    lambdas = [e.lam for e in search.evaluations]
    oracle = l2optim.ridge_cv(SHRINK_X, SHRINK_Y, lambdas=lambdas, cv=4, shuffle=False)
    closed_form = dict(zip(oracle.lambdas.tolist(), oracle.cv_mean.tolist(), strict=True))
    for evaluation in search.evaluations:
        assert evaluation.mean == pytest.approx(closed_form[evaluation.lam], rel=1e-5)
    best = l2optim.ridge_cv(SHRINK_X, SHRINK_Y, cv=4, shuffle=False).lambda_min
    assert 0.03 < best < 3.0
    assert abs(math.log(search.lambda_min / best)) < 0.05


@pytest.mark.parametrize("lam", [0.05, 1.0])
def test_decoupled_sgd_with_momentum_has_ridge_fixed_point_of_scaled_lambda(lam):
    # Decoupled ("lr" scaling) with momentum μ = coupled with λ' = (1 − μ)·λ at the fixed point.
    trainer = full_batch_trainer(
        l2optim.SGD, epochs=500, lr=0.1, momentum=0.9, decoupled_weight_decay=True
    )
    expected = ridge_validation_mse((1 - 0.9) * lam)
    assert trainer(lam, TRAIN, TEST) == pytest.approx(expected, rel=1e-7)


def test_coupled_rmsprop_approaches_ridge():
    # RMSprop with a constant lr ends in a small orbit around the fixed point.
    trainer = full_batch_trainer(l2optim.RMSprop, epochs=2000, lr=1e-3)
    assert trainer(0.5, TRAIN, TEST) == pytest.approx(ridge_validation_mse(0.5), rel=1e-5)


@pytest.mark.parametrize("optimizer", [l2optim.AdamW, l2optim.RMSpropW])
def test_decoupled_adaptive_classes_train_to_least_squares_at_tiny_lambda(optimizer):
    # Decoupled Adam/RMSprop approach least squares in the box ‖w‖∞ ≤ 1/λ, which for a
    # tiny λ holds the unconstrained least-squares solution (ridge at λ = 0). A constant
    # lr leaves a small orbit around it, hence the tolerance (ridge at λ = 0.5 is 8× off).
    trainer = full_batch_trainer(optimizer, epochs=2000, lr=3e-3)
    assert trainer.optimizer_kwargs.get("decoupled_weight_decay") is None  # class default
    assert trainer(1e-8, TRAIN, TEST) == pytest.approx(ridge_validation_mse(0.0), rel=1e-2)


def test_decoupled_and_coupled_adam_differ_at_large_lambda():
    coupled = full_batch_trainer(l2optim.Adam, epochs=300, lr=0.01)
    decoupled = full_batch_trainer(l2optim.AdamW, epochs=300, lr=0.01)
    assert abs(coupled(2.0, TRAIN, TEST) - decoupled(2.0, TRAIN, TEST)) > 1e-2


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_divergent_learning_rate_returns_inf(dtype):
    # lr far above 2/(L + λ): the iterates grow geometrically until the loss overflows.
    trainer = FoldTrainer(
        LINEAR,
        torch.tensor(X, dtype=dtype),
        torch.tensor(Y, dtype=dtype),
        optimizer_kwargs={"lr": 1e3},
        epochs=1000,
    )
    assert trainer(0.1, TRAIN, TEST) == math.inf


def test_nan_in_the_data_is_refused_before_any_training():
    """Not left to score inf at the λ that meet it, where the searches would blame the lr."""
    y = Y.copy()
    y[TEST[0]] = np.nan
    with pytest.raises(ValueError, match=rf"y contains NaN .*the first row {TEST[0]}\)"):
        FoldTrainer(LINEAR, X, y, optimizer_kwargs={"lr": 0.1}, epochs=5)


def mlp() -> nn.Module:
    return nn.Sequential(nn.Linear(N_FEATURES, 8), nn.Dropout(0.1), nn.Tanh(), nn.Linear(8, 1))


def test_same_seed_same_score_and_caller_rng_untouched():
    trainer = FoldTrainer(
        mlp, X, Y, optimizer=l2optim.AdamW, optimizer_kwargs={"lr": 0.01}, epochs=5, batch_size=7
    )
    torch.manual_seed(123)
    expected_next = torch.rand(3)
    torch.manual_seed(123)
    first = trainer(0.01, TRAIN, TEST)
    assert torch.equal(torch.rand(3), expected_next)
    assert trainer(0.01, TRAIN, TEST) == first
    reseeded = FoldTrainer(
        mlp,
        X,
        Y,
        optimizer=l2optim.AdamW,
        optimizer_kwargs={"lr": 0.01},
        epochs=5,
        batch_size=7,
        seed=1,
    )
    assert reseeded(0.01, TRAIN, TEST) != first


def test_minibatches_cover_the_training_rows_once_per_epoch():
    trainer = FoldTrainer(LINEAR, X, Y, batch_size=7)
    batches = list(trainer.batches(torch.as_tensor(TRAIN), torch.Generator().manual_seed(0)))
    assert [len(b) for b in batches] == [7] * 5 + [5]
    assert sorted(torch.cat(batches).tolist()) == sorted(TRAIN.tolist())


def test_model_follows_the_dtype_of_x_and_float32_works():
    trainer = FoldTrainer(
        LINEAR, X.astype(np.float32), Y.astype(np.float32), optimizer_kwargs={"lr": 0.1}, epochs=200
    )
    assert trainer(0.2, TRAIN, TEST) == pytest.approx(ridge_validation_mse(0.2), rel=1e-4)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_data_on_cuda_trains_the_model_there_with_the_cpu_result():
    cpu = full_batch_trainer(l2optim.Adam, epochs=200, lr=0.05)
    cuda = FoldTrainer(
        LINEAR,
        torch.tensor(X, device="cuda"),
        torch.tensor(Y, device="cuda"),
        optimizer=l2optim.Adam,
        optimizer_kwargs={"lr": 0.05},
        epochs=200,
    )
    assert cuda(0.1, TRAIN, TEST) == pytest.approx(cpu(0.1, TRAIN, TEST), rel=1e-9)


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"optimizer_kwargs": {"weight_decay": 0.1}}, ValueError, "weight_decay"),
        ({"epochs": 0}, ValueError, "epochs must be an integer >= 1"),
        ({"batch_size": 0}, ValueError, "batch_size must be an integer >= 1"),
        ({"y": Y[:-1]}, ValueError, "same number of samples"),
        ({"y": np.where(np.arange(len(Y)) == 3, np.nan, Y)}, ValueError,
         r"y contains NaN or infinite values \(in 1 rows, the first row 3\)"),
        ({"X": np.where(np.arange(len(X))[:, None] == 5, np.inf, X)}, ValueError,
         r"X contains NaN or infinite values \(in 1 rows, the first row 5\)"),
        ({"optimizer": torch.nn.Linear}, TypeError, "optimizer must be"),
        ({"model_factory": "linear"}, TypeError, "model_factory must be an nn.Module or a"),
        ({"loss": "mse"}, TypeError, "loss must be callable or None, got str"),
        ({"score": 1.0}, TypeError, "score must be callable or None, got float"),
    ],
)
def test_bad_arguments_are_named(kwargs, error, message):
    arguments = {"model_factory": LINEAR, "X": X, "y": Y, **kwargs}
    with pytest.raises(error, match=message):
        FoldTrainer(**arguments)


# --------------------------------------------------------------------------- the refit


def test_fit_is_training_directly_at_that_lambda_on_every_row():
    lam = 0.3
    trainer = FoldTrainer(LINEAR, X, Y, optimizer_kwargs={"lr": 0.1, "momentum": 0.9},
                          epochs=7, batch_size=16, seed=5)
    fitted = trainer.fit(lam)
    # The same training written out by hand: seed, model, groups, shuffled batches.
    torch.manual_seed(5)
    model = LINEAR().to(torch.float64)
    optimizer = l2optim.SGD(l2optim.decay_groups(model, lam), lr=0.1, momentum=0.9)
    order = torch.Generator().manual_seed(5)
    inputs, targets = torch.as_tensor(X), torch.as_tensor(Y)
    for _ in range(7):
        for rows in torch.randperm(N_SAMPLES, generator=order).split(16):
            optimizer.zero_grad()
            prediction = model(inputs[rows]).squeeze(-1)
            loss = 0.5 * ((prediction - targets[rows]) ** 2).sum() / len(rows)
            loss.backward()
            optimizer.step()
    for fitted_param, direct in zip(fitted.parameters(), model.parameters(), strict=True):
        torch.testing.assert_close(fitted_param, direct, rtol=1e-12, atol=1e-12)
    assert not fitted.training  # ready to predict


def test_fit_converges_to_ridge_on_all_the_data():
    lam = 0.2
    fitted = full_batch_trainer(l2optim.SGD, lr=0.1, momentum=0.9).fit(lam)
    xc, yc = X - X.mean(0), Y - Y.mean()
    w = np.linalg.solve(xc.T @ xc / N_SAMPLES + lam * np.eye(N_FEATURES), xc.T @ yc / N_SAMPLES)
    np.testing.assert_allclose(fitted.weight.detach().numpy()[0], w, rtol=1e-7)
    np.testing.assert_allclose(fitted.bias.item(), Y.mean() - X.mean(0) @ w, rtol=1e-7)


def test_select_lambda_refits_at_lambda_min():
    trainer = full_batch_trainer(l2optim.SGD, epochs=30, lr=0.3)
    objective = l2optim.kfold_objective(trainer, N_SAMPLES, folds=3)
    search = l2optim.select_lambda(objective, bounds=(1e-3, 3.0), n_grid=4, xtol=0.1,
                                   refit=True, progress=False)
    direct = trainer.fit(search.lambda_min)
    for refitted, expected in zip(search.model.parameters(), direct.parameters(), strict=True):
        assert torch.equal(refitted, expected)
    no_refit = l2optim.select_lambda(objective, bounds=(1e-3, 3.0), n_grid=4, xtol=0.1,
                                     progress=False)
    assert no_refit.model is None
    with pytest.raises(TypeError, match="refit=True needs an objective with a fit"):
        l2optim.select_lambda(lambda lam: lam, refit=True, progress=False)


# --------------------------------------------------------------------------- default bounds


def test_decoupled_default_bounds_keep_lr_times_lambda_below_one():
    trainer = FoldTrainer(mlp, X, Y, optimizer=l2optim.AdamW, optimizer_kwargs={"lr": 1e-2},
                          epochs=15, batch_size=16)
    lo, hi = trainer.default_bounds()
    assert hi * 1e-2 < 1  # s·λ < 1 for the "lr" scaling: λ < 1/lr
    # λ of the docs' MLP (λ_min ≈ 0.9, λ_1se ≈ 1.45) and of noisier problems (5–10).
    assert lo < 0.9 and 10 < hi
    schedule = FoldTrainer(mlp, X, Y, optimizer=l2optim.AdamW,
                           optimizer_kwargs={"lr": 1e-2, "weight_decay_scaling": "schedule"},
                           epochs=15, batch_size=16)
    assert schedule.default_bounds()[1] < 1  # s = lr/lr_ref = 1 at the start: λ < 1
    # More steps make smaller λ matter: the lower bound falls with the steps.
    longer = FoldTrainer(mlp, X, Y, optimizer=l2optim.AdamW, optimizer_kwargs={"lr": 1e-2},
                         epochs=150, batch_size=16)
    assert longer.default_bounds()[0] == pytest.approx(lo / 10)
    assert longer.default_bounds()[1] == hi


def test_coupled_default_bounds_follow_the_scale_of_the_data():
    linear = functools.partial(nn.Linear, 8, 1)
    trainer = FoldTrainer(linear, SHRINK_X, SHRINK_Y, optimizer_kwargs={"lr": 0.3})
    scaled = FoldTrainer(linear, 10 * SHRINK_X, SHRINK_Y, optimizer_kwargs={"lr": 0.001})
    lo, hi = trainer.default_bounds()
    assert scaled.default_bounds() == pytest.approx((100 * lo, 100 * hi))
    # Ridge's best λ for this data lies well inside.
    best = l2optim.ridge_cv(SHRINK_X, SHRINK_Y, cv=4).lambda_min
    assert 100 * lo < best < hi / 10


# --------------------------------------------------------------------------- standardising


def brute_force_standardised_ridge_mse(x, y, train, test, lam):
    """Scale x and y on the training rows (mean 0, sd 1), fit ridge there, predict the test
    rows in y's units: what StandardScaler + Ridge + TransformedTargetRegressor would do."""
    x_mean, x_sd = x[train].mean(0), x[train].std(0)
    x_sd = np.where(x_sd > 0, x_sd, 1.0)
    y_mean, y_sd = y[train].mean(), y[train].std()
    xs, ys = (x[train] - x_mean) / x_sd, (y[train] - y_mean) / y_sd
    m = len(train)
    w = np.linalg.solve(xs.T @ xs / m + lam * np.eye(x.shape[1]), xs.T @ ys / m)
    prediction = ((x[test] - x_mean) / x_sd) @ w * y_sd + y_mean
    return float(np.mean((prediction - y[test]) ** 2))


def test_standardize_scales_on_the_training_rows_only():
    # Features on very different scales, a constant column, a target far from 0.
    x = np.column_stack([X[:, 0] * 100 + 5, X[:, 1] / 10, np.ones(N_SAMPLES), X[:, 2]])
    y = 50 + 20 * Y
    trainer = FoldTrainer(functools.partial(nn.Linear, 4, 1), x, y, standardize=True,
                          optimizer_kwargs={"lr": 0.1, "momentum": 0.9}, epochs=800)
    for train, test in kfold_splits(N_SAMPLES, 3):
        for lam in (0.01, 0.5):
            expected = brute_force_standardised_ridge_mse(x, y, train, test, lam)
            assert trainer(lam, train, test) == pytest.approx(expected, rel=1e-7)
    # The refit predicts raw rows in y's units, its scaling taken from every row.
    fitted = trainer.fit(0.5)
    every = np.arange(N_SAMPLES)
    expected_mse = brute_force_standardised_ridge_mse(x, y, every, every, 0.5)
    with torch.no_grad():
        prediction = fitted(torch.as_tensor(x)).squeeze(-1).numpy()
    assert np.mean((prediction - y) ** 2) == pytest.approx(expected_mse, rel=1e-7)


# --------------------------------------------------------------------------- a module as template


def test_a_module_is_a_template_copied_for_every_call():
    template = LINEAR()
    before = [p.detach().clone() for p in template.parameters()]
    trainer = FoldTrainer(template, X, Y, optimizer_kwargs={"lr": 0.1}, epochs=50)
    first = trainer(0.1, TRAIN, TEST)
    assert trainer(0.1, TRAIN, TEST) == first  # every call starts from the template
    for after, original in zip(template.parameters(), before, strict=True):
        assert torch.equal(after, original.to(after.dtype))  # the template is not trained


def test_bad_optimizer_arguments_are_refused_before_any_training():
    with pytest.raises(ValueError, match="Invalid learning rate"):
        FoldTrainer(LINEAR, X, Y, optimizer_kwargs={"lr": -1.0})
    with pytest.raises(TypeError, match="nesterov_momentum"):
        FoldTrainer(LINEAR, X, Y, optimizer_kwargs={"lr": 0.1, "nesterov_momentum": 0.9})
