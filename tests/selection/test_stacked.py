"""ModelStack: many (fold, λ) copies trained at once equal FoldTrainer run on each, one by one."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from _torch_threads import one_torch_thread  # noqa: F401 (autouse fixture)
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import l2optim
from l2optim import FoldTrainer, kfold_splits
from l2optim.selection._stacked import ModelStack, update_rule

RNG = np.random.default_rng(0)
N_SAMPLES, N_FEATURES = 45, 4
X = RNG.normal(size=(N_SAMPLES, N_FEATURES))
Y = np.tanh(X @ RNG.normal(size=N_FEATURES)) + 0.3 * RNG.normal(size=N_SAMPLES)
# 45 rows in 3 folds: every training set has 30 rows, so all folds stack together.
SPLITS = kfold_splits(N_SAMPLES, 3)


def mlp() -> nn.Module:
    return nn.Sequential(nn.Linear(N_FEATURES, 6), nn.Tanh(), nn.Linear(6, 1))


def normalised_mlp() -> nn.Module:
    # BatchNorm: running statistics are buffers each copy updates for itself; its weight
    # and bias are not decayed (decay_groups exempts normalisation layers). No bias before
    # it: BatchNorm cancels that bias, whose gradient is then rounding noise that Adam
    # would scale up to steps of size lr.
    return nn.Sequential(
        nn.Linear(N_FEATURES, 6, bias=False), nn.BatchNorm1d(6), nn.Tanh(), nn.Linear(6, 1)
    )


#: Every update rule and decay form the stack implements, with settings that train.
CONFIGS = [
    (l2optim.SGD, {"lr": 0.05}),
    (l2optim.SGD, {"lr": 0.05, "momentum": 0.9, "dampening": 0.1}),
    (l2optim.SGDW, {"lr": 0.05, "momentum": 0.9, "nesterov": True}),
    (l2optim.SGDW, {"lr": 0.05, "momentum": 0.5, "weight_decay_scaling": "schedule"}),
    (l2optim.Adam, {"lr": 0.01}),
    (l2optim.AdamW, {"lr": 0.01, "amsgrad": True, "betas": (0.8, 0.99)}),
    (l2optim.AdamW, {"lr": 0.01, "weight_decay_scaling": "none"}),
    (l2optim.AdamW, {"lr": 0.01, "weight_decay_scaling": "corrected"}),
    (l2optim.RMSprop, {"lr": 0.003, "momentum": 0.5, "centered": True}),
    (l2optim.RMSpropW, {"lr": 0.003}),
    (torch.optim.AdamW, {"lr": 0.01}),
    (torch.optim.SGD, {"lr": 0.05, "momentum": 0.9}),
]


def trainer(optimizer, kwargs, *, factory=mlp, epochs=4, batch_size=7, **more) -> FoldTrainer:
    return FoldTrainer(
        factory,
        X,
        Y,
        optimizer=optimizer,
        optimizer_kwargs=kwargs,
        epochs=epochs,
        batch_size=batch_size,
        **more,
    )


def one_by_one(fold_trainer: FoldTrainer, folds, lambdas) -> np.ndarray:
    return np.array([fold_trainer(lam, *SPLITS[f]) for f, lam in zip(folds, lambdas, strict=True)])


@pytest.mark.parametrize(("optimizer", "kwargs"), CONFIGS)
def test_stacked_training_equals_fold_trainer_one_model_at_a_time(optimizer, kwargs):
    fold_trainer = trainer(optimizer, kwargs)
    folds, lambdas = [0, 1, 2, 0, 1], [0.0, 1e-3, 0.05, 0.3, 0.9]
    stack = ModelStack(fold_trainer, SPLITS, folds, lambdas)
    stack.train(fold_trainer.epochs)
    expected = one_by_one(fold_trainer, folds, lambdas)
    np.testing.assert_allclose(stack.scores(), expected, rtol=1e-10)
    assert stack.optimizer_steps == len(folds) * fold_trainer.epochs * math.ceil(30 / 7)


def test_standardising_scales_each_fold_on_its_own_training_rows():
    # Far from standardised, so each fold's scaling differs: one shared scaling, or none,
    # would give other scores.
    fold_trainer = FoldTrainer(
        mlp, 3 * X + 5, 10 * Y - 2, optimizer=l2optim.SGD, optimizer_kwargs={"lr": 0.05},
        epochs=3, batch_size=7, standardize=True,
    )
    folds, lambdas = [0, 1, 2, 2], [0.0, 0.1, 0.1, 0.5]
    stack = ModelStack(fold_trainer, SPLITS, folds, lambdas)
    stack.train(3)
    np.testing.assert_allclose(stack.scores(), one_by_one(fold_trainer, folds, lambdas), rtol=1e-10)


def test_parameters_equal_sequentially_trained_ones():
    fold_trainer = trainer(l2optim.AdamW, {"lr": 0.02}, factory=normalised_mlp)
    folds, lambdas = [0, 2], [0.01, 0.5]
    stack = ModelStack(fold_trainer, SPLITS, folds, lambdas)
    stack.train(fold_trainer.epochs)
    for copy, (fold, lam) in enumerate(zip(folds, lambdas, strict=True)):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(fold_trainer.seed)
            model = fold_trainer.new_model()
            optimizer = l2optim.AdamW(l2optim.decay_groups(model, lam), lr=0.02)
            rows = torch.as_tensor(SPLITS[fold][0])
            assert fold_trainer._train(model, optimizer, fold_trainer.fold_data(rows), rows)
        for name, tensor in [*model.named_parameters(), *model.named_buffers()]:
            stacked = {**stack.params, **stack.buffers}[name][copy]
            torch.testing.assert_close(stacked, tensor.detach(), rtol=1e-10, atol=1e-12)


@settings(max_examples=8)
@given(
    config=st.sampled_from(CONFIGS),
    pairs=st.lists(st.tuples(st.integers(0, 2), st.floats(0.0, 0.9)), min_size=1, max_size=4),
    batch_size=st.sampled_from([None, 5, 11, 30]),
    standardize=st.booleans(),
)
def test_any_mix_of_folds_and_lambdas_equals_one_by_one(config, pairs, batch_size, standardize):
    fold_trainer = trainer(*config, epochs=2, batch_size=batch_size, standardize=standardize)
    folds, lambdas = zip(*pairs, strict=True)
    stack = ModelStack(fold_trainer, SPLITS, folds, lambdas)
    stack.train(2)
    np.testing.assert_allclose(stack.scores(), one_by_one(fold_trainer, folds, lambdas), rtol=1e-10)


def test_training_continued_is_training_longer():
    # A warm start is the same run: 2 epochs, scored, then 3 more, equals 5 epochs.
    short = trainer(l2optim.SGD, {"lr": 0.05, "momentum": 0.9}, epochs=2)
    long = trainer(l2optim.SGD, {"lr": 0.05, "momentum": 0.9}, epochs=5)
    folds, lambdas = [0, 1, 2], [0.0, 0.02, 0.2]
    stack = ModelStack(short, SPLITS, folds, lambdas)
    stack.train(2)
    np.testing.assert_allclose(stack.scores(), one_by_one(short, folds, lambdas), rtol=1e-10)
    stack.train(3)
    assert stack.epochs == 5
    np.testing.assert_allclose(stack.scores(), one_by_one(long, folds, lambdas), rtol=1e-10)


def test_dropped_copies_leave_the_others_unchanged():
    fold_trainer = trainer(l2optim.Adam, {"lr": 0.01}, epochs=3)
    stack = ModelStack(fold_trainer, SPLITS, [0, 1, 2, 1], [0.1, 0.2, 0.3, 0.4])
    stack.train(1)
    stack.keep([3, 0])
    stack.train(2)
    assert stack.lambdas.tolist() == [0.4, 0.1] and stack.folds.tolist() == [1, 0]
    np.testing.assert_allclose(
        stack.scores(), one_by_one(fold_trainer, [1, 0], [0.4, 0.1]), rtol=1e-10
    )
    assert stack.optimizer_steps == (4 * 1 + 2 * 2) * math.ceil(30 / 7)


def test_a_diverging_copy_scores_inf_and_spares_the_others():
    # Coupled SGD at lr 0.5: with λ = 1000 each step multiplies the weights by about
    # 1 − 0.5·1000, so the loss overflows within 60 steps; λ ≤ 0.1 trains.
    fold_trainer = trainer(l2optim.SGD, {"lr": 0.5}, epochs=60, batch_size=None)
    lambdas = [0.0, 1e3, 0.1]
    expected = one_by_one(fold_trainer, [0, 0, 0], lambdas)
    assert math.isinf(expected[1]) and np.isfinite(expected[[0, 2]]).all()
    stack = ModelStack(fold_trainer, SPLITS, [0, 0, 0], lambdas)
    stack.train(60)
    scores = stack.scores()
    assert math.isinf(scores[1])
    np.testing.assert_allclose(scores[[0, 2]], expected[[0, 2]], rtol=1e-10)


def test_classification_with_a_loss_module():
    labels = (Y > 0).astype(np.int64) + (Y > 0.5)
    fold_trainer = FoldTrainer(
        lambda: nn.Sequential(nn.Linear(N_FEATURES, 5), nn.ReLU(), nn.Linear(5, 3)),
        X,
        labels,
        loss=nn.CrossEntropyLoss(),
        optimizer=l2optim.AdamW,
        optimizer_kwargs={"lr": 0.02},
        epochs=3,
        batch_size=8,
    )
    stack = ModelStack(fold_trainer, SPLITS, [0, 1], [0.01, 0.5])
    stack.train(3)
    np.testing.assert_allclose(
        stack.scores(), one_by_one(fold_trainer, [0, 1], [0.01, 0.5]), rtol=1e-10
    )


@pytest.mark.parametrize(
    ("make", "error", "message"),
    [
        (
            lambda: ModelStack(trainer(l2optim.SGD, {}), kfold_splits(44, 3), [0, 2], [0.1, 0.1]),
            ValueError,
            "same number of training rows",
        ),
        (
            lambda: ModelStack(
                trainer(l2optim.AdamW, {"lr": 0.5, "weight_decay_scaling": "none"}),
                SPLITS,
                [0],
                [1.0],
            ),
            ValueError,
            r"lambda=1 would flip the sign",
        ),
        (lambda: ModelStack(trainer(l2optim.SGD, {}), SPLITS, [0], [-1.0]), ValueError, ">= 0"),
        (
            lambda: ModelStack(trainer(l2optim.SGD, {}), SPLITS, [0, 1], [0.1]),
            ValueError,
            "one length",
        ),
        (lambda: update_rule(torch.optim.Adagrad, {}), TypeError, "optimizer=Adagrad"),
        (
            lambda: update_rule(l2optim.AdamW, {"maximize": True}),
            ValueError,
            "maximize=True with decoupled",
        ),
    ],
)
def test_bad_input_is_named(make, error, message):
    with pytest.raises(error, match=message):
        make()


def test_the_update_rule_reads_the_class_defaults():
    assert update_rule(l2optim.AdamW, {"lr": 0.1}).decoupled
    assert not update_rule(l2optim.Adam, {"lr": 0.1}).decoupled
    assert update_rule(torch.optim.AdamW, {}).decoupled
    schedule = update_rule(l2optim.SGDW, {"lr": 0.1, "weight_decay_scaling": "schedule"})
    assert schedule.scale == 1.0  # lr_t / lr_ref with a constant lr
    assert update_rule(l2optim.SGDW, {"lr": 0.1}).scale == 0.1
    # lr · lr / lr_ref, lr_ref being the lr the class was built with.
    corrected = update_rule(l2optim.AdamW, {"lr": 0.1, "weight_decay_scaling": "corrected"})
    assert corrected.scale == pytest.approx(0.1)
