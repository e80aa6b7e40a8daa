"""``select_lambda_fast``: λ for a network at the cost of a few training runs.

The entry point joins the race (:mod:`l2optim.selection._race`) to stacked training
(:class:`l2optim.selection._stacked.FoldStacks`) and counts what it costs.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable
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
from l2optim.selection._runs import TrainingFunction, TrainingRuns, hosts_for
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
            scores, mean, standard error); ``cost`` is the work that λ took on all folds
            (in ``cost_unit``), ``seconds`` is NaN (the runs trained together).
        rungs: every rung of the race: after ``epochs`` epochs on every fold, the
            per-fold scores of the λ still racing.
        final: the last rung with the λ added by refinement, all trained as long.
        stop: why refinement at the last rung ended: ``"settled"`` (a curve convex in
            ln λ through the λ scored could lie at most ``se_fraction`` standard errors
            below the best mean),
            ``"budget"`` (no budget for a further λ), ``"bound"`` (the best λ is an end
            of ``bounds``: widen them), ``"repeat"`` (the next λ had been scored) or
            ``"diverged"`` (every λ of the last rung diverged).
        cost: the work the race did, every run's counted, in ``cost_unit``: optimizer
            steps for a :class:`~l2optim.FoldTrainer`'s stacked runs (m runs trained
            together for s steps count m·s); rows trained on for a training function's
            runs (an epoch of a run costs its training rows).
        cost_per_run: the same work for one training run on all the samples, the unit
            of the budget: ``epochs · ⌈n / batch_size⌉`` steps, or ``epochs · n`` rows.
        cost_unit: ``"optimizer steps"`` or ``"rows"``.
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
    cost: float
    cost_per_run: float
    seconds: float
    train_scale: float = 1.0
    model: Any = None
    cost_unit: str = "optimizer steps"

    @property
    def run_equivalents(self) -> float:
        """The cost in training runs: ``cost / cost_per_run``."""
        return self.cost / self.cost_per_run

    @property
    def optimizer_steps(self) -> int | None:
        """``cost`` when it counts optimizer steps (stacked runs), else None."""
        return int(self.cost) if self.cost_unit == "optimizer steps" else None

    @property
    def steps_per_run(self) -> int | None:
        """``cost_per_run`` when the cost counts optimizer steps, else None."""
        return int(self.cost_per_run) if self.cost_unit == "optimizer steps" else None

    def __setstate__(self, state: dict[str, Any]) -> None:
        # A race pickled by l2optim 0.1.0 counted optimizer steps under other names.
        if "optimizer_steps" in state:
            state = dict(state)
            state["cost"] = state.pop("optimizer_steps")
            state["cost_per_run"] = state.pop("steps_per_run")
            state.setdefault("cost_unit", "optimizer steps")
        self.__dict__.update(state)

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
    trainer: FoldTrainer | KFoldObjective | TrainingFunction,
    bounds: tuple[float, float] | None = None,
    *,
    n_samples: int | None = None,
    epochs: int | None = None,
    validation: tuple[Any, Any] | None = None,
    budget: float = DEFAULT_BUDGET,
    folds: int = 2,
    reference_folds: int | None = 5,
    scaling_exponent: float = 0.5,
    shuffle: bool = True,
    random_state: int | None = 0,
    per_decade: float = 2.0,
    eta: float = 2.0,
    survivors: int = 4,
    first_fraction: float = 0.25,
    lean: int = 0,
    se_fraction: float = DEFAULT_SE_FRACTION,
    workers: int | None = None,
    executor: Any = None,
    refit: bool = False,
    tolerance: float | None = None,
) -> LambdaRace:
    r"""Choose λ for a network within a budget of a few training runs: your loop, or a
    :class:`~l2optim.FoldTrainer`'s.

    :func:`l2optim.select_lambda` on a k-fold objective trains every fold to the end
    for each λ it scores: about 16 λ × k folds. This function races the λ instead, on
    two folds (or your validation split).

    **Your training.** ``trainer`` is a *training function*
    ``train(lam, train_idx, val_idx)``: your loop (DataLoader, augmentation, lr schedule,
    loss) written as a generator that builds a fresh model at weight decay ``lam``, trains
    on the rows ``train_idx`` one epoch at a time and yields the validation score on
    ``val_idx`` after each epoch (lower is better; ``inf`` or NaN for a diverged run). The
    race pauses a run by not drawing from it and continues it later (the schedule goes
    on where it was: nothing restarts), and ends it with ``close()``, which runs the
    generator's ``finally`` blocks. Give ``n_samples`` (the rows the indices refer to) and
    ``epochs`` (a run's full length). A run that ends sooner (early stopping) keeps its
    last score, with a ``RuntimeWarning`` that says so; one that ends before any score is
    an error. For a loop inside a framework (Lightning, the 🤗
    Trainer), wrap a function that reports from a callback in
    :class:`l2optim.selection.Reported`. ``trainer`` may also be a
    :class:`~l2optim.FoldTrainer` (or a :class:`~l2optim.KFoldObjective` over one),
    whose runs all train together as one stacked model, with the numbers of its
    :meth:`~l2optim.FoldTrainer.training` run alone.

    0. **Two folds, every row scored.** Each λ is validated on every row at the cost of
       one training run (with k folds it costs k − 1), and a validation loss that a few
       rows dominate (a log loss on a few confident mistakes) needs every row scored.
       Each half trains on n/2 rows, and fewer rows call for a larger λ. For a mean
       training loss trained to its minimum the best λ scales as 1/n (ridge's does);
       a network trained a fixed number of epochs also takes fewer steps on fewer
       rows, which regularises it by itself, so its best λ grows more slowly. Each run
       trains at ``λ · (n_ref / n_fold) ** scaling_exponent``, with ``n_fold`` its
       training rows and ``n_ref`` those of a ``reference_folds``-fold CV's training
       folds: every λ the race reports (the curve, ``lambda_min``) is on the scale of
       the λ that CV would choose. The default exponent, 0.5, is the one that came
       closest to full 5-fold CV over the benchmark's six problems ("Choosing λ" has
       the table); 1 is exact for ridge.
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
       a λ scored after ``e`` epochs has the score its run gives after ``e`` epochs
       (for a FoldTrainer, exactly what ``FoldTrainer(..., epochs=e)`` gives it).
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

    **Where the runs train.** A FoldTrainer's runs of a rung train together as one
    stacked model (:class:`torch.func.vmap`), which shares the per-step overhead of small
    models. A training function's runs train in this process one after another; with
    ``workers=N``, on N worker processes, each run staying in the process that started it
    (the function must pickle: a module-level function); with ``executor=`` a
    ``dask.distributed`` client, on the cluster's workers, as one actor per worker that
    holds its runs (a GPU per worker: give the workers one each). A FoldTrainer given
    ``workers`` or ``executor`` races its :meth:`~l2optim.FoldTrainer.training` runs there.

    **Cost.** ``budget`` is in training runs: the work done, every run's counted, over
    the work of one training of the final model on all the samples. A training
    function's work is the rows trained on: an epoch drawn from a run costs
    ``len(train_idx)`` rows, a training run ``epochs · n_samples``. A stacked
    FoldTrainer's is its optimizer steps, over ``trainer.epochs · ⌈n / batch_size⌉``.
    One λ on all k folds to the end costs about k − 1 runs (each fold trains on (k−1)/k
    of the samples), so full k-fold CV over 16 λ costs about 64 runs for k = 5. The
    result reports ``run_equivalents``, ``cost`` and the wall time.

    **What it gives up.** Two folds are a noisier, shifted view of the k-fold curve
    that the scaling (step 0) only corrects on average; the last rung may train for fewer
    epochs than the final model; the window assumes the best λ of longer training is no
    smaller than that of shorter training, less ``lean`` grid steps; the grid is
    coarser than ``per_decade`` when the budget is small.
    ``benchmarks/selection/lambda_cost.py`` and ``benchmarks/selection/own_loops.py``
    measure the test loss this costs against full 5-fold CV on six problems: at 5 runs,
    within 1% on average on four and 1.3% to 3.9% worse on two ("Choosing λ" has the
    tables).

    Args:
        trainer: a training function (above); or the :class:`~l2optim.FoldTrainer`
            (model factory, data, loss, score, optimizer and its arguments, decoupled
            flag, epochs, batch size, seed), or a :class:`~l2optim.KFoldObjective` over
            one, whose folds are then used.
        bounds: ``(lo, hi)`` with :math:`0 < lo < hi < \infty`; for a FoldTrainer, by
            default its :meth:`~l2optim.FoldTrainer.default_bounds` for the largest
            training fold, as :func:`l2optim.select_lambda` takes them. A training
            function needs them (or a ``default_bounds(n_train)`` method).
        n_samples: with a training function, how many rows its indices refer to.
        epochs: with a training function, the epochs of one full training run.
        validation: ``(train_idx, val_idx)``: race on this one split instead of folds
            (the λ reported are then those the runs trained at: no ``reference_folds``
            scaling), and no standard errors, so refinement stops only by budget.
        budget: the most training-run equivalents to spend, > 0.
        folds, shuffle, random_state: the k-fold split the race runs on, as
            :func:`l2optim.kfold_splits` makes it (unless ``validation`` or a
            KFoldObjective gives the split).
        reference_folds: report λ on the scale of this k-fold CV's training folds
            (above), an integer ≥ 2; None trains every run at the λ reported (the
            race's own folds' scale).
        scaling_exponent: how the λ of a run grows as its training rows shrink
            (step 0), in [0, 1]: 1 is ridge's 1/n, 0 no scaling.
        per_decade: the most grid points per decade of ``bounds``.
        eta: the factor by which the field shrinks and the epochs grow per rung, > 1.
        survivors: λ in the last rung, ≥ 3 (a bracket).
        first_fraction: the least share of the trainer's epochs the first rung trains,
            in (0, 1].
        lean: grid steps below the best λ that the window keeps, ≥ 0.
        se_fraction: refinement stops once a convex curve through the λ scored could
            lie at most this many standard errors below the best mean, ≥ 0 (as
            :func:`l2optim.select_lambda`'s ``se_fraction``).
        workers: train a training function's runs on this many worker processes.
        executor: or on a ``dask.distributed.Client`` (or the executor it gives).
        refit: with a FoldTrainer, train the model once more, at ``lambda_chosen`` on
            all the samples, and return it as ``model``.
        tolerance: the old name of ``se_fraction``, deprecated (a ``DeprecationWarning``).

    Returns:
        A :class:`l2optim.LambdaRace`: a :class:`l2optim.CVCurve` (``lambda_min``,
        ``lambda_1se``, ``at_edge``, ``plot()``) with ``lambda_chosen``, the rungs, the
        cost and, with ``refit``, the ``model``.

    Warns:
        LambdaAtEdgeWarning: ``lambda_min`` is an end of ``bounds``.

    Raises:
        TypeError: ``trainer`` is neither a training function nor a FoldTrainer or a
            KFoldObjective over one, or its optimizer is not an SGD, Adam or RMSprop;
            ``executor`` is not dask's (a plain executor cannot keep a run where it
            started); ``refit=True`` with a training function.
        TypeError: an argument of the wrong type (named).
        ValueError: a bad argument value (named, with what is allowed), a budget too small
            for one epoch per rung, every λ diverged, or a run ended without a score.
        RuntimeError: the training function raised (the original exception chained; the
            message names its λ and epoch).

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
    if tolerance is not None:
        warnings.warn(
            "tolerance is deprecated and will be removed: pass se_fraction, the name "
            "select_lambda gives the same stop",
            DeprecationWarning,
            stacklevel=2,
        )
        se_fraction = tolerance
    options = _RaceOptions(
        budget=check_positive("budget", budget),
        per_decade=check_positive("per_decade", per_decade),
        first_fraction=check_interval(
            "first_fraction", first_fraction, low=0, high=1, low_open=True
        ),
        eta=check_interval("eta", eta, low=1, low_open=True),
        survivors=check_count("survivors", survivors, low=3),
        lean=check_count("lean", lean, low=0),
        se_fraction=check_non_negative("se_fraction", se_fraction),
    )
    refit = check_bool("refit", refit)
    if workers is not None:
        workers = check_count("workers", workers, low=1)
        if executor is not None:
            raise ValueError("give either workers or executor, not both")
    job = _race_job(trainer, n_samples, epochs, workers, executor)
    if refit and job.trainer is None:
        raise TypeError(
            "refit=True trains the final model with a FoldTrainer's fit; with a training "
            "function, train your final model at race.lambda_chosen"
        )
    n = job.n_samples
    if validation is not None:
        splits = [_checked_split(validation, n)]
    elif job.splits is not None:
        splits = job.splits
    else:
        splits = kfold_splits(n, folds, shuffle=shuffle, random_state=random_state)
    if reference_folds is None or validation is not None:
        train_scale = 1.0
    else:
        reference_folds = check_count("reference_folds", reference_folds, low=2)
        exponent = check_interval("scaling_exponent", scaling_exponent, low=0, high=1)
        # λ ∝ n^-exponent: a run on n_fold rows trains at λ · (n_ref / n_fold)^exponent.
        reference_rows = n * (reference_folds - 1) / reference_folds
        train_scale = (reference_rows / np.mean([len(train) for train, _ in splits])) ** exponent
    if bounds is None:
        bounds = job.default_bounds(max(len(train) for train, _ in splits))
        bounds = (bounds[0] / train_scale, bounds[1] / train_scale)
    lo, hi = check_bounds(bounds)

    start_time = time.perf_counter()
    cost_per_lambda_epoch = job.fold_cost(splits) / job.cost_per_run
    plan = plan_race(
        max(options.survivors, math.ceil(options.per_decade * math.log10(hi / lo)) + 1),
        eta=options.eta,
        survivors=options.survivors,
        epochs=job.epochs,
        cost_per_lambda_epoch=cost_per_lambda_epoch,
        budget=options.budget,
        first_epochs=max(1, math.ceil(options.first_fraction * job.epochs)),
    )
    grid = np.geomspace(lo, hi, plan[0][1])
    left = options.budget - planned_cost(plan, cost_per_lambda_epoch)
    refinements = int(left // (plan[-1][0] * cost_per_lambda_epoch) + 1e-9)
    try:
        record = race(
            lambda lambdas: job.contestants(splits, lambdas, train_scale),
            grid,
            plan,
            lean=options.lean,
            se_fraction=options.se_fraction,
            refinements=refinements,
        )
    finally:
        job.shutdown()
    final = record.final
    # Every λ of the last rung trained its epochs on every fold, survivors and added λ alike.
    cost_per_lambda = job.fold_cost(splits) * final.epochs
    evaluations = tuple(
        Evaluation.from_scores(lam, scores, math.nan, cost=cost_per_lambda)
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
        cost=record.cost,
        cost_per_run=job.cost_per_run,
        cost_unit=job.cost_unit,
        seconds=time.perf_counter() - start_time,
        train_scale=float(train_scale),
    )
    found.warn_if_at_edge()
    if refit:
        found = replace(found, model=job.trainer.fit(found.lambda_chosen))
    return found


@dataclass(frozen=True)
class _RaceOptions:
    budget: float
    per_decade: float
    first_fraction: float
    eta: float
    survivors: int
    lean: int
    se_fraction: float


class _RaceJob:
    """What is raced and how its runs train: a FoldTrainer's stacked runs, or a training
    function's runs on hosts. Knows the data size, a run's length and how work is counted."""

    def __init__(
        self,
        *,
        n_samples: int,
        epochs: int,
        cost_unit: str,
        cost_per_run: float,
        trainer: FoldTrainer | None = None,
        splits: list[tuple[np.ndarray, np.ndarray]] | None = None,
        hosts: Any = None,
        proposed_bounds: Callable[[int], tuple[float, float]] | None = None,
    ) -> None:
        self.n_samples, self.epochs = n_samples, epochs
        self.cost_unit, self.cost_per_run = cost_unit, cost_per_run
        self.trainer, self.splits, self.hosts = trainer, splits, hosts
        self._proposed_bounds = proposed_bounds

    def default_bounds(self, n_train: int) -> tuple[float, float]:
        if self._proposed_bounds is None:
            raise TypeError(
                "bounds=(lo, hi) is needed: a training function proposes none (give it a "
                "default_bounds(n_train) method to propose them)"
            )
        return self._proposed_bounds(n_train)

    def fold_cost(self, splits: list[tuple[np.ndarray, np.ndarray]]) -> float:
        """The work of one epoch on every fold."""
        if self.hosts is None:
            return float(sum(self.trainer.steps_per_epoch(len(train)) for train, _ in splits))
        return float(sum(len(train) for train, _ in splits))

    def contestants(self, splits: Any, lambdas: Any, train_scale: float) -> Any:
        if self.hosts is None:
            return FoldStacks(self.trainer, splits, lambdas, train_scale)
        return TrainingRuns(self.hosts, splits, lambdas, train_scale)

    def shutdown(self) -> None:
        if self.hosts is not None:
            self.hosts.shutdown()


def _race_job(
    trainer: Any, n_samples: int | None, epochs: int | None, workers: int | None, executor: Any
) -> _RaceJob:
    splits = None
    if isinstance(trainer, KFoldObjective):
        splits, trainer = trainer.splits, trainer.fit_score
        if not isinstance(trainer, FoldTrainer):
            raise TypeError(
                "a KFoldObjective races over its FoldTrainer; got one over "
                f"{type(trainer).__name__}: race the training function itself"
            )
    if isinstance(trainer, FoldTrainer):
        for name, value, own in (("n_samples", n_samples, len(trainer.X)),
                                 ("epochs", epochs, trainer.epochs)):
            if value is not None and value != own:
                raise ValueError(f"{name}={value!r} differs from the FoldTrainer's {own}")
        n = len(trainer.X)
        if workers is None and executor is None:
            return _RaceJob(
                n_samples=n, epochs=trainer.epochs, cost_unit="optimizer steps",
                cost_per_run=trainer.epochs * trainer.steps_per_epoch(n), trainer=trainer,
                splits=splits, proposed_bounds=trainer.default_bounds,
            )
        hosts = hosts_for(trainer.training, workers=workers, executor=executor)
        return _RaceJob(
            n_samples=n, epochs=trainer.epochs, cost_unit="rows", cost_per_run=trainer.epochs * n,
            trainer=trainer, splits=splits, hosts=hosts, proposed_bounds=trainer.default_bounds,
        )
    if not callable(trainer):
        raise TypeError(
            "trainer must be a training function train(lam, train_idx, val_idx) yielding a "
            "validation score after each epoch, a FoldTrainer or a KFoldObjective over one; "
            f"got {type(trainer).__name__}"
        )
    if n_samples is None or epochs is None:
        raise TypeError(
            "a training function needs n_samples (the rows its indices refer to) and epochs "
            "(the length of one training run)"
        )
    n = check_count("n_samples", n_samples, low=2)
    epochs = check_count("epochs", epochs, low=1)
    proposed = getattr(trainer, "default_bounds", None)
    hosts = hosts_for(trainer, workers=workers, executor=executor)
    return _RaceJob(
        n_samples=n, epochs=epochs, cost_unit="rows", cost_per_run=epochs * n,
        hosts=hosts, proposed_bounds=proposed if callable(proposed) else None,
    )


def _checked_split(validation: Any, n: int) -> tuple[np.ndarray, np.ndarray]:
    """``(train_idx, val_idx)`` as integer arrays of distinct rows in ``range(n)``."""
    try:
        train, val = (np.asarray(part) for part in validation)
    except (TypeError, ValueError):
        raise TypeError(
            f"validation must be a pair (train_idx, val_idx) of index arrays, got {validation!r}"
        ) from None
    for name, part in (("train_idx", train), ("val_idx", val)):
        if part.ndim != 1 or part.size == 0 or part.dtype.kind not in "iu":
            raise ValueError(f"validation's {name} must be a non-empty 1-D integer array")
        if part.min() < 0 or part.max() >= n:
            raise ValueError(
                f"validation's {name} must index rows in [0, n_samples={n}), got values from "
                f"{part.min()} to {part.max()}"
            )
    if np.intersect1d(train, val).size:
        raise ValueError("validation's train_idx and val_idx share rows")
    return train, val
