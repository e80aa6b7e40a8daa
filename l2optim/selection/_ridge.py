"""Closed-form ridge regression with fast cross-validation over λ.

The loss is this library's

.. math:: L(w, b) = \\frac{1}{2n}\\lVert Xw + b - y\\rVert^2 + \\frac{\\lambda}{2}\\lVert w\\rVert^2,

whose minimiser, with :math:`X_c, y_c` centred when the intercept :math:`b` is fitted, is

.. math:: w^* = (X_c^\\top X_c/n + \\lambda I)^{-1} X_c^\\top y_c/n, \\qquad b^* = \\bar y - \\bar x^\\top w^*.

With the thin SVD :math:`X_c = U\\,\\mathrm{diag}(s)\\,V^\\top` and the penalty on the sum of
squares :math:`\\alpha = n\\lambda`, every quantity is a diagonal filter of one
factorisation: :math:`w = V\\,\\mathrm{diag}(s/(s^2+\\alpha))\\,U^\\top y_c` and the hat matrix
is :math:`H = \\tfrac1n\\mathbf 1\\mathbf 1^\\top + U\\,\\mathrm{diag}(s^2/(s^2+\\alpha))\\,U^\\top`. So
one factorisation serves every λ, and a whole grid of λ is scored in one matrix product.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from numbers import Integral
from typing import Any

import numpy as np
from scipy.optimize import brentq

from l2optim._validation import check_bool, check_bounds, check_float_array
from l2optim.selection._curve import CVCurve, one_standard_error_lambda
from l2optim.selection._kfold import kfold_splits
from l2optim.selection._search import grid_then_brent

__all__ = ["RidgeCVResult", "ridge_cv"]

#: The search interval is ``(_LOWER, _UPPER)`` times L, the largest eigenvalue of XᵀX/n.
_LOWER, _UPPER = 1e-6, 1e3
#: Four grid points per decade: a grid is one matrix product, so a fine one is cheap.
_GRID_PER_DECADE = 4
#: Brent's tolerance on ln λ; evaluations are cheap, so locate λ to 0.01%.
_XTOL = 1e-4


# --------------------------------------------------------------------------- factorisation


@dataclass(frozen=True)
class _ThinSVD:
    """:math:`X = U\\,\\mathrm{diag}(s)\\,V^\\top` restricted to the numerically nonzero s."""

    u: np.ndarray  # (n, r)
    s: np.ndarray  # (r,)
    v: np.ndarray  # (p, r)


def _thin_svd(x: np.ndarray) -> _ThinSVD:
    """The thin SVD of ``x`` from the eigendecomposition of its smaller Gram matrix.

    :math:`X^\\top X = V\\,\\mathrm{diag}(s^2)V^\\top` (tall) or
    :math:`XX^\\top = U\\,\\mathrm{diag}(s^2)U^\\top` (wide), the other factor being
    :math:`U = XV/s` or :math:`V = X^\\top U/s`. A Gram product is a level-3 BLAS call,
    several times faster than a direct SVD; its eigenvalues are accurate to
    :math:`\\epsilon\\,s_{max}^2`, so directions below :math:`\\max(n,p)\\,\\epsilon\\,s_{max}^2`
    are treated as exact zeros (their filter factor :math:`s^2/(s^2+\\alpha)` is
    negligible for every λ in the default search range).
    """
    n, p = x.shape
    tall = n >= p
    eigenvalues, vectors = np.linalg.eigh(x.T @ x if tall else x @ x.T)
    top = eigenvalues[-1] if eigenvalues.size else 0.0
    keep = eigenvalues > top * max(n, p) * np.finfo(float).eps
    if top <= 0:
        keep[:] = False
    s = np.sqrt(eigenvalues[keep])
    vectors = vectors[:, keep]
    if tall:
        return _ThinSVD(u=(x @ vectors) / s, s=s, v=vectors)
    return _ThinSVD(u=vectors, s=s, v=(x.T @ vectors) / s)


@dataclass(frozen=True)
class _CentredData:
    """X and y centred on the training rows' means (zero means when no intercept), and X's
    columns divided by their standard deviations there when standardising (else by 1)."""

    x: np.ndarray
    y: np.ndarray  # (n, k)
    x_mean: np.ndarray
    y_mean: np.ndarray
    x_scale: np.ndarray

    @classmethod
    def of(
        cls, x: np.ndarray, y: np.ndarray, fit_intercept: bool, standardize: bool
    ) -> _CentredData:
        x_scale = np.ones(x.shape[1])
        if standardize:
            sd = x.std(axis=0)
            x_scale = np.where(sd > 0, sd, 1.0)  # a constant column stays as it is
        if not fit_intercept:
            return cls(x / x_scale, y, np.zeros(x.shape[1]), np.zeros(y.shape[1]), x_scale)
        x_mean, y_mean = x.mean(axis=0), y.mean(axis=0)
        return cls((x - x_mean) / x_scale, y - y_mean, x_mean, y_mean, x_scale)

    def transform(self, x: np.ndarray) -> np.ndarray:
        """Other rows of X, centred and scaled as the training rows were."""
        return (x - self.x_mean) / self.x_scale


# --------------------------------------------------------------------------- CV scores


class _FullDataCV:
    """Leave-one-out and GCV scores from one SVD of the whole centred design.

    Leave-one-out: the model refit without sample i minimises the library's loss on
    the other n−1 samples, i.e. penalty :math:`\\alpha = (n-1)\\lambda` on the sum of
    squares. By the Sherman–Morrison identity its error on sample i is
    :math:`e_i/(1-H_{ii})`, with :math:`e` and :math:`H` the residuals and hat matrix of
    the all-sample fit with that same α: exact, not an approximation.

    GCV (Golub, Heath & Wahba 1979) replaces each :math:`H_{ii}` by their mean,
    :math:`\\mathrm{tr}(H)/n`, and uses the all-sample fit's own :math:`\\alpha = n\\lambda`.
    """

    def __init__(self, data: _CentredData, fit_intercept: bool, cv: str) -> None:
        self.data = data
        self.n = data.x.shape[0]
        self.cv = cv
        self.intercept_leverage = 1.0 / self.n if fit_intercept else 0.0
        self.svd = _thin_svd(data.x)
        self.uty = self.svd.u.T @ data.y  # (r, k)
        self.u_squared = self.svd.u**2
        # 1 - H_ii = (1 - 1/n - |U_i|^2) + sum_j U_ij^2 α/(s_j^2+α): summing the two
        # non-negative parts avoids the cancellation in 1 - H_ii when α is small.
        self.unexplained_leverage = 1.0 - self.intercept_leverage - self.u_squared.sum(axis=1)
        # The part of y outside the column space of U is never fitted.
        self.residual_outside = data.y - self.svd.u @ self.uty

    def fit(self, lam: float) -> tuple[np.ndarray, np.ndarray]:
        """:math:`w = V\\,\\mathrm{diag}(s/(s^2+n\\lambda))\\,U^\\top y_c` (p, k) and
        :math:`b = \\bar y - \\bar x^\\top w` (k,), the all-sample fit at λ, in the
        units of X (a standardised column's weight divided by its scale)."""
        s = self.svd.s
        coef = self.svd.v @ ((s / (s**2 + self.n * lam))[:, None] * self.uty)
        coef = coef / self.data.x_scale[:, None]
        return coef, self.data.y_mean - self.data.x_mean @ coef

    def per_sample_errors(self, lambdas: np.ndarray) -> np.ndarray:
        """The n per-sample CV errors for each λ, averaged over targets; shape (n, m)."""
        rows_out = self.n - 1 if self.cv == "loo" else self.n
        alphas = rows_out * lambdas
        shrink = alphas[:, None] / (self.svd.s**2 + alphas[:, None])  # 1 - s²/(s²+α), (m, r)
        m, k = len(lambdas), self.uty.shape[1]
        inside = self.svd.u @ (shrink[:, :, None] * self.uty[None]).transpose(1, 0, 2).reshape(
            -1, m * k
        )
        residuals = self.residual_outside[:, None, :] + inside.reshape(self.n, m, k)
        with np.errstate(divide="ignore", invalid="ignore"):
            if self.cv == "loo":
                one_minus_leverage = self.unexplained_leverage[:, None] + self.u_squared @ shrink.T
                errors = residuals / one_minus_leverage[:, :, None]
            else:
                dof = self.n * self.intercept_leverage + (1.0 - shrink).sum(axis=1)  # tr(H)
                errors = residuals / (1.0 - dof / self.n)[None, :, None]
        return (errors**2).mean(axis=2)

    def __call__(self, lambdas: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Mean and standard error of the per-sample errors, for each λ."""
        errors = self.per_sample_errors(lambdas)
        return errors.mean(axis=0), errors.std(axis=0, ddof=1) / math.sqrt(self.n)


class _KFoldCV:
    """k-fold scores: one SVD per training fold, reused for every λ.

    Fold j's model minimises the library's loss on its :math:`n_j` training rows,
    i.e. penalty :math:`\\alpha = n_j\\lambda`, with its own intercept and, when
    standardising, its own feature scales.
    """

    def __init__(
        self,
        x: np.ndarray,
        y: np.ndarray,
        fit_intercept: bool,
        standardize: bool,
        splits: Sequence[tuple[np.ndarray, np.ndarray]],
    ) -> None:
        self.folds: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, int]] = []
        for train, test in splits:
            data = _CentredData.of(x[train], y[train], fit_intercept, standardize)
            svd = _thin_svd(data.x)
            # Held-out rows in the training SVD's coordinates, and the training targets.
            test_scores = data.transform(x[test]) @ svd.v * svd.s  # (n_test, r), scaled by s
            test_targets = y[test] - data.y_mean
            self.folds.append((test_scores, svd.s, svd.u.T @ data.y, test_targets, len(train)))

    def fold_errors(self, lambdas: np.ndarray) -> np.ndarray:
        """Mean squared error of each fold for each λ; shape (n_folds, m)."""
        errors = []
        for test_scores, s, uty, test_targets, n_train in self.folds:
            filters = 1.0 / (s**2 + n_train * lambdas[:, None])  # (m, r)
            predictions = np.einsum("hr,mr,rk->mhk", test_scores, filters, uty, optimize=True)
            errors.append(((predictions - test_targets[None]) ** 2).mean(axis=(1, 2)))
        return np.array(errors)

    def __call__(self, lambdas: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Mean and standard error of the fold MSEs, for each λ."""
        errors = self.fold_errors(lambdas)
        return errors.mean(axis=0), errors.std(axis=0, ddof=1) / math.sqrt(len(self.folds))


# --------------------------------------------------------------------------- result


@dataclass(frozen=True, eq=False, repr=False)
class RidgeCVResult(CVCurve):
    """What :func:`ridge_cv` found: a :class:`l2optim.CVCurve` and the fit at λ_min.

    The curve's ``lambdas``, ``cv_mean``, ``cv_se`` (CV mean squared errors and their
    standard errors), ``lambda_min``, ``lambda_1se``, ``bounds``, ``at_edge`` and
    ``plot()`` are :class:`l2optim.CVCurve`'s; ``lambda_1se`` is refined to where the CV
    curve crosses the one-SE threshold when ``ridge_cv`` searched.

    Attributes:
        coef: :math:`w^*` at ``lambda_min``, shape (p,) or (p, k), so that the
            prediction is ``X @ coef + intercept``. A torch tensor when X was one.
        intercept: :math:`b^*` at ``lambda_min`` (0 without ``fit_intercept``); a float,
            or shape (k,) for 2-D y.
        n_evaluations: how many λ were evaluated.
        cv: the scheme: ``"loo"``, ``"gcv"`` or the number of folds.
    """

    coef: Any
    intercept: Any
    n_evaluations: int
    cv: str | int


# --------------------------------------------------------------------------- input checks


def _check_data(x: Any, y: Any) -> tuple[np.ndarray, np.ndarray]:
    """X as (n, p) and y as (n, k) float64 arrays."""
    x_array = check_float_array("X", x)
    y_array = check_float_array("y", y)
    if x_array.ndim != 2:
        raise ValueError(f"X must be 2-D, shape (n_samples, n_features); got shape {x_array.shape}")
    n = x_array.shape[0]
    if y_array.ndim not in (1, 2) or y_array.shape[0] != n:
        raise ValueError(
            f"y must have shape (n_samples,) or (n_samples, n_targets) with "
            f"n_samples = X.shape[0] = {n}; got shape {y_array.shape}"
        )
    if n < 3:
        raise ValueError(f"X must have at least 3 samples (rows), got {n}")
    if x_array.shape[1] == 0:
        raise ValueError(f"X must have at least 1 feature (column), got shape {x_array.shape}")
    return x_array, y_array.reshape(n, -1)


_CV_ALLOWED = (
    "cv must be 'loo', 'gcv', an integer number of folds k with 2 <= k <= n_samples (= {n}), "
    "or a sequence of at least 2 (train, test) index pairs; got {cv}"
)


def _check_splits(cv: Any, n: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """``cv`` as a list of (train, test) integer index arrays into ``range(n)``."""
    try:
        splits = [tuple(np.asarray(part) for part in pair) for pair in cv]
    except TypeError:
        raise TypeError(_CV_ALLOWED.format(n=n, cv=repr(cv))) from None
    # The message names the first bad pair, not the whole cv (index arrays can be long).
    shown = f"a sequence of {len(splits)} pairs"
    for i, pair in enumerate(splits):
        if len(pair) != 2:
            raise ValueError(_CV_ALLOWED.format(n=n, cv=f"{shown}, pair {i} of {len(pair)} parts"))
        for name, part in zip(("train", "test"), pair, strict=True):
            if part.ndim != 1 or part.size == 0 or part.dtype.kind not in "iu":
                why = f"not a non-empty 1-D integer array (shape {part.shape}, {part.dtype})"
            elif part.min() < 0 or part.max() >= n:
                why = f"indices outside [0, {n}): {int(part.min())} to {int(part.max())}"
            else:
                continue
            raise ValueError(_CV_ALLOWED.format(n=n, cv=f"{shown}; pair {i}'s {name} is {why}"))
    if len(splits) < 2:
        raise ValueError(_CV_ALLOWED.format(n=n, cv=shown))
    return splits


def _check_cv(
    cv: Any, n: int, shuffle: bool, random_state: int | None
) -> tuple[str | int, list[tuple[np.ndarray, np.ndarray]] | None]:
    """The scheme's name and, for k-fold, its splits (kfold_splits for an int k)."""
    if isinstance(cv, str):
        if cv not in ("loo", "gcv"):
            raise ValueError(_CV_ALLOWED.format(n=n, cv=repr(cv)))
        return cv, None
    if isinstance(cv, bool):
        raise TypeError(_CV_ALLOWED.format(n=n, cv=repr(cv)))
    if isinstance(cv, Integral):
        if not 2 <= cv <= n:
            raise ValueError(_CV_ALLOWED.format(n=n, cv=repr(cv)))
        return int(cv), kfold_splits(n, int(cv), shuffle=shuffle, random_state=random_state)
    splits = _check_splits(cv, n)
    return len(splits), splits


def _check_lambdas(lambdas: Any) -> np.ndarray:
    array = check_float_array("lambdas", lambdas)
    if array.ndim != 1 or array.size == 0 or not (array > 0).all():
        raise ValueError(
            f"lambdas must be a non-empty 1-D sequence of finite numbers > 0; got {lambdas!r}"
        )
    return np.unique(array)


# --------------------------------------------------------------------------- ridge_cv


class _CurveRecorder:
    """Scores λ through a CV scheme and keeps every (λ, mean, SE) it computed."""

    def __init__(self, scheme: _FullDataCV | _KFoldCV) -> None:
        self.scheme = scheme
        self.curve: dict[float, tuple[float, float]] = {}

    def grid(self, lambdas: np.ndarray) -> np.ndarray:
        means, ses = self.scheme(lambdas)
        for lam, mean, se in zip(lambdas.tolist(), means.tolist(), ses.tolist(), strict=True):
            self.curve[lam] = (mean, se)
        return means

    def one(self, lam: float) -> float:
        if lam not in self.curve:
            self.grid(np.array([lam]))
        return self.curve[lam][0]

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(lambdas, means, ses)``, ascending in λ."""
        return CVCurve.points(
            self.curve, [m for m, _ in self.curve.values()], [s for _, s in self.curve.values()]
        )


def _search_bounds(full: _FullDataCV) -> tuple[float, float]:
    """``(1e-6 L, 1e3 L)``, L the largest eigenvalue of XᵀX/n: from no shrinkage to total."""
    top = float(full.svd.s.max()) ** 2 / full.n if full.svd.s.size else 0.0
    scale = top if top > 0 else 1.0
    return _LOWER * scale, _UPPER * scale


def _refine_lambda_1se(recorder: _CurveRecorder, lambda_1se: float) -> float:
    """Move λ_1se from an evaluated point to where the CV curve crosses the threshold.

    Between λ_1se and the next evaluated λ (above the threshold :math:`m_{min} + s_{min}`)
    the curve crosses the threshold; Brent's root finder locates it on ln λ, and the
    largest evaluated λ that satisfies the rule is returned.
    """
    lambdas, means, ses = recorder.arrays()
    best = int(np.argmin(np.where(np.isfinite(means), means, np.inf)))
    threshold = means[best] + ses[best]
    above = lambdas > lambda_1se
    if not above.any() or not np.isfinite(means[above][0]):
        return lambda_1se
    brentq(
        lambda x: recorder.one(math.exp(x)) - threshold,
        math.log(lambda_1se),
        math.log(float(lambdas[above][0])),
        xtol=_XTOL,
    )
    return max(lam for lam, (mean, _) in recorder.curve.items() if mean <= threshold)


def _search(recorder: _CurveRecorder, bounds: tuple[float, float]) -> tuple[float, float | None]:
    # Exact scores: no noise-aware stop, Brent refines to _XTOL.
    """λ_min by grid + Brent, and λ_1se refined between evaluated points."""
    n_grid = 1 + round(_GRID_PER_DECADE * math.log10(bounds[1] / bounds[0]))
    lambda_min = grid_then_brent(
        recorder.one, bounds, n_grid=n_grid, xtol=_XTOL, score_grid=recorder.grid
    )
    lambda_1se = one_standard_error_lambda(*recorder.arrays())
    if lambda_1se is not None:
        lambda_1se = _refine_lambda_1se(recorder, lambda_1se)
    return lambda_min, lambda_1se


def _to_input_type(like: Any, array: np.ndarray) -> Any:
    """``array`` as a tensor of X's floating dtype and device when X is a tensor."""
    if not hasattr(like, "detach"):
        if array.ndim == 0:
            return float(array)
        array.setflags(write=False)
        return array
    import torch

    dtype = like.dtype if like.is_floating_point() else torch.float64
    return torch.as_tensor(array, dtype=dtype, device=like.device)


def ridge_cv(
    X: Any,
    y: Any,
    *,
    lambdas: Any = None,
    cv: str | int | Sequence[tuple[Any, Any]] = "loo",
    fit_intercept: bool = True,
    standardize: bool = False,
    shuffle: bool = True,
    random_state: int | None = 0,
    bounds: tuple[float, float] | None = None,
) -> RidgeCVResult:
    """Ridge regression with λ chosen by exact leave-one-out, GCV or k-fold CV.

    Fits :math:`\\min_{w,b}\\ \\frac{1}{2n}\\lVert Xw + b - y\\rVert^2 +
    \\frac{\\lambda}{2}\\lVert w\\rVert^2`, i.e.
    :math:`w^* = (X_c^\\top X_c/n + \\lambda I)^{-1}X_c^\\top y_c/n` on the centred data.
    scikit-learn's ``Ridge(alpha=α)`` penalises the sum of squares, so ``Ridge(alpha=n*λ)``
    gives the same coefficients; in CV, each refit uses the library's λ on its own
    training rows (penalty :math:`n_{train}\\lambda`), so scikit-learn's leave-one-out
    ``RidgeCV`` score at α equals this one at :math:`\\lambda = \\alpha/(n-1)`.

    One SVD of the centred design (computed from the smaller Gram matrix) serves every
    λ, and all λ of a grid are scored in one vectorised step; k-fold takes one SVD per
    training fold. Tall and wide X both work.

    Args:
        X: design, shape (n, p); a numpy array or torch tensor.
        y: targets, shape (n,) or (n, k); with k targets one λ is chosen for all, by
            the CV error averaged over targets.
        lambdas: λ values to score (all > 0). ``None``: the search over ``bounds`` — a
            log grid of 4 points per decade, then bounded Brent on :math:`\\ln\\lambda`
            between the grid neighbours of the best point, giving a continuous optimum;
            λ_1se is then refined to where the CV curve crosses the one-SE threshold.
        cv: the CV error, always a mean squared error:

            * ``"loo"``: exact leave-one-out. Mean of the n per-sample squared errors
              :math:`(e_i/(1-H_{ii}))^2`; standard error = their standard deviation
              (``ddof=1``) / :math:`\\sqrt n`.
            * ``"gcv"``: generalised CV, per-sample terms
              :math:`e_i^2/(1-\\mathrm{tr}(H)/n)^2` summarised the same way.
            * an int k: k-fold CV on the folds of :func:`l2optim.kfold_splits` with
              ``shuffle`` and ``random_state`` — the folds
              :func:`l2optim.kfold_objective` uses with the same arguments. Mean of the k
              fold MSEs; standard error = their standard deviation (``ddof=1``) /
              :math:`\\sqrt k`.
            * a sequence of (train, test) index pairs: k-fold CV on those folds.
        fit_intercept: fit an unpenalised intercept (centre X and y on each training
            set) or not.
        standardize: divide each feature by its standard deviation on each training set
            (1 for a constant feature) before fitting, and the held-out rows by the
            same: with ``fit_intercept``, scikit-learn's
            ``make_pipeline(StandardScaler(), Ridge())`` in every fold. Needs k-fold
            ``cv``; ``coef`` is then in the units of X (from the fit on all rows,
            standardised by their own deviations).
        shuffle: for an int ``cv``, assign rows to folds at random (otherwise in
            contiguous blocks, as scikit-learn's ``KFold()``).
        random_state: for an int ``cv``, the seed of that shuffle.
        bounds: the search interval ``(lo, hi)`` when ``lambdas`` is None; default
            :math:`[10^{-6}L, 10^{3}L]`, L the largest eigenvalue of
            :math:`X_c^\\top X_c/n` (from no shrinkage to total).

    Returns:
        A :class:`RidgeCVResult`; ``coef`` and ``intercept`` are torch tensors (X's
        dtype and device) when X is a tensor.

    Warns:
        LambdaAtEdgeWarning: ``lambda_min`` is the smallest or largest λ evaluated.

    Raises:
        TypeError: X, y or ``lambdas`` not numeric, ``fit_intercept`` or
            ``standardize`` not a bool, ``cv`` of another type.
        ValueError: for X that is not 2-D or has fewer than 3 rows, y of another length,
            non-finite values, an unknown ``cv`` or folds out of range, ``standardize``
            without k-fold, bad ``bounds``, or λ that are not positive.
    """
    x_array, y_array = _check_data(X, y)
    fit_intercept = check_bool("fit_intercept", fit_intercept)
    standardize = check_bool("standardize", standardize)
    cv, splits = _check_cv(cv, x_array.shape[0], check_bool("shuffle", shuffle), random_state)
    if standardize and splits is None:
        raise ValueError(
            f"standardize=True needs k-fold cv (an int or (train, test) splits), got cv={cv!r}: "
            "leave-one-out and GCV use one factorisation of the whole design"
        )
    full_data = _CentredData.of(x_array, y_array, fit_intercept, standardize)
    full = _FullDataCV(full_data, fit_intercept, "gcv" if splits is not None else cv)
    scheme = full
    if splits is not None:
        scheme = _KFoldCV(x_array, y_array, fit_intercept, standardize, splits)
    recorder = _CurveRecorder(scheme)
    if lambdas is None:
        search_bounds = _search_bounds(full) if bounds is None else check_bounds(bounds)
        lambda_min, lambda_1se = _search(recorder, search_bounds)
    else:
        grid = _check_lambdas(lambdas)
        means = recorder.grid(grid)
        lambda_min = float(grid[int(np.argmin(np.where(np.isfinite(means), means, np.inf)))])
        lambda_1se = one_standard_error_lambda(*recorder.arrays())
        search_bounds = (float(grid[0]), float(grid[-1]))
    coef, intercept = full.fit(lambda_min)
    if np.ndim(y) == 1:
        coef, intercept = coef[:, 0], intercept[0]
    curve_lambdas, cv_mean, cv_se = recorder.arrays()
    result = RidgeCVResult(
        lambdas=curve_lambdas,
        cv_mean=cv_mean,
        cv_se=cv_se,
        lambda_min=lambda_min,
        lambda_1se=lambda_1se,
        bounds=search_bounds,
        coef=_to_input_type(X, coef),
        intercept=_to_input_type(X, np.asarray(intercept)),
        n_evaluations=len(curve_lambdas),
        cv=cv,
    )
    result.warn_if_at_edge()
    return result
