"""The race over the user's own training: a generator per run, paused by not drawing from it.

Every training function here is a plain loop, as a user writes it: a DataLoader over the
training rows, AdamW under OneCycleLR stepped per batch, and the validation loss yielded
after each epoch. Module-level, so that worker processes import it.
"""

from __future__ import annotations

import math
import pickle
import re
import threading
from collections import Counter

import numpy as np
import pytest
import torch
from _torch_threads import one_torch_thread  # noqa: F401 (autouse fixture)
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import l2optim
from l2optim.selection import Reported

N, EPOCHS = 96, 6
_RNG = np.random.default_rng(0)
X = torch.as_tensor(_RNG.normal(size=(N, 6)), dtype=torch.float32)
Y = torch.tanh(X[:, :3].sum(1)) + 0.3 * torch.as_tensor(_RNG.normal(size=N), dtype=torch.float32)

#: (λ, first validation row) of every run started in this process, and the epochs each
#: has trained: a restart would start a run twice; a pause keeps counting.
STARTED: Counter = Counter()
EPOCHS_DRAWN: Counter = Counter()


def _model() -> nn.Module:
    return nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 1))


def train(lam: float, train_idx: np.ndarray, val_idx: np.ndarray):
    """The user's loop: a fresh model at λ; the validation loss after each epoch."""
    torch.manual_seed(0)
    model = _model()
    key = (round(lam, 12), int(val_idx[0]))
    STARTED[key] += 1
    optimizer = l2optim.AdamW(l2optim.decay_groups(model, lam), lr=1e-2)
    loader = DataLoader(
        TensorDataset(X[train_idx], Y[train_idx]), batch_size=16, shuffle=True,
        generator=torch.Generator().manual_seed(1),
    )
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=2e-2, total_steps=EPOCHS * len(loader)
    )
    for _ in range(EPOCHS):
        model.train()
        for x, y in loader:
            optimizer.zero_grad()
            nn.functional.mse_loss(model(x).squeeze(-1), y).backward()
            optimizer.step()
            schedule.step()
        EPOCHS_DRAWN[key] += 1
        model.eval()
        with torch.no_grad():
            yield nn.functional.mse_loss(model(X[val_idx]).squeeze(-1), Y[val_idx])


def reporting_train(lam, train_idx, val_idx, report):
    """The same loop, reporting from inside (as a framework's callback does)."""
    for score in train(lam, train_idx, val_idx):
        report(score)


def raising_train(lam, train_idx, val_idx):
    yield 1.0
    raise FloatingPointError("the loss became NaN")


def race(training=train, **kwargs):
    options = {"n_samples": N, "epochs": EPOCHS, "bounds": (1e-3, 10.0), "budget": 5}
    return l2optim.select_lambda_fast(training, **{**options, **kwargs})


@pytest.fixture(autouse=True)
def fresh_counts():
    STARTED.clear()
    EPOCHS_DRAWN.clear()


def test_the_race_pauses_runs_and_counts_what_it_drew():
    found = race()
    assert found.cost_unit == "rows" and found.cost_per_run == EPOCHS * N
    assert found.run_equivalents <= 5
    # No run was started twice: survivors continued where they paused.
    assert set(STARTED.values()) == {1}
    # The cost is every epoch drawn, each at its training rows (two folds of 48 rows).
    assert found.cost == sum(EPOCHS_DRAWN.values()) * N / 2
    # The last rung's λ trained its epochs on both folds; the first rung's fewer.
    assert found.rungs[0].epochs < found.final.epochs <= EPOCHS
    assert max(EPOCHS_DRAWN.values()) == found.final.epochs
    assert 1e-3 <= found.lambda_chosen <= 10.0
    assert found.lambdas.tolist() == sorted(found.lambdas.tolist())


def test_a_run_scores_after_e_epochs_what_an_uninterrupted_run_does():
    found = race(budget=3)
    splits = l2optim.kfold_splits(N, 2, random_state=0)
    rung = found.rungs[0]
    for lam, scores in zip(rung.lambdas, rung.scores, strict=True):
        for (train_idx, val_idx), score in zip(splits, scores, strict=True):
            fresh = list(train(float(lam * found.train_scale), train_idx, val_idx))
            assert score == pytest.approx(float(fresh[rung.epochs - 1]), rel=1e-6)


def test_a_fold_trainer_races_alike_as_a_training_function_and_stacked():
    trainer = l2optim.FoldTrainer(
        _model, X, Y, optimizer=l2optim.AdamW, optimizer_kwargs={"lr": 1e-2}, epochs=EPOCHS,
        batch_size=16,
    )
    stacked = l2optim.select_lambda_fast(trainer, (1e-3, 10.0), budget=5)
    one_by_one = l2optim.select_lambda_fast(
        trainer.training, (1e-3, 10.0), budget=5, n_samples=N, epochs=EPOCHS
    )
    assert [r.lambdas.tolist() for r in stacked.rungs] == [
        r.lambdas.tolist() for r in one_by_one.rungs
    ]
    for ours, theirs in zip(stacked.rungs, one_by_one.rungs, strict=True):
        np.testing.assert_allclose(ours.scores, theirs.scores, rtol=1e-5)
    assert stacked.run_equivalents == pytest.approx(one_by_one.run_equivalents, rel=0.05)


def test_worker_processes_give_the_numbers_of_this_process():
    here = race(budget=4)
    there = race(budget=4, workers=2)
    assert [r.lambdas.tolist() for r in here.rungs] == [r.lambdas.tolist() for r in there.rungs]
    for ours, theirs in zip(here.rungs, there.rungs, strict=True):
        np.testing.assert_array_equal(ours.scores, theirs.scores)
    assert there.cost == here.cost and there.lambda_chosen == here.lambda_chosen


def test_a_dask_cluster_holds_the_runs_in_actors_and_gives_the_same_numbers():
    distributed = pytest.importorskip("distributed")
    here = race(budget=4)
    with (
        distributed.LocalCluster(
            n_workers=2, processes=True, threads_per_worker=1, host="127.0.0.1",
            dashboard_address=None,
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        there = race(budget=4, executor=client)
    for ours, theirs in zip(here.rungs, there.rungs, strict=True):
        np.testing.assert_array_equal(ours.scores, theirs.scores)
    assert there.lambda_chosen == here.lambda_chosen


def test_a_fixed_validation_split():
    rows = np.arange(N)
    found = race(validation=(rows[:72], rows[72:]))
    assert found.train_scale == 1.0 and found.final.scores.shape[1] == 1
    assert found.lambda_1se is None and found.stop in ("budget", "bound", "repeat")
    assert found.cost == sum(EPOCHS_DRAWN.values()) * 72


def test_a_loop_that_reports_from_inside_races_as_its_generator_does():
    baseline = threading.active_count()
    as_generator = race(budget=4)
    reported = race(Reported(reporting_train), budget=4)
    for ours, theirs in zip(as_generator.rungs, reported.rungs, strict=True):
        np.testing.assert_array_equal(ours.scores, theirs.scores)
    # Every run's thread ended, the dropped ones inside report() included.
    assert threading.active_count() == baseline


def test_a_training_function_that_raises_names_it():
    with pytest.raises(RuntimeError, match="the training function raised") as raised:
        race(raising_train)
    assert isinstance(raised.value.__cause__, FloatingPointError)
    # The λ it trained at and the epoch it was in: its second, after one good score.
    assert re.search(r"at lambda=[0-9.e-]+, in epoch 2 of its run", str(raised.value))


def no_score_train(lam, train_idx, val_idx):
    """Trains, but yields nothing: a `yield` forgotten."""
    return iter(())


def never_reporting_train(lam, train_idx, val_idx, report):
    """A framework loop whose callback never calls report."""


@pytest.mark.parametrize("training", [no_score_train, Reported(never_reporting_train)])
def test_a_training_without_any_score_is_told_so_not_called_diverged(training):
    with pytest.raises(ValueError, match=r"ended without a score: a training function must yield"):
        race(training)


def test_a_training_shorter_than_the_race_asks_is_warned_of_once():
    def two_epochs(lam, train_idx, val_idx):
        for epoch in range(2):
            yield 1.0 / (1 + epoch) + abs(math.log10(lam))

    with pytest.warns(RuntimeWarning, match=r"a training ended before the \d+ epochs") as seen:
        found = race(two_epochs)
    assert sum("a training ended before" in str(w.message) for w in seen) == 1
    assert found.lambda_chosen == pytest.approx(1.0, rel=0.5)


def test_diverged_runs_score_inf_and_are_not_drawn_again():
    def diverging(lam, train_idx, val_idx):
        for epoch in range(EPOCHS):
            EPOCHS_DRAWN[lam] += 1
            yield math.nan if lam > 1 else 1.0 / (1 + epoch) + lam

    found = race(diverging, budget=3)
    trained = found.rungs[0].lambdas * found.train_scale
    assert (trained > 1).any()
    # Once on each of the two folds, then never again.
    assert all(EPOCHS_DRAWN[lam] == 2 for lam in EPOCHS_DRAWN if lam > 1)
    assert np.isinf(found.rungs[0].means[trained > 1]).all()


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"n_samples": None}, TypeError, "needs n_samples"),
        ({"bounds": None}, TypeError, "bounds=\\(lo, hi\\) is needed"),
        ({"executor": object()}, TypeError, "executor must be a dask.distributed.Client"),
        ({"refit": True}, TypeError, "refit=True trains the final model"),
        ({"validation": ([0, 1], [1, 2])}, ValueError, "share rows"),
        ({"validation": ([0, 1], [N])}, ValueError, "must index rows in \\[0, n_samples=96\\)"),
        ({"workers": 0}, ValueError, "workers must be an integer >= 1, got 0"),
    ],
)
def test_bad_arguments_are_named(kwargs, error, message):
    with pytest.raises(error, match=message):
        race(**kwargs)
    assert not STARTED  # refused before any training


def test_something_that_is_no_training_function_is_refused():
    with pytest.raises(TypeError, match="trainer must be a training function"):
        l2optim.select_lambda_fast(42, n_samples=N, epochs=EPOCHS)


def test_a_race_equals_its_pickled_copy():
    """Its records hold NaN where nothing was measured (a run's seconds, a diverged run's
    scores); equality treats NaN as equal, so a copy equals the race it came from."""
    def diverging_above_one(lam, train_idx, val_idx):
        for epoch in range(EPOCHS):
            yield math.nan if lam > 1 else 1.0 / (1 + epoch) + lam

    found = race(diverging_above_one, budget=3)
    assert any(math.isnan(s) for e in found.evaluations for s in (e.seconds, *e.scores))
    copy = pickle.loads(pickle.dumps(found))
    assert copy == found and copy.evaluations == found.evaluations
    assert {e: 1 for e in copy.evaluations} == {e: 1 for e in found.evaluations}
