"""ridge_cv against scikit-learn's RidgeCV: time ratio and the λ each one chooses.

Run: ``python benchmarks/selection/ridge_cv.py``. Both score the same 60 λ by exact
leave-one-out. scikit-learn penalises the sum of squares with α and keeps α fixed
when a sample is left out, which is this library's λ = α/(n−1) on the n−1 remaining
samples; its final fit ``Ridge(alpha=α)`` is this library's λ = α/n.
Times are the best of several runs, measured side by side; the ratio is
ridge_cv / RidgeCV (below 1: ridge_cv is faster). Nothing is asserted.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import numpy as np
from sklearn.linear_model import RidgeCV

import l2optim


def best_time(run: Callable[[], object], repeats: int) -> float:
    """The fastest of ``repeats`` wall-clock timings of ``run()``."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return min(times)


def make_problem(n: int, p: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A linear model with decaying true coefficients and unit noise."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, p))
    w = rng.standard_normal(p) / np.sqrt(1 + np.arange(p))
    return X, X @ w + rng.standard_normal(n) + 2.0


def compare(name: str, n: int, p: int, n_lambdas: int, repeats: int) -> None:
    X, y = make_problem(n, p, seed=0)
    scale = np.linalg.norm(X - X.mean(0), 2) ** 2 / n  # largest eigenvalue of XᵀX/n
    alphas = (n - 1) * np.geomspace(1e-5 * scale, 10 * scale, n_lambdas)
    lambdas = alphas / (n - 1)

    ours = l2optim.ridge_cv(X, y, lambdas=lambdas)
    theirs = RidgeCV(alphas=alphas).fit(X, y)
    searched = l2optim.ridge_cv(X, y)
    t_ours = best_time(lambda: l2optim.ridge_cv(X, y, lambdas=lambdas), repeats)
    t_theirs = best_time(lambda: RidgeCV(alphas=alphas).fit(X, y), repeats)
    t_search = best_time(lambda: l2optim.ridge_cv(X, y), repeats)

    sklearn_lambda = theirs.alpha_ / (n - 1)
    spacing = lambdas[1] / lambdas[0]
    print(f"{name}: n={n}, p={p}, {n_lambdas} λ, leave-one-out")
    print(f"  time ridge_cv / RidgeCV          : {t_ours / t_theirs:.2f}"
          f"  ({t_ours * 1e3:.1f} ms vs {t_theirs * 1e3:.1f} ms)")
    print(f"  same λ chosen on the grid        : {np.isclose(ours.lambda_min, sklearn_lambda)}"
          f"  (λ_min {ours.lambda_min:.4g}, RidgeCV α_/(n-1) {sklearn_lambda:.4g})")
    print(f"  time ridge_cv search / RidgeCV   : {t_search / t_theirs:.2f}"
          f"  ({searched.n_evaluations} λ evaluated)")
    print(f"  searched λ_min / grid λ_min      : {searched.lambda_min / ours.lambda_min:.3f}"
          f"  (grid ratio between points {spacing:.3f})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    compare("tall", 5000, 200, 60, args.repeats)
    compare("wide", 300, 3000, 60, args.repeats)


if __name__ == "__main__":
    main()
