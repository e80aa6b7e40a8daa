"""Choosing λ for any model: a coarse log grid, then bounded Brent on log λ.

The search minimises a cross-validation score :math:`\\mathrm{CV}(\\lambda)` over
:math:`\\lambda \\in [\\lambda_{lo}, \\lambda_{hi}]`. It first scores a grid evenly spaced
in :math:`\\log\\lambda`, then runs scipy's bounded Brent method on
:math:`x = \\log\\lambda` inside the bracket formed by the two grid neighbours of the best
grid point. The result is the continuous optimum, not a grid point.

Both :func:`select_lambda` (any model, scores from a user objective) and
:func:`l2optim.ridge_cv` (closed-form ridge, vectorised scores) use the same search.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy.optimize import minimize_scalar

from l2optim._validation import check_bounds, check_callable, check_count, check_positive
from l2optim.selection import _refine
from l2optim.selection._curve import CVCurve, Evaluation
from l2optim.selection._log import LogWriter, read_log

__all__ = ["LambdaSearch", "ObjectiveError", "grid_then_brent", "select_lambda"]

#: Points on the coarse grid of :func:`select_lambda` (one per decade of the default bounds).
DEFAULT_N_GRID = 7
#: Tolerance on ln λ: 0.01 locates λ to about 1%.
DEFAULT_XTOL = 0.01
DEFAULT_SE_FRACTION = _refine.DEFAULT_SE_FRACTION
#: The search interval of an objective that proposes none.
DEFAULT_BOUNDS = (1e-6, 1.0)


# --------------------------------------------------------------------------- the search


class _Settled(Exception):
    """Raised inside Brent's loop to stop it: what is left to gain is below the noise."""


def grid_then_brent(
    score: Callable[[float], float],
    bounds: tuple[float, float],
    *,
    n_grid: int,
    xtol: float,
    score_grid: Callable[[np.ndarray], np.ndarray] | None = None,
    standard_error: Callable[[float], float | None] | None = None,
    se_fraction: float | None = None,
) -> float:
    r"""Minimise ``score`` over λ in ``bounds``: log grid, then Brent on ln λ in the bracket.

    Args:
        score: :math:`\lambda \mapsto \mathrm{CV}(\lambda)`; non-finite values count as
            :math:`+\infty`.
        bounds: ``(lo, hi)``, the search interval.
        n_grid: number of grid points :math:`\lambda_i = lo\,(hi/lo)^{i/(n-1)}`.
        xtol: absolute tolerance of Brent on :math:`\ln\lambda`, about the relative
            precision of the returned λ.
        score_grid: scores a whole grid at once (vectorised); by default ``score`` is
            called on each grid point in turn.
        standard_error: the standard error of the score at an evaluated λ (None where
            there is none); with ``se_fraction``, the noise-aware stop.
        se_fraction: stop refining once a curve convex in ln λ through the evaluated
            points could be at most ``se_fraction`` standard errors (at the best point)
            below the best score: Brent would only be chasing differences the CV
            estimate cannot resolve. ``None``: refine to ``xtol``.

    Returns:
        The λ with the lowest score among every λ evaluated (grid and Brent), so the
        result is never worse than the best grid point.

    Raises:
        ValueError: when every grid point scores non-finite; there is nothing to refine.
    """
    grid = np.geomspace(bounds[0], bounds[1], n_grid)
    if score_grid is None:
        grid_scores = np.array([score(float(lam)) for lam in grid], dtype=float)
    else:
        grid_scores = np.asarray(score_grid(grid), dtype=float)
    grid_scores = np.where(np.isfinite(grid_scores), grid_scores, np.inf)
    if not np.isfinite(grid_scores).any():
        raise ValueError(
            f"every λ on the grid over bounds={bounds!r} gave a non-finite score, so there "
            "is nothing to refine (a training that diverges scores inf: try a smaller "
            "learning rate, or narrower bounds)"
        )
    seen = {math.log(lam): value for lam, value in zip(grid.tolist(), grid_scores, strict=True)}
    best = int(np.argmin(grid_scores))
    best_lam, best_score = float(grid[best]), float(grid_scores[best])

    def settled() -> bool:
        if standard_error is None:
            return False
        return _refine.settled(seen, standard_error(best_lam), se_fraction)

    def score_of_log(x: float) -> float:
        nonlocal best_lam, best_score
        lam = math.exp(x)
        value = float(score(lam))
        value = value if math.isfinite(value) else math.inf
        seen[x] = value
        if value < best_score:
            best_lam, best_score = lam, value
        if settled():
            raise _Settled
        return value

    if settled():
        return best_lam
    # Brent needs an interval; the grid neighbours bracket the grid minimum.
    lo_lam = float(grid[max(best - 1, 0)])
    hi_lam = float(grid[min(best + 1, n_grid - 1)])
    try:
        minimize_scalar(
            score_of_log,
            bounds=(math.log(lo_lam), math.log(hi_lam)),
            method="bounded",
            options={"xatol": xtol},
        )
    except _Settled:
        pass
    return best_lam


# --------------------------------------------------------------------------- results


@dataclass(frozen=True, eq=False, repr=False)
class LambdaSearch(CVCurve):
    """What :func:`select_lambda` found: a :class:`l2optim.CVCurve` and the evaluations.

    The curve's ``lambdas``, ``cv_mean``, ``cv_se``, ``lambda_min``, ``lambda_1se``,
    ``bounds``, ``at_edge`` and ``plot()`` are :class:`l2optim.CVCurve`'s, read from the
    evaluations: ``lambda_min`` is a continuous optimum (Brent's), ``lambda_1se`` the
    largest evaluated λ within one standard error of the lowest mean (``None`` when the
    objective returns single scores).

    Attributes:
        evaluations: every evaluation, in the order the search made them (those read
            back from a log included).
        model: with ``refit=True``, the model trained at ``lambda_min`` on all the data;
            else ``None``.
    """

    evaluations: tuple[Evaluation, ...]
    model: Any = None


class ObjectiveError(RuntimeError):
    """The objective raised; ``lam`` is the λ it was called with.

    The original exception is the ``__cause__``. Evaluations finished before it are
    in ``evaluations`` (and in the log, when there is one).
    """

    def __init__(self, lam: float, evaluations: tuple[Evaluation, ...]) -> None:
        super().__init__(f"the objective raised at lambda={lam!r}")
        self.lam = lam
        self.evaluations = evaluations

    def __reduce__(self) -> tuple[Any, ...]:
        # Rebuilt from its own arguments: it crosses process pools and pickles whole.
        return type(self), (self.lam, self.evaluations)


# --------------------------------------------------------------------------- select_lambda


def _as_scores(value: Any, lam: float) -> tuple[float, ...]:
    """The objective's return value as a tuple of floats."""
    if value is None:
        raise TypeError(
            f"the objective returned None at lambda={lam!r}; it must return the validation "
            "score (a number, or one per fold): is a `return` missing?"
        )
    if hasattr(value, "detach"):  # a torch tensor, maybe with grad
        value = value.detach().cpu().numpy()
    array = np.asarray(value, dtype=float).ravel()
    if array.size == 0:
        raise ValueError(f"the objective returned no score at lambda={lam!r}")
    return tuple(float(v) for v in array)


def _progress_bar(progress: bool | None) -> Any:
    if progress is False:
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:
        if progress:
            raise ImportError(
                "progress=True needs tqdm; install it with: pip install 'l2optim[progress]'"
            ) from None
        return None
    return tqdm(desc="select_lambda", unit="eval", leave=False)


def _default_bounds(objective: Any) -> tuple[float, float]:
    """The objective's own ``default_bounds()`` when it offers them, else (1e-6, 1)."""
    propose = getattr(objective, "default_bounds", None)
    proposed = propose() if callable(propose) else None
    return DEFAULT_BOUNDS if proposed is None else proposed


def _refitter(objective: Any) -> Callable[[float], Any]:
    """``objective.fit``, checked before the search starts rather than after it."""
    # A k-fold objective refits through its fit_score: check that one has a fit.
    target = getattr(objective, "fit_score", objective)
    if not callable(getattr(target, "fit", None)):
        raise TypeError(
            "refit=True needs an objective with a fit(lam) method, such as "
            f"l2optim.kfold_objective(l2optim.FoldTrainer(...), ...); got {objective!r}"
        )
    return objective.fit


def select_lambda(
    objective: Callable[[float], float | Sequence[float]],
    bounds: tuple[float, float] | None = None,
    *,
    n_grid: int = DEFAULT_N_GRID,
    xtol: float = DEFAULT_XTOL,
    se_fraction: float | None = DEFAULT_SE_FRACTION,
    log: str | os.PathLike[str] | None = None,
    progress: bool | None = None,
    refit: bool = False,
) -> LambdaSearch:
    r"""Choose λ by minimising a cross-validation score: log grid, then Brent on ln λ.

    The objective is first evaluated on ``n_grid`` points
    :math:`\lambda_i = lo\,(hi/lo)^{i/(n_{grid}-1)}`; scipy's bounded Brent method
    then minimises the mean score over :math:`x = \ln\lambda` between the two grid
    neighbours of the best grid point, to a tolerance ``xtol`` on :math:`x`, or until
    what is left to gain is below the noise (``se_fraction``).

    Args:
        objective: :math:`\lambda \mapsto` a validation score to minimise (a float),
            or a sequence of per-fold scores (then ``lambda_1se`` and the noise-aware
            stop are available). A NaN or infinite score, as from a diverged training
            run, counts as :math:`+\infty` and the search goes on.
        bounds: ``(lo, hi)`` with :math:`0 < lo < hi < \infty`. ``None``: the
            objective's own ``default_bounds()`` when it has one (a
            :func:`l2optim.kfold_objective` of a :class:`l2optim.FoldTrainer` derives
            them from the optimizer and the data), else ``(1e-6, 1)``.
        n_grid: points on the coarse grid (at least 3).
        xtol: tolerance on :math:`\ln\lambda`; 0.01 finds λ to about 1%.
        se_fraction: with per-fold scores, stop refining once a CV curve convex in
            :math:`\ln\lambda` through the points evaluated could lie at most
            ``se_fraction`` standard errors below the best mean: then λ_min costs at
            most that much CV score against the true minimum of such a curve, a
            difference the folds cannot resolve. ``None``: refine to ``xtol``.
        log: a file to which each finished evaluation is appended as one JSON line
            ``{"lam": ..., "scores": [...], "seconds": ...}``, flushed and synced to disk.
            When the file already holds evaluations, a λ found there is not evaluated
            again: rerun a search that was killed with the same ``log`` and it loses at
            most the evaluation that was running. Lines are keyed by λ alone, so a log
            must come from the same objective.
        progress: a tqdm progress bar over evaluations. ``None`` (default): a bar when
            tqdm is installed; ``True``: require tqdm; ``False``: no bar.
        refit: train the model once more, at ``lambda_min`` on all the data, with the
            objective's ``fit(lam)`` (a :func:`l2optim.kfold_objective` of a
            :class:`l2optim.FoldTrainer` has one), and return it as ``model``.

    Returns:
        A :class:`LambdaSearch`: the CV curve (``lambdas``, ``cv_mean``, ``cv_se``,
        ``lambda_min``, ``lambda_1se``, ``at_edge``, ``plot()``), the ``evaluations``
        and, with ``refit``, the ``model``.

    Warns:
        LambdaAtEdgeWarning: ``lambda_min`` is the smallest or largest λ searched.

    Raises:
        TypeError: an argument of the wrong type, ``refit=True`` for an objective
            without ``fit``.
        ValueError: for bad ``bounds``, ``n_grid``, ``xtol`` or ``se_fraction``, or when
            every grid point scores non-finite.
        ObjectiveError: when the objective raises; the message names the λ, the
            original exception is chained, and the finished evaluations are already
            in the log.

    Example:
        >>> search = l2optim.select_lambda(lambda lam: (math.log10(lam) + 3) ** 2)
        >>> round(search.lambda_min, 4)
        0.001
    """
    check_callable("objective", objective)
    lo_hi = check_bounds(_default_bounds(objective) if bounds is None else bounds)
    n_grid = check_count("n_grid", n_grid, low=3)
    xtol = check_positive("xtol", xtol)
    if se_fraction is not None:
        se_fraction = check_positive("se_fraction", se_fraction)
    fit = _refitter(objective) if refit else None
    log_path = None if log is None else Path(log)
    logged = {} if log_path is None else read_log(log_path)
    writer = None if log_path is None else LogWriter(log_path)
    bar = _progress_bar(progress)
    evaluations: dict[float, Evaluation] = {}

    def mean_score(lam: float) -> float:
        if lam not in evaluations:
            evaluations[lam] = logged.get(lam) or evaluate(lam)
            if bar is not None:
                bar.update()
                bar.set_postfix(lam=f"{lam:.3g}", score=f"{evaluations[lam].mean:.4g}")
        return evaluations[lam].mean

    def evaluate(lam: float) -> Evaluation:
        start = time.perf_counter()
        try:
            scores = _as_scores(objective(lam), lam)
        except Exception as exc:
            raise ObjectiveError(lam, tuple(evaluations.values())) from exc
        evaluation = Evaluation.from_scores(lam, scores, time.perf_counter() - start)
        if writer is not None:
            writer.write(evaluation)
        return evaluation

    try:
        lambda_min = grid_then_brent(
            mean_score,
            lo_hi,
            n_grid=n_grid,
            xtol=xtol,
            standard_error=lambda lam: evaluations[lam].se,
            se_fraction=se_fraction,
        )
    finally:
        if writer is not None:
            writer.close()
        if bar is not None:
            bar.close()
    done = tuple(evaluations.values())
    search = LambdaSearch.from_evaluations(
        done,
        lambda_min=lambda_min,
        bounds=lo_hi,
        evaluations=done,
        model=None if fit is None else fit(lambda_min),
    )
    search.warn_if_at_edge()
    return search
