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

import json
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np
from scipy.optimize import minimize_scalar

__all__ = [
    "Evaluation",
    "LambdaSearch",
    "ObjectiveError",
    "check_bounds",
    "grid_then_brent",
    "one_standard_error_lambda",
    "plot_cv_curve",
    "select_lambda",
]

#: Points on the coarse grid of :func:`select_lambda` (one per decade of the default bounds).
DEFAULT_N_GRID = 7
#: Tolerance on ln λ: 0.01 locates λ to about 1%.
DEFAULT_XTOL = 0.01


# --------------------------------------------------------------------------- the search


def check_bounds(bounds: Any) -> tuple[float, float]:
    """Return ``bounds`` as ``(lo, hi)`` floats, or raise ``ValueError`` naming them."""
    try:
        lo, hi = (float(b) for b in bounds)
    except (TypeError, ValueError):
        raise ValueError(
            f"bounds must be two numbers (lo, hi) with 0 < lo < hi < inf, got {bounds!r}"
        ) from None
    if not (math.isfinite(lo) and math.isfinite(hi) and 0 < lo < hi):
        raise ValueError(f"bounds must satisfy 0 < lo < hi < inf, got {bounds!r}")
    return lo, hi


def grid_then_brent(
    score: Callable[[float], float],
    bounds: tuple[float, float],
    *,
    n_grid: int,
    xtol: float,
    score_grid: Callable[[np.ndarray], np.ndarray] | None = None,
) -> float:
    """Minimise ``score`` over λ in ``bounds``: log grid, then Brent on ln λ in the bracket.

    Args:
        score: :math:`\\lambda \\mapsto \\mathrm{CV}(\\lambda)`; non-finite values count as
            :math:`+\\infty`.
        bounds: ``(lo, hi)``, the search interval.
        n_grid: number of grid points :math:`\\lambda_i = lo\\,(hi/lo)^{i/(n-1)}`.
        xtol: absolute tolerance of Brent on :math:`\\ln\\lambda`, about the relative
            precision of the returned λ.
        score_grid: scores a whole grid at once (vectorised); by default ``score`` is
            called on each grid point in turn.

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
            f"every λ on the grid over bounds={bounds!r} gave a non-finite score; "
            "narrow the bounds or check the objective"
        )
    best = int(np.argmin(grid_scores))
    best_lam, best_score = float(grid[best]), float(grid_scores[best])
    # Brent needs an interval; the grid neighbours bracket the grid minimum.
    lo_lam = float(grid[max(best - 1, 0)])
    hi_lam = float(grid[min(best + 1, n_grid - 1)])

    def score_of_log(x: float) -> float:
        nonlocal best_lam, best_score
        lam = math.exp(x)
        value = float(score(lam))
        value = value if math.isfinite(value) else math.inf
        if value < best_score:
            best_lam, best_score = lam, value
        return value

    minimize_scalar(
        score_of_log,
        bounds=(math.log(lo_lam), math.log(hi_lam)),
        method="bounded",
        options={"xatol": xtol},
    )
    return best_lam


def one_standard_error_lambda(
    lambdas: Sequence[float] | np.ndarray,
    means: Sequence[float] | np.ndarray,
    standard_errors: Sequence[float | None] | np.ndarray,
) -> float | None:
    """The one-standard-error rule: the largest λ within one SE of the best score.

    With :math:`i^* = \\arg\\min_i m_i` over finite means, the rule returns

    .. math:: \\lambda_{1se} = \\max\\{\\lambda_i : m_i \\le m_{i^*} + s_{i^*}\\},

    as glmnet's ``lambda.1se``: the most regularised model that the CV curve cannot
    tell apart from the best one.

    Returns:
        ``None`` when the best point has no standard error (a single score) or no mean
        is finite.
    """
    lambdas = np.asarray(lambdas, dtype=float)
    means = np.asarray(means, dtype=float)
    finite = np.isfinite(means)
    if not finite.any():
        return None
    best = int(np.argmin(np.where(finite, means, np.inf)))
    se_best = standard_errors[best]
    if se_best is None or not math.isfinite(float(se_best)):
        return None
    within = finite & (means <= means[best] + float(se_best))
    return float(lambdas[within].max())


# --------------------------------------------------------------------------- results


@dataclass(frozen=True)
class Evaluation:
    """One evaluation of the objective.

    Attributes:
        lam: the λ evaluated.
        scores: the objective's scores at λ (one per fold, or a single score).
        mean: :math:`\\bar s = \\frac1k\\sum_j s_j`; :math:`+\\infty` if any score is
            not finite.
        se: standard error of the mean, :math:`\\mathrm{sd}(s)/\\sqrt{k}` (``ddof=1``);
            ``None`` for a single score, NaN when a score is not finite.
        seconds: wall-clock time the objective took.
    """

    lam: float
    scores: tuple[float, ...]
    mean: float
    se: float | None
    seconds: float

    @classmethod
    def from_scores(cls, lam: float, scores: Sequence[float], seconds: float) -> Evaluation:
        """Build the record, computing the mean and its standard error."""
        values = np.asarray(scores, dtype=float)
        if not np.isfinite(values).all():
            mean, se = math.inf, (None if values.size == 1 else math.nan)
        else:
            mean = float(values.mean())
            se = None if values.size == 1 else float(values.std(ddof=1) / math.sqrt(values.size))
        return cls(float(lam), tuple(float(v) for v in values), mean, se, float(seconds))


def plot_cv_curve(
    ax: Any,
    lambdas: np.ndarray,
    means: np.ndarray,
    standard_errors: np.ndarray | None,
    lambda_min: float,
    lambda_1se: float | None,
) -> Any:
    """Draw a CV curve with error bars on log-λ axes and mark λ_min and λ_1se."""
    if ax is None:
        try:
            import matplotlib.pyplot as plt
        except ImportError as exc:  # pragma: no cover - matplotlib is a test dependency
            raise ImportError(
                "plot() needs matplotlib; install it with: pip install 'l2optim[plot]'"
            ) from exc
        _, ax = plt.subplots()
    order = np.argsort(lambdas)
    lambdas, means = np.asarray(lambdas)[order], np.asarray(means)[order]
    finite = np.isfinite(means)
    errors = None
    if standard_errors is not None:
        errors = np.asarray(standard_errors, dtype=float)[order][finite]
        errors = np.where(np.isfinite(errors), errors, 0.0)
    ax.errorbar(lambdas[finite], means[finite], yerr=errors, fmt="o-", ms=3, capsize=2,
                label="CV score")
    ax.axvline(lambda_min, color="C1", ls="--", label=f"λ_min = {lambda_min:.3g}")
    if lambda_1se is not None:
        ax.axvline(lambda_1se, color="C2", ls=":", label=f"λ_1se = {lambda_1se:.3g}")
    ax.set_xscale("log")
    ax.set_xlabel("λ")
    ax.set_ylabel("CV score")
    ax.legend()
    return ax


@dataclass(frozen=True)
class LambdaSearch:
    """What :func:`select_lambda` found.

    Attributes:
        lambda_min: the λ with the lowest mean score (a continuous optimum).
        lambda_1se: the largest evaluated λ whose mean is within one standard error
            of the lowest; ``None`` when the objective returns single scores.
        evaluations: every evaluation, in the order the search made them (those read
            back from a log included).
        bounds: the search interval.
    """

    lambda_min: float
    lambda_1se: float | None
    evaluations: tuple[Evaluation, ...]
    bounds: tuple[float, float]

    def plot(self, ax: Any = None) -> Any:
        """Plot the CV curve (mean ± SE against λ) with λ_min and λ_1se marked.

        Args:
            ax: a matplotlib ``Axes``; a new figure when ``None``.

        Returns:
            The axes drawn on.
        """
        lambdas = np.array([e.lam for e in self.evaluations])
        means = np.array([e.mean for e in self.evaluations])
        ses = np.array([np.nan if e.se is None else e.se for e in self.evaluations])
        has_se = any(e.se is not None for e in self.evaluations)
        return plot_cv_curve(
            ax, lambdas, means, ses if has_se else None, self.lambda_min, self.lambda_1se
        )


class ObjectiveError(RuntimeError):
    """The objective raised; ``lam`` is the λ it was called with.

    The original exception is the ``__cause__``. Evaluations finished before it are
    in ``evaluations`` (and in the log, when there is one).
    """

    def __init__(self, lam: float, evaluations: tuple[Evaluation, ...]) -> None:
        super().__init__(f"the objective raised at lambda={lam!r}")
        self.lam = lam
        self.evaluations = evaluations


# --------------------------------------------------------------------------- the log

_NON_FINITE = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}


def _encode_score(value: float) -> float | str:
    # Strict JSON has no NaN or Infinity; keep them as strings, read back losslessly.
    return value if math.isfinite(value) else repr(value)


def _decode_score(value: float | str) -> float:
    return _NON_FINITE[value] if isinstance(value, str) else float(value)


def read_log(path: Path) -> dict[float, Evaluation]:
    """The evaluations recorded in a log, keyed by λ.

    A line cut short (the process was killed while writing it) is skipped.
    """
    found: dict[float, Evaluation] = {}
    if not path.exists():
        return found
    with path.open(encoding="utf-8") as lines:
        for line in lines:
            try:
                record = json.loads(line)
                scores = [_decode_score(s) for s in record["scores"]]
                found[float(record["lam"])] = Evaluation.from_scores(
                    record["lam"], scores, record["seconds"]
                )
            except (ValueError, KeyError, TypeError):
                continue
    return found


class _LogWriter:
    """Appends one JSON line per evaluation and forces it to disk before going on."""

    def __init__(self, path: Path) -> None:
        self._file: IO[str] = path.open("a+", encoding="utf-8")
        self._file.seek(0, os.SEEK_END)
        if self._file.tell() > 0:
            self._file.seek(self._file.tell() - 1)
            if self._file.read(1) != "\n":  # a line cut short by a kill: end it
                self._file.write("\n")

    def write(self, evaluation: Evaluation) -> None:
        record = {
            "lam": evaluation.lam,
            "scores": [_encode_score(s) for s in evaluation.scores],
            "seconds": evaluation.seconds,
        }
        self._file.write(json.dumps(record) + "\n")
        self._file.flush()
        os.fsync(self._file.fileno())

    def close(self) -> None:
        self._file.close()


# --------------------------------------------------------------------------- select_lambda


def _as_scores(value: Any, lam: float) -> tuple[float, ...]:
    """The objective's return value as a tuple of floats."""
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


def _check_search_options(n_grid: Any, xtol: Any) -> None:
    if isinstance(n_grid, bool) or not isinstance(n_grid, int | np.integer) or n_grid < 3:
        raise ValueError(f"n_grid must be an integer >= 3, got {n_grid!r}")
    if isinstance(xtol, bool) or not isinstance(xtol, int | float) or not 0 < xtol < math.inf:
        raise ValueError(f"xtol must be a finite number > 0, got {xtol!r}")


def select_lambda(
    objective: Callable[[float], float | Sequence[float]],
    bounds: tuple[float, float] = (1e-6, 1.0),
    *,
    n_grid: int = DEFAULT_N_GRID,
    xtol: float = DEFAULT_XTOL,
    log: str | os.PathLike[str] | None = None,
    progress: bool | None = None,
) -> LambdaSearch:
    """Choose λ by minimising a cross-validation score: log grid, then Brent on ln λ.

    The objective is first evaluated on ``n_grid`` points
    :math:`\\lambda_i = lo\\,(hi/lo)^{i/(n_{grid}-1)}`; scipy's bounded Brent method
    then minimises the mean score over :math:`x = \\ln\\lambda` between the two grid
    neighbours of the best grid point, to a tolerance ``xtol`` on :math:`x`.

    Args:
        objective: :math:`\\lambda \\mapsto` a validation score to minimise (a float),
            or a sequence of per-fold scores (then ``lambda_1se`` is available). A NaN
            or infinite score, as from a diverged training run, counts as
            :math:`+\\infty` and the search goes on.
        bounds: ``(lo, hi)`` with :math:`0 < lo < hi < \\infty`.
        n_grid: points on the coarse grid (at least 3).
        xtol: tolerance on :math:`\\ln\\lambda`; 0.01 finds λ to about 1%.
        log: a file to which each finished evaluation is appended as one JSON line
            ``{"lam": ..., "scores": [...], "seconds": ...}``, flushed and synced to disk.
            When the file already holds evaluations, a λ found there is not evaluated
            again: rerun a search that was killed with the same ``log`` and it loses at
            most the evaluation that was running. Lines are keyed by λ alone, so a log
            must come from the same objective.
        progress: a tqdm progress bar over evaluations. ``None`` (default): a bar when
            tqdm is installed; ``True``: require tqdm; ``False``: no bar.

    Returns:
        A :class:`LambdaSearch` with ``lambda_min``, ``lambda_1se``, ``evaluations`` and
        ``plot()``.

    Raises:
        ValueError: for bad ``bounds``, ``n_grid`` or ``xtol``, or when every grid
            point scores non-finite.
        ObjectiveError: when the objective raises; the message names the λ, the
            original exception is chained, and the finished evaluations are already
            in the log.

    Example:
        >>> search = l2optim.select_lambda(lambda lam: (math.log10(lam) + 3) ** 2)
        >>> round(search.lambda_min, 4)
        0.001
    """
    if not callable(objective):
        raise TypeError(f"objective must be callable, got {type(objective).__name__}")
    lo_hi = check_bounds(bounds)
    _check_search_options(n_grid, xtol)
    log_path = None if log is None else Path(log)
    logged = {} if log_path is None else read_log(log_path)
    writer = None if log_path is None else _LogWriter(log_path)
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
        lambda_min = grid_then_brent(mean_score, lo_hi, n_grid=int(n_grid), xtol=float(xtol))
    finally:
        if writer is not None:
            writer.close()
        if bar is not None:
            bar.close()
    done = tuple(evaluations.values())
    lambda_1se = one_standard_error_lambda(
        [e.lam for e in done], [e.mean for e in done], [e.se for e in done]
    )
    return LambdaSearch(lambda_min, lambda_1se, done, lo_hi)
