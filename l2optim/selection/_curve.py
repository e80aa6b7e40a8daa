"""The cross-validation curve over λ: its points, λ_min, λ_1se, its edges and its plot.

:class:`CVCurve` is what every λ search returns: :class:`l2optim.RidgeCVResult`
(closed-form ridge) and :class:`l2optim.LambdaSearch` (any trained model) are CV curves
with more attached. A curve is a set of evaluated λ, ascending, each with a CV mean and a
standard error, and the choices read from it.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, fields
from typing import Any

import numpy as np

__all__ = [
    "CVCurve",
    "Evaluation",
    "LambdaAtEdgeWarning",
    "one_standard_error_lambda",
]


class LambdaAtEdgeWarning(UserWarning):
    """λ_min is the smallest or largest λ searched: the best λ may lie outside the bounds."""


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
        cost: the work the evaluation took in the objective's own unit (optimizer steps,
            say), when it reports one; ``None`` otherwise.
    """

    lam: float
    scores: tuple[float, ...]
    mean: float
    se: float | None
    seconds: float
    cost: float | None = None

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return all(_same(getattr(self, f.name), getattr(other, f.name)) for f in fields(self))

    def __hash__(self) -> int:
        return hash((self.lam, self.mean))  # never NaN: equal records hash alike

    @classmethod
    def from_scores(
        cls, lam: float, scores: Sequence[float], seconds: float, cost: float | None = None
    ) -> Evaluation:
        """Build the record, computing the mean and its standard error."""
        values = np.asarray(scores, dtype=float)
        if not np.isfinite(values).all():
            mean, se = math.inf, (None if values.size == 1 else math.nan)
        else:
            mean = float(values.mean())
            se = None if values.size == 1 else float(values.std(ddof=1) / math.sqrt(values.size))
        return cls(
            float(lam),
            tuple(float(v) for v in values),
            mean,
            se,
            float(seconds),
            None if cost is None else float(cost),
        )


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


def _read_only(values: Iterable[float | None]) -> np.ndarray:
    array = np.array([math.nan if v is None else v for v in values], dtype=float)
    array.setflags(write=False)
    return array


#: Points closer than this (in decades of λ) to a point already shown are left out of
#: :meth:`CVCurve.summary`: a refinement's points crowd around the λ it refines.
SUMMARY_GAP_DECADES = 0.2


@dataclass(frozen=True, eq=False, repr=False)
class CVCurve:
    """A cross-validation curve over λ and the λ chosen from it.

    ``print(curve)`` shows the choices in one line; :meth:`summary` the curve as a
    table, :meth:`to_dataframe` every point as a pandas ``DataFrame``.

    Attributes:
        lambdas: every λ evaluated, ascending (read-only array).
        cv_mean: the CV mean score at each λ (lower is better; :math:`+\\infty` where a
            training diverged).
        cv_se: its standard error at each λ; NaN where there is none (single scores).
        lambda_min: the λ with the lowest CV mean.
        lambda_1se: the largest λ whose CV mean is within one standard error of the
            lowest (glmnet's ``lambda.1se``); ``None`` without standard errors.
        bounds: the interval searched, ``(lo, hi)``.
    """

    lambdas: np.ndarray
    cv_mean: np.ndarray
    cv_se: np.ndarray
    lambda_min: float
    lambda_1se: float | None
    bounds: tuple[float, float]

    @staticmethod
    def points(
        lambdas: Iterable[float], means: Iterable[float], ses: Iterable[float | None]
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(lambdas, cv_mean, cv_se)`` sorted by λ, as read-only float arrays (NaN for
        a missing standard error): the arrays a curve holds."""
        rows = sorted(zip(lambdas, means, ses, strict=True), key=lambda row: row[0])
        return tuple(_read_only(column) for column in zip(*rows, strict=True))  # type: ignore[return-value]

    @classmethod
    def from_evaluations(cls, records: Sequence[Evaluation], /, **fields: Any) -> Any:
        """The curve of the evaluations ``records``, and ``fields``, the class's other
        attributes.

        ``lambdas``, ``cv_mean``, ``cv_se`` and ``lambda_1se`` are read from the records
        (λ ascending; the one-standard-error rule); ``fields`` gives the rest:
        ``lambda_min`` and ``bounds``, and a subclass's own (its ``evaluations``, say).
        """
        lambdas, means, ses = cls.points(
            [e.lam for e in records], [e.mean for e in records], [e.se for e in records]
        )
        return cls(
            lambdas=lambdas,
            cv_mean=means,
            cv_se=ses,
            lambda_1se=one_standard_error_lambda(lambdas, means, ses),
            **fields,
        )

    @property
    def at_edge(self) -> str | None:
        """``"lower"`` or ``"upper"`` when λ_min is the smallest or largest λ evaluated —
        the best λ may then lie outside the range searched — else ``None``."""
        if len(self.lambdas) < 2:
            return None
        if self.lambda_min <= self.lambdas[0]:
            return "lower"
        if self.lambda_min >= self.lambdas[-1]:
            return "upper"
        return None

    def warn_if_at_edge(self, stacklevel: int = 3) -> None:
        """Warn (:class:`LambdaAtEdgeWarning`) when λ_min is at an end of the search
        bounds (:attr:`at_edge`); ``stacklevel`` as for :func:`warnings.warn`, counted
        from the caller of this method."""
        edge = self.at_edge
        if edge is None:
            return
        side = "below" if edge == "lower" else "above"
        lo, hi = self.bounds
        warnings.warn(
            f"lambda_min={self.lambda_min:.3g} is at the {edge} end of the search bounds "
            f"[{lo:.3g}, {hi:.3g}]: the best λ may lie {side} them; widen the bounds",
            LambdaAtEdgeWarning,
            stacklevel=stacklevel,
        )

    def plot(self, ax: Any = None) -> Any:
        """Plot the CV curve (mean ± SE against λ) with λ_min and λ_1se marked.

        Args:
            ax: a matplotlib ``Axes``; a new figure when ``None``.

        Returns:
            The axes drawn on.
        """
        if ax is None:
            try:
                import matplotlib.pyplot as plt
            except ImportError as exc:  # pragma: no cover - matplotlib is a test dependency
                raise ImportError(
                    "plot() needs matplotlib; install it with: pip install 'l2optim[plot]'"
                ) from exc
            _, ax = plt.subplots()
        finite = np.isfinite(self.cv_mean)
        errors = None
        if np.isfinite(self.cv_se).any():
            errors = np.where(np.isfinite(self.cv_se), self.cv_se, 0.0)[finite]
        ax.errorbar(self.lambdas[finite], self.cv_mean[finite], yerr=errors, fmt="o-", ms=3,
                    capsize=2, label="CV score")
        ax.axvline(self.lambda_min, color="C1", ls="--", label=f"λ_min = {self.lambda_min:.3g}")
        if self.lambda_1se is not None:
            ax.axvline(self.lambda_1se, color="C2", ls=":",
                       label=f"λ_1se = {self.lambda_1se:.3g}")
        ax.set_xscale("log")
        ax.set_xlabel("λ")
        ax.set_ylabel("CV score")
        ax.legend()
        return ax

    # -- reading it --------------------------------------------------------------------

    def _choices(self) -> dict[str, float | None]:
        """The λ this curve chooses, by name, each marked in :meth:`summary`."""
        return {"lambda_min": self.lambda_min, "lambda_1se": self.lambda_1se}

    def _facts(self) -> dict[str, Any]:
        """What a one-line description adds to the choices (subclasses extend it)."""
        return {"at_edge": self.at_edge}

    def __repr__(self) -> str:
        choices = ", ".join(f"{name}={_short(value)}" for name, value in self._choices().items())
        facts = ", ".join(f"{name}={_short(value)}" for name, value in self._facts().items())
        lo, hi = self.bounds
        return (
            f"{type(self).__name__}({choices}, {len(self.lambdas)} λ evaluated in "
            f"[{lo:.3g}, {hi:.3g}], {facts})"
        )

    def summary(
        self, *, every_point: bool = False, score: str = "cv_mean", title: bool = True
    ) -> str:
        """The curve as a text table: λ, CV mean and its standard error, the choices marked.

        Refinement points crowd around the λ they refine; unless ``every_point``, a point
        within 0.2 decades of one already shown is left out (the ends and the chosen λ
        are always shown, once). A last line says how much better the CV mean is at
        ``lambda_min`` than at the smallest λ evaluated, the nearest to λ → 0.

        Args:
            every_point: show every λ evaluated.
            score: the heading of the mean's column.
            title: begin with the one-line description (``repr``).
        """
        marks: dict[float, list[str]] = {}
        for name, value in self._choices().items():
            if value is not None:
                marks.setdefault(float(value), []).append(name)
        shown = range(len(self.lambdas)) if every_point else self._shown_points(marks)
        lines = [repr(self)] if title else []
        lines.append(f"{'lambda':>12}  {score:>12}  {'se':>10}")
        for i in shown:
            lam, mean, se = float(self.lambdas[i]), self.cv_mean[i], self.cv_se[i]
            text = f"{mean:.6g}" if math.isfinite(mean) else "diverged"
            se_text = f"{se:.4g}" if math.isfinite(se) else ""
            mark = "  <- " + ", ".join(marks[lam]) if lam in marks else ""
            lines.append(f"{lam:12.4e}  {text:>12}  {se_text:>10}{mark}")
        gain = self.gain_over_smallest()
        if gain is not None:
            lines.append(
                f"at lambda_min the mean is {100 * gain:.3g}% below its value at the smallest "
                f"λ evaluated, {self.lambdas[0]:.3g} (λ → 0)"
            )
        return "\n".join(lines)

    def gain_over_smallest(self) -> float | None:
        """1 − mean(λ_min)/mean(smallest λ): what λ gains over (almost) no decay.

        ``None`` when λ_min is the smallest λ evaluated, or either mean is not finite
        or positive.
        """
        best = int(np.flatnonzero(self.lambdas == self.lambda_min)[0])
        base, low = self.cv_mean[0], self.cv_mean[best]
        if best == 0 or not (math.isfinite(base) and math.isfinite(low) and base > 0):
            return None
        return float(1 - low / base)

    def _shown_points(self, marks: dict[float, list[str]]) -> list[int]:
        logs = np.log10(self.lambdas)
        keep = {0, len(self.lambdas) - 1} | {
            i for i, lam in enumerate(self.lambdas.tolist()) if lam in marks
        }
        for i in range(len(self.lambdas)):
            if all(abs(logs[i] - logs[k]) >= SUMMARY_GAP_DECADES for k in keep):
                keep.add(i)
        return sorted(keep)

    def to_dataframe(self) -> Any:
        """Every point as a pandas ``DataFrame``, one row per λ (ascending).

        Columns ``lambda``, ``cv_mean``, ``cv_se``, a boolean column per choice
        (``is_lambda_min``, ``is_lambda_1se``, …) and, where the curve keeps its
        evaluations, each fold's score (``split0_score``, …, as scikit-learn's
        ``cv_results_`` names them). Needs pandas.
        """
        try:
            import pandas as pd
        except ImportError:
            raise ImportError(
                "to_dataframe() needs pandas: pip install pandas (or use summary())"
            ) from None
        table: dict[str, Any] = {
            "lambda": self.lambdas, "cv_mean": self.cv_mean, "cv_se": self.cv_se
        }
        for name, value in self._choices().items():
            table[f"is_{name}"] = self.lambdas == (math.nan if value is None else value)
        by_lambda = {e.lam: e.scores for e in getattr(self, "evaluations", ())}
        folds = max((len(s) for s in by_lambda.values()), default=0)
        for j in range(folds if folds > 1 else 0):
            table[f"split{j}_score"] = [
                by_lambda[lam][j] if lam in by_lambda else math.nan
                for lam in self.lambdas.tolist()
            ]
        return pd.DataFrame(table)

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return all(
            _same(getattr(self, f.name), getattr(other, f.name)) for f in fields(self)
        )

    __hash__ = None  # type: ignore[assignment]  # equal curves may hold unhashable arrays


def _short(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else repr(value)


def _same(a: Any, b: Any) -> bool:
    """Equal, NaN equal to NaN (a record holds NaN for what was not measured)."""
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return np.array_equal(a, b, equal_nan=True)
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    if isinstance(a, tuple) and isinstance(b, tuple):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if hasattr(a, "detach") or hasattr(b, "detach"):  # tensors, models: the same object
        return a is b
    return bool(a == b)
