"""k-fold splits and objectives: partitions, serial oracles, and real process and dask executors."""

from __future__ import annotations

import contextlib
import functools
import multiprocessing
import pickle
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor

import numpy as np
import pytest
import torch
from _torch_threads import one_torch_thread  # noqa: F401 (autouse fixture)
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

import l2optim
from l2optim import FoldTrainer, KFoldObjective, kfold_objective, kfold_splits

RNG = np.random.default_rng(1)
X = RNG.normal(size=(40, 4))
Y = X @ np.array([0.5, -1.0, 2.0, 0.0]) + 0.2 * RNG.normal(size=40)


def mean_predictor_mse(lam: float, train_idx: np.ndarray, test_idx: np.ndarray) -> float:
    """Predict the shrunk training mean ȳ/(1 + λ); the test mean squared error."""
    prediction = Y[train_idx].mean() / (1.0 + lam)
    return float(np.mean((Y[test_idx] - prediction) ** 2))


def fail_on_second_fold(lam: float, train_idx: np.ndarray, test_idx: np.ndarray) -> float:
    if 0 in test_idx:
        raise RuntimeError("fold holding sample 0 failed")
    return 0.0


class CountsPickles:
    """A fit_score that counts how often this process pickles it (to send it elsewhere)."""

    pickled = 0

    def __init__(self, fit_score) -> None:
        self.fit_score = fit_score

    def __call__(self, lam: float, train_idx: np.ndarray, test_idx: np.ndarray) -> float:
        return self.fit_score(lam, train_idx, test_idx)

    def __getstate__(self) -> dict:
        type(self).pickled += 1
        return self.__dict__


def small_trainer() -> FoldTrainer:
    return FoldTrainer(
        functools.partial(nn.Linear, 4, 1),
        torch.tensor(X),
        torch.tensor(Y),
        optimizer=l2optim.SGD,
        optimizer_kwargs={"lr": 0.05, "momentum": 0.9},
        epochs=20,
        batch_size=8,
    )


@given(
    n_samples=st.integers(2, 300),
    folds=st.integers(2, 300),
    shuffle=st.booleans(),
    seed=st.integers(0, 2**32 - 1),
)
def test_folds_partition_the_samples_in_sorted_index_arrays(n_samples, folds, shuffle, seed):
    folds = min(folds, n_samples)
    splits = kfold_splits(n_samples, folds, shuffle=shuffle, random_state=seed)
    assert len(splits) == folds
    tests = [test for _, test in splits]
    assert np.array_equal(np.sort(np.concatenate(tests)), np.arange(n_samples))
    sizes = [len(test) for test in tests]
    assert max(sizes) - min(sizes) <= 1 and sizes == sorted(sizes, reverse=True)
    for train, test in splits:
        # Sorted, as promised: rows read in file order, whatever the shuffle.
        assert np.all(np.diff(train) > 0) and np.all(np.diff(test) > 0)
        assert train.dtype.kind == test.dtype.kind == "i"
        assert np.array_equal(np.union1d(train, test), np.arange(n_samples))
        assert np.intersect1d(train, test).size == 0
    if not shuffle:
        assert np.array_equal(np.concatenate(tests), np.arange(n_samples))


def test_same_seed_same_folds_other_seed_other_folds():
    first, again = kfold_splits(50, 5, random_state=3), kfold_splits(50, 5, random_state=3)
    other = kfold_splits(50, 5, random_state=4)
    assert all(np.array_equal(a[1], b[1]) for a, b in zip(first, again, strict=True))
    assert not all(np.array_equal(a[1], b[1]) for a, b in zip(first, other, strict=True))


@pytest.mark.parametrize(
    ("n_samples", "folds", "error", "message"),
    [
        (10, 1, ValueError, r"folds must be an integer in \[2, n_samples=10\], got 1"),
        (10, 11, ValueError, r"folds must be an integer in \[2, n_samples=10\], got 11"),
        (10, 2.5, TypeError, r"folds must be an integer in \[2, n_samples=10\], got 2.5"),
        (10, True, TypeError, r"folds must be an integer in \[2, n_samples=10\], got True"),
        (0, 2, ValueError, "n_samples must be an integer >= 1, got 0"),
    ],
)
def test_folds_out_of_range_are_refused(n_samples, folds, error, message):
    with pytest.raises(error, match=message):
        kfold_objective(mean_predictor_mse, n_samples, folds=folds)


def test_bad_fit_score_or_executor_is_refused():
    with pytest.raises(TypeError, match="fit_score must be callable"):
        kfold_objective(None, 10)
    with pytest.raises(TypeError, match="executor must be a concurrent.futures.Executor"):
        kfold_objective(mean_predictor_mse, 10, executor=object())


@pytest.mark.parametrize(
    ("seed", "error"), [("0", TypeError), (1.5, TypeError), (True, TypeError), (-1, ValueError)]
)
def test_a_bad_seed_is_named(seed, error):
    message = rf"random_state must be None, an integer >= 0 or a numpy Generator, got {seed!r}"
    with pytest.raises(error, match=message):
        kfold_splits(10, 2, random_state=seed)
    with pytest.raises(error, match=message):
        l2optim.ridge_cv(X, Y, cv=5, random_state=seed)
    assert len(kfold_splits(10, 2, random_state=np.random.default_rng(3))) == 2


def test_a_fold_trainer_of_other_rows_than_n_samples_is_refused():
    trainer = FoldTrainer(nn.Linear(4, 1), X, Y, epochs=2)
    for n in (len(X) // 2, len(X) + 1):
        with pytest.raises(ValueError, match=rf"n_samples={n} differs from the 40 rows"):
            kfold_objective(trainer, n)


def test_serial_objective_scores_each_fold_in_order():
    objective = kfold_objective(mean_predictor_mse, len(Y), folds=4, random_state=7)
    expected = tuple(
        mean_predictor_mse(0.3, train, test)
        for train, test in kfold_splits(len(Y), 4, random_state=7)
    )
    assert objective.folds == 4
    assert objective(0.3) == expected
    assert all(isinstance(score, float) for score in objective(0.3))


def test_objective_pickles_and_its_copy_runs_serially():
    with ThreadPoolExecutor(2) as pool:
        objective = kfold_objective(mean_predictor_mse, len(Y), folds=3, executor=pool)
        copy = pickle.loads(pickle.dumps(objective))
        assert copy.executor is None
        assert copy(0.1) == objective(0.1)


def test_a_failing_fold_raises_through_the_executor():
    with ThreadPoolExecutor(2) as pool:
        objective = kfold_objective(fail_on_second_fold, 10, folds=5, executor=pool)
        with pytest.raises(RuntimeError, match="fold holding sample 0 failed"):
            objective(0.1)


@contextlib.contextmanager
def another_default_dtype_and_threads():
    """What a user's script (or an earlier test) may have set in this process: a worker
    process starts with torch's defaults instead."""
    dtype, threads = torch.get_default_dtype(), torch.get_num_threads()
    torch.set_default_dtype(torch.float64)
    torch.set_num_threads(2)
    try:
        yield
    finally:
        torch.set_default_dtype(dtype)
        torch.set_num_threads(threads)


def test_process_pool_gives_exactly_the_serial_scores():
    """FoldTrainer's promise: the same number here and in a fresh worker process, with this
    process in another state than the worker's (small data: see its docstring).

    The workers are spawned, as ``workers=N`` spawns them: forking this process, whose
    other threads (pytest-xdist's, tqdm's monitor, Inductor's) may hold a lock at that
    moment, can leave a worker hung.
    """
    trainer = small_trainer()
    serial = kfold_objective(trainer, len(Y), folds=4)
    pool = ProcessPoolExecutor(
        2,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=torch.set_num_threads,
        initargs=(1,),
    )
    with pool, another_default_dtype_and_threads():
        parallel = kfold_objective(trainer, len(Y), folds=4, executor=pool)
        for lam in (1e-2, 0.5):
            expected = serial(lam)
            assert parallel(lam) == expected
    assert serial(1e-2) == kfold_objective(trainer, len(Y), folds=4)(1e-2)


def test_select_lambda_runs_on_a_kfold_objective():
    objective = kfold_objective(mean_predictor_mse, len(Y), folds=5)
    search = l2optim.select_lambda(objective, bounds=(1e-4, 10.0), progress=False)
    assert all(len(e.scores) == 5 for e in search.evaluations)
    assert search.lambda_1se is not None and search.lambda_1se >= search.lambda_min


def test_dask_local_cluster_gives_the_serial_scores_and_receives_the_data_once():
    distributed = pytest.importorskip("distributed")
    trainer = CountsPickles(small_trainer())
    serial = kfold_objective(trainer, len(Y), folds=4)
    with (
        distributed.LocalCluster(
            n_workers=2,
            processes=True,
            threads_per_worker=1,
            host="127.0.0.1",
            dashboard_address=None,
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        # The client itself (public API), or the executor it gives.
        for executor in (client, client.get_executor()):
            on_cluster = kfold_objective(trainer, len(Y), folds=4, executor=executor)
            assert isinstance(on_cluster, KFoldObjective)
            CountsPickles.pickled = 0
            assert on_cluster(1e-2) == serial(1e-2)
            assert on_cluster(0.5) == serial(0.5)
            # Eight fold tasks, one copy of the trainer and its data sent to the workers.
            assert CountsPickles.pickled == 1


# Set in this process before a pool starts: a forked worker inherits it, a spawned one
# imports this module afresh and finds it empty.
MARKED_IN_PARENT: list[bool] = []


def worker_setup(lam: float, train_idx: np.ndarray, test_idx: np.ndarray) -> float:
    """How the worker running this fold is set up: torch threads × 10, + 1 if spawned."""
    return 10.0 * torch.get_num_threads() + (not MARKED_IN_PARENT)


def test_workers_build_a_spawned_pool_with_one_torch_thread_and_close_it():
    MARKED_IN_PARENT.append(True)
    with kfold_objective(worker_setup, 10, folds=2, workers=2) as probe:
        assert probe(1.0) == (11.0, 11.0)  # one torch thread, in a spawned worker
        pool = probe.executor
        assert isinstance(pool, ProcessPoolExecutor)
    assert probe.executor is None  # shut down on leaving the block
    with pytest.raises(RuntimeError):
        pool.submit(int)


def test_workers_and_executor_are_exclusive_and_workers_is_a_count():
    with pytest.raises(ValueError, match="either workers or executor"), ThreadPoolExecutor(1) as pool:
        kfold_objective(mean_predictor_mse, 10, workers=2, executor=pool)
    with pytest.raises(ValueError, match="workers must be an integer >= 1, got 0"):
        kfold_objective(mean_predictor_mse, 10, workers=0)


def test_the_objective_offers_its_fit_scores_default_bounds_and_refit():
    trainer = small_trainer()
    objective = kfold_objective(trainer, len(Y), folds=4)
    n_train = max(len(train) for train, _ in objective.splits)
    assert objective.default_bounds() == trainer.default_bounds(n_train)
    refit = objective.fit(0.1)
    direct = trainer.fit(0.1)
    for a, b in zip(refit.parameters(), direct.parameters(), strict=True):
        assert torch.equal(a, b)
    assert kfold_objective(mean_predictor_mse, 10).default_bounds() is None
