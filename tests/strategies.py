r"""Hypothesis strategies and closed-form oracles for least squares with L2.

The problem, in float64, full batch:

.. math::
    \min_{w,\,b}\ \frac{1}{2n}\lVert Xw + b\mathbf{1} - y\rVert^2 + \frac{\lambda}{2}\lVert w\rVert^2,

with an unpenalised intercept b when the problem has one. Strategies draw problems whose
conditioning is bounded (so every drawn example can be certified in bounded work) and
box-constrained problems built around a known solution. Oracles: ridge in closed form,
least squares in the box ‖w‖∞ ≤ r (scipy's ``lsq_linear``), the largest stable
gradient-descent step, and SGD (momentum, dampening, Nesterov, either form of decay) on
this quadratic as one affine map, whose fixed point and spectral radius say where SGD goes
and how fast. Certificates bound the distance of any (w, b) to the ridge or the box
solution from its gradient alone: a run can stop as soon as it is provably close.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from hypothesis import strategies as st
from scipy.optimize import lsq_linear

__all__ = [
    "BoxProblem",
    "Regression",
    "box_distance_bound",
    "box_problems",
    "box_least_squares",
    "max_stable_lr",
    "regressions",
    "ridge",
    "ridge_distance_bound",
    "ridge_hessian",
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


def _centred_design(rng: np.random.Generator, n: int, covariance: np.ndarray) -> np.ndarray:
    """An n × p design with column means 0 and XᵀX/n = ``covariance`` exactly."""
    raw = rng.standard_normal((n, covariance.shape[0]))
    raw -= raw.mean(axis=0)
    left, _ = np.linalg.qr(raw)  # orthonormal columns, each orthogonal to 1
    eigenvalues, eigenvectors = np.linalg.eigh(covariance)
    root = np.sqrt(np.clip(eigenvalues, 0.0, None))[:, None] * eigenvectors.T  # rootᵀroot = cov
    return math.sqrt(n) * left @ root


def _rotated(rng: np.random.Generator, eigenvalues: np.ndarray) -> np.ndarray:
    """Q diag(eigenvalues) Qᵀ for a random orthogonal Q."""
    rotation, _ = np.linalg.qr(rng.standard_normal((len(eigenvalues), len(eigenvalues))))
    return rotation @ np.diag(eigenvalues) @ rotation.T


@st.composite
def regressions(
    draw: st.DrawFn,
    *,
    max_samples: int = 40,
    max_features: int = 5,
    max_condition: float = 10.0,
    fit_intercept: bool | None = None,
) -> Regression:
    """Regression problems whose curvature, intercept included, is well conditioned.

    The data Hessian AᵀA/n in θ = (w, b), A = [X, 1] with an intercept and X without, has
    condition number exactly κ, drawn in [1, ``max_condition``]: eigenvalues spread over
    [L/κ, L]. Without an intercept L ∈ [0.25, 4] is drawn. With one, the intercept's diagonal
    entry is mean(1²) = 1, so a random rotation of the spectrum is scaled to make it 1
    (then L ∈ [1, κ]); its off-diagonal entries are the column means, of order one, so the
    intercept matters. A column that is nearly constant couples its weight to the intercept
    and makes AᵀA/n ill-conditioned even when the centred XᵀX/n is not: κ counts that, and
    the optimizers' convergence rates, hence the work per example, depend on it.
    y = Xw₀ + b₀ + noise, ‖w₀‖ and the noise level both drawn.
    """
    n_features = draw(st.integers(1, max_features))
    n_samples = draw(st.integers(n_features + 2, max(max_samples, n_features + 2)))
    intercept = draw(st.booleans()) if fit_intercept is None else fit_intercept
    largest = draw(st.floats(0.25, 4.0))
    condition = draw(st.floats(1.0, max_condition))
    noise = draw(st.floats(0.0, 1.0))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))

    size = n_features + intercept
    spread = np.sort(rng.uniform(0.0, 1.0, size))[::-1]
    spread[0], spread[-1] = 1.0, 0.0 if size > 1 else 1.0
    eigenvalues = largest * condition ** (spread - 1.0)
    if intercept:
        hessian = _rotated(rng, eigenvalues)
        hessian /= hessian[-1, -1]
        means = hessian[:-1, -1]
        covariance = hessian[:-1, :-1] - np.outer(means, means)  # Schur complement: PD
        X = _centred_design(rng, n_samples, covariance) + means
    else:
        X = _centred_design(rng, n_samples, _rotated(rng, eigenvalues))
    coefficients = rng.standard_normal(n_features) * draw(st.floats(0.5, 3.0))
    y = X @ coefficients + noise * rng.standard_normal(n_samples)
    if intercept:
        y = y + rng.standard_normal()
    return Regression(X=X, y=y, fit_intercept=intercept)


@dataclass(frozen=True)
class BoxProblem:
    """Least squares in the box ‖w‖∞ ≤ ``radius`` (b free) and its solution, known exactly."""

    regression: Regression
    radius: float
    w: np.ndarray
    b: float


@st.composite
def box_problems(
    draw: st.DrawFn,
    *,
    max_condition: float = 10.0,
    max_interior: float = 0.6,
    multipliers: tuple[float, float] = (0.1, 1.0),
) -> BoxProblem:
    """Box-constrained least squares built around a solution drawn first.

    X comes from ``regressions``; then the solution θ = (w, b) and the gradient there are
    drawn so that KKT holds, and y is solved for: at least one coordinate of w sits on the
    box (|w_i| = r, its gradient pointing out with a multiplier drawn in ``multipliers``
    times L·r, L the largest curvature), the others strictly inside (|w_i| ≤
    ``max_interior``·r, gradient 0), and y = Aθ − ρ with Aᵀρ/n = (g, 0) plus noise
    orthogonal to A's columns. The margins bound how slowly optimizers settle on the box:
    a coordinate near the boundary, or one on it with a tiny multiplier, is nearly
    degenerate.
    """
    regression = draw(regressions(max_condition=max_condition))
    n_features = regression.n_features
    radius = 10.0 ** draw(st.floats(-1.0, 1.0))
    n_active = draw(st.integers(1, n_features))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    signs = rng.choice([-1.0, 1.0], n_features)
    w = radius * np.concatenate(
        [signs[:n_active], rng.uniform(-max_interior, max_interior, n_features - n_active)]
    )
    hessian = regression.data_hessian()
    largest = float(np.linalg.eigvalsh(hessian)[-1])
    gradient = np.zeros(n_features)
    gradient[:n_active] = -signs[:n_active] * radius * largest * rng.uniform(*multipliers, n_active)
    order = rng.permutation(n_features)
    w, gradient = w[order], gradient[order]
    b = float(rng.standard_normal()) if regression.fit_intercept else 0.0

    design = regression.augmented()
    theta = np.append(w, b) if regression.fit_intercept else w
    pull = np.append(gradient, 0.0) if regression.fit_intercept else gradient
    residual = design @ np.linalg.solve(hessian, pull)  # Aᵀρ/n = (g, 0)
    noise = rng.standard_normal(regression.n_samples)
    noise -= design @ np.linalg.lstsq(design, noise, rcond=None)[0]  # orthogonal to A
    y = design @ theta - residual - draw(st.floats(0.0, 1.0)) * noise
    problem = Regression(X=regression.X, y=y, fit_intercept=regression.fit_intercept)
    return BoxProblem(regression=problem, radius=radius, w=w, b=b)


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


def max_stable_lr(
    problem: Regression, weight_decay: float, momentum: float = 0.0, nesterov: bool = False
) -> float:
    """The step bound of gradient descent on the ridge loss: it converges iff lr is below it.

    2/(L + λ) plain, 2(1 + μ)/(L + λ) with heavy-ball momentum μ, and
    2(1 + μ)/((1 + 2μ)(L + λ)) with Nesterov's. L + λ is the largest eigenvalue of the
    Hessian in θ = (w, b); without an intercept, L is the largest eigenvalue of XᵀX/n.
    """
    hessian = ridge_hessian(problem, weight_decay)
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


def ridge_hessian(problem: Regression, weight_decay: float) -> np.ndarray:
    """AᵀA/n + λ·diag(1, …, 1, 0): the Hessian of the ridge loss in θ = (w, b)."""
    return problem.data_hessian() + problem.penalty(weight_decay)


def ridge_distance_bound(
    problem: Regression, weight_decay: float, w: np.ndarray, b: float, smallest: float
) -> float:
    """‖∇F(θ)‖₂ / μ: a bound on ‖θ − θ*‖₂ for the ridge loss F, no oracle needed.

    F is μ-strongly convex, μ = ``smallest`` eigenvalue of ``ridge_hessian``, so
    ‖∇F(θ)‖ = ‖H(θ − θ*)‖ ≥ μ‖θ − θ*‖.
    """
    grad_w, grad_b = problem.gradient(w, b)
    gradient = np.append(grad_w + weight_decay * w, grad_b if problem.fit_intercept else 0.0)
    return float(np.linalg.norm(gradient)) / smallest


def box_distance_bound(
    problem: Regression, w: np.ndarray, b: float, radius: float, curvature: tuple[float, float]
) -> float:
    """A bound on ‖θ − θ_box‖₂ from the projected-gradient residual, no oracle needed.

    For least squares whose Hessian AᵀA/n has eigenvalues in [μ, L] = ``curvature``, on the
    set C = {‖w‖∞ ≤ r, b free}: with the step t = 1/L, θ⁺ = proj_C(θ − t∇) and the residual
    ρ = θ − θ⁺, the projection's optimality and strong monotonicity give
    μ‖θ⁺ − θ_box‖ ≤ (1/t + L)‖ρ‖, so ‖θ − θ_box‖ ≤ ‖ρ‖·(1 + 2L/μ). ρ = 0 iff KKT holds.
    """
    smallest, largest = curvature
    grad_w, grad_b = problem.gradient(w, b)
    projected = w - np.clip(w - grad_w / largest, -radius, radius)
    free = grad_b / largest if problem.fit_intercept else 0.0
    residual = np.append(projected, free)
    return float(np.linalg.norm(residual)) * (1 + 2 * largest / smallest)
