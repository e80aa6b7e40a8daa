"""ridge_cv against brute-force refits, the closed form and scikit-learn."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from _profiles import examples
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.linear_model import Ridge, RidgeCV

import l2optim

LAMBDAS = np.array([1e-3, 1e-2, 0.1, 1.0])


def make_problem(n: int, p: int, k: int | None = None, seed: int = 0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, p)) * rng.uniform(0.5, 3.0, p) + rng.standard_normal(p)
    w = rng.standard_normal((p,) if k is None else (p, k))
    noise = rng.standard_normal((n,) if k is None else (n, k))
    return X, X @ w + noise + 1.5


def ridge_fit(X, y, lam, fit_intercept=True):
    """Closed form w* = (XcᵀXc/n + λI)⁻¹Xcᵀyc/n and b* = ȳ − x̄ᵀw*."""
    n, p = X.shape
    x_mean = X.mean(0) if fit_intercept else np.zeros(p)
    y_mean = y.mean(0) if fit_intercept else np.zeros(y.shape[1:])
    Xc, yc = X - x_mean, y - y_mean
    coef = np.linalg.solve(Xc.T @ Xc / n + lam * np.eye(p), Xc.T @ yc / n)
    return coef, y_mean - x_mean @ coef


def squared_errors(X, y, coef, intercept):
    """Per-sample squared error, averaged over targets."""
    errors = (X @ coef + intercept - y) ** 2
    return errors.reshape(len(X), -1).mean(axis=1)


def brute_force_loo(X, y, lam, fit_intercept=True):
    """Refit on every n−1 samples; mean and SE of the n held-out squared errors."""
    n = len(X)
    errors = []
    for i in range(n):
        keep = np.arange(n) != i
        coef, intercept = ridge_fit(X[keep], y[keep], lam, fit_intercept)
        errors.append(squared_errors(X[i : i + 1], y[i : i + 1], coef, intercept)[0])
    errors = np.array(errors)
    return errors.mean(), errors.std(ddof=1) / math.sqrt(n)


def brute_force_kfold(X, y, lam, k, fit_intercept=True):
    """Refit on every training fold (contiguous folds); mean and SE of the fold MSEs."""
    fold_mse = []
    for test in np.array_split(np.arange(len(X)), k):
        train = np.setdiff1d(np.arange(len(X)), test)
        coef, intercept = ridge_fit(X[train], y[train], lam, fit_intercept)
        fold_mse.append(squared_errors(X[test], y[test], coef, intercept).mean())
    fold_mse = np.array(fold_mse)
    return fold_mse.mean(), fold_mse.std(ddof=1) / math.sqrt(k)


def explicit_gcv(X, y, lam, fit_intercept=True):
    """GCV from the explicit hat matrix of the all-sample fit."""
    n, p = X.shape
    design = np.hstack([np.ones((n, 1)), X]) if fit_intercept else X
    penalty = n * lam * np.eye(design.shape[1])
    if fit_intercept:
        penalty[0, 0] = 0.0
    hat = design @ np.linalg.solve(design.T @ design + penalty, design.T)
    residuals = (y - hat @ y).reshape(n, -1)
    terms = (residuals**2).mean(axis=1) / (1 - np.trace(hat) / n) ** 2
    return terms.mean(), terms.std(ddof=1) / math.sqrt(n)


SHAPES = [(30, 4, None), (25, 60, None), (30, 5, 3), (12, 40, 2)]  # tall, wide, 2-D y


@pytest.mark.parametrize(("n", "p", "k"), SHAPES)
@pytest.mark.parametrize("fit_intercept", [True, False])
def test_leave_one_out_equals_refitting_without_each_sample(n, p, k, fit_intercept):
    X, y = make_problem(n, p, k)
    result = l2optim.ridge_cv(X, y, lambdas=LAMBDAS, fit_intercept=fit_intercept)
    expected = np.array([brute_force_loo(X, y, lam, fit_intercept) for lam in LAMBDAS])
    np.testing.assert_allclose(result.lambdas, LAMBDAS)
    np.testing.assert_allclose(result.cv_mean, expected[:, 0], rtol=1e-7)
    np.testing.assert_allclose(result.cv_se, expected[:, 1], rtol=1e-6)


@pytest.mark.parametrize(("n", "p", "k"), SHAPES)
@pytest.mark.parametrize("folds", [3, 5])
def test_kfold_equals_refitting_on_each_training_fold(n, p, k, folds):
    X, y = make_problem(n, p, k, seed=1)
    result = l2optim.ridge_cv(X, y, lambdas=LAMBDAS, cv=folds, shuffle=False)
    expected = np.array([brute_force_kfold(X, y, lam, folds) for lam in LAMBDAS])
    np.testing.assert_allclose(result.cv_mean, expected[:, 0], rtol=1e-7)
    np.testing.assert_allclose(result.cv_se, expected[:, 1], rtol=1e-6)
    assert result.cv == folds


@pytest.mark.parametrize(("n", "p", "k"), SHAPES)
@pytest.mark.parametrize("fit_intercept", [True, False])
def test_gcv_equals_the_hat_matrix_formula(n, p, k, fit_intercept):
    X, y = make_problem(n, p, k, seed=2)
    result = l2optim.ridge_cv(X, y, lambdas=LAMBDAS, cv="gcv", fit_intercept=fit_intercept)
    expected = np.array([explicit_gcv(X, y, lam, fit_intercept) for lam in LAMBDAS])
    np.testing.assert_allclose(result.cv_mean, expected[:, 0], rtol=1e-7)
    np.testing.assert_allclose(result.cv_se, expected[:, 1], rtol=1e-6)


@settings(max_examples=examples(25))
@given(
    n=st.integers(4, 12),
    p=st.integers(1, 16),
    log10_lam=st.floats(-3, 1),
    fit_intercept=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_leave_one_out_property(n, p, log10_lam, fit_intercept, seed):
    X, y = make_problem(n, p, seed=seed)
    lam = 10.0**log10_lam
    result = l2optim.ridge_cv(X, y, lambdas=[lam], fit_intercept=fit_intercept)
    mean, se = brute_force_loo(X, y, lam, fit_intercept)
    assert result.cv_mean[0] == pytest.approx(mean, rel=1e-6)
    assert result.cv_se[0] == pytest.approx(se, rel=1e-5)


@pytest.mark.parametrize(("n", "p", "k"), SHAPES)
@pytest.mark.parametrize("cv", ["loo", "gcv", 4])
def test_coefficients_are_the_closed_form_at_lambda_min(n, p, k, cv):
    X, y = make_problem(n, p, k, seed=3)
    result = l2optim.ridge_cv(X, y, lambdas=LAMBDAS, cv=cv)
    coef, intercept = ridge_fit(X, y, result.lambda_min)
    assert result.coef.shape == coef.shape
    np.testing.assert_allclose(result.coef, coef, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(result.intercept, intercept, rtol=1e-8, atol=1e-10)
    if k is None:
        assert isinstance(result.intercept, float)


@pytest.mark.parametrize(("n", "p", "k"), SHAPES)
def test_sklearn_ridge_with_alpha_n_lambda_gives_the_same_fit(n, p, k):
    X, y = make_problem(n, p, k, seed=4)
    result = l2optim.ridge_cv(X, y)
    sklearn = Ridge(alpha=n * result.lambda_min, solver="svd").fit(X, y)
    np.testing.assert_allclose(result.coef, sklearn.coef_.T, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(result.intercept, sklearn.intercept_, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize(("n", "p", "k"), SHAPES)
def test_sklearn_ridgecv_leave_one_out_at_alpha_n_minus_one_lambda(n, p, k):
    X, y = make_problem(n, p, k, seed=5)
    alphas = (n - 1) * LAMBDAS
    sklearn = RidgeCV(alphas=alphas, store_cv_results=True).fit(X, y)
    result = l2optim.ridge_cv(X, y, lambdas=LAMBDAS)
    per_alpha = sklearn.cv_results_.reshape(n, -1, len(LAMBDAS)).mean(axis=(0, 1))
    np.testing.assert_allclose(result.cv_mean, per_alpha, rtol=1e-6)
    assert result.lambda_min == pytest.approx(sklearn.alpha_ / (n - 1))


def test_search_finds_a_continuous_optimum_at_least_as_good_as_the_grid():
    X, y = make_problem(60, 8, seed=6)
    result = l2optim.ridge_cv(X, y)
    lambdas, means = np.asarray(result.lambdas), np.asarray(result.cv_mean)
    best = means.min()
    assert means[lambdas == result.lambda_min][0] == best
    # Not a grid point: L·10^(i/4) for the largest eigenvalue L of XcᵀXc/n.
    Xc = X - X.mean(0)
    top = np.linalg.eigvalsh(Xc.T @ Xc / len(X)).max()
    steps = 4 * math.log10(result.lambda_min / (1e-6 * top))
    assert abs(steps - round(steps)) > 1e-3
    # A local minimum of the exact LOO curve, to Brent's tolerance.
    nearby = l2optim.ridge_cv(X, y, lambdas=result.lambda_min * np.array([0.99, 1.01]))
    assert best <= nearby.cv_mean.min()
    assert result.n_evaluations == len(lambdas) > 37


@pytest.mark.parametrize("cv", ["loo", "gcv", 5])
def test_lambda_1se_is_the_largest_lambda_within_one_standard_error(cv):
    X, y = make_problem(50, 10, seed=7)
    result = l2optim.ridge_cv(X, y, cv=cv)
    at_min = np.asarray(result.lambdas) == result.lambda_min
    threshold = result.cv_mean[at_min][0] + result.cv_se[at_min][0]
    within = np.asarray(result.lambdas)[result.cv_mean <= threshold]
    assert result.lambda_1se == within.max()
    assert result.lambda_1se > result.lambda_min
    # Refined to the crossing: a λ 0.1% larger is already outside.
    beyond = l2optim.ridge_cv(X, y, cv=cv, lambdas=[result.lambda_1se * 1.001])
    assert beyond.cv_mean[0] > threshold


def test_lambda_1se_on_a_given_grid_follows_the_rule():
    X, y = make_problem(40, 6, seed=8)
    grid = np.geomspace(1e-4, 10, 30)
    result = l2optim.ridge_cv(X, y, lambdas=grid[::-1])
    np.testing.assert_array_equal(result.lambdas, grid)
    best = int(np.argmin(result.cv_mean))
    assert result.lambda_min == grid[best]
    within = grid[result.cv_mean <= result.cv_mean[best] + result.cv_se[best]]
    assert result.lambda_1se == within.max()
    assert result.n_evaluations == 30


def test_tensors_in_tensors_out():
    X, y = make_problem(30, 5, seed=9)
    expected = l2optim.ridge_cv(X, y, lambdas=LAMBDAS)
    result = l2optim.ridge_cv(torch.from_numpy(X).float(), torch.from_numpy(y).float(),
                              lambdas=torch.tensor(LAMBDAS))
    assert isinstance(result.coef, torch.Tensor) and result.coef.dtype == torch.float32
    assert isinstance(result.intercept, torch.Tensor) and result.intercept.shape == ()
    assert result.lambda_min == expected.lambda_min
    torch.testing.assert_close(result.coef, torch.tensor(expected.coef, dtype=torch.float32),
                               rtol=1e-4, atol=1e-5)


def test_result_is_frozen():
    result = l2optim.ridge_cv(*make_problem(20, 3), lambdas=LAMBDAS)
    with pytest.raises(AttributeError):
        result.lambda_min = 1.0
    with pytest.raises(ValueError):
        result.cv_mean[0] = 0.0


@pytest.mark.parametrize(
    ("X", "y", "kwargs", "match"),
    [
        (np.ones(5), np.ones(5), {}, "X must be 2-D"),
        (np.ones((5, 2)), np.ones(4), {}, "y must have shape"),
        (np.ones((2, 2)), np.ones(2), {}, "at least 3 samples"),
        (np.full((5, 2), np.nan), np.ones(5), {}, "X contains NaN"),
        (np.ones((5, 2)), np.array([1, 2, np.inf, 4, 5]), {}, "y contains NaN"),
        (np.ones((5, 2)), np.ones(5), {"cv": "kfold"}, "cv must be"),
        (np.ones((5, 2)), np.ones(5), {"cv": 6}, "cv must be"),
        (np.ones((5, 2)), np.ones(5), {"cv": 1}, "cv must be"),
        (np.ones((5, 2)), np.ones(5), {"cv": 2.5}, "cv must be"),
        (np.ones((5, 0)), np.ones(5), {}, r"at least 1 feature \(column\), got shape \(5, 0\)"),
        (np.ones((5, 2)), np.ones(5), {"cv": [([0, 1], [2]), ([2, 3], [4, 5])]},
         r"a sequence of 2 pairs; pair 1's test is indices outside \[0, 5\): 4 to 5$"),
        (np.ones((5, 2)), np.ones(5), {"cv": [([0, 1], [2]), ([0.5], [4])]},
         r"pair 1's train is not a non-empty 1-D integer array \(shape \(1,\), float64\)"),
        (np.ones((5, 2)), np.ones(5), {"cv": [([0, 1], [2])]}, r"got a sequence of 1 pairs$"),
        (np.ones((5, 2)), np.ones(5), {"lambdas": [0.1, 0.0]}, "lambdas must be"),
        (np.ones((5, 2)), np.ones(5), {"lambdas": []}, "lambdas must be"),
        (np.ones((5, 2)), np.ones(5), {"lambdas": [np.nan]}, "lambdas contains NaN"),
    ],
)
def test_bad_input_is_named(X, y, kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        l2optim.ridge_cv(X, y, **kwargs)


def test_plot_writes_a_png(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    result = l2optim.ridge_cv(*make_problem(40, 5), cv=5)
    ax = result.plot()
    path = tmp_path / "ridge.png"
    ax.figure.savefig(path)
    plt.close(ax.figure)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# --------------------------------------------------------------------------- folds


def brute_force_on_splits(X, y, lam, splits, standardize=False):
    """Refit on every training set; mean and SE of the test MSEs. With ``standardize``,
    each feature is scaled on the training rows (mean 0, sd 1; sd 0 left at 1) first."""
    fold_mse = []
    for train, test in splits:
        x_train, x_test = X[train], X[test]
        if standardize:
            mean, sd = x_train.mean(0), x_train.std(0)
            sd = np.where(sd > 0, sd, 1.0)
            x_train, x_test = (x_train - mean) / sd, (x_test - mean) / sd
        coef, intercept = ridge_fit(x_train, y[train], lam)
        fold_mse.append(squared_errors(x_test, y[test], coef, intercept).mean())
    fold_mse = np.array(fold_mse)
    return fold_mse.mean(), fold_mse.std(ddof=1) / math.sqrt(len(splits))


@pytest.mark.parametrize(("shuffle", "random_state"), [(True, 0), (True, 3), (False, None)])
def test_kfold_uses_kfold_splits_with_its_defaults(shuffle, random_state):
    X, y = make_problem(37, 5, seed=10)
    result = l2optim.ridge_cv(X, y, lambdas=LAMBDAS, cv=4, shuffle=shuffle,
                              random_state=random_state)
    splits = l2optim.kfold_splits(37, 4, shuffle=shuffle, random_state=random_state)
    expected = np.array([brute_force_on_splits(X, y, lam, splits) for lam in LAMBDAS])
    np.testing.assert_allclose(result.cv_mean, expected[:, 0], rtol=1e-7)
    np.testing.assert_allclose(result.cv_se, expected[:, 1], rtol=1e-6)
    # The defaults are kfold_objective's: shuffled, seed 0.
    default = l2optim.ridge_cv(X, y, lambdas=LAMBDAS, cv=4)
    shuffled = l2optim.ridge_cv(X, y, lambdas=LAMBDAS, cv=4, shuffle=True, random_state=0)
    np.testing.assert_array_equal(default.cv_mean, shuffled.cv_mean)


def test_cv_takes_the_splits_themselves():
    X, y = make_problem(30, 4, seed=11)
    splits = l2optim.kfold_splits(30, 3, random_state=5)
    result = l2optim.ridge_cv(X, y, lambdas=LAMBDAS, cv=splits)
    expected = np.array([brute_force_on_splits(X, y, lam, splits) for lam in LAMBDAS])
    np.testing.assert_allclose(result.cv_mean, expected[:, 0], rtol=1e-7)
    assert result.cv == 3


@settings(max_examples=15)
@given(n=st.integers(8, 40), p=st.integers(1, 12), folds=st.integers(2, 5),
       seed=st.integers(0, 2**16), log10_lam=st.floats(-3, 1))
def test_standardize_scales_inside_each_training_fold(n, p, folds, seed, log10_lam):
    X, y = make_problem(n, p, seed=seed)
    X[:, 0] = 7.0  # a constant column: sd 0, left as it is
    lam = 10.0**log10_lam
    result = l2optim.ridge_cv(X, y, lambdas=[lam], cv=folds, standardize=True)
    splits = l2optim.kfold_splits(n, folds)
    mean, se = brute_force_on_splits(X, y, lam, splits, standardize=True)
    assert result.cv_mean[0] == pytest.approx(mean, rel=1e-7)
    assert result.cv_se[0] == pytest.approx(se, rel=1e-6)


def test_standardize_gives_coefficients_in_the_units_of_x():
    X, y = make_problem(40, 5, seed=12)
    result = l2optim.ridge_cv(X, y, cv=5, standardize=True)
    mean, sd = X.mean(0), X.std(0)
    coef, intercept = ridge_fit((X - mean) / sd, y, result.lambda_min)
    np.testing.assert_allclose(result.coef, coef / sd, rtol=1e-8)
    np.testing.assert_allclose(result.intercept, intercept - mean @ (coef / sd), rtol=1e-8)


def test_standardize_needs_folds():
    X, y = make_problem(20, 3)
    with pytest.raises(ValueError, match="standardize=True needs k-fold"):
        l2optim.ridge_cv(X, y, standardize=True)


# --------------------------------------------------------------------------- bounds and edges


def test_bounds_set_the_search_interval():
    X, y = make_problem(50, 6, seed=13)
    result = l2optim.ridge_cv(X, y, bounds=(1e-3, 10.0))
    assert result.bounds == (1e-3, 10.0)
    assert result.lambdas[0] == pytest.approx(1e-3) and result.lambdas[-1] == pytest.approx(10.0)


@pytest.mark.parametrize("cv", ["loo", 5])
def test_pure_noise_puts_lambda_min_on_the_upper_edge(cv):
    rng = np.random.default_rng(14)
    X, y = rng.normal(size=(60, 8)), rng.normal(size=60)  # y unrelated to X
    with pytest.warns(l2optim.LambdaAtEdgeWarning, match="upper end"):
        result = l2optim.ridge_cv(X, y, cv=cv)
    assert result.at_edge == "upper"
    assert result.lambda_min == result.lambdas[-1]


def test_noiseless_data_puts_lambda_min_on_the_lower_edge():
    rng = np.random.default_rng(15)
    X = rng.normal(size=(40, 3))
    with pytest.warns(l2optim.LambdaAtEdgeWarning, match="lower end"):
        result = l2optim.ridge_cv(X, X @ [1.0, 2.0, 3.0], cv=4)
    assert result.at_edge == "lower"


def test_an_interior_lambda_min_gives_no_warning(recwarn):
    X, y = make_problem(50, 10, seed=7)
    assert l2optim.ridge_cv(X, y).at_edge is None
    assert not [w for w in recwarn if issubclass(w.category, l2optim.LambdaAtEdgeWarning)]
