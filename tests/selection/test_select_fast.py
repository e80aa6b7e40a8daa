"""select_lambda_fast against closed-form ridge CV, FoldTrainer itself and its own accounting."""

from __future__ import annotations

import dataclasses
import functools
import math

import numpy as np
import pytest
import torch
from _torch_threads import one_torch_thread  # noqa: F401 (autouse fixture)
from torch import nn

import l2optim
from l2optim import FoldTrainer, kfold_splits, select_lambda_fast
from l2optim.selection._race import chosen_lambda

# Eight features, forty rows, a weak signal: the 4-fold ridge CV curve has its minimum
# well inside (0.01, 10).
RNG = np.random.default_rng(2)
X = RNG.normal(size=(40, 8))
Y = X @ (0.3 * RNG.normal(size=8)) + RNG.normal(size=40)


def ridge_trainer() -> FoldTrainer:
    # Coupled full-batch gradient descent on half the MSE converges to ridge at the same
    # λ within the 100 epochs (lr 0.35 < 2/(L + λ) for this X).
    return FoldTrainer(functools.partial(nn.Linear, 8, 1), X, Y, optimizer_kwargs={"lr": 0.35})


@pytest.mark.parametrize(
    ("folds", "reference_folds", "train_scale"),
    # 40 rows: 4 folds train on 30 rows; 2 folds on 20, scaled to 5-fold CV's 32 by
    # ridge's exact 1/n (scaling_exponent=1).
    [(4, None, 1.0), (2, 5, 32 / 20)],
)
def test_lambda_agrees_with_ridge_cv_on_the_same_folds(folds, reference_folds, train_scale):
    se_fraction = 0.1
    race = select_lambda_fast(
        ridge_trainer(),
        (0.01, 10.0),
        folds=folds,
        reference_folds=reference_folds,
        scaling_exponent=1.0,
        shuffle=False,
        budget=40,
        se_fraction=se_fraction,
    )
    assert race.train_scale == pytest.approx(train_scale, rel=1e-12)
    # Budget enough for the last rung to train all 100 epochs, then refine until settled.
    assert race.rungs[-1].epochs == 100 and race.stop == "settled"
    # The same folds, in closed form; the race trains each λ at λ · train_scale.
    ridge = l2optim.ridge_cv(X, Y, cv=folds, shuffle=False)
    best = int(np.flatnonzero(ridge.lambdas == ridge.lambda_min)[0])
    chosen = race.lambda_min * train_scale
    at_choice = l2optim.ridge_cv(X, Y, cv=folds, shuffle=False, lambdas=[chosen]).cv_mean[0]
    # The stop's claim, checked on the closed form: the choice is within the band.
    assert at_choice - ridge.cv_mean[best] <= se_fraction * ridge.cv_se[best]
    assert abs(math.log(chosen / ridge.lambda_min)) < 0.02
    # The choice near it, between the best point and the parabola's vertex: as close.
    chosen = race.lambda_chosen * train_scale
    at_choice = l2optim.ridge_cv(X, Y, cv=folds, shuffle=False, lambdas=[chosen]).cv_mean[0]
    assert at_choice - ridge.cv_mean[best] <= se_fraction * ridge.cv_se[best]
    assert abs(math.log(chosen / ridge.lambda_min)) < 0.02
    # The scores of the last rung near the choice are the closed-form k-fold scores at their
    # trained λ. (Far below, 100 steps have not converged; at λ ≳ 3.4, lr (L + λ) > 2 and
    # gradient descent diverges.)
    trained = race.final.lambdas * train_scale
    near = (trained > chosen / 2) & (trained < 2.0)
    assert near.sum() >= 3
    closed_form = l2optim.ridge_cv(X, Y, cv=folds, shuffle=False, lambdas=trained[near])
    np.testing.assert_allclose(race.final.means[near], closed_form.cv_mean, rtol=1e-6)


def mlp() -> nn.Module:
    return nn.Sequential(nn.Linear(8, 6), nn.Tanh(), nn.Linear(6, 1))


def mlp_trainer(**kwargs) -> FoldTrainer:
    return FoldTrainer(
        mlp,
        X,
        Y,
        optimizer=l2optim.AdamW,
        optimizer_kwargs={"lr": 0.01},
        epochs=12,
        batch_size=8,
        **kwargs,
    )


@pytest.mark.parametrize(
    ("folds", "reference_folds", "exponent", "train_scale"),
    # 40 rows: 3 folds train on 26 or 27 rows (26.67 on average), 2 folds on 20; 5-fold CV
    # trains on 32, 10-fold CV on 36.
    [
        (3, None, 1.0, 1.0),
        (3, 5, 1.0, 32 / (80 / 3)),
        (2, 5, 1.0, 32 / 20),
        (2, 10, 1.0, 36 / 20),
        (2, 5, 0.5, (32 / 20) ** 0.5),
        (2, 5, 0.0, 1.0),
    ],
)
def test_every_score_is_fold_trainers_score_after_that_many_epochs(
    folds, reference_folds, exponent, train_scale
):
    trainer = mlp_trainer()
    race = select_lambda_fast(
        trainer, (1e-3, 10.0), folds=folds, reference_folds=reference_folds, budget=6,
        scaling_exponent=exponent,
    )
    assert race.train_scale == pytest.approx(train_scale, rel=1e-12)
    splits = kfold_splits(40, folds)
    for rung in race.rungs:
        shorter = mlp_trainer()
        shorter.epochs = rung.epochs
        for lam, scores in zip(rung.lambdas, rung.scores, strict=True):
            expected = [shorter(lam * train_scale, train, test) for train, test in splits]
            np.testing.assert_allclose(scores, expected, rtol=1e-10)


@pytest.mark.filterwarnings("ignore::l2optim.LambdaAtEdgeWarning")
def test_a_reference_of_the_races_own_folds_changes_nothing():
    # A 5-fold race scaled to 5-fold CV trains at the λ it reports.
    trainer = mlp_trainer()
    bounds = (1e-4, 10.0)
    scaled = select_lambda_fast(trainer, bounds, folds=5, reference_folds=5, budget=8)
    plain = select_lambda_fast(trainer, bounds, folds=5, reference_folds=None, budget=8)
    assert dataclasses.replace(scaled, seconds=plain.seconds) == plain


def test_default_bounds_are_on_the_reported_scale():
    # Decoupled AdamW at lr 0.01: trained λ must stay below 0.5 / lr = 50. The 2-fold runs
    # train at λ · (32 / 20)^0.5 by default, so the reported bounds are the trainer's
    # divided by that.
    trainer = mlp_trainer()
    race = select_lambda_fast(trainer, budget=6)
    lo, hi = trainer.default_bounds(20)
    scale = 1.6**0.5
    assert race.train_scale == pytest.approx(scale, rel=1e-12)
    assert race.bounds == pytest.approx((lo / scale, hi / scale), rel=1e-12)


def test_the_cost_is_the_steps_counted_over_one_run():
    trainer = mlp_trainer()
    budget = 6.0
    race = select_lambda_fast(trainer, (1e-3, 10.0), folds=3, budget=budget)
    # 40 rows in 3 folds: training sets of 26, 27 and 27 rows, 4 steps per epoch each.
    steps_per_epoch_all_folds = 3 * 4
    done, expected = 0, 0
    for rung in race.rungs:
        expected += len(rung.lambdas) * steps_per_epoch_all_folds * (rung.epochs - done)
        done = rung.epochs
    refined = len(race.final.lambdas) - len(race.rungs[-1].lambdas)
    expected += refined * steps_per_epoch_all_folds * race.final.epochs
    assert race.optimizer_steps == expected
    assert race.steps_per_run == 12 * math.ceil(40 / 8)
    assert race.run_equivalents == race.optimizer_steps / race.steps_per_run <= budget
    assert race.seconds > 0


def test_refit_trains_the_final_model_at_the_choice_outside_the_cost():
    trainer = mlp_trainer()
    plain = select_lambda_fast(trainer, (1e-3, 10.0), folds=3, budget=6)
    refitted = select_lambda_fast(trainer, (1e-3, 10.0), folds=3, budget=6, refit=True)
    assert plain.model is None
    # The same race; the refit adds no optimizer steps to the search's count.
    assert refitted.lambda_chosen == plain.lambda_chosen
    assert refitted.optimizer_steps == plain.optimizer_steps
    # The model is the trainer's fit at the chosen λ (the oracle: FoldTrainer.fit itself).
    expected = trainer.fit(plain.lambda_chosen)
    got = dict(refitted.model.named_parameters())
    for name, p in expected.named_parameters():
        assert torch.equal(got[name], p), name
    assert not refitted.model.training


def test_a_kfold_objective_brings_its_folds():
    trainer = mlp_trainer()
    objective = l2optim.kfold_objective(trainer, 40, folds=4, shuffle=False)
    # This race ends at the lower bound, and says so as select_lambda would.
    with pytest.warns(l2optim.LambdaAtEdgeWarning, match="lower end"):
        from_objective = select_lambda_fast(objective, (1e-3, 10.0), budget=6)
    assert from_objective.at_edge == "lower"
    with pytest.warns(l2optim.LambdaAtEdgeWarning):
        from_trainer = select_lambda_fast(trainer, (1e-3, 10.0), folds=4, shuffle=False, budget=6)
    assert from_objective.lambda_min == from_trainer.lambda_min
    np.testing.assert_array_equal(from_objective.final.scores, from_trainer.final.scores)


def test_the_result_shares_the_cv_curve_records_and_plots():
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    race = select_lambda_fast(mlp_trainer(), (1e-3, 10.0), folds=3, budget=6)
    assert [e.lam for e in race.evaluations] == race.final.lambdas.tolist()
    assert [e.mean for e in race.evaluations] == pytest.approx(race.final.means.tolist())
    assert isinstance(race, l2optim.CVCurve) and isinstance(race.evaluations[0], l2optim.Evaluation)
    np.testing.assert_array_equal(race.lambdas, race.final.lambdas)
    np.testing.assert_allclose(race.cv_mean, race.final.means)
    np.testing.assert_allclose(race.cv_se, race.final.standard_errors)
    assert race.lambda_min in race.lambdas
    assert race.lambda_chosen == chosen_lambda(race.final)
    # Each λ of the last rung trained its epochs on all 3 folds: 4 steps an epoch each.
    assert {e.cost for e in race.evaluations} == {race.final.epochs * 3 * 4}
    assert race == dataclasses.replace(race) != dataclasses.replace(race, stop="other")
    assert race.lambda_1se is None or race.lambda_1se >= min(e.lam for e in race.evaluations)
    ax = race.plot()
    assert ax.get_xscale() == "log"
    # Each marked λ has a style of its own.
    marked = [line for line in ax.get_lines() if line.get_label().startswith("λ")]
    styles = [(line.get_color(), line.get_linestyle()) for line in marked]
    assert len(marked) == 3 and len(set(styles)) == 3
    matplotlib.pyplot.close(ax.figure)


@pytest.mark.parametrize(
    ("arguments", "error", "message"),
    [
        ({"trainer": "model"}, TypeError, "FoldTrainer or a KFoldObjective"),
        ({"bounds": (1.0, 0.1)}, ValueError, r"bounds must satisfy 0 < lo < hi < inf"),
        ({"budget": "5"}, TypeError, "budget must be a real number, got '5'"),
        ({"budget": 0}, ValueError, "budget must be > 0, got 0"),
        ({"budget": 0.01}, ValueError, "budget must be at least"),
        ({"eta": 1}, ValueError, "eta must be > 1, got 1"),
        ({"survivors": 2}, ValueError, r"survivors must be an integer >= 3, got 2"),
        ({"survivors": 3.5}, TypeError, r"survivors must be an integer >= 3, got 3.5"),
        ({"lean": -1}, ValueError, "lean must be an integer >= 0, got -1"),
        ({"se_fraction": -0.1}, ValueError, "se_fraction must be >= 0, got -0.1"),
        ({"first_fraction": 1.5}, ValueError, r"first_fraction must be in \(0, 1\], got 1.5"),
        ({"per_decade": math.nan}, ValueError, "per_decade must be finite, got nan"),
        ({"folds": 1}, ValueError, r"folds must be an integer in \[2, n_samples=40\], got 1"),
        ({"reference_folds": 1}, ValueError, r"reference_folds must be an integer >= 2, got 1"),
        ({"reference_folds": 2.5}, TypeError, r"reference_folds must be an integer >= 2"),
        ({"scaling_exponent": 2}, ValueError, r"scaling_exponent must be in \[0, 1\], got 2"),
        ({"refit": "yes"}, TypeError, "refit must be True or False, got 'yes'"),
    ],
)
def test_bad_arguments_are_named(arguments, error, message):
    arguments = {"trainer": mlp_trainer(), "bounds": (1e-3, 10.0), **arguments}
    with pytest.raises(error, match=message):
        select_lambda_fast(**arguments)


def test_every_lambda_diverging_is_an_error():
    # lr 50 multiplies the weights by about 50 per step: in float32 the loss overflows
    # within a dozen steps, on every fold and at every λ.
    trainer = FoldTrainer(
        functools.partial(nn.Linear, 8, 1),
        torch.tensor(X, dtype=torch.float32),
        torch.tensor(Y, dtype=torch.float32),
        optimizer_kwargs={"lr": 50.0},
        epochs=40,
    )
    with pytest.raises(ValueError, match="every λ in the race diverged"):
        select_lambda_fast(trainer, (1e-3, 1.0), folds=3, budget=20)


def test_float32_data_trains_float32_models():
    trainer = FoldTrainer(
        mlp,
        torch.tensor(X, dtype=torch.float32),
        torch.tensor(Y, dtype=torch.float32),
        optimizer=l2optim.SGD,
        optimizer_kwargs={"lr": 0.05, "momentum": 0.9},
        epochs=10,
        batch_size=10,
    )
    race = select_lambda_fast(trainer, (1e-3, 1.0), folds=4, budget=5)
    assert math.isfinite(race.lambda_min) and 1e-3 <= race.lambda_min <= 1.0


def test_tolerance_is_the_deprecated_name_of_se_fraction():
    with pytest.warns(DeprecationWarning, match="tolerance is deprecated.*pass se_fraction"):
        old = select_lambda_fast(ridge_trainer(), (0.01, 10.0), budget=6, tolerance=0.5)
    new = select_lambda_fast(ridge_trainer(), (0.01, 10.0), budget=6, se_fraction=0.5)
    assert (old.final, old.lambda_chosen, old.stop) == (new.final, new.lambda_chosen, new.stop)
