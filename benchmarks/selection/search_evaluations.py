"""How many objective evaluations select_lambda needs, against an exhaustive grid.

Run: ``python benchmarks/selection/search_evaluations.py``. On 10 random ridge problems the
objective is the exact leave-one-out curve (``l2optim.ridge_cv`` at one λ), and the
true optimum λ* is found independently: 20 001 grid points, then a bounded Brent
refinement to 1e-10 in ln λ. For select_lambda (default settings, bounds (1e-6, 1))
we print the evaluations it made, the evaluations after which its best λ so far stays
within 2% of λ*, and its final relative error; for a 100-point log grid over the same
bounds, its relative error.

Then the noise-aware stop: on the same problems the objective is the 5-fold CV curve,
five per-fold scores per λ (closed-form ridge refits), and select_lambda runs with its
default ``se_fraction=0.1`` and with ``se_fraction=None`` (refine to ``xtol``). We print
the evaluations each made, and how far the CV mean at each one's λ_min lies above the
lowest CV mean found by a fine search, in standard errors. Nothing is asserted.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.optimize import minimize_scalar

import l2optim

BOUNDS = (1e-6, 1.0)
TOLERANCE = 0.02


def make_problem(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Correlated features, decaying coefficients and a noise level that varies by seed."""
    rng = np.random.default_rng(seed)
    n, p = int(rng.integers(80, 400)), int(rng.integers(5, 60))
    mixing = np.eye(p) + 0.3 * rng.standard_normal((p, p)) / math.sqrt(p)
    X = rng.standard_normal((n, p)) @ mixing
    w = rng.standard_normal(p) / (1 + np.arange(p)) ** rng.uniform(0.3, 1.5)
    return X, X @ w + rng.uniform(0.3, 3.0) * rng.standard_normal(n)


def loo_curve(X: np.ndarray, y: np.ndarray):
    """λ ↦ exact leave-one-out MSE of ridge."""
    return lambda lam: float(l2optim.ridge_cv(X, y, lambdas=[lam]).cv_mean[0])


def true_optimum(X: np.ndarray, y: np.ndarray) -> float:
    grid = np.geomspace(*BOUNDS, 20001)
    means = l2optim.ridge_cv(X, y, lambdas=grid).cv_mean
    best = int(np.argmin(means))
    lo, hi = grid[max(best - 1, 0)], grid[min(best + 1, len(grid) - 1)]
    curve = loo_curve(X, y)
    found = minimize_scalar(lambda x: curve(math.exp(x)), bounds=(math.log(lo), math.log(hi)),
                            method="bounded", options={"xatol": 1e-10})
    return math.exp(found.x)


def evaluations_to_tolerance(search: l2optim.LambdaSearch, optimum: float) -> int:
    """1 + the last evaluation after which the best λ so far is more than 2% from λ*."""
    best_mean, needed = math.inf, 0
    for index, evaluation in enumerate(search.evaluations, start=1):
        if evaluation.mean < best_mean:
            best_mean, best_lam = evaluation.mean, evaluation.lam
        if abs(best_lam / optimum - 1) > TOLERANCE:
            needed = index + 1
    return needed


def main() -> None:
    rows = []
    print(" seed    λ*        evals  to-2%  select err  100-grid err")
    for seed in range(10):
        X, y = make_problem(seed)
        optimum = true_optimum(X, y)
        search = l2optim.select_lambda(loo_curve(X, y), BOUNDS, progress=False)
        grid = np.geomspace(*BOUNDS, 100)
        grid_best = grid[int(np.argmin(l2optim.ridge_cv(X, y, lambdas=grid).cv_mean))]
        row = (
            len(search.evaluations),
            evaluations_to_tolerance(search, optimum),
            abs(search.lambda_min / optimum - 1),
            abs(grid_best / optimum - 1),
        )
        rows.append(row)
        print(f"{seed:5d}  {optimum:.3e}  {row[0]:5d}  {row[1]:5d}  {row[2]:10.2%}  {row[3]:11.2%}")
    evals, to_tol, err, grid_err = (np.array(c) for c in zip(*rows, strict=True))
    print(f"median evaluations, full search          : {np.median(evals):.1f}")
    print(f"median evaluations to come within 2%     : {np.median(to_tol):.1f}  (target <= 15)")
    print(f"median / max relative error, select      : {np.median(err):.2%} / {err.max():.2%}")
    print(f"median / max relative error, 100-pt grid : {np.median(grid_err):.2%} / {grid_err.max():.2%}")
    print(f"evaluations ratio select / 100-pt grid   : {np.median(evals) / 100:.2f}")


def ridge_fold_mse(X: np.ndarray, y: np.ndarray):
    """fit_score: closed-form ridge (intercept free) on the training rows, test-row MSE."""

    def fit_score(lam: float, train: np.ndarray, test: np.ndarray) -> float:
        x_mean, y_mean = X[train].mean(0), y[train].mean()
        xc = X[train] - x_mean
        w = np.linalg.solve(xc.T @ xc / len(train) + lam * np.eye(X.shape[1]),
                            xc.T @ (y[train] - y_mean) / len(train))
        return float(np.mean(((X[test] - x_mean) @ w + y_mean - y[test]) ** 2))

    return fit_score


def noise_aware_stop() -> None:
    print()
    print(" seed   evals(0.1)  evals(None)  above min in SE: (0.1)  (None)")
    rows = []
    for seed in range(10):
        X, y = make_problem(seed)
        objective = l2optim.kfold_objective(ridge_fold_mse(X, y), len(y), folds=5)
        aware = l2optim.select_lambda(objective, BOUNDS, progress=False)
        exhaustive = l2optim.select_lambda(objective, BOUNDS, se_fraction=None, xtol=1e-6,
                                           progress=False)
        lowest = min(exhaustive.cv_mean)
        se = exhaustive.cv_se[int(np.argmin(exhaustive.cv_mean))]
        plain = l2optim.select_lambda(objective, BOUNDS, se_fraction=None, progress=False)
        gaps = []
        for search in (aware, plain):
            at_min = search.cv_mean[search.lambdas == search.lambda_min][0]
            gaps.append((at_min - lowest) / se)
        row = (len(aware.evaluations), len(plain.evaluations), *gaps)
        rows.append(row)
        print(f"{seed:5d}  {row[0]:10d}  {row[1]:11d}  {row[2]:22.4f}  {row[3]:6.4f}")
    aware_evals, plain_evals, aware_gap, plain_gap = (np.array(c) for c in zip(*rows, strict=True))
    print(f"median evaluations, se_fraction=0.1 / None: {np.median(aware_evals):.1f} / "
          f"{np.median(plain_evals):.1f}")
    print(f"max CV mean above the lowest, in SE, 0.1 / None: {aware_gap.max():.4f} / "
          f"{plain_gap.max():.4f}")


if __name__ == "__main__":
    main()
    noise_aware_stop()
