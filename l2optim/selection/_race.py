"""A race over λ: successive halving on training epochs, then refinement at the last rung.

Full k-fold CV trains every fold to the end for every λ it scores. The race trains all
candidates of a log grid for part of the epochs on every fold, keeps some, trains those
further (continuing the same runs), and so on: the epochs grow geometrically while the
field shrinks, so most of the cost goes to the few λ that can still win. Successive
halving (Jamieson & Talwalkar 2016; Li et al. 2018, Hyperband) with three changes that
weight decay asks for:

* **No ranking before it means something.** Early in training a smaller λ almost always
  scores better (weight decay acts late), so the first rung trains at least a given
  share of the epochs (:func:`plan_race`); the budget then decides how many λ race.
* **The field moves right.** The best λ of the validation curve grows with the epochs
  trained, so the survivors are not the best by score but a contiguous window of the
  grid that starts a step below the current best and extends to larger λ
  (:func:`window`).
* **Refinement stops when it cannot matter.** With budget left at the last rung, the
  best λ and its neighbours bracket the minimum and Brent's steps on ln λ add λ
  between them (:func:`~l2optim.selection._refine.brent_step`), until a curve convex in
  ln λ through the points scored could lie at most ``se_fraction`` standard errors below
  the best mean (:func:`~l2optim.selection._refine.settled`, the rule
  ``select_lambda`` stops by): no λ in between could then gain what this
  cross-validation can resolve. A best λ at an end of the field brings in the grid's
  next λ beyond it instead.

The choice (:func:`chosen_lambda`) is not the scored λ of lowest mean alone: on the
coarse grid a small budget leaves, that can be up to half a grid step from the minimum.
Where the best λ and its neighbours bracket a minimum, it moves halfway (in ln λ) to
the vertex of the parabola through them.

``benchmarks/selection/lambda_rankings.py`` measures how early and on how few folds a ranking
holds. The race only needs contestants that can be trained further and scored
(:class:`Contestants`); training many at once is :class:`l2optim.selection._stacked.FoldStacks`'s
job, and the public entry point is :func:`l2optim.select_lambda_fast`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

import numpy as np

from l2optim.selection._refine import brent_step, parabola_vertex, settled

__all__ = [
    "STOP_REASONS",
    "Contestants",
    "RaceStop",
    "RaceRecord",
    "Rung",
    "chosen_lambda",
    "plan_race",
    "plan_rungs",
    "race",
]


#: Why the race's refinement at the last rung ended.
RaceStop = Literal["settled", "budget", "bound", "repeat", "diverged"]

#: What each :data:`RaceStop` means, as the docs and the command line say it.
STOP_REASONS: dict[str, str] = {
    "settled": "a curve convex in ln λ through the λ scored could lie at most `se_fraction` "
    "standard errors below the best mean: a further λ could not gain what the folds resolve",
    "budget": "the budget allowed no further λ",
    "bound": "the best λ is the end of the search bounds: a better one may lie beyond "
    "(widen the bounds)",
    "repeat": "the next λ to try had been scored already",
    "diverged": "every λ of the last rung diverged",
}


class Contestants(Protocol):
    """Runs of a set of λ on every fold, trained in lockstep: stacked
    (:class:`~l2optim.selection.FoldStacks`) or one training function's runs
    (:class:`~l2optim.selection._runs.TrainingRuns`).

    ``cost`` is the work done so far, in the unit the caller counts its budget in
    (optimizer steps, or rows trained on).
    """

    lambdas: np.ndarray
    epochs: int
    cost: float

    def train_to(self, epochs: int) -> None: ...

    def scores(self) -> np.ndarray:
        """Validation scores now, shape (λ, folds); inf for a diverged run."""
        ...

    def keep(self, index: Sequence[int]) -> None: ...

    def close(self) -> None:
        """End every run (the race calls it once it is done with them)."""
        ...


#: ``start(lambdas)``: new contestants for these λ, at epoch 0.
Start = Callable[[Sequence[float]], Contestants]


@dataclass(frozen=True, eq=False)
class Rung:
    """The scores of the λ still racing after ``epochs`` epochs on every fold.

    Attributes:
        epochs: epochs trained.
        lambdas: the λ scored, ascending.
        scores: validation scores, shape (λ, folds).
    """

    epochs: int
    lambdas: np.ndarray
    scores: np.ndarray

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return (
            self.epochs == other.epochs
            and np.array_equal(self.lambdas, other.lambdas)
            and np.array_equal(self.scores, other.scores, equal_nan=True)
        )

    __hash__ = None  # type: ignore[assignment]  # arrays: equal rungs need not hash alike

    @property
    def means(self) -> np.ndarray:
        """Mean score over folds; +inf where any fold diverged."""
        finite = np.isfinite(self.scores).all(axis=1)
        return np.where(finite, self.scores.mean(axis=1), np.inf)

    @property
    def standard_errors(self) -> np.ndarray:
        """Standard error of each mean, sd over folds (ddof=1) / √folds; NaN if diverged."""
        folds = self.scores.shape[1]
        if folds < 2:
            return np.full(len(self.lambdas), np.nan)
        with np.errstate(invalid="ignore"):
            return self.scores.std(axis=1, ddof=1) / math.sqrt(folds)


@dataclass(frozen=True)
class RaceRecord:
    """What :func:`race` did: every rung, the refinement, the choice and why it stopped."""

    rungs: tuple[Rung, ...]
    final: Rung
    #: The λ of the last rung's lowest mean.
    lambda_min: float
    #: The race's choice (:func:`chosen_lambda`).
    lambda_chosen: float
    #: Why refinement ended (:data:`STOP_REASONS`).
    stop: RaceStop
    #: The work the race did, in its contestants' unit.
    cost: float


# --------------------------------------------------------------------------- the plan


def plan_rungs(
    n_candidates: int,
    *,
    eta: float,
    survivors: int,
    epochs: int,
    cost_per_lambda_epoch: float,
    budget: float,
    first_epochs: int = 1,
) -> list[tuple[int, int]] | None:
    """The rungs ``[(epochs, λ racing), …]`` of the longest race of ``n_candidates`` λ.

    The field shrinks by ``eta`` per rung, from ``n_candidates`` to ``survivors``; the
    epochs grow by ``eta`` per rung, up to the last rung's ``e_L``: rung i runs to
    ``round(e_L / eta**(L-i))`` epochs (at least one more than the rung before). Training
    one λ for one epoch on every fold costs ``cost_per_lambda_epoch``; the plan takes the
    largest ``e_L ≤ epochs`` whose total cost is within ``budget``, continuing each
    survivor from where it stopped, and whose first rung trains at least
    ``first_epochs``. None when there is no such plan.
    """
    field = [int(n_candidates)]
    while field[-1] > survivors:
        field.append(max(int(survivors), math.ceil(field[-1] / eta)))
    best = None
    for last in range(len(field), int(epochs) + 1):
        plan: list[tuple[int, int]] = []
        for i, racing in enumerate(field):
            target = max(1, round(last / eta ** (len(field) - 1 - i)))
            if plan and target <= plan[-1][0]:
                target = plan[-1][0] + 1
            plan.append((target, racing))
        if plan[-1][0] > epochs or planned_cost(plan, cost_per_lambda_epoch) > budget * (1 + 1e-12):
            break
        if plan[0][0] >= first_epochs:
            best = plan
    return best


def plan_race(
    max_candidates: int,
    *,
    eta: float,
    survivors: int,
    epochs: int,
    cost_per_lambda_epoch: float,
    budget: float,
    first_epochs: int,
) -> list[tuple[int, int]]:
    """The race the budget buys: the most candidates whose first rung is long enough.

    Early rungs rank λ by how they score after a few epochs, which for weight decay is
    not yet how they score at the end; below ``first_epochs`` a ranking is not trusted.
    So the plan takes the largest field (at most ``max_candidates``) whose race fits
    ``budget`` with a first rung of at least ``first_epochs`` epochs (:func:`plan_rungs`),
    and, when even ``survivors`` λ cannot train that long, the ``survivors`` λ alone in
    one rung as long as the budget allows.

    Raises:
        ValueError: when ``survivors`` λ cannot train one epoch each within ``budget``.
    """
    options = dict(
        eta=eta,
        survivors=survivors,
        epochs=epochs,
        cost_per_lambda_epoch=cost_per_lambda_epoch,
        budget=budget,
    )
    for n in range(int(max_candidates), int(survivors) - 1, -1):
        plan = plan_rungs(n, first_epochs=first_epochs, **options)
        if plan is not None:
            return plan
    plan = plan_rungs(survivors, **options)
    if plan is None:
        least = survivors * cost_per_lambda_epoch
        raise ValueError(
            f"budget must be at least {least:.3g} training-run equivalents ({survivors} λ "
            f"for one epoch on every fold), got {budget!r}"
        )
    return plan


def planned_cost(plan: list[tuple[int, int]], cost_per_lambda_epoch: float) -> float:
    """The cost of the rungs ``plan`` (as :func:`plan_rungs` makes them)."""
    done, total = 0, 0.0
    for target, racing in plan:
        total += racing * (target - done) * cost_per_lambda_epoch
        done = target
    return total


# --------------------------------------------------------------------------- decisions


def window(means: np.ndarray, size: int, lean: int) -> np.ndarray:
    """Positions of the ``size`` contiguous λ kept: from ``lean`` below the best, rightwards.

    (At most ``size - 1`` below, so that the best is always kept.)

    ``means`` is in ascending λ order. Near the top of the grid the window slides left
    so that it still holds ``size`` λ.
    """
    best = int(np.argmin(means))
    # A window narrower than lean + 1 still holds the best.
    start = min(max(best - min(lean, size - 1), 0), max(len(means) - size, 0))
    return np.arange(start, min(start + size, len(means)))


# --------------------------------------------------------------------------- the race


def race(
    start: Start,
    lambdas: Sequence[float],
    plan: list[tuple[int, int]],
    *,
    lean: int,
    se_fraction: float,
    refinements: int,
    on_rung: Callable[[Rung], None] | None = None,
) -> RaceRecord:
    """Run the rungs of ``plan`` on ``start(lambdas)``, then refine at the last rung.

    Args:
        start: makes contestants for a list of λ (ascending), at epoch 0.
        lambdas: the first field, ascending.
        plan: ``[(epochs, λ racing), …]`` from :func:`plan_rungs`.
        lean: the window kept after each rung starts this many grid steps below the best.
        se_fraction: refinement stops once a convex curve through the points scored
            could lie at most this many standard errors below the best mean
            (:func:`~l2optim.selection._refine.settled`).
        refinements: at most this many extra λ, each trained to the last rung's epochs
            (the caller sizes it to the budget left).
        on_rung: called with each rung as it is scored (progress, logging).

    Returns:
        A :class:`RaceRecord`; ``stop`` says why refinement ended (:data:`STOP_REASONS`).
    """
    lambdas = np.asarray(lambdas, dtype=float)
    field = start(lambdas)
    rungs: list[Rung] = []
    try:
        for position, (epochs, _) in enumerate(plan):
            field.train_to(epochs)
            rung = Rung(epochs, field.lambdas.copy(), field.scores())
            rungs.append(rung)
            if on_rung is not None:
                on_rung(rung)
            if position + 1 < len(plan):
                kept = window(rung.means, plan[position + 1][1], lean)
                field.keep(kept)
    finally:
        field.close()
    cost = field.cost
    final_epochs = plan[-1][0]
    final = rungs[-1]
    refined = 0
    while True:
        stop, candidate = _next_candidate(final, lambdas, se_fraction)
        if candidate is None:
            break
        if refined == refinements:
            stop = "budget"
            break
        extra = start([candidate])
        try:
            extra.train_to(final_epochs)
        finally:
            extra.close()
        cost += extra.cost
        refined += 1
        final = _merged(final, Rung(final_epochs, extra.lambdas.copy(), extra.scores()))
        if on_rung is not None:
            on_rung(final)
    return RaceRecord(tuple(rungs), final, _lowest(final), chosen_lambda(final), stop, cost)


def _next_candidate(final: Rung, grid: np.ndarray, se_fraction: float) -> tuple[str, float | None]:
    """The next λ to train to the last rung's epochs, or why there is none.

    Best λ at an end of the field: the grid's next λ beyond it (the window guessed
    wrong). Otherwise a step of Brent's method in the bracket of the best λ and its
    neighbours (:func:`_step`), unless their means are :func:`settled`.
    """
    means = final.means
    if not np.isfinite(means).any():
        return "diverged", None
    best = int(np.argmin(means))
    if best in (0, len(means) - 1):
        beyond = grid[grid < final.lambdas[0]] if best == 0 else grid[grid > final.lambdas[-1]]
        if not len(beyond):
            return "bound", None
        return "edge", float(beyond[-1] if best == 0 else beyond[0])
    seen = dict(zip(np.log(final.lambdas).tolist(), means.tolist(), strict=True))
    if settled(seen, float(final.standard_errors[best]), se_fraction):
        return "settled", None
    bracket = np.array([best - 1, best, best + 1])
    candidate = brent_step(np.log(final.lambdas[bracket]), means[bracket])
    if np.isclose(final.lambdas, math.exp(candidate), rtol=1e-9, atol=0).any():
        return "repeat", None
    return "refine", math.exp(candidate)


def _merged(rung: Rung, more: Rung) -> Rung:
    lambdas = np.concatenate([rung.lambdas, more.lambdas])
    order = np.argsort(lambdas)
    scores = np.concatenate([rung.scores, more.scores])
    return Rung(rung.epochs, lambdas[order], scores[order])


def _lowest(final: Rung) -> float:
    """The λ of the lowest mean score in the last rung (refinements included)."""
    means = final.means
    if not np.isfinite(means).any():
        raise ValueError("every λ in the race diverged; lower the learning rate or the bounds")
    return float(final.lambdas[int(np.argmin(means))])


def chosen_lambda(final: Rung) -> float:
    """The race's choice: the λ of lowest mean, moved halfway (in ln λ) to the vertex of
    the parabola through it and its neighbours, where they bracket a minimum.

    Without a bracket (the best λ at an end of the rung, or a parabola that does not
    open upwards: :func:`parabola_vertex`), the λ of lowest mean itself.

    Why not the scored λ alone: with little budget the last rung is a coarse grid (at five
    training runs in ``benchmarks/selection/lambda_cost.py``, neighbours a factor of 4.4 to 5.2
    apart), and the minimum can lie anywhere up to half a step from the best point. Why
    not the vertex alone: the validation curve rises faster above its minimum than
    below, so a parabola through three points of it puts the vertex too far towards the
    flatter, smaller-λ side. The benchmark's ``race 5`` and ``race 5 min`` rows compare
    this choice with the best point ("Choosing λ" has the table).
    """
    lowest = _lowest(final)
    best = int(np.argmin(final.means))
    if best in (0, len(final.lambdas) - 1):
        return lowest
    bracket = slice(best - 1, best + 2)
    vertex = parabola_vertex(np.log(final.lambdas[bracket]), final.means[bracket])
    if vertex is None:
        return lowest
    return math.exp(0.5 * (math.log(lowest) + vertex))
