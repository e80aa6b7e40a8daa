"""``select_lambda_fast``: λ for a network at the cost of a few training runs.

The entry point joins the race (:mod:`l2optim.selection._race`) to stacked training
(:class:`l2optim.selection._stacked.FoldStacks`) and counts what it costs.
"""

from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from l2optim._validation import (
    check_bool,
    check_bounds,
    check_count,
    check_interval,
    check_non_negative,
    check_positive,
)
from l2optim.selection._curve import CVCurve, Evaluation
from l2optim.selection._kfold import KFoldObjective, kfold_splits
from l2optim.selection._race import RaceStop, Rung, plan_race, planned_cost, race
from l2optim.selection._refine import DEFAULT_SE_FRACTION
from l2optim.selection._stacked import FoldStacks
from l2optim.selection._trainer import FoldTrainer

__all__ = ["LambdaRace", "select_lambda_fast"]

DEFAULT_BUDGET = 5.0


@dataclass(frozen=True, eq=False, repr=False)
class LambdaRace(CVCurve):
    """What :func:`select_lambda_fast` found, and what it cost: a :class:`l2optim.CVCurve`.

    The curve (``lambdas``, ``cv_mean``, ``cv_se``, ``lambda_1se``, ``plot()``) is the last
    rung's, refinements included: every λ on it trained the same epochs on every fold.
    ``lambda_min`` is its λ of lowest mean; ``at_edge`` says when that is an end of
    ``bounds`` (a λ at an end of the last rung alone is the race's to move past).
    ``lambda_chosen`` is the race's choice, the λ to train the final model at.

    Attributes:
        lambda_chosen: ``lambda_min`` moved halfway (in ln λ) to the vertex of the
            parabola through it and its neighbours on the curve, where they bracket a
            minimum; else ``lambda_min`` (see :func:`select_lambda_fast`, "The choice").
        evaluations: the last rung as :class:`l2optim.Evaluation` records (λ, per-fold
            scores, mean, standard error); ``cost`` is the optimizer steps that λ took on
            all folds, ``seconds`` is NaN (the runs trained together).
        rungs: every rung of the race: after ``epochs`` epochs on every fold, the
            per-fold scores of the λ still racing.
        final: the last rung with the λ added by refinement, all trained as long.
        stop: why refinement at the last rung ended: ``"settled"`` (a curve convex in
            ln λ through the λ scored could lie at most ``se_fraction`` standard errors
            below the best mean),
            ``"budget"`` (no budget for a further λ), ``"bound"`` (the best λ is an end
            of ``bounds``: widen them), ``"repeat"`` (the next λ had been scored) or
            ``"diverged"`` (every λ of the last rung diverged).
        optimizer_steps: optimizer steps taken, each run's steps counted (m runs
            trained together for s steps count m·s).
        steps_per_run: the steps of one training run on all the samples, the unit of
            cost: ``epochs · ⌈n / batch_size⌉``.
        seconds: wall-clock time of the search.
        train_scale: every run trained at ``λ · train_scale``: the λ reported are on the
            scale of ``reference_folds``-fold CV (1.0 without a reference).
        model: with ``refit=True``, the model trained at ``lambda_chosen`` on all the
            samples (:meth:`l2optim.FoldTrainer.fit`); else ``None``. Its training is the
            final model's, not the search's: neither the cost nor ``seconds`` counts it.
    """

    evaluations: tuple[Evaluation, ...]
    lambda_chosen: float
    rungs: tuple[Rung, ...]
    final: Rung
    stop: RaceStop
    optimizer_steps: int
    steps_per_run: int
    seconds: float
    train_scale: float = 1.0
    model: Any = None

    @property
    def run_equivalents(self) -> float:
        """The cost in training runs: ``optimizer_steps / steps_per_run``."""
        return self.optimizer_steps / self.steps_per_run

    def _choices(self) -> dict[str, float | None]:
        return {**super()._choices(), "lambda_chosen": self.lambda_chosen}

    def _facts(self) -> dict[str, Any]:
        return {
            **super()._facts(),
            "stop": self.stop,
            "run_equivalents": round(self.run_equivalents, 2),
        }

    @property
    def at_edge(self) -> str | None:
        """``"lower"`` or ``"upper"`` when λ_min is an end of ``bounds``, else ``None``."""
        lo, hi = self.bounds
        if self.lambda_min <= lo:
            return "lower"
        if self.lambda_min >= hi:
            return "upper"
        return None

    def plot(self, ax: Any = None) -> Any:
        """Draw the race: the last rung as the CV curve (mean ± SE, λ_min and λ_1se
        marked) over each earlier rung's means, lighter for shorter training.

        Args:
            ax: a matplotlib ``Axes``; a new figure when ``None``.

        Returns:
            The axes drawn on.
        """
        ax = super().plot(ax)
        for position, rung in enumerate(self.rungs[:-1]):
            shade = 0.35 + 0.45 * position / max(len(self.rungs) - 1, 1)
            ax.plot(rung.lambdas, rung.means, "o-", ms=3, color=str(1 - shade),
                    label=f"after {rung.epochs} epochs")
        # Apart from λ_min (C1 dashed) and λ_1se (C2 dotted): the line to train at.
        ax.axvline(self.lambda_chosen, color="C3", ls="-", lw=1.5,
                   label=f"λ chosen = {self.lambda_chosen:.3g}")
        ax.set_title(f"race: {self.run_equivalents:.2f} training runs")
        ax.legend()
        return ax


def select_lambda_fast(
    trainer: FoldTrainer | KFoldObjective,
    bounds: tuple[float, float] | None = None,
    *,
    budget: float = DEFAULT_BUDGET,
    folds: int = 2,
    reference_folds: int | None = 5,
    shuffle: bool = True,
    random_state: int | None = 0,
    per_decade: float = 2.0,
    eta: float = 2.0,
    survivors: int = 4,
    first_fraction: float = 0.25,
    lean: int = 0,
    se_fraction: float = DEFAULT_SE_FRACTION,
    refit: bool = False,
    tolerance: float | None = None,
) -> LambdaRace:
    r"""Choose λ for a model trained by a :class:`~l2optim.FoldTrainer`, within a budget.

    :func:`l2optim.select_lambda` on a k-fold objective trains every fold to the end
    for each λ it scores: about 16 λ × k folds. This function races the λ instead, on
    two folds:

    0. **Two folds, every row scored.** Each λ is validated on every row at the cost of
       one training run (with k folds it costs k − 1), and a validation loss that a few
       rows dominate (a log loss on a few confident mistakes) needs every row scored.
       Each half trains on n/2 rows, and fewer rows call for a larger λ: for a mean
       training loss the best λ scales as 1/n (ridge's does). So each run trains at
       ``λ · n_ref / n_fold``, with ``n_fold`` its training rows and ``n_ref`` those of a
       ``reference_folds``-fold CV's training folds: every λ the race reports (the
       curve, ``lambda_min``) is on the scale of the λ that CV would choose.
    1. **The plan.** A log grid over ``bounds`` of at most ``per_decade`` λ per decade
       races in rungs: the field shrinks by ``eta`` per rung down to ``survivors``, the
       epochs grow by ``eta`` per rung up to the last rung's ``e_L``. The first rung
       trains at least ``first_fraction`` of the trainer's epochs (earlier, every
       ranking favours the smallest λ: weight decay acts late); the budget decides how
       many λ can race that way (fewer than the grid when it is small), and ``e_L`` is
       the longest training it then allows. With too little budget for
       ``survivors`` λ to reach that first rung, they alone race, as long as it allows.
    2. **Rungs.** Every λ still racing trains on every fold and is scored. Survivors
       continue their runs (nothing restarts), so a rung costs only its extra epochs;
       a λ scored after ``e`` epochs has exactly the score ``FoldTrainer(...,
       epochs=e)`` gives it.
    3. **The window.** The best λ still grows with the epochs after the first rung, so
       the survivors are a contiguous window of the grid that starts ``lean`` steps
       below the best λ and extends to larger ones, not the best by score.
    4. **Refinement.** With budget left after the plan, λ are added at the last rung
       (trained to ``e_L``): the grid's next λ when the best is at an end of the
       field, else Brent's steps on ln λ in the bracket of the best and its neighbours,
       until a curve convex in ln λ through the λ scored could lie at most
       ``se_fraction`` standard errors below the best mean (the rule
       :func:`l2optim.select_lambda` stops by): then no further λ can gain what this
       cross-validation resolves.
    5. **The choice.** ``lambda_min`` is the λ of the lowest mean score among those
       trained to ``e_L``; ``lambda_chosen``, the λ to train the final model at, moves
       it halfway (in ln λ) to the vertex of the parabola through it and its
       neighbours, where they bracket a minimum: a small budget leaves a coarse grid,
       whose best point can be half a step from the minimum, and the vertex alone
       leans towards the flatter side of the curve (below the minimum).

    All runs of a rung train together as one stacked model
    (:class:`torch.func.vmap`), which shares the per-step overhead of small models; the
    numbers are those of the trainer run one λ and fold at a time.

    **Cost.** ``budget`` is in training runs: optimizer steps, every run's counted, over
    the steps of one training of the final model on all the samples
    (``trainer.epochs · ⌈n / batch_size⌉``). One λ on all k folds to the end costs
    about k − 1 runs (each fold trains on (k−1)/k of the samples), so full k-fold CV
    over 16 λ costs about 64 runs for k = 5. The result reports ``run_equivalents``,
    ``optimizer_steps`` and the wall time.

    **What it gives up.** Two folds are a noisier, shifted view of the k-fold curve
    that the 1/n scaling only corrects on average; the last rung may train for fewer
    epochs than the final model; the window assumes the best λ of longer training is no
    smaller than that of shorter training, less ``lean`` grid steps; the grid is
    coarser than ``per_decade`` when the budget is small. ``benchmarks/selection/lambda_cost.py``
    measures the test loss this costs against full 5-fold CV on three problems (see
    "Choosing λ" for the table).

    Args:
        trainer: the :class:`~l2optim.FoldTrainer` (model factory, data, loss, score,
            optimizer and its arguments, decoupled flag, epochs, batch size, seed), or a
            :class:`~l2optim.KFoldObjective` over one, whose folds are then used.
        bounds: ``(lo, hi)`` with :math:`0 < lo < hi < \infty`; by default the trainer's
            :meth:`~l2optim.FoldTrainer.default_bounds` for the largest training fold, as
            :func:`l2optim.select_lambda` takes them.
        budget: the most training-run equivalents to spend, > 0.
        folds, shuffle, random_state: the k-fold split the race runs on when
            ``trainer`` is a FoldTrainer, as :func:`l2optim.kfold_splits` makes it.
        reference_folds: report λ on the scale of this k-fold CV's training folds
            (above), an integer ≥ 2; None trains every run at the λ reported (the
            race's own folds' scale).
        per_decade: the most grid points per decade of ``bounds``.
        eta: the factor by which the field shrinks and the epochs grow per rung, > 1.
        survivors: λ in the last rung, ≥ 3 (a bracket).
        first_fraction: the least share of the trainer's epochs the first rung trains,
            in (0, 1].
        lean: grid steps below the best λ that the window keeps, ≥ 0.
        se_fraction: refinement stops once a convex curve through the λ scored could
            lie at most this many standard errors below the best mean, ≥ 0 (as
            :func:`l2optim.select_lambda`'s ``se_fraction``).
        tolerance: the old name of ``se_fraction``, deprecated (a ``DeprecationWarning``).
        refit: train the model once more, at ``lambda_chosen`` on all the samples, and
            return it as ``model``.

    Returns:
        A :class:`l2optim.LambdaRace`: a :class:`l2optim.CVCurve` (``lambda_min``,
        ``lambda_1se``, ``at_edge``, ``plot()``) with ``lambda_chosen``, the rungs, the
        cost and, with ``refit``, the ``model``.

    Warns:
        LambdaAtEdgeWarning: ``lambda_min`` is an end of ``bounds``.

    Raises:
        TypeError: ``trainer`` is not a FoldTrainer or a KFoldObjective over one, or its
            optimizer is not an SGD, Adam or RMSprop.
        TypeError: an argument of the wrong type (named).
        ValueError: a bad argument value (named, with what is allowed), a budget too small for one epoch per rung,
            or every λ diverged.

    Example:
        >>> X, y, _ = l2optim.data.load_diabetes()
        >>> model = torch.nn.Sequential(torch.nn.Linear(10, 16), torch.nn.Tanh(),
        ...                             torch.nn.Linear(16, 1))
        >>> trainer = l2optim.FoldTrainer(model, X, y, optimizer=l2optim.AdamW,
        ...                               optimizer_kwargs={"lr": 1e-2}, epochs=20,
        ...                               batch_size=64, standardize=True)
        >>> race = l2optim.select_lambda_fast(trainer, bounds=(1e-4, 10.0), budget=5)
        >>> 1e-4 <= race.lambda_chosen <= 10.0, race.run_equivalents <= 5
        (True, True)
    """
    if isinstance(trainer, KFoldObjective):
        splits = trainer.splits
        trainer = trainer.fit_score
    else:
        splits = None
    if not isinstance(trainer, FoldTrainer):
        raise TypeError(
            "trainer must be a FoldTrainer or a KFoldObjective over one, got "
            f"{type(trainer).__name__}"
        )
    budget = check_positive("budget", budget)
    per_decade = check_positive("per_decade", per_decade)
    fraction = check_interval("first_fraction", first_fraction, low=0, high=1, low_open=True)
    eta = check_interval("eta", eta, low=1, low_open=True)
    survivors = check_count("survivors", survivors, low=3)
    lean = check_count("lean", lean, low=0)
    if tolerance is not None:
        warnings.warn(
            "tolerance is deprecated and will be removed: pass se_fraction, the name "
            "select_lambda gives the same stop",
            DeprecationWarning,
            stacklevel=2,
        )
        se_fraction = tolerance
    se_fraction = check_non_negative("se_fraction", se_fraction)
    refit = check_bool("refit", refit)
    n = len(trainer.X)
    if splits is None:
        splits = kfold_splits(n, folds, shuffle=shuffle, random_state=random_state)
    if reference_folds is None:
        train_scale = 1.0
    else:
        reference_folds = check_count("reference_folds", reference_folds, low=2)
        # λ ∝ 1/n: a run on n_fold rows trains at λ · n_ref / n_fold.
        reference_rows = n * (reference_folds - 1) / reference_folds
        train_scale = reference_rows / np.mean([len(train) for train, _ in splits])
    if bounds is None:
        bounds = trainer.default_bounds(max(len(train) for train, _ in splits))
        bounds = (bounds[0] / train_scale, bounds[1] / train_scale)
    lo, hi = check_bounds(bounds)

    start_time = time.perf_counter()
    steps_per_run = trainer.epochs * trainer.steps_per_epoch(n)
    fold_steps = sum(trainer.steps_per_epoch(len(train)) for train, _ in splits)
    cost_per_lambda_epoch = fold_steps / steps_per_run
    decades = math.log10(hi / lo)
    max_candidates = max(survivors, math.ceil(per_decade * decades) + 1)
    plan = plan_race(
        max_candidates,
        eta=eta,
        survivors=survivors,
        epochs=trainer.epochs,
        cost_per_lambda_epoch=cost_per_lambda_epoch,
        budget=budget,
        first_epochs=max(1, math.ceil(fraction * trainer.epochs)),
    )
    grid = np.geomspace(lo, hi, plan[0][1])
    left = budget - planned_cost(plan, cost_per_lambda_epoch)
    refinements = int(left // (plan[-1][0] * cost_per_lambda_epoch) + 1e-9)
    record = race(
        lambda lambdas: FoldStacks(trainer, splits, lambdas, train_scale),
        grid,
        plan,
        lean=lean,
        se_fraction=se_fraction,
        refinements=refinements,
    )
    final = record.final
    # Every λ of the last rung trained its epochs on every fold, survivors and added λ alike.
    steps_per_lambda = fold_steps * final.epochs
    evaluations = tuple(
        Evaluation.from_scores(lam, scores, math.nan, cost=steps_per_lambda)
        for lam, scores in zip(final.lambdas, final.scores, strict=True)
    )
    found = LambdaRace.from_evaluations(
        evaluations,
        lambda_min=record.lambda_min,
        bounds=(lo, hi),
        evaluations=evaluations,
        lambda_chosen=record.lambda_chosen,
        rungs=record.rungs,
        final=final,
        stop=record.stop,
        optimizer_steps=record.optimizer_steps,
        steps_per_run=steps_per_run,
        seconds=time.perf_counter() - start_time,
        train_scale=float(train_scale),
    )
    found.warn_if_at_edge()
    if refit:
        found = replace(found, model=trainer.fit(found.lambda_chosen))
    return found
