r"""Hypothesis strategies and closed-form oracles for least squares with L2.

The problem, in float64, full batch:

.. math::
    \min_{w,\,b}\ \frac{1}{2n}\lVert Xw + b\mathbf{1} - y\rVert^2 + \frac{\lambda}{2}\lVert w\rVert^2,

with an unpenalised intercept b when the problem has one. Oracles: ridge in closed form,
least squares in the box ‖w‖∞ ≤ r (scipy's ``lsq_linear``) with its KKT residual, the
largest stable gradient-descent step, and SGD (momentum, dampening, Nesterov, either
form of decay) on this quadratic as one affine map, whose fixed point and spectral
radius say where SGD goes and how fast.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from hypothesis import strategies as st
from scipy.optimize import lsq_linear

__all__ = [
    "Regression",
    "box_kkt_residual",
    "box_least_squares",
    "max_stable_lr",
    "regressions",
    "ridge",
    "sgd_affine_map",
    "spectral_radius",
    "weight_decays",
]


@dataclass(frozen=True)
class Regression:
    """A least-squares problem: design ``X`` (n × p), target ``y`` (n,), intercept or not."""

    X: np.ndarray
    y: np.ndarray
    fit_intercept: bool

    @property
    def n_samples(self) -> int:
        return self.X.shape[0]

    @property
    def n_features(self) -> int:
        return self.X.shape[1]

    def centred(self) -> tuple[np.ndarray, np.ndarray]:
        """X and y less their column means when there is an intercept, else as they are."""
        if not self.fit_intercept:
            return self.X, self.y
        return self.X - self.X.mean(axis=0), self.y - self.y.mean()

    def intercept_for(self, w: np.ndarray) -> float:
        """The best intercept for weights w: b = ȳ − x̄ᵀw (0 without an intercept)."""
        if not self.fit_intercept:
            return 0.0
        return float(self.y.mean() - self.X.mean(axis=0) @ w)

    def augmented(self) -> np.ndarray:
        """[X, 1] with an intercept, X without: θ = (w, b) maps to predictions."""
        if not self.fit_intercept:
            return self.X
        return np.hstack([self.X, np.ones((self.n_samples, 1))])

    def gradient(self, w: np.ndarray, b: float) -> tuple[np.ndarray, float]:
        """∇ of the unpenalised loss (1/2n)‖Xw + b − y‖² in w and in b."""
        residual = self.X @ w + b - self.y
        return self.X.T @ residual / self.n_samples, float(residual.mean())

    def data_hessian(self) -> np.ndarray:
        """AᵀA/n for A = [X, 1] (or X): the Hessian of the data term in θ = (w, b)."""
        design = self.augmented()
        return design.T @ design / self.n_samples

    def penalty(self, weight_decay: float) -> np.ndarray:
        """diag(λ, …, λ, 0): λ on the weights, nothing on the intercept."""
        diagonal = np.full(self.augmented().shape[1], float(weight_decay))
        if self.fit_intercept:
            diagonal[-1] = 0.0
        return np.diag(diagonal)


# -- strategies ------------------------------------------------------------------------


def _design(rng: np.random.Generator, n: int, p: int, eigenvalues: np.ndarray) -> np.ndarray:
    """An n × p design whose centred XᵀX/n has exactly ``eigenvalues``.

    Columns of the left factor are orthogonal to 1, so centring leaves them unchanged.
    """
    raw = rng.standard_normal((n, p))
    raw -= raw.mean(axis=0)
    left, _ = np.linalg.qr(raw)
    right, _ = np.linalg.qr(rng.standard_normal((p, p)))
    return math.sqrt(n) * left @ np.diag(np.sqrt(eigenvalues)) @ right.T


@st.composite
def regressions(
    draw: st.DrawFn,
    *,
    max_samples: int = 40,
    max_features: int = 5,
    max_condition: float = 10.0,
    fit_intercept: bool | None = None,
) -> Regression:
    """Well-conditioned regression problems.

    The centred XᵀX/n has eigenvalues in [L/κ, L], L ∈ [0.25, 4] and κ ≤ ``max_condition``;
    with an intercept the columns get offsets of order one (so the intercept matters) and
    y a constant. y = Xw₀ + b₀ + noise, ‖w₀‖ and the noise level both drawn.
    """
    n_features = draw(st.integers(1, max_features))
    n_samples = draw(st.integers(n_features + 2, max(max_samples, n_features + 2)))
    intercept = draw(st.booleans()) if fit_intercept is None else fit_intercept
    largest = draw(st.floats(0.25, 4.0))
    condition = draw(st.floats(1.0, max_condition))
    noise = draw(st.floats(0.0, 1.0))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))

    spread = np.sort(rng.uniform(0.0, 1.0, n_features))[::-1]
    spread[0], spread[-1] = 1.0, 0.0 if n_features > 1 else 1.0
    eigenvalues = largest * condition ** (spread - 1.0)
    X = _design(rng, n_samples, n_features, eigenvalues)
    coefficients = rng.standard_normal(n_features) * draw(st.floats(0.5, 3.0))
    y = X @ coefficients + noise * rng.standard_normal(n_samples)
    if intercept:
        X = X + 0.5 * rng.standard_normal(n_features)
        y = y + X.mean(axis=0) @ coefficients + rng.standard_normal()
    return Regression(X=X, y=y, fit_intercept=intercept)


def weight_decays(min_exponent: float = -3.0, max_exponent: float = 1.0) -> st.SearchStrategy[float]:
    """λ log-uniform over [10^min_exponent, 10^max_exponent]: several decades."""
    return st.floats(min_exponent, max_exponent).map(lambda exponent: 10.0**exponent)


# -- oracles ---------------------------------------------------------------------------


def ridge(problem: Regression, weight_decay: float) -> tuple[np.ndarray, float]:
    """Closed-form ridge: w* = (XᵀX/n + λI)⁻¹ Xᵀy/n on centred data, b = ȳ − x̄ᵀw*."""
    X, y = problem.centred()
    n = problem.n_samples
    gram = X.T @ X / n + weight_decay * np.eye(problem.n_features)
    w = np.linalg.solve(gram, X.T @ y / n)
    return w, problem.intercept_for(w)


def box_least_squares(problem: Regression, radius: float) -> tuple[np.ndarray, float]:
    """argmin (1/2n)‖Xw + b − y‖² s.t. ‖w‖∞ ≤ radius, by ``scipy.optimize.lsq_linear``.

    The intercept is free, so for any w its best value is ȳ − x̄ᵀw: centring is exact.
    """
    X, y = problem.centred()
    result = lsq_linear(X, y, bounds=(-radius, radius), method="bvls", tol=1e-14)
    return result.x, problem.intercept_for(result.x)


def box_kkt_residual(problem: Regression, w: np.ndarray, b: float, radius: float) -> float:
    """max(‖w − clip(w − ∇_w, −r, r)‖∞, |∇_b|), the projected gradient: zero iff KKT holds.

    At a solution of the box problem, each free coordinate has zero gradient and each
    coordinate at a bound has a gradient pushing outwards.
    """
    grad_w, grad_b = problem.gradient(w, b)
    projected = w - np.clip(w - grad_w, -radius, radius)
    free = abs(grad_b) if problem.fit_intercept else 0.0
    return float(max(np.max(np.abs(projected)), free))


def max_stable_lr(
    problem: Regression, weight_decay: float, momentum: float = 0.0, nesterov: bool = False
) -> float:
    """The step bound of gradient descent on the ridge loss: it converges iff lr is below it.

    2/(L + λ) plain, 2(1 + μ)/(L + λ) with heavy-ball momentum μ, and
    2(1 + μ)/((1 + 2μ)(L + λ)) with Nesterov's. L + λ is the largest eigenvalue of the
    Hessian in θ = (w, b); without an intercept, L is the largest eigenvalue of XᵀX/n.
    """
    hessian = problem.data_hessian() + problem.penalty(weight_decay)
    slowdown = 1 + 2 * momentum if nesterov else 1.0
    return 2 * (1 + momentum) / (slowdown * np.linalg.eigvalsh(hessian)[-1])


def sgd_affine_map(
    problem: Regression,
    *,
    lr: float,
    coupled: float = 0.0,
    shrink: float = 0.0,
    momentum: float = 0.0,
    dampening: float = 0.0,
    nesterov: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """torch's SGD step on this quadratic, after its first step, as z ← M z + k.

    The state is z = (θ, b) with θ = (w, intercept) and b the momentum buffer; the
    gradient is g = (AᵀA/n + λ_c·P)θ − Aᵀy/n for the coupled λ_c (``coupled``), and
    decoupled decay multiplies the weights by 1 − ``shrink`` (shrink = s·λ):

        b ← μ·b + (1 − d)·g,   θ ← (I − shrink·P)·θ − lr·(b, or g + μ·b with Nesterov).

    Without momentum torch ignores the dampening; so does this map.
    """
    size = problem.augmented().shape[1]
    identity = np.eye(size)
    unit_penalty = problem.penalty(1.0)
    hessian = problem.data_hessian() + coupled * unit_penalty
    pull = problem.augmented().T @ problem.y / problem.n_samples
    damped = 1 - dampening if momentum else 1.0

    # b' = buffer_state @ (θ, b) + buffer_shift
    buffer_state = np.hstack([damped * hessian, momentum * identity])
    buffer_shift = -damped * pull
    if nesterov:
        update_state = np.hstack([hessian, np.zeros_like(identity)]) + momentum * buffer_state
        update_shift = -pull + momentum * buffer_shift
    else:
        update_state, update_shift = buffer_state, buffer_shift
    keep = np.hstack([identity - shrink * unit_penalty, np.zeros_like(identity)])
    M = np.vstack([keep - lr * update_state, buffer_state])
    k = np.concatenate([-lr * update_shift, buffer_shift])
    return M, k


def spectral_radius(matrix: np.ndarray) -> float:
    """max |eigenvalue|: an affine iteration converges iff this is below 1."""
    return float(np.max(np.abs(np.linalg.eigvals(matrix))))
